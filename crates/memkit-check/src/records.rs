//! The quarantine's record queue: records of freed blocks, oldest first,
//! in chunks of [`CHUNK`] records.
//!
//! A `VecDeque` grows by doubling, copying every record and leaving the
//! old buffer to the core: at its peak it held up to twice its records,
//! plus the buffers it had outgrown (a 4 MiB quarantine of 16-byte blocks,
//! 32 768 records of 64 bytes, took 6 MiB of queue). Chunks hold what is
//! queued plus at most two chunks' worth (a partly used chunk at each end
//! and one spare kept for the next push), and a push never copies.

/// Records per chunk: as many 32-byte records as fill 16 KiB, the
/// power-of-two class `own_alloc` serves a chunk from (256 records of 48
/// bytes, 12 KiB, took a 16 KiB block too, so a quarantine of small
/// blocks held a quarter more record memory than it counted; 341 of them
/// filled it, from 2026-12-03). A thread's first free takes one, in each
/// of the quarantine's shards it frees into. A push counts the back
/// chunk's records rather than dividing.
pub const CHUNK: usize = 512;

/// A queue of `T` (the quarantine's `Meta`), in chunks.
pub struct Records<T> {
    chunks: std::collections::VecDeque<Box<[T; CHUNK]>>,
    /// Index of the oldest record in `chunks[0]`.
    first: usize,
    len: usize,
    /// Records written in the back chunk (`CHUNK` when there is none, so
    /// that the next push starts one).
    back_used: usize,
    /// An emptied chunk, kept for the next one needed.
    spare: Option<Box<[T; CHUNK]>>,
    /// The records of the front and back chunks (null while there are
    /// none): a push and a look at the oldest record go straight to them,
    /// not through the `VecDeque`'s index arithmetic.
    front: *mut T,
    back: *mut T,
}

// SAFETY: `front` and `back` point into chunks the queue owns (and moves
// with it); nothing else holds them.
unsafe impl<T: Send> Send for Records<T> {}

impl<T: Copy> Records<T> {
    pub const fn new() -> Self {
        Records {
            chunks: std::collections::VecDeque::new(),
            first: 0,
            len: 0,
            back_used: CHUNK,
            spare: None,
            front: core::ptr::null_mut(),
            back: core::ptr::null_mut(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The `i`-th oldest record.
    pub fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        let at = self.first + i;
        Some(&self.chunks[at / CHUNK][at % CHUNK])
    }

    /// Appends `m`; the slot it was written to (a caller that still has
    /// fields to set sets them there, not on a copy it then moves).
    #[inline(always)]
    pub fn push_back(&mut self, m: T) -> &mut T {
        if self.back_used == CHUNK {
            self.push_chunk(m);
        }
        let at = self.back_used;
        self.back_used = at + 1;
        self.len += 1;
        // SAFETY: a back chunk exists (`back` points to its records) with
        // `at < CHUNK` records written.
        let slot = unsafe { &mut *self.back.add(at) };
        *slot = m;
        slot
    }

    /// A push that starts a chunk.
    #[cold]
    #[inline(never)]
    fn push_chunk(&mut self, m: T) {
        let mut c = self.spare.take().unwrap_or_else(|| {
            // The right size by construction.
            let v: Box<[T]> = vec![m; CHUNK].into_boxed_slice();
            v.try_into().ok().expect("a chunk")
        });
        c[0] = m;
        self.back = c.as_mut_ptr();
        self.back_used = 0;
        if self.chunks.is_empty() {
            self.front = self.back;
        }
        self.chunks.push_back(c);
    }

    /// The oldest record, taken out (the tests' model of the queue).
    #[cfg(test)]
    pub fn pop_front(&mut self) -> Option<T> {
        let m = *self.front()?;
        self.drop_front();
        Some(m)
    }

    /// The oldest record, left in place.
    #[inline(always)]
    pub fn front(&self) -> Option<&T> {
        if self.len == 0 {
            return None;
        }
        // SAFETY: len > 0: the front chunk exists (`front` points to its
        // records) and first < CHUNK.
        Some(unsafe { &*self.front.add(self.first) })
    }

    /// Forgets the oldest record (there is one).
    #[inline(always)]
    pub fn drop_front(&mut self) {
        debug_assert!(self.len > 0);
        self.first += 1;
        self.len -= 1;
        if self.first == CHUNK || self.len == 0 {
            self.chunk_done();
        }
    }

    /// The front chunk is done with (or the queue empty: start afresh).
    #[cold]
    #[inline(never)]
    fn chunk_done(&mut self) {
        if self.first == CHUNK || self.chunks.len() == 1 {
            let c = self.chunks.pop_front();
            if self.spare.is_none() {
                self.spare = c;
            }
        }
        self.first = 0;
        match self.chunks.front_mut() {
            Some(c) => self.front = c.as_mut_ptr(),
            None => {
                (self.front, self.back) = (core::ptr::null_mut(), core::ptr::null_mut());
                self.back_used = CHUNK;
            }
        }
    }
}

/// Run by the check-mode tests (`memkit-cli`'s tests/check, which include
/// this file: the library itself is a cdylib without unit tests).
#[cfg(test)]
mod tests {
    use super::*;

    /// Against a `VecDeque` model, through many chunk boundaries and empty
    /// queues; never more than two chunks beyond what is queued.
    #[test]
    fn records_same_as_a_deque() {
        let mut r = Records::new();
        let mut model = std::collections::VecDeque::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = 1usize;
        for step in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Phases that grow, then drain the queue.
            let push = if (step / 20_000) % 2 == 0 {
                x % 5 < 3
            } else {
                x % 5 < 2
            };
            if push {
                r.push_back(next);
                model.push_back(next);
                next += 1;
            } else {
                assert_eq!(r.pop_front(), model.pop_front());
            }
            assert_eq!(r.len(), model.len());
            let i = (x >> 32) as usize % (model.len() + 1);
            assert_eq!(r.get(i).copied(), model.get(i).copied());
            assert!(r.chunks.len() <= model.len() / CHUNK + 2);
        }
        assert!(next > 10 * CHUNK);
        while let Some(m) = model.pop_front() {
            assert_eq!(r.pop_front(), Some(m));
        }
        assert_eq!(r.pop_front(), None);
        assert_eq!(r.len(), 0);
        assert!(r.chunks.is_empty());
        assert!(r.get(0).is_none());
        r.push_back(7);
        assert_eq!(r.pop_front(), Some(7));
    }
}
