//! `memkit profile` driven as a user runs it: around a stand-in runtime
//! (`stand_in`: the command's own behaviour, whatever the runtime does)
//! and with the real libmemkit_profile.so on programs with known
//! allocation sites (`runtime`: the figures of the files).

mod runtime;
mod stand_in;

use std::fs;
use std::path::Path;
use std::process::Command;

#[allow(dead_code)]
#[path = "../../src/profile/proto.rs"]
mod proto;

const MEMKIT: &str = env!("CARGO_BIN_EXE_memkit");

/// memkit in `cwd`, preloading `lib`, with no MEMKIT_* variable or
/// LD_PRELOAD of the test's own.
fn memkit(cwd: &Path, lib: &Path) -> Command {
    let mut cmd = Command::new(MEMKIT);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MEMKIT_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("LD_PRELOAD")
        .env("MEMKIT_PROFILE_LIB", lib)
        .current_dir(cwd);
    cmd
}

/// A directory's summary.json.
fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}
