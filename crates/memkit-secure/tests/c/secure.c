/* secure.c: memkit's secure-memory C API, one scenario per argv[1].
 *
 * Run by crates/memkit-secure/tests/c_api.rs under LD_PRELOAD=libmemkit.so
 * (and linked against it). Scenarios that must crash (overflow, canary
 * damage, no-access reads) print "survived" and exit 3 if they do not; the
 * test checks the signal. Others print "ok" (and facts) and exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit-secure.h"

#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d %s)\n",       \
                    __FILE__, __LINE__, #c, errno, strerror(errno));         \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static volatile unsigned char sink;

static void survived(void) {
    printf("survived\n");
    fflush(stdout);
    exit(3);
}

/* A "Key:   N kB" line of /proc/self/status, in kB (-1 if missing). */
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

static long count_maps(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    if (!f) return -1;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* The VmFlags line of the mapping containing p (copied into out). */
static int vmflags_of(const void *p, char *out, size_t cap) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    uintptr_t a = (uintptr_t)p;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a >= lo && a < hi;
        } else if (inside && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, cap, "%s", line + 8);
            out[strcspn(out, "\n")] = 0;
            fclose(f);
            return 0;
        }
    }
    fclose(f);
    return -1;
}

static int has_flag(const char *flags, const char *f) {
    char pad[600];
    char want[8];
    snprintf(pad, sizeof pad, " %s ", flags);
    snprintf(want, sizeof want, " %s ", f);
    return strstr(pad, want) != NULL;
}

