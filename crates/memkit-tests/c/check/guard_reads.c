/* Reads the default mode of memkit check cannot see and --guard can: a
 * read past a block's end and a read after free, each by the program's own
 * instruction (no call to a checked mem or str function). `check_guard CASE` has the bug,
 * `check_guard ok-CASE` reads inside a live block instead. The program
 * prints the bytes it read, so the reads cannot be optimised away. The
 * sigaction- and signal- cases install the program's own SIGSEGV handler
 * first, and fault on purpose at the end (the handler prints OWN HANDLER
 * and exits 0). The strlen- and memcpy- cases read past the end and after
 * free through a checked call instead: the checker's check and a fault in
 * glibc's function it calls see the same read (one report). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

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

SITE size_t bug_site_strlen_past_end(char *p, int bug) {
    if (!bug) p[23] = 0;
    volatile size_t n = strlen(p); /* a call, not a tail call */
    return n;
}

SITE int bug_site_memcpy_after_free(char *p, int bug) {
    char buf[64];
    volatile size_t n = sizeof buf; /* a call, not inlined moves */
    if (bug) free(p);
    memcpy(buf, p, n);
    if (!bug) free(p);
    return buf[3];
}

/* The program's own SIGSEGV handler, for its own faults. */
static void own_handler(int sig) {
    (void)sig;
    static const char msg[] = "OWN HANDLER\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(101);
    _exit(0);
}

/* Installs own_handler (with sigaction or with signal) and reads it back:
 * the guard mode's own handler must stay in front of it. */
static void install_own(int with_sigaction) {
    struct sigaction sa, back;
    memset(&sa, 0, sizeof sa);
    if (with_sigaction) {
        sa.sa_handler = own_handler;
        if (sigaction(SIGSEGV, &sa, NULL)) exit(102);
    } else if (signal(SIGSEGV, own_handler) == SIG_ERR) {
        exit(102);
    }
    if (sigaction(SIGSEGV, NULL, &back) || back.sa_handler != own_handler) exit(103);
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
    } else if (strcmp(base, "strlen-past-end") == 0) {
        char *p = alloc_site_guard(24);
        v = (int)bug_site_strlen_past_end(p, bug);
        free(p);
    } else if (strcmp(base, "memcpy-after-free") == 0) {
        v = bug_site_memcpy_after_free(alloc_site_guard(100), bug);
    } else if (strcmp(base, "sigaction-read-after-free") == 0 ||
               strcmp(base, "signal-read-after-free") == 0) {
        /* A program with its own fault handler: the guard fault is still
         * reported, the program's own fault still reaches its handler. */
        install_own(strncmp(base, "sigaction", 9) == 0);
        v = bug_site_read_after_free(alloc_site_guard(100), bug);
        printf("END %s %d\n", name, v);
        fflush(stdout);
        *(volatile int *)(uintptr_t)(argc * 8) = 1;
        return 104;
    } else {
        return 2;
    }
    printf("END %s %d\n", name, v);
    return 0;
}
