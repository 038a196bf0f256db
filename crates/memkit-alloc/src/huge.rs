//! Huge blocks: requests above `MEDIUM_MAX`, each in its own mapping.
//!
//! A huge mapping starts 4 MiB-aligned with a one-page header (the same first
//! fields as a segment, `kind == KIND_HUGE`), so `free` finds it by masking
//! like any other block. The data follows the header; a block aligned to
//! 4 MiB or more starts one chunk after the header, and that chunk is marked
//! in the `INTERIOR` bitmap.
//!
//! Freed huge blocks are kept in a small cache for the purge delay, bounded in
//! bytes: a program that frees and reallocates 5–25 MiB blocks reuses resident
//! memory instead of unmapping and re-faulting it on every cycle (the peers'
//! weak spot on this kind of machine). `realloc` grows in place with `mremap`,
//! or moves the pages to a new aligned range with `mremap(MREMAP_FIXED)`:
//! never a copy.
//!
//! A huge block is mapped by a [`Source`] and remembers it. Blocks of the
//! OS source (every thread heap's, and an arena's over the OS) get all of
//! the above; blocks of another source are mapped and given back whole:
//! never cached (the cache holds only OS mappings), never trimmed or
//! remapped (`resizable` is false: `realloc` copies them), and alignments
//! above 4 MiB are refused. An arena's live huge blocks are linked in its
//! [`HugeList`] (under the cache lock), so that destroying the arena frees
//! them too.

use core::ptr::null_mut;
use core::sync::atomic::Ordering::Relaxed;

use crate::config::{OPTIONS, THP_ALWAYS, THP_DEFAULT, THP_NEVER};
use crate::lock::SpinLock;
use crate::segment::{self, KIND_HUGE, SEGMENT_SIZE};
use crate::source::{self, Source, ZEROED};
use crate::stats::GLOBAL;
use memkit_sys::OS_PAGE;

/// Bytes before the data of a block aligned to at most a page.
pub const HEADER: usize = OS_PAGE;
/// Larger requests fail at once with ENOMEM (64 TiB: more than any machine
/// this runs on can back).
pub const MAX_REQUEST: usize = 1 << 46;

#[repr(C)]
pub struct Huge {
    /// Always null: huge blocks have no owning heap.
    pub heap: *mut u8,
    pub kind: u32,
    pub live: u32,
    /// Bytes mapped from the header on.
    pub map_size: usize,
    pub data_off: usize,
    /// The data is known to be zero (fresh from the OS).
    pub zeroed: bool,
    /// `MADV_HUGEPAGE` has been applied to the mapping (it stays with the
    /// mapping through `mremap`).
    pub thp: bool,
    /// Its last use touched most of its pages (sampled when it is taken
    /// from the cache, see [`classify`]): it gets the huge-page advice.
    pub dense: bool,
    /// Its last use touched few of its pages (fewer than one in
    /// [`SPARSE_SHARE`], sampled as `dense`): taken again for a smaller
    /// request, it keeps a longer tail (see [`fit`]).
    pub sparse: bool,
    /// When `dense` and `sparse` were last sampled (monotonic ns; 0:
    /// never), see [`classify`].
    pub sampled_at: u64,
    /// Link in the cache, or, while live, in the owning arena's list.
    pub next: *mut Huge,
    /// The previous block in the arena's list (live arena blocks only).
    pub prev: *mut Huge,
    pub expire: u64,
    /// Where the mapping came from and goes back to.
    pub source: *const Source,
    /// The arena list the live block is in, or null (a thread heap's block).
    pub list: *mut HugeList,
}

/// The live huge blocks of an arena, linked through `next`/`prev` under the
/// cache lock (any thread may free one; `fork` takes that lock).
#[repr(C)]
pub struct HugeList {
    pub head: *mut Huge,
}

impl HugeList {
    pub const EMPTY: HugeList = HugeList { head: null_mut() };
}

// `free` reads `kind` (and `heap`) through a `Segment` pointer before it
// knows which of the two a chunk holds.
const _: () = assert!(
    core::mem::offset_of!(Huge, heap) == core::mem::offset_of!(segment::Segment, heap)
        && core::mem::offset_of!(Huge, kind) == core::mem::offset_of!(segment::Segment, kind)
);

