//! What a shared heap holds, at which offset: the header, the named-object
//! directory, the registry of attached processes, the unit table and its
//! bitmap, then the data units. Everything here is reached from the
//! mapping's base by offset, never by an absolute pointer: every process
//! maps the object at its own address.
//!
//! ```text
//!  0      header (magic, version, size, geometry, creator, the two locks, class lists)
//!  4 KiB  named directory   NAMED_MAX entries of 72 bytes
//!         slots             one per attached process: pid, start time, block caches
//!         unit table        u32 per 4 KiB unit: 0, or the head of a run (kind, length)
//!         unit bitmap       1 bit per unit: in a run (derived from the table)
//!  data   units             runs: 64 KiB slab spans of one size class, or large blocks
//! ```

use core::sync::atomic::{AtomicU32, AtomicU64};

use memkit_sys::shm::PthreadMutex;

/// `"MEMKITSH"`: the first 8 bytes of every memkit heap, written last at
/// creation (a heap is never visible without it: see `create`).
pub const MAGIC: u64 = u64::from_le_bytes(*b"MEMKITSH");
/// The layout version; another one is refused with EINVAL.
pub const VERSION: u32 = 1;

/// The granule of runs (large blocks and spans).
pub const UNIT: usize = 4096;
/// Units per slab span.
pub const SPAN_UNITS: usize = 16;
/// Bytes per slab span (spans are aligned to it, counted from `data_start`).
pub const SPAN: usize = UNIT * SPAN_UNITS;
/// The smallest heap (rounded up to a unit otherwise).
pub const MIN_SIZE: u64 = 256 << 10;
/// The largest heap: cached blocks are stored as `offset / 16` in 32 bits.
pub const MAX_SIZE: u64 = 64 << 30;
/// Alignment of every block.
pub const ALIGN: usize = 16;

/// Entries of the named-object directory.
pub const NAMED_MAX: usize = 128;
/// Longest key of a named object, in bytes (without the NUL).
pub const KEY_MAX: usize = 47;

/// Size classes: 16-byte steps to 128 B, then 8 classes per power of two
/// to 8 KiB (at most 12.5% internal waste above 128 B), like memkit's own.
pub const NCLASSES: usize = 56;
/// The largest slab block; larger requests are runs of whole units.
pub const MAX_SMALL: usize = 8192;
/// Classes served from the per-process caches (blocks up to 1 KiB).
pub const CACHED: usize = 32;
/// Blocks a process keeps per cached class.
pub const CACHE_N: usize = 16;
/// Blocks moved between a cache and the heap at once.
pub const BATCH: usize = 8;

/// "No span": the end of a class list.
pub const NONE: u32 = u32::MAX;

/// A table entry that heads a large block: `LARGE | units`.
pub const LARGE: u32 = 0x8000_0000;
/// A table entry that heads a slab span: `SLAB | class`.
pub const SLAB: u32 = 0x4000_0000;
pub const KIND_MASK: u32 = LARGE | SLAB;

/// The class of a request of `size` bytes (`size <= MAX_SMALL`).
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    if size <= 128 {
        return size.saturating_sub(1) >> 4;
    }
    let s = size - 1;
    let e = (usize::BITS - 1 - s.leading_zeros()) as usize; // floor(log2(s)), >= 7
    8 + (e - 7) * 8 + ((s >> (e - 3)) & 7)
}

/// The block size of class `c`.
#[inline(always)]
pub const fn class_size(c: usize) -> usize {
    if c < 8 {
        return 16 * (c + 1);
    }
    let base = 128 << ((c - 8) / 8);
    base + ((c - 8) % 8 + 1) * (base / 8)
}

/// Bytes of a span before its first block.
pub const SPAN_HEADER: usize = core::mem::size_of::<Span>();

/// Blocks of class `c` in a span.
#[inline(always)]
pub const fn blocks_per_span(c: usize) -> usize {
    (SPAN - SPAN_HEADER) / class_size(c)
}

/// A cache line of its own (the locks: two processes taking one must not
/// slow the other's reads of the geometry).
#[repr(C, align(64))]
pub struct Line<T>(pub T);

/// The heap's first page.
///
/// Fixed at creation: everything up to `creator_comm`. Under `alloc`:
/// `class_head`, `cursor`, the tables, spans, slots and the directory.
#[repr(C)]
pub struct Header {
    pub magic: AtomicU64,
    pub version: u32,
    /// `size_of::<Header>()` of the creator, checked at open.
    pub header_size: u32,
    /// Bytes of the object (the mapping).
    pub size: u64,
    pub data_start: u64,
    pub units: u64,
    pub named_off: u64,
    pub slots_off: u64,
    pub table_off: u64,
    pub bitmap_off: u64,
    pub slots: u32,
    pub named_max: u32,
    pub creator_pid: u32,
    pub creator_uid: u32,
    pub creator_start: u64,
    /// Seconds since the epoch.
    pub created: u64,
    pub creator_comm: [u8; 16],
    /// Times a lock holder died and the next one repaired the heap.
    pub repairs: AtomicU64,
    /// The allocator's lock: every change of the shared structures.
    pub alloc: Line<PthreadMutex>,
    /// The user's lock (`memkit_shm_lock`).
    pub user: Line<PthreadMutex>,
    /// First span of each class with a free block (a doubly linked list
    /// through `Span::prev/next`; derived, rebuilt by repair).
    pub class_head: [u32; NCLASSES],
    /// Where the next search for a free run starts (a unit index).
    pub cursor: u32,
}

