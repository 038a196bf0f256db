//! Consistency: [`View::check`] verifies every structure (the C API's
//! `memkit_shm_check`), and [`View::rebuild`] rebuilds everything derived
//! from the truth (the unit table's heads and the spans' bits) after a
//! holder of the `alloc` lock died in the middle of an operation.

use crate::alloc::{init_span, tail_bits, Block};
use crate::layout::*;
use crate::view::View;

/// The first inconsistency found, and how many there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problems {
    pub count: u32,
    /// What the first one is.
    pub first: &'static str,
    /// The offset (or index) it concerns.
    pub at: u64,
}

struct Found(Option<Problems>);

impl Found {
    fn add(&mut self, what: &'static str, at: u64) {
        match &mut self.0 {
            Some(p) => p.count += 1,
            None => {
                self.0 = Some(Problems {
                    count: 1,
                    first: what,
                    at,
                })
            }
        }
    }
}

/// A span head's header is what its table entry says.
fn span_header_ok(v: &View, span: u32, class: usize) -> bool {
    // SAFETY: the span's units lie in the data area.
    let s = unsafe { &*v.span(span) };
    s.magic == SPAN_MAGIC && s.class as usize == class && class < NCLASSES
}

fn popcount_used(s: &Span) -> u32 {
    let ones: u32 = s.bits.iter().map(|w| w.count_ones()).sum();
    ones.saturating_sub(tail_bits(s.class as usize))
}

/// Whether the tail bits past the last block are set.
fn tail_ok(s: &Span) -> bool {
    let mut t = Span {
        magic: 0,
        class: 0,
        nblocks: 0,
        used: 0,
        prev: 0,
        next: 0,
        listed: 0,
        hint: 0,
        bits: [0; 64],
    };
    init_span(&mut t, s.class as usize);
    s.bits
        .iter()
        .zip(t.bits.iter())
        .all(|(a, tail)| a & tail == *tail)
}

impl View {
    /// Calls `f(unit, entry)` for every run head of the table, in order,
    /// and returns the first malformed head (its unit) if any.
    fn walk_heads(&self, mut f: impl FnMut(usize, u32)) -> Option<usize> {
        let units = self.g.units as usize;
        let mut u = 0;
        while u < units {
            // SAFETY: u < units.
            let e = unsafe { self.entry(u).read_volatile() };
            let len = if e & LARGE != 0 {
                (e & !KIND_MASK) as usize
            } else if e & SLAB != 0 {
                if u % SPAN_UNITS != 0
                    || !span_header_ok(self, (u / SPAN_UNITS) as u32, (e & !KIND_MASK) as usize)
                {
                    return Some(u);
                }
                SPAN_UNITS
            } else if e != 0 {
                return Some(u);
            } else {
                u += 1;
                continue;
            };
            if len == 0 || u + len > units {
                return Some(u);
            }
            f(u, e);
            u += len;
        }
        None
    }

    /// Rebuilds the derived state from the truth, clearing table entries
    /// that head nothing valid (alloc lock held, after a holder died).
    pub fn rebuild(&self) {
        // Malformed heads cannot come from a killed holder (each head is
        // one store, written after what it heads); clear them anyway, so
        // that the heap stays usable after a stray write.
        while let Some(u) = self.walk_heads(|_, _| {}) {
            // SAFETY: u < units.
            unsafe { self.entry(u).write_volatile(0) };
        }
        for w in 0..self.bitmap_words() {
            // SAFETY: w < words.
            unsafe { *self.bitmap(w) = 0 };
        }
        let h = self.header();
        // SAFETY: the lock is held.
        unsafe {
            (*h).class_head = [NONE; NCLASSES];
            (*h).cursor = 0;
        }
        self.walk_heads(|u, e| {
            if e & LARGE != 0 {
                self.mark_units(u, (e & !KIND_MASK) as usize, true);
                return;
            }
            self.mark_units(u, SPAN_UNITS, true);
            let span = (u / SPAN_UNITS) as u32;
            // SAFETY: a valid span head (walk_heads checked it).
            let s = unsafe { &mut *self.span(span) };
            let class = s.class as usize;
            s.nblocks = blocks_per_span(class) as u32;
            if !tail_ok(s) {
                let mut t = Span {
                    bits: [0; 64],
                    ..*s
                };
                init_span(&mut t, class);
                for (a, b) in s.bits.iter_mut().zip(t.bits.iter()) {
                    *a |= *b;
                }
            }
            s.used = popcount_used(s);
            s.hint = 0;
            s.listed = 0;
            s.prev = NONE;
            s.next = NONE;
            if s.used < s.nblocks {
                self.list(span);
            }
        });
    }

