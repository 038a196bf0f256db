//! Shared-memory heaps: a heap inside a POSIX shared-memory object
//! (`/dev/shm/NAME`) or a memfd that several processes open and allocate
//! from, each at its own address.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use memkit::shm::{SharedHeap, ShmBox};
//!
//! # fn main() -> std::io::Result<()> {
//! let heap = SharedHeap::create("/jobs", 16 << 20)?;
//! // A counter every process finds by name.
//! let (counter, _created) = heap.named::<AtomicU64>("counter")?;
//! heap.get(counter).unwrap().fetch_add(1, Ordering::Relaxed);
//! // A block to hand to another process by its offset.
//! let job = ShmBox::new_in(&heap, [0u64; 8])?;
//! let handed_over = ShmBox::into_ptr(job).offset();
//! # let _ = handed_over;
//! # Ok(()) }
//! ```
//!
//! The same implementation as the C API (`include/memkit-shm.h`); what a
//! heap holds and why a process killed at any instant cannot corrupt it
//! is in `docs/SHM.md`.
//!
//! # What may live in a shared heap
//! Only types that mean the same in every process: no absolute pointers
//! (a `Box`, `&T`, `String`, `Vec` point into one process), and values
//! another process may have written with any bits. [`ShmSafe`] marks such
//! types; [`ShmPtr`] is the pointer that works everywhere (an offset).
//!
//! # Sharing and races
//! Other processes are outside Rust's borrow checker. A reference into the
//! heap is therefore safe to get only for types whose every change goes
//! through atomics ([`ShmShared`]: [`SharedHeap::get`]); for plain data,
//! [`SharedHeap::deref`] and [`SharedHeap::deref_mut`] are `unsafe` and
//! the caller rules out concurrent writers — with the heap's robust lock
//! ([`SharedHeap::lock`]) or a protocol of its own.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of, ManuallyDrop};
use std::ops::{Deref, DerefMut};
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic;

use memkit_shm::Heap;

pub use memkit_shm::{Creator, Stats};

/// The largest alignment a block of a shared heap has (every block starts
/// on a 16-byte boundary).
pub const MAX_ALIGN: usize = 16;

/// The longest key of a named object, in bytes.
pub const KEY_MAX: usize = memkit_shm::layout::KEY_MAX;

/// The smallest and largest heap sizes.
pub const MIN_SIZE: u64 = memkit_shm::layout::MIN_SIZE;
/// See [`MIN_SIZE`].
pub const MAX_SIZE: u64 = memkit_shm::layout::MAX_SIZE;

fn err(e: memkit_shm::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.0)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

// ---------------------------------------------------------------------------
// What may live in a heap
// ---------------------------------------------------------------------------

/// Types that can live in a shared heap.
///
/// # Safety
/// Implement it only for a type whose every bit pattern is a valid value
/// (another process may write anything; a heap's new named objects are
/// zeroed) and that holds no absolute pointer and nothing tied to one
/// process (file descriptors, handles into the process's own heap):
/// integers, floats, atomics, arrays of them, [`ShmPtr`], and `#[repr(C)]`
/// structs made of them.
pub unsafe trait ShmSafe: Sized {}

/// [`ShmSafe`] types that may be shared by reference with other processes
/// without a lock: every change to them through `&self` is atomic.
///
/// # Safety
/// As [`ShmSafe`], and no method of the type reachable from `&self` writes
/// memory other than by atomic operations (no `Cell`, no `UnsafeCell`
/// outside atomics).
pub unsafe trait ShmShared: ShmSafe {}

macro_rules! shm_safe {
    ($($t:ty),*) => { $(
        // SAFETY: every bit pattern is a value; no pointers.
        unsafe impl ShmSafe for $t {}
    )* };
}
macro_rules! shm_shared {
    ($($t:ty),*) => { $(
        // SAFETY: every bit pattern is a value; no pointers.
        unsafe impl ShmSafe for $t {}
        // SAFETY: every change through `&self` is atomic.
        unsafe impl ShmShared for $t {}
    )* };
}
shm_safe!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);
shm_shared!(
    atomic::AtomicU8,
    atomic::AtomicU16,
    atomic::AtomicU32,
    atomic::AtomicU64,
    atomic::AtomicUsize,
    atomic::AtomicI8,
    atomic::AtomicI16,
    atomic::AtomicI32,
    atomic::AtomicI64,
    atomic::AtomicIsize
);
// SAFETY: an array of valid values is valid; no pointers added.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
// SAFETY: as the elements.
unsafe impl<T: ShmShared, const N: usize> ShmShared for [T; N] {}

