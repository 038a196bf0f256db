//! libmemkit_profile.so's exports: memkit-abi's export list over the
//! profiling allocator ([`Profiled`]), with glibc's argument rules applied
//! there. Every export takes the registers of its own frame
//! ([`Backend::site`]), so a recorded stack starts at the function the
//! program called; each call into [`block`] runs under
//! [`signals::guarded`], so a terminating signal waits for its end. The
//! throwing `operator new` forms are libstdc++'s (they call `malloc`, which
//! is ours), as for libmemkit.so.

use memkit_abi::{oom, Backend, Kind};
use memkit_trace::unwind::Regs;

use crate::{block, signals};

/// The profiling allocator ([`block`]) as a backend.
pub struct Profiled;

// SAFETY: block::alloc returns null or `size` bytes aligned to `align`,
// zeroed when asked, valid until block::free; block::usable_size is what
// may be written.
unsafe impl Backend for Profiled {
    type Site = Regs;

    #[inline(always)]
    fn site() -> Regs {
        memkit_trace::unwind::here()
    }

    #[inline(always)]
    unsafe fn alloc(size: usize, align: usize, zero: bool, _kind: Kind, site: Regs) -> *mut u8 {
        let t = signals::enter();
        // SAFETY: a power-of-two alignment (at least 16).
        let p = unsafe { block::alloc(size, align.max(16), zero, site) };
        signals::leave(t);
        oom(p)
    }

    #[inline(always)]
    unsafe fn free(p: *mut u8, _kind: Kind, _call: &'static str, _site: Regs) {
        let t = signals::enter();
        // SAFETY: the C contract of free; any pointer is judged.
        unsafe { block::free(p) };
        signals::leave(t);
    }

    #[inline(always)]
    unsafe fn realloc(p: *mut u8, size: usize, site: Regs) -> *mut u8 {
        // SAFETY: the C contract of realloc.
        oom(signals::guarded(|| unsafe {
            block::realloc(p, size, site)
        }))
    }

    #[inline(always)]
    unsafe fn usable_size(p: *mut u8, _site: Self::Site) -> usize {
        // SAFETY: any pointer is judged.
        unsafe { block::usable_size(p) }
    }
}

memkit_abi::exports!(Profiled, throwing_new = false);

// `mallinfo2`, `mallinfo`, `mallopt`, `malloc_trim`, `malloc_stats`,
// `malloc_info`: the core's, as libmemkit.so's.
memkit_abi::core_info_exports!();
