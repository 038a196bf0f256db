//! C++ `operator new` and `operator delete` over a [`Backend`].
//!
//! Every `operator delete` form and the `nothrow` forms of `operator new`
//! are plain calls: a `nothrow` new returns NULL when memory is short, as
//! the standard allows when no `new_handler` is installed.
//!
//! The throwing forms must call the `new_handler` and retry, or throw
//! `std::bad_alloc`. An exception cannot pass through a Rust frame in a
//! `panic = "abort"` library, so when a front-end exports them
//! (`throwing_new = true`) they are naked functions in assembly (with CFI,
//! so that both the C++ unwinder and memkit-trace walk through them): they
//! call into Rust only for one attempt ([`try_new`]) and to look up the
//! handler, and call the handler — or jump to libstdc++'s
//! `std::__throw_bad_alloc()` — from their own frame. A front-end that
//! leaves them out (libmemkit.so) gets libstdc++'s own throwing `new`,
//! which calls its `malloc` / `aligned_alloc` and has the standard's
//! failure semantics.

use core::ffi::c_void;

use crate::{c, Backend, Kind, MIN_ALIGN};

/// `operator new(size_t, const std::nothrow_t&)` and its array form.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn new_nothrow<B: Backend>(size: usize, kind: Kind) -> *mut c_void {
    let site = B::site();
    // SAFETY: any size, the minimum alignment.
    unsafe { B::alloc(size, MIN_ALIGN, false, kind, site) }.cast()
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)` and
/// its array form: the alignment as `memalign` takes it.
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(always)]
pub unsafe fn new_aligned_nothrow<B: Backend>(
    size: usize,
    align: usize,
    kind: Kind,
) -> *mut c_void {
    let site = B::site();
    // SAFETY: forwarded.
    unsafe { c::memalign_at::<B>(kind.alloc_name(), align, size, kind, site) }
}

/// Every `operator delete` form (sizes and alignments are hints memkit
/// does not need).
///
/// # Safety
/// The C contract of `free`.
#[inline(always)]
pub unsafe fn delete<B: Backend>(p: *mut c_void, kind: Kind) {
    let site = B::site();
    // SAFETY: forwarded.
    unsafe { B::free(p.cast(), kind, kind.free_name(), site) }
}

/// The sized `operator delete` forms: `size` is what the matching `new`
/// was asked for (a hint, or checked: [`Backend::free_sized`]).
///
/// # Safety
/// The C contract of `free`.
#[inline(always)]
pub unsafe fn delete_sized<B: Backend>(p: *mut c_void, size: usize, kind: Kind) {
    let site = B::site();
    // SAFETY: forwarded.
    unsafe { B::free_sized(p.cast(), size, kind, kind.free_name(), site) }
}

/// One attempt of a throwing `new` (null when memory is short), called by
/// the naked functions with `kind` as [`Kind::from_raw`] reads it.
pub extern "C" fn try_new<B: Backend>(size: usize, align: usize, kind: usize) -> *mut c_void {
    let kind = Kind::from_raw(kind);
    let site = B::site();
    // SAFETY: forwarded (the unaligned forms pass MIN_ALIGN).
    unsafe { c::memalign_at::<B>(kind.alloc_name(), align, size, kind, site) }
}

/// The first attempt of the throwing `new` forms without an alignment
/// (`operator new(size_t)`, `operator new[](size_t)`): the `nothrow`
/// form's one allocation, null when memory is short.
pub extern "C" fn try_new_plain<B: Backend>(size: usize, kind: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { new_nothrow::<B>(size, Kind::from_raw(kind)) }
}

/// The current `new_handler`, 0 when none is installed.
pub extern "C" fn new_handler() -> usize {
    let get = lookup(c"_ZSt15get_new_handlerv");
    if get == 0 {
        return 0;
    }
    // SAFETY: std::get_new_handler() takes nothing and returns a function
    // pointer (or null).
    let get: extern "C" fn() -> usize = unsafe { core::mem::transmute(get) };
    get()
}

/// `std::__throw_bad_alloc()`, where a throwing `new` with no memory and
/// no handler jumps (aborts with a message when libstdc++ is absent).
pub extern "C" fn throw_target() -> usize {
    match lookup(c"_ZSt17__throw_bad_allocv") {
        0 => {
            let _ = memkit_sys::write_all(
                2,
                b"memkit: operator new: out of memory and no libstdc++ to throw std::bad_alloc; aborting\n",
            );
            // SAFETY: abort has no preconditions.
            unsafe { abort() }
        }
        f => f,
    }
}

/// A symbol of the program's global scope (RTLD_DEFAULT: libstdc++ is
/// there if the program uses `new`), 0 when absent.
fn lookup(name: &core::ffi::CStr) -> usize {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT is null.
    unsafe { dlsym(core::ptr::null_mut(), name.as_ptr()) as usize }
}

// Only the throwing forms reach these: a front-end that does not export
// them (libmemkit.so) links neither.
unsafe extern "C" {
    fn dlsym(handle: *mut c_void, name: *const core::ffi::c_char) -> *mut c_void;
    fn abort() -> !;
}
