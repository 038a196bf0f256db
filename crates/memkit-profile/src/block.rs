//! Blocks as the profiler hands them out: the core's block with a 16-byte
//! header in front of the user's bytes, telling `free` the block's size,
//! its site and whether it was recorded, without a side table.
//!
//! ```text
//! core block start            user pointer (16-aligned, or `align`-aligned)
//! |<------- pad ------->|
//! [ ...padding... | header ][ user bytes ... ]
//!                 word: size (48 bits) | log2(pad) - 4 (6 bits) << 48
//!                       | RECORDED << 56 | COUNTED << 57
//!                 check: site serial << 32 | cookie
//! ```
//! `pad` is 16, or the alignment asked for when it is larger (the header
//! then sits in the alignment's slack). The cookie mixes the user address
//! with a per-process secret; `free` clears it, so a second free of the same
//! pointer, an interior pointer or a pointer memkit never handed out finds
//! no valid cookie and goes to the core unchanged (which ignores pointers it
//! does not own and, hardened, stops on the rest, as libmemkit.so does). A
//! fork child draws a new secret and keeps its ancestors': blocks allocated
//! before the fork are recognised (by the old secret), freed, and not
//! counted against the child's own sites.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

use memkit_trace::unwind::Regs;

use crate::record;

pub const HDR: usize = 16;
const SIZE_MASK: u64 = (1 << 48) - 1;
const PAD_SHIFT: u32 = 48;
/// Recorded at the site in `check` (see `record::Mark`).
const RECORDED: u64 = 1 << 56;
/// Counted in the exact totals, not recorded (sampled mode).
const COUNTED: u64 = 1 << 57;

/// The header's flag bits and site serial for a mark.
fn mark_bits(m: record::Mark) -> (u64, u32) {
    match m {
        record::Mark::Internal => (0, 0),
        record::Mark::Counted => (COUNTED, 0),
        record::Mark::Site(s) => (RECORDED, s),
    }
}

#[repr(C)]
struct Header {
    word: u64,
    check: u64,
}

/// Secrets of this process (index 0) and of its fork ancestors.
const GENERATIONS: usize = 8;
static SECRETS: [AtomicU64; GENERATIONS] = [const { AtomicU64::new(0) }; GENERATIONS];
static GENERATIONS_KNOWN: AtomicUsize = AtomicUsize::new(0);

fn fresh_secret() -> u64 {
    let mut b = [0u8; 8];
    if memkit_sys::protect::random(&mut b).is_err() {
        b = (memkit_sys::now_ns() ^ (memkit_sys::pid() as u64) << 32).to_le_bytes();
    }
    u64::from_le_bytes(b) | 1
}

#[inline(always)]
fn secret() -> u64 {
    let s = SECRETS[0].load(Relaxed);
    if s != 0 {
        return s;
    }
    init_secret()
}

#[cold]
fn init_secret() -> u64 {
    let s = fresh_secret();
    match SECRETS[0].compare_exchange(0, s, Relaxed, Relaxed) {
        Ok(_) => {
            GENERATIONS_KNOWN.store(1, Relaxed);
            s
        }
        Err(won) => won,
    }
}

/// In a fork child: a new secret; the parent's (and its ancestors') kept.
pub fn new_generation() {
    for i in (1..GENERATIONS).rev() {
        SECRETS[i].store(SECRETS[i - 1].load(Relaxed), Relaxed);
    }
    SECRETS[0].store(fresh_secret(), Relaxed);
    let n = GENERATIONS_KNOWN.load(Relaxed);
    GENERATIONS_KNOWN.store((n + 1).min(GENERATIONS), Relaxed);
}

