//! The mem* and str* interceptors: each checks that the bytes it touches
//! lie inside live heap blocks (a `heap-buffer-overflow` or
//! `use-after-free` at the call, with the call's stack) and, where the
//! standard forbids it, that source and destination do not overlap
//! (`memcpy-param-overlap`); then it calls glibc's own function.
//!
//! The library's own calls (its fills, copies, table growth) come here too
//! (`-Bsymbolic-functions`, and compiler-generated `memcpy`): they run with
//! the thread's `busy` count set and go straight to glibc. glibc's
//! functions are found with `dlsym(RTLD_NEXT)`; until then a plain byte
//! loop does the work.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering::*};

use crate::block;
use crate::report::{self, Report};
use crate::table::{Meta, State};
use crate::{stacks, tls};

struct Real {
    name: &'static core::ffi::CStr,
    addr: AtomicUsize,
}

macro_rules! reals {
    ($($id:ident = $name:literal;)*) => {
        #[allow(non_upper_case_globals)]
        mod real {
            use super::*;
            $(pub(super) static $id: Real = Real { name: $name, addr: AtomicUsize::new(0) };)*
            pub(super) static ALL: &[&Real] = &[$(&$id),*];
        }
    };
}

reals! {
    memcpy = c"memcpy";
    memmove = c"memmove";
    memset = c"memset";
    memcmp = c"memcmp";
    memchr = c"memchr";
    memmem = c"memmem";
    strlen = c"strlen";
    strnlen = c"strnlen";
    strcmp = c"strcmp";
    strncmp = c"strncmp";
    strchr = c"strchr";
    strrchr = c"strrchr";
    strstr = c"strstr";
    memrchr = c"memrchr";
    read = c"read";
    pread64 = c"pread64";
    fread = c"fread";
    fgets = c"fgets";
    vsprintf = c"vsprintf";
    vsnprintf = c"vsnprintf";
    vsprintf_chk = c"__vsprintf_chk";
    vsnprintf_chk = c"__vsnprintf_chk";
}

impl Real {
    fn get(&self) -> usize {
        let a = self.addr.load(Relaxed);
        if a != 0 {
            return a;
        }
        resolve_one(self)
    }
}

static RESOLVING: AtomicUsize = AtomicUsize::new(0);

fn resolve_one(r: &Real) -> usize {
    if RESOLVING.swap(1, Acquire) != 0 {
        return 0;
    }
    // SAFETY: dlsym with a NUL-terminated name.
    let a = tls::inside(|| unsafe { libc::dlsym(libc::RTLD_NEXT, r.name.as_ptr()) }) as usize;
    r.addr.store(a, Relaxed);
    RESOLVING.store(0, Release);
    a
}

/// Finds glibc's functions (at start, so that later calls need no dlsym).
pub fn resolve() {
    for r in real::ALL {
        r.get();
    }
}

fn fallback_copy(d: *mut u8, s: *const u8, n: usize) {
    // Volatile accesses: a loop the compiler would turn into a memcpy call.
    if (d as usize) < (s as usize) {
        for i in 0..n {
            // SAFETY: the caller's ranges.
            unsafe { d.add(i).write_volatile(s.add(i).read_volatile()) };
        }
    } else {
        for i in (0..n).rev() {
            // SAFETY: as above.
            unsafe { d.add(i).write_volatile(s.add(i).read_volatile()) };
        }
    }
}

fn do_memmove(d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    match real::memmove.get() {
        0 => {
            fallback_copy(d.cast(), s.cast(), n);
            d
        }
        f => {
            // SAFETY: glibc's memmove.
            let f: unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(d, s, n) }
        }
    }
}

/// Copies `n <= 16` bytes with every load before the first store (so
/// overlapping ranges copy as `memmove` does): a call through glibc's
/// pointer cost more than the copy (random-batch's 8-byte tags).
#[inline(always)]
fn small_copy(d: *mut u8, s: *const u8, n: usize) {
    // SAFETY: the caller's ranges of n bytes; unaligned accesses, the
    // second of each pair overlapping the first.
    unsafe {
        if n >= 8 {
            let (a, b) = (
                (s as *const u64).read_unaligned(),
                (s.add(n - 8) as *const u64).read_unaligned(),
            );
            (d as *mut u64).write_unaligned(a);
            (d.add(n - 8) as *mut u64).write_unaligned(b);
        } else if n >= 4 {
            let (a, b) = (
                (s as *const u32).read_unaligned(),
                (s.add(n - 4) as *const u32).read_unaligned(),
            );
            (d as *mut u32).write_unaligned(a);
            (d.add(n - 4) as *mut u32).write_unaligned(b);
        } else if n > 0 {
            let (a, b, c) = (*s, *s.add(n / 2), *s.add(n - 1));
            *d = a;
            *d.add(n / 2) = b;
            *d.add(n - 1) = c;
        }
    }
}

/// The most bytes [`small_copy`] copies.
const SMALL_COPY: usize = 16;

