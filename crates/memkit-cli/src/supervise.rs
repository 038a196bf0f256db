//! Running the program of `memkit run` and `memkit profile` as a
//! supervised child: memkit survives the signals meant for the program
//! (passing on those sent to memkit alone), is the subreaper of its
//! descendants, and learns how each of them ended.

use std::fs;
use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use memkit::describe_io;
use memkit_sys::report_file;

use crate::error::CliError;
use crate::report::Termination;
use crate::run::spawn_error;

/// A process memkit reaped: the program, or an orphan of its descendants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub pid: u32,
    /// Its start time, read while it was a zombie (None: unreadable).
    pub start: Option<u64>,
    pub termination: Termination,
}

/// The start time of process `pid` (a zombie's too).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    report_file::stat_start_time(&stat)
}

/// Before the program starts: the signal handlers and the subreaper.
pub fn prepare() -> Result<(), CliError> {
    install_signal_handlers()?;
    become_subreaper();
    Ok(())
}

/// Starts `command` (after [`prepare`]) as the child signals are passed
/// on to; it is reaped by [`wait_for_child`], never through a `Child`.
pub fn spawn(command: &mut Command, program_name: &str) -> Result<libc::pid_t, CliError> {
    let child = command
        .spawn()
        .map_err(|err| spawn_error(program_name, &err))?;
    let pid = child.id();
    let pid_t = libc::pid_t::try_from(pid)
        .map_err(|_| CliError::new(format!("child pid {pid} out of range")))?;
    CHILD_PID.store(pid_t, Ordering::SeqCst);
    // A signal that arrived between spawn and the store above found no child
    // to forward to; pass it on now (the program may already be running).
    let pending = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
    if pending > 0 {
        // SAFETY: the child is unreaped, so its pid is still ours.
        unsafe { libc::kill(pid_t, pending) };
    }
    // From here on the child is reaped with wait4 (for its rusage), never
    // through `child`; dropping it neither waits nor kills.
    drop(child);
    Ok(pid_t)
}

