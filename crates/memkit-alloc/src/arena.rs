//! Heaps that are no thread's: [`Arena`], a heap over a memory source of
//! its own ([`crate::source`]): the OS ([`Arena::new`]), a file descriptor
//! mapped shared ([`Arena::with_fd`]), or any [`Source`]
//! ([`Arena::with_source`]). The mechanism and its rules are in
//! `heap/arena.rs`; in short:
//!
//! * one thread at a time allocates from an arena (`Arena` is `Send`, not
//!   `Sync`); any thread may free its blocks, any time, with
//!   [`crate::free`] (or [`Arena::free`], the same);
//! * dropping the arena frees every block in it (`mi_heap_destroy`);
//! * an fd arena's blocks live in the file at offset `p - base`
//!   ([`Arena::mapping`]), where another process that maps the file reads
//!   them; the arena's metadata (its heap struct, and the segment headers'
//!   pointers, which are absolute) is this process's only. For heaps that
//!   several processes allocate from, see `memkit-shm`.

use core::ptr::NonNull;

use crate::heap::{self, Heap};
pub use crate::source::{FdSource, Source, FD_MAX, OS};
pub use memkit_sys::Errno;

/// A heap over its own memory source; destroyed (every block freed) when
/// dropped.
pub struct Arena {
    heap: NonNull<Heap>,
}

// SAFETY: an arena may move to another thread (the one-user rule holds);
// it is not Sync: two threads must not allocate from it at once.
unsafe impl Send for Arena {}

impl Arena {
    /// An arena over the OS source (private anonymous mappings). None when
    /// no memory is left for its heap struct.
    pub fn new() -> Option<Arena> {
        // SAFETY: the OS source is static.
        unsafe { Self::with_source(&OS) }
    }

    /// An arena over `src`.
    ///
    /// # Safety
    /// `src`'s functions behave as [`Source`] documents, and it outlives
    /// the arena (and every block of it).
    pub unsafe fn with_source(src: *const Source) -> Option<Arena> {
        // SAFETY: per the contract.
        NonNull::new(unsafe { heap::arena::create(src, core::ptr::null_mut()) })
            .map(|heap| Arena { heap })
    }

    /// An arena over the first `max` bytes (rounded up to 4 MiB) of the
    /// open file `fd` (a memfd, a file in /dev/shm), mapped shared; the
    /// file is grown to that length if shorter, and may be closed
    /// afterwards. Errors: EINVAL for `max` 0 or above [`FD_MAX`], else
    /// that of `fstat`, `ftruncate` or `mmap`; ENOMEM without a heap struct.
    pub fn with_fd(fd: i32, max: usize) -> Result<Arena, Errno> {
        let src = FdSource::create(fd, max)?;
        // SAFETY: the arena owns and releases the source.
        match NonNull::new(unsafe { heap::arena::create(src.cast(), src) }) {
            Some(heap) => Ok(Arena { heap }),
            None => {
                // SAFETY: our fresh source, unused.
                unsafe { FdSource::destroy(src, true) };
                Err(Errno(12))
            }
        }
    }

    /// `size` bytes aligned to 16; null when memory is exhausted.
    pub fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: a live arena; &self and !Sync give one user at a time.
        unsafe { heap::arena::alloc(self.heap.as_ptr(), size) }
    }

    /// `n * size` zeroed bytes; null on overflow or exhaustion.
    pub fn alloc_zeroed(&self, n: usize, size: usize) -> *mut u8 {
        // SAFETY: as in alloc.
        unsafe { heap::arena::calloc(self.heap.as_ptr(), n, size) }
    }

    /// `size` bytes aligned to `align` (a power of two; above 4 MiB only
    /// over the OS source); null otherwise or when memory is exhausted.
    pub fn alloc_aligned(&self, align: usize, size: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            return core::ptr::null_mut();
        }
        // SAFETY: as in alloc.
        unsafe { heap::arena::alloc_aligned(self.heap.as_ptr(), align, size) }
    }

    /// Frees a block of any arena or heap, from any thread: the same as
    /// [`crate::free`].
    ///
    /// # Safety
    /// As [`crate::free`].
    pub unsafe fn free(p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { crate::free(p) }
    }

    /// An fd arena's mapping of its file: where offset 0 is, and how many
    /// bytes. None for other arenas.
    pub fn mapping(&self) -> Option<(*mut u8, usize)> {
        // SAFETY: a live arena.
        unsafe { heap::arena::mapping(self.heap.as_ptr()) }
    }

    /// Checks the arena's structures (tests and debugging).
    pub fn check(&self) -> bool {
        // SAFETY: the arena's user owns it.
        unsafe { heap::check(self.heap.as_ptr()) }
    }

    /// The heap behind the arena, which is then not destroyed on drop
    /// (the C API keeps it as `memkit_heap_t *`).
    pub fn into_raw(self) -> *mut Heap {
        let h = self.heap.as_ptr();
        core::mem::forget(self);
        h
    }

    /// The arena behind a heap from [`Arena::into_raw`].
    ///
    /// # Safety
    /// `h` came from `into_raw` and is not owned by another `Arena`.
    pub unsafe fn from_raw(h: *mut Heap) -> Option<Arena> {
        NonNull::new(h).map(|heap| Arena { heap })
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the arena's user destroys it; its blocks die with it.
        unsafe { heap::arena::destroy(self.heap.as_ptr()) }
    }
}
