/* malloc-large: allocation of 5..25 MiB blocks with a small live set, after
 * the description of mimalloc-bench's malloc-large. Each step replaces a
 * random one of SLOTS blocks with a new block of a random size; the program
 * touches only part of each block (its first 64 KiB and one word every
 * 256 KiB after that, as a program that reserves a big buffer and fills
 * little of it), so the cost is dominated by how the allocator gets and
 * returns large blocks (mapping, unmapping, caching, page faults), not by
 * the writes. large-blocks, by contrast, writes every page.
 * Usage: malloc_large [steps]
 * Metric: us_per_step. */
#include "common.h"

#define SLOTS 3
#define MIB (1024u * 1024u)
#define HEAD (64u * 1024u)
#define STRIDE (256u * 1024u)

static unsigned char *ptr[SLOTS];
static size_t size[SLOTS];
static uint64_t tag[SLOTS];

static void fill(unsigned i)
{
    memset(ptr[i], (int)(tag[i] & 0xff), HEAD);
    for (size_t off = HEAD; off + 8 <= size[i]; off += STRIDE) {
        uint64_t v = tag[i] ^ off;
        memcpy(ptr[i] + off, &v, 8);
    }
    uint64_t v = ~tag[i];
    memcpy(ptr[i] + size[i] - 8, &v, 8);
}

static void check(unsigned i)
{
    unsigned char want = (unsigned char)(tag[i] & 0xff);
    for (size_t off = 0; off < HEAD; off += 512)
        if (ptr[i][off] != want)
            fail("slot %u: byte %zu of the head overwritten", i, off);
    for (size_t off = HEAD; off + 8 <= size[i]; off += STRIDE) {
        uint64_t v;
        memcpy(&v, ptr[i] + off, 8);
        if (v != (tag[i] ^ off))
            fail("slot %u (%zu bytes): word at %zu overwritten", i, size[i], off);
    }
    uint64_t v;
    memcpy(&v, ptr[i] + size[i] - 8, 8);
    if (v != ~tag[i])
        fail("slot %u: last word overwritten", i);
}

int main(int argc, char **argv)
{
    long steps = arg_long(argc, argv, 1, 20000);
    report_allocator();
    uint64_t rng = 0x1a43e;
    double t0 = now_s();
    for (long s = 0; s < steps; s++) {
        unsigned i = (unsigned)(rng_next(&rng) % SLOTS);
        if (ptr[i] != NULL) {
            check(i);
            free(ptr[i]);
        }
        size[i] = (size_t)rng_range(&rng, 5 * MIB, 25 * MIB);
        tag[i] = mix64((uint64_t)s);
        ptr[i] = xmalloc(size[i]);
        fill(i);
    }
    double t1 = now_s();
    for (unsigned i = 0; i < SLOTS; i++) {
        if (ptr[i] != NULL) {
            check(i);
            free(ptr[i]);
        }
    }
    metric("us_per_step", (t1 - t0) * 1e6 / (double)steps, "us");
    finish_ok();
    return 0;
}
