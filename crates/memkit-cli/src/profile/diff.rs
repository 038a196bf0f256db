//! `memkit profile diff A B`: which sites grew or shrank from run A to
//! run B, at the peak, at exit and in total (what `heaptrack --diff` and
//! `jeprof --base` answer).
//!
//! A and B are profile directories (their `profile.pb.gz` and
//! `peak.pb.gz`) or pprof files, memkit's or any other heap profiler's
//! (`inuse_space` and `alloc_space` sample types). Sites are matched by
//! their stack of function names, so two builds of a program compare
//! although their addresses and line numbers moved.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use memkit::describe_io;

use crate::error::CliError;
use crate::human;

use super::pprof::{self, Profile};
use super::summary::{PEAK_FILE, PROFILE_FILE};
use super::symbols::site_label;

pub const LONG_HELP: &str = "\
A and B are directories written by memkit profile (their profile.pb.gz
and peak.pb.gz are compared) or pprof heap profiles (.pb.gz or .pb, from
memkit, Go, jemalloc's jeprof, tcmalloc...; their inuse_space and
alloc_space samples). Sites are matched by their stack of function names.
Changes are B - A: positive grew, negative shrank.";

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The base: a profile directory or a pprof file
    #[arg(value_name = "A")]
    a: PathBuf,
    /// Compared against the base
    #[arg(value_name = "B")]
    b: PathBuf,
    /// Sites listed per section
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    top: usize,
}

/// One side of the comparison.
struct Side {
    /// `profile.pb.gz`, or the file given.
    exit: Profile,
    /// `peak.pb.gz` of a directory.
    peak: Option<Profile>,
}

fn read(path: &Path) -> Result<Profile, CliError> {
    let bytes = fs::read(path).map_err(|e| {
        CliError::new(format!(
            "cannot read {}: {}",
            path.display(),
            describe_io(&e)
        ))
    })?;
    pprof::decode(&bytes).map_err(|e| CliError::new(format!("{}: {e}", path.display())))
}

fn load(path: &Path) -> Result<Side, CliError> {
    if path.is_dir() {
        let exit = read(&path.join(PROFILE_FILE))?;
        let peak_file = path.join(PEAK_FILE);
        let peak = if peak_file.is_file() {
            Some(read(&peak_file)?)
        } else {
            None
        };
        Ok(Side { exit, peak })
    } else {
        Ok(Side {
            exit: read(path)?,
            peak: None,
        })
    }
}

/// Values of sample type `name` by stack (function names, root first).
type ByStack = HashMap<Vec<String>, i64>;

fn by_stack(p: &Profile, name: &str) -> Option<ByStack> {
    let i = p.type_index(name)?;
    let mut out = ByStack::new();
    for (stack, s) in p.stacks().into_iter().zip(&p.sample) {
        *out.entry(stack).or_default() += s.value.get(i).copied().unwrap_or(0);
    }
    Some(out)
}

fn signed(v: i64) -> String {
    let b = human::bytes(v.unsigned_abs());
    match v {
        0 => "0 B".into(),
        v if v > 0 => format!("+{b}"),
        _ => format!("-{b}"),
    }
}

/// One section: totals and the sites that changed most.
fn section(out: &mut String, title: &str, a: &ByStack, b: &ByStack, rows: usize) {
    let total = |m: &ByStack| m.values().sum::<i64>();
    let (ta, tb) = (total(a), total(b));
    let _ = writeln!(
        out,
        "{title}: {} -> {} ({})",
        human::bytes(ta.max(0) as u64),
        human::bytes(tb.max(0) as u64),
        signed(tb - ta)
    );
    let mut changes: Vec<(&Vec<String>, i64, i64)> = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .map(|k| {
            let (va, vb) = (
                a.get(k).copied().unwrap_or(0),
                b.get(k).copied().unwrap_or(0),
            );
            (k, va, vb)
        })
        .filter(|(_, va, vb)| va != vb)
        .collect();
    changes.sort_by(|x, y| {
        (y.2 - y.1)
            .abs()
            .cmp(&(x.2 - x.1).abs())
            .then_with(|| x.0.cmp(y.0))
    });
    if changes.is_empty() {
        let _ = writeln!(out, "  no site changed");
    }
    for (stack, va, vb) in changes.into_iter().take(rows) {
        let innermost: Vec<String> = stack.iter().rev().cloned().collect();
        let _ = writeln!(
            out,
            "  {:>11}  {:>10} -> {:<10}  {}",
            signed(vb - va),
            human::bytes(va.max(0) as u64),
            human::bytes(vb.max(0) as u64),
            site_label(&innermost)
        );
    }
}

/// The comparison's text.
fn render(a: &Side, b: &Side, rows: usize) -> Result<String, CliError> {
    let mut out = String::new();
    let mut any = false;
    if let (Some(pa), Some(pb)) = (&a.peak, &b.peak) {
        if let (Some(x), Some(y)) = (by_stack(pa, "inuse_space"), by_stack(pb, "inuse_space")) {
            section(&mut out, "in use at the peak", &x, &y, rows);
            any = true;
        }
    }
    let exit_title = if a.peak.is_some() && b.peak.is_some() {
        "in use at exit"
    } else {
        "in use"
    };
    for (name, title) in [
        ("inuse_space", exit_title),
        ("alloc_space", "allocated in total"),
    ] {
        if let (Some(x), Some(y)) = (by_stack(&a.exit, name), by_stack(&b.exit, name)) {
            section(&mut out, title, &x, &y, rows);
            any = true;
        }
    }
    if !any {
        return Err(CliError::new(
            "the profiles have no inuse_space or alloc_space samples in common: \
             not two heap profiles",
        ));
    }
    Ok(out)
}

pub fn run(args: &DiffArgs) -> Result<ExitCode, CliError> {
    let a = load(&args.a)?;
    let b = load(&args.b)?;
    let text = render(&a, &b, args.top)?;
    let head = format!(
        "memkit profile diff: {} -> {}\n",
        args.a.display(),
        args.b.display()
    );
    // A closed stdout (`| head`) must not become a panic.
    let _ = std::io::stdout()
        .lock()
        .write_all((head + &text).as_bytes());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
pub(super) fn render_for_test(a: &Path, b: &Path, rows: usize) -> Result<String, CliError> {
    render(&load(a)?, &load(b)?, rows)
}
