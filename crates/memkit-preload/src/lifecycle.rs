//! Process start and exit: options, the exit report for `memkit run`
//! (`MEMKIT_REPORT_FILE`), and `MEMKIT_SHOW_STATS`.
//!
//! Nothing here runs on an allocation path. The constructor may run after
//! the first `malloc` (other libraries allocate in their constructors); the
//! allocator itself initialises lazily and does not depend on it.

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicI32, Ordering::Relaxed};

use memkit_alloc::config::{self, OPTIONS};
use memkit_alloc::util::BufWriter;

use crate::introspect::write_stats;

/// `MEMKIT_REPORT_FILE`, copied at start (the program may change its
/// environment later), NUL-terminated; empty when unset.
struct ReportPath(UnsafeCell<[u8; 4096]>);
// SAFETY: written once by the constructor before other threads can exist
// (constructors run single-threaded), read at exit.
unsafe impl Sync for ReportPath {}
static REPORT_PATH: ReportPath = ReportPath(UnsafeCell::new([0; 4096]));

const MCL_FUTURE: u32 = 2;

/// A duplicate of stderr taken at start: programs may close fd 2 before exit.
static STATS_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn init() {
    config::load();
    // MEMKIT_MLOCKALL=1: lock current and future memory now; with future
    // memory locked, decay stops returning memory (it would fault back in).
    if crate::secure::apply_mlockall_from_env() & MCL_FUTURE != 0 {
        OPTIONS.memory_locked.store(true, Relaxed);
    }
    if let Some(v) = config::env(b"MEMKIT_REPORT_FILE") {
        if !v.is_empty() && v.len() < 4096 {
            // SAFETY: see ReportPath.
            let buf = unsafe { &mut *REPORT_PATH.0.get() };
            buf[..v.len()].copy_from_slice(v);
            buf[v.len()] = 0;
        } else if !v.is_empty() {
            let _ = memkit_sys::write_all(
                2,
                b"memkit: MEMKIT_REPORT_FILE is too long (4095 bytes at most); no report\n",
            );
        }
    }
    if OPTIONS.show_stats.load(Relaxed) {
        if let Ok(fd) = memkit_sys::dup_cloexec(2) {
            STATS_FD.store(fd, Relaxed);
        }
    }
}

extern "C" fn fini() {
    let fd = STATS_FD.load(Relaxed);
    if fd >= 0 {
        write_stats(fd);
    }
    // SAFETY: see ReportPath.
    let path = unsafe { &*REPORT_PATH.0.get() };
    if path[0] != 0 {
        write_report(path);
    }
}

/// Appends this process's `memkit-report v1` line (format in README).
fn write_report(path: &[u8]) {
    let Ok(cpath) = core::ffi::CStr::from_bytes_until_nul(path) else {
        return;
    };
    let s = memkit_alloc::stats();
    let mut w = BufWriter::<4608>::new();
    let _ = write!(
        w,
        "memkit-report v1 pid={} ppid={} allocs={} frees={} reallocs={} bytes_allocated={} in_use={} \
         peak_in_use={} mapped={} peak_mapped={} unmapped={} purged={} threads={} exe=",
        memkit_sys::pid(),
        memkit_sys::ppid(),
        s.allocs,
        s.frees,
        s.reallocs,
        s.allocated,
        s.in_use(),
        s.peak_in_use,
        s.mapped(),
        s.peak_mapped,
        s.unmapped,
        s.purged,
        s.threads,
    );
    let mut exe = [0u8; 4096];
    let n = memkit_sys::self_exe(&mut exe);
    for &c in &exe[..n] {
        // Keep the line space-separated: escape spaces and '%'.
        match c {
            b' ' => w.put(b"%20"),
            b'%' => w.put(b"%25"),
            b'\n' => w.put(b"%0A"),
            _ => w.put(&[c]),
        }
    }
    w.put(b"\n");
    // One write with O_APPEND: lines of concurrent processes do not interleave.
    if let Ok(fd) = memkit_sys::open_append(cpath) {
        let _ = memkit_sys::write_all(fd, w.as_bytes());
        memkit_sys::close(fd);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;
