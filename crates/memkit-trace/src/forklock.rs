//! A lock that `fork` cannot leave held in the child: the parent's
//! `pthread_atfork` handlers take it before the fork and release it after,
//! in both processes (a std `Mutex` cannot be released without its guard,
//! so a child forked while another thread held one would block on it for
//! ever). Waiters spin briefly, then yield: holders may symbolize a report.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering::*};

pub struct ForkLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, with the lock held.
unsafe impl<T: Send> Sync for ForkLock<T> {}

impl<T> ForkLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn acquire(&self) {
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

    pub fn lock(&self) -> ForkGuard<'_, T> {
        self.acquire();
        ForkGuard(self)
    }

    /// Takes the lock with no guard (the `prepare` handler of `fork`).
    pub fn lock_for_fork(&self) {
        self.acquire();
    }

    /// Releases a lock taken by [`lock_for_fork`](Self::lock_for_fork), in
    /// the parent and in the child after `fork`.
    pub fn unlock_after_fork(&self) {
        self.locked.store(false, Release);
    }
}

pub struct ForkGuard<'a, T>(&'a ForkLock<T>);

impl<T> Deref for ForkGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for ForkGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for ForkGuard<'_, T> {
    fn drop(&mut self) {
        self.0.locked.store(false, Release);
    }
}
