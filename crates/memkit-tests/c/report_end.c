/* A process that allocates, then ends in a chosen way, for the tests of
 * `memkit run`'s reports (crates/memkit-cli/tests/run.rs).
 *
 *   report_end N exit CODE    N blocks, then exit(CODE)
 *   report_end N _exit CODE   N blocks, then _exit(CODE): no exit handlers
 *   report_end N kill         N blocks, then SIGKILL on itself
 *   report_end N fork         N blocks, then a child that allocates N more
 *                             and exits 0; exits 0 if the child did
 *
 * After its N blocks (64 bytes each, kept), every mode "settles": it sleeps
 * 30 ms, past libmemkit.so's 10 ms between refreshes of its record, then
 * allocates 64 KiB more in 64-byte blocks, 16 allocation slow paths (one
 * per 4 KiB carved), so that a refresh runs with all N blocks counted.
 * Compile with -fno-builtin.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void allocate(long n) {
    for (long i = 0; i < n; i++) {
        char *p = malloc(64);
        if (!p) {
            fprintf(stderr, "report_end: malloc failed\n");
            _exit(100);
        }
        p[0] = (char)i;
    }
}

static void settle(void) {
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    allocate(1024);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: report_end N exit|_exit CODE | kill | fork\n");
        return 2;
    }
    long n = atol(argv[1]);
    const char *mode = argv[2];
    int code = argc > 3 ? atoi(argv[3]) : 0;
    allocate(n);
    settle();
    if (strcmp(mode, "exit") == 0)
        exit(code);
    if (strcmp(mode, "_exit") == 0)
        _exit(code);
    if (strcmp(mode, "kill") == 0) {
        raise(SIGKILL);
        return 101;
    }
    if (strcmp(mode, "fork") == 0) {
        pid_t child = fork();
        if (child < 0)
            return 102;
        if (child == 0) {
            allocate(n);
            settle();
            exit(0);
        }
        int status = 0;
        if (waitpid(child, &status, 0) != child)
            return 103;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 104;
    }
    fprintf(stderr, "report_end: unknown mode %s\n", mode);
    return 2;
}
