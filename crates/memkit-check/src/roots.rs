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

/// A buffer for [`read_maps_raw`], reserved while allocating is still
/// allowed: twice /proc/self/maps' size now, and 64 KiB more.
pub fn reserve_maps() -> Vec<u8> {
    let now = std::fs::read("/proc/thread-self/maps").map_or(0, |t| t.len());
    Vec::with_capacity(2 * now + (64 << 10))
}

/// Reads /proc/thread-self/maps into `buf` without allocating (open, read,
/// close: with the other threads stopped and the side table held, nothing
/// may call `malloc`). Stops at the buffer's capacity; the last line may
/// then be cut short ([`raw_mappings`] drops it).
pub fn read_maps_raw(buf: &mut Vec<u8>) {
    buf.clear();
    // SAFETY: a NUL-terminated path; the fd is ours and closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/thread-self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    while buf.len() < buf.capacity() {
        let room = buf.capacity() - buf.len();
        // SAFETY: reading into the vector's spare capacity, then growing
        // its length by what was read.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().add(buf.len()).cast(), room) };
        if n <= 0 {
            break;
        }
        // SAFETY: `n` bytes were just written in the spare capacity.
        unsafe { buf.set_len(buf.len() + n as usize) };
    }
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
}

/// One line of a raw maps text: (start, end, readable, writable, name).
pub fn raw_mappings(text: &[u8]) -> impl Iterator<Item = (usize, usize, bool, bool, &[u8])> {
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    text[..whole].split(|&b| b == b'\n').filter_map(|l| {
        let mut it = l.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let range = it.next()?;
        let perms = it.next()?;
        let dash = range.iter().position(|&b| b == b'-')?;
        let hex = |f: &[u8]| usize::from_str_radix(core::str::from_utf8(f).ok()?, 16).ok();
        let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
        let name = it.nth(3).unwrap_or(&[]);
        Some((
            start,
            end,
            perms.first() == Some(&b'r'),
            perms.get(1) == Some(&b'w'),
            name,
        ))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Names with spaces, anonymous lines, and a last line cut short by a
    /// full buffer (dropped, not misread).
    #[test]
    fn raw_mappings_parse_and_drop_a_cut_line() {
        let text = b"00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus daemon\n\
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n\
7f0000100000-7f0000101000 ---p 00000000 00:00 0\n\
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 [anon:glibc: loader malloc]\n\
7f00003";
        let got: Vec<_> = raw_mappings(text).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            (0x400000, 0x452000, true, false, &b"/usr/bin/dbus"[..])
        );
        assert_eq!(
            got[1],
            (0x7f00_0000_0000, 0x7f00_0010_0000, true, true, &b""[..])
        );
        assert_eq!(got[2].2, false);
        assert_eq!(got[3].4, b"[anon:glibc:");
    }

    /// The raw read sees what /proc/self/maps says, within its capacity.
    #[test]
    fn read_maps_raw_reads_this_process() {
        let mut buf = reserve_maps();
        read_maps_raw(&mut buf);
        let here = &buf as *const _ as usize;
        assert!(raw_mappings(&buf).any(|(a, b, r, w, _)| a <= here && here < b && r && w));
        let mut small = Vec::with_capacity(100);
        read_maps_raw(&mut small);
        assert!(small.len() <= 100 && !small.is_empty());
    }
}
