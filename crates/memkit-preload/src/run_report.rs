//! This process's record for `memkit run` (`MEMKIT_REPORT_DIR`): a small
//! file in that directory, named by pid and start time and mapped shared,
//! that always holds the process's latest record. `memkit run` reads it
//! whether the process exits, calls `_exit`, aborts or is killed. Record
//! format: `memkit_sys::report`; file layout and the protocol that keeps a
//! record whole when its writer dies mid-update: `memkit_sys::report_file`.
//!
//! The record is published
//! * at start (the constructor), with the counters so far;
//! * from the allocator's periodic hook (a thread's first 8 allocation slow
//!   paths, then every 8th): the first [`YOUNG_REFRESHES`] times it runs,
//!   then at most once per [`REFRESH_NS`] for the whole process;
//! * at exit: by `fini` (exit handlers are running: state `exited`), then by
//!   an `on_exit` handler, registered before any other and so run last,
//!   which also knows the exit status.
//!
//! A process that ends without exit handlers (`_exit`, a fatal signal,
//! SIGKILL) leaves its last refresh, state `running`: its counters miss
//! at most [`REFRESH_NS`] of activity before its last slow path, and what
//! it did after that.
//!
//! fork: the child inherits the mapping of the parent's file; the
//! `pthread_atfork` child handler gives it its own file before `fork`
//! returns. A child made without the handlers (`vfork`, a raw `clone`)
//! never writes: every update checks that the file is the calling
//! process's. exec: the new image runs the constructor again; same pid and
//! start time, so it replaces the file of the image before.
//!
//! Nothing here allocates or blocks: raw system calls (memkit-sys), static
//! buffers, and a try-lock ([`WRITING`]) that a periodic refresh skips when
//! another thread holds it; only the exit record waits for it, and only a
//! bounded number of yields.

use core::cell::UnsafeCell;
use core::ffi::{c_void, CStr};
use core::fmt::Write as _;
use core::ptr::null_mut;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

use memkit_alloc::util::BufWriter;
use memkit_alloc::{config, AllocStats};
use memkit_sys::report::{self, Record};
use memkit_sys::report_file::{self, Entry, Mapping, State};

/// Shortest time between two periodic refreshes of the record. A refresh
/// sums every heap's counters (~200 loads a heap) and copies ~400 bytes:
/// at this rate a fraction of a per mille of one core at most.
pub const REFRESH_NS: u64 = 10_000_000;
/// Refreshes of a young process that run whenever the hook does: a
/// short-lived process (a shell) makes only a few slow calls, and without
/// them would leave the counters of its first one. ~1 µs each.
pub const YOUNG_REFRESHES: u32 = 16;

/// The mapped report file (null: none) and its length in bytes.
static MAPPED: AtomicPtr<u8> = AtomicPtr::new(null_mut());
static MAPPED_LEN: AtomicUsize = AtomicUsize::new(0);
/// The pid the file belongs to. Another pid (a child made without fork
/// handlers, which may share our memory) leaves it alone.
static OWNER: AtomicU32 = AtomicU32::new(0);
/// When the next periodic refresh may run (`now_ns`).
static NEXT_REFRESH: AtomicU64 = AtomicU64::new(0);
/// Periodic refreshes so far; the first [`YOUNG_REFRESHES`] are not held
/// back by [`REFRESH_NS`].
static REFRESHES: AtomicU32 = AtomicU32::new(0);
/// Held by the thread publishing a record (and using [`SCRATCH`]).
static WRITING: AtomicBool = AtomicBool::new(false);
/// Exit handlers have started: no periodic refresh may turn the record
/// back to `running`.
static EXITING: AtomicBool = AtomicBool::new(false);
/// The status passed to `exit`, or -1.
static EXIT_STATUS: AtomicI32 = AtomicI32::new(-1);

/// What stays the same for the process's life, set before the file exists.
struct Fixed {
    /// `MEMKIT_REPORT_DIR`, copied at start (the program may change its
    /// environment later), NUL-terminated.
    dir: [u8; 4096],
    exe: [u8; report::PATH_MAX],
    exe_len: usize,
    ppid: u32,
    /// See `memkit_sys::report_file`: with the pid, names the file.
    start: u64,
}

/// The buffer a record is encoded in (~13 KiB, static because `malloc` may
/// run on a thread with a small stack), and the counters last published,
/// which a forked child starts from.
struct Scratch {
    line: [u8; report::MAX_LEN],
    last: Option<AllocStats>,
}

