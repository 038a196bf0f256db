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
    let regs = unwind::here();
    let end = tls::stack_end(regs.sp);
    let mut frames: [Frame; MAX_FRAMES] = [0; MAX_FRAMES];
    let depth = options::get().stack_depth;
    let n = unwind::capture(regs, end, own(), &mut frames[..depth]);
    depot::intern(&frames[..n])
}
