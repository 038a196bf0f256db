//! The reports of `memkit run`: the records libmemkit.so keeps for each
//! process (their format, and its decoder, are `memkit_sys::report`,
//! shared with the library; where they are kept: `report_dir`), and the
//! report printed from them.
//!
//! A bad record is a warning, never fatal: one corrupt file must not hide
//! the other processes' reports. Unknown keys are skipped (a newer library
//! may add counters); a missing or malformed field rejects its record
//! rather than showing a wrong number.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use memkit_sys::report::{self, DecodeError, Escaped, Record, Value};
use memkit_sys::signal;
use serde_json::{json, Value as Json};

use crate::ending::Process;
use crate::human;

/// One process's counters, as written by libmemkit.so, with its
/// executable's path decoded (lossily where it is not UTF-8: it is shown,
/// never used to open the file).
pub type ProcessReport = Record<String>;

/// Decodes one record line.
pub fn parse_line(line: &str) -> Result<ProcessReport, DecodeError<'_>> {
    report::decode(line).map(|r| r.map_paths(|p| path_text(&p)))
}

fn path_text(p: &Escaped<'_>) -> String {
    String::from_utf8_lossy(&p.bytes().collect::<Vec<u8>>()).into_owned()
}

/// A process as JSON: every field of its record, by its name, then how it
/// ended.
fn process_json(p: &Process) -> Json {
    let mut object = record_json(&p.record);
    p.json_fields(&mut object);
    Json::Object(object)
}

/// Every field of a record, by its name.
fn record_json(p: &ProcessReport) -> serde_json::Map<String, Json> {
    p.fields()
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Count(n) => json!(n),
                Value::Path(path) => json!(path),
            };
            (name.to_owned(), value)
        })
        .collect()
}

/// Keeps warnings to one terminal line even if a file holds binary junk.
pub fn excerpt(line: &str) -> String {
    const MAX: usize = 120;
    let cleaned: String = line
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    match cleaned.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &cleaned[..cut]),
        None => cleaned,
    }
}

/// How the program run by `memkit run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
}

impl Termination {
    /// The status a shell would report, so `memkit run` is transparent in
    /// scripts: the child's code, or 128+signal.
    pub fn shell_status(self) -> u8 {
        let status = match self {
            Termination::Exited(code) => code,
            Termination::Signaled(sig) => 128 + sig,
        };
        u8::try_from(status & 0xff).unwrap_or(u8::MAX)
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Termination::Exited(code) => write!(f, "exit status {code}"),
            Termination::Signaled(sig) => write!(f, "killed by {}", signal::describe(sig)),
        }
    }
}

/// Everything known about one `memkit run` once the child has exited.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The program as the user typed it.
    pub program: String,
    pub pid: u32,
    pub termination: Termination,
    pub elapsed: Duration,
    /// From the child's rusage; `None` if the kernel did not tell us.
    pub peak_rss: Option<u64>,
    /// One entry per process that ran on libmemkit.so, in the order they
    /// started.
    pub processes: Vec<Process>,
    pub warnings: Vec<String>,
}

/// Most processes the text report lists.
pub const LISTED: usize = 20;

/// The last component of an executable's path ("?" when unknown).
fn exe_name(exe: &str) -> &str {
    match exe.rsplit('/').next() {
        Some(name) if !name.is_empty() => name,
        _ => "?",
    }
}

/// Counters summed over every process that reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub bytes_allocated: u64,
    pub in_use: u64,
    pub mapped: u64,
    pub unmapped: u64,
    pub purged: u64,
    pub threads: u64,
}

impl RunReport {
    /// The record of the process we spawned (same pid even if it exec'd
    /// other programs along the way: the last image's).
    pub fn main_process(&self) -> Option<&ProcessReport> {
        self.records().rev().find(|p| p.pid == u64::from(self.pid))
    }

    fn records(&self) -> impl DoubleEndedIterator<Item = &ProcessReport> {
        self.processes.iter().map(|p| &p.record)
    }

    /// Reports from processes other than the one we spawned.
    pub fn child_count(&self) -> usize {
        let main = usize::from(self.main_process().is_some());
        self.processes.len() - main
    }

