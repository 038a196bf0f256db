/* fixed-sizes: single-threaded malloc+free pairs of one size at a time
 * (16, 64, 256 and 4096 bytes), the fast path of every allocator.
 * Usage: fixed_sizes [pairs_per_size]
 * Metric: ns_per_pair_<size> for each size. */
#include "common.h"

int main(int argc, char **argv)
{
    long pairs = arg_long(argc, argv, 1, 10000000);
    static const size_t sizes[] = {16, 64, 256, 4096};
    report_allocator();
    uint64_t total = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        uint64_t sum = 0;
        double t0 = now_s();
        for (long i = 0; i < pairs; i++) {
            unsigned char *p = xmalloc(n);
            /* Touch both ends so the block is really used. */
            p[0] = (unsigned char)i;
            p[n - 1] = (unsigned char)(i >> 8);
            sum += (uint64_t)p[0] + p[n - 1];
            free(p);
        }
        double t1 = now_s();
        uint64_t expect = 0;
        for (long i = 0; i < pairs; i++)
            expect += (uint64_t)(unsigned char)i + (unsigned char)(i >> 8);
        if (sum != expect)
            fail("size %zu: checksum %llu, expected %llu", n, (unsigned long long)sum,
                 (unsigned long long)expect);
        char name[64];
        snprintf(name, sizeof name, "ns_per_pair_%zu", n);
        metric(name, (t1 - t0) * 1e9 / (double)pairs, "ns");
        total += sum;
    }
    printf("checksum %llu\n", (unsigned long long)total);
    finish_ok();
    return 0;
}
