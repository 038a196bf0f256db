/* One-bug programs for `memkit check` (crates/memkit-cli/tests/check.rs).
 *
 *   check_bugs CASE       run the case with its bug
 *   check_bugs ok-CASE    the correct twin: the same calls, used correctly;
 *                         must produce no report at all
 *   check_bugs list       print the case names, one a line
 *
 * Every case prints `END CASE` (or `END ok-CASE`) when it returns to main.
 * The bug of a case sits in a function named bug_site_*, its block comes
 * from alloc_site_* and a first free from free_site_*, so that the test can
 * assert the function names of the report's stacks. Every such function is
 * `noipa` (no inlining, cloning or other interprocedural change), and
 * NOTAIL() after its last call keeps that call from becoming a jump, so
 * the frame is on the stack even at -O2 -fomit-frame-pointer.
 *
 * Leak cases: a pointer that was never stored anywhere still lingers in
 * dead stack slots below main's frame, e.g. the last of 1000 blocks of one
 * site. main scrubs the stack (scrub_stack) after every case but
 * leak-stale-slot, which tests that the leak check does not read them.
 *
 * Compile with -fno-builtin (so that gcc keeps every call, even to free
 * and memcpy, as written) and -pthread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SITE __attribute__((noipa))
#define NOTAIL() __asm__ volatile("" ::: "memory")

/* Writes the compiler cannot drop. */
#define POKE(p, i, v) (((volatile char *)(p))[i] = (char)(v))

static void die(const char *what) {
    perror(what);
    exit(100);
}

/* Overwrites 64 KiB of dead stack below the caller's frame. */
SITE static void scrub_stack(void) {
    volatile char buf[64 << 10];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
    NOTAIL();
}

SITE void *alloc_site_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) die("malloc");
    NOTAIL();
    return p;
}

SITE void free_site_free(void *p) {
    free(p);
    NOTAIL();
}

/* ---- leaks -------------------------------------------------------------- */

SITE void *alloc_site_leak_direct(void) {
    void *p = malloc(48);
    NOTAIL();
    return p;
}

static void case_leak_direct(int bug) {
    void *p = alloc_site_leak_direct();
    POKE(p, 0, 1);
    if (!bug) free(p);
}

struct node {
    struct node *next;
    char pad[24];
};

SITE void *alloc_site_leak_outer(void) {
    void *p = malloc(sizeof(struct node)); /* 32 */
    NOTAIL();
    return p;
}

SITE void *alloc_site_leak_inner(void) {
    void *p = malloc(64);
    NOTAIL();
    return p;
}

/* A leaked node whose only pointer to another block is its `next`. */
static void case_leak_indirect(int bug) {
    struct node *outer = alloc_site_leak_outer();
    outer->next = alloc_site_leak_inner();
    if (!bug) {
        free(outer->next);
        free(outer);
    }
}

/* Two leaked nodes that point to each other, and to nothing else: one is
 * reported direct (the cycle's entry, as Valgrind's clique leader), the
 * other indirect; before 2026-12-03 both were indirect, so the leak
 * showed only among indirect ones. */
static void case_leak_cycle(int bug) {
    struct node *a = alloc_site_leak_outer();
    struct node *b = alloc_site_leak_outer();
    a->next = b;
    b->next = a;
    if (!bug) {
        free(a);
        free(b);
    }
}

SITE void *alloc_site_leak_many(void) {
    void *p = malloc(24);
    NOTAIL();
    return p;
}

static void case_leak_many(int bug) {
    for (int i = 0; i < 1000; i++) {
        void *p = alloc_site_leak_many();
        POKE(p, 0, i);
        if (!bug) free(p);
    }
}

SITE void *alloc_site_leak_stale(void) {
    void *p = malloc(40);
    if (!p) die("malloc");
    NOTAIL();
    return p;
}

/* Leaves copies of p in 128 slots of its frame, dead once it returns. */
SITE static void bug_site_stash(void *p) {
    void *volatile slots[128];
    for (int i = 0; i < 128; i++) slots[i] = p;
    NOTAIL();
}

/* A block whose last pointers lie in dead frames below main's (a
 * constructor's temporaries: a leaked `new std::map` is found this way);
 * main does not scrub the stack after this case. The leak check at exit
 * reads the exiting thread's stack from the frame that called exit, not
 * from the exit path's frames over those dead slots (the stale copies made
 * the block reachable before 2026-12-03; Valgrind reports it lost). */
