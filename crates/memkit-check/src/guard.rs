//! `guard=all` and `guard=sample`: blocks placed against a guard page, and
//! kept inaccessible while in quarantine, so that an overflow past the end
//! or any access after free — reads too — faults at the instruction that
//! does it (Electric Fence's and GWP-ASan's idea). The SIGSEGV handler
//! knows the guarded blocks: it reports the access (with the stack of the
//! faulting instruction, unwound from the signal context), makes the page
//! accessible so the program can go on (or stops, with `halt_on_error`),
//! and passes every other fault to the program's action: the one there
//! before, or the one the program set since — the `sigaction` and
//! `signal` exports keep the program's SIGSEGV action aside and leave the
//! guard handler installed (a program with its own fault handler, Python's
//! `faulthandler` or a JVM, would else take the guard faults).
//!
//! Each guarded block is its own mapping: the data pages (the block ends
//! at the guard page, its last bytes up to 16-byte alignment are red
//! zone) and one `PROT_NONE` page. Two mappings per live block:
//! `vm.max_map_count` (65530 by default) bounds the guarded blocks; at most
//! three quarters of it go to them (about 24500 blocks), the rest is left
//! to the program, and beyond that (or when a mapping is refused) blocks
//! are allocated unguarded.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use memkit_alloc::lock::SpinLock;
use memkit_sys::signal::{self, SigAction, SigInfo, SA_NODEFER, SA_ONSTACK};

use crate::options::{self, Guard};
use crate::report;
use crate::{block, stacks, tls};

pub const PAGE: usize = 4096;

static SAMPLE_COUNTER: AtomicU64 = AtomicU64::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);
static WARNED_BUDGET: AtomicBool = AtomicBool::new(false);

/// Guarded mappings alive (live and quarantined guarded blocks).
static MAPPED: AtomicUsize = AtomicUsize::new(0);
/// At most this many: two mappings each, and a quarter of
/// `vm.max_map_count` (read at install; 65530 until then) left to the
/// program. Taking them all made every later `mmap` of the program fail
/// (python's `import ctypes`: "failed to map segment from shared object").
static BUDGET: AtomicUsize = AtomicUsize::new(budget(65530));

const fn budget(max_map_count: usize) -> usize {
    (max_map_count - max_map_count / 4) / 2
}

/// Whether this allocation is to be guarded (under options `o`; the mode
/// first: the default has none).
#[inline(always)]
pub fn wanted(o: &options::Options, size: usize, align: usize) -> bool {
    if matches!(o.guard, Guard::None) || align > PAGE || size > o.guard_max {
        return false;
    }
    match o.guard {
        Guard::None => false,
        Guard::All => true,
        Guard::Sample(n) => SAMPLE_COUNTER.fetch_add(1, Relaxed).is_multiple_of(n),
    }
}

/// Maps a guarded region for `size` bytes with at least `left` bytes
/// before them: (start, data end = guard page start).
pub fn map(size: usize, left: usize) -> Option<(usize, usize)> {
    let budget = BUDGET.load(Relaxed);
    if MAPPED.fetch_add(1, Relaxed) >= budget {
        MAPPED.fetch_sub(1, Relaxed);
        if !WARNED_BUDGET.swap(true, Relaxed) {
            report::warn(&format!(
                "guard: {budget} blocks guarded (two mappings each; a quarter of vm.max_map_count is left to the program): allocating unguarded until some are freed"
            ));
        }
        return None;
    }
    let r = map_new(size, left);
    if r.is_none() {
        MAPPED.fetch_sub(1, Relaxed);
    }
    r
}

fn map_new(size: usize, left: usize) -> Option<(usize, usize)> {
    let data = (size.next_multiple_of(16) + left).next_multiple_of(PAGE);
    let Ok(p) = memkit_sys::map(data + PAGE) else {
        if !WARNED.swap(true, Relaxed) {
            report::warn("guard: a guarded mapping was refused (vm.max_map_count?); allocating unguarded from now on when that happens");
        }
        return None;
    };
    let start = p as usize;
    // SAFETY: the last page of our own fresh mapping.
    if unsafe {
        memkit_sys::protect::protect(
            (start + data) as *mut u8,
            PAGE,
            memkit_sys::protect::Prot::None,
        )
    }
    .is_err()
    {
        // SAFETY: our own mapping, never handed out.
        unsafe { memkit_sys::unmap(p, data + PAGE) };
        return None;
    }
    Some((start, start + data))
}

/// Makes a freed guarded block inaccessible (data pages; the guard page
/// already is).
pub fn protect_freed(start: usize, end: usize) {
    // SAFETY: the data pages of a guarded mapping of ours.
    let _ = unsafe {
        memkit_sys::protect::protect(
            start as *mut u8,
            end - start,
            memkit_sys::protect::Prot::None,
        )
    };
}

/// Gives a guarded mapping back.
pub fn unmap(start: usize, end: usize) {
    // SAFETY: a guarded mapping of ours, out of every table.
    unsafe { memkit_sys::unmap(start as *mut u8, end - start + PAGE) };
    MAPPED.fetch_sub(1, Relaxed);
}

