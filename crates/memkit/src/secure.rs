//! Secure memory for keys, passwords and tokens.
//!
//! A secret lives in memory that is locked in RAM (never swapped), left out
//! of core dumps, zero-filled in children made by `fork`, fenced by guard
//! pages and canaries, inaccessible while nobody borrows it, and wiped when
//! dropped:
//!
//! ```no_run
//! use memkit::secure::{SecretBox, SecretVec};
//!
//! # fn main() -> Result<(), memkit::secure::Error> {
//! let key = SecretBox::<[u8; 32]>::init_with(|k| k.fill(7))?;
//! assert_eq!(key.borrow()[0], 7); // readable for the guard's lifetime
//!
//! let mut password = SecretVec::new();
//! password.extend_from_slice(b"hunter2")?;
//! println!("{password:?}"); // SecretVec([REDACTED])
//! # Ok(())
//! # }
//! ```
//!
//! Between borrows a secret is `PROT_NONE`: a stray read through a dangling
//! pointer faults instead of leaking it. [`SecretBox::borrow`] opens it
//! read-only for as long as any reader holds a guard (readers on several
//! threads share the opening); [`SecretBox::borrow_mut`] opens it
//! read-write. Each opening and closing is an `mprotect` (about a
//! microsecond): borrow once around a computation, not per byte.
//!
//! Secrets are guarded by default (a mapping per secret, exact access
//! control); [`Options::packed`] puts small secrets in shared locked slabs
//! (use it for many secrets: 100,000 packed 32-byte secrets lock under 5
//! MiB). When a secret cannot be locked, the [`LockPolicy`] decides:
//! `Require` (the default) refuses it with an [`Error`] that names
//! `RLIMIT_MEMLOCK` and how to raise it. `MEMKIT_SECURE_MLOCK` sets the
//! policy from the environment; [`set_lock_policy`] wins over it.
//!
//! The design, and what each protection defends against, is in
//! `docs/SECURE.md`.

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::Mutex;

pub use memkit_secure::{Access, ErrorKind, LockPolicy, Mode, Protection};

mod boxed;
mod vec;

pub use boxed::{SecretBox, SecretMut, SecretRef, Zeroable};
pub use vec::{SecretSlice, SecretSliceMut, SecretVec};

/// A failed secure-memory operation. Its `Display` is a complete sentence;
/// for a lock failure it names `RLIMIT_MEMLOCK`, its value, what is locked
/// already and how to raise it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error(memkit_secure::Error);

impl Error {
    /// What failed.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind()
    }

    /// The errno value (ENOMEM, EPERM, EINVAL...).
    pub fn raw_os_error(&self) -> i32 {
        self.0.errno()
    }

    /// `RLIMIT_MEMLOCK` (soft, hard) in bytes when locking failed
    /// (`u64::MAX`: unlimited).
    pub fn memlock_limit(&self) -> Option<(u64, u64)> {
        self.0.memlock_limit()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secure::Error({:?}, errno {}: {})",
            self.kind(),
            self.raw_os_error(),
            self.0
        )
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = io::Error::from_raw_os_error(e.raw_os_error()).kind();
        io::Error::new(kind, e)
    }
}

impl From<memkit_secure::Error> for Error {
    fn from(e: memkit_secure::Error) -> Self {
        Error(e)
    }
}

/// How to allocate a secret: layout, backing, lock policy, and its access
/// while not borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    inner: memkit_secure::Options,
    idle: Access,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// Guarded, plain locked memory, the process's lock policy, no access
    /// while not borrowed.
    pub const fn new() -> Options {
        Options {
            inner: memkit_secure::Options::GUARDED,
            idle: Access::NoAccess,
        }
    }

    /// Share locked slabs with other small secrets (up to 2016 bytes;
    /// larger ones stay guarded). Access then changes per page: a secret is
    /// open while a neighbour on its page is borrowed.
    pub const fn packed(mut self) -> Options {
        self.inner.mode = Mode::Packed;
        self
    }

    /// One mapping per secret between guard pages (the default).
    pub const fn guarded(mut self) -> Options {
        self.inner.mode = Mode::Guarded;
        self
    }

    /// Back the secret with `memfd_secret` where the kernel offers it: its
    /// pages leave the kernel's direct map, out of reach even of root.
    /// Children made by `fork` do not get them at all.
    pub const fn secretmem(mut self, on: bool) -> Options {
        self.inner.secretmem = on;
        self
    }

    /// This secret's lock policy instead of the process's.
    pub const fn lock_policy(mut self, p: LockPolicy) -> Options {
        self.inner.policy = Some(p);
        self
    }

    /// The access between borrows: [`Access::NoAccess`] (default),
    /// [`Access::ReadOnly`] or [`Access::ReadWrite`] (no `mprotect` per
    /// borrow).
    pub const fn idle_access(mut self, a: Access) -> Options {
        self.idle = a;
        self
    }
}

