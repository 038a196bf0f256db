//! Which shared library memkit preloads, and whether it is this memkit's.
//!
//! Each library is found in the same order (documented in `memkit --help`
//! and memkit(1), from [`search_help`]):
//! 1. its environment variable (`MEMKIT_LIB`), when set and not empty;
//! 2. beside the memkit executable, where `cargo build` puts both;
//! 3. the multiarch directory the package installs into, by soname, then
//!    by the development name.
//!
//! The first place that has the file wins; it is then refused unless its
//! version note (`memkit_sys::version`) names this memkit's version, so a
//! stale build or another installation is never preloaded silently. The
//! note is read from the file: the library is not loaded into memkit.
//!
//! A second library is one more entry in [`LIBRARIES`] (and its own
//! `const`, for the subcommand that preloads it).

use std::fs;
use std::path::{Path, PathBuf};

use memkit::describe_io;

use crate::error::CliError;

/// This memkit's version: the one a library must have.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the package installs libraries: Debian's multiarch directory of
/// the only target memkit supports (x86_64 Linux).
pub const MULTIARCH_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// A shared library memkit preloads.
#[derive(Debug)]
pub struct Library {
    /// What `memkit --version` calls it.
    pub role: &'static str,
    /// The file cargo builds (`lib<name>.so`), also the package's
    /// development link.
    pub file: &'static str,
    /// The soname (`lib<name>.so.<major>`, set by the crate's build.rs),
    /// the package's runtime link.
    pub soname: &'static str,
    /// The environment variable naming the file to use.
    pub env: &'static str,
    /// The subcommand that preloads it.
    pub used_by: &'static str,
    /// `memkit --version` says when it is missing (else it names it only
    /// when found: the check library is built and packaged with memkit, but
    /// a `cargo install`ed memkit may run without it).
    pub required: bool,
}

/// libmemkit.so, the allocator `memkit run` preloads.
pub const MEMKIT: Library = Library {
    role: "library",
    file: "libmemkit.so",
    soname: concat!("libmemkit.so.", env!("CARGO_PKG_VERSION_MAJOR")),
    env: "MEMKIT_LIB",
    used_by: "memkit run",
    required: true,
};

/// libmemkit_check.so, the checking allocator `memkit check` preloads.
pub const CHECK: Library = Library {
    role: "check library",
    file: "libmemkit_check.so",
    soname: concat!("libmemkit_check.so.", env!("CARGO_PKG_VERSION_MAJOR")),
    env: "MEMKIT_CHECK_LIB",
    used_by: "memkit check",
    required: false,
};

/// libmemkit_profile.so, the profiling runtime `memkit profile` preloads.
pub const PROFILE: Library = Library {
    role: "profile library",
    file: "libmemkit_profile.so",
    soname: concat!("libmemkit_profile.so.", env!("CARGO_PKG_VERSION_MAJOR")),
    env: "MEMKIT_PROFILE_LIB",
    used_by: "memkit profile",
    required: false,
};

/// Every library memkit may preload, in the order `memkit --version` and
/// `memkit --help` name them.
pub const LIBRARIES: &[&Library] = &[&MEMKIT, &CHECK, &PROFILE];

/// Where a library was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Its environment variable.
    Env,
    /// Beside the memkit executable.
    BesideExe,
    /// The multiarch directory.
    System,
}

/// A library file found by [`find`], not yet checked.
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub origin: Origin,
}

impl Found {
    /// How it was found, for messages.
    fn how(&self, lib: &Library) -> String {
        match self.origin {
            Origin::Env => format!("{}={}", lib.env, self.path.display()),
            Origin::BesideExe => format!("{}, beside the memkit executable", self.path.display()),
            Origin::System => format!("{}, installed", self.path.display()),
        }
    }
}

/// The places [`find`] looks at after the environment variable, in order.
fn candidates(lib: &Library) -> Vec<(PathBuf, Origin)> {
    let mut out = Vec::new();
    if let Some(dir) = exe_dir() {
        out.push((dir.join(lib.file), Origin::BesideExe));
    }
    let system = Path::new(MULTIARCH_DIR);
    out.push((system.join(lib.soname), Origin::System));
    out.push((system.join(lib.file), Origin::System));
    out
}

/// The directory of the running memkit executable.
fn exe_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.to_path_buf())
}

/// Finds `lib`'s file (see the module documentation for the order).
pub fn find(lib: &Library) -> Result<Found, CliError> {
    if let Some(value) = std::env::var_os(lib.env).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        if !path.is_file() {
            let problem = if path.exists() {
                "is not a regular file"
            } else {
                "does not exist"
            };
            return Err(CliError::new(format!(
                "{}={} {problem}; point it at a built {} or unset it",
                lib.env,
                path.display(),
                lib.file
            )));
        }
        // Absolute, so child processes that change directory still
        // preload it.
        let path = fs::canonicalize(&path).unwrap_or(path);
        return Ok(Found {
            path,
            origin: Origin::Env,
        });
    }
    let candidates = candidates(lib);
    if let Some((path, origin)) = candidates.iter().find(|(p, _)| p.is_file()) {
        return Ok(Found {
            path: path.clone(),
            origin: *origin,
        });
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    Err(CliError::new(format!(
        "cannot find {file} (looked at {looked}); build it with \
         `cargo build --release` (it lands next to target/release/memkit), \
         install the memkit package, or set {env}=/path/to/{file}",
        file = lib.file,
        env = lib.env,
        looked = looked.join(", "),
    )))
}

