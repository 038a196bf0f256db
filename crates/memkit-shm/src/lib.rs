//! memkit's shared-memory heaps: a heap inside a POSIX shared-memory
//! object (`/dev/shm/NAME`) or a memfd, that any number of processes map
//! (at whatever address: everything shared is an offset) and allocate
//! from, and that a process killed at any instant cannot leave
//! inconsistent.
//!
//! This crate is the mechanism, shared by the C API (`memkit_shm_*` in
//! libmemkit.so, `include/memkit-shm.h`) and the Rust API
//! (`memkit::shm`). It is `#![no_std]` and never calls `malloc`: handles
//! are values the front-ends place, every structure lives in the shared
//! mapping, messages are static strings. Design: `docs/SHM.md`.
//!
//! - [`layout`]: what the object holds, where;
//! - [`alloc`]: the allocator over it (64 KiB slab spans of 56 size
//!   classes with a bitmap each, runs of 4 KiB units for large blocks),
//!   each change committed by one store;
//! - [`repair`]: the consistency check, and the rebuild after a holder of
//!   the lock died;
//! - [`registry`]: attached processes and the reclaiming of dead ones'
//!   caches;
//! - [`heap`]: the handle (create, open, close, the locks, the
//!   per-process caches, named objects, statistics);
//! - [`inspect`]: a heap seen from outside (`memkit shm ls`): read from
//!   its bytes, nothing trusted, no slot taken.
//!
//! # Safety
//! The shared structures are read and written through raw pointers into
//! the mapping, under the heap's robust process-shared lock (or by the
//! only process that owns a slot); every `unsafe` block names what it
//! relies on. A process that writes over the heap's metadata (outside the
//! blocks it was given) can corrupt it: [`Heap::check`] finds it, and the
//! allocator never follows an offset it did not check against the
//! geometry.
#![cfg_attr(not(test), no_std)]

pub mod alloc;
pub mod crash;
pub mod heap;
pub mod inspect;
pub mod layout;
pub mod registry;
pub mod repair;
pub mod view;

pub use heap::{Creator, Heap, NamedInfo, Stats};
pub use memkit_sys::Errno;
pub use repair::Problems;
