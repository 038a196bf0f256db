//! Command-line options.

use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Small scale, one round: checks that every workload works under every
    /// allocator; the timings mean nothing.
    pub quick: bool,
    /// Rounds per (workload, allocator) pair.
    pub rounds: usize,
    /// Workloads to run (all when `None`).
    pub only: Option<Vec<String>>,
    /// Allocators to compare (all known when `None`).
    pub allocators: Option<Vec<String>>,
    /// Where results.md, results.json and the charts go.
    pub out: Option<PathBuf>,
    /// libmemkit.so to use (`--memkit`, else `MEMKIT_LIB`, else the workspace's).
    pub memkit: Option<PathBuf>,
    /// A second libmemkit.so (`--baseline`), run beside the first as
    /// `memkit-base`: a build before a change, measured in the same run.
    pub baseline: Option<PathBuf>,
    /// `KEY=VALUE` pairs set for the baseline's runs only (`--baseline-env`):
    /// the same library in another mode, e.g. `MEMKIT_HARDEN=off`.
    pub baseline_env: Vec<(String, String)>,
    /// Seconds before a single run is killed.
    pub timeout_s: Option<u64>,
    /// Keep every run's working directory (failed runs always keep theirs).
    pub keep: bool,
    /// Print the workloads and exit.
    pub list: bool,
}

pub const USAGE: &str = "\
memkit-bench: run allocator benchmarks under glibc, jemalloc, mimalloc, tcmalloc and memkit

USAGE:
    cargo run -p memkit-bench --release -- [OPTIONS]

OPTIONS:
    --quick                 one small-scale round: check every workload works under every
                            allocator (exits non-zero if any fails); timings are meaningless
    --rounds N              rounds per workload and allocator (default 5; 1 with --quick)
    --only NAME,...         run only these workloads (see --list)
    --allocators NAME,...   compare only these (glibc, jemalloc, mimalloc, tcmalloc, memkit)
    --out DIR               write results.md, results.json and the SVG charts to DIR
                            (default <workspace>/target/memkit-bench/results)
    --memkit PATH           the libmemkit.so to test (default: $MEMKIT_LIB, else
                            <workspace>/target/release/libmemkit.so)
    --baseline PATH         also run this libmemkit.so, as `memkit-base` (a build before a
                            change, interleaved with the others; never counted as a peer)
    --baseline-env KEY=VALUE
                            set KEY for memkit-base's runs only (repeatable): the same
                            library in another mode, e.g. --baseline target/release/libmemkit.so
                            --baseline-env MEMKIT_HARDEN=off
    --timeout SECS          kill a run that takes longer (default 180; 60 with --quick)
    --keep                  keep every run's working directory
    --list                  list the workloads and exit
    -h, --help              this text
";

/// Parses `args` (without the program name). `Err` carries the message to
/// print; `Ok(None)` means help was printed.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        quick: false,
        rounds: 0,
        only: None,
        allocators: None,
        out: None,
        memkit: None,
        baseline: None,
        baseline_env: Vec::new(),
        timeout_s: None,
        keep: false,
        list: false,
    };
    let mut rounds = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--quick" => o.quick = true,
            "--keep" => o.keep = true,
            "--list" => o.list = true,
            "--rounds" => {
                let v = value("--rounds")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--rounds: not a number: {v}"))?;
                if n == 0 {
                    return Err("--rounds must be at least 1".into());
                }
                rounds = Some(n);
            }
            "--timeout" => {
                let v = value("--timeout")?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("--timeout: not a number: {v}"))?;
                o.timeout_s = Some(n.max(1));
            }
            "--only" => o.only = Some(list(&value("--only")?)),
            "--allocators" => o.allocators = Some(list(&value("--allocators")?)),
            "--out" => o.out = Some(PathBuf::from(value("--out")?)),
            "--memkit" => o.memkit = Some(PathBuf::from(value("--memkit")?)),
            "--baseline" => o.baseline = Some(PathBuf::from(value("--baseline")?)),
            "--baseline-env" => {
                let v = value("--baseline-env")?;
                match v.split_once('=') {
                    Some((k, val)) if !k.is_empty() => {
                        o.baseline_env.push((k.to_string(), val.to_string()))
                    }
                    _ => return Err(format!("--baseline-env: expected KEY=VALUE, got {v}")),
                }
            }
            other => return Err(format!("unknown argument: {other}\n\n{USAGE}")),
        }
    }
    if !o.baseline_env.is_empty() && o.baseline.is_none() {
        return Err("--baseline-env needs --baseline".into());
    }
    o.rounds = rounds.unwrap_or(if o.quick { 1 } else { 5 });
    Ok(Some(o))
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Options {
        parse(args.iter().map(|s| s.to_string())).unwrap().unwrap()
    }

    #[test]
    fn defaults() {
        let o = p(&[]);
        assert_eq!(o.rounds, 5);
        assert!(!o.quick);
        assert!(o.only.is_none());
        assert_eq!(p(&["--quick"]).rounds, 1);
    }

    #[test]
    fn values() {
        let o = p(&[
            "--rounds",
            "3",
            "--only=larson,xmalloc",
            "--allocators",
            "glibc, memkit",
            "--out",
            "x",
        ]);
        assert_eq!(o.rounds, 3);
        assert_eq!(o.only.unwrap(), ["larson", "xmalloc"]);
        assert_eq!(o.allocators.unwrap(), ["glibc", "memkit"]);
        assert_eq!(o.out.unwrap(), PathBuf::from("x"));
    }

    #[test]
    fn errors() {
        let e = |a: &[&str]| parse(a.iter().map(|s| s.to_string())).unwrap_err();
        assert!(e(&["--rounds", "0"]).contains("at least 1"));
        assert!(e(&["--rounds"]).contains("needs a value"));
        assert!(e(&["--bogus"]).contains("unknown argument"));
        assert!(e(&["--baseline-env", "X=1"]).contains("needs --baseline"));
        assert!(e(&["--baseline", "b.so", "--baseline-env", "X"]).contains("KEY=VALUE"));
    }

    #[test]
    fn baseline_env() {
        let o = p(&[
            "--baseline",
            "b.so",
            "--baseline-env",
            "MEMKIT_HARDEN=off",
            "--baseline-env=A=b=c",
        ]);
        assert_eq!(
            o.baseline_env,
            [
                ("MEMKIT_HARDEN".to_string(), "off".to_string()),
                ("A".to_string(), "b=c".to_string())
            ]
        );
    }
}
