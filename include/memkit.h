/* memkit.h: what libmemkit.so exports beyond the standard malloc family.
 *
 * libmemkit.so replaces the whole glibc malloc family (malloc, free, calloc,
 * realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
 * pvalloc, malloc_usable_size, cfree, the __libc_* aliases, mallinfo,
 * mallinfo2, malloc_trim, malloc_stats, malloc_info, mallopt) with glibc
 * 2.36's semantics; those are declared by <stdlib.h> and <malloc.h>. This
 * header declares the rest. Link with -lmemkit (or preload libmemkit.so and
 * look symbols up with dlsym when the program must also run without it).
 */
#ifndef MEMKIT_H
#define MEMKIT_H

#include <stddef.h>

/* Secure memory for secrets and memory locking: memkit_secure_*, memkit_memzero. */
#include "memkit-secure.h"
/* Stack buffers that fall back to the heap: memkit_stack_remaining,
 * MEMKIT_STACK_BUFFER. */
#include "memkit-stack.h"
/* Shared-memory heaps that processes open by name: memkit_shm_*. */
#include "memkit-shm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the libmemkit.so the program runs on, e.g. "0.1.0"
 * (static storage, never NULL). The same string is in the library's ELF
 * note `.note.memkit.version` (readelf -n), which `memkit --version` reads
 * without loading the library. */
const char *memkit_version(void);

/* Heaps that are no thread's (mimalloc's mi_heap_* shape), each over a
 * memory source of its own: the OS, or a file mapped shared.
 *
 *   int fd = memfd_create("frames", 0);
 *   memkit_heap_t *h = memkit_heap_new_fd(fd, 256 << 20);
 *   struct frame *f = memkit_heap_malloc(h, sizeof *f);
 *   size_t off = (char *)f - (char *)memkit_heap_base(h);
 *   // another process maps fd and reads the frame at offset off
 *   memkit_heap_destroy(h);   // frees every block of h
 *
 * One thread at a time allocates from a heap (hand it over with a mutex or
 * a queue, as for any object); any thread may free its blocks, any time,
 * with free() or memkit_heap_free(). memkit_heap_destroy frees every block
 * still in it; none may be used afterwards. realloc() of a heap's block
 * moves it to the calling thread's ordinary heap.
 *
 * An fd heap's blocks live in its file at offset (p - memkit_heap_base(h)),
 * where other processes that map the file (MAP_SHARED) read and write them;
 * the heap's own bookkeeping is this process's only (other processes must
 * not allocate or free there; for heaps that several processes allocate
 * from, see memkit_shm_*). After fork(), the child may read an fd heap's
 * blocks but not allocate from it (NULL, ENOMEM) or free into it (free
 * ignores its blocks); its memkit_heap_destroy only unmaps it.
 *
 * Functions that return a pointer return NULL and set errno on failure. */
typedef struct memkit_heap memkit_heap_t;

/* A heap over private anonymous memory. Errors: ENOMEM. */
memkit_heap_t *memkit_heap_new(void);
/* A heap over the first MAX bytes (rounded up to 4 MiB, at most 64 GiB) of
 * the open file FD (a memfd, a file in /dev/shm), mapped shared; the file
 * is grown to that length if shorter, and FD may be closed afterwards.
 * Blocks take the file's space in 4 MiB segments. Errors: EINVAL (MAX 0 or
 * above 64 GiB), EBADF, ENOMEM, and those of fstat, ftruncate and mmap
 * (FD must be open for reading and writing). */
memkit_heap_t *memkit_heap_new_fd(int fd, size_t max);
/* SIZE bytes aligned to 16 from HEAP. Errors: ENOMEM, EINVAL (HEAP NULL). */
void *memkit_heap_malloc(memkit_heap_t *heap, size_t size);
/* COUNT * SIZE zeroed bytes. Errors: ENOMEM (also on overflow), EINVAL. */
void *memkit_heap_calloc(memkit_heap_t *heap, size_t count, size_t size);
/* SIZE bytes aligned to ALIGNMENT (a power of two; above 4 MiB only for
 * heaps over the OS). Errors: EINVAL, ENOMEM. */
void *memkit_heap_malloc_aligned(memkit_heap_t *heap, size_t size, size_t alignment);
/* free(P), for programs that link libmemkit.so without preloading it. */
void memkit_heap_free(void *p);
/* Where an fd heap maps offset 0 of its file. Errors: EINVAL (not an fd heap). */
void *memkit_heap_base(memkit_heap_t *heap);
/* Frees every block of HEAP (an fd heap frees their pages in the file) and
 * HEAP itself. NULL does nothing. */
void memkit_heap_destroy(memkit_heap_t *heap);

/* C23 sized deallocation (glibc 2.36's headers do not declare them yet).
 * The size and alignment are hints: memkit finds them itself. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* MEMKIT_H */
