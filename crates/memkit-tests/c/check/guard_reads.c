/* Reads the default mode of memkit check cannot see and --guard can: a
 * read past a block's end and a read after free, each by the program's own
 * instruction (no call to a checked mem or str function). `check_guard CASE` has the bug,
 * `check_guard ok-CASE` reads inside a live block instead. The program
 * prints the bytes it read, so the reads cannot be optimised away. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE __attribute__((noipa))

SITE char *alloc_site_guard(size_t n) {
    char *p = malloc(n);
    memset(p, 'a', n);
    return p;
}

SITE int bug_site_read_past_end(const char *p, int bug) {
    return ((volatile const char *)p)[bug ? 40 : 23];
}

SITE int bug_site_read_after_free(char *p, int bug) {
    if (bug) free(p);
    int v = ((volatile const char *)p)[3];
    if (!bug) free(p);
    return v;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const char *name = argv[1];
    int bug = strncmp(name, "ok-", 3) != 0;
    const char *base = bug ? name : name + 3;
    int v;
    if (strcmp(base, "read-past-end") == 0) {
        char *p = alloc_site_guard(24);
        v = bug_site_read_past_end(p, bug);
        free(p);
    } else if (strcmp(base, "read-after-free") == 0) {
        v = bug_site_read_after_free(alloc_site_guard(100), bug);
    } else {
        return 2;
    }
    printf("END %s %d\n", name, v);
    return 0;
}