struct Cache {
    head: *mut Huge,
    bytes: u64,
    count: u64,
}

// SAFETY: the raw pointers are only touched under the lock.
unsafe impl Send for Cache {}

static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    head: null_mut(),
    bytes: 0,
    count: 0,
});

/// Checks the cache of freed huge blocks: every entry is a huge header that
/// is not live, the byte and entry counts match the list, and the list
/// ends (at most `count` entries).
pub fn check_invariants() -> Result<(), &'static str> {
    let c = CACHE.lock();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut h = c.head;
    while !h.is_null() {
        n += 1;
        if n > c.count {
            return Err("huge cache: more entries than counted (a cycle?)");
        }
        // SAFETY: cached blocks are mapped and linked under the lock.
        unsafe {
            if (*h).kind != KIND_HUGE || (*h).live != 0 || !segment::is_owned(h as usize) {
                return Err("huge cache: an entry is live, or not a huge header of ours");
            }
            bytes += (*h).map_size as u64;
            h = (*h).next;
        }
    }
    if n != c.count || bytes != c.bytes {
        return Err("huge cache: counts do not match the list");
    }
    Ok(())
}

fn data_offset(align: usize) -> usize {
    if align <= HEADER {
        HEADER
    } else if align < SEGMENT_SIZE {
        align
    } else {
        SEGMENT_SIZE
    }
}

/// Takes a cached mapping for a block of `need` bytes, resized to fit:
/// the smallest one that is large enough (a tail beyond twice the request
/// is unmapped), else the largest one, grown with `mremap`. Either way its
/// resident pages are reused instead of faulting fresh ones: a program that
/// churns 5–25 MiB blocks of varying sizes touches only the difference.
/// Null when the cache is empty (or growing failed).
fn cache_take(need: usize) -> *mut Huge {
    let mut c = CACHE.lock();
    let mut best: *mut Huge = null_mut();
    let mut best_prev: *mut Huge = null_mut();
    let mut prev: *mut Huge = null_mut();
    let mut h = c.head;
    // SAFETY: cached blocks are mapped and linked under the lock.
    unsafe {
        while !h.is_null() {
            let m = (*h).map_size;
            let better = best.is_null() || {
                let b = (*best).map_size;
                // Large enough beats too small; among large enough the
                // smallest, among too small the largest.
                if m >= need {
                    b < need || m < b
                } else {
                    b < need && m > b
                }
            };
            if better {
                best = h;
                best_prev = prev;
            }
            prev = h;
            h = (*h).next;
        }
        if best.is_null() {
            return best;
        }
        if best_prev.is_null() {
            c.head = (*best).next;
        } else {
            (*best_prev).next = (*best).next;
        }
        c.bytes -= (*best).map_size as u64;
        c.count -= 1;
        GLOBAL
            .dirty_bytes
            .fetch_sub((*best).map_size as u64, Relaxed);
        drop(c);
        classify(best, need);
        if (*best).dense {
            advise_reused(best, need);
        }
        fit(best, thp_round(best, need))
    }
}

/// Rounds a new length of the mapping `h` up to whole huge pages when it has
/// the huge-page advice and is large enough for it, so that a later regrowth
/// starts on a 2 MiB boundary (the 2 MiB range around an unaligned end would
/// stay in small pages).
///
/// # Safety
/// `h` is a huge mapping of ours.
unsafe fn thp_round(h: *mut Huge, len: usize) -> usize {
    // SAFETY: per the contract.
    if unsafe { (*h).thp } && len >= THP_MIN {
        len.next_multiple_of(HUGE_PAGE)
    } else {
        len
    }
}

