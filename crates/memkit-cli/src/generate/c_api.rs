//! libmemkit(3): the C API's man page, made from the headers' own comments
//! (each declaration with the comment above it) and the environment table,
//! so nothing of it is written twice.

use memkit_sys::env::reader;

use super::roff;
use crate::library::{MEMKIT, MULTIARCH_DIR, VERSION};

/// The installed headers, in the order the page describes them.
pub const HEADERS: &[(&str, &str)] = &[
    ("memkit.h", include_str!("../../../../include/memkit.h")),
    (
        "memkit-secure.h",
        include_str!("../../../../include/memkit-secure.h"),
    ),
    (
        "memkit-shm.h",
        include_str!("../../../../include/memkit-shm.h"),
    ),
];

/// A header: its opening comment and its documented items.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub intro: Vec<String>,
    pub items: Vec<Item>,
}

/// A comment and the code lines right below it (none for a comment that
/// stands alone, such as a group's heading).
#[derive(Debug, PartialEq, Eq)]
pub struct Item {
    pub doc: Vec<String>,
    pub code: Vec<String>,
}

/// Lines that only frame a header (guards, includes, C++ linkage).
fn is_framing(line: &str, guard: Option<&str>) -> bool {
    let t = line.trim();
    t.starts_with("#include")
        || t.starts_with("#ifndef")
        || t.starts_with("#ifdef")
        || t.starts_with("#endif")
        || t == "extern \"C\" {"
        || t == "}"
        || guard.is_some_and(|g| t == format!("#define {g}"))
}

/// The text of a comment `/* ... */` spanning `lines`, without its
/// delimiters and leading ` * ` (indentation past it kept).
fn comment_text(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut l = line.trim_end();
        if i == 0 {
            l = l.trim_start().strip_prefix("/*").unwrap_or(l);
        } else {
            let t = l.trim_start();
            l = t
                .strip_prefix('*')
                .filter(|_| !t.starts_with("*/"))
                .unwrap_or(t);
        }
        let l = l.strip_suffix("*/").unwrap_or(l);
        let l = l.strip_prefix(' ').unwrap_or(l).trim_end();
        out.push(l.to_owned());
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    while out.first().is_some_and(String::is_empty) {
        out.remove(0);
    }
    out
}

/// Splits a header into its opening comment and documented items.
pub fn parse(text: &str) -> Header {
    let lines: Vec<&str> = text.lines().collect();
    let guard = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("#ifndef "))
        .map(str::trim);
    let mut intro = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut doc = Vec::new();
        if lines[i].trim_start().starts_with("/*") {
            let start = i;
            while !lines[i].contains("*/") && i + 1 < lines.len() {
                i += 1;
            }
            doc = comment_text(&lines[start..=i]);
            i += 1;
            if intro.is_empty() && items.is_empty() {
                intro = doc;
                continue;
            }
        }
        // The code right below the comment (or code with no comment).
        let mut code = Vec::new();
        while i < lines.len() {
            let l = lines[i];
            if l.trim().is_empty() || l.trim_start().starts_with("/*") {
                break;
            }
            if !is_framing(l, guard) {
                code.push(l.trim_end().to_owned());
            }
            i += 1;
        }
        if doc.is_empty() && code.is_empty() {
            // A blank line, or framing alone.
            i += usize::from(i < lines.len() && !lines[i].trim_start().starts_with("/*"));
            continue;
        }
        items.push(Item { doc, code });
    }
    Header { intro, items }
}

