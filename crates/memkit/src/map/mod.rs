//! File views: a file mapped into memory that survives the file being
//! truncated under it.
//!
//! ```no_run
//! use memkit::map::FileView;
//!
//! # fn main() -> std::io::Result<()> {
//! let view = FileView::open("/var/log/syslog")?;
//! view.sequential()?;
//! match view.read(|bytes: &[u8]| bytes.iter().filter(|&&b| b == b'\n').count()) {
//!     Ok(lines) => println!("{lines} lines"),
//!     Err(t) => eprintln!("the file shrank to {} bytes while we read it", t.new_len),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A plain mapping of a file that another process truncates dies of
//! `SIGBUS` at the first access past the new end. Here, a SIGBUS handler
//! that knows every open view maps a page of zeros over the faulting page
//! and flags the view; the access reads zeros, and [`FileView::read`]
//! returns `Err(`[`Truncated`]`)` with the file's new length. Faults
//! outside any view go to the handler installed before, so the process
//! dies of them as before. How it works and its limits: docs/MAP.md.
//!
//! What the views do not change: a file *modified* in place while a
//! closure reads it shows the new bytes (like every shared mapping; a
//! `&[u8]` of Rust promises they do not change, so treat such contents as
//! untrusted, or lock the file); writes into the pages past a new end of a
//! [`FileViewMut`] land in the zero pages and are lost (reported the same
//! way).

mod registry;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{compiler_fence, Ordering::SeqCst};

use memkit_sys::file_map::{self, Advice};

use registry::Registration;

/// The file shrank while a closure read (or wrote) its view: the pages past
/// the new end read as zeros during the closure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncated {
    /// The file's length after the closure (`stat`). Not below the
    /// view's length if the pages could not be read for another reason
    /// (an I/O error also raises `SIGBUS`).
    pub new_len: u64,
    /// The view's length.
    pub view_len: usize,
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the file was truncated to {} bytes while its {}-byte view was read; the pages past its end read as zeros",
            self.new_len, self.view_len
        )
    }
}

impl std::error::Error for Truncated {}

/// A mapped file and its registration (shared by both kinds of view).
#[derive(Debug)]
struct Mapping {
    file: File,
    ptr: *mut u8,
    len: usize,
    writable: bool,
    /// `None` for an empty view (nothing is mapped).
    reg: Option<Registration>,
}