struct Global<T>(UnsafeCell<T>);
// SAFETY: FIXED is written only where the process has one thread (the
// constructor, the fork child handler) and before MAPPED is set, read
// after; SCRATCH only by the holder of WRITING, or where the process has
// one thread.
unsafe impl<T> Sync for Global<T> {}

static FIXED: Global<Fixed> = Global(UnsafeCell::new(Fixed {
    dir: [0; 4096],
    exe: [0; report::PATH_MAX],
    exe_len: 0,
    ppid: 0,
    start: 0,
}));
static SCRATCH: Global<Scratch> = Global(UnsafeCell::new(Scratch {
    line: [0; report::MAX_LEN],
    last: None,
}));

unsafe extern "C" {
    fn on_exit(function: extern "C" fn(i32, *mut c_void), arg: *mut c_void) -> i32;
}

const ENOENT: i32 = 2;

/// Sets everything up if `memkit run` asked for a record. Called once by
/// the constructor, which runs while the process has one thread.
pub fn start() {
    let Some(dir) = config::env(report_file::DIR_ENV.as_bytes()) else {
        return;
    };
    if dir.is_empty() {
        return;
    }
    // SAFETY: see Global; the constructor runs single-threaded.
    let fixed = unsafe { &mut *FIXED.0.get() };
    if dir.len() >= fixed.dir.len() {
        let _ = memkit_sys::write_all(
            2,
            b"memkit: MEMKIT_REPORT_DIR is too long (4095 bytes at most); no report\n",
        );
        return;
    }
    fixed.dir[..dir.len()].copy_from_slice(dir);
    fixed.dir[dir.len()] = 0;
    fixed.exe_len = memkit_sys::self_exe(&mut fixed.exe);
    fixed.ppid = memkit_sys::ppid();
    fixed.start = report_file::self_start_time();
    // SAFETY: single-threaded, as above.
    if !unsafe { open(memkit_alloc::stats()) } {
        return;
    }
    memkit_alloc::stats::set_periodic_hook(Some(periodic));
    // SAFETY: plain registrations with functions that live as long as the
    // process (libmemkit.so is never unloaded). Registered before the
    // program's own handlers, ours runs after them.
    unsafe {
        on_exit(exit_handler, null_mut());
        memkit_sys::atfork(None, None, Some(fork_child));
    }
}

/// Creates and maps this process's file and publishes `stats` in it.
///
/// # Safety
/// The caller holds [`WRITING`] or the process has one thread.
unsafe fn open(stats: AllocStats) -> bool {
    // SAFETY: FIXED is set up (see Global); SCRATCH per the contract.
    let (fixed, scratch) = unsafe { (&*FIXED.0.get(), &mut *SCRATCH.0.get()) };
    let exe = &fixed.exe[..fixed.exe_len];
    let pid = memkit_sys::pid();
    let Ok(dir) = CStr::from_bytes_until_nul(&fixed.dir) else {
        return false;
    };
    let words = report_file::words_for(report::max_len(exe.len()));
    let file = match report_file::create(dir, pid, fixed.start, words) {
        Ok(file) => file,
        Err(e) => {
            // ENOENT: memkit run has finished and removed the directory
            // (this process outlived it): nobody is asking any more.
            if e.0 != ENOENT {
                let mut w = BufWriter::<256>::new();
                let _ = writeln!(
                    w,
                    "memkit: cannot create a report file in MEMKIT_REPORT_DIR (errno {}); \
                     memkit run will not see this process",
                    e.0
                );
                w.flush_to(2);
            }
            return false;
        }
    };
    let Some(len) = record(&stats, pid, fixed.ppid, exe).encode(&mut scratch.line) else {
        return false;
    };
    scratch.last = Some(stats);
    let first = Entry {
        state: State::Running,
        status: None,
        text: &scratch.line[..len],
    };
    // SAFETY: the mapping was just made, and is never unmapped while
    // MAPPED names it.
    if !report_file::init(unsafe { file.words() }, pid, fixed.start, &first) {
        // SAFETY: ours, unused.
        unsafe { memkit_sys::unmap(file.addr, file.len) };
        return false;
    }
    OWNER.store(pid, Relaxed);
    MAPPED_LEN.store(file.len, Relaxed);
    MAPPED.store(file.addr, Release);
    true
}

/// The record of this process with counters `s`.
fn record<'e>(s: &AllocStats, pid: u32, ppid: u32, exe: &'e [u8]) -> Record<&'e [u8]> {
    Record {
        pid: u64::from(pid),
        ppid: u64::from(ppid),
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
        exe,
    }
}

