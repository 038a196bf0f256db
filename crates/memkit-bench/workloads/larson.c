/* larson: a server simulation in the spirit of Larson & Krishnan's
 * benchmark. A shared array of slots holds live blocks; worker threads
 * repeatedly replace a random slot with a fresh block of random size and
 * free the block they displaced, which was usually allocated by another
 * thread (or by a thread that has since exited). Workers run in
 * generations: each generation's threads exit and new ones take over.
 * Usage: larson [threads] [generations] [ops_per_thread] [sized]
 * With `sized` (the larson-sized row) blocks come from C++ `operator
 * new(size_t)` and go back through the sized `operator delete(void*,
 * size_t)`, as a C++ server built with -fsized-deallocation does: glibc 2.36
 * has no C23 free_sized, and the sized delete is the size-passing free that
 * every allocator here implements (libstdc++'s forwards to free).
 * Metric: ops_per_sec (replacements per second over all threads). */
#include "common.h"
#include <stdatomic.h>

/* The allocation pair in use: malloc/free, or operator new / sized delete. */
static void *(*alloc_fn)(size_t);
static void (*sized_free_fn)(void *, size_t);

static void *plain_alloc(size_t n)
{
    return malloc(n);
}

static void plain_free(void *p, size_t n)
{
    (void)n;
    free(p);
}

/* Resolves operator new and sized delete the way the dynamic linker would
 * for a C++ program: libstdc++ joins the global scope, so a preloaded
 * allocator's definitions come first and libstdc++'s are the fallback. */
static void use_sized_delete(void)
{
    if (dlopen("libstdc++.so.6", RTLD_NOW | RTLD_GLOBAL) == NULL)
        fail("dlopen(libstdc++.so.6): %s", dlerror());
    void *nw = dlsym(RTLD_DEFAULT, "_Znwm");
    void *del = dlsym(RTLD_DEFAULT, "_ZdlPvm");
    if (nw == NULL || del == NULL)
        fail("operator new / sized operator delete not found");
    alloc_fn = (void *(*)(size_t))nw;
    sized_free_fn = (void (*)(void *, size_t))del;
    /* Which objects they came from goes into the output: an allocator
     * that exports only some of the C++ forms is visible here. */
    Dl_info info;
    if (dladdr(nw, &info) != 0 && info.dli_fname != NULL)
        printf("operator-new %s\n", info.dli_fname);
    if (dladdr(del, &info) != 0 && info.dli_fname != NULL)
        printf("sized-delete %s\n", info.dli_fname);
}

#define SLOTS 20000
#define MIN_SIZE 16
#define MAX_SIZE 512

struct hdr {
    uint32_t size;
    uint32_t thread;
    uint64_t key;
};

static _Atomic(unsigned char *) slots[SLOTS];

static unsigned char *make_block(uint64_t *rng, uint64_t key, uint32_t thread)
{
    uint32_t n = (uint32_t)rng_range(rng, MIN_SIZE + 8, MAX_SIZE);
    unsigned char *p = alloc_fn(n);
    if (p == NULL)
        fail("allocation of %u bytes returned NULL", n);
    struct hdr h = {n, thread, key};
    memcpy(p, &h, sizeof h);
    uint64_t t = mix64(key ^ n);
    memcpy(p + n - 8, &t, 8);
    return p;
}

static void check_and_free(unsigned char *p)
{
    struct hdr h;
    uint64_t t;
    memcpy(&h, p, sizeof h);
    if (h.size < MIN_SIZE + 8 || h.size > MAX_SIZE)
        fail("block %p: corrupt header (size %u)", (void *)p, h.size);
    memcpy(&t, p + h.size - 8, 8);
    if (t != mix64(h.key ^ h.size))
        fail("block %p (%u bytes, thread %u): tail overwritten", (void *)p, h.size, h.thread);
    sized_free_fn(p, h.size);
}

struct worker {
    pthread_t tid;
    uint32_t id;
    long ops;
    uint64_t freed;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = mix64(w->id + 1000);
    for (long i = 0; i < w->ops; i++) {
        unsigned s = (unsigned)(rng_next(&rng) % SLOTS);
        unsigned char *p = make_block(&rng, ((uint64_t)w->id << 40) | (uint64_t)i, w->id);
        unsigned char *old = atomic_exchange_explicit(&slots[s], p, memory_order_acq_rel);
        if (old != NULL) {
            check_and_free(old);
            w->freed++;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = arg_long(argc, argv, 1, 2);
    long gens = arg_long(argc, argv, 2, 10);
    long ops = arg_long(argc, argv, 3, 300000);
    alloc_fn = plain_alloc;
    sized_free_fn = plain_free;
    report_allocator();
    if (argc > 4) {
        if (strcmp(argv[4], "sized") != 0)
            fail("argument 4: expected 'sized', got '%s'", argv[4]);
        use_sized_delete();
    }
    uint64_t rng = 1;
    for (unsigned s = 0; s < SLOTS; s++)
        atomic_store(&slots[s], make_block(&rng, s, 0));
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    if (ws == NULL)
        fail("calloc");
    uint64_t freed = 0;
    double t0 = now_s();
    for (long g = 0; g < gens; g++) {
        for (long t = 0; t < threads; t++) {
            ws[t] = (struct worker){.id = (uint32_t)(1 + g * threads + t), .ops = ops};
            if (pthread_create(&ws[t].tid, NULL, work, &ws[t]) != 0)
                fail("pthread_create");
        }
        for (long t = 0; t < threads; t++) {
            pthread_join(ws[t].tid, NULL);
            freed += ws[t].freed;
        }
    }
    double t1 = now_s();
    uint64_t live = 0;
    for (unsigned s = 0; s < SLOTS; s++) {
        unsigned char *p = atomic_load(&slots[s]);
        if (p != NULL) {
            check_and_free(p);
            live++;
        }
    }
    uint64_t made = SLOTS + (uint64_t)threads * gens * ops;
    if (freed + live != made)
        fail("made %llu blocks, freed %llu, live %llu", (unsigned long long)made,
             (unsigned long long)freed, (unsigned long long)live);
    free(ws);
    metric("ops_per_sec", (double)threads * gens * ops / (t1 - t0), "op/s");
    finish_ok();
    return 0;
}
