//! Free slow paths: the owner's frees the fast path did not finish, and
//! frees from other threads (the cache of other heaps' blocks, the pages'
//! `thread_free` lists, the owning heap's `delayed` list).

use super::*;

/// A free by the owning thread that the fast path did not finish: the page is
/// full or holds aligned blocks, or it became empty.
///
/// # Safety
/// `h` is the calling thread's heap and owns `p`; `b` is a live block of `p`.
#[cold]
#[inline(never)]
pub unsafe fn free_local_slow(h: *mut Heap, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        if harden::on() && harden::was_freed(b as *const Block) {
            harden::fault(Fault::DoubleFree, "free", b, 0);
        }
        (*h).stats.free((*p).bin as usize);
        put_back(h, p, b as *mut Block);
    }
}

/// A page the fast path emptied (not its bin's first page): kept in its
/// bin queue while the heap keeps fewer than [`KEEP_EMPTY_BYTES`] of such
/// pages, else given back to its segment.
///
/// Programs that allocate a batch and free it (glibc's bench-malloc-simple,
/// a parser's per-request objects) empty the same pages on every round:
/// giving each back on the free that empties it made the next round take
/// a span again and carve every block anew (3,000 pages a run and 13% of
/// glibc-simple's instructions). A kept page is allocated from again when
/// the pages before it in its queue run out; maintenance (`collect_all`)
/// gives back every empty page as before, so kept pages last at most one
/// maintenance period, and `malloc_trim` gives them back at once.
///
/// # Safety
/// `h` is the calling thread's heap and owns `p`; `p.used == 0`; `p` is in
/// its bin queue.
#[cold]
#[inline(never)]
pub unsafe fn retire(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        if !keep_empty(h, p) {
            free_page(h, p, memkit_sys::now_ns())
        }
    }
}

/// Marks the emptied page `p` as kept if the heap's budget allows (or it
/// is kept already); returns whether it is kept.
///
/// # Safety
/// `h` owns `p`, which is in its bin queue.
unsafe fn keep_empty(h: *mut Heap, p: *mut Page) -> bool {
    // SAFETY: per the contract.
    unsafe {
        if (*p).kept != 0 {
            return true;
        }
        let bytes = (*p).slice_count as usize * SLICE_SIZE;
        if (*h).kept_bytes + bytes > KEEP_EMPTY_BYTES || (*h).forked {
            return false;
        }
        // Within the byte budget every page has a slice: room in `kept`.
        let i = (*h).kept_count;
        debug_assert!(i < KEEP_MAX);
        (*h).kept[i] = p;
        (*h).kept_count = i + 1;
        (*p).kept = (i + 1) as u8;
        (*h).kept_bytes += bytes;
        true
    }
}

/// Takes `p` out of its heap's kept pages (it is in use again, or goes
/// back to its segment).
///
/// # Safety
/// `h` owns `p`.
#[inline(always)]
pub(super) unsafe fn unkeep(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract; `kept` indexes `h.kept`.
    unsafe {
        let k = (*p).kept as usize;
        if k == 0 {
            return;
        }
        let last = (*h).kept_count - 1;
        let moved = (*h).kept[last];
        (*h).kept[k - 1] = moved;
        (*moved).kept = k as u8;
        (*h).kept[last] = null_mut();
        (*h).kept_count = last;
        (*p).kept = 0;
        (*h).kept_bytes -= (*p).slice_count as usize * SLICE_SIZE;
    }
}

/// Gives every kept page that is still empty back to its segment (and
/// forgets the others): a new page of another size should take their
/// resident slices rather than purged or fresh ones.
///
/// # Safety
/// `h` is owned by the caller.
pub(super) unsafe fn release_kept(h: *mut Heap, now: u64) {
    // SAFETY: kept pages are pages of h.
    unsafe {
        // `free_page` and `unkeep` each take the last one off the list.
        loop {
            let n = (*h).kept_count;
            if n == 0 {
                break;
            }
            let p = (*h).kept[n - 1];
            // Empty: no block out, so none pending on its thread_free.
            if (*p).used == 0 && (*h).first[(*p).bin as usize] != p {
                free_page(h, p, now);
            } else {
                unkeep(h, p);
            }
        }
    }
}

