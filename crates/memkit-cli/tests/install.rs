//! What an installed memkit relies on, driving the real binary: which
//! library `--version` names and `memkit run` accepts (a library of
//! another version, or none, is refused), `memkit env`, and the man pages
//! and completions of `memkit generate`. The package itself is tested by
//! scripts/test-deb (run by .ci/run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const MEMKIT: &str = env!("CARGO_BIN_EXE_memkit");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// A stand-in library with the version note of `version` (None: none).
fn stand_in(version: Option<&str>) -> PathBuf {
    memkit_tests::stand_in_lib(tmp(), version)
}

fn real_lib() -> &'static Path {
    memkit_tests::lib_path()
}

/// memkit with no MEMKIT_* variable of the test's environment.
fn memkit() -> Command {
    clean(MEMKIT)
}

/// `program` with no MEMKIT_* variable of the test's environment.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MEMKIT_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("LD_PRELOAD");
    // The check and profile libraries are named only when found: keep
    // them out of the expected outputs (tests/check, tests/profile.rs).
    cmd.env("MEMKIT_CHECK_LIB", "/nonexistent/libmemkit_check.so");
    cmd.env("MEMKIT_PROFILE_LIB", "/nonexistent/libmemkit_profile.so");
    cmd
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let o = memkit_tests::run(cmd, std::time::Duration::from_secs(120));
    (o.status.code(), o.stdout, o.stderr)
}

#[test]
fn version_names_the_library_and_its_version() {
    let lib = std::fs::canonicalize(real_lib()).unwrap();
    for flag in ["--version", "-V"] {
        let (code, stdout, stderr) = run(memkit().env("MEMKIT_LIB", &lib).arg(flag));
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            stdout,
            format!("memkit {VERSION} (library: {}, {VERSION})\n", lib.display())
        );
    }
}

#[test]
fn a_library_of_another_version_is_refused() {
    let lib = stand_in(Some("0.0.1-other"));
    let (code, stdout, _) = run(memkit().env("MEMKIT_LIB", &lib).arg("--version"));
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        format!(
            "memkit {VERSION} (library: {lib}, 0.0.1-other)\n\
             memkit run refuses it: MEMKIT_LIB={lib} is libmemkit.so 0.0.1-other, but this \
             memkit is {VERSION}: refusing a library of another version (its options and \
             report format may differ); use the memkit that came with it, or point \
             MEMKIT_LIB at the libmemkit.so of memkit {VERSION}\n",
            lib = lib.display()
        )
    );
    let (code, stdout, stderr) = run(memkit()
        .env("MEMKIT_LIB", &lib)
        .args(["run", "--", "sh", "-c", "echo ran"]));
    assert_eq!(code, Some(125), "{stderr}");
    assert_eq!(stdout, "", "the program must not run");
    assert_eq!(
        stderr,
        format!(
            "memkit: MEMKIT_LIB={lib} is libmemkit.so 0.0.1-other, but this memkit is \
             {VERSION}: refusing a library of another version (its options and report \
             format may differ); use the memkit that came with it, or point MEMKIT_LIB at \
             the libmemkit.so of memkit {VERSION}\n",
            lib = lib.display()
        )
    );
}

#[test]
fn a_library_without_a_version_note_is_refused() {
    let lib = stand_in(None);
    let (code, _, stderr) = run(memkit().env("MEMKIT_LIB", &lib).args(["run", "--", "true"]));
    assert_eq!(code, Some(125));
    assert_eq!(
        stderr,
        format!(
            "memkit: MEMKIT_LIB={} has no memkit version note: it is not a libmemkit.so, \
             or one built before memkit 0.1.0; point MEMKIT_LIB at the libmemkit.so of \
             memkit {VERSION}\n",
            lib.display()
        )
    );
    // Not even an ELF shared object.
    let script = tmp().join("not-a-library.so");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let (code, stdout, _) = run(memkit().env("MEMKIT_LIB", &script).arg("--version"));
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!(
            "(library: {}, unreadable)\nmemkit run refuses it: MEMKIT_LIB={}: not an x86_64 \
             shared object;",
            script.display(),
            script.display()
        )),
        "{stdout}"
    );
}

#[test]
fn version_says_when_no_library_is_found() {
    let (code, stdout, _) = run(memkit()
        .env("MEMKIT_LIB", "/nonexistent/libmemkit.so")
        .arg("--version"));
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        format!(
            "memkit {VERSION} (library: none found)\nmemkit run needs one: \
             MEMKIT_LIB=/nonexistent/libmemkit.so does not exist; point it at a built \
             libmemkit.so or unset it\n"
        )
    );
}