static void case_leak_stale_slot(int bug) {
    void *p = alloc_site_leak_stale();
    POKE(p, 0, 1);
    bug_site_stash(p);
    if (!bug) free(p);
    p = NULL;
}

SITE char *alloc_site_strdup(void) {
    char *s = strdup("thirty characters (31 bytes)!!"); /* with the NUL */
    NOTAIL();
    return s;
}

static void case_leak_strdup(int bug) {
    char *s = alloc_site_strdup();
    if (strlen(s) != 30) die("strdup");
    if (!bug) free(s);
}

SITE void *alloc_site_thread_leak(void) {
    void *p = malloc(72);
    NOTAIL();
    return p;
}

static void *thread_leak_body(void *arg) {
    void *p = alloc_site_thread_leak();
    POKE(p, 0, 1);
    if (!arg) free(p);
    scrub_stack();
    return NULL;
}

/* A block allocated in a thread that was joined, its pointer dropped. */
static void case_leak_thread(int bug) {
    pthread_t t;
    if (pthread_create(&t, NULL, thread_leak_body, bug ? (void *)1 : NULL)) die("pthread_create");
    if (pthread_join(t, NULL)) die("pthread_join");
}

SITE void *alloc_site_suppressed(void) {
    void *p = malloc(56);
    NOTAIL();
    return p;
}

/* The leak the suppressions test suppresses (`leak:alloc_site_suppressed`). */
static void case_leak_suppressed(int bug) {
    void *p = alloc_site_suppressed();
    if (!bug) free(p);
}

/* ---- reachable at exit (the twins); lost (the bugs) --------------------- */

/* volatile: gcc -O2 drops stores to a static that is never read. */
static void *volatile g_keep;

SITE void *alloc_site_global(void) {
    void *p = malloc(100);
    NOTAIL();
    return p;
}

/* ok: reachable through a global at exit. bug: the global is cleared. */
static void case_leak_global(int bug) {
    g_keep = alloc_site_global();
    if (bug) g_keep = NULL;
}

static __thread void *volatile t_keep;

SITE void *alloc_site_tls(void) {
    void *p = malloc(120);
    NOTAIL();
    return p;
}

/* ok: reachable through the main thread's __thread variable. */
static void case_leak_tls(int bug) {
    t_keep = alloc_site_tls();
    if (bug) t_keep = NULL;
}

SITE void *alloc_site_thread_held(void) {
    void *p = malloc(88);
    NOTAIL();
    return p;
}

static int ready_pipe[2], block_pipe[2];

/* Holds the only pointer to its block in a stack slot, tells main, and
 * blocks for good (nobody writes block_pipe): main exits meanwhile. */
static void *holder_body(void *arg) {
    void *volatile keep = alloc_site_thread_held();
    if (arg) keep = NULL;
    char c = 'r';
    if (write(ready_pipe[1], &c, 1) != 1) die("write");
    if (read(block_pipe[0], &c, 1) < 0) die("read");
    (void)keep;
    return NULL;
}

/* ok: reachable through a live thread's stack when main calls exit(). */
static void case_leak_thread_stack(int bug) {
    if (pipe(ready_pipe) || pipe(block_pipe)) die("pipe");
    pthread_t t;
    if (pthread_create(&t, NULL, holder_body, bug ? (void *)1 : NULL)) die("pthread_create");
    char c;
    if (read(ready_pipe[0], &c, 1) != 1) die("read");
}

static char *volatile g_mid;

SITE void *alloc_site_interior(void) {
    void *p = malloc(200);
    NOTAIL();
    return p;
}

/* ok: only a pointer to the block's middle is kept (in a global). */
static void case_leak_interior(int bug) {
    g_mid = (char *)alloc_site_interior() + 100;
    if (bug) g_mid = NULL;
}

SITE void *alloc_site_mmap(void) {
    void *p = malloc(144);
    NOTAIL();
    return p;
}

SITE void *alloc_site_mmap_deep(void) {
    void *p = malloc(152);
    NOTAIL();
    return p;
}

/* ok: reachable only from the program's own anonymous mappings (as an
 * interpreter keeps objects in pages it maps itself): one word of a small
 * mapping, and one 40 MiB into a sparse 64 MiB one. bug: both dropped. */
