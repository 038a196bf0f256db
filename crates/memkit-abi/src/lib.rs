//! The C ABI edge of memkit's preloaded libraries: one export list, one set
//! of C++ operators and one place for glibc 2.36's argument rules, over a
//! [`Backend`] that each front-end supplies.
//!
//! A front-end (libmemkit.so, libmemkit_check.so, libmemkit_profile.so) is
//! a type implementing [`Backend`] — allocate, free, resize, usable size,
//! and what to do at glibc's edges — and one line:
//!
//! ```text
//! memkit_abi::exports!(crate::exports::Fast, throwing_new = false);
//! ```
//!
//! which defines, in the calling crate, every export of the malloc family
//! (`malloc` … `pvalloc`, `malloc_usable_size`, C23's sized frees, glibc's
//! `__libc_*` aliases) and every C++ `operator delete` and `nothrow`
//! `operator new`; `throwing_new = true` adds the four throwing forms
//! ([`cxx`]). Each export is one call of an `#[inline(always)]` function of
//! [`c`] or [`cxx`] monomorphised over the backend, so the backend's code
//! is inlined into the export's own frame: libmemkit.so's `malloc` is
//! still the core's fast path ending in a tail call, and a backend that
//! records stacks captures them in [`Backend::site`], from the export the
//! program called.
//!
//! A front-end is chosen by which library is preloaded: each is its own
//! `.so` with its own backend, picked by the command that preloads it
//! (`memkit run`: libmemkit.so, `memkit check`: libmemkit_check.so,
//! `memkit profile`: libmemkit_profile.so). Nothing is decided at run time
//! on the fast path.
//!
//! # Safety
//! The exports take raw pointers from C and trust the C contract of the
//! function they replace; a backend promises (by implementing the unsafe
//! trait) that what it hands out is memory the program may use.
#![no_std]

pub mod c;
pub mod core_info;
pub mod cxx;
mod exports;
pub mod info;

pub use memkit_alloc::glibc;

/// `ENOMEM`.
pub const ENOMEM: i32 = 12;
/// `EINVAL`.
pub const EINVAL: i32 = 22;
/// The alignment of every block (`max_align_t`), what `malloc` gives.
pub const MIN_ALIGN: usize = memkit_alloc::MIN_ALIGN;

unsafe extern "C" {
    fn __errno_location() -> *mut i32;
}

/// Sets the calling thread's `errno`.
#[inline(always)]
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *__errno_location() = e };
}

/// The calling thread's `errno`.
#[inline(always)]
pub fn errno() -> i32 {
    // SAFETY: as in set_errno.
    unsafe { *__errno_location() }
}

/// `p`, with `errno = ENOMEM` when it is null: for backends whose
/// allocator does not set errno itself.
#[inline(always)]
pub fn oom<T>(p: *mut T) -> *mut T {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p
}

/// How a block was allocated, hence how it must be freed: a check
/// front-end reports `alloc-dealloc-mismatch` when they differ. The
/// `align_val_t` forms of `new` are kinds of their own: C++ requires the
/// `align_val_t` form of `delete` for them, and the plain form for the
/// others ([new.delete.single]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The malloc family (`malloc`, `calloc`, `realloc`, the aligned
    /// calls); freed by `free` or `realloc`.
    Malloc = 0,
    /// `operator new`; freed by `operator delete`.
    New = 1,
    /// `operator new[]`; freed by `operator delete[]`.
    NewArray = 2,
    /// `operator new(size_t, std::align_val_t)`; freed by
    /// `operator delete(void *, std::align_val_t)`.
    NewAligned = 3,
    /// `operator new[](size_t, std::align_val_t)`; freed by
    /// `operator delete[](void *, std::align_val_t)`.
    NewArrayAligned = 4,
}

impl Kind {
    /// The call that allocates this kind, as reports name it.
    pub fn alloc_name(self) -> &'static str {
        match self {
            Kind::Malloc => "malloc",
            Kind::New => "operator new",
            Kind::NewArray => "operator new []",
            Kind::NewAligned => "operator new (align_val_t)",
            Kind::NewArrayAligned => "operator new [] (align_val_t)",
        }
    }

    /// The operator that frees this kind (`free` for [`Kind::Malloc`]).
    pub fn free_name(self) -> &'static str {
        match self {
            Kind::Malloc => "free",
            Kind::New => "operator delete",
            Kind::NewArray => "operator delete []",
            Kind::NewAligned => "operator delete (align_val_t)",
            Kind::NewArrayAligned => "operator delete [] (align_val_t)",
        }
    }

    /// From the number a throwing `operator new` passes (its kind), or
    /// the number [`Kind`] `as usize` gives.
    #[inline]
    pub fn from_raw(k: usize) -> Kind {
        match k {
            4 => Kind::NewArrayAligned,
            3 => Kind::NewAligned,
            2 => Kind::NewArray,
            1 => Kind::New,
            _ => Kind::Malloc,
        }
    }
}

