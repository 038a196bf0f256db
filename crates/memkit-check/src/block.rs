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
//! ranges, invalid frees, the leak scan) and the block's size, under a
//! check of both (word 0: the size above a 23-bit check of it and of the
//! start; word 1: the user pointer's offset and the quarantine tag), so
//! that a checked `memcpy` inside a live block needs neither the side
//! table nor its lock ([`inside_live`]); the zones hold canary bytes,
//! checked (a word at a time) at free, at realloc, when the block leaves
//! quarantine, on a periodic walk and at exit. The right zone is at least
//! 16 bytes and runs to the core block's end (its first 64 bytes are
//! written and checked).

use core::arch::x86_64::{
    __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    _mm_storeu_si128,
};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering::*};
use memkit_alloc::lock::SpinLock;
use std::collections::BTreeMap;

use memkit_trace::depot::StackId;
use memkit_trace::unwind::Regs;

use crate::records::Records;
use crate::report::{self, Report};
use crate::table::{self, Kind, Meta, State};
use crate::{guard, options, stacks, tls, Padded};

const HEADER: usize = 16;
/// The smallest distance from a core block's start to the user pointer.
pub const LEFT: usize = 32;
const RIGHT_MIN: usize = 16;
/// Right-zone bytes written and checked past the end, at most: an
/// overflow runs on from the block's last byte, so its first bytes are
/// what a contiguous overflow always hits (the rest of the zone is neither
/// written nor read: one cache line per block, not a page's worth).
const RIGHT_CAP: usize = 64;
/// Left-zone bytes written and checked before the block, at most (an
/// underflow runs down from the block's first byte).
const LEFT_CAP: usize = 64;
/// Alignments above this are served from an unaligned huge core block
/// (see [`alloc`]).
const WIDE_ALIGN: usize = 256 << 10;
const MAGIC: u64 = 0x6d65_6d6b_6974_6368;
/// Header word 0: the size above [`CHECK_BITS`] bits of check.
const CHECK_BITS: u32 = 23;
const CHECK_MASK: u64 = (1 << CHECK_BITS) - 1;
/// Canary byte of the left zone.
pub const LEFT_CANARY: u8 = 0xfb;
/// Canary byte of the right zone.
pub const RIGHT_CANARY: u8 = 0xfa;
/// Requests beyond this are reported (`allocation-size-too-big`).
pub const MAX_SIZE: usize = 1 << 40;

/// A block the core does not find by address: a huge core block or a
/// guarded mapping.
#[derive(Clone, Copy, Debug)]
struct Big {
    end: usize,
    user: usize,
    guard: bool,
    /// The quarantine tag (`IN_QUARANTINE | tag`) while freed, else 0.
    qtag: u64,
}

