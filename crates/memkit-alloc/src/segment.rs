//! Segments: 4 MiB-aligned regions from `mmap`, owned by one heap, cut into
//! 64 slices of 64 KiB. Slice 0 holds the segment header (this struct and the
//! page descriptors); a page is a span of consecutive slices.
//!
//! Because segments are aligned, a block's segment is `p & !(SEGMENT_SIZE-1)`
//! and its page descriptor is `pages[(p - segment) >> SLICE_SHIFT]` (then back
//! `slice_offset` bytes to the span's head). The ownership bitmap [`OWNED`] has one
//! bit per 4 MiB of address space: `free` of a pointer whose chunk is not
//! marked is not ours and is ignored.
//!
//! Free slices stay resident ("dirty") for the purge delay, then are returned
//! with `MADV_DONTNEED`. A segment with no page left goes to a small global
//! cache and is unmapped once it has been unused for the purge delay.
//!
//! Segments are mapped by the [`Source`] of the heap they are for, and
//! remember it (`Segment::source`): purging and unmapping go back to it.
//! Only OS segments enter the cache, so a segment of another source (a
//! file shared with other processes) is never handed to another heap.

use core::ptr::null_mut;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crate::config::{OPTIONS, THP_ALWAYS, THP_NEVER};
use crate::heap::Heap;
use crate::lock::SpinLock;
use crate::page::{Page, FLAG_NO_PAGE};
use crate::source::{self, Source};
use crate::stats::GLOBAL;

pub const SEGMENT_SHIFT: usize = 22;
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
pub const SEGMENT_MASK: usize = SEGMENT_SIZE - 1;
pub const SLICE_SHIFT: usize = 16;
pub const SLICE_SIZE: usize = 1 << SLICE_SHIFT;
pub const SLICES: usize = SEGMENT_SIZE / SLICE_SIZE;
// An fd source's chunks are segments.
const _: () = assert!(source::CHUNK == SEGMENT_SIZE);
/// Every slice but the header's.
const ALL_DATA_SLICES: u64 = !1;

pub const KIND_SMALL: u32 = 1;
pub const KIND_HUGE: u32 = 2;

/// [`Segment::owner_dead`]: the owning heap is a live thread's.
pub const OWNER_LIVE: u32 = 0;
/// The owning heap is dead (its thread exited).
pub const OWNER_DEAD: u32 = 1;
/// The owning heap is an arena (no thread's): a block freed by a thread
/// goes straight back to its page, never into the thread's cache of other
/// heaps' blocks (which would hand it out from the thread's heap). The
/// same value as [`OWNER_DEAD`], so that the remote free tests one flag
/// as before (a distinct value cost every remote free a register save:
/// callgrind, docs/BENCHMARKS.md); the freeing thread then also collects
/// dead heaps every 256 such frees, which finds nothing to do if there are
/// none.
pub const OWNER_ARENA: u32 = OWNER_DEAD;

/// Address bits of user space on x86_64 (4-level paging).
const ADDRESS_BITS: usize = 47;
const CHUNKS: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);
/// Chunks a leaf of a [`ChunkMap`] covers: one bit each, 4 KiB (one page)
/// of bits for 128 GiB of address space.
const LEAF_CHUNKS: usize = 1 << 15;
const LEAVES: usize = CHUNKS / LEAF_CHUNKS;

/// One bit per 4 MiB chunk of address space, in leaves of one page mapped
/// when a bit in their range is first set: a flat bitmap would be 4 MiB of
/// `.bss` per map (VmSize, and what `ulimit -v` counts) where a program
/// touches one or two leaves. Leaves are never unmapped, so a reader that
/// saw one may keep using it.
///
/// The first leaf mapped is also kept with its index (`ChunkHead`: `first`,
/// `first_index`): neither load depends on the address tested, so for the
/// leaf most programs use the test costs one dependent load, as a flat
/// bitmap's did (a load of the slot first cost larson and xmalloc 4-5%).
///
/// The slots of the leaves (`Leaves`, 8 KiB) are a static of their own,
/// all null, so they stay in `.bss`: beside `first_index`'s non-zero
/// initial value they were 8 KiB of `.data` per map, and `.data` is
/// file-backed, so all of it was resident in every program (the kernel
/// maps the file's pages around a fault); a `.bss` page nobody writes is
/// never resident.
#[derive(Clone, Copy)]
struct ChunkMap {
    head: &'static ChunkHead,
    leaves: &'static Leaves,
}

