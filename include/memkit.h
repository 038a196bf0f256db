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

/* C23 sized deallocation (glibc 2.36's headers do not declare them yet).
 * The size and alignment are hints: memkit finds them itself. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* MEMKIT_H */
