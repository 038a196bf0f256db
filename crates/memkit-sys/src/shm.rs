//! Shared-memory objects for memkit's shared heaps (`memkit-shm`):
//! POSIX shared-memory objects in `/dev/shm` (what glibc's `shm_open`
//! opens: a file of that tmpfs), anonymous memfds, shared mappings,
//! process liveness from `/proc/PID/stat`, and the process-shared robust
//! mutexes of glibc.
//!
//! Allocation-free like the rest of the crate: paths are built in stack
//! buffers, every call is one system call through rustix, except the
//! mutex functions (glibc's: the kernel's robust-futex list is glibc's per
//! thread, so a robust mutex can only be glibc's `pthread_mutex_t`).

use core::ffi::CStr;
use core::ptr::null_mut;

use rustix::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use rustix::fs::{self, AtFlags, FallocateFlags, Mode, OFlags, CWD};
use rustix::mm::{self, MapFlags, ProtFlags};

use crate::Errno;

pub const EINVAL: i32 = 22;
pub const ENAMETOOLONG: i32 = 36;

/// Where `shm_open` puts its objects.
pub const SHM_DIR: &[u8] = b"/dev/shm";

/// The longest shared-memory object name, leading slash included
/// (NAME_MAX of the file in /dev/shm, plus the slash).
pub const NAME_MAX: usize = 256;

/// A path in a stack buffer, NUL-terminated.
pub struct PathBuf {
    buf: [u8; 320],
    len: usize,
}

impl PathBuf {
    /// `/dev/shm` + `name` (`name` starts with `/`: see [`check_name`]).
    pub fn shm(name: &[u8]) -> Result<PathBuf, Errno> {
        check_name(name)?;
        let mut p = PathBuf {
            buf: [0; 320],
            len: 0,
        };
        p.push(SHM_DIR);
        p.push(name);
        Ok(p)
    }

    fn push(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn push_u64(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..]);
    }

    /// The path as a C string.
    pub fn as_cstr(&self) -> &CStr {
        // The buffer is zero past `len`, and no part of it holds a NUL
        // (check_name refuses them).
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// A shared-memory object name as POSIX and glibc want it: a leading
/// slash, then 1..=255 bytes with no other slash and no NUL. EINVAL
/// otherwise (ENAMETOOLONG past the length).
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() < 2 || name[0] != b'/' || name[1..].iter().any(|&c| c == b'/' || c == 0) {
        return Err(Errno(EINVAL));
    }
    if name == b"/." || name == b"/.." {
        return Err(Errno(EINVAL));
    }
    if name.len() > NAME_MAX {
        return Err(Errno(ENAMETOOLONG));
    }
    Ok(())
}

/// An unnamed file in /dev/shm (`O_TMPFILE`), read-write, close-on-exec,
/// with exactly `mode` (the umask is undone with `fchmod`). It gets its
/// name with [`link_as`]: a heap appears in /dev/shm only when complete.
pub fn create_unnamed(mode: u32) -> Result<i32, Errno> {
    let mode = Mode::from_raw_mode(mode & 0o7777);
    let fd = fs::open(
        c"/dev/shm",
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        mode,
    )?;
    fs::fchmod(&fd, mode)?;
    Ok(fd.into_raw_fd())
}

/// `memfd_create(name, MFD_CLOEXEC)`: an anonymous shared-memory file.
pub fn memfd(name: &CStr) -> Result<i32, Errno> {
    let fd = fs::memfd_create(name, fs::MemfdFlags::CLOEXEC)?;
    Ok(fd.into_raw_fd())
}

/// Gives the unnamed file `fd` the name `/dev/shm/NAME` (`linkat` through
/// `/proc/self/fd`, which needs no privilege); EEXIST when it is taken.
pub fn link_as(fd: i32, path: &PathBuf) -> Result<(), Errno> {
    let mut from = PathBuf {
        buf: [0; 320],
        len: 0,
    };
    from.push(b"/proc/self/fd/");
    from.push_u64(fd as u64);
    fs::linkat(
        CWD,
        from.as_cstr(),
        CWD,
        path.as_cstr(),
        AtFlags::SYMLINK_FOLLOW,
    )?;
    Ok(())
}

