//! The memory layout of a Linux process: text, data and bss of the executable
//! and each library, the heap up to the program break, the main stack and one
//! stack per thread, anonymous and file mappings, shared memory.
//!
//! [`read`] takes `/proc/PID/smaps` (or `maps` with [`Options::fast`]) and
//! puts every mapping in one of ten [`Category`]s, using the ELF program
//! headers of each object for the data/bss split, the program break from
//! `/proc/PID/stat` for the heap and the threads' stack pointers from
//! `/proc/PID/task/TID/syscall` for thread stacks. Totals per category come
//! from the mappings; the overall totals are the kernel's own
//! `/proc/PID/smaps_rollup`.
//!
//! ```no_run
//! use memkit::layout::{self, Category, Options, Target};
//!
//! let l = layout::read(Target::SelfProcess, &Options::default()).unwrap();
//! println!("{} KiB of bss", l.category(Category::Bss).stats.size_kib);
//! print!("{}", l.render_table(layout::SortOrder::Address));
//! ```
//!
//! How each category is decided is in `docs/MAPS.md`.

mod classify;
mod elf;
mod json;
mod procfs;
mod svg;
mod text;

use std::fmt;
use std::str::FromStr;

pub use text::{human_kib, SortOrder};

/// The fixed categories a mapping falls in. Their names (see
/// [`Category::name`]) are the same in the table and in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Read-only and executable segments of ELF objects.
    Text,
    /// Initialised writable data of ELF objects (the file part of a writable
    /// `PT_LOAD`, RELRO included).
    Data,
    /// Zero-initialised data: the anonymous mapping after a writable `PT_LOAD`
    /// that covers its `p_memsz` beyond `p_filesz`.
    Bss,
    /// The program-break region (`brk`/`sbrk`).
    Heap,
    /// The main thread's stack.
    Stack,
    /// Other threads' stacks.
    ThreadStack,
    /// Other anonymous mappings.
    Anon,
    /// Other file mappings.
    File,
    /// POSIX and System V shared memory, memfd, shared anonymous mappings.
    Shm,
    /// vdso, vvar, vsyscall, guard pages and inaccessible reservations.
    Other,
}

impl Category {
    /// All ten, in the order tables and JSON list them.
    pub const ALL: [Category; 10] = [
        Category::Text,
        Category::Data,
        Category::Bss,
        Category::Heap,
        Category::Stack,
        Category::ThreadStack,
        Category::Anon,
        Category::File,
        Category::Shm,
        Category::Other,
    ];

    /// The category's fixed name, e.g. `thread_stack`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Text => "text",
            Category::Data => "data",
            Category::Bss => "bss",
            Category::Heap => "heap",
            Category::Stack => "stack",
            Category::ThreadStack => "thread_stack",
            Category::Anon => "anon",
            Category::File => "file",
            Category::Shm => "shm",
            Category::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Category {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Category::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown category {s:?}"))
    }
}

/// The smaps counters of one mapping or a sum of mappings, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Stats {
    pub size_kib: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub shared_clean_kib: u64,
    pub shared_dirty_kib: u64,
    pub private_clean_kib: u64,
    pub private_dirty_kib: u64,
    pub referenced_kib: u64,
    pub anonymous_kib: u64,
    /// `AnonHugePages`: anonymous memory backed by transparent huge pages.
    pub anon_huge_kib: u64,
    pub swap_kib: u64,
    pub swap_pss_kib: u64,
    pub locked_kib: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.size_kib += o.size_kib;
        self.rss_kib += o.rss_kib;
        self.pss_kib += o.pss_kib;
        self.shared_clean_kib += o.shared_clean_kib;
        self.shared_dirty_kib += o.shared_dirty_kib;
        self.private_clean_kib += o.private_clean_kib;
        self.private_dirty_kib += o.private_dirty_kib;
        self.referenced_kib += o.referenced_kib;
        self.anonymous_kib += o.anonymous_kib;
        self.anon_huge_kib += o.anon_huge_kib;
        self.swap_kib += o.swap_kib;
        self.swap_pss_kib += o.swap_pss_kib;
        self.locked_kib += o.locked_kib;
    }
}

/// One mapping of `/proc/PID/maps`, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `rwxp`/`rwxs` permissions as the kernel prints them.
    pub perms: String,
    /// Offset in the file (0 for anonymous mappings).
    pub offset: u64,
    /// Device `major:minor` of the file.
    pub dev: String,
    /// Inode of the file (0 for anonymous mappings).
    pub inode: u64,
    /// The path or pseudo-path (`[heap]`, `[vdso]`, `[anon:NAME]`), if any.
    pub path: Option<String>,
    /// What the mapping is.
    pub category: Category,
    /// The executable or library the mapping belongs to (text, data, bss and
    /// the gaps between an object's segments).
    pub object: Option<String>,
    /// A finer description: `thread 1234 (worker)`, `memkit heap`, `guard
    /// page`, `malloc arena (glibc, probable)`...
    pub label: Option<String>,
    /// The smaps counters; `None` with [`Options::fast`] (only the size is
    /// known then).
    pub stats: Option<Stats>,
    /// The smaps `VmFlags` line.
    pub vm_flags: Option<String>,
}

