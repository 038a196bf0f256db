//! The parts of the top-level command made at run time, from the same
//! data the rest of memkit uses: the `--version` line, which names each
//! library memkit would preload and its version, and the library search
//! order and environment pointer at the end of `--help`.

use clap::{CommandFactory, FromArgMatches};

use crate::library::{self, LIBRARIES};

/// Parses the command line like `C::parse()`, with the run-time parts.
pub fn parse<C: CommandFactory + FromArgMatches>() -> C {
    let mut cmd = decorate(C::command());
    if asks_version() {
        // Leaked once: clap keeps the version as a 'static str.
        cmd = cmd.version(&*String::leak(version_text()));
    }
    let matches = cmd.get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The command with its run-time help (what the man pages are made from
/// too).
pub fn decorate(cmd: clap::Command) -> clap::Command {
    cmd.after_long_help(library::search_help())
}

/// Whether `-V`/`--version` is among memkit's own arguments (before `--`):
/// only then is the library looked for.
fn asks_version() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--version" || a == "-V")
}

/// `0.1.0 (library: /usr/lib/x86_64-linux-gnu/libmemkit.so.0, 0.1.0)`,
/// then a line for each library memkit would refuse or finds none of.
fn version_text() -> String {
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    for lib in LIBRARIES {
        let Some((part, problem)) = library::version_report(lib) else {
            continue;
        };
        parts.push(part);
        problems.extend(problem);
    }
    let mut text = format!("{} ({})", library::VERSION, parts.join("; "));
    for p in problems {
        text.push('\n');
        text.push_str(&p);
    }
    text
}
