//! Hardening: free-list links that cannot be forged blindly, free blocks that
//! know they are free, and block starts that can be checked in one multiply.
//!
//! Three mechanisms, all on by default (`MEMKIT_HARDEN=off` turns them off,
//! chosen once before the first block exists):
//!
//! * **Encoded links.** Every link stored inside a free block (the page
//!   lists `free` and `thread_free`; the heap's `rcache` and `delayed`
//!   lists) is stored as `(next * m) ^ at`: `m` is an odd process secret
//!   from `getrandom`, `at` the address of the block holding the link (the
//!   issue's "the link's own address", as glibc's safe-linking
//!   `(at >> 12) ^ next`). Decoding multiplies by `m`'s inverse modulo 2^64.
//!   Three properties, each one a primitive it stops:
//!   a pointer written by a use-after-free or an overflow decodes to an
//!   address its writer cannot choose without the secrets; a valid link
//!   *copied* from one free block into another (a dangling struct copy,
//!   no secret needed) decodes at its new address to a different,
//!   scattered one (the address term goes through the multiply, so a
//!   difference of 16 bytes between the two blocks moves the result by a
//!   random multiple of 16 across the whole address space, not by 16);
//!   and a flipped bit or a partial overwrite of a link (`flags ^= 0x10`
//!   through a dangling pointer) does too (the multiply carries any
//!   change upwards through every higher bit). A position-free XOR
//!   (memkit until 2026-12-03) let a copied link hand the same block out
//!   twice and a one-bit flip point 16 bytes into a block. Every decoded
//!   link is checked before it becomes a list head: inside the page's
//!   carved part for page lists (so that reading it cannot fault); in one
//!   of memkit's small segments for the heap's cache of other heaps'
//!   blocks; a block of the heap's own pages for the delayed list. A
//!   secret XORed in too (`(next ^ k) * m`, measured: 7 instructions a
//!   `malloc`/`free` pair more than the plain XOR before, against 2 without
//!   it) would add nothing against a writer who cannot read the heap: a
//!   link overwritten with the block's own address, the one value such a
//!   writer knows, decodes to null and ends the list early (its blocks are
//!   lost, none is handed out twice). A reader of freed memory (one stored
//!   link and the block it leads to give `m`) is outside what this defends,
//!   as for glibc's safe-linking, which one leaked heap address undoes. Off,
//!   `m = 1` and the address term is masked out: encoding is the identity,
//!   so slow paths need no test of the mode.
//! * **Free tags.** A free block's second word holds a process secret
//!   ([`Keys::tag`]); `malloc` checks it on every block it hands out and
//!   clears it. `free` of a block that still carries the tag is a double
//!   free (in a row, with other frees between, or from another thread), found
//!   with one load and no walk; a block handed out without the tag was never
//!   free (a forged or doubly linked block) and stops the process. This is
//!   glibc's tcache key, checked on both sides.
//! * **Block starts.** A pointer given to `free`, `realloc` or
//!   `malloc_usable_size` must lie in its page's carved part at a multiple of
//!   the block size: `off * M <= M - 1` with `M = ceil(2^64 / size)` decides
//!   divisibility exactly for every 32-bit offset (Lemire, Kaser and Kurz,
//!   "Faster remainder by direct computation", 2019), without a division.
//!
//! A failed check writes one line naming the fault, the call and the address
//! to stderr, then aborts (SIGABRT), as glibc does.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::size_class::{bin_size, NBINS};

/// A free block: its first word links to the next free block (encoded),
/// its second holds the free tag while it is free.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
    pub tag: usize,
}

/// The process secrets. Off (`MEMKIT_HARDEN=off`), `k`, `tag` and `at`
/// are zero and `mul` and `inv` one: encoding is then the identity, so
/// slow paths need no test of the mode.
#[repr(C, align(64))]
pub struct Keys {
    /// The secret of [`aligned_mark`].
    pub k: AtomicU64,
    /// The second word of every free block.
    pub tag: AtomicU64,
    /// The odd multiplier of every link, and its inverse modulo 2^64.
    pub mul: AtomicU64,
    pub inv: AtomicU64,
    /// ANDed with the link's address before it is XORed in (all ones when
    /// hardened).
    pub at: AtomicU64,
}

