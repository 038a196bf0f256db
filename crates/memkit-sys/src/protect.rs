//! Memory protection and locking: the system calls behind memkit's secure
//! memory and `mlockall` support.
//!
//! Thin, allocation-free wrappers, through rustix's `linux_raw` backend
//! except [`memfd_secret`] (a raw `syscall`, rustix has no wrapper). Every
//! error is the raw errno value in [`Errno`]; nothing here prints or panics.
//!
//! # Safety
//! The functions that take an address range change the memory behind it
//! (its protection, residency or fork behaviour): callers must own the range
//! (see each function's `# Safety`).

use core::ffi::c_void;
use core::ptr::null_mut;

use rustix::fd::BorrowedFd;
use rustix::mm::{self, Advice, MapFlags, MlockAllFlags, MprotectFlags, ProtFlags};
use rustix::process::{Resource, Rlimit};

use crate::Errno;

/// `ENOMEM`.
pub const ENOMEM: i32 = 12;
/// `EPERM`.
pub const EPERM: i32 = 1;
/// `EAGAIN`.
pub const EAGAIN: i32 = 11;
/// `EINVAL`.
pub const EINVAL: i32 = 22;
/// `ENOSYS`.
pub const ENOSYS: i32 = 38;

/// `mlockall` flag `MCL_CURRENT`: lock every page mapped now.
pub const MCL_CURRENT: u32 = 1;
/// `mlockall` flag `MCL_FUTURE`: lock every mapping made from now on.
pub const MCL_FUTURE: u32 = 2;
/// `mlockall` flag `MCL_ONFAULT`: lock pages as they are faulted in instead
/// of populating whole mappings at once.
pub const MCL_ONFAULT: u32 = 4;

/// Page protection for [`protect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prot {
    /// `PROT_NONE`: every access faults.
    None,
    /// `PROT_READ`: writes fault.
    Read,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// `mmap(NULL, size, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`: reserves
/// address space that faults on every access (guard pages); parts of it are
/// opened later with [`protect`] (which charges them to the commit limit, as
/// they become writable) or replaced with [`map_shared_fixed`].
pub fn map_reserve(size: usize) -> Result<*mut u8, Errno> {
    // SAFETY: a fresh anonymous mapping at an address the kernel picks aliases
    // nothing.
    let p = unsafe { mm::mmap_anonymous(null_mut(), size, ProtFlags::empty(), MapFlags::PRIVATE) }?;
    Ok(p.cast())
}

/// `mmap(p, size, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)`:
/// turns `p..p+size` back into reserved address space (fresh, inaccessible
/// pages), replacing what was mapped there.
///
/// # Safety
/// `p..p+size` must be page-aligned address space the caller owns and allows
/// to be replaced.
pub unsafe fn reserve_fixed(p: *mut u8, size: usize) -> Result<(), Errno> {
    // SAFETY: the caller owns the range and allows it to be replaced.
    unsafe {
        mm::mmap_anonymous(
            p.cast::<c_void>(),
            size,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::FIXED,
        )
    }?;
    Ok(())
}

