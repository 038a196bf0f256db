//! The calling thread's state, in static TLS.
//!
//! glibc requires a replacement malloc to use the initial-exec TLS model
//! (`thread_local!` in a cdylib is global-dynamic and may call `malloc`
//! through `__tls_get_addr`), so the block is declared in `.tbss` with
//! `global_asm!` and reached through `@GOTTPOFF`, as memkit-alloc does for
//! its heap word. `.tbss` starts zeroed: every field's zero is "not yet".

use core::cell::Cell;

/// Per-thread state of the checker.
#[repr(C)]
pub struct Thread {
    /// Non-zero while the thread runs the checker's own code: allocations
    /// and mem* calls made there are not checked (and not recorded).
    pub busy: Cell<u32>,
    /// The thread's id (gettid), 0 until first needed.
    pub tid: Cell<u32>,
    /// The end (highest address) of the thread's stack, 0 until known.
    pub stack_end: Cell<usize>,
    /// Set while the stack bounds are being found (that calls malloc).
    pub finding_stack: Cell<u32>,
    /// Allocations not yet added to the process-wide count.
    pub allocs: Cell<u32>,
    /// Live blocks gained (or lost) not yet added to the process-wide count.
    pub live: Cell<i64>,
}

const SIZE: usize = core::mem::size_of::<Thread>();
const _: () = assert!(SIZE <= 64);

core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 4",
    ".globl memkit_check_tls",
    ".hidden memkit_check_tls",
    ".type memkit_check_tls,@object",
    ".size memkit_check_tls,64",
    "memkit_check_tls:",
    ".zero 64",
    ".popsection",
);

/// The calling thread's state.
#[inline(always)]
pub fn me() -> &'static Thread {
    let p: usize;
    // SAFETY: the thread pointer (fs:0) plus the block's static TLS offset
    // is this thread's copy of the 64 zeroed bytes declared above.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr [rip + memkit_check_tls@GOTTPOFF]",
            "add {p}, qword ptr fs:[0]",
            p = out(reg) p,
            options(nostack, readonly, preserves_flags, pure),
        );
        &*(p as *const Thread)
    }
}

/// Runs `f` as the checker's own code (see [`Thread::busy`]).
#[inline(always)]
pub fn inside<R>(f: impl FnOnce() -> R) -> R {
    let t = me();
    t.busy.set(t.busy.get() + 1);
    let r = f();
    t.busy.set(t.busy.get() - 1);
    r
}

/// Whether the thread is inside the checker's own code.
#[inline(always)]
pub fn is_busy() -> bool {
    me().busy.get() != 0
}

/// The thread's id.
pub fn tid() -> u32 {
    let t = me();
    let id = t.tid.get();
    if id != 0 {
        return id;
    }
    let id = rustix_tid();
    t.tid.set(id);
    id
}

fn rustix_tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { gettid() as u32 }
}

unsafe extern "C" {
    fn gettid() -> i32;
    fn pthread_self() -> usize;
    fn pthread_getattr_np(th: usize, attr: *mut [u64; 8]) -> i32;
    fn pthread_attr_getstack(attr: *const [u64; 8], addr: *mut usize, size: *mut usize) -> i32;
    fn pthread_attr_destroy(attr: *mut [u64; 8]) -> i32;
}

/// The end of the calling thread's stack (found once; `pthread_getattr_np`
/// allocates, so the lookup runs as the checker's own code). While it is
/// unknown, `sp + 64 KiB` bounds the unwind.
pub fn stack_end(sp: usize) -> usize {
    let t = me();
    let end = t.stack_end.get();
    if end != 0 {
        return end;
    }
    if t.finding_stack.get() != 0 {
        return sp + 65536;
    }
    t.finding_stack.set(1);
    let mut attr = [0u64; 8];
    let (mut addr, mut size) = (0usize, 0usize);
    // SAFETY: attr is large enough for pthread_attr_t (56 bytes).
    let ok = unsafe {
        pthread_getattr_np(pthread_self(), &mut attr) == 0 && {
            let got = pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
            pthread_attr_destroy(&mut attr);
            got
        }
    };
    t.finding_stack.set(0);
    let end = if ok && addr + size > sp {
        addr + size
    } else {
        sp + 65536
    };
    if ok {
        t.stack_end.set(end);
    }
    end
}
