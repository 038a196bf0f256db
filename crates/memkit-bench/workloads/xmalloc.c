/* xmalloc: producer/consumer in the style of xmalloc-test. One thread
 * allocates blocks (16..512 bytes) and hands them over in batches of 64
 * through a bounded queue; another thread checks and frees them, so every
 * free is a remote free. The queue blocks on a condition variable rather
 * than spinning, so that the figures do not depend on whether both threads
 * happen to be on a CPU at the same time. Usage: xmalloc [blocks]
 * Metric: ns_per_block. */
#include "common.h"

#define BATCH 64
#define SLOTS 64 /* batches in flight at most */

struct batch {
    int n;
    unsigned char *p[BATCH];
};

static struct batch ring[SLOTS];
static unsigned long head, tail; /* batches published / consumed */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static long total;

static void *producer(void *arg)
{
    (void)arg;
    uint64_t rng = 99;
    long i = 0;
    while (i < total) {
        pthread_mutex_lock(&lock);
        while (head - tail == SLOTS)
            pthread_cond_wait(&not_full, &lock);
        pthread_mutex_unlock(&lock);
        /* The slot is ours until it is published. */
        struct batch *b = &ring[head % SLOTS];
        b->n = 0;
        for (; b->n < BATCH && i < total; i++) {
            uint32_t n = (uint32_t)rng_range(&rng, 16, 512);
            unsigned char *p = xmalloc(n);
            uint64_t seq = (uint64_t)i;
            memcpy(p, &seq, 8);
            memcpy(p + 8, &n, 4);
            p[n - 1] = (unsigned char)(n ^ (uint32_t)i);
            b->p[b->n++] = p;
        }
        pthread_mutex_lock(&lock);
        head++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    uint64_t *sum = arg;
    long i = 0;
    while (i < total) {
        pthread_mutex_lock(&lock);
        while (head == tail)
            pthread_cond_wait(&not_empty, &lock);
        pthread_mutex_unlock(&lock);
        struct batch *b = &ring[tail % SLOTS];
        for (int k = 0; k < b->n; k++, i++) {
            unsigned char *p = b->p[k];
            uint64_t seq;
            uint32_t n;
            memcpy(&seq, p, 8);
            memcpy(&n, p + 8, 4);
            if (seq != (uint64_t)i || n < 16 || n > 512 || p[n - 1] != (unsigned char)(n ^ (uint32_t)i))
                fail("block %ld arrived corrupted (seq %llu, size %u)", i, (unsigned long long)seq, n);
            *sum += n;
            free(p);
        }
        pthread_mutex_lock(&lock);
        tail++;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    total = arg_long(argc, argv, 1, 10000000);
    report_allocator();
    uint64_t sum = 0, expect = 0, rng = 99;
    for (long i = 0; i < total; i++)
        expect += rng_range(&rng, 16, 512);
    pthread_t p, c;
    double t0 = now_s();
    if (pthread_create(&c, NULL, consumer, &sum) != 0 || pthread_create(&p, NULL, producer, NULL) != 0)
        fail("pthread_create");
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    double t1 = now_s();
    if (sum != expect)
        fail("consumer saw %llu bytes, expected %llu", (unsigned long long)sum, (unsigned long long)expect);
    metric("ns_per_block", (t1 - t0) * 1e9 / (double)total, "ns");
    finish_ok();
    return 0;
}
