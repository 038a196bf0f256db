//! Signals: their names, for messages a user can act on ("SIGSEGV" says
//! more than "11"; the one table memkit's CLI, tests and benchmarks share),
//! and the actions of fault handlers ([`sigaction`], [`chain`]: install a
//! handler, hand the faults that are not ours to the one before).

use core::ffi::c_void;
use core::fmt;

use rustix::process::Signal;

/// Every standard signal, by rustix's numbering of this target.
const NAMES: [(Signal, &str); 31] = [
    (Signal::HUP, "SIGHUP"),
    (Signal::INT, "SIGINT"),
    (Signal::QUIT, "SIGQUIT"),
    (Signal::ILL, "SIGILL"),
    (Signal::TRAP, "SIGTRAP"),
    (Signal::ABORT, "SIGABRT"),
    (Signal::BUS, "SIGBUS"),
    (Signal::FPE, "SIGFPE"),
    (Signal::KILL, "SIGKILL"),
    (Signal::USR1, "SIGUSR1"),
    (Signal::SEGV, "SIGSEGV"),
    (Signal::USR2, "SIGUSR2"),
    (Signal::PIPE, "SIGPIPE"),
    (Signal::ALARM, "SIGALRM"),
    (Signal::TERM, "SIGTERM"),
    (Signal::STKFLT, "SIGSTKFLT"),
    (Signal::CHILD, "SIGCHLD"),
    (Signal::CONT, "SIGCONT"),
    (Signal::STOP, "SIGSTOP"),
    (Signal::TSTP, "SIGTSTP"),
    (Signal::TTIN, "SIGTTIN"),
    (Signal::TTOU, "SIGTTOU"),
    (Signal::URG, "SIGURG"),
    (Signal::XCPU, "SIGXCPU"),
    (Signal::XFSZ, "SIGXFSZ"),
    (Signal::VTALARM, "SIGVTALRM"),
    (Signal::PROF, "SIGPROF"),
    (Signal::WINCH, "SIGWINCH"),
    (Signal::IO, "SIGIO"),
    (Signal::POWER, "SIGPWR"),
    (Signal::SYS, "SIGSYS"),
];

/// The conventional name of signal `sig` (`"SIGSEGV"`); `None` for numbers
/// that are no standard signal, e.g. real-time signals.
pub fn name(sig: i32) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|(s, _)| s.as_raw() == sig)
        .map(|&(_, name)| name)
}

/// Displays as "signal 11 (SIGSEGV)", or "signal 40" without a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Described(pub i32);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match name(self.0) {
            Some(name) => write!(f, "signal {} ({name})", self.0),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// [`Described`] for `sig`.
pub fn describe(sig: i32) -> Described {
    Described(sig)
}

/// `SIGBUS`.
pub const SIGBUS: i32 = 7;
/// `BUS_ADRERR`: a `SIGBUS` from an access to a page that has no backing
/// (past the end of a mapped file).
pub const BUS_ADRERR: i32 = 2;
/// `sa_flags`: the handler takes `(sig, siginfo, context)`.
pub const SA_SIGINFO: i32 = 4;
/// `sa_flags`: run on the alternate signal stack if the thread has one.
pub const SA_ONSTACK: i32 = 0x0800_0000;
/// `sa_flags`: the signal is not blocked while its handler runs.
pub const SA_NODEFER: i32 = 0x4000_0000;

/// The head of glibc's `siginfo_t` on x86_64 (128 bytes in all): what a
/// fault handler reads.
#[repr(C)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// An errno value, mostly 0.
    pub errno: i32,
    /// Why: > 0 for faults the kernel raised (`BUS_ADRERR` …), <= 0 for
    /// signals sent by a process (`SI_USER`, `SI_QUEUE`, `SI_TKILL`).
    pub code: i32,
    _pad: i32,
    /// The faulting address, for SIGSEGV and SIGBUS.
    pub addr: usize,
    _rest: [u64; 13],
}

/// A `SA_SIGINFO` handler.
pub type InfoHandler = unsafe extern "C" fn(i32, *mut SigInfo, *mut c_void);

/// glibc's `struct sigaction` on x86_64 (the handler, a 1024-bit mask, the
/// flags, the restorer glibc fills in).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SigAction {
    handler: usize,
    mask: [u64; 16],
    flags: i32,
    restorer: usize,
}

/// What a [`SigAction`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// `SIG_DFL`.
    Default,
    /// `SIG_IGN`.
    Ignore,
    /// A handler taking the signal number only.
    Plain(usize),
    /// A `SA_SIGINFO` handler.
    Info(usize),
}

impl SigAction {
    /// `handler` with `SA_SIGINFO | flags`, blocking no further signals.
    pub fn with_info(handler: InfoHandler, flags: i32) -> SigAction {
        SigAction {
            handler: handler as usize,
            mask: [0; 16],
            flags: flags | SA_SIGINFO,
            restorer: 0,
        }
    }

    /// `SIG_DFL`.
    pub fn default_action() -> SigAction {
        SigAction {
            handler: 0,
            mask: [0; 16],
            flags: 0,
            restorer: 0,
        }
    }

