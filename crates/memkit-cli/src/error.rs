//! The one error type of the CLI: a message for the user plus the exit
//! status to leave with, so every failure path ends in a clean
//! `memkit: ...` line instead of a panic or a Debug dump.

use std::fmt;

/// Exit status for memkit's own failures. 125 follows `env`, `timeout` and
/// `nice`, which wrap commands the same way: it keeps memkit's errors
/// distinguishable from the wrapped program's statuses (126/127 from the
/// exec, anything else from the program itself).
pub const INTERNAL_FAILURE: u8 = 125;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub status: u8,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_status(INTERNAL_FAILURE, message)
    }

    pub fn with_status(status: u8, message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            status,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}
