//! The views a SIGBUS handler knows, and the handler.
//!
//! A view registers its address range in a slot. The handler reads the
//! slots with atomic loads only (no lock, no allocation): slots live in
//! chunks that are allocated when needed and never freed, published
//! through atomic pointers. Registration and release take a mutex (never
//! in the handler).
//!
//! On a `SIGBUS` with `BUS_ADRERR` (an access to a page past the end of the
//! file) inside a registered view, the handler maps a page of zeros over
//! the faulting page, marks the view (`zeroed`) and counts the fault, and
//! returns: the access runs again and reads zeros. Every other `SIGBUS` goes
//! to the action installed before ([`memkit_sys::signal::chain`]).

use std::ffi::c_void;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};

use memkit_sys::signal::{self, SigAction, SigInfo};
use memkit_sys::OS_PAGE;

/// One view's entry.
pub(super) struct Slot {
    /// First byte of the view; 0: the slot is free (or the view is being
    /// moved).
    base: AtomicUsize,
    /// Bytes mapped (whole pages).
    len: AtomicUsize,
    /// Whether zero pages must be writable (a `FileViewMut`).
    writable: AtomicBool,
    /// Faults the handler answered with a zero page.
    faults: AtomicU64,
    /// Set with each zero page, cleared when the file is mapped again.
    zeroed: AtomicBool,
}

const CHUNK: usize = 256;
const CHUNKS: usize = 256;

/// At most CHUNKS * CHUNK (65,536) views at once: as many as the default
/// `vm.max_map_count` allows mappings.
static CHUNK_PTRS: [AtomicPtr<Slot>; CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];
/// Chunks published so far (the handler looks at these only).
static CHUNKS_USED: AtomicUsize = AtomicUsize::new(0);
/// Free slot numbers, and the next never-used one.
static FREE: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

fn slot(index: usize) -> &'static Slot {
    let chunk = CHUNK_PTRS[index / CHUNK].load(SeqCst);
    debug_assert!(!chunk.is_null());
    // SAFETY: a slot number handed out by `register` lies in a published
    // chunk of CHUNK slots, never freed.
    unsafe { &*chunk.add(index % CHUNK) }
}

/// A view's place in the registry; released on drop.
#[derive(Debug)]
pub(super) struct Registration {
    index: usize,
}

impl Registration {
    /// Registers `len` bytes at `base` (the handler is installed first).
    pub(super) fn new(base: *mut u8, len: usize, writable: bool) -> io::Result<Registration> {
        install_handler()?;
        let index = {
            let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
            match free.0.pop() {
                Some(i) => i,
                None => {
                    let i = free.1;
                    if i == CHUNK * CHUNKS {
                        return Err(io::Error::other(format!(
                            "memkit::map: {i} file views are open, the most at once"
                        )));
                    }
                    if i.is_multiple_of(CHUNK) {
                        let chunk: Box<[Slot]> = (0..CHUNK)
                            .map(|_| Slot {
                                base: AtomicUsize::new(0),
                                len: AtomicUsize::new(0),
                                writable: AtomicBool::new(false),
                                faults: AtomicU64::new(0),
                                zeroed: AtomicBool::new(false),
                            })
                            .collect();
                        CHUNK_PTRS[i / CHUNK].store(Box::leak(chunk).as_mut_ptr(), SeqCst);
                        CHUNKS_USED.store(i / CHUNK + 1, SeqCst);
                    }
                    free.1 = i + 1;
                    i
                }
            }
        };
        let r = Registration { index };
        r.slot().writable.store(writable, SeqCst);
        r.set_range(base, len);
        Ok(r)
    }

