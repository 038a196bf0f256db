/* Thousands of short-lived threads: the memory of exited threads must be reused.
 *
 * TOTAL threads are created BATCH at a time. Each allocates ~1 MiB in small
 * blocks, frees some of them at once, hands some to the main thread (which
 * frees them one batch later, after the thread has exited) and frees the rest
 * just before it exits. At the end, VmRSS must stay below a bound: an
 * allocator that leaks the heaps of exited threads grows by ~GiBs here.
 *
 * Usage: churn [threads] [batch] [rss-limit-MiB]
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PER_THREAD_BYTES (1 << 20)
#define MAX_BLOCKS 16384

struct handoff {
    void **blocks;
    size_t n;
    uint64_t tag;
};

static long vm_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = atol(line + kl + 1);
            break;
        }
    fclose(f);
    return v;
}

static void *worker(void *arg) {
    struct handoff *h = arg;
    uint64_t x = h->tag * 0x9E3779B97F4A7C15ULL + 1;
    void **mine = malloc(MAX_BLOCKS * sizeof *mine);
    size_t n = 0, bytes = 0;
    while (bytes < PER_THREAD_BYTES && n < MAX_BLOCKS) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t size = 16 + (size_t)(x % 241); /* 16 .. 256 */
        unsigned char *p = malloc(size);
        if (!p) { fprintf(stderr, "churn: malloc failed\n"); abort(); }
        memset(p, (int)(h->tag & 0xff), size);
        mine[n++] = p;
        bytes += size;
    }
    /* Free every third block right away. */
    for (size_t i = 0; i < n; i += 3) {
        free(mine[i]);
        mine[i] = NULL;
    }
    /* Hand every 8th block to the main thread. */
    h->blocks = malloc((n / 8 + 1) * sizeof *h->blocks);
    h->n = 0;
    for (size_t i = 1; i < n; i += 8)
        if (mine[i]) {
            h->blocks[h->n++] = mine[i];
            mine[i] = NULL;
        }
    /* Free the rest at exit. */
    for (size_t i = 0; i < n; i++) free(mine[i]);
    free(mine);
    return NULL;
}

int main(int argc, char **argv) {
    int total = argc > 1 ? atoi(argv[1]) : 2000;
    int batch = argc > 2 ? atoi(argv[2]) : 4;
    long limit_mib = argc > 3 ? atol(argv[3]) : 200;
    if (total < 1 || batch < 1 || batch > 64) {
        fprintf(stderr, "usage: churn [threads] [batch<=64] [rss-limit-MiB]\n");
        return 2;
    }
    struct handoff prev[64], cur[64];
    memset(prev, 0, sizeof prev);
    long rss_after_first = -1;
    int created = 0, batches = 0;
    while (created < total) {
        int k = total - created < batch ? total - created : batch;
        pthread_t t[64];
        for (int i = 0; i < k; i++) {
            cur[i].tag = (uint64_t)created + (uint64_t)i;
            cur[i].blocks = NULL;
            cur[i].n = 0;
            if (pthread_create(&t[i], NULL, worker, &cur[i]) != 0) {
                fprintf(stderr, "churn: pthread_create failed after %d threads\n", created);
                return 1;
            }
        }
        for (int i = 0; i < k; i++) pthread_join(t[i], NULL);
        /* Free the previous batch's hand-offs now that those threads are long gone. */
        for (int i = 0; i < batch; i++) {
            for (size_t j = 0; j < prev[i].n; j++) {
                unsigned char *p = prev[i].blocks[j];
                if (p[0] != (unsigned char)(prev[i].tag & 0xff)) {
                    fprintf(stderr, "churn: handed-off block of thread %llu corrupted\n",
                            (unsigned long long)prev[i].tag);
                    return 1;
                }
                free(p);
            }
            free(prev[i].blocks);
            prev[i].blocks = NULL;
            prev[i].n = 0;
        }
        for (int i = 0; i < k; i++) prev[i] = cur[i];
        for (int i = k; i < batch; i++) prev[i].n = 0, prev[i].blocks = NULL;
        created += k;
        if (++batches == 10) rss_after_first = vm_kib("VmRSS");
    }
    for (int i = 0; i < batch; i++) {
        for (size_t j = 0; j < prev[i].n; j++) free(prev[i].blocks[j]);
        free(prev[i].blocks);
    }
    long rss = vm_kib("VmRSS"), hwm = vm_kib("VmHWM");
    printf("churn: %d threads (%d at a time): VmRSS after 10 batches %ld KiB, at the end %ld KiB, peak %ld KiB\n",
           total, batch, rss_after_first, rss, hwm);
    if (rss < 0 || hwm < 0) {
        fprintf(stderr, "churn: cannot read /proc/self/status\n");
        return 1;
    }
    if (rss > limit_mib * 1024 || hwm > limit_mib * 1024) {
        fprintf(stderr, "churn: FAIL: RSS %ld KiB (peak %ld KiB) exceeds %ld MiB: memory of exited threads is not reused\n",
                rss, hwm, limit_mib);
        return 1;
    }
    return 0;
}
