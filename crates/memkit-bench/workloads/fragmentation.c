/* fragmentation: allocate many small blocks, free most of them in a random
 * order, and see how much memory the process still holds: right after the
 * frees, after malloc_trim(0), and after allocating the same volume again
 * in a different size class (does the allocator reuse the holes?).
 * Usage: fragmentation [blocks]
 * Metrics: rss_full_mib, rss_after_free_mib, rss_after_trim_mib,
 * rss_after_refill_mib. */
#include "common.h"
#include <malloc.h>

#define KEEP_EVERY 10 /* one block in ten survives */

int main(int argc, char **argv)
{
    long blocks = arg_long(argc, argv, 1, 1000000);
    report_allocator();
    uint64_t rng = 3;
    unsigned char **ptr = xmalloc(sizeof *ptr * (size_t)blocks);
    uint32_t *size = xmalloc(sizeof *size * (size_t)blocks);
    long *order = xmalloc(sizeof *order * (size_t)blocks);
    uint64_t bytes = 0;
    for (long i = 0; i < blocks; i++) {
        size[i] = (uint32_t)rng_range(&rng, 16, 256);
        ptr[i] = xmalloc(size[i]);
        memset(ptr[i], (int)(i & 0xff), size[i]);
        bytes += size[i];
        order[i] = i;
    }
    metric("rss_full_mib", (double)rss_kib() / 1024.0, "MiB");
    for (long i = blocks - 1; i > 0; i--) {
        long j = (long)(rng_next(&rng) % (uint64_t)(i + 1));
        long t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    uint64_t freed_bytes = 0;
    for (long k = 0; k < blocks; k++) {
        long i = order[k];
        if (i % KEEP_EVERY == 0)
            continue;
        if (ptr[i][0] != (unsigned char)(i & 0xff) || ptr[i][size[i] - 1] != (unsigned char)(i & 0xff))
            fail("block %ld overwritten", i);
        freed_bytes += size[i];
        free(ptr[i]);
        ptr[i] = NULL;
    }
    metric("rss_after_free_mib", (double)rss_kib() / 1024.0, "MiB");
    malloc_trim(0);
    metric("rss_after_trim_mib", (double)rss_kib() / 1024.0, "MiB");
    /* Refill the freed volume with 384-byte blocks, a size none of the
     * survivors has. */
    long refill = (long)(freed_bytes / 384);
    unsigned char **more = xmalloc(sizeof *more * (size_t)(refill > 0 ? refill : 1));
    for (long i = 0; i < refill; i++) {
        more[i] = xmalloc(384);
        memset(more[i], 0x5a, 384);
    }
    metric("rss_after_refill_mib", (double)rss_kib() / 1024.0, "MiB");
    for (long i = 0; i < refill; i++) {
        if (more[i][0] != 0x5a || more[i][383] != 0x5a)
            fail("refill block %ld overwritten", i);
        free(more[i]);
    }
    free(more);
    for (long i = 0; i < blocks; i += KEEP_EVERY) {
        if (ptr[i][0] != (unsigned char)(i & 0xff) || ptr[i][size[i] - 1] != (unsigned char)(i & 0xff))
            fail("survivor %ld overwritten", i);
        free(ptr[i]);
    }
    free(ptr);
    free(size);
    free(order);
    printf("bytes %llu\n", (unsigned long long)bytes);
    finish_ok();
    return 0;
}
