//! Locking a whole process in RAM (`mlockall`), for real-time programs that
//! must not page-fault, and the status and errors around it.
//!
//! [`lock_all`] with [`CURRENT`] locks every page mapped now; [`FUTURE`]
//! every mapping made later (the heap's and stacks' growth included);
//! [`ONFAULT`] locks pages as they are first touched instead of populating
//! whole mappings at once (less RSS, but the first touch still faults).
//! Without `CAP_IPC_LOCK`, `RLIMIT_MEMLOCK` bounds it: `MCL_CURRENT` fails
//! with ENOMEM when the process's mapped size (`VmSize`) exceeds the limit,
//! and under `MCL_FUTURE` any later `mmap`/`brk` that would pass the limit
//! fails (so `malloc` returns NULL). A failed `mlockall` changes nothing.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use memkit_sys::protect as sys;

use crate::msg::{Bytes, ErrnoName, Msg};

/// Lock every page mapped now (`MCL_CURRENT`).
pub const CURRENT: u32 = sys::MCL_CURRENT;
/// Lock every mapping made from now on (`MCL_FUTURE`).
pub const FUTURE: u32 = sys::MCL_FUTURE;
/// Lock pages when first touched, not all at once (`MCL_ONFAULT`).
pub const ONFAULT: u32 = sys::MCL_ONFAULT;

/// A failed [`lock_all`], with what the kernel compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockAllError {
    /// ENOMEM (over `RLIMIT_MEMLOCK`), EPERM (limit 0 without
    /// `CAP_IPC_LOCK`), EINVAL (bad flags), EAGAIN.
    pub errno: i32,
    /// The `MCL_*` flags asked for.
    pub flags: u32,
    /// The process's state when it failed.
    pub status: Status,
}

/// How much of the process is locked, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// Bytes locked (`VmLck` of `/proc/self/status`).
    pub locked: u64,
    /// Bytes mapped (`VmSize`), what `MCL_CURRENT` must lock.
    pub mapped: u64,
    /// `RLIMIT_MEMLOCK` soft and hard limits (`u64::MAX`: unlimited).
    pub limit_soft: u64,
    pub limit_hard: u64,
    /// Whether the process has `CAP_IPC_LOCK` (no limit applies).
    pub cap_ipc_lock: bool,
}

/// Reads the process's lock status (one read of `/proc/self/status`).
pub fn status() -> Status {
    let mut buf = [0u8; 4096];
    let n = sys::read_proc_status(&mut buf).unwrap_or(0);
    let text = &buf[..n];
    let kib = |k: &[u8]| sys::status_field(text, k).unwrap_or(0).saturating_mul(1024);
    let (soft, hard) = sys::memlock_limit();
    Status {
        locked: kib(b"VmLck"),
        mapped: kib(b"VmSize"),
        limit_soft: soft,
        limit_hard: hard,
        cap_ipc_lock: sys::has_capability(sys::CAP_IPC_LOCK),
    }
}

/// `mlockall(flags)` with [`CURRENT`], [`FUTURE`] and [`ONFAULT`] bits.
pub fn lock_all(flags: u32) -> Result<(), LockAllError> {
    sys::lock_all(flags).map_err(|memkit_sys::Errno(errno)| LockAllError {
        errno,
        flags,
        status: status(),
    })
}

/// `munlockall()`: unlocks everything and ends `MCL_FUTURE`. Secrets that
/// memkit locked one by one are unlocked too: lock them again by
/// reallocating them.
pub fn unlock_all() -> Result<(), i32> {
    sys::unlock_all().map_err(|memkit_sys::Errno(e)| e)
}

/// Sets `RLIMIT_MEMLOCK` in bytes (`u64::MAX`: unlimited); errno on failure
/// (EPERM: raising the hard limit needs `CAP_SYS_RESOURCE`).
pub fn set_memlock_limit(soft: u64, hard: u64) -> Result<(), i32> {
    sys::set_memlock_limit(soft, hard).map_err(|memkit_sys::Errno(e)| e)
}

/// Writes `MCL_CURRENT|MCL_FUTURE` style names of `flags`.
pub struct FlagNames(pub u32);

impl fmt::Display for FlagNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in [
            (CURRENT, "MCL_CURRENT"),
            (FUTURE, "MCL_FUTURE"),
            (ONFAULT, "MCL_ONFAULT"),
        ] {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("0")?;
        }
        Ok(())
    }
}