pub static KEYS: Keys = Keys {
    k: AtomicU64::new(0),
    tag: AtomicU64::new(0),
    mul: AtomicU64::new(1),
    inv: AtomicU64::new(1),
    at: AtomicU64::new(0),
};

/// The inverse of the odd `m` modulo 2^64 (Newton's iteration doubles the
/// correct low bits: `m` is its own inverse modulo 8, five steps give 96).
const fn inverse(m: u64) -> u64 {
    let mut x = m;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// Whether the checks run (read by the entry points to pick their variant).
/// Starts `true`, so that calls before [`init`] take the hardened variant,
/// which on the empty heap falls into the slow path that runs [`init`].
static ON: AtomicBool = AtomicBool::new(true);
static STATE: AtomicU32 = AtomicU32::new(0);

/// Whether hardening is on (always true before [`init`] decided).
#[inline(always)]
pub fn on() -> bool {
    ON.load(Relaxed)
}

/// Decides the mode and draws the secrets, once, before any block exists
/// (called at the start of every thread's heap creation; threads that come
/// second wait for the first).
pub fn init() {
    use core::sync::atomic::Ordering::{AcqRel, Acquire, Release};
    if STATE.load(Acquire) == 2 {
        return;
    }
    if STATE.swap(1, AcqRel) != 0 {
        while STATE.load(Acquire) != 2 {
            memkit_sys::yield_now();
        }
        return;
    }
    let off = matches!(
        crate::config::env(b"MEMKIT_HARDEN"),
        Some(b"off" | b"0" | b"no" | b"false")
    );
    if let Some(v) = crate::config::env(b"MEMKIT_HARDEN") {
        if !matches!(
            v,
            b"off" | b"0" | b"no" | b"false" | b"on" | b"1" | b"yes" | b"true"
        ) {
            crate::config::warn(b"MEMKIT_HARDEN", v, "on or off");
        }
    }
    if off {
        ON.store(false, Relaxed);
    } else {
        let mut r = [0u8; 24];
        if memkit_sys::protect::random(&mut r).is_err() {
            // No getrandom (seccomp): the clock and addresses of this run
            // (ASLR) are the best left; still better than no secret.
            let t = memkit_sys::now_ns();
            let a = &r as *const _ as u64;
            let s = &STATE as *const _ as u64;
            let mix = [
                t ^ a.rotate_left(17),
                s ^ t.rotate_left(31),
                a ^ s.rotate_left(43),
            ];
            for (i, m) in mix.iter().enumerate() {
                r[i * 8..i * 8 + 8].copy_from_slice(&splitmix(*m).to_le_bytes());
            }
        }
        let word = |i: usize| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().unwrap_or([7; 8]));
        KEYS.k.store(word(0), Relaxed);
        // Odd, so that it has an inverse modulo 2^64.
        let m = word(2) | 1;
        KEYS.mul.store(m, Relaxed);
        KEYS.inv.store(inverse(m), Relaxed);
        KEYS.at.store(u64::MAX, Relaxed);
        // Never 0: fresh pages are zeroed, so a zero tag would mark every
        // untouched block as free.
        KEYS.tag.store(word(1) | 1 << 63, Relaxed);
        ON.store(true, Relaxed);
    }
    STATE.store(2, Release);
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The word `aligned_alloc` stores 16 bytes before an aligned pointer `q`
/// it hands out from inside a block (in the block's slack, which nobody
/// uses): a pointer into a page of aligned blocks is accepted by `free`,
/// `realloc` and `malloc_usable_size` only at a block start or where this
/// word is found before it. It depends on `q` and on a secret, so that
/// neither a buggy `free(q + 8)` nor a blind write of program data can pass
/// for it. (Off, the keys are zero; nothing checks it then.)
#[inline(always)]
pub fn aligned_mark(q: *const u8) -> usize {
    (q as u64 ^ KEYS.tag.load(Relaxed).rotate_left(29) ^ KEYS.k.load(Relaxed)) as usize
}

/// Stores [`aligned_mark`] for `q`.
///
/// # Safety
/// `q - 16 .. q` lies in the slack before `q` inside its block.
#[inline(always)]
pub unsafe fn set_aligned_mark(q: *mut u8) {
    // SAFETY: per the contract; 16-aligned.
    unsafe { (q.sub(16) as *mut usize).write(aligned_mark(q)) }
}

/// Whether `p`, `into` bytes past the start of a block in a page of aligned
/// blocks, is a pointer `aligned_alloc` handed out: at least 16 bytes in,
/// on a 16-byte boundary, with its [`aligned_mark`] before it.
///
/// # Safety
/// `p - 16 .. p` is readable (it lies in the block when `into >= 16`).
#[inline]
pub unsafe fn is_aligned_start(p: *const u8, into: usize) -> bool {
    // SAFETY: per the contract, only read when `into >= 16`.
    into >= 16
        && into.is_multiple_of(16)
        && unsafe { (p.sub(16) as *const usize).read() } == aligned_mark(p)
}

/// The stored form of a link to `next` kept in the block at `at` (the
/// identity when hardening is off).
#[inline(always)]
pub fn encode(next: *mut Block, at: *mut Block) -> *mut Block {
    let x = (next as u64).wrapping_mul(KEYS.mul.load(Relaxed));
    (x ^ (at as u64 & KEYS.at.load(Relaxed))) as *mut Block
}

/// The link to the next block that `stored`, read from the block at `at`,
/// encodes ([`encode`]'s inverse).
#[inline(always)]
pub fn decode(stored: *mut Block, at: *mut Block) -> *mut Block {
    let x = stored as u64 ^ (at as u64 & KEYS.at.load(Relaxed));
    x.wrapping_mul(KEYS.inv.load(Relaxed)) as *mut Block
}

/// [`decode`] for the hardened fast paths: the address term unmasked (the
/// mask is all ones when hardened), one instruction less.
#[inline(always)]
pub fn decode_hard(stored: *mut Block, at: *mut Block) -> *mut Block {
    let x = stored as u64 ^ at as u64;
    x.wrapping_mul(KEYS.inv.load(Relaxed)) as *mut Block
}

/// [`encode`] for the hardened fast paths.
#[inline(always)]
pub fn encode_hard(next: *mut Block, at: *mut Block) -> *mut Block {
    let x = (next as u64).wrapping_mul(KEYS.mul.load(Relaxed));
    (x ^ at as u64) as *mut Block
}

/// Reads the (encoded) link of free block `b`.
///
/// # Safety
/// `b` points to a readable free block.
#[inline(always)]
pub unsafe fn next_of(b: *mut Block) -> *mut Block {
    // SAFETY: per the contract.
    decode(unsafe { (*b).next }, b)
}

/// [`next_of`] for the hardened fast paths.
///
/// # Safety
/// As [`next_of`].
#[inline(always)]
pub unsafe fn next_of_hard(b: *mut Block) -> *mut Block {
    // SAFETY: per the contract.
    decode_hard(unsafe { (*b).next }, b)
}

/// Links free block `b` to `next` and tags it free (when hardened: off,
/// the tag is zero, which no check reads).
///
/// # Safety
/// `b` points to a writable block of at least 16 bytes that nobody uses.
#[inline(always)]
pub unsafe fn set_free(b: *mut Block, next: *mut Block) {
    // SAFETY: per the contract.
    unsafe {
        (*b).next = encode(next, b);
        (*b).tag = KEYS.tag.load(Relaxed) as usize;
    }
}

/// The free tag (zero when hardening is off).
#[inline(always)]
pub fn tag() -> usize {
    KEYS.tag.load(Relaxed) as usize
}

/// [`set_free`] with the tag already loaded ([`tag`]), for the hardened
/// fast path.
///
/// # Safety
/// As [`set_free`].
#[inline(always)]
pub unsafe fn set_free_with(b: *mut Block, next: *mut Block, tag: usize) {
    // SAFETY: per the contract.
    unsafe {
        (*b).next = encode_hard(next, b);
        (*b).tag = tag;
    }
}

/// Whether block `b`, given to `free`, `realloc` or `malloc_usable_size`,
/// carries the free tag `tag` (it is already free: a double free).
///
/// The low half of the tag word is compared first, with a 4-byte load,
/// and the whole word only when that matches (nearly never, but for a
/// double free): the program has often just written the block, and a load
/// that overlaps a narrower store still in flight waits for it to reach the
/// cache instead of taking its value from the store (a store-forwarding
/// stall: 12.0-14.0 against 9.5-9.9 ns a `malloc(16)`, write both ends,
/// `free` pair here, `MEMKIT_HARDEN=off` 8.2-9.1). A
/// narrow load overlaps fewer such stores: a write of the block's last
/// byte, or of bytes 12..16, leaves it alone.
///
/// # Safety
/// `b` points to a readable block of at least 16 bytes.
#[inline(always)]
pub unsafe fn was_freed_with(b: *const Block, tag: usize) -> bool {
    // SAFETY: per the contract. Volatile: a plain load would be merged
    // into the word's load below, which the test exists to avoid.
    unsafe {
        let low = core::ptr::read_volatile((b as *const u32).add(2));
        low == tag as u32 && (*b).tag == tag
    }
}

/// [`was_freed_with`] with the process's tag.
///
/// # Safety
/// As [`was_freed_with`].
#[inline(always)]
pub unsafe fn was_freed(b: *const Block) -> bool {
    // SAFETY: forwarded.
    unsafe { was_freed_with(b, tag()) }
}

/// Whether block `b` carries the free tag (a block `malloc` is about to
/// hand out must; for pointers given to `free`, see [`was_freed`]).
///
/// # Safety
/// `b` points to a readable block of at least 16 bytes.
#[inline(always)]
pub unsafe fn is_tagged(b: *const Block) -> bool {
    // SAFETY: per the contract.
    unsafe { (*b).tag as u64 == KEYS.tag.load(Relaxed) }
}

/// `ceil(2^64 / size)` of every bin: `off * M <= M - 1` iff `size` divides
/// `off`, for every `off < 2^32`.
pub static BIN_MAGIC: [u64; NBINS] = {
    let mut t = [0u64; NBINS];
    let mut b = 1;
    while b < NBINS {
        t[b] = u64::MAX / bin_size(b) as u64 + 1;
        b += 1;
    }
    t
};

/// Per bin, for a block size `d * 2^k` with `d` odd: the inverse of `d`
/// modulo 2^64 and `k`. For any 64-bit offset `off`,
/// [`block_index`]`(off, ..)` is `off / size` when `size` divides `off`,
/// and above `u64::MAX / size` otherwise (exact division by an odd number
/// is a multiplication by its inverse; a rotation moves the low bits of a
/// non-multiple of `2^k` to the top). So `block_index(off) < capacity`
/// tests "in the carved part, on a block boundary" in one comparison, for
/// offsets below the page start too (they wrap to huge values).
pub static BIN_DIV: [(u64, u32); NBINS] = {
    let mut t = [(0u64, 0u32); NBINS];
    let mut b = 1;
    while b < NBINS {
        let size = bin_size(b) as u64;
        let k = size.trailing_zeros();
        t[b] = (inverse(size >> k), k);
        b += 1;
    }
    t
};

/// The block index of offset `off` in a page of the bin whose
/// [`BIN_DIV`] is `(inv, shift)`, or a value above any page's capacity if
/// `off` is no block boundary.
#[inline(always)]
pub fn block_index(off: usize, inv: u64, shift: u32) -> usize {
    (off as u64).wrapping_mul(inv).rotate_right(shift) as usize
}

/// Whether `off` (less than 2^32) is a multiple of bin `bin`'s block size.
#[inline(always)]
pub fn on_boundary(off: usize, bin: usize) -> bool {
    debug_assert!(bin < NBINS);
    // SAFETY: bins of pages are below NBINS (a page that is none has bin 0).
    divides(off, unsafe { *BIN_MAGIC.get_unchecked(bin) })
}

/// Whether the size whose [`BIN_MAGIC`] is `m` divides `off` (< 2^32).
#[inline(always)]
pub fn divides(off: usize, m: u64) -> bool {
    (off as u32 as u64).wrapping_mul(m) < m
}

/// What went wrong, for the one line printed before aborting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `free`/`realloc` of a block that is already free.
    DoubleFree,
    /// A pointer inside memkit's memory that is not the start of a block.
    NotBlockStart,
    /// A pointer into memkit's segment header or an unused part of it.
    NotInBlock,
    /// A decoded free-list link outside its page or off a block boundary.
    BadLink,
    /// A block about to be handed out that does not carry the free tag.
    NotFree,
    /// A list head (a decoded link) outside its page or segment.
    BadHead,
}