/// A call at one of glibc's edges: refused (the export returns what glibc
/// returns) or bent (a non-power-of-two alignment rounded up). A backend
/// may report it ([`Backend::edge`]); the export's result does not depend
/// on what the backend does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// `calloc(n, size)` with `n * size` overflowing: NULL, ENOMEM.
    CallocOverflow { n: usize, size: usize },
    /// `reallocarray(p, n, size)` with `n * size` overflowing: NULL,
    /// ENOMEM, `p` untouched.
    ReallocarrayOverflow { n: usize, size: usize },
    /// `posix_memalign` with an alignment that is no power-of-two multiple
    /// of `sizeof(void *)`: EINVAL, `*memptr` untouched.
    PosixMemalignAlignment { align: usize },
    /// `memalign`, `aligned_alloc` or an aligned `operator new` with an
    /// alignment (above 1) that is no power of two: glibc rounds it up to
    /// the next one (or fails with EINVAL when there is none).
    AlignmentRoundedUp { call: &'static str, align: usize },
    /// `aligned_alloc(0, size)`: no valid alignment (C11; glibc 2.38 fails
    /// it with EINVAL), which glibc 2.36 serves as `malloc(size)`.
    AlignmentZero { call: &'static str },
}

/// What a front-end does under the exports.
///
/// Every method is called from an export's own frame and should be
/// `#[inline(always)]`: the exports are the only frames between the
/// program and the backend's own code, and libmemkit.so's fast paths must
/// stay what the core's are.
///
/// # Safety
/// Implementing this promises that [`alloc`](Backend::alloc) and
/// [`realloc`](Backend::realloc) return null or a block of at least `size`
/// bytes aligned to `max(align, MIN_ALIGN)` (zeroed when asked), valid
/// until it is passed to [`free`](Backend::free) or `realloc`, and that
/// [`usable_size`](Backend::usable_size) never exceeds what may be
/// written.
pub unsafe trait Backend {
    /// What the backend keeps of the calling point (a check or profiling
    /// front-end: the registers to unwind from; libmemkit.so: nothing).
    type Site: Copy;

    /// Taken first in each export, so inlined into the export's frame:
    /// an unwinder started from it begins at the function the program
    /// called.
    fn site() -> Self::Site;

    /// A block of `size` bytes aligned to `align` (a power of two, at
    /// least 1), zeroed when `zero`, allocated as `kind`. Null when memory
    /// is short, with `errno` set to ENOMEM (by the backend: libmemkit.so
    /// sets it in the core's slow path, so that `malloc` stays a tail
    /// call).
    ///
    /// # Safety
    /// Always safe to call; unsafe because it hands out raw memory.
    unsafe fn alloc(size: usize, align: usize, zero: bool, kind: Kind, site: Self::Site)
        -> *mut u8;

    /// Frees `p`, which the program frees as `kind` through `call`
    /// (`"free"`, `"realloc"`, `"operator delete"` …, for reports). `p` may
    /// be null (nothing to do): the test is the backend's, so that it can
    /// sit off the fast path.
    ///
    /// # Safety
    /// The C contract of `free`: `p` is null, a block of this backend, or
    /// something the backend must recognise as not one.
    unsafe fn free(p: *mut u8, kind: Kind, call: &'static str, site: Self::Site);

    /// A free that names the block's size: C++'s sized `operator delete`
    /// forms and C23's `free_sized`/`free_aligned_sized`, whose `size`
    /// must be the size the block was allocated with. By default the size
    /// is a hint nobody needs, and this is [`free`](Backend::free).
    ///
    /// # Safety
    /// As [`free`](Backend::free).
    #[inline(always)]
    unsafe fn free_sized(
        p: *mut u8,
        size: usize,
        kind: Kind,
        call: &'static str,
        site: Self::Site,
    ) {
        let _ = size;
        // SAFETY: forwarded.
        unsafe { Self::free(p, kind, call, site) }
    }

    /// `realloc` of a non-null `p` to a non-zero `size` (glibc's special
    /// cases are the caller's). Null with `errno = ENOMEM` when memory is
    /// short (`p` then untouched), or when `p` cannot be resized.
    ///
    /// # Safety
    /// The C contract of `realloc`.
    unsafe fn realloc(p: *mut u8, size: usize, site: Self::Site) -> *mut u8;

    /// `malloc_usable_size(p)`: bytes the program may write, 0 for null and
    /// for a pointer that is no live block.
    ///
    /// # Safety
    /// `p` is null, a block of this backend, or something it recognises as
    /// not one.
    unsafe fn usable_size(p: *mut u8, site: Self::Site) -> usize;

    /// A call at one of glibc's edges; nothing by default.
    #[inline(always)]
    fn edge(e: Edge, site: Self::Site) {
        let _ = (e, site);
    }
}

#[cfg(test)]
mod tests;