/// The name each function declaration of `code` declares.
pub fn functions(code: &[String]) -> Vec<String> {
    code.iter()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('(') && l.contains(");"))
        .filter_map(|l| {
            let before = &l[..l.find('(')?];
            let name: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// Every function the headers declare, in order.
pub fn all_functions() -> Vec<String> {
    HEADERS
        .iter()
        .flat_map(|(_, text)| parse(text).items)
        .flat_map(|item| functions(&item.code))
        .collect()
}

/// A comment's lines as roff: paragraphs, and indented runs verbatim.
fn doc_roff(doc: &[String]) -> String {
    roff::help_text(&doc.join("\n"))
}

/// The page, in man(7) markup.
pub fn page() -> String {
    let mut out = format!(
        ".TH LIBMEMKIT 3 \"\" \"memkit {VERSION}\" \"memkit manual\"\n\
         .SH NAME\n\
         libmemkit \\- memkit's malloc replacement, secure memory for secrets, shared-memory heaps, and its version\n\
         .SH SYNOPSIS\n\
         .nf\n\
         .B #include <memkit.h>\n\
         .PP\n"
    );
    for (_, text) in HEADERS {
        for item in parse(text).items {
            for line in item
                .code
                .iter()
                .filter(|l| !functions(std::slice::from_ref(*l)).is_empty())
            {
                out.push_str(&roff::code_line(line.trim(), true));
                out.push('\n');
            }
        }
    }
    out.push_str(".fi\n.PP\nCompile and link with\n");
    out.push_str(&roff::example(&[
        "cc prog.c $(pkg-config --cflags --libs memkit)",
    ]));
    out.push_str("or run an unmodified program on it with\n");
    out.push_str(&roff::example(&[&format!(
        "LD_PRELOAD={MULTIARCH_DIR}/{} prog",
        MEMKIT.file
    )]));
    out.push_str(".SH DESCRIPTION\n");
    for (name, text) in HEADERS {
        let header = parse(text);
        out.push_str(&format!(".SS {name}\n"));
        // The opening comment names its header first ("memkit.h: ...").
        let mut intro = header.intro;
        if let Some(first) = intro.first_mut() {
            let prefix = format!("{name}: ");
            if let Some(rest) = first.strip_prefix(&prefix) {
                *first = roff::capitalized(rest);
            }
        }
        out.push_str(&doc_roff(&intro));
        for item in header.items {
            out.push_str(".PP\n");
            if !item.code.is_empty() {
                out.push_str(".nf\n");
                for line in &item.code {
                    out.push_str(&roff::code_line(line, true));
                    out.push('\n');
                }
                out.push_str(".fi\n.RS 4\n");
                out.push_str(&doc_roff(&item.doc));
                out.push_str(".RE\n");
            } else {
                out.push_str(&doc_roff(&item.doc));
            }
        }
    }
    out.push_str(&roff::environment(
        reader::LIBRARY,
        "Read by libmemkit.so once at start, without allocating; a malformed value \
         prints one warning line and keeps the default. `memkit env` shows the values \
         a shell sets.",
    ));
    out.push_str(&format!(
        ".SH FILES\n\
         .TP\n{dir}/{real}\n\
         the library; {dir}/{soname} is its runtime link, {dir}/{file} the one \\fB\\-lmemkit\\fR \
         and \\fBLD_PRELOAD\\fR use\n\
         .TP\n/usr/include/memkit/\n\
         the headers\n\
         .TP\n{dir}/pkgconfig/memkit.pc\n\
         compiler and linker flags for \\fBpkg\\-config\\fR\n",
        dir = MULTIARCH_DIR,
        real = format_args!("{}.{VERSION}", MEMKIT.file),
        soname = MEMKIT.soname,
        file = MEMKIT.file,
    ));
    out.push_str(&roff::see_also(&[
        "memkit(1)",
        "memkit-run(1)",
        "malloc(3)",
        "mallinfo2(3)",
        "malloc_stats(3)",
        "mallopt(3)",
        "mlock(2)",
        "shm_open(3)",
        "ld.so(8)",
    ]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_and_their_declarations() {
        let h = parse(
            "/* x.h: the intro.\n *\n * More.\n */\n#ifndef X_H\n#define X_H\n\n\
             /* Heading. */\n/* Does f.\n * Really. */\nint f(void);\nvoid *g_h(size_t n);\n\n\
             #define X_A 1 /* one */\n#endif\n",
        );
        assert_eq!(h.intro, ["x.h: the intro.", "", "More."]);
        assert_eq!(
            h.items,
            [
                Item {
                    doc: vec!["Heading.".into()],
                    code: vec![]
                },
                Item {
                    doc: vec!["Does f.".into(), "Really.".into()],
                    code: vec!["int f(void);".into(), "void *g_h(size_t n);".into()]
                },
                Item {
                    doc: vec![],
                    code: vec!["#define X_A 1 /* one */".into()]
                },
            ]
        );
        assert_eq!(functions(&h.items[1].code), ["f", "g_h"]);
    }

    #[test]
    fn every_header_declares_functions() {
        let all = all_functions();
        assert!(all.iter().any(|f| f == "memkit_version"), "{all:?}");
        assert!(all.iter().any(|f| f == "memkit_secure_malloc"), "{all:?}");
        // memkit-shm.h: every function of the shared heaps, each once.
        for f in [
            "memkit_shm_create",
            "memkit_shm_open",
            "memkit_shm_close",
            "memkit_shm_unlink",
            "memkit_shm_alloc",
            "memkit_shm_free",
            "memkit_shm_offset",
            "memkit_shm_at",
            "memkit_shm_named",
            "memkit_shm_named_next",
            "memkit_shm_named_remove",
            "memkit_shm_lock",
            "memkit_shm_unlock",
            "memkit_shm_stats",
            "memkit_shm_check",
            "memkit_shm_create_anon",
            "memkit_shm_fd",
            "memkit_shm_open_fd",
        ] {
            assert_eq!(all.iter().filter(|g| *g == f).count(), 1, "{f}: {all:?}");
        }
        // No framing or type line is taken for a function.
        assert!(!all.iter().any(|f| f == "memkit_shm"), "{all:?}");
    }
}
