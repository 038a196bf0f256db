/* buffer-churn: one short-lived buffer of 1-5 MiB at a time, as a program
 * that sizes an I/O or decoding buffer by its input (a file read whole, a
 * decompressed chunk, an image row set): allocated, written at its start
 * and at one word every 256 KiB, read back, freed. Every other step uses
 * calloc, and checks that the bytes it reads were zero. The cost is how
 * the allocator gets a big block again right after giving one back
 * (keeping it mapped, and knowing what of it is zero), not the writes.
 * malloc-large keeps three 5-25 MiB blocks live; this keeps none.
 * Usage: buffer_churn [steps]
 * Metric: us_per_step. */
#include "common.h"

#define MIB (1024u * 1024u)
#define HEAD 4096u
#define STRIDE (256u * 1024u)

int main(int argc, char **argv)
{
    long steps = arg_long(argc, argv, 1, 20000);
    report_allocator();
    uint64_t rng = 0xb0ff;
    uint64_t sum = 0;
    double t0 = now_s();
    for (long s = 0; s < steps; s++) {
        size_t n = (size_t)rng_range(&rng, 1 * MIB, 5 * MIB);
        int zeroed = (s & 1) != 0;
        unsigned char *p = zeroed ? calloc(1, n) : xmalloc(n);
        if (p == NULL)
            fail("calloc(1, %zu) failed", n);
        uint64_t tag = mix64((uint64_t)s);
        for (size_t off = 0; off + 16 <= n; off += STRIDE) {
            if (zeroed) {
                uint64_t v;
                memcpy(&v, p + off + 8, 8);
                if (v != 0 || p[n - 1] != 0)
                    fail("calloc(1, %zu): a byte near %zu is not zero", n, off);
            }
            memcpy(p + off, &tag, 8);
        }
        memset(p, (int)(tag & 0xff), HEAD);
        for (size_t off = STRIDE; off + 16 <= n; off += STRIDE) {
            uint64_t v;
            memcpy(&v, p + off, 8);
            if (v != tag)
                fail("buffer of %zu bytes: word at %zu overwritten", n, off);
            sum += v & 1;
        }
        sum += p[HEAD - 1];
        free(p);
    }
    double t1 = now_s();
    if (sum == 1)
        printf("%llu\n", (unsigned long long)sum);
    metric("us_per_step", (t1 - t0) * 1e6 / (double)steps, "us");
    finish_ok();
    return 0;
}