/// Resizes the unused mapping `h` to `need` bytes; null (and `h` unmapped)
/// if it cannot grow.
///
/// # Safety
/// `h` is a huge mapping of ours that is neither live nor cached.
unsafe fn fit(h: *mut Huge, need: usize) -> *mut Huge {
    // SAFETY: per the contract.
    unsafe {
        let m = (*h).map_size;
        if m >= need {
            // Keep up to the request's size again as slack (a later, larger
            // request reuses it without faults), or for a sparse mapping up
            // to SPARSE_SHARE - 1 times it: fewer than one page in
            // SPARSE_SHARE resident, that tail holds about as much resident
            // memory as the request's size, and cutting it cost the next
            // growth a fault for each page the program touches there again
            // (malloc-large: 11 faults a step, 1.2 with the tail kept).
            // Give back the rest.
            let keep = if (*h).sparse { SPARSE_SHARE - 1 } else { 1 };
            if m - need > keep * need.max(1 << 20) {
                memkit_sys::unmap((h as *mut u8).add(need), m - need);
                GLOBAL.unmap((m - need) as u64, true);
                (*h).map_size = need;
            }
            return h;
        }
        // Grow: the interior-chunk mark (if any) is redone by the caller.
        if (*h).data_off == SEGMENT_SIZE {
            segment::set_interior(h as usize + SEGMENT_SIZE, false);
        }
        (*h).data_off = 0;
        let grown = grow(h, need);
        if grown.is_null() {
            unmap(h);
        }
        grown
    }
}

/// Applies the `MEMKIT_THP` policy to a fresh huge mapping of `src`.
fn apply_thp(src: *const Source, p: *mut u8, len: usize) {
    match OPTIONS.thp.load(Relaxed) {
        // SAFETY: advice on a mapping we just made; src is live.
        THP_ALWAYS => unsafe {
            ((*src).advise_huge)(src, p, len, true);
        },
        // SAFETY: as above.
        THP_NEVER => unsafe {
            ((*src).advise_huge)(src, p, len, false);
        },
        _ => {}
    }
}

/// Below this mapping size a reused huge block gets no huge-page advice:
/// the header's 2 MiB stays in small pages, so a smaller mapping would have at
/// most one huge page to gain.
const THP_MIN: usize = 3 * HUGE_PAGE;
const HUGE_PAGE: usize = 2 << 20;

/// A mapping is sparse when fewer than one in this many of its sampled
/// pages are resident.
const SPARSE_SHARE: usize = 16;

/// Pages in each of [`sample_resident`]'s two windows.
const SAMPLE_WINDOW: usize = 128;

/// How many pages of the mapping `h`'s last use left resident in two
/// windows of [`SAMPLE_WINDOW`] pages, at an eighth and three eighths of its
/// data (two `mincore` calls); `None` when the mapping is too small to
/// sample (or `mincore` failed). Both windows lie in the first half, which
/// the last request covered (`fit` keeps its tail only as slack).
///
/// Sampled when the mapping is taken from the cache, for two decisions: a dense mapping (at least half
/// resident) gets the huge-page advice when it is used again; a sparse one
/// (fewer than one page in [`SPARSE_SHARE`]) keeps a longer tail when taken
/// for a smaller request. A program that writes a big block sparsely (a word
/// every 256 KiB, say) would otherwise get a zeroed 2 MiB page for each word
/// on every reuse (classic malloc-large model: 9x slower, 20x the RSS), and
/// fault again each page it touches in a tail that was cut.
///
/// # Safety
/// `h` is a huge mapping of ours, not live, that nobody else touches.
unsafe fn sample_resident(h: *mut Huge) -> Option<usize> {
    // SAFETY: per the contract.
    unsafe {
        let data = (h as *mut u8).add((*h).data_off);
        let len = (*h).map_size - (*h).data_off;
        if len < 8 * SAMPLE_WINDOW * OS_PAGE {
            return None;
        }
        let mut resident = 0;
        for eighth in [1usize, 3] {
            let at = (len / 8 * eighth) & !(OS_PAGE - 1);
            resident += memkit_sys::resident_pages(data.add(at), SAMPLE_WINDOW)?;
        }
        Some(resident)
    }
}

/// A mapping's sample stands for this long (ns): see [`classify`].
const RESAMPLE_NS: u64 = 1_000_000;