fn do_memcpy(d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    match real::memcpy.get() {
        0 => do_memmove(d, s, n),
        f => {
            // SAFETY: glibc's memcpy.
            let f: unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(d, s, n) }
        }
    }
}

/// glibc's `memset`, for the checker's own long fills (above 32 KiB, or
/// without AVX2): through the `memset` export they paid its checks' entry
/// and exit (2.5% of a 4 KiB malloc/free pair's time).
pub(crate) fn own_memset(d: *mut u8, byte: u8, n: usize) {
    do_memset(d.cast(), byte as c_int, n);
}

fn do_memset(d: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    match real::memset.get() {
        0 => {
            for i in 0..n {
                // SAFETY: the caller's range.
                unsafe { (d as *mut u8).add(i).write_volatile(c as u8) };
            }
            d
        }
        f => {
            // SAFETY: glibc's memset.
            let f: unsafe extern "C" fn(*mut c_void, c_int, usize) -> *mut c_void =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(d, c, n) }
        }
    }
}

fn do_strlen(s: *const c_char) -> usize {
    match real::strlen.get() {
        0 => {
            let mut n = 0;
            // SAFETY: the caller passes a NUL-terminated string.
            while unsafe { (s as *const u8).add(n).read_volatile() } != 0 {
                n += 1;
            }
            n
        }
        f => {
            // SAFETY: glibc's strlen.
            let f: unsafe extern "C" fn(*const c_char) -> usize =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(s) }
        }
    }
}

fn do_strnlen(s: *const c_char, max: usize) -> usize {
    match real::strnlen.get() {
        0 => {
            let mut n = 0;
            // SAFETY: the caller passes at least `max` readable bytes or a NUL.
            while n < max && unsafe { (s as *const u8).add(n).read_volatile() } != 0 {
                n += 1;
            }
            n
        }
        f => {
            // SAFETY: glibc's strnlen.
            let f: unsafe extern "C" fn(*const c_char, usize) -> usize =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(s, max) }
        }
    }
}

/// Whether to check this call: not the checker's own, not before start.
#[inline(always)]
fn checking() -> bool {
    !tls::is_busy() && crate::started()
}

/// Checks that `[p, p + n)` lies inside one live block, if `p` is in a
/// block at all; reports the first bad byte otherwise, and returns the
/// block reported (for [`repair`], after a write).
#[inline(always)]
fn range(func: &str, what: &str, p: usize, n: usize) -> Option<Meta> {
    // The common case, inside a live block, by its header (no lock).
    if n == 0 || block::inside_live(p, n) {
        return None;
    }
    range_slow(func, what, p, n)
}

#[inline(never)]
fn range_slow(func: &str, what: &str, p: usize, n: usize) -> Option<Meta> {
    tls::inside(|| range_inner(func, what, p, n))
}

/// After a write `range` reported: the canaries and free pattern it
/// overwrote are restored, so that the one bug is reported once (not again
/// at free, or when the block leaves quarantine).
#[inline(always)]
fn repair(bad: Option<Meta>, p: *const c_void, n: usize) {
    if let Some(m) = bad {
        repair_slow(m, p, n);
    }
}

#[cold]
#[inline(never)]
fn repair_slow(m: Meta, p: *const c_void, n: usize) {
    tls::inside(|| block::repair(&m, p as usize, n));
}

fn range_inner(func: &str, what: &str, p: usize, n: usize) -> Option<Meta> {
    let m = block::containing(p)?;
    let end = m.user + m.size();
    let (kind, at) = if m.state() == State::Quarantined {
        ("use-after-free", p.max(m.user))
    } else if p < m.user {
        ("heap-buffer-overflow", p)
    } else if p + n > end {
        ("heap-buffer-overflow", p.max(end))
    } else {
        return None;
    };
    let stack = stacks::here();
    let message = format!("{func}: {what} of {n} bytes at {p:#x}");
    report::emit(block::block_report(kind, message, &m, at, stack));
    Some(m)
}

/// The test inline (it was a call of its own, 13 instructions of every
/// checked `memcpy`), the report out of line.
#[inline(always)]
fn overlap(func: &str, d: usize, dn: usize, s: usize, sn: usize) {
    if dn == 0 || sn == 0 || d + dn <= s || s + sn <= d {
        return;
    }
    overlap_slow(func, d, dn, s, sn);
}

#[cold]
#[inline(never)]
fn overlap_slow(func: &str, d: usize, dn: usize, s: usize, sn: usize) {
    tls::inside(|| overlap_report(func, d, dn, s, sn));
}

fn overlap_report(func: &str, d: usize, dn: usize, s: usize, sn: usize) {
    let stack = stacks::here();
    report::emit(Report {
        kind: "memcpy-param-overlap",
        message: format!(
            "{func}: source [{s:#x},{:#x}) and destination [{d:#x},{:#x}) overlap",
            s + sn,
            d + dn
        ),
        address: d,
        thread: tls::tid(),
        stack,
        ..Report::default()
    });
}

#[unsafe(no_mangle)]
pub extern "C" fn memcpy(d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    memcpy_as("memcpy", d, s, n)
}

