/* launcher: runs one command for memkit-bench and reports what it cost.
 *
 * Usage: launcher RESULT_FILE PROGRAM [ARGS...]
 *
 * Forks, sets LD_PRELOAD in the child to $MEMKIT_BENCH_PRELOAD (unset when
 * that is empty or absent), execs PROGRAM, waits for it with wait4 and
 * writes one line to RESULT_FILE:
 *     WAIT_STATUS WALL_NS USER_US SYS_US MAX_RSS_KIB
 * then exits 0 (125 if it could not wait, 126 if it could not write).
 *
 * Why not spawn the program from the harness directly: Linux carries a
 * process's RSS high-water mark into the children it forks and across
 * exec, so every child of the harness would report at least the harness's
 * own peak RSS. This launcher is tiny, so what it passes on is ~1 MiB, as
 * with a shell.
 *
 * SIGTERM and SIGINT are ignored here (and reset to the default in the
 * child), so that the harness can signal the whole process group to stop a
 * server without killing the launcher that is measuring it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: launcher RESULT_FILE PROGRAM [ARGS...]\n");
        return 2;
    }
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    const char *preload = getenv("MEMKIT_BENCH_PRELOAD");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("launcher: fork");
        return 125;
    }
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        if (preload != NULL && preload[0] != '\0')
            setenv("LD_PRELOAD", preload, 1);
        else
            unsetenv("LD_PRELOAD");
        unsetenv("MEMKIT_BENCH_PRELOAD");
        execvp(argv[2], argv + 2);
        fprintf(stderr, "launcher: cannot run %s: ", argv[2]);
        perror(NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("launcher: wait4");
            return 125;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long wall_ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    long long user_us = (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec;
    long long sys_us = (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
    FILE *f = fopen(argv[1], "w");
    if (f == NULL) {
        perror("launcher: result file");
        return 126;
    }
    fprintf(f, "%d %lld %lld %lld %ld\n", status, wall_ns, user_us, sys_us, ru.ru_maxrss);
    if (fclose(f) != 0)
        return 126;
    return 0;
}
