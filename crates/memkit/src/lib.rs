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
//! Further capabilities (layout, secure memory, locking, shared-memory heaps,
//! stack buffers) arrive as modules of this crate.

#![warn(missing_docs)]

mod global;
pub mod layout;
pub mod lock;
pub mod secure;

pub use global::MemKit;
pub use memkit_alloc::AllocStats as Stats;

/// A snapshot of the allocator's statistics, summed over all threads.
pub fn stats() -> Stats {
    memkit_alloc::stats()
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
