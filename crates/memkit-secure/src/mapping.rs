//! Turning reserved address space into secret memory: the protections every
//! secret gets, guarded region or packed slab alike.
//!
//! A secret's pages are reserved `PROT_NONE` together with their guard
//! pages, then opened (anonymous) or replaced by a `memfd_secret` mapping,
//! locked according to the [`LockPolicy`], excluded from core dumps and
//! wiped (or withheld) in forked children. [`Flags`] records what actually
//! took effect; the protection report is read from it.

use memkit_sys::protect::{self as sys, Prot};
use memkit_sys::Errno;

use crate::policy::{self, LockPolicy};
use crate::Error;

/// What took effect on a secret's pages (bits of [`Flags`]).
pub type Flags = u16;
/// Locked in RAM (`mlock`, or implied by `memfd_secret`).
pub const LOCKED: Flags = 1;
/// `MADV_DONTDUMP`.
pub const DONTDUMP: Flags = 2;
/// `MADV_WIPEONFORK`.
pub const WIPEONFORK: Flags = 4;
/// Backed by `memfd_secret`.
pub const SECRETMEM: Flags = 8;
/// `MADV_DONTFORK` (`memfd_secret` pages, which cannot be wiped on fork).
pub const DONTFORK: Flags = 16;

/// The page size.
pub const PAGE: usize = memkit_sys::OS_PAGE;

/// Reserves `len` bytes of inaccessible address space.
pub fn reserve(len: usize, size: usize) -> Result<*mut u8, Error> {
    sys::map_reserve(len).map_err(|Errno(e)| {
        if e == sys::EAGAIN {
            // Under mlockall(MCL_FUTURE) even reserved space counts against
            // RLIMIT_MEMLOCK.
            Error::lock(size, "mmap", sys::ENOMEM)
        } else {
            Error::map(size, "mmap", e)
        }
    })
}

/// Unmaps a reserved range.
///
/// # Safety
/// `p..p+len` must be a range [`reserve`] returned, no longer used.
pub unsafe fn release(p: *mut u8, len: usize) {
    // SAFETY: the caller's range.
    unsafe { memkit_sys::unmap(p, len) };
}

/// Opens `data..data+len` (page-aligned, inside a reservation) as secret
/// memory: readable and writable, locked per `policy`, out of core dumps,
/// wiped in (or, for `memfd_secret`, withheld from) forked children. `size`
/// is the secret's size, for error messages. On error the range may be
/// left in any state: the caller releases the whole reservation.
///
/// # Safety
/// `data..data+len` must lie in a reservation the caller owns and does not
/// use otherwise.
pub unsafe fn open_secret(
    data: *mut u8,
    len: usize,
    secretmem: bool,
    policy: LockPolicy,
    size: usize,
) -> Result<Flags, Error> {
    if secretmem {
        // SAFETY: forwarded from the caller.
        match unsafe { open_secretmem(data, len) } {
            Ok(()) => {
                let mut f = LOCKED | SECRETMEM | DONTDUMP;
                // SAFETY: the caller's range, now our shared mapping.
                if unsafe { sys::dont_fork(data, len) }.is_ok() {
                    f |= DONTFORK;
                }
                return Ok(f);
            }
            // Past RLIMIT_MEMLOCK: a lock failure like mlock's.
            Err(e) if e == sys::EAGAIN || e == sys::ENOMEM || e == sys::EPERM => {
                if policy == LockPolicy::Require {
                    let e = if e == sys::EPERM { e } else { sys::ENOMEM };
                    return Err(Error::lock(size, "memfd_secret mmap", e));
                }
                policy::warn_unlocked("memfd_secret mmap", e);
            }
            // Not available here (ENOSYS, or disabled): plain locked memory.
            Err(_) => {}
        }
    }
    // SAFETY: the caller's range.
    unsafe { sys::protect(data, len, Prot::ReadWrite) }
        .map_err(|Errno(e)| Error::map(size, "mprotect", e))?;
    let mut f = 0;
    if policy != LockPolicy::Off {
        // SAFETY: the caller's range.
        match unsafe { sys::lock(data, len) } {
            Ok(()) => f |= LOCKED,
            Err(Errno(e)) => {
                if policy == LockPolicy::Require {
                    let e = if e == sys::EPERM { e } else { sys::ENOMEM };
                    return Err(Error::lock(size, "mlock", e));
                }
                policy::warn_unlocked("mlock", e);
            }
        }
    }
    // SAFETY: the caller's range.
    if unsafe { sys::dont_dump(data, len) }.is_ok() {
        f |= DONTDUMP;
    }
    // SAFETY: the caller's range.
    if unsafe { sys::wipe_on_fork(data, len) }.is_ok() {
        f |= WIPEONFORK;
    }
    Ok(f)
}

/// Maps a fresh `memfd_secret` file over `data..data+len`; on failure the
/// range is reserved space again. Returns the errno of the failing step.
///
/// # Safety
/// As for [`open_secret`].
unsafe fn open_secretmem(data: *mut u8, len: usize) -> Result<(), i32> {
    let fd = sys::memfd_secret().map_err(|Errno(e)| e)?;
    let r = sys::truncate(fd, len as u64).and_then(|()| {
        // SAFETY: the caller's range; fd is `len` bytes long.
        unsafe { sys::map_shared_fixed(data, len, fd) }
    });
    // The mapping keeps the file alive: one descriptor at a time, not one
    // per secret.
    memkit_sys::close(fd);
    match r {
        Ok(_) => Ok(()),
        Err(Errno(e)) => {
            // A failed MAP_FIXED may have unmapped the range: reserve it
            // again so that nothing else lands between our guard pages.
            // SAFETY: the caller's range.
            let _ = unsafe { sys::reserve_fixed(data, len) };
            Err(e)
        }
    }
}

/// Sets the protection of secret pages.
///
/// # Safety
/// `data..data+len` must be secret pages the caller owns.
pub unsafe fn set_prot(data: *mut u8, len: usize, prot: Prot) -> Result<(), Error> {
    // SAFETY: the caller's range.
    unsafe { sys::protect(data, len, prot) }.map_err(|Errno(e)| Error::protect(e))
}
