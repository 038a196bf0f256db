//! libmemkit_profile.so: memkit's profiling allocator, for `memkit profile`
//! and for `LD_PRELOAD` by hand (`MEMKIT_PROFILE_DIR`,
//! `MEMKIT_PROFILE_OPTIONS`).
//!
//! A third front-end over memkit's allocator core: each block carries a
//! 16-byte header ([`block`]) naming its allocation site; every allocation
//! and free is recorded ([`record`]) against the stack that made it
//! (memkit-trace: DWARF unwinding with a rule cache, a lock-free depot),
//! aggregated per site in process ([`sites`]: allocated, in use, live at the
//! peak, temporary) with a timeline and a size histogram; at exit the
//! process writes one raw profile ([`write`], memkit-profdata) that `memkit
//! profile` turns into pprof, a summary and an HTML report. Output grows
//! with the number of distinct stacks, never with the number of
//! allocations.
//!
//! The library's own Rust code allocates from memkit's core directly (its
//! global allocator), never through its recorded exports.

mod block;
mod exports;
mod options;
mod record;
mod sample;
mod signals;
mod sites;
mod stack;
mod tls;
mod write;

use memkit_alloc::bias::Held;

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::*};

// The version note `memkit profile` reads before preloading this library.
memkit_sys::version_note!(static VERSION_NOTE);

/// The library's own allocations: memkit's core, unrecorded.
#[global_allocator]
static CORE: memkit_alloc::Core = memkit_alloc::Core;

unsafe extern "C" {
    fn syscall(number: i64, ...) -> i64;
    fn pread(fd: i32, buf: *mut u8, n: usize, offset: i64) -> isize;
    pub(crate) fn dlsym(
        handle: *mut core::ffi::c_void,
        name: *const core::ffi::c_char,
    ) -> *mut core::ffi::c_void;
}

/// glibc's `RTLD_NEXT`.
pub(crate) const RTLD_NEXT: *mut core::ffi::c_void = -1isize as *mut core::ffi::c_void;

/// One line on stderr.
fn warn(msg: &str) {
    let line = format!("memkit profile: {msg}\n");
    let _ = memkit_sys::write_all(2, line.as_bytes());
}

/// Monotonic time profiling started (ns) and the wall clock then.
static START_NS: AtomicU64 = AtomicU64::new(0);
static START_UNIX_NS: AtomicU64 = AtomicU64::new(0);

fn start_clocks() {
    START_NS.store(memkit_sys::now_ns(), Relaxed);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    START_UNIX_NS.store(unix, Relaxed);
}

/// Nanoseconds since profiling started.
fn since_start() -> u64 {
    let s = START_NS.load(Relaxed);
    if s == 0 {
        return 0;
    }
    memkit_sys::now_ns().saturating_sub(s)
}

/// `/proc/self/statm`, opened once per process (a fork child reopens it:
/// the inherited descriptor names the parent).
static STATM: AtomicI32 = AtomicI32::new(-1);

/// The resident set now, in bytes (0 when unknown).
fn rss_bytes() -> u64 {
    let mut fd = STATM.load(Relaxed);
    if fd < 0 {
        match std::fs::File::open("/proc/self/statm") {
            Ok(f) => {
                use std::os::fd::IntoRawFd;
                fd = f.into_raw_fd();
                STATM.store(fd, Relaxed);
            }
            Err(_) => return 0,
        }
    }
    let mut buf = [0u8; 128];
    // SAFETY: a descriptor we keep open; at most buf.len() bytes into buf.
    let n = unsafe { pread(fd, buf.as_mut_ptr(), buf.len(), 0) };
    let text = &buf[..n.max(0) as usize];
    let resident = text
        .split(|&c| c == b' ')
        .nth(1)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.trim().parse::<u64>().ok())
        .unwrap_or(0);
    resident * memkit_sys::OS_PAGE as u64
}

/// The process the state belongs to (set at start and in a fork child).
/// A process with another pid that shares our memory (a `vfork` or
/// `posix_spawn` child, which run no fork handlers) must not write it.
static OWNER_PID: AtomicU32 = AtomicU32::new(0);

/// Set once the profile is written (or being written): at most once per
/// process.
static WRITTEN: AtomicBool = AtomicBool::new(false);

/// No lock of the profiler may be held in the child: the state's lock is
/// taken before `fork` and released after, in both processes.
extern "C" fn before_fork() {
    let held = sites::STATE.raw_lock(tls::id());
    FORK_HELD_BIASED.store(held == Held::Biased, Relaxed);
}

