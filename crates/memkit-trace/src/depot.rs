//! The stack depot: every distinct stack stored once, named by a 32-bit id.
//!
//! Blocks keep only ids (a million live blocks with the same allocation
//! site share one stack). Records are appended to one reserved mapping and
//! never change once published; the hash table is a lock-free array of chain
//! heads. Two threads inserting the same new stack at once may both store
//! it: harmless (two ids for one stack, merged again by the reports, which
//! compare frames).

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering::*};

use crate::unwind::Frame;

const HEAD_BITS: u32 = 18;
/// Reserved for records: 2^27 words (1 GiB of address space, touched as used).
const ARENA_WORDS: usize = 1 << 27;

static HEADS: [AtomicU32; 1 << HEAD_BITS] = [const { AtomicU32::new(0) }; 1 << HEAD_BITS];
static ARENA: AtomicPtr<u64> = AtomicPtr::new(core::ptr::null_mut());
/// Next free word; word 0 is never a record (id 0 means "no stack").
static USED: AtomicUsize = AtomicUsize::new(1);
/// The next record's serial number.
static SERIALS: AtomicU32 = AtomicU32::new(1);

/// Serials the reverse table maps back to ids (2^24 stacks; 64 MiB of
/// address space, touched as used).
const MAX_SERIALS: usize = 1 << 24;
static BY_SERIAL: AtomicPtr<u32> = AtomicPtr::new(core::ptr::null_mut());

// A record: [hash, len << 32 | next id in the chain, serial, frames…].
const FRAMES_AT: usize = 3;

/// A stored stack (0: none).
pub type StackId = u32;

fn arena() -> *mut u64 {
    let a = ARENA.load(Acquire);
    if !a.is_null() {
        return a;
    }
    let Ok(p) = memkit_sys::map_meta(ARENA_WORDS * 8) else {
        return core::ptr::null_mut();
    };
    let p = p as *mut u64;
    match ARENA.compare_exchange(core::ptr::null_mut(), p, AcqRel, Acquire) {
        Ok(_) => p,
        Err(won) => {
            // SAFETY: our own mapping, never published.
            unsafe { memkit_sys::unmap_meta(p as *mut u8, ARENA_WORDS * 8) };
            won
        }
    }
}

fn by_serial() -> *mut u32 {
    let a = BY_SERIAL.load(Acquire);
    if !a.is_null() {
        return a;
    }
    let Ok(p) = memkit_sys::map_meta(MAX_SERIALS * 4) else {
        return core::ptr::null_mut();
    };
    let p = p as *mut u32;
    match BY_SERIAL.compare_exchange(core::ptr::null_mut(), p, AcqRel, Acquire) {
        Ok(_) => p,
        Err(won) => {
            // SAFETY: our own mapping, never published.
            unsafe { memkit_sys::unmap_meta(p as *mut u8, MAX_SERIALS * 4) };
            won
        }
    }
}

/// The multiplier of the stack hash (odd, so every power is invertible:
/// two stacks that differ in one frame differ in their hash).
pub const HASH_BASE: u64 = 0x9e37_79b9_7f4a_7c15;

/// `HASH_BASE` to the powers 0..=64.
pub const HASH_POWERS: [u64; 65] = {
    let mut p = [1u64; 65];
    let mut i = 1;
    while i < 65 {
        p[i] = p[i - 1].wrapping_mul(HASH_BASE);
        i += 1;
    }
    p
};

/// The hash of a stack before it is mixed: the sum of `frames[i] *
/// HASH_BASE^i` (mod 2^64). A polynomial, so that a front-end keeping the
/// suffix sums of a walk's frames (`q[p] = frames[p] + HASH_BASE * q[p +
/// 1]`) gets the hash of any run of them as `q[a] - HASH_BASE^n * q[a +
/// n]` without reading the frames again ([`crate::recent`]).
pub fn hash(frames: &[Frame]) -> u64 {
    let mut h = 0u64;
    for &f in frames.iter().rev() {
        h = h.wrapping_mul(HASH_BASE).wrapping_add(f);
    }
    h
}

