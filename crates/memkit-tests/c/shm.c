/* Shared-memory heaps from C (include/memkit-shm.h), linked with
 * libmemkit.so. One program, one mode per run (argv[1]); the driver
 * (tests/shm.rs) starts it as separate exec'd processes, kills some of
 * them, and checks what the others see. Prints "ok <mode> ..." on
 * success; exits 1 with the failed check on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "memkit.h"

/* The shared list: nodes linked by offsets, never pointers. */
struct node {
    uint64_t next;
    uint32_t writer, seq;
    uint64_t check;
};
struct list {
    uint64_t head;
    uint64_t count;
};

static uint64_t node_check(uint32_t writer, uint32_t seq) {
    return (uint64_t)writer * 1000003u + seq * 7919u + 1;
}

static memkit_shm *open_rw(const char *name) {
    memkit_shm *h = memkit_shm_open(name, 0);
    CHECK(h, "open %s", name);
    return h;
}

static struct list *the_list(memkit_shm *h) {
    struct list *l = memkit_shm_named(h, "list", sizeof *l, NULL);
    CHECK(l, "named list");
    return l;
}

static uint64_t rng_state;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* create NAME SIZE [MODE]: a heap with its list, closed again. */
static int create(char **argv) {
    unsigned mode = argv[4] ? (unsigned)strtoul(argv[4], NULL, 8) : 0600;
    memkit_shm *h = memkit_shm_create(argv[2], strtoull(argv[3], NULL, 0), mode);
    CHECK(h, "create %s", argv[2]);
    int created = 0;
    CHECK(memkit_shm_named(h, "list", sizeof(struct list), &created) && created, "list");
    CHECK(memkit_shm_check(h) == 0, "check");
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok create\n");
    return 0;
}

/* push NAME WRITER COUNT: COUNT nodes linked in under the lock. The node
 * is allocated and filled before the lock, linked while holding it. */
static int push(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    uint32_t writer = (uint32_t)atoi(argv[3]);
    int count = atoi(argv[4]);
    struct list *l = the_list(h);
    for (int i = 0; i < count; i++) {
        struct node *n = memkit_shm_alloc(h, sizeof *n + (size_t)(i % 5) * 40);
        CHECK(n, "alloc node %d", i);
        CHECK(((uintptr_t)n & 15) == 0, "alignment");
        n->writer = writer;
        n->seq = (uint32_t)i;
        n->check = node_check(writer, (uint32_t)i);
        CHECK(memkit_shm_lock(h) == 0, "lock");
        n->next = l->head;
        l->head = memkit_shm_offset(h, n);
        l->count++;
        CHECK(memkit_shm_unlock(h) == 0, "unlock");
    }
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok push %u %d\n", writer, count);
    return 0;
}

/* verify NAME WRITERS COUNT [ro]: every writer's COUNT nodes are on the
 * list, each once, in its order; the heap checks clean. */
static int verify(char **argv) {
    int ro = argv[5] && strcmp(argv[5], "ro") == 0;
    memkit_shm *h = memkit_shm_open(argv[2], ro ? MEMKIT_SHM_READONLY : 0);
    CHECK(h, "open");
    int writers = atoi(argv[3]), count = atoi(argv[4]);
    struct list *l = memkit_shm_named(h, "list", sizeof *l, NULL);
    CHECK(l, "list");
    int *next_seq = calloc((size_t)writers + 1, sizeof *next_seq);
    uint64_t seen = 0;
    for (uint64_t off = l->head; off; ) {
        struct node *n = memkit_shm_at(h, off);
        CHECK(n, "node at %llu", (unsigned long long)off);
        CHECK(n->writer >= 1 && (int)n->writer <= writers, "writer %u", n->writer);
        CHECK(n->check == node_check(n->writer, n->seq), "node content");
        /* Newest first: each writer's sequence counts down. */
        int want = count - 1 - next_seq[n->writer];
        CHECK((int)n->seq == want, "writer %u seq %u, want %d", n->writer, n->seq, want);
        next_seq[n->writer]++;
        seen++;
        off = n->next;
    }
    CHECK(seen == (uint64_t)writers * (uint64_t)count && l->count == seen,
          "%llu nodes, count %llu", (unsigned long long)seen, (unsigned long long)l->count);
    int problems = memkit_shm_check(h);
    CHECK(problems == 0, "%d inconsistencies", problems);
    if (ro) {
        errno = 0;
        CHECK(memkit_shm_alloc(h, 16) == NULL && errno == EROFS, "read-only alloc");
        CHECK(memkit_shm_lock(h) == -1 && errno == EROFS, "read-only lock");
        CHECK(memkit_shm_named(h, "new", 8, NULL) == NULL && errno == ENOENT, "read-only named");
        memkit_shm_free(h, memkit_shm_at(h, l->head)); /* ignored */
        CHECK(memkit_shm_check(h) == 0, "check");
    }
    size_t used = 0, cap = 0;
    CHECK(memkit_shm_stats(h, &used, &cap) == 0 && used > 0 && cap > used, "stats");
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok verify %llu\n", (unsigned long long)seen);
    return 0;
}

