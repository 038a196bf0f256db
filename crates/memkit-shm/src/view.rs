//! A process's view of a mapped heap: the base address and the geometry,
//! and typed access to each region by offset.

use crate::layout::*;

/// The mapping of one heap in this process. Copyable: it owns nothing
/// (the handle unmaps).
#[derive(Clone, Copy)]
pub struct View {
    pub base: *mut u8,
    pub g: Geometry,
}

impl View {
    #[inline(always)]
    pub fn header(&self) -> *mut Header {
        self.base.cast()
    }

    /// The table entry of unit `u` (`u < units`).
    #[inline(always)]
    pub fn entry(&self, u: usize) -> *mut u32 {
        debug_assert!((u as u64) < self.g.units);
        // SAFETY: the table holds `units` entries inside the mapping.
        unsafe {
            self.base
                .add(self.g.table_off as usize)
                .cast::<u32>()
                .add(u)
        }
    }

    /// Word `w` of the unit bitmap.
    #[inline(always)]
    pub fn bitmap(&self, w: usize) -> *mut u64 {
        // SAFETY: the bitmap holds `ceil(units / 64)` words inside the mapping.
        unsafe {
            self.base
                .add(self.g.bitmap_off as usize)
                .cast::<u64>()
                .add(w)
        }
    }

    pub fn bitmap_words(&self) -> usize {
        self.g.units.div_ceil(64) as usize
    }

    /// The offset of unit `u`.
    #[inline(always)]
    pub fn unit_off(&self, u: usize) -> u64 {
        self.g.data_start + (u * UNIT) as u64
    }

    /// The span header of span `s` (units `16 s .. 16 s + 16`).
    #[inline(always)]
    pub fn span(&self, s: u32) -> *mut Span {
        // SAFETY: span indices come from the table, inside the data area.
        unsafe {
            self.base
                .add(self.unit_off(s as usize * SPAN_UNITS) as usize)
                .cast()
        }
    }

    pub fn spans(&self) -> u32 {
        (self.g.units / SPAN_UNITS as u64) as u32
    }

    /// Slot `i` (`i < slots`).
    #[inline(always)]
    pub fn slot(&self, i: u32) -> *mut Slot {
        // SAFETY: `slots` slots inside the mapping.
        unsafe {
            self.base
                .add(self.g.slots_off as usize)
                .cast::<Slot>()
                .add(i as usize)
        }
    }

    /// Directory entry `i` (`i < NAMED_MAX`).
    pub fn named(&self, i: usize) -> *mut Named {
        // SAFETY: NAMED_MAX entries inside the mapping.
        unsafe {
            self.base
                .add(self.g.named_off as usize)
                .cast::<Named>()
                .add(i)
        }
    }

    /// The address of `off` (in range: the caller checked).
    #[inline(always)]
    pub fn at(&self, off: u64) -> *mut u8 {
        // SAFETY: the caller checked `off < size`.
        unsafe { self.base.add(off as usize) }
    }

    /// The offset of `p` if it lies in the data area.
    #[inline(always)]
    pub fn data_offset(&self, p: *const u8) -> Option<u64> {
        let off = (p as usize).wrapping_sub(self.base as usize) as u64;
        (off >= self.g.data_start && off < self.g.size).then_some(off)
    }
}