/// `mmap(p, size, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, fd, 0)`: maps a
/// file (a `memfd_secret` descriptor) over `p..p+size`, replacing what was
/// there.
///
/// # Safety
/// `p..p+size` must be page-aligned address space the caller owns and allows
/// to be replaced; `fd` must be an open descriptor at least `size` long.
pub unsafe fn map_shared_fixed(p: *mut u8, size: usize, fd: i32) -> Result<*mut u8, Errno> {
    // SAFETY: the fd is borrowed for this call only; the caller owns it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // SAFETY: the caller owns the range and allows it to be replaced.
    let q = unsafe {
        mm::mmap(
            p.cast::<c_void>(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::FIXED,
            fd,
            0,
        )
    }?;
    Ok(q.cast())
}

/// `mprotect(p, size, prot)`.
///
/// # Safety
/// `p..p+size` must be page-aligned mappings the caller owns; references into
/// the range must not be used in ways the new protection forbids.
pub unsafe fn protect(p: *mut u8, size: usize, prot: Prot) -> Result<(), Errno> {
    let flags = match prot {
        Prot::None => MprotectFlags::empty(),
        Prot::Read => MprotectFlags::READ,
        Prot::ReadWrite => MprotectFlags::READ | MprotectFlags::WRITE,
    };
    // SAFETY: the caller owns the range.
    unsafe { mm::mprotect(p.cast::<c_void>(), size, flags) }?;
    Ok(())
}

/// `mlock(p, size)`: faults the pages in and keeps them in RAM (never
/// swapped). Fails with ENOMEM past `RLIMIT_MEMLOCK` (unless the process has
/// `CAP_IPC_LOCK`), EPERM when that limit is 0, EAGAIN when some pages could
/// not be locked.
///
/// # Safety
/// `p..p+size` must be mappings the caller owns.
pub unsafe fn lock(p: *mut u8, size: usize) -> Result<(), Errno> {
    // SAFETY: the caller owns the range; locking changes no contents.
    unsafe { mm::mlock(p.cast::<c_void>(), size) }?;
    Ok(())
}

/// `munlock(p, size)`.
///
/// # Safety
/// `p..p+size` must be mappings the caller owns.
pub unsafe fn unlock(p: *mut u8, size: usize) -> Result<(), Errno> {
    // SAFETY: the caller owns the range.
    unsafe { mm::munlock(p.cast::<c_void>(), size) }?;
    Ok(())
}

/// `madvise(p, size, MADV_DONTDUMP)`: the pages are left out of core dumps.
///
/// # Safety
/// `p..p+size` must be page-aligned mappings the caller owns.
pub unsafe fn dont_dump(p: *mut u8, size: usize) -> Result<(), Errno> {
    // SAFETY: advice only; the caller owns the range.
    unsafe { mm::madvise(p.cast::<c_void>(), size, Advice::LinuxDontDump) }?;
    Ok(())
}

/// `madvise(p, size, MADV_WIPEONFORK)` (Linux 4.14+): a child made by `fork`
/// sees the pages as zero-filled. Private anonymous mappings only (EINVAL on
/// shared ones).
///
/// # Safety
/// `p..p+size` must be page-aligned mappings the caller owns.
pub unsafe fn wipe_on_fork(p: *mut u8, size: usize) -> Result<(), Errno> {
    // SAFETY: advice only; the caller owns the range.
    unsafe { mm::madvise(p.cast::<c_void>(), size, Advice::LinuxWipeOnFork) }?;
    Ok(())
}

/// `madvise(p, size, MADV_DONTFORK)`: a child made by `fork` does not get the
/// pages at all (accesses fault). Used where [`wipe_on_fork`] is refused
/// (shared mappings such as `memfd_secret`).
///
/// # Safety
/// `p..p+size` must be page-aligned mappings the caller owns.
pub unsafe fn dont_fork(p: *mut u8, size: usize) -> Result<(), Errno> {
    // SAFETY: advice only; the caller owns the range.
    unsafe { mm::madvise(p.cast::<c_void>(), size, Advice::LinuxDontFork) }?;
    Ok(())
}

/// `mlockall(flags)` with `MCL_*` bits ([`MCL_CURRENT`], [`MCL_FUTURE`],
/// [`MCL_ONFAULT`]). With `MCL_CURRENT`, fails with ENOMEM when the process's
/// whole mapped size exceeds `RLIMIT_MEMLOCK` (without `CAP_IPC_LOCK`); a
/// failed call changes nothing.
pub fn lock_all(flags: u32) -> Result<(), Errno> {
    mm::mlockall(MlockAllFlags::from_bits_retain(flags))?;
    Ok(())
}

/// `munlockall()`: unlocks every page and cancels `MCL_FUTURE`.
pub fn unlock_all() -> Result<(), Errno> {
    mm::munlockall()?;
    Ok(())
}

/// `RLIMIT_MEMLOCK` in bytes as `(soft, hard)`; `u64::MAX` is `RLIM_INFINITY`.
pub fn memlock_limit() -> (u64, u64) {
    let l = rustix::process::getrlimit(Resource::Memlock);
    (l.current.unwrap_or(u64::MAX), l.maximum.unwrap_or(u64::MAX))
}

/// `setrlimit(RLIMIT_MEMLOCK, {soft, hard})`; `u64::MAX` is `RLIM_INFINITY`.
/// Raising the hard limit needs `CAP_SYS_RESOURCE`.
pub fn set_memlock_limit(soft: u64, hard: u64) -> Result<(), Errno> {
    let f = |v: u64| if v == u64::MAX { None } else { Some(v) };
    rustix::process::setrlimit(
        Resource::Memlock,
        Rlimit {
            current: f(soft),
            maximum: f(hard),
        },
    )?;
    Ok(())
}

/// `memfd_secret(FD_CLOEXEC)` (Linux 5.14+, syscall 447): a descriptor whose
/// pages, once mapped, are removed from the kernel's direct map, so that
/// neither the kernel nor other processes (even root through `/proc/PID/mem`
/// or `ptrace`) can read them. Mappings of it are locked (they count against
/// `RLIMIT_MEMLOCK`: `mmap` fails with EAGAIN past it) and left out of core
/// dumps. ENOSYS where the kernel lacks `CONFIG_SECRETMEM` or it is disabled.
pub fn memfd_secret() -> Result<i32, Errno> {
    const SYS_MEMFD_SECRET: isize = 447;
    const FD_CLOEXEC: usize = 0o2000000; // O_CLOEXEC, which memfd_secret accepts
    let r: isize;
    // SAFETY: memfd_secret takes only a flags word and touches no memory of ours.
    unsafe {
        core::arch::asm!("syscall",
            inlateout("rax") SYS_MEMFD_SECRET => r,
            in("rdi") FD_CLOEXEC,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    if (-4095..0).contains(&r) {
        Err(Errno(-r as i32))
    } else {
        Ok(r as i32)
    }
}

/// `ftruncate(fd, size)`.
pub fn truncate(fd: i32, size: u64) -> Result<(), Errno> {
    // SAFETY: borrowed for this call only; the caller names an open fd.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::fs::ftruncate(b, size)?;
    Ok(())
}

/// `getrandom(buf, 0)` until `buf` is full: bytes from the kernel's CSPRNG.
pub fn random(buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads `/proc/self/status` into `buf`; returns the length read (the file
/// is about 1.5 KiB; 4 KiB is plenty).
pub fn read_proc_status(buf: &mut [u8]) -> Result<usize, Errno> {
    crate::read_file(c"/proc/self/status", buf)
}

/// The value of a `Key:   1234 kB` line of `/proc/self/status` in bytes
/// (`key` without the colon, e.g. `b"VmLck"`), read into a 4 KiB stack buffer.
pub fn proc_status_bytes(key: &[u8]) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let n = read_proc_status(&mut buf).ok()?;
    status_field(&buf[..n], key).map(|kib| kib.saturating_mul(1024))
}

/// The first number on the line `key:` of a `/proc/PID/status` text.
pub fn status_field(text: &[u8], key: &[u8]) -> Option<u64> {
    for line in text.split(|&c| c == b'\n') {
        if line.len() > key.len() && line.starts_with(key) && line[key.len()] == b':' {
            let mut v: u64 = 0;
            let mut seen = false;
            for &c in &line[key.len() + 1..] {
                if c.is_ascii_digit() {
                    v = v.saturating_mul(10).saturating_add((c - b'0') as u64);
                    seen = true;
                } else if seen {
                    break;
                }
            }
            return seen.then_some(v);
        }
    }
    None
}

/// Whether the calling thread's effective capability set holds capability
/// number `cap` (e.g. 14, `CAP_IPC_LOCK`), from `/proc/self/status`.
pub fn has_capability(cap: u32) -> bool {
    let mut buf = [0u8; 4096];
    let Ok(n) = read_proc_status(&mut buf) else {
        return false;
    };
    for line in buf[..n].split(|&c| c == b'\n') {
        if let Some(hex) = line.strip_prefix(b"CapEff:") {
            let mut v: u64 = 0;
            for &c in hex {
                let d = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => continue,
                };
                v = (v << 4) | d as u64;
            }
            return cap < 64 && v & (1u64 << cap) != 0;
        }
    }
    false
}

/// `CAP_IPC_LOCK`: lifts `RLIMIT_MEMLOCK` for `mlock`/`mlockall`.
pub const CAP_IPC_LOCK: u32 = 14;

/// `CAP_SYS_PTRACE`: lifts the ptrace access checks, among them the one on
/// reading another user's `/proc/PID/smaps`.
pub const CAP_SYS_PTRACE: u32 = 19;
