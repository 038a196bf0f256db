//! A lock biased to the first thread that takes it: that thread enters
//! with two plain stores and two loads (no atomic read-modify-write, no
//! fence the CPU executes), every other thread revokes the bias once and
//! from then on everybody takes an ordinary spin lock. Single-threaded
//! programs, which the profiler's per-event lock cost hurts most (a
//! malloc/free pair of glibc is a few nanoseconds, an uncontended lock
//! and unlock ~5 ns on this kind of machine), never pay for an atomic.
//!
//! # The rule (an asymmetric Dekker handshake)
//! * owner, entering: `inside = 1`; compiler fence; if `bias == me` it is
//!   in. Else `inside = 0` and it takes the spin lock. Leaving: `inside = 0`
//!   (a release store).
//! * any other thread, the first time: takes the spin lock, stores `bias =
//!   REVOKED`, calls `membarrier(2)`, then waits for `inside == 0`. It keeps
//!   the spin lock: it is in.
//!
//! `membarrier` makes every running thread of the process execute a full
//! barrier before it returns (a thread not running passed one at its
//! context switch). If the owner's barrier came before its load of `bias`,
//! the load sees `REVOKED` and the owner backs off to the spin lock; if it
//! came after, the owner's `inside = 1`, which precedes that load, is
//! visible to the revoker, which waits for the owner to leave. Either way
//! never both are in. The owner's writes inside are visible to the revoker
//! through the release store of `inside = 0` it waits for.
//!
//! The bias is given only where `membarrier` works (checked, and
//! registered, when the first thread comes); elsewhere the lock starts
//! revoked. A thread's id is the address of its static TLS block, unique
//! among live threads: a thread that reuses an exited owner's block takes
//! over its bias, which is sound (the owner is gone, and so is its
//! `inside`). A fork child starts unowned again ([`BiasedLock::reset`]).
//!
//! Nothing here allocates; a waiting revoker yields the CPU.

use core::cell::UnsafeCell;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicUsize, Ordering::*};

/// `bias` before any thread took the lock.
const UNOWNED: usize = 0;
/// `bias` once revoked (or never given): everybody takes the spin lock.
const REVOKED: usize = usize::MAX;

pub struct BiasedLock<T> {
    /// The owner's id, or [`UNOWNED`], or [`REVOKED`].
    bias: AtomicUsize,
    /// 1 while the owner is inside through the bias (written by the owner
    /// only).
    inside: AtomicU32,
    /// The spin lock of everybody else, and of the owner once revoked.
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by the bias handshake and the
// spin lock (module doc).
unsafe impl<T: Send> Sync for BiasedLock<T> {}

/// How a holder got in (what [`BiasedLock::raw_unlock`] must undo).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Held {
    Biased,
    Locked,
}

pub struct Guard<'a, T> {
    lock: &'a BiasedLock<T>,
    held: Held,
}

impl<T> BiasedLock<T> {
    pub const fn new(value: T) -> Self {
        BiasedLock {
            bias: AtomicUsize::new(UNOWNED),
            inside: AtomicU32::new(0),
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock for the thread `me` (a non-zero id unique among live
    /// threads, not `usize::MAX`).
    #[inline(always)]
    pub fn lock(&self, me: usize) -> Guard<'_, T> {
        let held = self.raw_lock(me);
        Guard { lock: self, held }
    }

    /// Takes the lock without a guard (for `fork`'s prepare handler).
    #[inline(always)]
    pub fn raw_lock(&self, me: usize) -> Held {
        let b = self.bias.load(Relaxed);
        if b == me {
            self.inside.store(1, Relaxed);
            // Only the compiler must not move the load above the store: the
            // CPU's side of the handshake is the revoker's membarrier.
            compiler_fence(SeqCst);
            if self.bias.load(Relaxed) == me {
                return Held::Biased;
            }
            self.inside.store(0, Release);
        } else if b == REVOKED
            && self
                .locked
                .compare_exchange_weak(false, true, Acquire, Relaxed)
                .is_ok()
        {
            // Revoked is final: the spin lock alone decides (the common
            // case of a multi-threaded program, inline).
            return Held::Locked;
        }
        self.lock_slow(me)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, me: usize) -> Held {
        if self.bias.load(Acquire) == UNOWNED {
            let to = if memkit_sys::barrier_everywhere_setup() {
                me
            } else {
                REVOKED
            };
            if self
                .bias
                .compare_exchange(UNOWNED, to, AcqRel, Acquire)
                .is_ok()
                && to == me
            {
                return self.raw_lock(me);
            }
        }
        self.spin();
        if self.bias.load(Acquire) != REVOKED {
            // The owner is another thread (it is not us: our bias is never
            // revoked but by another thread, and that is final).
            self.bias.store(REVOKED, SeqCst);
            if !memkit_sys::barrier_everywhere() {
                // Registered when the bias was given, so this cannot fail;
                // if it did, the owner could be inside unseen: stop rather
                // than count wrong.
                let _ = memkit_sys::write_all(2, b"memkit: membarrier failed after registration\n");
                crate::harden::fault_abort();
            }
            let mut spins = 0u32;
            while self.inside.load(Acquire) != 0 {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    memkit_sys::yield_now();
                }
            }
        }
        Held::Locked
    }

    fn spin(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                memkit_sys::yield_now();
            }
        }
    }

    /// Releases what [`raw_lock`](Self::raw_lock) took.
    ///
    /// # Safety
    /// The caller holds the lock as `held`.
    #[inline(always)]
    pub unsafe fn raw_unlock(&self, held: Held) {
        match held {
            Held::Biased => self.inside.store(0, Release),
            Held::Locked => self.locked.store(false, Release),
        }
    }

    /// In a fork child (its only thread): unlocked and unowned, so that the
    /// child's first recording thread takes the bias again.
    ///
    /// # Safety
    /// No other thread exists.
    pub unsafe fn reset(&self) {
        self.inside.store(0, Relaxed);
        self.locked.store(false, Relaxed);
        self.bias.store(UNOWNED, Relaxed);
    }

    /// The protected value, for a caller that holds the lock through
    /// [`raw_lock`](Self::raw_lock) (a fork handler): dereferencing it is
    /// sound only while the lock is held.
    pub fn as_ptr(&self) -> *mut T {
        self.value.get()
    }

    /// Whether the bias is held by some thread (for tests).
    pub fn is_biased(&self) -> bool {
        let b = self.bias.load(Relaxed);
        b != UNOWNED && b != REVOKED
    }
}

impl<T> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock as `held`.
        unsafe { self.lock.raw_unlock(self.held) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Many threads adding to one counter through the lock, the first one
    /// biased: no increment is lost across the revocation.
    #[test]
    fn exclusive_across_revocation() {
        static L: BiasedLock<u64> = BiasedLock::new(0);
        const N: u64 = 200_000;
        // The main thread takes the bias and keeps entering while the
        // others revoke it.
        let me = &N as *const u64 as usize;
        *L.lock(me) += 1;
        assert!(L.is_biased());
        let handles: Vec<_> = (0..3)
            .map(|k| {
                std::thread::spawn(move || {
                    let id = 0x1000 + k;
                    for _ in 0..N {
                        *L.lock(id) += 1;
                    }
                })
            })
            .collect();
        for _ in 0..N {
            *L.lock(me) += 1;
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(!L.is_biased());
        assert_eq!(*L.lock(me), 4 * N + 1);
    }
}