fn reopen(start: usize, len: usize) {
    // SAFETY: pages of a guarded mapping of ours.
    let _ = unsafe {
        memkit_sys::protect::protect(start as *mut u8, len, memkit_sys::protect::Prot::ReadWrite)
    };
}

/// The SIGSEGV action the program sees: the one in force before ours at
/// install, then whatever the program sets through the `sigaction` and
/// `signal` exports below, which leave ours in the kernel. Faults that are
/// not ours go to it ([`signal::chain`]). Held only to copy it (never
/// while touching the program's memory, so no fault is taken holding it),
/// and around `fork`.
static PROGRAM: SpinLock<Option<SigAction>> = SpinLock::new(None);

const SIGSEGV: i32 = 11;
const SA_RESTART: i32 = 0x1000_0000;
const SA_RESETHAND: i32 = i32::MIN; // 0x8000_0000

/// Installs the SIGSEGV handler (when a guard mode is on).
pub fn install() {
    if matches!(options::get().guard, Guard::None) {
        return;
    }
    if let Some(n) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
    {
        BUDGET.store(budget(n), Relaxed);
    }
    let mut p = PROGRAM.lock();
    if p.is_some() {
        return;
    }
    // SA_ONSTACK: a program's own fault handler (which ours calls) runs
    // on the alternate stack it set up, as for a stack overflow it must;
    // a thread without one runs it on its stack.
    let ours = SigAction::with_info(on_segv, SA_NODEFER | SA_ONSTACK);
    // SAFETY: on_segv is async-signal-safe where it returns early (not
    // ours), and lives as long as the library (-z nodelete).
    let Ok(old) = (unsafe { signal::sigaction(SIGSEGV, Some(&ours)) }) else {
        return;
    };
    // The program's view is known before ours can run a fault: the lock
    // is held until it is set.
    *p = Some(old);
}

/// Whether the program's SIGSEGV actions are kept aside (a guard mode,
/// with its handler installed).
fn keeps_segv(sig: i32) -> bool {
    sig == SIGSEGV && PROGRAM.lock().is_some()
}

/// Sets the program's SIGSEGV action (`new`, when given), returns the one
/// before.
fn program_action(new: Option<SigAction>) -> SigAction {
    let mut p = PROGRAM.lock();
    let old = p.unwrap_or_else(SigAction::default_action);
    if let Some(n) = new {
        *p = Some(n);
    }
    old
}

/// `sigaction(2)`: glibc's, except that with a guard mode on, SIGSEGV's
/// action is the program's view only: the guard handler stays installed
/// and hands every fault that is not a guard page's to it.
///
/// # Safety
/// The C contract of `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(sig: i32, act: *const SigAction, old: *mut SigAction) -> i32 {
    if !keeps_segv(sig) {
        // SAFETY: forwarded.
        return unsafe { signal::raw_sigaction(sig, act, old) };
    }
    // SAFETY: the caller's pointers, read and written outside the lock.
    let new = unsafe { act.as_ref() }.copied();
    let before = program_action(new);
    if !old.is_null() {
        // SAFETY: as above.
        unsafe { old.write(before) };
    }
    0
}

/// `signal(3)` and its aliases, for SIGSEGV under a guard mode: as glibc
/// sets it (the signal blocked in its handler, `flags`), kept aside like
/// [`sigaction`]'s.
fn set_program_handler(
    sig: i32,
    handler: libc::sighandler_t,
    flags: i32,
    real: &Real,
) -> libc::sighandler_t {
    if !keeps_segv(sig) {
        return real.call(sig, handler);
    }
    let mut act = SigAction::default_action();
    act.set_handler(handler, flags);
    act.block(sig);
    program_action(Some(act)).handler()
}

/// glibc's `signal` form of that name (NUL-terminated), found once.
struct Real {
    name: &'static [u8],
    addr: AtomicUsize,
}

impl Real {
    const fn new(name: &'static [u8]) -> Real {
        Real {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    fn call(&self, sig: i32, h: libc::sighandler_t) -> libc::sighandler_t {
        let mut f = self.addr.load(Relaxed);
        if f == 0 {
            // SAFETY: dlsym with a NUL-terminated name.
            f = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) } as usize;
            if f == 0 {
                return libc::SIG_ERR;
            }
            self.addr.store(f, Relaxed);
        }
        // SAFETY: glibc's `sighandler_t (*)(int, sighandler_t)`.
        let f: extern "C" fn(i32, libc::sighandler_t) -> libc::sighandler_t =
            unsafe { core::mem::transmute(f) };
        f(sig, h)
    }
}

static REAL_SIGNAL: Real = Real::new(b"signal\0");
static REAL_BSD_SIGNAL: Real = Real::new(b"bsd_signal\0");
static REAL_SSIGNAL: Real = Real::new(b"ssignal\0");
static REAL_SYSV_SIGNAL: Real = Real::new(b"sysv_signal\0");
static REAL___SYSV_SIGNAL: Real = Real::new(b"__sysv_signal\0");

