/* The main thread leaves with pthread_exit; the last thread's exit runs the
 * leak check (/proc/self/maps is then empty: the check found no stack and
 * reported what that thread's stack and thread-locals hold, after waiting
 * for the exited main thread to stop). `main_exits_first leak` also drops
 * one 99-byte block from alloc_site_lost, `ok` nothing. Prints "worker". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITE __attribute__((noipa))
#define NOTAIL() __asm__ volatile("" ::: "memory")

static __thread void *volatile t_keep;
static int leak;

SITE void *alloc_site_lost(void) {
    void *p = malloc(99);
    NOTAIL();
    return p;
}

SITE void drop(void) {
    void *volatile p = alloc_site_lost();
    ((volatile char *)p)[0] = 1;
    p = NULL;
    NOTAIL();
}

SITE void scrub_stack(void) {
    volatile char buf[16 << 10];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
    NOTAIL();
}

static void *worker(void *arg) {
    t_keep = malloc(88);
    void *volatile mine = malloc(77);
    if (leak) drop();
    scrub_stack();
    usleep(100000); /* main has left */
    puts("worker");
    fflush(stdout);
    exit(mine == arg); /* 0; mine stays live in this frame */
}

int main(int argc, char **argv) {
    leak = argc > 1 && strcmp(argv[1], "leak") == 0;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL)) return 100;
    pthread_exit(NULL);
}