/// Those blocks, by start address.
static BIG: SpinLock<BTreeMap<usize, Big>> = SpinLock::new(BTreeMap::new());
static BIG_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Every big block (with a guard page's slack after it) lies in
/// `[BIG_LO, BIG_HI)`, so that a checked call on a stack or global address
/// takes no lock to learn it is in none. Widened under `BIG`'s lock; reset
/// when the last big block goes.
static BIG_LO: AtomicUsize = AtomicUsize::new(usize::MAX);
static BIG_HI: AtomicUsize = AtomicUsize::new(0);

/// Freed blocks, oldest first, with their records (the side table holds
/// live blocks only: a million blocks in quarantine do not slow its
/// lookups). A quarantined block's header carries its sequence number, so
/// a second free or a checked `memcpy` finds its record.
static QUARANTINE: [Padded<SpinLock<Quarantine>>; QSHARDS] = [const {
    Padded(SpinLock::new(Quarantine {
        q: Records::new(),
        bytes: 0,
        head: 0,
        unpublished_bytes: 0,
        unpublished_blocks: 0,
    }))
}; QSHARDS];
/// Independent quarantines (a thread frees into `tid % QSHARDS`), each
/// so that threads seldom meet on a lock. The bound is on their total
/// (`QBYTES`): a thread evicts from its own shard while the total is over
/// it, so a single-threaded program keeps the whole quarantine.
const QSHARDS: usize = 16;
/// The shards' bytes as last published: each shard adds its change to it
/// (and to `QUARANTINED`) once that change exceeds [`PUBLISH_BYTES`] or
/// [`PUBLISH_BLOCKS`], not on every free (two shared atomic updates per
/// free and two per eviction were a tenth of a malloc/free pair). A shard
/// judges the bound by this plus its own unpublished change: exact for a
/// single thread, within 16 x 256 KiB with all shards busy.
static QBYTES: AtomicUsize = AtomicUsize::new(0);
const PUBLISH_BYTES: usize = 256 << 10;
const PUBLISH_BLOCKS: usize = 1024;
const SEQ_BITS: u32 = 28;

// A record chunk fills the 16 KiB block `own_alloc` serves it from.
const _: () = {
    let bytes = crate::records::CHUNK * core::mem::size_of::<Meta>();
    assert!(bytes <= 16 << 10 && bytes + core::mem::size_of::<Meta>() > 16 << 10);
};

struct Quarantine {
    /// Records, oldest first (what each holds back is its [`footprint`]).
    q: Records<Meta>,
    bytes: usize,
    /// Sequence number of `q[0]`.
    head: u64,
    /// Changes of `bytes` and of `q.len()` not yet in `QBYTES` and
    /// `QUARANTINED`.
    unpublished_bytes: isize,
    unpublished_blocks: isize,
}

/// Header word 1: the user pointer's offset (bits 33-63), "in quarantine"
/// (bit 32), the quarantine shard (bits 28-31) and the low 28 bits of the
/// block's sequence number in it.
const IN_QUARANTINE: u64 = 1 << 32;

/// Live bytes and blocks (for the periodic walk's pace and the default
/// quarantine bound), as of the threads' last reports.
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
/// Blocks in quarantine (the walk visits their records too).
static QUARANTINED: AtomicUsize = AtomicUsize::new(0);
static SINCE_WALK: AtomicUsize = AtomicUsize::new(0);
static WALKING: AtomicBool = AtomicBool::new(false);

/// Fills `[p, p + n)` with `byte`: short ranges (red zones, small blocks)
/// by 16-byte stores here, as many from each end as the length needs (two
/// up to 32 bytes, four up to 64, eight up to 128: no loop, the stores from
/// the two ends overlapping in the middle), longer ones by [`fill_long`].
#[inline(always)]
fn fill(p: usize, byte: u8, n: usize) {
    if n > 128 {
        return fill_long(p, byte, n);
    }
    if n >= 16 {
        // SAFETY: as above: unaligned stores inside the range (from p up
        // to p + min(n, 64), and from p + n - min(n, 64) up to p + n);
        // SSE2 is part of x86_64.
        unsafe {
            let v = _mm_set1_epi8(byte as i8);
            let (a, b) = (p, p + n - 16);
            _mm_storeu_si128(a as *mut __m128i, v);
            _mm_storeu_si128(b as *mut __m128i, v);
            if n > 32 {
                _mm_storeu_si128((a + 16) as *mut __m128i, v);
                _mm_storeu_si128((b - 16) as *mut __m128i, v);
                if n > 64 {
                    _mm_storeu_si128((a + 32) as *mut __m128i, v);
                    _mm_storeu_si128((a + 48) as *mut __m128i, v);
                    _mm_storeu_si128((b - 32) as *mut __m128i, v);
                    _mm_storeu_si128((b - 48) as *mut __m128i, v);
                }
            }
        }
        return;
    }
    if n >= 8 {
        let word = u64::from_ne_bytes([byte; 8]);
        // SAFETY: as above; two overlapping unaligned stores.
        unsafe {
            (p as *mut u64).write_unaligned(word);
            ((p + n - 8) as *mut u64).write_unaligned(word);
        }
        return;
    }
    for i in 0..n {
        // SAFETY: as above.
        unsafe { *((p + i) as *mut u8) = byte };
    }
}

/// Whether every byte of `[p, p + n)` is `byte`: unaligned 16-byte loads
/// compared and AND-ed together, one branch at the end (a 16-byte red zone
/// costs one load); up to 128 bytes as [`fill`] stores them (no loop),
/// longer ranges a load every 16 bytes, the last one overlapping its
/// neighbour. [`first_not`] finds the byte once this says something
/// differs.
#[inline(always)]
fn all_eq(p: usize, byte: u8, n: usize) -> bool {
    if n > 128 {
        return all_eq_long(p, byte, n);
    }
    if n >= 16 {
        // SAFETY: callers pass ranges inside blocks they own: unaligned
        // loads inside the range, as fill's stores; SSE2 is part of x86_64.
        unsafe {
            let v = _mm_set1_epi8(byte as i8);
            let eq = |at: usize| _mm_cmpeq_epi8(_mm_loadu_si128(at as *const __m128i), v);
            let (a, b) = (p, p + n - 16);
            let mut same = _mm_and_si128(eq(a), eq(b));
            if n > 32 {
                same = _mm_and_si128(same, _mm_and_si128(eq(a + 16), eq(b - 16)));
                if n > 64 {
                    same = _mm_and_si128(same, _mm_and_si128(eq(a + 32), eq(a + 48)));
                    same = _mm_and_si128(same, _mm_and_si128(eq(b - 32), eq(b - 48)));
                }
            }
            return _mm_movemask_epi8(same) == 0xffff;
        }
    }
    if n >= 8 {
        let word = u64::from_ne_bytes([byte; 8]);
        // SAFETY: as above; two overlapping unaligned loads.
        let (a, b) = unsafe {
            (
                (p as *const u64).read_unaligned(),
                ((p + n - 8) as *const u64).read_unaligned(),
            )
        };
        return (a ^ word) | (b ^ word) == 0;
    }
    let mut diff = 0u8;
    for i in 0..n {
        // SAFETY: as above.
        diff |= unsafe { *((p + i) as *const u8) } ^ byte;
    }
    diff == 0
}

/// [`fill`] of more than 128 bytes: up to 32 KiB by 32-byte AVX2 stores
/// where the CPU has them (128 bytes a step, the last step ending at the
/// range's end), else and above by glibc's `memset` (called directly, not
/// through the checker's export). glibc writes 2 KiB and more with
/// `rep stosb`: on this machine's AMD EPYC a 4 KiB malloc/free pair, whose
/// two 4 KiB fills are two thirds of its time, took 0.26 s for 2M pairs
/// that way, 0.21 s with glibc's own AVX2 stores (its
/// `x86_rep_stosb_threshold` raised) and 0.27 s with 16-byte SSE2 stores.
#[inline(never)]
fn fill_long(p: usize, byte: u8, n: usize) {
    if n <= 32 << 10 && has_avx2() {
        // SAFETY: the CPU has AVX2; the range is the caller's (n > 128).
        return unsafe { fill_avx2(p, byte, n) };
    }
    // Callers pass ranges inside blocks they own.
    crate::intercept::own_memset(p as *mut u8, byte, n)
}

/// Whether the CPU has AVX2 (asked once).
#[inline(always)]
fn has_avx2() -> bool {
    static AVX2: AtomicU32 = AtomicU32::new(0);
    match AVX2.load(Relaxed) {
        0 => {
            let yes = std::arch::is_x86_feature_detected!("avx2");
            AVX2.store(if yes { 1 } else { 2 }, Relaxed);
            yes
        }
        v => v == 1,
    }
}

/// # Safety
/// The CPU has AVX2; `[p, p + n)` (n > 128) is the caller's to write.
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2(p: usize, byte: u8, n: usize) {
    use core::arch::x86_64::{__m256i, _mm256_set1_epi8, _mm256_storeu_si256};
    // SAFETY: unaligned stores inside the range, the last group at
    // n - 128 >= 0.
    unsafe {
        let v = _mm256_set1_epi8(byte as i8);
        let four = |at: usize| {
            _mm256_storeu_si256(at as *mut __m256i, v);
            _mm256_storeu_si256((at + 32) as *mut __m256i, v);
            _mm256_storeu_si256((at + 64) as *mut __m256i, v);
            _mm256_storeu_si256((at + 96) as *mut __m256i, v);
        };
        let mut i = 0;
        while i + 128 < n {
            four(p + i);
            i += 128;
        }
        four(p + n - 128);
    }
}

/// [`all_eq`] of more than 128 bytes (the whole-block checks at exit, a
/// larger `free_check`).
#[inline(never)]
fn all_eq_long(p: usize, byte: u8, n: usize) -> bool {
    // SAFETY: callers pass ranges inside blocks they own: unaligned loads
    // inside the range, the last at n - 16 >= 0; SSE2 is part of x86_64.
    unsafe {
        let v = _mm_set1_epi8(byte as i8);
        let mut same = _mm_set1_epi8(-1);
        let mut i = 0;
        while i + 16 < n {
            let w = _mm_loadu_si128((p + i) as *const __m128i);
            same = _mm_and_si128(same, _mm_cmpeq_epi8(w, v));
            i += 16;
        }
        let w = _mm_loadu_si128((p + n - 16) as *const __m128i);
        same = _mm_and_si128(same, _mm_cmpeq_epi8(w, v));
        _mm_movemask_epi8(same) == 0xffff
    }
}

/// The first byte of `[p, p + n)` that is not `byte`.
#[inline(always)]
fn first_not(p: usize, byte: u8, n: usize) -> Option<usize> {
    if all_eq(p, byte, n) {
        return None;
    }
    first_not_slow(p, byte, n)
}

#[cold]
#[inline(never)]
fn first_not_slow(p: usize, byte: u8, n: usize) -> Option<usize> {
    // SAFETY: callers pass ranges inside blocks they own.
    (0..n).find(|&i| unsafe { *((p + i) as *const u8) } != byte)
}

/// Header word 0 of a block of `size` bytes in the core block at `start`
/// (sizes up to [`MAX_SIZE`] fit above the check).
#[inline(always)]
fn size_word(start: usize, size: usize) -> u64 {
    (size as u64) << CHECK_BITS | size_check(start, size)
}

#[inline(always)]
fn size_check(start: usize, size: usize) -> u64 {
    ((start as u64 ^ MAGIC).wrapping_add(size as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> (64 - CHECK_BITS)
}

/// Whether `[p, p + n)` (n > 0) lies inside a live block carved from a
/// small core page, by the block's header alone, or starts outside every
/// block: no lock, no table. The
/// header is written before the block is handed out and marked at its
/// free (before the side table forgets it), and its check fails on
/// anything else found there (the core's free-list links, a stale header
/// is marked as in quarantine): `false` sends the caller to
/// [`containing`], which decides exactly.
#[inline(always)]
pub fn inside_live(p: usize, n: usize) -> bool {
    let Some((s, bs)) = memkit_alloc::small_block_of(p) else {
        // In no small block: fine when in no big block's range either
        // (a stack or global address).
        return p < BIG_LO.load(Relaxed) || p >= BIG_HI.load(Relaxed);
    };
    let start = s as usize;
    // SAFETY: a core block of ours: its first 16 bytes are mapped.
    let (w0, w1) = unsafe { (*(start as *const u64), *((start + 8) as *const u64)) };
    let left = (w1 >> 33) as usize;
    let size = (w0 >> CHECK_BITS) as usize;
    let user = start + left;
    w1 & IN_QUARANTINE == 0
        && w0 & CHECK_MASK == size_check(start, size)
        && left + size <= bs
        && p >= user
        && p - user <= size
        && n <= size - (p - user)
}

/// Whether `p` may lie in a block (a small core block's page, or the range
/// of the big ones): no lock. Interceptors whose work needs a scan of
/// their own to know what they read do it only then.
#[inline(always)]
pub fn maybe_heap(p: usize) -> bool {
    memkit_alloc::small_block_of(p).is_some()
        || (p >= BIG_LO.load(Relaxed) && p < BIG_HI.load(Relaxed))
}

/// Starts loading the cache line of `p` (never faults, reads nothing).
#[inline(always)]
pub fn prefetch(p: usize) {
    // SAFETY: a prefetch hint: no access is made, any address is allowed.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
}

/// The core block's usable bytes.
fn core_usable(start: usize) -> usize {
    // SAFETY: `start` is a live core block.
    unsafe { memkit_alloc::usable_size(start as *mut u8) }
}

/// The core block (or guarded mapping) `m` lies in: (start, end).
#[inline(always)]
fn range(m: &Meta) -> (usize, usize) {
    if m.big() {
        big_range(m.user)
    } else {
        m.small_range()
    }
}

/// The range of the big block holding `user`, from [`BIG`] (where it is
/// recorded before its record exists and until its record is gone).
/// Takes `BIG`'s lock: not to be called with it held.
#[cold]
#[inline(never)]
fn big_range(user: usize) -> (usize, usize) {
    let big = BIG.lock();
    match big.range(..=user).next_back() {
        Some((&start, b)) if b.user == user => (start, b.end),
        // Not reached: every big block's record has its entry.
        _ => (user, user),
    }
}

/// The left red zone of `m`: (start, length), the last [`LEFT_CAP`]
/// bytes before the block at most. A block aligned to `align` starts
/// `align` bytes into its core block; the bytes before the zone are never
/// written or read (`memalign(1 << 30, 16)` filled and checked a GiB of
/// canary on every call before).
#[inline(always)]
fn left_zone(m: &Meta) -> (usize, usize) {
    zones(m).0
}

/// Both red zones of `m`, from one look at its range: ((start, length)
/// of the left, the same of the right).
#[inline(always)]
fn zones(m: &Meta) -> ((usize, usize), (usize, usize)) {
    let (start, end) = range(m);
    let from = (start + HEADER).max(m.user - LEFT_CAP);
    let rz = m.user + m.size();
    ((from, m.user - from), (rz, end.min(rz + RIGHT_CAP) - rz))
}

/// The right red zone of `m`: (start, length).
fn right_zone(m: &Meta) -> (usize, usize) {
    zones(m).1
}

/// The core's block size for `malloc(total)`, by `total` in 16-byte steps
/// up to [`MEMO_MAX`] (0: not seen yet). The core serves every request up
/// to 256 KiB from a small segment, in the block size of its size class,
/// which it finds the same way (a table by `(total + 15) / 16`): the end
/// of the block is its start plus this, without `small_block_of`'s page
/// lookup and division (40 instructions of every malloc).
static BLOCK_SIZE: [AtomicU32; MEMO_MAX / 16 + 1] =
    [const { AtomicU32::new(0) }; MEMO_MAX / 16 + 1];
const MEMO_MAX: usize = 32 << 10;

/// The end of the core block at `start` (from `malloc(total)`, or
/// `aligned_alloc(align, total)`) and whether the core does not find it
/// by address (a huge block).
#[inline(always)]
fn core_end(start: usize, total: usize, align: usize) -> (usize, bool) {
    let memo = (align <= memkit_alloc::MIN_ALIGN && total <= MEMO_MAX)
        .then(|| &BLOCK_SIZE[total.div_ceil(16)]);
    if let Some(bs) = memo {
        let bs = bs.load(Relaxed) as usize;
        if bs != 0 {
            debug_assert_eq!(
                memkit_alloc::small_block_of(start),
                Some((start as *mut u8, bs))
            );
            return (start + bs, false);
        }
    }
    core_end_slow(start, memo)
}

#[cold]
#[inline(never)]
fn core_end_slow(start: usize, memo: Option<&AtomicU32>) -> (usize, bool) {
    match memkit_alloc::small_block_of(start) {
        Some((b, bs)) => {
            if let Some(m) = memo {
                if b as usize == start {
                    m.store(bs as u32, Relaxed);
                }
            }
            (b as usize + bs, false)
        }
        None => (start + core_usable(start), true),
    }
}

/// The core block of an aligned checked block: (start, distance from it to
/// the block) for `total` bytes with `align` (> 16) bytes before the
/// block. An alignment beyond the core's small blocks is a huge core block
/// either way: it is taken unaligned, `align` bytes larger, and the block
/// placed at the first aligned address past the header. An aligned core
/// block with the header's `align` bytes before the block needed twice
/// `align` in address space (`memalign(1 << 34, 16)` failed on a machine
/// with 24 GiB, where glibc succeeds).
fn aligned_core(align: usize, total: usize) -> (usize, usize) {
    if align <= WIDE_ALIGN {
        // SAFETY: any size; a valid power-of-two alignment.
        let s = tls::inside(|| unsafe { memkit_alloc::aligned_alloc(align, total) });
        return (s as usize, align);
    }
    // `total` counts `align` bytes before the block; the header needs LEFT.
    let Some(t) = (total - align + LEFT).checked_add(align) else {
        return (0, align);
    };
    // SAFETY: any size.
    let s = tls::inside(|| unsafe { memkit_alloc::malloc(t) }) as usize;
    (s, (s + LEFT).next_multiple_of(align) - s)
}

/// A new checked block of `size` bytes aligned to `align` (>= 16).
///
/// # Safety
/// Always safe; unsafe because it hands out raw memory.
#[inline(never)]
pub unsafe fn alloc(size: usize, align: usize, kind: Kind, zero: bool, regs: Regs) -> *mut u8 {
    // SAFETY: forwarded. One body for every entry point (and one place in
    // the hot code, hot.ld), as before `alloc_in` existed.
    unsafe { alloc_in(size, align, kind, zero, regs, 0, false) }
}

/// [`alloc`], with `slack` more bytes in the core block past the right
/// zone (room to grow in place: never written, never checked) and the
/// record marked as made by `realloc`.
///
/// # Safety
/// As [`alloc`].
#[inline(always)]
unsafe fn alloc_in(
    size: usize,
    align: usize,
    kind: Kind,
    zero: bool,
    regs: Regs,
    slack: usize,
    realloced: bool,
) -> *mut u8 {
    // An alignment above the minimum needs up to `align` more bytes (as
    // AddressSanitizer counts): `memalign(1 << 40, 16)` is too big too.
    let need = if align > memkit_alloc::MIN_ALIGN {
        size.saturating_add(align)
    } else {
        size
    };
    if need > MAX_SIZE {
        let st = stacks::at(regs);
        let with = if size > MAX_SIZE {
            String::new()
        } else {
            format!(" with alignment {align:#x}")
        };
        report::emit(Report {
            kind: "allocation-size-too-big",
            message: format!(
                "requested allocation size {size:#x}{with} exceeds the maximum {MAX_SIZE:#x}"
            ),
            size: Some(size),
            thread: tls::tid(),
            stack: st,
            ..Report::default()
        });
        return null_mut();
    }
    let o = options::get();
    let mut left = LEFT.max(align);
    let guarded = if guard::wanted(o, size, align) {
        guard::map(size, left)
    } else {
        None
    };
    let start = match guarded {
        Some((s, end)) => {
            // The block ends at the guard page (rounded to 16 bytes).
            left = end - size.next_multiple_of(align.max(16)) - s;
            s
        }
        None => {
            let total = left + size + RIGHT_MIN + slack;
            if align <= memkit_alloc::MIN_ALIGN {
                // SAFETY: any size.
                tls::inside(|| unsafe { memkit_alloc::malloc(total) }) as usize
            } else {
                let (s, l) = aligned_core(align, total);
                left = l;
                s
            }
        }
    };
    if start == 0 {
        return null_mut();
    }
    let user = start + left;
    table::prefetch(user);
    // SAFETY: the header lies at the start of the core block.
    unsafe {
        (start as *mut u64).write(size_word(start, size));
        ((start + 8) as *mut u64).write((left as u64) << 33);
    }
    let ln = (left - HEADER).min(LEFT_CAP);
    fill(user - ln, LEFT_CANARY, ln);
    if zero {
        fill(user, 0, size);
    } else {
        fill(user, o.alloc_fill, size.min(o.max_fill));
    }
    let stack = stacks::of_alloc(o, regs);
    let (end, big) = match guarded {
        Some((_, end)) => (end, true),
        None => core_end(start, left + size + RIGHT_MIN + slack, align),
    };
    let mut m = Meta::new(
        user,
        start,
        end,
        size,
        stack,
        tls::tid(),
        kind,
        big,
        guarded.is_some(),
    );
    if realloced {
        m.set_realloced();
    }
    // The right zone from the ends known here (a big block's range is in
    // BIG only from the insertion below).
    let rz = user + size;
    fill(rz, RIGHT_CANARY, end.min(rz + RIGHT_CAP) - rz);
    if big {
        let mut b = BIG.lock();
        tls::inside(|| {
            b.insert(
                start,
                Big {
                    end,
                    user,
                    guard: guarded.is_some(),
                    qtag: 0,
                },
            )
        });
        BIG_LO.fetch_min(start, Relaxed);
        BIG_HI.fetch_max(end + guard::PAGE, Relaxed);
        BIG_COUNT.store(b.len(), Relaxed);
    }
    tls::inside(|| table::shard(user).insert(m));
    count(1, size);
    user as *mut u8
}

/// Counts an allocation (`live` +1) or a free (-1) of `size` bytes in the
/// thread's tallies, adding them to the process-wide counts every 1024
/// allocations; a walk of every record is due when the allocations since
/// the last one reach four times the records (at least 65536).
fn count(live: i64, size: usize) {
    let t = tls::me();
    t.live.set(t.live.get() + live);
    t.live_bytes.set(t.live_bytes.get() + live * size as i64);
    if live < 0 {
        // A thread that only frees (a consumer) publishes too: else the
        // producer's allocations alone make the heap look ever larger,
        // and the quarantine bound with it (xmalloc: 64 MiB, not 4).
        if t.live.get() <= -1024 {
            LIVE_BYTES.fetch_add(t.live_bytes.replace(0), Relaxed);
            LIVE_BLOCKS.fetch_add(t.live.replace(0), Relaxed);
        }
        return;
    }
    let n = t.allocs.get() + 1;
    if n < 1024 {
        t.allocs.set(n);
        return;
    }
    t.allocs.set(0);
    LIVE_BYTES.fetch_add(t.live_bytes.replace(0), Relaxed);
    let records = LIVE_BLOCKS.fetch_add(t.live.replace(0), Relaxed).max(0) as usize
        + QUARANTINED.load(Relaxed);
    let since = SINCE_WALK.fetch_add(n as usize, Relaxed);
    if since > 65536 && since > 4 * records {
        periodic_walk();
    }
}

/// The program's heap as `mallinfo2` and `malloc_stats` report it.
pub struct HeapStats {
    /// Live blocks and the bytes the program asked for in them: exact for
    /// the calling thread (its tally is published first), other threads'
    /// last at most ~1024 allocations behind.
    pub live_blocks: usize,
    pub live_bytes: usize,
    /// Blocks in quarantine, and what they hold back ([`footprint`]).
    pub quarantined: usize,
    pub quarantine_bytes: usize,
    pub quarantine_bound: usize,
}

pub fn heap_stats() -> HeapStats {
    let t = tls::me();
    LIVE_BYTES.fetch_add(t.live_bytes.replace(0), Relaxed);
    LIVE_BLOCKS.fetch_add(t.live.replace(0), Relaxed);
    let (mut quarantined, mut quarantine_bytes) = (0, 0);
    for s in &QUARANTINE {
        let q = s.lock();
        quarantined += q.q.len();
        quarantine_bytes += q.bytes;
    }
    HeapStats {
        live_blocks: LIVE_BLOCKS.load(Relaxed).max(0) as usize,
        live_bytes: LIVE_BYTES.load(Relaxed).max(0) as usize,
        quarantined,
        quarantine_bytes,
        quarantine_bound: quarantine_bound(options::get()),
    }
}

/// Counts a live block's change of size by `delta` bytes (`realloc` in
/// place) in the thread's tally.
fn resized(delta: i64) {
    let t = tls::me();
    t.live_bytes.set(t.live_bytes.get() + delta);
}

/// The block (live or in quarantine) whose core block holds `p`.
pub fn containing(p: usize) -> Option<Meta> {
    containing_with(p, true)
}

/// [`containing`]; with `wait` false, None where a lock it needs is held
/// (perhaps by this very thread: the core's fault hook may run inside the
/// checker's own work).
fn containing_with(p: usize, wait: bool) -> Option<Meta> {
    let (start, user, word) = if let Some((s, bs)) = memkit_alloc::small_block_of(p) {
        let start = s as usize;
        // SAFETY: a core block of ours: its first 16 bytes are mapped; a
        // free block's header may hold anything, hence the check.
        let (w0, word) = unsafe { (*(start as *const u64), *((start + 8) as *const u64)) };
        let left = (word >> 33) as usize;
        let size = (w0 >> CHECK_BITS) as usize;
        if w0 & CHECK_MASK != size_check(start, size) || left >= bs {
            return None;
        }
        (start, start + left, word)
    } else if !wait {
        return None;
    } else {
        let (start, b) = big_at(p, 0)?;
        (start, b.user, b.qtag)
    };
    let m = if word & IN_QUARANTINE != 0 {
        let shard = (word as u32 >> SEQ_BITS) as usize;
        let q = if wait {
            QUARANTINE[shard].lock()
        } else {
            QUARANTINE[shard].try_lock()?
        };
        let mask = (1u32 << SEQ_BITS) - 1;
        let i = ((word as u32).wrapping_sub(q.head as u32) & mask) as usize;
        q.q.get(i).copied()?
    } else {
        tls::inside(|| {
            if wait {
                table::shard(user).get(user).copied()
            } else {
                table::try_shard(user)?.get(user).copied()
            }
        })?
    };
    (m.user == user && range(&m).0 == start).then_some(m)
}

/// The big block whose range (plus `slack` bytes after it) holds `p`.
fn big_at(p: usize, slack: usize) -> Option<(usize, Big)> {
    if BIG_COUNT.load(Relaxed) == 0 {
        return None;
    }
    let big = BIG.lock();
    let (&start, &b) = big.range(..=p).next_back()?;
    (p < b.end + slack).then_some((start, b))
}

/// Every big block's mapping (a guarded block with its guard page), by
/// start address: memory a scan of the process's mappings must leave to
/// the blocks' own scan.
pub fn big_ranges() -> Vec<(usize, usize)> {
    if BIG_COUNT.load(Relaxed) == 0 {
        return Vec::new();
    }
    let big = BIG.lock();
    big.iter()
        .map(|(&start, b)| (start, b.end + if b.guard { guard::PAGE } else { 0 }))
        .collect()
}

/// The guarded mapping whose data or guard page holds `addr`: (start, data
/// end, user pointer, in quarantine).
pub fn guarded_at(addr: usize) -> Option<(usize, usize, usize, bool)> {
    let (start, b) = big_at(addr, guard::PAGE)?;
    b.guard.then_some((start, b.end, b.user, b.qtag != 0))
}

/// Where `p` lies relative to `m`: the offset from its start and a phrase.
pub fn describe(m: &Meta, p: usize) -> (i64, String) {
    let off = p as i64 - m.user as i64;
    let how = if off < 0 {
        format!("{} bytes before", -off)
    } else if off as usize >= m.size() {
        format!("{} bytes after", off as usize - m.size())
    } else {
        format!("{off} bytes inside")
    };
    (
        off,
        format!(
            "{p:#x} is {how} the {}-byte block [{:#x},{:#x})",
            m.size(),
            m.user,
            m.user + m.size()
        ),
    )
}

/// A report about the block `m`, at address `p` (where it lies relative
/// to the block is appended to `message`).
pub fn block_report(
    kind: &'static str,
    message: String,
    m: &Meta,
    p: usize,
    stack: StackId,
) -> Report {
    let (off, place) = describe(m, p);
    Report {
        kind,
        message: format!("{message}; {place}"),
        address: p,
        size: Some(m.size()),
        offset: Some(off),
        thread: tls::tid(),
        stack,
        alloc_stack: m.alloc_stack,
        alloc_thread: m.alloc_thread(),
        free_stack: if m.state() == State::Quarantined {
            m.free_stack
        } else {
            0
        },
        free_thread: m.free_thread(),
        ..Report::default()
    }
}

/// Checks both red zones of a live block; reports the first damaged byte
/// and repairs the zone (one overflow, one report).
#[inline(always)]
fn check_zones(m: &Meta, when: &dyn Fn() -> String, stack: StackId) -> bool {
    match damaged_zone(m) {
        Some((at, before)) => {
            zone_report(m, at, before, &when(), stack);
            false
        }
        None => true,
    }
}

/// The first damaged red-zone byte of `m` (and whether it lies before the
/// block), repairing the zone: one overflow, one report. The caller keeps
/// the block from being freed meanwhile (it owns the record, or holds its
/// shard).
#[inline(always)]
fn damaged_zone(m: &Meta) -> Option<(usize, bool)> {
    let ((lz, ln), (rz, rn)) = zones(m);
    if all_eq(lz, LEFT_CANARY, ln) && all_eq(rz, RIGHT_CANARY, rn) {
        return None;
    }
    damaged_zone_slow(m)
}

#[cold]
#[inline(never)]
fn damaged_zone_slow(m: &Meta) -> Option<(usize, bool)> {
    let (lz, ln) = left_zone(m);
    if let Some(i) = first_not(lz, LEFT_CANARY, ln) {
        fill(lz, LEFT_CANARY, ln);
        return Some((lz + i, true));
    }
    let (rz, rn) = right_zone(m);
    if let Some(i) = first_not(rz, RIGHT_CANARY, rn) {
        fill(rz, RIGHT_CANARY, rn);
        return Some((rz + i, false));
    }
    None
}

#[cold]
#[inline(never)]
fn zone_report(m: &Meta, at: usize, before: bool, when: &str, stack: StackId) {
    let what = if before {
        "a write before the block's start"
    } else {
        "a write past the block's end"
    };
    report::emit(block_report(
        "heap-buffer-overflow",
        format!("{what}, found {when}"),
        m,
        at,
        stack,
    ));
}

/// The core found a free block's link or free tag overwritten (its
/// hardening: `memkit_alloc::harden::fault`, installed as the core's
/// fault hook at start-up). In a checked program that is a write past a
/// block's red zone into the next core block, a free one, or a write
/// through a stale pointer to a block that has left the quarantine: the
/// red zones and the quarantine did not see it. Reported before the core's
/// own message and abort (the core cannot go on from a corrupted list):
/// as an overflow of the block before the damaged one when that block's
/// right red zone is damaged too, else as `heap-corruption` naming the
/// block before it, when there is one. Before 2026-12-03 the process
/// ended with the core's one line and no report.
pub fn core_fault(f: memkit_alloc::harden::Fault, call: &str, p: *const u8, detail: usize) {
    use memkit_alloc::harden::Fault;
    if report::emitting_here() {
        // Inside this thread's own report (an allocation of the
        // symbolizer's): the report lock is ours; the core's line alone.
        return;
    }
    let p = p as usize;
    let what = match f {
        Fault::BadLink => format!(
            "the core's free list is corrupted: the free core block at {p:#x} links to \
             {detail:#x} (its link was overwritten)"
        ),
        Fault::NotFree => format!(
            "the core's free list is corrupted: the core block at {p:#x}, listed free, lost its \
             free tag (overwritten)"
        ),
        Fault::BadHead => format!(
            "the core's free list is corrupted: a link leads to {p:#x}, outside its page (a \
             free core block's link was overwritten)"
        ),
        Fault::DoubleFree | Fault::NotBlockStart | Fault::NotInBlock => {
            format!("the core was handed an invalid pointer {p:#x}")
        }
    };
    let stack = stacks::here();
    // The damaged core block, where the core knows it: the one before it
    // is where a contiguous overflow came from.
    let damaged = matches!(f, Fault::BadLink | Fault::NotFree).then_some(p);
    // Without waiting for a lock: the fault may have come from the
    // checker's own work under one (a side table growing, in the core).
    let before = damaged.and_then(|b| containing_with(b.wrapping_sub(1), false));
    let r = match before {
        Some(m) => match damaged_zone(&m) {
            Some((at, false)) => block_report(
                "heap-buffer-overflow",
                format!(
                    "a write past the block's end ran through its red zone into the next core \
                     block, a free one ({what}), found by {call}()"
                ),
                &m,
                at,
                stack,
            ),
            _ => block_report(
                "heap-corruption",
                format!(
                    "{what}, found by {call}(): a write past a block's red zone or through a \
                     stale pointer to a block out of quarantine; the block before it"
                ),
                &m,
                p,
                stack,
            ),
        },
        None => Report {
            kind: "heap-corruption",
            message: format!(
                "{what}, found by {call}(): a write past a block's red zone or through a stale \
                 pointer to a block out of quarantine"
            ),
            address: p,
            thread: tls::tid(),
            stack,
            ..Report::default()
        },
    };
    report::emit(r);
    report::summary();
}

/// [`free`] through a call that names the block's size (C++'s sized
/// `operator delete`, C23's `free_sized`): a size other than the one the
/// block was allocated with is reported (`new-delete-type-mismatch`,
/// `free-size-mismatch`), and the block freed.
///
/// # Safety
/// As [`free`].
pub unsafe fn free_sized(p: *mut u8, size: usize, kind: Kind, func: &str, regs: Regs) {
    // The common case by the block's header (a compare); anything else
    // (a big block, a mismatch, no block at all) by the side table. Its
    // own copy of `free`'s body left `retire` out of line in both: 35
    // instructions of every pair.
    if !p.is_null() && header_size(p as usize) != Some(size) {
        sized_check(p as usize, size, kind, func, regs);
    }
    // SAFETY: forwarded.
    unsafe { free(p, kind, func, regs) }
}

/// The size in the header of the live small block starting at `user`, if
/// it is one.
#[inline(always)]
fn header_size(user: usize) -> Option<usize> {
    let (s, bs) = memkit_alloc::small_block_of(user)?;
    let start = s as usize;
    // SAFETY: a core block of ours: its first 16 bytes are mapped.
    let (w0, w1) = unsafe { (*(start as *const u64), *((start + 8) as *const u64)) };
    let size = (w0 >> CHECK_BITS) as usize;
    let left = (w1 >> 33) as usize;
    (w1 & IN_QUARANTINE == 0
        && w0 & CHECK_MASK == size_check(start, size)
        && left + size <= bs
        && start + left == user)
        .then_some(size)
}

#[cold]
#[inline(never)]
fn sized_check(p: usize, size: usize, kind: Kind, func: &str, regs: Regs) {
    let m = tls::inside(|| table::shard(p).get(p).copied());
    if let Some(m) = m {
        // A size is compared only when the call matches the allocation (a
        // mismatch says everything about a `malloc` freed by `delete`).
        if m.state() == State::Live && m.size() != size && m.kind() == kind {
            size_mismatch(&m, p, size, func, stacks::at(regs));
        }
    }
}

/// Frees a checked block (`kind`: which call frees it).
///
/// # Safety
/// The C contract of free: `p` may be anything, which is reported.
#[inline(never)]
pub unsafe fn free(p: *mut u8, kind: Kind, func: &str, regs: Regs) {
    if p.is_null() {
        return;
    }
    let p = p as usize;
    table::prefetch(p);
    let o = options::get();
    let stack = stacks::of_free(o, regs);
    let tid = tls::tid();
    let mut slot = core::mem::MaybeUninit::uninit();
    if !tls::inside(|| table::shard(p).remove_into(p, &mut slot)) {
        match tls::inside(|| containing(p)) {
            Some(m) if m.state() == State::Quarantined && m.user == p => {
                report::emit(block_report(
                    "double-free",
                    format!("attempting double-free ({func})"),
                    &m,
                    p,
                    stack,
                ))
            }
            _ => invalid_free(p, func, stack),
        }
        return;
    }
    // SAFETY: remove_into found the record and wrote it.
    let m = unsafe { slot.assume_init_ref() };
    // Reports made here are about the free itself: its stack is `stack`,
    // and the record still reads as live (no "freed at").
    if m.kind() != kind {
        report::emit(block_report(
            "alloc-dealloc-mismatch",
            format!(
                "allocated with {}, freed with {func}",
                m.kind().alloc_name()
            ),
            m,
            p,
            stack,
        ));
    }
    check_zones(m, &|| format!("when {func} was called"), stack);
    retire(o, m, stack, tid);
}

#[cold]
#[inline(never)]
fn size_mismatch(m: &Meta, p: usize, size: usize, func: &str, stack: StackId) {
    let r = if m.kind() == Kind::Malloc {
        block_report(
            "free-size-mismatch",
            format!(
                "{func} was told the block's size is {size} bytes; it was allocated with {} bytes",
                m.size()
            ),
            m,
            p,
            stack,
        )
    } else {
        block_report(
            "new-delete-type-mismatch",
            format!(
                "object passed to {func} has the wrong type: size of the allocated type {} bytes, \
                 size of the deallocated type {size} bytes",
                m.size()
            ),
            m,
            p,
            stack,
        )
    };
    report::emit(r);
}

/// A free of something that is no block: say what it is.
fn invalid_free(p: usize, func: &str, stack: StackId) {
    let tid = tls::tid();
    let r = match containing(p) {
        Some(m) => block_report(
            "invalid-free",
            format!(
                "attempting {func} on an address that is not the start of a block{}",
                array_hint(&m, p, func)
            ),
            &m,
            p,
            stack,
        ),
        // In the core's heap but in no block the checker knows: a block
        // freed before and gone from quarantine (a double free found too
        // late to name the block).
        None if memkit_alloc::small_block_of(p).is_some() => Report {
            kind: "invalid-free",
            message: format!(
                "attempting {func} on address {p:#x}, which is in the heap but in no live \
                 block: freed before and out of quarantine (a double free found late?)"
            ),
            address: p,
            thread: tid,
            stack,
            ..Report::default()
        },
        None => Report {
            kind: "invalid-free",
            message: format!(
                "attempting {func} on address {p:#x}, which was not allocated by malloc ({})",
                crate::roots::what_is(p)
            ),
            address: p,
            thread: tid,
            stack,
            ..Report::default()
        },
    };
    report::emit(r);
}

/// `delete p` of `new T[n]`, `T` with a destructor: `new[]` keeps the
/// element count in front of the array and returns the address past it,
/// and `delete` passes that address on: an interior pointer, 8 bytes in
/// (the type's alignment, when it is larger). Said, since the report's
/// kind (`invalid-free`, as AddressSanitizer and Valgrind say) does not
/// name the mismatch that caused it.
fn array_hint(m: &Meta, p: usize, func: &str) -> &'static str {
    let off = p.wrapping_sub(m.user);
    let array = match m.kind() {
        Kind::NewArray => off == 8,
        Kind::NewArrayAligned => off >= 8 && off.is_power_of_two(),
        _ => false,
    };
    if array && func.starts_with("operator delete") && !func.contains("[]") {
        " (the block was allocated with operator new [] and this address is where its \
         array starts, past the element count: `delete` of a `new[]` array; use `delete[]`)"
    } else {
        ""
    }
}

/// What a block in quarantine holds back: its core block (or guarded
/// mapping) and its record.
fn footprint(m: &Meta) -> usize {
    let len = if m.big() {
        let (start, end) = big_range(m.user);
        end - start + if m.guard() { guard::PAGE } else { 0 }
    } else {
        m.small_len()
    };
    len + core::mem::size_of::<Meta>()
}

/// What the quarantine may hold now: `quarantine_mb` when it was asked for,
/// else twice the live heap (between 4 and 64 MiB): a small heap's freed
/// blocks then stay in the caches, and its peak memory stays near its own.
fn quarantine_bound(o: &options::Options) -> usize {
    if o.quarantine_fixed {
        return o.quarantine_bytes;
    }
    let live = LIVE_BYTES.load(Relaxed).max(0) as usize;
    live.saturating_mul(options::QUARANTINE_LIVE_TIMES).clamp(
        options::QUARANTINE_MIN,
        o.quarantine_bytes.max(options::QUARANTINE_MIN),
    )
}

/// Moves a block into quarantine (filled with the free pattern), evicting
/// the oldest blocks beyond the quarantine's size; `stack` and `tid`: the
/// free's (set in the queued record, not on a copy of it: a byte written
/// just before a 64-byte record is copied stalls the copy).
fn retire(o: &options::Options, m: &Meta, stack: StackId, tid: u32) {
    if !m.guard() {
        fill(m.user, o.free_fill, m.size().min(o.max_fill));
    }
    count(-1, m.size());
    let mut evicted = Evicted::new();
    let shard = tid as usize % QSHARDS;
    let bound = quarantine_bound(o);
    let (start, end) = range(m);
    let cost = footprint(m);
    let mut over = tls::inside(|| {
        let mut q = QUARANTINE[shard].lock();
        let seq = q.head + q.q.len() as u64;
        let tag = (shard as u64) << SEQ_BITS | (seq & ((1 << SEQ_BITS) - 1));
        // SAFETY: the block's header, ours until the core gets it back.
        unsafe { *((start + 8) as *mut u64) |= IN_QUARANTINE | tag };
        if m.big() {
            if let Some(b) = BIG.lock().get_mut(&start) {
                b.qtag = IN_QUARANTINE | tag;
            }
        }
        if m.guard() {
            guard::protect_freed(start, end);
        }
        let r = q.q.push_back(*m);
        r.set_state(State::Quarantined);
        r.free_stack = stack;
        r.set_free_thread(tid);
        q.bytes += cost;
        q.unpublished_bytes += cost as isize;
        q.unpublished_blocks += 1;
        evict(&mut q, bound, &mut evicted)
    });
    loop {
        for m in evicted.take() {
            release(o, m, false);
        }
        if !over {
            break;
        }
        // A large block in, many small ones out: the bound holds after
        // every free, not only on average.
        over = tls::inside(|| evict(&mut QUARANTINE[shard].lock(), bound, &mut evicted));
    }
}

/// Blocks evicted from a shard under its lock, released after it.
const EVICT: usize = 4;

/// Up to [`EVICT`] records taken out of a shard, in place (an array of
/// `Option<Meta>` was built, copied and scanned on every free).
struct Evicted {
    n: usize,
    m: [core::mem::MaybeUninit<Meta>; EVICT],
}

impl Evicted {
    fn new() -> Self {
        Evicted {
            n: 0,
            m: [const { core::mem::MaybeUninit::uninit() }; EVICT],
        }
    }

    #[inline(always)]
    fn is_full(&self) -> bool {
        self.n == EVICT
    }

    #[inline(always)]
    fn push(&mut self, m: Meta) {
        self.m[self.n].write(m);
        self.n += 1;
    }

    /// The records taken, emptying the buffer.
    #[inline(always)]
    fn take(&mut self) -> &[Meta] {
        let n = core::mem::replace(&mut self.n, 0);
        // SAFETY: push wrote the first n; Meta is Copy (nothing to drop).
        unsafe { &*(&self.m[..n] as *const [core::mem::MaybeUninit<Meta>] as *const [Meta]) }
    }
}

/// Takes the shard's oldest records (at most [`EVICT`]) while the
/// quarantine is over `bound`, and publishes the shard's totals when they
/// have moved far enough; whether it is still over the bound.
#[inline(always)]
fn evict(q: &mut Quarantine, bound: usize, out: &mut Evicted) -> bool {
    let mut total = QBYTES
        .load(Relaxed)
        .saturating_add_signed(q.unpublished_bytes);
    while total > bound && !out.is_full() {
        let Some(old) = q.q.front() else {
            break;
        };
        let s = footprint(old);
        total = total.saturating_sub(s);
        out.push(*old);
        q.drop_oldest_of(s);
    }
    if let Some(next) = q.q.front() {
        // The block the next eviction checks: its lines, cold since its
        // free, load while this free goes on.
        if !next.big() {
            prefetch(next.small_range().0);
        }
        prefetch(next.user + next.size().min(RIGHT_CAP));
        prefetch(next.user + next.size());
    }
    if q.unpublished_bytes.unsigned_abs() > PUBLISH_BYTES
        || q.unpublished_blocks.unsigned_abs() > PUBLISH_BLOCKS
    {
        q.publish();
    }
    total > bound && q.q.len() != 0
}

impl Quarantine {
    /// Takes the oldest record out, with its share of the totals.
    #[inline(always)]
    fn pop_oldest(&mut self) -> Option<Meta> {
        let m = *self.q.front()?;
        self.drop_oldest();
        Some(m)
    }

    /// Forgets the oldest record (there is one), with its share of the
    /// totals.
    #[inline(always)]
    fn drop_oldest(&mut self) {
        let s = self.q.front().map_or(0, footprint);
        self.drop_oldest_of(s);
    }

    /// [`Self::drop_oldest`] of a record whose footprint is `s`.
    #[inline(always)]
    fn drop_oldest_of(&mut self, s: usize) {
        self.q.drop_front();
        self.head += 1;
        self.bytes -= s;
        self.unpublished_bytes -= s as isize;
        self.unpublished_blocks -= 1;
    }

    /// Adds the shard's unpublished changes to the shared totals.
    fn publish(&mut self) {
        // Wrapping adds of a signed change: each shard's published part is
        // what it held at its last publication, never negative.
        QBYTES.fetch_add(self.unpublished_bytes as usize, Relaxed);
        QUARANTINED.fetch_add(self.unpublished_blocks as usize, Relaxed);
        self.unpublished_bytes = 0;
        self.unpublished_blocks = 0;
    }
}

/// A block leaves quarantine: its free pattern must be intact (else a
/// write after free), then it goes back to the core. `full`: check every
/// filled byte (at exit); otherwise the first and last `free_check` bytes
/// (the rest was filled too, so a stale read still sees the pattern, but
/// reading a cold block back whole is most of the checker's cost).
fn release(o: &options::Options, m: &Meta, full: bool) {
    let n = if m.guard() {
        0
    } else {
        m.size().min(o.max_fill)
    };
    let bad = if full || n <= 2 * o.free_check {
        first_not(m.user, o.free_fill, n)
    } else {
        let tail = n - o.free_check;
        first_not(m.user, o.free_fill, o.free_check)
            .or_else(|| first_not(m.user + tail, o.free_fill, o.free_check).map(|i| tail + i))
    };
    if let Some(i) = bad {
        written_after_free(m, i, n);
    }
    if !m.guard() {
        if let Some((at, before)) = damaged_zone(m) {
            zone_report(m, at, before, "when it left quarantine", 0);
        }
    }
    if m.big() || m.guard() {
        return release_big(m);
    }
    // SAFETY: the block was ours, recorded, and leaves the table now.
    tls::inside(|| unsafe { memkit_alloc::free(m.small_range().0 as *mut u8) });
}

/// The report of a write into `m` while it was in quarantine (at `i`),
/// restoring its free pattern.
#[cold]
#[inline(never)]
fn written_after_free(m: &Meta, i: usize, n: usize) {
    fill(m.user, options::get().free_fill, n);
    report::emit(block_report(
        "use-after-free",
        "a write to the block after it was freed, found when it left quarantine".into(),
        m,
        m.user + i,
        0,
    ));
}

/// [`release`] of a huge core block or a guarded mapping.
#[cold]
#[inline(never)]
fn release_big(m: &Meta) {
    let (start, end) = range(m);
    let mut big = BIG.lock();
    big.remove(&start);
    if big.is_empty() {
        BIG_LO.store(usize::MAX, Relaxed);
        BIG_HI.store(0, Relaxed);
    }
    BIG_COUNT.store(big.len(), Relaxed);
    drop(big);
    if m.guard() {
        guard::unmap(start, end);
        return;
    }
    // SAFETY: the block was ours, recorded, and leaves the table now.
    tls::inside(|| unsafe { memkit_alloc::free(start as *mut u8) });
}

/// Empties the quarantine (checking every block whole), at exit: a batch
/// of records at a time, so that emptying a large quarantine takes no
/// memory of its own (a copy of every record was the peak RSS of small
/// programs).
pub fn drain_quarantine() {
    const BATCH: usize = 64;
    for shard in QUARANTINE.iter() {
        loop {
            let mut batch: [Option<Meta>; BATCH] = [None; BATCH];
            let n = tls::inside(|| {
                let mut q = shard.lock();
                let mut n = 0;
                while n < BATCH {
                    let Some(m) = q.pop_oldest() else {
                        break;
                    };
                    batch[n] = Some(m);
                    n += 1;
                }
                if n < BATCH {
                    // Empty: its totals leave the published ones.
                    q.publish();
                }
                n
            });
            for m in batch.iter().flatten() {
                release(options::get(), m, true);
            }
            if n < BATCH {
                break;
            }
        }
    }
}

/// Checks every live block's red zones (and quarantined blocks' patterns
/// at exit, through [`drain_quarantine`]).
pub fn walk_all(when: &str) {
    // Checked under each shard's lock: a block cannot be freed (and its
    // memory reused) while its record is being looked at.
    let mut bad: Vec<(Meta, usize, bool)> = Vec::new();
    tls::inside(|| {
        table::for_each(|m| {
            if let Some((at, before)) = damaged_zone(m) {
                bad.push((*m, at, before));
            }
        })
    });
    for (m, at, before) in &bad {
        zone_report(m, *at, *before, when, 0);
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
pub fn usable_size(p: *mut u8, regs: Regs) -> usize {
    if p.is_null() {
        return 0;
    }
    let p = p as usize;
    let size = tls::inside(|| match table::shard(p).get(p) {
        Some(m) if m.state() == State::Live => Some(m.size()),
        _ => None,
    });
    size.unwrap_or_else(|| {
        bad_usable_size(p, regs);
        0
    })
}

/// `malloc_usable_size` of something that is no live block (glibc reads
/// a chunk header before it, and crashes or answers garbage): reported as
/// AddressSanitizer does (`bad-malloc_usable_size`), and 0.
#[cold]
#[inline(never)]
fn bad_usable_size(p: usize, regs: Regs) {
    let stack = stacks::at(regs);
    let what = "attempting to call malloc_usable_size() for a pointer that is not a live block";
    let r = match containing(p) {
        Some(m) => {
            let state = if m.state() == State::Quarantined {
                "a freed block"
            } else {
                "a block, not its start"
            };
            block_report(
                "bad-malloc_usable_size",
                format!("{what} ({state})"),
                &m,
                p,
                stack,
            )
        }
        None => Report {
            kind: "bad-malloc_usable_size",
            message: format!("{what}: {p:#x} is {}", crate::roots::what_is(p)),
            address: p,
            thread: tls::tid(),
            stack,
            ..Report::default()
        },
    };
    report::emit(r);
}

/// A block made by `realloc` and at least this large is resized in place
/// by a later `realloc` when its core block has room (see [`realloc`]).
pub const REALLOC_IN_PLACE: usize = 4 << 10;

/// `realloc` (non-null `p`, non-zero `size`): a new block, so that a stale
/// pointer to the old one finds it in quarantine, except for a large
/// block that `realloc` itself made (at least [`REALLOC_IN_PLACE`] bytes
/// before and after): that one is resized in place when its core block
/// has room, and when it has not and the block grows, moved to a core
/// block a quarter larger than asked for. A program that grows a buffer
/// by a few bytes a call (gawk building a string, `s = realloc(s, i +
/// 1)`) copied the whole buffer on every call: quadratic, 300 s for an
/// 8M-character string. Now the copies are amortised, as under glibc;
/// the first `realloc` of a block, and every one of a small block, still
/// moves it.
///
/// # Safety
/// The C contract of realloc.
pub unsafe fn realloc(p: *mut u8, size: usize, regs: Regs) -> *mut u8 {
    let u = p as usize;
    let old = tls::inside(|| table::shard(u).get(u).copied());
    match old {
        Some(m) if m.state() == State::Live => {
            let growing = m.realloced()
                && m.kind() == Kind::Malloc
                && !m.guard()
                && m.size() >= REALLOC_IN_PLACE
                && size >= REALLOC_IN_PLACE;
            if growing && size >= m.size() / 2 && resize_in_place(&m, size, regs) {
                return p;
            }
            let slack = if growing && size > m.size() {
                size / 4
            } else {
                0
            };
            // SAFETY: forwarded.
            let n = unsafe { alloc_in(size, 16, Kind::Malloc, false, regs, slack, true) };
            if n.is_null() {
                return n;
            }
            // SAFETY: both blocks hold at least min(size, old size) bytes.
            unsafe { core::ptr::copy_nonoverlapping(p, n, size.min(m.size())) };
            // SAFETY: p is live.
            unsafe { free(p, Kind::Malloc, "realloc", regs) };
            n
        }
        _ => {
            // SAFETY: free reports double and invalid frees.
            unsafe { free(p, Kind::Malloc, "realloc", regs) };
            null_mut()
        }
    }
}

/// Gives the live block `m` the new size `size` where it lies, if its
/// core block has room for it and a right zone: its zones are checked
/// first (as a free would), the bytes it gains get the allocation fill,
/// and its allocation stack becomes this call's. `false`: no room, or
/// the block changed meanwhile (another thread freed it): nothing done.
fn resize_in_place(m: &Meta, size: usize, regs: Regs) -> bool {
    let (start, end) = range(m);
    if size > MAX_SIZE || m.user + size + RIGHT_MIN > end {
        return false;
    }
    let o = options::get();
    let stack = stacks::of_alloc(o, regs);
    check_zones(m, &|| "when realloc was called".into(), stack);
    // Under the record's shard lock, so that a walk of the records (which
    // takes it) never sees the new size before the new right zone.
    let done = tls::inside(|| {
        let mut shard = table::shard(m.user);
        match shard.get(m.user) {
            Some(r) if r.state() == State::Live && r.size() == m.size() && r.span() == m.span() => {
                if size > m.size() {
                    let from = m.size().min(o.max_fill);
                    fill(m.user + from, o.alloc_fill, size.min(o.max_fill) - from);
                }
                r.set_size(size);
                r.alloc_stack = stack;
                // SAFETY: the header lies at the start of the core block.
                unsafe { (start as *mut u64).write(size_word(start, size)) };
                let rz = m.user + size;
                fill(rz, RIGHT_CANARY, end.min(rz + RIGHT_CAP) - rz);
                true
            }
            _ => false,
        }
    });
    if done {
        resized(size as i64 - m.size() as i64);
    }
    done
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
    let (lz, ln) = left_zone(m);
    restore(lz, lz + ln, LEFT_CANARY);
    let (rz, rn) = right_zone(m);
    restore(rz, rz + rn, RIGHT_CANARY);
    if m.state() == State::Quarantined {
        let o = options::get();
        restore(m.user, m.user + m.size().min(o.max_fill), o.free_fill);
    }
}

/// Takes the quarantine's locks before `fork` (the first of the order the
/// paths nest them in: a quarantine shard, a side-table shard, BIG).
pub fn lock_for_fork() {
    for q in QUARANTINE.iter() {
        q.raw_lock();
    }
}

/// Before `fork`, after the side table's shards ([`crate::table::lock_all`]):
/// the big blocks' lock is taken under a shard's (a walk of the records
/// finds a big block's range in `BIG`) and under a quarantine shard's,
/// never the reverse.
pub fn lock_big_for_fork() {
    BIG.raw_lock();
}

/// Releases them after `fork`, in parent and child.
pub fn unlock_after_fork() {
    // SAFETY: taken by lock_for_fork in this process (or its parent).
    unsafe {
        BIG.raw_unlock();
        for q in QUARANTINE.iter() {
            q.raw_unlock();
        }
    }
}
