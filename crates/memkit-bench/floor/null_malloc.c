/* null_malloc: the floor of the fixed-sizes workload. An "allocator" that
 * does no work: malloc of 16, 64, 256 or 4096 bytes returns the same static
 * buffer and free does nothing, so fixed-sizes run under it measures what
 * its loop costs by itself (the calls through the PLT, the NULL check, the
 * writes and reads of the block). Anything else is bump-allocated from a
 * static arena and never reused: enough for stdio and the dynamic loader
 * of a short run, nothing more. Not part of the harness; see
 * docs/BENCHMARKS.md ("The pair") for how it is used:
 *
 *   gcc -O2 -shared -fPIC -o /tmp/null_malloc.so crates/memkit-bench/floor/null_malloc.c
 *   LD_PRELOAD=/tmp/null_malloc.so target/memkit-bench/bin/fixed_sizes-* 10000000
 */
#include <stddef.h>
#include <string.h>

static unsigned char fixed[4096] __attribute__((aligned(64)));
static unsigned char arena[64 << 20] __attribute__((aligned(64)));
static size_t used;
static int stdio_buffer_served;

static void *bump(size_t n)
{
    size_t need = ((n + 15) & ~(size_t)15) + 16;
    if (need > sizeof arena - used)
        return NULL;
    unsigned char *p = arena + used;
    used += need;
    memcpy(p, &n, sizeof n); /* the size, for realloc */
    return p + 16;
}

void *malloc(size_t n)
{
    /* stdout's buffer is the first 4096-byte request: it must not share
     * the workload's block. */
    if (n == 4096 && !stdio_buffer_served) {
        stdio_buffer_served = 1;
        return bump(n);
    }
    if (n == 16 || n == 64 || n == 256 || n == 4096)
        return fixed;
    return bump(n);
}

void free(void *p)
{
    (void)p;
}

void *calloc(size_t n, size_t size)
{
    if (size != 0 && n > (size_t)-1 / size)
        return NULL;
    void *p = bump(n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void *realloc(void *p, size_t n)
{
    void *q = bump(n);
    if (q != NULL && p != NULL) {
        size_t old = sizeof fixed;
        if (p != (void *)fixed)
            memcpy(&old, (unsigned char *)p - 16, sizeof old);
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}