/// Samples the mapping `h`, just taken from the cache for a block of
/// `need` bytes, and records whether it is dense (it gets the huge-page
/// advice: only under the default THP policy and for requests and
/// mappings of [`THP_MIN`] or more) or sparse (it keeps a longer tail:
/// only when [`fit`] would cut one). Mappings that have the advice
/// already, and those for which neither decision is to be made, are not
/// sampled (neither). The two `mincore` calls cost ~5 us here (system
/// calls are dear on this VM); made at every `free`, as they were, they
/// were all of a 1-5 MiB `malloc`/`free` pair's cost (20,000 pairs 0.106
/// s, glibc 0.004). A sample now stands for [`RESAMPLE_NS`] (1 ms): the
/// flags can only go stale one way, from sparse to dense (a resident page
/// stays resident while the mapping is ours), and that takes page faults,
/// ~1.6 us each here: in 1 ms a program faults in at most ~2.5 MiB, the
/// most a stale `sparse` can keep resident in a tail it should have cut.
/// 20,000 pairs of 1-5 MiB blocks: 0.008 s.
///
/// # Safety
/// As [`sample_resident`].
unsafe fn classify(h: *mut Huge, need: usize) {
    // SAFETY: per the contract.
    unsafe {
        let m = (*h).map_size;
        let may_advise = !(*h).thp
            && need >= THP_MIN
            && m >= THP_MIN
            && OPTIONS.thp.load(Relaxed) == THP_DEFAULT;
        let may_cut = m >= need && m - need > need.max(1 << 20);
        if (*h).thp || !(may_advise || may_cut) {
            // Nothing to decide: the flags are not read for this take.
            (*h).dense = false;
            return;
        }
        let now = memkit_sys::now_ns();
        if (*h).sampled_at != 0 && now.saturating_sub((*h).sampled_at) < RESAMPLE_NS {
            // The last sample stands: too little time since for many faults.
            return;
        }
        (*h).sampled_at = now;
        let sampled = sample_resident(h);
        let pages = 2 * SAMPLE_WINDOW;
        (*h).dense = may_advise && matches!(sampled, Some(n) if 2 * n >= pages);
        (*h).sparse = matches!(sampled, Some(n) if n * SPARSE_SHARE < pages);
    }
}

/// Advises `MADV_HUGEPAGE` for a huge mapping that is being used again
/// (taken from the cache, or grown by `realloc`) for `need` bytes, under the
/// default policy.
///
/// Churned big blocks are where page faults cost: every regrowth faults its
/// new tail in 4 KiB at a time (~1.6 us a page on the project's machine, ~5x
/// the cost per byte of a 2 MiB fault). A block allocated once keeps small
/// pages, so a program that maps a big table and touches it sparsely does not
/// pay 2 MiB of RSS per touch. The kernel only honours the advice when its
/// THP mode is `madvise` or `always`; already-resident small pages stay.
///
/// # Safety
/// `h` is a huge mapping of ours that nobody else touches meanwhile.
unsafe fn advise_reused(h: *mut Huge, need: usize) {
    // SAFETY: per the contract.
    unsafe {
        // `need`, not the mapping's current size: a big cached mapping taken
        // for a small request is cut down to it.
        if (*h).thp || need < THP_MIN || OPTIONS.thp.load(Relaxed) != THP_DEFAULT {
            return;
        }
        (*h).thp = true;
        memkit_sys::advise_huge(h as *mut u8, (*h).map_size, true);
    }
}

