//! memkit's OS layer: the only crate in memkit that makes system calls.
//!
//! Every function is a thin, allocation-free wrapper over one system call made
//! through rustix's `linux_raw` backend, so that no call re-enters libc (which
//! could call `malloc`) or changes `errno` (which `free` must preserve). The
//! few libc calls, none on an allocator path: the clock ([`now_ns`], vDSO),
//! `pthread_atfork`, `sigaction` ([`signal::sigaction`]: glibc supplies the
//! signal restorer) and a thread's stack attributes ([`stack`], which
//! allocate on a thread's first call).
//! Failures are reported as `Option`/`Result` with the raw errno value; no
//! function here panics.
//!
//! # Safety
//! The memory functions take raw addresses: callers must pass mappings they own
//! (see each function's `# Safety`).
#![no_std]

use core::ffi::c_void;
use core::ptr::null_mut;

use rustix::mm::{self, Advice, MapFlags, MremapFlags, ProtFlags};

pub mod env;

pub mod file_map;

pub mod protect;

pub mod report;

pub mod report_file;

pub mod shm;

pub mod signal;
pub mod stack;
pub mod text;
pub mod tls;

pub mod version;

/// The page size of x86_64 Linux. memkit targets x86_64 only (see README).
pub const OS_PAGE: usize = 4096;

/// An errno value from a failed system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

/// `mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`.
///
/// The mapping is committed (no `MAP_NORESERVE`): under the kernel's overcommit
/// heuristics, a request that could never be backed fails here with ENOMEM
/// instead of handing out memory that faults later.
pub fn map(size: usize) -> Result<*mut u8, Errno> {
    // SAFETY: a fresh anonymous mapping at an address the kernel picks aliases
    // nothing.
    let p = unsafe {
        mm::mmap_anonymous(
            null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }?;
    Ok(p.cast())
}

/// How many mappings [`map_meta`] records; later ones are mapped but not
/// recorded, and [`meta_complete`] turns false.
const META_SLOTS: usize = 256;
static META_START: [core::sync::atomic::AtomicUsize; META_SLOTS] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; META_SLOTS];
static META_LEN: [core::sync::atomic::AtomicUsize; META_SLOTS] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; META_SLOTS];
static META_USED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// [`map`], for memkit's own bookkeeping that lives as long as the process
/// (the ownership maps' leaves, heap descriptors, the stack depot): the
/// mapping is recorded, so that a scan of the process's anonymous memory
/// for pointers (check mode's leak check) can leave memkit's own out. Never
/// unmap such a mapping. Allocation-free and lock-free.
pub fn map_meta(size: usize) -> Result<*mut u8, Errno> {
    use core::sync::atomic::Ordering::*;
    let p = map(size)?;
    let i = META_USED.fetch_add(1, AcqRel);
    if i < META_SLOTS {
        META_LEN[i].store(size, Relaxed);
        META_START[i].store(p as usize, Release);
    }
    Ok(p)
}

/// Unmaps a [`map_meta`] mapping that was never used (it lost a race to
/// publish), and forgets it.
///
/// # Safety
/// As [`unmap`]: `p..p+size` is a `map_meta` mapping nothing uses.
pub unsafe fn unmap_meta(p: *mut u8, size: usize) {
    use core::sync::atomic::Ordering::*;
    let n = META_USED.load(Acquire).min(META_SLOTS);
    if let Some(slot) = META_START[..n]
        .iter()
        .find(|s| s.load(Acquire) == p as usize)
    {
        slot.store(0, Release);
    }
    // SAFETY: per the contract.
    unsafe { unmap(p, size) };
}

/// Whether every [`map_meta`] mapping was recorded (at most 256 are).
pub fn meta_complete() -> bool {
    META_USED.load(core::sync::atomic::Ordering::Acquire) <= META_SLOTS
}

/// The end of the [`map_meta`] mapping holding `addr`, if any (a slot being
/// filled in meanwhile may be missed: callers scan at a quiet moment).
pub fn meta_end(addr: usize) -> Option<usize> {
    use core::sync::atomic::Ordering::*;
    let n = META_USED.load(Acquire).min(META_SLOTS);
    (0..n).find_map(|i| {
        let start = META_START[i].load(Acquire);
        let end = start + META_LEN[i].load(Relaxed);
        (start != 0 && start <= addr && addr < end).then_some(end)
    })
}

