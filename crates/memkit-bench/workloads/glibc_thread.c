/* glibc-thread: after the description of glibc's benchtests
 * bench-malloc-thread: each thread owns a working set of 1024 slots and
 * repeatedly frees a random slot and allocates a new block for it, with
 * sizes between 4 B and 32 KiB drawn with probability proportional to
 * 1/size (many tiny blocks, a long tail of big ones). The random slot and
 * size sequence is drawn before the clock starts, as glibc does, so the
 * loop is malloc and free and little else. glibc runs for a fixed time and
 * counts iterations; this runs a fixed number of iterations.
 * Usage: glibc_thread [threads] [iterations_per_thread]
 * Metric: ns_per_iteration (wall time / iterations of one thread). */
#include "common.h"

#define WS 1024
#define MIN_SIZE 4
#define MAX_SIZE 32768
#define SEQ 65536 /* length of the precomputed (slot, size) sequence */

static double cdf[MAX_SIZE - MIN_SIZE + 1];

static void build_cdf(void)
{
    double acc = 0;
    for (int s = MIN_SIZE; s <= MAX_SIZE; s++) {
        acc += 1.0 / s;
        cdf[s - MIN_SIZE] = acc;
    }
    for (int s = MIN_SIZE; s <= MAX_SIZE; s++)
        cdf[s - MIN_SIZE] /= acc;
}

static uint32_t draw_size(uint64_t *rng)
{
    double u = (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    int lo = 0, hi = MAX_SIZE - MIN_SIZE;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)(lo + MIN_SIZE);
}

struct job {
    pthread_t tid;
    long id, iters;
    uint16_t slot[SEQ];
    uint32_t size[SEQ];
    uint64_t checked;
};

static void stamp(unsigned char *p, uint32_t n, unsigned slot)
{
    p[0] = (unsigned char)slot;
    p[n - 1] = (unsigned char)(n ^ slot);
}

static void verify(const unsigned char *p, uint32_t n, unsigned slot, long id)
{
    if (p[0] != (unsigned char)slot || p[n - 1] != (unsigned char)(n ^ slot))
        fail("thread %ld slot %u (%u bytes) overwritten", id, slot, n);
}

static void *run(void *arg)
{
    struct job *j = arg;
    unsigned char *ws[WS];
    uint32_t len[WS];
    for (unsigned i = 0; i < WS; i++) {
        len[i] = j->size[i];
        ws[i] = xmalloc(len[i]);
        stamp(ws[i], len[i], i);
    }
    for (long it = 0; it < j->iters; it++) {
        unsigned k = (unsigned)(it % SEQ);
        unsigned s = j->slot[k];
        verify(ws[s], len[s], s, j->id);
        free(ws[s]);
        len[s] = j->size[k];
        ws[s] = xmalloc(len[s]);
        stamp(ws[s], len[s], s);
        j->checked++;
    }
    for (unsigned i = 0; i < WS; i++) {
        verify(ws[i], len[i], i, j->id);
        free(ws[i]);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 2);
    long iters = arg_long(argc, argv, 2, 20000000);
    report_allocator();
    build_cdf();
    struct job *js = calloc((size_t)threads, sizeof *js);
    if (js == NULL)
        fail("calloc");
    for (long t = 0; t < threads; t++) {
        uint64_t rng = mix64(0x61bc + (uint64_t)t);
        js[t].id = t;
        js[t].iters = iters;
        for (unsigned k = 0; k < SEQ; k++) {
            js[t].slot[k] = (uint16_t)(rng_next(&rng) % WS);
            js[t].size[k] = draw_size(&rng);
        }
    }
    double t0 = now_s();
    for (long t = 0; t < threads; t++)
        if (pthread_create(&js[t].tid, NULL, run, &js[t]) != 0)
            fail("pthread_create");
    for (long t = 0; t < threads; t++)
        pthread_join(js[t].tid, NULL);
    double t1 = now_s();
    for (long t = 0; t < threads; t++)
        if (js[t].checked != (uint64_t)iters)
            fail("thread %ld did %llu iterations, expected %ld", t,
                 (unsigned long long)js[t].checked, iters);
    free(js);
    metric("ns_per_iteration", (t1 - t0) * 1e9 / (double)iters, "ns");
    finish_ok();
    return 0;
}