/// A pointer into a shared heap that means the same in every process that
/// has it open: the block's offset from the heap's start. `ShmPtr::null()`
/// (offset 0) points nowhere.
///
/// Resolving one ([`SharedHeap::get`], [`SharedHeap::resolve`]) checks
/// that the whole `T` lies inside the heap and is aligned, so a pointer
/// read from memory another process wrote is never followed outside the
/// mapping.
#[repr(transparent)]
pub struct ShmPtr<T> {
    offset: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> ShmPtr<T> {
    /// The pointer to nothing.
    pub const fn null() -> Self {
        Self::from_offset(0)
    }

    /// The pointer at `offset` (as [`ShmPtr::offset`] or
    /// `memkit_shm_offset` gave it).
    pub const fn from_offset(offset: u64) -> Self {
        ShmPtr {
            offset,
            _t: PhantomData,
        }
    }

    /// Its offset from the heap's start; 0 for null.
    pub const fn offset(self) -> u64 {
        self.offset
    }

    /// Whether it points nowhere.
    pub const fn is_null(self) -> bool {
        self.offset == 0
    }
}

impl<T> Clone for ShmPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ShmPtr<T> {}
impl<T> PartialEq for ShmPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset
    }
}
impl<T> Eq for ShmPtr<T> {}
impl<T> Default for ShmPtr<T> {
    fn default() -> Self {
        Self::null()
    }
}
impl<T> fmt::Debug for ShmPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShmPtr({:#x})", self.offset)
    }
}
// SAFETY: a u64; every value is valid (resolving checks it).
unsafe impl<T> ShmSafe for ShmPtr<T> {}

// ---------------------------------------------------------------------------
// The heap
// ---------------------------------------------------------------------------

/// One process's handle on a shared heap. Closing it (dropping it) gives
/// its cached blocks back; the heap lives on until unlinked and closed by
/// everyone.
///
/// `Send` and `Sync`: any thread may use it.
pub struct SharedHeap {
    // Boxed: the handle must not move once threads use it.
    heap: Box<Heap>,
}

impl fmt::Debug for SharedHeap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedHeap")
            .field("size", &self.heap.size())
            .field("writable", &self.heap.writable())
            .finish()
    }
}

impl SharedHeap {
    /// Creates the heap `/dev/shm/NAME` (`name` with its leading slash, as
    /// for `shm_open`) of `size` bytes (rounded up to 4 KiB, 256 KiB to
    /// 64 GiB), mode 0600, every page reserved now (never a SIGBUS later).
    ///
    /// Errors: `AlreadyExists` (EEXIST), EINVAL for a name without its
    /// slash or a size out of range, ENOSPC/ENOMEM when /dev/shm cannot
    /// hold it.
    pub fn create(name: &str, size: u64) -> io::Result<SharedHeap> {
        Self::create_with_mode(name, size, 0o600)
    }

    /// [`SharedHeap::create`] with the file mode `mode` (exactly, not
    /// masked by the umask).
    pub fn create_with_mode(name: &str, size: u64, mode: u32) -> io::Result<SharedHeap> {
        if mode == 0 || mode & !0o777 != 0 {
            return Err(invalid("the mode is 0 or has bits beyond 0o777"));
        }
        Heap::create(name.as_bytes(), size, mode)
            .map(Self::boxed)
            .map_err(err)
    }

    /// An anonymous heap (a memfd) for the processes this one starts: a
    /// forked child keeps using this handle; an exec'd one gets the fd
    /// ([`SharedHeap::fd`], close-on-exec: `dup2` it first) and
    /// [`SharedHeap::open_fd`].
    pub fn create_anon(size: u64) -> io::Result<SharedHeap> {
        Heap::create_anon(size).map(Self::boxed).map_err(err)
    }

