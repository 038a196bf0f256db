//! The calling thread's profiler state, in static TLS (initial-exec, as a
//! replacement malloc must use; see `memkit_sys::tls_block!`). Every field's
//! zero is "not yet".

use core::cell::Cell;

#[repr(C)]
pub struct Thread {
    /// Non-zero while the thread runs the profiler's own code (or records
    /// an event): allocations made then are served but not recorded, so a
    /// signal handler's `malloc` in the middle of a record cannot deadlock.
    pub busy: Cell<u32>,
    /// Set while the stack bounds are being found (that calls malloc).
    pub finding_stack: Cell<u32>,
    /// The end (highest address) of the thread's stack, 0 until known.
    pub stack_end: Cell<usize>,
    /// The thread's latest allocation (for the temporary-allocation rule);
    /// 0 once freed.
    pub last_alloc: Cell<usize>,
    /// Sampled mode: bytes left before the next sampled allocation
    /// (0 or less: draw the next interval).
    pub countdown: Cell<i64>,
    /// Sampled mode: the thread's random state (0: not seeded).
    pub rng: Cell<u64>,
    /// Non-zero while the thread is inside an allocation entry point: a
    /// terminating signal then waits for its end (see `signals`).
    pub in_export: Cell<u32>,
    /// The thread's stack memo (`stack`): its address, or 0 (none yet) or
    /// 1 (none to be had).
    pub memo: Cell<usize>,
}

memkit_sys::tls_block! {
    /// The calling thread's state.
    pub fn me() -> Thread = "memkit_profile_tls", 64;
}

/// The calling thread's id for [`crate::sites::STATE`]'s bias: the address
/// of its TLS block (unique among live threads, never 0).
#[inline(always)]
pub fn id() -> usize {
    me() as *const Thread as usize
}

/// Runs `f` as the profiler's own code (see [`Thread::busy`]).
#[inline(always)]
pub fn inside<R>(f: impl FnOnce() -> R) -> R {
    let t = me();
    t.busy.set(t.busy.get() + 1);
    let r = f();
    t.busy.set(t.busy.get() - 1);
    r
}

/// The end of the calling thread's stack (found once).
#[inline]
pub fn stack_end(sp: usize) -> usize {
    let t = me();
    match t.stack_end.get() {
        0 => inside(|| memkit_trace::thread::stack_end(sp, &t.stack_end, &t.finding_stack)),
        end => end,
    }
}
