/* large-blocks: churn of 5..25 MiB blocks. A few slots hold big buffers;
 * each step frees a random slot's buffer and allocates a new one (now and
 * then growing an existing buffer with realloc instead), touching one word
 * per 4 KiB page as a program filling the buffer would. Every touched word
 * is checked before the buffer goes. Usage: large_blocks [steps]
 * Metric: ms_per_step. */
#include "common.h"

#define SLOTS 4
#define MIB (1024u * 1024u)
#define PAGE 4096u

static unsigned char *ptr[SLOTS];
static size_t size[SLOTS];
static uint64_t tag[SLOTS];

static void fill(unsigned i, size_t from)
{
    for (size_t off = from; off + 8 <= size[i]; off += PAGE) {
        uint64_t v = tag[i] ^ off;
        memcpy(ptr[i] + off, &v, 8);
    }
}

static void check(unsigned i, size_t upto)
{
    for (size_t off = 0; off + 8 <= upto; off += PAGE) {
        uint64_t v;
        memcpy(&v, ptr[i] + off, 8);
        if (v != (tag[i] ^ off))
            fail("slot %u (%zu bytes): word at offset %zu overwritten", i, size[i], off);
    }
}

int main(int argc, char **argv)
{
    long steps = arg_long(argc, argv, 1, 400);
    report_allocator();
    uint64_t rng = 5, serial = 0, reallocs = 0;
    for (long s = 0; s < steps; s++) {
        unsigned i = (unsigned)(rng_next(&rng) % SLOTS);
        if (ptr[i] != NULL && size[i] < 20 * MIB && rng_next(&rng) % 100 < 20) {
            size_t old = size[i];
            size_t n = old + rng_range(&rng, 1, 5) * MIB;
            check(i, old);
            ptr[i] = xrealloc(ptr[i], n);
            size[i] = n;
            check(i, (old / PAGE) * PAGE);
            fill(i, (old + PAGE - 1) / PAGE * PAGE);
            reallocs++;
            continue;
        }
        if (ptr[i] != NULL) {
            check(i, size[i]);
            free(ptr[i]);
        }
        size[i] = rng_range(&rng, 5 * MIB, 25 * MIB);
        tag[i] = mix64(++serial);
        ptr[i] = xmalloc(size[i]);
        fill(i, 0);
    }
    for (unsigned i = 0; i < SLOTS; i++)
        if (ptr[i] != NULL) {
            check(i, size[i]);
            free(ptr[i]);
        }
    printf("mallocs %llu reallocs %llu\n", (unsigned long long)serial, (unsigned long long)reallocs);
    finish_ok();
    return 0;
}
