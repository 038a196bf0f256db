//! The books: a hash table of guarded regions keyed by the secret's
//! address, and a sorted directory of packed slabs. Both live in mappings
//! of their own (never `malloc`), grown by doubling; neither holds secrets.

use core::ptr::null_mut;

use crate::region::Region;
use crate::slab::Slab;
use crate::Error;

fn map_array<T>(n: usize) -> Result<*mut T, Error> {
    let bytes = n * core::mem::size_of::<T>();
    memkit_sys::map(bytes)
        .map(|p| p.cast::<T>())
        .map_err(|memkit_sys::Errno(e)| Error::map(bytes, "mmap", e))
}

/// # Safety
/// `p` must come from `map_array::<T>(n)`.
unsafe fn unmap_array<T>(p: *mut T, n: usize) {
    // SAFETY: the caller's mapping.
    unsafe { memkit_sys::unmap(p.cast(), n * core::mem::size_of::<T>()) };
}

/// Open addressing with linear probing and backward-shift deletion; load
/// at most 1/2. Invariant: every live record is reachable from its home
/// slot through non-empty slots (`ptr != 0`).
pub(crate) struct Table {
    slots: *mut Region,
    cap: usize,
    len: usize,
}

impl Table {
    pub const fn new() -> Table {
        Table {
            slots: null_mut(),
            cap: 0,
            len: 0,
        }
    }

