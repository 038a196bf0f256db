/* A process with a known memory layout, for memkit::layout's tests.
 *
 * usage: known_layout FILE
 *
 * It creates one region of each kind, touches every page of each, prints
 * one line "ready KEY=VALUE..." with the addresses and sizes, then waits
 * until its standard input closes (or says "exit").
 *
 *   init    a large initialised array (.data)
 *   zero    a large zeroed array (.bss)
 *   sbrk    memory from sbrk (the program-break heap)
 *   anon    an anonymous private mmap
 *   file    a shared mmap of FILE (created and filled here)
 *   shm     a POSIX shared-memory mapping (shm_open, then unlinked)
 *   stack   a thread with a stack of exactly STACK_SIZE bytes
 *           (pthread_attr_setstacksize), blocked in read()
 *
 * The sizes differ from each other so a test can tell them apart.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define INIT_SIZE (3u << 20)          /* 3 MiB */
#define ZERO_SIZE (5u << 20)          /* 5 MiB */
#define SBRK_SIZE (2u << 20)          /* 2 MiB */
#define ANON_SIZE (7u << 20)          /* 7 MiB */
#define FILE_SIZE (640u << 10)        /* 640 KiB */
#define SHM_SIZE (768u << 10)         /* 768 KiB */
#define STACK_SIZE (1280u << 10)      /* 1.25 MiB */

/* Non-zero first byte: the whole array lands in .data, not .bss. */
char init_arr[INIT_SIZE] = {1};
char zero_arr[ZERO_SIZE];

static int thread_pipe[2];
static volatile uintptr_t thread_local_addr;

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void touch(volatile char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096)
        p[i] = (char)(i | 1);
}

static void *thread_main(void *arg) {
    char local = 0;
    (void)arg;
    thread_local_addr = (uintptr_t)&local;
    char c;
    /* Block until main closes the pipe: the thread sits in read(). */
    while (read(thread_pipe[0], &c, 1) > 0) {
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);

    /* The thread first: its stack (with the guard page below) is mapped
     * before the other mmaps, so none of them sits right above it. */
    if (pipe(thread_pipe) != 0)
        die("pipe");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (pthread_attr_setstacksize(&attr, STACK_SIZE) != 0)
        die("pthread_attr_setstacksize");
    pthread_t th;
    if (pthread_create(&th, &attr, thread_main, NULL) != 0)
        die("pthread_create");
    while (thread_local_addr == 0)
        usleep(1000);

    touch(init_arr, INIT_SIZE);
    touch(zero_arr, ZERO_SIZE);

    char *brk_mem = sbrk(SBRK_SIZE);
    if (brk_mem == (void *)-1)
        die("sbrk");
    touch(brk_mem, SBRK_SIZE);

    char *anon = mmap(NULL, ANON_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED)
        die("mmap anon");
    touch(anon, ANON_SIZE);

    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open");
    if (ftruncate(fd, FILE_SIZE) != 0)
        die("ftruncate");
    char *file = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (file == MAP_FAILED)
        die("mmap file");
    close(fd);
    touch(file, FILE_SIZE);

    char shm_name[64];
    snprintf(shm_name, sizeof shm_name, "/memkit-layout-test-%d", (int)getpid());
    int sfd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (sfd < 0)
        die("shm_open");
    if (ftruncate(sfd, SHM_SIZE) != 0)
        die("ftruncate shm");
    char *shm = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    if (shm == MAP_FAILED)
        die("mmap shm");
    close(sfd);
    /* Unlinked at once so a killed test leaves nothing in /dev/shm; the
     * mapping stays ("/dev/shm/NAME (deleted)"). */
    shm_unlink(shm_name);
    touch(shm, SHM_SIZE);

    printf("ready init=%p init_size=%u zero=%p zero_size=%u sbrk=%p sbrk_size=%u "
           "anon=%p anon_size=%u file=%p file_size=%u shm=%p shm_size=%u "
           "thread_local=%p stack_size=%u\n",
           (void *)init_arr, INIT_SIZE, (void *)zero_arr, ZERO_SIZE, (void *)brk_mem, SBRK_SIZE,
           (void *)anon, ANON_SIZE, (void *)file, FILE_SIZE, (void *)shm, SHM_SIZE,
           (void *)thread_local_addr, STACK_SIZE);

    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "exit", 4) == 0)
            break;
    }
    close(thread_pipe[1]);
    pthread_join(th, NULL);
    return 0;
}