// SAFETY: the mapping belongs to the view; shared access only reads it
// (and may replace pages with equal or zero contents, which readers are
// prepared for); writes need `&mut`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: File, writable: bool) -> io::Result<Mapping> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        let mut m = Mapping {
            file,
            ptr: std::ptr::NonNull::dangling().as_ptr(),
            len: 0,
            writable,
            reg: None,
        };
        m.map(len)?;
        Ok(m)
    }

    /// Maps `len` bytes of the file where nothing is mapped yet.
    fn map(&mut self, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let p = file_map::map_file(self.file.as_raw_fd(), len, self.writable).map_err(os_error)?;
        match &self.reg {
            Some(r) => r.set_range(p, len),
            None => match Registration::new(p, len, self.writable) {
                Ok(r) => self.reg = Some(r),
                Err(e) => {
                    // SAFETY: the mapping just made, not handed out.
                    unsafe { memkit_sys::unmap(p, len) };
                    return Err(e);
                }
            },
        }
        self.ptr = p;
        self.len = len;
        Ok(())
    }

    fn unmap(&mut self) {
        if self.len == 0 {
            return;
        }
        if let Some(r) = &self.reg {
            r.clear_range();
        }
        // SAFETY: our mapping, out of the handler's sight, no borrow left
        // (callers hold `&mut self` or drop the view).
        unsafe { memkit_sys::unmap(self.ptr, self.len) };
        self.ptr = std::ptr::NonNull::dangling().as_ptr();
        self.len = 0;
    }

    /// Runs `f` over the view; `Err` if the handler put zero pages in it
    /// meanwhile. Before and after, pages left zero by an earlier fault
    /// are the file's again.
    fn access<R>(&self, f: impl FnOnce(*mut u8, usize) -> R) -> Result<R, Truncated> {
        let Some(reg) = &self.reg else {
            return Ok(f(self.ptr, 0));
        };
        let before = reg.faults();
        self.restore(reg);
        // The closure's accesses stay between the two counts (the handler
        // runs on this thread, between any two of them).
        compiler_fence(SeqCst);
        let r = f(self.ptr, self.len);
        compiler_fence(SeqCst);
        if reg.faults() == before {
            return Ok(r);
        }
        self.restore(reg);
        Err(Truncated {
            new_len: self.file.metadata().map_or(0, |m| m.len()),
            view_len: self.len,
        })
    }

    /// Maps the file again over the whole view if zero pages cover part of
    /// it (best effort: if this fails, the pages stay zero and reads of
    /// them count no fault, so the mark is set again for the next try).
    fn restore(&self, reg: &Registration) {
        if reg.take_zeroed() {
            // SAFETY: our own mapping; the pages become the file's again,
            // which is what readers of the view expect (a page past the
            // end faults again and is answered again).
            let r = unsafe {
                file_map::map_file_at(self.ptr, self.file.as_raw_fd(), self.len, self.writable)
            };
            if r.is_err() {
                reg.mark_zeroed();
            }
        }
    }

    /// Makes the view `new` bytes long: maps it if it was empty, unmaps it
    /// for 0, else `mremap(MREMAP_MAYMOVE)`, the handler not seeing the
    /// view while it moves. A view that is not one mapping any more (zero
    /// pages that could not be replaced) is mapped afresh.
    fn resize(&mut self, new: usize) -> io::Result<()> {
        if new == self.len {
            return Ok(());
        }
        if self.len == 0 {
            return self.map(new);
        }
        if new == 0 {
            self.unmap();
            return Ok(());
        }
        let reg = self.reg.as_ref().expect("a non-empty view is registered");
        let page = memkit_sys::OS_PAGE;
        reg.clear_range();
        // SAFETY: our mapping, out of the handler's sight; `&mut self`
        // means no slice of it is alive.
        let moved = unsafe {
            memkit_sys::remap(
                self.ptr,
                self.len.next_multiple_of(page),
                new.next_multiple_of(page),
                true,
            )
        };
        match moved {
            Ok(p) => {
                reg.set_range(p, new);
                self.ptr = p;
                self.len = new;
                Ok(())
            }
            Err(_) => {
                self.unmap();
                self.map(new)
            }
        }
    }

    fn advise(&self, advice: Advice) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: our shared file mapping; no hint changes what it reads.
        unsafe { file_map::advise(self.ptr, self.len, advice) }.map_err(|e| {
            if advice == Advice::PopulateRead && e.0 == memkit_sys::protect::EINVAL {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "MADV_POPULATE_READ needs Linux 5.14 or later",
                )
            } else {
                os_error(e)
            }
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.unmap();
    }
}

fn os_error(e: memkit_sys::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.0)
}