/// Maps `size` bytes aligned to `align` (a power of two, a multiple of
/// [`OS_PAGE`]) by over-mapping and unmapping the excess on both sides.
///
/// When the over-mapping is refused (an address-space limit leaves room for
/// `size` but not for `size + align`), it tries an exact mapping that
/// happens to be aligned, then the aligned addresses next to one.
pub fn map_aligned(size: usize, align: usize) -> Result<*mut u8, Errno> {
    debug_assert!(align.is_power_of_two() && align >= OS_PAGE && size.is_multiple_of(OS_PAGE));
    let over = size.checked_add(align - OS_PAGE).ok_or(Errno(12))?;
    let p = match map(over) {
        Ok(p) => p as usize,
        Err(e) => return map_aligned_tight(size, align).ok_or(e),
    };
    let start = (p + align - 1) & !(align - 1);
    let end = start + size;
    // SAFETY: both trimmed ranges lie inside the mapping we just made.
    unsafe {
        if start > p {
            unmap((p) as *mut u8, start - p);
        }
        if p + over > end {
            unmap(end as *mut u8, p + over - end);
        }
    }
    Ok(start as *mut u8)
}

/// [`map_aligned`] without room for the over-mapping: an exact mapping,
/// kept if aligned; else the aligned addresses just below and above it,
/// mapped only where nothing is (`MAP_FIXED_NOREPLACE`).
fn map_aligned_tight(size: usize, align: usize) -> Option<*mut u8> {
    let p = map(size).ok()? as usize;
    if p.is_multiple_of(align) {
        return Some(p as *mut u8);
    }
    // SAFETY: the mapping just made, not handed out.
    unsafe { unmap(p as *mut u8, size) };
    let below = p & !(align - 1);
    for hint in [below, below.checked_add(align)?] {
        // SAFETY: FIXED_NOREPLACE never replaces an existing mapping; the
        // kernel refuses instead.
        let got = unsafe {
            mm::mmap_anonymous(
                hint as *mut core::ffi::c_void,
                size,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::FIXED_NOREPLACE,
            )
        };
        if let Ok(q) = got {
            if q as usize == hint {
                return Some(q.cast());
            }
            // An old kernel that took the address as a mere hint.
            // SAFETY: the mapping just made.
            unsafe { unmap(q.cast(), size) };
        }
    }
    None
}

/// `munmap(p, size)`; errors are ignored (they mean the range was not mapped).
///
/// # Safety
/// `p..p+size` must be a range of mappings the caller owns and no longer uses.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: the caller owns the range.
    let _ = unsafe { mm::munmap(p.cast::<c_void>(), size) };
}

/// `madvise(p, size, MADV_DONTNEED)`: the pages are released now (RSS drops) and
/// read back as zeros.
///
/// # Safety
/// `p..p+size` must be page-aligned memory the caller owns and holds no data in.
pub unsafe fn purge(p: *mut u8, size: usize) -> bool {
    // SAFETY: the caller owns the range and does not need its contents.
    unsafe { mm::madvise(p.cast::<c_void>(), size, Advice::LinuxDontNeed) }.is_ok()
}

/// `madvise(p, size, MADV_REMOVE)`: frees the pages of a shared mapping of
/// a file in the file itself (tmpfs, memfd, and file systems that punch
/// holes); they read back as zeros, in every process that maps them. False
/// when the file system cannot.
///
/// # Safety
/// `p..p+size` must be page-aligned memory of a shared file mapping the
/// caller owns and holds no data in (for any process).
pub unsafe fn remove(p: *mut u8, size: usize) -> bool {
    // SAFETY: the caller owns the range and does not need its contents.
    unsafe { mm::madvise(p.cast::<c_void>(), size, Advice::LinuxRemove) }.is_ok()
}

/// `fstat(fd).st_size`: the length of an open file.
pub fn file_size(fd: i32) -> Result<u64, Errno> {
    // SAFETY: borrowed for this call only; the caller names an open fd.
    let b = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    Ok(rustix::fs::fstat(b)?.st_size as u64)
}

unsafe extern "C" {
    fn mincore(addr: *mut core::ffi::c_void, len: usize, vec: *mut u8) -> i32;
}

/// How many of the `pages` 4 KiB pages from `p` are resident (`mincore`;
/// rustix has no wrapper, glibc's is the bare system call). At most 256
/// pages; None if the call fails.
///
/// # Safety
/// `p` is page-aligned and `p..p + pages * 4096` lies in the caller's
/// mappings.
pub unsafe fn resident_pages(p: *mut u8, pages: usize) -> Option<usize> {
    let mut vec = [0u8; 256];
    let n = pages.min(vec.len());
    // SAFETY: per the contract; `vec` holds one byte per page asked for.
    if unsafe { mincore(p.cast(), n * OS_PAGE, vec.as_mut_ptr()) } != 0 {
        return None;
    }
    Some(vec[..n].iter().filter(|&&b| b & 1 != 0).count())
}