    pub fn totals(&self) -> Totals {
        self.records().fold(Totals::default(), |t, p| Totals {
            allocs: t.allocs.saturating_add(p.allocs),
            frees: t.frees.saturating_add(p.frees),
            reallocs: t.reallocs.saturating_add(p.reallocs),
            bytes_allocated: t.bytes_allocated.saturating_add(p.bytes_allocated),
            in_use: t.in_use.saturating_add(p.in_use),
            mapped: t.mapped.saturating_add(p.mapped),
            unmapped: t.unmapped.saturating_add(p.unmapped),
            purged: t.purged.saturating_add(p.purged),
            threads: t.threads.saturating_add(p.threads),
        })
    }

    /// Peaks of different processes happen at different times, so summing
    /// them would overstate; the main process's peak is what users ask
    /// about. Without a main report, the largest peak of any process is the
    /// best lower bound we have.
    pub fn peaks(&self) -> (u64, u64) {
        match self.main_process() {
            Some(main) => (main.peak_in_use, main.peak_mapped),
            None => self.records().fold((0, 0), |(a, b), p| {
                (a.max(p.peak_in_use), b.max(p.peak_mapped))
            }),
        }
    }

    /// The note printed when no process left a record: every process on
    /// libmemkit.so leaves one, however it ends, so the program (and all
    /// it started) did not run on it.
    pub fn no_report_note(&self) -> String {
        format!(
            "memkit: no report from {}: no process ran on libmemkit.so (statically linked, \
             or LD_PRELOAD removed from its environment?)",
            self.program
        )
    }

