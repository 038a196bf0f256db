//! Stack capture and symbolization for memkit's check mode and profiler.
//!
//! * [`unwind`]: capture on every allocation and free — DWARF call frame
//!   information behind a per-pc rule cache; no lock, no allocation after a
//!   pc's first sight, every stack read bounds-checked;
//! * [`modules`]: the objects frames point into, recorded at capture (path
//!   and load bias), so stacks outlive `dlclose`;
//! * [`depot`]: each distinct stack stored once, named by a 32-bit id;
//! * [`memo`]: capture against a thread's previous stacks (one memo, or a
//!   set of four), for front-ends that capture on every allocation (the
//!   profiler);
//! * [`recent`]: a thread's last walk, re-verified instead of unwound again
//!   when the next capture starts from the same frames;
//! * [`thread`]: the calling thread's stack bounds;
//! * [`symbolize`]: report time — function, file and line, demangled.
//!
//! Why not frame pointers alone: Debian builds its binaries and glibc
//! without them, so a frame-pointer walk stops (or wanders) in the first
//! libc or distribution frame. Why not libgcc's `_Unwind_Backtrace`: it
//! parses the frame description afresh on every frame of every capture.
//! Why not framehop: it wants each module registered (and removed) by hand,
//! with its sections copied; `_dl_find_object` already gives glibc's own,
//! lock-free view of what is mapped.

pub mod depot;
pub mod memo;
pub mod modules;
pub mod recent;
pub mod symbolize;
pub mod thread;
pub mod unwind;

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// The module a front-end's own code lies in, found on first use: its
/// frames are dropped from the top of the stacks it records.
pub struct OwnModule(AtomicU32);

impl OwnModule {
    pub const fn new() -> Self {
        OwnModule(AtomicU32::new(0))
    }

    /// The index of the module holding `anchor` (an address of the
    /// front-end's own code), cached after the first call.
    pub fn get(&self, anchor: usize) -> u16 {
        let v = self.0.load(Relaxed);
        if v != 0 {
            return (v - 1) as u16;
        }
        let m = modules::module_of(anchor);
        self.0.store(m as u32 + 1, Relaxed);
        m
    }
}

impl Default for OwnModule {
    fn default() -> Self {
        Self::new()
    }
}

/// Unwinds from `regs` (at most `depth` frames, inside the stack below
/// `stack_end`), drops the frames of module `own` but the entry point the
/// program called, and interns the stack in the depot.
#[inline(always)]
pub fn capture_interned(
    regs: unwind::Regs,
    stack_end: usize,
    own: u16,
    depth: usize,
) -> depot::StackId {
    let mut frames = [core::mem::MaybeUninit::<unwind::Frame>::uninit(); unwind::MAX_FRAMES];
    let n = unwind::capture(
        regs,
        stack_end,
        own,
        &mut frames[..depth.min(unwind::MAX_FRAMES)],
    );
    // SAFETY: capture wrote the first n frames.
    depot::intern(unsafe {
        &*(&frames[..n] as *const [core::mem::MaybeUninit<unwind::Frame>]
            as *const [unwind::Frame])
    })
}
