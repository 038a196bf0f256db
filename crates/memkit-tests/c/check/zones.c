/* Red zones and fill patterns at every size the checker's fills and
 * checks treat differently (1-300 bytes one by one: the byte, word and
 * 16-byte cases, then the AVX2 and memset ones up to 70000 bytes).
 * `check_zones CASE`:
 *   clean        new blocks hold alloc_fill (0xbe) and freed ones
 *                free_fill (0xdf), up to max_fill, read back by the
 *                program itself; no bug (prints BAD and exits 1 on a
 *                wrong byte)
 *   past-end     a write one byte past each block's end
 *   before-start a write one byte before each block's start
 *   after-free   a write to each block's first and last byte after free
 * Each block is freed before the next is allocated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t size_at(int i) {
    static const size_t more[] = {511, 512, 1000, 1024, 4095, 4096, 4097, 10000,
                                  32728, 32768, 40000, 65536, 70000};
    return i < 300 ? (size_t)i + 1 : more[i - 300];
}

#define SIZES (300 + 13)

/* Whether the first m bytes of p (a block of n) are all `byte`; prints
 * the first that is not. */
static int all_are(volatile unsigned char *p, size_t m, unsigned byte, const char *fill,
                   size_t n) {
    for (size_t j = 0; j < m; j++)
        if (p[j] != byte) {
            printf("BAD %s fill size %zu byte %zu: %#x\n", fill, n, j, p[j]);
            return 0;
        }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const char *c = argv[1];
    int bad = 0;
    for (int i = 0; i < SIZES; i++) {
        size_t n = size_at(i);
        volatile unsigned char *p = malloc(n);
        if (!p) return 3;
        /* Both fills stop at max_fill, 64 KiB by default. */
        size_t m = n < 65536 ? n : 65536;
        if (strcmp(c, "clean") == 0) bad |= !all_are(p, m, 0xbe, "alloc", n);
        for (size_t j = 0; j < n; j++) p[j] = (unsigned char)(j + 1);
        if (strcmp(c, "past-end") == 0) p[n] = 1;
        if (strcmp(c, "before-start") == 0) p[-1] = 1;
        free((void *)p);
        /* A stale read, which the default mode does not report: the free
         * pattern, over the whole block. */
        if (strcmp(c, "clean") == 0) bad |= !all_are(p, m, 0xdf, "free", n);
        if (strcmp(c, "after-free") == 0) {
            p[0] = 1;
            p[n - 1] = 1;
        }
    }
    printf("END %s\n", c);
    return bad;
}
