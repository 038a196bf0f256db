//! The version note of memkit's shared libraries: an ELF note holding the
//! library's version string, defined once here for the writer (the
//! libraries, through [`version_note!`](crate::version_note)) and the
//! reader (`memkit --version`, and `memkit run` before it preloads one).
//!
//! The CLI reads the note from the file, without loading the library: a
//! `dlopen` would run the library's constructor (options, the record for
//! `memkit run`, `MEMKIT_MLOCKALL`) and put a second allocator, with its
//! static TLS, in the CLI's process, all to learn a string. C programs that
//! run on the library get the same bytes from `memkit_version()`.
//!
//! # Format
//! A standard `Elf64_Nhdr` note in section `.note.memkit.version`, which
//! the linker puts in a `PT_NOTE` segment (readable with `readelf -n`):
//! owner [`NAME`] (`"memkit"`, `namesz` 7 with its NUL), type [`TYPE`],
//! descriptor the version (`CARGO_PKG_VERSION` of the library's crate)
//! with a NUL (`descsz` counts it), padded with NULs to 4 bytes.

/// The note's owner name, without its NUL.
pub const NAME: &[u8] = b"memkit";
/// The note type, in [`NAME`]'s namespace: the version string.
pub const TYPE: u32 = 1;
/// The section the note lives in (also written literally in
/// [`version_note!`](crate::version_note), as `link_section` needs).
pub const SECTION: &str = ".note.memkit.version";

/// Bytes of the descriptor field for `version`: its NUL-terminated
/// length, padded to 4.
pub const fn desc_size(version: &str) -> usize {
    (version.len() + 1 + 3) & !3
}

/// The note as laid out in the file; `D` is [`desc_size`] of the version.
#[repr(C, align(4))]
pub struct Note<const D: usize> {
    namesz: u32,
    descsz: u32,
    n_type: u32,
    name: [u8; 8],
    desc: [u8; D],
}

impl<const D: usize> Note<D> {
    /// The note for `version`; fails to compile (in a `static`) when `D`
    /// is not `desc_size(version)` or the version holds a NUL.
    pub const fn new(version: &str) -> Self {
        assert!(
            D == desc_size(version),
            "Note<D>: D must be desc_size(version)"
        );
        let v = version.as_bytes();
        let mut desc = [0u8; D];
        let mut i = 0;
        while i < v.len() {
            assert!(v[i] != 0, "a version holds no NUL");
            desc[i] = v[i];
            i += 1;
        }
        let mut name = [0u8; 8];
        let mut j = 0;
        while j < NAME.len() {
            name[j] = NAME[j];
            j += 1;
        }
        Note {
            namesz: NAME.len() as u32 + 1,
            descsz: v.len() as u32 + 1,
            n_type: TYPE,
            name,
            desc,
        }
    }

    /// The version, NUL-terminated (what `memkit_version()` returns).
    pub fn version_cstr(&self) -> &core::ffi::CStr {
        // The descriptor ends in at least one NUL (`new` wrote none before).
        core::ffi::CStr::from_bytes_until_nul(&self.desc).unwrap_or(c"")
    }
}

/// The version in a note's descriptor: the bytes before its first NUL,
/// when they are UTF-8 (`None` for a note of another owner or type).
pub fn parse<'a>(name: &[u8], n_type: u32, desc: &'a [u8]) -> Option<&'a str> {
    if name.strip_suffix(b"\0").unwrap_or(name) != NAME || n_type != TYPE {
        return None;
    }
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    core::str::from_utf8(&desc[..end]).ok()
}

/// Defines `static $name`, the version note of the calling crate's
/// library (its `CARGO_PKG_VERSION`), kept by the linker (`#[used]`; the
/// `PT_NOTE` segment is never garbage-collected). One line per library:
/// `memkit_sys::version_note!(static VERSION_NOTE);`
#[macro_export]
macro_rules! version_note {
    ($vis:vis static $name:ident) => {
        #[used]
        #[unsafe(link_section = ".note.memkit.version")]
        $vis static $name: $crate::version::Note<
            { $crate::version::desc_size(env!("CARGO_PKG_VERSION")) },
        > = $crate::version::Note::new(env!("CARGO_PKG_VERSION"));
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_an_elf_note() {
        const V: &str = "0.1.0";
        static N: Note<{ desc_size(V) }> = Note::new(V);
        // SAFETY: Note is repr(C) plain data without padding (4-byte
        // fields, then byte arrays of multiples of 4).
        let bytes: &[u8] = unsafe {
            core::slice::from_raw_parts((&N as *const Note<8>).cast(), size_of::<Note<8>>())
        };
        assert_eq!(bytes.len(), 12 + 8 + 8);
        assert_eq!(&bytes[0..4], &7u32.to_ne_bytes());
        assert_eq!(&bytes[4..8], &6u32.to_ne_bytes());
        assert_eq!(&bytes[8..12], &TYPE.to_ne_bytes());
        assert_eq!(&bytes[12..20], b"memkit\0\0");
        assert_eq!(&bytes[20..28], b"0.1.0\0\0\0");
        assert_eq!(N.version_cstr().to_bytes(), b"0.1.0");
        assert_eq!(parse(b"memkit\0", TYPE, &bytes[20..]), Some("0.1.0"));
        assert_eq!(parse(b"GNU\0", TYPE, &bytes[20..]), None);
        assert_eq!(parse(b"memkit\0", 2, &bytes[20..]), None);
    }

    #[test]
    fn desc_size_pads_to_four() {
        assert_eq!(desc_size(""), 4);
        assert_eq!(desc_size("1.2"), 4);
        assert_eq!(desc_size("1.2.3"), 8);
        assert_eq!(desc_size("10.20.30"), 12);
    }
}