impl Mapping {
    /// The mapping's size in KiB.
    pub fn size_kib(&self) -> u64 {
        (self.end - self.start) / 1024
    }

    /// Whether `addr` lies in the mapping.
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    fn is_anonymous(&self) -> bool {
        self.inode == 0 && self.path.as_deref().is_none_or(|p| p.starts_with("[anon:"))
    }
}

/// Counters summed over a set of mappings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// How many mappings.
    pub mappings: u64,
    /// Their counters (only `size_kib` with [`Options::fast`]).
    pub stats: Stats,
}

/// The program break.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Brk {
    /// Where the heap starts (`start_brk` of `/proc/PID/stat`).
    pub start: u64,
    /// Where it ends now: the end of the `[heap]` mapping (the break rounded
    /// up to a page), or `start` when the heap is empty.
    pub current: u64,
}

/// A thread of the process and where its stack was found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// Thread id.
    pub tid: u32,
    /// `/proc/PID/task/TID/comm`.
    pub name: String,
    /// Stack pointer from `/proc/PID/task/TID/syscall`; `None` while the
    /// thread runs or when the file cannot be read.
    pub sp: Option<u64>,
    /// The mapping that holds the stack pointer, `(start, end)`.
    pub stack: Option<(u64, u64)>,
}

/// An ELF object (executable or library) mapped in the process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object {
    /// Its path as the kernel shows it.
    pub path: String,
    /// Load bias: address minus ELF virtual address (0 for non-PIE
    /// executables).
    pub base: u64,
    /// Whether it is the program itself (`/proc/PID/exe`).
    pub main_program: bool,
    /// `(text, data, bss)` bytes from the program headers, as `size` splits
    /// them; `None` if the file could not be read.
    pub elf_sizes: Option<(u64, u64, u64)>,
    /// Its mappings (text, data, bss and gaps) summed.
    pub totals: Totals,
}

/// Whether the process runs on libmemkit.so and which regions are memkit's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemkitInfo {
    /// The path of libmemkit.so in the process, if it is mapped.
    pub library: Option<String>,
    /// How many mappings were labelled as memkit's.
    pub regions: u64,
    /// How the regions were recognised.
    pub method: String,
}

/// The layout of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Process id.
    pub pid: u32,
    /// The command line (arguments joined by spaces), or `[comm]` if empty.
    pub command: String,
    /// `/proc/PID/comm`-style name from `/proc/PID/stat`.
    pub comm: String,
    /// `/proc/PID/exe`, if readable.
    pub exe: Option<String>,
    /// Read with [`Options::fast`]: no per-mapping residency.
    pub fast: bool,
    /// Page size of the process (`AT_PAGESZ`).
    pub page_size: u64,
    /// The program break.
    pub brk: Brk,
    /// Bottom (highest address) of the main stack, from `/proc/PID/stat`.
    pub start_stack: u64,
    /// Every mapping, in address order.
    pub mappings: Vec<Mapping>,
    categories: [Totals; 10],
    /// Overall totals: the counters are the kernel's `/proc/PID/smaps_rollup`
    /// (`size_kib` is the sum of the mappings, which the rollup lacks).
    pub totals: Totals,
    /// The per-mapping counters summed (not with `fast`). RSS equals the
    /// rollup's when `consistent`; PSS can be lower by up to 1 KiB per
    /// mapping since the kernel rounds each mapping's PSS down.
    pub mappings_sum: Option<Stats>,
    /// Whether smaps and smaps_rollup agreed on RSS (false if the process
    /// kept changing its memory over three tries).
    pub consistent: bool,
    /// The ELF objects, in address order.
    pub objects: Vec<Object>,
    /// The threads, main thread first.
    pub threads: Vec<Thread>,
    /// memkit's regions, if the process runs on libmemkit.so.
    pub memkit: Option<MemkitInfo>,
    /// Caveats found while reading (unreadable ELF files, heuristics used).
    pub notes: Vec<String>,
}

impl Layout {
    /// The totals of one category (zero when it has no mapping).
    pub fn category(&self, c: Category) -> &Totals {
        &self.categories[c.index()]
    }

    /// The mappings of one category, in address order.
    pub fn mappings_of(&self, c: Category) -> impl Iterator<Item = &Mapping> {
        self.mappings.iter().filter(move |m| m.category == c)
    }

