//! Memory sources: where a heap's blocks come from.
//!
//! Every mapping the core makes *for blocks* (a segment in `segment.rs`, a
//! huge block in `huge.rs`) is made by the [`Source`] of the heap it is for,
//! and given back to it. The thread heaps use [`OS`] (private anonymous
//! mappings, today's `memkit_sys::map_aligned`); a heap created with
//! [`crate::arena::Arena`] may use another, such as [`FdSource`] (a file
//! descriptor mapped shared: the blocks live in memory another process
//! can map). The metadata the core keeps for itself (heap structs, the
//! ownership map's leaves, a source's own state) stays on OS mappings.
//!
//! A source is a `#[repr(C)]` table of functions and flags, stored by
//! pointer in the heap, in each segment header and in each huge block
//! header: the fast paths never read it, only the slow paths that map,
//! purge or unmap.
//!
//! What the core does with an OS mapping that other sources do not get:
//! the segment cache and the huge-block cache (both only ever hold OS
//! mappings, so a segment of a file can never reach a thread heap),
//! trimming a huge mapping's tail, and growing or moving it with `mremap`
//! (a huge block of another source is resized by copying).

use core::ptr::null_mut;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use memkit_sys::{Errno, OS_PAGE};

/// A source of memory for blocks. All functions are called with the
/// source pointer first, so a source can keep state after the table (see
/// [`FdSource`], whose first field is its table).
#[repr(C)]
pub struct Source {
    /// Maps `size` bytes (a multiple of 4 KiB) aligned to `align` (a power
    /// of two, 4 KiB to 4 MiB; the OS source takes any), readable and
    /// writable. Null when refused.
    pub map: unsafe fn(src: *const Source, size: usize, align: usize) -> *mut u8,
    /// Gives back `size` bytes from `p`: a whole mapping `map` made (the
    /// OS source also takes any page-aligned part of one).
    pub unmap: unsafe fn(src: *const Source, p: *mut u8, size: usize),
    /// Releases the memory behind a page-aligned range of a mapping whose
    /// contents are no longer needed (it reads back as zeros); false when
    /// it stays resident.
    pub purge: unsafe fn(src: *const Source, p: *mut u8, size: usize) -> bool,
    /// Transparent-huge-page advice for a range (`MADV_HUGEPAGE` when
    /// `on`, else `MADV_NOHUGEPAGE`), best effort; a no-op where it does
    /// not apply.
    pub advise_huge: unsafe fn(src: *const Source, p: *mut u8, size: usize, on: bool),
    /// The one address range every mapping of this source lies in, if it
    /// keeps one (`(null, 0)` otherwise). A [`SHARED`] source must: a
    /// forked child disowns that range whole (see `heap::arena`).
    pub range: unsafe fn(src: *const Source) -> (*mut u8, usize),
    /// [`OS`], [`SHARED`], [`ZEROED`].
    pub flags: u32,
}

// SAFETY: a table of functions and flags; state behind it is the source's
// to synchronise (FdSource: atomics).
unsafe impl Sync for Source {}

/// Private anonymous mappings: cached, trimmed and remapped by the core.
pub const FLAG_OS: u32 = 1;
/// Memory other processes map too: a forked child must not allocate from
/// it, free into it or purge it (the parent's heap is in it).
pub const SHARED: u32 = 2;
/// Fresh mappings read as zeros (`calloc` of a fresh huge block skips the
/// memset).
pub const ZEROED: u32 = 4;

unsafe fn os_map(_: *const Source, size: usize, align: usize) -> *mut u8 {
    memkit_sys::map_aligned(size, align.max(OS_PAGE)).unwrap_or(null_mut())
}

unsafe fn os_unmap(_: *const Source, p: *mut u8, size: usize) {
    // SAFETY: the caller gives back a range of a mapping this source made.
    unsafe { memkit_sys::unmap(p, size) }
}

unsafe fn os_purge(_: *const Source, p: *mut u8, size: usize) -> bool {
    // SAFETY: the caller owns the range and needs none of its contents.
    unsafe { memkit_sys::purge(p, size) }
}

unsafe fn os_advise_huge(_: *const Source, p: *mut u8, size: usize, on: bool) {
    // SAFETY: advice on a mapping of the caller's.
    unsafe {
        memkit_sys::advise_huge(p, size, on);
    }
}

