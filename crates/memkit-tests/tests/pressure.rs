//! Memory pressure under LD_PRELOAD=libmemkit.so: when the OS refuses a
//! mapping, memkit gives back what it keeps for reuse and tries again, so
//! memory freed under an address-space limit (`ulimit -v`) can be used
//! again, for small and for large blocks.

use memkit_tests::*;
use std::process::Command;
use std::time::Duration;

/// The value printed after `key` by pressure.c.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim()))
}

fn number(out: &str, key: &str) -> i64 {
    field(out, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

/// Fill 48 MiB of address space with 1 MiB blocks, free them, then
/// malloc(100) and fill again: both must work (before, memkit kept the
/// freed mappings cached and returned NULL). glibc runs the same program
/// first, which validates it.
#[test]
fn freed_memory_is_usable_again_under_an_address_space_limit() {
    if !require(
        "freed_memory_is_usable_again_under_an_address_space_limit",
        &["gcc"],
    ) {
        return;
    }
    let dir = TempDir::new("pressure");
    let prog = compile_c("pressure.c", dir.path(), "pressure", &[]);
    let t = Duration::from_secs(60);
    let glibc = run_ok(Command::new(&prog).arg("48"), t, "pressure (plain glibc)");
    let mut cmd = preloaded(&prog);
    cmd.arg("48");
    let o = run_checking_bindings(&mut cmd, t, &["malloc", "free"], "pressure");
    eprintln!("glibc:\n{}memkit:\n{}", glibc.stdout, o.stdout);
    assert_eq!(
        field(&o.stdout, "SMALL_AFTER_FREE"),
        Some("ok"),
        "{}",
        o.describe()
    );
    let (n1, n2) = (number(&o.stdout, "BIG "), number(&o.stdout, "BIG_AGAIN"));
    // Most of the 48 MiB hold 1 MiB blocks (headers and the rest take a few).
    assert!(n1 >= 30, "only {n1} 1 MiB blocks in 48 MiB:\n{}", o.stdout);
    assert!(n2 >= n1 - 2, "freed space not reused: {n1} then {n2}");
    // At exhaustion small blocks still come from the space that is left.
    assert!(
        number(&o.stdout, "SMALL_AT_EXHAUSTION") > 0,
        "no small block at exhaustion:\n{}",
        o.stdout
    );
}
