//! libmemkit.so: memkit's allocator for unmodified programs (`LD_PRELOAD`).
//!
//! The malloc family and C++ operators are memkit-abi's export list over
//! the core ([`exports::Fast`]); the C semantics (glibc 2.36's:
//! `malloc(0)`, `realloc(p, 0)`, overflow checks, alignment rules, errno)
//! live in that layer, shared with the other front-ends. What is
//! libmemkit.so's own: introspection, the record for `memkit run`, secure
//! memory, stack buffers, shared-memory heaps, heaps that are no thread's
//! (`memkit_heap_*`). See `include/memkit.h` for what memkit exports
//! beyond the standard malloc family.
//!
//! # Safety
//! The exports receive raw pointers from C and trust the C contract of the
//! function they replace; pointers memkit never handed out are ignored by
//! `free` (see `memkit_alloc::free`).
#![no_std]

mod exports;
mod heap;
mod introspect;
mod lifecycle;
mod run_report;
mod secure;
mod shm;
mod stack;
mod version;

use memkit_abi::{set_errno, EINVAL, ENOMEM};

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // Formatted into a stack buffer: nothing here may allocate.
    use core::fmt::Write;
    let mut w = memkit_alloc::util::BufWriter::<512>::new();
    let _ = write!(w, "memkit: internal error (panic): {}", info.message());
    if let Some(l) = info.location() {
        let _ = write!(w, " at {}:{}", l.file(), l.line());
    }
    w.put(b"; aborting\n");
    w.flush_to(2);
    // SAFETY: abort never returns and needs no precondition.
    unsafe { abort() }
}

unsafe extern "C" {
    #[cfg_attr(test, allow(dead_code))]
    fn abort() -> !;
}

/// Sets errno to ENOMEM when the allocator's slow path returns null.
pub(crate) struct Enomem;

impl memkit_alloc::NullHook for Enomem {
    #[inline(always)]
    fn on_null() {
        set_errno(ENOMEM);
    }
}
