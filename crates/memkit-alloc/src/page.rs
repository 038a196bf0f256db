//! Pages: a span of slices holding blocks of one size class.
//!
//! Invariants (owner's view, checked by `check`):
//! `used == capacity - |free|` minus blocks pending in
//! `thread_free` (those are still counted in `used` until collected);
//! `capacity <= reserved`; every block lies in `start .. start + reserved * block_size`.
//!
//! Two free lists shard the frees: `free` is what the fast path pops and
//! where the owning thread's frees are pushed; `thread_free` (atomic)
//! receives frees by other threads. The owner takes the latter into `free`
//! only when `free` runs dry (or at maintenance), so the fast paths never
//! contend and remote frees need no lock.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

pub use crate::harden::Block;
use crate::harden::{self, next_of, set_free};

/// The page was exhausted and left its bin queue; a free must re-queue it.
pub const FLAG_FULL: u8 = 1;
/// Some block of the page was handed out at an offset (aligned allocation):
/// `free` must round pointers down to the block start.
pub const FLAG_ALIGNED: u8 = 2;

/// The descriptor of no page: the header slice, a free slice (and the
/// static empty page). `free` of a pointer there must take the slow path,
/// which ignores it, instead of pushing it on a list.
pub const FLAG_NO_PAGE: u8 = 4;

/// Low bit of `thread_free`: the page is full and its owner wants to hear of
/// the next remote free (the freer clears the bit and pushes its block on
/// the owning heap's `delayed` list instead, so the owner learns of the page
/// once).
pub const TF_NOTIFY: usize = 1;
/// `thread_free` also counts its blocks in its top bits (user-space pointers
/// have 47 bits; a page holds at most 4096 blocks), so the owner learns how
/// many remote frees it collects without walking the list.
pub const TF_COUNT_SHIFT: u32 = 47;
/// One more block on `thread_free`.
pub const TF_ONE: usize = 1 << TF_COUNT_SHIFT;
/// The list-head bits of `thread_free`.
pub const TF_PTR: usize = (TF_ONE - 1) & !TF_NOTIFY;

/// What a thread freeing a block of another heap reads: copies of the
/// page's classification, written only when the page changes state, on a
/// cache line of their own. The owner's fast paths write the first line of
/// the descriptor on every call; if other threads' frees read that line too,
/// each such free pulls it away from the owner's core and the owner's next
/// call pulls it back.
#[repr(C)]
pub struct Shared {
    /// Copy of [`Page::slice_offset`].
    pub slice_offset: u32,
    /// [`FLAG_ALIGNED`] and [`FLAG_NO_PAGE`] as in [`Page::flags`].
    pub flags: u8,
    /// Copy of [`Page::bin`].
    pub bin: u8,
    pub _pad: u16,
    /// Copy of [`Page::block_size`].
    pub block_size: usize,
    /// Copy of [`Page::start`].
    pub start: *mut u8,
    /// Copy of [`Page::carved`], raised by the owner as it carves; other
    /// threads' frees check their pointer against it.
    pub carved: AtomicU32,
}

