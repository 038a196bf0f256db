//! The allocator over the shared structures, called with the heap's
//! `alloc` lock held (or, for [`classify`], by the holder of a block).
//!
//! Every change is ordered so that one store commits it, and whatever a
//! holder killed before that store leaves behind is either ignored or
//! rebuilt by [`crate::repair`]:
//! - a large block exists when its head entry `LARGE | units` is in the
//!   unit table (the unit bitmap is set before it and cleared after it is
//!   removed; the bitmap is derived);
//! - a span exists when its head entry `SLAB | class` is in the table
//!   (its header is written before);
//! - a block of a span is allocated when its bit is set;
//! - span counts, class lists and hints are derived from those.
//!
//! Allocation is split into [`choose`] and [`commit`] so that a caller
//! can record what it is about to allocate (the cache refill, the named
//! directory) before it becomes allocated: a repair then frees it.

use crate::crash;
use crate::layout::*;
use crate::view::View;

/// A block about to be allocated.
#[derive(Clone, Copy, Debug)]
pub enum Choice {
    /// Block `bit` of span `span`.
    Small { span: u32, bit: u32 },
    /// `len` units from unit `unit`.
    Run { unit: u32, len: u32 },
}

/// What an offset inside the data area is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    Small { span: u32, class: u32, bit: u32 },
    Large { unit: u32, len: u32 },
}

impl View {
    /// The offset a choice will have.
    #[inline(always)]
    pub fn choice_offset(&self, c: Choice) -> u64 {
        match c {
            Choice::Small { span, bit } => {
                // SAFETY: a chosen span is a live span.
                let class = unsafe { (*self.span(span)).class } as usize;
                self.block_offset(span, class, bit)
            }
            Choice::Run { unit, .. } => self.unit_off(unit as usize),
        }
    }

    #[inline(always)]
    pub fn block_offset(&self, span: u32, class: usize, bit: u32) -> u64 {
        self.unit_off(span as usize * SPAN_UNITS)
            + (SPAN_HEADER + bit as usize * class_size(class)) as u64
    }

    /// Which block `off` is the start of, if any: a live span's block
    /// start (allocated or not: see the bit) or a large block's start.
    /// Reads the table without the lock: exact for blocks the caller
    /// holds (their run cannot change under them); for other offsets a
    /// best effort that the locked paths check again.
    #[inline(always)]
    pub fn classify(&self, off: u64) -> Option<Block> {
        let rel = off.checked_sub(self.g.data_start)? as usize;
        let unit = rel / UNIT;
        if unit as u64 >= self.g.units {
            return None;
        }
        // SAFETY: unit < units.
        let e = unsafe { self.entry(unit).read_volatile() };
        if e & LARGE != 0 {
            return (rel % UNIT == 0).then_some(Block::Large {
                unit: unit as u32,
                len: e & !KIND_MASK,
            });
        }
        let span = (unit / SPAN_UNITS) as u32;
        // SAFETY: the span's first unit is a unit of the table.
        let e = unsafe { self.entry(span as usize * SPAN_UNITS).read_volatile() };
        if e & KIND_MASK != SLAB {
            return None;
        }
        let class = (e & !KIND_MASK) as usize;
        if class >= NCLASSES {
            return None;
        }
        let inside = (rel % SPAN).checked_sub(SPAN_HEADER)?;
        let bs = class_size(class);
        let bit = inside / bs;
        if inside % bs != 0 || bit >= blocks_per_span(class) {
            return None;
        }
        Some(Block::Small {
            span,
            class: class as u32,
            bit: bit as u32,
        })
    }

    /// Whether block `bit` of `span` is set.
    #[inline(always)]
    pub fn bit_set(&self, span: u32, bit: u32) -> bool {
        // SAFETY: a live span (classified).
        let w = unsafe { (*self.span(span)).bits[bit as usize / 64] };
        w & (1 << (bit % 64)) != 0
    }

    // -------------------------------------------------------------------
    // Choosing and committing (alloc lock held)
    // -------------------------------------------------------------------

    /// A block for `size` bytes, not yet allocated; None when the heap has
    /// no room. May create an empty span (a consistent state on its own).
    pub fn choose(&self, size: usize) -> Option<Choice> {
        if size <= MAX_SMALL {
            self.choose_small(class_of(size))
        } else {
            let len = size.div_ceil(UNIT);
            let unit = self.find_run(len)?;
            Some(Choice::Run {
                unit: unit as u32,
                len: len as u32,
            })
        }
    }

