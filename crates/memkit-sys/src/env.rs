//! Reading the process environment straight from `environ`: no `getenv`
//! copy, no allocation, safe inside the allocator.

unsafe extern "C" {
    static environ: *const *const u8;
}

/// Looks `name` up in the process environment; returns the value's bytes.
pub fn var(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings
    // owned by libc for the process's lifetime; we only read it. (A
    // concurrent setenv may replace the array; libc keeps old strings alive,
    // as getenv relies on too.)
    unsafe {
        let mut e = environ;
        if e.is_null() {
            return None;
        }
        while !(*e).is_null() {
            let s = *e;
            let mut n = 0;
            while *s.add(n) != 0 {
                n += 1;
            }
            let entry = core::slice::from_raw_parts(s, n);
            if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
                return Some(&entry[name.len() + 1..]);
            }
            e = e.add(1);
        }
    }
    None
}
