//! Report time: frames to function, file and line (DWARF when the object
//! has it, its symbol table otherwise), demangled (C++ and Rust).
//!
//! Objects are opened by the path recorded at capture, so frames of a
//! library unloaded since still resolve. Loaded objects are cached; this
//! runs only when a report is printed, never on an allocation path.

use memkit_alloc::lock::SpinLock;
use std::collections::HashMap;

use crate::modules;
use crate::unwind::{split, Frame};

/// One symbolized frame of a report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symbol {
    /// The runtime address (the return address for a caller's frame).
    pub address: usize,
    /// The object's path ("" when unknown).
    pub object: String,
    /// Demangled function name, when known.
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

#[derive(Default)]
struct Cache {
    loaders: HashMap<String, Loaders>,
}

/// An object's loader, and its detached debug file's when it has one
/// ([`debug_file`]): DWARF and the full symbol table from the debug file,
/// the object's own symbols where it has none.
struct Loaders {
    object: Option<addr2line::Loader>,
    debug: Option<addr2line::Loader>,
}

impl Loaders {
    fn open(path: &str) -> Loaders {
        Loaders {
            object: addr2line::Loader::new(path).ok(),
            debug: debug_file(path).and_then(|d| addr2line::Loader::new(d).ok()),
        }
    }

    fn find_symbol(&self, probe: u64) -> Option<&str> {
        let debug = self.debug.as_ref().and_then(|l| l.find_symbol(probe));
        debug.or_else(|| self.object.as_ref()?.find_symbol(probe))
    }

    /// The loader whose DWARF to read: the debug file's, else the object's.
    fn dwarf(&self) -> Option<&addr2line::Loader> {
        self.debug.as_ref().or(self.object.as_ref())
    }
}

/// Where Debian's `-dbg` and `-dbgsym` packages put an object's detached
/// debug information: `/usr/lib/debug/.build-id/XX/YYYY….debug`, named by
/// the object's GNU build ID. glibc's own frames (`libc6-dbg`) then get
/// names, files and lines, as AddressSanitizer, Valgrind and gdb show
/// them: without it the frame under `main` was `?? (libc.so.6)`, since
/// `__libc_start_call_main` is in no dynamic symbol table.
fn debug_file(path: &str) -> Option<String> {
    let id = build_id(path)?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let p = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    std::path::Path::new(&p).is_file().then_some(p)
}

/// The GNU build ID of the ELF64 object at `path`, from its `PT_NOTE`
/// segments (read alone, not the whole file).
pub fn build_id(path: &str) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let f = std::fs::File::open(path).ok()?;
    let mut eh = [0u8; 64];
    f.read_exact_at(&mut eh, 0).ok()?;
    // ELF, 64-bit, little-endian.
    if eh[..4] != *b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(&eh, 0x20), u16_at(&eh, 0x36), u16_at(&eh, 0x38));
    if phentsize < 56 || phnum > 256 {
        return None;
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.read_exact_at(&mut ph, phoff as u64).ok()?;
    for h in ph.chunks(phentsize) {
        const PT_NOTE: usize = 4;
        let (kind, off, size) = (u32_at(h, 0), u64_at(h, 8), u64_at(h, 32));
        if kind != PT_NOTE || size > 1 << 16 {
            continue;
        }
        let mut n = vec![0u8; size];
        f.read_exact_at(&mut n, off as u64).ok()?;
        let mut at = 0;
        while at + 12 <= n.len() {
            let (namesz, descsz, ty) = (u32_at(&n, at), u32_at(&n, at + 4), u32_at(&n, at + 8));
            let name = at + 12;
            let desc = name + namesz.next_multiple_of(4);
            let end = desc + descsz.next_multiple_of(4);
            if end > n.len() {
                break;
            }
            const NT_GNU_BUILD_ID: usize = 3;
            if ty == NT_GNU_BUILD_ID && n[name..name + namesz] == *b"GNU\0" && descsz >= 2 {
                return Some(n[desc..desc + descsz].to_vec());
            }
            at = end;
        }
    }
    None
}

// SAFETY: the loaders are only used under the mutex.
unsafe impl Send for Cache {}

static CACHE: SpinLock<Option<Cache>> = SpinLock::new(None);

/// Before `fork`: the cache's lock (a child must not find it held).
pub fn lock_for_fork() {
    CACHE.raw_lock();
}

/// After `fork`, in parent and child.
pub fn unlock_after_fork() {
    // SAFETY: taken by lock_for_fork in this process (or its parent).
    unsafe { CACHE.raw_unlock() };
}

/// Symbolizes one stack of this process against its own module table
/// ([`modules::info`]). Inlined calls expand into several frames (the
/// innermost first), as addr2line prints them; frames of module `collapse`
/// (the tool's own library) show only the function the program called.
pub fn stack(frames: &[Frame], collapse: u16) -> Vec<Symbol> {
    stack_in(frames, collapse, &modules::info)
}