/* churn NAME SEED [ITERATIONS]: random allocations and frees of mixed
 * sizes, contents checked; every 64th step increments a counter under the
 * lock. Runs until killed unless ITERATIONS is given. */
static int churn(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    rng_state = strtoull(argv[3], NULL, 0) * 2654435761u + 1;
    long iterations = argv[4] ? atol(argv[4]) : -1;
    uint64_t *counter = memkit_shm_named(h, "counter", sizeof *counter, NULL);
    CHECK(counter, "counter");
    enum { LIVE = 256 };
    static void *live[LIVE];
    static size_t sizes[LIVE];
    printf("ready\n");
    fflush(stdout);
    for (long i = 0; iterations < 0 || i < iterations; i++) {
        int k = (int)(rng() % LIVE);
        if (live[k]) {
            uint64_t tag = memkit_shm_offset(h, live[k]) ^ 0x5a5a5a5a5a5a5a5aull;
            CHECK(*(uint64_t *)live[k] == tag, "block content");
            CHECK(memcmp((char *)live[k] + sizes[k] - 8, &tag, 8) == 0, "block tail");
            memkit_shm_free(h, live[k]);
            live[k] = NULL;
        } else {
            uint64_t r = rng();
            size_t size = r % 100 < 80 ? 16 + (r >> 8) % 240
                        : r % 100 < 97 ? 16 + (r >> 8) % 8000
                                       : 16 + (r >> 8) % 100000;
            void *p = memkit_shm_alloc(h, size);
            if (!p) {
                CHECK(errno == ENOMEM, "alloc %zu", size);
                continue;
            }
            uint64_t tag = memkit_shm_offset(h, p) ^ 0x5a5a5a5a5a5a5a5aull;
            memcpy(p, &tag, 8);
            memcpy((char *)p + size - 8, &tag, 8);
            live[k] = p;
            sizes[k] = size;
        }
        if (i % 64 == 0) {
            int r = memkit_shm_lock(h);
            CHECK(r == 0 || r == MEMKIT_SHM_OWNER_DIED, "lock %d", r);
            ++*counter;
            CHECK(memkit_shm_unlock(h) == 0, "unlock");
        }
    }
    for (int k = 0; k < LIVE; k++)
        memkit_shm_free(h, live[k]);
    int problems = memkit_shm_check(h);
    CHECK(problems == 0, "%d inconsistencies", problems);
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok churn\n");
    return 0;
}

/* check NAME: the heap's structures are consistent; prints used bytes. */
static int check(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    int problems = memkit_shm_check(h);
    CHECK(problems == 0, "%d inconsistencies", problems);
    size_t used = 0, cap = 0;
    CHECK(memkit_shm_stats(h, &used, &cap) == 0, "stats");
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok check used %zu capacity %zu\n", used, cap);
    return 0;
}

/* hold NAME: takes the user lock and waits to be killed. */
static int hold(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    CHECK(memkit_shm_lock(h) == 0, "lock");
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}

/* views NAME: holds NAME read-only and an anonymous (memfd) heap, and
 * waits to be killed (memkit maps labels both). */
static int views(char **argv) {
    memkit_shm *ro = memkit_shm_open(argv[2], MEMKIT_SHM_READONLY);
    CHECK(ro, "open read-only");
    memkit_shm *anon = memkit_shm_create_anon(1 << 20);
    CHECK(anon, "create_anon");
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}

/* owner-died NAME: the lock's holder died: the first lock says so, the
 * next ones do not. */
static int owner_died(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    int r = memkit_shm_lock(h);
    CHECK(r == MEMKIT_SHM_OWNER_DIED, "first lock after the holder died: %d", r);
    CHECK(memkit_shm_unlock(h) == 0, "unlock");
    CHECK(memkit_shm_lock(h) == 0, "second lock");
    errno = 0;
    CHECK(memkit_shm_unlock(h) == 0, "unlock");
    CHECK(memkit_shm_unlock(h) == -1 && errno == EPERM, "unlock of a lock not held");
    CHECK(memkit_shm_check(h) == 0, "check");
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok owner-died\n");
    return 0;
}

/* full NAME: allocations until ENOMEM, then everything freed, then as
 * many again, and one block of most of the heap. */