    /// What it does.
    pub fn disposition(&self) -> Disposition {
        match self.handler {
            0 => Disposition::Default,
            1 => Disposition::Ignore,
            h if self.flags & SA_SIGINFO != 0 => Disposition::Info(h),
            h => Disposition::Plain(h),
        }
    }
}

impl SigAction {
    /// The handler word (`SIG_DFL` 0, `SIG_IGN` 1, or a function).
    pub fn handler(&self) -> usize {
        self.handler
    }

    /// `sa_flags`.
    pub fn flags(&self) -> i32 {
        self.flags
    }

    /// Sets the handler word and the flags (`signal(3)` builds its action
    /// so).
    pub fn set_handler(&mut self, handler: usize, flags: i32) {
        self.handler = handler;
        self.flags = flags;
    }

    /// Adds `sig` (1-64) to the signals blocked while the handler runs.
    pub fn block(&mut self, sig: i32) {
        if (1..=64).contains(&sig) {
            self.mask[0] |= 1 << (sig - 1);
        }
    }
}

unsafe extern "C" {
    /// glibc's `sigaction` under its own name: a library that interposes
    /// `sigaction` (libmemkit_check.so) reaches glibc's, not itself.
    #[link_name = "__sigaction"]
    fn libc_sigaction(sig: i32, new: *const SigAction, old: *mut SigAction) -> i32;
}

/// glibc's `sigaction(sig, new, old)` as C calls it (null `new` or `old`
/// allowed): 0, or -1 with errno set.
///
/// # Safety
/// The C contract of `sigaction`.
pub unsafe fn raw_sigaction(sig: i32, new: *const SigAction, old: *mut SigAction) -> i32 {
    // SAFETY: forwarded.
    unsafe { libc_sigaction(sig, new, old) }
}

/// `sigaction(sig, new, &old)` through libc (glibc supplies the restorer
/// that returns from a handler); returns the action in force before. With
/// `new` `None`, only reads it. Fails (EINVAL) only for a signal that
/// cannot be caught.
///
/// # Safety
/// A handler in `new` must be async-signal-safe and valid for as long as
/// it stays installed.
pub unsafe fn sigaction(sig: i32, new: Option<&SigAction>) -> Result<SigAction, crate::Errno> {
    let mut old = SigAction::default_action();
    let new = new.map_or(core::ptr::null(), |a| a as *const SigAction);
    // SAFETY: valid pointers; the caller vouches for the handler.
    if unsafe { libc_sigaction(sig, new, &mut old) } != 0 {
        return Err(crate::Errno(22));
    }
    Ok(old)
}

/// Hands signal `sig`, which a fault handler found is not its own, to the
/// action that was in force before it (`prev`), so the process fares as it
/// would have without the handler: a previous handler is called with the
/// same arguments; for `SIG_DFL` (and `SIG_IGN`, which the kernel does not
/// honour for faults) a fault raised by the kernel resets the default
/// action and returns, so the faulting instruction runs again and the
/// process dies of it where it stood (same signal, same core dump); a
/// signal sent by a process is raised again under the default action, or
/// dropped if it was ignored.
///
/// # Safety
/// Only from a signal handler for `sig`, with the `info` and `ctx` it got.
pub unsafe fn chain(sig: i32, info: *mut SigInfo, ctx: *mut c_void, prev: &SigAction) {
    // SAFETY: the kernel's siginfo for this signal.
    let sent = unsafe { (*info).code } <= 0;
    match prev.disposition() {
        Disposition::Info(h) => {
            // SAFETY: a SA_SIGINFO handler installed for this signal.
            let h: InfoHandler = unsafe { core::mem::transmute(h) };
            // SAFETY: its own contract: called as the kernel would.
            unsafe { h(sig, info, ctx) }
        }
        Disposition::Plain(h) => {
            // SAFETY: a handler installed for this signal.
            let h: extern "C" fn(i32) = unsafe { core::mem::transmute(h) };
            h(sig)
        }
        Disposition::Ignore if sent => {}
        Disposition::Default | Disposition::Ignore => {
            // SAFETY: SIG_DFL needs no handler.
            let _ = unsafe { sigaction(sig, Some(&SigAction::default_action())) };
            if sent {
                if let Some(s) = Signal::from_named_raw(sig) {
                    let _ = rustix::process::kill_process(rustix::process::getpid(), s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn names_and_descriptions() {
        assert_eq!(name(11), Some("SIGSEGV"));
        assert_eq!(name(6), Some("SIGABRT"));
        assert_eq!(name(31), Some("SIGSYS"));
        assert_eq!(name(0), None);
        assert_eq!(name(40), None);
        assert_eq!(describe(11).to_string(), "signal 11 (SIGSEGV)");
        assert_eq!(describe(9).to_string(), "signal 9 (SIGKILL)");
        assert_eq!(describe(40).to_string(), "signal 40");
        // 1 to 31, each once.
        for sig in 1..=31 {
            assert!(name(sig).is_some(), "{sig}");
        }
    }
}
