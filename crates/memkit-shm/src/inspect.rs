//! Looking at a heap from outside: what `memkit shm ls` shows (size,
//! used bytes, creator, attached processes alive and dead), read from the
//! object's bytes without mapping it, without the allocator's lock and
//! without taking a slot in the registry.
//!
//! Nothing read is trusted: the header is accepted only if its magic,
//! version, header size and the whole geometry are exactly what this
//! version makes for the object's size (`Geometry::of_header`), and every
//! later value (table entries, span headers, slot counts) is bounded
//! before it is used as an offset or a count. The bytes come from a
//! caller's `read_at` (the CLI: `pread`), so a file truncated or rewritten
//! while it is read gives a short read (an error) or odd figures, never a
//! SIGBUS.

use core::mem::{offset_of, size_of, MaybeUninit};

use crate::layout::*;

/// Why a file is not (or cannot be read as) a memkit heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Smaller than a heap's header: not a heap.
    TooSmall,
    /// No memkit magic at its start: not a heap.
    NoMagic,
    /// A memkit heap of another layout version.
    Version(u32),
    /// The magic is there but the recorded geometry is not the one its
    /// size implies (or the size is not the file's): damaged or forged.
    Geometry,
    /// A read failed or came back short (the file shrank, an I/O error).
    Read,
}

impl Refusal {
    /// Whether the file is a memkit heap at all (a heap of another
    /// version, or a damaged one, is; a file without the magic is not).
    pub fn is_memkit(self) -> bool {
        !matches!(self, Refusal::TooSmall | Refusal::NoMagic)
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::TooSmall => "too small to be a memkit heap",
            Refusal::NoMagic => "not a memkit heap (no memkit magic)",
            Refusal::Version(_) => "a memkit heap of another layout version",
            Refusal::Geometry => "memkit magic, but its header does not match its size (damaged?)",
            Refusal::Read => "could not be read whole (shrunk while being read?)",
        }
    }
}

/// One attached process, as the registry records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    pub pid: u32,
    /// Start time (clock ticks since boot; 0: unknown).
    pub start: u64,
    pub alive: bool,
}

/// What a look at a heap found.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Bytes of the object.
    pub size: u64,
    /// Bytes blocks can take (the data area).
    pub capacity: u64,
    /// Bytes of blocks held (block sizes; cached blocks not counted).
    pub used: u64,
    /// Bytes of blocks in attached processes' caches.
    pub cached: u64,
    pub creator_pid: u32,
    pub creator_uid: u32,
    pub creator_start: u64,
    pub creator_comm: [u8; 16],
    /// Seconds since the epoch.
    pub created: u64,
    /// Times a lock holder died and the next holder repaired the heap.
    pub repairs: u64,
    /// Attached processes (registry slots in use); `attached_n` of them.
    pub attached: [Attached; 64],
    pub attached_n: usize,
}

impl Summary {
    pub fn attached(&self) -> &[Attached] {
        &self.attached[..self.attached_n]
    }

    /// (alive, dead) attached processes.
    pub fn alive_dead(&self) -> (u32, u32) {
        let live = self.attached().iter().filter(|a| a.alive).count() as u32;
        (live, self.attached_n as u32 - live)
    }

    /// No attached process is alive: nobody (with a read-write handle)
    /// has the heap open. Read-only handles take no slot and do not count.
    pub fn stale(&self) -> bool {
        self.alive_dead().0 == 0
    }

    /// The creator's command name, up to its first NUL.
    pub fn creator_comm(&self) -> &[u8] {
        let n = self.creator_comm.iter().position(|&c| c == 0).unwrap_or(16);
        &self.creator_comm[..n]
    }
}

/// Reads the heap in a file of `file_size` bytes through `read_at(offset,
/// buf)` (true when `buf` was filled whole), judging attached processes
/// with `alive(pid, start)` ([`crate::registry::alive`] for the real
/// thing).
pub fn inspect(
    file_size: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    alive: &dyn Fn(u32, u64) -> bool,
) -> Result<Summary, Refusal> {
    let h = header(file_size, read_at)?;
    let g = Geometry::of_header(&h).ok_or(Refusal::Geometry)?;
    let (used_raw, _) = used_bytes(&g, read_at)?;
    let mut s = Summary {
        size: g.size,
        capacity: g.units * UNIT as u64,
        used: 0,
        cached: 0,
        creator_pid: h.creator_pid,
        creator_uid: h.creator_uid,
        creator_start: h.creator_start,
        creator_comm: h.creator_comm,
        created: h.created,
        repairs: h.repairs.into_inner(),
        attached: [Attached {
            pid: 0,
            start: 0,
            alive: false,
        }; 64],
        attached_n: 0,
    };
    // `slots` is at most 64 (`Geometry::for_size`); bounded again anyway.
    for i in 0..(g.slots as usize).min(s.attached.len()) {
        let off = g.slots_off + (i * size_of::<Slot>()) as u64;
        let mut buf = [0u8; offset_of!(Slot, entries)];
        if !read_at(off, &mut buf) {
            return Err(Refusal::Read);
        }
        let state = u32_at(&buf, offset_of!(Slot, state));
        if state != SLOT_ATTACHED {
            continue;
        }
        let pid = u32_at(&buf, offset_of!(Slot, pid));
        let start = u64_at(&buf, offset_of!(Slot, start));
        let counts = &buf[offset_of!(Slot, count)..][..CACHED];
        for (c, &n) in counts.iter().enumerate() {
            s.cached += (n as usize).min(CACHE_N) as u64 * class_size(c) as u64;
        }
        s.attached[s.attached_n] = Attached {
            pid,
            start,
            alive: alive(pid, start),
        };
        s.attached_n += 1;
    }
    s.used = used_raw.saturating_sub(s.cached);
    Ok(s)
}

