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

struct Cache {
    loaders: HashMap<String, Option<addr2line::Loader>>,
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

/// Symbolizes one stack. Inlined calls expand into several frames (the
/// innermost first), as addr2line prints them; frames of module `collapse`
/// (the tool's own library) show only the function the program called.
pub fn stack(frames: &[Frame], collapse: u16) -> Vec<Symbol> {
    let mut guard = CACHE.lock();
    let cache = guard.get_or_insert_with(|| Cache {
        loaders: HashMap::new(),
    });
    let mut out = Vec::with_capacity(frames.len());
    for (i, &f) in frames.iter().enumerate() {
        let (module, offset) = split(f);
        let Some(info) = modules::info(module) else {
            out.push(Symbol {
                address: offset,
                ..Symbol::default()
            });
            continue;
        };
        let address = info.bias.wrapping_add(offset);
        // Return addresses point after the call; the call is one byte back.
        let probe = if i == 0 {
            offset
        } else {
            offset.saturating_sub(1)
        } as u64;
        let loader = cache
            .loaders
            .entry(info.path.clone())
            .or_insert_with(|| addr2line::Loader::new(&info.path).ok());
        let base = Symbol {
            address,
            object: info.path.clone(),
            ..Symbol::default()
        };
        let Some(loader) = loader else {
            out.push(base);
            continue;
        };
        let before = out.len();
        if module == collapse && module != 0 {
            let function = loader.find_symbol(probe).map(demangle);
            out.push(Symbol { function, ..base });
            continue;
        }
        if let Ok(mut it) = loader.find_frames(probe) {
            while let Ok(Some(fr)) = it.next() {
                let function = fr
                    .function
                    .as_ref()
                    .and_then(|n| n.demangle().ok().map(|d| d.into_owned()));
                let (file, line) = match fr.location {
                    Some(l) => (l.file.map(str::to_owned), l.line),
                    None => (None, None),
                };
                out.push(Symbol {
                    function,
                    file,
                    line,
                    ..base.clone()
                });
            }
        }
        if out.len() == before {
            let function = loader.find_symbol(probe).map(demangle);
            out.push(Symbol { function, ..base });
        } else if out[before..].iter().all(|s| s.function.is_none()) {
            let name = loader.find_symbol(probe).map(demangle);
            for s in &mut out[before..] {
                s.function = name.clone();
            }
        }
    }
    out
}

/// A symbol-table name, demangled when it is a C++ or Rust name.
pub fn demangle(name: &str) -> String {
    addr2line::demangle_auto(name.into(), None).into_owned()
}
