//! The handle of an attached heap: creating, opening and closing, the
//! locks, and the per-process caches in front of the locked allocator.

use core::ptr::{null_mut, NonNull};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU32};

use memkit_sys::shm::{self as os, PathBuf};
use memkit_sys::Errno;

use crate::alloc::Block;
use crate::crash;
use crate::layout::*;
use crate::registry;
use crate::repair::Problems;
use crate::view::View;

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EBADF: i32 = 9;
pub const ENOMEM: i32 = 12;
pub const EACCES: i32 = 13;
pub const EEXIST: i32 = 17;
pub const EINVAL: i32 = 22;
pub const ENOSPC: i32 = 28;
pub const EROFS: i32 = 30;

/// Incremented in every forked child: a handle inherited through `fork`
/// must not use its parent's slot (the parent still does).
static EPOCH: AtomicU32 = AtomicU32::new(0);
static ATFORK: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn forked_child() {
    EPOCH.fetch_add(1, Relaxed);
}

fn watch_forks() {
    if !ATFORK.swap(true, Relaxed) {
        // SAFETY: the handler only increments an atomic.
        unsafe { memkit_sys::atfork(None, None, Some(forked_child)) };
    }
}

/// What `stats` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of blocks the program holds (block sizes, not requests; the
    /// blocks in processes' caches not counted).
    pub used: u64,
    /// Bytes of the data area (what blocks can take).
    pub capacity: u64,
    /// Bytes of blocks in the caches of attached processes.
    pub cached: u64,
    /// Units (4 KiB) in spans or large blocks.
    pub units_used: u64,
    pub large_blocks: u64,
    pub spans: u64,
}

/// A named object.
#[derive(Clone, Copy, Debug)]
pub struct NamedInfo {
    pub key: [u8; KEY_MAX + 1],
    pub key_len: usize,
    pub offset: u64,
    pub size: u64,
}

impl NamedInfo {
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
}

/// Who made a heap, and when.
#[derive(Clone, Copy, Debug)]
pub struct Creator {
    pub pid: u32,
    pub uid: u32,
    pub comm: [u8; 16],
    /// Seconds since the epoch.
    pub created: u64,
}

/// One process's attachment to a shared heap.
///
/// Not movable once used from several threads (the C API keeps it in a
/// page of its own; the Rust API in a box). `Sync`: every method may be
/// called from any thread.
pub struct Heap {
    v: View,
    fd: i32,
    writable: bool,
    /// This process's slot (NONE: no cache; every call takes the lock).
    slot: AtomicU32,
    /// The process-local lock of the slot's caches (0 free, 1 held, 2
    /// held with waiters).
    slot_lock: AtomicU32,
    epoch: AtomicU32,
}

// SAFETY: the shared structures are guarded by the alloc lock, the slot by
// slot_lock; the rest is immutable after construction.
unsafe impl Sync for Heap {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Heap {}

impl Heap {
    // -------------------------------------------------------------------
    // Life cycle
    // -------------------------------------------------------------------

    /// Creates `/dev/shm/NAME` (`name` with its leading slash) of `size`
    /// bytes (rounded up to 4 KiB), mode `mode` exactly (0: 0600), every
    /// page reserved now. EEXIST if it exists, EINVAL for a bad name or a
    /// size out of 256 KiB..=64 GiB, ENOSPC/ENOMEM when /dev/shm cannot
    /// hold it.
    pub fn create(name: &[u8], size: u64, mode: u32) -> Result<Heap, Errno> {
        let path = PathBuf::shm(name)?;
        let mode = if mode == 0 { 0o600 } else { mode };
        let fd = os::create_unnamed(mode)?;
        let heap = Self::init(fd, size).inspect_err(|_| os::close(fd))?;
        // The name appears only now, on a complete heap: no process ever
        // opens a half-made one.
        os::link_as(fd, &path)?;
        Ok(heap)
    }

    /// An anonymous heap (a memfd): for processes started after it is
    /// made, through `fork` (the handle works in the child) or by handing
    /// them the fd ([`Heap::fd`], close-on-exec: clear it or `dup2` it
    /// before `exec`) for [`Heap::open_fd`].
    pub fn create_anon(size: u64) -> Result<Heap, Errno> {
        let fd = os::memfd(c"memkit-shm")?;
        Self::init(fd, size).inspect_err(|_| os::close(fd))
    }