    fn home(&self, ptr: usize) -> usize {
        let h = ((ptr >> 4) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - self.cap.trailing_zeros())) as usize
    }

    fn slot(&self, i: usize) -> *mut Region {
        // SAFETY: callers pass i < cap; slots has cap records.
        unsafe { self.slots.add(i) }
    }

    fn find(&self, ptr: usize) -> Option<usize> {
        if self.len == 0 || ptr == 0 {
            return None;
        }
        let mut i = self.home(ptr);
        loop {
            // SAFETY: i < cap.
            let k = unsafe { (*self.slot(i)).ptr };
            if k == ptr {
                return Some(i);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    /// The region whose secret starts at `ptr`.
    pub fn get(&mut self, ptr: usize) -> Option<&mut Region> {
        let i = self.find(ptr)?;
        // SAFETY: i < cap; the table is borrowed mutably.
        Some(unsafe { &mut *self.slot(i) })
    }

    /// Adds a region (its `ptr` must not be in the table).
    pub fn insert(&mut self, r: Region) -> Result<(), Error> {
        if (self.len + 1) * 2 > self.cap {
            self.grow()?;
        }
        let mut i = self.home(r.ptr);
        // SAFETY: i < cap; load <= 1/2 guarantees an empty slot.
        unsafe {
            while (*self.slot(i)).ptr != 0 {
                i = (i + 1) & (self.cap - 1);
            }
            *self.slot(i) = r;
        }
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the region whose secret starts at `ptr`.
    pub fn remove(&mut self, ptr: usize) -> Option<Region> {
        let mut i = self.find(ptr)?;
        let mask = self.cap - 1;
        // SAFETY: all indices are masked below cap.
        unsafe {
            let r = *self.slot(i);
            // Backward shift: move later records of the probe run into the
            // hole when their home does not lie (cyclically) after it.
            let mut j = i;
            loop {
                j = (j + 1) & mask;
                let k = (*self.slot(j)).ptr;
                if k == 0 {
                    break;
                }
                let h = self.home(k);
                if (j.wrapping_sub(h) & mask) >= (j.wrapping_sub(i) & mask) {
                    *self.slot(i) = *self.slot(j);
                    i = j;
                }
            }
            *self.slot(i) = Region::EMPTY;
            self.len -= 1;
            Some(r)
        }
    }

    fn grow(&mut self) -> Result<(), Error> {
        let cap = if self.cap == 0 { 1024 } else { self.cap * 2 };
        let slots = map_array::<Region>(cap)?;
        let old = core::mem::replace(self, Table { slots, cap, len: 0 });
        // Fresh anonymous memory is zero: every slot reads ptr == 0 (empty).
        for i in 0..old.cap {
            // SAFETY: i < old.cap.
            let r = unsafe { *old.slot(i) };
            if r.ptr != 0 {
                // Cannot fail: the new table has room for twice as many.
                let _ = self.insert(r);
            }
        }
        if !old.slots.is_null() {
            // SAFETY: the old array, no longer referenced.
            unsafe { unmap_array(old.slots, old.cap) };
        }
        Ok(())
    }

    /// Number of live regions.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// Packed slabs sorted by address, for finding the slab of a pointer.
pub(crate) struct Dir {
    slabs: *mut *mut Slab,
    cap: usize,
    len: usize,
}

impl Dir {
    pub const fn new() -> Dir {
        Dir {
            slabs: null_mut(),
            cap: 0,
            len: 0,
        }
    }

    pub fn as_slice(&self) -> &[*mut Slab] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the first len entries are initialised.
        unsafe { core::slice::from_raw_parts(self.slabs, self.len) }
    }

    /// Index of the first slab at or after `addr`.
    fn position(&self, addr: usize) -> usize {
        self.as_slice().partition_point(|&s| (s as usize) < addr)
    }

    pub fn insert(&mut self, s: *mut Slab) -> Result<(), Error> {
        if self.len == self.cap {
            let cap = if self.cap == 0 { 512 } else { self.cap * 2 };
            let slabs = map_array::<*mut Slab>(cap)?;
            if !self.slabs.is_null() {
                // SAFETY: both arrays hold at least len entries.
                unsafe {
                    core::ptr::copy_nonoverlapping(self.slabs, slabs, self.len);
                    unmap_array(self.slabs, self.cap);
                }
            }
            self.slabs = slabs;
            self.cap = cap;
        }
        let i = self.position(s as usize);
        // SAFETY: len < cap: room for one more entry after shifting.
        unsafe {
            core::ptr::copy(self.slabs.add(i), self.slabs.add(i + 1), self.len - i);
            *self.slabs.add(i) = s;
        }
        self.len += 1;
        Ok(())
    }

    pub fn remove(&mut self, s: *mut Slab) {
        let i = self.position(s as usize);
        if i < self.len && self.as_slice()[i] == s {
            // SAFETY: i < len.
            unsafe { core::ptr::copy(self.slabs.add(i + 1), self.slabs.add(i), self.len - i - 1) };
            self.len -= 1;
        }
    }

    /// The slab whose mapping contains `addr`.
    pub fn find(&self, addr: usize) -> Option<*mut Slab> {
        let i = self.as_slice().partition_point(|&s| (s as usize) <= addr);
        let s = *self.as_slice().get(i.checked_sub(1)?)?;
        // SAFETY: every directory entry is a live slab.
        unsafe { (*s).contains(addr) }.then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(ptr: usize) -> Region {
        Region {
            ptr,
            size: ptr / 16,
            ..Region::EMPTY
        }
    }

    #[test]
    fn table_matches_a_model_through_growth_and_deletion() {
        let mut t = Table::new();
        let mut model = std::collections::BTreeSet::new();
        let mut x: u64 = 0x1234_5678;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Page-like keys (what secrets look like), many colliding.
            let key = 0x7f00_0000_0000 + ((x % 5000) as usize) * 4096 + 16;
            if model.contains(&key) && step % 3 != 0 {
                assert_eq!(t.remove(key).map(|r| r.size), Some(key / 16));
                model.remove(&key);
            } else if !model.contains(&key) {
                t.insert(region(key)).unwrap();
                model.insert(key);
            }
            assert_eq!(t.len(), model.len());
        }
        for &k in &model {
            assert_eq!(t.get(k).map(|r| r.size), Some(k / 16));
        }
        assert!(t.get(0x7f00_0000_0000 + 5001 * 4096 + 16).is_none());
    }
}
