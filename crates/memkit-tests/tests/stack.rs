//! Stack buffers from C: `c/stack.c` (MEMKIT_STACK_BUFFER and
//! memkit_stack_remaining of `include/memkit-stack.h`), linked with
//! libmemkit.so and run under an 8 MiB RLIMIT_STACK.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use memkit_tests::*;

const STACK_LIMIT: u64 = 8 << 20;

/// Compiles c/stack.c against include/ and links libmemkit.so.
fn program(dir: &TempDir) -> std::path::PathBuf {
    let flags = memkit_link_flags(lib_path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    compile_c("stack.c", dir.path(), "stack", &flags)
}

fn with_stack_limit(cmd: &mut Command) -> &mut Command {
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_STACK, &mut l);
            l.rlim_cur = STACK_LIMIT;
            if l.rlim_max != libc::RLIM_INFINITY && l.rlim_max < STACK_LIMIT {
                l.rlim_max = STACK_LIMIT;
            }
            if libc::setrlimit(libc::RLIMIT_STACK, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A 64 KiB thread: 1 KiB on the stack, 60 KiB and 1 MiB on the heap, the
/// share rule at its edge; recursion 1000 deep with 64 KiB a level on the
/// 8 MiB main stack and on an 8 MiB thread (on the stack while it fits,
/// then the heap, remaining() shrinking, nothing left allocated); a buffer
/// in a loop released each iteration. Linked, and again preloaded with the
/// functions bound to libmemkit.so.
#[test]
fn stack_buffers_from_c() {
    if !require("stack_buffers_from_c", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("stack-c");
    let prog = program(&dir);
    let t = Duration::from_secs(60);
    let o = run_ok(
        with_stack_limit(&mut Command::new(&prog)),
        t,
        "stack (linked)",
    );
    for case in [
        "ok 64 KiB thread",
        "ok recursion on the main thread",
        "ok recursion on an 8 MiB thread",
        "ok loop",
    ] {
        assert!(o.stdout.contains(case), "no {case:?}:\n{}", o.describe());
    }
    eprint!("{}", o.stdout);
    let mut cmd = preloaded(&prog);
    with_stack_limit(&mut cmd);
    run_checking_bindings(
        &mut cmd,
        t,
        &["memkit_stack_remaining", "malloc", "free"],
        "stack (preloaded)",
    );
}

/// The header documents the rule with the numbers the Rust side uses.
#[test]
fn header_and_rust_share_the_rule() {
    let h = std::fs::read_to_string(workspace_root().join("include/memkit-stack.h")).unwrap();
    let red = format!(
        "#define MEMKIT_STACK_RED_ZONE ((size_t){} * 1024)",
        memkit_sys::stack::RED_ZONE / 1024
    );
    let share = format!(
        "#define MEMKIT_STACK_SHARE ((size_t){})",
        memkit_sys::stack::SHARE
    );
    assert!(h.contains(&red), "header lacks {red:?}");
    assert!(h.contains(&share), "header lacks {share:?}");
}
