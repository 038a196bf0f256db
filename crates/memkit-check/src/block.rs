//! The checking allocator: every block between red zones, recorded in the
//! side table with its allocation stack, freed into a quarantine.
//!
//! Layout of a block inside the core block memkit-alloc hands out:
//!
//! ```text
//! start                     user                 user+size          end
//! | header 16 | left zone   | the program's bytes | right zone ...    |
//! ```
//!
//! The header names the user pointer (for interior pointers: memcpy
//! ranges, invalid frees, the leak scan); the zones hold canary bytes,
//! checked byte by byte at free, at realloc, on a periodic walk and at exit.
//! The right zone is at least 16 bytes and runs to the core block's end
//! (at most 4 KiB of it is written and checked).

use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::collections::VecDeque;
use std::sync::Mutex;

use memkit_trace::depot::StackId;

use crate::report::{self, Report};
use crate::table::{self, Kind, Meta, State};
use crate::{options, stacks, tls};

const HEADER: usize = 16;
/// The smallest distance from a core block's start to the user pointer.
pub const LEFT: usize = 32;
const RIGHT_MIN: usize = 16;
/// Right-zone bytes written and checked past the end, at most.
const RIGHT_CAP: usize = 4096;
const MAGIC: u64 = 0x6d65_6d6b_6974_6368;
/// Canary byte of the left zone.
pub const LEFT_CANARY: u8 = 0xfb;
/// Canary byte of the right zone.
pub const RIGHT_CANARY: u8 = 0xfa;
/// Requests beyond this are reported (`allocation-size-too-big`).
pub const MAX_SIZE: usize = 1 << 40;

/// Blocks the core does not find by address (huge blocks): start, end and
/// user pointer, sorted by start.
static BIG: Mutex<Vec<(usize, usize, usize)>> = Mutex::new(Vec::new());
static BIG_COUNT: AtomicUsize = AtomicUsize::new(0);

static QUARANTINE: Mutex<Quarantine> = Mutex::new(Quarantine { q: VecDeque::new(), bytes: 0 });

struct Quarantine {
    q: VecDeque<(usize, usize)>,
    bytes: usize,
}

/// Live bytes and blocks (for the periodic walk's pace).
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static SINCE_WALK: AtomicUsize = AtomicUsize::new(0);
static WALKING: AtomicBool = AtomicBool::new(false);

fn fill(p: usize, byte: u8, n: usize) {
    // SAFETY: callers pass ranges inside blocks they own.
    unsafe { core::ptr::write_bytes(p as *mut u8, byte, n) }
}

/// The first byte of `[p, p + n)` that is not `byte`.
fn first_not(p: usize, byte: u8, n: usize) -> Option<usize> {
    // SAFETY: callers pass ranges inside blocks they own.
    let s = unsafe { core::slice::from_raw_parts(p as *const u8, n) };
    s.iter().position(|&b| b != byte)
}

/// The core block's usable bytes.
fn core_usable(start: usize) -> usize {
    // SAFETY: `start` is a live core block.
    unsafe { memkit_alloc::usable_size(start as *mut u8) }
}

fn right_zone(m: &Meta) -> (usize, usize) {
    let from = m.user + m.size;
    let end = (m.start + core_usable(m.start)).min(from + RIGHT_CAP);
    (from, end - from)
}

