//! The malloc family with glibc 2.36's semantics. Each export is one call into
//! the core plus the argument rules glibc applies at its boundary.

use core::ffi::c_void;
use core::ptr::null_mut;

use memkit_alloc as core_alloc;
use memkit_sys::OS_PAGE;

use crate::{set_errno, EINVAL, ENOMEM};

#[inline(always)]
fn oom(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p.cast()
}

/// `malloc(3)`; `malloc(0)` returns a unique pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: any size is valid.
    unsafe { core_alloc::malloc_with::<crate::Enomem>(size) }.cast()
}

/// `free(3)`; keeps errno; ignores null and foreign pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the C contract of free.
    unsafe { core_alloc::free(p.cast()) }
}

/// `calloc(3)`: NULL + ENOMEM when `n * size` overflows.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: any sizes are valid.
    oom(unsafe { core_alloc::calloc(n, size) })
}

/// `realloc(3)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees p
/// and returns NULL (glibc's behaviour).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the C contract of realloc.
    unsafe {
        if p.is_null() {
            return malloc(size);
        }
        if size == 0 {
            core_alloc::free(p.cast());
            return null_mut();
        }
        oom(core_alloc::realloc(p.cast(), size))
    }
}

/// `reallocarray(3)`: NULL + ENOMEM on overflow, `p` untouched.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

/// `posix_memalign(3)`: EINVAL unless `align` is a power of two multiple of
/// `sizeof(void *)`; ENOMEM (returned, errno untouched) when memory is short.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !core_alloc::glibc::posix_memalign_accepts(align) {
        return EINVAL;
    }
    // SAFETY: a valid power-of-two alignment.
    let p = unsafe { core_alloc::aligned_alloc(align, size) };
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller passes a valid out pointer.
    unsafe { *out = p.cast() };
    0
}

/// glibc's `memalign` rules, shared by `aligned_alloc`: a non-power-of-two
/// alignment is rounded up to the next power of two; absurd ones fail EINVAL.
unsafe fn memalign_impl(align: usize, size: usize) -> *mut c_void {
    let Some(a) = core_alloc::glibc::memalign_alignment(align) else {
        set_errno(EINVAL);
        return null_mut();
    };
    // SAFETY: a valid power-of-two alignment.
    oom(unsafe { core_alloc::aligned_alloc(a, size) })
}

/// `aligned_alloc(3)`: glibc 2.36 accepts any alignment and treats it like
/// `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { memalign_impl(align, size) }
}

/// `memalign(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { memalign_impl(align, size) }
}

/// `valloc(3)`: page-aligned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { memalign_impl(OS_PAGE, size) }
}

/// `pvalloc(3)`: page-aligned, size rounded up to a whole page (at least one).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(rounded) = core_alloc::glibc::pvalloc_size(size) else {
        set_errno(ENOMEM);
        return null_mut();
    };
    // SAFETY: forwarded.
    unsafe { memalign_impl(OS_PAGE, rounded) }
}

/// `malloc_usable_size(3)`: 0 for NULL and foreign pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the C contract.
    unsafe { core_alloc::usable_size(p.cast()) }
}

/// `cfree`: an old alias of `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free(p) }
}

/// C23 `free_sized`: the size is a hint memkit does not need.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: forwarded.
    unsafe { free(p) }
}

/// C23 `free_aligned_sized`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded.
    unsafe { free(p) }
}

// glibc-internal aliases: some programs and libraries call these directly.

/// `__libc_malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { malloc(size) }
}

/// `__libc_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free(p) }
}

/// `__libc_calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { calloc(n, size) }
}

/// `__libc_realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { realloc(p, size) }
}

/// `__libc_memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { memalign(align, size) }
}

/// `__libc_valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { valloc(size) }
}

/// `__libc_pvalloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { pvalloc(size) }
}

/// `__posix_memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    // SAFETY: forwarded.
    unsafe { posix_memalign(out, align, size) }
}
