//! The checker's own small Rust allocations (reports, the symbolizer's
//! strings and tables, the leak check's lists), kept apart from the
//! program's heap.
//!
//! They came from memkit's core, in the same size classes and runs of
//! blocks as the program's: a program write past a block's right red zone
//! (`fgets(p, 200, f)` into a 16-byte block) reaches the next core block,
//! and when that one is free it overwrites the core's free-list link. The
//! report of that write (the `fgets` check) then symbolized its stacks,
//! allocated from the damaged class, and the core's hardening ended the
//! process (`memkit: malloc(): corrupted free list …; aborting`, SIGABRT)
//! before a line of the report was out. Requests of up to
//! [`MAX_SMALL`] bytes with an alignment of at most 16 are now served
//! here: power-of-two classes carved from mappings of their own (made with
//! `memkit_sys::map_meta`, so that the leak check's scan of anonymous
//! memory leaves them out, as it leaves the core out), one free list per
//! class, one lock. Larger or more aligned requests still go to the core
//! (the symbolizer's big tables: rare, and in classes of their own). None
//! of this is on the program's malloc/free path: the checker allocates
//! only when it reports, symbolizes, reads options or checks leaks.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::*};

use memkit_alloc::lock::SpinLock;

/// The largest request served here; larger ones go to the core.
pub const MAX_SMALL: usize = 32 << 10;
const MIN: usize = 16;
const CLASSES: usize = (MAX_SMALL / MIN).trailing_zeros() as usize + 1;
/// The first mapping; each later one is twice the one before, up to
/// `MAX_CHUNK` (few `map_meta` slots: 256 are recorded in all).
const FIRST_CHUNK: usize = 1 << 20;
const MAX_CHUNK: usize = 64 << 20;
/// Mappings remembered (for [`owns`]); with doubling sizes a few dozen
/// cover gigabytes.
const MAX_CHUNKS: usize = 64;

struct State {
    /// Head of each class's free list (a link in each free block's first
    /// word), 0 when empty.
    free: [usize; CLASSES],
    /// Freed blocks of the classes from [`RELEASE_CLASS`] on, their pages
    /// given back (`MADV_DONTNEED` zeroes them, so no link can live in
    /// them): by address, newest last; beyond [`RELEASED_MAX`] a block
    /// leaving `hot` goes on `free` with its pages, unreleased.
    released: [[usize; RELEASED_MAX]; CLASSES - RELEASE_CLASS],
    released_len: [usize; CLASSES - RELEASE_CLASS],
    /// The newest freed blocks of those classes, pages kept (oldest first):
    /// what is freed and taken again soon, as a quarantine that grows and
    /// shrinks with a program's heap does with its record chunks, costs no
    /// system call and no page faults.
    hot: [[usize; HOT_MAX]; CLASSES - RELEASE_CLASS],
    hot_len: [usize; CLASSES - RELEASE_CLASS],
    /// The unused rest of the newest mapping.
    bump: usize,
    end: usize,
    next_chunk: usize,
}

static STATE: SpinLock<State> = SpinLock::new(State {
    free: [0; CLASSES],
    released: [[0; RELEASED_MAX]; CLASSES - RELEASE_CLASS],
    released_len: [0; CLASSES - RELEASE_CLASS],
    hot: [[0; HOT_MAX]; CLASSES - RELEASE_CLASS],
    hot_len: [0; CLASSES - RELEASE_CLASS],
    bump: 0,
    end: 0,
    next_chunk: FIRST_CHUNK,
});

static CHUNK_START: [AtomicUsize; MAX_CHUNKS] = [const { AtomicUsize::new(0) }; MAX_CHUNKS];
static CHUNK_END: [AtomicUsize; MAX_CHUNKS] = [const { AtomicUsize::new(0) }; MAX_CHUNKS];
static CHUNKS: AtomicUsize = AtomicUsize::new(0);

