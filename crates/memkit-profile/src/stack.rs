//! The stack of a recorded allocation, as a depot serial: captured from the
//! export's frame with the calling thread's memos of its recent stacks
//! (`memkit_trace::memo::MemoSet`: sixteen), which make a stack that shares
//! its outer frames with the previous one cost a load and a compare per
//! shared frame, and a repeated stack (also one of a few alternating ones)
//! no hashing at all.
//!
//! Each thread's memo set (about 61 KiB) comes from memkit's core on the
//! thread's first recorded allocation once the library is initialised, and
//! goes back when the thread exits (a pthread key's destructor). An
//! allocation after that, from a later destructor, captures without a memo.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering::*};

use memkit_trace::memo::{self, MemoSet};
use memkit_trace::unwind::Regs;
use memkit_trace::{depot, OwnModule};

use crate::{options, tls};

unsafe extern "C" {
    fn pthread_key_create(key: *mut u32, dtor: Option<unsafe extern "C" fn(*mut c_void)>) -> i32;
    fn pthread_setspecific(key: u32, value: *const c_void) -> i32;
}

/// `tls::Thread::memo` values besides a memo's address.
const NO_MEMO: usize = 0;
/// The thread's memo went back at its exit (or cannot be had).
const RETIRED: usize = 1;

const NO_KEY: u32 = u32::MAX;
static KEY: AtomicU32 = AtomicU32::new(NO_KEY);

static OWN: OwnModule = OwnModule::new();

/// Creates the key that returns each thread's memo (from the library's
/// constructor: `pthread_key_create` does not allocate for the first keys).
pub fn init() {
    let mut key = 0u32;
    // SAFETY: a plain libc call with a valid out pointer.
    if unsafe { pthread_key_create(&mut key, Some(memo_done)) } == 0 {
        KEY.store(key, Release);
    }
}

/// The key's destructor: the thread is exiting.
unsafe extern "C" fn memo_done(arg: *mut c_void) {
    let t = tls::me();
    if t.memo.get() == arg as usize {
        t.memo.set(RETIRED);
    }
    if !arg.is_null() {
        // SAFETY: the memo this thread took from the core, no longer used.
        unsafe { memkit_alloc::free(arg as *mut u8) };
    }
}

/// The stack from `regs` (the export's frame), our own frames dropped but
/// the entry point the program called: its depot serial. Runs as the
/// profiler's own code (`tls::inside`).
#[inline(always)]
pub fn serial(regs: Regs) -> u32 {
    let t = tls::me();
    let end = tls::stack_end(regs.sp);
    let own = OWN.get(serial as *const () as usize);
    let depth = options::get().stack_depth;
    let m = t.memo.get();
    if m > RETIRED {
        // SAFETY: this thread's memo, used by this thread only, never
        // reentered (the caller runs as the profiler's own code).
        return memo::capture_serial_set(regs, end, own, depth, unsafe {
            &mut *(m as *mut MemoSet)
        });
    }
    serial_without_memo(t, regs, end, own, depth)
}

#[cold]
#[inline(never)]
fn serial_without_memo(t: &tls::Thread, regs: Regs, end: usize, own: u16, depth: usize) -> u32 {
    if t.memo.get() == NO_MEMO {
        new_memo(t);
    }
    depot::serial(memkit_trace::capture_interned(regs, end, own, depth))
}

/// Gives the thread a memo from the core (used from its next allocation).
#[cold]
#[inline(never)]
fn new_memo(t: &tls::Thread) {
    let key = KEY.load(Acquire);
    if key == NO_KEY {
        // Before the library's constructor: no memo yet.
        return;
    }
    // SAFETY: any size; an all-zero memo is a valid, empty one.
    let p = unsafe { memkit_alloc::calloc(1, memo::MEMO_SET_BYTES) };
    if p.is_null() {
        t.memo.set(RETIRED);
        return;
    }
    // The TLS word first: pthread_setspecific may allocate.
    t.memo.set(p as usize);
    // SAFETY: a valid key; the value is only handed back to memo_done.
    if unsafe { pthread_setspecific(key, p as *const c_void) } != 0 {
        t.memo.set(RETIRED);
        // SAFETY: ours, never used.
        unsafe { memkit_alloc::free(p) };
    }
}