/// Maps `need` bytes for a huge block from `src`: 4 MiB-aligned, and for
/// alignments above 4 MiB (the OS source only) placed so that the data (one
/// chunk after the header) lands on the alignment.
///
/// # Safety
/// `src` is a live source.
unsafe fn map_for(src: *const Source, need: usize, align: usize) -> Option<*mut u8> {
    // SAFETY: per the contract.
    if unsafe { !source::is_os(src) } {
        if align > SEGMENT_SIZE {
            return None;
        }
        // SAFETY: per the contract.
        let p = unsafe { ((*src).map)(src, need, SEGMENT_SIZE) };
        return (!p.is_null()).then_some(p);
    }
    if align <= SEGMENT_SIZE {
        return memkit_sys::map_aligned(need, SEGMENT_SIZE).ok();
    }
    let over = need.checked_add(align)?;
    let raw = memkit_sys::map_aligned(over, SEGMENT_SIZE).ok()? as usize;
    let data = (raw + SEGMENT_SIZE).next_multiple_of(align);
    let base = data - SEGMENT_SIZE;
    // SAFETY: both trimmed ranges lie inside the mapping just made.
    unsafe {
        if base > raw {
            memkit_sys::unmap(raw as *mut u8, base - raw);
        }
        if raw + over > base + need {
            memkit_sys::unmap((base + need) as *mut u8, raw + over - (base + need));
        }
    }
    Some(base as *mut u8)
}

/// Allocates a huge block of `size` bytes aligned to `align` (power of
/// two) from the OS, for a thread heap.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    // SAFETY: the OS source is static; no list.
    unsafe { alloc_in(source::os(), null_mut(), size, align) }
}

/// [`alloc`] from `src`, linked in `list` (an arena's) unless it is null.
///
/// # Safety
/// `src` is a live source; `list` is null or an arena's live list.
pub unsafe fn alloc_in(
    src: *const Source,
    list: *mut HugeList,
    size: usize,
    align: usize,
) -> *mut u8 {
    if size > MAX_REQUEST || align > MAX_REQUEST {
        return null_mut();
    }
    // A zero-byte request still gets a byte: its pointer must lie inside the
    // mapping (and have a usable size), not at its end.
    let size = size.max(1);
    let off = data_offset(align);
    let need = (off + size).next_multiple_of(OS_PAGE);
    // A cached mapping is only 4 MiB-aligned: good for any alignment up to
    // that (the data offset is the alignment), not beyond.
    // SAFETY: per the contract.
    let os = unsafe { source::is_os(src) };
    let mut h = if align <= SEGMENT_SIZE && os {
        cache_take(need)
    } else {
        null_mut()
    };
    if h.is_null() {
        // SAFETY: per the contract.
        let Some(p) = (unsafe { map_for(src, need, align) }) else {
            return null_mut();
        };
        if !segment::prepare_marks(p as usize) {
            // SAFETY: our fresh mapping, not handed out.
            unsafe { ((*src).unmap)(src, p, need) };
            return null_mut();
        }
        GLOBAL.map(need as u64, true);
        apply_thp(src, p, need);
        h = p as *mut Huge;
        // SAFETY: a fresh mapping of at least one page.
        unsafe {
            (*h).heap = null_mut();
            (*h).kind = KIND_HUGE;
            (*h).map_size = need;
            (*h).zeroed = (*src).flags & ZEROED != 0;
            (*h).thp = false;
            (*h).dense = false;
            (*h).sparse = false;
            (*h).sampled_at = 0;
            (*h).data_off = 0;
            (*h).source = src;
        }
        segment::set_owned(h as usize, true);
    }
    // SAFETY: h is a mapping of ours no one else uses.
    unsafe {
        let old_interior = (*h).data_off == SEGMENT_SIZE;
        if old_interior != (off == SEGMENT_SIZE) {
            segment::set_interior(h as usize + SEGMENT_SIZE, off == SEGMENT_SIZE);
        }
        (*h).data_off = off;
        (*h).live = 1;
        (*h).next = null_mut();
        (*h).prev = null_mut();
        (*h).list = list;
        if !list.is_null() {
            let _c = CACHE.lock();
            (*h).next = (*list).head;
            if !(*h).next.is_null() {
                (*(*h).next).prev = h;
            }
            (*list).head = h;
        }
        let usable = (*h).map_size - off;
        GLOBAL.huge_live.fetch_add(1, Relaxed);
        GLOBAL.huge_live_bytes.fetch_add(usable as u64, Relaxed);
        GLOBAL.huge_allocs.fetch_add(1, Relaxed);
        GLOBAL.flush_in_use(0);
        (h as *mut u8).add(off)
    }
}