unsafe fn no_range(_: *const Source) -> (*mut u8, usize) {
    (null_mut(), 0)
}

/// The default source: private anonymous mappings from the OS.
pub static OS: Source = Source {
    map: os_map,
    unmap: os_unmap,
    purge: os_purge,
    advise_huge: os_advise_huge,
    range: no_range,
    flags: FLAG_OS | ZEROED,
};

/// The OS source's address (what heaps store).
#[inline(always)]
pub fn os() -> *const Source {
    &OS
}

/// Whether `src` is the OS source (its mappings may be cached, trimmed and
/// remapped).
///
/// # Safety
/// `src` is a live source.
#[inline]
pub unsafe fn is_os(src: *const Source) -> bool {
    // SAFETY: per the contract.
    unsafe { (*src).flags & FLAG_OS != 0 }
}

/// The granule of an [`FdSource`]: one segment (4 MiB, checked in
/// `segment.rs`), so every mapping it hands out is 4 MiB-aligned as the
/// core needs.
pub const CHUNK: usize = 4 << 20;
const FD_WORDS: usize = 256;
/// Most bytes an [`FdSource`] maps: 16,384 chunks of 4 MiB (64 GiB).
pub const FD_MAX: usize = FD_WORDS * 64 * CHUNK;

/// Memory from a file descriptor (a memfd, a file in /dev/shm, any file
/// that can be mapped shared): the first `len` bytes of the file mapped
/// `MAP_SHARED` once, 4 MiB-aligned, at `base`; blocks lie at file offset
/// `p - base`, so another process that maps the file reads them there.
/// Mappings are runs of 4 MiB chunks of that range, found in a bitmap;
/// giving one back frees its pages in the file (`MADV_REMOVE`).
///
/// The state lives in a page of its own (an OS mapping, private to this
/// process), first the [`Source`] table, so `*const FdSource` is the
/// source pointer. `map` runs only for the heap's user (one thread at a
/// time, the arena rule) and only sets bits; `unmap` may run on any thread
/// (a huge block freed there) and only clears them, so the bitmap needs no
/// lock: bits `map` saw clear stay clear until it sets them.
#[repr(C)]
pub struct FdSource {
    source: Source,
    base: *mut u8,
    len: usize,
    used: [AtomicU64; FD_WORDS],
}

const FD_STATE_BYTES: usize = core::mem::size_of::<FdSource>().next_multiple_of(OS_PAGE);