    /// Opens an existing heap for reading and writing. ENOENT, EACCES,
    /// EINVAL (not a memkit heap, or a bad name).
    pub fn open(name: &str) -> io::Result<SharedHeap> {
        Heap::open(name.as_bytes(), true)
            .map(Self::boxed)
            .map_err(err)
    }

    /// Opens an existing heap read-only: it is mapped read-only, and
    /// allocating, freeing or locking fails with EROFS.
    pub fn open_read_only(name: &str) -> io::Result<SharedHeap> {
        Heap::open(name.as_bytes(), false)
            .map(Self::boxed)
            .map_err(err)
    }

    /// Opens the heap behind `fd` (a duplicate is kept; `fd` stays the
    /// caller's).
    pub fn open_fd(fd: BorrowedFd<'_>, writable: bool) -> io::Result<SharedHeap> {
        use std::os::fd::AsRawFd;
        Heap::open_fd(fd.as_raw_fd(), writable)
            .map(Self::boxed)
            .map_err(err)
    }

    /// Removes the name; the heap lives on in the processes that have it
    /// open.
    pub fn unlink(name: &str) -> io::Result<()> {
        Heap::unlink(name.as_bytes()).map_err(err)
    }

    fn boxed(heap: Heap) -> SharedHeap {
        SharedHeap {
            heap: Box::new(heap),
        }
    }

    /// The heap's file descriptor (close-on-exec; owned by the handle).
    pub fn fd(&self) -> BorrowedFd<'_> {
        let fd: RawFd = self.heap.fd();
        // SAFETY: the handle keeps the fd open while it lives.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }

    /// The heap's size in bytes (the whole object).
    pub fn size(&self) -> u64 {
        self.heap.size()
    }

    /// Whether this handle may allocate.
    pub fn is_writable(&self) -> bool {
        self.heap.writable()
    }

    /// Who created the heap.
    pub fn creator(&self) -> Creator {
        self.heap.creator()
    }

    /// Processes attached now: (alive, dead but not yet reclaimed).
    pub fn attached(&self) -> (u32, u32) {
        self.heap.attached()
    }

    /// How many times a process found the allocator's lock held by a dead
    /// one and repaired the heap.
    pub fn repairs(&self) -> u64 {
        self.heap.repairs()
    }

    /// Bytes in use, capacity and the rest.
    pub fn stats(&self) -> io::Result<Stats> {
        self.heap.stats().map_err(err)
    }

    /// Verifies every structure of the heap; the first inconsistency found
    /// and how many there are otherwise.
    pub fn check(&self) -> Result<(), Corruption> {
        self.heap.check().map_err(|p| Corruption {
            count: p.count,
            first: p.first,
            at: p.at,
        })
    }

    // -- blocks --------------------------------------------------------------

    /// Allocates `size` bytes (16-aligned; `size` 0 is one byte). ENOMEM
    /// when the heap is full, EROFS through a read-only handle.
    pub fn alloc_bytes(&self, size: usize) -> io::Result<NonNull<u8>> {
        self.heap.alloc(size.max(1)).map_err(err)
    }

    /// Frees a block this or another process allocated from the heap. A
    /// pointer outside the heap, or not to a block in use, is ignored.
    ///
    /// # Safety
    /// Nothing uses the block afterwards (in any process).
    pub unsafe fn free_bytes(&self, p: *mut u8) {
        self.heap.free(p)
    }

    /// The offset of `p` in the heap (0 for null or outside).
    pub fn offset_of<T>(&self, p: *const T) -> u64 {
        self.heap.offset(p.cast())
    }

    /// The address of `p` here, if the whole `T` lies inside the heap and
    /// is aligned for `T`; None for null or out of range.
    pub fn resolve<T>(&self, p: ShmPtr<T>) -> Option<NonNull<T>> {
        let end = p.offset.checked_add(size_of::<T>() as u64)?;
        if p.offset == 0 || end > self.heap.size() {
            return None;
        }
        let q = self.heap.at(p.offset).cast::<T>();
        if !q.is_aligned() {
            return None;
        }
        NonNull::new(q)
    }

    /// A reference to the shared value at `p` (see [`SharedHeap::resolve`]
    /// for when it is None): safe because every change to a
    /// [`ShmShared`] value is atomic.
    pub fn get<T: ShmShared>(&self, p: ShmPtr<T>) -> Option<&T> {
        // SAFETY: inside the mapping, aligned, valid for any bits; shared
        // changes are atomic.
        self.resolve(p).map(|q| unsafe { q.as_ref() })
    }

