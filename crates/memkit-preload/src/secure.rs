//! The C API of secure memory (`include/memkit-secure.h`) over
//! `memkit_secure`, and `MEMKIT_MLOCKALL` for the constructor.
//!
//! Allocation-free like the rest of libmemkit.so: secrets and their books
//! live in memkit-secure's own mappings, messages in stack buffers.

use core::ffi::c_void;
use core::fmt::Write;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use memkit_secure::msg::Msg;
use memkit_secure::{Access, ErrorKind, LockPolicy, Mode, Options};

use crate::set_errno;

/// `MEMKIT_SECURE_PACKED`: share a locked slab with other small secrets.
const PACKED: u32 = 1;
/// `MEMKIT_SECURE_SECRETMEM`: back with `memfd_secret` when available.
const SECRETMEM: u32 = 2;
const KNOWN_FLAGS: u32 = PACKED | SECRETMEM;

/// Applies `MEMKIT_MLOCKALL` (`1`: `mlockall(MCL_CURRENT|MCL_FUTURE)`;
/// `onfault`, `current`, `future`; `0`). Called once by the library
/// constructor; a failure is reported once on stderr and the program
/// continues unlocked. Returns the `MCL_*` flags now in force (0: none;
/// `MCL_FUTURE` is 2), for the allocator to stop returning memory it would
/// have to fault back in.
pub fn apply_mlockall_from_env() -> u32 {
    memkit_secure::mlockall::apply_from_env()
}

static REFUSAL_REPORTED: AtomicBool = AtomicBool::new(false);

/// Sets errno from a failed allocation; the first lock refusal of the
/// process is also explained on stderr (C has no error object to carry it).
fn refused(e: memkit_secure::Error) -> *mut c_void {
    if e.kind() == ErrorKind::Lock && !REFUSAL_REPORTED.swap(true, Relaxed) {
        let mut m = Msg::<1024>::new();
        let _ = write!(m, "memkit: secure allocation refused: {e} (reported once)");
        m.to_stderr();
    }
    set_errno(e.errno());
    null_mut()
}

/// A misused pointer (not a live secret) is a memory-safety bug in the
/// caller; for secrets, fail closed.
#[cold]
fn bad_pointer(func: &str, p: *const c_void) -> ! {
    let mut m = Msg::<200>::new();
    let _ = write!(
        m,
        "memkit: {func}({p:p}): not a live secure allocation (double free?); aborting"
    );
    m.to_stderr();
    memkit_secure::abort()
}

fn alloc(size: usize, flags: u32) -> *mut c_void {
    if flags & !KNOWN_FLAGS != 0 {
        set_errno(crate::EINVAL);
        return null_mut();
    }
    let opts = Options {
        mode: if flags & PACKED != 0 {
            Mode::Packed
        } else {
            Mode::Guarded
        },
        secretmem: flags & SECRETMEM != 0,
        ..Options::GUARDED
    };
    match memkit_secure::alloc(size, &opts) {
        Ok(p) => p.as_ptr().cast(),
        Err(e) => refused(e),
    }
}

/// `void *memkit_secure_malloc(size_t size)`: a guarded, locked, zeroed,
/// read-write secret; NULL + errno (ENOMEM/EPERM: cannot lock under the
/// `require` policy; ENOMEM: out of memory or mappings).
#[unsafe(no_mangle)]
pub extern "C" fn memkit_secure_malloc(size: usize) -> *mut c_void {
    alloc(size, 0)
}

/// `void *memkit_secure_alloc(size_t size, unsigned flags)`: as
/// `memkit_secure_malloc` with `MEMKIT_SECURE_PACKED` / `_SECRETMEM` flags
/// (EINVAL for unknown flags).
#[unsafe(no_mangle)]
pub extern "C" fn memkit_secure_alloc(size: usize, flags: u32) -> *mut c_void {
    alloc(size, flags)
}

/// `void *memkit_secure_realloc(void *p, size_t size)`: moves the secret to
/// a new one of `size` bytes (same mode, read-write), wiping the old copy.
/// NULL `p`: `memkit_secure_malloc`; size 0: frees `p`, returns NULL. On
/// failure returns NULL with errno and leaves `p` untouched.
///
/// # Safety
/// `p` must be NULL or a live secret no other thread uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_secure_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc(size, 0);
    }
    if size == 0 {
        // SAFETY: forwarded from the caller.
        unsafe { memkit_secure_free(p) };
        return null_mut();
    }
    // SAFETY: forwarded from the caller.
    match unsafe { memkit_secure::realloc(p.cast(), size) } {
        Ok(q) => q.as_ptr().cast(),
        Err(e) if e.kind() == ErrorKind::UnknownPointer => bad_pointer("memkit_secure_realloc", p),
        Err(e) => refused(e),
    }
}