#[inline(always)]
fn memcpy_as(func: &str, d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    let mut bad = None;
    if checking() {
        bad = range(func, "write", d as usize, n);
        range(func, "read", s as usize, n);
        overlap(func, d as usize, n, s as usize, n);
    }
    if n <= SMALL_COPY {
        small_copy(d.cast(), s.cast(), n);
    } else {
        do_memcpy(d, s, n);
    }
    repair(bad, d, n);
    d
}

/// `mempcpy(3)`: `memcpy` returning the end. gcc emits it for a `memcpy`
/// whose result is used as `d + n` (at -O2).
#[unsafe(no_mangle)]
pub extern "C" fn mempcpy(d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    memcpy_as("mempcpy", d, s, n)
        .cast::<u8>()
        .wrapping_add(n)
        .cast()
}

#[unsafe(no_mangle)]
pub extern "C" fn memmove(d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    memmove_as("memmove", d, s, n)
}

#[inline(always)]
fn memmove_as(func: &str, d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    let mut bad = None;
    if checking() {
        bad = range(func, "write", d as usize, n);
        range(func, "read", s as usize, n);
    }
    if n <= SMALL_COPY {
        small_copy(d.cast(), s.cast(), n);
    } else {
        do_memmove(d, s, n);
    }
    repair(bad, d, n);
    d
}

#[unsafe(no_mangle)]
pub extern "C" fn memset(d: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    memset_as("memset", d, c, n)
}

#[inline(always)]
fn memset_as(func: &str, d: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    let mut bad = None;
    if checking() {
        bad = range(func, "write", d as usize, n);
    }
    do_memset(d, c, n);
    repair(bad, d, n);
    d
}

// The fortified forms (`-D_FORTIFY_SOURCE`, which Debian builds with): the
// compiler passes the destination's size when it knows it (else
// `SIZE_MAX`). Each checks the call as its plain form does (reports first,
// so a heap block's overflow is reported with its stacks), then keeps
// glibc's promise: a call that would write past that size ends the process
// in `__chk_fail` ("*** buffer overflow detected ***") before writing.

unsafe extern "C" {
    /// glibc: prints "*** buffer overflow detected ***: terminated" and aborts.
    fn __chk_fail() -> !;
}

/// A fortified call that writes `write` bytes at `d` with a destination of
/// `dn` bytes: reports what the plain form would (without writing), then
/// fails as glibc does.
#[inline(always)]
fn chk_fail(func: &str, d: usize, write: usize) -> ! {
    if checking() {
        range(func, "write", d, write);
    }
    // SAFETY: glibc's __chk_fail takes no arguments and never returns.
    unsafe { __chk_fail() }
}

#[unsafe(no_mangle)]
pub extern "C" fn __memcpy_chk(
    d: *mut c_void,
    s: *const c_void,
    n: usize,
    dn: usize,
) -> *mut c_void {
    if n > dn {
        chk_fail("__memcpy_chk", d as usize, n);
    }
    memcpy_as("__memcpy_chk", d, s, n)
}

#[unsafe(no_mangle)]
pub extern "C" fn __mempcpy_chk(
    d: *mut c_void,
    s: *const c_void,
    n: usize,
    dn: usize,
) -> *mut c_void {
    if n > dn {
        chk_fail("__mempcpy_chk", d as usize, n);
    }
    memcpy_as("__mempcpy_chk", d, s, n)
        .cast::<u8>()
        .wrapping_add(n)
        .cast()
}

#[unsafe(no_mangle)]
pub extern "C" fn __memmove_chk(
    d: *mut c_void,
    s: *const c_void,
    n: usize,
    dn: usize,
) -> *mut c_void {
    if n > dn {
        chk_fail("__memmove_chk", d as usize, n);
    }
    memmove_as("__memmove_chk", d, s, n)
}

#[unsafe(no_mangle)]
pub extern "C" fn __memset_chk(d: *mut c_void, c: c_int, n: usize, dn: usize) -> *mut c_void {
    if n > dn {
        chk_fail("__memset_chk", d as usize, n);
    }
    memset_as("__memset_chk", d, c, n)
}

#[unsafe(no_mangle)]
pub extern "C" fn __strcpy_chk(d: *mut c_char, s: *const c_char, dn: usize) -> *mut c_char {
    let n = do_strlen(s) + 1;
    if n > dn {
        chk_fail("__strcpy_chk", d as usize, n);
    }
    strcpy_as("__strcpy_chk", d, s)
}

#[unsafe(no_mangle)]
pub extern "C" fn __stpcpy_chk(d: *mut c_char, s: *const c_char, dn: usize) -> *mut c_char {
    let n = do_strlen(s) + 1;
    if n > dn {
        chk_fail("__stpcpy_chk", d as usize, n);
    }
    stpcpy_as("__stpcpy_chk", d, s)
}

#[unsafe(no_mangle)]
pub extern "C" fn __strncpy_chk(
    d: *mut c_char,
    s: *const c_char,
    n: usize,
    dn: usize,
) -> *mut c_char {
    if n > dn {
        chk_fail("__strncpy_chk", d as usize, n);
    }
    strncpy_as("__strncpy_chk", d, s, n)
}