    /// Checks every structure the heap's correctness depends on; the
    /// caller holds the alloc lock (or, for a read-only view, accepts that
    /// a concurrent writer can make it report a transient problem).
    /// `own_slot` is the caller's slot (its cache is checked too; other
    /// live processes' caches change without the lock and are skipped).
    pub fn check(&self, own_slot: u32, alive: impl Fn(u32, u64) -> bool) -> Result<(), Problems> {
        let mut f = Found(None);
        // SAFETY: the header is mapped; magic and geometry were validated.
        let h = unsafe { &*self.header() };
        let units = self.g.units as usize;
        // Table: heads well formed, nothing but zeros inside runs, and the
        // bitmap is exactly the runs.
        let mut expect_word = 0u64;
        let mut word = 0usize;
        let mut covered = 0usize; // units up to here are accounted for
        let mut spans_listed = 0u32;
        let flush = |f: &mut Found, word: usize, expect: u64| {
            // SAFETY: word < words.
            if unsafe { *self.bitmap(word) } != expect {
                f.add("unit bitmap differs from the unit table", word as u64 * 64);
            }
        };
        let mut mark = |f: &mut Found, from: usize, to: usize, used: bool| {
            for u in from..to {
                if u / 64 != word {
                    flush(f, word, expect_word);
                    word = u / 64;
                    expect_word = 0;
                }
                if used {
                    expect_word |= 1 << (u % 64);
                }
            }
        };
        let bad = self.walk_heads(|u, e| {
            mark(&mut f, covered, u, false);
            let len = if e & LARGE != 0 {
                (e & !KIND_MASK) as usize
            } else {
                SPAN_UNITS
            };
            mark(&mut f, u, u + len, true);
            covered = u + len;
            for inner in u + 1..u + len {
                // SAFETY: inner < units.
                if unsafe { self.entry(inner).read_volatile() } != 0 {
                    f.add("unit table entry inside a run", inner as u64);
                }
            }
            if e & SLAB != 0 {
                let span = (u / SPAN_UNITS) as u32;
                // SAFETY: a valid span head.
                let s = unsafe { &*self.span(span) };
                let class = s.class as usize;
                if s.nblocks as usize != blocks_per_span(class) {
                    f.add("span block count", self.unit_off(u));
                }
                if !tail_ok(s) {
                    f.add("span bits past its last block", self.unit_off(u));
                }
                if s.used != popcount_used(s) {
                    f.add("span used count differs from its bits", self.unit_off(u));
                }
                if (s.listed != 0) != (s.used < s.nblocks) {
                    f.add(
                        "span listed but full, or not listed with free blocks",
                        self.unit_off(u),
                    );
                }
                spans_listed += (s.listed != 0) as u32;
            }
        });
        if let Some(u) = bad {
            f.add("malformed unit table entry", u as u64);
        } else {
            mark(&mut f, covered, units, false);
            if units > 0 {
                flush(&mut f, word, expect_word);
            }
        }
        // Class lists: every listed span once, of its class, with its
        // links.
        let mut walked = 0u32;
        for class in 0..NCLASSES {
            let mut prev = NONE;
            let mut s = h.class_head[class];
            while s != NONE {
                walked += 1;
                if s >= self.spans() || walked > self.spans() {
                    f.add("class list link out of range or cyclic", s as u64);
                    break;
                }
                // SAFETY: s < spans.
                let e = unsafe { self.entry(s as usize * SPAN_UNITS).read_volatile() };
                // SAFETY: s < spans.
                let sp = unsafe { &*self.span(s) };
                if e != SLAB | class as u32 || sp.listed == 0 || sp.prev != prev {
                    f.add(
                        "class list holds a span not of its class or with a bad link",
                        s as u64,
                    );
                    break;
                }
                prev = s;
                s = sp.next;
            }
        }
        if bad.is_none() && walked != spans_listed {
            f.add(
                "a span with free blocks is missing from its class list",
                walked as u64,
            );
        }
        // Caches of dead processes and of the caller: allocated blocks of
        // their class.
        for i in 0..self.g.slots {
            // SAFETY: i < slots.
            let sl = unsafe { &*self.slot(i) };
            if sl.state.load(core::sync::atomic::Ordering::Acquire) != SLOT_ATTACHED {
                continue;
            }
            if i != own_slot && alive(sl.pid, sl.start) {
                continue;
            }
            for c in 0..CACHED {
                let n = sl.count[c] as usize;
                if n > CACHE_N {
                    f.add("cache count", i as u64);
                    continue;
                }
                for k in 0..n {
                    let off = sl.entries[c][k] as u64 * 16;
                    match self.classify(off) {
                        Some(Block::Small { span, class, bit })
                            if class as usize == c && self.bit_set(span, bit) => {}
                        _ => f.add("cached block not an allocated block of its class", off),
                    }
                    if sl.entries[c][..k].contains(&sl.entries[c][k]) {
                        f.add("block cached twice", off);
                    }
                }
            }
        }
        // Named objects: allocated blocks large enough.
        for i in 0..NAMED_MAX {
            // SAFETY: i < NAMED_MAX.
            let e = unsafe { &*self.named(i) };
            if e.state != NAMED_USED {
                continue;
            }
            if e.key_len as usize > KEY_MAX || e.key_len == 0 {
                f.add("named object key length", i as u64);
            }
            let ok = match self.classify(e.off) {
                Some(Block::Small { span, class, bit }) => {
                    self.bit_set(span, bit) && class_size(class as usize) as u64 >= e.size
                }
                Some(Block::Large { len, .. }) => len as u64 * UNIT as u64 >= e.size,
                None => false,
            };
            if !ok {
                f.add("named object not an allocated block of its size", e.off);
            }
        }
        match f.0 {
            None => Ok(()),
            Some(p) => Err(p),
        }
    }
}
