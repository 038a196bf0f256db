//! memkit for Rust programs.
//!
//! [`MemKit`] is memkit's allocator as a `#[global_allocator]`:
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: memkit::MemKit = memkit::MemKit;
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     println!("{} in use", memkit::stats().in_use());
//! }
//! ```
//!
//! It is the same allocator `libmemkit.so` puts under C programs, linked
//! statically: a program can use both (each keeps its own heaps).
//! Further capabilities are modules of this crate: [`layout`] (a process's
//! memory layout), [`secure`] (secrets), [`lock`] (memory locking),
//! [`stack`] (stack buffers with a heap fallback), [`map`] (file views that
//! survive truncation), [`shm`] (heaps shared between processes), [`heap`]
//! (heaps that are no thread's, over the OS or a file mapped shared).

#![warn(missing_docs)]

mod global;
pub mod heap;
pub mod layout;
pub mod lock;
pub mod map;
pub mod secure;
pub mod shm;
pub mod stack;

pub use global::MemKit;
pub use memkit_alloc::AllocStats as Stats;

/// A snapshot of the allocator's statistics, summed over all threads.
pub fn stats() -> Stats {
    memkit_alloc::stats()
}

/// An I/O error as `strerror(3)` words it ("No such file or directory"),
/// without the " (os error 2)" that `io::Error`'s Display appends: for
/// messages that read like a shell's.
pub fn describe_io(err: &std::io::Error) -> String {
    let text = err.to_string();
    match err.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

/// Returns free memory to the OS now; the number of bytes released.
pub fn trim() -> u64 {
    memkit_alloc::trim()
}

/// Raw entry points of the allocator core, for code that manages memory by
/// hand (and for memkit's own tests).
pub mod raw {
    pub use memkit_alloc::{
        aligned_alloc, calloc, check_thread_heap, free, malloc, realloc, usable_size,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_strerror() {
        let err = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe_io(&err), "No such file or directory");
        let err = std::io::Error::other("custom");
        assert_eq!(describe_io(&err), "custom");
    }
}
