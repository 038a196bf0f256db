//! Statistics: per-heap counters (written by the owning thread only, summed on
//! read) and process-wide atomics for the slow paths (mapping, purging).
//!
//! The fast paths touch only their own heap's counters with plain relaxed
//! loads and stores (no read-modify-write), so counting costs them a few adds.

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters of one heap. Written only by the owning thread.
#[repr(C)]
pub struct HeapStats {
    pub allocs: AtomicU64,
    pub frees: AtomicU64,
    pub reallocs: AtomicU64,
    /// Bytes requested by `malloc` and friends.
    pub requested: AtomicU64,
    /// Bytes of small/medium blocks allocated minus freed by this thread.
    pub in_use: AtomicI64,
}

impl HeapStats {
    // A template for initialisers, never shared: each use is a fresh value.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const ZERO: HeapStats = HeapStats {
        allocs: AtomicU64::new(0),
        frees: AtomicU64::new(0),
        reallocs: AtomicU64::new(0),
        requested: AtomicU64::new(0),
        in_use: AtomicI64::new(0),
    };
}

/// Adds to a counter that only the calling thread writes.
#[inline(always)]
pub fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

#[inline(always)]
pub fn bump_i(c: &AtomicI64, by: i64) {
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
    /// Bytes requested over the process's life.
    pub requested: u64,
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
