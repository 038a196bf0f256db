//! The report record: the line each process on libmemkit.so keeps up to
//! date in its report file for `memkit run` (see [`crate::report_file`]),
//! and `memkit run` reads back.
//!
//! ```text
//! memkit-report v1 pid=1234 ppid=1200 allocs=10 ... threads=3 exe=/opt/my%20app/bin/x
//! ```
//!
//! The fields are defined once, in the table at the `record!` call below
//! (name and type, in the order written). Both ends use this module: the
//! library encodes with [`Record::encode`] (no allocation, a caller's
//! buffer of [`MAX_LEN`] bytes, or [`max_len`] of its paths' length), the
//! CLI decodes with [`decode`]. Adding a
//! counter is one line in the table and the line of the library that fills
//! it in. It lives in memkit-sys because that is the lowest crate both
//! libmemkit.so and the CLI reach.
//!
//! # Format `memkit-report v1`
//! * `memkit-report v1`, then `key=value` fields separated by one space, in
//!   table order, then `\n`. The whole line is printable ASCII.
//! * A count is unsigned decimal (no sign, at most `u64::MAX`).
//! * A path is percent-encoded: `%`, and every byte outside `!`..=`~`
//!   (space, newline, tab, other control bytes, non-ASCII), is written as
//!   `%XX` (two upper-case hex digits); [`Escaped::bytes`] reverses it
//!   exactly, whatever the bytes were (paths need not be UTF-8).
//! * Readers ignore keys they do not know, so a newer library may add fields
//!   without breaking an older CLI. A field of the table missing from a line
//!   rejects it ([`DecodeError::MissingKey`]): zeros would pass for real
//!   counts. A change to the meaning of a field bumps [`VERSION`].

use core::fmt;

/// First word of every record.
pub const MAGIC: &str = "memkit-report";
/// The version this module writes and reads.
pub const VERSION: &str = "v1";

/// The longest path value [`MAX_LEN`] leaves room for: `PATH_MAX`, what
/// `readlink` of `/proc/self/exe` can return.
pub const PATH_MAX: usize = 4096;

/// The type of a field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An unsigned 64-bit count, in decimal.
    Count,
    /// Bytes of a path, percent-encoded.
    Path,
}

/// One entry of [`FIELDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// The value's type.
    pub kind: Kind,
}

/// A field's value, borrowed from a [`Record`] (see [`Record::fields`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'r, P> {
    /// A [`Kind::Count`] field.
    Count(u64),
    /// A [`Kind::Path`] field.
    Path(&'r P),
}