#[repr(C, align(128))]
pub struct Page {
    // First line: what the owner's fast paths read and write.
    /// The page's free blocks, one list: the owner's frees are pushed on
    /// it and `malloc` pops it, so the last freed block (whose line is
    /// likely still cached) goes out first, then the carved ones. (A second
    /// list for the owner's frees, popped first, cost a branch on which of
    /// the two was empty: a coin toss when frees land at random.)
    pub free: *mut Block,
    /// With `inv`: [`harden::BIN_DIV`] of the bin (the rotation).
    pub div_shift: u32,
    pub _spare: u32,
    pub used: u32,
    pub flags: u8,
    pub bin: u8,
    /// Span length in slices (head slice only).
    pub slice_count: u8,
    /// While the page is one of its heap's kept pages (it emptied and
    /// stayed in its bin queue instead of going back to its segment), its
    /// index in `Heap::kept` plus one; else 0.
    pub kept: u8,
    /// 0 for a span's head; for the other slices of a span, the distance back
    /// to the head descriptor, in bytes (saves a multiply on `free`).
    pub slice_offset: u32,
    pub capacity: u32,
    pub block_size: usize,
    pub start: *mut u8,
    pub reserved: u32,
    /// Bytes of the span carved into blocks so far: `capacity * block_size`
    /// (a block pointer's offset from `start` is below it).
    pub carved: u32,
    /// [`harden::BIN_DIV`] of the bin (the odd factor's inverse): `free`
    /// checks block starts with it from the line it already reads.
    pub inv: u64,
    // Second line: for other threads.
    pub shared: Shared,
    /// Bin queue links (owner only, slow paths).
    pub next: *mut Page,
    pub prev: *mut Page,
    pub thread_free: AtomicUsize,
}

// A power-of-two size turns the descriptor lookup on `free` into a shift.
const _: () = assert!(core::mem::size_of::<Page>() == 128);
const _: () = assert!(core::mem::offset_of!(Page, shared) == 64);

