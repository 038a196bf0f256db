//! Packed slabs: many small secrets in one locked mapping.
//!
//! ```text
//! | meta (2 pages) | guard | data page 0 | ... | data page 15 | guard |
//!   RW, unlocked            locked, dontdump, wipeonfork
//! data page: | c | slot | c | slot | ... | c | slot | c (tail) | unused |
//! ```
//!
//! Each data page holds `spp` slots of one size class; a slot is a 16-byte
//! canary followed by the secret's class-sized area (16-aligned). Every
//! canary is written when the slab is made, so the canary after a slot (the
//! next slot's, or the page's tail canary) is always checkable; the part of
//! the area past the requested size ("slack") is filled at allocation. Free
//! checks the canary before, the slack and the canary after, then wipes the
//! area. Slots never straddle pages, so each secret lies on one page.
//!
//! Access toggling works per page: a page is read-write while any live
//! secret on it is read-write, read-only while any is read-only, and
//! no-access only when all of its live secrets are. Packed secrets thus share
//! their neighbours' access; guarded regions give exact per-secret access.
//!
//! A 32-byte secret takes a 48-byte slot: 100,000 of them lock about 4.7 MiB
//! in ~74 slabs (~300 mappings), where guarded regions would need 400 MiB
//! locked and 200,000 mappings.

use memkit_sys::protect::Prot;

use crate::canary::{self, CANARY};
use crate::mapping::{self, Flags, DONTFORK, LOCKED, PAGE};
use crate::policy::LockPolicy;
use crate::{Access, Error};

/// Data pages per slab (64 KiB locked).
pub(crate) const DATA_PAGES: usize = 16;
const META_PAGES: usize = 2;
const MAP_PAGES: usize = META_PAGES + 1 + DATA_PAGES + 1;

/// Slot sizes (canary included), chosen to fill a page minus its tail canary.
const SLOTS: [u16; 18] = [
    32, 48, 64, 80, 96, 128, 160, 208, 256, 336, 400, 448, 576, 672, 816, 1008, 1360, 2032,
];
/// Number of size classes.
pub(crate) const CLASSES: usize = SLOTS.len();
/// The largest secret packed mode places in a slab; larger ones get a
/// guarded region.
pub(crate) const MAX_PACKED: usize = 2032 - CANARY;
const MAX_SLOTS: usize = DATA_PAGES * ((PAGE - CANARY) / 32);

// Per-slot word: size, access, allocated.
const SIZE_MASK: u16 = 0x0fff;
const ACCESS_SHIFT: u16 = 12;
const ALLOCATED: u16 = 1 << 15;

/// The size class for a secret of `size` bytes, if it is packable.
pub(crate) fn class_for(size: usize) -> Option<usize> {
    SLOTS.iter().position(|&s| size + CANARY <= s as usize)
}

/// A slab's metadata, at the start of its mapping. Invariants (per page p):
/// `live[p] == rw[p] + ro[p] + (no-access secrets on p)`,
/// `free == nslots - (sum of live)`, and `prot[p]` is the page's protection.
#[repr(C)]
pub(crate) struct Slab {
    pub class: u8,
    /// Whether `memfd_secret` was asked for (the allocation key, whether or
    /// not it took effect).
    pub want_secretmem: bool,
    pub flags: Flags,
    slot: u32,
    spp: u32,
    nslots: u32,
    pub free: u32,
    /// The process that made it (see `canary` on forked children).
    pub pid: u32,
    free_bits: [u64; MAX_SLOTS.div_ceil(64)],
    live: [u16; DATA_PAGES],
    rw: [u16; DATA_PAGES],
    ro: [u16; DATA_PAGES],
    prot: [Access; DATA_PAGES],
    info: [u16; MAX_SLOTS],
}

const _: () = assert!(core::mem::size_of::<Slab>() <= META_PAGES * PAGE);
const _: () = assert!(SLOTS[0] as usize == 32 && MAX_SLOTS == 2032);

impl Slab {
    fn base(&self) -> usize {
        self as *const Slab as usize
    }

    fn data(&self) -> usize {
        self.base() + (META_PAGES + 1) * PAGE
    }

