//! Process start and exit: options, the exit report for `memkit run`
//! (`MEMKIT_REPORT_FILE`), and `MEMKIT_SHOW_STATS`.
//!
//! Nothing here runs on an allocation path. The constructor may run after
//! the first `malloc` (other libraries allocate in their constructors); the
//! allocator itself initialises lazily and does not depend on it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, Ordering::Relaxed};

use memkit_alloc::config::{self, OPTIONS};
use memkit_sys::report::{self, Record};

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

/// Buffers of the exit report, static because `exit` may run on a thread
/// with a small stack (a record takes up to `report::MAX_LEN`, ~13 KiB).
struct ReportBuffers(UnsafeCell<([u8; report::PATH_MAX], [u8; report::MAX_LEN])>);
// SAFETY: used only by `fini`, which the loader runs once, on one thread.
unsafe impl Sync for ReportBuffers {}
static REPORT_BUFFERS: ReportBuffers = ReportBuffers(UnsafeCell::new((
    [0; report::PATH_MAX],
    [0; report::MAX_LEN],
)));

/// Appends this process's record (format: `memkit_sys::report`).
fn write_report(path: &[u8]) {
    let Ok(cpath) = core::ffi::CStr::from_bytes_until_nul(path) else {
        return;
    };
    // SAFETY: see ReportBuffers.
    let (exe, line) = unsafe { &mut *REPORT_BUFFERS.0.get() };
    let n = memkit_sys::self_exe(exe);
    let s = memkit_alloc::stats();
    let record = Record {
        pid: u64::from(memkit_sys::pid()),
        ppid: u64::from(memkit_sys::ppid()),
        allocs: s.allocs,
        frees: s.frees,
        reallocs: s.reallocs,
        bytes_allocated: s.allocated,
        in_use: s.in_use(),
        peak_in_use: s.peak_in_use,
        mapped: s.mapped(),
        peak_mapped: s.peak_mapped,
        unmapped: s.unmapped,
        purged: s.purged,
        threads: s.threads,
        exe: &exe[..n],
    };
    let Some(len) = record.encode(line) else {
        return;
    };
    // One write with O_APPEND: lines of concurrent processes do not interleave.
    if let Ok(fd) = memkit_sys::open_append(cpath) {
        let _ = memkit_sys::write_all(fd, &line[..len]);
        memkit_sys::close(fd);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;
