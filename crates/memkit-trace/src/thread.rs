//! The calling thread's stack bounds, which every unwind is checked
//! against.

use core::cell::Cell;

/// How far above `sp` an unwind may read while the stack's end is unknown.
const UNKNOWN_SPAN: usize = 65536;

/// The end (highest address) of the calling thread's stack, found once and
/// kept in the caller's thread-local `cache`: the end of the mapping that
/// holds `sp` ([`memkit_sys::stack::mapping_of`]; every address below it
/// down to `sp` is readable stack, the thread's descriptor and TLS at the
/// top of a glibc thread stack included).
///
/// Not `pthread_getattr_np`: it allocates while holding the thread's lock,
/// so when the program's own call of it (Rust's runtime start, for one)
/// allocates, asking it again from the allocator deadlocks. The lookup
/// neither allocates nor locks; `finding` (thread-local too) is set
/// meanwhile, and a nested call (a signal handler that allocates) answers
/// `sp + 64 KiB` without looking.
pub fn stack_end(sp: usize, cache: &Cell<usize>, finding: &Cell<u32>) -> usize {
    let end = cache.get();
    // Above the cached end: the first lookup ran on another stack (a
    // coroutine's, lower in memory); look again.
    if end > sp {
        return end;
    }
    if finding.get() != 0 {
        return sp + UNKNOWN_SPAN;
    }
    finding.set(1);
    let found = memkit_sys::stack::mapping_of(sp);
    finding.set(0);
    match found {
        Some(m) if m.end > sp => {
            cache.set(m.end);
            m.end
        }
        _ => sp + UNKNOWN_SPAN,
    }
}
