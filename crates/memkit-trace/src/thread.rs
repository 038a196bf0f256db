//! The calling thread's stack bounds, which every unwind is checked
//! against.

use core::cell::Cell;

unsafe extern "C" {
    fn pthread_self() -> usize;
    fn pthread_getattr_np(th: usize, attr: *mut [u64; 8]) -> i32;
    fn pthread_attr_getstack(attr: *const [u64; 8], addr: *mut usize, size: *mut usize) -> i32;
    fn pthread_attr_destroy(attr: *mut [u64; 8]) -> i32;
}

/// How far above `sp` an unwind may read while the stack's end is unknown.
const UNKNOWN_SPAN: usize = 65536;

/// The end (highest address) of the calling thread's stack, found once and
/// kept in the caller's thread-local `cache`.
///
/// `pthread_getattr_np` allocates: the caller must run this as its own
/// code (its allocator front-end must not record or re-enter the lookup);
/// `finding` (thread-local too) is set meanwhile, and a nested call then
/// answers `sp + 64 KiB` without looking.
pub fn stack_end(sp: usize, cache: &Cell<usize>, finding: &Cell<u32>) -> usize {
    let end = cache.get();
    if end != 0 {
        return end;
    }
    if finding.get() != 0 {
        return sp + UNKNOWN_SPAN;
    }
    finding.set(1);
    let mut attr = [0u64; 8];
    let (mut addr, mut size) = (0usize, 0usize);
    // SAFETY: attr is large enough for pthread_attr_t (56 bytes).
    let ok = unsafe {
        pthread_getattr_np(pthread_self(), &mut attr) == 0 && {
            let got = pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
            pthread_attr_destroy(&mut attr);
            got
        }
    };
    finding.set(0);
    if ok && addr + size > sp {
        cache.set(addr + size);
        addr + size
    } else {
        sp + UNKNOWN_SPAN
    }
}