/// The header of the huge block `p` points into the data start of, if any.
pub fn header_of(p: *mut u8) -> *mut Huge {
    let chunk = p as usize & !(SEGMENT_SIZE - 1);
    let h = if segment::is_owned(chunk) {
        chunk
    } else if segment::is_interior(chunk) {
        chunk - SEGMENT_SIZE
    } else {
        return null_mut();
    };
    let h = h as *mut Huge;
    // SAFETY: owned chunks start with a mapped header.
    unsafe {
        if (*h).kind != KIND_HUGE || (*h).live != 1 || (h as *mut u8).add((*h).data_off) != p {
            return null_mut();
        }
    }
    h
}

/// Zeroes the first `total` bytes of the live huge block `h` at `p` (its
/// data start) for `calloc`. A fresh mapping is zero already. A reused
/// one (from the cache) was not touched everywhere by its last user: a
/// `calloc` of 4 MiB whose program writes a page wrote 4 MiB of zeroes
/// (and so made all of it resident for the next one), 0.6 ms a call
/// where glibc and jemalloc hand out pages known to be zero. Of an OS
/// mapping (private and anonymous), only the resident pages are written
/// (`mincore`, a megabyte at a time); the others are dropped with
/// `MADV_DONTNEED`, which makes them read as zero (pages that were
/// swapped out too), at no cost where nothing is mapped. Other sources'
/// mappings (shared memory, where `MADV_DONTNEED` does not zero) are
/// written whole.
///
/// # Safety
/// `h` is a live huge block the caller owns and `p`..`p + total` lies in
/// its data.
pub unsafe fn zero(h: *mut Huge, p: *mut u8, total: usize) {
    // SAFETY: per the contract.
    unsafe {
        if (*h).zeroed {
            return;
        }
        if !source::is_os((*h).source) || !(p as usize).is_multiple_of(OS_PAGE) {
            core::ptr::write_bytes(p, 0, total);
            return;
        }
        let whole = total / OS_PAGE;
        let mut vec = [0u8; 256];
        let mut page = 0;
        while page < whole {
            let n = (whole - page).min(vec.len());
            let at = p.add(page * OS_PAGE);
            if !memkit_sys::resident_map(at, &mut vec[..n]) {
                core::ptr::write_bytes(at, 0, n * OS_PAGE);
                page += n;
                continue;
            }
            let mut i = 0;
            while i < n {
                let resident = vec[i] & 1 != 0;
                let mut j = i + 1;
                while j < n && (vec[j] & 1 != 0) == resident {
                    j += 1;
                }
                let (from, len) = (at.add(i * OS_PAGE), (j - i) * OS_PAGE);
                if resident || !memkit_sys::purge(from, len) {
                    core::ptr::write_bytes(from, 0, len);
                }
                i = j;
            }
            page += n;
        }
        // The partial page at the end (resident or not: a write).
        core::ptr::write_bytes(p.add(whole * OS_PAGE), 0, total - whole * OS_PAGE);
    }
}

/// Usable bytes of a live huge block.
///
/// # Safety
/// `h` is a live huge block.
pub unsafe fn usable(h: *mut Huge) -> usize {
    // SAFETY: per the contract.
    unsafe { (*h).map_size - (*h).data_off }
}

