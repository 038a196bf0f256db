//! Where things are: the workspace, the cache directory, libmemkit.so and
//! the peer allocators; and a description of the machine.

use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The memkit workspace root: the first ancestor of the current directory
/// whose Cargo.toml declares a workspace with `crates/memkit-bench` in it,
/// else the one this binary was built from.
pub fn workspace_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if is_memkit_workspace(dir) {
                return dir.to_path_buf();
            }
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    built.canonicalize().unwrap_or(built)
}

fn is_memkit_workspace(dir: &Path) -> bool {
    fs::read_to_string(dir.join("Cargo.toml"))
        .map(|t| t.contains("[workspace]") && t.contains("crates/memkit-bench"))
        .unwrap_or(false)
}

/// `<workspace>/target/memkit-bench`: compiled workloads, scratch
/// directories and default results.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("target").join("memkit-bench")
}

/// One allocator under comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Allocator {
    pub name: String,
    /// The library to preload; `None` for glibc (no preload).
    pub lib: Option<PathBuf>,
    /// Package version (dpkg) or build description.
    pub version: String,
    /// Environment set for this allocator's runs only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

impl Allocator {
    /// True for the baseline (glibc's malloc, nothing preloaded).
    pub fn is_glibc(&self) -> bool {
        self.lib.is_none()
    }
}

/// All allocators the harness knows, in report order.
pub const KNOWN: [&str; 5] = ["glibc", "jemalloc", "mimalloc", "tcmalloc", "memkit"];

/// Library directories searched for the peers.
const LIB_DIRS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib",
];

/// (name, library file, Debian package) of each peer.
const PEERS: [(&str, &str, &str); 3] = [
    ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
    ("mimalloc", "libmimalloc.so.2", "libmimalloc2.0"),
    (
        "tcmalloc",
        "libtcmalloc_minimal.so.4",
        "libtcmalloc-minimal4",
    ),
];

/// The result of looking for the requested allocators.
pub struct Found {
    pub allocators: Vec<Allocator>,
    /// (name, why it is missing) for peers that are not installed.
    pub skipped: Vec<(String, String)>,
}

/// The libmemkit.so to use: `--memkit`, else `MEMKIT_LIB`, else
/// `<workspace>/target/release/libmemkit.so`. `Err` explains what is missing.
pub fn memkit_lib(explicit: Option<&Path>, root: &Path) -> Result<PathBuf, String> {
    let (path, origin) = match (explicit, std::env::var_os("MEMKIT_LIB")) {
        (Some(p), _) => (p.to_path_buf(), "--memkit"),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), "MEMKIT_LIB"),
        _ => (
            root.join("target/release/libmemkit.so"),
            "the workspace default",
        ),
    };
    if path.is_file() {
        Ok(path.canonicalize().unwrap_or(path))
    } else {
        Err(format!(
            "libmemkit.so not found at {} ({origin}).\n\
             Build it first:  cargo build --release -p memkit-preload   (in {})\n\
             or point to one with --memkit PATH or MEMKIT_LIB=PATH.",
            path.display(),
            root.display()
        ))
    }
}