    fn slot(&self) -> &'static Slot {
        slot(self.index)
    }

    /// Points the slot at a view's (new) range; `len` is rounded up to
    /// whole pages. `base` is stored last: the handler sees a whole range.
    pub(super) fn set_range(&self, base: *mut u8, len: usize) {
        let s = self.slot();
        s.base.store(0, SeqCst);
        s.len.store(len.next_multiple_of(OS_PAGE), SeqCst);
        s.base.store(base as usize, SeqCst);
    }

    /// Takes the range out of the handler's sight (before it is unmapped
    /// or moved).
    pub(super) fn clear_range(&self) {
        self.slot().base.store(0, SeqCst);
    }

    /// Faults answered so far (compare before and after a read).
    pub(super) fn faults(&self) -> u64 {
        self.slot().faults.load(SeqCst)
    }

    /// Whether zero pages cover part of the view; clears the mark (the
    /// caller maps the file again).
    pub(super) fn take_zeroed(&self) -> bool {
        self.slot().zeroed.swap(false, SeqCst)
    }

    /// Marks zero pages in the view again (mapping the file failed).
    pub(super) fn mark_zeroed(&self) {
        self.slot().zeroed.store(true, SeqCst);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clear_range();
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        free.0.push(self.index);
    }
}

/// The slot whose range holds `addr`. Atomic loads only.
fn find(addr: usize) -> Option<&'static Slot> {
    let chunks = CHUNKS_USED.load(SeqCst);
    for c in CHUNK_PTRS.iter().take(chunks) {
        let p = c.load(SeqCst);
        if p.is_null() {
            continue;
        }
        for i in 0..CHUNK {
            // SAFETY: a published chunk of CHUNK slots, never freed.
            let s = unsafe { &*p.add(i) };
            let base = s.base.load(SeqCst);
            if base != 0 && addr >= base && addr - base < s.len.load(SeqCst) {
                return Some(s);
            }
        }
    }
    None
}

/// The action in force before ours (leaked: the handler may read it at
/// any time).
static PREVIOUS: OnceLock<&'static SigAction> = OnceLock::new();

/// Installs the handler once per process. The action found is kept for
/// the faults that are not ours. A program that installs its own SIGBUS
/// handler later must chain to the one before it (ours), as handlers do,
/// or views lose their protection.
fn install_handler() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: reading the action installs nothing.
        let cur = unsafe { signal::sigaction(signal::SIGBUS, None) }.map_err(|e| e.0)?;
        // Set before the handler can run: it reads it without a check.
        let _ = PREVIOUS.set(Box::leak(Box::new(cur)));
        let ours = SigAction::with_info(on_sigbus, signal::SA_ONSTACK | signal::SA_NODEFER);
        // SAFETY: on_sigbus is async-signal-safe and static.
        unsafe { signal::sigaction(signal::SIGBUS, Some(&ours)) }.map_err(|e| e.0)?;
        Ok(())
    });
    r.map_err(io::Error::from_raw_os_error)
}

/// The SIGBUS handler. Async-signal-safe: atomic loads and stores, one
/// `mmap` system call (raw, errno untouched).
unsafe extern "C" fn on_sigbus(sig: i32, info: *mut SigInfo, ctx: *mut c_void) {
    // SAFETY: the kernel's siginfo for this signal.
    let (code, addr) = unsafe { ((*info).code, (*info).addr) };
    if code == signal::BUS_ADRERR {
        if let Some(s) = find(addr) {
            let page = (addr & !(OS_PAGE - 1)) as *mut u8;
            // SAFETY: the page lies in a registered view, which its owner
            // allows the handler to replace (see FileView::read).
            if unsafe { memkit_sys::file_map::map_zero_page(page, s.writable.load(SeqCst)) }.is_ok()
            {
                s.zeroed.store(true, SeqCst);
                s.faults.fetch_add(1, SeqCst);
                return;
            }
        }
    }
    let prev = PREVIOUS.get().copied();
    let default = SigAction::default_action();
    // SAFETY: called from the handler of `sig` with its arguments.
    unsafe { signal::chain(sig, info, ctx, prev.unwrap_or(&default)) }
}