/// Frees a huge block: into the cache, or back to the OS.
///
/// # Safety
/// `h` is a live huge block the caller stops using.
pub unsafe fn free(h: *mut Huge) {
    // SAFETY: per the contract.
    unsafe {
        (*h).live = 0;
        (*h).zeroed = false;
        GLOBAL.huge_live.fetch_sub(1, Relaxed);
        GLOBAL.huge_live_bytes.fetch_sub(usable(h) as u64, Relaxed);
        let list = (*h).list;
        if !list.is_null() {
            let _c = CACHE.lock();
            unlink(list, h);
        }
        if !source::is_os((*h).source) {
            // Only OS mappings are cached: this one goes home.
            unmap(h);
            return;
        }
        let limit = OPTIONS.huge_cache_bytes.load(Relaxed);
        let m = (*h).map_size as u64;
        if m <= limit {
            (*h).expire = memkit_sys::now_ns() + OPTIONS.purge_delay_ns.load(Relaxed);
            let mut c = CACHE.lock();
            // Make room: evict the oldest entries (at the tail).
            while c.bytes + m > limit && !c.head.is_null() {
                let mut prev: *mut Huge = null_mut();
                let mut t = c.head;
                while !(*t).next.is_null() {
                    prev = t;
                    t = (*t).next;
                }
                if prev.is_null() {
                    c.head = null_mut();
                } else {
                    (*prev).next = null_mut();
                }
                c.bytes -= (*t).map_size as u64;
                c.count -= 1;
                GLOBAL.dirty_bytes.fetch_sub((*t).map_size as u64, Relaxed);
                unmap(t);
            }
            (*h).next = c.head;
            c.head = h;
            c.bytes += m;
            c.count += 1;
            GLOBAL.dirty_bytes.fetch_add(m, Relaxed);
            return;
        }
        unmap(h);
    }
}

/// Takes the live block `h` out of the arena list `list`.
///
/// # Safety
/// The cache lock is held; `h` is in `list`.
unsafe fn unlink(list: *mut HugeList, h: *mut Huge) {
    // SAFETY: per the contract.
    unsafe {
        let (n, p) = ((*h).next, (*h).prev);
        if p.is_null() {
            (*list).head = n;
        } else {
            (*p).next = n;
        }
        if !n.is_null() {
            (*n).prev = p;
        }
        (*h).next = null_mut();
        (*h).prev = null_mut();
        (*h).list = null_mut();
    }
}

/// Frees every block of an arena's list at once (its `destroy`): each
/// mapping goes back to its source. Returns how many there were.
///
/// # Safety
/// `list` is an arena's list; none of its blocks is used any more.
pub unsafe fn discard_all(list: *mut HugeList) -> u64 {
    let mut n = 0;
    // SAFETY: per the contract; the list is taken whole under the lock.
    unsafe {
        let mut h = {
            let _c = CACHE.lock();
            core::mem::replace(&mut (*list).head, null_mut())
        };
        while !h.is_null() {
            let next = (*h).next;
            (*h).live = 0;
            (*h).list = null_mut();
            GLOBAL.huge_live.fetch_sub(1, Relaxed);
            GLOBAL.huge_live_bytes.fetch_sub(usable(h) as u64, Relaxed);
            unmap(h);
            n += 1;
            h = next;
        }
    }
    n
}

/// Whether `resize` may resize the live block `h` (an OS mapping); others
/// are moved by copying.
///
/// # Safety
/// `h` is a live huge block.
pub unsafe fn resizable(h: *mut Huge) -> bool {
    // SAFETY: per the contract.
    unsafe { source::is_os((*h).source) }
}

/// # Safety
/// `h` is a huge mapping of ours that is neither live nor cached.
unsafe fn unmap(h: *mut Huge) {
    // SAFETY: per the contract.
    unsafe {
        let m = (*h).map_size;
        if (*h).data_off == SEGMENT_SIZE {
            segment::set_interior(h as usize + SEGMENT_SIZE, false);
        }
        segment::set_owned(h as usize, false);
        let src = (*h).source;
        ((*src).unmap)(src, h as *mut u8, m);
        GLOBAL.unmap(m as u64, true);
    }
}