/// Which of the 4 KiB pages from `p` are resident (`mincore`), one byte per
/// page in `vec` (bit 0 set: resident); as many pages as `vec` has bytes.
/// False if the call fails (part of the range is not mapped).
///
/// # Safety
/// `p` is page-aligned.
pub unsafe fn resident_map(p: *mut u8, vec: &mut [u8]) -> bool {
    // SAFETY: `vec` holds one byte per page asked for; the kernel checks
    // the range and fails with ENOMEM where nothing is mapped.
    unsafe { mincore(p.cast(), vec.len() * OS_PAGE, vec.as_mut_ptr()) == 0 }
}

/// `madvise(p, size, MADV_HUGEPAGE or MADV_NOHUGEPAGE)`; best effort.
///
/// # Safety
/// `p..p+size` must be page-aligned memory the caller owns.
pub unsafe fn advise_huge(p: *mut u8, size: usize, huge: bool) -> bool {
    let advice = if huge {
        Advice::LinuxHugepage
    } else {
        Advice::LinuxNoHugepage
    };
    // SAFETY: advice only; the caller owns the range.
    unsafe { mm::madvise(p.cast::<c_void>(), size, advice) }.is_ok()
}

/// `mremap(p, old, new, flags)`: grows or shrinks a mapping, in place unless
/// `may_move`.
///
/// # Safety
/// `p..p+old` must be a single mapping the caller owns; on success the caller
/// must use only the returned range.
pub unsafe fn remap(p: *mut u8, old: usize, new: usize, may_move: bool) -> Result<*mut u8, Errno> {
    let flags = if may_move {
        MremapFlags::MAYMOVE
    } else {
        MremapFlags::empty()
    };
    // SAFETY: the caller owns the mapping.
    let q = unsafe { mm::mremap(p.cast::<c_void>(), old, new, flags) }?;
    Ok(q.cast())
}