#[repr(C, align(64))]
struct ChunkHead {
    first: AtomicPtr<AtomicU64>,
    first_index: AtomicUsize,
}

#[repr(C, align(64))]
struct Leaves([AtomicPtr<AtomicU64>; LEAVES]);

impl ChunkHead {
    const fn new() -> Self {
        ChunkHead {
            first: AtomicPtr::new(null_mut()),
            first_index: AtomicUsize::new(usize::MAX),
        }
    }
}

impl Leaves {
    const fn new() -> Self {
        Leaves([const { AtomicPtr::new(null_mut()) }; LEAVES])
    }
}

impl ChunkMap {
    #[inline(always)]
    fn test(&self, addr: usize) -> bool {
        let chunk = addr >> SEGMENT_SHIFT;
        let index = chunk / LEAF_CHUNKS;
        let leaf = if index == self.head.first_index.load(Acquire) {
            self.head.first.load(Relaxed)
        } else if chunk < CHUNKS {
            self.leaves.0[index].load(Acquire)
        } else {
            return false;
        };
        if leaf.is_null() {
            return false;
        }
        let i = chunk % LEAF_CHUNKS;
        // SAFETY: a leaf holds LEAF_CHUNKS bits and is never unmapped.
        unsafe { (*leaf.add(i / 64)).load(Relaxed) & (1 << (i % 64)) != 0 }
    }

    /// The leaf holding `addr`'s bit, mapped if it is not yet; null when
    /// there is no memory for it (or `addr` is beyond user space).
    fn leaf(&self, addr: usize) -> *mut AtomicU64 {
        let chunk = addr >> SEGMENT_SHIFT;
        if chunk >= CHUNKS {
            return null_mut();
        }
        let slot = &self.leaves.0[chunk / LEAF_CHUNKS];
        let leaf = slot.load(Acquire);
        if !leaf.is_null() {
            return leaf;
        }
        let Ok(fresh) = memkit_sys::map_meta(LEAF_CHUNKS / 8) else {
            return null_mut();
        };
        GLOBAL.map((LEAF_CHUNKS / 8) as u64, false);
        let fresh = fresh as *mut AtomicU64;
        match slot.compare_exchange(null_mut(), fresh, AcqRel, Acquire) {
            Ok(_) => {
                // The first leaf of this map: publish it beside the slots
                // (the pointer before the index that makes readers use it).
                if self
                    .head
                    .first
                    .compare_exchange(null_mut(), fresh, AcqRel, Acquire)
                    .is_ok()
                {
                    self.head.first_index.store(chunk / LEAF_CHUNKS, Release);
                }
                fresh
            }
            Err(other) => {
                // Another thread installed it first.
                // SAFETY: our mapping, never published.
                unsafe { memkit_sys::unmap_meta(fresh.cast(), LEAF_CHUNKS / 8) };
                GLOBAL.unmap((LEAF_CHUNKS / 8) as u64, false);
                other
            }
        }
    }

