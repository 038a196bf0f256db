/* The leak check at exit while other threads still allocate and free
 * (small blocks, and big ones that take the checker's big-block path): it
 * must stop them, scan, report the one leak and let the process end. A
 * check that hangs (a thread stopped holding a lock the scan needs, or
 * the scan waiting for a lock it took itself) is ended by the alarm:
 * SIGALRM, and the test sees no exit status. Prints "started". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *churn(void *arg) {
    size_t size = (size_t)arg;
    for (;;) {
        char *p = malloc(size);
        memset(p, 1, 64);
        free(p);
    }
    return NULL;
}

int main(void) {
    alarm(20);
    static const size_t sizes[] = {64, 200, 300000};
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, (void *)sizes[i]);
    char *volatile lost = malloc(4242);
    lost[0] = 1;
    lost = NULL;
    usleep(10000);
    puts("started");
    fflush(stdout);
    return 0;
}