/// Opens `path` read-write or read-only, close-on-exec, never following a
/// symbolic link (like `shm_open`).
pub fn open(path: &PathBuf, writable: bool) -> Result<i32, Errno> {
    let access = if writable {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    let fd = fs::open(
        path.as_cstr(),
        access | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    Ok(fd.into_raw_fd())
}

/// `unlink(path)`.
pub fn unlink(path: &PathBuf) -> Result<(), Errno> {
    fs::unlinkat(CWD, path.as_cstr(), AtFlags::empty())?;
    Ok(())
}

/// `fallocate(fd, 0, 0, len)`: every page of the file allocated now, so
/// that a full /dev/shm is an ENOSPC here and never a SIGBUS later.
pub fn reserve(fd: i32, len: u64) -> Result<(), Errno> {
    // SAFETY: borrowed for this call only.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    loop {
        match fs::fallocate(b, FallocateFlags::empty(), 0, len) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(Errno::from),
        }
    }
}

/// What `fstat` says of a shared-memory file.
#[derive(Clone, Copy, Debug)]
pub struct FileInfo {
    pub size: u64,
    pub uid: u32,
    pub mode: u32,
    pub regular: bool,
}

/// `fstat(fd)`.
pub fn file_info(fd: i32) -> Result<FileInfo, Errno> {
    // SAFETY: borrowed for this call only.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    let st = fs::fstat(b)?;
    Ok(FileInfo {
        size: st.st_size as u64,
        uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        regular: fs::FileType::from_raw_mode(st.st_mode) == fs::FileType::RegularFile,
    })
}

/// `mmap(NULL, len, PROT_READ[|PROT_WRITE], MAP_SHARED, fd, 0)`.
pub fn map_shared(fd: i32, len: usize, writable: bool) -> Result<*mut u8, Errno> {
    let prot = if writable {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    };
    // SAFETY: borrowed for this call only; a fresh mapping at an address
    // the kernel picks aliases nothing of ours.
    let p = unsafe {
        let b = BorrowedFd::borrow_raw(fd);
        mm::mmap(null_mut(), len, prot, MapFlags::SHARED, b, 0)
    }?;
    Ok(p.cast())
}

/// `dup(fd)` with close-on-exec.
pub fn dup(fd: i32) -> Result<i32, Errno> {
    crate::dup_cloexec(fd)
}