/// A new checked block of `size` bytes aligned to `align` (>= 16).
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
pub unsafe fn alloc(size: usize, align: usize, kind: Kind, zero: bool) -> *mut u8 {
    if size > MAX_SIZE {
        let st = stacks::here();
        report::emit(Report {
            kind: "allocation-size-too-big",
            message: format!("requested allocation size {size:#x} exceeds the maximum {MAX_SIZE:#x}"),
            size: Some(size),
            thread: tls::tid(),
            stack: st,
            ..Report::default()
        });
        return null_mut();
    }
    let left = LEFT.max(align);
    let total = left + size + RIGHT_MIN;
    // SAFETY: any size; a valid power-of-two alignment.
    let start = tls::inside(|| unsafe {
        if align <= memkit_alloc::MIN_ALIGN {
            memkit_alloc::malloc(total)
        } else {
            memkit_alloc::aligned_alloc(align, total)
        }
    }) as usize;
    if start == 0 {
        return null_mut();
    }
    let user = start + left;
    // SAFETY: the header lies at the start of the core block.
    unsafe {
        (start as *mut u64).write(MAGIC ^ start as u64);
        ((start + 8) as *mut u64).write((left as u64) << 32);
    }
    fill(start + HEADER, LEFT_CANARY, left - HEADER);
    let o = options::get();
    if zero {
        fill(user, 0, size);
    } else {
        fill(user, o.alloc_fill, size.min(o.max_fill));
    }
    let stack = stacks::here();
    let m = Meta {
        user,
        start,
        size,
        alloc_stack: stack,
        free_stack: 0,
        alloc_thread: tls::tid(),
        free_thread: 0,
        kind,
        state: State::Live,
    };
    let (rz, rn) = right_zone(&m);
    fill(rz, RIGHT_CANARY, rn);
    if memkit_alloc::small_block_of(start as *const u8).is_none() {
        let end = start + core_usable(start);
        let mut big = BIG.lock().unwrap_or_else(|e| e.into_inner());
        let at = big.partition_point(|b| b.0 < start);
        tls::inside(|| big.insert(at, (start, end, user)));
        BIG_COUNT.store(big.len(), Relaxed);
    }
    tls::inside(|| table::shard(user).insert(m));
    LIVE_BLOCKS.fetch_add(1, Relaxed);
    let since = SINCE_WALK.fetch_add(1, Relaxed);
    if since > 65536 && since > 4 * LIVE_BLOCKS.load(Relaxed) {
        periodic_walk();
    }
    user as *mut u8
}

/// The block (live or in quarantine) whose core block holds `p`.
pub fn containing(p: usize) -> Option<Meta> {
    let start = if let Some((s, _)) = memkit_alloc::small_block_of(p as *const u8) {
        s as usize
    } else {
        if BIG_COUNT.load(Relaxed) == 0 {
            return None;
        }
        let big = BIG.lock().unwrap_or_else(|e| e.into_inner());
        let i = big.partition_point(|b| b.0 <= p);
        if i == 0 || p >= big[i - 1].1 {
            return None;
        }
        big[i - 1].0
    };
    // SAFETY: a core block of ours: its first 16 bytes are mapped; a free
    // block's header may hold anything, hence the magic.
    let (magic, left) = unsafe { (*(start as *const u64), *((start + 8) as *const u64) >> 32) };
    if magic != MAGIC ^ start as u64 || left as usize >= core_usable(start) {
        return None;
    }
    let user = start + left as usize;
    let m = tls::inside(|| table::shard(user).get(user).copied())?;
    (m.start == start).then_some(m)
}

/// Where `p` lies relative to `m`: the offset from its start and a phrase.
pub fn describe(m: &Meta, p: usize) -> (i64, String) {
    let off = p as i64 - m.user as i64;
    let how = if off < 0 {
        format!("{} bytes before", -off)
    } else if off as usize >= m.size {
        format!("{} bytes after", off as usize - m.size)
    } else {
        format!("{off} bytes inside")
    };
    (off, format!("{p:#x} is {how} the {}-byte block [{:#x},{:#x})", m.size, m.user, m.user + m.size))
}

fn block_report(kind: &'static str, message: String, m: &Meta, p: usize, stack: StackId) -> Report {
    let (off, place) = describe(m, p);
    Report {
        kind,
        message: format!("{message}; {place}"),
        address: p,
        size: Some(m.size),
        offset: Some(off),
        thread: tls::tid(),
        stack,
        alloc_stack: m.alloc_stack,
        alloc_thread: m.alloc_thread,
        free_stack: if m.state == State::Quarantined { m.free_stack } else { 0 },
        free_thread: m.free_thread,
        ..Report::default()
    }
}