    /// A reference to the value at `p`.
    ///
    /// # Safety
    /// No process or thread writes the value while the reference lives
    /// (hold [`SharedHeap::lock`] where others write it under that lock).
    pub unsafe fn deref<T: ShmSafe>(&self, p: ShmPtr<T>) -> Option<&T> {
        // SAFETY: inside the mapping and aligned; no writer, per the
        // contract; valid for any bits.
        self.resolve(p).map(|q| unsafe { q.as_ref() })
    }

    /// A mutable reference to the value at `p`.
    ///
    /// # Safety
    /// No process or thread reads or writes the value while the reference
    /// lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn deref_mut<T: ShmSafe>(&self, p: ShmPtr<T>) -> Option<&mut T> {
        if !self.is_writable() {
            return None;
        }
        // SAFETY: inside the writable mapping and aligned; exclusive, per
        // the contract.
        self.resolve(p).map(|mut q| unsafe { q.as_mut() })
    }

    // -- named objects ---------------------------------------------------------

    /// The object named `key` (1..=47 bytes, no NUL), made zeroed if it
    /// does not exist yet (`true` then), like Boost.Interprocess's
    /// `find_or_construct`. Every process asking for the same key gets the
    /// same object. EINVAL for a bad key or an existing object smaller
    /// than a `T`; ENOSPC when the heap has 128 named objects; ENOENT for a
    /// missing one through a read-only handle.
    pub fn named<T: ShmSafe>(&self, key: &str) -> io::Result<(ShmPtr<T>, bool)> {
        const { assert!(align_of::<T>() <= MAX_ALIGN) };
        let (p, created) = self
            .heap
            .named(key.as_bytes(), size_of::<T>().max(1))
            .map_err(err)?;
        Ok((ShmPtr::from_offset(self.heap.offset(p.as_ptr())), created))
    }

    /// Removes the name `key` and frees its object. ENOENT if none.
    pub fn remove_named(&self, key: &str) -> io::Result<()> {
        self.heap.remove_named(key.as_bytes()).map_err(err)
    }

    /// The named objects now (a snapshot).
    pub fn named_objects(&self) -> Vec<NamedObject> {
        (0..memkit_shm::layout::NAMED_MAX)
            .filter_map(|i| self.heap.named_entry(i))
            .map(|e| NamedObject {
                key: String::from_utf8_lossy(e.key()).into_owned(),
                offset: e.offset,
                size: e.size,
            })
            .collect()
    }

    // -- the user's lock -------------------------------------------------------

    /// Takes the heap-wide lock for the program's own data: a robust
    /// process-shared mutex. When its previous holder died holding it,
    /// the lock is taken all the same and handed back inside
    /// [`LockError::OwnerDied`] (like std's poisoned `Mutex`): the data it
    /// guards may be half-changed. EROFS through a read-only handle; EDEADLK
    /// when this thread holds it already.
    pub fn lock(&self) -> Result<ShmLockGuard<'_>, LockError<'_>> {
        match self.heap.lock() {
            Ok(died) => {
                let g = ShmLockGuard {
                    heap: self,
                    died,
                    _not_send: PhantomData,
                };
                if died {
                    Err(LockError::OwnerDied(g))
                } else {
                    Ok(g)
                }
            }
            Err(e) => Err(LockError::Io(err(e))),
        }
    }
}

/// An object in a heap's directory of names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedObject {
    /// Its key.
    pub key: String,
    /// Its offset in the heap.
    pub offset: u64,
    /// Its size in bytes (as first asked for).
    pub size: u64,
}

/// What [`SharedHeap::check`] found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// How many inconsistencies.
    pub count: u32,
    /// The first one.
    pub first: &'static str,
    /// The offset (or index) it concerns.
    pub at: u64,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shared heap inconsistent: {} at {:#x} ({} problem(s) in all)",
            self.first, self.at, self.count
        )
    }
}

impl std::error::Error for Corruption {}

/// The heap-wide lock, held; released when dropped. Not `Send`: the
/// thread that took it releases it.
pub struct ShmLockGuard<'h> {
    heap: &'h SharedHeap,
    died: bool,
    _not_send: PhantomData<*const ()>,
}

