//! Tests whose expected outcome is a crash, or that change process-wide
//! state, re-run their own test binary on one test in a child process
//! (`MEMKIT_TEST_CHILD=<test name>`) and check how the child ended.

use std::process::{Command, Output};

/// The variable that tells a re-run test binary which test it is the child of.
pub const CHILD: &str = "MEMKIT_TEST_CHILD";

/// Whether this process is the child run for test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// The command that re-runs this test binary on test `name` alone, as its
/// child (add environment or limits before running it).
pub fn self_command(name: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("the test binary's path"));
    c.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name);
    c
}

/// Runs test `name` alone in a child with `env` added, without core files.
pub fn run_self(name: &str, env: &[(&str, &str)]) -> Output {
    let mut c = self_command(name);
    c.envs(env.iter().copied());
    crate::limit_child(&mut c, true, None);
    c.output().expect("running the test binary")
}

/// How a child ended, with its output, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether the child test ran and passed.
pub fn passed(o: &Output) -> bool {
    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1 passed")
}
