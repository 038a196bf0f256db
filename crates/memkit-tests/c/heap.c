/* Heaps that are no thread's from C (memkit_heap_* in include/memkit.h),
 * linked with libmemkit.so: a heap over the OS (sizes, calloc, aligned
 * blocks, frees from another thread, destroy with live blocks, argument
 * errors) and a heap over a memfd whose blocks a forked child reads and
 * writes through its own mapping of the file, at offsets from the heap's
 * base. Prints "ok" on success; exits 1 with the failed check on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "memkit.h"

#define NBLOCKS 4000

static void *blocks[NBLOCKS];

static void *free_all(void *arg) {
    (void)arg;
    /* Half with free, half with memkit_heap_free: the same thing. */
    for (int i = 0; i < NBLOCKS; i += 2) free(blocks[i]);
    for (int i = 1; i < NBLOCKS; i += 2) memkit_heap_free(blocks[i]);
    return NULL;
}

static void os_heap(void) {
    memkit_heap_t *h = memkit_heap_new();
    CHECK(h, "memkit_heap_new");
    CHECK(memkit_heap_base(h) == NULL && errno == EINVAL, "an OS heap has no base");
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < NBLOCKS; i++) {
            size_t n = (size_t)(i * 97 % 70000) + (i % 500 == 0 ? (1 << 20) : 0);
            blocks[i] = memkit_heap_malloc(h, n);
            CHECK(blocks[i], "malloc %zu", n);
            CHECK(((uintptr_t)blocks[i] & 15) == 0, "aligned to 16");
            CHECK(malloc_usable_size(blocks[i]) >= n, "usable size of %zu", n);
            memset(blocks[i], i & 0xff, n < 64 ? n : 64);
        }
        for (int i = 0; i < NBLOCKS; i++) {
            size_t n = (size_t)(i * 97 % 70000);
            unsigned char *p = blocks[i];
            for (size_t k = 0; k < (n < 64 ? n : 64); k++)
                CHECK(p[k] == (unsigned char)(i & 0xff), "block %d intact", i);
        }
        /* Freed by another thread. */
        pthread_t t;
        CHECK(pthread_create(&t, NULL, free_all, NULL) == 0, "pthread_create");
        pthread_join(t, NULL);
    }
    for (size_t align = 32; align <= (8u << 20); align <<= 1) {
        void *p = memkit_heap_malloc_aligned(h, 100, align);
        CHECK(p && ((uintptr_t)p & (align - 1)) == 0, "aligned to %zu", align);
        memset(p, 1, 100);
    }
    errno = 0;
    CHECK(memkit_heap_malloc_aligned(h, 100, 48) == NULL && errno == EINVAL, "alignment 48");
    for (size_t n = 1; n <= (8u << 20); n *= 3) {
        unsigned char *z = memkit_heap_calloc(h, 1, n);
        CHECK(z, "calloc %zu", n);
        for (size_t k = 0; k < n; k += 4093) CHECK(z[k] == 0, "calloc %zu zeroed", n);
        memset(z, 0xee, n);
        free(z);
    }
    errno = 0;
    CHECK(memkit_heap_calloc(h, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM, "calloc overflow");
    errno = 0;
    CHECK(memkit_heap_malloc(NULL, 8) == NULL && errno == EINVAL, "NULL heap");
    /* realloc moves a heap's block to the thread's heap, contents kept. */
    char *r = memkit_heap_malloc(h, 10);
    strcpy(r, "realloc");
    r = realloc(r, 100000);
    CHECK(r && strcmp(r, "realloc") == 0, "realloc");
    free(r);
    /* Live blocks (the aligned ones, and these) go with the heap. */
    for (int i = 0; i < 100; i++) CHECK(memkit_heap_malloc(h, 1000), "live %d", i);
    memkit_heap_destroy(h);
    memkit_heap_destroy(NULL);
    /* A new heap reuses the destroyed one's struct. */
    h = memkit_heap_new();
    CHECK(h && memkit_heap_malloc(h, 10), "a heap after destroy");
    memkit_heap_destroy(h);
}