static void case_leak_mmap(int bug) {
    void **small = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void **sparse = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (small == MAP_FAILED || sparse == MAP_FAILED) die("mmap");
    small[1000] = alloc_site_mmap();
    sparse[(40 << 20) / sizeof(void *)] = alloc_site_mmap_deep();
    if (bug) {
        small[1000] = NULL;
        sparse[(40 << 20) / sizeof(void *)] = NULL;
    }
}

/* ---- double and invalid frees ------------------------------------------- */

SITE void bug_site_double_free(void *p) {
    free(p);
    NOTAIL();
}

static void case_double_free(int bug) {
    void *p = alloc_site_malloc(40);
    free_site_free(p);
    if (bug) bug_site_double_free(p);
}

/* A daemon's start: every descriptor above stdio closed, and files opened
 * again (they take the lowest numbers, the checker's among them), then
 * the bug. The text report went into the JSON report file, whose number
 * the checker opened next; `memkit check` dropped each line as an
 * incomplete report and printed no report at all. */
static void case_close_fds(int bug) {
    void *p = alloc_site_malloc(40);
    for (int fd = 3; fd < 1024; fd++) close(fd);
    int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_RDONLY);
    if (a < 0 || b < 0) die("open /dev/null");
    free_site_free(p);
    if (bug) bug_site_double_free(p);
}

/* A double free after 32 MiB of newer frees pushed the block out of
 * quarantine (the bound is at most twice this small heap, at least 4 MiB):
 * its record is gone, but the address is still the heap's. */
static void *volatile churn_sink;

SITE void bug_site_late_double_free(void *p) {
    free(p);
    NOTAIL();
}

static void case_late_double_free(int bug) {
    void *p = alloc_site_malloc(40);
    free_site_free(p);
    for (int i = 0; i < 8192; i++) {
        churn_sink = malloc(4096);
        free(churn_sink);
    }
    if (bug) bug_site_late_double_free(p);
}

SITE void bug_site_free_interior(char *p) {
    free(p + 8);
    NOTAIL();
}

static void case_invalid_free_interior(int bug) {
    char *p = alloc_site_malloc(32);
    if (bug)
        bug_site_free_interior(p);
    free(p);
}

SITE void bug_site_free_stack(void) {
    char buf[32];
    POKE(buf, 0, 1);
    free(buf);
    NOTAIL();
}

static void case_invalid_free_stack(int bug) {
    if (bug)
        bug_site_free_stack();
    else
        free_site_free(alloc_site_malloc(32));
}

static char g_buf[32];

SITE void bug_site_free_global(void) {
    free(g_buf);
    NOTAIL();
}

static void case_invalid_free_global(int bug) {
    if (bug)
        bug_site_free_global();
    else
        free_site_free(alloc_site_malloc(32));
    free(NULL);
}

/* ---- heap buffer overflows ---------------------------------------------- */

/* Found when the block is freed (its right red zone damaged). */
SITE void bug_site_overflow_end(char *p, int bug) {
    POKE(p, bug ? 24 : 23, 'x');
    free(p);
    NOTAIL();
}

static void case_overflow_end(int bug) {
    bug_site_overflow_end(alloc_site_malloc(24), bug);
}

SITE void bug_site_overflow_before(char *p, int bug) {
    POKE(p, bug ? -1 : 0, 'x');
    free(p);
    NOTAIL();
}

static void case_overflow_before(int bug) {
    bug_site_overflow_before(alloc_site_malloc(24), bug);
}

SITE void *alloc_site_memalign(size_t align, size_t n) {
    void *p = memalign(align, n);
    if (!p) die("memalign");
    NOTAIL();
    return p;
}

static long peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

/* A block aligned to 1 GiB starts a GiB into its core block: its red zone
 * is the last bytes before it, found at free; the GiB before them is never
 * touched (it was filled with the canary, and read back at free). */
static void case_overflow_before_aligned(int bug) {
    char *p = alloc_site_memalign((size_t)1 << 30, 40);
    bug_site_overflow_before(p, bug);
    printf("ALIGNED %d SMALL %d\n", ((uintptr_t)p & ((1u << 30) - 1)) == 0,
           peak_rss_kib() < 64 << 10);
}