    /// Sets or clears the bit of `addr`'s chunk. Setting may map a leaf;
    /// if that fails the bit stays clear and `false` is returned.
    fn set(&self, addr: usize, on: bool) -> bool {
        let chunk = addr >> SEGMENT_SHIFT;
        if !on && (chunk >= CHUNKS || self.leaves.0[chunk / LEAF_CHUNKS].load(Acquire).is_null()) {
            return true;
        }
        let leaf = self.leaf(addr);
        if leaf.is_null() {
            return false;
        }
        let i = chunk % LEAF_CHUNKS;
        // SAFETY: a leaf holds LEAF_CHUNKS bits and is never unmapped.
        let word = unsafe { &*leaf.add(i / 64) };
        if on {
            word.fetch_or(1 << (i % 64), Relaxed);
        } else {
            word.fetch_and(!(1 << (i % 64)), Relaxed);
        }
        true
    }
}

/// Where a segment or huge block header of ours starts.
const OWNED: ChunkMap = ChunkMap {
    head: &OWNED_HEAD,
    leaves: &OWNED_LEAVES,
};
static OWNED_HEAD: ChunkHead = ChunkHead::new();
static OWNED_LEAVES: Leaves = Leaves::new();
/// Chunks that hold the data of a huge block aligned to 4 MiB or more,
/// whose header is the chunk before.
const INTERIOR: ChunkMap = ChunkMap {
    head: &INTERIOR_HEAD,
    leaves: &INTERIOR_LEAVES,
};
static INTERIOR_HEAD: ChunkHead = ChunkHead::new();
static INTERIOR_LEAVES: Leaves = Leaves::new();

/// Whether a segment or huge block header of ours starts at `seg`.
#[inline(always)]
pub fn is_owned(seg: usize) -> bool {
    OWNED.test(seg)
}

/// Marks (or unmarks) `seg` as ours. Call [`prepare_marks`] first: its
/// leaf must exist (or the mark is silently not made).
pub fn set_owned(seg: usize, on: bool) {
    let _ = OWNED.set(seg, on);
}

pub fn is_interior(chunk: usize) -> bool {
    INTERIOR.test(chunk)
}

/// As [`set_owned`], for the interior map.
pub fn set_interior(chunk: usize, on: bool) {
    let _ = INTERIOR.set(chunk, on);
}

/// Clears the ownership marks of every chunk of `base..base + len`: a
/// forked child disowning a shared source's memory (its `free` then
/// ignores the parent's blocks there instead of writing to them).
pub fn disown(base: usize, len: usize) {
    let mut chunk = base & !SEGMENT_MASK;
    while chunk < base + len {
        set_owned(chunk, false);
        set_interior(chunk, false);
        chunk += SEGMENT_SIZE;
    }
}

/// Maps the leaves that marks of a mapping at `base` need (its header's
/// chunk, and the next chunk for a huge block's interior mark). `false`
/// when there is no memory for them: the caller must give the mapping back.
pub fn prepare_marks(base: usize) -> bool {
    !OWNED.leaf(base).is_null() && !INTERIOR.leaf(base + SEGMENT_SIZE).is_null()
}

/// As [`prepare_marks`] for a small segment, which never carries an
/// interior mark: only the ownership leaf. (Mapping the interior leaf
/// too cost every program a resident page it never reads: the interior
/// test of a chunk whose leaf was never mapped is `false` without one.)
fn prepare_owned_mark(base: usize) -> bool {
    !OWNED.leaf(base).is_null()
}

/// Whether `p` points into a small segment of ours (all of whose 4 MiB
/// are mapped): the ownership bit and the header's kind.
#[inline(always)]
pub fn is_small_segment(p: *const u8) -> bool {
    let seg = Segment::of(p);
    // SAFETY: an owned chunk starts with a mapped header.
    is_owned(seg as usize) && unsafe { (*seg).kind == KIND_SMALL }
}

