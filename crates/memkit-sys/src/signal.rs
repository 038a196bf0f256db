//! The names of signals, for messages a user can act on ("SIGSEGV" says
//! more than "11"): the one table memkit's CLI, tests and benchmarks share.

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
