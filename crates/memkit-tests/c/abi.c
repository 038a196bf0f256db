/* glibc 2.36 malloc ABI semantics, checked one assertion at a time.
 *
 * Must pass on plain glibc and under LD_PRELOAD=libmemkit.so.
 * Build: gcc -O1 -g -fno-builtin -pthread abi.c -o abi
 * Exit 0 on success; otherwise prints every failed check and exits 1.
 */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Newer (C23 / glibc 2.39+) entry points: glibc 2.36 headers lack them, so
 * they are looked up at run time and only checked when exported. */
extern void free_sized(void *ptr, size_t size) __attribute__((weak));
extern void free_aligned_sized(void *ptr, size_t alignment, size_t size) __attribute__((weak));
extern void cfree(void *ptr) __attribute__((weak));
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);
typedef void (*cfree_fn)(void *);

static int failures;
static int checks;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

static int is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static long rss_kib(void) {
    /* /proc/self/statm: size resident shared ... (pages). Read with a raw fd
     * so that the measurement itself allocates nothing. */
    char buf[256];
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long size = 0, resident = 0;
    if (!fgets(buf, sizeof buf, f) || sscanf(buf, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_malloc_zero(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL, "malloc(0) returned %p, %p", a, b);
    CHECK(a != b, "malloc(0) twice returned the same pointer %p", a);
    CHECK(is_aligned(a, 16) && is_aligned(b, 16), "malloc(0) not 16-aligned: %p %p", a, b);
    free(a);
    free(b);
}

static void test_realloc_edges(void) {
    void *p = malloc(100);
    CHECK(p != NULL, "malloc(100)");
    errno = 0;
    void *q = realloc(p, 0);
    CHECK(q == NULL, "realloc(p, 0) returned %p, expected NULL (glibc frees)", q);
    if (q) free(q);

    p = realloc(NULL, 200);
    CHECK(p != NULL, "realloc(NULL, 200) returned NULL");
    if (p) {
        CHECK(is_aligned(p, 16), "realloc(NULL, 200) not 16-aligned: %p", p);
        memset(p, 0x5a, 200);
        CHECK(malloc_usable_size(p) >= 200, "usable %zu < 200", malloc_usable_size(p));
        free(p);
    }

    /* Growing and shrinking keep the contents. */
    unsigned char *r = malloc(10);
    for (int i = 0; i < 10; i++) r[i] = (unsigned char)i;
    size_t sizes[] = {20, 100, 5000, 300000, 2 << 20, 64, 7};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        r = realloc(r, sizes[k]);
        CHECK(r != NULL, "realloc to %zu", sizes[k]);
        if (!r) return;
        size_t keep = sizes[k] < 10 ? sizes[k] : 10;
        for (size_t i = 0; i < keep; i++)
            CHECK(r[i] == (unsigned char)i, "realloc to %zu lost byte %zu", sizes[k], i);
    }
    free(r);
}

static void test_overflow(void) {
    errno = 0;
    void *p = calloc(SIZE_MAX / 2, 3);
    CHECK(p == NULL && errno == ENOMEM, "calloc(SIZE_MAX/2, 3) = %p errno %d", p, errno);

    errno = 0;
    p = reallocarray(NULL, SIZE_MAX / 2, 3);
    CHECK(p == NULL && errno == ENOMEM, "reallocarray(NULL, SIZE_MAX/2, 3) = %p errno %d", p, errno);

    unsigned char *keep = malloc(32);
    memset(keep, 7, 32);
    unsigned char *volatile keep_alias = keep; /* the old block stays valid when reallocarray fails */
    errno = 0;
    p = reallocarray(keep, SIZE_MAX / 4, 8);
    CHECK(p == NULL && errno == ENOMEM, "reallocarray(p, SIZE_MAX/4, 8) = %p errno %d", p, errno);
    CHECK(keep_alias[31] == 7, "failed reallocarray damaged the old block");
    free(keep_alias);

    errno = 0;
    p = malloc((size_t)64 << 40);
    CHECK(p == NULL && errno == ENOMEM, "malloc(64 TiB) = %p errno %d", p, errno);
    free(p);

    errno = 0;
    p = malloc(SIZE_MAX);
    CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX) = %p errno %d", p, errno);

    errno = 0;
    p = malloc(SIZE_MAX - 4096);
    CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX-4096) = %p errno %d", p, errno);

    errno = 0;
    p = calloc(1, (size_t)64 << 40);
    CHECK(p == NULL && errno == ENOMEM, "calloc(1, 64 TiB) = %p errno %d", p, errno);
    free(p);

    void *small = malloc(16);
    errno = 0;
    p = realloc(small, (size_t)64 << 40);
    CHECK(p == NULL && errno == ENOMEM, "realloc(p, 64 TiB) = %p errno %d", p, errno);
    if (p) free(p); else free(small);

    void *al = (void *)1;
    int rc = posix_memalign(&al, 4096, (size_t)64 << 40);
    CHECK(rc == ENOMEM, "posix_memalign(4096, 64 TiB) returned %d", rc);
    if (rc == 0) free(al);
}

