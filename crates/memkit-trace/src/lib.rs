//! Stack capture and symbolization for memkit's check mode and profiler.
//!
//! * [`unwind`]: capture on every allocation and free — DWARF call frame
//!   information behind a per-pc rule cache; no lock, no allocation after a
//!   pc's first sight, every stack read bounds-checked;
//! * [`modules`]: the objects frames point into, recorded at capture (path
//!   and load bias), so stacks outlive `dlclose`;
//! * [`depot`]: each distinct stack stored once, named by a 32-bit id;
//! * [`thread`]: the calling thread's stack bounds;
//! * [`symbolize`]: report time — function, file and line, demangled.
//!
//! Why not frame pointers alone: Debian builds its binaries and glibc
//! without them, so a frame-pointer walk stops (or wanders) in the first
//! libc or distribution frame. Why not libgcc's `_Unwind_Backtrace`: it
//! parses the frame description afresh on every frame of every capture.
//! Why not framehop: it wants each module registered (and removed) by hand,
//! with its sections copied; `_dl_find_object` already gives glibc's own,
//! lock-free view of what is mapped.

pub mod depot;
pub mod modules;
pub mod symbolize;
pub mod thread;
pub mod unwind;
