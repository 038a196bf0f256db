//! The calling thread's stack: where its usable part ends, and how much of
//! it is left below the caller. One computation for C
//! (`memkit_stack_remaining`, `MEMKIT_STACK_BUFFER` in
//! `include/memkit-stack.h`) and Rust (`memkit::stack`); docs/STACK.md.
//!
//! - **Main thread**: the stack mapping is the one of `/proc/self/maps`
//!   that holds the stack pointer. The kernel grows it down on demand
//!   while it stays within `RLIMIT_STACK` of the mapping's top and at
//!   least `stack_guard_gap` (1 MiB by default) above the mapping below
//!   it; the usable end is the higher of the two limits, plus a page.
//!   Read with raw system calls into a stack buffer: nothing allocates.
//! - **Other threads**: `pthread_getattr_np` gives the stack's lowest
//!   usable address (above the guard) and size. glibc allocates in it
//!   (the thread's CPU affinity set), so the first call of a thread must
//!   not run inside a signal handler or the allocator.
//!
//! Each thread caches its bounds in two initial-exec TLS words on its
//! first call; later calls read them and the stack pointer: async-signal-
//! safe, a few instructions. A stack pointer outside the cached bounds (a
//! signal handler on an alternate stack, a coroutine's stack) gets 0: no
//! stack is known to be there. So do threads whose bounds could not be
//! read (no `/proc`). The bounds are those of the first call: a later
//! `setrlimit(RLIMIT_STACK)` is not seen.

use core::ffi::c_void;

use rustix::fs::{Mode, OFlags};
use rustix::process::Resource;

use crate::OS_PAGE;

/// Bytes below the caller that a stack buffer never takes: what the code
/// called after it (libc, signal handlers, a few frames) may still use.
pub const RED_ZONE: usize = 32 * 1024;

/// A buffer goes on the stack only if it takes at most `1/SHARE` (a
/// quarter) of what remains beyond the [`RED_ZONE`]: deeper code, nested
/// buffers included, keeps at least three times as much. When recursion
/// with a buffer of `n` bytes a level moves to the heap, its deeper levels
/// still have `RED_ZONE + SHARE * n` bytes of stack for their frames.
pub const SHARE: usize = 4;

/// What the kernel keeps between a growing main-thread stack and the
/// mapping below it (`stack_guard_gap`, 256 pages unless set at boot).
pub const GUARD_GAP: usize = 256 * OS_PAGE;

/// Whether a buffer of `size` bytes may go on a stack with `remaining`
/// bytes left: `size <= (remaining - RED_ZONE) / SHARE`.
#[inline]
pub fn fits(size: usize, remaining: usize) -> bool {
    remaining > RED_ZONE && size <= (remaining - RED_ZONE) / SHARE
}

crate::tls_word!(
    /// Lowest usable address of this thread's stack; 0: not computed yet.
    mod low = "memkit_tls_stack_low";
);
crate::tls_word!(
    /// Highest address of this thread's stack (its top).
    mod high = "memkit_tls_stack_high";
);

/// The stack pointer.
#[inline(always)]
pub fn sp() -> usize {
    let sp: usize;
    // SAFETY: reads a register.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    sp
}

/// Bytes between the stack pointer and the end of the calling thread's
/// usable stack; 0 when the stack pointer is outside the thread's stack or
/// the stack is unknown. See the module documentation for the rules.
#[inline]
pub fn remaining() -> usize {
    let sp = sp();
    let (lo, hi) = bounds();
    if lo < sp && sp <= hi {
        sp - lo
    } else {
        0
    }
}

/// This thread's stack as `(lowest usable address, top)`, computed on the
/// first call; `(1, 1)` when it cannot be known.
#[inline]
pub fn bounds() -> (usize, usize) {
    let lo = low::get();
    if lo != 0 {
        return (lo, high::get());
    }
    bounds_slow()
}

#[cold]
#[inline(never)]
fn bounds_slow() -> (usize, usize) {
    // The main thread, unless it is a thread that forked: its child's
    // only thread has the pid for its id but runs on the old thread stack.
    let (lo, hi) = if rustix::thread::gettid() == rustix::process::getpid() {
        main_thread_bounds(sp()).or_else(other_thread_bounds)
    } else {
        other_thread_bounds()
    }
    .unwrap_or((1, 1));
    // `low` last: it says the pair is complete (a signal handler that
    // runs in between computes again or reads both).
    high::set(hi);
    low::set(lo);
    (lo, hi)
}

/// The main thread's stack from `/proc/self/maps` and `RLIMIT_STACK`;
/// `None` if the stack pointer is not in the `[stack]` mapping.
fn main_thread_bounds(sp: usize) -> Option<(usize, usize)> {
    let m = mapping_of(sp).filter(|m| m.grows)?;
    let rlimit = rustix::process::getrlimit(Resource::Stack).current;
    Some((main_stack_low(m, rlimit), m.end))
}

