//! `MemKit`: the allocator behind Rust's `GlobalAlloc`.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;

use memkit_alloc::MIN_ALIGN;

/// memkit's allocator for `#[global_allocator]`.
///
/// Zero-sized: all state lives in the allocator core (per-thread heaps).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemKit;

// SAFETY: the core returns blocks of at least `size` bytes aligned to
// `max(align, 16)` that stay valid until freed, or null.
unsafe impl GlobalAlloc for MemKit {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: any layout is valid for the core.
        unsafe {
            if layout.align() <= MIN_ALIGN {
                memkit_alloc::malloc(layout.size())
            } else {
                memkit_alloc::aligned_alloc(layout.align(), layout.size())
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from this allocator (GlobalAlloc contract).
        unsafe { memkit_alloc::free(ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as alloc; the block has at least `size` bytes.
        unsafe {
            if layout.align() <= MIN_ALIGN {
                memkit_alloc::calloc(1, layout.size())
            } else {
                let p = memkit_alloc::aligned_alloc(layout.align(), layout.size());
                if !p.is_null() {
                    core::ptr::write_bytes(p, 0, layout.size());
                }
                p
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: ptr is a live block of `layout` from this allocator.
        unsafe {
            if layout.align() <= MIN_ALIGN {
                return memkit_alloc::realloc(ptr, new_size);
            }
            let q = memkit_alloc::aligned_alloc(layout.align(), new_size);
            if q.is_null() {
                return null_mut();
            }
            core::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
            memkit_alloc::free(ptr);
            q
        }
    }
}
