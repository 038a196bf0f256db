//! Why a secure operation failed, with a message that says what to do.

use core::fmt;

use crate::msg::{Bytes, ErrnoName};

/// The kind of a secure-memory failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The secret could not be locked in RAM and the lock policy is
    /// `require` (errno ENOMEM: `RLIMIT_MEMLOCK` reached; EPERM: the limit
    /// is 0).
    Lock,
    /// The kernel refused memory or a mapping (ENOMEM: out of memory or
    /// `vm.max_map_count` reached).
    Map,
    /// Changing a secret's access failed (`mprotect`).
    Protect,
    /// An unsupported request: alignment not a power of two or above 4096,
    /// or a size too large to map (errno EINVAL / ENOMEM).
    Invalid,
    /// The pointer is not a live secure allocation (double free?).
    UnknownPointer,
}

/// A secure-memory failure. `Display` gives one self-contained sentence
/// (for `Lock`: the limit, what is locked already, and how to raise it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    errno: i32,
    size: usize,
    call: &'static str,
    /// `RLIMIT_MEMLOCK` (soft, hard) and `VmLck` when the error happened
    /// (`Lock` only).
    limit: (u64, u64),
    locked: u64,
}

impl Error {
    pub(crate) fn lock(size: usize, call: &'static str, errno: i32) -> Error {
        Error {
            kind: ErrorKind::Lock,
            errno,
            size,
            call,
            limit: memkit_sys::protect::memlock_limit(),
            locked: memkit_sys::protect::proc_status_bytes(b"VmLck").unwrap_or(0),
        }
    }

    pub(crate) fn map(size: usize, call: &'static str, errno: i32) -> Error {
        Error::other(ErrorKind::Map, size, call, errno)
    }

    pub(crate) fn protect(errno: i32) -> Error {
        Error::other(ErrorKind::Protect, 0, "mprotect", errno)
    }

    pub(crate) fn invalid(size: usize, errno: i32) -> Error {
        Error::other(ErrorKind::Invalid, size, "", errno)
    }

    pub(crate) fn unknown() -> Error {
        Error::other(
            ErrorKind::UnknownPointer,
            0,
            "",
            memkit_sys::protect::EINVAL,
        )
    }

    fn other(kind: ErrorKind, size: usize, call: &'static str, errno: i32) -> Error {
        Error {
            kind,
            errno,
            size,
            call,
            limit: (0, 0),
            locked: 0,
        }
    }

    /// What failed.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The errno value a C caller sees (ENOMEM, EPERM, EINVAL, ...).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// `RLIMIT_MEMLOCK` as `(soft, hard)` in bytes (`u64::MAX`: unlimited)
    /// when a lock failed.
    pub fn memlock_limit(&self) -> Option<(u64, u64)> {
        (self.kind == ErrorKind::Lock).then_some(self.limit)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = ErrnoName(self.errno);
        match self.kind {
            ErrorKind::Lock => {
                let (soft, hard) = self.limit;
                write!(
                    f,
                    "cannot lock {} of secret memory in RAM ({}: {e}): RLIMIT_MEMLOCK is {} (hard limit {}) \
                     and {} are locked already; ",
                    Bytes(self.size as u64),
                    self.call,
                    Bytes(soft),
                    Bytes(hard),
                    Bytes(self.locked),
                )?;
                if hard > soft {
                    write!(
                        f,
                        "raise it up to the hard limit with `ulimit -l {}` (KiB) before starting the program, ",
                        KiB(hard)
                    )?;
                } else {
                    f.write_str(
                        "raise it with `ulimit -l <KiB>` as root before starting the program, ",
                    )?;
                }
                f.write_str(
                    "with LimitMEMLOCK= in its systemd unit or a `memlock` line in \
                     /etc/security/limits.conf, or give it CAP_IPC_LOCK; \
                     MEMKIT_SECURE_MLOCK=best-effort accepts unlocked secrets",
                )
            }
            ErrorKind::Map => write!(
                f,
                "cannot map {} of secret memory ({}: {e}); when the process has vm.max_map_count \
                 mappings (a guarded secret needs about 2), packed secrets need far fewer",
                Bytes(self.size as u64),
                self.call
            ),
            ErrorKind::Protect => write!(f, "cannot change a secret's access (mprotect: {e})"),
            ErrorKind::Invalid => write!(
                f,
                "unsupported secure allocation of {} ({e}): alignment must be a power of two up to 4096",
                Bytes(self.size as u64)
            ),
            ErrorKind::UnknownPointer => {
                f.write_str("not a live secure allocation (freed twice, or never allocated by memkit)")
            }
        }
    }
}

/// A byte count in KiB for `ulimit -l`.
struct KiB(u64);

impl fmt::Display for KiB {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u64::MAX {
            f.write_str("unlimited")
        } else {
            write!(f, "{}", self.0 / 1024)
        }
    }
}