/// Returns block `b` to its page `p` (owner side): onto `free`; a full
/// page goes back in its queue, an empty one back to its segment (unless it
/// is its bin's current page).
///
/// # Safety
/// `h` owns `p`; `b` is a block of `p` counted in `used` that nobody uses.
pub(super) unsafe fn put_back(h: *mut Heap, p: *mut Page, b: *mut Block) {
    // SAFETY: per the contract.
    unsafe {
        set_free(b, (*p).free);
        (*p).free = b;
        (*p).used -= 1;
        if (*p).flags & FLAG_FULL != 0 {
            unfull(h, p);
        }
        if (*p).used == 0 && (*h).first[(*p).bin as usize] != p && !keep_empty(h, p) {
            free_page(h, p, memkit_sys::now_ns());
        }
    }
}

/// # Safety
/// `h` owns the full page `p`.
pub(super) unsafe fn unfull(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        (*p).flags &= !FLAG_FULL;
        // Remote frees may go straight to thread_free again.
        (*p).thread_free.fetch_and(!TF_NOTIFY, Ordering::AcqRel);
        queue_push_back(h, p);
    }
}

/// A free from a thread that does not own the block's page.
///
/// # Safety
/// `b` is a live block of page `p` in segment `seg`, not owned by the caller.
#[cold]
#[inline(never)]
pub unsafe fn free_remote(seg: *mut Segment, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        let me = tls::heap();
        let bs = (*p).block_size;
        if me == empty_heap() {
            count_orphan_free(bs);
            return_remote(seg, p, b);
            return;
        }
        free_remote_of(me, seg, p, b);
    }
}

/// Frees a thread without a heap counts in its TLS words before they go to
/// the global counters at once: three shared atomics per free were most of
/// a consumer thread's cost (xmalloc).
const ORPHAN_BATCH: usize = 64;

/// Counts a free by a thread without a heap: in its TLS words, added to
/// `GLOBAL` every [`ORPHAN_BATCH`] frees, at thread exit (the first such
/// free registers the thread for it), and by `stats()` in the thread that
/// asks.
#[inline(always)]
fn count_orphan_free(bytes: usize) {
    let mut w = tls::orphans::get();
    if w == 0 {
        register_orphan_exit();
        w = tls::orphans::get();
    }
    w += (1 << tls::ORPHAN_COUNT_SHIFT) + bytes;
    tls::orphans::set(w);
    // Unregistered (no key): nothing would flush it later.
    if (w >> tls::ORPHAN_COUNT_SHIFT) & 0x7fff >= ORPHAN_BATCH || w & tls::ORPHAN_REGISTERED == 0 {
        flush_orphan_frees();
    }
}

/// Adds the calling thread's pending heapless frees to `GLOBAL`.
pub fn flush_orphan_frees() {
    let w = tls::orphans::get();
    let n = (w >> tls::ORPHAN_COUNT_SHIFT) & 0x7fff;
    if n == 0 {
        return;
    }
    let bytes = (w & tls::ORPHAN_BYTES) as u64;
    tls::orphans::set(w & tls::ORPHAN_REGISTERED);
    GLOBAL.orphan_frees.fetch_add(n as u64, Relaxed);
    GLOBAL.orphan_freed_bytes.fetch_add(bytes, Relaxed);
    // No heap flushes it later: counted in the global figure now, or the
    // sampled peak would drift upwards.
    GLOBAL.in_use_flushed.fetch_sub(bytes as i64, Relaxed);
}

/// [`free_remote`] by a thread with a heap: the block goes to the heap's
/// cache of other heaps' blocks, or home when that bin's cache is full.
///
/// # Safety
/// `me` is the calling thread's real heap; `b` is a live block of page `p`
/// in segment `seg`, and `p` is not owned by `me`.
#[inline(always)]
pub unsafe fn free_remote_of(me: *mut Heap, seg: *mut Segment, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).shared.bin as usize;
        let bs = (*p).shared.block_size as u32;
        (*me).stats.free(bin);
        let cached = *(*me).rcache_bytes.get_unchecked(bin) + bs;
        if (*seg).owner_dead.load(Relaxed) != 0 {
            // Nobody will allocate from a dead heap's page: caching the
            // block would only keep the page from emptying. An arena's
            // segments carry the same mark (`segment::OWNER_ARENA`): its
            // block must never be handed out by this thread's heap.
            return_remote(seg, p, b);
            freed_into_dead_heap(me);
            return;
        }
        if cached <= RCACHE_BYTES {
            let blk = b as *mut Block;
            set_free(blk, *(*me).rcache.get_unchecked(bin));
            *(*me).rcache.get_unchecked_mut(bin) = blk;
            *(*me).rcache_bytes.get_unchecked_mut(bin) = cached;
            return;
        }
        return_remote(seg, p, b);
    }
}

/// Blocks given back to dead heaps between two collections of dead heaps
/// by the freeing thread.
const DEAD_RETURNS_COLLECT: u32 = 256;
/// Dead heaps collected each time.
const DEAD_COLLECT_BATCH: u64 = 16;

