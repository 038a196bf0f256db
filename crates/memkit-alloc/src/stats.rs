//! Statistics: per-heap counters (written by the owning thread only, summed on
//! read) and process-wide atomics for the slow paths (mapping, purging).
//!
//! The fast paths touch one counter per call, with a plain relaxed load and
//! store (no read-modify-write): `malloc` counts the block in its bin's
//! allocation counter, `free` in the bin's free counter. Calls, bytes
//! allocated and bytes in use are derived from the per-bin pairs on read
//! (bytes in use = sum of (allocs - frees) x block size).

use core::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering::Relaxed};

use crate::size_class::{BIN_BYTES, NBINS};

/// Counters of one heap. Written only by the owning thread.
#[repr(C)]
pub struct HeapStats {
    /// Small and medium blocks allocated by this thread, per bin.
    pub bin_allocs: [AtomicU64; NBINS],
    /// Small and medium blocks freed by this thread (whoever owned them), per bin.
    pub bin_frees: [AtomicU64; NBINS],
    /// Huge blocks allocated and freed by this thread.
    pub huge_allocs: AtomicU64,
    pub huge_frees: AtomicU64,
    pub reallocs: AtomicU64,
    /// Bytes requested for huge blocks (and their growth by `realloc`).
    pub huge_requested: AtomicU64,
}

/// What a heap's counters add up to.
#[derive(Clone, Copy, Default)]
pub struct HeapSums {
    pub allocs: u64,
    pub frees: u64,
    /// Bytes handed out: block sizes for small and medium blocks, requests
    /// for huge ones.
    pub allocated: u64,
    /// Bytes of small/medium blocks allocated minus freed by this thread.
    pub in_use: i64,
}

impl HeapStats {
    // A template for initialisers, never shared: each use is a fresh value.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const ZERO: HeapStats = HeapStats {
        bin_allocs: [const { AtomicU64::new(0) }; NBINS],
        bin_frees: [const { AtomicU64::new(0) }; NBINS],
        huge_allocs: AtomicU64::new(0),
        huge_frees: AtomicU64::new(0),
        reallocs: AtomicU64::new(0),
        huge_requested: AtomicU64::new(0),
    };

    /// Counts one small/medium block of `bin` allocated.
    #[inline(always)]
    pub fn alloc(&self, bin: usize) {
        // SAFETY: bin < NBINS for every block of ours.
        bump(unsafe { self.bin_allocs.get_unchecked(bin) }, 1);
    }

    /// Counts one small/medium block of `bin` freed.
    #[inline(always)]
    pub fn free(&self, bin: usize) {
        // SAFETY: bin < NBINS for every block of ours.
        bump(unsafe { self.bin_frees.get_unchecked(bin) }, 1);
    }

    /// Adds up the counters (racy against the owner, each counter exact).
    pub fn sums(&self) -> HeapSums {
        let mut s = HeapSums {
            allocs: self.huge_allocs.load(Relaxed),
            frees: self.huge_frees.load(Relaxed),
            allocated: self.huge_requested.load(Relaxed),
            in_use: 0,
        };
        // The block-size table, not `bin_size`: its division and shifts
        // were 4% of glibc-thread's instructions (a sum every 8th slow path).
        let bins = self.bin_allocs.iter().zip(&self.bin_frees).zip(&BIN_BYTES);
        for ((a, f), &size) in bins {
            let (a, f, size) = (a.load(Relaxed), f.load(Relaxed), size as u64);
            s.allocs += a;
            s.frees += f;
            s.allocated += a.wrapping_mul(size);
            s.in_use += (a.wrapping_sub(f) as i64).wrapping_mul(size as i64);
        }
        s
    }
}

/// Adds to a counter that only the calling thread writes.
#[inline(always)]
pub fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Process-wide figures, updated on slow paths.
pub struct Global {
    /// Bytes mapped for segments (small and medium blocks).
    pub segment_mapped: AtomicU64,
    /// Bytes mapped for huge blocks (live and cached).
    pub huge_mapped: AtomicU64,
    /// Live huge blocks and their usable bytes.
    pub huge_live: AtomicU64,
    pub huge_live_bytes: AtomicU64,
    pub huge_allocs: AtomicU64,
    /// Highest `segment_mapped + huge_mapped` seen.
    pub peak_mapped: AtomicU64,
    pub unmapped: AtomicU64,
    pub purged: AtomicU64,
    /// Free slices and cached blocks still resident (what a trim can release).
    pub dirty_bytes: AtomicU64,
    /// Bytes in use, as last flushed by the heaps (for the peak).
    pub in_use_flushed: AtomicI64,
    pub peak_in_use: AtomicI64,
    /// Frees by threads that never allocated (they have no heap to count in).
    pub orphan_frees: AtomicU64,
    pub orphan_freed_bytes: AtomicU64,
    /// Threads that created a heap.
    pub threads: AtomicU64,
}