/// The process-wide lock policy.
pub fn lock_policy() -> LockPolicy {
    memkit_secure::lock_policy()
}

/// Sets the process-wide lock policy (wins over `MEMKIT_SECURE_MLOCK`).
pub fn set_lock_policy(p: LockPolicy) {
    memkit_secure::set_lock_policy(p)
}

/// Zeroes `buf` with writes the compiler cannot remove.
pub fn memzero(buf: &mut [u8]) {
    memkit_secure::wipe_array(buf)
}

/// Compares in time that depends only on the lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let d = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(d) == 0
}

/// One secret's memory and its borrow state: shared by `SecretBox` and
/// `SecretVec`.
struct Raw {
    ptr: NonNull<u8>,
    /// Live read guards; the first opens the secret, the last closes it.
    readers: Mutex<usize>,
    idle: Access,
}

// SAFETY: Raw owns its secret; concurrent readers coordinate through the
// mutex, writers need `&mut`.
unsafe impl Send for Raw {}
// SAFETY: as above.
unsafe impl Sync for Raw {}

impl Raw {
    /// A zeroed read-write secret; call `close_write` once initialised.
    fn alloc(size: usize, align: usize, opts: &Options) -> Result<Raw, Error> {
        let mut o = opts.inner;
        o.align = align.max(16);
        let ptr = memkit_secure::alloc(size, &o)?;
        Ok(Raw {
            ptr,
            readers: Mutex::new(0),
            idle: opts.idle,
        })
    }

    fn set(&self, a: Access) -> Result<(), Error> {
        // SAFETY: callers change access only when no reference contradicts
        // it (the borrow guards' protocol).
        unsafe { memkit_secure::set_access(self.ptr.as_ptr(), a) }.map_err(Error)
    }

    fn open_read(&self) -> Result<(), Error> {
        let mut n = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if *n == 0 && self.idle == Access::NoAccess {
            self.set(Access::ReadOnly)?;
        }
        *n += 1;
        Ok(())
    }

    fn close_read(&self) {
        let mut n = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 && self.idle == Access::NoAccess {
            // If this fails the secret stays readable: nothing to undo.
            let _ = self.set(Access::NoAccess);
        }
    }

    fn open_write(&mut self) -> Result<(), Error> {
        if self.idle != Access::ReadWrite {
            self.set(Access::ReadWrite)?;
        }
        Ok(())
    }

    fn close_write(&mut self) {
        if self.idle != Access::ReadWrite {
            let _ = self.set(self.idle);
        }
    }

    fn protection(&self) -> Protection {
        memkit_secure::protection(self.ptr.as_ptr()).unwrap_or_default()
    }

    /// Moves the secret to `size` bytes (wiping the old copy); read-write
    /// afterwards.
    fn realloc(&mut self, size: usize) -> Result<(), Error> {
        // SAFETY: &mut self: no guard is alive.
        self.ptr = unsafe { memkit_secure::realloc(self.ptr.as_ptr(), size) }?;
        Ok(())
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: we own the secret; nothing references it any more. Its
        // canaries are checked (a damaged one aborts) and it is wiped.
        let _ = unsafe { memkit_secure::free(self.ptr.as_ptr()) };
    }
}

fn opened<T>(r: Result<T, Error>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("memkit::secure: cannot {what}: {e}"))
}
