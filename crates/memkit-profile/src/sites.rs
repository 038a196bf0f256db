//! What the profiler counts: one [`Site`] per distinct allocation stack
//! (indexed by the stack depot's dense serial number) and the process's
//! [`State`] (bytes in use, the peak, the histogram, the timeline), all
//! changed under one lock (biased to the first recording thread).
//!
//! # The live set at the peak, without a copy at each new peak
//! A program that grows sets a new peak at nearly every allocation; copying
//! every site's live figures each time would cost O(sites) per allocation.
//! Instead the state keeps an `epoch`, bumped at each new peak, and each
//! site the epoch of its last change. Before a site changes, if its last
//! change is older than the current epoch, its live figures are exactly
//! what they were at the latest peak: they are saved (`peak_*`) first.
//! At the end a site's figures at the peak are its live figures when it
//! has not changed since the last peak (`changed < epoch`), else the saved
//! ones (`changed == epoch`, saved when it first changed after the peak).
//! Invariant: `changed <= epoch`, and `peak_*` are meaningful only when
//! `changed == epoch`.

use core::sync::atomic::{AtomicPtr, Ordering::*};

use memkit_alloc::bias::BiasedLock;

/// Sites the table holds; stacks past it share site 0.
pub const MAX_SITES: usize = 1 << 20;

/// Per-stack figures (objects in `object_unit`s, bytes exact or estimated).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Site {
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
    pub live_objects: u64,
    pub live_bytes: u64,
    /// The live figures at the latest peak, when `changed == epoch`.
    pub peak_objects: u64,
    pub peak_bytes: u64,
    /// The state's epoch at this site's last change.
    pub changed: u64,
    pub temporary: u64,
}

const _: () = assert!(core::mem::size_of::<Site>() == 64);

impl Site {
    #[inline(always)]
    fn touch(&mut self, epoch: u64) {
        if self.changed != epoch {
            self.peak_objects = self.live_objects;
            self.peak_bytes = self.live_bytes;
            self.changed = epoch;
        }
    }

    /// The live figures at the peak of `epoch` (the final one).
    pub fn at_peak(&self, epoch: u64) -> (u64, u64) {
        if self.changed < epoch {
            (self.live_objects, self.live_bytes)
        } else {
            (self.peak_objects, self.peak_bytes)
        }
    }
}

/// Timeline points kept; when full, every other point is dropped and the
/// period doubles, so a run of any length fits.
pub const TIMELINE_POINTS: usize = 2048;

#[derive(Clone, Copy, Default)]
pub struct Point {
    pub t_ns: u64,
    pub inuse_bytes: u64,
    pub rss_bytes: u64,
}

use memkit_profdata::{bucket_of, BUCKETS};

/// The process's figures (objects in `object_unit`s).
pub struct State {
    pub allocs: u64,
    pub bytes: u64,
    pub frees: u64,
    pub temporary: u64,
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
    pub peak_objects: u64,
    pub peak_bytes: u64,
    /// Since profiling start.
    pub peak_at_ns: u64,
    /// Bumped at each new peak (see the module doc).
    pub epoch: u64,
    /// Recorded events; the clock is read every [`CLOCK_EVERY`] of them.
    pub events: u64,
    pub clock_events: u64,
    /// The latest clock reading, since profiling start.
    pub clock_ns: u64,
    pub hist: [(u64, u64); BUCKETS],
    pub timeline: [Point; TIMELINE_POINTS],
    pub points: usize,
    pub period_ns: u64,
    pub next_point_ns: u64,
}

/// Events between two clock readings (the clock costs ~20 ns).
pub const CLOCK_EVERY: u64 = 64;

impl State {
    pub const fn new() -> Self {
        Self {
            allocs: 0,
            bytes: 0,
            frees: 0,
            temporary: 0,
            inuse_objects: 0,
            inuse_bytes: 0,
            peak_objects: 0,
            peak_bytes: 0,
            peak_at_ns: 0,
            epoch: 0,
            events: 0,
            clock_events: 0,
            clock_ns: 0,
            hist: [(0, 0); BUCKETS],
            timeline: [Point {
                t_ns: 0,
                inuse_bytes: 0,
                rss_bytes: 0,
            }; TIMELINE_POINTS],
            points: 0,
            period_ns: 0,
            next_point_ns: 0,
        }
    }
}

/// The process's figures and (through [`site`]) the sites. Biased to the
/// first thread that records: a single-threaded program takes it with
/// plain stores (see `memkit_alloc::bias`).
pub static STATE: BiasedLock<State> = BiasedLock::new(State::new());

static SITES: AtomicPtr<Site> = AtomicPtr::new(core::ptr::null_mut());