/// Checks both red zones of a live block; reports the first damaged byte
/// and repairs the zone (one overflow, one report).
fn check_zones(m: &Meta, when: &str, stack: StackId) -> bool {
    if let Some(i) = first_not(m.start + HEADER, LEFT_CANARY, m.user - m.start - HEADER) {
        fill(m.start + HEADER, LEFT_CANARY, m.user - m.start - HEADER);
        let at = m.start + HEADER + i;
        report::emit(block_report(
            "heap-buffer-overflow",
            format!("a write before the block's start, found {when}"),
            m,
            at,
            stack,
        ));
        return false;
    }
    let (rz, rn) = right_zone(m);
    if let Some(i) = first_not(rz, RIGHT_CANARY, rn) {
        fill(rz, RIGHT_CANARY, rn);
        report::emit(block_report(
            "heap-buffer-overflow",
            format!("a write past the block's end, found {when}"),
            m,
            rz + i,
            stack,
        ));
        return false;
    }
    true
}

/// Frees a checked block (`kind`: which call frees it).
///
/// # Safety
/// The C contract of free: `p` may be anything, which is reported.
pub unsafe fn free(p: *mut u8, kind: Kind, func: &str) {
    if p.is_null() {
        return;
    }
    let p = p as usize;
    let stack = stacks::here();
    let tid = tls::tid();
    let found = tls::inside(|| {
        let mut g = table::shard(p);
        let m = g.get(p)?;
        let before = *m;
        if m.state == State::Live {
            m.state = State::Quarantined;
            m.free_stack = stack;
            m.free_thread = tid;
        }
        Some(before)
    });
    let Some(m) = found else {
        invalid_free(p, func, stack);
        return;
    };
    if m.state == State::Quarantined {
        report::emit(block_report("double-free", format!("attempting double-free ({func})"), &m, p, stack));
        return;
    }
    if m.kind != kind {
        report::emit(block_report(
            "alloc-dealloc-mismatch",
            format!("allocated with {}, freed with {func}", m.kind.alloc_name()),
            &m,
            p,
            stack,
        ));
    }
    check_zones(&m, &format!("when {func} was called"), stack);
    retire(m);
}

/// A free of something that is no block: say what it is.
fn invalid_free(p: usize, func: &str, stack: StackId) {
    let tid = tls::tid();
    let r = match containing(p) {
        Some(m) => block_report(
            "invalid-free",
            format!("attempting {func} on an address that is not the start of a block"),
            &m,
            p,
            stack,
        ),
        None => Report {
            kind: "invalid-free",
            message: format!("attempting {func} on address {p:#x}, which was not allocated by malloc ({})", crate::roots::what_is(p)),
            address: p,
            thread: tid,
            stack,
            ..Report::default()
        },
    };
    report::emit(r);
}

/// Moves a block into quarantine (filled with the free pattern), evicting
/// the oldest blocks beyond the quarantine's size.
fn retire(m: Meta) {
    let o = options::get();
    fill(m.user, o.free_fill, m.size.min(o.max_fill));
    LIVE_BLOCKS.fetch_sub(1, Relaxed);
    let mut evicted: Vec<usize> = Vec::new();
    tls::inside(|| {
        let mut q = QUARANTINE.lock().unwrap_or_else(|e| e.into_inner());
        q.q.push_back((m.user, m.size));
        q.bytes += m.size;
        while q.bytes > o.quarantine_bytes {
            let Some((u, s)) = q.q.pop_front() else { break };
            q.bytes -= s;
            evicted.push(u);
        }
    });
    for u in evicted {
        release(u);
    }
}

