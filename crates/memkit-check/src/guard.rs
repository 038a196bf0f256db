//! `guard=all` and `guard=sample`: blocks placed against a guard page, and
//! kept inaccessible while in quarantine, so that an overflow past the end
//! or any access after free — reads too — faults at the instruction that
//! does it (Electric Fence's and GWP-ASan's idea). The SIGSEGV handler
//! knows the guarded blocks: it reports the access (with the stack of the
//! faulting instruction, unwound from the signal context), makes the page
//! accessible so the program can go on (or stops, with `halt_on_error`),
//! and passes every other fault to the handler that was there before.
//!
//! Each guarded block is its own mapping: the data pages (the block ends
//! at the guard page, its last bytes up to 16-byte alignment are red
//! zone) and one `PROT_NONE` page. Two mappings per live block:
//! `vm.max_map_count` (65530 by default) bounds the live guarded blocks to
//! about 32000; when a mapping is refused the block is allocated unguarded.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

use crate::options::{self, Guard};
use crate::report;
use crate::{block, stacks, tls};

pub const PAGE: usize = 4096;

static SAMPLE_COUNTER: AtomicU64 = AtomicU64::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

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
}

fn reopen(start: usize, len: usize) {
    // SAFETY: pages of a guarded mapping of ours.
    let _ = unsafe {
        memkit_sys::protect::protect(start as *mut u8, len, memkit_sys::protect::Prot::ReadWrite)
    };
}

/// The SIGSEGV action before ours (set once, at install; read by the
/// handler with one atomic load).
static OLD: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

/// Installs the SIGSEGV handler (when a guard mode is on).
pub fn install() {
    if matches!(options::get().guard, Guard::None) {
        return;
    }
    // SAFETY: installing a handler, with zeroed then filled sigactions.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = core::mem::zeroed();
        // The old action is known before ours can run: set it first.
        libc::sigaction(libc::SIGSEGV, core::ptr::null(), &mut old);
        let _ = OLD.set(old);
        libc::sigaction(libc::SIGSEGV, &sa, core::ptr::null_mut());
    }
}

extern "C" fn on_segv(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a siginfo and a ucontext.
    let (addr, uc) = unsafe {
        (
            (*info).si_addr() as usize,
            &*(ctx as *const libc::ucontext_t),
        )
    };
    let g = &uc.uc_mcontext.gregs;
    if tls::inside(|| handle(addr, g)) {
        return;
    }
    // Not ours: the handler that was there before.
    let Some(old) = OLD.get() else {
        // SAFETY: resetting to the default action.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        return;
    };
    // SAFETY: `old` is the action sigaction reported at install.
    unsafe {
        match old.sa_sigaction {
            libc::SIG_IGN if (*info).si_code <= 0 => {}
            libc::SIG_DFL | libc::SIG_IGN => {
                // A fault: re-executing the instruction faults again, with
                // the default action, and the process dies by SIGSEGV as
                // before. A signal sent by kill is sent again.
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                if (*info).si_code <= 0 {
                    libc::raise(libc::SIGSEGV);
                }
            }
            f if old.sa_flags & libc::SA_SIGINFO != 0 => {
                let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                    core::mem::transmute(f);
                f(sig, info, ctx)
            }
            f => {
                let f: extern "C" fn(i32) = core::mem::transmute(f);
                f(sig)
            }
        }
    }
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
    let message = format!("{access} of memory at {addr:#x} (a guard page fault)");
    report::emit(block::block_report(kind, message, &m, addr, stack));
    // Let the program go on: the freed block's pages, or the guard page,
    // become accessible (later faults on them are no longer seen).
    if quarantined {
        reopen(start, end - start + PAGE);
    } else {
        reopen(end, PAGE);
    }
    true
}
