//! libmemkit_check.so: memkit's checking allocator, for `memkit check` and
//! for `LD_PRELOAD` by hand (options in `MEMKIT_CHECK_OPTIONS`).
//!
//! A second front-end over memkit's allocator core: every block between
//! red zones ([`block`]), recorded in a side table ([`table`]) with the
//! stack that allocated it ([`stacks`], memkit-trace), freed into a
//! quarantine; mem*/str* calls checked against the blocks they touch
//! ([`intercept`]); a leak check at exit ([`leaks`]). The malloc family and
//! every C++ operator new/delete form are memkit-abi's export list over
//! that allocator ([`exports`]). See docs/CHECK.md for what each mode
//! catches.
//!
//! The library's own Rust code allocates through its global allocator
//! ([`own_alloc`]: small requests apart from the program's blocks, large
//! ones from memkit's core directly), never through its checked exports.

mod block;
mod exports;
mod guard;
mod intercept;
mod leaks;
mod options;
mod own_alloc;
mod records;
mod report;
mod roots;
mod stacks;
mod table;
mod tls;

use core::sync::atomic::{AtomicBool, Ordering::*};

// The version note `memkit check` reads before preloading this library.
memkit_sys::version_note!(static VERSION_NOTE);

/// The library's own allocations, unchecked: small ones apart from the
/// program's heap, large ones from memkit's core ([`own_alloc`]).
#[global_allocator]
static OWN: own_alloc::OwnAlloc = own_alloc::OwnAlloc;

static STARTED: AtomicBool = AtomicBool::new(false);

/// A lock (or any shared value) alone in its pair of cache lines. The
/// side table's 40-byte shards and the quarantine's 112-byte ones shared
/// lines with their neighbours: two threads on neighbouring quarantine
/// shards (`tid % 16`, and threads' ids are consecutive) bounced one
/// line on every free. 128 bytes: the CPU fetches lines in pairs.
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Whether the constructor has run (the interceptors check from then on).
#[inline(always)]
fn started() -> bool {
    STARTED.load(Relaxed)
}

/// Ends the process now with `code`, flushing stdio first (the program's
/// own buffered output must not be lost).
fn exit_now(code: i32) -> ! {
    // SAFETY: fflush(NULL) flushes every stream; _exit never returns.
    unsafe {
        libc::fflush(core::ptr::null_mut());
        libc::_exit(code)
    }
}

/// No lock of the checker may be held in the child: every one is taken
/// before `fork` (outermost first: the report output, the symbolizer's
/// cache, the quarantine, the big blocks, the side table, the program's
/// SIGSEGV action, the checker's own allocator) and released after, in
/// both processes.
extern "C" fn before_fork() {
    report::lock_for_fork();
    memkit_trace::symbolize::lock_for_fork();
    block::lock_for_fork();
    table::lock_all();
    block::lock_big_for_fork();
    guard::lock_for_fork();
    own_alloc::lock_for_fork();
}

extern "C" fn after_fork() {
    own_alloc::unlock_after_fork();
    guard::unlock_after_fork();
    table::unlock_all();
    block::unlock_after_fork();
    memkit_trace::symbolize::unlock_after_fork();
    report::unlock_after_fork();
}

/// The child of a `fork`: the locks as in the parent; its one thread's id
/// is its own (the parent's was cached); the parent's other threads are
/// gone, but not their stacks (see `leaks::note_forked`).
extern "C" fn after_fork_child() {
    after_fork();
    tls::forget_tid();
    leaks::note_forked();
}

extern "C" fn init() {
    tls::inside(|| {
        report::init();
        options::get();
        intercept::resolve();
        guard::install();
        memkit_alloc::harden::set_fault_hook(block::core_fault);
        // The core registers its own fork handlers with its first heap.
        // They must come first: glibc runs the prepare handlers in reverse
        // order, and the checker's locks are outer to the core's (a thread
        // reporting holds the report lock and may allocate from the core).
        // Since the checker's own allocations stopped coming from the core
        // (own_alloc), nothing in this constructor made the core register
        // first: `fork` then took the core's locks, and waited for the
        // report lock held by a thread that waited for a core lock (four
        // threads reporting while the main thread forked hung every run).
        // SAFETY: a block of the core's, freed at once.
        unsafe { memkit_alloc::free(memkit_alloc::malloc(16)) };
        // SAFETY: handlers that only take and release the table's locks.
        unsafe { memkit_sys::atfork(Some(before_fork), Some(after_fork), Some(after_fork_child)) };
    });
    STARTED.store(true, Release);
}

/// The leak scan reads the exiting thread's stack from the frame that
/// called `exit` up (found by unwinding from this frame's registers:
/// `leaks::exit_caller_sp`), and from this frame's `sp` when that fails.
/// Below it lie stale slots of returned frames and, once the work starts,
/// the frames of [`finish`], which walk every block and may keep any
/// block's address in a spill slot: read, that slot would make a leaked
/// block look reachable. So this frame only takes its registers.
#[inline(never)]
extern "C" fn fini() {
    let regs = memkit_trace::unwind::here();
    finish(regs);
    // Not a tail call: `finish` must not reuse this frame.
    core::hint::black_box(regs.sp);
}

#[inline(never)]
fn finish(regs: memkit_trace::unwind::Regs) {
    if !started() {
        return;
    }
    STARTED.store(false, Release);
    let o = options::get();
    block::walk_all("at exit");
    block::drain_quarantine();
    if o.leaks {
        tls::inside(|| {
            leaks::check(
                o.show_reachable,
                o.scan_mmap,
                fini as *const () as usize,
                regs,
            )
        });
    }
    report::summary();
    if report::REPORTED.load(Relaxed) > 0 && !o.keep_status {
        exit_now(o.error_exitcode);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;

/// `dlclose`: glibc's, then forget what the unloaded objects' code told
/// the unwinder (their addresses may be reused); recorded stacks keep
/// naming them.
#[unsafe(no_mangle)]
pub extern "C" fn dlclose(handle: *mut core::ffi::c_void) -> i32 {
    // SAFETY: dlsym with a NUL-terminated name.
    let real = tls::inside(|| unsafe { libc::dlsym(libc::RTLD_NEXT, c"dlclose".as_ptr()) });
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