/// A slab span's header, at the start of its 64 KiB.
///
/// `bits` is the truth (bit `i` set: block `i` is allocated or in a
/// process's cache; the bits past `nblocks` are always set); `used ==
/// popcount(bits) - tail`, `prev/next/listed` (in its class list iff
/// `used < nblocks`) and `hint` (no free block in a word below it) are
/// derived and rebuilt by repair.
#[repr(C)]
pub struct Span {
    pub magic: u32,
    pub class: u32,
    pub nblocks: u32,
    pub used: u32,
    pub prev: u32,
    pub next: u32,
    pub listed: u32,
    pub hint: u32,
    pub bits: [u64; 64],
}

/// `"SPAN"`.
pub const SPAN_MAGIC: u32 = u32::from_le_bytes(*b"SPAN");

/// Slot states.
pub const SLOT_FREE: u32 = 0;
pub const SLOT_ATTACHED: u32 = 1;

/// One attached process: who it is (pid and start time, so a reused pid
/// is not taken for it) and the blocks it keeps for its own allocations.
///
/// `state`, `pid` and `start` change under `alloc`. The rest belongs to
/// the attached process alone while it lives, and to whoever holds
/// `alloc` once it is dead: `entries[c][..count[c]]` are cached blocks
/// (as `offset / 16`), allocated in their spans; `pending` is a block
/// being pushed by a `free` (0: none); `staged = class << 16 | n` says
/// that `entries[class][count..count + n]` are being refilled under
/// `alloc` and may or may not be allocated yet. A dead process's slot is
/// reclaimed by freeing all of them (freeing is idempotent).
#[repr(C, align(64))]
pub struct Slot {
    pub state: AtomicU32,
    pub pid: u32,
    pub start: u64,
    pub pending: u32,
    pub staged: u32,
    pub count: [u8; CACHED],
    pub entries: [[u32; CACHE_N]; CACHED],
}

/// Directory entry states.
pub const NAMED_FREE: u32 = 0;
/// Being created under `alloc`: `off`, if not 0, may or may not be
/// allocated yet.
pub const NAMED_STAGED: u32 = 1;
pub const NAMED_USED: u32 = 2;

/// A named object.
#[repr(C)]
pub struct Named {
    pub state: u32,
    pub key_len: u32,
    pub off: u64,
    pub size: u64,
    pub key: [u8; KEY_MAX + 1],
}

/// The offsets of every region for a heap of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub size: u64,
    pub named_off: u64,
    pub slots_off: u64,
    pub slots: u32,
    pub table_off: u64,
    pub bitmap_off: u64,
    pub data_start: u64,
    pub units: u64,
}

const fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl Geometry {
    /// The layout of a heap of `size` bytes (a multiple of [`UNIT`],
    /// `MIN_SIZE..=MAX_SIZE`).
    pub fn for_size(size: u64) -> Geometry {
        let named_off = UNIT as u64;
        let slots_off = named_off + round_up((NAMED_MAX * size_of::<Named>()) as u64, 64);
        // One slot per 512 KiB, 8 to 64: more processes than slots still
        // work, without caches.
        let slots = (size / (512 << 10)).clamp(8, 64) as u32;
        let table_off = slots_off + slots as u64 * size_of::<Slot>() as u64;
        let max_units = size / UNIT as u64;
        let bitmap_off = table_off + round_up(max_units * 4, 8);
        let meta_end = bitmap_off + max_units.div_ceil(64) * 8;
        let data_start = round_up(meta_end, UNIT as u64);
        Geometry {
            size,
            named_off,
            slots_off,
            slots,
            table_off,
            bitmap_off,
            data_start,
            units: (size - data_start) / UNIT as u64,
        }
    }

    /// The geometry a header records, if it is the one its size implies
    /// (anything else is not a heap this version made).
    pub fn of_header(h: &Header) -> Option<Geometry> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&h.size) || h.size % UNIT as u64 != 0 {
            return None;
        }
        let g = Geometry::for_size(h.size);
        let recorded = Geometry {
            size: h.size,
            named_off: h.named_off,
            slots_off: h.slots_off,
            slots: h.slots,
            table_off: h.table_off,
            bitmap_off: h.bitmap_off,
            data_start: h.data_start,
            units: h.units,
        };
        (recorded == g && h.named_max as usize == NAMED_MAX).then_some(g)
    }
}

const _: () = {
    assert!(size_of::<Header>() <= UNIT);
    assert!(SPAN_HEADER % ALIGN == 0);
    assert!(class_size(NCLASSES - 1) == MAX_SMALL);
    assert!(class_size(CACHED - 1) == 1024);
    assert!(blocks_per_span(0) <= 64 * 64);
    assert!(size_of::<PthreadMutex>() == 40);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_with_little_waste() {
        for size in 0..=MAX_SMALL {
            let c = class_of(size);
            assert!(c < NCLASSES, "{size}");
            let bs = class_size(c);
            assert!(bs >= size.max(1) && bs % ALIGN == 0, "{size} -> {bs}");
            if c > 0 {
                assert!(class_size(c - 1) < size, "{size} could use class {}", c - 1);
            }
            if size > 128 {
                assert!(bs - size <= size / 8 + 1, "{size} -> {bs}");
            }
        }
    }

    #[test]
    fn geometry_fits() {
        for size in [MIN_SIZE, 1 << 20, 100 << 20, MAX_SIZE] {
            let g = Geometry::for_size(size);
            assert!(g.data_start + g.units * UNIT as u64 <= size);
            assert!(g.units >= SPAN_UNITS as u64, "{g:?}");
            assert!(g.bitmap_off >= g.table_off + g.units * 4);
        }
    }
}