/// Whether `p` is the start of a block of a live small page, of bin `bin`
/// (any bin if 0): owned chunk, small segment, a page's carved part, a
/// block boundary. Reads only the descriptors' shared lines, so any thread
/// may ask; used to check decoded list links that may point anywhere.
pub fn is_block_of_bin(p: *const crate::page::Block, bin: usize) -> bool {
    let seg = Segment::of(p as *const u8);
    if !is_owned(seg as usize) {
        return false;
    }
    // SAFETY: an owned chunk starts with a mapped header; for a small
    // segment every slice has a descriptor (slice 0 and free slices are
    // FLAG_NO_PAGE).
    unsafe {
        if (*seg).kind != KIND_SMALL {
            return false;
        }
        let sh = &(*Segment::page_of_shared(seg, p as *const u8)).shared;
        if sh.flags & FLAG_NO_PAGE != 0 || (bin != 0 && sh.bin as usize != bin) {
            return false;
        }
        let off = (p as usize).wrapping_sub(sh.start as usize);
        off < sh.carved.load(Relaxed) as usize && crate::harden::on_boundary(off, sh.bin as usize)
    }
}

#[repr(C)]
pub struct Segment {
    pub heap: *mut Heap,
    pub kind: u32,
    /// [`OWNER_DEAD`] while the owning heap is dead (its thread exited): a
    /// thread that frees a block here gives it straight back instead of
    /// caching it, and collects dead heaps now and then; [`OWNER_ARENA`]
    /// (the same value) for an arena's segment; else [`OWNER_LIVE`]. On the header line every remote free reads anyway.
    /// (A huge header has `live` at this offset; only small segments read
    /// it as this.)
    pub owner_dead: core::sync::atomic::AtomicU32,
    /// Free slices (bit i: slice i is free). Slice 0 is the header: never free.
    pub free_mask: u64,
    /// Free slices that may still be resident (not purged since last use).
    pub dirty_mask: u64,
    /// When the dirty slices should be purged (ns, monotonic); 0 = none.
    pub purge_at: u64,
    /// Links in the owning heap's segment list, or in the segment cache.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Where the segment's memory came from and goes back to (slow paths
    /// only: map, purge, unmap).
    pub source: *const Source,
    pub pages: [Page; SLICES],
}

const _: () = assert!(core::mem::size_of::<Segment>() <= SLICE_SIZE);

impl Segment {
    #[inline(always)]
    pub fn of(p: *const u8) -> *mut Segment {
        (p as usize & !SEGMENT_MASK) as *mut Segment
    }

    /// The descriptor of the slice `p` points into (not necessarily a span head).
    ///
    /// # Safety
    /// `seg` must be a live small segment and `p` point into it.
    #[inline(always)]
    unsafe fn slice_of(seg: *mut Segment, p: *const u8) -> *mut Page {
        let idx = (p as usize - seg as usize) >> SLICE_SHIFT;
        // SAFETY: idx < SLICES because p is inside the segment.
        unsafe {
            core::ptr::addr_of_mut!((*seg).pages)
                .cast::<Page>()
                .add(idx)
        }
    }

    /// The page descriptor (span head) of a pointer into this segment.
    ///
    /// # Safety
    /// `seg` must be a live small segment and `p` point into it.
    #[inline(always)]
    pub unsafe fn page_of(seg: *mut Segment, p: *const u8) -> *mut Page {
        // SAFETY: per the contract; slice_offset leads back to the head.
        unsafe {
            let slice = Self::slice_of(seg, p);
            slice.byte_sub((*slice).slice_offset as usize)
        }
    }

    /// [`Segment::page_of`] for a thread that does not own the segment: it
    /// reads the copy of `slice_offset` on the descriptor's shared line.
    ///
    /// # Safety
    /// As [`Segment::page_of`].
    #[inline(always)]
    pub unsafe fn page_of_shared(seg: *mut Segment, p: *const u8) -> *mut Page {
        // SAFETY: per the contract; the copy equals slice_offset.
        unsafe {
            let slice = Self::slice_of(seg, p);
            slice.byte_sub((*slice).shared.slice_offset as usize)
        }
    }

