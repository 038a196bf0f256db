//! Memory locking for real-time processes: keep the whole process in RAM so
//! that it never page-faults on its critical path.
//!
//! ```no_run
//! use memkit::lock::{self, LockFlags};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! lock::lock_all(LockFlags::CURRENT | LockFlags::FUTURE)?; // mlockall
//! lock::prefault_stack(256 * 1024); // the deepest stack the RT path uses
//! lock::reserve_heap(16 << 20); // heap it may allocate from
//! println!("{} bytes locked", lock::locked_bytes()?);
//! # Ok(())
//! # }
//! ```
//!
//! Without `CAP_IPC_LOCK`, `RLIMIT_MEMLOCK` (often 8 MiB) bounds what can be
//! locked; [`LockError`] names the limit, what the process maps, and how to
//! raise it. Under `MCL_FUTURE`, every later mapping is locked and
//! populated when made, and one that would pass the limit fails (`malloc`
//! returns NULL). For C programs, `MEMKIT_MLOCKALL=1` under
//! `LD_PRELOAD=libmemkit.so` locks current and future memory at start.

use std::fmt;
use std::io;
use std::ops::BitOr;

use memkit_secure::mlockall;

/// Which memory [`lock_all`] locks (`MCL_*` flags, combined with `|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LockFlags(u32);

impl LockFlags {
    /// Every page mapped now (`MCL_CURRENT`).
    pub const CURRENT: LockFlags = LockFlags(mlockall::CURRENT);
    /// Every mapping made later: heap growth, new stacks, `mmap`
    /// (`MCL_FUTURE`).
    pub const FUTURE: LockFlags = LockFlags(mlockall::FUTURE);
    /// Lock pages when first touched instead of populating every mapping
    /// at once (`MCL_ONFAULT`, Linux 4.4+): less memory, but first touches
    /// still fault. Combine with `CURRENT` and/or `FUTURE`.
    pub const ON_FAULT: LockFlags = LockFlags(mlockall::ONFAULT);

    /// The raw `MCL_*` bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for LockFlags {
    type Output = LockFlags;
    fn bitor(self, rhs: LockFlags) -> LockFlags {
        LockFlags(self.0 | rhs.0)
    }
}

/// A failed [`lock_all`]: `Display` names the errno, `RLIMIT_MEMLOCK`, what
/// the process maps, and how to raise the limit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LockError(mlockall::LockAllError);

impl LockError {
    /// The errno value (ENOMEM: over the limit; EPERM: limit 0 without
    /// `CAP_IPC_LOCK`; EINVAL: bad flags).
    pub fn raw_os_error(&self) -> i32 {
        self.0.errno
    }

    /// The process's lock status when it failed.
    pub fn status(&self) -> LockStatus {
        LockStatus::from(self.0.status)
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockError({})", self.0)
    }
}

impl std::error::Error for LockError {}

impl From<LockError> for io::Error {
    fn from(e: LockError) -> io::Error {
        let kind = io::Error::from_raw_os_error(e.raw_os_error()).kind();
        io::Error::new(kind, e)
    }
}

/// How much of the process is locked, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockStatus {
    /// Bytes locked now (`VmLck`).
    pub locked: u64,
    /// Bytes mapped (`VmSize`): what `MCL_CURRENT` has to lock.
    pub mapped: u64,
    /// `RLIMIT_MEMLOCK` (soft, hard) in bytes; `None`: unlimited.
    pub limit: MemlockLimit,
    /// Whether the process has `CAP_IPC_LOCK` (then no limit applies).
    pub cap_ipc_lock: bool,
}

impl From<mlockall::Status> for LockStatus {
    fn from(s: mlockall::Status) -> Self {
        LockStatus {
            locked: s.locked,
            mapped: s.mapped,
            limit: MemlockLimit::from_raw(s.limit_soft, s.limit_hard),
            cap_ipc_lock: s.cap_ipc_lock,
        }
    }
}

/// `RLIMIT_MEMLOCK` in bytes; `None` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockLimit {
    /// The limit in force (the soft limit).
    pub soft: Option<u64>,
    /// The ceiling an unprivileged process may raise `soft` to.
    pub hard: Option<u64>,
}

