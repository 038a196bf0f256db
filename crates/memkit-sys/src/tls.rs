//! Initial-exec thread-local words for code that may end up in
//! libmemkit.so.
//!
//! glibc requires a replacement malloc to use the initial-exec TLS model
//! (`thread_local!` in a cdylib is global-dynamic and calls
//! `__tls_get_addr`, which may call `free`). Stable Rust cannot choose a
//! TLS model, so [`tls_word!`](crate::tls_word) declares the word in `.tbss` with
//! `global_asm!` and reads it through `@GOTTPOFF`, which the linker turns
//! into a plain `%fs:` access (STATIC_TLS in a shared object). In an
//! executable the same code is a `%fs:` access too. Every word starts at 0
//! in every thread (or at the address it is declared with); a thread made by
//! `fork` keeps its parent thread's value.
//!
//! The allocator's heap pointer (`memkit-alloc`'s `tls`) and the stack
//! bounds of [`crate::stack`] are such words.

/// Declares `mod $name` with `get() -> usize` and `set(usize)` over one
/// zero-initialised, initial-exec thread-local word named `$sym` (hidden:
/// each linked object has its own). With `init = &STATIC`, every thread's
/// word starts as that static's address instead (in `.tdata`).
#[macro_export]
macro_rules! tls_word {
    ($(#[$m:meta])* $vis:vis mod $name:ident = $sym:literal, init = &$init:path;) => {
        $(#[$m])*
        $vis mod $name {
            // In `.tdata`: every thread's copy starts as the address of
            // `$init` (the dynamic linker relocates the initialisation
            // image before it copies it into any thread's block).
            $crate::tls_word!(@word $sym, ".tdata,\"awT\",@progbits", ".quad {init}", init = sym $init);
            $crate::tls_word!(@access $sym);
        }
    };
    ($(#[$m:meta])* $vis:vis mod $name:ident = $sym:literal;) => {
        $(#[$m])*
        $vis mod $name {
            $crate::tls_word!(@word $sym, ".tbss,\"awT\",@nobits", ".zero 8");
            $crate::tls_word!(@access $sym);
        }
    };
    (@word $sym:literal, $section:literal, $data:literal $(, $op:ident = sym $path:path)?) => {
        core::arch::global_asm!(
            concat!(".pushsection ", $section),
            ".p2align 3",
            concat!(".globl ", $sym),
            concat!(".hidden ", $sym),
            concat!(".type ", $sym, ",@object"),
            concat!(".size ", $sym, ",8"),
            concat!($sym, ":"),
            $data,
            ".popsection",
            $($op = sym $path,)?
        );
    };
    (@access $sym:literal) => {
        /// This thread's value of the word.
        #[inline(always)]
        pub fn get() -> usize {
            let v: usize;
            // SAFETY: reads this thread's copy of the 8-byte TLS word
            // declared above.
            unsafe {
                core::arch::asm!(
                    concat!("mov {tmp}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    "mov {v}, qword ptr fs:[{tmp}]",
                    tmp = out(reg) _, v = out(reg) v,
                    options(nostack, readonly, preserves_flags, pure),
                );
            }
            v
        }

        /// Sets this thread's value of the word.
        #[inline(always)]
        pub fn set(v: usize) {
            // SAFETY: writes this thread's copy of the TLS word declared
            // above.
            unsafe {
                core::arch::asm!(
                    concat!("mov {tmp}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    "mov qword ptr fs:[{tmp}], {v}",
                    tmp = out(reg) _, v = in(reg) v,
                    options(nostack, preserves_flags),
                );
            }
        }
    };
}

/// Declares `fn $name() -> &'static $ty`: this thread's copy of a
/// zero-initialised, initial-exec thread-local block of `$size` bytes
/// named `$sym` (hidden), for per-thread state of several fields.
///
/// `$ty` must be `#[repr(C)]`, at most `$size` bytes (checked), valid when
/// all-zero, and made of `Cell`s: the reference is to the calling thread's
/// copy, which no other thread touches.
#[macro_export]
macro_rules! tls_block {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> $ty:ty = $sym:literal, $size:literal;) => {
        core::arch::global_asm!(
            ".pushsection .tbss,\"awT\",@nobits",
            ".p2align 4",
            concat!(".globl ", $sym),
            concat!(".hidden ", $sym),
            concat!(".type ", $sym, ",@object"),
            concat!(".size ", $sym, ",", $size),
            concat!($sym, ":"),
            concat!(".zero ", $size),
            ".popsection",
        );
        const _: () = assert!(core::mem::size_of::<$ty>() <= $size);

        $(#[$m])*
        #[inline(always)]
        $vis fn $name() -> &'static $ty {
            let p: usize;
            // SAFETY: the thread pointer (fs:0) plus the block's static TLS
            // offset is this thread's copy of the zeroed bytes declared
            // above, as large as the type and valid when zero. `nomem`: the
            // two words read (the GOT slot, fs:0) never change for a given
            // thread, so the compiler may compute the address once per
            // function.
            unsafe {
                core::arch::asm!(
                    concat!("mov {p}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    "add {p}, qword ptr fs:[0]",
                    p = out(reg) p,
                    options(nostack, nomem, preserves_flags, pure),
                );
                &*(p as *const $ty)
            }
        }
    };
}