    /// Checks the segment's structure: slice 0 is never free, resident
    /// free slices are free slices, every used slice belongs to exactly
    /// one span whose descriptors lead back to its head, every free slice
    /// is marked as no page; with `deep`, each page passes its own check
    /// (owner only: the pages' lists are walked).
    pub fn check_invariants(&self, deep: bool) -> Result<(), &'static str> {
        if self.kind != KIND_SMALL {
            return Err("segment: not a small segment");
        }
        if self.free_mask & 1 != 0 {
            return Err("segment: the header slice is marked free");
        }
        if self.dirty_mask & !self.free_mask != 0 {
            return Err("segment: a used slice is marked resident-free");
        }
        let mut i = 1;
        while i < SLICES {
            let p = &self.pages[i];
            if self.free_mask & (1 << i) != 0 {
                if p.flags & FLAG_NO_PAGE == 0 || p.block_size != 0 {
                    return Err("segment: a free slice has a page descriptor");
                }
                i += 1;
                continue;
            }
            let n = p.slice_count as usize;
            if n == 0 || i + n > SLICES || p.slice_offset != 0 || p.block_size == 0 {
                return Err("segment: a used slice is no span head");
            }
            for k in 1..n {
                let off = (k * core::mem::size_of::<Page>()) as u32;
                if self.free_mask & (1 << (i + k)) != 0
                    || self.pages[i + k].slice_offset != off
                    || self.pages[i + k].shared.slice_offset != off
                {
                    return Err("segment: a span's slice does not lead back to its head");
                }
            }
            if deep {
                p.check_invariants()?;
            }
            i += n;
        }
        Ok(())
    }

    /// Calls `f` with the descriptor of every page (span head) of the
    /// segment, in address order.
    ///
    /// # Safety
    /// The caller owns the segment; `f` does not change its spans.
    pub unsafe fn for_each_page(seg: *mut Segment, mut f: impl FnMut(*mut Page)) {
        // SAFETY: per the contract; slice_count leads from head to head.
        unsafe {
            let pages = core::ptr::addr_of_mut!((*seg).pages).cast::<Page>();
            let mut i = 1;
            while i < SLICES {
                if (*seg).free_mask & (1 << i) != 0 {
                    i += 1;
                    continue;
                }
                let p = pages.add(i);
                f(p);
                i += ((*p).slice_count as usize).max(1);
            }
        }
    }

    pub fn slice_addr(&self, idx: usize) -> *mut u8 {
        (self as *const Segment as *mut u8).wrapping_add(idx * SLICE_SIZE)
    }

    pub fn is_empty(&self) -> bool {
        self.free_mask == ALL_DATA_SLICES
    }

    /// Takes `n` consecutive free slices; returns the head slice index.
    pub fn take_span(&mut self, n: usize) -> Option<usize> {
        self.take_span_in(n, self.free_mask)
    }

    /// Takes `n` consecutive free slices that are all still resident, if
    /// there are such.
    pub fn take_dirty_span(&mut self, n: usize) -> Option<usize> {
        self.take_span_in(n, self.free_mask & self.dirty_mask)
    }

    fn take_span_in(&mut self, n: usize, mask: u64) -> Option<usize> {
        if (mask.count_ones() as usize) < n {
            return None;
        }
        let want: u64 = if n >= 64 { !0 } else { (1u64 << n) - 1 };
        let mut m = mask;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            if i + n > SLICES {
                return None;
            }
            let run = (mask >> i) & want;
            if run == want {
                let bits = want << i;
                self.free_mask &= !bits;
                let dirty = self.dirty_mask & bits;
                self.dirty_mask &= !bits;
                GLOBAL
                    .dirty_bytes
                    .fetch_sub(dirty.count_ones() as u64 * SLICE_SIZE as u64, Relaxed);
                return Some(i);
            }
            m &= m - 1;
        }
        None
    }

    /// Returns a span's slices; they stay resident until purged.
    pub fn release_span(&mut self, head: usize, n: usize) {
        let want: u64 = if n >= 64 { !0 } else { (1u64 << n) - 1 };
        let bits = want << head;
        debug_assert!(self.free_mask & bits == 0);
        self.free_mask |= bits;
        self.dirty_mask |= bits;
        GLOBAL
            .dirty_bytes
            .fetch_add(n as u64 * SLICE_SIZE as u64, Relaxed);
        for i in head..head + n {
            self.pages[i] = Page::EMPTY;
        }
    }

    /// Purges every dirty slice now (`MADV_DONTNEED`), in contiguous runs.
    pub fn purge(&mut self) -> u64 {
        let mut m = self.dirty_mask;
        let mut total = 0u64;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            let len = (!(m >> i)).trailing_zeros() as usize;
            let bytes = len * SLICE_SIZE;
            // SAFETY: free slices of a segment we own hold no live data.
            // Locked pages refuse MADV_DONTNEED (EINVAL): they stay resident
            // and are not counted as purged.
            if unsafe { ((*self.source).purge)(self.source, self.slice_addr(i), bytes) } {
                total += bytes as u64;
            }
            m &= if i + len >= 64 { 0 } else { !0u64 << (i + len) };
        }
        GLOBAL.dirty_bytes.fetch_sub(
            self.dirty_mask.count_ones() as u64 * SLICE_SIZE as u64,
            Relaxed,
        );
        self.dirty_mask = 0;
        self.purge_at = 0;
        GLOBAL.purged.fetch_add(total, Relaxed);
        total
    }

    fn init(seg: *mut Segment, heap: *mut Heap, dirty: u64, owner: u32, src: *const Source) {
        // SAFETY: the caller hands us a mapped segment nobody else uses; the
        // header slice is writable.
        unsafe {
            (*seg).heap = heap;
            (*seg).kind = KIND_SMALL;
            (*seg).owner_dead.store(owner, Relaxed);
            (*seg).source = src;
            (*seg).free_mask = ALL_DATA_SLICES;
            (*seg).dirty_mask = dirty;
            (*seg).purge_at = 0;
            (*seg).next = null_mut();
            (*seg).prev = null_mut();
            let pages = core::ptr::addr_of_mut!((*seg).pages).cast::<Page>();
            for i in 0..SLICES {
                pages.add(i).write(Page::EMPTY);
            }
        }
    }
}

