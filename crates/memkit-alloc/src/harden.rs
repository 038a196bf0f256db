//! Hardening: free-list links that cannot be forged blindly, free blocks that
//! know they are free, and block starts that can be checked in one multiply.
//!
//! Three mechanisms, all on by default (`MEMKIT_HARDEN=off` turns them off,
//! chosen once before the first block exists):
//!
//! * **Encoded links.** Every link stored inside a free block (the page
//!   lists `free`, `local_free`, `thread_free`; the heap's `rcache` and
//!   `delayed` lists) is `rotl(next ^ at ^ k1, r) + k0`, where `at` is the
//!   address of the link itself and `k0`, `k1`, `r` are process secrets from
//!   `getrandom`. A value written by a use-after-free or an overflow decodes
//!   to a pointer the attacker cannot choose (the rotation and the carry of
//!   the addition spread every changed bit), and a link copied from another
//!   block decodes differently because its address differs. glibc's
//!   safe-linking (`(pos >> 12) ^ ptr`) has no secret and leaves the low
//!   bits of a partial overwrite predictable; mimalloc's encoding
//!   (`rotl(p ^ k1, k0) + k0`) has no address term. Every decoded link is
//!   checked before it becomes a list head: inside the page and on a block
//!   boundary for page lists; an owned, live page of the same size class for
//!   the heap's cache of other heaps' blocks.
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

use crate::page::Block;
use crate::size_class::{bin_size, NBINS};

/// The process secrets. All zero (and `mask` zero) when hardening is off:
/// encoding is then the identity, so slow paths need no test of the mode.
#[repr(C, align(64))]
pub struct Keys {
    pub k0: AtomicU64,
    pub k1: AtomicU64,
    pub rot: AtomicU32,
    /// `!0` when hardened: how much of the link's address enters the code.
    pub mask: AtomicU64,
    /// The second word of every free block.
    pub tag: AtomicU64,
}

pub static KEYS: Keys = Keys {
    k0: AtomicU64::new(0),
    k1: AtomicU64::new(0),
    rot: AtomicU32::new(0),
    mask: AtomicU64::new(0),
    tag: AtomicU64::new(0),
};

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
        let mut r = [0u8; 32];
        if memkit_sys::protect::random(&mut r).is_err() {
            // No getrandom (seccomp): the clock and addresses of this run
            // (ASLR) are the best left; still better than no secret.
            let t = memkit_sys::now_ns();
            let a = &r as *const _ as u64;
            let s = &STATE as *const _ as u64;
            let mix = [t, a.rotate_left(17) ^ t, s ^ t.rotate_left(31), t ^ a ^ s];
            for (i, m) in mix.iter().enumerate() {
                r[i * 8..i * 8 + 8].copy_from_slice(&splitmix(*m).to_le_bytes());
            }
        }
        let word = |i: usize| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().unwrap_or([7; 8]));
        // k0 odd, so the addition always moves bits.
        KEYS.k0.store(word(0) | 1, Relaxed);
        KEYS.k1.store(word(1), Relaxed);
        // A rotation of 0 would leave partial overwrites in place.
        KEYS.rot.store(((word(2) % 63) + 1) as u32, Relaxed);
        // Never 0: fresh pages are zeroed, so a zero tag would mark every
        // untouched block as free.
        KEYS.tag.store(word(3) | 1 << 63, Relaxed);
        KEYS.mask.store(!0, Relaxed);
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

/// The stored form of a link to `next` kept at address `at`.
#[inline(always)]
pub fn encode(next: *mut Block, at: *const Block) -> usize {
    let k = &KEYS;
    encode_with(
        next as u64,
        at as u64 & k.mask.load(Relaxed),
        k.k0.load(Relaxed),
        k.k1.load(Relaxed),
        k.rot.load(Relaxed),
    ) as usize
}

/// The link stored at `at` in the form [`encode`] made.
#[inline(always)]
pub fn decode(stored: usize, at: *const Block) -> *mut Block {
    let k = &KEYS;
    decode_with(
        stored as u64,
        at as u64 & k.mask.load(Relaxed),
        k.k0.load(Relaxed),
        k.k1.load(Relaxed),
        k.rot.load(Relaxed),
    ) as *mut Block
}

#[inline(always)]
fn encode_with(next: u64, at: u64, k0: u64, k1: u64, rot: u32) -> u64 {
    (next ^ at ^ k1).rotate_left(rot).wrapping_add(k0)
}

#[inline(always)]
fn decode_with(stored: u64, at: u64, k0: u64, k1: u64, rot: u32) -> u64 {
    stored.wrapping_sub(k0).rotate_right(rot) ^ k1 ^ at
}

/// Reads the (encoded) link of free block `b`.
///
/// # Safety
/// `b` points to a readable free block.
#[inline(always)]
pub unsafe fn next_of(b: *mut Block) -> *mut Block {
    // SAFETY: per the contract.
    decode(unsafe { (*b).next } as usize, b)
}

/// Links free block `b` to `next` and tags it free.
///
/// # Safety
/// `b` points to a writable block of at least 16 bytes that nobody uses.
#[inline(always)]
pub unsafe fn set_free(b: *mut Block, next: *mut Block) {
    // SAFETY: per the contract.
    unsafe {
        (*b).next = encode(next, b) as *mut Block;
        (*b).tag = KEYS.tag.load(Relaxed) as usize;
    }
}

/// Whether block `b` carries the free tag (a `free` of it is a double free).
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

/// Whether `off` (less than 2^32) is a multiple of bin `bin`'s block size.
#[inline(always)]
pub fn on_boundary(off: usize, bin: usize) -> bool {
    // SAFETY of the index: bins of live pages are below NBINS.
    let m = BIN_MAGIC[bin];
    (off as u32 as u64).wrapping_mul(m) < m
}

/// What went wrong, for the one line printed before aborting.
#[derive(Clone, Copy)]
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
}

unsafe extern "C" {
    fn abort() -> !;
}

/// Reports `fault` of `call` at address `p` on stderr and aborts.
#[cold]
#[inline(never)]
pub fn fault(fault: Fault, call: &str, p: *const u8, detail: usize) -> ! {
    use core::fmt::Write;
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
        Fault::NotFree => write!(
            w,
            "memkit: {call}(): corrupted free list: block {p:p} is listed free but was not freed \
             (a double free or a forged link)"
        ),
    };
    w.put(b"; aborting\n");
    w.flush_to(2);
    // SAFETY: abort has no precondition and does not return.
    unsafe { abort() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SLICE_SIZE;

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
    fn encoding_round_trips_and_depends_on_the_address() {
        let (k0, k1, rot) = (0x1234_5678_9abc_def1, 0x0fed_cba9_8765_4321, 23);
        let (at, other) = (0x7f00_0000_1000u64, 0x7f00_0000_1010u64);
        for next in [0u64, 0x7f00_0000_2000, 0x5555_0000_0010] {
            let e = encode_with(next, at, k0, k1, rot);
            assert_eq!(decode_with(e, at, k0, k1, rot), next);
            assert_ne!(decode_with(e, other, k0, k1, rot), next);
            // A one-byte overwrite moves the decoded pointer far, not by a byte.
            let d = decode_with(e ^ 0x40, at, k0, k1, rot);
            assert!(d.abs_diff(next) > 1 << 20, "{d:#x} vs {next:#x}");
        }
        // Off: all keys and the address mask zero, the identity.
        assert_eq!(encode_with(0x1230, 0, 0, 0, 0), 0x1230);
        assert_eq!(decode_with(0x1230, 0, 0, 0, 0), 0x1230);
    }
}