/* Found inside memcpy, at the call. */
SITE void bug_site_overflow_memcpy(char *p, int bug) {
    char src[32];
    memset(src, 'a', sizeof src);
    memcpy(p, src, bug ? 32 : 24);
    NOTAIL();
}

static void case_overflow_memcpy(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_memcpy(p, bug);
    free(p);
}

/* strcmp of a string that is not terminated inside its block: the
 * comparison runs into the byte past the end. */
static char g_other[32] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

SITE void bug_site_overflow_strcmp(char *p, int bug) {
    memset(p, 'a', 24);
    if (!bug) p[23] = 0;
    printf("CMP %d\n", strcmp(p, g_other) < 0);
    NOTAIL();
}

static void case_overflow_strcmp(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_strcmp(p, bug);
    free(p);
}

/* read(2) of more bytes than the block holds: found at the call, for the
 * bytes the kernel wrote. */
SITE void bug_site_overflow_read(char *p, int bug) {
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) die("open /dev/zero");
    if (read(fd, p, bug ? 32 : 24) != (bug ? 32 : 24)) die("read");
    close(fd);
    NOTAIL();
}

static void case_overflow_read(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_read(p, bug);
    free(p);
}

/* fread likewise, through stdio. */
SITE void bug_site_overflow_fread(char *p, int bug) {
    FILE *f = fopen("/dev/zero", "r");
    if (!f) die("fopen /dev/zero");
    if (fread(p, 8, bug ? 4 : 3, f) != (bug ? 4u : 3u)) die("fread");
    fclose(f);
    NOTAIL();
}

static void case_overflow_fread(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_fread(p, bug);
    free(p);
}

/* fgets of a line much longer than the block: the write runs past the
 * right red zone into the next core blocks, free ones among them, whose
 * free-list links it overwrites. The report (its stacks are symbolized
 * when it is printed, which allocates) used to allocate from the same
 * core class and end in the core's "corrupted free list" abort before a
 * line was printed; and its first frame was the checker's internal
 * fgets_as, not fgets. */
SITE void bug_site_overflow_fgets(char *p, int bug) {
    static char line[160];
    memset(line, 'x', sizeof line - 2);
    line[sizeof line - 2] = '\n';
    FILE *f = fmemopen(line, sizeof line - 1, "r");
    if (!f) die("fmemopen");
    if (!fgets(p, bug ? (int)sizeof line : 24, f)) die("fgets");
    fclose(f);
    NOTAIL();
}

static void case_overflow_fgets(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_fgets(p, bug);
    free(p);
}

/* sprintf and snprintf past the block's end: found at the call, for the
 * bytes they wrote. The output also proves the arguments came through
 * (registers, the stack past six, doubles in xmm registers). */
SITE void bug_site_overflow_sprintf(char *p, int bug) {
    int n = sprintf(p, "%d %d %d %d %d %d %.1f%s", 1, 2, 3, 4, 5, 6, 7.5, bug ? "0123456789" : "");
    /* After a reported overflow the checker restored its red zone: the
     * string is no longer terminated where sprintf put its NUL. */
    printf("SPRINTF %d %s\n", n, bug ? "" : p);
    NOTAIL();
}

static void case_overflow_sprintf(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_sprintf(p, bug);
    free(p);
}

SITE void bug_site_overflow_snprintf(char *p, int bug) {
    int n = snprintf(p, bug ? 40 : 24, "%s|%d|%.2f|%c%c", "abcdefghijklmnop", -42, 0.25, 'x', 'y');
    printf("SNPRINTF %d\n", n);
    NOTAIL();
}

static void case_overflow_snprintf(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_snprintf(p, bug);
    free(p);
}

/* stpcpy and mempcpy: what gcc -O2 makes of a strcpy followed by a strcat,
 * and of a memcpy whose result is used as its end. */
SITE void bug_site_overflow_stpcpy(char *p, int bug) {
    char src[32];
    memset(src, 'b', sizeof src);
    src[bug ? 24 : 23] = 0;
    char *end = stpcpy(p, src);
    if (end != p + (bug ? 24 : 23)) die("stpcpy: end");
    NOTAIL();
}

static void case_overflow_stpcpy(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_stpcpy(p, bug);
    free(p);
}