/// Most resident free bytes the segment cache keeps (see [`free`]).
const CACHE_DIRTY_BYTES: u64 = 4 << 20;

/// Free segments kept for reuse (a doubly linked list through `next`/`prev`,
/// newest first).
struct Cache {
    head: *mut Segment,
    count: u64,
}

// SAFETY: the raw pointers are only touched under the lock.
unsafe impl Send for Cache {}

static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    head: null_mut(),
    count: 0,
});

/// Whether [`CACHE`] is empty, written under its lock, read without it:
/// the paths that would find nothing there (a program's first segments,
/// every maintenance tick of a program that never frees a segment) skip
/// the lock, whose store would make its page of `.bss` resident in every
/// program. Initially `true`, so the flag sits in `.data`, which is
/// resident anyway. A reader that misses a segment entering the cache at
/// that moment maps a fresh one, or decays it at the next tick.
static CACHE_EMPTY: AtomicBool = AtomicBool::new(true);

/// A segment for `heap`, whose memory source is `src` and whose segments
/// carry `owner` ([`OWNER_LIVE`] or [`OWNER_ARENA`]): from the cache if
/// `src` is the OS, else freshly mapped by `src`.
///
/// # Safety
/// `src` is a live source (it outlives the segment).
pub unsafe fn alloc(heap: *mut Heap, src: *const Source, owner: u32) -> *mut Segment {
    // SAFETY: per the contract.
    if unsafe { source::is_os(src) } && !CACHE_EMPTY.load(Relaxed) {
        let mut c = CACHE.lock();
        let s = c.head;
        if !s.is_null() {
            // SAFETY: cached segments are mapped and unused.
            unsafe {
                c.head = (*s).next;
                c.count -= 1;
                CACHE_EMPTY.store(c.head.is_null(), Relaxed);
                let dirty = (*s).dirty_mask;
                drop(c);
                Segment::init(s, heap, dirty, owner, src);
            }
            return s;
        }
    }
    // SAFETY: the source maps fresh memory or returns null.
    let p = unsafe { ((*src).map)(src, SEGMENT_SIZE, SEGMENT_SIZE) };
    if p.is_null() {
        return null_mut();
    }
    match OPTIONS.thp.load(Relaxed) {
        // SAFETY: a mapping we just made.
        THP_ALWAYS => unsafe {
            ((*src).advise_huge)(src, p, SEGMENT_SIZE, true);
        },
        // SAFETY: a mapping we just made.
        THP_NEVER => unsafe {
            ((*src).advise_huge)(src, p, SEGMENT_SIZE, false);
        },
        _ => {}
    }
    if !prepare_owned_mark(p as usize) {
        // SAFETY: our fresh mapping, not handed out.
        unsafe { ((*src).unmap)(src, p, SEGMENT_SIZE) };
        return null_mut();
    }
    GLOBAL.map(SEGMENT_SIZE as u64, false);
    let seg = p as *mut Segment;
    Segment::init(seg, heap, 0, owner, src);
    set_owned(seg as usize, true);
    seg
}