/// Grows the mapping of `h` to `len` bytes without copying: in place with
/// `mremap`, or by moving its pages onto a fresh 4 MiB-aligned range
/// (`mremap(MREMAP_FIXED)`), ownership and interior marks moved along.
/// Returns the (possibly moved) header, or null with `h` untouched.
///
/// # Safety
/// `h` is a huge mapping of ours that nobody else touches meanwhile.
unsafe fn grow(h: *mut Huge, len: usize) -> *mut Huge {
    // SAFETY: per the contract.
    unsafe {
        let base = h as *mut u8;
        let old = (*h).map_size;
        let grown = if memkit_sys::remap(base, old, len, false).is_ok() {
            h
        } else {
            let Ok(dst) = memkit_sys::map_aligned(len, SEGMENT_SIZE) else {
                return null_mut();
            };
            if !segment::prepare_marks(dst as usize) {
                memkit_sys::unmap(dst, len);
                return null_mut();
            }
            apply_thp(source::os(), dst, len);
            if memkit_sys::remap_to(base, old, len, dst).is_err() {
                memkit_sys::unmap(dst, len);
                return null_mut();
            }
            if (*(dst as *mut Huge)).data_off == SEGMENT_SIZE {
                segment::set_interior(base as usize + SEGMENT_SIZE, false);
                segment::set_interior(dst as usize + SEGMENT_SIZE, true);
            }
            segment::set_owned(base as usize, false);
            segment::set_owned(dst as usize, true);
            dst as *mut Huge
        };
        GLOBAL.map((len - old) as u64, true);
        (*grown).map_size = len;
        grown
    }
}

/// Resizes a huge block to `size` (> MEDIUM_MAX) without copying: shrink or
/// grow in place, or move the pages with `mremap`. Returns the new data
/// pointer, or null (the old block is untouched) when memory is short.
///
/// # Safety
/// `h` is a live huge block of the caller's, [`resizable`].
pub unsafe fn resize(h: *mut Huge, size: usize) -> *mut u8 {
    // SAFETY: per the contract.
    if size > MAX_REQUEST || unsafe { !resizable(h) } {
        return null_mut();
    }
    // SAFETY: per the contract.
    unsafe {
        let off = (*h).data_off;
        let old = (*h).map_size;
        let need = (off + size).next_multiple_of(OS_PAGE);
        let old_usable = old - off;
        if need <= old {
            // Shrink only when it frees a lot; keep slack for regrowth.
            let need = thp_round(h, need).min(old);
            if old - need >= (1 << 20) && old - need >= old / 4 {
                memkit_sys::unmap((h as *mut u8).add(need), old - need);
                GLOBAL.unmap((old - need) as u64, true);
                (*h).map_size = need;
                GLOBAL
                    .huge_live_bytes
                    .fetch_sub((old - need) as u64, Relaxed);
            }
            return (h as *mut u8).add(off);
        }
        // Grow with slack (x1.25) so a growing buffer does not remap each time.
        advise_reused(h, need);
        let target = thp_round(h, (need + need / 4).next_multiple_of(OS_PAGE));
        let newh = grow(h, target);
        if newh.is_null() {
            return null_mut();
        }
        GLOBAL
            .huge_live_bytes
            .fetch_add((target - off - old_usable) as u64, Relaxed);
        (newh as *mut u8).add(off)
    }
}

/// Unmaps cached blocks idle past their deadline (all if `force`).
/// Returns the bytes released.
pub fn decay(now: u64, force: bool) -> u64 {
    let mut released = 0;
    if !force && OPTIONS.memory_locked.load(Relaxed) {
        return 0;
    }
    let mut c = CACHE.lock();
    let mut prev: *mut Huge = null_mut();
    let mut h = c.head;
    // SAFETY: cached blocks are mapped and linked under the lock.
    unsafe {
        while !h.is_null() {
            let next = (*h).next;
            if force || now >= (*h).expire {
                if prev.is_null() {
                    c.head = next;
                } else {
                    (*prev).next = next;
                }
                let m = (*h).map_size as u64;
                c.bytes -= m;
                c.count -= 1;
                GLOBAL.dirty_bytes.fetch_sub(m, Relaxed);
                unmap(h);
                released += m;
            } else {
                prev = h;
            }
            h = next;
        }
    }
    released
}

/// Cached huge blocks.
pub fn cached() -> u64 {
    CACHE.lock().count
}

pub fn fork_prepare() {
    CACHE.raw_lock();
}

/// # Safety
/// Only after `fork_prepare` in the same thread.
pub unsafe fn fork_parent() {
    // SAFETY: forwarded.
    unsafe { CACHE.raw_unlock() }
}

/// # Safety
/// Only in a forked child after `fork_prepare` in the parent.
pub unsafe fn fork_child() {
    // SAFETY: forwarded.
    unsafe { CACHE.raw_unlock() }
}
