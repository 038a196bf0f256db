//! The liveness registry: one slot per attached process (pid and start
//! time), holding that process's block caches. A slot whose process is
//! gone is reclaimed by the next process that attaches, repairs, or runs
//! out of room: every block it held is freed (see `layout::Slot`).

use core::sync::atomic::Ordering::{Acquire, Release};

use crate::alloc::Block;
use crate::layout::*;
use crate::view::View;

/// Who the calling process is: its pid and start time.
pub fn me() -> (u32, u64) {
    let pid = memkit_sys::pid();
    (pid, memkit_sys::shm::process_start(pid).unwrap_or(0))
}

/// Whether the process of a slot is alive. A slot with start time 0 (the
/// attacher could not read its own /proc entry) is judged by pid alone.
pub fn alive(pid: u32, start: u64) -> bool {
    match memkit_sys::shm::process_start(pid) {
        Some(s) => start == 0 || s == start,
        None => false,
    }
}

impl View {
    /// Claims a free slot (or a dead process's, reclaimed) for the caller
    /// (alloc lock held). NONE when every slot holds a live process.
    pub fn attach(&self, me: (u32, u64)) -> u32 {
        let mut free = NONE;
        for i in 0..self.g.slots {
            // SAFETY: i < slots; the lock is held.
            let s = unsafe { &*self.slot(i) };
            match s.state.load(Acquire) {
                SLOT_FREE => {
                    if free == NONE {
                        free = i;
                    }
                }
                _ if !alive(s.pid, s.start) => {
                    self.reclaim(i);
                    if free == NONE {
                        free = i;
                    }
                }
                _ => {}
            }
        }
        if free != NONE {
            // SAFETY: a free slot; the lock is held.
            let s = unsafe { &mut *self.slot(free) };
            s.pid = me.0;
            s.start = me.1;
            s.pending = 0;
            s.staged = 0;
            s.count = [0; CACHED];
            s.state.store(SLOT_ATTACHED, Release);
        }
        free
    }

    /// Frees every block slot `i` holds and frees the slot (alloc lock
    /// held; its process is dead, or it is the caller's own at close).
    pub fn reclaim(&self, i: u32) {
        // SAFETY: i < slots; nobody else touches a dead process's slot
        // without the lock.
        let s = unsafe { &mut *self.slot(i) };
        // A refill killed under the lock: `entries[class][count..count + n]`
        // may or may not be allocated yet (freeing is idempotent).
        let staged_class = (s.staged >> 16) as usize;
        if staged_class < CACHED {
            let from = (s.count[staged_class] as usize).min(CACHE_N);
            let to = (from + (s.staged & 0xffff) as usize).min(CACHE_N);
            for k in from..to {
                self.free_cached(s.entries[staged_class][k], staged_class);
            }
        }
        for c in 0..CACHED {
            let n = (s.count[c] as usize).min(CACHE_N);
            for k in 0..n {
                self.free_cached(s.entries[c][k], c);
            }
            s.count[c] = 0;
        }
        if s.pending != 0 {
            let (off, class) = (s.pending, self.class_of_cached(s.pending));
            if let Some(c) = class {
                self.free_cached(off, c);
            }
        }
        s.pending = 0;
        s.staged = 0;
        s.state.store(SLOT_FREE, Release);
    }

    fn class_of_cached(&self, e: u32) -> Option<usize> {
        match self.classify(e as u64 * 16) {
            Some(Block::Small { class, .. }) if (class as usize) < CACHED => Some(class as usize),
            _ => None,
        }
    }

    /// Frees a cached block (`offset / 16`) of class `c` if it is one.
    pub fn free_cached(&self, e: u32, c: usize) {
        if let Some(Block::Small { span, class, bit }) = self.classify(e as u64 * 16) {
            if class as usize == c {
                self.free_bit(span, bit);
            }
        }
    }

    /// Reclaims the slots of dead processes other than `own` (alloc lock
    /// held); returns whether any was.
    pub fn reclaim_dead(&self, own: u32) -> bool {
        let mut any = false;
        for i in 0..self.g.slots {
            // SAFETY: i < slots.
            let s = unsafe { &*self.slot(i) };
            if i != own && s.state.load(Acquire) == SLOT_ATTACHED && !alive(s.pid, s.start) {
                self.reclaim(i);
                any = true;
            }
        }
        any
    }

    /// Attached processes: (alive, dead).
    pub fn attached(&self) -> (u32, u32) {
        let (mut live, mut dead) = (0, 0);
        for i in 0..self.g.slots {
            // SAFETY: i < slots.
            let s = unsafe { &*self.slot(i) };
            if s.state.load(Acquire) == SLOT_ATTACHED {
                if alive(s.pid, s.start) {
                    live += 1;
                } else {
                    dead += 1;
                }
            }
        }
        (live, dead)
    }
}