impl MemlockLimit {
    fn from_raw(soft: u64, hard: u64) -> Self {
        let f = |v: u64| (v != u64::MAX).then_some(v);
        MemlockLimit {
            soft: f(soft),
            hard: f(hard),
        }
    }
}

/// Locks the process's memory (`mlockall`). Fails with a [`LockError`]
/// naming the limit and the fix; a failed call changes nothing.
pub fn lock_all(flags: LockFlags) -> Result<(), LockError> {
    mlockall::lock_all(flags.0).map_err(LockError)?;
    if flags.0 & mlockall::FUTURE != 0 {
        // memkit's allocator (as this program's global allocator) stops
        // returning memory on decay: it would have to be locked again.
        memkit_alloc::config::OPTIONS
            .memory_locked
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// Unlocks all memory and ends `MCL_FUTURE` (`munlockall`). This unlocks
/// `memkit::secure` secrets too.
pub fn unlock_all() -> io::Result<()> {
    mlockall::unlock_all().map_err(io::Error::from_raw_os_error)?;
    memkit_alloc::config::OPTIONS
        .memory_locked
        .store(false, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Touches `bytes` of stack below the caller, so that code using up to that
/// depth does not fault later (the pages stay resident under
/// `MCL_CURRENT`/`MCL_FUTURE` locking). Call it on each real-time thread,
/// after [`lock_all`]. `bytes` must fit in the thread's stack.
pub fn prefault_stack(bytes: usize) {
    mlockall::prefault_stack(bytes)
}

const M_TRIM_THRESHOLD: i32 = -1;
const M_MMAP_MAX: i32 = -4;

unsafe extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
}

/// Faults in `bytes` of heap and keeps them for later allocations, so that
/// a real-time path allocating up to that much does not fault: the classic
/// real-time recipe. It allocates `bytes` through the global allocator,
/// touches every page and frees them; for glibc's malloc it first sets
/// `M_MMAP_MAX=0` and `M_TRIM_THRESHOLD=-1` so the memory stays in the
/// heap instead of going back to the kernel (this changes glibc's malloc
/// for the whole process: large blocks then come from the heap too). Call
/// it after [`lock_all`] with `FUTURE`, so the reserve stays locked.
pub fn reserve_heap(bytes: usize) {
    // SAFETY: mallopt takes plain integers; under libmemkit.so it is
    // memkit's and accepts them too.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, -1);
    }
    if bytes == 0 {
        return;
    }
    let page = 4096; // x86_64, memkit's only target
    let mut v: Vec<u8> = Vec::with_capacity(bytes);
    let p = v.as_mut_ptr();
    let mut i = 0;
    while i < bytes {
        // SAFETY: i < bytes <= capacity.
        unsafe { p.add(i).write_volatile(0) };
        i += page;
    }
    std::hint::black_box(&mut v);
}

/// Bytes of this process locked in RAM (`VmLck` of `/proc/self/status`).
pub fn locked_bytes() -> io::Result<u64> {
    let mut buf = [0u8; 4096];
    let n = memkit_sys::protect::read_proc_status(&mut buf)
        .map_err(|memkit_sys::Errno(e)| io::Error::from_raw_os_error(e))?;
    memkit_sys::protect::status_field(&buf[..n], b"VmLck")
        .map(|kib| kib.saturating_mul(1024))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no VmLck value in /proc/self/status",
            )
        })
}

/// `RLIMIT_MEMLOCK` now.
pub fn limit() -> MemlockLimit {
    let s = mlockall::status();
    MemlockLimit::from_raw(s.limit_soft, s.limit_hard)
}

/// Sets `RLIMIT_MEMLOCK` (`None`: unlimited). An unprivileged process may
/// lower both, and raise `soft` up to `hard`.
pub fn set_limit(limit: MemlockLimit) -> io::Result<()> {
    let raw = |v: Option<u64>| v.unwrap_or(u64::MAX);
    mlockall::set_memlock_limit(raw(limit.soft), raw(limit.hard))
        .map_err(io::Error::from_raw_os_error)
}

/// Locked and mapped bytes, the limit and the capability in one read.
pub fn status() -> LockStatus {
    LockStatus::from(mlockall::status())
}