impl FdSource {
    /// Maps the first `max` bytes (rounded up to 4 MiB, at most
    /// [`FD_MAX`]) of the open file `fd` shared, growing the file to that
    /// length if it is shorter. The fd may be closed afterwards (the
    /// mapping keeps the file). EINVAL for a `max` of 0 or above
    /// [`FD_MAX`], EBADF for a negative fd; otherwise the error of
    /// `fstat`, `ftruncate` or `mmap`.
    pub fn create(fd: i32, max: usize) -> Result<*mut FdSource, Errno> {
        if fd < 0 {
            return Err(Errno(9));
        }
        if max == 0 || max > FD_MAX {
            return Err(Errno(22));
        }
        let len = max.next_multiple_of(CHUNK);
        if memkit_sys::file_size(fd)? < len as u64 {
            memkit_sys::protect::truncate(fd, len as u64)?;
        }
        let state = memkit_sys::map(FD_STATE_BYTES)? as *mut FdSource;
        let fail = |e: Errno| {
            // SAFETY: the state page just mapped, not handed out.
            unsafe { memkit_sys::unmap(state.cast(), FD_STATE_BYTES) };
            Err(e)
        };
        // Reserve an aligned range, then put the file over it.
        let base = match memkit_sys::map_aligned(len, CHUNK) {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        // SAFETY: the range just reserved is ours to replace.
        if let Err(e) = unsafe { memkit_sys::protect::map_shared_fixed(base, len, fd) } {
            // SAFETY: our reservation.
            unsafe { memkit_sys::unmap(base, len) };
            return fail(e);
        }
        // SAFETY: a fresh page of ours, large enough (FD_STATE_BYTES).
        unsafe {
            state.write(FdSource {
                source: Source {
                    map: fd_map,
                    unmap: fd_unmap,
                    purge: fd_purge,
                    advise_huge: fd_advise_huge,
                    range: fd_range,
                    flags: SHARED,
                },
                base,
                len,
                used: [const { AtomicU64::new(0) }; FD_WORDS],
            });
        }
        Ok(state)
    }

    /// Where offset 0 of the file is mapped, and the bytes mapped.
    pub fn mapping(&self) -> (*mut u8, usize) {
        (self.base, self.len)
    }

    /// Unmaps the file and frees the state. With `release`, the pages of
    /// every chunk still in use are freed in the file first
    /// (`MADV_REMOVE`); a forked child passes false (the parent's heap is
    /// in them).
    ///
    /// # Safety
    /// `s` came from [`FdSource::create`] and nothing uses it or its
    /// memory any more.
    pub unsafe fn destroy(s: *mut FdSource, release: bool) {
        // SAFETY: per the contract.
        unsafe {
            let (base, len) = ((*s).base, (*s).len);
            if release {
                for i in 0..len / CHUNK {
                    if (*s).used[i / 64].load(Relaxed) & (1 << (i % 64)) != 0 {
                        memkit_sys::remove(base.add(i * CHUNK), CHUNK);
                    }
                }
            }
            memkit_sys::unmap(base, len);
            memkit_sys::unmap(s.cast(), FD_STATE_BYTES);
        }
    }
}

/// Claims the first run of `n` free chunks (bits `at..at+n`); see
/// [`FdSource`] for why no lock is needed.
fn claim(used: &[AtomicU64], chunks: usize, n: usize) -> Option<usize> {
    let bit = |i: usize| used[i / 64].load(Relaxed) & (1 << (i % 64)) != 0;
    let mut run = 0;
    for i in 0..chunks {
        run = if bit(i) { 0 } else { run + 1 };
        if run == n {
            let at = i + 1 - n;
            for k in at..=i {
                used[k / 64].fetch_or(1 << (k % 64), Relaxed);
            }
            return Some(at);
        }
    }
    None
}

fn release(used: &[AtomicU64], at: usize, n: usize) {
    for k in at..at + n {
        used[k / 64].fetch_and(!(1 << (k % 64)), Relaxed);
    }
}

unsafe fn fd_map(src: *const Source, size: usize, align: usize) -> *mut u8 {
    if align > CHUNK || size == 0 {
        return null_mut();
    }
    // SAFETY: an FdSource's table is its first field.
    let s = unsafe { &*(src as *const FdSource) };
    match claim(&s.used, s.len / CHUNK, size.div_ceil(CHUNK)) {
        Some(at) => s.base.wrapping_add(at * CHUNK),
        None => null_mut(),
    }
}

unsafe fn fd_unmap(src: *const Source, p: *mut u8, size: usize) {
    // SAFETY: an FdSource's table is its first field.
    let s = unsafe { &*(src as *const FdSource) };
    let at = (p as usize - s.base as usize) / CHUNK;
    let n = size.div_ceil(CHUNK);
    // SAFETY: the caller gives back a whole mapping of ours: no data in it
    // is needed, in any process.
    unsafe { memkit_sys::remove(p, n * CHUNK) };
    release(&s.used, at, n);
}

unsafe fn fd_purge(_: *const Source, p: *mut u8, size: usize) -> bool {
    // SAFETY: the caller owns the range and needs none of its contents.
    unsafe { memkit_sys::remove(p, size) }
}

unsafe fn fd_advise_huge(_: *const Source, _: *mut u8, _: usize, _: bool) {
    // Huge pages of shared memory follow the system's shmem_enabled.
}

unsafe fn fd_range(src: *const Source) -> (*mut u8, usize) {
    // SAFETY: an FdSource's table is its first field.
    unsafe { (*(src as *const FdSource)).mapping() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_claimed_first_fit_and_released() {
        let used: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
        assert_eq!(claim(&used, 100, 3), Some(0));
        assert_eq!(claim(&used, 100, 62), Some(3));
        // A run across the word boundary.
        assert_eq!(claim(&used, 100, 4), Some(65));
        release(&used, 0, 3);
        assert_eq!(claim(&used, 100, 2), Some(0));
        assert_eq!(claim(&used, 100, 2), Some(69));
        assert_eq!(claim(&used, 100, 30), None);
        assert_eq!(claim(&used, 100, 29), Some(71));
    }
}