/// The depot's key of a stack of `len` frames with [`hash`] `h`: mixed
/// (the polynomial's low bits depend on few frames' low bits; the table
/// is indexed by the top bits), never 0.
fn mix(h: u64, len: usize) -> u64 {
    let mut x = h ^ (len as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x | 1
}

/// The id of `frames`, storing them on first sight (0 for an empty stack
/// or when the depot is full).
pub fn intern(frames: &[Frame]) -> StackId {
    intern_hashed(frames, hash(frames))
}

/// [`intern`] for a caller that has the stack's [`hash`] `h` already.
pub fn intern_hashed(frames: &[Frame], h: u64) -> StackId {
    debug_assert_eq!(h, hash(frames));
    if frames.is_empty() {
        return 0;
    }
    let a = arena();
    if a.is_null() {
        return 0;
    }
    let h = mix(h, frames.len());
    let head = &HEADS[(h >> (64 - HEAD_BITS)) as usize];
    let mut id = head.load(Acquire);
    while id != 0 {
        // SAFETY: published records are immutable and inside the arena.
        unsafe {
            let r = a.add(id as usize);
            let meta = *r.add(1);
            if *r == h && (meta >> 32) as usize == frames.len() {
                let stored = core::slice::from_raw_parts(r.add(FRAMES_AT), frames.len());
                if stored == frames {
                    return id;
                }
            }
            id = meta as u32;
        }
    }
    let words = FRAMES_AT + frames.len();
    let at = USED.fetch_add(words, Relaxed);
    if at + words > ARENA_WORDS || at > u32::MAX as usize {
        return 0;
    }
    // SAFETY: [at, at + words) was reserved for us alone, inside the arena.
    unsafe {
        let r = a.add(at);
        *r = h;
        let serial = SERIALS.fetch_add(1, Relaxed);
        *r.add(2) = serial as u64;
        let rev = by_serial();
        if !rev.is_null() && (serial as usize) < MAX_SERIALS {
            *rev.add(serial as usize) = at as u32;
        }
        core::ptr::copy_nonoverlapping(frames.as_ptr(), r.add(FRAMES_AT), frames.len());
        let mut next = head.load(Acquire);
        loop {
            *r.add(1) = (frames.len() as u64) << 32 | next as u64;
            match head.compare_exchange_weak(next, at as u32, AcqRel, Acquire) {
                Ok(_) => return at as u32,
                Err(n) => next = n,
            }
        }
    }
}

/// The frames of a stored stack (empty for 0 or an unknown id).
pub fn frames(id: StackId) -> &'static [Frame] {
    let a = ARENA.load(Acquire);
    if id == 0 || a.is_null() || id as usize >= USED.load(Relaxed).min(ARENA_WORDS) {
        return &[];
    }
    // SAFETY: ids are only handed out for published records.
    unsafe {
        let r = a.add(id as usize);
        let len = (*r.add(1) >> 32) as usize;
        core::slice::from_raw_parts(r.add(FRAMES_AT), len)
    }
}

/// The serial number of a stored stack: 1, 2, 3… in the order stacks were
/// first stored (0 for 0 or an unknown id). Dense, unlike ids, so a
/// front-end can keep per-stack data in an array indexed by it.
#[inline]
pub fn serial(id: StackId) -> u32 {
    let a = ARENA.load(Acquire);
    if id == 0 || a.is_null() || id as usize >= USED.load(Relaxed).min(ARENA_WORDS) {
        return 0;
    }
    // SAFETY: ids are only handed out for published records.
    unsafe { *a.add(id as usize + 2) as u32 }
}

/// The frames of the stack with serial `serial` (empty when unknown, or
/// while the stack is being stored).
pub fn frames_of_serial(n: u32) -> &'static [Frame] {
    let rev = BY_SERIAL.load(Acquire);
    if n == 0 || rev.is_null() || n as usize >= MAX_SERIALS || n >= serials() {
        return &[];
    }
    // SAFETY: inside the reverse table; a slot not yet written reads 0.
    let id = unsafe { *rev.add(n as usize) };
    if serial(id) != n {
        return &[];
    }
    frames(id)
}

/// Serial numbers handed out so far (every serial is below this).
pub fn serials() -> u32 {
    SERIALS.load(Relaxed)
}

/// Bytes of records stored (for the overhead figures).
pub fn bytes() -> usize {
    USED.load(Relaxed) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stack_same_id() {
        let a = [1u64, 2, 3, 0x55];
        let b = [1u64, 2, 3, 0x56];
        let ia = intern(&a);
        let ib = intern(&b);
        assert_ne!(ia, 0);
        assert_ne!(ia, ib);
        assert_eq!(intern(&a), ia);
        assert_eq!(frames(ia), &a);
        assert_eq!(frames(ib), &b);
        assert_ne!(serial(ia), 0);
        assert_ne!(serial(ia), serial(ib));
        assert!(serial(ib) < serials());
        assert_eq!(frames_of_serial(serial(ia)), &a);
        assert_eq!(frames_of_serial(serial(ib)), &b);
        assert!(frames_of_serial(0).is_empty());
        assert_eq!(intern(&[]), 0);
        assert!(frames(0).is_empty());
    }

    /// Stacks of every length up to 40 (each lane of the hash, and its
    /// remainder), and the same stacks with one word changed anywhere:
    /// each its own id, found again, stored as given.
    #[test]
    fn many_stacks_each_once() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut all = Vec::new();
        for len in 1..=40usize {
            for _ in 0..20 {
                let s: Vec<Frame> = (0..len).map(|_| next() & 0x00ff_ffff_ffff_fff0).collect();
                for at in 0..len {
                    let mut t = s.clone();
                    t[at] ^= 0x10;
                    all.push(t);
                }
                all.push(s);
            }
        }
        let ids: Vec<StackId> = all.iter().map(|s| intern(s)).collect();
        let mut seen = std::collections::HashSet::new();
        for (s, &id) in all.iter().zip(&ids) {
            assert_ne!(id, 0);
            assert!(seen.insert(id), "two stacks with one id");
            assert_eq!(frames(id), &s[..]);
        }
        for (s, &id) in all.iter().zip(&ids) {
            assert_eq!(intern(s), id);
        }
    }
}