/// Gives an empty segment back: to the cache, or to the OS when the cache is full.
///
/// # Safety
/// The caller owns the empty segment `seg` and stops using it.
pub unsafe fn free(seg: *mut Segment, now: u64) {
    // SAFETY: per the contract.
    unsafe {
        debug_assert!((*seg).is_empty());
        debug_assert_eq!((*seg).check_invariants(false), Ok(()));
        (*seg).heap = null_mut();
        if !source::is_os((*seg).source) {
            // Only OS segments are cached: this one goes home.
            unmap(seg);
            return;
        }
        (*seg).purge_at = now + OPTIONS.purge_delay_ns.load(Relaxed);
        let limit = OPTIONS.segment_cache.load(Relaxed);
        let mut c = CACHE.lock();
        if c.count < limit {
            // Resident free memory in the cache stays bounded: beyond
            // CACHE_DIRTY_BYTES the segment is purged as it enters (its
            // next user faults its pages in again, as a fresh one would).
            let mut dirty = 0u64;
            let mut s = c.head;
            while !s.is_null() {
                dirty += (*s).dirty_mask.count_ones() as u64;
                s = (*s).next;
            }
            let mine = (*seg).dirty_mask.count_ones() as u64;
            if (dirty + mine) * SLICE_SIZE as u64 > CACHE_DIRTY_BYTES
                && !OPTIONS.memory_locked.load(Relaxed)
            {
                (*seg).purge();
            }
            (*seg).prev = null_mut();
            (*seg).next = c.head;
            c.head = seg;
            c.count += 1;
            CACHE_EMPTY.store(false, Relaxed);
            return;
        }
        drop(c);
        unmap(seg);
    }
}

/// Gives a segment back to its source, whatever its pages hold (an
/// arena's `destroy`, which frees every block at once).
///
/// # Safety
/// `seg` is a segment of ours that nobody uses any more, in no list.
pub unsafe fn discard(seg: *mut Segment) {
    // SAFETY: forwarded.
    unsafe { unmap(seg) }
}

/// # Safety
/// `seg` must be an unused segment of ours.
unsafe fn unmap(seg: *mut Segment) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let dirty = (*seg).dirty_mask.count_ones() as u64 * SLICE_SIZE as u64;
        GLOBAL.dirty_bytes.fetch_sub(dirty, Relaxed);
        set_owned(seg as usize, false);
        let src = (*seg).source;
        ((*src).unmap)(src, seg as *mut u8, SEGMENT_SIZE);
    }
    GLOBAL.unmap(SEGMENT_SIZE as u64, false);
}

