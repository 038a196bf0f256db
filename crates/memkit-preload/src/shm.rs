//! The C API of shared-memory heaps (`include/memkit-shm.h`) over
//! `memkit_shm`: one line each over the handle, with the C conventions
//! (NULL or -1 and errno) applied here.
//!
//! A `memkit_shm *` is a `memkit_shm::Heap` in a page mapped for it (the
//! allocator's own paths never call `malloc`).

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::ptr::null_mut;

use memkit_shm::{Errno, Heap};

use crate::{set_errno, EINVAL};

/// `MEMKIT_SHM_READONLY`.
const READONLY: c_int = 1;
/// `MEMKIT_SHM_OWNER_DIED`.
const OWNER_DIED: c_int = 1;

const HANDLE_BYTES: usize = size_of::<Heap>().next_multiple_of(memkit_sys::OS_PAGE);

/// Puts a heap in a page of its own; NULL + errno on failure.
fn boxed(r: Result<Heap, Errno>) -> *mut Heap {
    let heap = match r {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    match memkit_sys::map(HANDLE_BYTES) {
        Ok(p) => {
            let p = p.cast::<Heap>();
            // SAFETY: a fresh page-aligned mapping large enough for a Heap.
            unsafe { p.write(heap) };
            p
        }
        Err(e) => {
            drop(heap);
            fail(e)
        }
    }
}

fn fail<T>(e: Errno) -> *mut T {
    set_errno(e.0);
    null_mut()
}

fn minus_one(e: Errno) -> c_int {
    set_errno(e.0);
    -1
}

/// The handle behind `h`, or None (errno EINVAL) for NULL.
///
/// # Safety
/// `h` is NULL or a handle from create/open not yet closed.
unsafe fn heap<'a>(h: *mut Heap) -> Option<&'a Heap> {
    // SAFETY: per the contract.
    let r = unsafe { h.as_ref() };
    if r.is_none() {
        set_errno(EINVAL);
    }
    r
}

/// The bytes of a C string, or None (errno EINVAL) for NULL.
///
/// # Safety
/// `s` is NULL or NUL-terminated.
unsafe fn bytes<'a>(s: *const c_char) -> Option<&'a [u8]> {
    if s.is_null() {
        set_errno(EINVAL);
        return None;
    }
    // SAFETY: per the contract.
    Some(unsafe { CStr::from_ptr(s) }.to_bytes())
}

fn readonly(flags: c_int) -> Result<bool, Errno> {
    if flags & !READONLY != 0 {
        return Err(Errno(EINVAL));
    }
    Ok(flags & READONLY != 0)
}

/// `memkit_shm *memkit_shm_create(const char *name, size_t size, unsigned mode)`.
///
/// # Safety
/// `name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_create(
    name: *const c_char,
    size: usize,
    mode: c_uint,
) -> *mut Heap {
    // SAFETY: per the contract.
    let Some(name) = (unsafe { bytes(name) }) else {
        return null_mut();
    };
    boxed(Heap::create(name, size as u64, mode))
}

/// `memkit_shm *memkit_shm_create_anon(size_t size)`: a memfd heap.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_shm_create_anon(size: usize) -> *mut Heap {
    boxed(Heap::create_anon(size as u64))
}

/// `memkit_shm *memkit_shm_open(const char *name, int flags)`.
///
/// # Safety
/// `name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_open(name: *const c_char, flags: c_int) -> *mut Heap {
    // SAFETY: per the contract.
    let Some(name) = (unsafe { bytes(name) }) else {
        return null_mut();
    };
    boxed(readonly(flags).and_then(|ro| Heap::open(name, !ro)))
}

/// `memkit_shm *memkit_shm_open_fd(int fd, int flags)`: the fd is
/// duplicated.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_shm_open_fd(fd: c_int, flags: c_int) -> *mut Heap {
    boxed(readonly(flags).and_then(|ro| Heap::open_fd(fd, !ro)))
}

/// `int memkit_shm_fd(memkit_shm *h)`.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_fd(h: *mut Heap) -> c_int {
    // SAFETY: per the contract.
    unsafe { heap(h) }.map_or(-1, Heap::fd)
}

/// `int memkit_shm_close(memkit_shm *h)`.
///
/// # Safety
/// `h` is NULL or a live handle, unused by other threads from now on.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_close(h: *mut Heap) -> c_int {
    if h.is_null() {
        return minus_one(Errno(EINVAL));
    }
    // SAFETY: a live handle in its own page, given up by the caller.
    unsafe {
        h.drop_in_place();
        memkit_sys::unmap(h.cast(), HANDLE_BYTES);
    }
    0
}

/// `int memkit_shm_unlink(const char *name)`.
///
/// # Safety
/// `name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_unlink(name: *const c_char) -> c_int {
    // SAFETY: per the contract.
    let Some(name) = (unsafe { bytes(name) }) else {
        return -1;
    };
    Heap::unlink(name).map_or_else(minus_one, |_| 0)
}

/// `void *memkit_shm_alloc(memkit_shm *h, size_t size)`.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_alloc(h: *mut Heap, size: usize) -> *mut c_void {
    // SAFETY: per the contract.
    let Some(h) = (unsafe { heap(h) }) else {
        return null_mut();
    };
    h.alloc(size).map_or_else(fail, |p| p.as_ptr().cast())
}

