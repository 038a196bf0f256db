//! Crash points, for the tests: with `MEMKIT_SHM_CRASH=N` in its
//! environment, a process kills itself with SIGKILL the Nth time it
//! reaches one of the points placed between the stores of a change to
//! the shared structures (all on locked paths, none on the cached fast
//! paths). A test that starts workers with random N sees the heap after a
//! death in the middle of each kind of change, which a `kill -9` from
//! outside hits only by chance (a few instructions wide).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Crash points left before the kill (0: off).
static LEFT: AtomicU64 = AtomicU64::new(0);

/// Reads `MEMKIT_SHM_CRASH` (once per attach; cheap).
pub fn init() {
    let Some(v) = memkit_sys::env::var(b"MEMKIT_SHM_CRASH") else {
        return;
    };
    let mut n = 0u64;
    for &d in v {
        if !d.is_ascii_digit() {
            return;
        }
        n = n.saturating_mul(10).saturating_add((d - b'0') as u64);
    }
    LEFT.store(n, Relaxed);
}

/// A point between two stores of one change.
#[inline(always)]
pub fn point() {
    if LEFT.load(Relaxed) != 0 {
        hit();
    }
}

#[cold]
#[inline(never)]
fn hit() {
    if LEFT.fetch_sub(1, Relaxed) == 1 {
        memkit_sys::shm::kill_self();
    }
}
