/* alloc-test: single-threaded random-size allocate/free over a live set,
 * after the description of the node-dot-cpp alloc-test (alloc-test1 in
 * mimalloc-bench). Sizes are skewed small (60% 8-64 B, 30% 65-512 B, 9%
 * 513-4096 B, 1% 4-64 KiB). Unlike random-replace the live set breathes:
 * the number of occupied slots follows a triangle wave between a quarter
 * of SLOTS and all of them, so there are phases where allocation outruns
 * freeing and phases where freeing outruns allocation, and every step
 * picks a random slot (free it if full and the target allows, else fill).
 * Usage: alloc_test [steps] [slots]
 * Metric: ns_per_step. */
#include "common.h"

static uint32_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 100;
    if (r < 60)
        return (uint32_t)rng_range(rng, 8, 64);
    if (r < 90)
        return (uint32_t)rng_range(rng, 65, 512);
    if (r < 99)
        return (uint32_t)rng_range(rng, 513, 4096);
    return (uint32_t)rng_range(rng, 4097, 65536);
}

int main(int argc, char **argv)
{
    long steps = arg_long(argc, argv, 1, 30000000);
    long slots = arg_long(argc, argv, 2, 1 << 16);
    report_allocator();
    unsigned char **ptr = calloc((size_t)slots, sizeof *ptr);
    uint32_t *size = calloc((size_t)slots, sizeof *size);
    if (ptr == NULL || size == NULL)
        fail("calloc");
    uint64_t rng = 0xa110c;
    long live = 0, period = slots * 8;
    uint64_t allocs = 0, frees = 0, sum = 0, expect = 0;
    double t0 = now_s();
    for (long s = 0; s < steps; s++) {
        /* Target occupancy: a triangle wave from slots/4 to slots. */
        long phase = s % (2 * period);
        long ramp = phase < period ? phase : 2 * period - phase;
        long target = slots / 4 + (long)((double)ramp / (double)period * (double)(slots - slots / 4));
        long i = (long)(rng_next(&rng) % (uint64_t)slots);
        if (ptr[i] != NULL) {
            if (live < target && rng_next(&rng) % 4 != 0)
                continue; /* growing phase: mostly keep what is there */
            uint32_t n = size[i];
            if (ptr[i][0] != (unsigned char)i || ptr[i][n - 1] != (unsigned char)(n + (uint32_t)i))
                fail("slot %ld (%u bytes) overwritten", i, n);
            sum += ptr[i][n / 2];
            expect += (unsigned char)n;
            free(ptr[i]);
            ptr[i] = NULL;
            live--, frees++;
        } else if (live < target || rng_next(&rng) % 4 == 0) {
            uint32_t n = pick_size(&rng);
            unsigned char *p = xmalloc(n);
            p[0] = (unsigned char)i;
            p[n / 2] = (unsigned char)n;
            p[n - 1] = (unsigned char)(n + (uint32_t)i);
            ptr[i] = p;
            size[i] = n;
            live++, allocs++;
        }
    }
    double t1 = now_s();
    for (long i = 0; i < slots; i++) {
        if (ptr[i] == NULL)
            continue;
        uint32_t n = size[i];
        if (ptr[i][0] != (unsigned char)i || ptr[i][n - 1] != (unsigned char)(n + (uint32_t)i))
            fail("slot %ld (%u bytes) overwritten", i, n);
        free(ptr[i]);
        frees++, live--;
    }
    if (sum != expect)
        fail("middle bytes of freed blocks sum to %llu, expected %llu", (unsigned long long)sum,
             (unsigned long long)expect);
    if (live != 0 || allocs != frees)
        fail("allocated %llu, freed %llu, %ld still counted live", (unsigned long long)allocs,
             (unsigned long long)frees, live);
    free(ptr);
    free(size);
    metric("ns_per_step", (t1 - t0) * 1e9 / (double)steps, "ns");
    metric("allocations", (double)allocs, "count");
    finish_ok();
    return 0;
}