    pub fn choose_small(&self, class: usize) -> Option<Choice> {
        // SAFETY: the lock is held: the header's lists are ours to read.
        let mut span = unsafe { (*self.header()).class_head[class] };
        if span == NONE {
            span = self.new_span(class)?;
        }
        // SAFETY: a listed span is a live span with a free block.
        let s = unsafe { &mut *self.span(span) };
        let words = blocks_per_span(class).div_ceil(64);
        let mut w = s.hint as usize;
        while w < words && s.bits[w] == !0 {
            w += 1;
        }
        if w >= words {
            // Its count was wrong (only after a corruption): take it off
            // the list and try again.
            s.used = s.nblocks;
            self.unlist(span);
            return self.choose_small(class);
        }
        s.hint = w as u32;
        let bit = w * 64 + (!s.bits[w]).trailing_zeros() as usize;
        Some(Choice::Small {
            span,
            bit: bit as u32,
        })
    }

    /// Makes a chosen block allocated: its commit store, then the derived
    /// state.
    pub fn commit(&self, c: Choice) {
        match c {
            Choice::Small { span, bit } => {
                // SAFETY: a chosen span is live; the lock is held.
                let s = unsafe { &mut *self.span(span) };
                s.bits[bit as usize / 64] |= 1 << (bit % 64);
                crash::point();
                s.used += 1;
                if s.used >= s.nblocks {
                    self.unlist(span);
                }
            }
            Choice::Run { unit, len } => {
                self.mark_units(unit as usize, len as usize, true);
                crash::point();
                // SAFETY: unit < units; the commit store.
                unsafe { self.entry(unit as usize).write_volatile(LARGE | len) };
                crash::point();
            }
        }
    }

    /// `choose` + `commit`: the offset of a new block, or None.
    pub fn alloc_locked(&self, size: usize) -> Option<u64> {
        let c = self.choose(size)?;
        self.commit(c);
        Some(self.choice_offset(c))
    }

    /// Frees the block starting at `off`, if it is an allocated one
    /// (anything else is ignored: idempotent). Returns whether it freed.
    pub fn free_locked(&self, off: u64) -> bool {
        match self.classify(off) {
            Some(Block::Small { span, bit, .. }) => self.free_bit(span, bit),
            Some(Block::Large { unit, len }) => {
                // SAFETY: unit < units; the commit store.
                unsafe { self.entry(unit as usize).write_volatile(0) };
                crash::point();
                self.mark_units(unit as usize, len as usize, false);
                let h = self.header();
                // SAFETY: the lock is held.
                unsafe { (*h).cursor = (*h).cursor.min(unit) };
                true
            }
            None => false,
        }
    }

    pub fn free_bit(&self, span: u32, bit: u32) -> bool {
        // SAFETY: a live span; the lock is held.
        let s = unsafe { &mut *self.span(span) };
        let w = bit as usize / 64;
        let m = 1u64 << (bit % 64);
        if s.bits[w] & m == 0 {
            return false;
        }
        s.bits[w] &= !m;
        crash::point();
        s.used = s.used.saturating_sub(1);
        s.hint = s.hint.min(w as u32);
        if s.listed == 0 {
            self.list(span);
        }
        // SAFETY: the lock is held.
        let head = unsafe { (*self.header()).class_head[s.class as usize] };
        if s.used == 0 && head != span {
            self.release_span(span);
        }
        true
    }

    // -------------------------------------------------------------------
    // Spans
    // -------------------------------------------------------------------

    /// A new empty span of `class`, listed first; None when no 64 KiB is
    /// free.
    fn new_span(&self, class: usize) -> Option<u32> {
        let span = self.find_span_room()?;
        // SAFETY: the span's units are free: nobody else uses its memory.
        let s = unsafe { &mut *self.span(span) };
        init_span(s, class);
        self.mark_units(span as usize * SPAN_UNITS, SPAN_UNITS, true);
        crash::point();
        // SAFETY: the commit store (the header above is written first).
        unsafe {
            self.entry(span as usize * SPAN_UNITS)
                .write_volatile(SLAB | class as u32)
        };
        crash::point();
        self.list(span);
        Some(span)
    }

    /// Gives an empty span's units back.
    pub fn release_span(&self, span: u32) {
        // SAFETY: a live span; the lock is held.
        if unsafe { (*self.span(span)).listed } != 0 {
            self.unlist(span);
        }
        let u = span as usize * SPAN_UNITS;
        crash::point();
        // SAFETY: u < units; the commit store.
        unsafe { self.entry(u).write_volatile(0) };
        crash::point();
        self.mark_units(u, SPAN_UNITS, false);
        let h = self.header();
        // SAFETY: the lock is held.
        unsafe { (*h).cursor = (*h).cursor.min(u as u32) };
    }

    /// Puts `span` first in its class list.
    pub fn list(&self, span: u32) {
        let h = self.header();
        // SAFETY: the lock is held; `span` is live and not listed.
        unsafe {
            let s = &mut *self.span(span);
            let head = &mut (*h).class_head[s.class as usize];
            s.prev = NONE;
            s.next = *head;
            if *head != NONE {
                (*self.span(*head)).prev = span;
            }
            crash::point();
            *head = span;
            s.listed = 1;
        }
    }

