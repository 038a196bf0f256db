//! Maintenance: collecting remote frees, purging, dead heaps, statistics,
//! `malloc_trim`, memory pressure, and the heap's invariant checks.

use super::*;

/// Runs on every allocation slow path: delayed frees every time, the rest
/// every [`MAINTENANCE_EVERY`] calls and only when its deadline has passed.
///
/// # Safety
/// `h` is the calling thread's heap.
pub(super) unsafe fn tick(h: *mut Heap) {
    // SAFETY: we own h.
    unsafe {
        if !(*h).delayed.load(Relaxed).is_null() {
            drain_delayed(h);
        }
        (*h).slow_calls = (*h).slow_calls.wrapping_add(1);
        // Summing the per-bin counters costs ~100 adds: every 8th slow call
        // (the peak misses at most 8 page refills of growth per thread).
        if (*h).slow_calls.is_multiple_of(FLUSH_EVERY) {
            flush_stats(h, false);
        }
        // The front end's periodic hook: on each of a thread's first slow
        // calls (short-lived processes make only a few), then every 8th.
        if (*h).slow_calls <= FLUSH_EVERY || (*h).slow_calls.is_multiple_of(FLUSH_EVERY) {
            crate::stats::run_periodic_hook();
        }
        if !(*h).slow_calls.is_multiple_of(MAINTENANCE_EVERY) {
            return;
        }
        let trim = (*h).trim_requested.swap(false, Relaxed);
        let now = memkit_sys::now_ns();
        if !trim && now < (*h).next_maintenance {
            return;
        }
        let delay = OPTIONS.purge_delay_ns.load(Relaxed);
        (*h).next_maintenance = now + (delay / 4).max(1_000_000);
        collect_all(h, false, trim, now);
        segment::decay_cache(now, trim);
        huge::decay(now, trim);
        reclaim_dead(now, 1, false);
        #[cfg(feature = "expensive-checks")]
        {
            if let (false, Err(e)) = ((*h).forked, check_invariants(h)) {
                invariant_broken(e);
            }
            if let Err(e) = huge::check_invariants() {
                invariant_broken(e);
            }
        }
    }
}

/// Collects remote frees of every page of `h`, retires empty pages (all of
/// them if `force`; otherwise the first page of a bin stays, to avoid
/// thrashing on malloc/free pairs), and purges segments whose delay passed
/// (all dirty slices if `purge_all`). Returns the bytes purged.
///
/// # Safety
/// The caller owns `h` (its thread, or its thread is gone).
pub(super) unsafe fn collect_all(h: *mut Heap, force: bool, purge_all: bool, now: u64) -> u64 {
    let mut purged = 0;
    // SAFETY: we own h, its segments and pages.
    unsafe {
        // Other heaps' blocks go home first (they may be ours: then they
        // arrive on our own pages' thread_free and are collected below).
        flush_rcache(h);
        drain_delayed(h);
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let next_seg = (*seg).next;
            let pages = addr_of_mut!((*seg).pages).cast::<Page>();
            let mut i = 1;
            let mut seg_freed = false;
            while i < SLICES {
                if (*seg).free_mask & (1 << i) != 0 {
                    i += 1;
                    continue;
                }
                let p = pages.add(i);
                let n = ((*p).slice_count as usize).max(1);
                (*p).collect();
                let keep = !force && (*h).first[(*p).bin as usize] == p;
                if (*p).used == 0 && !keep {
                    // The last page frees the segment: stop touching it.
                    seg_freed = (*seg).free_mask.count_zeros() as usize == n + 1;
                    free_page(h, p, now);
                    if seg_freed {
                        break;
                    }
                } else {
                    // In use again (or its bin's first page): no longer
                    // an empty page kept back.
                    unkeep(h, p);
                    if (*p).flags & FLAG_FULL != 0 && !(*p).free.is_null() {
                        unfull(h, p);
                    }
                }
                i += n;
            }
            // A freed segment may already belong to someone else: not touched.
            if !seg_freed && (*seg).dirty_mask != 0 {
                let decayed = (*seg).purge_at != 0 && now >= (*seg).purge_at;
                if purge_all || (decayed && !OPTIONS.memory_locked.load(Relaxed)) {
                    purged += (*seg).purge();
                }
            }
            seg = next_seg;
        }
    }
    purged
}

