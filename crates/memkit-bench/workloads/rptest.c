/* rptest: random sizes and cross-thread frees, after the description of
 * rpmalloc's benchmark. Each thread runs loops; a loop first frees the
 * batch the neighbouring thread handed it, then allocates `count` blocks of
 * random size (most small, some up to 16000 B), replaces random members of
 * the batch `count / 2` times, and finally hands half of the batch (every
 * other block) to the next thread and frees the rest itself in reverse
 * order. So about half of all blocks die on a thread that did not make
 * them, in bulk, while their owner is busy allocating. At most AHEAD
 * batches wait in a thread's inbox: a thread that is further ahead frees
 * its own inbox and waits, and a thread whose receiver has finished frees
 * its batch itself, so that how much memory is live does not depend on how
 * the two threads happen to be scheduled.
 * Usage: rptest [threads] [loops] [count]
 * Metric: ns_per_block (wall time / blocks allocated). */
#include "common.h"
#include <stdatomic.h>

#define MAX_SIZE 16000
#define AHEAD 4

struct hand {
    struct hand *next;
    long n;
    unsigned char *p[];
};

struct thread {
    pthread_t tid;
    long id, loops, count;
    pthread_mutex_t lock;
    pthread_cond_t drained;
    struct hand *inbox; /* batches handed to this thread */
    int pending;        /* batches in the inbox */
    int done;           /* the thread has finished its loops */
    uint64_t made, freed;
};

static struct thread *ts;
static long nthreads;

static uint32_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 100;
    if (r < 80)
        return (uint32_t)rng_range(rng, 16, 256);
    if (r < 95)
        return (uint32_t)rng_range(rng, 257, 2048);
    return (uint32_t)rng_range(rng, 2049, MAX_SIZE);
}

static unsigned char *make(uint64_t *rng, uint64_t key)
{
    uint32_t n = pick_size(rng);
    unsigned char *p = xmalloc(n);
    memcpy(p, &n, 4);
    memcpy(p + 4, &key, 8);
    p[n - 1] = (unsigned char)(mix64(key) ^ n);
    return p;
}

static void check_free(unsigned char *p)
{
    uint32_t n;
    uint64_t key;
    memcpy(&n, p, 4);
    memcpy(&key, p + 4, 8);
    if (n < 16 || n > MAX_SIZE || p[n - 1] != (unsigned char)(mix64(key) ^ n))
        fail("block %p (size %u, key %llx) overwritten", (void *)p, n, (unsigned long long)key);
    free(p);
}

static long drain(struct thread *t)
{
    pthread_mutex_lock(&t->lock);
    struct hand *h = t->inbox;
    t->inbox = NULL;
    t->pending = 0;
    pthread_cond_broadcast(&t->drained);
    pthread_mutex_unlock(&t->lock);
    long n = 0;
    while (h != NULL) {
        struct hand *next = h->next;
        for (long i = 0; i < h->n; i++)
            check_free(h->p[i]);
        n += h->n;
        free(h);
        h = next;
    }
    return n;
}

static void *run(void *arg)
{
    struct thread *t = arg;
    struct thread *to = &ts[(t->id + 1) % nthreads];
    uint64_t rng = mix64(0x7270 + (uint64_t)t->id);
    uint64_t key = (uint64_t)t->id << 40;
    unsigned char **batch = xmalloc(sizeof *batch * (size_t)t->count);
    for (long l = 0; l < t->loops; l++) {
        t->freed += (uint64_t)drain(t);
        for (long i = 0; i < t->count; i++)
            batch[i] = make(&rng, key++);
        t->made += (uint64_t)t->count;
        for (long i = 0; i < t->count / 2; i++) {
            long k = (long)(rng_next(&rng) % (uint64_t)t->count);
            check_free(batch[k]);
            batch[k] = make(&rng, key++);
        }
        t->made += (uint64_t)(t->count / 2);
        t->freed += (uint64_t)(t->count / 2);
        long half = (t->count + 1) / 2;
        struct hand *h = xmalloc(sizeof *h + sizeof h->p[0] * (size_t)half);
        h->n = 0;
        for (long i = 0; i < t->count; i += 2)
            h->p[h->n++] = batch[i];
        /* Wait while the receiver is AHEAD batches behind (freeing our own
         * inbox first, so that two waiting threads release each other). */
        pthread_mutex_lock(&to->lock);
        while (to->pending >= AHEAD && !to->done && to != t) {
            pthread_mutex_unlock(&to->lock);
            t->freed += (uint64_t)drain(t);
            pthread_mutex_lock(&to->lock);
            if (to->pending >= AHEAD && !to->done)
                pthread_cond_wait(&to->drained, &to->lock);
        }
        if (to->done) {
            /* Nobody will take it: free it here rather than let it pile up. */
            pthread_mutex_unlock(&to->lock);
            for (long i = 0; i < h->n; i++)
                check_free(h->p[i]);
            t->freed += (uint64_t)h->n;
            free(h);
        } else {
            h->next = to->inbox;
            to->inbox = h;
            to->pending++;
            pthread_mutex_unlock(&to->lock);
        }
        for (long i = t->count - 1; i >= 0; i--)
            if (i % 2 == 1)
                check_free(batch[i]), t->freed++;
    }
    free(batch);
    pthread_mutex_lock(&t->lock);
    t->done = 1;
    pthread_cond_broadcast(&t->drained);
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int main(int argc, char **argv)
{
    nthreads = arg_long(argc, argv, 1, 2);
    long loops = arg_long(argc, argv, 2, 2000);
    long count = arg_long(argc, argv, 3, 1000);
    report_allocator();
    ts = calloc((size_t)nthreads, sizeof *ts);
    if (ts == NULL)
        fail("calloc");
    for (long i = 0; i < nthreads; i++) {
        ts[i] = (struct thread){.id = i, .loops = loops, .count = count};
        pthread_mutex_init(&ts[i].lock, NULL);
        pthread_cond_init(&ts[i].drained, NULL);
    }
    double t0 = now_s();
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&ts[i].tid, NULL, run, &ts[i]) != 0)
            fail("pthread_create");
    for (long i = 0; i < nthreads; i++)
        pthread_join(ts[i].tid, NULL);
    double t1 = now_s();
    uint64_t made = 0, freed = 0;
    for (long i = 0; i < nthreads; i++) {
        freed += (uint64_t)drain(&ts[i]);
        made += ts[i].made;
        freed += ts[i].freed;
    }
    if (made != freed)
        fail("made %llu blocks, freed %llu", (unsigned long long)made, (unsigned long long)freed);
    free(ts);
    metric("ns_per_block", (t1 - t0) * 1e9 / (double)made, "ns");
    finish_ok();
    return 0;
}
