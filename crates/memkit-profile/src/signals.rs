//! A program stopped with Ctrl-C or `kill` (SIGINT, SIGTERM, SIGHUP) still
//! leaves its profile: servers are profiled that way. For each of these
//! signals whose action is the default when the library starts, a handler
//! writes the profile, restores the default action and raises the signal
//! again, so the process still dies of it (same status for the parent).
//! A program that installs its own handler replaces ours and ends as it
//! chooses (through `exit`, which writes the profile).
//!
//! The program does not see our handler: the [`sigaction`] export reads
//! it back as `SIG_DFL` (the action it stands for), and a `SIG_DFL` the
//! program sets installs it again. Before, Python read these signals'
//! actions as foreign C handlers (`signal.getsignal` gave `None`): it left
//! SIGINT without its `KeyboardInterrupt` handler, and restoring a saved
//! `None` raised TypeError (multiprocessing's forkserver children died,
//! the pool waited forever). glibc's `signal(3)` forms (`signal`,
//! `bsd_signal`, `sysv_signal`, `sigset`) set the action inside glibc,
//! past the export: [`signal`] and its kin wrap them the same way.
//!
//! Writing allocates (from the core) and takes the profiler's lock, which
//! is unsafe in a handler that interrupted an allocation on the same
//! thread: every allocation entry point runs [`guarded`], and a signal
//! that arrives inside one is only noted; the entry point finishes the
//! job on its way out.

use core::ffi::CStr;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering::Relaxed};

use memkit_sys::signal::{self, SigAction, SigInfo};

use crate::tls;

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const SIGNALS: [i32; 3] = [SIGHUP, SIGINT, SIGTERM];

/// A terminating signal that arrived inside an entry point (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

unsafe extern "C" {
    fn raise(sig: i32) -> i32;
}

/// Our action for a signal of [`SIGNALS`].
fn ours() -> SigAction {
    SigAction::with_info(on_signal, 0)
}

/// Whether `a` is our handler.
fn is_ours(a: &SigAction) -> bool {
    a.disposition() == signal::Disposition::Info(on_signal as signal::InfoHandler as usize)
}

/// Installs the handler for each signal still at its default action.
pub fn install() {
    for sig in SIGNALS {
        // SAFETY: reading the action only.
        let Ok(old) = (unsafe { signal::sigaction(sig, None) }) else {
            continue;
        };
        if old.disposition() == signal::Disposition::Default {
            // SAFETY: on_signal only notes the signal, or writes the
            // profile when no allocation of this thread is under way.
            let _ = unsafe { signal::sigaction(sig, Some(&ours())) };
        }
    }
}

/// `sigaction(2)`: glibc's, except that for SIGHUP, SIGINT and SIGTERM
/// our handler reads back as `SIG_DFL`, and `SIG_DFL` installs it.
///
/// # Safety
/// The C contract of `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(sig: i32, act: *const SigAction, old: *mut SigAction) -> i32 {
    if !SIGNALS.contains(&sig) {
        // SAFETY: forwarded.
        return unsafe { signal::raw_sigaction(sig, act, old) };
    }
    let substitute;
    let mut act = act;
    // SAFETY: the caller's pointer, null or valid.
    if let Some(a) = unsafe { act.as_ref() } {
        if a.disposition() == signal::Disposition::Default {
            substitute = ours();
            act = &substitute;
        }
    }
    // SAFETY: forwarded, with our action in place of SIG_DFL.
    let r = unsafe { signal::raw_sigaction(sig, act, old) };
    // SAFETY: as above; written by glibc when r is 0.
    if r == 0 && !old.is_null() && is_ours(unsafe { &*old }) {
        // SAFETY: as above.
        unsafe { old.write(SigAction::default_action()) };
    }
    r
}

/// A `signal(3)` handler (`SIG_DFL` 0, `SIG_IGN` 1, `SIG_ERR` -1 too).
type Handler = usize;

const SIG_DFL: Handler = 0;
const SIG_ERR: Handler = usize::MAX;