/// Whether a file (or a mapping) of `file_size` bytes holds a memkit heap
/// of this version: its magic, version, header size and whole geometry
/// checked, nothing else read (what `memkit maps` labels by).
pub fn recognise(
    file_size: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Result<(), Refusal> {
    let h = header(file_size, read_at)?;
    Geometry::of_header(&h).map(|_| ()).ok_or(Refusal::Geometry)
}

/// The header, if the file starts with memkit's magic and is big enough
/// to hold a heap.
fn header(
    file_size: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Result<Header, Refusal> {
    if file_size < size_of::<Header>() as u64 {
        return Err(Refusal::TooSmall);
    }
    let mut h = MaybeUninit::<Header>::zeroed();
    // SAFETY: `Header` holds only integers, atomics of integers and byte
    // arrays (the mutexes are `[u8; 40]`): every bit pattern is a valid
    // value, and the zeroed storage is `size_of::<Header>()` bytes.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(h.as_mut_ptr().cast::<u8>(), size_of::<Header>())
    };
    if !read_at(0, bytes) {
        return Err(Refusal::Read);
    }
    // SAFETY: as above, any bytes are a valid `Header`.
    let h = unsafe { h.assume_init() };
    if h.magic.load(core::sync::atomic::Ordering::Relaxed) != MAGIC {
        return Err(Refusal::NoMagic);
    }
    if h.version != VERSION {
        return Err(Refusal::Version(h.version));
    }
    if h.header_size as usize != size_of::<Header>() || h.size != file_size {
        return Err(Refusal::Geometry);
    }
    Ok(h)
}

/// Bytes in blocks per the unit table and the span headers (cached
/// blocks included), and the number of spans.
fn used_bytes(
    g: &Geometry,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Result<(u64, u64), Refusal> {
    const CHUNK: usize = 1024;
    let units = g.units as usize;
    let mut table = [0u32; CHUNK];
    let mut chunk_start = usize::MAX;
    let mut used = 0u64;
    let mut spans = 0u64;
    let mut u = 0usize;
    while u < units {
        if chunk_start == usize::MAX || u < chunk_start || u >= chunk_start + CHUNK {
            chunk_start = u;
            let n = CHUNK.min(units - u);
            let mut raw = [0u8; CHUNK * 4];
            if !read_at(g.table_off + 4 * u as u64, &mut raw[..4 * n]) {
                return Err(Refusal::Read);
            }
            for (k, e) in table[..n].iter_mut().enumerate() {
                *e = u32_at(&raw, 4 * k);
            }
        }
        let e = table[u - chunk_start];
        if e & LARGE != 0 && e & !KIND_MASK != 0 {
            // A run's length, bounded by what is left of the table.
            let len = ((e & !KIND_MASK) as usize).min(units - u);
            used += (len * UNIT) as u64;
            u += len;
        } else if e & SLAB != 0 && u.is_multiple_of(SPAN_UNITS) && u + SPAN_UNITS <= units {
            let mut sh = [0u8; offset_of!(Span, prev)];
            if !read_at(g.data_start + (u * UNIT) as u64, &mut sh) {
                return Err(Refusal::Read);
            }
            let magic = u32_at(&sh, offset_of!(Span, magic));
            let class = u32_at(&sh, offset_of!(Span, class)) as usize;
            if magic == SPAN_MAGIC && class < NCLASSES {
                let n = u32_at(&sh, offset_of!(Span, used)).min(blocks_per_span(class) as u32);
                used += n as u64 * class_size(class) as u64;
            }
            spans += 1;
            u += SPAN_UNITS;
        } else {
            u += 1;
        }
    }
    Ok((used, spans))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(v)
}
