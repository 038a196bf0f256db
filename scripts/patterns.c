/* Allocation patterns outside the harness, each a few lines, timed
 * (wall, seconds) by the program itself: scripts/patterns runs every one
 * under glibc and the peers, interleaved, to look for cliffs (a pattern
 * where one allocator is several times slower than the others). Found
 * with it on 2026-12-03: calloc-big (memkit 1.88 s, glibc 0.14) and
 * huge-pairs (memkit 0.092 s, glibc 0.005), fixed since (BENCHMARKS.md,
 * "Patterns outside the harness").
 * Usage: patterns            list the patterns
 *        patterns NAME       run one, print its time */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <malloc.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static void *volatile sink;
#define KEEP(p) (sink = (p))
static unsigned long long rng = 88172645463325252ull;
static inline unsigned long long xr(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static void t_calloc_big(void) { /* calloc of 1..4 MiB, touch a little */
    for (int i = 0; i < 3000; i++) { size_t n = (1 + i % 4) << 20; char *p = calloc(1, n); KEEP(p); p[n/2] = 1; free(p); } }
static void t_realloc_double(void) { /* vector doubling to 64 MiB, 50 times */
    for (int r = 0; r < 50; r++) { size_t n = 16; char *p = malloc(n); while (n < (64u<<20)) { n *= 2; p = realloc(p, n); p[n-1] = 1; } free(p); } }
static void t_realloc_grow_big(void) { /* grow a 1 MiB buffer by 4 KiB steps to 64 MiB */
    for (int r = 0; r < 3; r++) { size_t n = 1<<20; char *p = malloc(n); while (n < (64u<<20)) { n += 4096; p = realloc(p, n); p[n-1] = 1; } free(p); } }
static void t_memalign_page(void) { void *v[256];
    for (int r = 0; r < 20000; r++) { for (int i = 0; i < 16; i++) { if (posix_memalign(&v[i], 4096, 100 + (xr() % 8000))) abort(); ((char*)v[i])[0]=1; } for (int i = 0; i < 16; i++) free(v[i]); } }
static void t_memalign_64(void) { void *v[64];
    for (int r = 0; r < 100000; r++) { for (int i = 0; i < 16; i++) { v[i] = aligned_alloc(64, 64 * (1 + xr() % 8)); KEEP(v[i]); } for (int i = 0; i < 16; i++) free(v[i]); } }
static void t_medium_pairs(void) { /* 32K-200K pairs */
    for (int i = 0; i < 200000; i++) { size_t n = 32768 + xr() % 200000; char *p = malloc(n); KEEP(p); p[0] = 1; p[n-1] = 2; free(p); } }
static void t_huge_pairs(void) { for (int i = 0; i < 20000; i++) { size_t n = (1u<<20) + xr() % (4u<<20); char *p = malloc(n); KEEP(p); p[0]=1; free(p); } }
static void t_strdup_churn(void) { char buf[200]; char *keep[4096] = {0};
    for (int i = 0; i < 3000000; i++) { int len = 1 + xr() % 120; memset(buf, 'a', len); buf[len] = 0; int k = xr() % 4096; free(keep[k]); keep[k] = strdup(buf); } for (int k = 0; k < 4096; k++) free(keep[k]); }
struct node { struct node *l, *r; long key; char pad[24]; };
static void t_tree(void) { /* build and free binary trees */
    for (int r = 0; r < 30; r++) { struct node *root = NULL; for (int i = 0; i < 100000; i++) { struct node *n = malloc(sizeof *n); n->l = n->r = NULL; n->key = xr(); struct node **pp = &root; while (*pp) pp = n->key < (*pp)->key ? &(*pp)->l : &(*pp)->r; *pp = n; }
      struct node *stack[200000]; int sp = 0; if (root) stack[sp++] = root; while (sp) { struct node *n = stack[--sp]; if (n->l) stack[sp++] = n->l; if (n->r) stack[sp++] = n->r; free(n); } } }
static void *many_worker(void *a) { (void)a; void *v[100]; for (int r = 0; r < 2000; r++) { for (int i = 0; i < 100; i++) v[i] = malloc(16 + (i * 37) % 500); for (int i = 0; i < 100; i++) free(v[i]); } return NULL; }
static void t_many_threads(void) { /* 64 threads at once, 4 times */
    for (int r = 0; r < 4; r++) { pthread_t t[64]; for (int i = 0; i < 64; i++) pthread_create(&t[i], NULL, many_worker, NULL); for (int i = 0; i < 64; i++) pthread_join(t[i], NULL); } }
static void t_fork(void) { void *v[2000]; for (int i = 0; i < 2000; i++) v[i] = malloc(100 + i);
    for (int r = 0; r < 300; r++) { pid_t p = fork(); if (p == 0) { for (int i = 0; i < 1000; i++) free(malloc(64)); _exit(0); } waitpid(p, NULL, 0); } for (int i = 0; i < 2000; i++) free(v[i]); }
static void t_trim(void) { for (int r = 0; r < 200; r++) { void *v[1000]; for (int i = 0; i < 1000; i++) v[i] = malloc(1000); for (int i = 0; i < 1000; i++) free(v[i]); malloc_trim(0); } }
static void t_usable(void) { long s = 0; for (int i = 0; i < 3000000; i++) { char *p = malloc(1 + i % 300); s += malloc_usable_size(p); free(p); } if (s == 1) puts(""); }
static void t_calloc_small(void) { for (int i = 0; i < 5000000; i++) { char *p = calloc(1, 1 + i % 512); KEEP(p); p[0] = 1; free(p); } }
static void *ping(void *a) { (void)a; return NULL; }
static void t_lifo_free_order(void) { /* alloc 1M blocks, free in reverse / random order */
    static void *v[1000000]; for (int r = 0; r < 3; r++) { for (int i = 0; i < 1000000; i++) v[i] = malloc(48); for (int i = 0; i < 1000000; i++) { int j = xr() % 1000000; void *t = v[i]; v[i] = v[j]; v[j] = t; } for (int i = 0; i < 1000000; i++) free(v[i]); } (void)ping; }
static void t_realloc_shrink(void) { for (int i = 0; i < 300000; i++) { char *p = malloc(4096); p = realloc(p, 100 + i % 100); p[0] = 1; free(p); } }

struct t { const char *name; void (*f)(void); } T[] = {
 {"calloc-big", t_calloc_big}, {"realloc-double", t_realloc_double}, {"realloc-grow-big", t_realloc_grow_big},
 {"memalign-page", t_memalign_page}, {"memalign-64", t_memalign_64}, {"medium-pairs", t_medium_pairs},
 {"huge-pairs", t_huge_pairs}, {"strdup-churn", t_strdup_churn}, {"tree", t_tree}, {"many-threads", t_many_threads},
 {"fork", t_fork}, {"trim", t_trim}, {"usable", t_usable}, {"calloc-small", t_calloc_small}, {"shuffle-free", t_lifo_free_order},
 {"realloc-shrink", t_realloc_shrink},
};
int main(int argc, char **argv) {
    if (argc < 2) { for (size_t i = 0; i < sizeof T / sizeof *T; i++) puts(T[i].name); return 0; }
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) if (!strcmp(argv[1], T[i].name)) { struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a); T[i].f(); clock_gettime(CLOCK_MONOTONIC, &b); printf("%.3f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9); return 0; }
    return 2;
}