/// The mapping of the process's maps that holds `addr` (`None`: none, or
/// the file cannot be read). Raw system calls and a buffer on the stack:
/// it neither allocates nor takes a lock, so an allocator may call it from
/// `malloc` (`pthread_getattr_np` allocates while holding the thread's
/// lock: from `malloc` called inside it, as Rust's runtime start does on
/// the main thread, asking it again deadlocks).
pub fn mapping_of(addr: usize) -> Option<StackMapping> {
    // /proc/thread-self (Linux 3.17): /proc/self/maps is empty once the
    // main thread has exited (pthread_exit) while others run on.
    let open = |path| rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty());
    let fd = open(c"/proc/thread-self/maps")
        .or_else(|_| open(c"/proc/self/maps"))
        .ok()?;
    let mut scan = MapsScan::new(addr);
    let mut buf = [0u8; 1024];
    while scan.found.is_none() {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => scan.feed(&buf[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    scan.found
}

/// The mapping that holds the stack pointer, and where the one below it
/// ends (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackMapping {
    /// Where the mapping starts now (it may grow down).
    pub start: usize,
    /// Its top.
    pub end: usize,
    /// The end of the highest mapping below it.
    pub below_end: usize,
    /// Whether it is the main thread's `[stack]`, which grows down.
    pub grows: bool,
}

/// The lowest address a main-thread stack may use: `RLIMIT_STACK` below
/// its top (`None`: unlimited) or [`GUARD_GAP`] above the mapping below
/// it, whichever is higher, plus a page of margin.
pub fn main_stack_low(m: StackMapping, rlimit: Option<u64>) -> usize {
    let by_limit = rlimit.map_or(0, |r| {
        m.end.saturating_sub(r.min(usize::MAX as u64) as usize)
    });
    let by_neighbour = m.below_end.saturating_add(GUARD_GAP);
    by_limit.max(by_neighbour).saturating_add(OS_PAGE)
}

/// Finds the mapping that holds an address in `/proc/self/maps` text fed
/// in pieces of any size (lines are `start-end perms offset dev inode
/// name`, ascending): a state machine over the two hex numbers and the end
/// of the name, so no line buffer is needed.
pub struct MapsScan {
    addr: usize,
    state: ScanState,
    start: usize,
    end: usize,
    below_end: usize,
    /// The last 8 bytes of the line so far.
    tail: u64,
    /// The result, once its line is complete.
    pub found: Option<StackMapping>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ScanState {
    Start,
    End,
    Rest,
    /// The rest of the line of the mapping that holds the address.
    Holding,
}

impl MapsScan {
    /// A scan for the mapping holding `addr`.
    pub fn new(addr: usize) -> Self {
        MapsScan {
            addr,
            state: ScanState::Start,
            start: 0,
            end: 0,
            below_end: 0,
            tail: 0,
            found: None,
        }
    }

    /// Feeds the next piece of the text.
    pub fn feed(&mut self, text: &[u8]) {
        // The line's last 7 bytes are these for the main thread's stack.
        const STACK: u64 = u64::from_be_bytes(*b"\0[stack]");
        for &c in text {
            if self.found.is_some() {
                return;
            }
            match (self.state, c) {
                (ScanState::Start, b'-') => self.state = ScanState::End,
                (ScanState::Start, _) => self.start = push_hex(self.start, c),
                (ScanState::End, b' ') => {
                    self.state = if (self.start..self.end).contains(&self.addr) {
                        ScanState::Holding
                    } else {
                        if self.end <= self.addr {
                            self.below_end = self.end;
                        }
                        ScanState::Rest
                    };
                }
                (ScanState::End, _) => self.end = push_hex(self.end, c),
                (ScanState::Holding, b'\n') => {
                    self.found = Some(StackMapping {
                        start: self.start,
                        end: self.end,
                        below_end: self.below_end,
                        grows: self.tail & 0x00ff_ffff_ffff_ffff == STACK,
                    });
                }
                (ScanState::Holding, _) => self.tail = self.tail << 8 | c as u64,
                (ScanState::Rest, b'\n') => {
                    self.state = ScanState::Start;
                    self.start = 0;
                    self.end = 0;
                }
                (ScanState::Rest, _) => {}
            }
        }
    }
}

fn push_hex(v: usize, c: u8) -> usize {
    let d = match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    };
    v.wrapping_mul(16).wrapping_add(d as usize)
}

/// glibc's `pthread_attr_t` on x86_64: 56 bytes.
#[repr(C, align(8))]
struct PthreadAttr([u8; 56]);

unsafe extern "C" {
    fn pthread_self() -> usize;
    fn pthread_getattr_np(thread: usize, attr: *mut PthreadAttr) -> i32;
    fn pthread_attr_getstack(
        attr: *const PthreadAttr,
        addr: *mut *mut c_void,
        size: *mut usize,
    ) -> i32;
    fn pthread_attr_destroy(attr: *mut PthreadAttr) -> i32;
}

/// A thread's stack from its attributes: the lowest usable address (the
/// guard is below it) and the top.
fn other_thread_bounds() -> Option<(usize, usize)> {
    let mut attr = PthreadAttr([0; 56]);
    let mut addr: *mut c_void = core::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: attr is initialised by pthread_getattr_np before use and
    // destroyed after; addr and size are valid out pointers.
    unsafe {
        if pthread_getattr_np(pthread_self(), &mut attr) != 0 {
            return None;
        }
        let r = pthread_attr_getstack(&attr, &mut addr, &mut size);
        pthread_attr_destroy(&mut attr);
        if r != 0 {
            return None;
        }
    }
    let lo = addr as usize;
    Some((lo, lo.checked_add(size)?))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a28000 r--p 00000000 08:01 1234 /usr/bin/prog
7f1e2a000000-7f1e2a021000 rw-p 00000000 00:00 0 \n\
7ffc1a2f0000-7ffc1a311000 rw-p 00000000 00:00 0                          [stack]
7ffc1a3f6000-7ffc1a3fa000 r--p 00000000 00:00 0                          [vvar]
";

    fn scan(text: &str, addr: usize, piece: usize) -> Option<StackMapping> {
        let mut s = MapsScan::new(addr);
        for chunk in text.as_bytes().chunks(piece) {
            s.feed(chunk);
        }
        s.found
    }

    #[test]
    fn finds_the_mapping_holding_an_address_in_any_pieces() {
        let want = StackMapping {
            start: 0x7ffc1a2f0000,
            end: 0x7ffc1a311000,
            below_end: 0x7f1e2a021000,
            grows: true,
        };
        for piece in [1, 3, 7, 64, 4096] {
            assert_eq!(scan(MAPS, 0x7ffc1a310abc, piece), Some(want), "{piece}");
        }
        // First line, one without a name (a thread's stack), and an
        // address in no mapping.
        assert_eq!(
            scan(MAPS, 0x55d0c0a00000, 5).map(|m| (m.start, m.below_end, m.grows)),
            Some((0x55d0c0a00000, 0, false))
        );
        assert_eq!(
            scan(MAPS, 0x7f1e2a020000, 2).map(|m| (m.end, m.grows)),
            Some((0x7f1e2a021000, false))
        );
        assert_eq!(scan(MAPS, 0x7ffc1a311000, 5), None);
    }

    #[test]
    fn main_stack_ends_at_the_rlimit_or_the_gap_above_its_neighbour() {
        let m = StackMapping {
            start: 0x7ffc1a2f0000,
            end: 0x7ffc1a311000,
            below_end: 0x7f1e2a021000,
            grows: true,
        };
        let eight = 8 << 20;
        assert_eq!(
            main_stack_low(m, Some(eight)),
            m.end - eight as usize + OS_PAGE
        );
        // Unlimited: the gap above the neighbour.
        assert_eq!(main_stack_low(m, None), m.below_end + GUARD_GAP + OS_PAGE);
        // A neighbour closer than the limit wins.
        let near = StackMapping {
            below_end: m.end - (4 << 20),
            ..m
        };
        assert_eq!(
            main_stack_low(near, Some(eight)),
            near.below_end + GUARD_GAP + OS_PAGE
        );
    }

    #[test]
    fn the_share_rule() {
        assert!(!fits(0, RED_ZONE));
        assert!(fits(0, RED_ZONE + 1));
        assert!(fits(1000, RED_ZONE + 4000));
        assert!(!fits(1001, RED_ZONE + 4000));
    }

    #[test]
    fn remaining_is_within_this_threads_stack_and_shrinks_with_depth() {
        fn deeper(levels: usize) -> usize {
            let pad = [0u8; 4096];
            core::hint::black_box(&pad);
            if levels == 0 {
                remaining()
            } else {
                deeper(levels - 1)
            }
        }
        let t = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let (lo, hi) = bounds();
                let r = remaining();
                assert!(lo < sp() && sp() <= hi);
                assert!(
                    hi - lo >= 256 * 1024 && hi - lo < 300 * 1024,
                    "{lo:#x}..{hi:#x}"
                );
                assert!(r > 200 * 1024 && r < 256 * 1024, "{r}");
                let d = deeper(10);
                assert!(d + 10 * 4096 <= r, "{d} vs {r}");
            })
            .unwrap();
        t.join().unwrap();
    }
}
