// Shared-memory heap throughput: memkit_shm_alloc/free (libmemkit.so,
// include/memkit-shm.h) against Boost.Interprocess managed_shared_memory
// allocate/deallocate (rbtree_best_fit, its default), with 1 or 2
// processes allocating from one heap at once. Run by scripts/shm-bench,
// which interleaves the allocators and takes medians.
//
//   shm_vs_boost memkit|boost pairs64|random PROCS OPS
//
// pairs64: OPS times alloc 64 B, write it, free it.
// random:  a live set of 1000 blocks of 16-1024 B per process; OPS times
//          free a random one and allocate a new random size in its place.
// Each process opens the heap by name itself (a fresh handle, as an
// exec'd peer would), fills its live set, waits at a barrier, then runs.
// Prints: allocator workload procs ops seconds Mops/s (an op is one alloc
// and one free; seconds from the first process's start to the last one's
// end, CLOCK_MONOTONIC).
#include <boost/interprocess/managed_shared_memory.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit-shm.h"

namespace bip = boost::interprocess;

static const size_t HEAP = 64u << 20;
enum { LIVE = 1000 };

static uint64_t now_ns() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

static uint64_t rng_state;
static uint64_t rng() {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void die(const char *what) {
    fprintf(stderr, "shm_vs_boost: %s: %s\n", what, strerror(errno));
    _exit(1);
}

// The two heaps behind one interface (templates: no indirect call on the
// measured path).
struct Memkit {
    memkit_shm *h;
    static void create(const char *name) {
        memkit_shm *h = memkit_shm_create(name, HEAP, 0600);
        if (!h) die("memkit_shm_create");
        memkit_shm_close(h);
    }
    static void remove(const char *name) { memkit_shm_unlink(name); }
    explicit Memkit(const char *name) : h(memkit_shm_open(name, 0)) {
        if (!h) die("memkit_shm_open");
    }
    ~Memkit() { memkit_shm_close(h); }
    void *alloc(size_t n) {
        void *p = memkit_shm_alloc(h, n);
        if (!p) die("memkit_shm_alloc");
        return p;
    }
    void free(void *p) { memkit_shm_free(h, p); }
};

struct Boost {
    bip::managed_shared_memory m;
    static void create(const char *name) {
        bip::shared_memory_object::remove(name + 1);
        bip::managed_shared_memory m(bip::create_only, name + 1, HEAP, nullptr, 0600);
    }
    static void remove(const char *name) { bip::shared_memory_object::remove(name + 1); }
    explicit Boost(const char *name) : m(bip::open_only, name + 1) {}
    void *alloc(size_t n) { return m.allocate(n); }
    void free(void *p) { m.deallocate(p); }
};

template <class H>
static void worker(const char *name, bool random, long ops, int ready_fd, int go_fd, int out_fd,
                   unsigned seed) {
    H h(name);
    static void *live[LIVE];
    rng_state = 0x9e3779b97f4a7c15ull * (seed + 1);
    if (random)
        for (int k = 0; k < LIVE; k++) {
            size_t n = 16 + rng() % 1009;
            live[k] = h.alloc(n);
            memset(live[k], 1, 16);
        }
    char c = 'r';
    if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1) die("barrier");
    uint64_t t0 = now_ns();
    if (random) {
        for (long i = 0; i < ops; i++) {
            uint64_t r = rng();
            int k = int(r % LIVE);
            h.free(live[k]);
            live[k] = h.alloc(16 + (r >> 32) % 1009);
            *(volatile char *)live[k] = char(i);
        }
    } else {
        for (long i = 0; i < ops; i++) {
            void *p = h.alloc(64);
            *(volatile char *)p = char(i);
            h.free(p);
        }
    }
    uint64_t t1 = now_ns();
    if (random)
        for (int k = 0; k < LIVE; k++) h.free(live[k]);
    uint64_t times[2] = {t0, t1};
    if (write(out_fd, times, sizeof times) != sizeof times) die("report");
}

template <class H>
static double run(const char *name, bool random, int procs, long ops) {
    H::create(name);
    int ready[2], go[2], out[2];
    if (pipe(ready) || pipe(go) || pipe(out)) die("pipe");
    for (int p = 0; p < procs; p++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            try {
                worker<H>(name, random, ops, ready[1], go[0], out[1], unsigned(p));
            } catch (const std::exception &e) {
                fprintf(stderr, "shm_vs_boost: %s\n", e.what());
                _exit(1);
            }
            _exit(0);
        }
    }
    char c;
    for (int p = 0; p < procs; p++)
        if (read(ready[0], &c, 1) != 1) die("ready");
    for (int p = 0; p < procs; p++)
        if (write(go[1], "g", 1) != 1) die("go");
    uint64_t first = UINT64_MAX, last = 0;
    for (int p = 0; p < procs; p++) {
        uint64_t t[2];
        if (read(out[0], t, sizeof t) != sizeof t) die("result");
        first = t[0] < first ? t[0] : first;
        last = t[1] > last ? t[1] : last;
    }
    int failed = 0;
    for (int p = 0; p < procs; p++) {
        int st;
        if (wait(&st) < 0) die("wait");
        failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    H::remove(name);
    if (failed) {
        fprintf(stderr, "shm_vs_boost: a worker failed\n");
        exit(1);
    }
    return double(last - first) / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: shm_vs_boost memkit|boost pairs64|random PROCS OPS\n");
        return 2;
    }
    bool memkit = strcmp(argv[1], "memkit") == 0;
    bool random = strcmp(argv[2], "random") == 0;
    int procs = atoi(argv[3]);
    long ops = atol(argv[4]);
    if ((!memkit && strcmp(argv[1], "boost")) || (!random && strcmp(argv[2], "pairs64")) ||
        procs < 1 || procs > 64 || ops < 1) {
        fprintf(stderr, "shm_vs_boost: bad arguments\n");
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "/memkit-bench-shm-%d", int(getpid()));
    double s = memkit ? run<Memkit>(name, random, procs, ops) : run<Boost>(name, random, procs, ops);
    printf("%s %s %d %ld %.4f %.2f\n", argv[1], argv[2], procs, ops, s,
           double(ops) * procs / s / 1e6);
    return 0;
}
