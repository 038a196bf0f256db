//! glibc's introspection types and `mallopt`'s parameters, shared by the
//! front-ends: each fills [`Mallinfo2`] with its own figures (libmemkit.so
//! the core's, libmemkit_check.so the program's blocks as it asked for
//! them, its quarantine and the core's memory under both).

use core::sync::atomic::Ordering::Relaxed;

use memkit_alloc::config::OPTIONS;

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (int fields; values saturate at `INT_MAX`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo {
    pub arena: i32,
    pub ordblks: i32,
    pub smblks: i32,
    pub hblks: i32,
    pub hblkhd: i32,
    pub usmblks: i32,
    pub fsmblks: i32,
    pub uordblks: i32,
    pub fordblks: i32,
    pub keepcost: i32,
}

impl From<Mallinfo2> for Mallinfo {
    fn from(m: Mallinfo2) -> Self {
        let c = |v: usize| v.min(i32::MAX as usize) as i32;
        Mallinfo {
            arena: c(m.arena),
            ordblks: c(m.ordblks),
            smblks: c(m.smblks),
            hblks: c(m.hblks),
            hblkhd: c(m.hblkhd),
            usmblks: c(m.usmblks),
            fsmblks: c(m.fsmblks),
            uordblks: c(m.uordblks),
            fordblks: c(m.fordblks),
            keepcost: c(m.keepcost),
        }
    }
}

/// `mallinfo2` of the core (libmemkit.so, libmemkit_profile.so): `arena`
/// the segments' bytes, `uordblks` the small and medium blocks in use
/// (block sizes), `hblks`/`hblkhd` the live huge blocks, `keepcost` free
/// resident bytes, `ordblks` cached segments and huge blocks (README,
/// "Introspection").
pub fn core_info2() -> Mallinfo2 {
    let s = memkit_alloc::stats();
    Mallinfo2 {
        arena: s.segment_mapped as usize,
        ordblks: (s.cached_segments + s.cached_huge) as usize,
        hblks: s.huge_live as usize,
        hblkhd: s.huge_live_bytes as usize,
        uordblks: s.small_in_use as usize,
        fordblks: s.segment_mapped.saturating_sub(s.small_in_use) as usize,
        keepcost: s.dirty as usize,
        ..Mallinfo2::default()
    }
}

const M_MXFAST: i32 = 1;
const M_TRIM_THRESHOLD: i32 = -1;
const M_TOP_PAD: i32 = -2;
const M_MMAP_THRESHOLD: i32 = -3;
const M_MMAP_MAX: i32 = -4;
const M_CHECK_ACTION: i32 = -5;
const M_PERTURB: i32 = -6;
const M_ARENA_TEST: i32 = -7;
const M_ARENA_MAX: i32 = -8;

/// `mallopt(3)`: 1 for every parameter glibc knows, 0 for others.
/// `M_TRIM_THRESHOLD` sets how many bytes of freed huge blocks the core
/// keeps for reuse; the others have no memkit equivalent and are accepted
/// as no-ops (see README).
pub fn mallopt(param: i32, value: i32) -> i32 {
    match param {
        M_TRIM_THRESHOLD => {
            if value >= 0 {
                OPTIONS.huge_cache_bytes.store(value as u64, Relaxed);
            }
            1
        }
        M_MXFAST | M_TOP_PAD | M_MMAP_THRESHOLD | M_MMAP_MAX | M_CHECK_ACTION | M_PERTURB
        | M_ARENA_TEST | M_ARENA_MAX => 1,
        _ => 0,
    }
}

/// Defines `mallinfo2`, `mallinfo` and `mallopt` in the calling crate, the
/// first two from its `fn() -> Mallinfo2`.
#[macro_export]
macro_rules! info_exports {
    ($info2:path) => {
        /// `mallinfo2(3)`.
        #[unsafe(no_mangle)]
        pub extern "C" fn mallinfo2() -> $crate::info::Mallinfo2 {
            $info2()
        }

        /// `mallinfo(3)`.
        #[unsafe(no_mangle)]
        pub extern "C" fn mallinfo() -> $crate::info::Mallinfo {
            $info2().into()
        }

        /// `mallopt(3)` (see `memkit_abi::info::mallopt`).
        #[unsafe(no_mangle)]
        pub extern "C" fn mallopt(param: i32, value: i32) -> i32 {
            $crate::info::mallopt(param, value)
        }
    };
}