unsafe extern "C" {
    fn abort() -> !;
}

/// `malloc` found the list head `b` corrupted: outside where its list can
/// lead ([`Fault::BadHead`]: the link that led to it was overwritten) or
/// not tagged free ([`Fault::NotFree`]). Never returns; typed like `malloc`
/// so that the fast path ends in a jump to it.
#[cold]
#[inline(never)]
pub fn corrupt(b: *mut Block, what: Fault) -> *mut u8 {
    // `black_box` hides that this never returns: a call the optimiser
    // knows to be `noreturn` cannot be a jump, and the fast path would need
    // a stack frame for it.
    if core::hint::black_box(true) {
        fault(what, "malloc", b as *const u8, 0)
    }
    core::hint::black_box(core::ptr::null_mut())
}

/// A front-end's function run when the core finds a fault, before its own
/// message and the abort: the checker turns a corrupted free list into a
/// report that names the block the write came from. Arguments as
/// [`fault`]'s.
pub type FaultHook = fn(Fault, &str, *const u8, usize);

static FAULT_HOOK: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
/// Set by the first fault that ran the hook: a fault inside the hook (or
/// in another thread meanwhile) goes straight to the message and abort.
static IN_FAULT_HOOK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Installs the [`FaultHook`] (once, at start-up).
pub fn set_fault_hook(f: FaultHook) {
    FAULT_HOOK.store(f as usize, core::sync::atomic::Ordering::Release);
}