/// [`stack`] against another module table: `lookup` gives each index's
/// path and load bias as recorded in the process that captured `frames`
/// (the profiler's raw record, read by `memkit profile`), `None` for an
/// index it does not know.
pub fn stack_in(frames: &[Frame], collapse: u16, lookup: &Lookup<'_>) -> Vec<Symbol> {
    let mut guard = CACHE.lock();
    let cache = guard.get_or_insert_with(Cache::default);
    let mut out = Vec::with_capacity(frames.len());
    for (i, &f) in frames.iter().enumerate() {
        out.extend(resolve(cache, f, i > 0, collapse, lookup));
    }
    out
}

/// The module table a stack is symbolized against: index to path and
/// load bias (`None`: unknown).
pub type Lookup<'a> = dyn Fn(u16) -> Option<modules::ModuleInfo> + 'a;

/// The symbols of one frame: several when calls were inlined there (the
/// innermost first), always at least one. A return address (every frame
/// but a stack's first) is looked up one byte before, at the call.
pub fn frame_in(f: Frame, return_address: bool, collapse: u16, lookup: &Lookup<'_>) -> Vec<Symbol> {
    let mut guard = CACHE.lock();
    let cache = guard.get_or_insert_with(Cache::default);
    resolve(cache, f, return_address, collapse, lookup)
}

fn resolve(
    cache: &mut Cache,
    f: Frame,
    return_address: bool,
    collapse: u16,
    lookup: &Lookup<'_>,
) -> Vec<Symbol> {
    let (module, offset) = split(f);
    let Some(info) = (module != 0).then(|| lookup(module)).flatten() else {
        return vec![Symbol {
            address: offset,
            ..Symbol::default()
        }];
    };
    let address = info.bias.wrapping_add(offset);
    // Return addresses point after the call; the call is one byte back.
    let probe = if return_address {
        offset.saturating_sub(1)
    } else {
        offset
    } as u64;
    let loaders = cache
        .loaders
        .entry(info.path.clone())
        .or_insert_with(|| Loaders::open(&info.path));
    let base = Symbol {
        address,
        object: info.path.clone(),
        ..Symbol::default()
    };
    let Some(dwarf) = loaders.dwarf() else {
        return vec![base];
    };
    let loader = &*loaders;
    if module == collapse {
        let function = loader.find_symbol(probe).map(demangle);
        return vec![Symbol { function, ..base }];
    }
    let mut syms = Vec::new();
    if let Ok(mut it) = dwarf.find_frames(probe) {
        while let Ok(Some(fr)) = it.next() {
            let function = fr
                .function
                .as_ref()
                .and_then(|n| n.demangle().ok().map(|d| d.into_owned()));
            let (file, line) = match fr.location {
                Some(l) => (l.file.map(str::to_owned), l.line),
                None => (None, None),
            };
            syms.push(Symbol {
                function,
                file,
                line,
                ..base.clone()
            });
        }
    }
    if syms.is_empty() {
        let function = loader.find_symbol(probe).map(demangle);
        syms.push(Symbol { function, ..base });
    } else if syms.iter().all(|s| s.function.is_none()) {
        let name = loader.find_symbol(probe).map(demangle);
        for s in &mut syms {
            s.function = name.clone();
        }
    }
    syms
}

/// A symbol-table name, demangled when it is a C++ or Rust name.
pub fn demangle(name: &str) -> String {
    addr2line::demangle_auto(name.into(), None).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::frame;

    #[inline(never)]
    fn probe_target() -> usize {
        std::hint::black_box(probe_target as *const () as usize)
    }

    #[test]
    fn a_recorded_table_resolves_like_the_own_one() {
        let pc = probe_target();
        let own = modules::module_of(pc);
        assert_ne!(own, 0, "this test binary is a known object");
        let info = modules::info(own).unwrap();
        let f = frame(own, pc - info.bias);
        let direct = stack(&[f], 0);
        assert!(
            direct.iter().any(|s| s
                .function
                .as_deref()
                .is_some_and(|n| n.ends_with("probe_target"))),
            "{direct:?}"
        );
        // The same object under another index, as a raw record has it.
        let table = |i: u16| (i == 9).then(|| info.clone());
        let recorded = stack_in(&[frame(9, pc - info.bias)], 0, &table);
        assert_eq!(recorded, direct);
        // A caller's frame is looked up one byte back; unknown modules
        // keep their raw offset.
        let call = frame_in(frame(9, pc - info.bias + 1), true, 0, &table);
        let lines = |v: &[Symbol]| {
            v.iter()
                .map(|s| (s.function.clone(), s.file.clone(), s.line))
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(&call), lines(&recorded));
        assert_eq!(call[0].address, recorded[0].address + 1);
        assert_eq!(
            frame_in(frame(3, 0x42), true, 0, &table),
            [Symbol {
                address: 0x42,
                ..Symbol::default()
            }]
        );
    }
}
