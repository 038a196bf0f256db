//! `memkit env`: every `MEMKIT_*` environment variable with its default,
//! the value this environment sets, who reads it and what it does; the
//! table is `memkit_sys::env::VARS`, the one list of them.

use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use memkit_sys::env::{reader, Var, VARS};

use crate::error::CliError;

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Also list the variables only memkit's tests and benchmarks read
    #[arg(long)]
    all: bool,

    /// Print one JSON object: {"variables": [{name, default, value,
    /// read_by, meaning}], "unknown": [{name, value}]}
    #[arg(long)]
    json: bool,

    /// Print the table as Markdown, as in the README
    #[arg(long, hide = true)]
    markdown: bool,
}

pub fn run(args: &EnvArgs) -> Result<ExitCode, CliError> {
    let shown: Vec<&Var> = VARS
        .iter()
        .filter(|v| args.all || v.read_by & reader::USER != 0)
        .collect();
    let text = if args.markdown {
        markdown(&shown)
    } else if args.json {
        json_text(&shown)
    } else {
        table(&shown, VARS.len() - shown.len())
    };
    // A closed pipe (`memkit env | head`) ends quietly.
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::new(format!(
            "cannot write to stdout: {}",
            memkit::describe_io(&e)
        ))),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The names of the readers of `v`.
fn reader_names(v: &Var) -> Vec<&'static str> {
    reader::NAMES
        .iter()
        .filter(|(bit, _)| v.read_by & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// The names of the readers of `v`, comma-separated.
pub fn readers(v: &Var) -> String {
    reader_names(v).join(", ")
}

/// `v`'s meaning without the backquotes of its code spans.
fn plain(meaning: &str) -> String {
    meaning.replace('`', "")
}

fn value_text(value: &[u8]) -> String {
    let v = String::from_utf8_lossy(value);
    if v.is_empty() || v.contains(char::is_whitespace) {
        format!("{v:?}")
    } else {
        v.into_owned()
    }
}

/// Unknown `MEMKIT_*` names set here, as `NAME=value`.
fn unknown() -> Vec<(String, String)> {
    memkit_sys::env::unknown()
        .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), value_text(v)))
        .collect()
}

fn table(vars: &[&Var], hidden: usize) -> String {
    let rows: Vec<[String; 4]> = vars
        .iter()
        .map(|v| {
            [
                v.name.to_owned(),
                v.default.to_owned(),
                v.current().map_or_else(|| "-".to_owned(), value_text),
                readers(v),
            ]
        })
        .collect();
    let header = ["VARIABLE", "DEFAULT", "SET HERE", "READ BY"].map(str::to_owned);
    let mut widths = [0; 3];
    for row in rows.iter().chain([&header]) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count().min(40));
        }
    }
    let line = |row: &[String; 4]| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    let mut out = line(&header);
    for (row, v) in rows.iter().zip(vars) {
        out.push_str(&line(row));
        for l in wrap(&plain(v.meaning), 72) {
            out.push_str("    ");
            out.push_str(&l);
            out.push('\n');
        }
    }
    for (name, value) in unknown() {
        out.push_str(&format!(
            "\n{name}={value} is set, but no part of memkit reads {name} (a typo?)\n"
        ));
    }
    if hidden > 0 {
        out.push_str(&format!(
            "\n{hidden} more read only by memkit's tests and benchmarks: memkit env --all\n"
        ));
    }
    out
}

fn json_text(vars: &[&Var]) -> String {
    let variables: Vec<_> = vars
        .iter()
        .map(|v| {
            json!({
                "name": v.name,
                "default": v.default,
                "value": v.current().map(|b| String::from_utf8_lossy(b).into_owned()),
                "read_by": reader_names(v),
                "meaning": plain(v.meaning),
            })
        })
        .collect();
    let unknown: Vec<_> = memkit_sys::env::unknown()
        .map(|(n, v)| {
            json!({
                "name": String::from_utf8_lossy(n),
                "value": String::from_utf8_lossy(v),
            })
        })
        .collect();
    let mut s = json!({ "variables": variables, "unknown": unknown }).to_string();
    s.push('\n');
    s
}

/// The README's table of the variables a user deals with.
pub fn markdown(vars: &[&Var]) -> String {
    let mut s = String::from("| variable | default | read by | meaning |\n|---|---|---|---|\n");
    for v in vars {
        s.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            v.name,
            v.default,
            readers(v),
            v.meaning
        ));
    }
    s
}

/// Greedy word wrap at `width` columns.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- memkit env --markdown: begin -->\n";
    const END: &str = "<!-- memkit env --markdown: end -->";

    /// The README's table is the table (regenerate it with
    /// `memkit env --markdown`).
    #[test]
    fn readme_table_is_generated() {
        let readme = include_str!("../../../README.md");
        let start = readme.find(BEGIN).expect("README marks the env table") + BEGIN.len();
        let end = readme[start..].find(END).expect("end marker") + start;
        let user: Vec<&Var> = VARS
            .iter()
            .filter(|v| v.read_by & reader::USER != 0)
            .collect();
        let expected = markdown(&user);
        assert!(
            readme[start..end] == expected,
            "README.md's environment table differs from memkit_sys::env::VARS; \
             replace it with the output of `memkit env --markdown`:\n{expected}"
        );
    }

    #[test]
    fn wraps_words() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("", 6), Vec::<String>::new());
    }
}
