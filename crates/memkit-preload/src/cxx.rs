//! C++ `operator delete` (every variant) and the `nothrow` forms of
//! `operator new`.
//!
//! The throwing `operator new` forms are deliberately *not* exported: Rust
//! cannot throw `std::bad_alloc`, and aborting instead would break programs
//! that catch it or install a `new_handler`. libstdc++'s own `operator new`
//! calls `malloc` / `aligned_alloc`, which are ours, so every C++ allocation
//! still comes from memkit, with the standard's failure semantics intact.
//! The `nothrow` forms return NULL on failure, as the standard allows when no
//! `new_handler` is installed.

use core::ffi::c_void;

use crate::exports::{free, malloc, memalign};

/// `operator new(size_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { malloc(size) }
}

/// `operator new[](size_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { malloc(size) }
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { memalign(align, size) }
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { memalign(align, size) }
}

macro_rules! delete {
    ($($name:ident ( $($arg:ident : $ty:ty),* );)*) => {$(
        #[doc = concat!("C++ `", stringify!($name), "` (a form of operator delete).")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: forwarded.
            unsafe { free(p) }
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