/// What both views offer: length, reading, the `madvise` hints.
macro_rules! view_methods {
    () => {
        /// The view's length in bytes.
        pub fn len(&self) -> usize {
            self.map.len
        }

        /// Whether the view is empty.
        pub fn is_empty(&self) -> bool {
            self.map.len == 0
        }

        /// Calls `f` with the file's bytes. If the file shrinks meanwhile,
        /// the pages past its new end read as zeros instead of raising
        /// SIGBUS, and the result is `Err(Truncated)` with the new length
        /// (what `f` returned is dropped). Threads may read one view at
        /// once.
        pub fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, Truncated> {
            self.map.access(|p, len| {
                // SAFETY: p..p+len is our mapping (dangling, aligned for
                // len 0), readable for the closure: pages past the file's
                // end are answered with zeros by the handler; `&self`
                // excludes writers.
                f(unsafe { std::slice::from_raw_parts(p, len) })
            })
        }

        /// `MADV_SEQUENTIAL`: the view will be read front to back
        /// (aggressive read-ahead, pages dropped soon after use).
        pub fn sequential(&self) -> io::Result<()> {
            self.map.advise(Advice::Sequential)
        }

        /// `MADV_RANDOM`: the view will be read in no order (no read-ahead).
        pub fn random(&self) -> io::Result<()> {
            self.map.advise(Advice::Random)
        }

        /// `MADV_WILLNEED`: start reading the whole view in now.
        pub fn will_need(&self) -> io::Result<()> {
            self.map.advise(Advice::WillNeed)
        }

        /// `MADV_DONTNEED`: drop the view's pages from memory now; later
        /// reads fetch them from the file again (nothing written is lost:
        /// the mapping is shared).
        pub fn dont_need(&self) -> io::Result<()> {
            self.map.advise(Advice::DontNeed)
        }

        /// `MADV_HUGEPAGE`: back the view with transparent huge pages
        /// where the kernel and file system can (EINVAL without THP).
        pub fn hugepage(&self) -> io::Result<()> {
            self.map.advise(Advice::HugePage)
        }

        /// `MADV_POPULATE_READ`: fault the whole view in now, so later
        /// reads do not fault. Linux 5.14+; older kernels give an
        /// `Unsupported` error. Pages past the file's end make it fail
        /// (EFAULT) instead of raising SIGBUS.
        pub fn populate(&self) -> io::Result<()> {
            self.map.advise(Advice::PopulateRead)
        }
    };
}

/// A read-only view of a file. See the [module](self) documentation.
#[derive(Debug)]
pub struct FileView {
    map: Mapping,
}

impl FileView {
    /// Maps the whole file read-only (`MAP_SHARED`, `PROT_READ`); the
    /// view's length is the file's now. An empty file gives an empty view.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileView> {
        let file = File::open(path)?;
        Ok(FileView {
            map: Mapping::new(file, false)?,
        })
    }

    view_methods!();
}

/// A writable view of a file (`MAP_SHARED`, read-write): writes reach the
/// file; [`set_len`](Self::set_len) grows or shrinks file and view.
#[derive(Debug)]
pub struct FileViewMut {
    map: Mapping,
}

impl FileViewMut {
    /// Maps an existing file read-write.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileViewMut> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(FileViewMut {
            map: Mapping::new(file, true)?,
        })
    }

    /// Creates the file (emptying it if it exists) with `len` zero bytes,
    /// and maps it read-write.
    pub fn create(path: impl AsRef<Path>, len: u64) -> io::Result<FileViewMut> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len)?;
        Ok(FileViewMut {
            map: Mapping::new(file, true)?,
        })
    }

    /// Calls `f` with the file's bytes to change. If the file shrinks
    /// meanwhile, the pages past its new end are zero pages of this
    /// process: what `f` writes there is lost, and the result is
    /// `Err(Truncated)`.
    pub fn write<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, Truncated> {
        self.map.access(|p, len| {
            // SAFETY: p..p+len is our writable mapping; `&mut self` makes
            // this the only access.
            f(unsafe { std::slice::from_raw_parts_mut(p, len) })
        })
    }

    /// Sets the file's length to `len` (`ftruncate`) and the view's with it
    /// (`mremap`, which may move the view: it needs `&mut self`, so no
    /// slice of the old place is alive). Bytes past the old end read as
    /// zeros.
    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        let new = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large to map"))?;
        let m = &mut self.map;
        let old = m.len;
        if new > old {
            // The file first: the view never reaches past its end.
            m.file.set_len(len)?;
        }
        m.resize(new)?;
        if new <= old {
            m.file.set_len(len)?;
        }
        Ok(())
    }

    /// Writes the view's changes to the file and waits (`msync(MS_SYNC)`).
    pub fn flush(&self) -> io::Result<()> {
        if self.map.len == 0 {
            return Ok(());
        }
        // SAFETY: our mapping.
        unsafe { file_map::sync(self.map.ptr, self.map.len) }.map_err(os_error)
    }

    view_methods!();
}