/// The site table (reserved once, touched as used); null if it could not
/// be mapped.
fn sites() -> *mut Site {
    let s = SITES.load(Acquire);
    if !s.is_null() {
        return s;
    }
    let Ok(p) = memkit_sys::map(MAX_SITES * 64) else {
        return core::ptr::null_mut();
    };
    let p = p as *mut Site;
    match SITES.compare_exchange(core::ptr::null_mut(), p, AcqRel, Acquire) {
        Ok(_) => p,
        Err(won) => {
            // SAFETY: our own mapping, never published.
            unsafe { memkit_sys::unmap(p as *mut u8, MAX_SITES * 64) };
            won
        }
    }
}

/// The site of a stack serial (site 0 for serials past the table).
///
/// # Safety
/// The caller holds [`STATE`]'s lock (sites change only under it).
#[inline(always)]
pub unsafe fn site(serial: u32) -> Option<&'static mut Site> {
    let s = sites();
    if s.is_null() {
        return None;
    }
    let i = if (serial as usize) < MAX_SITES {
        serial as usize
    } else {
        0
    };
    // SAFETY: i < MAX_SITES, inside the mapping; exclusive under the lock.
    Some(unsafe { &mut *s.add(i) })
}

/// A copy of every site used so far (index = serial), for the writer.
pub fn snapshot_sites(_state: &State) -> Vec<Site> {
    let s = SITES.load(Acquire);
    if s.is_null() {
        return Vec::new();
    }
    let n = (memkit_trace::depot::serials() as usize).min(MAX_SITES);
    // SAFETY: the caller holds the lock (it passes the guarded state); the
    // first n sites are inside the mapping.
    unsafe { core::slice::from_raw_parts(s, n) }.to_vec()
}

/// In a fork child: every figure back to zero (the child profiles what it
/// does itself).
pub fn reset(state: &mut State) {
    *state = State::new();
    let s = SITES.load(Acquire);
    if !s.is_null() {
        let n = (memkit_trace::depot::serials() as usize).min(MAX_SITES);
        // SAFETY: the first n sites are inside the mapping; only this
        // thread runs in a fresh child.
        unsafe { core::ptr::write_bytes(s, 0, n) };
    }
}

impl State {
    /// One allocation of `size` bytes counted as `objects` and `bytes`
    /// (weights in sampled mode) at `site`.
    #[inline(always)]
    pub fn alloc(&mut self, site: &mut Site, objects: u64, bytes: u64, size: usize) {
        site.touch(self.epoch);
        site.alloc_objects += objects;
        site.alloc_bytes += bytes;
        site.live_objects += objects;
        site.live_bytes += bytes;
        self.allocs += objects;
        self.bytes += bytes;
        self.inuse_objects += objects;
        self.inuse_bytes += bytes;
        let b = &mut self.hist[bucket_of(size)];
        b.0 += objects;
        b.1 += bytes;
        self.events += 1;
        if self.inuse_bytes > self.peak_bytes {
            self.peak_bytes = self.inuse_bytes;
            self.peak_objects = self.inuse_objects;
            self.epoch += 1;
            self.tick(true);
            self.peak_at_ns = self.clock_ns;
        } else {
            self.tick(false);
        }
    }

    /// A free of a block counted as `objects` and `bytes` at `site`.
    #[inline(always)]
    pub fn free(&mut self, site: &mut Site, objects: u64, bytes: u64, temporary: bool) {
        site.touch(self.epoch);
        site.live_objects = site.live_objects.saturating_sub(objects);
        site.live_bytes = site.live_bytes.saturating_sub(bytes);
        self.frees += objects;
        self.inuse_objects = self.inuse_objects.saturating_sub(objects);
        self.inuse_bytes = self.inuse_bytes.saturating_sub(bytes);
        if temporary {
            site.temporary += objects;
            self.temporary += objects;
        }
        self.events += 1;
        self.tick(false);
    }

    /// Reads the clock every [`CLOCK_EVERY`] events (or now, at a new peak
    /// whose time is not yet known to that precision) and adds a timeline
    /// point each period.
    #[inline(always)]
    fn tick(&mut self, peak: bool) {
        if self.events - self.clock_events < CLOCK_EVERY && !(peak && self.clock_events == 0) {
            return;
        }
        self.tick_slow();
    }

    #[cold]
    #[inline(never)]
    fn tick_slow(&mut self) {
        self.clock_events = self.events;
        self.clock_ns = crate::since_start();
        if self.clock_ns >= self.next_point_ns {
            self.add_point(crate::rss_bytes());
        }
    }

    /// Adds a timeline point now (also at the end of the run).
    pub fn add_point(&mut self, rss: u64) {
        if self.period_ns == 0 {
            self.period_ns = crate::options::get().interval_ns;
        }
        if self.points == TIMELINE_POINTS {
            for i in 0..TIMELINE_POINTS / 2 {
                self.timeline[i] = self.timeline[2 * i + 1];
            }
            self.points = TIMELINE_POINTS / 2;
            self.period_ns *= 2;
        }
        self.timeline[self.points] = Point {
            t_ns: self.clock_ns,
            inuse_bytes: self.inuse_bytes,
            rss_bytes: rss,
        };
        self.points += 1;
        self.next_point_ns = self.clock_ns + self.period_ns;
    }
}