SITE void bug_site_overflow_mempcpy(char *p, int bug) {
    char src[32];
    memset(src, 'c', sizeof src);
    char *end = mempcpy(p, src, bug ? 25 : 24);
    if (end != p + (bug ? 25 : 24)) die("mempcpy: end");
    NOTAIL();
}

static void case_overflow_mempcpy(int bug) {
    char *p = alloc_site_malloc(24);
    bug_site_overflow_mempcpy(p, bug);
    free(p);
}

/* ---- use after free ----------------------------------------------------- */

/* A plain write after free: found when the block leaves quarantine, here
 * at exit, when the quarantine is drained. */
SITE void bug_site_uaf_write(char *p) {
    POKE(p, 8, 1);
    NOTAIL();
}

static void case_uaf_write(int bug) {
    char *p = alloc_site_malloc(40);
    if (!bug) bug_site_uaf_write(p);
    free_site_free(p);
    if (bug) bug_site_uaf_write(p);
}

/* A write after free near the end of a 4 KiB block, found when newer frees
 * (12 MiB, beyond the default quarantine bound of a small heap) push the
 * block out of quarantine during the run: the last 64 bytes are checked
 * there (the first 64 too), not only at exit. */
SITE void bug_site_uaf_write_tail(char *p) {
    POKE(p, 4090, 1);
    NOTAIL();
}

static void case_uaf_write_tail(int bug) {
    char *p = alloc_site_malloc(4096);
    if (!bug) bug_site_uaf_write_tail(p);
    free_site_free(p);
    if (bug) bug_site_uaf_write_tail(p);
    for (int i = 0; i < 3000; i++) {
        char *q = malloc(4096);
        if (!q) die("malloc");
        POKE(q, 0, 1);
        free(q);
    }
}

/* Through memcpy: found at the call. */
SITE void bug_site_uaf_memcpy(char *p) {
    static const char src[16] = "0123456789abcde";
    memcpy(p, src, 16);
    NOTAIL();
}

static void case_uaf_memcpy(int bug) {
    char *p = alloc_site_malloc(40);
    if (!bug) bug_site_uaf_memcpy(p);
    free_site_free(p);
    if (bug) bug_site_uaf_memcpy(p);
}

SITE char *realloc_site_move(char *p, size_t n) {
    char *q = realloc(p, n);
    if (!q) die("realloc");
    NOTAIL();
    return q;
}

SITE void bug_site_stale_realloc(char *p) {
    POKE(p, 0, 'z');
    NOTAIL();
}

/* The block moved (the checker's realloc always moves it); the bug writes
 * through the old pointer, found at exit. */
static void case_uaf_realloc(int bug) {
    char *p = alloc_site_malloc(16);
    POKE(p, 0, 'a');
    char *q = realloc_site_move(p, 4096);
    if (q[0] != 'a') die("realloc lost the contents");
    bug_site_stale_realloc(bug ? p : q);
    free(q);
}

/* ---- memcpy-param-overlap ----------------------------------------------- */

SITE void bug_site_memcpy_overlap(char *p, int bug) {
    if (bug) {
        memcpy(p, p + 4, 16);
    } else {
        memcpy(p, p + 16, 16); /* adjacent, not overlapping */
        memmove(p, p + 4, 16); /* overlapping is memmove's job */
    }
    NOTAIL();
}

static void case_memcpy_overlap(int bug) {
    char *p = alloc_site_malloc(32);
    memset(p, 'o', 32);
    bug_site_memcpy_overlap(p, bug);
    free(p);
}

/* ---- alignment and size ------------------------------------------------- */

/* 24 is no power of two: EINVAL (and a report); 32 is fine. */
SITE void bug_site_posix_memalign(int bug) {
    void *p = NULL;
    int rc = posix_memalign(&p, bug ? 24 : 32, 64);
    printf("RC %d\n", rc);
    if (rc == 0) {
        if ((uintptr_t)p % 32) die("posix_memalign: misaligned");
        memset(p, 1, 64);
        free(p);
    }
    NOTAIL();
}

static void case_bad_posix_memalign(int bug) { bug_site_posix_memalign(bug); }

/* glibc rounds a non-power-of-two alignment up (24 -> 32): a report, and
 * still a usable block aligned to 32. */
SITE void bug_site_aligned_alloc(int bug) {
    char *p = aligned_alloc(bug ? 24 : 32, 64);
    printf("NONNULL %d ALIGNED32 %d\n", p != NULL, p && (uintptr_t)p % 32 == 0);
    if (p) {
        memset(p, 1, 64);
        free(p);
    }
    NOTAIL();
}