/// Finds `lib` and checks that memkit can preload it: its version note
/// names [`VERSION`], and `LD_PRELOAD` can express its path.
pub fn find_checked(lib: &Library) -> Result<PathBuf, CliError> {
    let found = find(lib)?;
    check(lib, &found)?;
    Ok(found.path)
}

/// The checks of [`find_checked`] on a found file; the version it has.
fn check(lib: &Library, found: &Found) -> Result<String, CliError> {
    let version = match read_version(&found.path) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(CliError::new(format!(
                "{} has no memkit version note: it is not a {}, or one built before \
                 memkit 0.1.0; point {} at the {} of memkit {VERSION}",
                found.how(lib),
                lib.file,
                lib.env,
                lib.file
            )))
        }
        Err(problem) => {
            return Err(CliError::new(format!(
                "{}: {problem}; point {} at the {} of memkit {VERSION}",
                found.how(lib),
                lib.env,
                lib.file
            )))
        }
    };
    if version != VERSION {
        return Err(CliError::new(format!(
            "{} is {} {version}, but this memkit is {VERSION}: refusing a library of another \
             version (its options and report format may differ); use the memkit that came \
             with it, or point {} at the {} of memkit {VERSION}",
            found.how(lib),
            lib.file,
            lib.env,
            lib.file
        )));
    }
    // The dynamic loader splits LD_PRELOAD on spaces and colons, so such a
    // path would silently preload nothing.
    if found
        .path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b' ' | b':'))
    {
        return Err(CliError::new(format!(
            "{} contains a space or colon, which LD_PRELOAD cannot express; \
             copy {} elsewhere and set {}",
            found.path.display(),
            lib.file,
            lib.env
        )));
    }
    Ok(version)
}

/// The version in the memkit version note of the ELF file at `path`:
/// `Ok(None)` when it has none; `Err` when it is not an x86_64 shared
/// object or cannot be read.
pub fn read_version(path: &Path) -> Result<Option<String>, String> {
    let data = fs::read(path).map_err(|e| format!("cannot read it ({})", describe_io(&e)))?;
    version_in(&data)
}

fn version_in(data: &[u8]) -> Result<Option<String>, String> {
    use object::elf::{FileHeader64, EM_X86_64, ET_DYN};
    use object::read::elf::{FileHeader as _, ProgramHeader as _};
    use object::Endianness;

    const NOT_OURS: &str = "not an x86_64 shared object";
    let header = FileHeader64::<Endianness>::parse(data).map_err(|_| NOT_OURS.to_owned())?;
    let endian = header.endian().map_err(|_| NOT_OURS.to_owned())?;
    if header.e_machine(endian) != EM_X86_64 || header.e_type(endian) != ET_DYN {
        return Err(NOT_OURS.to_owned());
    }
    let malformed = |e: object::Error| format!("a malformed ELF file ({e})");
    for segment in header.program_headers(endian, data).map_err(malformed)? {
        let Some(mut notes) = segment.notes(endian, data).map_err(malformed)? else {
            continue;
        };
        while let Some(note) = notes.next().map_err(malformed)? {
            if let Some(v) =
                memkit_sys::version::parse(note.name(), note.n_type(endian).0, note.desc())
            {
                return Ok(Some(v.to_owned()));
            }
        }
    }
    Ok(None)
}

/// What `memkit --version` says about `lib`: `"library: PATH, 0.1.0"`,
/// and, when its subcommand would refuse it or finds none, why.
pub fn version_report(lib: &Library) -> Option<(String, Option<String>)> {
    let found = match find(lib) {
        Ok(found) => found,
        Err(_) if !lib.required => return None,
        Err(e) => {
            let why = format!("{} needs one: {}", lib.used_by, e.message);
            return Some((format!("{}: none found", lib.role), Some(why)));
        }
    };
    let shown = match read_version(&found.path) {
        Ok(Some(v)) => v,
        Ok(None) => "no version".to_owned(),
        Err(_) => "unreadable".to_owned(),
    };
    let line = format!("{}: {}, {shown}", lib.role, found.path.display());
    let why = check(lib, &found).err();
    Some((
        line,
        why.map(|e| format!("{} refuses it: {}", lib.used_by, e.message)),
    ))
}

/// The library search order, for the end of `memkit --help` and memkit(1).
pub fn search_help() -> String {
    let mut s = String::new();
    for lib in LIBRARIES {
        s.push_str(&format!(
            "Library: memkit preloads {file} from the first place that has it:\n\
             \x20 1. ${env}, when set and not empty\n\
             \x20 2. the directory of the memkit executable (cargo build puts both\n\
             \x20    in target/release)\n\
             \x20 3. {MULTIARCH_DIR}/{soname}, then\n\
             \x20    {MULTIARCH_DIR}/{file} (the memkit package)\n\
             It must be the {file} of memkit {VERSION}: another version is refused.\n\
             memkit --version shows the one found.\n\n",
            file = lib.file,
            env = lib.env,
            soname = lib.soname,
        ));
    }
    s.push_str(
        "Environment: memkit env lists every MEMKIT_* variable, its default and\n\
         its value here; libmemkit(3) describes those the library reads.",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soname_is_the_major_version() {
        assert_eq!(
            MEMKIT.soname,
            format!("libmemkit.so.{}", VERSION.split('.').next().unwrap())
        );
    }

    #[test]
    fn non_elf_and_foreign_files_are_told_apart() {
        assert_eq!(
            version_in(b"#!/bin/sh\n"),
            Err("not an x86_64 shared object".to_owned())
        );
        // This test executable: x86_64 ELF but a PIE executable (ET_DYN),
        // with GNU notes and no memkit note.
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(version_in(&exe), Ok(None));
    }
}