/// `close(fd)`.
pub fn close(fd: i32) {
    // SAFETY: the caller gives up ownership of fd.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// `gettid()`.
pub fn tid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, clock
/// ticks since boot): with the pid it names one process even after the
/// pid is reused. None when no such process exists (or it is a zombie:
/// a dead process that its parent has not reaped holds nothing).
pub fn process_start(pid: u32) -> Option<u64> {
    let mut path = PathBuf {
        buf: [0; 320],
        len: 0,
    };
    path.push(b"/proc/");
    path.push_u64(pid as u64);
    path.push(b"/stat");
    let mut buf = [0u8; 1024];
    let n = crate::read_file(path.as_cstr(), &mut buf).ok()?;
    let text = &buf[..n];
    // The command name (field 2) is in parentheses and may hold spaces
    // and parentheses: the fields after it start after the last ')'.
    let close = text.iter().rposition(|&c| c == b')')?;
    let mut fields = text[close + 1..]
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty());
    // Field 3 is the state; field 22, the start time, is 19 further.
    let state = fields.next()?;
    if state == b"Z" || state == b"X" {
        return None;
    }
    let start = fields.nth(18)?;
    let mut v = 0u64;
    for &d in start {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(v)
}

/// Whether the process `pid` that started at `start` is still alive.
pub fn process_alive(pid: u32, start: u64) -> bool {
    pid != 0 && process_start(pid) == Some(start)
}

/// The calling process's command name (`/proc/self/comm`), NUL-padded.
pub fn comm() -> [u8; 16] {
    let mut buf = [0u8; 16];
    let n = crate::read_file(c"/proc/self/comm", &mut buf).unwrap_or(0);
    let n = buf[..n].iter().position(|&c| c == b'\n').unwrap_or(n);
    buf[n..].fill(0);
    buf
}

/// Seconds since the epoch (`CLOCK_REALTIME`).
pub fn realtime_secs() -> u64 {
    crate::clock_ns(0) / 1_000_000_000
}

/// glibc's `pthread_mutex_t` on x86_64 (40 bytes, 8-aligned), placed in
/// shared memory.
#[repr(C, align(8))]
pub struct PthreadMutex(pub [u8; 40]);

#[repr(C, align(4))]
struct PthreadMutexattr([u8; 4]);

unsafe extern "C" {
    fn pthread_mutexattr_init(a: *mut PthreadMutexattr) -> i32;
    fn pthread_mutexattr_setpshared(a: *mut PthreadMutexattr, pshared: i32) -> i32;
    fn pthread_mutexattr_setrobust(a: *mut PthreadMutexattr, robust: i32) -> i32;
    fn pthread_mutexattr_settype(a: *mut PthreadMutexattr, kind: i32) -> i32;
    fn pthread_mutexattr_destroy(a: *mut PthreadMutexattr) -> i32;
    fn pthread_mutex_init(m: *mut PthreadMutex, a: *const PthreadMutexattr) -> i32;
    fn pthread_mutex_lock(m: *mut PthreadMutex) -> i32;
    fn pthread_mutex_unlock(m: *mut PthreadMutex) -> i32;
    fn pthread_mutex_consistent(m: *mut PthreadMutex) -> i32;
}

/// The holder of a robust mutex died holding it (`pthread_mutex_lock`).
pub const EOWNERDEAD: i32 = 130;
/// A robust mutex whose dead holder's successor unlocked it without
/// marking it consistent: it can never be locked again.
pub const ENOTRECOVERABLE: i32 = 131;

/// Initialises `m` as a process-shared robust mutex
/// (`PTHREAD_PROCESS_SHARED`, `PTHREAD_MUTEX_ROBUST`). glibc allocates
/// nothing for either call.
///
/// # Safety
/// `m` must be writable memory no thread uses as a mutex yet.
pub unsafe fn robust_init(m: *mut PthreadMutex) -> Result<(), Errno> {
    let mut a = PthreadMutexattr([0; 4]);
    // SAFETY: `a` is a local attribute object; `m` per the contract.
    unsafe {
        pthread_mutexattr_init(&mut a);
        pthread_mutexattr_setpshared(&mut a, 1);
        pthread_mutexattr_setrobust(&mut a, 1);
        // PTHREAD_MUTEX_ERRORCHECK: a thread locking it twice gets EDEADLK
        // instead of hanging, and only the holder can unlock it.
        pthread_mutexattr_settype(&mut a, 2);
        let r = pthread_mutex_init(m, &a);
        pthread_mutexattr_destroy(&mut a);
        if r != 0 {
            return Err(Errno(r));
        }
    }
    Ok(())
}

/// `pthread_mutex_lock(m)`: `Ok(false)`, `Ok(true)` when the previous
/// holder died holding it (the caller repairs what it protects, then calls
/// [`robust_consistent`]), or the error.
///
/// # Safety
/// `m` must be a mutex initialised by [`robust_init`] in writable memory.
pub unsafe fn robust_lock(m: *mut PthreadMutex) -> Result<bool, Errno> {
    // SAFETY: per the contract.
    match unsafe { pthread_mutex_lock(m) } {
        0 => Ok(false),
        EOWNERDEAD => Ok(true),
        e => Err(Errno(e)),
    }
}

/// `pthread_mutex_consistent(m)`.
///
/// # Safety
/// The caller holds `m`, acquired with the owner-died result.
pub unsafe fn robust_consistent(m: *mut PthreadMutex) {
    // SAFETY: per the contract.
    unsafe { pthread_mutex_consistent(m) };
}

/// `pthread_mutex_unlock(m)`.
///
/// # Safety
/// The calling thread holds `m`.
pub unsafe fn robust_unlock(m: *mut PthreadMutex) -> Result<(), Errno> {
    // SAFETY: per the contract.
    match unsafe { pthread_mutex_unlock(m) } {
        0 => Ok(()),
        e => Err(Errno(e)),
    }
}

/// `futex(FUTEX_WAIT_PRIVATE)` on `word` while it equals `val`.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, val: u32) {
    use rustix::thread::futex;
    let _ = futex::wait(word, futex::Flags::PRIVATE, val, None);
}

/// `futex(FUTEX_WAKE_PRIVATE)`: wakes one waiter of `word`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::PRIVATE, 1);
}

/// Unmaps a mapping made by [`map_shared`].
///
/// # Safety
/// `p..p+len` is the caller's mapping, unused from now on.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: per the contract.
    unsafe { crate::unmap(p, len) };
}

/// `kill(getpid(), SIGKILL)`: the calling process ends at once, as a
/// `kill -9` from outside would end it (crash-point tests).
pub fn kill_self() -> ! {
    let me = rustix::process::getpid();
    let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
    loop {
        core::hint::spin_loop();
    }
}
