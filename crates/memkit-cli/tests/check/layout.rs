//! libmemkit_check.so's code placement (crates/memkit-check/hot.ld): the
//! code every checked process runs sits together in `.text.memkit_hot`,
//! and everything else in `.text.memkit_rest`, an executable segment of
//! its own after `.bss`, so that the kernel's fault-around (64 KiB windows
//! and whole page-cache folios) does not map it into each process's RSS.

use memkit_tests::{check_lib_path, require};
use std::process::Command;

fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .arg(check_lib_path())
        .output()
        .unwrap_or_else(|e| panic!("{name} runs: {e}"));
    assert!(out.status.success(), "{name} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex number")
}

/// `(address, size)` of a section, from `readelf -SW`.
fn section(text: &str, name: &str) -> Option<(u64, u64)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(']').nth(1)?.split_whitespace().collect();
        (f.first() == Some(&name)).then(|| (hex(f[2]), hex(f[4])))
    })
}

#[test]
fn hot_code_is_together() {
    if !require("hot_code_is_together", &["readelf", "nm"]) {
        return;
    }
    let sections = tool("readelf", &["-SW"]);
    let (hot, hot_len) = section(&sections, ".text.memkit_hot").expect(".text.memkit_hot");
    let (rest, rest_len) = section(&sections, ".text.memkit_rest").expect(".text.memkit_rest");
    assert!(hot_len < 256 << 10, "the hot code grew to {hot_len} bytes");
    assert!(
        rest_len > hot_len,
        "nearly everything is hot: hot.ld is stale"
    );
    let (bss, _) = section(&sections, ".bss").expect(".bss");
    assert!(rest > bss, "the rest of the code is not after .bss");
    let syms = tool("nm", &[]);
    let at = |prefix: &str| -> Vec<u64> {
        syms.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3
                    && (f[1] == "t" || f[1] == "T")
                    && (f[2] == prefix || prefix.ends_with("17h") && f[2].starts_with(prefix)))
                .then(|| hex(f[0]))
            })
            .collect()
    };
    // Entry points, the paths behind them, stack capture, start-up and exit.
    for f in [
        "malloc",
        "free",
        "calloc",
        "memcpy",
        "_ZN12memkit_check5block5alloc17h",
        "_ZN12memkit_check5block4free17h",
        "_ZN12memkit_check5block7release17h",
        "_ZN12memkit_trace6recent12capture_walk17h",
        "_ZN12memkit_trace5depot13intern_hashed17h",
        "_ZN12memkit_check6finish17h",
        "pthread_atfork",
    ] {
        let a = at(f);
        assert!(!a.is_empty(), "{f}: no such function");
        for a in a {
            assert!(
                (hot..hot + hot_len).contains(&a),
                "{f} is not in the hot code"
            );
        }
    }
    let cold: Vec<u64> = syms
        .lines()
        .filter(|l| l.contains(" t _ZN12memkit_trace9symbolize"))
        .filter_map(|l| l.split_whitespace().next().map(hex))
        .collect();
    assert!(!cold.is_empty());
    for a in cold {
        assert!(
            (rest..rest + rest_len).contains(&a),
            "symbolization is in the hot code"
        );
    }
}