static void case_bad_aligned_alloc(int bug) { bug_site_aligned_alloc(bug); }

/* C23's free_sized with a size other than the block's (glibc 2.36 has no
 * free_sized: found at run time, memkit's). */
SITE void bug_site_free_sized(void *p, int bug) {
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (!fs) die("dlsym free_sized");
    fs(p, bug ? 48 : 40);
    NOTAIL();
}

static void case_free_sized_mismatch(int bug) { bug_site_free_sized(alloc_site_malloc(40), bug); }

/* malloc_usable_size of a pointer into a block, not its start. */
SITE void bug_site_usable_size(char *p, int bug) {
    printf("USABLE %zu\n", malloc_usable_size(bug ? p + 8 : p));
    free(p);
    NOTAIL();
}

static void case_bad_usable_size(int bug) { bug_site_usable_size(alloc_site_malloc(40), bug); }

/* aligned_alloc(0, n) names no valid alignment; glibc 2.36 serves it as
 * malloc(n): a report, and still a usable 16-aligned block. */
SITE void bug_site_aligned_alloc_zero(int bug) {
    char *p = aligned_alloc(bug ? 0 : 16, 40);
    printf("NONNULL %d ALIGNED16 %d\n", p != NULL, p && (uintptr_t)p % 16 == 0);
    if (p) {
        memset(p, 1, 40);
        free(p);
    }
    NOTAIL();
}

static void case_bad_aligned_alloc_zero(int bug) { bug_site_aligned_alloc_zero(bug); }

SITE void bug_site_malloc_too_big(int bug) {
    errno = 0;
    char *p = malloc(bug ? (size_t)1 << 45 : (size_t)1 << 20);
    printf("NULL %d ENOMEM %d\n", p == NULL, errno == ENOMEM);
    if (p) {
        POKE(p, (1 << 20) - 1, 1);
        free(p);
    }
    NOTAIL();
}

static void case_malloc_too_big(int bug) { bug_site_malloc_too_big(bug); }

SITE void bug_site_calloc_overflow(int bug) {
    errno = 0;
    volatile size_t n = bug ? SIZE_MAX / 2 : 1000; /* no compile-time warning */
    int *p = calloc(n, 4);
    printf("NULL %d ENOMEM %d\n", p == NULL, errno == ENOMEM);
    if (p) {
        for (int i = 0; i < 1000; i++)
            if (p[i]) die("calloc: not zeroed");
        free(p);
    }
    NOTAIL();
}

static void case_calloc_overflow(int bug) { bug_site_calloc_overflow(bug); }

/* reallocarray's n * size overflows: NULL, ENOMEM, and the block stays. */
SITE void bug_site_reallocarray_overflow(int bug) {
    char *p = alloc_site_malloc(24);
    POKE(p, 23, 7);
    errno = 0;
    volatile size_t n = bug ? SIZE_MAX / 4 : 10;
    char *q = reallocarray(p, n, 8);
    printf("NULL %d ENOMEM %d\n", q == NULL, errno == ENOMEM);
    free_site_free(q ? q : p);
    NOTAIL();
}

static void case_reallocarray_overflow(int bug) { bug_site_reallocarray_overflow(bug); }

/* A valid alignment of 1 TiB needs more than the 1 TiB a request may
 * have: NULL, ENOMEM (glibc too) and a report. */
SITE void bug_site_memalign_too_big(int bug) {
    errno = 0;
    volatile size_t align = bug ? (size_t)1 << 40 : 4096;
    char *p = memalign(align, 16);
    printf("NULL %d ENOMEM %d\n", p == NULL, errno == ENOMEM);
    if (p) {
        POKE(p, 15, 1);
        free(p);
    }
    NOTAIL();
}

static void case_memalign_too_big(int bug) { bug_site_memalign_too_big(bug); }

/* No bug: prints the byte new blocks are filled with (alloc_fill), which
 * MEMKIT_CHECK_OPTIONS sets through `memkit check` too. */
static void case_fill(int bug) {
    (void)bug;
    unsigned char *p = alloc_site_malloc(16);
    printf("FILL %02x\n", p[7]);
    free(p);
}

