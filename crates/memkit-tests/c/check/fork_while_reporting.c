/* Threads report bugs (each report symbolizes its stacks, allocating
 * from the core under the checker's report lock) while the main thread
 * forks children that report too. The checker's fork handlers must take
 * its locks before the core's: in the other order, `fork` held the core's
 * locks and waited for the report lock, whose holder waited for a core
 * lock. A hang ends in the alarm (SIGALRM, no exit status). Prints
 * "END" and the children's statuses. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 60

static void *reporter(void *arg) {
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        char *p = malloc(16 + (i % 5) * 16);
        free(p + 1); /* invalid-free */
        free(p);
    }
    return NULL;
}

int main(void) {
    alarm(20);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, reporter, NULL);
    int bad = 0;
    for (int k = 0; k < 10; k++) {
        pid_t c = fork();
        if (c == 0) {
            char *p = malloc(8);
            free(p);
            free(p); /* double-free, in the child */
            _exit(0);
        }
        int st = 0;
        if (waitpid(c, &st, 0) != c || !WIFEXITED(st)) bad++;
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("END bad=%d\n", bad);
    return 0;
}