#define FILE_BYTES (64u << 20)
static const size_t sizes[] = {1, 16, 1000, 100000, 300000, 5u << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void fd_heap(void) {
    int fd = memfd_create("memkit-heap-test", 0);
    CHECK(fd >= 0, "memfd_create");
    errno = 0;
    CHECK(memkit_heap_new_fd(fd, 0) == NULL && errno == EINVAL, "max 0");
    errno = 0;
    CHECK(memkit_heap_new_fd(-1, FILE_BYTES) == NULL && errno == EBADF, "fd -1");
    memkit_heap_t *h = memkit_heap_new_fd(fd, FILE_BYTES);
    CHECK(h, "memkit_heap_new_fd");
    char *base = memkit_heap_base(h);
    CHECK(base && ((uintptr_t)base & ((4u << 20) - 1)) == 0, "base 4 MiB-aligned");
    CHECK(lseek(fd, 0, SEEK_END) == (off_t)FILE_BYTES, "the file grew to max");

    char *p[NSIZES];
    size_t off[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        p[i] = memkit_heap_malloc(h, sizes[i] + 64);
        CHECK(p[i], "fd malloc %zu", sizes[i]);
        CHECK(p[i] >= base && p[i] + sizes[i] <= base + FILE_BYTES, "inside the file");
        off[i] = (size_t)(p[i] - base);
        snprintf(p[i], 64, "block %zu of %zu bytes", i, sizes[i]);
        p[i][sizes[i] + 63] = 'E';
    }
    /* One block the child answers in. */
    char *reply = memkit_heap_calloc(h, 1, 64);
    CHECK(reply, "reply block");
    size_t reply_off = (size_t)(reply - base);

    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        alarm(20);
        /* The child maps the file itself and reads through offsets. */
        char *m = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        CHECK(m != MAP_FAILED, "child mmap");
        for (size_t i = 0; i < NSIZES; i++) {
            char want[64];
            snprintf(want, sizeof want, "block %zu of %zu bytes", i, sizes[i]);
            CHECK(strcmp(m + off[i], want) == 0, "child reads block %zu: '%.40s'", i,
                  m + off[i]);
            CHECK(m[off[i] + sizes[i] + 63] == 'E', "child reads block %zu's end", i);
        }
        /* The heap is the parent's: no allocation, frees ignored. */
        errno = 0;
        CHECK(memkit_heap_malloc(h, 16) == NULL && errno == ENOMEM, "child malloc refused");
        free(p[2]);
        memkit_heap_free(p[3]);
        strcpy(m + reply_off, "child was here");
        memkit_heap_destroy(h);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    CHECK(strcmp(reply, "child was here") == 0, "the child's reply: '%.20s'", reply);
    /* The child's frees and destroy left the parent's heap alone. */
    for (size_t i = 0; i < NSIZES; i++) {
        char want[64];
        snprintf(want, sizeof want, "block %zu of %zu bytes", i, sizes[i]);
        CHECK(strcmp(p[i], want) == 0, "parent's block %zu intact", i);
    }
    for (int i = 0; i < 1000; i++) {
        char *q = memkit_heap_malloc(h, 3000);
        CHECK(q && q >= base && q < base + FILE_BYTES, "parent allocates after the fork");
        CHECK(q != p[2] && q != p[3], "a block the child freed is still live");
        memset(q, 0x5a, 3000);
    }
    for (size_t i = 0; i < NSIZES; i++) free(p[i]);
    /* The file is full after this much: a huge block takes a 4 MiB chunk
     * of the file (16 in all, one or two still hold segments). */
    int n = 0;
    while (memkit_heap_malloc(h, 1u << 20)) n++;
    CHECK(errno == ENOMEM && n >= 12 && n < 16, "%d blocks of 1 MiB in 64 MiB", n);
    memkit_heap_destroy(h);
    close(fd);
}

int main(void) {
    os_heap();
    fd_heap();
    printf("ok\n");
    return 0;
}
