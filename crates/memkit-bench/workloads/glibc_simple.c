/* glibc-simple: after the description of glibc's benchtests
 * bench-malloc-simple: allocate a batch of `count` blocks of one size,
 * write each, free them all in allocation order, repeat; for batch sizes
 * 25, 100, 400 and 1600 and block sizes 16, 64, 256 and 1024 B. The whole
 * grid runs first in the main thread and then in a second thread (glibc
 * measures its main arena and a thread arena separately; other allocators
 * see a fresh thread heap). Every combination does the same number of
 * malloc+free pairs.
 * Usage: glibc_simple [pairs_per_combination]
 * Metrics: ns_per_pair_main, ns_per_pair_thread. */
#include "common.h"

static const int counts[] = {25, 100, 400, 1600};
static const int sizes[] = {16, 64, 256, 1024};

struct job {
    long pairs;
    double seconds;
    uint64_t sum;
};

static void *grid(void *arg)
{
    struct job *j = arg;
    unsigned char **p = xmalloc(sizeof *p * 1600);
    double t0 = now_s();
    for (unsigned c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        for (unsigned z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            int n = counts[c], size = sizes[z];
            for (long rep = 0; rep < j->pairs / n; rep++) {
                for (int i = 0; i < n; i++) {
                    p[i] = xmalloc((size_t)size);
                    p[i][0] = (unsigned char)i;
                    p[i][size - 1] = (unsigned char)(i + size);
                }
                for (int i = 0; i < n; i++) {
                    if (p[i][0] != (unsigned char)i || p[i][size - 1] != (unsigned char)(i + size))
                        fail("block %d of a batch of %d x %d B overwritten", i, n, size);
                    j->sum += p[i][size - 1];
                    free(p[i]);
                }
            }
        }
    }
    j->seconds = now_s() - t0;
    free(p);
    return NULL;
}

static uint64_t expected(long pairs)
{
    uint64_t sum = 0;
    for (unsigned c = 0; c < sizeof counts / sizeof counts[0]; c++)
        for (unsigned z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
            for (int i = 0; i < counts[c]; i++)
                sum += (uint64_t)(pairs / counts[c]) * (unsigned char)(i + sizes[z]);
    return sum;
}

int main(int argc, char **argv)
{
    long pairs = arg_long(argc, argv, 1, 4000000);
    report_allocator();
    struct job main_job = {.pairs = pairs}, thread_job = {.pairs = pairs};
    grid(&main_job);
    pthread_t t;
    if (pthread_create(&t, NULL, grid, &thread_job) != 0)
        fail("pthread_create");
    pthread_join(t, NULL);
    uint64_t want = expected(pairs);
    if (main_job.sum != want || thread_job.sum != want)
        fail("checksums %llu / %llu, expected %llu", (unsigned long long)main_job.sum,
             (unsigned long long)thread_job.sum, (unsigned long long)want);
    double n = 0;
    for (unsigned c = 0; c < sizeof counts / sizeof counts[0]; c++)
        n += (double)(pairs / counts[c] * counts[c]) * (double)(sizeof sizes / sizeof sizes[0]);
    metric("ns_per_pair_main", main_job.seconds * 1e9 / n, "ns");
    metric("ns_per_pair_thread", thread_job.seconds * 1e9 / n, "ns");
    finish_ok();
    return 0;
}