    /// The human-readable report: warnings first, then the table (or the
    /// no-report note).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for warning in &self.warnings {
            let _ = writeln!(out, "memkit: warning: {warning}");
        }
        if self.processes.is_empty() {
            let _ = writeln!(out, "{}", self.no_report_note());
            return out;
        }

        let totals = self.totals();
        let (peak_in_use, peak_mapped) = self.peaks();
        let row = |out: &mut String, label: &str, value: String, extra: String| {
            let line = format!("  {label:<17}{value:>12}{extra}");
            let _ = writeln!(out, "{}", line.trim_end());
        };

        let _ = writeln!(
            out,
            "memkit report: {} (pid {}), {}, {}",
            self.program,
            self.pid,
            self.termination,
            human::duration(self.elapsed)
        );
        row(
            &mut out,
            "allocations",
            human::count(totals.allocs),
            format!(
                "   (frees {}, reallocs {})",
                human::count(totals.frees),
                human::count(totals.reallocs)
            ),
        );
        row(
            &mut out,
            "bytes allocated",
            human::bytes(totals.bytes_allocated),
            String::new(),
        );
        // The leak figure is a total while the peak is the main process's;
        // with several processes, say so or the row looks contradictory.
        let everywhere = if self.processes.len() > 1 {
            " in all processes"
        } else {
            ""
        };
        row(
            &mut out,
            "peak in use",
            human::bytes(peak_in_use),
            format!(
                "   (at exit: {} still allocated{everywhere})",
                human::bytes(totals.in_use)
            ),
        );
        row(
            &mut out,
            "peak RSS",
            self.peak_rss.map_or_else(|| "n/a".to_owned(), human::bytes),
            String::new(),
        );
        row(
            &mut out,
            "mapped from OS",
            human::bytes(peak_mapped),
            format!(
                " peak, {} returned (munmap), {} purged",
                human::bytes(totals.unmapped),
                human::bytes(totals.purged)
            ),
        );
        row(
            &mut out,
            "threads",
            human::count(totals.threads),
            String::new(),
        );
        let children = self.child_count();
        if self.main_process().is_none() {
            row(
                &mut out,
                "child processes",
                human::count(children as u64),
                format!(
                    "   (totals above are theirs; {} itself sent no report, \
                     peaks are the largest of any child)",
                    self.program
                ),
            );
        } else if children > 0 {
            row(
                &mut out,
                "child processes",
                human::count(children as u64),
                "   (totals above include them; peaks are of the main process)".to_owned(),
            );
        }
        self.list_processes(&mut out);
        out
    }

    /// One line per process with how it ended, when there is more than one
    /// or one did not end normally (else the title line says it all). At
    /// most [`LISTED`] lines: those that did not end normally first.
    fn list_processes(&self, out: &mut String) {
        if self.processes.len() < 2 && self.processes.iter().all(Process::ended_normally) {
            return;
        }
        let mut shown: Vec<&Process> = self.processes.iter().collect();
        if shown.len() > LISTED {
            // Stable: in start order within each group.
            let mut order: Vec<usize> = (0..shown.len()).collect();
            order.sort_by_key(|&i| self.processes[i].ended_normally());
            order.truncate(LISTED);
            order.sort_unstable();
            shown = order.into_iter().map(|i| &self.processes[i]).collect();
        }
        let names: Vec<&str> = shown.iter().map(|p| exe_name(&p.record.exe)).collect();
        let allocs: Vec<String> = shown
            .iter()
            .map(|p| human::count(p.record.allocs))
            .collect();
        let pid_w = shown
            .iter()
            .map(|p| p.record.pid.to_string().len())
            .max()
            .unwrap_or(0);
        let name_w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let allocs_w = allocs.iter().map(String::len).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "  processes (pid, program, allocations, how it ended):"
        );
        for ((p, name), allocs) in shown.iter().zip(&names).zip(&allocs) {
            let _ = writeln!(
                out,
                "    {:>pid_w$}  {name:<name_w$}  {allocs:>allocs_w$}  {p}",
                p.record.pid
            );
        }
        if self.processes.len() > shown.len() {
            let _ = writeln!(
                out,
                "    ... and {} more (--json lists every process)",
                self.processes.len() - shown.len()
            );
        }
    }

    /// The `--json` report; the schema is documented in `memkit run --help`
    /// (keep the two in sync).
    pub fn to_json(&self) -> Json {
        let totals = self.totals();
        let (peak_in_use, peak_mapped) = self.peaks();
        let (exit_code, signal) = match self.termination {
            Termination::Exited(code) => (Some(code), None),
            Termination::Signaled(sig) => (None, Some(sig)),
        };
        json!({
            "version": 1,
            "program": self.program,
            "pid": self.pid,
            "exit_code": exit_code,
            "signal": signal,
            "signal_name": signal.and_then(signal::name),
            "status": self.termination.shell_status(),
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "peak_rss_bytes": self.peak_rss,
            "reported": !self.processes.is_empty(),
            "main_reported": self.main_process().is_some(),
            "child_processes": self.child_count(),
            "peak_in_use": peak_in_use,
            "peak_mapped": peak_mapped,
            "totals": {
                "allocs": totals.allocs,
                "frees": totals.frees,
                "reallocs": totals.reallocs,
                "bytes_allocated": totals.bytes_allocated,
                "in_use": totals.in_use,
                "mapped": totals.mapped,
                "unmapped": totals.unmapped,
                "purged": totals.purged,
                "threads": totals.threads,
            },
            "processes": self.processes.iter().map(process_json).collect::<Vec<_>>(),
            "warnings": self.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ending::Ending;

    const GOOD: &str = "memkit-report v1 pid=1234 ppid=1200 allocs=10 frees=8 reallocs=2 \
        bytes_allocated=4096 in_use=100 peak_in_use=2048 mapped=65536 peak_mapped=131072 \
        unmapped=4096 purged=8192 threads=3 exe=/usr/bin/python3";

    fn good() -> ProcessReport {
        ProcessReport {
            pid: 1234,
            ppid: 1200,
            allocs: 10,
            frees: 8,
            reallocs: 2,
            bytes_allocated: 4096,
            in_use: 100,
            peak_in_use: 2048,
            mapped: 65536,
            peak_mapped: 131072,
            unmapped: 4096,
            purged: 8192,
            threads: 3,
            exe: "/usr/bin/python3".to_owned(),
        }
    }

    #[test]
    fn parses_a_good_line() {
        assert_eq!(parse_line(GOOD), Ok(good()));
    }

    #[test]
    fn key_order_and_extra_whitespace_do_not_matter() {
        let line = "memkit-report  v1\texe=/usr/bin/python3 threads=3 purged=8192 unmapped=4096 \
            peak_mapped=131072 mapped=65536 peak_in_use=2048 in_use=100 bytes_allocated=4096 \
            reallocs=2 frees=8 allocs=10 ppid=1200 pid=1234  \r";
        assert_eq!(parse_line(line), Ok(good()));
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let line = format!("{GOOD} arenas=4 future_key=xyz odd=");
        assert_eq!(parse_line(&line), Ok(good()));
        let line = GOOD.replace("allocs=10", "huge_pages=7 allocs=10 note=a=b");
        assert_eq!(parse_line(&line), Ok(good()));
    }

    #[test]
    fn exe_is_percent_decoded() {
        let line = GOOD.replace("/usr/bin/python3", "/opt/my%20app/100%25/x%0Ay");
        assert_eq!(parse_line(&line).unwrap().exe, "/opt/my app/100%/x\ny");
        // Raw spaces split the line: the writer never leaves one.
        let line = GOOD.replace("/usr/bin/python3", "/opt/my app/bin/x");
        assert_eq!(
            parse_line(&line),
            Err(DecodeError::NotKeyValue("app/bin/x"))
        );
        let line = GOOD.replace("/usr/bin/python3", "/bad%zz");
        assert!(matches!(
            parse_line(&line),
            Err(DecodeError::BadEscape { key: "exe", .. })
        ));
    }

    /// The library's encoder and the CLI's reader agree on every field.
    #[test]
    fn records_from_the_library_encoder_round_trip() {
        let exe = "/opt/my app/100% sure/x\ny\t\u{e9}";
        let mut buf = [0u8; report::MAX_LEN];
        let record = good().map_paths(|_| exe.as_bytes());
        let n = record.encode(&mut buf).unwrap();
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        let back = parse_line(&text).unwrap();
        assert_eq!(back, good().map_paths(|_| exe.to_owned()));
        let json = Json::Object(record_json(&back));
        assert_eq!(json["exe"], exe);
        assert_eq!(json.as_object().unwrap().len(), report::FIELDS.len());
        for (name, value) in back.fields() {
            if let Value::Count(n) = value {
                assert_eq!(json[name], n, "{name}");
            }
        }
    }

    #[test]
    fn records_of_older_and_newer_libraries() {
        // Newer libraries' unknown keys: unknown_keys_are_ignored.
        // Older, without a field: an error that names it.
        let older = GOOD.replace(" purged=8192", "");
        let err = parse_line(&older).unwrap_err().to_string();
        assert!(err.starts_with("missing key `purged`"), "{err}");
        let err = parse_line(&GOOD.replace(" v1 ", " v2 "))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported protocol version `v2`"), "{err}");
    }

    #[test]
    fn big_values_parse() {
        let line = GOOD.replace("allocs=10", &format!("allocs={}", u64::MAX));
        assert_eq!(parse_line(&line).unwrap().allocs, u64::MAX);
    }

    #[test]
    fn rejects_garbage() {
        let cases: &[(&str, DecodeError<'_>)] = &[
            ("", DecodeError::NotAReport),
            ("hello world", DecodeError::NotAReport),
            ("memkit-report", DecodeError::NotAReport),
            (
                "memkit-report v2 pid=1",
                DecodeError::UnsupportedVersion("v2"),
            ),
            (
                "memkit-report v1 pid=1 garbage",
                DecodeError::NotKeyValue("garbage"),
            ),
            (
                "memkit-report v1 pid=-1",
                DecodeError::BadNumber {
                    key: "pid",
                    value: "-1",
                },
            ),
            (
                "memkit-report v1 pid=+1",
                DecodeError::BadNumber {
                    key: "pid",
                    value: "+1",
                },
            ),
            (
                "memkit-report v1 pid=",
                DecodeError::BadNumber {
                    key: "pid",
                    value: "",
                },
            ),
            (
                "memkit-report v1 pid=1 pid=2",
                DecodeError::DuplicateKey("pid"),
            ),
            ("memkit-report v1 pid=1", DecodeError::MissingKey("ppid")),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line).as_ref(), Err(expected), "{line:?}");
        }
        let overflow = GOOD.replace("allocs=10", "allocs=18446744073709551616");
        assert!(matches!(
            parse_line(&overflow),
            Err(DecodeError::BadNumber { .. })
        ));
        let no_exe = GOOD.replace(" exe=/usr/bin/python3", "");
        assert_eq!(parse_line(&no_exe), Err(DecodeError::MissingKey("exe")));
        let two_exe = format!("{GOOD} exe=/bin/sh");
        assert_eq!(parse_line(&two_exe), Err(DecodeError::DuplicateKey("exe")));
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("garbage\x01 here\n"), "garbage? here?");
        let long = excerpt(&"x".repeat(10_000));
        assert_eq!(long.len(), 123);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn shell_status() {
        assert_eq!(Termination::Exited(0).shell_status(), 0);
        assert_eq!(Termination::Exited(3).shell_status(), 3);
        assert_eq!(Termination::Signaled(11).shell_status(), 139);
        assert_eq!(
            Termination::Signaled(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
    }

    /// A process that exited with status 0 (exit handlers run).
    fn exited(record: ProcessReport) -> Process {
        Process {
            record,
            exit_handlers: true,
            ending: Ending::Exited(Some(0)),
        }
    }

    fn run(processes: Vec<ProcessReport>) -> RunReport {
        let processes = processes.into_iter().map(exited).collect();
        RunReport {
            program: "python3".to_owned(),
            pid: 1234,
            termination: Termination::Exited(0),
            elapsed: Duration::from_millis(1520),
            peak_rss: Some(31 * 1024 * 1024),
            processes,
            warnings: Vec::new(),
        }
    }

    fn mib(n: u64) -> u64 {
        n << 20
    }

    #[test]
    fn table_for_a_single_process() {
        let main = ProcessReport {
            allocs: 1_234_567,
            frees: 1_234_000,
            reallocs: 12_345,
            bytes_allocated: mib(812) + 400 * 1024,
            in_use: mib(1) + 200 * 1024,
            peak_in_use: mib(24) + 100 * 1024,
            mapped: mib(20),
            peak_mapped: mib(36),
            unmapped: mib(12),
            purged: mib(8),
            threads: 5,
            ..good()
        };
        let expected = "\
memkit report: python3 (pid 1234), exit status 0, 1.52 s
  allocations         1,234,567   (frees 1,234,000, reallocs 12,345)
  bytes allocated     812.4 MiB
  peak in use          24.1 MiB   (at exit: 1.2 MiB still allocated)
  peak RSS             31.0 MiB
  mapped from OS       36.0 MiB peak, 12.0 MiB returned (munmap), 8.0 MiB purged
  threads                     5
";
        assert_eq!(run(vec![main]).to_text(), expected);
    }

    #[test]
    fn totals_sum_but_peaks_come_from_the_main_process() {
        let main = ProcessReport {
            peak_in_use: mib(10),
            peak_mapped: mib(12),
            ..good()
        };
        let child = ProcessReport {
            pid: 2000,
            ppid: 1234,
            peak_in_use: mib(50),
            peak_mapped: mib(60),
            ..good()
        };
        let mut report = run(vec![child.clone(), main, child]);
        report.termination = Termination::Signaled(11);
        let totals = report.totals();
        assert_eq!(totals.allocs, 30);
        assert_eq!(totals.threads, 9);
        assert_eq!(report.peaks(), (mib(10), mib(12)));
        assert_eq!(report.child_count(), 2);
        let text = report.to_text();
        assert!(text.starts_with(
            "memkit report: python3 (pid 1234), killed by signal 11 (SIGSEGV), 1.52 s\n"
        ));
        assert!(text.contains("  allocations                30   (frees 24, reallocs 6)\n"));
        assert!(text.contains("(at exit: 300 B still allocated in all processes)\n"));
        assert!(text.contains(
            "  child processes             2   (totals above include them; \
             peaks are of the main process)\n"
        ));
    }

    #[test]
    fn without_a_main_report_peaks_are_the_largest_child_peak() {
        let a = ProcessReport {
            pid: 1,
            peak_in_use: 5,
            peak_mapped: 70,
            ..good()
        };
        let b = ProcessReport {
            pid: 2,
            peak_in_use: 9,
            peak_mapped: 7,
            ..good()
        };
        let report = run(vec![a, b]);
        assert_eq!(report.peaks(), (9, 70));
        assert_eq!(report.child_count(), 2);
        assert!(report.to_text().contains("python3 itself sent no report"));
    }

    #[test]
    fn no_report_and_warnings() {
        let mut report = run(Vec::new());
        report
            .warnings
            .push("ignoring report file 12-34: x".to_owned());
        assert_eq!(
            report.to_text(),
            "memkit: warning: ignoring report file 12-34: x\n\
             memkit: no report from python3: no process ran on libmemkit.so \
             (statically linked, or LD_PRELOAD removed from its environment?)\n"
        );
    }

    #[test]
    fn json_schema() {
        let child = ProcessReport {
            pid: 2000,
            ..good()
        };
        let mut report = run(vec![good(), child]);
        report.termination = Termination::Signaled(6);
        report.warnings.push("w".to_owned());
        let v = report.to_json();
        assert_eq!(v["version"], 1);
        assert_eq!(v["program"], "python3");
        assert_eq!(v["pid"], 1234);
        assert_eq!(v["exit_code"], Json::Null);
        assert_eq!(v["signal"], 6);
        assert_eq!(v["signal_name"], "SIGABRT");
        assert_eq!(v["status"], 134);
        assert_eq!(v["elapsed_seconds"], 1.52);
        assert_eq!(v["peak_rss_bytes"], 31 * 1024 * 1024);
        assert_eq!(v["reported"], true);
        assert_eq!(v["main_reported"], true);
        assert_eq!(v["child_processes"], 1);
        assert_eq!(v["peak_in_use"], 2048);
        assert_eq!(v["peak_mapped"], 131072);
        assert_eq!(v["totals"]["allocs"], 20);
        assert_eq!(v["totals"]["purged"], 16384);
        assert_eq!(v["processes"][1]["pid"], 2000);
        assert_eq!(v["processes"][0]["exe"], "/usr/bin/python3");
        assert_eq!(v["processes"][0]["peak_mapped"], 131072);
        assert_eq!(v["processes"][0]["ended"], "exited");
        assert_eq!(v["processes"][0]["exit_code"], 0);
        assert_eq!(v["processes"][0]["exit_handlers"], true);
        assert_eq!(v["processes"][0]["ending"], "exit status 0");
        assert_eq!(v["warnings"][0], "w");
        // One line, so scripts can pick it out of the child's stderr.
        assert!(!serde_json::to_string(&v).unwrap().contains('\n'));
    }

    #[test]
    fn processes_are_listed_with_how_they_ended() {
        let shell = Process {
            record: ProcessReport {
                allocs: 43,
                exe: "/usr/bin/dash".to_owned(),
                ..good()
            },
            exit_handlers: false,
            ending: Ending::Exited(Some(0)),
        };
        let child = |pid, allocs, ending, exit_handlers| Process {
            record: ProcessReport {
                pid,
                ppid: 1234,
                allocs,
                exe: "/opt/x/report_end".to_owned(),
                ..good()
            },
            exit_handlers,
            ending,
        };
        let mut report = run(Vec::new());
        report.processes = vec![
            shell,
            child(1300, 2024, Ending::Exited(Some(0)), true),
            child(1301, 1_984, Ending::Signaled(9), false),
            child(42, 7, Ending::Unknown, false),
        ];
        let text = report.to_text();
        let list = &text[text.find("  processes").unwrap()..];
        assert_eq!(
            list,
            "  processes (pid, program, allocations, how it ended):\n\
             \x20   1234  dash           43  exit status 0 without running exit handlers (_exit); \
             counters as of its last refresh\n\
             \x20   1300  report_end  2,024  exit status 0\n\
             \x20   1301  report_end  1,984  killed by signal 9 (SIGKILL); counters as of its last refresh\n\
             \x20     42  report_end      7  ended without running exit handlers (_exit, exec failure, \
             or a signal); counters as of its last refresh\n"
        );
        // One process that ended normally: the title line says it all.
        report.processes.truncate(2);
        report.processes.remove(0);
        assert!(!report.to_text().contains("  processes"));
        // One that did not: listed.
        report.processes[0].ending = Ending::Running;
        report.processes[0].exit_handlers = false;
        assert!(report
            .to_text()
            .contains("  report_end  2,024  still running when memkit run ended; counters"));
    }

    #[test]
    fn long_lists_show_the_abnormal_endings_first() {
        let mut report = run((0..30).map(|pid| ProcessReport { pid, ..good() }).collect());
        for pid in [3, 25] {
            report.processes[pid].ending = Ending::Signaled(11);
        }
        let text = report.to_text();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("    ")).collect();
        assert_eq!(lines.len(), LISTED + 1, "{text}");
        // In start order: 0..=18 with 3 among them, then 25.
        assert!(
            lines[3].starts_with("     3  python3  10  killed by signal 11"),
            "{text}"
        );
        assert!(lines[LISTED - 1].starts_with("    25  python3"), "{text}");
        assert_eq!(
            lines[LISTED],
            "    ... and 10 more (--json lists every process)"
        );
        assert_eq!(report.to_json()["processes"].as_array().unwrap().len(), 30);
    }
}