#[inline(always)]
fn cookie(user: usize, secret: u64) -> u32 {
    (((user as u64) ^ secret).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32 | 1
}

/// Which process a block comes from, by its header.
enum Owner {
    /// This process's: (size, pad, flag bits, site).
    Ours(usize, usize, u64, u32),
    /// Allocated before a fork by an ancestor: (size, pad).
    Inherited(usize, usize),
    /// Not a live block start of the profiler.
    Unknown,
}

/// # Safety
/// None: `user` is only read after the core says the header's memory is
/// its own.
#[inline(always)]
unsafe fn owner(user: usize) -> Owner {
    if !user.is_multiple_of(16)
        || user < HDR
        || !(memkit_alloc::in_block_memory(user - HDR) || in_wide_pad(user))
    {
        return Owner::Unknown;
    }
    // SAFETY: the header lies in the core's block memory (readable).
    let (word, check) = unsafe {
        let h = (user - HDR) as *const Header;
        (
            core::ptr::read_volatile(&(*h).word),
            core::ptr::read_volatile(&(*h).check),
        )
    };
    let c = check as u32;
    let size = (word & SIZE_MASK) as usize;
    let pad = HDR << ((word >> PAD_SHIFT) & 63);
    if c == cookie(user, secret()) {
        return Owner::Ours(size, pad, word & (RECORDED | COUNTED), (check >> 32) as u32);
    }
    let known = GENERATIONS_KNOWN.load(Relaxed);
    for s in SECRETS.iter().take(known).skip(1) {
        if c == cookie(user, s.load(Relaxed)) {
            return Owner::Inherited(size, pad);
        }
    }
    Owner::Unknown
}

/// Whether `user` may be the user pointer of a block aligned to 8 MiB or
/// more whose header the core's chunk maps do not cover. Such a block's
/// core block starts `pad` (its alignment) before `user`, one chunk after
/// its huge header, and the header lies `pad` bytes into it, past the one
/// chunk [`memkit_alloc::in_block_memory`] knows. Every power of two from
/// 8 MiB up to `user`'s own alignment is tried as `pad`, smallest first:
/// a smaller one lands in the block's own padding (no header mark there),
/// so the first hit is the block itself. Only pointers aligned to 8 MiB
/// come here.
#[cold]
#[inline(never)]
fn in_wide_pad(user: usize) -> bool {
    const FIRST: u32 = (2 * memkit_alloc::segment::SEGMENT_SIZE).trailing_zeros();
    let last = user.trailing_zeros().min(usize::BITS - 2);
    (FIRST..=last).any(|j| {
        let pad = 1usize << j;
        user > pad && memkit_alloc::huge_block_covers(user - pad, user - HDR)
    })
}

/// Allocates `size` bytes aligned to `align` (a power of two), zeroed when
/// `zero`; recorded with the stack from `regs` unless the thread is busy.
///
/// # Safety
/// `align` is a power of two.
#[inline(always)]
pub unsafe fn alloc(size: usize, align: usize, zero: bool, regs: Regs) -> *mut u8 {
    let pad = align.max(HDR);
    if size > SIZE_MASK as usize {
        return core::ptr::null_mut();
    }
    let Some(total) = size.checked_add(pad) else {
        return core::ptr::null_mut();
    };
    // SAFETY: any size; a power-of-two alignment.
    let base = unsafe {
        if pad == HDR {
            if zero {
                memkit_alloc::calloc(1, total)
            } else {
                memkit_alloc::malloc(total)
            }
        } else {
            let p = memkit_alloc::aligned_alloc(pad, total);
            if zero && !p.is_null() {
                core::ptr::write_bytes(p.add(pad), 0, size);
            }
            p
        }
    };
    if base.is_null() {
        return base;
    }
    let user = base as usize + pad;
    let (flags, site) = mark_bits(record::alloc(size, user, regs));
    let word =
        size as u64 | ((pad.trailing_zeros() - HDR.trailing_zeros()) as u64) << PAD_SHIFT | flags;
    // SAFETY: the header lies inside the block, before the user's bytes.
    unsafe {
        let h = (user - HDR) as *mut Header;
        (*h).word = word;
        (*h).check = (site as u64) << 32 | cookie(user, secret()) as u64;
    }
    user as *mut u8
}

/// Frees a block (any pointer is accepted, see the module doc).
///
/// # Safety
/// The C contract of `free`.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    if p.is_null() {
        return;
    }
    let user = p as usize;
    // SAFETY: owner reads only the core's memory.
    match unsafe { owner(user) } {
        Owner::Ours(size, pad, flags, site) => {
            // SAFETY: a live block of ours: clear its cookie, then free the
            // core block it is carved from.
            unsafe {
                core::ptr::write_volatile(&mut (*((user - HDR) as *mut Header)).check, 0);
                if flags & RECORDED != 0 {
                    record::free(size, user, site);
                } else if flags & COUNTED != 0 {
                    record::counted_free();
                }
                memkit_alloc::free((user - pad) as *mut u8);
            }
        }
        Owner::Inherited(_, pad) => {
            record::inherited_free();
            // SAFETY: a live block of an ancestor (same core, copied by fork).
            unsafe {
                core::ptr::write_volatile(&mut (*((user - HDR) as *mut Header)).check, 0);
                memkit_alloc::free((user - pad) as *mut u8);
            }
        }
        // SAFETY: the core judges pointers that are not ours.
        Owner::Unknown => unsafe { memkit_alloc::free(p) },
    }
}