#[unsafe(no_mangle)]
pub extern "C" fn __strcat_chk(d: *mut c_char, s: *const c_char, dn: usize) -> *mut c_char {
    let write = do_strlen(d) + do_strlen(s) + 1;
    if write > dn {
        chk_fail("__strcat_chk", d as usize, write);
    }
    strcat_as("__strcat_chk", d, s)
}

#[unsafe(no_mangle)]
pub extern "C" fn __strncat_chk(
    d: *mut c_char,
    s: *const c_char,
    n: usize,
    dn: usize,
) -> *mut c_char {
    let write = do_strlen(d) + do_strnlen(s, n) + 1;
    if write > dn {
        chk_fail("__strncat_chk", d as usize, write);
    }
    strncat_as("__strncat_chk", d, s, n)
}

#[unsafe(no_mangle)]
pub extern "C" fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int {
    if checking() {
        range("memcmp", "read", a as usize, n);
        range("memcmp", "read", b as usize, n);
    }
    match real::memcmp.get() {
        0 => {
            for i in 0..n {
                // SAFETY: the caller's ranges.
                let (x, y) = unsafe {
                    (
                        (a as *const u8).add(i).read_volatile(),
                        (b as *const u8).add(i).read_volatile(),
                    )
                };
                if x != y {
                    return x as c_int - y as c_int;
                }
            }
            0
        }
        f => {
            // SAFETY: glibc's memcmp and the caller's contract.
            let f: unsafe extern "C" fn(*const c_void, *const c_void, usize) -> c_int =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(a, b, n) }
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn memchr(s: *const c_void, c: c_int, n: usize) -> *mut c_void {
    let r = match real::memchr.get() {
        0 => {
            let mut r = core::ptr::null_mut();
            for i in 0..n {
                // SAFETY: the caller's range.
                if unsafe { (s as *const u8).add(i).read_volatile() } == c as u8 {
                    r = (s as *mut u8).wrapping_add(i) as *mut c_void;
                    break;
                }
            }
            r
        }
        f => {
            // SAFETY: glibc's memchr.
            let f: unsafe extern "C" fn(*const c_void, c_int, usize) -> *mut c_void =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(s, c, n) }
        }
    };
    if checking() {
        // The bytes actually read: up to the match, or all n.
        let read = if r.is_null() {
            n
        } else {
            r as usize - s as usize + 1
        };
        range("memchr", "read", s as usize, read);
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn memmem(h: *const c_void, hn: usize, n: *const c_void, nn: usize) -> *mut c_void {
    if checking() {
        range("memmem", "read", h as usize, hn);
        range("memmem", "read", n as usize, nn);
    }
    match real::memmem.get() {
        0 => {
            if nn == 0 {
                return h as *mut c_void;
            }
            for i in 0..=hn.saturating_sub(nn) {
                if hn >= nn && memcmp((h as *const u8).wrapping_add(i).cast(), n, nn) == 0 {
                    return (h as *mut u8).wrapping_add(i).cast();
                }
            }
            core::ptr::null_mut()
        }
        f => {
            // SAFETY: glibc's memmem.
            let f: unsafe extern "C" fn(*const c_void, usize, *const c_void, usize) -> *mut c_void =
                unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's contract.
            unsafe { f(h, hn, n, nn) }
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn strlen(s: *const c_char) -> usize {
    let n = do_strlen(s);
    if checking() {
        range("strlen", "read", s as usize, n + 1);
    }
    n
}

#[unsafe(no_mangle)]
pub extern "C" fn strnlen(s: *const c_char, max: usize) -> usize {
    let n = do_strnlen(s, max);
    if checking() {
        range("strnlen", "read", s as usize, (n + 1).min(max));
    }
    n
}

#[unsafe(no_mangle)]
pub extern "C" fn strcpy(d: *mut c_char, s: *const c_char) -> *mut c_char {
    strcpy_as("strcpy", d, s)
}

#[inline(always)]
fn strcpy_as(func: &str, d: *mut c_char, s: *const c_char) -> *mut c_char {
    copy_string(func, d, s);
    d
}

/// `strcpy`'s work, checked: the bytes copied (with the NUL).
#[inline(always)]
fn copy_string(func: &str, d: *mut c_char, s: *const c_char) -> usize {
    let n = do_strlen(s) + 1;
    let mut bad = None;
    if checking() {
        range(func, "read", s as usize, n);
        bad = range(func, "write", d as usize, n);
        overlap(func, d as usize, n, s as usize, n);
    }
    do_memmove(d.cast(), s.cast(), n);
    repair(bad, d.cast(), n);
    n
}

/// `stpcpy(3)`: `strcpy` returning the end (its NUL). gcc emits it for a
/// `strcpy` followed by a `strcat` to the same destination (at -O2): the
/// program's `strcpy` comes here.
#[unsafe(no_mangle)]
pub extern "C" fn stpcpy(d: *mut c_char, s: *const c_char) -> *mut c_char {
    stpcpy_as("stpcpy", d, s)
}

#[inline(always)]
fn stpcpy_as(func: &str, d: *mut c_char, s: *const c_char) -> *mut c_char {
    let n = copy_string(func, d, s);
    d.wrapping_add(n - 1)
}

#[unsafe(no_mangle)]
pub extern "C" fn strncpy(d: *mut c_char, s: *const c_char, n: usize) -> *mut c_char {
    strncpy_as("strncpy", d, s, n)
}

#[inline(always)]
fn strncpy_as(func: &str, d: *mut c_char, s: *const c_char, n: usize) -> *mut c_char {
    let sl = do_strnlen(s, n);
    let read = (sl + 1).min(n);
    let mut bad = None;
    if checking() {
        range(func, "read", s as usize, read);
        bad = range(func, "write", d as usize, n);
        overlap(func, d as usize, n, s as usize, read);
    }
    do_memmove(d.cast(), s.cast(), sl);
    do_memset((d as *mut u8).wrapping_add(sl).cast(), 0, n - sl);
    repair(bad, d.cast(), n);
    d
}

#[unsafe(no_mangle)]
pub extern "C" fn strcat(d: *mut c_char, s: *const c_char) -> *mut c_char {
    strcat_as("strcat", d, s)
}

#[inline(always)]
fn strcat_as(func: &str, d: *mut c_char, s: *const c_char) -> *mut c_char {
    let dl = do_strlen(d);
    let sl = do_strlen(s);
    let mut bad = None;
    if checking() {
        range(func, "read", s as usize, sl + 1);
        bad = range(func, "write", d as usize, dl + sl + 1);
        overlap(func, d as usize, dl + sl + 1, s as usize, sl + 1);
    }
    do_memmove((d as *mut u8).wrapping_add(dl).cast(), s.cast(), sl + 1);
    repair(bad, d.cast(), dl + sl + 1);
    d
}

#[unsafe(no_mangle)]
pub extern "C" fn strncat(d: *mut c_char, s: *const c_char, n: usize) -> *mut c_char {
    strncat_as("strncat", d, s, n)
}

#[inline(always)]
fn strncat_as(func: &str, d: *mut c_char, s: *const c_char, n: usize) -> *mut c_char {
    let dl = do_strlen(d);
    let sl = do_strnlen(s, n);
    let mut bad = None;
    if checking() {
        range(func, "read", s as usize, (sl + 1).min(n));
        bad = range(func, "write", d as usize, dl + sl + 1);
        overlap(func, d as usize, dl + sl + 1, s as usize, sl);
    }
    do_memmove((d as *mut u8).wrapping_add(dl).cast(), s.cast(), sl);
    // SAFETY: the destination holds dl + sl + 1 bytes (checked above).
    unsafe { *(d as *mut u8).add(dl + sl) = 0 };
    repair(bad, d.cast(), dl + sl + 1);
    d
}

// ---- Reads of strings and writes of I/O ----------------------------------
//
// Beyond the functions the issue named: the string reads AddressSanitizer
// checks too (a comparison or search running off a string that is not
// terminated, or reading a freed one), and the calls that fill a buffer
// from a file (an overflow by `read(fd, buf, sizeof big)` into a small
// block). Reads are checked for the bytes the function looked at; I/O
// writes for the bytes it returned (as AddressSanitizer does), after the
// call, whose `errno` is kept.

/// glibc's function `r` (resolved at start; a call during another
/// thread's first resolution waits for it).
fn real_fn(r: &Real) -> usize {
    loop {
        let a = r.get();
        if a != 0 {
            return a;
        }
        memkit_sys::yield_now();
    }
}

/// How many bytes of `a` and `b` a comparison of at most `n` bytes reads:
/// up to the first difference or NUL, included.
fn compared(a: *const c_char, b: *const c_char, n: usize) -> usize {
    let mut i = 0;
    while i < n {
        // SAFETY: the caller's strings, read up to their end or difference.
        let (x, y) = unsafe { (*(a as *const u8).add(i), *(b as *const u8).add(i)) };
        i += 1;
        if x != y || x == 0 {
            break;
        }
    }
    i
}

fn check_compare(func: &str, a: *const c_char, b: *const c_char, n: usize) {
    if checking() && (block::maybe_heap(a as usize) || block::maybe_heap(b as usize)) {
        let read = compared(a, b, n);
        range(func, "read", a as usize, read);
        range(func, "read", b as usize, read);
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn strcmp(a: *const c_char, b: *const c_char) -> c_int {
    check_compare("strcmp", a, b, usize::MAX);
    // SAFETY: glibc's strcmp.
    let f: unsafe extern "C" fn(*const c_char, *const c_char) -> c_int =
        unsafe { core::mem::transmute(real_fn(&real::strcmp)) };
    // SAFETY: the caller's contract.
    unsafe { f(a, b) }
}

#[unsafe(no_mangle)]
pub extern "C" fn strncmp(a: *const c_char, b: *const c_char, n: usize) -> c_int {
    check_compare("strncmp", a, b, n);
    // SAFETY: glibc's strncmp.
    let f: unsafe extern "C" fn(*const c_char, *const c_char, usize) -> c_int =
        unsafe { core::mem::transmute(real_fn(&real::strncmp)) };
    // SAFETY: the caller's contract.
    unsafe { f(a, b, n) }
}

#[unsafe(no_mangle)]
pub extern "C" fn strchr(s: *const c_char, c: c_int) -> *mut c_char {
    // SAFETY: glibc's strchr.
    let f: unsafe extern "C" fn(*const c_char, c_int) -> *mut c_char =
        unsafe { core::mem::transmute(real_fn(&real::strchr)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(s, c) };
    if checking() && block::maybe_heap(s as usize) {
        let read = if r.is_null() {
            do_strlen(s) + 1
        } else {
            r as usize - s as usize + 1
        };
        range("strchr", "read", s as usize, read);
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn strrchr(s: *const c_char, c: c_int) -> *mut c_char {
    if checking() && block::maybe_heap(s as usize) {
        range("strrchr", "read", s as usize, do_strlen(s) + 1);
    }
    // SAFETY: glibc's strrchr.
    let f: unsafe extern "C" fn(*const c_char, c_int) -> *mut c_char =
        unsafe { core::mem::transmute(real_fn(&real::strrchr)) };
    // SAFETY: the caller's contract.
    unsafe { f(s, c) }
}

#[unsafe(no_mangle)]
pub extern "C" fn strstr(h: *const c_char, n: *const c_char) -> *mut c_char {
    // SAFETY: glibc's strstr.
    let f: unsafe extern "C" fn(*const c_char, *const c_char) -> *mut c_char =
        unsafe { core::mem::transmute(real_fn(&real::strstr)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(h, n) };
    if checking() && (block::maybe_heap(h as usize) || block::maybe_heap(n as usize)) {
        let nl = do_strlen(n);
        let read = if r.is_null() {
            do_strlen(h) + 1
        } else {
            r as usize - h as usize + nl
        };
        range("strstr", "read", h as usize, read);
        range("strstr", "read", n as usize, nl + 1);
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn memrchr(s: *const c_void, c: c_int, n: usize) -> *mut c_void {
    if checking() {
        range("memrchr", "read", s as usize, n);
    }
    // SAFETY: glibc's memrchr.
    let f: unsafe extern "C" fn(*const c_void, c_int, usize) -> *mut c_void =
        unsafe { core::mem::transmute(real_fn(&real::memrchr)) };
    // SAFETY: the caller's contract.
    unsafe { f(s, c, n) }
}

/// After an I/O call wrote `n` bytes at `buf`: checks them (keeping the
/// call's `errno`) and repairs what a reported overflow overwrote.
fn wrote(func: &str, buf: *mut c_void, n: usize) {
    if n == 0 || !checking() {
        return;
    }
    // SAFETY: the thread's errno location.
    let e = unsafe { *libc::__errno_location() };
    let bad = range(func, "write", buf as usize, n);
    repair(bad, buf, n);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

// Inlined into each entry point: a call of its own was a tail call from
// it, and the report's first frame named this helper, not the function
// the program called.
#[inline(always)]
fn read_as(func: &str, fd: c_int, buf: *mut c_void, count: usize) -> isize {
    // SAFETY: glibc's read.
    let f: unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize =
        unsafe { core::mem::transmute(real_fn(&real::read)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(fd, buf, count) };
    if r > 0 {
        wrote(func, buf, r as usize);
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize {
    read_as("read", fd, buf, count)
}

// Inlined into each entry point: a call of its own was a tail call from
// it, and the report's first frame named this helper, not the function
// the program called.
#[inline(always)]
fn pread_as(func: &str, fd: c_int, buf: *mut c_void, count: usize, off: i64) -> isize {
    // SAFETY: glibc's pread64.
    let f: unsafe extern "C" fn(c_int, *mut c_void, usize, i64) -> isize =
        unsafe { core::mem::transmute(real_fn(&real::pread64)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(fd, buf, count, off) };
    if r > 0 {
        wrote(func, buf, r as usize);
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn pread(fd: c_int, buf: *mut c_void, count: usize, off: i64) -> isize {
    pread_as("pread", fd, buf, count, off)
}

#[unsafe(no_mangle)]
pub extern "C" fn pread64(fd: c_int, buf: *mut c_void, count: usize, off: i64) -> isize {
    pread_as("pread64", fd, buf, count, off)
}

// Inlined into each entry point: a call of its own was a tail call from
// it, and the report's first frame named this helper, not the function
// the program called.
#[inline(always)]
fn fread_as(func: &str, p: *mut c_void, size: usize, n: usize, f: *mut libc::FILE) -> usize {
    // SAFETY: glibc's fread.
    let real: unsafe extern "C" fn(*mut c_void, usize, usize, *mut libc::FILE) -> usize =
        unsafe { core::mem::transmute(real_fn(&real::fread)) };
    // SAFETY: the caller's contract.
    let r = unsafe { real(p, size, n, f) };
    wrote(func, p, r.saturating_mul(size));
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn fread(p: *mut c_void, size: usize, n: usize, f: *mut libc::FILE) -> usize {
    fread_as("fread", p, size, n, f)
}

// Inlined into each entry point: a call of its own was a tail call from
// it, and the report's first frame named this helper, not the function
// the program called.
#[inline(always)]
fn fgets_as(func: &str, s: *mut c_char, n: c_int, f: *mut libc::FILE) -> *mut c_char {
    // SAFETY: glibc's fgets.
    let real: unsafe extern "C" fn(*mut c_char, c_int, *mut libc::FILE) -> *mut c_char =
        unsafe { core::mem::transmute(real_fn(&real::fgets)) };
    // SAFETY: the caller's contract.
    let r = unsafe { real(s, n, f) };
    if !r.is_null() {
        wrote(func, s.cast(), do_strlen(s) + 1);
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn fgets(s: *mut c_char, n: c_int, f: *mut libc::FILE) -> *mut c_char {
    fgets_as("fgets", s, n, f)
}

// Their fortified forms: glibc's promise kept (a buffer of `buflen` bytes
// that the call could overflow ends the process), then the plain form.

#[unsafe(no_mangle)]
pub extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, count: usize, buflen: usize) -> isize {
    if count > buflen {
        chk_fail("__read_chk", buf as usize, count);
    }
    read_as("__read_chk", fd, buf, count)
}

#[unsafe(no_mangle)]
pub extern "C" fn __pread64_chk(
    fd: c_int,
    buf: *mut c_void,
    count: usize,
    off: i64,
    buflen: usize,
) -> isize {
    if count > buflen {
        chk_fail("__pread64_chk", buf as usize, count);
    }
    pread_as("__pread64_chk", fd, buf, count, off)
}

#[unsafe(no_mangle)]
pub extern "C" fn __pread_chk(
    fd: c_int,
    buf: *mut c_void,
    count: usize,
    off: i64,
    buflen: usize,
) -> isize {
    if count > buflen {
        chk_fail("__pread_chk", buf as usize, count);
    }
    pread_as("__pread_chk", fd, buf, count, off)
}

#[unsafe(no_mangle)]
pub extern "C" fn __fread_chk(
    p: *mut c_void,
    ptrlen: usize,
    size: usize,
    n: usize,
    f: *mut libc::FILE,
) -> usize {
    if size.checked_mul(n).is_none_or(|t| t > ptrlen) {
        chk_fail("__fread_chk", p as usize, size.saturating_mul(n));
    }
    fread_as("__fread_chk", p, size, n, f)
}

#[unsafe(no_mangle)]
pub extern "C" fn __fgets_chk(
    s: *mut c_char,
    size: usize,
    n: c_int,
    f: *mut libc::FILE,
) -> *mut c_char {
    if n > 0 && n as usize > size {
        chk_fail("__fgets_chk", s as usize, n as usize);
    }
    fgets_as("__fgets_chk", s, n, f)
}

// ---- The sprintf family ---------------------------------------------------
//
// `sprintf`, `snprintf` and their fortified forms are variadic, which a
// Rust function cannot be: each is a naked trampoline that stores the
// argument registers in a register save area, builds the `va_list` the
// x86-64 ABI defines over it (the fixed arguments' registers already
// consumed, the rest of the arguments on the caller's stack), and calls
// the `va_list` form below, which calls glibc's and checks the bytes it
// wrote (with the NUL), after the call. The trampoline's CFI lets the
// report's stack unwind through it, and name it.

/// The x86-64 `va_list` (one element of `__va_list_tag`).
#[repr(C)]
pub struct VaList {
    gp_offset: u32,
    fp_offset: u32,
    overflow_arg_area: *mut c_void,
    reg_save_area: *mut c_void,
}

/// What a `vsnprintf`-like call wrote: the output and its NUL, at most `n`.
fn printed(ret: c_int, n: usize) -> usize {
    if ret < 0 || n == 0 {
        return 0;
    }
    (ret as usize).min(n - 1) + 1
}

/// A variadic trampoline: `$fixed` named arguments before the `...`
/// (their registers are left as they are), then the `va_list` pointer in
/// the next argument register, `$ap`, for `$target`.
macro_rules! va_trampoline {
    ($name:ident, $fixed:literal, $ap:literal, $target:path) => {
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() {
            core::arch::naked_asm!(
                ".cfi_startproc",
                // 176 bytes of register save area at rsp, the va_list at
                // rsp + 176; 216 keeps rsp 16-aligned for the call.
                "sub rsp, 216",
                ".cfi_adjust_cfa_offset 216",
                "mov [rsp], rdi",
                "mov [rsp + 8], rsi",
                "mov [rsp + 16], rdx",
                "mov [rsp + 24], rcx",
                "mov [rsp + 32], r8",
                "mov [rsp + 40], r9",
                "test al, al",
                "je 2f",
                "movaps [rsp + 48], xmm0",
                "movaps [rsp + 64], xmm1",
                "movaps [rsp + 80], xmm2",
                "movaps [rsp + 96], xmm3",
                "movaps [rsp + 112], xmm4",
                "movaps [rsp + 128], xmm5",
                "movaps [rsp + 144], xmm6",
                "movaps [rsp + 160], xmm7",
                "2:",
                concat!("mov dword ptr [rsp + 176], ", $fixed, " * 8"),
                "mov dword ptr [rsp + 180], 48",
                "lea rax, [rsp + 224]",
                "mov [rsp + 184], rax",
                "mov [rsp + 192], rsp",
                concat!("lea ", $ap, ", [rsp + 176]"),
                "call {target}",
                "add rsp, 216",
                ".cfi_adjust_cfa_offset -216",
                "ret",
                ".cfi_endproc",
                target = sym $target,
            )
        }
    };
}

type VPrintf = unsafe extern "C" fn(*mut c_char, *const c_char, *mut VaList) -> c_int;
type VSnprintf = unsafe extern "C" fn(*mut c_char, usize, *const c_char, *mut VaList) -> c_int;
type VPrintfChk =
    unsafe extern "C" fn(*mut c_char, c_int, usize, *const c_char, *mut VaList) -> c_int;
type VSnprintfChk =
    unsafe extern "C" fn(*mut c_char, usize, c_int, usize, *const c_char, *mut VaList) -> c_int;

fn vsprintf_as(func: &str, d: *mut c_char, fmt: *const c_char, ap: *mut VaList) -> c_int {
    // SAFETY: glibc's vsprintf.
    let f: VPrintf = unsafe { core::mem::transmute(real_fn(&real::vsprintf)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(d, fmt, ap) };
    wrote(func, d.cast(), printed(r, usize::MAX));
    r
}

fn vsnprintf_as(
    func: &str,
    d: *mut c_char,
    n: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    // SAFETY: glibc's vsnprintf.
    let f: VSnprintf = unsafe { core::mem::transmute(real_fn(&real::vsnprintf)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(d, n, fmt, ap) };
    wrote(func, d.cast(), printed(r, n));
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn vsprintf(d: *mut c_char, fmt: *const c_char, ap: *mut VaList) -> c_int {
    vsprintf_as("vsprintf", d, fmt, ap)
}

#[unsafe(no_mangle)]
pub extern "C" fn vsnprintf(
    d: *mut c_char,
    n: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    vsnprintf_as("vsnprintf", d, n, fmt, ap)
}

extern "C" fn sprintf_va(d: *mut c_char, fmt: *const c_char, ap: *mut VaList) -> c_int {
    vsprintf_as("sprintf", d, fmt, ap)
}

extern "C" fn snprintf_va(d: *mut c_char, n: usize, fmt: *const c_char, ap: *mut VaList) -> c_int {
    vsnprintf_as("snprintf", d, n, fmt, ap)
}

fn vsprintf_chk_as(
    func: &str,
    d: *mut c_char,
    flag: c_int,
    dn: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    // SAFETY: glibc's __vsprintf_chk (which keeps its own promise).
    let f: VPrintfChk = unsafe { core::mem::transmute(real_fn(&real::vsprintf_chk)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(d, flag, dn, fmt, ap) };
    wrote(func, d.cast(), printed(r, usize::MAX));
    r
}

fn vsnprintf_chk_as(
    func: &str,
    d: *mut c_char,
    n: usize,
    flag: c_int,
    dn: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    // SAFETY: glibc's __vsnprintf_chk (which keeps its own promise).
    let f: VSnprintfChk = unsafe { core::mem::transmute(real_fn(&real::vsnprintf_chk)) };
    // SAFETY: the caller's contract.
    let r = unsafe { f(d, n, flag, dn, fmt, ap) };
    wrote(func, d.cast(), printed(r, n));
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn __vsprintf_chk(
    d: *mut c_char,
    flag: c_int,
    dn: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    vsprintf_chk_as("__vsprintf_chk", d, flag, dn, fmt, ap)
}

#[unsafe(no_mangle)]
pub extern "C" fn __vsnprintf_chk(
    d: *mut c_char,
    n: usize,
    flag: c_int,
    dn: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    vsnprintf_chk_as("__vsnprintf_chk", d, n, flag, dn, fmt, ap)
}

extern "C" fn sprintf_chk_va(
    d: *mut c_char,
    flag: c_int,
    dn: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    vsprintf_chk_as("__sprintf_chk", d, flag, dn, fmt, ap)
}

extern "C" fn snprintf_chk_va(
    d: *mut c_char,
    n: usize,
    flag: c_int,
    dn: usize,
    fmt: *const c_char,
    ap: *mut VaList,
) -> c_int {
    vsnprintf_chk_as("__snprintf_chk", d, n, flag, dn, fmt, ap)
}

va_trampoline!(sprintf, "2", "rdx", sprintf_va);
va_trampoline!(snprintf, "3", "rcx", snprintf_va);
va_trampoline!(__sprintf_chk, "4", "r8", sprintf_chk_va);
va_trampoline!(__snprintf_chk, "5", "r9", snprintf_chk_va);