/// Takes [`WRITING`]; with `wait`, yields up to ~1000 times for it.
fn lock(wait: bool) -> bool {
    for _ in 0..1000 {
        if WRITING
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
        {
            return true;
        }
        if !wait {
            return false;
        }
        memkit_sys::yield_now();
    }
    false
}

/// Publishes the current counters with `state`.
fn refresh(state: State, wait: bool) {
    // Before the lock: a child sharing our memory (vfork) must not hold it.
    let pid = memkit_sys::pid();
    if OWNER.load(Relaxed) != pid || !lock(wait) {
        return;
    }
    let addr = MAPPED.load(Acquire);
    if !addr.is_null() && OWNER.load(Relaxed) == pid {
        let s = memkit_alloc::stats();
        // SAFETY: we hold WRITING; FIXED is set up since MAPPED is.
        let (fixed, scratch) = unsafe { (&*FIXED.0.get(), &mut *SCRATCH.0.get()) };
        scratch.last = Some(s);
        let exe = &fixed.exe[..fixed.exe_len];
        if let Some(len) = record(&s, pid, fixed.ppid, exe).encode(&mut scratch.line) {
            let status = EXIT_STATUS.load(Relaxed);
            let entry = Entry {
                state,
                status: u8::try_from(status).ok(),
                text: &scratch.line[..len],
            };
            let file = Mapping {
                addr,
                len: MAPPED_LEN.load(Relaxed),
            };
            // SAFETY: MAPPED names a live mapping of ours (never unmapped
            // while it does; the fork child handler clears it first).
            report_file::publish(unsafe { file.words() }, &entry);
        }
    }
    WRITING.store(false, Release);
}

/// The allocator's periodic hook: a refresh each time while the process
/// is young, then at most every [`REFRESH_NS`].
fn periodic() {
    if EXITING.load(Relaxed) {
        return;
    }
    if REFRESHES.load(Relaxed) < YOUNG_REFRESHES {
        REFRESHES.fetch_add(1, Relaxed);
        refresh(State::Running, false);
        return;
    }
    let now = memkit_sys::now_ns();
    let next = NEXT_REFRESH.load(Relaxed);
    if now < next
        || NEXT_REFRESH
            .compare_exchange(next, now + REFRESH_NS, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    refresh(State::Running, false);
}

/// From `fini`: exit handlers are running.
pub fn at_exit() {
    // No record (`start` sets OWNER only with one): nothing to publish, and
    // the store would make a page of .bss resident in every program.
    if OWNER.load(Relaxed) == 0 {
        return;
    }
    EXITING.store(true, Relaxed);
    refresh(State::Exited, true);
}

/// The `on_exit` handler: runs last, with the status.
extern "C" fn exit_handler(status: i32, _: *mut c_void) {
    EXIT_STATUS.store(status & 0xff, Relaxed);
    EXITING.store(true, Relaxed);
    refresh(State::Exited, true);
}

/// In the child of `fork`, before `fork` returns: its own file, starting
/// from the counters the parent last published (the child has the same
/// ones, up to [`REFRESH_NS`] newer), refreshed at the first slow path.
unsafe extern "C" fn fork_child() {
    // The child's only thread. A publish another thread of the parent was
    // in the middle of is abandoned with that thread: its counters may be
    // half-written, so the child starts from zeros then.
    let abandoned = WRITING.load(Relaxed);
    EXITING.store(false, Relaxed);
    EXIT_STATUS.store(-1, Relaxed);
    let addr = MAPPED.swap(null_mut(), Acquire);
    if !addr.is_null() {
        // SAFETY: the parent's file, which this process must not write.
        unsafe { memkit_sys::unmap(addr, MAPPED_LEN.load(Relaxed)) };
    }
    // SAFETY: one thread (see Global); FIXED was set up by the constructor.
    let (fixed, scratch) = unsafe { (&mut *FIXED.0.get(), &*SCRATCH.0.get()) };
    fixed.ppid = memkit_sys::ppid();
    fixed.start = report_file::self_start_time();
    let stats = match scratch.last {
        Some(s) if !abandoned => s,
        _ => AllocStats::default(),
    };
    // SAFETY: one thread.
    unsafe { open(stats) };
    NEXT_REFRESH.store(0, Relaxed);
    REFRESHES.store(0, Relaxed);
    WRITING.store(false, Release);
}
