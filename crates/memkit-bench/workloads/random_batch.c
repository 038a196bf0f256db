/* random-batch: batches of 1000 blocks of random sizes (16..1024 bytes),
 * each stamped at both ends, then freed in a random order after checking
 * the stamps. Usage: random_batch [batches] */
#include "common.h"

#define BATCH 1000

int main(int argc, char **argv)
{
    long batches = arg_long(argc, argv, 1, 4000);
    report_allocator();
    uint64_t rng = 42;
    unsigned char *ptr[BATCH];
    size_t size[BATCH];
    unsigned order[BATCH];
    uint64_t checked = 0;
    double t0 = now_s();
    for (long b = 0; b < batches; b++) {
        for (unsigned i = 0; i < BATCH; i++) {
            size_t n = rng_range(&rng, 16, 1024);
            unsigned char *p = xmalloc(n);
            uint64_t tag = mix64(((uint64_t)b << 16) | i);
            memcpy(p, &tag, 8);
            memcpy(p + n - 8, &tag, 8);
            ptr[i] = p;
            size[i] = n;
            order[i] = i;
        }
        /* Fisher-Yates shuffle of the free order. */
        for (unsigned i = BATCH - 1; i > 0; i--) {
            unsigned j = (unsigned)(rng_next(&rng) % (i + 1));
            unsigned t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (unsigned k = 0; k < BATCH; k++) {
            unsigned i = order[k];
            uint64_t tag = mix64(((uint64_t)b << 16) | i), a, z;
            memcpy(&a, ptr[i], 8);
            memcpy(&z, ptr[i] + size[i] - 8, 8);
            if (a != tag || z != tag)
                fail("batch %ld block %u (%zu bytes) was overwritten", b, i, size[i]);
            free(ptr[i]);
            checked++;
        }
    }
    double t1 = now_s();
    if (checked != (uint64_t)batches * BATCH)
        fail("checked %llu blocks", (unsigned long long)checked);
    metric("ns_per_block", (t1 - t0) * 1e9 / (double)checked, "ns");
    finish_ok();
    return 0;
}
