//! Thread life cycle: a heap for each thread that allocates (adopting a
//! dead one when it can), its release when the thread exits, and `fork`
//! (every allocator lock taken around it; in the child, the heaps of
//! threads that do not exist there are left alone, and arenas over
//! shared memory become unusable).

use super::*;

unsafe extern "C" {
    fn pthread_key_create(key: *mut u32, dtor: Option<unsafe extern "C" fn(*mut c_void)>) -> i32;
    fn pthread_setspecific(key: u32, value: *const c_void) -> i32;
}

pub(super) const NO_KEY: u32 = u32::MAX;
pub(super) static KEY: AtomicU32 = AtomicU32::new(NO_KEY);
pub(super) static PROCESS_INIT: AtomicU32 = AtomicU32::new(0);

/// Creates the calling thread's heap (adopting a dead one when possible).
/// Returns null when no memory is left for even a heap.
#[cold]
#[inline(never)]
pub fn thread_init() -> *mut Heap {
    config::load();
    // Before any block exists: the secrets every list link is encoded with.
    harden::init();
    let h = {
        let mut r = HEAPS.lock();
        let mut h = r.pop_dead();
        if h.is_null() {
            h = r.new_heap();
        }
        if !h.is_null() {
            r.live_count += 1;
        }
        h
    };
    if h.is_null() {
        return h;
    }
    // SAFETY: h is ours now; no other thread uses a heap taken from the pool.
    unsafe {
        (*h).state.store(STATE_LIVE, Relaxed);
        debug_assert!((*h).forked || check_invariants(h).is_ok(), "adopted heap");
    }
    // The TLS word first: pthread_setspecific and pthread_atfork (memkit_sys::atfork) may allocate.
    tls::set_heap(h);
    GLOBAL.threads.fetch_add(1, Relaxed);
    process_init_once();
    let key = KEY.load(Ordering::Acquire);
    if key != NO_KEY {
        // SAFETY: a valid key; the value is only handed back to thread_done.
        unsafe { pthread_setspecific(key, h as *const c_void) };
    }
    h
}

pub(super) fn process_init_once() {
    if PROCESS_INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if PROCESS_INIT.swap(1, Ordering::AcqRel) != 0 {
        // Another thread is registering the key: wait, so that this thread's
        // heap is registered for release too. (The registering thread's own
        // allocations never come here: its heap is already set.)
        while PROCESS_INIT.load(Ordering::Acquire) != 2 {
            memkit_sys::yield_now();
        }
        return;
    }
    let mut key = 0u32;
    // SAFETY: plain libc calls with valid arguments; neither allocates in
    // glibc for the first keys / handlers.
    unsafe {
        if pthread_key_create(&mut key, Some(thread_done)) == 0 {
            KEY.store(key, Ordering::Release);
        }
        memkit_sys::atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
    PROCESS_INIT.store(2, Ordering::Release);
}

/// The key's value for a thread that has freed blocks but has no heap:
/// its exit only flushes its pending counts.
const ORPHAN_MARK: *mut c_void = core::ptr::dangling_mut::<c_void>();

/// Makes the calling thread's exit flush its heapless frees (the key's value
/// is [`ORPHAN_MARK`] until the thread gets a heap). Without the key, every
/// free is flushed at once.
#[cold]
#[inline(never)]
pub(super) fn register_orphan_exit() {
    let key = KEY.load(Ordering::Acquire);
    if key == NO_KEY {
        return;
    }
    tls::orphans::set(tls::orphans::get() | tls::ORPHAN_REGISTERED);
    // SAFETY: a valid key. (glibc allocates for keys past the first 32 only;
    // if it did, that allocation gave this thread a heap and set the key to
    // it: restored below.)
    unsafe {
        pthread_setspecific(key, ORPHAN_MARK);
        let h = tls::heap();
        if h != empty_heap() {
            pthread_setspecific(key, h as *const c_void);
        }
    }
}

/// pthread key destructor: the thread is exiting.
pub(super) unsafe extern "C" fn thread_done(arg: *mut c_void) {
    // Also when it has a heap: it may have freed before it had one. A later
    // heapless free (another key's destructor) registers again.
    flush_orphan_frees();
    tls::orphans::set(0);
    let h = arg as *mut Heap;
    if h.is_null() || arg == ORPHAN_MARK {
        return;
    }
    if tls::heap() == h {
        tls::set_heap(empty_heap());
    }
    release(h);
}

/// Releases a heap whose thread is gone: everything empty goes back now, the
/// rest waits in the dead pool for adoption.
pub(super) fn release(h: *mut Heap) {
    let now = memkit_sys::now_ns();
    // SAFETY: the heap's thread is gone; we act as its owner.
    // Empty pages go back to their segments, but nothing is purged yet: the
    // next thread adopts this heap and would fault the pages in again. The
    // purge delay applies as for live heaps (dead heaps are collected on
    // live threads' maintenance ticks).
    unsafe {
        collect_all(h, true, false, now);
        purge_beyond(h, RELEASE_KEEP_DIRTY);
        flush_stats(h, true);
        debug_assert!((*h).forked || check_invariants(h).is_ok(), "released heap");
    }
    let mut r = HEAPS.lock();
    r.live_count -= 1;
    r.push_dead(h);
}

/// Free-but-resident bytes an exiting thread's heap keeps for the thread that
/// adopts it: enough for the next short-lived thread to start with few page
/// faults, little enough that dead heaps do not hoard memory. Measured on the
/// thread-churn benchmark (`thread_churn 2 2000 2000`, glibc: 9.4 MiB peak
/// RSS, 15k faults): keeping 4 MiB, 13.5 MiB and 70k faults; 2 MiB, 11.4 MiB,
/// 110k faults and ~20% more time; 1 MiB, 8.0 MiB and 262k faults.
pub(super) const RELEASE_KEEP_DIRTY: u64 = 4 << 20;

/// Purges the dirty slices of `h`'s segments beyond the first `keep` bytes
/// (most recently mapped segments first).
///
/// # Safety
/// The caller owns `h`.
pub(super) unsafe fn purge_beyond(h: *mut Heap, keep: u64) {
    let mut kept = 0u64;
    // SAFETY: we own h and its segments.
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let dirty = (*seg).dirty_mask.count_ones() as u64 * SLICE_SIZE as u64;
            if kept + dirty <= keep {
                kept += dirty;
            } else if dirty > 0 {
                (*seg).purge();
            }
            seg = (*seg).next;
        }
    }
}

