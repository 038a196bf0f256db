//! Stacks as the checker records them: captured with memkit-trace from
//! the calling point, the checker's own frames dropped but the entry point
//! the program called (`malloc`, `free`, `memcpy`…), stored in the depot.

use memkit_trace::depot::StackId;
use memkit_trace::{unwind, OwnModule};

use crate::{options, tls};

static OWN: OwnModule = OwnModule::new();

/// The checker's own module index.
pub fn own() -> u16 {
    OWN.get(own as *const () as usize)
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
    memkit_trace::capture_interned(regs, end, own(), options::get().stack_depth)
}

/// An allocation's stack, from `regs` (reusing the thread's last
/// allocation walk where it still holds), under options `o`.
#[inline(always)]
pub fn of_alloc(o: &options::Options, regs: unwind::Regs) -> StackId {
    with_walk(regs, o.stack_depth, &tls::me().alloc_walk)
}

/// A free's stack, from `regs` (reusing the thread's last free walk).
#[inline(always)]
pub fn of_free(o: &options::Options, regs: unwind::Regs) -> StackId {
    with_walk(regs, o.stack_depth, &tls::me().free_walk)
}

#[inline(always)]
fn with_walk(
    regs: unwind::Regs,
    depth: usize,
    walk: &memkit_trace::recent::RecentStack,
) -> StackId {
    let end = tls::stack_end(regs.sp);
    memkit_trace::recent::capture_interned_recent(regs, end, own(), depth, walk)
}