impl Page {
    // A template for initialisers, never shared: each use is a fresh value.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: Page = Page {
        free: null_mut(),
        div_shift: 0,
        _spare: 0,
        used: 0,
        flags: FLAG_NO_PAGE,
        bin: 0,
        slice_count: 0,
        kept: 0,
        slice_offset: 0,
        capacity: 0,
        block_size: 0,
        start: null_mut(),
        reserved: 0,
        carved: 0,
        inv: 0,
        shared: Shared {
            slice_offset: 0,
            flags: FLAG_NO_PAGE,
            bin: 0,
            _pad: 0,
            block_size: 0,
            start: null_mut(),
            carved: AtomicU32::new(0),
        },
        next: null_mut(),
        prev: null_mut(),
        thread_free: AtomicUsize::new(0),
    };

    /// Marks the page as holding blocks handed out at an offset (on both
    /// lines: `free` rounds such pointers down to their block).
    pub fn mark_aligned(&mut self) {
        self.flags |= FLAG_ALIGNED;
        self.shared.flags |= FLAG_ALIGNED;
    }

    /// Takes the remote frees (`thread_free`) into `free`. Owner only.
    /// Afterwards `used` is exact. Returns whether `free` is non-empty.
    pub fn collect(&mut self) -> bool {
        // Swap the whole list out (keeping the notify bit); its count rides
        // in the top bits, so no walk of the list (a chain of cache misses
        // on lines the freeing threads wrote).
        if self.thread_free.load(Ordering::Relaxed) & !TF_NOTIFY != 0 {
            let mut cur = self.thread_free.load(Ordering::Relaxed);
            let taken = loop {
                match self.thread_free.compare_exchange_weak(
                    cur,
                    cur & TF_NOTIFY,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(v) => break v,
                    Err(v) => cur = v,
                }
            };
            let list = (taken & TF_PTR) as *mut Block;
            self.used -= (taken >> TF_COUNT_SHIFT) as u32;
            if !self.free.is_null() {
                // Rare (a maintenance collection while `free` still has
                // blocks): the list goes in front, which needs its tail.
                let mut tail = list;
                // SAFETY: blocks on thread_free were handed out by this page
                // and freed exactly once; each link is checked before it is
                // followed.
                unsafe {
                    loop {
                        let next = next_of(tail);
                        if next.is_null() {
                            break;
                        }
                        self.check_link(tail, next, "malloc");
                        tail = next;
                    }
                    set_free(tail, self.free);
                }
            }
            self.free = list;
        }
        !self.free.is_null()
    }

    /// Carves fresh blocks from the unused tail of the span into `free`
    /// (a few KiB at a time, so untouched memory stays untouched).
    /// Returns whether any block was added.
    pub fn extend(&mut self) -> bool {
        if self.capacity >= self.reserved {
            return false;
        }
        let bs = self.block_size;
        let want = if bs >= 4096 { 1 } else { (4096 / bs) as u32 };
        let n = want.min(self.reserved - self.capacity);
        let first = self.start.wrapping_add(self.capacity as usize * bs);
        // SAFETY: blocks capacity..capacity+n lie inside the span (n is
        // bounded by reserved) and are not in use.
        unsafe {
            let mut p = first;
            for _ in 1..n {
                let q = p.add(bs);
                set_free(p as *mut Block, q as *mut Block);
                p = q;
            }
            set_free(p as *mut Block, self.free);
        }
        self.free = first as *mut Block;
        self.capacity += n;
        self.carved = self.capacity * bs as u32;
        self.shared.carved.store(self.carved, Ordering::Relaxed);
        true
    }

    /// Whether `b` may be a block of this page: in its carved part, on a
    /// block boundary. Null is not.
    #[inline(always)]
    pub fn holds(&self, b: *const u8) -> bool {
        let off = (b as usize).wrapping_sub(self.start as usize);
        harden::block_index(off, self.inv, self.div_shift) < self.capacity as usize
    }

    /// Whether `b` lies in the carved part of this page (where a block
    /// pointer can be read safely). Null does not.
    #[inline(always)]
    pub fn covers(&self, b: *const u8) -> bool {
        (b as usize).wrapping_sub(self.start as usize) < self.carved as usize
    }

    /// Stops the process unless `next`, the decoded link of `b`, is null or
    /// a block of this page.
    #[inline(always)]
    pub fn check_link(&self, b: *mut Block, next: *mut Block, call: &str) {
        if !next.is_null() && !self.holds(next as *const u8) && harden::on() {
            harden::fault(harden::Fault::BadLink, call, b as *const u8, next as usize);
        }
    }

    /// Whether `p` is the start of a block this page could have handed out.
    #[inline]
    pub fn block_start(&self, p: *mut u8) -> *mut u8 {
        let off = p as usize - self.start as usize;
        p.wrapping_sub(off % self.block_size)
    }

    /// Checks the structure (debug builds and tests). Owner only: the
    /// lists are walked (at most `capacity` steps, so a cycle is reported,
    /// not followed forever).
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        if self.block_size == 0 {
            return Ok(());
        }
        // The copy other threads read must match.
        let sh = &self.shared;
        if sh.block_size != self.block_size
            || sh.start != self.start
            || sh.bin != self.bin
            || sh.slice_offset != self.slice_offset
            || sh.flags != self.flags & (FLAG_ALIGNED | FLAG_NO_PAGE)
            || sh.carved.load(Ordering::Relaxed) != self.carved
        {
            return Err("page: the shared copy of its classification differs");
        }
        if self.capacity > self.reserved
            || self.carved as usize != self.capacity as usize * self.block_size
        {
            return Err("page: capacity above reserved, or carved != capacity * block_size");
        }
        if (self.inv, self.div_shift) != harden::BIN_DIV[self.bin as usize] {
            return Err("page: block-start magic is not its bin's");
        }
        let mut n = 0u32;
        {
            let mut b = self.free;
            while !b.is_null() {
                if !self.holds(b as *const u8) {
                    return Err(
                        "page: a listed block is outside the carved part or off a boundary",
                    );
                }
                n += 1;
                if n > self.capacity {
                    return Err("page: more listed blocks than carved (a cycle?)");
                }
                // SAFETY: checked to be a block of this page above.
                unsafe {
                    if harden::on() && !harden::is_tagged(b) {
                        return Err("page: a listed block has no free tag");
                    }
                    b = next_of(b);
                }
            }
        }
        if self.used + n != self.capacity {
            return Err("page: used + |free| != capacity");
        }
        Ok(())
    }

    /// [`Page::check_invariants`] as a bool (tests).
    pub fn check(&self) -> bool {
        self.check_invariants().is_ok()
    }
}
