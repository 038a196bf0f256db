//! Canaries: keyed bytes around every secret, checked when it is freed.
//!
//! The byte at address `a` of a canary is byte `a % 8` of
//! `SipHash-2-4(key, a & !7)`, with a 128-bit key drawn from `getrandom` once
//! per process. The value depends on the address, so a canary read (or
//! leaked) at one place tells nothing about another, and copying a secret
//! with its canary to another address does not carry a valid canary along.
//! Pattern bytes are written once: by the allocation for a guarded region,
//! at slab creation for every slot of a packed slab (so the canary after a
//! slot is valid whether or not the next slot is in use).
//!
//! In a child made by `fork`, memory marked `MADV_WIPEONFORK` reads as zeros,
//! canaries included: a region or slab records the process that created it,
//! and an all-zero canary is accepted only in another process.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

use crate::msg::Msg;

static KEY0: AtomicU64 = AtomicU64::new(0);
static KEY1: AtomicU64 = AtomicU64::new(0);
static KEYED: AtomicBool = AtomicBool::new(false);

/// Bytes of the canary in front of every secret (also its alignment).
pub const CANARY: usize = 16;

/// Draws the key on first use. Called with the global lock held.
pub fn init() {
    if KEYED.load(Relaxed) {
        return;
    }
    let mut k = [0u8; 16];
    if memkit_sys::protect::random(&mut k).is_err() {
        // No getrandom (seccomp filter): weaker, but still unpredictable
        // across processes and runs.
        let t = memkit_sys::now_ns();
        let a = &k as *const _ as u64;
        k[..8].copy_from_slice(&(t ^ a.rotate_left(29)).to_le_bytes());
        k[8..].copy_from_slice(&(t.rotate_left(17) ^ memkit_sys::pid() as u64).to_le_bytes());
    }
    let [k0, k1] = [0, 8].map(|i| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&k[i..i + 8]);
        u64::from_le_bytes(w)
    });
    KEY0.store(k0, Relaxed);
    KEY1.store(k1, Relaxed);
    KEYED.store(true, Relaxed);
    crate::wipe_array(&mut k);
}

#[inline]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of one 8-byte message under the process key.
fn word(addr: usize) -> u64 {
    let (k0, k1) = (KEY0.load(Relaxed), KEY1.load(Relaxed));
    let m = addr as u64;
    let mut v = [
        k0 ^ 0x736f6d6570736575,
        k1 ^ 0x646f72616e646f6d,
        k0 ^ 0x6c7967656e657261,
        k1 ^ 0x7465646279746573,
    ];
    v[3] ^= m;
    sipround(&mut v);
    sipround(&mut v);
    v[0] ^= m;
    let b = 8u64 << 56;
    v[3] ^= b;
    sipround(&mut v);
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..4 {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The canary byte that belongs at address `a`.
#[inline]
fn byte_at(a: usize, w: &mut (usize, u64)) -> u8 {
    let base = a & !7;
    if w.0 != base {
        *w = (base, word(base));
    }
    (w.1 >> ((a & 7) * 8)) as u8
}

/// Fills `p..p+n` with its canary bytes.
///
/// # Safety
/// `p..p+n` must be writable memory the caller owns.
pub unsafe fn fill(p: *mut u8, n: usize) {
    let mut w = (usize::MAX, 0);
    for i in 0..n {
        let a = p as usize + i;
        // SAFETY: inside the caller's range.
        unsafe { *p.add(i) = byte_at(a, &mut w) };
    }
}

/// Whether `p..p+n` holds its canary bytes, or (when `wiped_ok`, in a forked
/// child) only zeros.
///
/// # Safety
/// `p..p+n` must be readable memory the caller owns.
pub unsafe fn intact(p: *const u8, n: usize, wiped_ok: bool) -> bool {
    let mut w = (usize::MAX, 0);
    let mut diff = 0u8;
    let mut nonzero = 0u8;
    for i in 0..n {
        // SAFETY: inside the caller's range.
        let b = unsafe { *p.add(i) };
        diff |= b ^ byte_at(p as usize + i, &mut w);
        nonzero |= b;
    }
    diff == 0 || (wiped_ok && nonzero == 0)
}

/// Whether `p..p+n` is all zeros.
///
/// # Safety
/// `p..p+n` must be readable memory the caller owns.
pub unsafe fn zeros(p: *const u8, n: usize) -> bool {
    // SAFETY: the caller's range.
    let s = unsafe { core::slice::from_raw_parts(p, n) };
    s.iter().fold(0u8, |a, &b| a | b) == 0
}

/// Reports a damaged canary on one line of standard error and aborts: the
/// process wrote outside a secret (overflow, underflow, use after free),
/// and continuing would trust corrupted memory.
#[cold]
pub fn corrupted(what: &str, secret: *const u8, at: *const u8) -> ! {
    use core::fmt::Write;
    let mut m = Msg::<256>::new();
    let _ = write!(
        m,
        "memkit: secure memory corrupted: {what} the secret at {secret:p} damaged at {at:p} \
         (a write out of bounds); aborting"
    );
    m.to_stderr();
    crate::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_depend_on_the_address_and_detect_any_change() {
        init();
        let mut buf = [0u8; 64];
        // SAFETY: our buffer.
        unsafe {
            fill(buf.as_mut_ptr(), 32);
            assert!(intact(buf.as_ptr(), 32, false));
            assert_ne!(buf[..16], buf[16..32]);
            assert!(zeros(buf.as_ptr().add(32), 32));
            for i in 0..32 {
                buf[i] ^= 1;
                assert!(!intact(buf.as_ptr(), 32, false));
                buf[i] ^= 1;
            }
            // A wiped (forked child) canary passes only when allowed.
            assert!(!intact(buf.as_ptr().add(32), 16, false));
            assert!(intact(buf.as_ptr().add(32), 16, true));
        }
    }
}