pub(super) unsafe extern "C" fn fork_prepare() {
    HEAPS.raw_lock();
    segment::fork_prepare();
    huge::fork_prepare();
}

pub(super) unsafe extern "C" fn fork_parent() {
    // SAFETY: the prepare handler took these locks in this thread.
    unsafe {
        huge::fork_parent();
        segment::fork_parent();
        HEAPS.raw_unlock();
    }
}

pub(super) unsafe extern "C" fn fork_child() {
    // SAFETY: we are the only thread of the child; the locks were taken by
    // the prepare handler in the parent's forking thread, which we are.
    unsafe {
        huge::fork_child();
        segment::fork_child();
        HEAPS.raw_unlock();
    }
    // The other threads do not exist here. Their heaps are left alone: no
    // thread of the child adopts or collects them, and their memory stays
    // the parent's copy (as mimalloc and jemalloc leave other threads' heaps
    // and caches in a child). A heap has no lock: its thread may have been
    // anywhere in a malloc or free at the fork, between clearing a block's
    // free tag and taking it off its page's list, in the middle of linking
    // a page into a bin queue or a segment into the heap's list. A thread
    // that adopted such a heap stopped on a "corrupted free list" (about one
    // child in a hundred while threads churned), or could follow a
    // half-linked list.
    // Blocks of those heaps that the child frees go back the way any other
    // heap's do (the page's atomic list, or this thread's cache of other
    // heaps' blocks), which never reads the owner's private state.
    let me = tls::heap();
    let mut r = HEAPS.lock();
    let mut h = r.all;
    while !h.is_null() {
        // SAFETY: registry heaps are never freed.
        unsafe {
            if h != me && (*h).state.load(Relaxed) == STATE_LIVE {
                r.live_count -= 1;
                (*h).forked = true;
                // Dead, but not in the pool of dead heaps: never adopted,
                // never collected. (Its segments keep `owner_dead` clear:
                // setting it walks the heap's segment list, which may be
                // half-linked.)
                (*h).state.store(STATE_DEAD, Relaxed);
            } else {
                // Arenas over shared memory are the parent's.
                arena::forked_child(h);
            }
            h = (*h).next_all;
        }
    }
}
