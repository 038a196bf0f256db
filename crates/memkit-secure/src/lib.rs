//! memkit's secure memory: allocations for keys, passwords and tokens that
//! stay out of swap, core dumps and forked children, are fenced by guard
//! pages and canaries, and are wiped when freed; and locking a whole process
//! in RAM ([`mlockall`]).
//!
//! This crate is the mechanism, shared by the Rust API (`memkit::secure`,
//! `memkit::lock`) and the C API (`memkit_secure_*` in libmemkit.so). It is
//! `#![no_std]` and never calls `malloc`: secrets, their bookkeeping and
//! every message buffer live in mappings of its own or on the stack, so the
//! preloaded allocator can use it on any path.
//!
//! Two layouts (see `docs/SECURE.md`):
//! - **guarded** ([`Mode::Guarded`], the default): a mapping per secret,
//!   guard pages on both sides, the secret against the trailing guard, a
//!   canary before it; exact per-secret access control;
//! - **packed** ([`Mode::Packed`]): secrets up to 2016 bytes share locked
//!   slabs fenced by guard pages, with canaries between them; a few hundred
//!   mappings for 100,000 secrets.
//!
//! Every secret is locked ([`LockPolicy`]), `MADV_DONTDUMP`, and
//! `MADV_WIPEONFORK` (or, with `memfd_secret`, `MADV_DONTFORK`);
//! [`protection`] reports what took effect.
//!
//! # Safety
//! The functions taking a secret's address trust it to be one this crate
//! returned and still live (unknown addresses are reported, not touched);
//! changing access must not contradict live references.
#![cfg_attr(not(test), no_std)]

mod canary;
mod error;
mod mapping;
pub mod mlockall;
pub mod msg;
mod policy;
mod region;
mod slab;
mod sync;
mod table;
mod wipe;

use core::ptr::{null_mut, NonNull};

use memkit_sys::protect::Prot;

pub use error::{Error, ErrorKind};
pub use policy::LockPolicy;

use mapping::{DONTDUMP, DONTFORK, LOCKED, SECRETMEM, WIPEONFORK};
use region::Region;
use slab::{Slab, CLASSES, MAX_PACKED};
use sync::Locked;
use table::{Dir, Table};

/// Access to a secret's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Access {
    /// Readable and writable (a new secret's state).
    #[default]
    ReadWrite = 0,
    /// Writes fault.
    ReadOnly = 1,
    /// Every access faults.
    NoAccess = 2,
}

impl Access {
    fn from_u8(v: u8) -> Access {
        match v {
            1 => Access::ReadOnly,
            2 => Access::NoAccess,
            _ => Access::ReadWrite,
        }
    }

    fn prot(self) -> Prot {
        match self {
            Access::ReadWrite => Prot::ReadWrite,
            Access::ReadOnly => Prot::Read,
            Access::NoAccess => Prot::None,
        }
    }
}

/// How a secret is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Its own mapping between guard pages (about 2 mappings and at least
    /// one locked page per secret).
    #[default]
    Guarded,
    /// A slot in a shared slab, for secrets up to 2016 bytes with
    /// alignment up to 16 (larger ones fall back to [`Mode::Guarded`]).
    Packed,
}

/// How to allocate a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Guarded (default) or packed.
    pub mode: Mode,
    /// Back the secret with `memfd_secret` (removed from the kernel's direct
    /// map) when the kernel offers it; plain locked memory otherwise.
    pub secretmem: bool,
    /// Alignment: a power of two, 16 (the default and minimum) to 4096.
    pub align: usize,
    /// Overrides the process-wide lock policy for this secret.
    pub policy: Option<LockPolicy>,
}

impl Default for Options {
    fn default() -> Self {
        Options::GUARDED
    }
}

impl Options {
    /// Guarded, 16-aligned, process policy.
    pub const GUARDED: Options = Options {
        mode: Mode::Guarded,
        secretmem: false,
        align: 16,
        policy: None,
    };
    /// Packed, 16-aligned, process policy.
    pub const PACKED: Options = Options {
        mode: Mode::Packed,
        ..Options::GUARDED
    };
}