static void test_posix_memalign(void) {
    size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 4095, 4097};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = (void *)0x1234;
        int rc = posix_memalign(&p, bad[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(alignment %zu) returned %d, expected EINVAL", bad[i], rc);
        CHECK(p == (void *)0x1234, "posix_memalign(alignment %zu) failed but wrote *memptr", bad[i]);
    }
    for (size_t a = sizeof(void *); a <= ((size_t)1 << 22); a <<= 1) {
        size_t sizes[] = {0, 1, a / 2 + 1, a, 3 * a + 5, 100000};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            void *p = NULL;
            int rc = posix_memalign(&p, a, sizes[k]);
            CHECK(rc == 0 && p != NULL, "posix_memalign(%zu, %zu) returned %d", a, sizes[k], rc);
            if (rc) continue;
            CHECK(is_aligned(p, a), "posix_memalign(%zu, %zu) = %p misaligned", a, sizes[k], p);
            CHECK(malloc_usable_size(p) >= sizes[k], "posix_memalign(%zu, %zu): usable %zu", a, sizes[k],
                  malloc_usable_size(p));
            if (sizes[k]) memset(p, 0xcd, sizes[k]);
            /* Even a zero-byte aligned block is a real block: realloc keeps it alive. */
            void *q = realloc(p, sizes[k] + 100);
            CHECK(q != NULL, "realloc(posix_memalign(%zu, %zu), %zu) returned NULL", a, sizes[k],
                  sizes[k] + 100);
            free(q ? q : p);
        }
    }
}

