//! File mappings for `memkit::map`'s views: map a file shared, put a zero
//! page over one of its pages (from a SIGBUS handler: a raw system call,
//! async-signal-safe), map the file again over the view, flush, advise.
//! Growing and moving a mapping is [`crate::remap`].
//!
//! # Safety
//! The functions that take an address replace or change the memory behind
//! it: callers must own the range (see each function's `# Safety`).

use core::ffi::c_void;
use core::ptr::null_mut;

use rustix::fd::BorrowedFd;
use rustix::mm::{self, MapFlags, MsyncFlags, ProtFlags};

use crate::{Errno, OS_PAGE};

fn prot(writable: bool) -> ProtFlags {
    if writable {
        ProtFlags::READ | ProtFlags::WRITE
    } else {
        ProtFlags::READ
    }
}

/// Borrows the caller's open fd for one call (raw numbers: the no_std
/// `BorrowedFd` of rustix is not std's).
fn borrow(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: the callers name an fd they keep open for the call.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// `mmap(NULL, len, PROT_READ[|PROT_WRITE], MAP_SHARED, fd, 0)`; `fd` must
/// be open (for writing too if `writable`).
pub fn map_file(fd: i32, len: usize, writable: bool) -> Result<*mut u8, Errno> {
    // SAFETY: a new mapping at an address the kernel picks aliases nothing.
    let p = unsafe {
        mm::mmap(
            null_mut(),
            len,
            prot(writable),
            MapFlags::SHARED,
            borrow(fd),
            0,
        )
    }?;
    Ok(p.cast())
}

/// [`map_file`] at `p` (`MAP_FIXED`), replacing what is mapped there: the
/// view's pages are the file's again.
///
/// # Safety
/// `p..p+len` must be a mapping the caller owns and allows to be replaced.
pub unsafe fn map_file_at(p: *mut u8, fd: i32, len: usize, writable: bool) -> Result<(), Errno> {
    // SAFETY: the caller owns the range.
    unsafe {
        mm::mmap(
            p.cast::<c_void>(),
            len,
            prot(writable),
            MapFlags::SHARED | MapFlags::FIXED,
            borrow(fd),
            0,
        )
    }?;
    Ok(())
}

/// Puts a private page of zeros over the page at `page` (`MAP_FIXED |
/// MAP_PRIVATE | MAP_ANONYMOUS`). One system call, no libc, errno
/// untouched: safe in a signal handler.
///
/// # Safety
/// `page` must be page-aligned, inside a mapping the caller owns and
/// allows to be replaced.
pub unsafe fn map_zero_page(page: *mut u8, writable: bool) -> Result<(), Errno> {
    // SAFETY: the caller owns the page.
    unsafe {
        mm::mmap_anonymous(
            page.cast::<c_void>(),
            OS_PAGE,
            prot(writable),
            MapFlags::PRIVATE | MapFlags::FIXED,
        )
    }?;
    Ok(())
}

/// `msync(p, len, MS_SYNC)`: writes the mapping's dirty pages to the file
/// and waits.
///
/// # Safety
/// `p..p+len` must be a mapping the caller owns.
pub unsafe fn sync(p: *mut u8, len: usize) -> Result<(), Errno> {
    // SAFETY: the caller owns the range.
    unsafe { mm::msync(p.cast::<c_void>(), len, MsyncFlags::SYNC) }?;
    Ok(())
}

/// The `madvise` hints of a file view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// `MADV_SEQUENTIAL`: aggressive read-ahead, pages dropped soon after.
    Sequential,
    /// `MADV_RANDOM`: no read-ahead.
    Random,
    /// `MADV_WILLNEED`: start reading the pages in now.
    WillNeed,
    /// `MADV_DONTNEED`: drop the pages from the process now (a shared
    /// file mapping reads the file again; nothing written is lost).
    DontNeed,
    /// `MADV_HUGEPAGE`: back with transparent huge pages where the kernel
    /// and file system can.
    HugePage,
    /// `MADV_POPULATE_READ` (Linux 5.14+): fault every page in now
    /// (EINVAL on older kernels).
    PopulateRead,
}

/// `madvise(p, len, advice)`.
///
/// # Safety
/// `p..p+len` must be a shared file mapping the caller owns (none of these
/// hints changes what the pages read there).
pub unsafe fn advise(p: *mut u8, len: usize, advice: Advice) -> Result<(), Errno> {
    use rustix::mm::Advice as A;
    let a = match advice {
        Advice::Sequential => A::Sequential,
        Advice::Random => A::Random,
        Advice::WillNeed => A::WillNeed,
        Advice::DontNeed => A::LinuxDontNeed,
        Advice::HugePage => A::LinuxHugepage,
        Advice::PopulateRead => A::LinuxPopulateRead,
    };
    // SAFETY: the caller owns the range; a hint.
    unsafe { mm::madvise(p.cast::<c_void>(), len, a) }?;
    Ok(())
}