    /// The mapping holding `addr`, if any.
    pub fn mapping_at(&self, addr: u64) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.contains(addr))
    }

    /// The human table: mappings grouped by category, then the totals.
    pub fn render_table(&self, sort: SortOrder) -> String {
        text::render(self, sort)
    }

    /// The layout as one JSON object (schema in `docs/MAPS.md`).
    pub fn to_json(&self) -> String {
        json::to_string(self)
    }

    /// A picture of the address space as an SVG document.
    pub fn to_svg(&self) -> String {
        svg::render(self)
    }
}

/// Which process to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The calling process.
    SelfProcess,
    /// A process id.
    Pid(u32),
}

impl Target {
    /// The process id this target stands for.
    pub fn pid(self) -> u32 {
        match self {
            Target::SelfProcess => std::process::id(),
            Target::Pid(pid) => pid,
        }
    }
}

impl FromStr for Target {
    type Err = String;

    /// `self` or a process id: decimal digits only (no sign, no spaces),
    /// from 1 to `i32::MAX` (a `pid_t`).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "self" {
            return Ok(Target::SelfProcess);
        }
        let pid = s
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|&pid| (1..=i32::MAX as u32).contains(&pid));
        match pid {
            Some(pid) => Ok(Target::Pid(pid)),
            None => Err(format!(
                "{s:?} is not a process id: expected `self` or a number from 1 to {}",
                i32::MAX
            )),
        }
    }
}

/// What to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Read `/proc/PID/maps` and `smaps_rollup` only: sizes per mapping but
    /// no per-mapping RSS/PSS (much cheaper on huge processes).
    pub fast: bool,
}