impl fmt::Display for LockAllError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.status;
        write!(
            f,
            "mlockall({}) failed ({}): ",
            FlagNames(self.flags),
            ErrnoName(self.errno)
        )?;
        match self.errno {
            sys::EINVAL => {
                f.write_str("invalid flags (MCL_ONFAULT needs MCL_CURRENT or MCL_FUTURE)")
            }
            sys::EPERM | sys::ENOMEM | sys::EAGAIN => {
                if self.errno == sys::EPERM {
                    f.write_str("RLIMIT_MEMLOCK is 0 and the process lacks CAP_IPC_LOCK; ")?;
                } else {
                    write!(
                        f,
                        "RLIMIT_MEMLOCK is {} (hard limit {}) but the process maps {} (VmSize), all of which \
                         MCL_CURRENT must lock; ",
                        Bytes(s.limit_soft),
                        Bytes(s.limit_hard),
                        Bytes(s.mapped)
                    )?;
                }
                f.write_str(
                    "raise the limit with `ulimit -l unlimited` (or a KiB count above VmSize) in the shell \
                     that starts the program, LimitMEMLOCK=infinity in its systemd unit or a `memlock` line in \
                     /etc/security/limits.conf, or give it CAP_IPC_LOCK",
                )
            }
            _ => Ok(()),
        }
    }
}

/// Parses `MEMKIT_MLOCKALL`: `1`/`on`/`yes`/`true` lock current and future
/// memory, `onfault` adds `MCL_ONFAULT`, `current` and `future` lock only
/// that, `0`/`off`/empty nothing. `None` for anything else.
pub fn parse_env(v: &[u8]) -> Option<u32> {
    Some(match v {
        b"1" | b"on" | b"yes" | b"true" => CURRENT | FUTURE,
        b"onfault" => CURRENT | FUTURE | ONFAULT,
        b"current" => CURRENT,
        b"future" => FUTURE,
        b"0" | b"off" | b"no" | b"false" | b"" => 0,
        _ => return None,
    })
}

static APPLIED: AtomicBool = AtomicBool::new(false);

/// Applies `MEMKIT_MLOCKALL` once per process (libmemkit.so's constructor
/// calls it). A failure is reported on one line of stderr and the program
/// continues unlocked. Returns the flags now in force (0: none).
pub fn apply_from_env() -> u32 {
    // The variable first: without it nothing is applied, and `APPLIED`
    // stays unwritten (a store would make its page of libmemkit.so's
    // .bss resident in every program).
    let Some(v) = memkit_sys::env::var(b"MEMKIT_MLOCKALL") else {
        return 0;
    };
    if APPLIED.swap(true, Relaxed) {
        return 0;
    }
    let mut m = Msg::<700>::new();
    let shown = core::str::from_utf8(&v[..v.len().min(32)]).unwrap_or("?");
    match parse_env(v) {
        None => {
            let _ = write!(
                m,
                "memkit: ignoring MEMKIT_MLOCKALL={shown} (expected 1, onfault, current, future or 0)"
            );
            m.to_stderr();
            0
        }
        Some(0) => 0,
        Some(flags) => match lock_all(flags) {
            Ok(()) => flags,
            Err(e) => {
                let _ = write!(
                    m,
                    "memkit: MEMKIT_MLOCKALL={shown}: {e}; continuing unlocked"
                );
                m.to_stderr();
                0
            }
        },
    }
}

/// Touches `bytes` of stack below the caller, so that a real-time path
/// using up to that depth does not fault (under `MCL_FUTURE`, the touched
/// stack pages stay locked and resident).
#[inline(never)]
pub fn prefault_stack(bytes: usize) {
    const CHUNK: usize = 16 * 1024;
    let mut buf = [0u8; CHUNK];
    let mut i = 0;
    while i < CHUNK {
        // SAFETY: i < CHUNK, inside the local array.
        unsafe { core::ptr::write_volatile(buf.as_mut_ptr().add(i), 1) };
        i += memkit_sys::OS_PAGE;
    }
    core::hint::black_box(&mut buf);
    if bytes > CHUNK {
        prefault_stack(bytes - CHUNK);
    }
    core::hint::black_box(&buf);
}
