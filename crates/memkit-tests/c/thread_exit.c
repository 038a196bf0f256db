/* Allocation during thread exit.
 *
 * glibc runs pthread key destructors in key order (and repeats them while
 * values are set, up to PTHREAD_DESTRUCTOR_ITERATIONS), and calls free()
 * itself afterwards (dynamic TLS, DTV). An allocator's own key destructor
 * may run before or after the program's: these destructors malloc, free
 * blocks the thread allocated earlier, free blocks of other threads, and set
 * their key again for another round. Keys are created both before the first
 * allocation of the process and long after.
 *
 * Usage: thread_exit [threads] [rss-limit-MiB]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_key_t early_key, late_key;
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static void *shared_block; /* freed by the next exiting thread */

struct state {
    pthread_key_t key;
    int rounds;
    unsigned char *blocks[32];
};

static void destructor(void *v) {
    struct state *st = v;
    for (int i = 0; i < 32; i++) {
        if (st->blocks[i] && st->blocks[i][0] != (unsigned char)i) {
            fprintf(stderr, "thread_exit: block %d corrupted in destructor\n", i);
            abort();
        }
        free(st->blocks[i]);
        st->blocks[i] = NULL;
    }
    /* Allocate and free during teardown. */
    char *tmp = malloc(1000);
    if (!tmp) abort();
    memset(tmp, 1, 1000);
    tmp = realloc(tmp, 50000);
    if (!tmp) abort();
    free(tmp);
    /* Hand a block to whoever exits next, free the one left by the previous thread. */
    void *mine = malloc(256);
    if (!mine) abort();
    memset(mine, 0x5a, 256);
    pthread_mutex_lock(&shared_lock);
    void *prev = shared_block;
    shared_block = mine;
    pthread_mutex_unlock(&shared_lock);
    free(prev);
    if (++st->rounds < 3) {
        /* Set the key again: glibc runs this destructor another round. */
        for (int i = 0; i < 32; i++) {
            st->blocks[i] = malloc((size_t)(i + 1) * 40);
            if (!st->blocks[i]) abort();
            st->blocks[i][0] = (unsigned char)i;
        }
        pthread_setspecific(st->key, st);
        return;
    }
    free(st);
}

static void *worker(void *arg) {
    (void)arg;
    for (int k = 0; k < 2; k++) {
        struct state *st = calloc(1, sizeof *st);
        if (!st) abort();
        for (int i = 0; i < 32; i++) {
            st->blocks[i] = malloc((size_t)(i + 1) * 100);
            if (!st->blocks[i]) abort();
            st->blocks[i][0] = (unsigned char)i;
        }
        st->key = k ? late_key : early_key;
        pthread_setspecific(st->key, st);
    }
    return NULL;
}

static long vm_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) v = atol(line + 6);
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2000;
    long limit_mib = argc > 2 ? atol(argv[2]) : 64;
    if (pthread_key_create(&early_key, destructor) != 0) return 1;
    /* Plenty of allocation (and so allocator setup) before the late key. */
    void *warm[100];
    for (int i = 0; i < 100; i++) warm[i] = malloc(100);
    for (int i = 0; i < 100; i++) free(warm[i]);
    pthread_t t0;
    pthread_create(&t0, NULL, worker, NULL); /* the allocator has seen threads */
    pthread_join(t0, NULL);
    if (pthread_key_create(&late_key, destructor) != 0) return 1;
    for (int i = 0; i < threads; i += 4) {
        pthread_t t[4];
        for (int j = 0; j < 4; j++)
            if (pthread_create(&t[j], NULL, worker, NULL) != 0) {
                fprintf(stderr, "thread_exit: pthread_create failed\n");
                return 1;
            }
        for (int j = 0; j < 4; j++) pthread_join(t[j], NULL);
    }
    free(shared_block);
    long rss = vm_rss_kib();
    printf("thread_exit: %d threads ok, VmRSS %ld KiB\n", threads, rss);
    if (rss > limit_mib * 1024) {
        fprintf(stderr, "thread_exit: FAIL: VmRSS %ld KiB > %ld MiB: memory allocated during thread exit leaks\n", rss,
                limit_mib);
        return 1;
    }
    return 0;
}
