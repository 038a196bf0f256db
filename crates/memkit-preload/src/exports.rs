//! libmemkit.so's exports: the malloc family and the C++ operators of
//! memkit-abi (glibc's argument rules applied there) over the allocator
//! core, with no checking and no recording: [`Fast`] is the core's entry
//! points, inlined into each export, so `malloc` and `free` are the core's
//! fast paths ending in tail calls. The throwing `operator new` forms are
//! memkit-abi's (`throwing_new = first`): `operator new(size_t)` and
//! `new[]` make one attempt through the core's `malloc` from a one-word
//! frame, and only when it fails take the full form (the `new_handler`,
//! retries, `std::bad_alloc`).

use memkit_abi::{oom, Backend, Kind};
use memkit_alloc as core_alloc;

/// The allocator core as a backend.
pub struct Fast;

// SAFETY: the core's blocks are at least `size` bytes, aligned to
// max(align, 16), zeroed by `calloc`, valid until freed; `usable_size` is
// what may be written.
unsafe impl Backend for Fast {
    type Site = ();

    #[inline(always)]
    fn site() {}

    #[inline(always)]
    unsafe fn alloc(size: usize, align: usize, zero: bool, _kind: Kind, _site: ()) -> *mut u8 {
        // SAFETY: any size; a power-of-two alignment.
        unsafe {
            if zero {
                oom(core_alloc::calloc(1, size))
            } else if align <= core_alloc::MIN_ALIGN {
                // errno is set in the core's slow path: a tail call.
                core_alloc::malloc_with::<crate::Enomem>(size)
            } else {
                oom(core_alloc::aligned_alloc(align, size))
            }
        }
    }

    #[inline(always)]
    unsafe fn free(p: *mut u8, _kind: Kind, _call: &'static str, _site: ()) {
        // SAFETY: the C contract of free (null and foreign pointers ignored).
        unsafe { core_alloc::free(p) }
    }

    #[inline(always)]
    unsafe fn realloc(p: *mut u8, size: usize, _site: ()) -> *mut u8 {
        // SAFETY: the C contract of realloc.
        oom(unsafe { core_alloc::realloc(p, size) })
    }

    #[inline(always)]
    unsafe fn usable_size(p: *mut u8, _site: ()) -> usize {
        // SAFETY: the C contract of malloc_usable_size.
        unsafe { core_alloc::usable_size(p) }
    }
}

memkit_abi::exports!(Fast, throwing_new = first);
