//! Stacks as the checker records them: captured with memkit-trace from
//! the calling point, the checker's own frames dropped but the entry point
//! the program called (`malloc`, `free`, `memcpy`…), stored in the depot.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use memkit_trace::depot::{self, StackId};
use memkit_trace::unwind::{self, Frame, MAX_FRAMES};

use crate::{options, tls};

/// Our own module index, plus one (0: not yet known).
static OWN: AtomicU32 = AtomicU32::new(0);

/// The checker's own module index.
pub fn own() -> u16 {
    let v = OWN.load(Relaxed);
    if v != 0 {
        return (v - 1) as u16;
    }
    let m = memkit_trace::modules::module_of(own as *const () as usize);
    OWN.store(m as u32 + 1, Relaxed);
    m
}

/// The calling thread's stack, from here.
#[inline(never)]
pub fn here() -> StackId {
    at(unwind::here())
}

/// The calling thread's stack, from `regs` (taken by a caller further up
/// the same stack: the entry point, so that the checker's own frames cost
/// nothing to unwind).
pub fn at(regs: unwind::Regs) -> StackId {
    let end = tls::stack_end(regs.sp);
    let mut frames = [core::mem::MaybeUninit::<Frame>::uninit(); MAX_FRAMES];
    let depth = options::get().stack_depth;
    let n = unwind::capture(regs, end, own(), &mut frames[..depth]);
    // SAFETY: capture wrote the first n frames.
    depot::intern(unsafe {
        &*(&frames[..n] as *const [core::mem::MaybeUninit<Frame>] as *const [Frame])
    })
}