/// Reports `fault` of `call` at address `p` on stderr and aborts (after
/// the front-end's [`FaultHook`], if one is set).
#[cold]
#[inline(never)]
pub fn fault(fault: Fault, call: &str, p: *const u8, detail: usize) -> ! {
    use core::fmt::Write;
    use core::sync::atomic::Ordering::{AcqRel, Acquire};
    let hook = FAULT_HOOK.load(Acquire);
    if hook != 0 && !IN_FAULT_HOOK.swap(true, AcqRel) {
        // SAFETY: only `set_fault_hook` stores it, from a `FaultHook`.
        let f: FaultHook = unsafe { core::mem::transmute::<usize, FaultHook>(hook) };
        f(fault, call, p, detail);
    }
    let mut w = crate::util::BufWriter::<256>::new();
    let _ = match fault {
        Fault::DoubleFree => write!(w, "memkit: {call}(): double free of {p:p}"),
        Fault::NotBlockStart => write!(
            w,
            "memkit: {call}(): invalid pointer {p:p}: {detail} bytes into a block, not its start"
        ),
        Fault::NotInBlock => write!(
            w,
            "memkit: {call}(): invalid pointer {p:p}: inside memkit's memory but in no block"
        ),
        Fault::BadLink => write!(
            w,
            "memkit: {call}(): corrupted free list: block {p:p} links to {detail:#x} \
             (a write after free or an overflow)"
        ),
        Fault::BadHead => write!(
            w,
            "memkit: {call}(): corrupted free list: a link leads to {p:p}, outside its page \
             (a write after free or an overflow)"
        ),
        Fault::NotFree => write!(
            w,
            "memkit: {call}(): corrupted free list: block {p:p} is listed free but was not freed \
             (a double free or a forged link)"
        ),
    };
    w.put(b"; aborting\n");
    w.flush_to(2);
    fault_abort()
}

