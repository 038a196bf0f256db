//! The allocation slow path: refilling from a bin's pages, new pages
//! from the heap's segments (resident free slices first), pages given back.

use super::*;

/// Slices of a page for blocks of `bs` bytes: at least 4 blocks per page for
/// medium sizes, one 64 KiB slice for small ones.
pub(super) fn slices_for(bs: usize) -> usize {
    (bs * 4).div_ceil(SLICE_SIZE).clamp(1, SLICES - 1)
}

/// Pops a block from a page that has one. Owner only.
///
/// # Safety
/// `p.free` is non-null.
#[inline(always)]
pub(super) unsafe fn pop(p: *mut Page) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        let b = (*p).free;
        let next = if harden::on() {
            take::<true>(p, b)
        } else {
            take::<false>(p, b)
        };
        match next {
            Ok(n) => (*p).free = n,
            Err(what) => {
                harden::corrupt(b, what);
            }
        }
        (*p).used += 1;
        b as *mut u8
    }
}

/// Takes `b`, the head of one of page `p`'s lists, off that list and
/// returns the next block. `HARD`: checks that `b` lies in the page's carved
/// part (before anything is read from it: heads come from decoded links)
/// and is free, and clears its tag; `Err` carries what [`harden::corrupt`]
/// reports (the fast path tail-calls it, so that it needs no stack frame of
/// its own).
///
/// The head is checked, not the link when it is decoded: the head is never
/// null here (the caller tested it), so the test needs no case for the
/// list's end, and every block is still checked before it is read or handed
/// out (a link decodes to the next head, and nothing reads it before the
/// next call takes it). A head in the page off a block boundary fails the
/// tag test (its second word is no tag), so the boundary need not be tested
/// here (a multiply on every malloc).
///
/// # Safety
/// `b` is the (non-null) head of a list of `p`, owned by the caller.
#[inline(always)]
pub unsafe fn take<const HARD: bool>(p: *mut Page, b: *mut Block) -> Result<*mut Block, Fault> {
    // SAFETY: per the contract: `b` is read only once it is known to lie in
    // the page's carved part.
    unsafe {
        if !HARD {
            return Ok((*b).next);
        }
        if !(*p).covers(b as *const u8) {
            return Err(Fault::BadHead);
        }
        if !harden::is_tagged(b) {
            return Err(Fault::NotFree);
        }
        let next = harden::next_of_hard(b);
        (*b).tag = 0;
        Ok(next)
    }
}

/// The allocation slow path for a small/medium bin: refill from the bin's
/// pages, or make a new page. Always a block of the heap's own pages (the
/// fast path hands out the `rcache`).
///
/// # Safety
/// `h` is the calling thread's (real) heap.
#[cold]
#[inline(never)]
pub unsafe fn alloc_bin_slow(h: *mut Heap, bin: usize) -> *mut u8 {
    // SAFETY: we own h.
    unsafe {
        tick(h);
        loop {
            let p = (*h).first[bin];
            if p == empty_page() {
                break;
            }
            // A kept empty page is the one allocated from now.
            unkeep(h, p);
            if (*p).collect() || (*p).extend() {
                return pop(p);
            }
            // Exhausted: leave the queue, and ask remote freers to tell us.
            queue_remove(h, p);
            (*p).flags |= FLAG_FULL;
            if (*p)
                .thread_free
                .compare_exchange(0, TF_NOTIFY, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                // A remote free arrived meanwhile: the page has blocks after all.
                (*p).flags &= !FLAG_FULL;
                queue_push_front(h, p);
            }
        }
        let p = new_page(h, bin);
        if p.is_null() {
            return null_mut();
        }
        (*p).extend();
        pop(p)
    }
}

/// Takes `n` consecutive free slices in one of `h`'s segments (only slices
/// that are still resident if `resident`), first segment first.
///
/// # Safety
/// `h` is owned by the caller.
pub(super) unsafe fn find_span(
    h: *mut Heap,
    n: usize,
    resident: bool,
) -> Option<(*mut Segment, usize)> {
    // SAFETY: we own h and its segments.
    unsafe {
        let mut seg = (*h).segments;
        while !seg.is_null() {
            let got = if resident {
                (*seg).take_dirty_span(n)
            } else {
                (*seg).take_span(n)
            };
            if let Some(i) = got {
                return Some((seg, i));
            }
            seg = (*seg).next;
        }
        None
    }
}

