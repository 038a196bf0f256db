//! The malloc family and the C++ nothrow-new and delete forms on the
//! profiling allocator, with glibc 2.36's argument rules
//! (memkit_alloc::glibc). Each entry point takes the registers of its own
//! frame, so the recorded stack starts at the function the program called.
//! The throwing `operator new` forms are libstdc++'s (they call `malloc`,
//! which is ours), as for libmemkit.so.

use core::ffi::c_void;
use core::ptr::null_mut;

use memkit_trace::unwind::{here, Regs};

use crate::{block, set_errno, signals, EINVAL, ENOMEM};

#[inline(always)]
fn alloc(size: usize, align: usize, zero: bool, regs: Regs) -> *mut c_void {
    // SAFETY: align is a power of two at every call site.
    let p = signals::guarded(|| unsafe { block::alloc(size, align, zero, regs) });
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p.cast()
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, 16, false, here())
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn free(p: *mut c_void) {
    // SAFETY: the C contract of free; any pointer is judged.
    signals::guarded(|| unsafe { block::free(p.cast()) })
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(ENOMEM);
        return null_mut();
    };
    alloc(total, 16, true, here())
}

#[inline(always)]
fn realloc_at(p: *mut c_void, size: usize, regs: Regs) -> *mut c_void {
    if p.is_null() {
        return alloc(size, 16, false, regs);
    }
    if size == 0 {
        free(p);
        return null_mut();
    }
    // SAFETY: the C contract of realloc.
    let q = signals::guarded(|| unsafe { block::realloc(p.cast(), size, regs) });
    if q.is_null() {
        set_errno(ENOMEM);
    }
    q.cast()
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    realloc_at(p, size, here())
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => realloc_at(p, total, here()),
        None => {
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !memkit_alloc::glibc::posix_memalign_accepts(align) {
        return EINVAL;
    }
    let regs = here();
    // SAFETY: a power-of-two alignment.
    let p = signals::guarded(|| unsafe { block::alloc(size, align.max(16), false, regs) });
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller passes a valid out pointer.
    unsafe { *out = p.cast() };
    0
}

#[inline(always)]
fn memalign_at(align: usize, size: usize, regs: Regs) -> *mut c_void {
    let Some(a) = memkit_alloc::glibc::memalign_alignment(align) else {
        set_errno(EINVAL);
        return null_mut();
    };
    alloc(size, a.max(16), false, regs)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    memalign_at(align, size, here())
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    memalign_at(align, size, here())
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc(size, memkit_sys::OS_PAGE, false, here())
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(rounded) = memkit_alloc::glibc::pvalloc_size(size) else {
        set_errno(ENOMEM);
        return null_mut();
    };
    alloc(rounded, memkit_sys::OS_PAGE, false, here())
}

#[unsafe(no_mangle)]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: any pointer is judged.
    unsafe { block::usable_size(p.cast()) }
}

#[unsafe(no_mangle)]
pub extern "C" fn cfree(p: *mut c_void) {
    free(p)
}

#[unsafe(no_mangle)]
pub extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    free(p)
}

#[unsafe(no_mangle)]
pub extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    free(p)
}

/// `malloc_trim`: the core's.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> i32 {
    (memkit_alloc::trim() > 0) as i32
}

/// `operator new(size_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    alloc(size, 16, false, here())
}

/// `operator new[](size_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    alloc(size, 16, false, here())
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    memalign_at(align, size, here())
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    memalign_at(align, size, here())
}

macro_rules! delete {
    ($($name:ident ( $($arg:ident : $ty:ty),* );)*) => {$(
        #[doc = concat!("C++ `", stringify!($name), "` (a form of operator delete).")]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(p: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            free(p)
        }
    )*};
}

delete! {
    _ZdlPv();
    _ZdaPv();
    _ZdlPvm(size: usize);
    _ZdaPvm(size: usize);
    _ZdlPvSt11align_val_t(align: usize);
    _ZdaPvSt11align_val_t(align: usize);
    _ZdlPvmSt11align_val_t(size: usize, align: usize);
    _ZdaPvmSt11align_val_t(size: usize, align: usize);
    _ZdlPvRKSt9nothrow_t(nt: *const c_void);
    _ZdaPvRKSt9nothrow_t(nt: *const c_void);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void);
}
