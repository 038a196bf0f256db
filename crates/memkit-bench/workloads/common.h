/* Shared helpers for memkit-bench's workload programs.
 *
 * Every workload is a standalone C program that the harness compiles with
 * `gcc -O2 -fno-builtin -pthread` and runs under each allocator (LD_PRELOAD).
 * Protocol on stdout, one item per line:
 *   allocator PATH          - the object that `malloc` bound to (dladdr)
 *   metric NAME VALUE UNIT  - an extra figure for the report
 *   ok                      - the last line: every self-check passed
 * A failed self-check prints `FAIL: ...` on stderr and exits with status 1.
 */
#ifndef MEMKIT_BENCH_COMMON_H
#define MEMKIT_BENCH_COMMON_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* splitmix64: small, fast and good enough to drive sizes and choices. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi] (inclusive). */
static inline uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
    return lo + rng_next(s) % (hi - lo + 1);
}

/* A well-mixed 64-bit tag for value `x` (used to stamp and check blocks). */
static inline uint64_t mix64(uint64_t x)
{
    uint64_t s = x;
    return rng_next(&s);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stdout);
    exit(1);
}

/* malloc that treats NULL as a failure of the run. */
static inline void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        fail("malloc(%zu) returned NULL", n);
    return p;
}

static inline void *xrealloc(void *old, size_t n)
{
    void *p = realloc(old, n);
    if (p == NULL)
        fail("realloc(%p, %zu) returned NULL", old, n);
    return p;
}

__attribute__((unused)) static void metric(const char *name, double value, const char *unit)
{
    printf("metric %s %.6g %s\n", name, value, unit);
}

/* Prints which shared object `malloc` resolved to, so the harness can check
 * that LD_PRELOAD really took effect. */
static void report_allocator(void)
{
    void *(*volatile f)(size_t) = malloc;
    Dl_info info;
    if (dladdr((void *)f, &info) != 0 && info.dli_fname != NULL)
        printf("allocator %s\n", info.dli_fname);
    else
        printf("allocator unknown\n");
}

/* Resident set size of this process now, in KiB (from /proc/self/statm). */
__attribute__((unused)) static long rss_kib(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* argv[i] as a positive integer, or `def` when absent. */
__attribute__((unused)) static long arg_long(int argc, char **argv, int i, long def)
{
    if (i >= argc)
        return def;
    char *end = NULL;
    long v = strtol(argv[i], &end, 10);
    if (end == argv[i] || *end != '\0' || v <= 0)
        fail("argument %d: expected a positive integer, got '%s'", i, argv[i]);
    return v;
}

static void finish_ok(void)
{
    printf("ok\n");
    fflush(stdout);
}

#endif