/// Finds the allocators named in `wanted` (all of [`KNOWN`] when `None`).
/// A missing peer is skipped; a missing libmemkit.so or an unknown name is
/// an error.
pub fn find_allocators(
    wanted: Option<&[String]>,
    memkit: Option<&Path>,
    root: &Path,
) -> Result<Found, String> {
    let names: Vec<String> = match wanted {
        Some(w) => {
            for n in w {
                if !KNOWN.contains(&n.as_str()) {
                    return Err(format!(
                        "unknown allocator '{n}' (known: {})",
                        KNOWN.join(", ")
                    ));
                }
            }
            // Report order, whatever order they were given in.
            KNOWN
                .iter()
                .filter(|k| w.iter().any(|n| n == *k))
                .map(|k| k.to_string())
                .collect()
        }
        None => KNOWN.iter().map(|k| k.to_string()).collect(),
    };
    let mut found = Found {
        allocators: Vec::new(),
        skipped: Vec::new(),
    };
    for name in names {
        match name.as_str() {
            "glibc" => found.allocators.push(Allocator {
                name,
                lib: None,
                version: glibc_version(),
                env: Vec::new(),
            }),
            "memkit" => {
                let lib = memkit_lib(memkit, root)?;
                let version = format!(
                    "{} — built at {}",
                    memkit_version(root, &lib),
                    lib.display()
                );
                found.allocators.push(Allocator {
                    name,
                    version,
                    lib: Some(snapshot(&lib, &cache_dir(root))?),
                    env: Vec::new(),
                });
            }
            peer => {
                let (_, file, pkg) = PEERS.iter().find(|p| p.0 == peer).expect("known peer");
                match LIB_DIRS
                    .iter()
                    .map(|d| Path::new(d).join(file))
                    .find(|p| p.is_file())
                {
                    Some(lib) => found.allocators.push(Allocator {
                        name,
                        lib: Some(lib),
                        version: dpkg_version(pkg).unwrap_or_else(|| "unknown".into()),
                        env: Vec::new(),
                    }),
                    None => found
                        .skipped
                        .push((name, format!("{file} not found (apt-get install -y {pkg})"))),
                }
            }
        }
    }
    Ok(found)
}

/// Copies `lib` to `<cache>/lib/libmemkit-<hash>.so` so that a rebuild of
/// the workspace's library during a long run cannot change the allocator
/// under test half-way through. Returns the copy.
pub fn snapshot(lib: &Path, cache: &Path) -> Result<PathBuf, String> {
    let bytes = fs::read(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in &bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let dir = cache.join("lib");
    let copy = dir.join(format!("libmemkit-{h:016x}.so"));
    if !copy.is_file() {
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join(format!(".libmemkit-{h:016x}.{}", std::process::id()));
        fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, &copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    }
    Ok(copy)
}

/// The installed version of a Debian package.
pub fn dpkg_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", pkg])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// glibc's version, as the running process sees it.
pub fn glibc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a pointer to a static,
    // NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let v = v.to_string_lossy().into_owned();
    match dpkg_version("libc6") {
        Some(pkg) => format!("{v} (libc6 {pkg})"),
        None => v,
    }
}

fn memkit_version(root: &Path, lib: &Path) -> String {
    let rev = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown revision".into());
    let size = fs::metadata(lib).map(|m| m.len()).unwrap_or(0);
    format!(
        "{} (git {rev}, {} KiB)",
        env!("CARGO_PKG_VERSION"),
        size / 1024
    )
}

/// What the report says about the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_gib: f64,
    pub kernel: String,
    pub glibc: String,
    pub gcc: String,
    /// /proc/loadavg when the run started: how busy the shared machine was.
    pub loadavg_at_start: String,
}

pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_total_gib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    let read = |p: &str| {
        fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let gcc = Command::new("gcc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "not found".into());
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        mem_total_gib,
        kernel: read("/proc/sys/kernel/osrelease"),
        glibc: glibc_version(),
        gcc,
        loadavg_at_start: read("/proc/loadavg"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_the_bench_crate() {
        assert!(workspace_root()
            .join("crates/memkit-bench/Cargo.toml")
            .is_file());
    }

    #[test]
    fn missing_memkit_says_how_to_build_it() {
        let e = memkit_lib(
            Some(Path::new("/nonexistent/libmemkit.so")),
            Path::new("/w"),
        )
        .unwrap_err();
        assert!(e.contains("not found"), "{e}");
        assert!(e.contains("cargo build --release"), "{e}");
    }

    #[test]
    fn unknown_allocator_is_an_error() {
        let e = find_allocators(Some(&["glibcc".to_string()]), None, Path::new("/w"))
            .err()
            .unwrap();
        assert!(e.contains("unknown allocator"));
    }
}
