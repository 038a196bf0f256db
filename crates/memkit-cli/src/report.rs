//! The reports of `memkit run`: the records libmemkit.so appends at exit
//! (their format, and its decoder, are `memkit_sys::report`, shared with
//! the library), and the report printed from them.
//!
//! A bad line is a warning, never fatal: one corrupt line must not hide the
//! other processes' reports. Unknown keys are skipped (a newer library may
//! add counters); a missing or malformed field rejects its line rather than
//! showing a wrong number.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use memkit_sys::report::{self, DecodeError, Escaped, Record, Value};
use memkit_sys::signal;
use serde_json::{json, Value as Json};

use crate::human;

/// One process's exit-time counters, as written by libmemkit.so, with its
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

/// A process's record as JSON: every field of the record, by its name.
fn process_json(p: &ProcessReport) -> Json {
    let object = p
        .fields()
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Count(n) => json!(n),
                Value::Path(path) => json!(path),
            };
            (name.to_owned(), value)
        })
        .collect();
    Json::Object(object)
}

/// Parses the whole report file. Blank lines are skipped silently (a
/// trailing newline is normal); any other bad line becomes a warning.
pub fn parse_reports(text: &str) -> (Vec<ProcessReport>, Vec<String>) {
    let mut reports = Vec::new();
    let mut warnings = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(report) => reports.push(report),
            Err(err) => warnings.push(format!(
                "ignoring malformed report line {}: {err}: {}",
                number + 1,
                excerpt(line)
            )),
        }
    }
    (reports, warnings)
}

/// Keeps warnings to one terminal line even if the file holds binary junk.
fn excerpt(line: &str) -> String {
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
    /// One entry per report line, in the order they were written.
    pub processes: Vec<ProcessReport>,
    pub warnings: Vec<String>,
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
    /// The line written by the process we spawned (same pid even if it
    /// exec'd other programs along the way).
    pub fn main_process(&self) -> Option<&ProcessReport> {
        self.processes
            .iter()
            .rev()
            .find(|p| p.pid == u64::from(self.pid))
    }

    /// Reports from processes other than the one we spawned.
    pub fn child_count(&self) -> usize {
        let main = usize::from(self.main_process().is_some());
        self.processes.len() - main
    }

    pub fn totals(&self) -> Totals {
        self.processes
            .iter()
            .fold(Totals::default(), |t, p| Totals {
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
            None => self.processes.iter().fold((0, 0), |(a, b), p| {
                (a.max(p.peak_in_use), b.max(p.peak_mapped))
            }),
        }
    }

    /// The note printed when nothing reported. Spelled out in full because
    /// the usual cause (a static binary) is otherwise a mystery.
    pub fn no_report_note(&self) -> String {
        format!(
            "memkit: no report from {}: it did not run on libmemkit.so (statically linked?) \
             or did not exit normally",
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
        out
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
        let (reports, warnings) = parse_reports(&format!("{text}{text}"));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(reports, vec![good().map_paths(|_| exe.to_owned()); 2]);
        let json = process_json(&reports[0]);
        assert_eq!(json["exe"], exe);
        assert_eq!(json.as_object().unwrap().len(), report::FIELDS.len());
        for (name, value) in reports[0].fields() {
            if let Value::Count(n) = value {
                assert_eq!(json[name], n, "{name}");
            }
        }
    }

    #[test]
    fn records_of_older_and_newer_libraries() {
        // Newer libraries' unknown keys: unknown_keys_are_ignored.
        // Older, without a field: a warning that names it; other lines stay.
        let older = GOOD.replace(" purged=8192", "");
        let (reports, warnings) = parse_reports(&format!("{older}\n{GOOD}\n"));
        assert_eq!(reports, vec![good()]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("ignoring malformed report line 1: missing key `purged`"),
            "{}",
            warnings[0]
        );
        let (reports, warnings) = parse_reports(&GOOD.replace(" v1 ", " v2 "));
        assert!(reports.is_empty());
        assert!(
            warnings[0].contains("unsupported protocol version `v2`"),
            "{}",
            warnings[0]
        );
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
    fn file_parsing_keeps_good_lines_and_warns_about_bad_ones() {
        let other = GOOD.replace("pid=1234 ", "pid=1300 ");
        let text = format!("{GOOD}\n\ngarbage\x01 here\n{other}\nmemkit-report v1 pid=");
        let (reports, warnings) = parse_reports(&text);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[1].pid, 1300);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].starts_with("ignoring malformed report line 3:"));
        assert!(warnings[0].ends_with("garbage? here"), "{}", warnings[0]);
        assert!(warnings[1].contains("line 5"));
    }

    #[test]
    fn long_garbage_is_truncated_in_warnings() {
        let (_, warnings) = parse_reports(&"x".repeat(10_000));
        assert!(warnings[0].len() < 250);
        assert!(warnings[0].ends_with("..."));
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

    fn run(processes: Vec<ProcessReport>) -> RunReport {
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
            .push("ignoring malformed report line 1: x".to_owned());
        assert_eq!(
            report.to_text(),
            "memkit: warning: ignoring malformed report line 1: x\n\
             memkit: no report from python3: it did not run on libmemkit.so \
             (statically linked?) or did not exit normally\n"
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
        assert_eq!(v["warnings"][0], "w");
        // One line, so scripts can pick it out of the child's stderr.
        assert!(!serde_json::to_string(&v).unwrap().contains('\n'));
    }
}
