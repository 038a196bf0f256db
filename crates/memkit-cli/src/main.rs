//! The `memkit` command. This file only defines the command line and
//! dispatches; each subcommand lives in its own module so new ones (maps,
//! bench, check, profile) slot in without touching the others.

mod bounded;
mod check;
mod command;
mod ending;
mod env;
mod error;
mod generate;
mod human;
mod library;
mod maps;
mod profile;
mod report;
mod report_dir;
mod run;
mod shm;
mod supervise;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::error::CliError;

#[derive(Debug, Parser)]
#[command(
    name = "memkit",
    version,
    about = "memkit: run programs on the memkit allocator, inspect process memory",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a program on libmemkit.so and print a memory report when it exits
    #[command(after_long_help = run::LONG_HELP)]
    Run(run::RunArgs),
    Maps(maps::MapsArgs),
    /// Run a program on memkit's checking allocator and report heap bugs:
    /// leaks, double and invalid frees, overflows, use after free
    #[command(after_long_help = check::LONG_HELP)]
    Check(check::CheckArgs),
    /// Profile a program's heap: where memory goes, what was live at the
    /// peak, what leaks, what is short-lived churn (pprof, HTML, JSON)
    #[command(after_long_help = profile::LONG_HELP)]
    Profile(profile::ProfileArgs),
    Shm(shm::ShmArgs),
    /// List every MEMKIT_* environment variable: default, value here, meaning
    Env(env::EnvArgs),
    /// Write the man pages and shell completions (for packagers)
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

fn main() -> ExitCode {
    let cli: Cli = command::parse();
    let result: Result<ExitCode, CliError> = match &cli.command {
        Command::Run(args) => run::run(args),
        Command::Maps(args) => maps::run(args),
        Command::Check(args) => check::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Shm(args) => shm::run(args),
        Command::Env(args) => env::run(args),
        Command::Generate(args) => generate::run(args, Cli::command()),
    };
    result.unwrap_or_else(|err| {
        // Ignore write failures: with stderr gone there is no one to tell,
        // and the exit status still carries the failure.
        let _ = writeln!(std::io::stderr().lock(), "memkit: {err}");
        ExitCode::from(err.status)
    })
}
