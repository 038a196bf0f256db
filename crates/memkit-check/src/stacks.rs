//! Stacks as the checker records them: captured with memkit-trace from
//! the calling point, the checker's own frames dropped but the entry point
//! the program called (`malloc`, `free`, `memcpy`…), stored in the depot.
//! Allocations and frees capture with the thread's memos of its recent
//! stacks (`memkit_trace::memo::MemoSet`, as the profiler does): a stack
//! that shares its outer frames with a recent one costs a load and a
//! compare per shared frame, a repeated one no depot lookup.

use core::ffi::c_void;
use core::sync::atomic::{compiler_fence, AtomicU32, Ordering::*};

use memkit_trace::depot::StackId;
use memkit_trace::memo::{self, MemoSet};
use memkit_trace::{unwind, OwnModule};

use crate::{options, tls};

static OWN: OwnModule = OwnModule::new();

/// The checker's own module index.
pub fn own() -> u16 {
    OWN.get(own as *const () as usize)
}

/// The calling thread's stack, from here.
#[inline(never)]
pub fn here() -> StackId {
    at(unwind::here())
}

/// The calling thread's stack, from `regs` (taken by a caller further up
/// the same stack: the entry point, so that the checker's own frames cost
/// nothing to unwind).
pub fn at(regs: unwind::Regs) -> StackId {
    let end = tls::stack_end(regs.sp);
    memkit_trace::capture_interned(regs, end, own(), options::get().stack_depth)
}

/// An allocation's stack, from `regs` (with the thread's memos of its
/// recent allocation stacks).
#[inline(always)]
pub fn of_alloc(regs: unwind::Regs) -> StackId {
    with_memo(regs, false)
}

/// A free's stack, from `regs` (with the memos of its recent free stacks).
#[inline(always)]
pub fn of_free(regs: unwind::Regs) -> StackId {
    with_memo(regs, true)
}

/// The thread's two memo sets: one per call family, so that a loop of
/// malloc/free pairs finds both stacks in their latest memo. About 31 KiB,
/// from memkit's core on the thread's first capture after the library's
/// constructor; back to the core when the thread exits (a pthread key's
/// destructor).
#[repr(C)]
struct Memos {
    alloc: MemoSet,
    free: MemoSet,
}

/// `tls::Thread::memos` values besides an address.
const NO_MEMO: usize = 0;
const RETIRED: usize = 1;

const NO_KEY: u32 = u32::MAX;
static KEY: AtomicU32 = AtomicU32::new(NO_KEY);

unsafe extern "C" {
    fn pthread_key_create(key: *mut u32, dtor: Option<unsafe extern "C" fn(*mut c_void)>) -> i32;
    fn pthread_setspecific(key: u32, value: *const c_void) -> i32;
}

/// Creates the key that returns each thread's memos (from the library's
/// constructor).
pub fn init() {
    let mut key = 0u32;
    // SAFETY: a plain libc call with a valid out pointer.
    if unsafe { pthread_key_create(&mut key, Some(memos_done)) } == 0 {
        KEY.store(key, Release);
    }
}

/// The key's destructor: the thread is exiting.
unsafe extern "C" fn memos_done(arg: *mut c_void) {
    let t = tls::me();
    if t.memos.get() == arg as usize {
        t.memos.set(RETIRED);
    }
    if !arg.is_null() {
        // SAFETY: the memos this thread took from the core, no longer used
        // (the TLS word no longer names them).
        tls::inside(|| unsafe { memkit_alloc::free(arg as *mut u8) });
    }
}

#[inline(always)]
fn with_memo(regs: unwind::Regs, free: bool) -> StackId {
    let t = tls::me();
    let end = tls::stack_end(regs.sp);
    let depth = options::get().stack_depth;
    let m = t.memos.get();
    if m > RETIRED && !t.capturing.get() {
        t.capturing.set(true);
        compiler_fence(SeqCst);
        // SAFETY: this thread's memos, used by this thread only, and not
        // reentered (`capturing`: a signal handler's allocation meanwhile
        // takes the other path).
        let memos = unsafe { &mut *(m as *mut Memos) };
        let set = if free {
            &mut memos.free
        } else {
            &mut memos.alloc
        };
        let id = memo::capture_interned_set(regs, end, own(), depth, set);
        compiler_fence(SeqCst);
        t.capturing.set(false);
        return id;
    }
    without_memo(t, regs, end, depth)
}

#[cold]
#[inline(never)]
fn without_memo(t: &tls::Thread, regs: unwind::Regs, end: usize, depth: usize) -> StackId {
    if t.memos.get() == NO_MEMO && !t.capturing.get() {
        new_memos(t);
    }
    memkit_trace::capture_interned(regs, end, own(), depth)
}

/// Gives the thread its memos from the core (used from its next capture).
#[cold]
#[inline(never)]
fn new_memos(t: &tls::Thread) {
    let key = KEY.load(Acquire);
    if key == NO_KEY {
        // Before the library's constructor: none yet.
        return;
    }
    // SAFETY: any size; all-zero memo sets are valid, empty ones.
    let p = tls::inside(|| unsafe { memkit_alloc::calloc(1, core::mem::size_of::<Memos>()) });
    if p.is_null() {
        t.memos.set(RETIRED);
        return;
    }
    // The TLS word first: pthread_setspecific may allocate.
    t.memos.set(p as usize);
    // SAFETY: a valid key; the value is only handed back to memos_done.
    if tls::inside(|| unsafe { pthread_setspecific(key, p as *const c_void) }) != 0 {
        t.memos.set(RETIRED);
        // SAFETY: ours, never used.
        tls::inside(|| unsafe { memkit_alloc::free(p) });
    }
}
