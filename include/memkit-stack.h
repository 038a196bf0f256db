/* memkit-stack.h: stack buffers that never overflow the stack, exported by
 * libmemkit.so (included by memkit.h).
 *
 *   void parse(const char *text, size_t n) {
 *       MEMKIT_STACK_BUFFER(tmp, 2 * n);   // void *tmp: stack or heap
 *       if (!tmp) return;                  // heap fallback out of memory
 *       ...                                // use tmp[0 .. 2n)
 *   }                                      // released here, either way
 *
 * A buffer goes on the stack only when it fits with room to spare:
 *
 *   size <= (memkit_stack_remaining() - MEMKIT_STACK_RED_ZONE) / MEMKIT_STACK_SHARE
 *
 * that is, the RED ZONE of 32 KiB below the caller always stays free for
 * the code called afterwards (libc, signal handlers), and a buffer takes at
 * most A QUARTER of what remains beyond it, so deeper code keeps three
 * times as much: recursion with an n-byte buffer a level moves to the heap
 * with at least 32 KiB + 4n of stack left for its deeper frames. Otherwise
 * the buffer comes from malloc (memkit's heap when the program runs on
 * libmemkit.so). Design and comparisons: docs/STACK.md.
 *
 * Link with -lmemkit (memkit_stack_remaining is libmemkit.so's). GNU C
 * (gcc, clang; g++ accepts it as an extension): the macro uses a
 * variable-length array and __attribute__((cleanup)).
 */
#ifndef MEMKIT_STACK_H
#define MEMKIT_STACK_H

#include <stddef.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes between the calling frame and the end of the calling thread's
 * usable stack. Main thread: the stack mapping of /proc/self/maps, which
 * may grow down to RLIMIT_STACK below its top and to 1 MiB (the kernel's
 * stack_guard_gap) above the mapping below it, less a page. Other threads:
 * their attributes (pthread_getattr_np: the stack above the guard).
 * Computed on a thread's first call and cached for the thread (a later
 * setrlimit is not seen); 0 when the stack pointer is outside that stack
 * (an alternate signal stack, a coroutine stack) or the stack is unknown.
 * Async-signal-safe after the thread's first call; the first call
 * allocates (pthread_getattr_np) and must not be made in a signal
 * handler. */
size_t memkit_stack_remaining(void);

#ifdef __cplusplus
}
#endif

/* Bytes below the caller a stack buffer never takes. */
#define MEMKIT_STACK_RED_ZONE ((size_t)32 * 1024)
/* A stack buffer takes at most 1/MEMKIT_STACK_SHARE of what remains beyond
 * the red zone. */
#define MEMKIT_STACK_SHARE ((size_t)4)

/* MEMKIT_STACK_BUFFER(name, size): declares `void *name`, `size` bytes
 * aligned to 16, uninitialised: on the stack when it fits (the rule
 * above), else from malloc (NULL if that fails; size 0 gives a valid
 * pointer). Released when the enclosing scope ends, whichever it is: the
 * stack part is a variable-length array (unlike alloca, whose memory lives
 * until the function returns, a buffer in a loop is reused), the heap part
 * is freed by a cleanup attribute. Do not free `name`, and do not jump
 * into its scope (goto, longjmp skips the free). Stack pages are touched
 * one by one from the top down before use, in the order the stack grows,
 * so the buffer can never jump over a guard page (Stack Clash). `size` is
 * evaluated once. */
#define MEMKIT_STACK_BUFFER(name, size)                                        \
    const size_t memkit_sbuf_size_##name = (size);                             \
    const int memkit_sbuf_fits_##name = memkit_stack_fits_(memkit_sbuf_size_##name); \
    __attribute__((cleanup(memkit_stack_free_))) void *memkit_sbuf_heap_##name = \
        memkit_sbuf_fits_##name ? NULL                                         \
                                : malloc(memkit_sbuf_size_##name ? memkit_sbuf_size_##name : 1); \
    __attribute__((aligned(16))) unsigned char memkit_sbuf_stack_##name        \
        [memkit_sbuf_fits_##name && memkit_sbuf_size_##name ? memkit_sbuf_size_##name : 1]; \
    void *name = memkit_sbuf_fits_##name                                       \
        ? memkit_stack_probe_(memkit_sbuf_stack_##name, sizeof memkit_sbuf_stack_##name) \
        : memkit_sbuf_heap_##name

/* Internals of MEMKIT_STACK_BUFFER. */
static inline int memkit_stack_fits_(size_t size) {
    size_t r = memkit_stack_remaining();
    return r > MEMKIT_STACK_RED_ZONE &&
           size <= (r - MEMKIT_STACK_RED_ZONE) / MEMKIT_STACK_SHARE;
}

/* One write a page, from the top (next to the caller's frame) down, every
 * step at most a page: each page is touched after the one above it. */
static inline __attribute__((always_inline)) void *memkit_stack_probe_(unsigned char *p,
                                                                       size_t n) {
    volatile unsigned char *v = p;
    size_t off = n - 1;
    for (;;) {
        v[off] = 0;
        if (off == 0)
            break;
        off = off > 4096 ? off - 4096 : 0;
    }
    return p;
}

static inline void memkit_stack_free_(void **heap) {
    free(*heap);
}

#endif /* MEMKIT_STACK_H */