/// `void memkit_secure_free(void *p)`: checks the canaries (a damaged one:
/// a line on stderr and abort), wipes and releases; NULL is ignored, a
/// pointer that is not a live secret aborts. Keeps errno.
///
/// # Safety
/// `p` must be NULL or a live secret, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_secure_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: forwarded from the caller.
    if unsafe { memkit_secure::free(p.cast()) }.is_err() {
        bad_pointer("memkit_secure_free", p);
    }
}

/// # Safety
/// As for the C functions below.
unsafe fn set_access(p: *mut c_void, a: Access) -> i32 {
    // SAFETY: forwarded from the caller.
    match unsafe { memkit_secure::set_access(p.cast(), a) } {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e.errno());
            -1
        }
    }
}

/// `int memkit_secure_noaccess(void *p)`: every access to the secret faults
/// until opened again. 0, or -1 with errno (EINVAL: not a secret; ENOMEM).
///
/// # Safety
/// No code may access the secret while it is closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_secure_noaccess(p: *mut c_void) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { set_access(p, Access::NoAccess) }
}

/// `int memkit_secure_readonly(void *p)`: writes fault.
///
/// # Safety
/// No code may write the secret while it is read-only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_secure_readonly(p: *mut c_void) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { set_access(p, Access::ReadOnly) }
}

/// `int memkit_secure_readwrite(void *p)`.
///
/// # Safety
/// `p` must be a secret (anything else is refused with EINVAL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_secure_readwrite(p: *mut c_void) -> i32 {
    // SAFETY: opening access contradicts no reference.
    unsafe { set_access(p, Access::ReadWrite) }
}

/// `int memkit_secure_protection(const void *p)`: the `MEMKIT_PROT_*` bits
/// the secret actually has, or -1 with errno EINVAL for a non-secret.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_secure_protection(p: *const c_void) -> i32 {
    let Some(pr) = memkit_secure::protection(p.cast()) else {
        set_errno(crate::EINVAL);
        return -1;
    };
    [
        (pr.locked, 1),
        (pr.dontdump, 2),
        (pr.wipeonfork, 4),
        (pr.secretmem, 8),
        (pr.guarded, 16),
        (pr.packed, 32),
        (pr.dontfork, 64),
        (pr.canary, 128),
        (pr.access == Access::ReadWrite, 256),
        (pr.access == Access::ReadOnly, 512),
        (!pr.access_exact, 1024),
    ]
    .iter()
    .fold(0, |m, &(on, bit)| if on { m | bit } else { m })
}

/// `size_t memkit_secure_size(const void *p)`: the requested size; 0 for a
/// non-secret.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_secure_size(p: *const c_void) -> usize {
    memkit_secure::size_of(p.cast()).unwrap_or(0)
}

/// `int memkit_secure_set_policy(int policy)`: `MEMKIT_SECURE_REQUIRE` (0),
/// `_BEST_EFFORT` (1) or `_OFF` (2); wins over `MEMKIT_SECURE_MLOCK`. 0, or
/// -1 with EINVAL.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_secure_set_policy(policy: i32) -> i32 {
    let p = match policy {
        0 => LockPolicy::Require,
        1 => LockPolicy::BestEffort,
        2 => LockPolicy::Off,
        _ => {
            set_errno(crate::EINVAL);
            return -1;
        }
    };
    memkit_secure::set_lock_policy(p);
    0
}

/// `int memkit_secure_get_policy(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_secure_get_policy() -> i32 {
    memkit_secure::lock_policy() as i32
}

/// `void memkit_memzero(void *p, size_t n)`: zeroes with writes the
/// compiler cannot remove.
///
/// # Safety
/// `p..p+n` must be writable (NULL is fine when `n` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_memzero(p: *mut c_void, n: usize) {
    if n != 0 {
        // SAFETY: the caller's range.
        unsafe { memkit_secure::memzero(p.cast(), n) }
    }
}