/// What protection a secret actually has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Protection {
    /// Requested size in bytes.
    pub size: usize,
    /// Locked in RAM: never swapped.
    pub locked: bool,
    /// Left out of core dumps.
    pub dontdump: bool,
    /// Zero-filled in children made by `fork`.
    pub wipeonfork: bool,
    /// Absent from children made by `fork` (accesses there fault).
    pub dontfork: bool,
    /// In `memfd_secret` memory: outside the kernel's direct map.
    pub secretmem: bool,
    /// Guard pages right before and after the secret (guarded mode).
    pub guarded: bool,
    /// In a shared slab (packed mode): guard pages around the slab,
    /// canaries between secrets, access shared per page.
    pub packed: bool,
    /// A canary before it (and after, or padding up to the guard page),
    /// checked at free.
    pub canary: bool,
    /// Its access as last set.
    pub access: Access,
    /// Whether its pages enforce exactly `access` (false for a packed secret
    /// whose page a more open neighbour keeps open).
    pub access_exact: bool,
}

impl Protection {
    fn from_flags(f: u16, size: usize, access: Access) -> Protection {
        Protection {
            size,
            locked: f & LOCKED != 0,
            dontdump: f & DONTDUMP != 0,
            wipeonfork: f & WIPEONFORK != 0,
            dontfork: f & DONTFORK != 0,
            secretmem: f & SECRETMEM != 0,
            canary: true,
            access,
            access_exact: true,
            ..Protection::default()
        }
    }
}

/// Everything behind the global lock.
struct State {
    regions: Table,
    slabs: Dir,
    /// Per (secretmem, class): the slab that last had room.
    hint: [[*mut Slab; CLASSES]; 2],
}

// SAFETY: the raw pointers are mappings owned by the state itself, reached
// only under the lock.
unsafe impl Send for State {}

static STATE: Locked<State> = Locked::new(State {
    regions: Table::new(),
    slabs: Dir::new(),
    hint: [[null_mut(); CLASSES]; 2],
});

/// The process-wide lock policy (from `MEMKIT_SECURE_MLOCK` on first use,
/// `require` by default).
pub fn lock_policy() -> LockPolicy {
    policy::get()
}

/// Sets the process-wide lock policy; it wins over `MEMKIT_SECURE_MLOCK`.
pub fn set_lock_policy(p: LockPolicy) {
    policy::set(p)
}

unsafe extern "C" fn fork_prepare() {
    STATE.fork_prepare();
}

unsafe extern "C" fn fork_release() {
    STATE.fork_release();
}

/// Registers the fork handlers once, before the first secret exists (and
/// outside the lock: `pthread_atfork` may allocate).
fn register_fork_handlers() {
    use core::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if !DONE.load(Ordering::Acquire) && !DONE.swap(true, Ordering::AcqRel) {
        // SAFETY: valid handlers that only take and release our lock.
        unsafe { memkit_sys::atfork(Some(fork_prepare), Some(fork_release), Some(fork_release)) };
    }
}

/// Allocates a zeroed, read-write secret of `size` bytes.
pub fn alloc(size: usize, opts: &Options) -> Result<NonNull<u8>, Error> {
    let align = opts.align.max(canary::CANARY);
    if !align.is_power_of_two() || align > mapping::PAGE {
        return Err(Error::invalid(size, memkit_sys::protect::EINVAL));
    }
    let policy = opts.policy.unwrap_or_else(policy::get);
    register_fork_handlers();
    STATE.with(|_, _| canary::init());
    if opts.mode == Mode::Packed && align <= canary::CANARY && size <= MAX_PACKED {
        if let Some(class) = slab::class_for(size) {
            return STATE.with(|s, me| s.alloc_packed(class, size, opts.secretmem, policy, me));
        }
    }
    // Mapping and locking take the longest: outside the lock.
    let mut r = region::create(size, align, opts.secretmem, policy)?;
    r.want_packed = opts.mode == Mode::Packed;
    match STATE.with(|s, _| s.regions.insert(r)) {
        Ok(()) => Ok(NonNull::new(r.ptr as *mut u8).unwrap_or(NonNull::dangling())),
        Err(e) => {
            // SAFETY: just made, never handed out.
            unsafe { region::destroy(&r) };
            Err(e)
        }
    }
}

