/* mstress: threads that churn objects and hand them to each other, after
 * the description of mimalloc's stress test (test-stress.c): rounds of
 * threads, each allocating objects of mostly small and occasionally large
 * sizes, keeping some in a private retained set, freeing others at once,
 * and exchanging objects with other threads through a shared transfer
 * array, so that a good share of frees are remote and many objects outlive
 * the thread that made them (the transfer array persists across rounds).
 * At the end of a round each thread frees its retained set except one
 * object in four, which it leaves in a per-slot "leftover" list for the
 * next round's thread in the same slot.
 * Usage: mstress [threads] [rounds] [steps_per_thread_per_round]
 * Metric: ns_per_step (wall time / all steps of all threads). */
#include "common.h"
#include <stdatomic.h>

#define TRANSFER 1000
#define RETAIN 512

/* Every object starts with this header; the last word repeats a tag of it. */
struct obj {
    uint64_t size;
    uint64_t key;
};

static _Atomic(struct obj *) transfer[TRANSFER];
static _Atomic uint64_t made, freed;

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 10000;
    if (r == 0)
        return (size_t)rng_range(rng, 64 * 1024, 1024 * 1024); /* rare huge */
    if (r < 100)
        return (size_t)rng_range(rng, 1024, 32 * 1024); /* 1%: large */
    return 8 * (size_t)rng_range(rng, 3, 40); /* 24..320 B */
}

static struct obj *make(uint64_t *rng, uint64_t key)
{
    size_t n = pick_size(rng);
    struct obj *o = xmalloc(n);
    o->size = n;
    o->key = key;
    uint64_t t = mix64(key ^ n);
    memcpy((unsigned char *)o + n - 8, &t, 8);
    /* A program writes what it allocates: touch one word per 4 KiB. */
    for (size_t off = 4096; off + 24 <= n; off += 4096)
        memcpy((unsigned char *)o + off, &key, 8);
    return o;
}

static void check_free(struct obj *o)
{
    size_t n = o->size;
    uint64_t t;
    if (n < 24 || n > 1024 * 1024)
        fail("object %p: corrupt header (size %zu)", (void *)o, n);
    memcpy(&t, (unsigned char *)o + n - 8, 8);
    if (t != mix64(o->key ^ n))
        fail("object %p (%zu bytes, key %llx): tail overwritten", (void *)o, n,
             (unsigned long long)o->key);
    for (size_t off = 4096; off + 24 <= n; off += 4096) {
        uint64_t k;
        memcpy(&k, (unsigned char *)o + off, 8);
        if (k != o->key)
            fail("object %p (%zu bytes): word at %zu overwritten", (void *)o, n, off);
    }
    free(o);
}

struct slot {
    pthread_t tid;
    long id, round, steps;
    struct obj *leftover[RETAIN / 4 + 1];
    int nleft;
};

static void *work(void *arg)
{
    struct slot *s = arg;
    uint64_t rng = mix64((uint64_t)s->round * 1000003 + (uint64_t)s->id);
    uint64_t key = ((uint64_t)s->round << 48) | ((uint64_t)s->id << 32);
    uint64_t nmade = 0, nfreed = 0;
    struct obj *retained[RETAIN] = {0};
    /* Adopt what the previous round's thread left. */
    for (int i = 0; i < s->nleft; i++)
        retained[i] = s->leftover[i];
    s->nleft = 0;
    for (long i = 0; i < s->steps; i++) {
        uint64_t r = rng_next(&rng) % 100;
        if (r < 40) {
            /* Short-lived: made and freed at once. */
            check_free(make(&rng, key++));
            nmade++, nfreed++;
        } else if (r < 70) {
            /* Retained: replaces a random member of the private set. */
            unsigned k = (unsigned)(rng_next(&rng) % RETAIN);
            if (retained[k] != NULL)
                check_free(retained[k]), nfreed++;
            retained[k] = make(&rng, key++);
            nmade++;
        } else if (r < 95) {
            /* Handed over: swapped into the transfer array; whatever was
             * there (usually another thread's) is freed or retained. */
            unsigned k = (unsigned)(rng_next(&rng) % TRANSFER);
            struct obj *old = atomic_exchange(&transfer[k], make(&rng, key++));
            nmade++;
            if (old != NULL) {
                unsigned j = (unsigned)(rng_next(&rng) % RETAIN);
                if (rng_next(&rng) % 2 == 0 || retained[j] != NULL) {
                    check_free(old), nfreed++;
                } else {
                    retained[j] = old;
                }
            }
        } else {
            /* Freed early: a retained object goes before its time. */
            unsigned k = (unsigned)(rng_next(&rng) % RETAIN);
            if (retained[k] != NULL)
                check_free(retained[k]), nfreed++, retained[k] = NULL;
        }
    }
    for (int k = 0; k < RETAIN; k++) {
        if (retained[k] == NULL)
            continue;
        if (k % 4 == 0)
            s->leftover[s->nleft++] = retained[k];
        else
            check_free(retained[k]), nfreed++;
    }
    atomic_fetch_add(&made, nmade);
    atomic_fetch_add(&freed, nfreed);
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 2);
    long rounds = arg_long(argc, argv, 2, 50);
    long steps = arg_long(argc, argv, 3, 100000);
    report_allocator();
    struct slot *slots = calloc((size_t)threads, sizeof *slots);
    if (slots == NULL)
        fail("calloc");
    double t0 = now_s();
    for (long r = 0; r < rounds; r++) {
        for (long t = 0; t < threads; t++) {
            slots[t].id = t;
            slots[t].round = r;
            slots[t].steps = steps;
            if (pthread_create(&slots[t].tid, NULL, work, &slots[t]) != 0)
                fail("pthread_create");
        }
        for (long t = 0; t < threads; t++)
            pthread_join(slots[t].tid, NULL);
    }
    double t1 = now_s();
    uint64_t rest = 0;
    for (long t = 0; t < threads; t++)
        for (int i = 0; i < slots[t].nleft; i++)
            check_free(slots[t].leftover[i]), rest++;
    for (unsigned k = 0; k < TRANSFER; k++) {
        struct obj *o = atomic_load(&transfer[k]);
        if (o != NULL)
            check_free(o), rest++;
    }
    uint64_t m = atomic_load(&made), f = atomic_load(&freed);
    if (f + rest != m)
        fail("made %llu objects, freed %llu during the run and %llu after", (unsigned long long)m,
             (unsigned long long)f, (unsigned long long)rest);
    free(slots);
    metric("ns_per_step", (t1 - t0) * 1e9 / ((double)threads * rounds * steps), "ns");
    finish_ok();
    return 0;
}
