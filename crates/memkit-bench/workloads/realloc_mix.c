/* realloc-mix: random sizes and lifetimes, with realloc. Two pools of
 * slots: a small hot pool (short lifetimes) and a large cold pool (long
 * lifetimes). Each step picks a slot: an empty slot gets a new block; a full
 * one is either resized with realloc (mostly growth, like a buffer being
 * appended to) or freed. Every block carries a tag at both ends that is
 * checked on realloc and free. Usage: realloc_mix [steps] */
#include "common.h"

#define HOT 64
#define COLD 20000
#define SLOTS (HOT + COLD)
#define MAX_BLOCK (1u << 20)

static unsigned char *ptr[SLOTS];
static size_t size[SLOTS];
static uint64_t tag[SLOTS];

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 100;
    if (r < 80)
        return rng_range(rng, 16, 256);
    if (r < 95)
        return rng_range(rng, 257, 4096);
    if (r < 99)
        return rng_range(rng, 4097, 65536);
    return rng_range(rng, 65537, 512 * 1024);
}

static void stamp(unsigned i)
{
    memcpy(ptr[i], &tag[i], 8);
    memcpy(ptr[i] + size[i] - 8, &tag[i], 8);
}

static void check_head(unsigned i, const char *what)
{
    uint64_t a;
    memcpy(&a, ptr[i], 8);
    if (a != tag[i])
        fail("%s: slot %u (%zu bytes): head tag overwritten", what, i, size[i]);
}

static void check(unsigned i, const char *what)
{
    uint64_t z;
    check_head(i, what);
    memcpy(&z, ptr[i] + size[i] - 8, 8);
    if (z != tag[i])
        fail("%s: slot %u (%zu bytes): tail tag overwritten", what, i, size[i]);
}

int main(int argc, char **argv)
{
    long steps = arg_long(argc, argv, 1, 3000000);
    report_allocator();
    uint64_t rng = 7, serial = 0, reallocs = 0, frees = 0;
    for (long s = 0; s < steps; s++) {
        unsigned i = (rng_next(&rng) % 100 < 70) ? (unsigned)(rng_next(&rng) % HOT)
                                                 : HOT + (unsigned)(rng_next(&rng) % COLD);
        if (ptr[i] == NULL) {
            size[i] = pick_size(&rng);
            tag[i] = mix64(++serial);
            ptr[i] = xmalloc(size[i]);
            stamp(i);
            continue;
        }
        uint64_t r = rng_next(&rng) % 100;
        if (r < 45) {
            size_t old = size[i], n;
            if (rng_next(&rng) % 100 < 60) {
                n = old + rng_range(&rng, 1, old);
                if (n > MAX_BLOCK)
                    n = pick_size(&rng);
            } else {
                n = pick_size(&rng);
            }
            check(i, "before realloc");
            ptr[i] = xrealloc(ptr[i], n);
            /* The head survives any resize; on growth so does the old tail. */
            check_head(i, "after realloc");
            if (n >= old) {
                uint64_t z;
                memcpy(&z, ptr[i] + old - 8, 8);
                if (z != tag[i])
                    fail("realloc %zu -> %zu lost the old tail", old, n);
            }
            size[i] = n;
            stamp(i);
            reallocs++;
        } else {
            check(i, "before free");
            free(ptr[i]);
            ptr[i] = NULL;
            frees++;
        }
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        if (ptr[i] != NULL) {
            check(i, "final");
            free(ptr[i]);
        }
    }
    printf("mallocs %llu reallocs %llu frees %llu\n", (unsigned long long)serial,
           (unsigned long long)reallocs, (unsigned long long)frees);
    if (serial == 0 || reallocs == 0 || frees == 0)
        fail("degenerate run");
    finish_ok();
    return 0;
}
