//! Heaps that are no thread's: [`Heap`], memkit's allocator over a memory
//! source of the heap's own, the OS or a file mapped shared (mimalloc's
//! `mi_heap_t` shape).
//!
//! ```no_run
//! use std::alloc::Layout;
//! # fn main() -> std::io::Result<()> {
//! let file = std::fs::File::options().read(true).write(true).create(true)
//!     .open("/dev/shm/frames")?;
//! let heap = memkit::heap::Heap::with_fd(&file, 64 << 20)?;
//! let p = heap.alloc(Layout::new::<[u64; 8]>()).expect("memory");
//! // Another process that maps /dev/shm/frames reads the block here:
//! let offset = heap.offset_of(p.as_ptr()).unwrap();
//! # let _ = offset;
//! # Ok(()) }
//! ```
//!
//! One thread at a time allocates from a heap (`Heap` is `Send`, not
//! `Sync`); any thread may free its blocks ([`Heap::free`], the same as
//! freeing any memkit block). Dropping the heap frees every block in it.
//! An fd heap's bookkeeping is this process's only: other processes read
//! and write its blocks but must not allocate or free there (for that, see
//! [`crate::shm`]). A forked child may read an fd heap's blocks, not
//! allocate from it. Design: docs/DESIGN.md ("Heaps that are no thread's").

use std::alloc::Layout;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use memkit_alloc::arena::Arena;

/// A heap over its own memory source; every block is freed when it drops.
pub struct Heap(Arena);

impl Heap {
    /// A heap over private anonymous memory.
    pub fn new() -> io::Result<Heap> {
        Arena::new()
            .map(Heap)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
    }

    /// A heap over the first `max` bytes (rounded up to 4 MiB, at most
    /// 64 GiB) of `file`, mapped shared; the file is grown to that length
    /// if shorter. Blocks lie at offset [`Heap::offset_of`] in the file.
    pub fn with_fd(file: &impl AsRawFd, max: usize) -> io::Result<Heap> {
        Arena::with_fd(file.as_raw_fd(), max)
            .map(Heap)
            .map_err(|e| io::Error::from_raw_os_error(e.0))
    }

    /// A block for `layout`; None when memory is exhausted.
    pub fn alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        NonNull::new(self.0.alloc_aligned(layout.align(), layout.size()))
    }

    /// A zeroed block for `layout`.
    pub fn alloc_zeroed(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() <= 16 {
            return NonNull::new(self.0.alloc_zeroed(1, layout.size()));
        }
        let p = self.alloc(layout)?;
        // SAFETY: a fresh block of layout.size() bytes.
        unsafe { p.as_ptr().write_bytes(0, layout.size()) };
        Some(p)
    }

    /// Frees a block of any heap, from any thread.
    ///
    /// # Safety
    /// `p` is null or a live block of memkit's, not used afterwards.
    pub unsafe fn free(p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { Arena::free(p) }
    }

    /// An fd heap's mapping of its file: where offset 0 is, and its length.
    pub fn mapping(&self) -> Option<(*mut u8, usize)> {
        self.0.mapping()
    }

    /// The file offset of `p`, a pointer into an fd heap's mapping.
    pub fn offset_of(&self, p: *const u8) -> Option<usize> {
        let (base, len) = self.mapping()?;
        let off = (p as usize).checked_sub(base as usize)?;
        (off < len).then_some(off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn an_fd_heap_block_is_in_the_file_at_its_offset() {
        let path = std::env::temp_dir().join(format!("memkit-heap-{}", std::process::id()));
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let heap = Heap::with_fd(&file, 8 << 20).unwrap();
        let p = heap
            .alloc(Layout::from_size_align(11, 64).unwrap())
            .unwrap();
        assert_eq!(p.as_ptr() as usize % 64, 0);
        // SAFETY: a block of 11 bytes.
        unsafe { p.as_ptr().copy_from(b"hello, file".as_ptr(), 11) };
        let mut got = [0u8; 11];
        file.read_exact_at(&mut got, heap.offset_of(p.as_ptr()).unwrap() as u64)
            .unwrap();
        assert_eq!(&got, b"hello, file");
        let z = heap.alloc_zeroed(Layout::new::<[u64; 100]>()).unwrap();
        // SAFETY: 800 zeroed bytes.
        assert!(unsafe { std::slice::from_raw_parts(z.as_ptr(), 800) }
            .iter()
            .all(|&b| b == 0));
        // SAFETY: live blocks.
        unsafe { Heap::free(z.as_ptr()) };
        drop(heap);
        let _ = std::fs::remove_file(path);
        assert!(Heap::new().unwrap().alloc(Layout::new::<u8>()).is_some());
    }
}