static void test_other_aligned(void) {
    void *p = aligned_alloc(3, 10);
    CHECK(p != NULL, "aligned_alloc(3, 10) returned NULL (glibc 2.36 treats it like memalign)");
    if (p) { memset(p, 1, 10); free(p); }

    for (size_t a = 1; a <= ((size_t)1 << 20); a <<= 1) {
        p = aligned_alloc(a, 3 * a);
        CHECK(p != NULL && is_aligned(p, a), "aligned_alloc(%zu, %zu) = %p", a, 3 * a, p);
        if (p) { memset(p, 2, 3 * a); free(p); }
        p = memalign(a, 100);
        CHECK(p != NULL && is_aligned(p, a), "memalign(%zu, 100) = %p", a, p);
        if (p) { memset(p, 3, 100); free(p); }
    }

    p = memalign(24, 100);
    CHECK(p != NULL && is_aligned(p, 32), "memalign(24, 100) = %p, expected 32-aligned", p);
    free(p);
    p = memalign(100, 10);
    CHECK(p != NULL && is_aligned(p, 128), "memalign(100, 10) = %p, expected 128-aligned", p);
    free(p);
    p = memalign(0, 10);
    CHECK(p != NULL && is_aligned(p, 16), "memalign(0, 10) = %p", p);
    free(p);

    long page = sysconf(_SC_PAGESIZE);
    p = valloc(1);
    CHECK(p != NULL && is_aligned(p, (size_t)page), "valloc(1) = %p not page-aligned", p);
    free(p);
    p = valloc(3 * page + 1);
    CHECK(p != NULL && is_aligned(p, (size_t)page), "valloc(3 pages + 1) = %p", p);
    if (p) memset(p, 4, 3 * page + 1);
    free(p);

    p = pvalloc(1);
    CHECK(p != NULL && is_aligned(p, (size_t)page), "pvalloc(1) = %p not page-aligned", p);
    if (p) {
        CHECK(malloc_usable_size(p) >= (size_t)page, "pvalloc(1): usable %zu < page", malloc_usable_size(p));
        memset(p, 5, (size_t)page);
    }
    free(p);
    p = pvalloc(page + 1);
    CHECK(p != NULL && is_aligned(p, (size_t)page) && malloc_usable_size(p) >= 2 * (size_t)page,
          "pvalloc(page+1) = %p usable %zu", p, p ? malloc_usable_size(p) : 0);
    if (p) memset(p, 6, 2 * page);
    free(p);
}

static void test_free_errno(void) {
    void *p = malloc(123);
    void *big = malloc(8 << 20);
    errno = 4321;
    free(p);
    CHECK(errno == 4321, "free(small) changed errno to %d", errno);
    free(NULL);
    CHECK(errno == 4321, "free(NULL) changed errno to %d", errno);
    free(big);
    CHECK(errno == 4321, "free(8 MiB) changed errno to %d", errno);

    /* Lots of frees that may trigger purging / unmapping. */
    enum { N = 4096 };
    static void *v[N];
    for (int i = 0; i < N; i++) v[i] = malloc((size_t)(i % 64 + 1) * 512);
    errno = 77;
    for (int i = 0; i < N; i++) free(v[i]);
    CHECK(errno == 77, "a burst of frees changed errno to %d", errno);
    errno = 0;
}

static void test_calloc_zero(void) {
    enum { N = 512 };
    static void *v[N];
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        size_t s = (size_t)16 << (i % 13); /* 16 .. 64 KiB */
        s += (size_t)(i * 7) % 13;
        if (i == N - 1) s = (1 << 20) + 4096 + 17; /* 1 MiB+ */
        if (i == N - 2) s = (3 << 20) + 5;
        sizes[i] = s;
        v[i] = malloc(s);
        CHECK(v[i] != NULL, "malloc(%zu)", s);
        if (v[i]) memset(v[i], 0xAA, malloc_usable_size(v[i]));
    }
    for (int i = 0; i < N; i++) free(v[i]);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            unsigned char *c = calloc(1, sizes[i]);
            CHECK(c != NULL, "calloc(%zu)", sizes[i]);
            if (!c) continue;
            size_t bad = SIZE_MAX;
            for (size_t k = 0; k < sizes[i]; k++)
                if (c[k]) { bad = k; break; }
            CHECK(bad == SIZE_MAX, "calloc(1, %zu) (round %d) byte %zu is 0x%02x, not zero", sizes[i], round,
                  bad, bad == SIZE_MAX ? 0 : c[bad]);
            v[i] = c;
        }
        for (int i = 0; i < N; i++) {
            if (v[i]) memset(v[i], 0xAA, malloc_usable_size(v[i]));
            free(v[i]);
            v[i] = NULL;
        }
    }
    /* calloc(n, size) form. */
    unsigned long *w = malloc(1000 * sizeof *w);
    memset(w, 0xff, 1000 * sizeof *w);
    free(w);
    w = calloc(1000, sizeof *w);
    int nz = 0;
    for (int i = 0; i < 1000; i++) nz += w[i] != 0;
    CHECK(nz == 0, "calloc(1000, 8): %d nonzero words", nz);
    free(w);
    void *z = calloc(0, 0);
    CHECK(z != NULL, "calloc(0, 0) returned NULL");
    free(z);
}

