//! The summary `memkit profile` prints on stderr when the program has
//! exited: the main process's peak and when, its top sites at the peak,
//! leaks, temporary allocations and totals, then the other processes and
//! where their files are.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::human;
use crate::report::Termination;

use super::summary::{Summary, TopSite};
use super::Written;

/// Rows of each site list.
const ROWS: usize = 5;

pub fn print(text: &str) {
    // A closed stderr must not become a panic; the files are written.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return String::new();
    }
    format!("{:>3.0}%", part as f64 * 100.0 / whole as f64)
}

fn sites(out: &mut String, title: &str, list: &[TopSite], whole: u64, what: &str) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}");
    for s in list.iter().take(ROWS) {
        let _ = writeln!(
            out,
            "  {:>10} {} {:>9} {what}  {}",
            human::bytes(s.bytes),
            share(s.bytes, whole),
            human::count(s.objects),
            s.site
        );
    }
}

/// The main process's part.
fn process(out: &mut String, s: &Summary) {
    let _ = writeln!(
        out,
        "  peak      {} in use ({} blocks) at {:.3} s of {:.3} s",
        human::bytes(s.peak_bytes),
        human::count(s.peak_allocs),
        s.peak_at_seconds,
        s.duration_seconds
    );
    let _ = writeln!(
        out,
        "  total     {} allocations, {}; {} frees",
        human::count(s.total_allocs),
        human::bytes(s.total_bytes),
        human::count(s.total_frees)
    );
    let _ = writeln!(
        out,
        "  temporary {} allocations{} (freed by the same thread before its next allocation)",
        human::count(s.temporary_allocs),
        match s.total_allocs {
            0 => String::new(),
            n => format!(" ({:.1}%)", s.temporary_allocs as f64 * 100.0 / n as f64),
        }
    );
    let _ = writeln!(
        out,
        "  leaked    {} in {} blocks (in use at exit)",
        human::bytes(s.leaked_bytes),
        human::count(s.leaked_allocs)
    );
    if !s.exact {
        let _ = writeln!(
            out,
            "  sampled   every {} allocated on average: peak, leaks, temporary and site figures are estimates",
            human::bytes(s.sample_bytes)
        );
    }
    sites(
        out,
        "top sites at peak:",
        &s.top_at_peak,
        s.peak_bytes,
        "blocks",
    );
    sites(
        out,
        "leaks (in use at exit):",
        &s.top_leaks,
        s.leaked_bytes,
        "blocks",
    );
}

fn others(out: &mut String, dir: &Path, written: &[Written]) {
    let rest: Vec<&Written> = written.iter().filter(|w| !w.main).collect();
    if rest.is_empty() {
        return;
    }
    let _ = writeln!(out, "other processes profiled:");
    for w in rest {
        let shown = w.dir.strip_prefix(dir).unwrap_or(&w.dir);
        let _ = writeln!(
            out,
            "  pid {:<7} {:<24} peak {:>10}, {} allocations  -> {}/",
            w.pid,
            w.summary
                .command
                .join(" ")
                .chars()
                .take(24)
                .collect::<String>(),
            human::bytes(w.summary.peak_bytes),
            human::count(w.summary.total_allocs),
            dir.join(shown).display()
        );
    }
}

fn tail(out: &mut String, dir: &Path, written: &[Written], warnings: &[String]) {
    others(out, dir, written);
    for w in warnings {
        let _ = writeln!(out, "memkit profile: warning: {w}");
    }
    if written.iter().any(|w| w.main) {
        let _ = writeln!(
            out,
            "files: {}/ (profile.pb.gz, peak.pb.gz, summary.json, report.html)",
            dir.display()
        );
    } else {
        let _ = writeln!(out, "files: {}/", dir.display());
    }
}

/// After `memkit profile -- PROG`.
pub fn render(
    program: &str,
    pid: u32,
    termination: Termination,
    dir: &Path,
    written: &[Written],
    warnings: &[String],
) -> String {
    let mut out = String::new();
    if let Termination::Signaled(sig) = termination {
        let _ = writeln!(
            out,
            "memkit: {program} killed by {}",
            memkit_sys::signal::describe(sig)
        );
    }
    let _ = writeln!(out, "memkit profile: {program} (pid {pid}), {termination}");
    if let Some(main) = written.iter().find(|w| w.main) {
        process(&mut out, &main.summary);
    }
    tail(&mut out, dir, written, warnings);
    out
}

/// After `memkit profile report RAWDIR`.
pub fn render_report(
    program: &str,
    pid: u32,
    dir: &Path,
    written: &[Written],
    warnings: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "memkit profile: {program} (pid {pid})");
    if let Some(main) = written.iter().find(|w| w.main) {
        process(&mut out, &main.summary);
    }
    tail(&mut out, dir, written, warnings);
    out
}