/// # Safety
/// `h` is owned by the caller.
pub(super) unsafe fn new_page(h: *mut Heap, bin: usize) -> *mut Page {
    let bs = bin_size(bin);
    let n = slices_for(bs);
    // SAFETY: we own h and its segments.
    unsafe {
        // Resident free slices first, in any of the heap's segments: memory
        // touched once costs nothing more to touch again, where fresh or
        // purged slices cost page faults and RSS (python's peak RSS: 21.0 ->
        // 17.7 MiB, git's 9.1 -> 8.7 MiB).
        // Kept empty pages (of other sizes, or this one's: its queue had no
        // free block, so none is kept) hold resident slices too.
        let mut found = find_span(h, n, true);
        if found.is_none() && (*h).kept_count > 0 {
            release_kept(h, memkit_sys::now_ns());
            found = find_span(h, n, true);
        }
        let found = found.or_else(|| find_span(h, n, false));
        let (seg, i) = match found {
            Some(f) => f,
            None => {
                let src = (*h).source;
                let owner = if is_arena(h) {
                    segment::OWNER_ARENA
                } else {
                    segment::OWNER_LIVE
                };
                let mut seg = segment::alloc(h, src, owner);
                if seg.is_null() && relieve_pressure_for(h) {
                    seg = segment::alloc(h, src, owner);
                }
                if seg.is_null() {
                    return null_mut();
                }
                (*seg).next = (*h).segments;
                if !(*h).segments.is_null() {
                    (*(*h).segments).prev = seg;
                }
                (*h).segments = seg;
                match (*seg).take_span(n) {
                    Some(i) => (seg, i),
                    None => return null_mut(),
                }
            }
        };
        let pages = addr_of_mut!((*seg).pages).cast::<Page>();
        for k in 1..n {
            let off = (k * core::mem::size_of::<Page>()) as u32;
            (*pages.add(i + k)).slice_offset = off;
            (*pages.add(i + k)).shared.slice_offset = off;
        }
        (*h).seg_mine[mine_slot(seg as usize)] = seg as usize;
        let p = pages.add(i);
        *p = Page::EMPTY;
        (*p).flags = 0;
        (*p).block_size = bs;
        (*p).bin = bin as u8;
        (*p).slice_count = n as u8;
        (*p).start = (*seg).slice_addr(i);
        (*p).reserved = ((n * SLICE_SIZE) / bs) as u32;
        ((*p).inv, (*p).div_shift) = harden::BIN_DIV[bin];
        (*p).shared = Shared {
            slice_offset: 0,
            flags: 0,
            bin: bin as u8,
            _pad: 0,
            block_size: bs,
            start: (*p).start,
            carved: AtomicU32::new(0),
        };
        queue_push_front(h, p);
        debug_assert!(
            (*h).forked || (*seg).check_invariants(false).is_ok(),
            "segment with a new page"
        );
        p
    }
}

/// Reports a broken invariant found by `expensive-checks` and aborts.
#[cfg(feature = "expensive-checks")]
#[cold]
pub(super) fn invariant_broken(what: &str) -> ! {
    let mut w = crate::util::BufWriter::<200>::new();
    w.put(b"memkit: internal invariant broken: ");
    w.put(what.as_bytes());
    w.put(b"; aborting\n");
    w.flush_to(2);
    harden::fault_abort()
}

/// Gives a page with no block in use back to its segment (and the segment
/// back to the cache when it empties).
///
/// # Safety
/// `h` owns the page; `p.used == 0`; nothing is pending in `thread_free`.
pub(super) unsafe fn free_page(h: *mut Heap, p: *mut Page, now: u64) {
    // SAFETY: per the contract.
    unsafe {
        debug_assert!(
            (*h).forked || (*p).check_invariants().is_ok(),
            "page given back"
        );
        if (*p).flags & FLAG_FULL == 0 {
            queue_remove(h, p);
        }
        unkeep(h, p);
        let seg = Segment::of(p as *const u8);
        let idx = (p as usize - addr_of_mut!((*seg).pages) as usize) / core::mem::size_of::<Page>();
        (*seg).release_span(idx, (*p).slice_count as usize);
        if (*seg).is_empty() {
            let (n, pr) = ((*seg).next, (*seg).prev);
            if pr.is_null() {
                (*h).segments = n;
            } else {
                (*pr).next = n;
            }
            if !n.is_null() {
                (*n).prev = pr;
            }
            let slot = &mut (*h).seg_mine[mine_slot(seg as usize)];
            if *slot == seg as usize {
                *slot = NO_HINT;
            }
            segment::free(seg, now);
        } else if (*seg).purge_at == 0 {
            (*seg).purge_at = now + OPTIONS.purge_delay_ns.load(Relaxed);
        }
    }
}
