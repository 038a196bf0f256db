//! The loaded objects stacks point into, recorded when a stack first points
//! into them, so that a stack still names its object after `dlclose`.
//!
//! A frame is stored as (module index, offset from the module's load bias):
//! symbolization reopens the module's file by its recorded path at report
//! time, whether or not it is still mapped. The table is append-only (a
//! slot, once published, never changes except its `alive` flag), and both
//! lookup and append are lock-free: a fork or a signal can find nothing held.

use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering::*};

/// Module slots; index 0 means "no module" (the frame holds a raw address).
pub const MAX_MODULES: usize = 4096;

/// glibc 2.35's `struct dl_find_object`.
#[repr(C)]
pub(crate) struct DlFindObject {
    flags: u64,
    pub(crate) map_start: *mut c_void,
    pub(crate) map_end: *mut c_void,
    pub(crate) link_map: *mut LinkMap,
    pub(crate) eh_frame: *mut c_void,
    reserved: [u64; 7],
}

/// The public head of glibc's `struct link_map`.
#[repr(C)]
pub(crate) struct LinkMap {
    pub(crate) l_addr: usize,
    pub(crate) l_name: *const c_char,
}

unsafe extern "C" {
    /// Lock-free and async-signal-safe (glibc 2.35+): the object `addr` lies in.
    fn _dl_find_object(addr: *mut c_void, out: *mut DlFindObject) -> i32;
}

/// Where `pc` lies: its object's mapping, load bias and unwind table.
pub(crate) fn find_object(pc: usize) -> Option<DlFindObject> {
    let mut out = DlFindObject {
        flags: 0,
        map_start: core::ptr::null_mut(),
        map_end: core::ptr::null_mut(),
        link_map: core::ptr::null_mut(),
        eh_frame: core::ptr::null_mut(),
        reserved: [0; 7],
    };
    // SAFETY: `out` is a valid dl_find_object; any address may be asked about.
    let rc = unsafe { _dl_find_object(pc as *mut c_void, &mut out) };
    (rc == 0 && !out.link_map.is_null()).then_some(out)
}

struct Slot {
    link_map: AtomicUsize,
    start: AtomicUsize,
    end: AtomicUsize,
    bias: AtomicUsize,
    /// A NUL-terminated copy of the path, leaked (slots live forever).
    path: AtomicPtr<u8>,
    path_len: AtomicUsize,
    alive: AtomicBool,
    ready: AtomicBool,
}

impl Slot {
    const fn new() -> Self {
        Self {
            link_map: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            bias: AtomicUsize::new(0),
            path: AtomicPtr::new(core::ptr::null_mut()),
            path_len: AtomicUsize::new(0),
            alive: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        }
    }
}

static SLOTS: [Slot; MAX_MODULES] = [const { Slot::new() }; MAX_MODULES];
/// Slots handed out (slot 0 is never used).
static NEXT: AtomicU32 = AtomicU32::new(1);

/// What a report needs to know about a module.
#[derive(Clone, Debug)]
pub struct ModuleInfo {
    pub path: String,
    /// Load bias: runtime address = bias + offset.
    pub bias: usize,
    /// Still mapped (no `dlclose` seen since it was recorded).
    pub alive: bool,
}

/// The module index for the object `obj` (found for some pc), recording it
/// on first sight. `None` when the table is full.
pub(crate) fn index_of(obj: &DlFindObject) -> Option<u16> {
    let lm = obj.link_map as usize;
    let start = obj.map_start as usize;
    let n = (NEXT.load(Acquire) as usize).min(MAX_MODULES);
    for (i, s) in SLOTS.iter().enumerate().take(n).skip(1) {
        if s.ready.load(Acquire)
            && s.alive.load(Relaxed)
            && s.link_map.load(Relaxed) == lm
            && s.start.load(Relaxed) == start
        {
            return Some(i as u16);
        }
    }
    let i = NEXT.fetch_add(1, AcqRel) as usize;
    if i >= MAX_MODULES {
        NEXT.store(MAX_MODULES as u32, Relaxed);
        return None;
    }
    let s = &SLOTS[i];
    // SAFETY: a link_map returned by _dl_find_object is live while its
    // object is mapped, which it is: a pc of the calling stack lies in it.
    let (bias, name) = unsafe { ((*obj.link_map).l_addr, (*obj.link_map).l_name) };
    let path = copy_path(name);
    s.link_map.store(lm, Relaxed);
    s.start.store(start, Relaxed);
    s.end.store(obj.map_end as usize, Relaxed);
    s.bias.store(bias, Relaxed);
    s.path_len.store(path.1, Relaxed);
    s.path.store(path.0, Relaxed);
    s.alive.store(true, Relaxed);
    s.ready.store(true, Release);
    Some(i as u16)
}

/// A leaked copy of the module's path; the main program (empty name) is
/// named by /proc/self/exe.
fn copy_path(name: *const c_char) -> (*mut u8, usize) {
    let mut exe = [0u8; 4096];
    let bytes: &[u8] = if name.is_null() {
        b""
    } else {
        // SAFETY: l_name is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(name) }.to_bytes()
    };
    let bytes = if bytes.is_empty() {
        let n = memkit_sys::self_exe(&mut exe);
        &exe[..n]
    } else {
        bytes
    };
    let v: Box<[u8]> = bytes.into();
    let len = v.len();
    (Box::into_raw(v) as *mut u8, len)
}

/// After a `dlclose` (which may have unmapped any number of objects), marks
/// every recorded module that is no longer loaded where it was as gone.
pub fn forget_unmapped() {
    crate::unwind::new_generation();
    let n = (NEXT.load(Acquire) as usize).min(MAX_MODULES);
    for s in SLOTS.iter().take(n).skip(1) {
        if !s.ready.load(Acquire) || !s.alive.load(Relaxed) {
            continue;
        }
        let start = s.start.load(Relaxed);
        let same = find_object(start).is_some_and(|o| {
            o.link_map as usize == s.link_map.load(Relaxed) && o.map_start as usize == start
        });
        if !same {
            s.alive.store(false, Relaxed);
        }
    }
}

/// The module recorded at `index`, if any.
pub fn info(index: u16) -> Option<ModuleInfo> {
    let s = SLOTS.get(index as usize)?;
    if index == 0 || !s.ready.load(Acquire) {
        return None;
    }
    let p = s.path.load(Relaxed);
    let len = s.path_len.load(Relaxed);
    // SAFETY: a leaked boxed slice of `len` bytes, never freed.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    Some(ModuleInfo {
        path: String::from_utf8_lossy(bytes).into_owned(),
        bias: s.bias.load(Relaxed),
        alive: s.alive.load(Relaxed),
    })
}

/// The module index `pc` lies in now (0 when in no known object).
pub fn module_of(pc: usize) -> u16 {
    find_object(pc).and_then(|o| index_of(&o)).unwrap_or(0)
}

/// Where a module's mapping lies (for "is this frame ours").
pub fn range(index: u16) -> (usize, usize) {
    match SLOTS.get(index as usize) {
        Some(s) if s.ready.load(Acquire) => (s.start.load(Relaxed), s.end.load(Relaxed)),
        _ => (0, 0),
    }
}

/// The load bias of module `index` (0 for an unknown index).
#[inline]
pub fn bias(index: u16) -> usize {
    match SLOTS.get(index as usize) {
        Some(s) => s.bias.load(Relaxed),
        None => 0,
    }
}
