//! Heaps that are no thread's from C: `c/heap.c` (memkit_heap_* in
//! include/memkit.h), linked with libmemkit.so, and the same program
//! under LD_PRELOAD: an OS heap (sizes, calloc, alignment, frees from
//! another thread, destroy with live blocks) and a memfd heap whose
//! blocks a forked child reads and writes at offsets from the heap's base
//! through its own mapping, without allocating from or freeing into it.

use std::process::Command;
use std::time::Duration;

use memkit_tests::*;

#[test]
fn heaps_from_c_over_the_os_and_a_memfd() {
    if !require("heaps_from_c_over_the_os_and_a_memfd", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("heap");
    let flags = memkit_link_flags(lib_path());
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.push("-pthread");
    let prog = compile_c("heap.c", dir.path(), "heap", &flags);
    let out = run_ok(&mut Command::new(&prog), Duration::from_secs(120), "heap");
    assert_eq!(out.stdout.trim(), "ok", "{}", out.describe());
    let out = run_ok(
        &mut preloaded(&prog),
        Duration::from_secs(120),
        "heap (preloaded)",
    );
    assert_eq!(out.stdout.trim(), "ok", "{}", out.describe());
}