/// Collects up to `max` dead heaps (`u64::MAX`: all of them), purging all
/// their free slices if `purge` (else those whose delay passed). Empty heaps
/// stay in the pool for new threads. Returns the bytes purged.
pub(super) fn reclaim_dead(now: u64, max: u64, purge: bool) -> u64 {
    let mut purged = 0;
    let rounds = max.min(HEAPS.lock().dead_count);
    for _ in 0..rounds {
        let d = HEAPS.lock().pop_dead();
        if d.is_null() {
            break;
        }
        // SAFETY: a heap popped from the pool is ours until we push it back.
        unsafe {
            if !(*d).segments.is_null() || !(*d).delayed.load(Relaxed).is_null() {
                purged += collect_all(d, true, purge, now);
                flush_stats(d, true);
            }
        }
        HEAPS.lock().push_dead(d);
    }
    purged
}

/// Adds the heap's in-use delta to the global figure when it is large.
///
/// # Safety
/// The caller owns `h`.
pub(super) unsafe fn flush_stats(h: *mut Heap, force: bool) {
    // SAFETY: we own h.
    unsafe {
        let cur = (*h).stats.sums().in_use;
        let d = cur - (*h).flushed;
        if force || d >= FLUSH_BYTES || d <= -FLUSH_BYTES {
            GLOBAL.flush_in_use(d);
            (*h).flushed = cur;
        }
    }
}

/// Returns free memory to the OS now: the calling thread's heap and the dead
/// heaps are collected and purged, cached segments and huge blocks unmapped;
/// other live threads purge at their next maintenance tick.
/// Returns the bytes released.
pub fn trim() -> u64 {
    let now = memkit_sys::now_ns();
    let me = tls::heap();
    let mut released = 0;
    if me != empty_heap() {
        // SAFETY: our own heap.
        unsafe {
            released += collect_all(me, true, true, now);
            flush_stats(me, true);
        }
    }
    released += reclaim_dead(now, u64::MAX, true);
    {
        let r = HEAPS.lock();
        let mut h = r.all;
        while !h.is_null() {
            // SAFETY: registry heaps are never freed; the flag is atomic.
            unsafe {
                if h != me && (*h).state.load(Relaxed) == STATE_LIVE {
                    (*h).trim_requested.store(true, Relaxed);
                }
                h = (*h).next_all;
            }
        }
    }
    released += segment::decay_cache(now, true);
    released += huge::decay(now, true);
    released
}

/// The OS refused memory: gives back everything memkit holds for reuse
/// (empty pages of the calling thread's heap and of dead heaps, cached
/// segments and huge blocks, all unmapped or purged) so that the caller can
/// try once more. Returns whether anything was released. Under an
/// address-space limit (`ulimit -v`) only unmapping helps, which is what
/// the caches give.
pub fn relieve_pressure() -> bool {
    let me = tls::heap();
    let now = memkit_sys::now_ns();
    let mut released = reclaim_dead(now, u64::MAX, true);
    if me != empty_heap() {
        // SAFETY: the calling thread's own heap, between two operations.
        unsafe {
            released += collect_all(me, true, true, now);
            flush_stats(me, true);
        }
    }
    released += segment::decay_cache(now, true);
    released += huge::decay(now, true);
    released > 0
}

/// [`relieve_pressure`] for a mapping `h` needs: an arena first collects
/// itself (its empty pages and segments go back to its own source, which
/// is what a full file needs), and relieves the process only when it maps
/// from the OS too.
///
/// # Safety
/// `h` is the caller's heap (its thread's, or an arena it uses).
pub unsafe fn relieve_pressure_for(h: *mut Heap) -> bool {
    // SAFETY: per the contract.
    unsafe {
        if !is_arena(h) {
            return relieve_pressure();
        }
        let segments = count_segments(h);
        let purged = collect_all(h, true, true, memkit_sys::now_ns());
        flush_stats(h, true);
        let released = purged > 0 || count_segments(h) < segments;
        if source::is_os((*h).source) {
            relieve_pressure() || released
        } else {
            released
        }
    }
}

/// # Safety
/// The caller owns `h`.
unsafe fn count_segments(h: *mut Heap) -> usize {
    let mut n = 0;
    // SAFETY: per the contract.
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            n += 1;
            seg = (*seg).next;
        }
    }
    n
}

