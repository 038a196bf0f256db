/* fork while other threads allocate and free (the checker's quarantine,
 * side table and big-block locks are taken all the time): every child
 * must be able to allocate, free and report. A child that hangs is killed
 * by its alarm, and the parent counts it. Prints "children N hung H". */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg) {
    size_t big = (size_t)arg;
    while (!stop) {
        char *p = malloc(big ? 300000 : 64);
        memset(p, 1, big ? 300000 : 64);
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, (void *)(size_t)(i == 2));
    int hung = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(5);
            char *p = malloc(100);
            free(p);
            char *q = malloc(300000);
            free(q);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) hung++;
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    printf("children %d hung %d\n", n, hung);
    return 0;
}