impl ShmLockGuard<'_> {
    /// Whether the previous holder died holding the lock (this guard came
    /// out of [`LockError::OwnerDied`]).
    pub fn previous_owner_died(&self) -> bool {
        self.died
    }
}

impl Drop for ShmLockGuard<'_> {
    fn drop(&mut self) {
        // Cannot fail: this thread holds it.
        let _ = self.heap.heap.unlock();
    }
}

impl fmt::Debug for ShmLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmLockGuard")
            .field("previous_owner_died", &self.died)
            .finish()
    }
}

/// Why [`SharedHeap::lock`] did not return a plain guard.
#[derive(Debug)]
pub enum LockError<'h> {
    /// The lock is held by this thread now, but its previous holder died
    /// holding it: check the data it guards before trusting it.
    OwnerDied(ShmLockGuard<'h>),
    /// The lock could not be taken.
    Io(io::Error),
}

impl<'h> LockError<'h> {
    /// The guard, when the lock was taken after all (owner died).
    pub fn into_guard(self) -> Option<ShmLockGuard<'h>> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            LockError::Io(_) => None,
        }
    }
}

impl fmt::Display for LockError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => {
                f.write_str("the shared heap's previous lock holder died holding it")
            }
            LockError::Io(e) => write!(f, "cannot take the shared heap's lock: {e}"),
        }
    }
}

impl std::error::Error for LockError<'_> {}

// ---------------------------------------------------------------------------
// ShmBox
// ---------------------------------------------------------------------------

/// A value in a shared heap, owned by this process until handed over:
/// freed when dropped; [`ShmBox::into_ptr`] gives up ownership for an
/// offset to pass to another process, which takes it back with
/// [`ShmBox::from_ptr`].
pub struct ShmBox<'h, T: ShmSafe> {
    heap: &'h SharedHeap,
    ptr: NonNull<T>,
}

impl<'h, T: ShmSafe> ShmBox<'h, T> {
    /// Moves `value` into a new block of `heap`. ENOMEM when full, EROFS
    /// through a read-only handle.
    pub fn new_in(heap: &'h SharedHeap, value: T) -> io::Result<Self> {
        const { assert!(align_of::<T>() <= MAX_ALIGN) };
        let p = heap.alloc_bytes(size_of::<T>())?.cast::<T>();
        // SAFETY: a fresh block of at least size_of::<T>() bytes, 16-aligned.
        unsafe { p.as_ptr().write(value) };
        Ok(ShmBox { heap, ptr: p })
    }

    /// Gives up ownership: the block stays allocated, reachable in every
    /// process through the returned pointer.
    pub fn into_ptr(b: Self) -> ShmPtr<T> {
        let b = ManuallyDrop::new(b);
        ShmPtr::from_offset(b.heap.offset_of(b.ptr.as_ptr()))
    }

    /// Takes ownership of the block at `p`; None if `p` does not resolve.
    ///
    /// # Safety
    /// `p` came from [`ShmBox::into_ptr`] on this heap (in any process) and
    /// nothing else owns or uses it any more.
    pub unsafe fn from_ptr(heap: &'h SharedHeap, p: ShmPtr<T>) -> Option<Self> {
        heap.resolve(p).map(|ptr| ShmBox { heap, ptr })
    }

    /// Its pointer, for other processes to read (ownership stays here).
    pub fn ptr(b: &Self) -> ShmPtr<T> {
        ShmPtr::from_offset(b.heap.offset_of(b.ptr.as_ptr()))
    }
}

impl<T: ShmSafe> Deref for ShmBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: our block holds a T; other processes only reach it
        // through `unsafe` accessors whose contracts exclude writing it
        // while we own it.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> DerefMut for ShmBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for Deref, and `&mut self` is exclusive here.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: ShmSafe> Drop for ShmBox<'_, T> {
    fn drop(&mut self) {
        // ShmSafe types have no drop glue that matters across processes;
        // the value is dropped in place, then the block freed.
        // SAFETY: we own the block and its value.
        unsafe {
            std::ptr::drop_in_place(self.ptr.as_ptr());
            self.heap.free_bytes(self.ptr.as_ptr().cast());
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
