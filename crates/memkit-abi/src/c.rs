//! The malloc family with glibc 2.36's semantics over a [`Backend`]: what
//! each export does, argument rules included (`malloc(0)` is a block,
//! `realloc(p, 0)` frees, overflow is ENOMEM, alignments as glibc takes
//! them, `posix_memalign` returns its error). Each function is inlined
//! into its export ([`exports!`](crate::exports)).

use core::ffi::c_void;
use core::ptr::null_mut;

use memkit_sys::OS_PAGE;

use crate::{glibc, set_errno, Backend, Edge, Kind, EINVAL, ENOMEM, MIN_ALIGN};

/// `malloc(3)`; `malloc(0)` returns a unique pointer.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn malloc<B: Backend>(size: usize) -> *mut c_void {
    let site = B::site();
    // SAFETY: any size, the minimum alignment.
    unsafe { B::alloc(size, MIN_ALIGN, false, Kind::Malloc, site) }.cast()
}

/// `free(3)`; ignores null (the backend's test: libmemkit.so's `free`
/// finds null where it finds any pointer it never handed out, off its fast
/// path).
///
/// # Safety
/// The C contract of `free`.
#[inline(always)]
pub unsafe fn free<B: Backend>(p: *mut c_void) {
    let site = B::site();
    // SAFETY: the C contract of free.
    unsafe { B::free(p.cast(), Kind::Malloc, "free", site) }
}

/// C23 `free_sized` and `free_aligned_sized` (`call`): `size` must be what
/// the block was allocated with ([`Backend::free_sized`]).
///
/// # Safety
/// The C contract of `free`.
#[inline(always)]
pub unsafe fn free_sized<B: Backend>(p: *mut c_void, size: usize, call: &'static str) {
    let site = B::site();
    // SAFETY: forwarded.
    unsafe { B::free_sized(p.cast(), size, Kind::Malloc, call, site) }
}

/// `calloc(3)`: NULL + ENOMEM when `n * size` overflows.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn calloc<B: Backend>(n: usize, size: usize) -> *mut c_void {
    let site = B::site();
    match n.checked_mul(size) {
        // SAFETY: any size, the minimum alignment.
        Some(total) => unsafe { B::alloc(total, MIN_ALIGN, true, Kind::Malloc, site) }.cast(),
        None => {
            B::edge(Edge::CallocOverflow { n, size }, site);
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

/// `realloc(3)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees
/// `p` and returns NULL (glibc's behaviour).
///
/// # Safety
/// The C contract of `realloc`.
#[inline(always)]
pub unsafe fn realloc<B: Backend>(p: *mut c_void, size: usize) -> *mut c_void {
    let site = B::site();
    // SAFETY: the C contract of realloc; glibc's special cases first.
    unsafe {
        if p.is_null() {
            return B::alloc(size, MIN_ALIGN, false, Kind::Malloc, site).cast();
        }
        if size == 0 {
            B::free(p.cast(), Kind::Malloc, "realloc", site);
            return null_mut();
        }
        B::realloc(p.cast(), size, site).cast()
    }
}

/// `reallocarray(3)`: NULL + ENOMEM on overflow, `p` untouched; else
/// `realloc` (the export, passed in: calling it rather than inlining a
/// second copy keeps the core's `realloc` inlined into its one export).
///
/// # Safety
/// As [`realloc`].
#[inline(always)]
pub unsafe fn reallocarray<B: Backend>(
    p: *mut c_void,
    n: usize,
    size: usize,
    realloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            B::edge(Edge::ReallocarrayOverflow { n, size }, B::site());
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

/// `posix_memalign(3)`: EINVAL unless `align` is a power-of-two multiple
/// of `sizeof(void *)`; ENOMEM (returned; errno as it was) when memory is
/// short; `*out` written only on success.
///
/// # Safety
/// `out` is valid for a write.
#[inline(always)]
pub unsafe fn posix_memalign<B: Backend>(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    let site = B::site();
    if !glibc::posix_memalign_accepts(align) {
        B::edge(Edge::PosixMemalignAlignment { align }, site);
        return EINVAL;
    }
    let saved = crate::errno();
    // SAFETY: a power-of-two alignment.
    let p = unsafe { B::alloc(size, align, false, Kind::Malloc, site) };
    if p.is_null() {
        set_errno(saved);
        return ENOMEM;
    }
    // SAFETY: the caller passes a valid out pointer.
    unsafe { *out = p.cast() };
    0
}

/// glibc's `memalign` rules, shared by `aligned_alloc`, `memalign` and the
/// aligned `operator new` forms: a non-power-of-two alignment is rounded
/// up to the next power of two; one with none above it fails EINVAL.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn memalign_at<B: Backend>(
    call: &'static str,
    align: usize,
    size: usize,
    kind: Kind,
    site: B::Site,
) -> *mut c_void {
    if align > 1 && !align.is_power_of_two() {
        B::edge(Edge::AlignmentRoundedUp { call, align }, site);
    }
    let Some(a) = glibc::memalign_alignment(align) else {
        set_errno(EINVAL);
        return null_mut();
    };
    // SAFETY: a power-of-two alignment.
    unsafe { B::alloc(size, a, false, kind, site) }.cast()
}

/// `aligned_alloc(3)`: glibc 2.36 accepts any alignment and treats it like
/// `memalign`.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn aligned_alloc<B: Backend>(align: usize, size: usize) -> *mut c_void {
    let site = B::site();
    if align == 0 {
        B::edge(
            Edge::AlignmentZero {
                call: "aligned_alloc",
            },
            site,
        );
    }
    // SAFETY: forwarded.
    unsafe { memalign_at::<B>("aligned_alloc", align, size, Kind::Malloc, site) }
}

/// `memalign(3)`.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn memalign<B: Backend>(align: usize, size: usize) -> *mut c_void {
    let site = B::site();
    // SAFETY: forwarded.
    unsafe { memalign_at::<B>("memalign", align, size, Kind::Malloc, site) }
}

/// `valloc(3)`: page-aligned.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn valloc<B: Backend>(size: usize) -> *mut c_void {
    let site = B::site();
    // SAFETY: a power-of-two alignment.
    unsafe { B::alloc(size, OS_PAGE, false, Kind::Malloc, site) }.cast()
}

/// `pvalloc(3)`: page-aligned, the size rounded up to whole pages (at
/// least one); NULL + ENOMEM when that overflows.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn pvalloc<B: Backend>(size: usize) -> *mut c_void {
    let site = B::site();
    let Some(rounded) = glibc::pvalloc_size(size) else {
        set_errno(ENOMEM);
        return null_mut();
    };
    // SAFETY: a power-of-two alignment.
    unsafe { B::alloc(rounded, OS_PAGE, false, Kind::Malloc, site) }.cast()
}

/// `malloc_usable_size(3)`: 0 for NULL and for pointers that are no block.
///
/// # Safety
/// `p` is null, a block of the backend, or something it recognises as
/// not one.
#[inline(always)]
pub unsafe fn usable_size<B: Backend>(p: *mut c_void) -> usize {
    let site = B::site();
    // SAFETY: forwarded.
    unsafe { B::usable_size(p.cast(), site) }
}