/// A block leaves quarantine: its free pattern must be intact (else a
/// write after free), then it goes back to the core.
fn release(user: usize) {
    let Some(m) = tls::inside(|| table::shard(user).remove(user)) else {
        return;
    };
    let o = options::get();
    let n = m.size.min(o.max_fill);
    if let Some(i) = first_not(m.user, o.free_fill, n) {
        fill(m.user, o.free_fill, n);
        report::emit(block_report(
            "use-after-free",
            "a write to the block after it was freed, found when it left quarantine".into(),
            &m,
            m.user + i,
            0,
        ));
    }
    check_zones(&m, "when it left quarantine", 0);
    if memkit_alloc::small_block_of(m.start as *const u8).is_none() {
        let mut big = BIG.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = big.iter().position(|b| b.0 == m.start) {
            big.remove(i);
        }
        BIG_COUNT.store(big.len(), Relaxed);
    }
    // SAFETY: the block was ours, recorded, and leaves the table now.
    tls::inside(|| unsafe { memkit_alloc::free(m.start as *mut u8) });
}

/// Empties the quarantine (checking every block), at exit.
pub fn drain_quarantine() {
    let all: Vec<usize> = tls::inside(|| {
        let mut q = QUARANTINE.lock().unwrap_or_else(|e| e.into_inner());
        q.bytes = 0;
        q.q.drain(..).map(|(u, _)| u).collect()
    });
    for u in all {
        release(u);
    }
}

/// Checks every live block's red zones (and quarantined blocks' patterns
/// at exit, through [`drain_quarantine`]).
pub fn walk_all(when: &str) {
    let mut bad: Vec<Meta> = Vec::new();
    tls::inside(|| {
        table::for_each(|m| {
            if m.state == State::Live {
                bad.push(*m);
            }
        })
    });
    for m in &bad {
        check_zones(m, when, 0);
    }
}

fn periodic_walk() {
    if WALKING.swap(true, Acquire) {
        return;
    }
    SINCE_WALK.store(0, Relaxed);
    walk_all("by the periodic check");
    WALKING.store(false, Release);
}

/// `malloc_usable_size`: the size asked for (the rest is red zone).
pub fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    let p = p as usize;
    tls::inside(|| match table::shard(p).get(p) {
        Some(m) if m.state == State::Live => m.size,
        _ => 0,
    })
}

/// `realloc` (non-null `p`, non-zero `size`): always a new block, so a
/// stale pointer to the old one finds it in quarantine.
///
/// # Safety
/// The C contract of realloc.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    let u = p as usize;
    let old = tls::inside(|| table::shard(u).get(u).copied());
    match old {
        Some(m) if m.state == State::Live => {
            // SAFETY: forwarded.
            let n = unsafe { alloc(size, 16, Kind::Malloc, false) };
            if n.is_null() {
                return n;
            }
            // SAFETY: both blocks hold at least min(size, old size) bytes.
            unsafe { core::ptr::copy_nonoverlapping(p, n, size.min(m.size)) };
            // SAFETY: p is live.
            unsafe { free(p, Kind::Malloc, "realloc") };
            n
        }
        _ => {
            // SAFETY: free reports double and invalid frees.
            unsafe { free(p, Kind::Malloc, "realloc") };
            null_mut()
        }
    }
}

/// After a write into or past `m` that an interceptor reported (and then
/// performed, as the program asked): restores the red-zone canaries and,
/// in a quarantined block, the free pattern over `[p, p + n)`, so that
/// free, the walks and the quarantine do not report the same bytes again.
/// Bytes beyond the block's zones belong to others and are left alone.
pub fn repair(m: &Meta, p: usize, n: usize) {
    let end = p.saturating_add(n);
    let restore = |from: usize, to: usize, byte: u8| {
        let (lo, hi) = (from.max(p), to.min(end));
        if lo < hi {
            fill(lo, byte, hi - lo);
        }
    };
    restore(m.start + HEADER, m.user, LEFT_CANARY);
    let (rz, rn) = right_zone(m);
    restore(rz, rz + rn, RIGHT_CANARY);
    if m.state == State::Quarantined {
        let o = options::get();
        restore(m.user, m.user + m.size.min(o.max_fill), o.free_fill);
    }
}
