//! The export list, generated in the front-end's crate by [`exports!`].

/// Defines every export of the malloc family and the C++ operators in the
/// calling crate, over the backend type `$B` (see the crate docs).
///
/// `throwing_new = false`: the `nothrow` `operator new` forms and every
/// `operator delete` (libstdc++'s throwing `new` then calls our
/// `malloc`); `throwing_new = true` adds `_Znwm`, `_Znam` and their
/// `align_val_t` forms, so that a front-end sees (and tags) every C++
/// allocation itself; `throwing_new = first` the same, with `_Znwm` and
/// `_Znam` making one attempt through the `nothrow` path before the full
/// form (for a front-end whose failed attempt reports nothing, so that the
/// full form's second attempt repeats no report: libmemkit.so).
#[macro_export]
macro_rules! exports {
    ($B:ty, throwing_new = false) => {
        $crate::__malloc_family!($B);
        $crate::__operators!($B);
    };
    ($B:ty, throwing_new = true) => {
        $crate::__malloc_family!($B);
        $crate::__operators!($B);
        $crate::__throwing_new!($B, _Znwm(size: usize), "16", "1");
        $crate::__throwing_new!($B, _Znam(size: usize), "16", "2");
        $crate::__throwing_new!($B, _ZnwmSt11align_val_t(size: usize, align: usize), "rsi", "3");
        $crate::__throwing_new!($B, _ZnamSt11align_val_t(size: usize, align: usize), "rsi", "4");
    };
    ($B:ty, throwing_new = first) => {
        $crate::__malloc_family!($B);
        $crate::__operators!($B);
        $crate::__throwing_new!($B, _Znwm(size: usize), "16", "1", first);
        $crate::__throwing_new!($B, _Znam(size: usize), "16", "2", first);
        $crate::__throwing_new!($B, _ZnwmSt11align_val_t(size: usize, align: usize), "rsi", "3");
        $crate::__throwing_new!($B, _ZnamSt11align_val_t(size: usize, align: usize), "rsi", "4");
    };
}

/// The C malloc family: each export one call into [`c`](crate::c); the
/// aliases call the export they alias. The aliased exports are
/// `#[inline(never)]`: an alias is then a jump to its export, never a copy
/// of its body that the compiler merges with it into one address, which a
/// check front-end's stacks would name by either symbol (`__libc_malloc`
/// for a call of `malloc`).
#[doc(hidden)]
#[macro_export]
macro_rules! __malloc_family {
    ($B:ty) => {
        /// `malloc(3)`.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn malloc(size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: any size is valid.
            unsafe { $crate::c::malloc::<$B>(size) }
        }

        /// `free(3)`; keeps errno; ignores null and foreign pointers.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn free(p: *mut ::core::ffi::c_void) {
            // SAFETY: the C contract of free.
            unsafe { $crate::c::free::<$B>(p) }
        }

        /// `calloc(3)`.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: any sizes are valid.
            unsafe { $crate::c::calloc::<$B>(n, size) }
        }

        /// `realloc(3)`.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn realloc(
            p: *mut ::core::ffi::c_void,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: the C contract of realloc.
            unsafe { $crate::c::realloc::<$B>(p, size) }
        }

        /// `reallocarray(3)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn reallocarray(
            p: *mut ::core::ffi::c_void,
            n: usize,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: the C contract of realloc.
            unsafe { $crate::c::reallocarray::<$B>(p, n, size, realloc) }
        }

        /// `posix_memalign(3)`.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn posix_memalign(
            out: *mut *mut ::core::ffi::c_void,
            align: usize,
            size: usize,
        ) -> i32 {
            // SAFETY: the caller passes a valid out pointer.
            unsafe { $crate::c::posix_memalign::<$B>(out, align, size) }
        }

        /// `aligned_alloc(3)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn aligned_alloc(
            align: usize,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: any arguments are valid.
            unsafe { $crate::c::aligned_alloc::<$B>(align, size) }
        }

        /// `memalign(3)`.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: any arguments are valid.
            unsafe { $crate::c::memalign::<$B>(align, size) }
        }

        /// `valloc(3)`.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn valloc(size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: any size is valid.
            unsafe { $crate::c::valloc::<$B>(size) }
        }

        /// `pvalloc(3)`.
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub unsafe extern "C" fn pvalloc(size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: any size is valid.
            unsafe { $crate::c::pvalloc::<$B>(size) }
        }

        /// `malloc_usable_size(3)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn malloc_usable_size(p: *mut ::core::ffi::c_void) -> usize {
            // SAFETY: the C contract.
            unsafe { $crate::c::usable_size::<$B>(p) }
        }

        /// `cfree`: an old alias of `free`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn cfree(p: *mut ::core::ffi::c_void) {
            // SAFETY: forwarded.
            unsafe { free(p) }
        }

        /// C23 `free_sized`: `size` must be the size the block was
        /// allocated with (a hint to libmemkit.so, checked by check mode).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn free_sized(p: *mut ::core::ffi::c_void, size: usize) {
            // SAFETY: forwarded.
            unsafe { $crate::c::free_sized::<$B>(p, size, "free_sized") }
        }

        /// C23 `free_aligned_sized`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn free_aligned_sized(
            p: *mut ::core::ffi::c_void,
            _align: usize,
            size: usize,
        ) {
            // SAFETY: forwarded.
            unsafe { $crate::c::free_sized::<$B>(p, size, "free_aligned_sized") }
        }

        // glibc-internal aliases: some programs and libraries call these.

        /// `__libc_malloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: forwarded.
            unsafe { malloc(size) }
        }

        /// `__libc_free`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __libc_free(p: *mut ::core::ffi::c_void) {
            // SAFETY: forwarded.
            unsafe { free(p) }
        }

        /// `__libc_calloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: forwarded.
            unsafe { calloc(n, size) }
        }

        /// `__libc_realloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __libc_realloc(
            p: *mut ::core::ffi::c_void,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: forwarded.
            unsafe { realloc(p, size) }
        }

        /// `__libc_memalign`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __libc_memalign(
            align: usize,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: forwarded.
            unsafe { memalign(align, size) }
        }

        /// `__libc_valloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: forwarded.
            unsafe { valloc(size) }
        }

        /// `__libc_pvalloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut ::core::ffi::c_void {
            // SAFETY: forwarded.
            unsafe { pvalloc(size) }
        }

        /// `__posix_memalign`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn __posix_memalign(
            out: *mut *mut ::core::ffi::c_void,
            align: usize,
            size: usize,
        ) -> i32 {
            // SAFETY: forwarded.
            unsafe { posix_memalign(out, align, size) }
        }
    };
}

