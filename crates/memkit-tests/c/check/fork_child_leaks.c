/* The leak check of a fork child whose parent has other threads: a block
 * only such a thread holds (in a thread-local and on its stack) is still
 * there in the child, not a leak of the child's; a block the child itself
 * drops is. `fork_child_leaks leak` leaks one 77-byte block in the child
 * (alloc_site_child), `fork_child_leaks ok` nothing. The child exits with
 * exit() (so it runs the leak check); prints "CHILD pid STATUS s". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SITE __attribute__((noipa))
#define NOTAIL() __asm__ volatile("" ::: "memory")

static __thread void *volatile t_buffer;
static int ready[2], done[2];

static void *holder(void *arg) {
    (void)arg;
    void *volatile on_stack = malloc(333);
    t_buffer = malloc(444);
    if (write(ready[1], "r", 1) != 1) exit(100);
    char c;
    if (read(done[0], &c, 1) != 1) exit(100);
    free(on_stack);
    free(t_buffer);
    return NULL;
}

SITE void *alloc_site_child(void) {
    void *p = malloc(77);
    NOTAIL();
    return p;
}

SITE void scrub_stack(void) {
    volatile char buf[16 << 10];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
    NOTAIL();
}

int main(int argc, char **argv) {
    int leak = argc > 1 && strcmp(argv[1], "leak") == 0;
    if (pipe(ready) || pipe(done)) return 100;
    pthread_t t;
    if (pthread_create(&t, NULL, holder, NULL)) return 100;
    char c;
    if (read(ready[0], &c, 1) != 1) return 100;
    pid_t pid = fork();
    if (pid == 0) {
        void *p = alloc_site_child();
        ((volatile char *)p)[0] = 1;
        if (!leak) free(p);
        p = NULL;
        scrub_stack();
        exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("CHILD %d STATUS %d\n", (int)pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (write(done[1], "d", 1) != 1) return 100;
    pthread_join(t, NULL);
    return 0;
}
