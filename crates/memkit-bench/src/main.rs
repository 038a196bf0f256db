//! memkit-bench: runs allocation-heavy workloads under glibc, jemalloc,
//! mimalloc, tcmalloc and memkit (via LD_PRELOAD), interleaved round by
//! round, and reports medians of wall time, CPU time and peak RSS as
//! markdown (stdout and results.md), JSON (results.json) and SVG charts.
//! See `--help` and docs/BENCHMARKS.md.

mod catalog;
mod cli;
mod env;
mod exec;
mod report;
mod svg;
mod workloads;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::{Report, Row, Sample, Skipped};
use std::fs;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(args.clone()) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memkit-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts, &args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("memkit-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the benchmark; `Ok(false)` when some run failed.
fn run(opts: &cli::Options, args: &[String]) -> Result<bool, String> {
    let all = workloads::all();
    if opts.list {
        for w in &all {
            println!("{:<14} {}", w.name, w.about);
        }
        return Ok(true);
    }
    let selected: Vec<&workloads::Workload> = match &opts.only {
        Some(names) => {
            for n in names {
                if !all.iter().any(|w| w.name == n) {
                    return Err(format!(
                        "unknown workload '{n}' (known: {})",
                        workloads::names().join(", ")
                    ));
                }
            }
            all.iter()
                .filter(|w| names.iter().any(|n| n == w.name))
                .collect()
        }
        None => all.iter().collect(),
    };

    let root = env::workspace_root();
    let cache = env::cache_dir(&root);
    let found = env::find_allocators(opts.allocators.as_deref(), opts.memkit.as_deref(), &root)?;
    for (name, why) in &found.skipped {
        eprintln!("memkit-bench: skipping {name}: {why}");
    }
    if found.allocators.is_empty() {
        return Err("no allocator to run".into());
    }
    let mut allocators = found.allocators;
    if let Some(base) = &opts.baseline {
        if !base.is_file() {
            return Err(format!("--baseline {}: no such file", base.display()));
        }
        allocators.push(env::Allocator {
            name: "memkit-base".into(),
            version: if opts.baseline_env.is_empty() {
                format!("baseline build at {}", base.display())
            } else {
                let env: Vec<String> = opts
                    .baseline_env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "baseline build at {} with {}",
                    base.display(),
                    env.join(" ")
                )
            },
            env: opts.baseline_env.clone(),
            lib: Some(env::snapshot(base, &cache)?),
        });
    }
    let timeout = Duration::from_secs(opts.timeout_s.unwrap_or(if opts.quick { 60 } else { 180 }));
    let out_dir = opts.out.clone().unwrap_or_else(|| cache.join("results"));
    let started = SystemTime::now();
    let t0 = Instant::now();
    let machine = env::machine();
    let ctx = workloads::Ctx {
        cache: cache.clone(),
        quick: opts.quick,
    };

    let launcher = exec::Launcher(workloads::build_launcher(&cache)?);
    // Prepare (compile, generate inputs) before anything is timed.
    let mut failures = Vec::new();
    let mut prepared = Vec::new();
    let mut skipped_rows = Vec::new();
    let tty = std::io::stderr().is_terminal();
    for w in &selected {
        if tty {
            eprint!("memkit-bench: preparing {} ...          \r", w.name);
        }
        match w.prepare(&ctx) {
            Ok(p) => prepared.push((*w, p)),
            Err(workloads::NotReady::Skip(why)) => {
                eprintln!("memkit-bench: skipping workload {}: {why}", w.name);
                skipped_rows.push((*w, why));
            }
            Err(workloads::NotReady::Error(e)) => {
                eprintln!("memkit-bench: workload {} cannot run: {e}", w.name);
                failures.push(format!("{}: preparation failed: {e}", w.name));
                skipped_rows.push((*w, format!("preparation failed: {e}")));
            }
        }
    }
    eprintln!(
        "memkit-bench: {} workload(s) x {} allocator(s) x {} round(s){}",
        prepared.len(),
        allocators.len(),
        opts.rounds,
        if opts.quick { " (quick)" } else { "" }
    );

    let total = (prepared.len() * allocators.len() * opts.rounds) as u64;
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    // Per-process, so that concurrent harnesses (e.g. the test) don't clash.
    let work = cache.join("work").join(std::process::id().to_string());
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); prepared.len()];
    for round in 0..opts.rounds {
        for (wi, (w, p)) in prepared.iter().enumerate() {
            // Rotate the allocator order every round so that no allocator
            // always runs first (or right after a given one).
            let n = allocators.len();
            for k in 0..n {
                let a = &allocators[(k + round + wi) % n];
                pb.set_message(format!(
                    "{} / {} (round {}/{})",
                    w.name,
                    a.name,
                    round + 1,
                    opts.rounds
                ));
                let dir = work.join(format!("{}.{}.r{}", w.name, a.name, round + 1));
                if dir.exists() {
                    let _ = fs::remove_dir_all(&dir);
                }
                fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let outcome = p
                    .run(&launcher, a, &dir, timeout)
                    .map_err(|e| format!("{} under {}: {e}", w.name, a.name))?;
                let m = &outcome.m;
                let ok = outcome.error.is_none();
                if let Some(e) = &outcome.error {
                    let msg = format!(
                        "{} under {} (round {}): {e}\n  reproduce (in an empty directory): {}\n  run directory kept: {}",
                        w.name,
                        a.name,
                        round + 1,
                        p.command_line(a),
                        dir.display()
                    );
                    pb.println(format!("FAILED: {msg}"));
                    failures.push(msg);
                } else if !opts.keep {
                    let _ = fs::remove_dir_all(&dir);
                }
                samples[wi].push(Sample {
                    round: round + 1,
                    allocator: a.name.clone(),
                    ok,
                    error: outcome.error.clone(),
                    wall_s: m.wall_s,
                    user_s: m.user_s,
                    sys_s: m.sys_s,
                    max_rss_kib: m.max_rss_kib,
                    metrics: outcome.metrics.clone(),
                });
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    // Gone unless a failed (or --keep) run left its directory there.
    let _ = fs::remove_dir(&work);

    // Report order is the workload list's order.
    let mut rows: Vec<Row> = Vec::new();
    for w in &selected {
        if let Some((_, why)) = skipped_rows.iter().find(|(s, _)| s.name == w.name) {
            rows.push(report::summarize(
                w.name,
                w.about,
                Some(why.clone()),
                Vec::new(),
                &allocators,
            ));
        } else if let Some(i) = prepared.iter().position(|(p, _)| p.name == w.name) {
            let s = std::mem::take(&mut samples[i]);
            rows.push(report::summarize(w.name, w.about, None, s, &allocators));
        }
    }
    let started_secs = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut rep = Report {
        tool: format!("memkit-bench {}", env!("CARGO_PKG_VERSION")),
        started_utc: report::utc(started_secs),
        duration_s: t0.elapsed().as_secs_f64(),
        command: format!(
            "cargo run -p memkit-bench --release --{}",
            args.iter().map(|a| format!(" {a}")).collect::<String>()
        ),
        quick: opts.quick,
        rounds: opts.rounds,
        machine,
        allocators,
        skipped_allocators: found
            .skipped
            .iter()
            .map(|(name, reason)| Skipped {
                name: name.clone(),
                reason: reason.clone(),
            })
            .collect(),
        rows,
        geomean_workloads: Vec::new(),
        geomean: Default::default(),
        geomean_memkit_time_vs_best: None,
        geomean_memkit_rss_vs_best: None,
        failures,
    };
    report::finish(&mut rep);
    let md = report::markdown(&rep);
    print!("{md}");
    write_outputs(&rep, &md, &out_dir)?;
    eprintln!("memkit-bench: results in {}", out_dir.display());
    Ok(rep.failures.is_empty())
}

fn write_outputs(rep: &Report, md: &str, out: &Path) -> Result<(), String> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    fs::create_dir_all(out).map_err(|e| err(out, e))?;
    let p = out.join("results.md");
    fs::write(&p, md).map_err(|e| err(&p, e))?;
    let p = out.join("results.json");
    let json = serde_json::to_string_pretty(rep).map_err(|e| e.to_string())?;
    fs::write(&p, json + "\n").map_err(|e| err(&p, e))?;
    for (file, which) in [
        ("time_ratio.svg", svg::Chart::Time),
        ("rss_ratio.svg", svg::Chart::Rss),
    ] {
        if let Some(s) = svg::chart(rep, which) {
            let p = out.join(file);
            fs::write(&p, s).map_err(|e| err(&p, e))?;
        }
    }
    Ok(())
}
