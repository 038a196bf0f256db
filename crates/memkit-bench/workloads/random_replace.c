/* random-replace: a steady-state random replacement. Each thread keeps a
 * live set of SLOTS blocks of random sizes (16..528 bytes); every step frees
 * one random live block (after checking its stamp) and allocates a new one
 * of a new random size in its place. The live set never changes size, so
 * every step exercises malloc and free at a random spot of many pages.
 * Usage: random_replace [threads] [steps per thread] [slots] */
#include "common.h"

struct job {
    long steps, slots, id;
    uint64_t done;
};

static void *run(void *arg)
{
    struct job *j = arg;
    uint64_t rng = 0x5eed + (uint64_t)j->id * 7919;
    unsigned char **ptr = xmalloc(sizeof *ptr * (size_t)j->slots);
    uint32_t *size = xmalloc(sizeof *size * (size_t)j->slots);
    for (long i = 0; i < j->slots; i++) {
        size[i] = (uint32_t)rng_range(&rng, 16, 528);
        ptr[i] = xmalloc(size[i]);
        memcpy(ptr[i], &i, sizeof i);
    }
    for (long s = 0; s < j->steps; s++) {
        long i = (long)(rng_next(&rng) % (uint64_t)j->slots);
        long stamp;
        memcpy(&stamp, ptr[i], sizeof stamp);
        if (stamp != i)
            fail("thread %ld slot %ld (%u bytes) was overwritten", j->id, i, size[i]);
        free(ptr[i]);
        size[i] = (uint32_t)rng_range(&rng, 16, 528);
        ptr[i] = xmalloc(size[i]);
        memcpy(ptr[i], &i, sizeof i);
        j->done++;
    }
    for (long i = 0; i < j->slots; i++)
        free(ptr[i]);
    free(ptr);
    free(size);
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 1);
    long steps = arg_long(argc, argv, 2, 20000000);
    long slots = arg_long(argc, argv, 3, 10000);
    report_allocator();
    struct job jobs[64];
    pthread_t tid[64];
    if (threads > 64)
        fail("at most 64 threads");
    double t0 = now_s();
    for (long t = 0; t < threads; t++) {
        jobs[t] = (struct job){steps, slots, t, 0};
        if (pthread_create(&tid[t], NULL, run, &jobs[t]) != 0)
            fail("pthread_create");
    }
    uint64_t total = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        total += jobs[t].done;
    }
    double t1 = now_s();
    if (total != (uint64_t)threads * (uint64_t)steps)
        fail("did %llu steps", (unsigned long long)total);
    metric("ns_per_step", (t1 - t0) * 1e9 / (double)total, "ns");
    finish_ok();
    return 0;
}