    fn init(fd: i32, size: u64) -> Result<Heap, Errno> {
        let size = size
            .checked_next_multiple_of(UNIT as u64)
            .ok_or(Errno(EINVAL))?;
        if size < MIN_SIZE {
            return Err(Errno(EINVAL));
        }
        if size > MAX_SIZE {
            return Err(Errno(ENOMEM));
        }
        os::reserve(fd, size)?;
        let base = os::map_shared(fd, size as usize, true)?;
        let g = Geometry::for_size(size);
        let v = View { base, g };
        let (pid, start) = registry::me();
        // SAFETY: a fresh, zeroed, private-so-far mapping of `size` bytes.
        unsafe {
            let h = &mut *v.header();
            h.version = VERSION;
            h.header_size = size_of::<Header>() as u32;
            h.size = size;
            h.data_start = g.data_start;
            h.units = g.units;
            h.named_off = g.named_off;
            h.slots_off = g.slots_off;
            h.table_off = g.table_off;
            h.bitmap_off = g.bitmap_off;
            h.slots = g.slots;
            h.named_max = NAMED_MAX as u32;
            h.creator_pid = pid;
            h.creator_uid = memkit_sys::euid();
            h.creator_start = start;
            h.created = os::realtime_secs();
            h.creator_comm = os::comm();
            h.class_head = [NONE; NCLASSES];
            let locks =
                os::robust_init(&mut h.alloc.0).and_then(|_| os::robust_init(&mut h.user.0));
            if let Err(e) = locks {
                os::unmap(base, size as usize);
                return Err(e);
            }
            h.magic.store(MAGIC, Release);
        }
        Ok(Self::attach(v, fd, true))
    }

    /// Opens `/dev/shm/NAME` read-write, or read-only (mapped `PROT_READ`;
    /// allocating then fails with EROFS). ENOENT, EACCES, EINVAL (a bad
    /// name, or an object that is not a memkit heap of this version).
    pub fn open(name: &[u8], writable: bool) -> Result<Heap, Errno> {
        let path = PathBuf::shm(name)?;
        let fd = os::open(&path, writable)?;
        Self::map_existing(fd, writable).inspect_err(|_| os::close(fd))
    }

    /// Opens the heap of an fd (from [`Heap::fd`], maybe in another
    /// process); the fd is duplicated, the caller keeps its own.
    pub fn open_fd(fd: i32, writable: bool) -> Result<Heap, Errno> {
        let fd = os::dup(fd)?;
        Self::map_existing(fd, writable).inspect_err(|_| os::close(fd))
    }

    fn map_existing(fd: i32, writable: bool) -> Result<Heap, Errno> {
        let info = os::file_info(fd)?;
        if !info.regular || info.size < MIN_SIZE || info.size > MAX_SIZE {
            return Err(Errno(EINVAL));
        }
        // A writable fd opened read-only is still refused writing by the
        // mapping (EACCES from mmap): the fd's own access decides.
        let base = os::map_shared(fd, info.size as usize, writable)?;
        // SAFETY: at least MIN_SIZE bytes are mapped; the header's fixed
        // fields are only written before the magic is published.
        let g = unsafe {
            let h = &*base.cast::<Header>();
            let ok = h.magic.load(Acquire) == MAGIC
                && h.version == VERSION
                && h.header_size as usize == size_of::<Header>()
                && h.size == info.size;
            ok.then(|| Geometry::of_header(h)).flatten()
        };
        match g {
            Some(g) => Ok(Self::attach(View { base, g }, fd, writable)),
            None => {
                // SAFETY: the mapping just made.
                unsafe { os::unmap(base, info.size as usize) };
                Err(Errno(EINVAL))
            }
        }
    }

    /// Takes a slot (writable handles), reclaiming those of dead processes.
    fn attach(v: View, fd: i32, writable: bool) -> Heap {
        watch_forks();
        crash::init();
        let heap = Heap {
            v,
            fd,
            writable,
            slot: AtomicU32::new(NONE),
            slot_lock: AtomicU32::new(0),
            epoch: AtomicU32::new(EPOCH.load(Relaxed)),
        };
        if writable {
            if let Ok(g) = heap.lock_alloc() {
                heap.slot.store(v.attach(registry::me()), Relaxed);
                drop(g);
            }
        }
        heap
    }

