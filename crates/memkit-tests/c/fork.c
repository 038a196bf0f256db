/* fork() while other threads allocate, free, start and exit.
 *
 * Background: ALLOCATORS threads allocate and free continuously; a spawner
 * thread keeps creating short-lived threads that allocate and exit. Meanwhile
 * the main thread forks FORKS times. Each child arms alarm(5), frees blocks the
 * parent allocated before the fork, mallocs/reallocs/frees, starts a thread
 * that allocates too, then CHILD_THREADS threads at once that each allocate
 * and free blocks of every size the allocator threads use (new threads in the
 * child take over heaps the parent left: heaps of threads that do not exist in
 * the child, caught at fork in the middle of a malloc or free, must not hand
 * out broken free lists), and _exit(0)s. A child killed by SIGALRM deadlocked
 * (typically on an allocator lock held by a thread that does not exist in the
 * child), one killed by SIGABRT found a corrupted heap: both are failures.
 *
 * Usage: fork [forks]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ALLOCATORS 2

static atomic_int stop;
static atomic_long spawned;

static void *allocator_thread(void *arg) {
    uint64_t x = (uint64_t)(uintptr_t)arg * 7919 + 1;
    void *slots[256] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < 1000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            int k = (int)(x % 256);
            free(slots[k]);
            size_t size = (x >> 8) % 64 == 0 ? 65536 + (x >> 16) % 300000 : 1 + (x >> 16) % 4096;
            slots[k] = malloc(size);
            if (!slots[k]) abort();
            memset(slots[k], (int)k, size < 64 ? size : 64);
        }
    }
    for (int k = 0; k < 256; k++) free(slots[k]);
    return NULL;
}

static void *short_lived(void *arg) {
    (void)arg;
    void *v[64];
    for (int i = 0; i < 64; i++) {
        v[i] = malloc((size_t)(i + 1) * 48);
        if (!v[i]) abort();
        memset(v[i], i, (size_t)(i + 1) * 48);
    }
    for (int i = 0; i < 64; i += 2) free(v[i]);
    for (int i = 1; i < 64; i += 2) free(v[i]);
    return NULL;
}

static void *spawner_thread(void *arg) {
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pthread_t t[4];
        int n = 0;
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[n], NULL, short_lived, NULL) == 0) n++;
        /* One detached thread per round: it exits whenever it is done. */
        pthread_t d;
        if (pthread_create(&d, NULL, short_lived, NULL) == 0) pthread_detach(d);
        for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
        atomic_fetch_add(&spawned, n);
    }
    return NULL;
}

static void *child_thread(void *arg) {
    char *s = malloc(1000);
    if (!s) abort();
    memset(s, 'c', 999);
    s[999] = 0;
    char *t = realloc(s, 100000);
    if (!t) abort();
    free(t);
    return arg;
}

#define CHILD_THREADS 12

/* Blocks of every size up to 4096 (every small and medium class the
 * allocator threads use), a few of each at once, then freed. */
static void *child_sizes_thread(void *arg) {
    void *v[4];
    for (size_t size = 1; size <= 4096; size += 8) {
        for (int i = 0; i < 4; i++) {
            v[i] = malloc(size);
            if (!v[i]) abort();
            memset(v[i], 'k', size);
        }
        for (int i = 0; i < 4; i++) free(v[i]);
    }
    return arg;
}

static void child(void **inherited, int n) {
    alarm(5);
    for (int i = 0; i < n; i++) {
        unsigned char *p = inherited[i];
        if (p[0] != (unsigned char)i) _exit(3); /* corrupted across fork */
        free(p);
    }
    void *v[32];
    for (int i = 0; i < 32; i++) {
        v[i] = malloc((size_t)i * 100 + 1);
        if (!v[i]) _exit(4);
    }
    v[5] = realloc(v[5], 200000);
    if (!v[5]) _exit(4);
    for (int i = 0; i < 32; i++) free(v[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) _exit(5);
    pthread_join(t, NULL);
    pthread_t sized[CHILD_THREADS];
    for (int i = 0; i < CHILD_THREADS; i++)
        if (pthread_create(&sized[i], NULL, child_sizes_thread, NULL) != 0) _exit(5);
    for (int i = 0; i < CHILD_THREADS; i++) pthread_join(sized[i], NULL);
    void *big = calloc(1, 3 << 20);
    if (!big) _exit(4);
    free(big);
    _exit(0);
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 300;
    pthread_t alloc_t[ALLOCATORS], spawn_t;
    for (int i = 0; i < ALLOCATORS; i++)
        if (pthread_create(&alloc_t[i], NULL, allocator_thread, (void *)(uintptr_t)(i + 1)) != 0) return 1;
    if (pthread_create(&spawn_t, NULL, spawner_thread, NULL) != 0) return 1;

    int failed = 0;
    for (int f = 0; f < forks; f++) {
        void *inherited[8];
        for (int i = 0; i < 8; i++) {
            inherited[i] = malloc((size_t)(i + 1) * 700);
            memset(inherited[i], i, (size_t)(i + 1) * 700);
        }
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "fork: fork() failed: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0) child(inherited, 8);
        for (int i = 0; i < 8; i++) free(inherited[i]);
        int status;
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR) {
                perror("waitpid");
                return 1;
            }
        if (WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            fprintf(stderr, "fork: child %d (fork #%d) killed by signal %d (%s)%s\n", pid, f, sig, strsignal(sig),
                    sig == SIGALRM ? ": deadlocked in the child" : "");
            failed++;
        } else if (WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork: child %d (fork #%d) exited %d\n", pid, f, WEXITSTATUS(status));
            failed++;
        }
        if (failed >= 5) break;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < ALLOCATORS; i++) pthread_join(alloc_t[i], NULL);
    pthread_join(spawn_t, NULL);
    printf("fork: %d forks, %d failed children, %ld threads spawned meanwhile\n", forks, failed, (long)spawned);
    return failed ? 1 : 0;
}