/// A huge block, retried once after [`relieve_pressure`] when the OS
/// refuses the mapping.
pub fn alloc_huge(size: usize, align: usize) -> *mut u8 {
    let p = huge::alloc(size, align);
    if p.is_null() && size <= huge::MAX_REQUEST && relieve_pressure() {
        return huge::alloc(size, align);
    }
    p
}

/// Visits every heap ever created (live, dead or idle) with its state.
pub fn for_each_heap(mut f: impl FnMut(&Heap, bool)) {
    let r = HEAPS.lock();
    let mut h = r.all;
    while !h.is_null() {
        // SAFETY: registry heaps are never freed; stats are atomics.
        unsafe {
            f(&*h, (*h).state.load(Relaxed) == STATE_LIVE);
            h = (*h).next_all;
        }
    }
}

/// Visits every page of the calling thread's heap:
/// `f(bin, block_size, used, capacity, reserved)`. Other threads' heaps are
/// not walked: their page lists change under them.
pub fn for_each_own_page(mut f: impl FnMut(usize, usize, u32, u32, u32)) {
    let h = tls::heap();
    if h == empty_heap() {
        return;
    }
    // SAFETY: our own heap, segments and pages.
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            Segment::for_each_page(seg, |p| {
                f(
                    (*p).bin as usize,
                    (*p).block_size,
                    (*p).used,
                    (*p).capacity,
                    (*p).reserved,
                )
            });
            seg = (*seg).next;
        }
    }
}

/// Live and dead heap counts.
pub fn heap_counts() -> (u64, u64) {
    let r = HEAPS.lock();
    (r.live_count, r.dead_count)
}

/// Checks heap `h`: its bin queues (a page is queued iff not full, in the
/// queue of its bin, with `first`/`last` consistent), each of its segments
/// (owned by it, with their pages), its segment hint, and its cache of
/// other heaps' blocks (free-tagged block starts of the right bin, bytes as
/// counted). Walks everything: tests, `debug_assert!` where a heap changes
/// hands, and every maintenance tick with `expensive-checks`.
///
/// # Safety
/// The caller owns `h`.
pub unsafe fn check_invariants(h: *mut Heap) -> Result<(), &'static str> {
    // SAFETY: we own h.
    unsafe {
        for bin in 1..NBINS {
            let mut p = (*h).first[bin];
            if p == empty_page() {
                if (*h).last[bin] != empty_page() {
                    return Err("heap: an empty queue with a last page");
                }
                continue;
            }
            let mut prev: *mut Page = null_mut();
            while !p.is_null() {
                if (*p).bin as usize != bin || (*p).flags & FLAG_FULL != 0 || (*p).prev != prev {
                    return Err("heap: a queued page of another bin, full, or mislinked");
                }
                (*p).check_invariants()?;
                prev = p;
                p = (*p).next;
            }
            if (*h).last[bin] != prev {
                return Err("heap: a queue's last page is not its tail");
            }
        }
        let mut seg = (*h).segments;
        let mut slot_found = (*h).seg_mine.map(|x| x == NO_HINT);
        while !seg.is_null() {
            if (*seg).heap != h {
                return Err("heap: a listed segment belongs to another heap");
            }
            (*seg).check_invariants(true)?;
            let slot = mine_slot(seg as usize);
            slot_found[slot] |= (*h).seg_mine[slot] == seg as usize;
            seg = (*seg).next;
        }
        if slot_found.contains(&false) {
            return Err("heap: a seg_mine slot holds none of its segments");
        }
        for bin in 1..NBINS {
            let mut b = (*h).rcache[bin];
            let mut bytes = 0u32;
            while !b.is_null() {
                if !segment::is_block_of_bin(b, bin) || (harden::on() && !harden::is_tagged(b)) {
                    return Err("heap: a cached block of another heap is no free block of its bin");
                }
                bytes += bin_size(bin) as u32;
                if bytes > RCACHE_BYTES {
                    return Err(
                        "heap: the cache of other heaps' blocks is over its bound (a cycle?)",
                    );
                }
                b = next_of(b);
            }
            if bytes != (*h).rcache_bytes[bin] {
                return Err("heap: cached bytes do not match the cache");
            }
        }
        Ok(())
    }
}

/// [`check_invariants`] as a bool (tests).
///
/// # Safety
/// The caller owns `h`.
pub unsafe fn check(h: *mut Heap) -> bool {
    // SAFETY: forwarded.
    unsafe { check_invariants(h).is_ok() }
}