/* ---- several bugs; processes --------------------------------------------- */

/* A double free, then an invalid free: --halt-on-error stops at the first,
 * before AFTER-FIRST is printed. */
static void case_two_bugs(int bug) {
    case_double_free(bug);
    printf("AFTER-FIRST\n");
    case_invalid_free_global(bug);
    printf("AFTER-SECOND\n");
}

SITE void *alloc_site_child_leak(void) {
    void *p = malloc(64);
    NOTAIL();
    return p;
}

/* The child of a fork leaks (or frees) a block and exits; the parent
 * prints the child's pid and exits 0 when the child did. */
static void case_fork_leak(int bug) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        void *p = alloc_site_child_leak();
        POKE(p, 0, 1);
        if (!bug) free(p);
        p = NULL;
        scrub_stack();
        exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid");
    printf("CHILD %d STATUS %d\n", (int)pid, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* ------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*run)(int bug);
} cases[] = {
    {"leak-direct", case_leak_direct},
    {"leak-indirect", case_leak_indirect},
    {"leak-cycle", case_leak_cycle},
    {"leak-many", case_leak_many},
    {"leak-strdup", case_leak_strdup},
    {"leak-thread", case_leak_thread},
    {"leak-suppressed", case_leak_suppressed},
    {"leak-global", case_leak_global},
    {"leak-tls", case_leak_tls},
    {"leak-thread-stack", case_leak_thread_stack},
    {"leak-interior", case_leak_interior},
    {"leak-mmap", case_leak_mmap},
    {"leak-stale-slot", case_leak_stale_slot},
    {"double-free", case_double_free},
    {"close-fds", case_close_fds},
    {"late-double-free", case_late_double_free},
    {"invalid-free-interior", case_invalid_free_interior},
    {"invalid-free-stack", case_invalid_free_stack},
    {"invalid-free-global", case_invalid_free_global},
    {"overflow-end", case_overflow_end},
    {"overflow-before", case_overflow_before},
    {"overflow-before-aligned", case_overflow_before_aligned},
    {"overflow-memcpy", case_overflow_memcpy},
    {"overflow-strcmp", case_overflow_strcmp},
    {"overflow-read", case_overflow_read},
    {"overflow-fread", case_overflow_fread},
    {"overflow-fgets", case_overflow_fgets},
    {"overflow-sprintf", case_overflow_sprintf},
    {"overflow-snprintf", case_overflow_snprintf},
    {"overflow-stpcpy", case_overflow_stpcpy},
    {"overflow-mempcpy", case_overflow_mempcpy},
    {"uaf-write", case_uaf_write},
    {"uaf-write-tail", case_uaf_write_tail},
    {"uaf-memcpy", case_uaf_memcpy},
    {"uaf-realloc", case_uaf_realloc},
    {"memcpy-overlap", case_memcpy_overlap},
    {"bad-posix-memalign", case_bad_posix_memalign},
    {"bad-aligned-alloc", case_bad_aligned_alloc},
    {"bad-aligned-alloc-zero", case_bad_aligned_alloc_zero},
    {"free-sized-mismatch", case_free_sized_mismatch},
    {"bad-usable-size", case_bad_usable_size},
    {"malloc-too-big", case_malloc_too_big},
    {"calloc-overflow", case_calloc_overflow},
    {"reallocarray-overflow", case_reallocarray_overflow},
    {"memalign-too-big", case_memalign_too_big},
    {"fill", case_fill},
    {"two-bugs", case_two_bugs},
    {"fork-leak", case_fork_leak},
};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: check_bugs [ok-]CASE | check_bugs list\n");
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "list") == 0) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) printf("%s\n", cases[i].name);
        return 0;
    }
    int bug = strncmp(name, "ok-", 3) != 0;
    const char *base = bug ? name : name + 3;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(cases[i].name, base) == 0) {
            if (strcmp(base, "leak-stale-slot") == 0) {
                /* Printed first: printf's frames would overwrite the
                 * dead slots the case leaves. */
                printf("END %s\n", name);
                fflush(stdout);
                cases[i].run(bug);
                return 0;
            }
            cases[i].run(bug);
            scrub_stack();
            printf("END %s\n", name);
            return 0;
        }
    }
    fprintf(stderr, "check_bugs: unknown case %s (try: check_bugs list)\n", name);
    return 2;
}
