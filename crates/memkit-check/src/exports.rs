//! The malloc family on the checking allocator, with glibc 2.36's argument
//! rules, and reports for the calls glibc would refuse (`calloc-overflow`,
//! `invalid-alignment`) — which still return what glibc returns.

use core::ffi::c_void;
use core::ptr::null_mut;

use crate::block;
use crate::report::{self, Report};
use crate::table::Kind;
use crate::{set_errno, stacks, tls, EINVAL, ENOMEM};

#[inline]
fn oom(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p.cast()
}

/// Allocates as the checker's own code (its fills and table updates must
/// not be checked by the mem* interceptors).
/// Inlined into each export: the stack is taken from the export's frame.
#[inline(always)]
pub(crate) fn checked_alloc(size: usize, align: usize, kind: Kind, zero: bool) -> *mut c_void {
    let regs = memkit_trace::unwind::here();
    // SAFETY: any size and a power-of-two alignment.
    oom(tls::inside(|| unsafe {
        block::alloc(size, align, kind, zero, regs)
    }))
}

#[inline(always)]
pub(crate) fn checked_free(p: *mut c_void, kind: Kind, func: &str) {
    let regs = memkit_trace::unwind::here();
    // SAFETY: free reports whatever p is.
    tls::inside(|| unsafe { block::free(p.cast(), kind, func, regs) })
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    checked_alloc(size, 16, Kind::Malloc, false)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn free(p: *mut c_void) {
    checked_free(p, Kind::Malloc, "free")
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        let stack = stacks::here();
        report::emit(Report {
            kind: "calloc-overflow",
            message: format!(
                "calloc parameters overflow: count * size ({n} * {size}) cannot be represented"
            ),
            thread: tls::tid(),
            stack,
            ..Report::default()
        });
        set_errno(ENOMEM);
        return null_mut();
    };
    checked_alloc(total, 16, Kind::Malloc, true)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        checked_free(p, Kind::Malloc, "realloc");
        return null_mut();
    }
    let regs = memkit_trace::unwind::here();
    // SAFETY: realloc reports invalid and double frees.
    oom(tls::inside(|| unsafe {
        block::realloc(p.cast(), size, regs)
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => realloc(p, total),
        None => {
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

fn bad_alignment(func: &str, align: usize, why: &str) {
    let stack = stacks::here();
    report::emit(Report {
        kind: "invalid-alignment",
        message: format!("invalid alignment requested in {func}: {align:#x}, {why}"),
        address: align,
        thread: tls::tid(),
        stack,
        ..Report::default()
    });
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !memkit_alloc::glibc::posix_memalign_accepts(align) {
        bad_alignment(
            "posix_memalign",
            align,
            "not a power of two multiple of sizeof(void *)",
        );
        return EINVAL;
    }
    let p = checked_alloc(size, align.max(16), Kind::Malloc, false);
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller passes a valid out pointer.
    unsafe { *out = p };
    0
}

/// glibc's `memalign` rules: a non-power-of-two alignment is rounded up
/// (reported), absurd ones fail EINVAL.
fn memalign_impl(func: &str, align: usize, size: usize) -> *mut c_void {
    if align > 1 && !align.is_power_of_two() {
        bad_alignment(func, align, "not a power of two (glibc rounds it up)");
    }
    let Some(a) = memkit_alloc::glibc::memalign_alignment(align) else {
        set_errno(EINVAL);
        return null_mut();
    };
    checked_alloc(size, a.max(16), Kind::Malloc, false)
}

#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    memalign_impl("aligned_alloc", align, size)
}

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    memalign_impl("memalign", align, size)
}

#[unsafe(no_mangle)]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    checked_alloc(size, memkit_sys::OS_PAGE, Kind::Malloc, false)
}

#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(rounded) = memkit_alloc::glibc::pvalloc_size(size) else {
        set_errno(ENOMEM);
        return null_mut();
    };
    checked_alloc(rounded, memkit_sys::OS_PAGE, Kind::Malloc, false)
}

#[unsafe(no_mangle)]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    tls::inside(|| block::usable_size(p.cast()))
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

#[unsafe(no_mangle)]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}

#[unsafe(no_mangle)]
pub extern "C" fn __libc_free(p: *mut c_void) {
    free(p)
}

#[unsafe(no_mangle)]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    calloc(n, size)
}

#[unsafe(no_mangle)]
pub extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    realloc(p, size)
}

#[unsafe(no_mangle)]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}

#[unsafe(no_mangle)]
pub extern "C" fn __posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    posix_memalign(out, align, size)
}

/// `malloc_trim`: nothing to give back that the quarantine would not keep.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> i32 {
    0
}
