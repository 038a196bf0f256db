//! Recording one event: the stack captured from the export's frame and
//! interned (memkit-trace), then the site and the process's figures
//! changed under [`sites::STATE`]'s lock. In sampled mode only sampled
//! allocations (and their frees) get this far; every event still counts
//! in the exact totals.
//!
//! Runs as the profiler's own code (`tls::inside`): a `malloc` from a
//! signal handler that interrupts a record is served, not recorded, and
//! cannot wait for the lock its own thread holds.

use core::sync::atomic::{AtomicU64, Ordering::*};

use memkit_trace::unwind::Regs;

use crate::sites::{self, STATE};
use crate::{options, sample, stack, tls};

/// Exact totals of every event (sampled mode; exact mode counts in the state).
pub static ALLOCS: AtomicU64 = AtomicU64::new(0);
pub static BYTES: AtomicU64 = AtomicU64::new(0);
pub static FREES: AtomicU64 = AtomicU64::new(0);
pub static INHERITED_FREES: AtomicU64 = AtomicU64::new(0);

/// What became of an allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Made by the profiler's own code (or a signal handler inside it):
    /// not counted anywhere.
    Internal,
    /// Sampled mode, not sampled: counted in the exact totals only.
    Counted,
    /// Recorded at the site with this serial.
    Site(u32),
}

/// Records an allocation of `size` bytes at `user`.
#[inline(always)]
pub fn alloc(size: usize, user: usize, regs: Regs) -> Mark {
    let t = tls::me();
    if t.busy.get() != 0 {
        return Mark::Internal;
    }
    t.last_alloc.set(user);
    let o = options::get();
    let (objects, bytes) = if o.sample_bytes == 0 {
        (1, size as u64)
    } else {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size as u64, Relaxed);
        if !sample::take(t, size, o.sample_bytes) {
            return Mark::Counted;
        }
        sample::weights(size, o.sample_bytes)
    };
    // As tls::inside, without a closure (busy is 0 here).
    t.busy.set(1);
    let serial = stack::serial(regs);
    {
        let mut st = STATE.lock(tls::id());
        // SAFETY: under the state's lock.
        if let Some(site) = unsafe { sites::site(serial) } {
            st.alloc(site, objects, bytes, size);
        }
    }
    t.busy.set(0);
    Mark::Site(serial)
}

/// Records the free of a recorded block of `size` bytes at `user`.
#[inline(always)]
pub fn free(size: usize, user: usize, serial: u32) {
    let t = tls::me();
    let temporary = t.last_alloc.get() == user;
    if temporary {
        t.last_alloc.set(0);
    }
    free_at(size, serial, temporary);
}

/// Records the free half of a `realloc` (never temporary).
#[inline(always)]
pub fn free_moved(size: usize, serial: u32) {
    free_at(size, serial, false);
}

/// A free while the thread records (a signal handler's `free` of a
/// recorded block, interrupting a record) is not counted: the state may be
/// held by the very record it interrupted. The block is freed; its site
/// keeps it as live.
#[inline(always)]
fn free_at(size: usize, serial: u32, temporary: bool) {
    let t = tls::me();
    if t.busy.get() != 0 {
        return;
    }
    let o = options::get();
    let (objects, bytes) = if o.sample_bytes == 0 {
        (1, size as u64)
    } else {
        FREES.fetch_add(1, Relaxed);
        sample::weights(size, o.sample_bytes)
    };
    t.busy.set(1);
    {
        let mut st = STATE.lock(tls::id());
        // SAFETY: under the state's lock.
        if let Some(site) = unsafe { sites::site(serial) } {
            st.free(site, objects, bytes, temporary);
        }
    }
    t.busy.set(0);
}

/// Counts the free of a block counted but not sampled (sampled mode).
#[inline(always)]
pub fn counted_free() {
    FREES.fetch_add(1, Relaxed);
}

/// Counts the free of a block an ancestor allocated before a fork.
pub fn inherited_free() {
    INHERITED_FREES.fetch_add(1, Relaxed);
}