/// glibc's function `name` (found on first use, kept in `slot`), called
/// with `sig` and `h`. For SIGHUP, SIGINT and SIGTERM our handler comes
/// back as `SIG_DFL`, and `SIG_DFL` set puts it back, as [`sigaction`].
fn wrap(slot: &AtomicUsize, name: &CStr, sig: i32, h: Handler) -> Handler {
    let mut f = slot.load(Relaxed);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name.
        f = tls::inside(|| unsafe { crate::dlsym(crate::RTLD_NEXT, name.as_ptr()) }) as usize;
        if f == 0 {
            return SIG_ERR;
        }
        slot.store(f, Relaxed);
    }
    // SAFETY: glibc's signal(3) form `name`, which has this type.
    let real: unsafe extern "C" fn(i32, Handler) -> Handler = unsafe { core::mem::transmute(f) };
    // SAFETY: forwarded: the caller's handler, under the C contract.
    let old = unsafe { real(sig, h) };
    if old == SIG_ERR || !SIGNALS.contains(&sig) {
        return old;
    }
    if h == SIG_DFL {
        // SAFETY: as in `install`.
        let _ = unsafe { signal::sigaction(sig, Some(&ours())) };
    }
    if old == on_signal as signal::InfoHandler as usize {
        SIG_DFL
    } else {
        old
    }
}

macro_rules! signal_form {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The C contract of `signal(3)`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(sig: i32, h: Handler) -> Handler {
            static REAL: AtomicUsize = AtomicUsize::new(0);
            let name = concat!(stringify!($name), "\0");
            let name = CStr::from_bytes_with_nul(name.as_bytes()).unwrap_or(c"signal");
            wrap(&REAL, name, sig, h)
        }
    };
}

signal_form!(
    /// `signal(3)` (BSD semantics), seen as through [`sigaction`].
    signal
);
signal_form!(
    /// `bsd_signal(3)`, glibc's other name for `signal`.
    bsd_signal
);
signal_form!(
    /// `sysv_signal(3)` (a handler reset to `SIG_DFL` on delivery).
    sysv_signal
);
signal_form!(
    /// `__sysv_signal`, the name `<signal.h>` gives `sysv_signal`.
    __sysv_signal
);
signal_form!(
    /// `sigset(3)`, System V's.
    sigset
);

unsafe extern "C" fn on_signal(sig: i32, _info: *mut SigInfo, _ctx: *mut core::ffi::c_void) {
    if tls::me().in_export.get() != 0 {
        PENDING.store(sig, Relaxed);
        return;
    }
    finish(sig);
}

/// Writes the profile, then dies of `sig` under its default action.
fn finish(sig: i32) {
    let name = match sig {
        SIGHUP => "signal SIGHUP",
        SIGINT => "signal SIGINT",
        _ => "signal SIGTERM",
    };
    crate::write_profile(name);
    // SAFETY: the default action, then the signal again: delivered (and
    // fatal) as soon as the handler returns and unblocks it.
    unsafe {
        let _ = signal::sigaction(sig, Some(&SigAction::default_action()));
        raise(sig);
    }
}

/// Runs one allocation entry point; a terminating signal that arrived
/// meanwhile is acted on at its end.
#[inline(always)]
pub fn guarded<R>(f: impl FnOnce() -> R) -> R {
    let t = enter();
    let r = f();
    leave(t);
    r
}

/// [`guarded`]'s start, for callers that want no closure (an entry point
/// whose body is then inlined whole): `leave` must follow.
#[inline(always)]
pub fn enter() -> &'static tls::Thread {
    let t = tls::me();
    t.in_export.set(t.in_export.get() + 1);
    t
}

/// [`guarded`]'s end.
#[inline(always)]
pub fn leave(t: &tls::Thread) {
    t.in_export.set(t.in_export.get() - 1);
    if PENDING.load(Relaxed) != 0 && t.in_export.get() == 0 {
        deliver();
    }
}

#[cold]
#[inline(never)]
fn deliver() {
    let sig = PENDING.swap(0, Relaxed);
    if sig != 0 {
        finish(sig);
    }
}