static void test_usable_and_alignment(void) {
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
    for (size_t n = 1; n <= 4096; n++) {
        unsigned char *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu)", n);
        if (!p) continue;
        CHECK(is_aligned(p, 16), "malloc(%zu) = %p not 16-aligned", n, (void *)p);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        memset(p, 0x11, u); /* writing up to the usable size must be fine */
        free(p);
    }
    size_t bigs[] = {5000, 65536, 100000, 1 << 20, (1 << 20) + 1, 10 << 20, (32 << 20) + 3};
    for (size_t k = 0; k < sizeof bigs / sizeof bigs[0]; k++) {
        unsigned char *p = malloc(bigs[k]);
        CHECK(p != NULL && is_aligned(p, 16), "malloc(%zu) = %p", bigs[k], (void *)p);
        if (!p) continue;
        size_t u = malloc_usable_size(p);
        CHECK(u >= bigs[k], "malloc_usable_size(malloc(%zu)) = %zu", bigs[k], u);
        memset(p, 0x22, u);
        unsigned char *q = realloc(p, u); /* realloc to the usable size keeps everything */
        CHECK(q != NULL, "realloc to usable size");
        if (q) {
            CHECK(q[0] == 0x22 && q[u - 1] == 0x22, "realloc to usable size lost data");
            free(q);
        }
    }
}

static void test_realloc_aligned_and_huge(void) {
    /* realloc of memalign'ed blocks keeps the contents. */
    for (size_t a = 32; a <= 65536; a <<= 1) {
        unsigned char *p = memalign(a, 1000);
        CHECK(p != NULL && is_aligned(p, a), "memalign(%zu, 1000)", a);
        if (!p) continue;
        for (int i = 0; i < 1000; i++) p[i] = (unsigned char)(i * 7);
        unsigned char *q = realloc(p, 100000);
        CHECK(q != NULL, "realloc(memalign(%zu), 100000)", a);
        if (!q) continue;
        int bad = -1;
        for (int i = 0; i < 1000; i++)
            if (q[i] != (unsigned char)(i * 7)) { bad = i; break; }
        CHECK(bad < 0, "realloc of a memalign(%zu) block lost byte %d", a, bad);
        q = realloc(q, 10);
        CHECK(q != NULL && q[9] == 63, "shrinking realloc lost data");
        free(q);
    }
    /* Huge blocks: allocate, touch, grow, shrink, free; repeatedly. */
    for (int i = 0; i < 40; i++) {
        size_t size = ((size_t)(i % 10) + 1) * (1 << 20) + (size_t)i * 4096 + 7;
        unsigned char *p = malloc(size);
        CHECK(p != NULL && is_aligned(p, 16), "malloc(%zu)", size);
        if (!p) continue;
        for (size_t k = 0; k < size; k += 4096) p[k] = (unsigned char)(k >> 12);
        p[size - 1] = 0xee;
        CHECK(malloc_usable_size(p) >= size, "usable(%zu) = %zu", size, malloc_usable_size(p));
        unsigned char *q = realloc(p, size * 2 + 1);
        CHECK(q != NULL, "realloc(%zu -> %zu)", size, size * 2 + 1);
        if (!q) { free(p); continue; }
        int ok = q[size - 1] == 0xee;
        for (size_t k = 0; k < size; k += 4096) ok &= q[k] == (unsigned char)(k >> 12);
        CHECK(ok, "growing realloc of %zu bytes lost data", size);
        memset(q + size, 0x11, size + 1);
        q = realloc(q, 4096 * 3);
        CHECK(q != NULL && q[4096] == 1 && q[8192] == 2, "shrinking a huge block lost data");
        free(q);
    }
    /* calloc must zero memory that a freed huge block left dirty. */
    size_t sizes[] = {8 << 20, 40 << 20};
    for (int k = 0; k < 2; k++) {
        unsigned char *p = malloc(sizes[k]);
        CHECK(p != NULL, "malloc(%zu)", sizes[k]);
        if (!p) continue;
        memset(p, 0xAA, sizes[k]);
        free(p);
        unsigned long *c = calloc(1, sizes[k]);
        CHECK(c != NULL, "calloc(1, %zu)", sizes[k]);
        if (!c) continue;
        size_t bad = SIZE_MAX;
        for (size_t w = 0; w < sizes[k] / sizeof *c; w++)
            if (c[w]) { bad = w * sizeof *c; break; }
        CHECK(bad == SIZE_MAX, "calloc(1, %zu) after a dirty free: byte %zu not zero", sizes[k], bad);
        free(c);
    }
}

