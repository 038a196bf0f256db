/* A buffer grown a byte at a time by realloc, as gawk builds a string.
 * Under the checker every realloc used to move the block (a copy of all
 * of it each time: quadratic); a large block realloc made is now resized
 * in place when its core block has room, and moved with room to spare
 * when not, so the moves are few. What stays found: a stale pointer to a
 * block realloc moved (the first realloc of a block always moves it), a
 * write past the grown block's new end, and bytes it gained read as the
 * allocation fill (0xbe), not as the old canary or stale data.
 *
 *   realloc_grow grow N     grow from 8 KiB by one byte N times, print
 *                           MOVES m and the content check, free
 *   realloc_grow overflow   grow, then write one byte past the end
 *   realloc_grow stale      realloc a fresh 8 KiB block (it moves), then
 *                           write through the old pointer
 *   realloc_grow fill       grow until it moved twice, then in place by
 *                           1000; print whether the gained bytes are 0xbe
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t grow(char **s, size_t from, size_t steps, long *moves) {
    size_t n = from;
    for (size_t i = 0; i < steps; i++) {
        char *t = realloc(*s, n + 1);
        if (!t) {
            perror("realloc");
            exit(2);
        }
        if (t != *s) (*moves)++;
        *s = t;
        (*s)[n] = (char)('a' + n % 26);
        n++;
    }
    return n;
}

static char *filled(size_t n) {
    char *s = malloc(n);
    if (!s) exit(2);
    for (size_t i = 0; i < n; i++) s[i] = (char)('a' + i % 26);
    return s;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *what = argv[1];
    long moves = 0;
    if (strcmp(what, "grow") == 0 && argc == 3) {
        size_t steps = strtoul(argv[2], NULL, 10);
        char *s = filled(8192);
        size_t n = grow(&s, 8192, steps, &moves);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += s[i] != (char)('a' + i % 26);
        printf("SIZE %zu MOVES %ld BAD %zu\n", n, moves, bad);
        free(s);
        return 0;
    }
    if (strcmp(what, "overflow") == 0) {
        char *s = filled(8192);
        size_t n = grow(&s, 8192, 5000, &moves);
        ((volatile char *)s)[n] = 'x';
        printf("OVERFLOW AT %zu\n", n);
        free(s);
        return 0;
    }
    if (strcmp(what, "stale") == 0) {
        char *s = filled(8192);
        char *old = s;
        s = realloc(s, 8193);
        if (!s) return 2;
        printf("MOVED %d\n", s != old);
        ((volatile char *)old)[100] = 'x';
        free(s);
        return 0;
    }
    if (strcmp(what, "fill") == 0) {
        /* Grown until realloc moved it twice: the second move (of a block
         * realloc made) leaves a quarter of its size to grow into. */
        char *s = filled(8192);
        size_t n = 8192;
        while (moves < 2 && n < (1 << 20)) n = grow(&s, n, 1, &moves);
        char *before = s;
        s = realloc(s, n + 1000);
        if (!s) return 2;
        size_t other = 0;
        for (size_t i = n; i < n + 1000; i++) other += (unsigned char)s[i] != 0xbe;
        printf("IN PLACE %d NOT FILL %zu\n", s == before, other);
        free(s);
        return 0;
    }
    return 2;
}