/// A thread that frees blocks of threads that have exited (a main thread
/// freeing its workers' results) collects dead heaps itself, every
/// [`DEAD_RETURNS_COLLECT`] such blocks, so that their emptied pages return
/// to the OS without a `malloc_trim` and without a slow path of its own
/// (a thread that only frees has none). Only slices past their purge delay
/// are purged: the next threads adopt these heaps, and purging the rest
/// made them fault every page in again (mstress: 4x the page faults).
#[cold]
#[inline(never)]
unsafe fn freed_into_dead_heap(me: *mut Heap) {
    // SAFETY: our own heap's counter.
    unsafe {
        (*me).dead_returns += 1;
        if (*me).dead_returns < DEAD_RETURNS_COLLECT {
            return;
        }
        (*me).dead_returns = 0;
    }
    reclaim_dead(memkit_sys::now_ns(), DEAD_COLLECT_BATCH, false);
}

/// Gives a block back to its page's owner: pushed on the page's atomic
/// `thread_free` (or, for a full page, the owner's `delayed` list).
///
/// # Safety
/// `b` is a block of page `p` in segment `seg`, counted as used by `p`, that
/// nobody uses any more.
pub(super) unsafe fn return_remote(seg: *mut Segment, p: *mut Page, b: *mut u8) {
    // SAFETY: per the contract; thread_free and delayed are atomics.
    unsafe {
        let blk = b as *mut Block;
        let tf = &(*p).thread_free;
        let mut cur = tf.load(Relaxed);
        loop {
            if cur & TF_NOTIFY != 0 {
                // First free into a full page: claim the notification and give
                // the block to the owner's delayed list.
                match tf.compare_exchange_weak(cur, cur & !TF_NOTIFY, Ordering::AcqRel, Relaxed) {
                    Ok(_) => {
                        let owner = (*seg).heap;
                        let d = &(*owner).delayed;
                        let mut head = d.load(Relaxed);
                        loop {
                            set_free(blk, head);
                            match d.compare_exchange_weak(head, blk, Ordering::Release, Relaxed) {
                                Ok(_) => break,
                                Err(h) => head = h,
                            }
                        }
                        break;
                    }
                    Err(v) => cur = v,
                }
            } else {
                debug_assert!((blk as usize) >> TF_COUNT_SHIFT == 0);
                set_free(blk, (cur & TF_PTR) as *mut Block);
                let count = (cur & !(TF_ONE - 1)) + TF_ONE;
                let new = blk as usize | count;
                match tf.compare_exchange_weak(cur, new, Ordering::Release, Relaxed) {
                    Ok(_) => break,
                    Err(v) => cur = v,
                }
            }
        }
    }
}

/// Returns every block of `h`'s `rcache` to its page's owner.
///
/// # Safety
/// The caller owns `h`.
pub(super) unsafe fn flush_rcache(h: *mut Heap) {
    // SAFETY: we own h; cached blocks are blocks of live pages, counted used.
    unsafe {
        for bin in 1..NBINS {
            let mut b = (*h).rcache[bin];
            while !b.is_null() {
                let next = next_of(b);
                if !next.is_null() && harden::on() && !segment::is_block_of_bin(next, bin) {
                    harden::fault(Fault::BadLink, "free", b as *const u8, next as usize);
                }
                let seg = Segment::of(b as *const u8);
                return_remote(seg, Segment::page_of(seg, b as *const u8), b as *mut u8);
                b = next;
            }
            (*h).rcache[bin] = null_mut();
            (*h).rcache_bytes[bin] = 0;
        }
    }
}

/// Frees the blocks other threads handed to the delayed list.
///
/// # Safety
/// `h` is owned by the caller.
pub(super) unsafe fn drain_delayed(h: *mut Heap) {
    // SAFETY: per the contract; the list was swapped out whole.
    unsafe {
        let mut b = (*h).delayed.swap(null_mut(), Ordering::Acquire);
        while !b.is_null() {
            let next = next_of(b);
            // Every delayed block is a free block of this heap's (the
            // tag too: a live block put back would be handed out twice).
            if !next.is_null()
                && harden::on()
                && !(segment::is_block_of_bin(next, 0)
                    && (*Segment::of(next as *const u8)).heap == h
                    && harden::is_tagged(next))
            {
                harden::fault(Fault::BadLink, "malloc", b as *const u8, next as usize);
            }
            let seg = Segment::of(b as *const u8);
            put_back(h, Segment::page_of(seg, b as *const u8), b);
            b = next;
        }
    }
}