/// `void memkit_shm_free(memkit_shm *h, void *p)`.
///
/// # Safety
/// `h` is NULL or a live handle; `p` is anything (only allocated blocks of
/// the heap are freed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_free(h: *mut Heap, p: *mut c_void) {
    // SAFETY: per the contract.
    if let Some(h) = unsafe { h.as_ref() } {
        h.free(p.cast());
    }
}

/// `uint64_t memkit_shm_offset(memkit_shm *h, const void *p)`.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_offset(h: *mut Heap, p: *const c_void) -> u64 {
    // SAFETY: per the contract.
    unsafe { h.as_ref() }.map_or(0, |h| h.offset(p.cast()))
}

/// `void *memkit_shm_at(memkit_shm *h, uint64_t offset)`.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_at(h: *mut Heap, offset: u64) -> *mut c_void {
    // SAFETY: per the contract.
    unsafe { h.as_ref() }.map_or(null_mut(), |h| h.at(offset).cast())
}

/// `void *memkit_shm_named(memkit_shm *h, const char *key, size_t size, int *created)`.
///
/// # Safety
/// `h` is NULL or a live handle; `key` NULL or NUL-terminated; `created`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_named(
    h: *mut Heap,
    key: *const c_char,
    size: usize,
    created: *mut c_int,
) -> *mut c_void {
    // SAFETY: per the contract.
    let (Some(h), Some(key)) = (unsafe { heap(h) }, unsafe { bytes(key) }) else {
        return null_mut();
    };
    match h.named(key, size) {
        Ok((p, new)) => {
            // SAFETY: per the contract.
            if let Some(c) = unsafe { created.as_mut() } {
                *c = new as c_int;
            }
            p.as_ptr().cast()
        }
        Err(e) => fail(e),
    }
}

/// `void *memkit_shm_named_next(memkit_shm *h, unsigned *cursor, const
/// char **key, size_t *size)`: iteration over named objects.
///
/// # Safety
/// `h` is NULL or a live handle; the out pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_named_next(
    h: *mut Heap,
    cursor: *mut c_uint,
    key: *mut *const c_char,
    size: *mut usize,
) -> *mut c_void {
    // SAFETY: per the contract.
    let (Some(h), Some(cursor)) = (unsafe { heap(h) }, unsafe { cursor.as_mut() }) else {
        set_errno(EINVAL);
        return null_mut();
    };
    while (*cursor as usize) < memkit_shm::layout::NAMED_MAX {
        let i = *cursor as usize;
        *cursor += 1;
        if let Some(e) = h.named_entry(i) {
            // SAFETY: per the contract.
            unsafe {
                if let Some(k) = key.as_mut() {
                    *k = h.named_key_ptr(i).cast();
                }
                if let Some(s) = size.as_mut() {
                    *s = e.size as usize;
                }
            }
            return h.at(e.offset).cast();
        }
    }
    null_mut()
}

/// `int memkit_shm_named_remove(memkit_shm *h, const char *key)`.
///
/// # Safety
/// `h` is NULL or a live handle; `key` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_named_remove(h: *mut Heap, key: *const c_char) -> c_int {
    // SAFETY: per the contract.
    let (Some(h), Some(key)) = (unsafe { heap(h) }, unsafe { bytes(key) }) else {
        return -1;
    };
    h.remove_named(key).map_or_else(minus_one, |_| 0)
}

/// `int memkit_shm_lock(memkit_shm *h)`.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_lock(h: *mut Heap) -> c_int {
    // SAFETY: per the contract.
    let Some(h) = (unsafe { heap(h) }) else {
        return -1;
    };
    match h.lock() {
        Ok(true) => OWNER_DIED,
        Ok(false) => 0,
        Err(e) => minus_one(e),
    }
}

/// `int memkit_shm_unlock(memkit_shm *h)`.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_unlock(h: *mut Heap) -> c_int {
    // SAFETY: per the contract.
    let Some(h) = (unsafe { heap(h) }) else {
        return -1;
    };
    h.unlock().map_or_else(minus_one, |_| 0)
}

/// `int memkit_shm_stats(memkit_shm *h, size_t *used, size_t *capacity)`.
///
/// # Safety
/// `h` is NULL or a live handle; the out pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_stats(
    h: *mut Heap,
    used: *mut usize,
    capacity: *mut usize,
) -> c_int {
    // SAFETY: per the contract.
    let Some(h) = (unsafe { heap(h) }) else {
        return -1;
    };
    match h.stats() {
        Ok(st) => {
            // SAFETY: per the contract.
            unsafe {
                if let Some(u) = used.as_mut() {
                    *u = st.used as usize;
                }
                if let Some(c) = capacity.as_mut() {
                    *c = st.capacity as usize;
                }
            }
            0
        }
        Err(e) => minus_one(e),
    }
}

/// `int memkit_shm_check(memkit_shm *h)`: 0, or the number of
/// inconsistencies found; -1 + EINVAL for NULL.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_shm_check(h: *mut Heap) -> c_int {
    // SAFETY: per the contract.
    let Some(h) = (unsafe { heap(h) }) else {
        return -1;
    };
    match h.check() {
        Ok(()) => 0,
        Err(p) => p.count.min(c_int::MAX as u32) as c_int,
    }
}
