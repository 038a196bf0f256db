//! The one lock around memkit-secure's books. `pthread_atfork` handlers
//! take it around `fork`, so a child never sees the books half-changed. The
//! lock word also holds the holder's process id, so that a child forked
//! without those handlers running (a raw `clone`) can tell a stale lock
//! and take it over instead of deadlocking.
//!
//! Like the allocator core's locks, a waiter spins briefly, then yields the
//! CPU. Secure operations are system calls (mmap, mlock, mprotect) costing
//! microseconds, so one global lock and a `getpid` per acquisition (~0.1 µs)
//! are cheap next to them; creating a guarded region (the slowest call)
//! happens outside the lock.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering::*};

/// A value guarded by the global lock; see [`Locked::with`].
pub(crate) struct Locked<T> {
    /// 0 when free, else the holder's process id.
    word: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only through `with`, which holds the lock.
unsafe impl<T: Send> Sync for Locked<T> {}

struct Guard<'a>(&'a AtomicU32);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Release);
    }
}

impl<T> Locked<T> {
    pub(crate) const fn new(value: T) -> Self {
        Locked {
            word: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the value and the caller's
    /// process id.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T, u32) -> R) -> R {
        let me = memkit_sys::pid();
        if self.word.compare_exchange(0, me, Acquire, Relaxed).is_err() {
            self.lock_slow(me);
        }
        let _g = Guard(&self.word);
        // SAFETY: the lock is held until `_g` drops, after `f` returns.
        f(unsafe { &mut *self.value.get() }, me)
    }

    /// Takes the lock without a guard: `pthread_atfork`'s prepare handler,
    /// so that no thread is half-way through changing the books when the
    /// process forks.
    pub(crate) fn fork_prepare(&self) {
        let me = memkit_sys::pid();
        if self.word.compare_exchange(0, me, Acquire, Relaxed).is_err() {
            self.lock_slow(me);
        }
    }

    /// Releases the lock taken by [`fork_prepare`](Self::fork_prepare), in
    /// the parent and in the child.
    pub(crate) fn fork_release(&self) {
        self.word.store(0, Release);
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, me: u32) {
        let mut spins = 0u32;
        loop {
            let v = self.word.load(Relaxed);
            // Free, or held by a thread of the parent process we were forked
            // from, which will never unlock it here: take it.
            if v != me && self.word.compare_exchange(v, me, Acquire, Relaxed).is_ok() {
                return;
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                memkit_sys::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_in_another_process_is_taken_over() {
        let l = Locked::new(5u32);
        // As if a thread of our parent held it when we were forked.
        l.word.store(memkit_sys::pid() + 1, Relaxed);
        assert_eq!(l.with(|v, me| *v + me - memkit_sys::pid()), 5);
        assert_eq!(l.word.load(Relaxed), 0);
    }

    #[test]
    fn threads_are_excluded() {
        static L: Locked<u64> = Locked::new(0);
        let ts: std::vec::Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10_000 {
                        L.with(|v, _| *v += 1);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(L.with(|v, _| *v), 40_000);
    }
}
