//! How each process under `memkit run` ended, from what its record says
//! (did its exit handlers run, with which status) and what memkit saw
//! itself: the wait status of the program and of the orphans it reaped as
//! their subreaper, and whether the process still runs.

use std::fmt;

use memkit_sys::report_file::State;
use memkit_sys::signal;
use serde_json::{json, Map, Value as Json};

use crate::report::{ProcessReport, Termination};
use crate::report_dir::Found;

/// How a process ended, as far as memkit can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Exited with this status (`None`: its exit handlers ran, but neither
    /// they nor a wait status said with which).
    Exited(Option<i32>),
    /// Killed by this signal.
    Signaled(i32),
    /// Gone without running exit handlers, and its parent, not memkit,
    /// collected its status.
    Unknown,
    /// Still running when memkit run finished.
    Running,
}

/// One process's report: its record and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub record: ProcessReport,
    /// Its exit handlers ran, so the counters are those at exit; otherwise
    /// they are from the last refresh before it ended.
    pub exit_handlers: bool,
    pub ending: Ending,
}

impl Process {
    /// Combines a record with the wait status memkit collected for it, if
    /// any; `alive` is asked only when neither tells how it ended.
    pub fn new(found: Found, waited: Option<Termination>, alive: impl FnOnce() -> bool) -> Self {
        let exit_handlers = found.state == State::Exited;
        let ending = match waited {
            Some(Termination::Exited(code)) => Ending::Exited(Some(code)),
            Some(Termination::Signaled(sig)) => Ending::Signaled(sig),
            None if exit_handlers => Ending::Exited(found.status.map(i32::from)),
            None if alive() => Ending::Running,
            None => Ending::Unknown,
        };
        Process {
            record: found.record,
            exit_handlers,
            ending,
        }
    }

    /// Whether the process ended the ordinary way: `exit` (or a return from
    /// `main`), its exit handlers run.
    pub fn ended_normally(&self) -> bool {
        self.exit_handlers && matches!(self.ending, Ending::Exited(_))
    }

    /// The words in the `ended` key of the JSON report.
    fn kind(&self) -> &'static str {
        match self.ending {
            Ending::Exited(_) => "exited",
            Ending::Signaled(_) => "killed",
            Ending::Unknown => "unknown",
            Ending::Running => "running",
        }
    }

    /// The keys `--json` adds to the record's fields (documented in
    /// `memkit run --help`).
    pub fn json_fields(&self, object: &mut Map<String, Json>) {
        let (code, sig) = match self.ending {
            Ending::Exited(code) => (code, None),
            Ending::Signaled(sig) => (None, Some(sig)),
            Ending::Unknown | Ending::Running => (None, None),
        };
        object.insert("exit_handlers".to_owned(), json!(self.exit_handlers));
        object.insert("ended".to_owned(), json!(self.kind()));
        object.insert("exit_code".to_owned(), json!(code));
        object.insert("signal".to_owned(), json!(sig));
        object.insert("signal_name".to_owned(), json!(sig.and_then(signal::name)));
        object.insert("ending".to_owned(), json!(self.to_string()));
    }
}

/// How it ended, for people: "exit status 0", "killed by signal 9
/// (SIGKILL); counters as of its last refresh", ...
impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ending, self.exit_handlers) {
            (Ending::Exited(Some(code)), true) => write!(f, "exit status {code}")?,
            (Ending::Exited(None), true) => f.write_str("exited")?,
            (Ending::Exited(Some(code)), false) => write!(
                f,
                "exit status {code} without running exit handlers (_exit)"
            )?,
            (Ending::Exited(None), false) => f.write_str("exited without running exit handlers")?,
            (Ending::Signaled(sig), _) => write!(f, "killed by {}", signal::describe(sig))?,
            (Ending::Unknown, _) => f.write_str(
                "ended without running exit handlers (_exit, exec failure, or a signal)",
            )?,
            (Ending::Running, _) => f.write_str("still running when memkit run ended")?,
        }
        if !self.exit_handlers {
            f.write_str("; counters as of its last refresh")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(state: State, status: Option<u8>) -> Found {
        Found {
            start: 1,
            state,
            status,
            record: ProcessReport {
                pid: 7,
                ..ProcessReport::default()
            },
        }
    }

    fn process(
        state: State,
        status: Option<u8>,
        waited: Option<Termination>,
        alive: bool,
    ) -> Process {
        Process::new(found(state, status), waited, || alive)
    }

    #[test]
    fn every_ending_and_its_words() {
        use State::{Exited, Running};
        use Termination::{Exited as Code, Signaled};
        const STALE: &str = "; counters as of its last refresh";
        let cases = [
            // exit(3) seen by memkit, or only by the record.
            (
                process(Exited, Some(3), Some(Code(3)), false),
                "exit status 3",
                "exited",
            ),
            (
                process(Exited, Some(3), None, false),
                "exit status 3",
                "exited",
            ),
            (process(Exited, None, None, false), "exited", "exited"),
            // _exit(3) of the program or of a reaped orphan.
            (
                process(Running, None, Some(Code(3)), false),
                "exit status 3 without running exit handlers (_exit)",
                "exited",
            ),
            (
                process(Running, None, Some(Signaled(9)), true),
                "killed by signal 9 (SIGKILL)",
                "killed",
            ),
            // Killed while running its exit handlers: counters at exit.
            (
                process(Exited, None, Some(Signaled(6)), false),
                "killed by signal 6 (SIGABRT)",
                "killed",
            ),
            (
                process(Running, None, None, false),
                "ended without running exit handlers (_exit, exec failure, or a signal)",
                "unknown",
            ),
            (
                process(Running, None, None, true),
                "still running when memkit run ended",
                "running",
            ),
        ];
        for (p, words, kind) in cases {
            let text = p.to_string();
            let expect = if p.exit_handlers {
                words.to_owned()
            } else {
                format!("{words}{STALE}")
            };
            assert_eq!(text, expect);
            assert_eq!(p.kind(), kind, "{text}");
            assert_eq!(
                p.ended_normally(),
                p.exit_handlers && kind == "exited",
                "{text}"
            );
        }
    }

    #[test]
    fn alive_is_asked_only_when_nothing_else_tells() {
        let asked = std::cell::Cell::new(false);
        let ask = || {
            asked.set(true);
            true
        };
        Process::new(found(State::Exited, None), None, ask);
        Process::new(
            found(State::Running, None),
            Some(Termination::Exited(0)),
            ask,
        );
        assert!(!asked.get());
        Process::new(found(State::Running, None), None, ask);
        assert!(asked.get());
    }

    #[test]
    fn json_keys() {
        let mut o = Map::new();
        process(State::Running, None, Some(Termination::Signaled(9)), false).json_fields(&mut o);
        assert_eq!(o["exit_handlers"], false);
        assert_eq!(o["ended"], "killed");
        assert_eq!(o["exit_code"], Json::Null);
        assert_eq!(o["signal"], 9);
        assert_eq!(o["signal_name"], "SIGKILL");
        assert_eq!(
            o["ending"],
            "killed by signal 9 (SIGKILL); counters as of its last refresh"
        );
        let mut o = Map::new();
        process(State::Exited, Some(0), None, false).json_fields(&mut o);
        assert_eq!(o["exit_code"], 0);
        assert_eq!(o["signal_name"], Json::Null);
        assert_eq!(o["ending"], "exit status 0");
    }
}