    /// `shm_unlink`: removes the name; attached processes keep the heap
    /// until they close it.
    pub fn unlink(name: &[u8]) -> Result<(), Errno> {
        os::unlink(&PathBuf::shm(name)?)
    }

    /// The fd of the heap (close-on-exec; owned by the handle).
    pub fn fd(&self) -> i32 {
        self.fd
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The mapping: base address and size.
    pub fn base(&self) -> *mut u8 {
        self.v.base
    }

    pub fn size(&self) -> u64 {
        self.v.g.size
    }

    pub fn creator(&self) -> Creator {
        // SAFETY: fixed fields.
        let h = unsafe { &*self.v.header() };
        Creator {
            pid: h.creator_pid,
            uid: h.creator_uid,
            comm: h.creator_comm,
            created: h.created,
        }
    }

    /// Times a holder of the allocator's lock died and the next holder
    /// repaired the heap.
    pub fn repairs(&self) -> u64 {
        // SAFETY: an atomic of the header.
        unsafe { (*self.v.header()).repairs.load(Relaxed) }
    }

    /// Attached processes: (alive, dead).
    pub fn attached(&self) -> (u32, u32) {
        self.v.attached()
    }

    // -------------------------------------------------------------------
    // Locks
    // -------------------------------------------------------------------

    /// Takes the allocator's lock; repairs the heap when its previous
    /// holder died holding it.
    fn lock_alloc(&self) -> Result<AllocGuard<'_>, Errno> {
        if !self.writable {
            return Err(Errno(EROFS));
        }
        // SAFETY: a robust mutex initialised at creation, in writable memory.
        let m = unsafe { &raw mut (*self.v.header()).alloc.0 };
        // SAFETY: as above.
        let died = unsafe { os::robust_lock(m) }?;
        if died {
            self.v.rebuild();
            self.v.reclaim_dead(self.slot.load(Relaxed));
            self.clean_directory();
            // SAFETY: an atomic of the header; the lock is ours.
            unsafe {
                (*self.v.header()).repairs.fetch_add(1, Relaxed);
                os::robust_consistent(m);
            }
        }
        Ok(AllocGuard { m, _h: self })
    }

    /// `memkit_shm_lock`: the user's heap-wide robust lock. `Ok(true)`
    /// when its previous holder died holding it (the data it protects may
    /// be half updated; the lock is usable again).
    pub fn lock(&self) -> Result<bool, Errno> {
        if !self.writable {
            return Err(Errno(EROFS));
        }
        // SAFETY: a robust mutex in writable memory.
        let m = unsafe { &raw mut (*self.v.header()).user.0 };
        // SAFETY: as above.
        let died = unsafe { os::robust_lock(m) }?;
        if died {
            // SAFETY: we hold it.
            unsafe { os::robust_consistent(m) };
        }
        Ok(died)
    }