static void basic(void) {
    /* Alignment, zeroing, size, protection report, for every size class. */
    for (size_t n = 0; n < 5000; n += (n < 64 ? 1 : 61)) {
        for (unsigned flags = 0; flags < 2; flags++) {
            unsigned char *p = memkit_secure_alloc(n, flags);
            CHECK(p != NULL);
            CHECK(((uintptr_t)p & 15) == 0);
            for (size_t i = 0; i < n; i++) CHECK(p[i] == 0);
            memset(p, 0xA5, n);
            CHECK(memkit_secure_size(p) == n);
            int prot = memkit_secure_protection(p);
            CHECK(prot >= 0);
            CHECK(prot & MEMKIT_PROT_LOCKED);
            CHECK(prot & MEMKIT_PROT_DONTDUMP);
            CHECK(prot & MEMKIT_PROT_WIPEONFORK);
            CHECK(prot & MEMKIT_PROT_CANARY);
            CHECK(prot & MEMKIT_PROT_READWRITE);
            if (flags & MEMKIT_SECURE_PACKED && n <= 2016)
                CHECK((prot & MEMKIT_PROT_PACKED) && !(prot & MEMKIT_PROT_GUARDED));
            else
                CHECK((prot & MEMKIT_PROT_GUARDED) && !(prot & MEMKIT_PROT_PACKED));
            memkit_secure_free(p);
        }
    }
    /* A 16-byte-multiple guarded secret ends exactly at a page boundary. */
    unsigned char *g = memkit_secure_malloc(64);
    CHECK(((uintptr_t)(g + 64) & 4095) == 0);
    memkit_secure_free(g);

    /* Access toggling and the report. */
    unsigned char *p = memkit_secure_malloc(100);
    CHECK(memkit_secure_readonly(p) == 0);
    CHECK(memkit_secure_protection(p) & MEMKIT_PROT_READONLY);
    sink = p[5];
    CHECK(memkit_secure_noaccess(p) == 0);
    CHECK((memkit_secure_protection(p) & (MEMKIT_PROT_READONLY | MEMKIT_PROT_READWRITE)) == 0);
    CHECK(memkit_secure_readwrite(p) == 0);
    p[5] = 1;
    /* Free works on a closed secret. */
    CHECK(memkit_secure_noaccess(p) == 0);
    memkit_secure_free(p);

    /* Non-secrets are refused, not touched. */
    int x;
    errno = 0;
    CHECK(memkit_secure_noaccess(&x) == -1 && errno == EINVAL);
    CHECK(memkit_secure_protection(&x) == -1 && errno == EINVAL);
    CHECK(memkit_secure_size(&x) == 0);
    errno = 0;
    CHECK(memkit_secure_alloc(16, 0x80) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memkit_secure_malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(memkit_secure_alloc(SIZE_MAX / 2, MEMKIT_SECURE_PACKED) == NULL && errno == ENOMEM);
    memkit_secure_free(NULL);

    /* realloc keeps the prefix, wipes and frees the old copy, keeps the mode. */
    for (unsigned flags = 0; flags < 2; flags++) {
        unsigned char *r = memkit_secure_alloc(10, flags);
        memcpy(r, "0123456789", 10);
        CHECK(memkit_secure_noaccess(r) == 0);
        unsigned char *r2 = memkit_secure_realloc(r, 5000);
        CHECK(r2 != NULL && r2 != r);
        CHECK(!memcmp(r2, "0123456789", 10));
        CHECK(memkit_secure_size(r) == 0); /* the old one is gone */
        unsigned char *r3 = memkit_secure_realloc(r2, 3);
        CHECK(r3 != NULL && !memcmp(r3, "012", 3));
        if (flags) CHECK(memkit_secure_protection(r3) & MEMKIT_PROT_PACKED);
        CHECK(memkit_secure_realloc(r3, 0) == NULL);
    }
    unsigned char *r4 = memkit_secure_realloc(NULL, 8);
    CHECK(r4 != NULL);
    memkit_secure_free(r4);

    /* Packed: a neighbour keeps a shared page open, and the report says so. */
    unsigned char *a = memkit_secure_alloc(32, MEMKIT_SECURE_PACKED);
    unsigned char *b = memkit_secure_alloc(32, MEMKIT_SECURE_PACKED);
    CHECK(memkit_secure_noaccess(a) == 0);
    if (((uintptr_t)a >> 12) == ((uintptr_t)b >> 12))
        CHECK(memkit_secure_protection(a) & MEMKIT_PROT_SHARED_ACCESS);
    CHECK(memkit_secure_noaccess(b) == 0);
    CHECK(!(memkit_secure_protection(a) & MEMKIT_PROT_SHARED_ACCESS));
    memkit_secure_free(a);
    memkit_secure_free(b);

    /* memzero */
    char buf[64];
    memset(buf, 7, sizeof buf);
    memkit_memzero(buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++) CHECK(buf[i] == 0);
    memkit_memzero(NULL, 0);

    /* Policies. */
    CHECK(memkit_secure_get_policy() == MEMKIT_SECURE_REQUIRE);
    CHECK(memkit_secure_set_policy(7) == -1 && errno == EINVAL);
    CHECK(memkit_secure_set_policy(MEMKIT_SECURE_OFF) == 0);
    unsigned char *o = memkit_secure_malloc(16);
    CHECK(!(memkit_secure_protection(o) & MEMKIT_PROT_LOCKED));
    CHECK(memkit_secure_protection(o) & MEMKIT_PROT_DONTDUMP);
    memkit_secure_free(o);
    CHECK(memkit_secure_set_policy(MEMKIT_SECURE_REQUIRE) == 0);
    printf("ok\n");
}

/* Writes one byte past a 16-byte-multiple secret: must fault. */
static void overflow(size_t n, unsigned flags) {
    unsigned char *p = memkit_secure_alloc(n, flags);
    CHECK(p != NULL);
    memset(p, 1, n);
    ((volatile unsigned char *)p)[n] = 1;
    survived();
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "basic";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(what, "basic")) {
        basic();
    } else if (!strcmp(what, "overflow")) {
        overflow(argc > 2 ? strtoul(argv[2], NULL, 10) : 32, 0);
    } else if (!strcmp(what, "underflow")) {
        /* One byte before the data is the canary: abort at free. */
        unsigned char *p = memkit_secure_malloc(32);
        ((volatile unsigned char *)p)[-1] ^= 0x5a;
        memkit_secure_free(p);
        survived();
    } else if (!strcmp(what, "slack")) {
        /* Sizes that are not multiples of 16 end in canary padding. */
        unsigned char *p = memkit_secure_malloc(20);
        ((volatile unsigned char *)p)[21] ^= 1;
        memkit_secure_free(p);
        survived();
    } else if (!strcmp(what, "packed_overflow")) {
        /* Into the canary after a packed secret: abort at free. */
        unsigned char *p = memkit_secure_alloc(32, MEMKIT_SECURE_PACKED);
        unsigned char *q = memkit_secure_alloc(32, MEMKIT_SECURE_PACKED);
        memset(p, 0xff, 40);
        memkit_secure_free(q);
        memkit_secure_free(p);
        survived();
    } else if (!strcmp(what, "double_free")) {
        unsigned char *p = memkit_secure_malloc(32);
        memkit_secure_free(p);
        memkit_secure_free(p);
        survived();
    } else if (!strcmp(what, "noaccess_read")) {
        unsigned char *p = memkit_secure_malloc(32);
        CHECK(memkit_secure_noaccess(p) == 0);
        sink = ((volatile unsigned char *)p)[0];
        survived();
    } else if (!strcmp(what, "readonly_write")) {
        unsigned char *p = memkit_secure_malloc(32);
        CHECK(memkit_secure_readonly(p) == 0);
        sink = p[0]; /* reading is fine */
        ((volatile unsigned char *)p)[0] = 1;
        survived();
    } else if (!strcmp(what, "smaps")) {
        unsigned flagsets[] = {0, MEMKIT_SECURE_PACKED};
        for (int i = 0; i < 2; i++) {
            unsigned char *p = memkit_secure_alloc(48, flagsets[i]);
            char vm[512];
            CHECK(vmflags_of(p, vm, sizeof vm) == 0);
            printf("%s VmFlags:%s\n", i ? "packed" : "guarded", vm);
            CHECK(has_flag(vm, "lo") && has_flag(vm, "dd") && has_flag(vm, "wf"));
            /* The guard pages around a guarded secret are inaccessible. */
            if (!i) {
                char g[512];
                CHECK(vmflags_of(p + 4096, g, sizeof g) == 0);
                CHECK(!has_flag(g, "rd") && !has_flag(g, "wr"));
            }
        }
        printf("ok\n");
    } else if (!strcmp(what, "fork")) {
        /* A forked child reads zeros where the parent holds a secret, and
         * can free it; the parent keeps its bytes. */
        unsigned flagsets[] = {0, MEMKIT_SECURE_PACKED};
        for (int i = 0; i < 2; i++) {
            size_t n = 100;
            unsigned char *p = memkit_secure_alloc(n, flagsets[i]);
            memset(p, 0xAB, n);
            pid_t c = fork();
            CHECK(c >= 0);
            if (c == 0) {
                alarm(10);
                for (size_t k = 0; k < n; k++)
                    if (p[k] != 0) _exit(1);
                memkit_secure_free(p);
                _exit(0);
            }
            int st;
            CHECK(waitpid(c, &st, 0) == c);
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            for (size_t k = 0; k < n; k++) CHECK(p[k] == 0xAB);
            memkit_secure_free(p);
        }
        printf("ok\n");
    } else if (!strcmp(what, "secretmem")) {
        /* memfd_secret: locked, dontdump, absent in a forked child. */
        unsigned char *p = memkit_secure_alloc(64, MEMKIT_SECURE_SECRETMEM);
        CHECK(p != NULL);
        int prot = memkit_secure_protection(p);
        printf("secretmem=%d\n", !!(prot & MEMKIT_PROT_SECRETMEM));
        CHECK(prot & MEMKIT_PROT_LOCKED);
        CHECK(prot & MEMKIT_PROT_DONTDUMP);
        memset(p, 0x3c, 64);
        if (prot & MEMKIT_PROT_SECRETMEM) {
            CHECK(prot & MEMKIT_PROT_DONTFORK);
            pid_t c = fork();
            CHECK(c >= 0);
            if (c == 0) {
                alarm(10);
                sink = ((volatile unsigned char *)p)[0]; /* must fault */
                _exit(0);
            }
            int st;
            CHECK(waitpid(c, &st, 0) == c);
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
        }
        unsigned char *q = memkit_secure_alloc(64, MEMKIT_SECURE_SECRETMEM | MEMKIT_SECURE_PACKED);
        CHECK(q != NULL && (memkit_secure_protection(q) & MEMKIT_PROT_PACKED));
        memset(q, 1, 64);
        CHECK(memkit_secure_noaccess(p) == 0 && memkit_secure_readwrite(p) == 0);
        CHECK(p[63] == 0x3c);
        memkit_secure_free(p);
        memkit_secure_free(q);
        printf("ok\n");
    } else if (!strcmp(what, "refuse")) {
        /* Run without CAP_IPC_LOCK under a small RLIMIT_MEMLOCK: the
         * require policy refuses, best-effort and off allocate unlocked. */
        errno = 0;
        void *p = memkit_secure_malloc(1 << 20);
        CHECK(p == NULL);
        printf("errno=%s\n", errno == ENOMEM ? "ENOMEM" : errno == EPERM ? "EPERM" : "other");
        errno = 0;
        CHECK(memkit_secure_alloc(32, MEMKIT_SECURE_PACKED) == NULL || status_kb("VmLck") > 0);
        CHECK(memkit_secure_set_policy(MEMKIT_SECURE_BEST_EFFORT) == 0);
        p = memkit_secure_malloc(1 << 20);
        CHECK(p != NULL);
        int prot = memkit_secure_protection(p);
        CHECK(!(prot & MEMKIT_PROT_LOCKED) && (prot & MEMKIT_PROT_DONTDUMP));
        memkit_secure_free(p);
        void *q = memkit_secure_malloc(1 << 20); /* warned once only */
        CHECK(q != NULL);
        memkit_secure_free(q);
        CHECK(memkit_secure_set_policy(MEMKIT_SECURE_OFF) == 0);
        p = memkit_secure_malloc(1 << 20);
        CHECK(p != NULL && !(memkit_secure_protection(p) & MEMKIT_PROT_LOCKED));
        memkit_secure_free(p);
        printf("ok\n");
    } else if (!strcmp(what, "policy_env")) {
        /* MEMKIT_SECURE_MLOCK from the environment. */
        printf("policy=%d\n", memkit_secure_get_policy());
    } else if (!strcmp(what, "packed100k")) {
        enum { N = 100000 };
        static unsigned char *ptrs[N];
        long maps0 = count_maps(), lck0 = status_kb("VmLck");
        for (int i = 0; i < N; i++) {
            ptrs[i] = memkit_secure_alloc(32, MEMKIT_SECURE_PACKED);
            CHECK(ptrs[i] != NULL);
            memset(ptrs[i], (unsigned char)i, 32);
        }
        long maps1 = count_maps(), lck1 = status_kb("VmLck");
        for (int i = 0; i < N; i++)
            for (int k = 0; k < 32; k++) CHECK(ptrs[i][k] == (unsigned char)i);
        for (int i = 0; i < N; i += 2) memkit_secure_free(ptrs[i]);
        for (int i = 1; i < N; i += 2) memkit_secure_free(ptrs[i]);
        long lck2 = status_kb("VmLck");
        printf("mappings +%ld locked_kb=%ld after_free_kb=%ld\n", maps1 - maps0, lck1 - lck0, lck2);
        CHECK(maps1 - maps0 < 1000);
        CHECK(lck1 - lck0 < 6 * 1024);
        printf("ok\n");
    } else if (!strcmp(what, "guarded_maps")) {
        /* Mappings per guarded secret (libsodium: 3-4). */
        enum { N = 2000 };
        static void *ptrs[N];
        long maps0 = count_maps();
        for (int i = 0; i < N; i++) CHECK((ptrs[i] = memkit_secure_malloc(32)) != NULL);
        long maps1 = count_maps();
        for (int i = 0; i < N; i++) memkit_secure_free(ptrs[i]);
        printf("mappings_per_secret=%.2f\n", (double)(maps1 - maps0) / N);
        CHECK(maps1 - maps0 <= 3 * N);
        printf("ok\n");
    } else if (!strcmp(what, "vmlck")) {
        printf("VmLck=%ld\n", status_kb("VmLck"));
        /* Locked future memory: a new mapping is locked as it is made. */
        void *m = malloc(8 << 20);
        CHECK(m != NULL);
        printf("VmLck_after_malloc=%ld\n", status_kb("VmLck"));
        free(m);
    } else {
        fprintf(stderr, "unknown scenario %s\n", what);
        return 2;
    }
    return 0;
}