    /// Whether `addr` lies in this slab's mapping.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base() && addr < self.base() + MAP_PAGES * PAGE
    }

    fn page_addr(&self, page: usize) -> *mut u8 {
        (self.data() + page * PAGE) as *mut u8
    }

    /// Start of slot `i` (its canary).
    fn slot_addr(&self, i: usize) -> usize {
        let spp = self.spp as usize;
        self.data() + (i / spp) * PAGE + (i % spp) * self.slot as usize
    }

    /// The secret's address in slot `i`.
    pub fn ptr(&self, i: usize) -> *mut u8 {
        (self.slot_addr(i) + CANARY) as *mut u8
    }

    /// Bytes a secret of this class may use.
    pub fn class_size(&self) -> usize {
        self.slot as usize - CANARY
    }

    pub fn size(&self, i: usize) -> usize {
        (self.info[i] & SIZE_MASK) as usize
    }

    pub fn access(&self, i: usize) -> Access {
        Access::from_u8((self.info[i] >> ACCESS_SHIFT) as u8 & 3)
    }

    pub fn is_empty(&self) -> bool {
        self.free == self.nslots
    }

    pub fn locked(&self) -> bool {
        self.flags & LOCKED != 0
    }

    /// True in a forked child that never received the data pages.
    pub fn absent_here(&self, me: u32) -> bool {
        self.flags & DONTFORK != 0 && me != self.pid
    }

    /// The live slot whose secret starts at `p`.
    pub fn index_of(&self, p: usize) -> Option<usize> {
        let off = p.checked_sub(self.data())?;
        let (page, within) = (off / PAGE, off % PAGE);
        if page >= DATA_PAGES
            || within < CANARY
            || !(within - CANARY).is_multiple_of(self.slot as usize)
        {
            return None;
        }
        let j = (within - CANARY) / self.slot as usize;
        if j >= self.spp as usize {
            return None;
        }
        let i = page * self.spp as usize + j;
        (self.info[i] & ALLOCATED != 0).then_some(i)
    }

    /// The protection page `p` needs for its live secrets.
    fn wanted(&self, p: usize) -> Access {
        if self.rw[p] > 0 {
            Access::ReadWrite
        } else if self.ro[p] > 0 {
            Access::ReadOnly
        } else if self.live[p] > 0 {
            Access::NoAccess
        } else {
            self.prot[p]
        }
    }

    fn count(&mut self, page: usize, a: Access, delta: i16) {
        let c = match a {
            Access::ReadWrite => &mut self.rw[page],
            Access::ReadOnly => &mut self.ro[page],
            Access::NoAccess => return,
        };
        *c = c.wrapping_add_signed(delta);
    }

    fn set_page(&mut self, p: usize, a: Access) -> Result<(), Error> {
        if self.prot[p] != a {
            // SAFETY: one of our data pages.
            unsafe { mapping::set_prot(self.page_addr(p), PAGE, a.prot()) }?;
            self.prot[p] = a;
        }
        Ok(())
    }
}

/// Maps a slab for size class `class`.
pub(crate) fn create(
    class: usize,
    secretmem: bool,
    policy: LockPolicy,
) -> Result<*mut Slab, Error> {
    let slot = SLOTS[class] as usize;
    let base = mapping::reserve(MAP_PAGES * PAGE, slot - CANARY)?;
    let data = base.wrapping_add((META_PAGES + 1) * PAGE);
    let opened = (|| {
        // SAFETY: the meta pages lie in our fresh reservation.
        unsafe { mapping::set_prot(base, META_PAGES * PAGE, Prot::ReadWrite) }?;
        // SAFETY: the data pages lie in our fresh reservation.
        unsafe { mapping::open_secret(data, DATA_PAGES * PAGE, secretmem, policy, slot - CANARY) }
    })();
    let flags = match opened {
        Ok(f) => f,
        Err(e) => {
            // SAFETY: our reservation, not handed out.
            unsafe { mapping::release(base, MAP_PAGES * PAGE) };
            return Err(e);
        }
    };
    let spp = (PAGE - CANARY) / slot;
    let s = base.cast::<Slab>();
    // SAFETY: the meta pages are ours, writable and zero (all-zero is a
    // valid Slab except the fields set here: Access::ReadWrite is 0).
    unsafe {
        (*s).class = class as u8;
        (*s).want_secretmem = secretmem;
        (*s).flags = flags;
        (*s).slot = slot as u32;
        (*s).spp = spp as u32;
        (*s).nslots = (spp * DATA_PAGES) as u32;
        (*s).free = (*s).nslots;
        (*s).pid = memkit_sys::pid();
        for i in 0..(*s).nslots as usize {
            (*s).free_bits[i / 64] |= 1 << (i % 64);
        }
        for p in 0..DATA_PAGES {
            let page = (*s).page_addr(p);
            // Every slot's canary, and the tail canary after the last slot.
            for j in 0..=spp {
                canary::fill(page.add(j * slot), CANARY);
            }
        }
    }
    Ok(s)
}

