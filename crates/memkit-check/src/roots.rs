//! Where pointers may live outside the heap: the mappings of the process
//! (to name an address a bad `free` was given) and the roots of the leak
//! check — the writable segments of every loaded object, and every
//! thread's stack, registers and static TLS.

use std::ffi::CStr;

/// One line of /proc/self/maps.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub readable: bool,
    pub writable: bool,
    pub name: String,
}

/// The process's mappings now.
pub fn mappings() -> Vec<Mapping> {
    // The thread's own view: /proc/self/maps is empty once the main thread
    // has exited (pthread_exit), and the leak check of the last thread
    // found no stack at all.
    let text = std::fs::read_to_string("/proc/thread-self/maps")
        .or_else(|_| std::fs::read_to_string("/proc/self/maps"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?;
            let (a, b) = range.split_once('-')?;
            let name = it.nth(3).unwrap_or("").to_owned();
            Some(Mapping {
                start: usize::from_str_radix(a, 16).ok()?,
                end: usize::from_str_radix(b, 16).ok()?,
                readable: perms.starts_with('r'),
                writable: perms.as_bytes().get(1) == Some(&b'w'),
                name,
            })
        })
        .collect()
}

/// The mapping holding `p`.
pub fn mapping_of(maps: &[Mapping], p: usize) -> Option<&Mapping> {
    maps.iter().find(|m| m.start <= p && p < m.end)
}

/// A phrase naming what `p` points into, for invalid-free reports.
pub fn what_is(p: usize) -> String {
    let maps = mappings();
    let here = &p as *const usize as usize;
    match mapping_of(&maps, p) {
        None => "an unmapped address".into(),
        Some(m) if m.name == "[stack]" => "an address on the main thread's stack".into(),
        Some(m) if m.start <= here && here < m.end => "an address on the stack".into(),
        Some(m) if m.name.starts_with('/') => {
            if m.writable {
                format!("a global of {}", m.name)
            } else {
                format!("an address in {}", m.name)
            }
        }
        Some(m) if !m.name.is_empty() => format!("an address in {}", m.name),
        Some(_) => "an address in an anonymous mapping (another thread's stack, or mmap)".into(),
    }
}

/// The writable segments of every loaded object except `skip` (the
/// checker's own, whose tables hold every block's address).
pub fn globals(skip: usize) -> Vec<(usize, usize, String)> {
    struct Acc {
        out: Vec<(usize, usize, String)>,
        skip: usize,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> i32 {
        // SAFETY: dl_iterate_phdr passes a valid info and our Acc.
        unsafe {
            let acc = &mut *(data as *mut Acc);
            let info = &*info;
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            let base = info.dlpi_addr as usize;
            let contains_skip = phdrs.iter().any(|ph| {
                ph.p_type == libc::PT_LOAD
                    && (base + ph.p_vaddr as usize..base + (ph.p_vaddr + ph.p_memsz) as usize)
                        .contains(&acc.skip)
            });
            if contains_skip {
                return 0;
            }
            let name = if info.dlpi_name.is_null() {
                String::new()
            } else {
                CStr::from_ptr(info.dlpi_name)
                    .to_string_lossy()
                    .into_owned()
            };
            for ph in phdrs {
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 {
                    let a = base + ph.p_vaddr as usize;
                    acc.out.push((a, a + ph.p_memsz as usize, name.clone()));
                }
            }
            0
        }
    }
    let mut acc = Acc {
        out: Vec::new(),
        skip,
    };
    // SAFETY: the callback matches dl_iterate_phdr's contract.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut acc as *mut Acc as *mut libc::c_void) };
    acc.out
}