/// `signal(3)` (BSD semantics, glibc's default).
#[unsafe(no_mangle)]
pub extern "C" fn signal(sig: i32, h: libc::sighandler_t) -> libc::sighandler_t {
    set_program_handler(sig, h, SA_RESTART, &REAL_SIGNAL)
}

/// `bsd_signal(3)`: glibc's `signal`.
#[unsafe(no_mangle)]
pub extern "C" fn bsd_signal(sig: i32, h: libc::sighandler_t) -> libc::sighandler_t {
    set_program_handler(sig, h, SA_RESTART, &REAL_BSD_SIGNAL)
}

/// `ssignal(3)`: glibc's `signal`.
#[unsafe(no_mangle)]
pub extern "C" fn ssignal(sig: i32, h: libc::sighandler_t) -> libc::sighandler_t {
    set_program_handler(sig, h, SA_RESTART, &REAL_SSIGNAL)
}

/// `sysv_signal(3)`: one-shot (reset on delivery), not blocked.
#[unsafe(no_mangle)]
pub extern "C" fn sysv_signal(sig: i32, h: libc::sighandler_t) -> libc::sighandler_t {
    set_program_handler(sig, h, SA_RESETHAND | SA_NODEFER, &REAL_SYSV_SIGNAL)
}

/// `__sysv_signal`: what `signal` is under strict ISO C (`gcc -std=c99`).
#[unsafe(no_mangle)]
pub extern "C" fn __sysv_signal(sig: i32, h: libc::sighandler_t) -> libc::sighandler_t {
    set_program_handler(sig, h, SA_RESETHAND | SA_NODEFER, &REAL___SYSV_SIGNAL)
}

pub fn lock_for_fork() {
    PROGRAM.raw_lock();
}

pub fn unlock_after_fork() {
    // SAFETY: taken by lock_for_fork in this thread before the fork.
    unsafe { PROGRAM.raw_unlock() };
}

unsafe extern "C" fn on_segv(sig: i32, info: *mut SigInfo, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a siginfo and a ucontext.
    let (addr, uc) = unsafe { ((*info).addr, &*(ctx as *const libc::ucontext_t)) };
    let g = &uc.uc_mcontext.gregs;
    if tls::inside(|| handle(addr, g)) {
        return;
    }
    // Not ours: the program's action (the one before ours, or the one it
    // set since). A one-shot handler is spent once called.
    let prog = {
        let mut p = PROGRAM.lock();
        let a = p.unwrap_or_else(SigAction::default_action);
        if a.flags() & SA_RESETHAND != 0 {
            *p = Some(SigAction::default_action());
        }
        a
    };
    // SAFETY: from the SIGSEGV handler, with its arguments.
    unsafe { signal::chain(sig, info, ctx, &prog) }
}

/// Whether a fault with `stack` lies inside a checked call: in one of the
/// checker's interceptors, or in glibc's function it called (every frame
/// inside the checker's innermost one is glibc's). The interceptor checks
/// the bytes the call touches itself, before glibc's function runs
/// (`memcpy`) or after it (`strlen` must find the length first, `fgets`
/// fill the buffer), and reports them with the call's name and the first
/// bad byte: a report of the fault too was the same bug twice (and a
/// fault on a read-ahead past a `memchr` match, no bug). A fault in the
/// program's own code below one of the checker's frames (a `new_handler`
/// that `operator new` calls) is not in a checked call.
fn in_checked_call(stack: memkit_trace::depot::StackId) -> bool {
    let frames = memkit_trace::depot::frames(stack);
    let own = stacks::own();
    let module = |f| memkit_trace::unwind::split(f).0;
    let Some(i) = frames.iter().position(|&f| module(f) == own) else {
        return false;
    };
    frames[..i].iter().all(|&f| {
        memkit_trace::modules::info(module(f))
            .is_some_and(|m| m.path.rsplit('/').next() == Some("libc.so.6"))
    })
}

/// Reports a fault on a guarded block; false when `addr` is not ours.
fn handle(addr: usize, g: &[libc::greg_t; 23]) -> bool {
    let Some((start, end, user, quarantined)) = block::guarded_at(addr) else {
        return false;
    };
    let write = g[libc::REG_ERR as usize] & 2 != 0;
    let regs = memkit_trace::unwind::Regs {
        pc: g[libc::REG_RIP as usize] as usize,
        sp: g[libc::REG_RSP as usize] as usize,
        bp: g[libc::REG_RBP as usize] as usize,
    };
    let stack = stacks::at(regs);
    let access = if write { "WRITE" } else { "READ" };
    let Some(m) = block::containing(user) else {
        return false;
    };
    let kind = if quarantined {
        "use-after-free"
    } else {
        "heap-buffer-overflow"
    };
    if !in_checked_call(stack) {
        let message = format!("{access} of memory at {addr:#x} (a guard page fault)");
        report::emit(block::block_report(kind, message, &m, addr, stack));
    }
    // Let the program go on: the freed block's pages, or the guard page,
    // become accessible (later faults on them are no longer seen).
    if quarantined {
        reopen(start, end - start + PAGE);
    } else {
        reopen(end, PAGE);
    }
    true
}