static void test_new_entry_points(void) {
    free_sized_fn fs = (free_sized_fn)dlsym(RTLD_DEFAULT, "free_sized");
    free_aligned_sized_fn fas = (free_aligned_sized_fn)dlsym(RTLD_DEFAULT, "free_aligned_sized");
    cfree_fn cf = (cfree_fn)dlsym(RTLD_DEFAULT, "cfree");
    if (fs) {
        for (size_t n = 1; n < 70000; n = n * 3 + 1) {
            void *p = malloc(n);
            memset(p, 1, n);
            errno = 55;
            fs(p, n);
            CHECK(errno == 55, "free_sized changed errno");
        }
        fs(NULL, 0);
        void *p = calloc(10, 10);
        fs(p, 100);
    } else {
        printf("note: free_sized not exported: check skipped\n");
    }
    if (fas) {
        for (size_t a = 16; a <= 65536; a <<= 1) {
            void *p = aligned_alloc(a, 3 * a);
            memset(p, 1, 3 * a);
            fas(p, a, 3 * a);
        }
        fas(NULL, 64, 0);
    } else {
        printf("note: free_aligned_sized not exported: check skipped\n");
    }
    if (cf) {
        void *p = malloc(77);
        errno = 66;
        cf(p);
        CHECK(errno == 66, "cfree changed errno");
        cf(NULL);
    } else {
        printf("note: cfree not exported: check skipped\n");
    }
}

static void test_mallinfo2(void) {
    enum { N = 16384 };
    static void *v[N];
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N; i++) {
        v[i] = malloc(64); /* 16384 x 64 B = 1 MiB */
        memset(v[i], 3, 64);
    }
    struct mallinfo2 during = mallinfo2();
    for (int i = 0; i < N; i++) free(v[i]);
    struct mallinfo2 after = mallinfo2();
    CHECK(during.uordblks >= before.uordblks + (1 << 20),
          "mallinfo2().uordblks rose from %zu to %zu after allocating 1 MiB", before.uordblks, during.uordblks);
    CHECK(after.uordblks < during.uordblks && during.uordblks - after.uordblks >= (1 << 20) / 2,
          "mallinfo2().uordblks went from %zu to only %zu after freeing 1 MiB", during.uordblks, after.uordblks);
}

/* Frees by threads that never allocate (consumers) are counted once the
 * threads are gone: 20 threads free 63 blocks of 64 B each (80 KiB), and
 * mallinfo2 must see nearly all of it back. (glibc keeps a few in each
 * thread's tcache: about 1 KiB a thread.) */
enum { ORPHAN_THREADS = 20, ORPHAN_EACH = 63 };
static void *orphan_blocks[ORPHAN_THREADS][ORPHAN_EACH];

static void *orphan_free(void *arg) {
    void **v = arg;
    for (int i = 0; i < ORPHAN_EACH; i++) free(v[i]);
    return NULL;
}