/// Makes memkit the parent of every orphan among the program's
/// descendants, so that it learns how they ended. Best effort.
fn become_subreaper() {
    // SAFETY: prctl with these arguments changes only a process attribute.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Pid of the running child for the signal handler; 0 when there is none.
static CHILD_PID: AtomicI32 = AtomicI32::new(0);
/// A signal to forward that arrived before CHILD_PID was known.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Keeps memkit alive until the child is gone, so the report is never lost.
///
/// Signals from the terminal (Ctrl-C, Ctrl-\, hangup) already reach the
/// child, which shares our process group; memkit just survives them and
/// lets the child decide. Signals sent to memkit alone by another process
/// (`kill <memkit pid>`) are passed on to the child, since the sender meant
/// to stop the program, not the wrapper. Handlers (not SIG_IGN) are used
/// because exec resets handlers but inherits ignored signals, which would
/// make the child immune to Ctrl-C. A signal memkit itself was started
/// with ignored (e.g. SIGINT for a background job of a script) is left
/// ignored, so the child inherits that just as it would without memkit.
fn install_signal_handlers() -> Result<(), CliError> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: sigaction is plain data; all-zero is a valid value.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only queries; `old` is writable.
        let queried = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0;
        if queried && old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: sigaction is plain data; all-zero is a valid value that we
        // fill in before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised, the handler has the
        // SA_SIGINFO signature and only does async-signal-safe work.
        if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } != 0 {
            return Err(CliError::new(format!(
                "cannot install a handler for {}: {}",
                memkit_sys::signal::describe(sig),
                describe_io(&io::Error::last_os_error())
            )));
        }
    }
    Ok(())
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: errno is thread-local and always addressable; it is saved and
    // restored so the interrupted code never sees kill()'s errno.
    let errno = unsafe { *libc::__errno_location() };
    let child = CHILD_PID.load(Ordering::SeqCst);
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t to SA_SIGINFO handlers.
        let (code, sender) = unsafe { ((*info).si_code, (*info).si_pid()) };
        // si_code <= 0 means a process sent it (SI_USER, SI_QUEUE, SI_TKILL);
        // terminal signals carry SI_KERNEL and reached the child already.
        if code <= 0 && child == 0 {
            // The child is being spawned: run() forwards it once it knows the pid.
            PENDING_SIGNAL.store(sig, Ordering::SeqCst);
        } else if code <= 0 && sender != child {
            // SAFETY: kill is async-signal-safe; `child` is still unreaped
            // (CHILD_PID is cleared before wait4 reaps it), so the pid
            // cannot have been reused by another process.
            unsafe { libc::kill(child, sig) };
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Waits for the child to terminate and reaps it, returning how it ended
/// and its peak RSS in bytes. Orphans that end meanwhile are reaped too,
/// into `reaped`, as is the child.
///
/// Waiting happens in two steps so the signal handler can never forward a
/// signal to a recycled pid: waitid(WNOWAIT) leaves the child a zombie
/// (its pid stays reserved) while CHILD_PID is cleared, then wait4 reaps it
/// and collects its rusage.
pub fn wait_for_child(
    pid: libc::pid_t,
    reaped: &mut Vec<Reaped>,
) -> Result<(Termination, Option<u64>), CliError> {
    loop {
        // SAFETY: siginfo_t is plain data and all-zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(CliError::new(format!(
                "cannot wait for the child: {}",
                describe_io(&err)
            )));
        }
        // SAFETY: waitid filled in a child's siginfo.
        let who = unsafe { info.si_pid() };
        if who == pid {
            break;
        }
        reap_orphan(&info, reaped);
    }
    CHILD_PID.store(0, Ordering::SeqCst);
    let start = start_time(pid as u32);

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data and all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid and writable.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if rc != -1 || err.kind() != io::ErrorKind::Interrupted {
            return Err(CliError::new(format!(
                "cannot wait for the child: {}",
                describe_io(&err)
            )));
        }
    }

    let termination = if libc::WIFSIGNALED(status) {
        Termination::Signaled(libc::WTERMSIG(status))
    } else {
        Termination::Exited(libc::WEXITSTATUS(status))
    };
    reaped.push(Reaped {
        pid: pid as u32,
        start,
        termination,
    });
    // Linux reports ru_maxrss in KiB.
    let peak_rss = u64::try_from(usage.ru_maxrss)
        .ok()
        .filter(|&kib| kib > 0)
        .map(|kib| kib.saturating_mul(1024));
    Ok((termination, peak_rss))
}

/// Reaps the orphans that have ended by now (the program's children that
/// outlived it become memkit's); those still running are left alone.
pub fn reap_orphans(reaped: &mut Vec<Reaped>) {
    loop {
        // SAFETY: siginfo_t is plain data and all-zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        if rc != 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return; // ECHILD: no children left
        }
        // SAFETY: waitid filled in the siginfo (si_pid 0: nobody ended).
        if unsafe { info.si_pid() } == 0 {
            return;
        }
        reap_orphan(&info, reaped);
    }
}

/// Reaps the ended orphan `info` describes (left a zombie by WNOWAIT, so
/// that its start time could still be read).
fn reap_orphan(info: &libc::siginfo_t, reaped: &mut Vec<Reaped>) {
    // SAFETY: a siginfo filled in by waitid for a child that ended.
    let (who, code, value) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    let start = start_time(who as u32);
    let termination = if code == libc::CLD_EXITED {
        Termination::Exited(value)
    } else {
        Termination::Signaled(value)
    };
    loop {
        // SAFETY: a null status pointer is allowed.
        let rc = unsafe { libc::waitpid(who, std::ptr::null_mut(), 0) };
        if rc != -1 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    reaped.push(Reaped {
        pid: who as u32,
        start,
        termination,
    });
}
