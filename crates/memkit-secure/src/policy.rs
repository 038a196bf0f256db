//! The lock policy: what happens when a secret cannot be locked in RAM.
//!
//! Process-wide, read from `MEMKIT_SECURE_MLOCK=require|best-effort|off` on
//! first use unless [`set`] was called before; a per-allocation override
//! lives in [`crate::Options::policy`].

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

use crate::msg::{Bytes, ErrnoName, Msg};

/// What to do when a secret cannot be locked in RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum LockPolicy {
    /// Refuse the secret (`Err`, or NULL with errno ENOMEM/EPERM in C) with a
    /// message naming `RLIMIT_MEMLOCK` and how to raise it. The default.
    #[default]
    Require = 0,
    /// Hand out the secret unlocked, warn once on stderr, and say so in its
    /// protection report.
    BestEffort = 1,
    /// Never lock (no `mlock`); every other protection still applies.
    Off = 2,
}

impl LockPolicy {
    /// Parses `require`, `best-effort` or `off` (the environment's spelling).
    pub fn parse(v: &[u8]) -> Option<LockPolicy> {
        match v {
            b"require" => Some(LockPolicy::Require),
            b"best-effort" | b"best_effort" | b"besteffort" => Some(LockPolicy::BestEffort),
            b"off" => Some(LockPolicy::Off),
            _ => None,
        }
    }

    /// The environment's spelling.
    pub fn name(self) -> &'static str {
        match self {
            LockPolicy::Require => "require",
            LockPolicy::BestEffort => "best-effort",
            LockPolicy::Off => "off",
        }
    }

    fn from_u8(v: u8) -> LockPolicy {
        match v {
            1 => LockPolicy::BestEffort,
            2 => LockPolicy::Off,
            _ => LockPolicy::Require,
        }
    }
}

static POLICY: AtomicU8 = AtomicU8::new(LockPolicy::Require as u8);
static DECIDED: AtomicBool = AtomicBool::new(false);
static WARNED: AtomicBool = AtomicBool::new(false);

/// The process-wide policy (from `MEMKIT_SECURE_MLOCK` on first use).
pub fn get() -> LockPolicy {
    if !DECIDED.swap(true, Relaxed) {
        if let Some(v) = memkit_sys::env::var(b"MEMKIT_SECURE_MLOCK") {
            match LockPolicy::parse(v) {
                Some(p) => POLICY.store(p as u8, Relaxed),
                None => {
                    let mut m = Msg::<200>::new();
                    let v = core::str::from_utf8(&v[..v.len().min(40)]).unwrap_or("?");
                    let _ = write!(
                        m,
                        "memkit: ignoring MEMKIT_SECURE_MLOCK={v} (expected require, best-effort or off); \
                         keeping require"
                    );
                    m.to_stderr();
                }
            }
        }
    }
    LockPolicy::from_u8(POLICY.load(Relaxed))
}

/// Sets the process-wide policy; it wins over `MEMKIT_SECURE_MLOCK`.
pub fn set(p: LockPolicy) {
    DECIDED.store(true, Relaxed);
    POLICY.store(p as u8, Relaxed);
}

/// Best effort: the first secret that could not be locked is reported once
/// on stderr; later ones show only in their protection report.
pub fn warn_unlocked(call: &str, errno: i32) {
    if WARNED.swap(true, Relaxed) {
        return;
    }
    let (soft, _) = memkit_sys::protect::memlock_limit();
    let mut m = Msg::<400>::new();
    let _ = write!(
        m,
        "memkit: secret memory is not locked in RAM and may reach swap ({call}: {}; RLIMIT_MEMLOCK is {}); \
         continuing under the best-effort lock policy (reported once; raise the limit with `ulimit -l`)",
        ErrnoName(errno),
        Bytes(soft),
    );
    m.to_stderr();
}
