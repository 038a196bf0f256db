//! The calling thread's state, in static TLS.
//!
//! glibc requires a replacement malloc to use the initial-exec TLS model
//! (`thread_local!` in a cdylib is global-dynamic and may call `malloc`
//! through `__tls_get_addr`), so the block is declared in `.tbss` with
//! `global_asm!` and reached through `@GOTTPOFF`, as memkit-alloc does for
//! its heap word. `.tbss` starts zeroed: every field's zero is "not yet".

use core::cell::Cell;

use memkit_trace::recent::RecentStack;

/// Per-thread state of the checker.
#[repr(C)]
pub struct Thread {
    /// Non-zero while the thread runs the checker's own code: allocations
    /// and mem* calls made there are not checked (and not recorded).
    pub busy: Cell<u32>,
    /// The thread's id (gettid), 0 until first needed.
    pub tid: Cell<u32>,
    /// The end (highest address) of the thread's stack, 0 until known.
    pub stack_end: Cell<usize>,
    /// Set while the stack bounds are being found (that calls malloc).
    pub finding_stack: Cell<u32>,
    /// Allocations not yet added to the process-wide count.
    pub allocs: Cell<u32>,
    /// Live blocks gained (or lost) not yet added to the process-wide count.
    pub live: Cell<i64>,
    /// Live bytes gained (or lost) not yet added to the process-wide count.
    pub live_bytes: Cell<i64>,
    /// The last allocation's and the last free's stack walks (one each, so
    /// that a loop of malloc/free pairs reuses both).
    pub alloc_walk: RecentStack,
    pub free_walk: RecentStack,
}

/// Static TLS reserved for [`Thread`] (checked against its size at build).
const _: () = assert!(core::mem::size_of::<Thread>() <= 16384);

memkit_sys::tls_block! {
    /// The calling thread's state.
    pub fn me() -> Thread = "memkit_check_tls", 16384;
}

/// Runs `f` as the checker's own code (see [`Thread::busy`]).
#[inline(always)]
pub fn inside<R>(f: impl FnOnce() -> R) -> R {
    let t = me();
    t.busy.set(t.busy.get() + 1);
    let r = f();
    t.busy.set(t.busy.get() - 1);
    r
}

/// Whether the thread is inside the checker's own code.
#[inline(always)]
pub fn is_busy() -> bool {
    me().busy.get() != 0
}

/// The thread's id.
pub fn tid() -> u32 {
    let t = me();
    let id = t.tid.get();
    if id != 0 {
        return id;
    }
    let id = rustix_tid();
    t.tid.set(id);
    id
}

/// Drops the cached id (in a `fork` child, which has an id of its own).
pub fn forget_tid() {
    me().tid.set(0);
}

fn rustix_tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { gettid() as u32 }
}

unsafe extern "C" {
    fn gettid() -> i32;
}

/// The end of the calling thread's stack (found once; the lookup allocates,
/// so it runs as the checker's own code).
pub fn stack_end(sp: usize) -> usize {
    let t = me();
    match t.stack_end.get() {
        0 => inside(|| memkit_trace::thread::stack_end(sp, &t.stack_end, &t.finding_stack)),
        end => end,
    }
}
