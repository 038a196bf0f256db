//! Text into man(7) markup: the few shapes memkit's pages are made of
//! (help paragraphs with preformatted blocks, C code, the environment
//! table), escaped once here.

use memkit_sys::env::{Var, VARS};

use crate::env::readers;

/// `text` as roff text: backslashes and a leading `.` or `'` escaped,
/// `code` spans in bold (their `-` as `\-`, so they copy as typed).
pub fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("\\fB");
            out.push_str(&escape(part).replace('-', "\\-"));
            out.push_str("\\fR");
        } else {
            out.push_str(&escape(part));
        }
    }
    guard_line_start(out)
}

/// Backslashes and the en dash; nothing else needs escaping inside a line.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('–', "\\(en")
}

/// A line starting with `.` or `'` would be read as a request.
fn guard_line_start(line: String) -> String {
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line
    }
}

/// A line of code, verbatim (for `.nf` blocks), optionally in bold.
pub fn code_line(line: &str, bold: bool) -> String {
    let escaped = escape(line).replace('-', "\\-");
    let escaped = if bold && !escaped.is_empty() {
        format!("\\fB{escaped}\\fR")
    } else {
        escaped
    };
    guard_line_start(escaped)
}

/// Help text as roff: blank lines separate paragraphs, and runs of
/// indented lines (lists, schemas) stay as they are.
pub fn help_text(text: &str) -> String {
    let mut out = String::new();
    let mut preformatted = false;
    for line in text.lines() {
        let indented = line.starts_with(' ');
        if line.trim().is_empty() {
            if preformatted {
                out.push_str(".fi\n");
                preformatted = false;
            }
            out.push_str(".PP\n");
            continue;
        }
        if indented && !preformatted {
            out.push_str(".nf\n");
            preformatted = true;
        } else if !indented && preformatted {
            out.push_str(".fi\n");
            preformatted = false;
        }
        if preformatted {
            out.push_str(&code_line(line, false));
        } else {
            out.push_str(&inline(line));
        }
        out.push('\n');
    }
    if preformatted {
        out.push_str(".fi\n");
    }
    out
}

/// An ENVIRONMENT section of the variables with any of the `readers`
/// bits, from memkit_sys::env::VARS.
pub fn environment(readers_mask: u8, intro: &str) -> String {
    let mut out = format!(".SH ENVIRONMENT\n{}\n", inline(intro));
    for v in VARS.iter().filter(|v| v.read_by & readers_mask != 0) {
        out.push_str(&var_entry(v));
    }
    out
}

fn var_entry(v: &Var) -> String {
    format!(
        ".TP\n\\fB{}\\fR (default {})\n{}.\nRead by {}.\n",
        v.name,
        inline(&format!("`{}`", v.default)),
        inline(&capitalized(v.meaning)),
        escape(&readers(v)),
    )
}

/// `text` with its first letter in upper case.
pub fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Lines shown as typed, indented.
pub fn example(lines: &[&str]) -> String {
    let mut out = String::from(".RS 4\n.nf\n");
    for l in lines {
        out.push_str(&code_line(l, false));
        out.push('\n');
    }
    out.push_str(".fi\n.RE\n");
    out
}

/// `.SH SEE ALSO` with `name(section)` references.
pub fn see_also(pages: &[&str]) -> String {
    let refs: Vec<String> = pages
        .iter()
        .map(|p| match p.split_once('(') {
            Some((name, rest)) => format!("\\fB{}\\fR({rest}", escape(name).replace('-', "\\-")),
            None => escape(p),
        })
        .collect();
    format!(".SH SEE ALSO\n{}\n", refs.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_roff_would_misread() {
        assert_eq!(inline("a `--json` b\\c"), "a \\fB\\-\\-json\\fR b\\ec");
        assert_eq!(inline(".hidden"), "\\&.hidden");
        assert_eq!(inline("0–3"), "0\\(en3");
        assert_eq!(code_line("int f(void);", true), "\\fBint f(void);\\fR");
    }

    #[test]
    fn keeps_indented_blocks() {
        let roff = help_text("Para one\nstill one\n\nList:\n  a  x\n  b  y\nAfter");
        assert_eq!(
            roff,
            "Para one\nstill one\n.PP\nList:\n.nf\n  a  x\n  b  y\n.fi\nAfter\n"
        );
    }
}
