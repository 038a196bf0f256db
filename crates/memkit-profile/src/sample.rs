//! Sampled mode (`sample=BYTES`): allocations are sampled as a Poisson
//! process over allocated bytes with mean interval `R` = BYTES, as
//! jemalloc's heap profiler does. An allocation of `s` bytes is sampled
//! with probability `1 - exp(-s/R)` (some sample point falls in its bytes),
//! so counting it as `w = 1 / (1 - exp(-s/R))` allocations and `w * s`
//! bytes gives unbiased estimates of every per-site figure.

use crate::tls::Thread;
use memkit_profdata::SAMPLED_OBJECT_UNIT;

fn next_random(t: &Thread) -> u64 {
    let mut x = t.rng.get();
    if x == 0 {
        x = memkit_sys::now_ns() ^ (t as *const Thread as u64).rotate_left(29) | 1;
    }
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t.rng.set(x);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// An exponentially distributed interval with mean `r` bytes.
fn interval(t: &Thread, r: u64) -> i64 {
    // u in (0, 1]: 53 random bits, never 0.
    let u = ((next_random(t) >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let v = -u.ln() * r as f64;
    (v.min(i64::MAX as f64 / 2.0) as i64).max(1)
}

/// Whether this allocation of `size` bytes is sampled.
#[inline(always)]
pub fn take(t: &Thread, size: usize, r: u64) -> bool {
    let mut left = t.countdown.get();
    if t.rng.get() == 0 {
        left = interval(t, r);
    }
    left -= size.max(1) as i64;
    if left > 0 {
        t.countdown.set(left);
        return false;
    }
    t.countdown.set(interval(t, r));
    true
}

/// What one sampled allocation of `size` bytes stands for: objects (in
/// units of `SAMPLED_OBJECT_UNIT`) and bytes. The same for its free.
pub fn weights(size: usize, r: u64) -> (u64, u64) {
    let s = size.max(1) as f64;
    let p = -(-s / r as f64).exp_m1();
    let w = if p > 0.0 { 1.0 / p } else { 1.0 };
    (
        (w * SAMPLED_OBJECT_UNIT as f64).round() as u64,
        (w * size as f64).round() as u64,
    )
}