static int full(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    size_t used, cap;
    CHECK(memkit_shm_stats(h, &used, &cap) == 0, "stats");
    size_t sizes[] = {48, 3000, 50000};
    for (int s = 0; s < 3; s++) {
        size_t max = cap / sizes[s] + 16, n = 0;
        void **got = malloc(max * sizeof *got);
        for (;;) {
            errno = 0;
            void *p = memkit_shm_alloc(h, sizes[s]);
            if (!p) {
                CHECK(errno == ENOMEM, "full heap gives ENOMEM");
                break;
            }
            CHECK(n < max, "more blocks than fit");
            got[n++] = p;
        }
        CHECK(n * sizes[s] > cap / 2, "only %zu blocks of %zu", n, sizes[s]);
        CHECK(memkit_shm_check(h) == 0, "check when full");
        for (size_t i = 0; i < n; i++)
            memkit_shm_free(h, got[i]);
        CHECK(memkit_shm_check(h) == 0, "check after frees");
        void *big = memkit_shm_alloc(h, cap - 128 * 1024);
        CHECK(big, "a block of the whole heap after the frees");
        memkit_shm_free(h, big);
        size_t again = 0;
        for (;;) {
            void *p = memkit_shm_alloc(h, sizes[s]);
            if (!p)
                break;
            got[again++] = p;
        }
        CHECK(again >= n - n / 50, "%zu blocks then %zu", n, again);
        for (size_t i = 0; i < again; i++)
            memkit_shm_free(h, got[i]);
        free(got);
        printf("ok full %zu x %zu\n", n, sizes[s]);
    }
    CHECK(memkit_shm_stats(h, &used, NULL) == 0, "stats");
    CHECK(memkit_shm_close(h) == 0, "close");
    return 0;
}

/* foreign NAME: frees of pointers that are no allocated block change
 * nothing. */
static int foreign(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    char *a = memkit_shm_alloc(h, 100), *b = memkit_shm_alloc(h, 200000);
    CHECK(a && b, "alloc");
    size_t before, after;
    CHECK(memkit_shm_stats(h, &before, NULL) == 0, "stats");
    int local;
    void *m = malloc(64);
    void *bad[] = {&local, m, a + 16, a + 1, b + 4096, b + 16, memkit_shm_at(h, 64),
                   memkit_shm_at(h, 4096), (void *)foreign, NULL};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        memkit_shm_free(h, bad[i]);
    CHECK(memkit_shm_stats(h, &after, NULL) == 0 && after == before, "%zu then %zu", before, after);
    CHECK(memkit_shm_check(h) == 0, "check");
    CHECK(memkit_shm_offset(h, NULL) == 0 && memkit_shm_offset(h, &local) == 0, "offset");
    CHECK(memkit_shm_at(h, 0) == NULL && memkit_shm_at(h, (uint64_t)1 << 50) == NULL, "at");
    CHECK(memkit_shm_at(h, memkit_shm_offset(h, b)) == b, "round trip");
    memkit_shm_free(h, a);
    memkit_shm_free(h, b);
    free(m);
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok foreign\n");
    return 0;
}

/* errors NAME: the documented errno of each misuse. */
static int errors(char **argv) {
    errno = 0;
    CHECK(!memkit_shm_create("no-slash", 1 << 20, 0600) && errno == EINVAL, "no slash");
    CHECK(!memkit_shm_create("/a/b", 1 << 20, 0600) && errno == EINVAL, "two slashes");
    CHECK(!memkit_shm_create(argv[2], 1 << 20, 0600) && errno == EEXIST, "exists");
    CHECK(!memkit_shm_open("/memkit-no-such-heap", 0) && errno == ENOENT, "no such heap");
    CHECK(!memkit_shm_open(argv[2], 8) && errno == EINVAL, "bad flags");
    CHECK(!memkit_shm_open("nope", 0) && errno == EINVAL, "open without slash");
    CHECK(memkit_shm_unlink("/memkit-no-such-heap") == -1 && errno == ENOENT, "unlink");
    CHECK(memkit_shm_close(NULL) == -1 && errno == EINVAL, "close NULL");
    CHECK(!memkit_shm_alloc(NULL, 8) && errno == EINVAL, "alloc NULL");
    /* Not a memkit heap: a plain shared-memory object. */
    int fd = shm_open("/memkit-test-plain", O_CREAT | O_RDWR, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 1 << 20) == 0, "plain object");
    close(fd);
    CHECK(!memkit_shm_open("/memkit-test-plain", 0) && errno == EINVAL, "foreign object");
    shm_unlink("/memkit-test-plain");
    printf("ok errors\n");
    return 0;
}