/// The `nothrow` `operator new` forms and every `operator delete`.
#[doc(hidden)]
#[macro_export]
macro_rules! __operators {
    ($B:ty) => {
        /// `operator new(size_t, const std::nothrow_t&)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _ZnwmRKSt9nothrow_t(
            size: usize,
            _nt: *const ::core::ffi::c_void,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: any size is valid.
            unsafe { $crate::cxx::new_nothrow::<$B>(size, $crate::Kind::New) }
        }

        /// `operator new[](size_t, const std::nothrow_t&)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _ZnamRKSt9nothrow_t(
            size: usize,
            _nt: *const ::core::ffi::c_void,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: any size is valid.
            unsafe { $crate::cxx::new_nothrow::<$B>(size, $crate::Kind::NewArray) }
        }

        /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
            size: usize,
            align: usize,
            _nt: *const ::core::ffi::c_void,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: any arguments are valid.
            unsafe { $crate::cxx::new_aligned_nothrow::<$B>(size, align, $crate::Kind::NewAligned) }
        }

        /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
            size: usize,
            align: usize,
            _nt: *const ::core::ffi::c_void,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: any arguments are valid.
            unsafe { $crate::cxx::new_aligned_nothrow::<$B>(size, align, $crate::Kind::NewArrayAligned) }
        }

        $crate::__delete! { $B;
            _ZdlPv() => New;
            _ZdaPv() => NewArray;
            _ZdlPvSt11align_val_t(align: usize) => NewAligned;
            _ZdaPvSt11align_val_t(align: usize) => NewArrayAligned;
            _ZdlPvRKSt9nothrow_t(nt: *const ::core::ffi::c_void) => New;
            _ZdaPvRKSt9nothrow_t(nt: *const ::core::ffi::c_void) => NewArray;
            _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const ::core::ffi::c_void) => NewAligned;
            _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const ::core::ffi::c_void) => NewArrayAligned;
        }
        $crate::__delete_sized! { $B;
            _ZdlPvm() => New;
            _ZdaPvm() => NewArray;
            _ZdlPvmSt11align_val_t(align: usize) => NewAligned;
            _ZdaPvmSt11align_val_t(align: usize) => NewArrayAligned;
        }
    };
}

/// One `operator delete` form per line: its mangled name, its arguments
/// after the pointer (hints, unused), the kind it frees.
#[doc(hidden)]
#[macro_export]
macro_rules! __delete {
    ($B:ty; $($name:ident ( $($arg:ident : $ty:ty),* ) => $kind:ident;)*) => {$(
        #[doc = concat!("C++ `", stringify!($name), "` (a form of operator delete).")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut ::core::ffi::c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: the C contract of free.
            unsafe { $crate::cxx::delete::<$B>(p, $crate::Kind::$kind) }
        }
    )*};
}

