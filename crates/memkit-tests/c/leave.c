/* leave: rounds of 200 threads that each allocate blocks (16-2015 B) and
 * exit, leaving them for the main thread to free; prints the RSS at the
 * worst round, after the rounds, after 1 s of idleness and after
 * malloc_trim(0), in kB.
 * Usage: leave [rounds] [blocks_per_thread] */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
static long rss_kb(void) {
    char buf[4096]; int fd = open("/proc/self/status", O_RDONLY); ssize_t n = read(fd, buf, sizeof buf - 1); close(fd);
    buf[n > 0 ? n : 0] = 0; char *v = strstr(buf, "VmRSS:"); return v ? atol(v + 6) : -1;
}
#define T 200
static int per;
static void **slots[T];
static void *worker(void *arg) {
    long id = (long)arg; unsigned s = id * 2654435761u + 1;
    void **b = malloc(per * sizeof(void *));
    for (int i = 0; i < per; i++) { s = s * 1103515245 + 12345; size_t n = 16 + (s >> 8) % 2000; b[i] = malloc(n); memset(b[i], 1, n); }
    slots[id] = b; return NULL;
}
int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20; per = argc > 2 ? atoi(argv[2]) : 200;
    long peak = 0;
    for (int r = 0; r < rounds; r++) {
        pthread_t th[T];
        for (long i = 0; i < T; i++) pthread_create(&th[i], NULL, worker, (void *)i);
        for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < T; i++) { for (int j = 0; j < per; j++) free(slots[i][j]); free(slots[i]); }
        long k = rss_kb(); if (k > peak) peak = k;
    }
    printf("RSS_PEAK_KB %ld\nRSS_AFTER_KB %ld\n", peak, rss_kb());
    sleep(1);
    printf("RSS_IDLE_KB %ld\n", rss_kb());
    malloc_trim(0);
    printf("RSS_TRIM_KB %ld\n", rss_kb());
    return 0;
}
