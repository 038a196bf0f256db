/* thread-churn: short-lived threads, in the spirit of mstress and mleak.
 * Generation after generation, the main thread starts a few threads and
 * joins them. Each thread frees the blocks the previous generation handed
 * to it (allocated by threads that have exited), allocates a mix of
 * blocks, frees about half of them itself, hands the rest to the next
 * generation and exits. Usage: thread_churn [threads] [generations] [blocks]
 * Metric: us_per_thread. */
#include "common.h"

#define MAX_THREADS 64

struct worker {
    pthread_t tid;
    uint32_t gen, index;
    long blocks;
    unsigned char **inbox;  /* from the previous generation */
    long inbox_len;
    unsigned char **outbox; /* to the next generation */
    long outbox_len;
    uint64_t freed;
};

static size_t block_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 100;
    if (r < 90)
        return rng_range(rng, 24, 512);
    if (r < 99)
        return rng_range(rng, 513, 8192);
    return rng_range(rng, 8193, 128 * 1024);
}

static unsigned char *make_block(uint64_t *rng, uint64_t key)
{
    uint32_t n = (uint32_t)block_size(rng);
    unsigned char *p = xmalloc(n);
    memcpy(p, &key, 8);
    memcpy(p + 8, &n, 4);
    uint64_t t = mix64(key ^ n);
    memcpy(p + n - 8, &t, 8);
    return p;
}

static void check_and_free(unsigned char *p)
{
    uint64_t key, t;
    uint32_t n;
    memcpy(&key, p, 8);
    memcpy(&n, p + 8, 4);
    if (n < 24 || n > 128 * 1024)
        fail("block %p: corrupt header", (void *)p);
    memcpy(&t, p + n - 8, 8);
    if (t != mix64(key ^ n))
        fail("block %p (%u bytes): tail overwritten", (void *)p, n);
    free(p);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = mix64(((uint64_t)w->gen << 8) | w->index);
    for (long i = 0; i < w->inbox_len; i++) {
        check_and_free(w->inbox[i]);
        w->freed++;
    }
    unsigned char **mine = xmalloc(sizeof(unsigned char *) * (size_t)w->blocks);
    long kept = 0;
    for (long i = 0; i < w->blocks; i++) {
        unsigned char *p = make_block(&rng, ((uint64_t)w->gen << 32) | ((uint64_t)w->index << 24) | (uint64_t)i);
        if (rng_next(&rng) & 1)
            w->outbox[w->outbox_len++] = p;
        else
            mine[kept++] = p;
    }
    /* Free our own half in a shuffled order. */
    for (long i = kept - 1; i > 0; i--) {
        long j = (long)(rng_next(&rng) % (uint64_t)(i + 1));
        unsigned char *t = mine[i];
        mine[i] = mine[j];
        mine[j] = t;
    }
    for (long i = 0; i < kept; i++) {
        check_and_free(mine[i]);
        w->freed++;
    }
    free(mine);
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 2);
    long gens = arg_long(argc, argv, 2, 2000);
    long blocks = arg_long(argc, argv, 3, 2000);
    if (threads > MAX_THREADS)
        fail("at most %d threads", MAX_THREADS);
    report_allocator();
    struct worker ws[MAX_THREADS];
    unsigned char **boxes[2][MAX_THREADS];
    long lens[MAX_THREADS] = {0};
    for (int b = 0; b < 2; b++)
        for (long t = 0; t < threads; t++)
            boxes[b][t] = xmalloc(sizeof(unsigned char *) * (size_t)blocks);
    uint64_t freed = 0;
    double t0 = now_s();
    for (long g = 0; g < gens; g++) {
        int in = (int)(g & 1), out = 1 - in;
        for (long t = 0; t < threads; t++) {
            /* Thread t inherits what thread t+1 of the previous generation left. */
            long from = (t + 1) % threads;
            ws[t] = (struct worker){.gen = (uint32_t)g, .index = (uint32_t)t, .blocks = blocks,
                                    .inbox = boxes[in][from], .inbox_len = lens[from],
                                    .outbox = boxes[out][t], .outbox_len = 0};
        }
        for (long t = 0; t < threads; t++)
            if (pthread_create(&ws[t].tid, NULL, work, &ws[t]) != 0)
                fail("pthread_create");
        for (long t = 0; t < threads; t++) {
            pthread_join(ws[t].tid, NULL);
            freed += ws[t].freed;
        }
        for (long t = 0; t < threads; t++)
            lens[t] = ws[t].outbox_len;
    }
    double t1 = now_s();
    int last = (int)(gens & 1);
    for (long t = 0; t < threads; t++)
        for (long i = 0; i < lens[t]; i++) {
            check_and_free(boxes[last][t][i]);
            freed++;
        }
    for (int b = 0; b < 2; b++)
        for (long t = 0; t < threads; t++)
            free(boxes[b][t]);
    if (freed != (uint64_t)threads * gens * blocks)
        fail("freed %llu blocks, expected %llu", (unsigned long long)freed,
             (unsigned long long)threads * gens * blocks);
    metric("us_per_thread", (t1 - t0) * 1e6 / ((double)threads * gens), "us");
    finish_ok();
    return 0;
}
