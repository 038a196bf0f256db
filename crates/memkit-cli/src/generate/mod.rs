//! `memkit generate --out DIR` (hidden; for packagers and `cargo install`
//! users): the man pages and shell completions, made from the very
//! command definition memkit parses its arguments with, the C headers'
//! comments and the environment table.
//!
//! `DIR` is laid out like `/usr/share`, so `--out /usr/share` (or a
//! package's staging copy of it, or `~/.local/share`) puts every file where
//! man, bash-completion, zsh and fish look:
//!
//! ```text
//! man/man1/memkit.1, memkit-SUBCOMMAND.1      (one per subcommand)
//! man/man3/libmemkit.3                        (+ links: memkit.3, memkit_*.3)
//! bash-completion/completions/memkit
//! zsh/vendor-completions/_memkit
//! fish/vendor_completions.d/memkit.fish
//! ```

mod c_api;
mod roff;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;
use clap_mangen::Man;

use memkit::describe_io;
use memkit_sys::env::reader;

use crate::error::CliError;
use crate::library::VERSION;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write into, laid out like /usr/share
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Writes every page and completion into `args.out`; `cmd` is memkit's
/// command definition (`Cli::command()`).
pub fn run(args: &GenerateArgs, cmd: clap::Command) -> Result<ExitCode, CliError> {
    let files = files(cmd);
    for file in &files {
        write(&args.out, file).map_err(|e| {
            CliError::new(format!(
                "cannot write {}: {}",
                args.out.join(&file.path).display(),
                describe_io(&e)
            ))
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A file to write, relative to the output directory.
pub struct File {
    pub path: PathBuf,
    pub contents: Contents,
}

pub enum Contents {
    Text(Vec<u8>),
    /// A symbolic link to this file name in the same directory.
    LinkTo(String),
}

fn write(out: &Path, file: &File) -> io::Result<()> {
    let path = out.join(&file.path);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    match &file.contents {
        Contents::Text(bytes) => fs::write(&path, bytes),
        Contents::LinkTo(target) => {
            if path.symlink_metadata().is_ok() {
                fs::remove_file(&path)?;
            }
            std::os::unix::fs::symlink(target, &path)
        }
    }
}

/// Every generated file.
pub fn files(cmd: clap::Command) -> Vec<File> {
    let completed = visible(&cmd);
    let mut cmd = crate::command::decorate(cmd).disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let names: Vec<String> = subcommands
        .iter()
        .map(|s| format!("memkit-{}", s.get_name()))
        .collect();

    let mut see_also: Vec<String> = names.iter().map(|n| format!("{n}(1)")).collect();
    see_also.push("libmemkit(3)".to_owned());
    let environment = roff::environment(
        reader::LIBRARY | reader::CLI,
        "memkit reads MEMKIT_LIB; the others configure libmemkit.so in the programs memkit \
         runs (libmemkit(3)). `memkit env` shows the values a shell sets.",
    );
    out.push(man_file(
        "memkit",
        1,
        command_page(&cmd, &environment, &see_also),
    ));
    for (sub, name) in subcommands.iter().zip(&names) {
        let env = if sub.get_name() == "run" {
            environment.as_str()
        } else {
            ""
        };
        let see = ["memkit(1)".to_owned(), "libmemkit(3)".to_owned()];
        out.push(man_file(name, 1, command_page(sub, env, &see)));
    }

    out.push(man_file("libmemkit", 3, c_api::page().into_bytes()));
    let mut aliases = vec!["memkit".to_owned()];
    aliases.extend(
        c_api::all_functions()
            .into_iter()
            .filter(|f| f.starts_with("memkit_")),
    );
    for alias in aliases {
        out.push(File {
            path: PathBuf::from(format!("man/man3/{alias}.3")),
            contents: Contents::LinkTo("libmemkit.3".to_owned()),
        });
    }

    for (shell, path) in [
        (Shell::Bash, "bash-completion/completions/memkit"),
        (Shell::Zsh, "zsh/vendor-completions/_memkit"),
        (Shell::Fish, "fish/vendor_completions.d/memkit.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut completed.clone(), "memkit", &mut text);
        out.push(File {
            path: PathBuf::from(path),
            contents: Contents::Text(text),
        });
    }
    out
}

/// `cmd` (not yet built) without its hidden subcommands, which
/// clap_complete would offer.
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new("memkit")
        .version(VERSION)
        .propagate_version(cmd.is_propagate_version_set())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    out
}

fn man_file(name: &str, section: u8, page: Vec<u8>) -> File {
    File {
        path: PathBuf::from(format!("man/man{section}/{name}.{section}")),
        contents: Contents::Text(page),
    }
}

/// A command's page: clap_mangen's sections, then the long help after the
/// options as DETAILS (kept as written: it holds lists and schemas), the
/// environment and SEE ALSO.
fn command_page(cmd: &clap::Command, environment: &str, see_also: &[String]) -> Vec<u8> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    // NAME is "memkit \- ABOUT": an about that starts with "memkit: "
    // (the top-level one, for --help) would say it twice.
    let mut cmd = cmd.clone();
    if let Some(about) = cmd.get_about().map(|a| a.to_string()) {
        if let Some(rest) = about.strip_prefix(&format!("{name}: ")) {
            cmd = cmd.about(roff::capitalized(rest));
        }
    }
    let cmd = &cmd;
    let man = Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("1")
        .source(format!("memkit {VERSION}"))
        .manual("memkit manual");
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        let _ = man.render_options_section(&mut out);
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        let _ = man.render_subcommands_section(&mut out);
    }
    if let Some(details) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        out.extend_from_slice(b".SH DETAILS\n");
        out.extend_from_slice(roff::help_text(&details.to_string()).as_bytes());
    }
    out.extend_from_slice(environment.as_bytes());
    let refs: Vec<&str> = see_also.iter().map(String::as_str).collect();
    out.extend_from_slice(roff::see_also(&refs).as_bytes());
    let _ = man.render_version_section(&mut out);
    out
}