/// The sized `operator delete` forms: the pointer, the size the program
/// names (the size its `new` asked for), the other arguments (hints,
/// unused), the kind they free.
#[doc(hidden)]
#[macro_export]
macro_rules! __delete_sized {
    ($B:ty; $($name:ident ( $($arg:ident : $ty:ty),* ) => $kind:ident;)*) => {$(
        #[doc = concat!("C++ `", stringify!($name), "` (a sized form of operator delete).")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut ::core::ffi::c_void, size: usize $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: the C contract of free.
            unsafe { $crate::cxx::delete_sized::<$B>(p, size, $crate::Kind::$kind) }
        }
    )*};
}

/// A throwing `operator new` form (see [`cxx`](crate::cxx)): one attempt
/// through [`try_new`](crate::cxx::try_new) with the size (`rdi`), the
/// alignment (`$align`: a register or 16) and the kind (1 `new`, 2
/// `new[]`, 3 and 4 their `align_val_t` forms: [`Kind`](crate::Kind)); while it fails, the `new_handler` if there is one, then
/// `std::__throw_bad_alloc()` through `r11`, from this frame.
///
/// Naked functions, not `global_asm!`: a cdylib exports only the Rust
/// items it marks `no_mangle`; symbols defined in `global_asm!` become
/// local and the linker drops them.
#[doc(hidden)]
#[macro_export]
macro_rules! __throwing_new {
    // The forms without an alignment try once through the `nothrow` path
    // first, from a frame of one word (the size, kept for the full path
    // below): the common case costs a call and a test more than `malloc`.
    ($B:ty, $name:ident ($($arg:ident: $ty:ty),*), $align:literal, $kind:literal, first) => {
        $crate::__throwing_new!(@emit $B, $name ($($arg: $ty),*), $align, $kind, [
            "push rdi",
            ".cfi_adjust_cfa_offset 8",
            concat!("mov esi, ", $kind),
            "call {first}",
            "pop rdi",
            ".cfi_adjust_cfa_offset -8",
            "test rax, rax",
            "jz 1f",
            "ret",
            // No memory: the full form, with the size in rdi again.
            "1:",
        ] [first = sym $crate::cxx::try_new_plain::<$B>,]);
    };
    ($B:ty, $name:ident ($($arg:ident: $ty:ty),*), $align:literal, $kind:literal) => {
        $crate::__throwing_new!(@emit $B, $name ($($arg: $ty),*), $align, $kind, [] []);
    };
    (@emit $B:ty, $name:ident ($($arg:ident: $ty:ty),*), $align:literal, $kind:literal,
        [$($pre:expr,)*] [$($ops:tt)*]) => {
        #[doc = concat!("C++ `", stringify!($name), "` (a throwing form of operator new).")]
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) -> *mut ::core::ffi::c_void {
            ::core::arch::naked_asm!(
                ".cfi_startproc",
                $($pre,)*
                "push rbx",
                ".cfi_adjust_cfa_offset 8",
                ".cfi_offset rbx, -16",
                "push r12",
                ".cfi_adjust_cfa_offset 8",
                ".cfi_offset r12, -24",
                "push r13",
                ".cfi_adjust_cfa_offset 8",
                ".cfi_offset r13, -32",
                "mov rbx, rdi",
                concat!("mov r12, ", $align),
                concat!("mov r13, ", $kind),
                "2:",
                "mov rdi, rbx",
                "mov rsi, r12",
                "mov rdx, r13",
                "call {try_new}",
                "test rax, rax",
                "jnz 3f",
                "call {handler}",
                "test rax, rax",
                "jz 4f",
                "call rax",
                "jmp 2b",
                // The block is in rax; r11 = 0: return it.
                "3:",
                "xor r11d, r11d",
                // One epilogue: return, or jump to where r11 points.
                "5:",
                "pop r13",
                ".cfi_adjust_cfa_offset -8",
                "pop r12",
                ".cfi_adjust_cfa_offset -8",
                "pop rbx",
                ".cfi_adjust_cfa_offset -8",
                "test r11, r11",
                "jnz 6f",
                "ret",
                "6:",
                "jmp r11",
                ".cfi_adjust_cfa_offset 24",
                // No memory and no handler: std::__throw_bad_alloc().
                "4:",
                "call {throw}",
                "mov r11, rax",
                "jmp 5b",
                ".cfi_endproc",
                $($ops)*
                try_new = sym $crate::cxx::try_new::<$B>,
                handler = sym $crate::cxx::new_handler,
                throw = sym $crate::cxx::throw_target,
            )
        }
    };
}