    /// `memkit_shm_unlock`: EPERM when the caller does not hold it.
    pub fn unlock(&self) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno(EROFS));
        }
        // SAFETY: glibc checks the owner of a robust mutex (EPERM).
        unsafe { os::robust_unlock(&raw mut (*self.v.header()).user.0) }
    }

    // -------------------------------------------------------------------
    // Allocation
    // -------------------------------------------------------------------

    /// The slot of this process, after a fork too (None: no cache).
    #[inline(always)]
    fn my_slot(&self) -> Option<u32> {
        if self.epoch.load(Relaxed) != EPOCH.load(Relaxed) {
            return self.reattach_after_fork();
        }
        let s = self.slot.load(Relaxed);
        (s != NONE).then_some(s)
    }

    /// A forked child must not touch its parent's slot (or the slot lock,
    /// which a parent thread may have held at the fork): it takes its own.
    #[cold]
    fn reattach_after_fork(&self) -> Option<u32> {
        self.slot.store(NONE, Relaxed);
        self.slot_lock.store(0, Relaxed);
        self.epoch.store(EPOCH.load(Relaxed), Relaxed);
        let g = self.lock_alloc().ok()?;
        let s = self.v.attach(registry::me());
        drop(g);
        self.slot.store(s, Relaxed);
        (s != NONE).then_some(s)
    }

    #[inline(always)]
    fn lock_slot(&self) {
        if self
            .slot_lock
            .compare_exchange(0, 1, Acquire, Relaxed)
            .is_err()
        {
            self.lock_slot_slow();
        }
    }

    #[cold]
    fn lock_slot_slow(&self) {
        for _ in 0..100 {
            core::hint::spin_loop();
            if self
                .slot_lock
                .compare_exchange(0, 1, Acquire, Relaxed)
                .is_ok()
            {
                return;
            }
        }
        while self.slot_lock.swap(2, Acquire) != 0 {
            os::futex_wait(&self.slot_lock, 2);
        }
    }

    #[inline(always)]
    fn unlock_slot(&self) {
        if self.slot_lock.swap(0, Release) == 2 {
            os::futex_wake(&self.slot_lock);
        }
    }

    /// `memkit_shm_alloc`: a 16-aligned block of at least `size` bytes
    /// (`size` 0: a 16-byte block). ENOMEM when full, EROFS read-only.
    #[inline]
    pub fn alloc(&self, size: usize) -> Result<NonNull<u8>, Errno> {
        if size <= class_size(CACHED - 1) && self.writable {
            if let Some(slot) = self.my_slot() {
                let c = class_of(size);
                self.lock_slot();
                // SAFETY: our slot, under our slot lock.
                let s = unsafe { &mut *self.v.slot(slot) };
                let n = s.count[c] as usize;
                if n > 0 {
                    let e = s.entries[c][n - 1];
                    s.count[c] = (n - 1) as u8;
                    self.unlock_slot();
                    // SAFETY: a cached block's offset is inside the heap.
                    return Ok(unsafe { NonNull::new_unchecked(self.v.at(e as u64 * 16)) });
                }
                let r = self.refill(s, c);
                self.unlock_slot();
                return r;
            }
        }
        self.alloc_slow(size)
    }

    /// Fills the cache of class `c` with up to BATCH blocks and returns
    /// one (slot lock held).
    #[cold]
    fn refill(&self, s: &mut Slot, c: usize) -> Result<NonNull<u8>, Errno> {
        let g = self.lock_alloc()?;
        let mut got = 0;
        while got < BATCH {
            let Some(choice) = self.v.choose_small(c) else {
                break;
            };
            // Recorded before the commit: a repair frees what a killed
            // refill staged (registry::reclaim).
            s.entries[c][got] = (self.v.choice_offset(choice) / 16) as u32;
            s.staged = ((c as u32) << 16) | (got as u32 + 1);
            self.v.commit(choice);
            crash::point();
            got += 1;
        }
        s.count[c] = got as u8;
        s.staged = 0;
        if got == 0 {
            drop(g);
            return self.alloc_slow_after_relief(class_size(c));
        }
        drop(g);
        let n = got - 1;
        let e = s.entries[c][n];
        s.count[c] = n as u8;
        // SAFETY: a block just allocated, inside the heap.
        Ok(unsafe { NonNull::new_unchecked(self.v.at(e as u64 * 16)) })
    }

    #[cold]
    fn alloc_slow(&self, size: usize) -> Result<NonNull<u8>, Errno> {
        if !self.writable {
            return Err(Errno(EROFS));
        }
        if size as u64 > self.v.g.size {
            return Err(Errno(ENOMEM));
        }
        let g = self.lock_alloc()?;
        if let Some(off) = self.v.alloc_locked(size) {
            drop(g);
            // SAFETY: a block just allocated, inside the heap.
            return Ok(unsafe { NonNull::new_unchecked(self.v.at(off)) });
        }
        drop(g);
        self.alloc_slow_after_relief(size)
    }

    /// The heap is full for `size`: reclaim dead processes' caches, empty
    /// our own, give back empty spans, and try once more.
    #[cold]
    fn alloc_slow_after_relief(&self, size: usize) -> Result<NonNull<u8>, Errno> {
        let own = self.slot.load(Relaxed);
        let g = self.lock_alloc()?;
        self.v.reclaim_dead(own);
        if own != NONE && self.epoch.load(Relaxed) == EPOCH.load(Relaxed) {
            // Our own cache: the caller may hold the slot lock (refill);
            // emptying the other classes under it is ours to do.
            self.flush_all_locked(own, class_of(size.min(MAX_SMALL)));
        }
        self.v.release_empty_spans();
        let r = self.v.alloc_locked(size);
        drop(g);
        match r {
            // SAFETY: a block just allocated, inside the heap.
            Some(off) => Ok(unsafe { NonNull::new_unchecked(self.v.at(off)) }),
            None => Err(Errno(ENOMEM)),
        }
    }

    /// Frees every cached block of slot `own` except class `keep`'s
    /// (alloc lock held).
    fn flush_all_locked(&self, own: u32, keep: usize) {
        // SAFETY: our own slot; classes other than `keep` are not being
        // used by the caller, and the other threads of this process wait
        // on the slot lock only in `alloc`/`free`, which hold it while
        // they touch a class: this runs either under the slot lock
        // (refill) or takes it below.
        let s = unsafe { &mut *self.v.slot(own) };
        for c in 0..CACHED {
            if c == keep {
                continue;
            }
            let n = s.count[c] as usize;
            for k in 0..n {
                self.v.free_cached(s.entries[c][k], c);
            }
            s.count[c] = 0;
        }
    }

    /// `memkit_shm_free`: pointers that are not an allocated block of
    /// this heap (outside it, interior, already free) are ignored.
    #[inline]
    pub fn free(&self, p: *mut u8) {
        if !self.writable {
            return;
        }
        let Some(off) = self.v.data_offset(p) else {
            return;
        };
        match self.v.classify(off) {
            Some(Block::Small { span, class, bit }) => {
                if !self.v.bit_set(span, bit) {
                    return;
                }
                if (class as usize) < CACHED {
                    if let Some(slot) = self.my_slot() {
                        self.free_to_cache(slot, class as usize, off);
                        return;
                    }
                }
                if let Ok(_g) = self.lock_alloc() {
                    self.v.free_locked(off);
                }
            }
            Some(Block::Large { .. }) => {
                if let Ok(_g) = self.lock_alloc() {
                    self.v.free_locked(off);
                }
            }
            None => {}
        }
    }

    #[inline(always)]
    fn free_to_cache(&self, slot: u32, c: usize, off: u64) {
        self.lock_slot();
        // SAFETY: our slot, under our slot lock.
        let s = unsafe { &mut *self.v.slot(slot) };
        let e = (off / 16) as u32;
        let mut n = s.count[c] as usize;
        // A block freed twice while it sits in this cache (its bit stays
        // set there) would be handed out twice: ignored, like a second
        // free of a block whose bit is clear.
        if s.entries[c][..n.min(CACHE_N)].contains(&e) {
            self.unlock_slot();
            return;
        }
        // Recorded first: if we die before it is counted, the reclaimer
        // frees it.
        s.pending = e;
        if n == CACHE_N {
            self.flush(s, c);
            n = s.count[c] as usize;
        }
        s.entries[c][n] = e;
        s.count[c] = (n + 1) as u8;
        s.pending = 0;
        self.unlock_slot();
    }

    /// Gives the oldest BATCH blocks of a full cache back (slot lock
    /// held). Each is freed before it leaves the cache: a reclaimer freeing
    /// it again does nothing.
    #[cold]
    fn flush(&self, s: &mut Slot, c: usize) {
        let Ok(g) = self.lock_alloc() else {
            return;
        };
        for k in 0..BATCH {
            self.v.free_cached(s.entries[c][k], c);
        }
        crash::point();
        s.entries[c].copy_within(BATCH.., 0);
        crash::point();
        s.count[c] = (CACHE_N - BATCH) as u8;
        drop(g);
    }

    // -------------------------------------------------------------------
    // Offsets
    // -------------------------------------------------------------------

    /// `memkit_shm_offset`: the offset of `p` from the heap's start (the
    /// same in every process); 0 for NULL or a pointer outside the heap.
    #[inline(always)]
    pub fn offset(&self, p: *const u8) -> u64 {
        let off = (p as usize).wrapping_sub(self.v.base as usize) as u64;
        if p.is_null() || off >= self.v.g.size {
            0
        } else {
            off
        }
    }

    /// `memkit_shm_at`: the address of `offset` here; NULL for 0 or out of
    /// range.
    #[inline(always)]
    pub fn at(&self, offset: u64) -> *mut u8 {
        if offset == 0 || offset >= self.v.g.size {
            null_mut()
        } else {
            self.v.at(offset)
        }
    }

    // -------------------------------------------------------------------
    // Named objects
    // -------------------------------------------------------------------

    /// `memkit_shm_named`: the object named `key` (1..=47 bytes, no NUL),
    /// allocated zeroed with `size` bytes if it does not exist (`true`).
    /// EINVAL for a bad key or an existing object smaller than `size`;
    /// ENOSPC when the directory (128 objects) is full; ENOENT for a
    /// missing object through a read-only handle.
    pub fn named(&self, key: &[u8], size: usize) -> Result<(NonNull<u8>, bool), Errno> {
        if key.is_empty() || key.len() > KEY_MAX || key.contains(&0) {
            return Err(Errno(EINVAL));
        }
        if !self.writable {
            let e = self.find_named(key).ok_or(Errno(ENOENT))?;
            return self.existing(e, size);
        }
        let g = self.lock_alloc()?;
        if let Some(e) = self.find_named(key) {
            return self.existing(e, size);
        }
        let mut free = None;
        for i in 0..NAMED_MAX {
            // SAFETY: i < NAMED_MAX; the lock is held.
            if unsafe { (*self.v.named(i)).state } == NAMED_FREE {
                free = Some(i);
                break;
            }
        }
        let i = free.ok_or(Errno(ENOSPC))?;
        // SAFETY: a free entry, the lock held.
        let e = unsafe { &mut *self.v.named(i) };
        e.key = [0; KEY_MAX + 1];
        e.key[..key.len()].copy_from_slice(key);
        e.key_len = key.len() as u32;
        e.size = size as u64;
        e.off = 0;
        e.state = NAMED_STAGED;
        let choice = match self.v.choose(size) {
            Some(c) => c,
            None => {
                e.state = NAMED_FREE;
                drop(g);
                return Err(Errno(ENOMEM));
            }
        };
        let off = self.v.choice_offset(choice);
        // Recorded before the commit: a repair frees a staged entry's
        // block (clean_directory).
        e.off = off;
        self.v.commit(choice);
        crash::point();
        // SAFETY: the block just allocated, `size` bytes inside the heap.
        unsafe { core::ptr::write_bytes(self.v.at(off), 0, size) };
        // SAFETY: orders the zeroing before the publication.
        unsafe { core::ptr::write_volatile(&mut e.state, NAMED_USED) };
        drop(g);
        // SAFETY: inside the heap.
        Ok((unsafe { NonNull::new_unchecked(self.v.at(off)) }, true))
    }

    fn existing(&self, e: NamedInfo, size: usize) -> Result<(NonNull<u8>, bool), Errno> {
        if (size as u64) > e.size {
            return Err(Errno(EINVAL));
        }
        let p = self.at(e.offset);
        NonNull::new(p).map(|p| (p, false)).ok_or(Errno(EINVAL))
    }

    fn find_named(&self, key: &[u8]) -> Option<NamedInfo> {
        (0..NAMED_MAX).find_map(|i| self.named_entry(i).filter(|e| e.key() == key))
    }

    /// Directory entry `i` if it names an object (for iteration:
    /// `0..NAMED_MAX`).
    pub fn named_entry(&self, i: usize) -> Option<NamedInfo> {
        if i >= NAMED_MAX {
            return None;
        }
        // SAFETY: i < NAMED_MAX.
        let e = unsafe { &*self.v.named(i) };
        // SAFETY: the state is read first and once.
        if unsafe { core::ptr::read_volatile(&e.state) } != NAMED_USED {
            return None;
        }
        Some(NamedInfo {
            key: e.key,
            key_len: (e.key_len as usize).min(KEY_MAX),
            offset: e.off,
            size: e.size,
        })
    }

    /// The NUL-terminated key of directory entry `i` (in the shared
    /// mapping: valid while the entry names an object).
    pub fn named_key_ptr(&self, i: usize) -> *const u8 {
        // SAFETY: i < NAMED_MAX (the caller got an entry for it).
        unsafe { (&raw const (*self.v.named(i)).key).cast() }
    }

    /// Removes the name `key` and frees its object. ENOENT if none.
    pub fn remove_named(&self, key: &[u8]) -> Result<(), Errno> {
        let _g = self.lock_alloc()?;
        for i in 0..NAMED_MAX {
            if self.named_entry(i).is_some_and(|e| e.key() == key) {
                // SAFETY: i < NAMED_MAX, the lock held.
                let e = unsafe { &mut *self.v.named(i) };
                // The entry goes first: a repair never frees a block that
                // a used entry names.
                e.state = NAMED_STAGED;
                crash::point();
                self.v.free_locked(e.off);
                e.off = 0;
                e.state = NAMED_FREE;
                return Ok(());
            }
        }
        Err(Errno(ENOENT))
    }

    /// Repair of the directory: a staged entry's block, if allocated, is
    /// freed and the entry too (alloc lock held).
    fn clean_directory(&self) {
        for i in 0..NAMED_MAX {
            // SAFETY: i < NAMED_MAX, the lock held.
            let e = unsafe { &mut *self.v.named(i) };
            if e.state == NAMED_STAGED {
                if e.off != 0 {
                    self.v.free_locked(e.off);
                }
                e.off = 0;
                e.state = NAMED_FREE;
            }
        }
    }

    // -------------------------------------------------------------------
    // Statistics and checks
    // -------------------------------------------------------------------

    /// `memkit_shm_stats`. Under the lock for a writable handle; a
    /// read-only one reads without it (figures of a moment).
    pub fn stats(&self) -> Result<Stats, Errno> {
        let _g = if self.writable {
            Some(self.lock_alloc()?)
        } else {
            None
        };
        let v = &self.v;
        let mut st = Stats {
            capacity: v.g.units * UNIT as u64,
            ..Stats::default()
        };
        let mut u = 0usize;
        while u < v.g.units as usize {
            // SAFETY: u < units.
            let e = unsafe { v.entry(u).read_volatile() };
            if e & LARGE != 0 && e & !KIND_MASK != 0 {
                let len = (e & !KIND_MASK) as u64;
                st.used += len * UNIT as u64;
                st.units_used += len;
                st.large_blocks += 1;
                u += len as usize;
            } else if e & SLAB != 0 && u % SPAN_UNITS == 0 {
                // SAFETY: a span head.
                let s = unsafe { &*v.span((u / SPAN_UNITS) as u32) };
                let c = (s.class as usize).min(NCLASSES - 1);
                st.used += s.used as u64 * class_size(c) as u64;
                st.units_used += SPAN_UNITS as u64;
                st.spans += 1;
                u += SPAN_UNITS;
            } else {
                u += 1;
            }
        }
        for i in 0..v.g.slots {
            // SAFETY: i < slots.
            let s = unsafe { &*v.slot(i) };
            if s.state.load(Acquire) == SLOT_ATTACHED {
                for c in 0..CACHED {
                    st.cached += (s.count[c] as usize).min(CACHE_N) as u64 * class_size(c) as u64;
                }
            }
        }
        st.used = st.used.saturating_sub(st.cached);
        Ok(st)
    }

    /// `memkit_shm_check`: every structure verified (see `repair`).
    pub fn check(&self) -> Result<(), Problems> {
        let own = self.slot.load(Relaxed);
        if !self.writable {
            return self.v.check(NONE, registry::alive);
        }
        let g = self.lock_alloc().map_err(|_| Problems {
            count: 1,
            first: "the allocator's lock cannot be taken",
            at: 0,
        })?;
        let mine = own != NONE && self.epoch.load(Relaxed) == EPOCH.load(Relaxed);
        if mine {
            self.lock_slot();
        }
        let r = self.v.check(if mine { own } else { NONE }, registry::alive);
        if mine {
            self.unlock_slot();
        }
        drop(g);
        r
    }
}

impl Drop for Heap {
    /// `memkit_shm_close`: gives the cached blocks back, frees the slot,
    /// unmaps.
    fn drop(&mut self) {
        let own = self.slot.load(Relaxed);
        if own != NONE && self.epoch.load(Relaxed) == EPOCH.load(Relaxed) {
            if let Ok(g) = self.lock_alloc() {
                self.v.reclaim(own);
                drop(g);
            }
        }
        // SAFETY: the handle's mapping, unused from now on.
        unsafe { os::unmap(self.v.base, self.v.g.size as usize) };
        os::close(self.fd);
    }
}

/// The allocator's lock, held.
struct AllocGuard<'a> {
    m: *mut memkit_sys::shm::PthreadMutex,
    _h: &'a Heap,
}

impl Drop for AllocGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: we hold it.
        let _ = unsafe { os::robust_unlock(self.m) };
    }
}
