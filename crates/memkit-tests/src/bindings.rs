//! Which object each symbol of a program bound to (`LD_DEBUG=bindings`):
//! the tests' proof that `malloc` and friends really came from memkit.

use super::*;

/// One `binding file SRC [n] to DST [n]: normal symbol `SYM'` line.
#[derive(Debug, Clone)]
pub struct Binding {
    pub pid: String,
    pub from: String,
    pub to: String,
    pub symbol: String,
}

fn parse_binding(file_pid: &str, line: &str) -> Option<Binding> {
    let rest = &line[line.find("binding file ")? + "binding file ".len()..];
    let to_at = rest.find("] to ")?;
    let from = rest[..to_at].rsplit_once(" [")?.0.trim().to_string();
    let after = &rest[to_at + "] to ".len()..];
    let to = after[..after.find(" [")?].trim().to_string();
    let sym_at = after.find("symbol `")? + "symbol `".len();
    let sym_end = after[sym_at..].find('\'')?;
    Some(Binding {
        pid: file_pid.to_string(),
        from,
        to,
        symbol: after[sym_at..sym_at + sym_end].to_string(),
    })
}

/// Reads `prefix.*` LD_DEBUG_OUTPUT files in `dir` and returns the bindings of
/// the given symbols.
pub fn read_bindings(dir: &Path, prefix: &str, symbols: &[&str]) -> Vec<Binding> {
    let needles: Vec<String> = symbols.iter().map(|s| format!("symbol `{s}'")).collect();
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&format!("{prefix}.")) else {
            continue;
        };
        let f = fs::File::open(e.path()).unwrap();
        for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line);
            if !line.contains("binding file ") || !needles.iter().any(|n| line.contains(n.as_str()))
            {
                continue;
            }
            if let Some(b) = parse_binding(pid, &line) {
                if symbols.contains(&b.symbol.as_str()) {
                    out.push(b);
                }
            }
        }
    }
    out
}

/// Does the object at `path` define (export) `sym`? `None` when it cannot be
/// read. An executable that takes the address of `free` has an *undefined*
/// `free` with a canonical PLT address, and ld.so then binds other objects'
/// `free` to that PLT stub (which jumps on to the real definition): such
/// bindings are not to a different allocator.
fn object_defines(path: &str, sym: &str) -> Option<bool> {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    static CACHE: OnceLock<Mutex<HashMap<String, Option<HashSet<String>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let defined = cache.entry(path.to_string()).or_insert_with(|| {
        let p = if Path::new(path).exists() {
            PathBuf::from(path)
        } else {
            which(path)?
        };
        let o = Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(p)
            .env_remove("LD_PRELOAD")
            .output()
            .ok()?;
        if !o.status.success() {
            return None;
        }
        Some(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                .map(|n| n.split('@').next().unwrap().to_string())
                .collect(),
        )
    });
    defined.as_ref().map(|d| d.contains(sym))
}

fn is_memkit(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().starts_with("libmemkit"))
        .unwrap_or(false)
}

/// Checks bindings: every symbol in `symbols` bound at least once, and every
/// binding of it (in any process) went to libmemkit.so. Returns a summary
/// line, or panics with the offending bindings.
pub fn check_bindings(bindings: &[Binding], symbols: &[&str], context: &str) -> String {
    let mut summary = Vec::new();
    let mut problems = String::new();
    for sym in symbols {
        // Lookups made by libmemkit.so itself (e.g. dlsym(RTLD_NEXT)) are its business.
        let all: Vec<&Binding> = bindings
            .iter()
            .filter(|b| b.symbol == *sym && !is_memkit(&b.from))
            .collect();
        let to_memkit = all.iter().filter(|b| is_memkit(&b.to)).count();
        let (plt, elsewhere): (Vec<&&Binding>, Vec<&&Binding>) = all
            .iter()
            .filter(|b| !is_memkit(&b.to))
            .partition(|b| object_defines(&b.to, sym) == Some(false));
        if to_memkit == 0 {
            let _ = writeln!(
                problems,
                "`{sym}` never bound to libmemkit.so ({} binding(s) elsewhere)",
                elsewhere.len()
            );
        }
        for b in elsewhere.iter().take(10) {
            let _ = writeln!(
                problems,
                "pid {}: {} bound `{sym}` to {}",
                b.pid, b.from, b.to
            );
        }
        if elsewhere.len() > 10 {
            let _ = writeln!(
                problems,
                "... and {} more `{sym}` bindings not to libmemkit.so",
                elsewhere.len() - 10
            );
        }
        let procs: std::collections::BTreeSet<&str> = all.iter().map(|b| b.pid.as_str()).collect();
        summary.push(format!(
            "{sym}: {to_memkit} binding(s) to libmemkit.so in {} process(es){}",
            procs.len(),
            if plt.is_empty() {
                String::new()
            } else {
                format!(", {} to canonical PLT stubs", plt.len())
            }
        ));
    }
    if !problems.is_empty() {
        panic!("{context}: symbol bindings wrong:\n{problems}");
    }
    summary.join("; ")
}

/// Runs `cmd` with `LD_DEBUG=bindings` (output into files through
/// `LD_DEBUG_OUTPUT`, so the program's stderr is untouched) and asserts that
/// it exits 0 and that each of `symbols` bound to libmemkit.so in every
/// process that bound it (and at least once overall). The caller sets
/// LD_PRELOAD (see [`preload`]).
pub fn run_checking_bindings(
    cmd: &mut Command,
    timeout: Duration,
    symbols: &[&str],
    what: &str,
) -> Outcome {
    let dbg = TempDir::new("ld-debug");
    cmd.env("LD_DEBUG", "bindings")
        .env("LD_DEBUG_OUTPUT", dbg.join("ld"));
    let o = run_ok(cmd, timeout, what);
    let b = read_bindings(dbg.path(), "ld", symbols);
    let summary = check_bindings(&b, symbols, what);
    eprintln!("{what}: ok in {:.1?}; {summary}", o.elapsed);
    o
}

/// Runs `cmd` (with LD_PRELOAD=libmemkit.so added) under `LD_DEBUG=bindings`
/// and asserts that it succeeds and that `malloc` and `free` bound to
/// libmemkit.so ("binding file ... to .../libmemkit.so [0]: normal symbol
/// `malloc'").
pub fn assert_binds_to_memkit(cmd: &mut Command) -> Outcome {
    preload(cmd);
    let what = format!("{}", cmd.get_program().to_string_lossy());
    run_checking_bindings(cmd, Duration::from_secs(300), &["malloc", "free"], &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binding_lines() {
        let l = "     12345:\tbinding file ./abi [0] to /w/target/release/libmemkit.so [0]: normal symbol `malloc' [GLIBC_2.2.5]";
        let b = parse_binding("12345", l).unwrap();
        assert_eq!(b.from, "./abi");
        assert_eq!(b.to, "/w/target/release/libmemkit.so");
        assert_eq!(b.symbol, "malloc");
        assert!(is_memkit(&b.to));
        let l2 = "      7:\tbinding file /lib/x86_64-linux-gnu/libc.so.6 [0] to /lib/x86_64-linux-gnu/libc.so.6 [0]: normal symbol `free'";
        let b2 = parse_binding("7", l2).unwrap();
        assert_eq!(b2.symbol, "free");
        assert!(!is_memkit(&b2.to));
    }
}