/// Why a layout could not be read. Each displays as one line that says what
/// failed and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No such process.
    NoSuchProcess {
        /// The pid asked for.
        pid: u32,
    },
    /// The process went away while it was being read.
    Exited {
        /// The pid.
        pid: u32,
    },
    /// The process has exited but was not reaped yet.
    Zombie {
        /// The pid.
        pid: u32,
    },
    /// A kernel thread: no user address space.
    KernelThread {
        /// The pid.
        pid: u32,
        /// Its name.
        comm: String,
    },
    /// The kernel refused access (another user's process, or ptrace rules).
    PermissionDenied {
        /// The pid.
        pid: u32,
        /// The file that could not be read.
        file: String,
        /// Owner of the process, if known.
        owner: Option<u32>,
        /// Who was refused, which decides what the refusal means.
        reader: Reader,
    },
    /// Another I/O error.
    Io {
        /// The file.
        file: String,
        /// The error, strerror-style.
        message: String,
    },
    /// A /proc file was not in the expected format.
    Parse {
        /// The file.
        file: String,
        /// What was wrong.
        message: String,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::NoSuchProcess { pid } => write!(f, "no process with pid {pid}"),
            LayoutError::Exited { pid } => write!(f, "process {pid} exited while its memory map was being read"),
            LayoutError::Zombie { pid } => write!(
                f,
                "process {pid} has exited (a zombie not yet reaped by its parent): it has no memory map"
            ),
            LayoutError::KernelThread { pid, comm } => {
                write!(f, "pid {pid} ({comm}) is a kernel thread: it has no user-space memory map")
            }
            LayoutError::PermissionDenied {
                pid,
                file,
                owner,
                reader,
            } => write!(
                f,
                "cannot read {file}: permission denied ({})",
                permission_advice(*pid, *owner, *reader)
            ),
            LayoutError::Io { file, message } => write!(f, "cannot read {file}: {message}"),
            LayoutError::Parse { file, message } => write!(f, "cannot parse {file}: {message}"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// The process that was refused access to another's `/proc` files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reader {
    /// Its effective uid.
    pub euid: u32,
    /// Whether it holds `CAP_SYS_PTRACE` (in its own user namespace).
    pub cap_sys_ptrace: bool,
}

impl Reader {
    /// The calling process.
    pub fn current() -> Reader {
        Reader {
            euid: memkit_sys::euid(),
            cap_sys_ptrace: memkit_sys::protect::has_capability(
                memkit_sys::protect::CAP_SYS_PTRACE,
            ),
        }
    }
}

/// Why the kernel refused `reader` the `/proc` files of process `pid`
/// (owned by `owner`), and what to do about it.
///
/// The kernel's ptrace access check (proc(5), ptrace(2) "Ptrace access mode
/// checking") lets a process read another's smaps when both run as the same
/// user and the target is dumpable, or when the reader has
/// `CAP_SYS_PTRACE` in the target's user namespace; security modules and
/// `/proc`'s `hidepid` option can refuse on top. A user mismatch is the
/// cause only when the reader is not root: root without the capability
/// (most containers) or outside the target's user namespace is refused for
/// other reasons, which running as root cannot fix.
pub fn permission_advice(pid: u32, owner: Option<u32>, reader: Reader) -> String {
    match (reader.euid, reader.cap_sys_ptrace, owner) {
        (0, false, _) => "memkit runs as root but without CAP_SYS_PTRACE, which the kernel \
             requires to read another user's or a protected process; containers drop it \
             by default: grant it, e.g. docker run --cap-add=SYS_PTRACE"
            .to_owned(),
        (0, true, _) => "memkit runs as root with CAP_SYS_PTRACE, yet the kernel refused: \
             the process is outside this user namespace, as the host's processes are for \
             a container's root, or a security module (SELinux, AppArmor, Landlock) or \
             /proc's hidepid option forbids it"
            .to_owned(),
        (euid, _, Some(uid)) if uid == euid => format!(
            "process {pid} is yours, but the kernel protects it: it is setuid, setgid or \
             non-dumpable, or in another user namespace; run as root"
        ),
        (_, _, Some(uid)) => {
            format!("process {pid} belongs to uid {uid}; run as the same user or as root")
        }
        (_, _, None) => "run as the process's user or as root".to_owned(),
    }
}

/// Reads the layout of a process.
pub fn read(target: Target, options: &Options) -> Result<Layout, LayoutError> {
    classify::read(target.pid(), options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.name().parse::<Category>(), Ok(c));
            assert_eq!(Category::ALL[c.index()], c);
        }
    }

    #[test]
    fn targets() {
        assert_eq!("self".parse::<Target>(), Ok(Target::SelfProcess));
        assert_eq!("42".parse::<Target>(), Ok(Target::Pid(42)));
        assert_eq!("2147483647".parse::<Target>(), Ok(Target::Pid(2147483647)));
        for bad in [
            "0",
            "-1",
            "+5",
            " 5",
            "abc",
            "",
            "99999999999",
            "4294967295",
            "2147483648",
        ] {
            assert_eq!(
                bad.parse::<Target>(),
                Err(format!(
                    "{bad:?} is not a process id: expected `self` or a number from 1 to 2147483647"
                ))
            );
        }
    }

    fn reader(euid: u32, cap_sys_ptrace: bool) -> Reader {
        Reader {
            euid,
            cap_sys_ptrace,
        }
    }

    #[test]
    fn permission_advice_names_the_cause() {
        // Not root: the owner is the cause.
        assert_eq!(
            permission_advice(42, Some(0), reader(1000, false)),
            "process 42 belongs to uid 0; run as the same user or as root"
        );
        assert_eq!(
            permission_advice(42, None, reader(1000, false)),
            "run as the process's user or as root"
        );
        assert!(permission_advice(42, Some(1000), reader(1000, false))
            .starts_with("process 42 is yours, but the kernel protects it"));
        // Root: never a user mismatch, whoever owns the process.
        for owner in [Some(0), Some(65534), None] {
            let without = permission_advice(1, owner, reader(0, false));
            assert!(
                without.starts_with("memkit runs as root but without CAP_SYS_PTRACE"),
                "{without}"
            );
            let with = permission_advice(1, owner, reader(0, true));
            assert!(
                with.starts_with("memkit runs as root with CAP_SYS_PTRACE, yet the kernel refused")
                    && with.contains("outside this user namespace"),
                "{with}"
            );
            for advice in [without, with] {
                assert!(!advice.contains("same user"), "{advice}");
                assert!(!advice.contains("belongs to"), "{advice}");
            }
        }
        let e = LayoutError::PermissionDenied {
            pid: 1,
            file: "/proc/1/smaps".into(),
            owner: Some(0),
            reader: reader(0, true),
        };
        assert!(e
            .to_string()
            .starts_with("cannot read /proc/1/smaps: permission denied (memkit runs as root with"));
    }

    #[test]
    fn errors_are_one_line() {
        let errors = [
            LayoutError::NoSuchProcess { pid: 1 },
            LayoutError::Exited { pid: 1 },
            LayoutError::Zombie { pid: 1 },
            LayoutError::KernelThread {
                pid: 2,
                comm: "kthreadd".into(),
            },
            LayoutError::PermissionDenied {
                pid: 1,
                file: "/proc/1/smaps".into(),
                owner: Some(0),
                reader: Reader {
                    euid: 1000,
                    cap_sys_ptrace: false,
                },
            },
            LayoutError::Io {
                file: "f".into(),
                message: "m".into(),
            },
            LayoutError::Parse {
                file: "f".into(),
                message: "m".into(),
            },
        ];
        for e in errors {
            let s = e.to_string();
            assert!(!s.contains('\n') && !s.is_empty(), "{s}");
        }
    }
}