/// Unmaps cached segments idle past their deadline (all of them if `force`).
/// Returns the bytes released.
pub fn decay_cache(now: u64, force: bool) -> u64 {
    let mut released = 0;
    if (!force && OPTIONS.memory_locked.load(Relaxed)) || CACHE_EMPTY.load(Relaxed) {
        return 0;
    }
    let mut c = CACHE.lock();
    let mut prev: *mut Segment = null_mut();
    let mut s = c.head;
    while !s.is_null() {
        // SAFETY: cached segments are mapped, unused, linked under the lock.
        unsafe {
            let next = (*s).next;
            if force || now >= (*s).purge_at {
                if prev.is_null() {
                    c.head = next;
                } else {
                    (*prev).next = next;
                }
                c.count -= 1;
                CACHE_EMPTY.store(c.head.is_null(), Relaxed);
                unmap(s);
                released += SEGMENT_SIZE as u64;
            } else {
                prev = s;
            }
            s = next;
        }
    }
    released
}

/// Number of cached segments.
pub fn cached() -> u64 {
    CACHE.lock().count
}

/// Re-initialises the cache lock in a forked child.
///
/// # Safety
/// Only in the child after `fork`, with the lock taken by the prepare handler.
pub unsafe fn fork_child() {
    // SAFETY: forwarded.
    unsafe { CACHE.raw_unlock() }
}

pub fn fork_prepare() {
    CACHE.raw_lock();
}

/// # Safety
/// Only in the parent after `fork`, with the lock taken by `fork_prepare`.
pub unsafe fn fork_parent() {
    // SAFETY: forwarded.
    unsafe { CACHE.raw_unlock() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Segment {
        Segment {
            heap: null_mut(),
            kind: KIND_SMALL,
            owner_dead: core::sync::atomic::AtomicU32::new(0),
            free_mask: ALL_DATA_SLICES,
            dirty_mask: 0,
            purge_at: 0,
            next: null_mut(),
            prev: null_mut(),
            source: source::os(),
            pages: [Page::EMPTY; SLICES],
        }
    }

    #[test]
    fn spans_are_first_fit_and_never_overlap() {
        let mut s = blank();
        assert_eq!(s.take_span(1), Some(1));
        assert_eq!(s.take_span(4), Some(2));
        assert_eq!(s.take_span(1), Some(6));
        s.release_span(2, 4);
        assert_eq!(s.take_span(5), Some(7));
        assert_eq!(s.take_span(3), Some(2));
        assert_eq!(s.take_span(1), Some(5));
        assert_eq!(s.take_span(52), Some(12));
        assert_eq!(s.take_span(1), None);
        assert_eq!(s.free_mask, 0);
    }

    #[test]
    fn resident_spans_are_found_past_purged_ones() {
        let mut s = blank();
        assert_eq!(s.take_span(8), Some(1));
        // Slices 1-2 were purged, 3-5 are still resident, 6-8 in use.
        s.release_span(1, 5);
        s.dirty_mask &= !0b110;
        assert_eq!(s.take_dirty_span(4), None, "no resident run of 4");
        assert_eq!(s.take_dirty_span(2), Some(3));
        assert_eq!(s.dirty_mask, 1 << 5);
        // The lowest free run, resident or not.
        assert_eq!(s.take_span(1), Some(1));
        assert_eq!(s.take_dirty_span(1), Some(5));
        assert_eq!(s.take_dirty_span(1), None);
        assert_eq!(s.free_mask & 0b1_1111_1110, 1 << 2);
    }

    #[test]
    fn a_span_of_all_data_slices_fits_an_empty_segment() {
        let mut s = blank();
        assert_eq!(s.take_span(63), Some(1));
        assert_eq!(s.take_span(1), None);
        s.release_span(1, 63);
        assert!(s.is_empty());
    }
}