/// Declares [`Record`] with each field's Rust type (`u64` or `P`) spelled
/// out, since `derive` does not accept a type macro.
macro_rules! record_struct {
    ([$($fields:tt)*] $(#[doc = $doc:literal])* $name:ident: Count, $($rest:tt)*) => {
        record_struct!([$($fields)* $(#[doc = $doc])* pub $name: u64,] $($rest)*);
    };
    ([$($fields:tt)*] $(#[doc = $doc:literal])* $name:ident: Path, $($rest:tt)*) => {
        record_struct!([$($fields)* $(#[doc = $doc])* pub $name: P,] $($rest)*);
    };
    ([$($fields:tt)*]) => {
        /// One process's report. `P` is the type of the path fields: `&[u8]`
        /// (raw bytes) to encode, [`Escaped`] when decoded, whatever the
        /// reader turns that into (see [`Record::map_paths`]).
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Record<P> {
            $($fields)*
        }
    };
}

macro_rules! record {
    ($( $(#[doc = $doc:literal])* $name:ident: $kind:ident, )*) => {
        record_struct!([] $( $(#[doc = $doc])* $name: $kind, )*);

        /// The fields of a record, in the order they are written.
        pub const FIELDS: [Field; [$(stringify!($name)),*].len()] = [
            $( Field { name: stringify!($name), kind: Kind::$kind }, )*
        ];

        impl<P> Record<P> {
            /// Every field with its name, in [`FIELDS`] order.
            pub fn fields(&self) -> [(&'static str, Value<'_, P>); FIELDS.len()] {
                [$( (stringify!($name), field_value!($kind, &self.$name)), )*]
            }

            /// The same record with every path field passed through `f`.
            pub fn map_paths<Q>(self, mut f: impl FnMut(P) -> Q) -> Record<Q> {
                Record { $( $name: map_field!($kind, self.$name, f), )* }
            }
        }

        impl<P: AsRef<[u8]>> Record<P> {
            /// Writes the record, `\n` included, to the start of `out`;
            /// returns the length written, or `None` (and nothing useful
            /// in `out`) if it does not fit. [`MAX_LEN`] bytes hold any
            /// record whose paths are at most [`PATH_MAX`] bytes.
            pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
                let mut w = Cursor { out, len: 0 };
                w.put(MAGIC.as_bytes())?;
                w.put(b" ")?;
                w.put(VERSION.as_bytes())?;
                $(
                    w.put(b" ")?;
                    w.put(stringify!($name).as_bytes())?;
                    w.put(b"=")?;
                    encode_field!($kind, w, &self.$name)?;
                )*
                w.put(b"\n")?;
                Some(w.len)
            }
        }

        /// Reads one record (a line, without or with its `\n`). Fields may
        /// come in any order, separated by any ASCII whitespace.
        pub fn decode(line: &str) -> Result<Record<Escaped<'_>>, DecodeError<'_>> {
            let mut tokens = line.split_ascii_whitespace();
            if tokens.next() != Some(MAGIC) {
                return Err(DecodeError::NotAReport);
            }
            match tokens.next() {
                Some(VERSION) => {}
                Some(v) => return Err(DecodeError::UnsupportedVersion(v)),
                None => return Err(DecodeError::NotAReport),
            }
            let mut record = Record::<Escaped<'_>>::default();
            let mut seen = [false; FIELDS.len()];
            for token in tokens {
                let Some((key, value)) = token.split_once('=') else {
                    return Err(DecodeError::NotKeyValue(token));
                };
                // Unknown keys come from a newer library: skip them.
                let Some(index) = FIELDS.iter().position(|f| f.name == key) else {
                    continue;
                };
                if core::mem::replace(&mut seen[index], true) {
                    return Err(DecodeError::DuplicateKey(key));
                }
                match key {
                    $( stringify!($name) => {
                        record.$name = decode_field!($kind, key, value)?;
                    } )*
                    _ => {}
                }
            }
            match seen.iter().position(|&s| !s) {
                Some(index) => Err(DecodeError::MissingKey(FIELDS[index].name)),
                None => Ok(record),
            }
        }
    };
}

macro_rules! field_value {
    (Count, $v:expr) => {
        Value::Count(*$v)
    };
    (Path, $v:expr) => {
        Value::Path($v)
    };
}

macro_rules! map_field {
    (Count, $v:expr, $f:ident) => {
        $v
    };
    (Path, $v:expr, $f:ident) => {
        $f($v)
    };
}

macro_rules! encode_field {
    (Count, $w:ident, $v:expr) => {
        $w.count(*$v)
    };
    (Path, $w:ident, $v:expr) => {
        $w.path($v.as_ref())
    };
}

macro_rules! decode_field {
    (Count, $key:ident, $v:ident) => {
        parse_count($v).ok_or(DecodeError::BadNumber {
            key: $key,
            value: $v,
        })
    };
    (Path, $key:ident, $v:ident) => {
        Escaped::new($v).ok_or(DecodeError::BadEscape {
            key: $key,
            value: $v,
        })
    };
}

record! {
    /// `getpid()`.
    pid: Count,
    /// `getppid()`.
    ppid: Count,
    /// Successful allocations (malloc, calloc, realloc to a new block, ...).
    allocs: Count,
    /// Frees of memkit's blocks.
    frees: Count,
    /// `realloc` calls.
    reallocs: Count,
    /// Bytes handed out over the process's life (block sizes).
    bytes_allocated: Count,
    /// Bytes still allocated at exit.
    in_use: Count,
    /// Peak bytes in use.
    peak_in_use: Count,
    /// Bytes mapped from the OS at exit.
    mapped: Count,
    /// Peak bytes mapped.
    peak_mapped: Count,
    /// Bytes returned with munmap.
    unmapped: Count,
    /// Bytes purged (madvise) and still mapped.
    purged: Count,
    /// Threads that ran on the allocator.
    threads: Count,
    /// The executable, `readlink /proc/self/exe`.
    exe: Path,
}

/// Bytes enough for any record whose paths are at most [`PATH_MAX`] bytes.
pub const MAX_LEN: usize = max_len(PATH_MAX);

/// Bytes enough for any record whose paths are at most `path_len` bytes
/// (each byte may take three when encoded).
pub const fn max_len(path_len: usize) -> usize {
    let mut n = MAGIC.len() + 1 + VERSION.len() + 1; // header and "\n"
    let mut i = 0;
    while i < FIELDS.len() {
        let value = match FIELDS[i].kind {
            Kind::Count => 20, // u64::MAX has 20 digits
            Kind::Path => 3 * path_len,
        };
        n += 1 + FIELDS[i].name.len() + 1 + value;
        i += 1;
    }
    n
}

/// A path value as found in a record: percent-encoding checked, not yet
/// decoded (decoding needs somewhere to put the bytes; see [`Escaped::bytes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Escaped<'a>(&'a str);

impl<'a> Escaped<'a> {
    /// `None` if a `%` is not followed by two hex digits.
    pub fn new(text: &'a str) -> Option<Self> {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                hex(*b.get(i + 1)?)?;
                hex(*b.get(i + 2)?)?;
                i += 3;
            } else {
                i += 1;
            }
        }
        Some(Escaped(text))
    }

    /// The text as written in the record.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The decoded bytes.
    pub fn bytes(&self) -> Unescape<'a> {
        Unescape(self.0.as_bytes())
    }
}

/// Iterator over the decoded bytes of an [`Escaped`] value.
#[derive(Clone, Debug)]
pub struct Unescape<'a>(&'a [u8]);

impl Iterator for Unescape<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        if let [b'%', hi, lo, tail @ ..] = self.0 {
            if let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo)) {
                self.0 = tail;
                return Some(hi << 4 | lo);
            }
        }
        self.0 = rest;
        Some(first)
    }
}

/// Why a line is not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError<'a> {
    /// It does not start with `memkit-report VERSION`.
    NotAReport,
    /// Another version of the record (a newer library).
    UnsupportedVersion(&'a str),
    /// A word without `=`.
    NotKeyValue(&'a str),
    /// A count that is not an unsigned 64-bit decimal number.
    BadNumber {
        /// The key.
        key: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// A path with a `%` not followed by two hex digits.
    BadEscape {
        /// The key.
        key: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// A field given twice.
    DuplicateKey(&'a str),
    /// A field of [`FIELDS`] that the line lacks (an older library, or a
    /// truncated line).
    MissingKey(&'static str),
}

impl fmt::Display for DecodeError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotAReport => write!(f, "does not start with `{MAGIC} {VERSION}`"),
            DecodeError::UnsupportedVersion(v) => write!(
                f,
                "unsupported protocol version `{v}` (this memkit understands {VERSION}; \
                 is the library newer than the CLI?)"
            ),
            DecodeError::NotKeyValue(tok) => write!(f, "`{tok}` is not key=value"),
            DecodeError::BadNumber { key, value } => {
                write!(f, "{key}=`{value}` is not an unsigned integer")
            }
            DecodeError::BadEscape { key, value } => {
                write!(
                    f,
                    "{key}=`{value}` has a `%` not followed by two hex digits"
                )
            }
            DecodeError::DuplicateKey(key) => write!(f, "key `{key}` appears twice"),
            DecodeError::MissingKey(key) => write!(
                f,
                "missing key `{key}` (is the library older than the CLI, or the line cut short?)"
            ),
        }
    }
}

/// Digits only: `u64::from_str` would also take a leading `+`.
fn parse_count(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A bounds-checked writer over a caller's buffer.
struct Cursor<'b> {
    out: &'b mut [u8],
    len: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn count(&mut self, v: u64) -> Option<()> {
        let mut digits = [0u8; 20];
        self.put(crate::text::decimal(v, &mut digits))
    }

    fn path(&mut self, bytes: &[u8]) -> Option<()> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &c in bytes {
            if c != b'%' && c.is_ascii_graphic() {
                self.put(&[c])?;
            } else {
                self.put(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]])?;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// A record with a different count in every field (the extremes
    /// among them), whatever the table holds, and `exe` in every path field.
    fn sample(exe: &[u8]) -> Record<Vec<u8>> {
        const VALUES: [u64; 6] = [0, 1, 10, 4096, u64::MAX, 12_345_678_901_234_567_890];
        let mut line = String::from("memkit-report v1");
        for (i, f) in FIELDS.iter().enumerate() {
            match f.kind {
                Kind::Count => {
                    let v = VALUES.get(i).copied().unwrap_or(i as u64 * 1_000_003);
                    line += &std::format!(" {}={v}", f.name);
                }
                Kind::Path => line += &std::format!(" {}=x", f.name),
            }
        }
        let r = decode(&line).expect("sample decodes");
        let mut counts: Vec<u64> = r
            .fields()
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Count(n) => Some(*n),
                Value::Path(_) => None,
            })
            .collect();
        counts.sort_unstable();
        counts.dedup();
        assert_eq!(
            counts.len(),
            FIELDS.iter().filter(|f| f.kind == Kind::Count).count()
        );
        r.map_paths(|_| exe.to_vec())
    }

    fn encode(r: &Record<Vec<u8>>) -> String {
        let mut buf = [0u8; MAX_LEN];
        let n = r.encode(&mut buf).expect("fits in MAX_LEN");
        String::from_utf8(buf[..n].to_vec()).expect("ASCII")
    }

    #[test]
    fn every_field_round_trips() {
        let exe: &[u8] = b"/opt/my app/100%/x\ny\tz\r\x01\x7f\xff%25\xc3\xa9=a b";
        let r = sample(exe);
        let line = encode(&r);
        assert!(line.starts_with("memkit-report v1 pid="), "{line}");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert!(line
            .bytes()
            .all(|b| b == b'\n' || b == b' ' || b.is_ascii_graphic()));
        assert_eq!(line.split(' ').count(), 2 + FIELDS.len());
        let back = decode(&line).expect("decodes");
        let back = back.map_paths(|e| e.bytes().collect::<Vec<u8>>());
        assert_eq!(back, r);
        assert_eq!(back.exe, exe);
    }

    #[test]
    fn escapes_exactly_the_unsafe_bytes() {
        let line = encode(&sample(b"/a b%c\nd"));
        assert!(line.ends_with(" exe=/a%20b%25c%0Ad\n"), "{line}");
        // Every byte value survives.
        let all: Vec<u8> = (0..=255).collect();
        let line = encode(&sample(&all));
        let back: Vec<u8> = decode(&line).unwrap().exe.bytes().collect();
        assert_eq!(back, all);
    }

    #[test]
    fn max_len_holds_the_largest_record() {
        let exe = [b' '; PATH_MAX];
        let mut r = sample(&exe);
        r = Record { pid: u64::MAX, ..r };
        let mut buf = [0u8; MAX_LEN];
        assert!(r.encode(&mut buf).is_some());
        // max_len of a path's length is enough for records with paths of
        // that length, escaped or not.
        let short = Record {
            exe: std::vec![b'a'; 10],
            ..r.clone()
        };
        assert!(short.encode(&mut std::vec![0u8; max_len(10)]).is_some());
        // Too small a buffer is refused, never overrun.
        for len in [0, 10, 100, MAX_LEN / 2] {
            let mut small = std::vec![0u8; len];
            assert_eq!(r.encode(&mut small), None, "{len}");
        }
    }

    #[test]
    fn records_of_other_versions() {
        let line = encode(&sample(b"/bin/sh"));
        let line = line.trim_end();
        // Newer library, same version: unknown keys (and odd values) ignored.
        let newer = std::format!("{line} arenas=4 note=a=b%zz empty=");
        assert_eq!(decode(&newer), decode(line));
        // Older library without a field: refused, naming it.
        let older = line.replace(" threads=", " old_threads=");
        assert_eq!(decode(&older), Err(DecodeError::MissingKey("threads")));
        assert!(DecodeError::MissingKey("threads")
            .to_string()
            .contains("library older than the CLI"));
        let v2 = line.replace(" v1 ", " v2 ");
        assert_eq!(decode(&v2), Err(DecodeError::UnsupportedVersion("v2")));
        // What the library wrote before this module (only space, `%` and
        // newline escaped, other bytes raw) still decodes.
        let old = line.replace("exe=/bin/sh", "exe=/opt/jos\u{e9}%20x/100%25");
        let exe: Vec<u8> = decode(&old).unwrap().exe.bytes().collect();
        assert_eq!(exe, "/opt/jos\u{e9} x/100%".as_bytes());
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        let good = encode(&sample(b"/a b"));
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        let cases: &[(&str, DecodeError<'_>)] = &[
            ("", DecodeError::NotAReport),
            ("memkit-report", DecodeError::NotAReport),
            ("memkit-report v1 x", DecodeError::NotKeyValue("x")),
            (
                "memkit-report v1 pid=+1",
                DecodeError::BadNumber {
                    key: "pid",
                    value: "+1",
                },
            ),
            (
                "memkit-report v1 pid=18446744073709551616",
                DecodeError::BadNumber {
                    key: "pid",
                    value: "18446744073709551616",
                },
            ),
            (
                "memkit-report v1 exe=%2",
                DecodeError::BadEscape {
                    key: "exe",
                    value: "%2",
                },
            ),
            (
                "memkit-report v1 exe=a%g0",
                DecodeError::BadEscape {
                    key: "exe",
                    value: "a%g0",
                },
            ),
            (
                "memkit-report v1 pid=1 pid=1",
                DecodeError::DuplicateKey("pid"),
            ),
            ("memkit-report v1 pid=1", DecodeError::MissingKey("ppid")),
        ];
        for (line, expected) in cases {
            assert_eq!(decode(line).as_ref(), Err(expected), "{line:?}");
        }
        // Every single-byte corruption of a good line.
        let mut bytes = good.clone().into_bytes();
        for i in 0..bytes.len() {
            let keep = bytes[i];
            for c in [b'%', b'=', b' ', b'x', b'0', 0x80] {
                bytes[i] = c;
                let _ = decode(&String::from_utf8_lossy(&bytes));
            }
            bytes[i] = keep;
        }
    }
}