/* too-large NAME SIZE: refused at creation, nothing left behind. */
static int too_large(char **argv) {
    errno = 0;
    memkit_shm *h = memkit_shm_create(argv[2], strtoull(argv[3], NULL, 0), 0600);
    CHECK(!h && (errno == ENOSPC || errno == ENOMEM), "refused");
    int e = errno;
    CHECK(!memkit_shm_open(argv[2], 0) && errno == ENOENT, "nothing left");
    printf("ok too-large %s\n", e == ENOSPC ? "ENOSPC" : "ENOMEM");
    return 0;
}

/* denied NAME: a child running as uid 65534 cannot open a 0600 heap of
 * root's, read-write or read-only. */
static int denied(char **argv) {
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(2);
        errno = 0;
        if (memkit_shm_open(argv[2], 0) || errno != EACCES)
            _exit(3);
        errno = 0;
        if (memkit_shm_open(argv[2], MEMKIT_SHM_READONLY) || errno != EACCES)
            _exit(4);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "wait");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    printf("ok denied\n");
    return 0;
}

/* anon: a memfd heap handed to a forked child (the handle) and to an
 * exec'd program (the fd). */
static int anon(char **argv) {
    memkit_shm *h = memkit_shm_create_anon(1 << 20);
    CHECK(h, "create_anon");
    uint64_t *slot = memkit_shm_named(h, "slot", 2 * sizeof *slot, NULL);
    CHECK(slot, "named");
    pid_t pid = fork();
    if (pid == 0) {
        char *s = memkit_shm_alloc(h, 32);
        if (!s)
            _exit(2);
        strcpy(s, "from the child");
        slot[0] = memkit_shm_offset(h, s);
        _exit(memkit_shm_check(h) == 0 ? 0 : 3);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d", st);
    CHECK(strcmp(memkit_shm_at(h, slot[0]), "from the child") == 0, "child's string");
    int fd = dup(memkit_shm_fd(h)); /* without close-on-exec */
    CHECK(fd >= 0, "dup");
    char fdtext[16];
    snprintf(fdtext, sizeof fdtext, "%d", fd);
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "anon-exec", fdtext, (char *)NULL);
        _exit(4);
    }
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec'd %d", st);
    CHECK(strcmp(memkit_shm_at(h, slot[1]), "from the exec'd one") == 0, "exec'd string");
    memkit_shm_free(h, memkit_shm_at(h, slot[0]));
    memkit_shm_free(h, memkit_shm_at(h, slot[1]));
    CHECK(memkit_shm_check(h) == 0, "check");
    unsigned cursor = 0;
    const char *key;
    size_t size;
    CHECK(memkit_shm_named_next(h, &cursor, &key, &size) == slot, "iteration");
    CHECK(strcmp(key, "slot") == 0 && size == 2 * sizeof *slot, "key %s", key);
    CHECK(memkit_shm_named_next(h, &cursor, &key, &size) == NULL, "end");
    CHECK(memkit_shm_named_remove(h, "slot") == 0, "remove");
    CHECK(memkit_shm_named_remove(h, "slot") == -1 && errno == ENOENT, "removed");
    CHECK(memkit_shm_close(h) == 0, "close");
    printf("ok anon\n");
    return 0;
}

static int anon_exec(char **argv) {
    memkit_shm *h = memkit_shm_open_fd(atoi(argv[2]), 0);
    CHECK(h, "open_fd");
    uint64_t *slot = memkit_shm_named(h, "slot", 2 * sizeof *slot, NULL);
    CHECK(slot, "named");
    char *s = memkit_shm_alloc(h, 32);
    CHECK(s, "alloc");
    strcpy(s, "from the exec'd one");
    slot[1] = memkit_shm_offset(h, s);
    CHECK(memkit_shm_close(h) == 0, "close");
    return 0;
}

/* attach-exit NAME: opens and ends without closing (a stale attacher). */
static int attach_exit(char **argv) {
    memkit_shm *h = open_rw(argv[2]);
    CHECK(memkit_shm_alloc(h, 64), "alloc");
    printf("ok attach-exit\n");
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv) {
    (void)argc;
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct {
        const char *mode;
        int (*run)(char **);
    } modes[] = {
        {"create", create},     {"push", push},       {"verify", verify},
        {"churn", churn},       {"check", check},     {"hold", hold},
        {"owner-died", owner_died}, {"full", full},   {"foreign", foreign},
        {"errors", errors},     {"too-large", too_large}, {"denied", denied},
        {"anon", anon},         {"anon-exec", anon_exec}, {"attach-exit", attach_exit},
        {"views", views},
    };
    for (size_t i = 0; argv[1] && i < sizeof modes / sizeof *modes; i++)
        if (strcmp(argv[1], modes[i].mode) == 0)
            return modes[i].run(argv);
    fprintf(stderr, "usage: shm MODE ARGS...\n");
    return 2;
}