/// `abort()`: SIGABRT, as glibc's checks end.
pub fn fault_abort() -> ! {
    // SAFETY: abort has no precondition and does not return.
    unsafe { abort() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SLICE_SIZE;

    /// A link decodes back to itself in its own block; copied into another
    /// block, or with one bit flipped, it decodes far outside any page.
    #[test]
    fn links_depend_on_their_block_and_every_bit() {
        init();
        assert!(on());
        let base = 0x7f12_3450_0000usize;
        let at = |i: usize| (base + i * 16) as *mut Block;
        let far = |x: *mut Block| (x as usize).abs_diff(base) > 1 << 32;
        for i in 0..64 {
            let next = at(i + 1);
            let stored = encode(next, at(i));
            assert_eq!(decode(stored, at(i)), next);
            assert_eq!(decode_hard(stored, at(i)), next);
            assert_eq!(encode_hard(next, at(i)), stored);
            for j in (0..64).filter(|&j| j != i) {
                assert!(far(decode(stored, at(j))), "copied from {i} to {j}");
            }
            for bit in 0..64 {
                let flipped = (stored as usize ^ 1 << bit) as *mut Block;
                assert!(far(decode(flipped, at(i))), "bit {bit} of link {i}");
            }
        }
        assert_eq!(
            decode(encode(core::ptr::null_mut(), at(3)), at(3)),
            core::ptr::null_mut()
        );
    }

    #[test]
    fn was_freed_needs_the_whole_tag() {
        let tag = 0x8123_4567_89ab_cdefusize;
        let mut b = Block {
            next: core::ptr::null_mut(),
            tag,
        };
        // SAFETY: b is a live, readable block.
        unsafe {
            assert!(was_freed_with(&b, tag));
            // The low half alone (the first, narrow test) is no tag.
            b.tag = tag & 0xffff_ffff;
            assert!(!was_freed_with(&b, tag));
            b.tag = tag ^ 1 << 40;
            assert!(!was_freed_with(&b, tag));
            b.tag = tag ^ 1;
            assert!(!was_freed_with(&b, tag));
            b.tag = 0;
            assert!(!was_freed_with(&b, tag));
        }
    }

    #[test]
    fn boundary_test_is_exact_for_every_bin() {
        for bin in 1..NBINS {
            let bs = bin_size(bin);
            let span = (bs * 4).div_ceil(SLICE_SIZE).clamp(1, 63) * SLICE_SIZE;
            for k in 0..=span / bs {
                let o = k * bs;
                assert!(on_boundary(o, bin), "bin {bin} size {bs} off {o}");
                for d in [1usize, 8, 15, 16, bs / 2] {
                    if d > 0 && d < bs {
                        assert!(!on_boundary(o + d, bin), "bin {bin} off {}", o + d);
                    }
                }
            }
            // Every offset, for the small bins.
            if bs <= 1024 {
                for o in 0..SLICE_SIZE {
                    assert_eq!(on_boundary(o, bin), o % bs == 0, "bin {bin} off {o}");
                }
            }
        }
    }

    #[test]
    fn block_index_is_exact_for_every_bin() {
        for bin in 1..NBINS {
            let bs = bin_size(bin);
            let (inv, k) = BIN_DIV[bin];
            assert_eq!(((bs >> k) as u64).wrapping_mul(inv), 1, "bin {bin}");
            let cap = (SLICE_SIZE * 63 / bs).max(1);
            let step = if bs <= 1024 { 1 } else { 7 };
            for off in (0..SLICE_SIZE * 63).step_by(step) {
                let i = block_index(off, inv, k);
                let want = off % bs == 0 && off / bs < cap;
                assert_eq!(i < cap, want, "bin {bin} size {bs} off {off}");
                if off % bs == 0 {
                    assert_eq!(i, off / bs, "bin {bin} off {off}");
                }
            }
            // Below the page start and far above it.
            for off in [1usize, 16, bs, bs * 3, 4096, 1 << 22, 1 << 33] {
                assert!(
                    block_index(off.wrapping_neg(), inv, k) >= cap,
                    "bin {bin} -{off}"
                );
                let far = cap * bs + off;
                assert!(block_index(far, inv, k) >= cap, "bin {bin} +{far}");
            }
        }
    }

    #[test]
    fn magic_numbers_divide_exactly() {
        // The Lemire test against the remainder, for sizes that are no bin too.
        for d in [16u64, 48, 80, 112, 1280, 20480, 229376] {
            let m = u64::MAX / d + 1;
            for off in (0..(1u64 << 22)).step_by(7) {
                assert_eq!(divides(off as usize, m), off % d == 0, "{off} / {d}");
            }
        }
    }
}
