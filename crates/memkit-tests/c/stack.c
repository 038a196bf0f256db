/* MEMKIT_STACK_BUFFER and memkit_stack_remaining (include/memkit-stack.h),
 * linked with libmemkit.so. Run with RLIMIT_STACK = 8 MiB (the driver,
 * tests/stack.rs, sets it). Each check states a fact about where a buffer
 * is: on the stack means inside the thread's stack below the caller's
 * frame and unknown to malloc_usable_size (memkit answers 0 for pointers
 * it never handed out); on the heap means outside the stack and a live
 * block of at least the size. Prints "ok <case>" per case; exits 1 with
 * the failed check on stderr. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* Bytes the program has allocated (memkit's mallinfo2: small blocks in use
 * plus huge blocks). */
static size_t live_bytes(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

struct range {
    uintptr_t lo, hi;
};

/* The calling thread's stack as glibc describes it. */
static struct range thread_stack(void) {
    pthread_attr_t a;
    void *addr;
    size_t size;
    CHECK(pthread_getattr_np(pthread_self(), &a) == 0, "pthread_getattr_np");
    CHECK(pthread_attr_getstack(&a, &addr, &size) == 0, "pthread_attr_getstack");
    pthread_attr_destroy(&a);
    return (struct range){(uintptr_t)addr, (uintptr_t)addr + size};
}

/* On the stack: inside `s`, below `frame` (an address in the caller's
 * frame), and no heap block. */
static int on_stack(const void *p, size_t size, struct range s, const void *frame) {
    uintptr_t a = (uintptr_t)p;
    return a >= s.lo && a + size <= (uintptr_t)frame && malloc_usable_size((void *)p) == 0;
}

static int on_heap(const void *p, size_t size, struct range s) {
    uintptr_t a = (uintptr_t)p;
    return (a + size <= s.lo || a >= s.hi) && malloc_usable_size((void *)p) >= size;
}

/* ---- a 64 KiB thread stack: 1 KiB on the stack, 60 KiB and 1 MiB on the heap */

static void *small_stack(void *arg) {
    (void)arg;
    struct range s = thread_stack();
    char here;
    size_t r = memkit_stack_remaining();
    CHECK(s.hi - s.lo <= 64 * KiB, "stack %zu", (size_t)(s.hi - s.lo));
    size_t mine = (uintptr_t)&here - s.lo;
    CHECK(r <= mine && mine - r < 1 * KiB, "remaining %zu, from here %zu", r, mine);
    size_t before = live_bytes();
    {
        MEMKIT_STACK_BUFFER(a, 1 * KiB);
        CHECK(on_stack(a, 1 * KiB, s, &here), "1 KiB at %p, stack %#lx-%#lx", a, s.lo, s.hi);
        memset(a, 1, 1 * KiB);
        CHECK(live_bytes() == before, "the stack buffer allocated");
    }
    {
        MEMKIT_STACK_BUFFER(b, 60 * KiB);
        CHECK(on_heap(b, 60 * KiB, s), "60 KiB at %p, stack %#lx-%#lx", b, s.lo, s.hi);
        memset(b, 2, 60 * KiB);
        CHECK(live_bytes() >= before + 60 * KiB, "live %zu", live_bytes());
    }
    {
        MEMKIT_STACK_BUFFER(c, 1 * MiB);
        CHECK(on_heap(c, 1 * MiB, s), "1 MiB at %p", c);
        memset(c, 3, 1 * MiB);
    }
    CHECK(live_bytes() == before, "left allocated: %zu -> %zu", before, live_bytes());
    /* The rule at its edge: just under the share fits, just over does not. */
    size_t limit = (memkit_stack_remaining() - MEMKIT_STACK_RED_ZONE) / MEMKIT_STACK_SHARE;
    {
        MEMKIT_STACK_BUFFER(d, limit - 256);
        CHECK(on_stack(d, limit - 256, s, &here), "limit - 256 (%zu) at %p", limit - 256, d);
    }
    {
        MEMKIT_STACK_BUFFER(e, limit + 256);
        CHECK(on_heap(e, limit + 256, s), "limit + 256 (%zu) at %p", limit + 256, e);
    }
    {
        MEMKIT_STACK_BUFFER(z, 0);
        CHECK(z != NULL, "size 0");
    }
    return NULL;
}

static void in_thread(void *(*fn)(void *), size_t stack) {
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    CHECK(pthread_attr_setstacksize(&a, stack) == 0, "stacksize %zu", stack);
    CHECK(pthread_create(&t, &a, fn, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
}

/* ---- recursion 1000 deep, 64 KiB a level, on an 8 MiB stack */

#define DEPTH 1000
#define LEVEL (64 * KiB)

struct level {
    size_t remaining;
    int stacked;
};
static struct level levels[DEPTH];
static struct range rec_stack;
static const char *rec_top;

static int recurse(int depth) {
    if (depth == DEPTH)
        return 0;
    levels[depth].remaining = memkit_stack_remaining();
    MEMKIT_STACK_BUFFER(buf, LEVEL);
    CHECK(buf != NULL, "depth %d: no buffer", depth);
    int stacked = malloc_usable_size(buf) == 0;
    if (stacked)
        CHECK(on_stack(buf, LEVEL, rec_stack, rec_top), "depth %d at %p", depth, buf);
    else
        CHECK(on_heap(buf, LEVEL, rec_stack), "depth %d at %p", depth, buf);
    levels[depth].stacked = stacked;
    memset(buf, depth & 0xff, LEVEL);
    int below = recurse(depth + 1);
    /* Nothing deeper wrote into this level's buffer. */
    for (size_t i = 0; i < LEVEL; i += 4093)
        CHECK(((unsigned char *)buf)[i] == (depth & 0xff), "depth %d overwritten at %zu", depth, i);
    return below + stacked;
}

static void recursion(const char *where, struct range s) {
    char top;
    rec_stack = s;
    rec_top = &top;
    size_t before = live_bytes();
    int stacked = recurse(0);
    CHECK(live_bytes() == before, "%s: left allocated: %zu -> %zu", where, before, live_bytes());
    /* On the stack while it fits, then on the heap, never back. */
    size_t need = MEMKIT_STACK_RED_ZONE + MEMKIT_STACK_SHARE * LEVEL;
    for (int d = 0; d < DEPTH; d++) {
        CHECK(levels[d].stacked == (d < stacked), "%s: depth %d", where, d);
        if (d > 0)
            CHECK(levels[d].remaining < levels[d - 1].remaining, "%s: remaining grew at %d: %zu -> %zu",
                  where, d, levels[d - 1].remaining, levels[d].remaining);
        if (levels[d].stacked)
            CHECK(levels[d].remaining >= need, "%s: depth %d on the stack with %zu left", where, d,
                  levels[d].remaining);
        else
            CHECK(levels[d].remaining < need + 1 * KiB, "%s: depth %d on the heap with %zu left", where,
                  d, levels[d].remaining);
    }
    /* About (8 MiB - 32 KiB - 4 x 64 KiB) / 64 KiB levels fit. */
    CHECK(stacked >= 105 && stacked <= 124, "%s: %d levels on the stack", where, stacked);
    printf("%s: %d levels on the stack, %d on the heap, %zu bytes left at the deepest stack level\n",
           where, stacked, DEPTH - stacked, levels[stacked - 1].remaining);
}

static void *big_stack(void *arg) {
    (void)arg;
    recursion("8 MiB thread", thread_stack());
    return NULL;
}

int main(void) {
    char here;
    /* The main thread: RLIMIT_STACK (8 MiB) below the top of [stack]. */
    size_t r = memkit_stack_remaining();
    CHECK(r > 8 * MiB - 256 * KiB && r <= 8 * MiB, "main thread: %zu", r);
    struct range main_stack = {(uintptr_t)&here - r, (uintptr_t)&here + 256 * KiB};

    in_thread(small_stack, 64 * KiB);
    printf("ok 64 KiB thread\n");

    recursion("main thread", main_stack);
    printf("ok recursion on the main thread\n");
    in_thread(big_stack, 8 * MiB);
    printf("ok recursion on an 8 MiB thread\n");

    /* A buffer in a loop is released each iteration: 1000 x 64 KiB, more
     * than the whole stack, all on it (alloca would keep them all). */
    size_t r0 = memkit_stack_remaining();
    for (int i = 0; i < 1000; i++) {
        MEMKIT_STACK_BUFFER(b, LEVEL);
        CHECK(on_stack(b, LEVEL, main_stack, &here), "iteration %d at %p", i, b);
        memset(b, i, LEVEL);
    }
    CHECK(memkit_stack_remaining() == r0, "remaining %zu -> %zu", r0, memkit_stack_remaining());
    printf("ok loop\n");
    return 0;
}
