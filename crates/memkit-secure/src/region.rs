//! Guarded regions: one secret per mapping, between two guard pages.
//!
//! ```text
//! base          data                                   end
//! | guard page  | zeros ... | canary (16) | secret | slack | guard page |
//!   PROT_NONE     <------ data pages: locked, dontdump, wipeonfork ---->   PROT_NONE
//! ```
//!
//! The secret ends against the trailing guard (`ptr + round_up(size,
//! align) == end`): with a size that is a multiple of 16, a write one byte
//! past the end faults. The `slack` (fewer than `align` bytes, for other
//! sizes) and the 16 canary bytes before the secret hold keyed canary bytes,
//! the bytes before the canary stay zero; all are checked at free. A run
//! of such regions costs about two mappings each: the kernel places them
//! next to each other and merges touching guard pages.
//!
//! The description of a region lives in the [`crate::table`], never in
//! the region itself, so no secret-adjacent metadata can be overwritten and
//! a no-access region needs no opening to be found.

use memkit_sys::protect::Prot;

use crate::canary::{self, CANARY};
use crate::mapping::{self, Flags, DONTFORK, PAGE};
use crate::policy::LockPolicy;
use crate::{Access, Error};

/// One guarded secret.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    /// The secret's address: the table key (0 marks an empty table slot).
    pub ptr: usize,
    /// The whole mapping (guards included).
    pub base: usize,
    pub map_len: usize,
    /// Requested size and alignment.
    pub size: usize,
    pub align: u32,
    /// The process that made it (see [`canary`] on forked children).
    pub pid: u32,
    pub flags: Flags,
    pub access: Access,
    /// Whether `memfd_secret` / packed mode were asked for (kept by
    /// `realloc`; a packed request too large for a slab gets a region).
    pub want_secretmem: bool,
    pub want_packed: bool,
}

impl Region {
    pub const EMPTY: Region = Region {
        ptr: 0,
        base: 0,
        map_len: 0,
        size: 0,
        align: 0,
        pid: 0,
        flags: 0,
        access: Access::ReadWrite,
        want_secretmem: false,
        want_packed: false,
    };

    fn data(&self) -> *mut u8 {
        (self.base + PAGE) as *mut u8
    }

    fn data_len(&self) -> usize {
        self.map_len - 2 * PAGE
    }

    /// Where the data pages end (the trailing guard).
    fn end(&self) -> usize {
        self.base + self.map_len - PAGE
    }

    /// True in a forked child that never received the data pages
    /// (`memfd_secret` regions are `MADV_DONTFORK`).
    fn absent_here(&self, me: u32) -> bool {
        self.flags & DONTFORK != 0 && me != self.pid
    }
}

/// Maps a guarded region for `size` bytes aligned to `align` (a power of
/// two, 16 to 4096).
pub(crate) fn create(
    size: usize,
    align: usize,
    secretmem: bool,
    policy: LockPolicy,
) -> Result<Region, Error> {
    debug_assert!(align.is_power_of_two() && (CANARY..=PAGE).contains(&align));
    let too_big = || Error::invalid(size, memkit_sys::protect::ENOMEM);
    let rounded = size.checked_next_multiple_of(align).ok_or_else(too_big)?;
    let data_len = rounded
        .checked_add(CANARY)
        .and_then(|n| n.checked_next_multiple_of(PAGE))
        .filter(|&n| n <= isize::MAX as usize / 2)
        .ok_or_else(too_big)?;
    let map_len = data_len + 2 * PAGE;
    let base = mapping::reserve(map_len, size)?;
    let data = base.wrapping_add(PAGE);
    // SAFETY: data..data+data_len lies inside our fresh reservation.
    let flags = match unsafe { mapping::open_secret(data, data_len, secretmem, policy, size) } {
        Ok(f) => f,
        Err(e) => {
            // SAFETY: our reservation, not handed out.
            unsafe { mapping::release(base, map_len) };
            return Err(e);
        }
    };
    let r = Region {
        ptr: base as usize + PAGE + data_len - rounded,
        base: base as usize,
        map_len,
        size,
        align: align as u32,
        pid: memkit_sys::pid(),
        flags,
        access: Access::ReadWrite,
        want_secretmem: secretmem,
        want_packed: false,
    };
    // SAFETY: the canary and the slack lie in the data pages, writable now.
    unsafe {
        canary::fill((r.ptr - CANARY) as *mut u8, CANARY);
        canary::fill((r.ptr + size) as *mut u8, r.end() - r.ptr - size);
    }
    Ok(r)
}

/// Checks a region's canaries (aborting when one is damaged), wipes it and
/// unmaps it. The region must be out of the table already.
///
/// # Safety
/// `r` must be a live region, removed from the table, not used afterwards.
pub(crate) unsafe fn destroy(r: &Region) {
    let me = memkit_sys::pid();
    if r.absent_here(me) {
        // Only the guard pages exist in this child; the data range may be
        // someone else's mapping by now.
        // SAFETY: our guard pages.
        unsafe {
            mapping::release(r.base as *mut u8, PAGE);
            mapping::release(r.end() as *mut u8, PAGE);
        }
        return;
    }
    if r.access != Access::ReadWrite {
        // SAFETY: our data pages. If this fails (out of mappings), the
        // checks below would fault: unmapping discards the pages anyway.
        if unsafe { mapping::set_prot(r.data(), r.data_len(), Prot::ReadWrite) }.is_err() {
            // SAFETY: our mapping.
            unsafe { mapping::release(r.base as *mut u8, r.map_len) };
            return;
        }
    }
    let secret = r.ptr as *const u8;
    let canary_at = r.ptr - CANARY;
    let slack = r.end() - r.ptr - r.size;
    // SAFETY: all three ranges lie in our readable data pages.
    unsafe {
        let wiped_ok = || me != r.pid;
        if !canary::zeros(r.data(), canary_at - r.data() as usize) {
            canary::corrupted("the zeros before the canary of", secret, r.data());
        }
        if !canary::intact(canary_at as *const u8, CANARY, false)
            && !canary::intact(canary_at as *const u8, CANARY, wiped_ok())
        {
            canary::corrupted("the canary before", secret, canary_at as *const u8);
        }
        let tail = (r.ptr + r.size) as *const u8;
        if !canary::intact(tail, slack, false) && !canary::intact(tail, slack, wiped_ok()) {
            canary::corrupted("the padding after", secret, tail);
        }
        crate::wipe::memzero(r.data(), r.data_len());
        mapping::release(r.base as *mut u8, r.map_len);
    }
}

/// Sets the access of a region's data pages.
///
/// # Safety
/// `r` must be a live region; references into it must not be used in ways
/// the new access forbids.
pub(crate) unsafe fn set_access(r: &mut Region, a: Access) -> Result<(), Error> {
    // SAFETY: our data pages.
    unsafe { mapping::set_prot(r.data(), r.data_len(), a.prot()) }?;
    r.access = a;
    Ok(())
}