    pub fn unlist(&self, span: u32) {
        let h = self.header();
        // SAFETY: the lock is held; `span` is live and listed.
        unsafe {
            let s = &mut *self.span(span);
            if s.prev != NONE {
                (*self.span(s.prev)).next = s.next;
            } else {
                (*h).class_head[s.class as usize] = s.next;
            }
            crash::point();
            if s.next != NONE {
                (*self.span(s.next)).prev = s.prev;
            }
            s.prev = NONE;
            s.next = NONE;
            s.listed = 0;
        }
    }

    /// Gives back every empty span (each list may keep some: the head,
    /// and heads that a span listed later pushed down), for a request
    /// that found no room.
    pub fn release_empty_spans(&self) -> bool {
        let mut any = false;
        for class in 0..NCLASSES {
            // SAFETY: the lock is held; listed spans are live, and the
            // walk is bounded by the number of spans.
            let mut s = unsafe { (*self.header()).class_head[class] };
            let mut steps = 0;
            while s != NONE && steps <= self.spans() {
                steps += 1;
                // SAFETY: as above.
                let (next, used) = unsafe { ((*self.span(s)).next, (*self.span(s)).used) };
                if used == 0 {
                    self.release_span(s);
                    any = true;
                }
                s = next;
            }
        }
        any
    }

    // -------------------------------------------------------------------
    // Runs of units
    // -------------------------------------------------------------------

    fn unit_used(&self, u: usize) -> bool {
        // SAFETY: u < units.
        unsafe { *self.bitmap(u / 64) & (1 << (u % 64)) != 0 }
    }

    /// Sets or clears units `u .. u + n` in the bitmap.
    pub fn mark_units(&self, mut u: usize, n: usize, used: bool) {
        let end = u + n;
        while u < end {
            let w = u / 64;
            let lo = u % 64;
            let hi = (end - w * 64).min(64);
            let m = if hi - lo == 64 {
                !0
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            // SAFETY: w covers a unit < units.
            unsafe {
                let p = self.bitmap(w);
                *p = if used { *p | m } else { *p & !m };
            }
            u = w * 64 + hi;
        }
    }

    /// The first span-aligned group of 16 free units.
    fn find_span_room(&self) -> Option<u32> {
        let spans = self.spans() as usize;
        for w in 0..self.bitmap_words() {
            // SAFETY: w < words.
            let bits = unsafe { *self.bitmap(w) };
            if bits == !0 {
                continue;
            }
            for q in 0..4 {
                let span = w * 4 + q;
                if span >= spans {
                    return None;
                }
                if (bits >> (16 * q)) & 0xffff == 0 {
                    return Some(span as u32);
                }
            }
        }
        None
    }

    /// The first run of `n` free units at or after the cursor, else from
    /// the start (next fit).
    fn find_run(&self, n: usize) -> Option<usize> {
        let units = self.g.units as usize;
        if n == 0 || n > units {
            return None;
        }
        // SAFETY: the lock is held.
        let cursor = (unsafe { (*self.header()).cursor } as usize).min(units);
        let found = self
            .find_run_from(cursor, units, n)
            .or_else(|| self.find_run_from(0, units.min(cursor + n), n))?;
        // SAFETY: the lock is held.
        unsafe { (*self.header()).cursor = (found + n) as u32 };
        Some(found)
    }

    fn find_run_from(&self, from: usize, end: usize, n: usize) -> Option<usize> {
        let mut start = from;
        let mut u = from;
        while u < end {
            if u - start >= n {
                return Some(start);
            }
            if u % 64 == 0 && u + 64 <= end {
                // SAFETY: u / 64 < words.
                let w = unsafe { *self.bitmap(u / 64) };
                if w == 0 {
                    u += 64;
                    continue;
                }
                if w == !0 {
                    u += 64;
                    start = u;
                    continue;
                }
            }
            if self.unit_used(u) {
                start = u + 1;
            }
            u += 1;
        }
        (end - start >= n).then_some(start)
    }
}

/// Writes a fresh header for a span of `class`: no block allocated, the
/// bits past the last block set.
pub fn init_span(s: &mut Span, class: usize) {
    let n = blocks_per_span(class);
    s.magic = SPAN_MAGIC;
    s.class = class as u32;
    s.nblocks = n as u32;
    s.used = 0;
    s.prev = NONE;
    s.next = NONE;
    s.listed = 0;
    s.hint = 0;
    s.bits = [0; 64];
    for (w, word) in s.bits.iter_mut().enumerate() {
        let first = w * 64;
        if first >= n {
            *word = !0;
        } else if first + 64 > n {
            *word = !0 << (n - first);
        }
    }
}

/// Bits set past the last block of a span of `class`.
pub fn tail_bits(class: usize) -> u32 {
    (64 * 64 - blocks_per_span(class)) as u32
}