/// Without MEMKIT_LIB, a memkit copied into a directory of its own finds
/// the library beside it, and the search order is in --help.
#[test]
fn finds_the_library_beside_the_executable() {
    let dir = memkit_tests::TempDir::new("beside");
    let exe = dir.join("memkit");
    std::fs::copy(MEMKIT, &exe).unwrap();
    std::fs::copy(stand_in(Some(VERSION)), dir.join("libmemkit.so")).unwrap();
    let (code, stdout, stderr) = run(clean(&exe).arg("--version"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "memkit {VERSION} (library: {}, {VERSION})\n",
            dir.join("libmemkit.so").display()
        )
    );
    let (_, help, _) = run(memkit().arg("--help"));
    let order = [
        "$MEMKIT_LIB",
        "the directory of the memkit executable",
        "/usr/lib/x86_64-linux-gnu/libmemkit.so.0",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|s| {
            help.find(s)
                .unwrap_or_else(|| panic!("{s} not in --help:\n{help}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{help}");
}

#[test]
fn env_lists_every_variable_with_its_value_here() {
    let (code, stdout, stderr) = run(memkit()
        .env("MEMKIT_THP", "never")
        .env("MEMKIT_PURGE_DELAY", "5")
        .arg("env"));
    assert_eq!(code, Some(0), "{stderr}");
    for v in memkit_sys::env::VARS {
        let user = v.read_by & memkit_sys::env::reader::USER != 0;
        assert_eq!(stdout.contains(v.name), user, "{}:\n{stdout}", v.name);
    }
    let thp = stdout
        .lines()
        .find(|l| l.starts_with("MEMKIT_THP "))
        .unwrap();
    let cells: Vec<&str> = thp.split_whitespace().collect();
    assert_eq!(cells[..3], ["MEMKIT_THP", "default", "never"], "{thp}");
    let purge = stdout
        .lines()
        .find(|l| l.starts_with("MEMKIT_PURGE_DELAY_MS "))
        .unwrap();
    assert_eq!(purge.split_whitespace().nth(2), Some("-"), "{purge}");
    assert!(
        stdout.contains(
            "MEMKIT_PURGE_DELAY=5 is set, but no part of memkit reads MEMKIT_PURGE_DELAY"
        ),
        "{stdout}"
    );

    let (_, all, _) = run(memkit().args(["env", "--all"]));
    for v in memkit_sys::env::VARS {
        assert!(all.contains(v.name), "{}", v.name);
    }

    let (_, json, _) = run(memkit().env("MEMKIT_HARDEN", "off").args(["env", "--json"]));
    let v: Value = serde_json::from_str(&json).unwrap();
    let harden = v["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "MEMKIT_HARDEN")
        .unwrap();
    assert_eq!(harden["value"], "off");
    assert_eq!(harden["default"], "on");
    assert_eq!(v["unknown"], Value::Array(vec![]));
}

/// The pages `memkit generate` writes, under `man/`.
const PAGES: [&str; 5] = [
    "man1/memkit.1",
    "man1/memkit-run.1",
    "man1/memkit-maps.1",
    "man1/memkit-env.1",
    "man3/libmemkit.3",
];

/// The files of `memkit generate` (once per test binary).
fn generated() -> &'static Path {
    static DIR: OnceLock<memkit_tests::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = memkit_tests::TempDir::new("generate");
        let (code, _, stderr) = run(memkit().arg("generate").arg("--out").arg(dir.path()));
        assert_eq!(code, Some(0), "{stderr}");
        dir
    })
    .path()
}

#[test]
fn generate_writes_a_page_per_command_and_the_c_api_page() {
    let man = generated().join("man");
    for page in PAGES {
        let text =
            std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.contains("\n.TH ") || text.starts_with(".TH "),
            "{page}"
        );
        assert!(text.contains(&format!("memkit {VERSION}")), "{page}");
    }
    assert!(!man.join("man1/memkit-generate.1").exists(), "hidden");
    let c_api = std::fs::read_to_string(man.join("man3/libmemkit.3")).unwrap();
    for f in [
        "memkit_version",
        "memkit_secure_malloc",
        "memkit_memzero",
        "memkit_shm_alloc",
        "memkit_shm_open_fd",
        "free_sized",
    ] {
        assert!(c_api.contains(&format!("{f}(")), "{f} not in libmemkit(3)");
    }
    for v in memkit_sys::env::VARS {
        let library = v.read_by & memkit_sys::env::reader::LIBRARY != 0;
        assert_eq!(
            c_api.contains(v.name),
            library,
            "{} in libmemkit(3)",
            v.name
        );
    }
    let top = std::fs::read_to_string(man.join("man1/memkit.1")).unwrap();
    assert!(top.contains("MEMKIT_LIB"), "ENVIRONMENT of memkit(1)");
    assert!(top.contains("libmemkit.so.0"), "search order in memkit(1)");
    let alias = man.join("man3/memkit_secure_malloc.3");
    assert_eq!(std::fs::read_link(alias).unwrap(), Path::new("libmemkit.3"));
}

/// groff (from groff-base, which man-db needs) renders every page without
/// a warning.
#[test]
fn man_pages_render_without_warnings() {
    if !memkit_tests::require("man pages", &["groff"]) {
        return;
    }
    let man = generated().join("man");
    for page in PAGES {
        let (code, _, stderr) = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(man.join(page))
            .env("LC_ALL", "C.UTF-8"));
        assert_eq!(code, Some(0), "{page}: {stderr}");
        assert_eq!(stderr, "", "{page}");
    }
}

#[test]
fn completions_are_valid_scripts_without_hidden_commands() {
    let dir = generated();
    let bash = dir.join("bash-completion/completions/memkit");
    let zsh = dir.join("zsh/vendor-completions/_memkit");
    let fish = dir.join("fish/vendor_completions.d/memkit.fish");
    for (shell, file) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains("maps") && text.contains("env"), "{shell}");
        assert!(
            !text.contains("generate"),
            "{shell} offers the hidden command"
        );
        // Syntax check where the shell is installed (bash always is).
        if shell == "bash" || memkit_tests::which(shell).is_some() {
            let (code, _, stderr) = run(Command::new(shell).arg("-n").arg(file));
            assert_eq!(code, Some(0), "{shell} -n: {stderr}");
        }
    }
    let script = format!(
        "source {}; COMP_WORDS=(memkit r); COMP_CWORD=1; _memkit memkit r memkit; \
         echo \"${{COMPREPLY[@]}}\"",
        bash.display()
    );
    let (_, stdout, stderr) = run(Command::new("bash").args(["-c", &script]));
    assert_eq!(stdout, "run\n", "{stderr}");
}
