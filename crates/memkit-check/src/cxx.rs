//! Every C++ `operator new` and `operator delete`, so that mismatches
//! (`malloc`/`delete`, `new`/`free`, `new[]`/`delete`, `new`/`delete[]`)
//! are seen.
//!
//! A throwing `new` that finds no memory must call the `new_handler` and
//! retry, or throw `std::bad_alloc`. An exception cannot pass through a
//! Rust frame in a `panic = "abort"` library, so the four throwing forms
//! are written in assembly (with CFI, so that both the C++ unwinder and
//! memkit-trace walk through them): they call into Rust only to allocate
//! and to look up the handler, and call the handler — or jump to
//! libstdc++'s `std::__throw_bad_alloc()` — from their own frame.

use core::ffi::{c_void, CStr};

use crate::exports::{checked_alloc, checked_free};
use crate::table::Kind;

fn kind_of(k: usize) -> Kind {
    match k {
        2 => Kind::NewArray,
        _ => Kind::New,
    }
}

/// One attempt of a throwing `new` (null when memory is short).
#[unsafe(no_mangle)]
extern "C" fn memkit_check_try_new(size: usize, align: usize, kind: usize) -> *mut c_void {
    checked_alloc(size, align.max(16), kind_of(kind), false)
}

fn lookup(name: &CStr) -> usize {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the
    // program's global scope (libstdc++ is there if the program uses new).
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
}

/// The current `new_handler` (null when none is installed).
#[unsafe(no_mangle)]
extern "C" fn memkit_check_new_handler() -> usize {
    let get = lookup(c"_ZSt15get_new_handlerv");
    if get == 0 {
        return 0;
    }
    // SAFETY: std::get_new_handler() takes nothing and returns a function pointer.
    let get: extern "C" fn() -> usize = unsafe { core::mem::transmute(get) };
    get()
}

/// Where a failed throwing `new` jumps: `std::__throw_bad_alloc()`.
#[unsafe(no_mangle)]
extern "C" fn memkit_check_throw_target() -> usize {
    match lookup(c"_ZSt17__throw_bad_allocv") {
        0 => {
            crate::report::warn(
                "operator new: out of memory and no libstdc++ to throw std::bad_alloc",
            );
            // SAFETY: abort has no preconditions.
            unsafe { libc::abort() }
        }
        f => f,
    }
}

// Naked functions, not `global_asm!`: a cdylib exports only the Rust
// items it marks `no_mangle`, so symbols defined in `global_asm!` become
// local and the linker drops them — the program's `new` was then
// libstdc++'s (calling `malloc`), and every correct `delete` a mismatch.
macro_rules! throwing_new {
    ($(#[$doc:meta])* $name:ident ($($arg:ident: $ty:ty),*), $align_reg:literal, $kind:literal) => {
        $(#[$doc])*
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            core::arch::naked_asm!(
                ".cfi_startproc",
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
                concat!("mov r12, ", $align_reg),
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
                try_new = sym memkit_check_try_new,
                handler = sym memkit_check_new_handler,
                throw = sym memkit_check_throw_target,
            )
        }
    };
}

throwing_new!(
    /// `operator new(size_t)`.
    _Znwm(size: usize), "16", "1"
);
throwing_new!(
    /// `operator new[](size_t)`.
    _Znam(size: usize), "16", "2"
);
throwing_new!(
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t(size: usize, align: usize), "rsi", "1"
);
throwing_new!(
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t(size: usize, align: usize), "rsi", "2"
);

/// `operator new(size_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    checked_alloc(size, 16, Kind::New, false)
}

/// `operator new[](size_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    checked_alloc(size, 16, Kind::NewArray, false)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    checked_alloc(size, align.max(16), Kind::New, false)
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
#[unsafe(no_mangle)]
pub extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    checked_alloc(size, align.max(16), Kind::NewArray, false)
}

macro_rules! delete {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) => $kind:expr, $what:literal;)*) => {$(
        #[doc = concat!("C++ `", $what, "`.")]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(p: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            checked_free(p, $kind, $what)
        }
    )*};
}

delete! {
    _ZdlPv() => Kind::New, "operator delete";
    _ZdaPv() => Kind::NewArray, "operator delete []";
    _ZdlPvm(size: usize) => Kind::New, "operator delete";
    _ZdaPvm(size: usize) => Kind::NewArray, "operator delete []";
    _ZdlPvSt11align_val_t(align: usize) => Kind::New, "operator delete";
    _ZdaPvSt11align_val_t(align: usize) => Kind::NewArray, "operator delete []";
    _ZdlPvmSt11align_val_t(size: usize, align: usize) => Kind::New, "operator delete";
    _ZdaPvmSt11align_val_t(size: usize, align: usize) => Kind::NewArray, "operator delete []";
    _ZdlPvRKSt9nothrow_t(nt: *const c_void) => Kind::New, "operator delete";
    _ZdaPvRKSt9nothrow_t(nt: *const c_void) => Kind::NewArray, "operator delete []";
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void) => Kind::New, "operator delete";
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void) => Kind::NewArray, "operator delete []";
}
