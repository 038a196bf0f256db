/* memkit-shm.h: shared-memory heaps, exported by libmemkit.so (included by
 * memkit.h).
 *
 * A heap inside a POSIX shared-memory object (/dev/shm/NAME) or a memfd,
 * that any number of processes open and allocate from. Processes map it
 * at different addresses: store offsets (memkit_shm_offset) in shared
 * data, never pointers, and turn them back with memkit_shm_at.
 *
 *   memkit_shm *h = memkit_shm_create("/jobs", 64 << 20, 0600);
 *   struct node *n = memkit_shm_alloc(h, sizeof *n);
 *   uint64_t *head = memkit_shm_named(h, "head", sizeof *head, NULL);
 *   if (memkit_shm_lock(h) == MEMKIT_SHM_OWNER_DIED) repair_list(h);
 *   n->next = *head; *head = memkit_shm_offset(h, n);
 *   memkit_shm_unlock(h);
 *
 * A process killed at any instant (SIGKILL inside alloc, free, or holding
 * a lock) leaves the heap consistent for the others: the allocator's lock
 * is a robust process-shared mutex, every change is committed by one
 * store and rebuilt by the next holder if its holder died, and the blocks
 * a dead process kept in its cache are reclaimed (its pid and start time
 * are in a registry of attached processes). Blocks a dead process had
 * allocated stay allocated (they may be linked in shared data). All pages
 * are reserved at creation: a full /dev/shm is ENOSPC there, never a
 * SIGBUS later. Design and limits: docs/SHM.md.
 *
 * Every function sets errno and returns NULL or -1 on failure. Link with
 * -lmemkit.
 */
#ifndef MEMKIT_SHM_H
#define MEMKIT_SHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct memkit_shm memkit_shm;

/* memkit_shm_open flag: map read-only; alloc, free, named creation and
 * the lock then fail with EROFS (free does nothing). */
#define MEMKIT_SHM_READONLY   1
/* memkit_shm_lock result: the previous holder died holding the lock. The
 * lock is now the caller's and usable again; the data it protects may be
 * half updated. */
#define MEMKIT_SHM_OWNER_DIED 1

/* Creates /dev/shm/NAME (NAME: a leading slash, no other, 1..255 bytes)
 * of SIZE bytes (rounded up to 4 KiB; 256 KiB .. 64 GiB), permissions
 * exactly MODE (0: 0600; the umask does not apply), every page reserved
 * now. The name appears only once the heap is complete (O_EXCL: EEXIST if
 * it exists). Errors: EEXIST, EINVAL (bad name or size), ENOSPC or ENOMEM
 * (/dev/shm or memory cannot hold it), EACCES. */
memkit_shm *memkit_shm_create(const char *name, size_t size, unsigned mode);
/* Opens an existing heap; FLAGS 0 or MEMKIT_SHM_READONLY. Errors: ENOENT,
 * EACCES (the object's permissions), EINVAL (bad name or flags, or not a
 * memkit heap of this version). */
memkit_shm *memkit_shm_open(const char *name, int flags);
/* Gives the blocks this process cached back, unmaps, frees the handle.
 * The heap lives on until it is unlinked and every process closed it. */
int   memkit_shm_close(memkit_shm *h);
/* Removes the name (shm_unlink); processes that have it open keep it. */
int   memkit_shm_unlink(const char *name);

/* A block of at least SIZE bytes, 16-aligned (SIZE 0: a 16-byte block),
 * not zeroed; NULL + ENOMEM when the heap is full, EROFS read-only. */
void *memkit_shm_alloc(memkit_shm *h, size_t size);
/* Frees a block of the heap, from any process. A pointer that is not an
 * allocated block's start (outside the heap, inside a block, already
 * free) is ignored. */
void  memkit_shm_free(memkit_shm *h, void *p);
/* The offset of P from the heap's start: the same in every process; 0 for
 * NULL or a pointer outside the heap. */
uint64_t memkit_shm_offset(memkit_shm *h, const void *p);
/* The address of OFFSET in this process; NULL for 0 or out of range. */
void *memkit_shm_at(memkit_shm *h, uint64_t offset);

/* The object named KEY (1..47 bytes), like Boost's find_or_construct:
 * found, or allocated with SIZE bytes, zeroed (*CREATED 1, else 0; CREATED
 * may be NULL). Errors: EINVAL (bad key, or the object is smaller than
 * SIZE), ENOSPC (128 names at most), ENOMEM, ENOENT (read-only handle and
 * no such object). Creation is atomic for concurrent callers. */
void *memkit_shm_named(memkit_shm *h, const char *key, size_t size, int *created);
/* Iterates over named objects: start with *CURSOR = 0; each call returns
 * the next object (its key, NUL-terminated and valid while it exists, in
 * *KEY and its size in *SIZE; either may be NULL), NULL at the end. */
void *memkit_shm_named_next(memkit_shm *h, unsigned *cursor, const char **key, size_t *size);
/* Removes the name KEY and frees its object; ENOENT if none. */
int   memkit_shm_named_remove(memkit_shm *h, const char *key);

/* The heap-wide robust lock for the user's data: 0, MEMKIT_SHM_OWNER_DIED
 * (see above), or -1 + errno (EROFS read-only; EDEADLK when the calling
 * thread holds it already: not recursive). */
int   memkit_shm_lock(memkit_shm *h);
/* -1 + EPERM when the calling thread does not hold it. */
int   memkit_shm_unlock(memkit_shm *h);

/* *USED: bytes of blocks held (block sizes; blocks cached by processes
 * not counted); *CAPACITY: bytes blocks can take. Either may be NULL. */
int   memkit_shm_stats(memkit_shm *h, size_t *used, size_t *capacity);
/* 0 when the heap's structures are consistent, else the number of
 * inconsistencies found; -1 + EINVAL for NULL. Takes the allocator's lock
 * (a read-only handle checks without it: a concurrent writer can make it
 * report a transient inconsistency). */
int   memkit_shm_check(memkit_shm *h);

/* An anonymous heap (a memfd, no name): hand it to children through fork
 * (the handle works in the child) or its fd across exec. */
memkit_shm *memkit_shm_create_anon(size_t size);
/* The heap's fd, owned by the handle, close-on-exec (clear FD_CLOEXEC or
 * dup2 it before exec to pass it on). */
int   memkit_shm_fd(memkit_shm *h);
/* Opens the heap behind FD (duplicated: the caller keeps FD). FLAGS as
 * memkit_shm_open. */
memkit_shm *memkit_shm_open_fd(int fd, int flags);

#ifdef __cplusplus
}
#endif

#endif /* MEMKIT_SHM_H */