static void test_frees_by_threads_without_a_heap(void) {
    struct mallinfo2 before = mallinfo2();
    for (int t = 0; t < ORPHAN_THREADS; t++)
        for (int i = 0; i < ORPHAN_EACH; i++) {
            orphan_blocks[t][i] = malloc(64);
            memset(orphan_blocks[t][i], 5, 64);
        }
    struct mallinfo2 during = mallinfo2();
    pthread_t th[ORPHAN_THREADS];
    for (int t = 0; t < ORPHAN_THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, orphan_free, orphan_blocks[t]) == 0, "pthread_create");
    for (int t = 0; t < ORPHAN_THREADS; t++) pthread_join(th[t], NULL);
    struct mallinfo2 after = mallinfo2();
    size_t total = (size_t)ORPHAN_THREADS * ORPHAN_EACH * 64;
    CHECK(during.uordblks >= before.uordblks + total,
          "mallinfo2().uordblks rose from %zu to only %zu after allocating %zu B", before.uordblks,
          during.uordblks, total);
    CHECK(after.uordblks <= before.uordblks + total / 2,
          "mallinfo2().uordblks still %zu (was %zu, %zu with the blocks) after other threads freed them",
          after.uordblks, before.uordblks, during.uordblks);
}

static void test_trim(void) {
    enum { N = 65536 };
    void **v = malloc(N * sizeof *v);
    long rss0 = rss_kib();
    for (int i = 0; i < N; i++) {
        v[i] = malloc(1024); /* 64 MiB */
        memset(v[i], 0x77, 1024);
    }
    void *pin = malloc(1024); /* keeps the heap from shrinking at its end by itself */
    memset(pin, 1, 1024);
    long rss_full = rss_kib();
    for (int i = 0; i < N; i++) free(v[i]);
    long rss_freed = rss_kib();
    int rc = malloc_trim(0);
    long rss_trimmed = rss_kib();
    CHECK(rc == 1, "malloc_trim(0) returned %d after freeing 64 MiB", rc);
    CHECK(rss_full - rss_trimmed >= 32 * 1024,
          "RSS did not drop by >= 32 MiB: start %ld KiB, full %ld KiB, after free %ld KiB, after malloc_trim %ld KiB",
          rss0, rss_full, rss_freed, rss_trimmed);
    free(pin);
    free(v);
}

static void test_mallopt_stats_info(void) {
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt(M_MMAP_THRESHOLD, 1 MiB) != 1");

    /* malloc_stats() writes to stderr: catch it in a file. */
    fflush(stderr);
    FILE *cap = tmpfile();
    CHECK(cap != NULL, "tmpfile");
    if (cap) {
        int saved = dup(2);
        dup2(fileno(cap), 2);
        malloc_stats();
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        long len = lseek(fileno(cap), 0, SEEK_END);
        CHECK(len > 0, "malloc_stats() wrote nothing to stderr");
        fclose(cap);
    }

    FILE *fp = tmpfile();
    CHECK(fp != NULL, "tmpfile");
    if (fp) {
        int rc = malloc_info(0, fp);
        CHECK(rc == 0, "malloc_info(0, fp) returned %d", rc);
        fflush(fp);
        rewind(fp);
        char buf[64] = {0};
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        CHECK(n >= 7 && strncmp(buf, "<malloc", 7) == 0, "malloc_info output starts with \"%.20s\"", buf);
        fclose(fp);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    test_malloc_zero();
    test_realloc_edges();
    test_overflow();
    test_posix_memalign();
    test_other_aligned();
    test_free_errno();
    test_calloc_zero();
    test_usable_and_alignment();
    test_realloc_aligned_and_huge();
    test_new_entry_points();
    test_mallinfo2();
    test_frees_by_threads_without_a_heap();
    test_trim();
    test_mallopt_stats_info();
    if (failures) {
        fprintf(stderr, "abi: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("abi: all %d checks passed\n", checks);
    return 0;
}