/// Usable bytes of a block (0 for pointers that are not a live block's).
///
/// # Safety
/// Any pointer.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    let user = p as usize;
    // SAFETY: owner reads only the core's memory; the core block of a live
    // block of ours is live.
    unsafe {
        match owner(user) {
            Owner::Ours(_, pad, ..) | Owner::Inherited(_, pad) => {
                memkit_alloc::usable_size((user - pad) as *mut u8).saturating_sub(pad)
            }
            Owner::Unknown => 0,
        }
    }
}

/// `realloc` for a non-null `p` and a non-zero `size`, recorded as a free
/// of the old block and an allocation from `regs`. In place or moved by
/// the core for 16-aligned blocks of this process; others get a new block,
/// the bytes copied. Null when memory is short (`p` untouched) or when `p`
/// is not a block of ours (as the core answers for pointers it never handed
/// out).
///
/// # Safety
/// The C contract of `realloc`.
pub unsafe fn realloc(p: *mut u8, size: usize, regs: Regs) -> *mut u8 {
    let user = p as usize;
    // SAFETY: owner reads only the core's memory; blocks found are live.
    unsafe {
        match owner(user) {
            Owner::Ours(old, HDR, flags, site) if size <= SIZE_MASK as usize => {
                let Some(total) = size.checked_add(HDR) else {
                    return core::ptr::null_mut();
                };
                // A stale copy of the old pointer must not pass for a block
                // once the core has moved it: its cookie goes first.
                let h = (user - HDR) as *mut Header;
                let check = (*h).check;
                core::ptr::write_volatile(&mut (*h).check, 0);
                let base = memkit_alloc::realloc(h as *mut u8, total);
                if base.is_null() {
                    (*h).check = check;
                    return base;
                }
                if flags & RECORDED != 0 {
                    record::free_moved(old, site);
                } else if flags & COUNTED != 0 {
                    record::counted_free();
                }
                let new = base as usize + HDR;
                let (flags, site) = mark_bits(record::alloc(size, new, regs));
                let h = base as *mut Header;
                (*h).word = size as u64 | flags;
                (*h).check = (site as u64) << 32 | cookie(new, secret()) as u64;
                new as *mut u8
            }
            Owner::Ours(old, ..) | Owner::Inherited(old, _) => {
                let q = alloc(size, HDR, false, regs);
                if q.is_null() {
                    return q;
                }
                core::ptr::copy_nonoverlapping(p, q, old.min(size));
                free(p);
                q
            }
            // The core refuses (or, hardened, stops on) what is not its.
            Owner::Unknown => memkit_alloc::realloc(p, size),
        }
    }
}