/// The thread that holds the lock across the leak check's stop of the
/// other threads ([`hold`]), 0 when none: it allocates without taking the
/// lock again, and no stopped thread can be holding it.
static HOLDER: AtomicU32 = AtomicU32::new(0);

/// The class of a request, or None when the core serves it.
#[inline]
fn class(l: Layout) -> Option<usize> {
    if l.align() > MIN || l.size() > MAX_SMALL {
        return None;
    }
    let n = l.size().max(MIN).next_power_of_two();
    Some((n / MIN).trailing_zeros() as usize)
}

/// Whether `p` lies in one of this allocator's mappings.
fn owns(p: usize) -> bool {
    let n = CHUNKS.load(Acquire).min(MAX_CHUNKS);
    (0..n).any(|i| {
        let s = CHUNK_START[i].load(Relaxed);
        s != 0 && p >= s && p < CHUNK_END[i].load(Relaxed)
    })
}

/// Runs `f` on the state, under the lock unless this thread holds it
/// already through [`hold`].
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let held = HOLDER.load(Acquire);
    if held != 0 && held == crate::tls::tid() {
        // SAFETY: this thread holds the lock (hold), and nothing else runs
        // allocator code while it does (the others are stopped or wait).
        return f(unsafe { &mut *STATE.as_ptr() });
    }
    let mut g = STATE.lock();
    f(&mut g)
}

