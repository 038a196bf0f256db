//! Process start and exit: options, the record for `memkit run`
//! (`MEMKIT_REPORT_DIR`, see `run_report`), and `MEMKIT_SHOW_STATS`.
//!
//! Nothing here runs on an allocation path. The constructor may run after
//! the first `malloc` (other libraries allocate in their constructors); the
//! allocator itself initialises lazily and does not depend on it.

use core::sync::atomic::{AtomicI32, Ordering::Relaxed};

use memkit_alloc::config::{self, OPTIONS};

use crate::introspect::write_stats;
use crate::run_report;

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
    run_report::start();
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
    run_report::at_exit();
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;
