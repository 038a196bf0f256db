/* The _FORTIFY_SOURCE forms of the string functions under `memkit check`
 * (crates/memkit-cli/tests/check/main.rs, fortified_string_functions).
 *
 *   fortify direct-FUNC      calls __FUNC_chk itself, with SIZE_MAX as the
 *                            destination size (what the compiler passes
 *                            when it does not know it), overflowing a
 *                            24-byte block by a write: memkit reports it
 *   fortify ok-direct-FUNC   the same call, within the block
 *   fortify fortified        strcpy/strcat/strncpy/strncat/memcpy compiled
 *                            with -D_FORTIFY_SOURCE=2 into malloc(24)
 *                            blocks the compiler sizes: __*_chk calls that
 *                            fit (no report)
 *   fortify fortified-overflow  a fortified strcpy of 31 bytes into
 *                            malloc(24): memkit reports it, then glibc's
 *                            rule ends the process (__chk_fail, SIGABRT)
 *
 * FUNC is strcpy, strncpy, strcat, strncat, memcpy, stpcpy or mempcpy. Each prints `END
 * ARG` when it returns. Compile with -O2 -D_FORTIFY_SOURCE=2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE __attribute__((noipa))
#define NOTAIL() __asm__ volatile("" ::: "memory")

char *__strcpy_chk(char *d, const char *s, size_t dn);
char *__strncpy_chk(char *d, const char *s, size_t n, size_t dn);
char *__strcat_chk(char *d, const char *s, size_t dn);
char *__strncat_chk(char *d, const char *s, size_t n, size_t dn);
void *__memcpy_chk(void *d, const void *s, size_t n, size_t dn);
char *__stpcpy_chk(char *d, const char *s, size_t dn);
void *__mempcpy_chk(void *d, const void *s, size_t n, size_t dn);

static const char LONG[] = "0123456789abcdefghijklmnopqrstu"; /* 31 chars */

SITE char *alloc_site_fortify(size_t n) {
    char *p = malloc(n);
    if (!p) exit(100);
    NOTAIL();
    return p;
}

/* The source: `len` characters of LONG (not a constant the compiler sees). */
SITE const char *source(size_t len) {
    static char buf[64];
    memset(buf, 0, sizeof buf);
    for (size_t i = 0; i < len; i++) buf[i] = LONG[i];
    NOTAIL();
    return buf;
}

/* Called through volatile pointers: gcc turns a direct __strcpy_chk call
 * with SIZE_MAX into a plain strcpy. */
static char *(*volatile strcpy_chk)(char *, const char *, size_t) = __strcpy_chk;
static char *(*volatile strncpy_chk)(char *, const char *, size_t, size_t) = __strncpy_chk;
static char *(*volatile strcat_chk)(char *, const char *, size_t) = __strcat_chk;
static char *(*volatile strncat_chk)(char *, const char *, size_t, size_t) = __strncat_chk;
static void *(*volatile memcpy_chk)(void *, const void *, size_t, size_t) = __memcpy_chk;
static char *(*volatile stpcpy_chk)(char *, const char *, size_t) = __stpcpy_chk;
static void *(*volatile mempcpy_chk)(void *, const void *, size_t, size_t) = __mempcpy_chk;

SITE void bug_site_direct(const char *func, char *p, int bug) {
    const char *s = source(bug ? 30 : 10);
    size_t n = bug ? 32 : 16;
    if (!strcmp(func, "strcpy")) strcpy_chk(p, s, SIZE_MAX);
    else if (!strcmp(func, "strncpy")) strncpy_chk(p, s, n, SIZE_MAX);
    else if (!strcmp(func, "strcat")) strcat_chk(p, s, SIZE_MAX);
    else if (!strcmp(func, "strncat")) strncat_chk(p, s, n - 7, SIZE_MAX);
    else if (!strcmp(func, "memcpy")) memcpy_chk(p, s, n, SIZE_MAX);
    else if (!strcmp(func, "stpcpy")) stpcpy_chk(p, s, SIZE_MAX);
    else if (!strcmp(func, "mempcpy")) mempcpy_chk(p, s, n, SIZE_MAX);
    else exit(2);
    NOTAIL();
}

/* A number the compiler does not see through. */
SITE size_t num(size_t v) {
    return v;
}

/* Writes "ab" into p (a string the compiler does not see). */
SITE void ab(char *p) {
    p[0] = 'a';
    p[1] = 'b';
    p[2] = 0;
}

/* Fortified calls into blocks whose size the compiler knows (24 bytes):
 * they fit. */
SITE void fortified(void) {
    char *p = malloc(24), *q = malloc(24), *r = malloc(24), *t = malloc(24);
    if (!p || !q || !r || !t) exit(100);
    const char *s = source(10);
    strcpy(p, s);
    strncpy(q, s, num(20));
    ab(r);
    strcat(r, s);
    ab(t);
    strncat(t, s, num(12));
    memcpy(p + 11, s, num(12));
    printf("%s %s %s %s\n", p, q, r, t);
    free(p);
    free(q);
    free(r);
    free(t);
}

SITE void bug_site_fortified_overflow(void) {
    char *p = malloc(24);
    if (!p) exit(100);
    strcpy(p, source(30));
    printf("%s\n", p);
    free(p);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const char *arg = argv[1];
    if (!strcmp(arg, "fortified")) {
        fortified();
    } else if (!strcmp(arg, "fortified-overflow")) {
        bug_site_fortified_overflow();
    } else {
        int bug = strncmp(arg, "ok-", 3) != 0;
        const char *name = bug ? arg : arg + 3;
        if (strncmp(name, "direct-", 7)) return 2;
        char *p = alloc_site_fortify(24);
        /* strcat and strncat append to a 3-character string. */
        strcpy(p, "abc");
        bug_site_direct(name + 7, p, bug);
        free(p);
    }
    printf("END %s\n", arg);
    return 0;
}
