//! Runs the harness in `--quick` mode against glibc and memkit (the peers
//! are left out to keep this short) and checks that every workload passed
//! under both. This is the benchmark suite's functional check in CI.
//!
//! libmemkit.so is found (or built) the way memkit-tests finds it:
//! `MEMKIT_LIB`, else the workspace's `target/release/libmemkit.so`.

use std::path::PathBuf;
use std::process::Command;

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memkit-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn quick_run_passes_under_glibc_and_memkit() {
    let lib = memkit_tests::lib_path();
    let out = out_dir("quick");
    let result = Command::new(env!("CARGO_BIN_EXE_memkit-bench"))
        .args(["--quick", "--allocators", "glibc,memkit", "--memkit"])
        .arg(lib)
        .arg("--out")
        .arg(&out)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run memkit-bench");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "memkit-bench --quick failed ({}):\n{stdout}\n{stderr}",
        result.status
    );
    assert!(stdout.contains("### Wall time (s)"), "{stdout}");
    assert!(stdout.contains("All runs passed their checks."), "{stdout}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["quick"], true);
    assert_eq!(json["failures"].as_array().unwrap().len(), 0);
    let rows = json["rows"].as_array().unwrap();
    // Every C workload must have run; the real programs may be skipped if
    // they are not installed (the harness reports it), except in CI
    // (MEMKIT_TESTS_REQUIRE_ALL), which installs all but redis.
    let real: &[&str] = if std::env::var_os("MEMKIT_TESTS_REQUIRE_ALL").is_some() {
        &["python", "rbstress", "rbstress-2t", "sqlite", "gxx", "git"]
    } else {
        &[]
    };
    for name in real.iter().copied().chain([
        "fixed-sizes",
        "larson",
        "xmalloc",
        "thread-churn",
        "fragmentation",
        "larson-sized",
        "mstress",
        "mstress-x10",
        "rptest",
        "alloc-test",
        "malloc-large",
        "buffer-churn",
        "glibc-simple",
        "glibc-thread",
        "cfrac",
        "espresso",
    ]) {
        let row = rows
            .iter()
            .find(|r| r["workload"] == name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        for a in ["glibc", "memkit"] {
            let cell = &row["cells"][a];
            assert_eq!(cell["failures"], 0, "{name} under {a}");
            assert!(cell["wall_s"].as_f64().unwrap() > 0.0, "{name} under {a}");
            assert!(
                cell["max_rss_mib"].as_f64().unwrap() > 0.0,
                "{name} under {a}"
            );
        }
    }
    for f in ["results.md", "time_ratio.svg", "rss_ratio.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let svg = std::fs::read_to_string(out.join("time_ratio.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn missing_memkit_is_reported() {
    let result = Command::new(env!("CARGO_BIN_EXE_memkit-bench"))
        .args([
            "--quick",
            "--only",
            "fixed-sizes",
            "--memkit",
            "/nonexistent/libmemkit.so",
        ])
        .arg("--out")
        .arg(out_dir("missing"))
        .output()
        .expect("run memkit-bench");
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("libmemkit.so not found"), "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");
}

#[test]
fn unknown_workload_is_an_error() {
    let result = Command::new(env!("CARGO_BIN_EXE_memkit-bench"))
        .args(["--only", "no-such-workload", "--allocators", "glibc"])
        .output()
        .expect("run memkit-bench");
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("unknown workload"));
}