impl Slab {
    /// Takes a free slot for a secret of `size` bytes (read-write, zeroed).
    /// The slab must have a free slot.
    pub fn alloc(&mut self, size: usize) -> Result<*mut u8, Error> {
        debug_assert!(self.free > 0 && size <= self.class_size());
        let w = self.free_bits.iter().position(|&b| b != 0).unwrap_or(0);
        let i = w * 64 + self.free_bits[w].trailing_zeros() as usize;
        let page = i / self.spp as usize;
        self.set_page(page, Access::ReadWrite)?;
        self.free_bits[w] &= !(1 << (i % 64));
        self.free -= 1;
        self.info[i] = ALLOCATED | size as u16;
        self.live[page] += 1;
        self.count(page, Access::ReadWrite, 1);
        let p = self.ptr(i);
        // SAFETY: the slack lies in slot i, on a page we just made writable.
        unsafe { canary::fill(p.add(size), self.class_size() - size) };
        Ok(p)
    }

    /// Checks slot `i`'s canaries (aborting when damaged), wipes it and
    /// frees it.
    pub fn free_slot(&mut self, i: usize, me: u32) {
        let page = i / self.spp as usize;
        let a = self.access(i);
        if !self.absent_here(me) {
            if self.set_page(page, Access::ReadWrite).is_err() {
                // Out of mappings: the secret can be neither checked nor
                // wiped. Fail closed rather than leave it readable.
                canary::corrupted(
                    "(mprotect failed: cannot wipe) the page of",
                    self.ptr(i),
                    self.ptr(i),
                );
            }
            let p = self.ptr(i);
            let (size, class) = (self.size(i), self.class_size());
            let wiped_ok = || me != self.pid;
            // SAFETY: slot i and the canary after it lie on this page, which
            // is readable and writable now.
            unsafe {
                let before = p.sub(CANARY);
                if !canary::intact(before, CANARY, false)
                    && !canary::intact(before, CANARY, wiped_ok())
                {
                    canary::corrupted("the canary before", p, before);
                }
                let after = p.add(size);
                let n = class - size + CANARY;
                if !canary::intact(after, n, false) && !canary::intact(after, n, wiped_ok()) {
                    canary::corrupted("the canary after", p, after);
                }
                crate::wipe::memzero(p, class);
            }
        }
        self.info[i] = 0;
        self.free_bits[i / 64] |= 1 << (i % 64);
        self.free += 1;
        self.live[page] -= 1;
        self.count(page, a, -1);
        if !self.absent_here(me) {
            let w = self.wanted(page);
            // Best effort: if this fails the page stays more open than needed.
            let _ = self.set_page(page, w);
        }
    }

    /// Sets slot `i`'s access; its page follows its most open secret.
    pub fn set_access(&mut self, i: usize, a: Access) -> Result<(), Error> {
        let page = i / self.spp as usize;
        let old = self.access(i);
        self.count(page, old, -1);
        self.count(page, a, 1);
        self.info[i] = (self.info[i] & !(3 << ACCESS_SHIFT)) | ((a as u16) << ACCESS_SHIFT);
        let w = self.wanted(page);
        let r = self.set_page(page, w);
        if r.is_err() {
            self.count(page, a, -1);
            self.count(page, old, 1);
            self.info[i] = (self.info[i] & !(3 << ACCESS_SHIFT)) | ((old as u16) << ACCESS_SHIFT);
        }
        r
    }

    /// Whether the page of slot `i` is really inaccessible / read-only as
    /// its access says (false when a neighbour keeps it more open).
    pub fn access_exact(&self, i: usize) -> bool {
        self.prot[i / self.spp as usize] == self.access(i)
    }
}

/// Unmaps an empty slab (its slots are wiped already).
///
/// # Safety
/// `s` must be an empty slab out of the directory, not used afterwards.
pub(crate) unsafe fn release(s: *mut Slab, me: u32) {
    // SAFETY: the caller's slab.
    unsafe {
        debug_assert!((*s).is_empty());
        let base = s.cast::<u8>();
        if (*s).absent_here(me) {
            // Only the meta and guard pages exist in this forked child.
            mapping::release(base, (META_PAGES + 1) * PAGE);
            mapping::release(base.add((MAP_PAGES - 1) * PAGE), PAGE);
        } else {
            mapping::release(base, MAP_PAGES * PAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_fill_pages_and_keep_16_byte_alignment() {
        for &s in &SLOTS {
            let s = s as usize;
            assert_eq!(s % 16, 0);
            let spp = (PAGE - CANARY) / s;
            assert!(spp >= 2 && spp * s + CANARY <= PAGE, "slot {s}");
        }
        assert_eq!(class_for(0), Some(0));
        assert_eq!(class_for(16), Some(0));
        assert_eq!(SLOTS[class_for(32).unwrap()], 48);
        assert_eq!(class_for(MAX_PACKED).map(|c| SLOTS[c]), Some(2032));
        assert_eq!(class_for(MAX_PACKED + 1), None);
    }
}
