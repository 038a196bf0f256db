/* false sharing, after the cache-thrash and cache-scratch tests of the
 * Hoard paper's suite. Each thread repeatedly allocates a small (8-byte)
 * object, writes to it many times, and frees it. An allocator that hands
 * objects from one cache line to different threads makes the cores fight
 * over that line.
 *   thrash:  active false sharing: the threads allocate concurrently.
 *   scratch: passive false sharing: the main thread allocates one object per
 *            worker (likely neighbours in one line); each worker frees the
 *            one it is given first, so an allocator that reuses a freed block
 *            for the freeing thread puts the workers' objects side by side.
 * Usage: false_sharing thrash|scratch [threads] [iterations] [writes]
 * Metric: ns_per_write. */
#include "common.h"

#define OBJ 8

struct worker {
    pthread_t tid;
    unsigned char *given; /* scratch: the object to free first */
    long iters, writes;
    uint64_t sum;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    if (w->given != NULL)
        free(w->given);
    for (long i = 0; i < w->iters; i++) {
        volatile unsigned char *p = xmalloc(OBJ);
        for (int k = 0; k < OBJ; k++)
            p[k] = 0;
        for (long j = 0; j < w->writes; j++)
            p[j % OBJ]++;
        uint64_t s = 0;
        for (int k = 0; k < OBJ; k++)
            s += p[k];
        w->sum += s;
        free((void *)p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "thrash") != 0 && strcmp(argv[1], "scratch") != 0))
        fail("usage: false_sharing thrash|scratch [threads] [iterations] [writes]");
    int scratch = strcmp(argv[1], "scratch") == 0;
    long threads = arg_long(argc, argv, 2, 2);
    long iters = arg_long(argc, argv, 3, 20000);
    long writes = arg_long(argc, argv, 4, 2000);
    report_allocator();
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    if (ws == NULL)
        fail("calloc");
    for (long t = 0; t < threads; t++) {
        ws[t].iters = iters;
        ws[t].writes = writes;
        if (scratch)
            ws[t].given = xmalloc(OBJ);
    }
    double t0 = now_s();
    for (long t = 0; t < threads; t++)
        if (pthread_create(&ws[t].tid, NULL, work, &ws[t]) != 0)
            fail("pthread_create");
    for (long t = 0; t < threads; t++)
        pthread_join(ws[t].tid, NULL);
    double t1 = now_s();
    /* Each byte ends at (its share of the writes) mod 256. */
    uint64_t per_obj = 0;
    for (int k = 0; k < OBJ; k++) {
        long share = writes / OBJ + (k < writes % OBJ ? 1 : 0);
        per_obj += (uint64_t)(share % 256);
    }
    for (long t = 0; t < threads; t++)
        if (ws[t].sum != per_obj * (uint64_t)iters)
            fail("thread %ld: checksum %llu, expected %llu", t, (unsigned long long)ws[t].sum,
                 (unsigned long long)(per_obj * (uint64_t)iters));
    free(ws);
    metric("ns_per_write", (t1 - t0) * 1e9 / ((double)iters * (double)writes), "ns");
    finish_ok();
    return 0;
}
