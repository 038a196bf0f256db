/* memkit-secure.h: secure memory for secrets, exported by libmemkit.so.
 *
 * A secret is locked in RAM (never swapped), left out of core dumps
 * (MADV_DONTDUMP), zero-filled in children made by fork (MADV_WIPEONFORK),
 * fenced by guard pages and a random canary, and wiped when freed. Design,
 * defences and limits: docs/SECURE.md.
 *
 * Link with -lmemkit, or preload libmemkit.so and look the functions up
 * with dlsym. Every function is thread-safe. All allocation paths are
 * allocation-free (they never call malloc).
 *
 * The environment variables MEMKIT_SECURE_MLOCK (the lock policy) and
 * MEMKIT_MLOCKALL (lock the whole process at start) are described with
 * the others in libmemkit(3) and by `memkit env`.
 */
#ifndef MEMKIT_SECURE_H
#define MEMKIT_SECURE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags of memkit_secure_alloc. */
/* Share a locked slab with other small secrets (up to 2016 bytes; larger
 * ones get a guarded region): ~50 bytes of locked memory per 32-byte secret
 * and a few mappings per 1,000 secrets, instead of a page and ~2 mappings
 * each. Canaries separate neighbours; guard pages fence the slab. Access
 * toggling then applies per page: a page is as open as its most open
 * secret (MEMKIT_PROT_SHARED_ACCESS in memkit_secure_protection). */
#define MEMKIT_SECURE_PACKED 1u
/* Back the secret with memfd_secret (Linux 5.14+) when the kernel offers
 * it: its pages leave the kernel's direct map, unreadable even for root;
 * children made by fork do not get them at all (MADV_DONTFORK). Falls back
 * to plain locked memory where memfd_secret is missing. */
#define MEMKIT_SECURE_SECRETMEM 2u

/* Guarded secret of `size` bytes: its own mapping, a PROT_NONE guard page
 * right before and after, the data ending against the trailing guard (a
 * write one byte past a 16-byte-multiple size faults), a random canary
 * before it. Zeroed, read-write, 16-byte aligned (any size).
 * NULL with errno: ENOMEM or EPERM when it cannot be locked under the
 * `require` policy (the first refusal prints why on stderr, naming
 * RLIMIT_MEMLOCK and how to raise it); ENOMEM when out of memory or
 * mappings (vm.max_map_count). */
void *memkit_secure_malloc(size_t size);

/* memkit_secure_malloc with MEMKIT_SECURE_* flags (EINVAL: unknown flag). */
void *memkit_secure_alloc(size_t size, unsigned flags);

/* Moves the secret to a new one of `size` bytes (same flags, read-write),
 * wiping and freeing the old copy. NULL p: memkit_secure_malloc(size);
 * size 0: frees p and returns NULL. On failure returns NULL, sets errno and
 * leaves p untouched. */
void *memkit_secure_realloc(void *p, size_t size);

/* Checks the canaries (damage: one line on stderr, then abort()), wipes the
 * secret and releases it. NULL is ignored; a pointer that is not a live
 * secret (double free) aborts. Keeps errno. */
void memkit_secure_free(void *p);

/* Access control (mprotect): 0, or -1 with errno (EINVAL: not a secret;
 * ENOMEM: out of mappings). Reads of a no-access secret and writes to a
 * read-only one fault (SIGSEGV). */
int memkit_secure_noaccess(void *p);
int memkit_secure_readonly(void *p);
int memkit_secure_readwrite(void *p);

/* Bits of memkit_secure_protection: what the secret actually has. */
#define MEMKIT_PROT_LOCKED 0x1         /* in RAM, never swapped */
#define MEMKIT_PROT_DONTDUMP 0x2       /* left out of core dumps */
#define MEMKIT_PROT_WIPEONFORK 0x4     /* zero-filled in forked children */
#define MEMKIT_PROT_SECRETMEM 0x8      /* memfd_secret memory */
#define MEMKIT_PROT_GUARDED 0x10       /* guard pages right around it */
#define MEMKIT_PROT_PACKED 0x20        /* in a shared slab */
#define MEMKIT_PROT_DONTFORK 0x40      /* absent from forked children */
#define MEMKIT_PROT_CANARY 0x80        /* canary checked at free */
#define MEMKIT_PROT_READWRITE 0x100    /* access as last set: read-write, */
#define MEMKIT_PROT_READONLY 0x200     /* read-only, or neither: no-access */
#define MEMKIT_PROT_SHARED_ACCESS 0x400 /* packed: a neighbour keeps its
                                         * page more open than asked */

/* The MEMKIT_PROT_* bits of a secret, or -1 with errno EINVAL. */
int memkit_secure_protection(const void *p);

/* The size the secret was allocated with; 0 for a non-secret. */
size_t memkit_secure_size(const void *p);

/* Lock policies: what happens when a secret cannot be locked. */
#define MEMKIT_SECURE_REQUIRE 0     /* refuse it (default) */
#define MEMKIT_SECURE_BEST_EFFORT 1 /* allocate, warn once on stderr */
#define MEMKIT_SECURE_OFF 2         /* never lock */

/* Sets the process-wide policy: 0, or -1 with errno EINVAL. */
int memkit_secure_set_policy(int policy);
int memkit_secure_get_policy(void);

/* Zeroes p..p+n with writes the compiler cannot remove. */
void memkit_memzero(void *p, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* MEMKIT_SECURE_H */