pub static GLOBAL: Global = Global {
    segment_mapped: AtomicU64::new(0),
    huge_mapped: AtomicU64::new(0),
    huge_live: AtomicU64::new(0),
    huge_live_bytes: AtomicU64::new(0),
    huge_allocs: AtomicU64::new(0),
    peak_mapped: AtomicU64::new(0),
    unmapped: AtomicU64::new(0),
    purged: AtomicU64::new(0),
    dirty_bytes: AtomicU64::new(0),
    in_use_flushed: AtomicI64::new(0),
    peak_in_use: AtomicI64::new(0),
    orphan_frees: AtomicU64::new(0),
    orphan_freed_bytes: AtomicU64::new(0),
    threads: AtomicU64::new(0),
};

impl Global {
    pub fn map(&self, bytes: u64, huge: bool) {
        let c = if huge {
            &self.huge_mapped
        } else {
            &self.segment_mapped
        };
        c.fetch_add(bytes, Relaxed);
        let total = self.segment_mapped.load(Relaxed) + self.huge_mapped.load(Relaxed);
        self.peak_mapped.fetch_max(total, Relaxed);
    }

    pub fn unmap(&self, bytes: u64, huge: bool) {
        let c = if huge {
            &self.huge_mapped
        } else {
            &self.segment_mapped
        };
        c.fetch_sub(bytes, Relaxed);
        self.unmapped.fetch_add(bytes, Relaxed);
    }

    /// Adds a heap's unflushed in-use delta (0 after a huge allocation) and
    /// raises the peak.
    pub fn flush_in_use(&self, delta: i64) {
        let now = if delta != 0 {
            self.in_use_flushed.fetch_add(delta, Relaxed) + delta
        } else {
            self.in_use_flushed.load(Relaxed)
        };
        let huge = self.huge_live_bytes.load(Relaxed) as i64;
        self.peak_in_use.fetch_max(now + huge, Relaxed);
    }
}

/// A consistent-enough snapshot of the allocator's state (summed on read).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    /// Bytes allocated over the process's life: block sizes for small and
    /// medium blocks (at most 12.5% above the requests), requests for huge ones.
    pub allocated: u64,
    /// Bytes of small/medium blocks in use (block sizes, not requests).
    pub small_in_use: u64,
    pub huge_live: u64,
    pub huge_live_bytes: u64,
    pub huge_allocs: u64,
    pub segment_mapped: u64,
    pub huge_mapped: u64,
    pub peak_mapped: u64,
    pub peak_in_use: u64,
    pub unmapped: u64,
    pub purged: u64,
    /// Free but resident bytes (free slices, cached segments, cached huge blocks).
    pub dirty: u64,
    pub threads: u64,
    pub live_heaps: u64,
    pub dead_heaps: u64,
    pub cached_segments: u64,
    pub cached_huge: u64,
}

impl Stats {
    /// Bytes in use by the program, small and huge.
    pub fn in_use(&self) -> u64 {
        self.small_in_use + self.huge_live_bytes
    }

    /// Bytes currently mapped from the OS.
    pub fn mapped(&self) -> u64 {
        self.segment_mapped + self.huge_mapped
    }
}

/// A function of the front end that the allocation slow path calls now and
/// then: on each of a thread's first 8 slow calls, then on every 8th
/// (`heap::tick`, `FLUSH_EVERY`). libmemkit.so refreshes the record
/// `memkit run` reads with it. It runs inside `malloc`, on the allocating
/// thread, with no allocator lock held: it may read [`crate::stats`], and
/// must neither allocate nor block.
static PERIODIC_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Sets (or, with `None`, removes) the periodic hook (see [`PERIODIC_HOOK`]).
pub fn set_periodic_hook(hook: Option<fn()>) {
    let p = hook.map_or(core::ptr::null_mut(), |f| f as *mut ());
    PERIODIC_HOOK.store(p, Relaxed);
}

/// Calls the periodic hook, if one is set.
#[inline]
pub(crate) fn run_periodic_hook() {
    let p = PERIODIC_HOOK.load(Relaxed);
    if !p.is_null() {
        // SAFETY: only `set_periodic_hook` stores here, and only `fn()`s.
        let f = unsafe { core::mem::transmute::<*mut (), fn()>(p) };
        f();
    }
}