impl State {
    fn alloc_packed(
        &mut self,
        class: usize,
        size: usize,
        secretmem: bool,
        policy: LockPolicy,
        me: u32,
    ) -> Result<NonNull<u8>, Error> {
        let fits = |s: *mut Slab| {
            // SAFETY: hints and directory entries are live slabs.
            let s = unsafe { &*s };
            s.class as usize == class
                && s.want_secretmem == secretmem
                && s.free > 0
                && (s.locked() || policy != LockPolicy::Require)
                && !s.absent_here(me)
        };
        let hint = &mut self.hint[secretmem as usize][class];
        let mut s = *hint;
        if s.is_null() || !fits(s) {
            s = match self.slabs.as_slice().iter().copied().find(|&s| fits(s)) {
                Some(s) => s,
                None => {
                    let s = slab::create(class, secretmem, policy)?;
                    if let Err(e) = self.slabs.insert(s) {
                        // SAFETY: just made, empty, not in the directory.
                        unsafe { slab::release(s, me) };
                        return Err(e);
                    }
                    s
                }
            };
            self.hint[secretmem as usize][class] = s;
        }
        // SAFETY: a live slab with a free slot.
        let p = unsafe { (*s).alloc(size) }?;
        Ok(NonNull::new(p).unwrap_or(NonNull::dangling()))
    }

    /// The slab and slot of a packed secret.
    fn packed(&self, p: usize) -> Option<(*mut Slab, usize)> {
        let s = self.slabs.find(p)?;
        // SAFETY: a directory entry is a live slab.
        let i = unsafe { (*s).index_of(p) }?;
        Some((s, i))
    }

    /// After a free left slab `s` empty: keep one empty slab per kind, unmap
    /// the others.
    fn maybe_release(&mut self, s: *mut Slab, me: u32) {
        // SAFETY: live slabs.
        let same = |t: *mut Slab| unsafe {
            t != s
                && (*t).is_empty()
                && (*t).class == (*s).class
                && (*t).want_secretmem == (*s).want_secretmem
                && (*t).flags == (*s).flags
        };
        if self.slabs.as_slice().iter().any(|&t| same(t)) {
            self.slabs.remove(s);
            for h in self.hint.iter_mut().flatten() {
                if *h == s {
                    *h = null_mut();
                }
            }
            // SAFETY: empty and out of the directory.
            unsafe { slab::release(s, me) };
        }
    }
}

/// Frees a secret: checks its canaries (a damaged one prints a line on
/// stderr and aborts the process), wipes it, and unmaps or recycles its
/// memory. `Err(UnknownPointer)` if `p` is not a live secret.
///
/// # Safety
/// `p` must not be used after this call.
pub unsafe fn free(p: *mut u8) -> Result<(), Error> {
    enum Found {
        Region(Region),
        Done,
        Unknown,
    }
    let found = STATE.with(|s, me| {
        if let Some(r) = s.regions.remove(p as usize) {
            return Found::Region(r);
        }
        if let Some((slab, i)) = s.packed(p as usize) {
            // SAFETY: a live slab and one of its live slots.
            unsafe {
                (*slab).free_slot(i, me);
                if (*slab).is_empty() {
                    s.maybe_release(slab, me);
                }
            }
            return Found::Done;
        }
        Found::Unknown
    });
    match found {
        // SAFETY: out of the table; the caller gave it up.
        Found::Region(r) => unsafe { region::destroy(&r) },
        Found::Done => {}
        Found::Unknown => return Err(Error::unknown()),
    }
    Ok(())
}