fn alloc_small(c: usize) -> *mut u8 {
    let size = MIN << c;
    with_state(|s| {
        if c >= RELEASE_CLASS {
            let i = c - RELEASE_CLASS;
            if s.hot_len[i] > 0 {
                s.hot_len[i] -= 1;
                return s.hot[i][s.hot_len[i]] as *mut u8;
            }
        }
        let head = s.free[c];
        if head != 0 {
            // SAFETY: a free block of this class: its first word is the link.
            s.free[c] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        // Resident blocks first (above); a released one faults its pages
        // back in.
        if c >= RELEASE_CLASS && s.released_len[c - RELEASE_CLASS] > 0 {
            let i = c - RELEASE_CLASS;
            s.released_len[i] -= 1;
            return s.released[i][s.released_len[i]] as *mut u8;
        }
        // Blocks of a page and more start on a page (`release_pages`).
        if size >= PAGE {
            s.bump = s.bump.next_multiple_of(PAGE).min(s.end);
        }
        if s.end - s.bump < size {
            let len = s.next_chunk;
            let Ok(p) = memkit_sys::map_meta(len) else {
                return core::ptr::null_mut();
            };
            let i = CHUNKS.load(Relaxed);
            if i < MAX_CHUNKS {
                CHUNK_START[i].store(p as usize, Relaxed);
                CHUNK_END[i].store(p as usize + len, Relaxed);
                CHUNKS.store(i + 1, Release);
            }
            // The old chunk's rest is left unused (at most MAX_SMALL).
            s.bump = p as usize;
            s.end = p as usize + len;
            s.next_chunk = (len * 2).min(MAX_CHUNK);
        }
        let p = s.bump;
        s.bump += size;
        p as *mut u8
    })
}

const PAGE: usize = 4096;

/// Freed blocks of the classes from this one on (16 KiB) give their pages
/// back to the system.
///
/// The quarantine's record chunks are 16 KiB blocks, and how many it needs
/// depends on its blocks' sizes: a 4 MiB quarantine of 16-byte blocks
/// holds 44,000 records (1.4 MiB of chunks), one of 4 KiB blocks 900. A
/// program that went from the first to the second kept every chunk
/// resident, unused, while the blocks took the quarantine's whole bound of
/// core memory: the fixed-sizes workload's peak RSS rose 2.1 MiB from its
/// first size to its last. A queue keeps a spare chunk, so a steady
/// quarantine frees none and this `madvise` runs only as the queue shrinks.
const RELEASE_CLASS: usize = ((16 << 10) / MIN).trailing_zeros() as usize;
/// Released blocks remembered per class (16 MiB of 16 KiB chunks).
const RELEASED_MAX: usize = 1024;
/// Freed blocks per class kept with their pages (128 KiB of 16 KiB
/// chunks): releasing every freed chunk at once made python's checked
/// run 22,000 `madvise` calls (and as many chunks' page faults) for a
/// quarantine that grows and shrinks with its heap between collections.
const HOT_MAX: usize = 8;

/// `madvise(MADV_DONTNEED)` of the free block `[p, p + size)`.
fn release_pages(p: *mut u8, size: usize) {
    // SAFETY: a free block of ours, page-aligned (`alloc_small`) and a
    // whole number of pages; nothing reads a free block's bytes.
    unsafe { memkit_sys::purge(p, size) };
}

/// The checker's global allocator (see the module's comment).
pub struct OwnAlloc;

// SAFETY: blocks of at least the layout's size, aligned to 16 (class
// sizes are multiples of 16 carved from page-aligned mappings), or the
// core's; each freed to where it came from (by address: a request the
// mappings could not serve went to the core).
unsafe impl GlobalAlloc for OwnAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if let Some(c) = class(l) {
            let p = alloc_small(c);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: any layout is valid for the core.
        unsafe { memkit_alloc::Core.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        match class(l) {
            Some(c) if owns(p as usize) && c >= RELEASE_CLASS => {
                let i = c - RELEASE_CLASS;
                // Kept hot; when the hot blocks are full, the oldest of
                // them gives its pages back.
                let oldest = with_state(|s| {
                    let n = s.hot_len[i];
                    if n < HOT_MAX {
                        s.hot[i][n] = p as usize;
                        s.hot_len[i] = n + 1;
                        return 0;
                    }
                    let oldest = s.hot[i][0];
                    s.hot[i].copy_within(1.., 0);
                    s.hot[i][HOT_MAX - 1] = p as usize;
                    if s.released_len[i] == RELEASED_MAX {
                        // No room to remember it released: it keeps its
                        // pages, on the free list.
                        push_free(s, oldest, c);
                        return 0;
                    }
                    oldest
                });
                if oldest == 0 {
                    return;
                }
                // Outside the lock: a system call.
                release_pages(oldest as *mut u8, MIN << c);
                with_state(|s| {
                    let n = s.released_len[i];
                    if n < RELEASED_MAX {
                        s.released[i][n] = oldest;
                        s.released_len[i] = n + 1;
                    } else {
                        // Filled meanwhile by another thread: the link
                        // faults one page back in.
                        push_free(s, oldest, c);
                    }
                })
            }
            Some(c) if owns(p as usize) => free_small(p, c),
            // SAFETY: p came from the core (alloc above).
            _ => unsafe { memkit_alloc::Core.dealloc(p, l) },
        }
    }
}

/// Puts a block of class `c` of ours, no longer used, on its free list.
fn free_small(p: *mut u8, c: usize) {
    with_state(|s| push_free(s, p as usize, c))
}

/// Links the free block `p` of class `c` into its free list (under the
/// lock: `s` is the state).
fn push_free(s: &mut State, p: usize, c: usize) {
    // SAFETY: a block of class c of ours, no longer used.
    unsafe { *(p as *mut usize) = s.free[c] };
    s.free[c] = p;
}

/// Takes the lock for the leak check, before it stops the other threads
/// (as it takes the side table): a thread stopped inside this allocator
/// would keep it from allocating. Until [`release`], the calling thread
/// allocates under it.
pub fn hold() {
    STATE.raw_lock();
    HOLDER.store(crate::tls::tid(), Release);
}

/// Gives back the lock [`hold`] took.
pub fn release() {
    HOLDER.store(0, Release);
    // SAFETY: taken by hold in this thread.
    unsafe { STATE.raw_unlock() };
}

/// Before `fork`: innermost of the checker's locks (code under any other
/// may allocate).
pub fn lock_for_fork() {
    STATE.raw_lock();
}

pub fn unlock_after_fork() {
    // SAFETY: taken by lock_for_fork in this thread before the fork.
    unsafe { STATE.raw_unlock() };
}
