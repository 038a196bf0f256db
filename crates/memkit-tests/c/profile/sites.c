/* Allocation sites with known figures, for the profiler's exact tests
 * (built with -O0 so that no call is merged or removed).
 *
 *   sites: temp_site   1000 x 64 B, each freed before the next allocation
 *                      (temporary), none live at the peak or at exit;
 *          thread_site 5 x 777 B from a second thread, live at the peak,
 *                      freed by main before exit;
 *          peak_site   10 x 100000 B, all live at the peak, freed;
 *          leak_site   3 x 1000 B, allocated after the peak, never freed.
 *   fork:  leak_site 4 x 333 B in the parent; the child frees two of them,
 *          allocates 2 x 555 B at thread_site and exits (its own profile).
 *   serve: leak_site 6 x 2500 B, prints "READY", then allocates and
 *          frees in a loop until a signal ends it (a server).
 *   race:  4 threads at once (main, which recorded first, and 3 others
 *          started while it records) each make 200000 temp_site(48)
 *          pairs and keep 7 x 2000 B at peak_site, freed at the end:
 *          exact counts across the hand-over of the state's lock.
 *   exec:  runs argv[2] (with the rest as its arguments) after one
 *          leak_site(4242): a profile per image, both with this pid.
 *   aligned: for every alignment from 16 B to 64 MiB, aligned_site makes
 *          a 4242-byte block with posix_memalign, aligned_alloc and
 *          memalign (checked: alignment, malloc_usable_size, realloc keeps
 *          the bytes), all freed: 3 x 23 blocks allocated, none live at
 *          exit (the realloc'd copies are 5000 B blocks, freed too).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SITE __attribute__((noipa))

SITE void *temp_site(size_t n) { return malloc(n); }
SITE void *thread_site(size_t n) { return malloc(n); }
SITE void *peak_site(size_t n) { return malloc(n); }
SITE void *leak_site(size_t n) { return malloc(n); }

static void *kept[5];

static void *thread_main(void *arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) kept[i] = thread_site(777);
    return NULL;
}

static int sites(void) {
    for (int i = 0; i < 1000; i++) {
        volatile char *p = temp_site(64);
        p[0] = 1;
        free((void *)p);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0) return 2;
    pthread_join(t, NULL);
    void *peak[10];
    for (int i = 0; i < 10; i++) peak[i] = peak_site(100000);
    for (int i = 0; i < 10; i++) free(peak[i]);
    for (int i = 0; i < 3; i++) {
        volatile void *leak = leak_site(1000);
        (void)leak;
    }
    for (int i = 0; i < 5; i++) free(kept[i]);
    printf("END sites\n");
    return 0;
}

/* One alignment's three blocks; 0 when every check holds. */
SITE void *aligned_site(size_t align, int how) {
    void *p = NULL;
    if (how == 0) {
        if (posix_memalign(&p, align, 4242) != 0) return NULL;
    } else if (how == 1) {
        p = aligned_alloc(align, 4242);
    } else {
        p = memalign(align, 4242);
    }
    return p;
}

static int aligned(void) {
    for (size_t align = 16; align <= (64u << 20); align *= 2) {
        for (int how = 0; how < 3; how++) {
            unsigned char *p = aligned_site(align, how);
            if (!p) return 10;
            if ((uintptr_t)p % align != 0) return 11;
            if (malloc_usable_size(p) < 4242) {
                fprintf(stderr, "aligned: malloc_usable_size %zu for align %zu\n", malloc_usable_size(p), align);
                return 12;
            }
            memset(p, 0x5a, 4242);
            unsigned char *q = realloc(p, 5000);
            if (!q) {
                fprintf(stderr, "aligned: realloc failed for align %zu\n", align);
                return 13;
            }
            for (int i = 0; i < 4242; i++)
                if (q[i] != 0x5a) return 14;
            free(q);
        }
    }
    printf("END aligned\n");
    return 0;
}

static volatile int go;

static void *race_main(void *arg) {
    void **keep = arg;
    while (!go) {
    }
    for (int i = 0; i < 200000; i++) {
        volatile char *p = temp_site(48);
        p[0] = 1;
        free((void *)p);
        if (i % 20000 == 0 && i / 20000 < 7) keep[i / 20000] = peak_site(2000);
    }
    return NULL;
}

static int race(void) {
    void *keep[4][7];
    pthread_t t[3];
    free(temp_site(48)); /* main records first */
    for (int k = 0; k < 3; k++)
        if (pthread_create(&t[k], NULL, race_main, keep[k + 1]) != 0) return 2;
    go = 1;
    race_main(keep[0]);
    for (int k = 0; k < 3; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 7; i++) free(keep[k][i]);
    printf("END race\n");
    return 0;
}

static int forked(void) {
    void *inherited[4];
    for (int i = 0; i < 4; i++) inherited[i] = leak_site(333);
    fflush(stdout);
    pid_t c = fork();
    if (c < 0) return 2;
    if (c == 0) {
        free(inherited[0]);
        free(inherited[1]);
        for (int i = 0; i < 2; i++) {
            volatile void *p = thread_site(555);
            (void)p;
        }
        exit(0);
    }
    int st = 0;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 3;
    printf("END fork %d\n", (int)c);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "sites";
    if (strcmp(mode, "sites") == 0) return sites();
    if (strcmp(mode, "fork") == 0) return forked();
    if (strcmp(mode, "race") == 0) return race();
    if (strcmp(mode, "aligned") == 0) return aligned();
    if (strcmp(mode, "serve") == 0) {
        for (int i = 0; i < 6; i++) {
            volatile void *p = leak_site(2500);
            (void)p;
        }
        printf("READY\n");
        fflush(stdout);
        for (;;) {
            volatile char *p = temp_site(64);
            p[0] = 1;
            free((void *)p);
        }
    }
    if (strcmp(mode, "exec") == 0 && argc > 2) {
        volatile void *p = leak_site(4242);
        (void)p;
        execv(argv[2], argv + 2);
        perror("execv");
        return 4;
    }
    fprintf(stderr, "usage: sites [sites|fork|exec PROG ARGS...]\n");
    return 2;
}