/// Sets a secret's access (`mprotect`). A packed secret shares its page's
/// protection with its neighbours (see [`Protection::access_exact`]).
///
/// # Safety
/// No live reference into the secret may be used in a way `access` forbids.
pub unsafe fn set_access(p: *mut u8, access: Access) -> Result<(), Error> {
    STATE.with(|s, _| {
        if let Some(r) = s.regions.get(p as usize) {
            // SAFETY: a live region; the caller answers for references.
            return unsafe { region::set_access(r, access) };
        }
        match s.packed(p as usize) {
            // SAFETY: a live slab and slot.
            Some((slab, i)) => unsafe { (*slab).set_access(i, access) },
            None => Err(Error::unknown()),
        }
    })
}

/// What protection the secret at `p` has; `None` if `p` is not a live
/// secret.
pub fn protection(p: *const u8) -> Option<Protection> {
    STATE.with(|s, _| {
        if let Some(r) = s.regions.get(p as usize) {
            let mut pr = Protection::from_flags(r.flags, r.size, r.access);
            pr.guarded = true;
            return Some(pr);
        }
        let (slab, i) = s.packed(p as usize)?;
        // SAFETY: a live slab and slot.
        let slab = unsafe { &*slab };
        let mut pr = Protection::from_flags(slab.flags, slab.size(i), slab.access(i));
        pr.packed = true;
        pr.access_exact = slab.access_exact(i);
        Some(pr)
    })
}

/// The requested size of the secret at `p`.
pub fn size_of(p: *const u8) -> Option<usize> {
    protection(p).map(|pr| pr.size)
}

/// Number of live guarded secrets (for tests and statistics).
pub fn guarded_count() -> usize {
    STATE.with(|s, _| s.regions.len())
}

/// Moves a secret to a new one of `size` bytes (same mode and alignment;
/// read-write), copying the common prefix and wiping and freeing the old
/// one. On error `p` is untouched.
///
/// # Safety
/// `p` must be a live secret without live references; it must not be used
/// after success.
pub unsafe fn realloc(p: *mut u8, size: usize) -> Result<NonNull<u8>, Error> {
    let opts = STATE.with(|s, _| {
        if let Some(r) = s.regions.get(p as usize) {
            return Some((
                Options {
                    mode: if r.want_packed {
                        Mode::Packed
                    } else {
                        Mode::Guarded
                    },
                    secretmem: r.want_secretmem,
                    align: r.align as usize,
                    policy: None,
                },
                r.size,
            ));
        }
        let (slab, i) = s.packed(p as usize)?;
        // SAFETY: a live slab and slot.
        let slab = unsafe { &*slab };
        Some((
            Options {
                mode: Mode::Packed,
                secretmem: slab.want_secretmem,
                ..Options::GUARDED
            },
            slab.size(i),
        ))
    });
    let Some((opts, old)) = opts else {
        return Err(Error::unknown());
    };
    let q = alloc(size, &opts)?;
    // SAFETY: p is a live secret; opening it for reading contradicts no
    // reference (the caller holds none).
    if let Err(e) = unsafe { set_access(p, Access::ReadOnly) } {
        // SAFETY: q was just made, never handed out.
        let _ = unsafe { free(q.as_ptr()) };
        return Err(e);
    }
    // SAFETY: both are live secrets of at least the copied size; q is
    // read-write, p readable.
    unsafe {
        core::ptr::copy_nonoverlapping(p, q.as_ptr(), old.min(size));
        free(p)?;
    }
    Ok(q)
}

/// Zeroes `p..p+n` with writes the compiler cannot remove.
///
/// # Safety
/// `p..p+n` must be writable memory the caller owns.
pub unsafe fn memzero(p: *mut u8, n: usize) {
    // SAFETY: forwarded.
    unsafe { wipe::memzero(p, n) }
}

/// Zeroes a byte slice with writes the compiler cannot remove.
pub fn wipe_array(b: &mut [u8]) {
    // SAFETY: the slice is ours to write.
    unsafe { wipe::memzero(b.as_mut_ptr(), b.len()) }
}

unsafe extern "C" {
    #[link_name = "abort"]
    fn c_abort() -> !;
}

/// Aborts the process (`SIGABRT`, core dump per the system's settings).
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions and never returns.
    unsafe { c_abort() }
}