/// How before_fork took the state's lock.
static FORK_HELD_BIASED: AtomicBool = AtomicBool::new(false);

extern "C" fn after_fork_parent() {
    let held = if FORK_HELD_BIASED.load(Relaxed) {
        Held::Biased
    } else {
        Held::Locked
    };
    // SAFETY: taken by before_fork on this thread, as `held`.
    unsafe { sites::STATE.raw_unlock(held) };
}

/// The child profiles what it does itself: figures from zero, a new clock,
/// a new block secret (its parent's blocks are told apart), its own statm.
extern "C" fn after_fork_child() {
    {
        // SAFETY: the lock was taken by before_fork in the parent; this is
        // the child's only thread.
        let st = unsafe { &mut *sites::STATE.as_ptr() };
        sites::reset(st);
    }
    block::new_generation();
    let fd = STATM.swap(-1, Relaxed);
    if fd >= 0 {
        memkit_sys::close(fd);
    }
    WRITTEN.store(false, Relaxed);
    OWNER_PID.store(memkit_sys::pid(), Relaxed);
    start_clocks();
    // SAFETY: as above. Unowned: the child's first recording thread takes
    // the bias (and registers for membarrier: a new process).
    unsafe { sites::STATE.reset() };
}

extern "C" fn init() {
    tls::inside(|| {
        if START_NS.load(Relaxed) == 0 {
            start_clocks();
        }
        OWNER_PID.store(memkit_sys::pid(), Relaxed);
        options::get();
        stack::init();
        let dir = std::path::Path::new(&options::get().dir);
        if !dir.is_dir() {
            warn(&format!(
                "{}: not a directory; the profile will not be written",
                dir.display()
            ));
        }
        // SAFETY: handlers that only take and release the state's lock.
        unsafe {
            memkit_sys::atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
        signals::install();
    });
}

extern "C" fn fini() {
    write_profile("exit");
}

/// Writes this process's profile, once; not from a process that merely
/// shares our memory.
pub(crate) fn write_profile(end: &str) {
    if memkit_sys::pid() != OWNER_PID.load(Relaxed) || WRITTEN.swap(true, AcqRel) {
        return;
    }
    tls::inside(|| {
        let raw = write::collect(end);
        let dir = std::path::Path::new(&options::get().dir);
        if let Err(e) = write::write(dir, &raw) {
            warn(&format!(
                "cannot write the profile into {}: {e}",
                dir.display()
            ));
        }
    });
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;

/// `_exit` and `_Exit`: the profile first (shells and fork children end
/// this way, without running `.fini_array`), then glibc's.
#[unsafe(no_mangle)]
pub extern "C" fn _exit(status: i32) -> ! {
    write_profile("_exit");
    real_exit(c"_exit", status)
}

#[unsafe(no_mangle)]
pub extern "C" fn _Exit(status: i32) -> ! {
    write_profile("_exit");
    real_exit(c"_Exit", status)
}

fn real_exit(name: &core::ffi::CStr, status: i32) -> ! {
    // SAFETY: dlsym with a NUL-terminated name.
    let real = tls::inside(|| unsafe { dlsym(RTLD_NEXT, name.as_ptr()) });
    if !real.is_null() {
        // SAFETY: glibc's _exit or _Exit, which never return.
        unsafe {
            let f: extern "C" fn(i32) -> ! = core::mem::transmute(real);
            f(status)
        }
    }
    // No glibc _exit to be found (cannot happen with glibc): the system
    // call itself.
    const SYS_EXIT_GROUP: i64 = 231;
    loop {
        // SAFETY: exit_group ends the process; it takes any status.
        unsafe { syscall(SYS_EXIT_GROUP, status as i64) };
    }
}

/// `dlclose`: glibc's, then forget what the unloaded objects' code told
/// the unwinder (their addresses may be reused); recorded stacks keep
/// naming them.
#[unsafe(no_mangle)]
pub extern "C" fn dlclose(handle: *mut core::ffi::c_void) -> i32 {
    // SAFETY: dlsym with a NUL-terminated name.
    let real = tls::inside(|| unsafe { dlsym(RTLD_NEXT, c"dlclose".as_ptr()) });
    if real.is_null() {
        return -1;
    }
    // SAFETY: glibc's dlclose, with the caller's handle.
    let rc = unsafe {
        let f: extern "C" fn(*mut core::ffi::c_void) -> i32 = core::mem::transmute(real);
        f(handle)
    };
    tls::inside(|| {
        memkit_trace::modules::forget_unmapped();
        memkit_trace::unwind::forget_rules();
    });
    rc
}