/// `mremap(p, old, new, MREMAP_MAYMOVE|MREMAP_FIXED, to)`: moves the pages of
/// a mapping onto `to` (replacing whatever was mapped there) without copying.
///
/// # Safety
/// `p..p+old` must be a mapping the caller owns, and `to..to+new` a range the
/// caller owns and allows to be replaced.
pub unsafe fn remap_to(p: *mut u8, old: usize, new: usize, to: *mut u8) -> Result<*mut u8, Errno> {
    // SAFETY: the caller owns both ranges.
    let q = unsafe {
        mm::mremap_fixed(
            p.cast::<c_void>(),
            old,
            new,
            MremapFlags::MAYMOVE,
            to.cast::<c_void>(),
        )
    }?;
    Ok(q.cast())
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// Monotonic clock in nanoseconds.
///
/// The one libc call of this crate: glibc's `clock_gettime` reads the vDSO
/// (~20 ns, no system call) and never allocates. rustix's own vDSO lookup
/// would need the auxiliary vector, which with libc's help goes through
/// `dlsym`, and `dlsym` may call `malloc` in the middle of an allocator path.
pub fn now_ns() -> u64 {
    const CLOCK_MONOTONIC: i32 = 1;
    clock_ns(CLOCK_MONOTONIC)
}

/// `clock_gettime(clock)` in nanoseconds (see [`now_ns`]).
fn clock_ns(clock: i32) -> u64 {
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: t is a valid out pointer; both clocks memkit reads (CLOCK_REALTIME,
    // CLOCK_MONOTONIC) always exist.
    unsafe { clock_gettime(clock, &mut t) };
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// `sched_yield()`.
pub fn yield_now() {
    rustix::thread::sched_yield();
}

/// Which `membarrier(2)` command [`barrier_everywhere`] issues (0: none
/// available yet).
static MEMBARRIER: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
const MB_PRIVATE: u8 = 1;
const MB_GLOBAL: u8 = 2;

/// Makes [`barrier_everywhere`] usable in this process: `membarrier(
/// MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)` (fast: an IPI to the CPUs
/// running this process's threads), else the slow `MEMBARRIER_CMD_GLOBAL`
/// where that is all the kernel has. False when neither is available (no
/// membarrier, or a seccomp filter refuses it). Registration is per
/// process image: a fork child calls this again. Allocation-free.
pub fn barrier_everywhere_setup() -> bool {
    use rustix::thread::{membarrier, membarrier_query, MembarrierCommand as C};
    let q = membarrier_query();
    let how = if q.contains_command(C::PrivateExpedited)
        && membarrier(C::RegisterPrivateExpedited).is_ok()
    {
        MB_PRIVATE
    } else if q.contains_command(C::Global) {
        MB_GLOBAL
    } else {
        0
    };
    MEMBARRIER.store(how, core::sync::atomic::Ordering::Relaxed);
    how != 0
}

/// `membarrier(2)`: when it returns, every thread of the process that was
/// running has executed a full memory barrier (the others will at their
/// next context switch, which is one). The slow side of an asymmetric
/// fence: a thread that stores A, then (compiler fence only) loads B, and
/// a thread that stores B, calls this, then loads A, cannot both miss the
/// other's store. Only after [`barrier_everywhere_setup`] returned true
/// (else it returns false and orders nothing).
pub fn barrier_everywhere() -> bool {
    use rustix::thread::{membarrier, MembarrierCommand as C};
    match MEMBARRIER.load(core::sync::atomic::Ordering::Relaxed) {
        MB_PRIVATE => membarrier(C::PrivateExpedited).is_ok(),
        MB_GLOBAL => membarrier(C::Global).is_ok(),
        _ => false,
    }
}

/// `getpid()`.
pub fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// `getppid()`.
pub fn ppid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// `geteuid()`.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `readlink("/proc/self/exe")` into `buf`; returns the length written.
pub fn self_exe(buf: &mut [u8]) -> usize {
    // rustix's readlinkat into a caller buffer does not allocate.
    rustix::fs::readlinkat_raw(rustix::fs::CWD, c"/proc/self/exe", buf).unwrap_or(0)
}

/// `write(fd, buf)` until everything is written or an error occurs.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    // SAFETY: the fd is borrowed only for this call; the caller names an open fd.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(Errno(5)),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `dup(fd)` with close-on-exec; returns the raw fd.
pub fn dup_cloexec(fd: i32) -> Result<i32, Errno> {
    use rustix::fd::IntoRawFd;
    // SAFETY: borrowed for this call only.
    let b = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let d = rustix::io::fcntl_dupfd_cloexec(b, 3)?;
    Ok(d.into_raw_fd())
}

/// `close(fd)`.
pub fn close(fd: i32) {
    use rustix::fd::FromRawFd;
    // SAFETY: the caller gives up ownership of fd.
    drop(unsafe { rustix::fd::OwnedFd::from_raw_fd(fd) });
}

/// Names an anonymous mapping (`prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)`), so
/// that `/proc/PID/maps` shows `[anon:NAME]`. Best effort: kernels without
/// `CONFIG_ANON_VMA_NAME` answer EINVAL and the mapping stays unnamed.
///
/// # Safety
/// `p..p+size` must be a mapping the caller owns; `name` must be NUL-terminated
/// and live for the mapping's lifetime (the kernel copies it).
pub unsafe fn name_mapping(p: *mut u8, size: usize, name: &'static core::ffi::CStr) -> bool {
    const PR_SET_VMA: usize = 0x53564d41;
    const PR_SET_VMA_ANON_NAME: usize = 0;
    let r: isize;
    // SAFETY: prctl with these arguments only reads `name`.
    unsafe {
        core::arch::asm!("syscall",
            inlateout("rax") 157isize => r, // SYS_prctl
            in("rdi") PR_SET_VMA, in("rsi") PR_SET_VMA_ANON_NAME,
            in("rdx") p as usize, in("r10") size, in("r8") name.as_ptr() as usize,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r == 0
}

unsafe extern "C" {
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> i32;
}

/// `pthread_atfork(prepare, parent, child)` (libc: there is no system call
/// for it). glibc does not allocate for it.
///
/// # Safety
/// The handlers run around every `fork` of the process, in the forking
/// thread; they must be async-signal-safe in the child.
pub unsafe fn atfork(
    prepare: Option<unsafe extern "C" fn()>,
    parent: Option<unsafe extern "C" fn()>,
    child: Option<unsafe extern "C" fn()>,
) -> i32 {
    // SAFETY: per the contract.
    unsafe { pthread_atfork(prepare, parent, child) }
}

/// Reads the file at `path` into `buf` (as much as fits, retrying on
/// EINTR); returns the bytes read. Raw system calls, no allocation.
pub fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}
