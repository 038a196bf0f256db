//! The C API of heaps that are no thread's (`memkit_heap_*` in
//! `include/memkit.h`) over `memkit_alloc::heap::arena`: one line each,
//! with the C conventions (NULL and errno) applied here. A
//! `memkit_heap_t *` is the arena's `memkit_alloc::heap::Heap`.

use core::ffi::c_int;
use core::ptr::null_mut;

use memkit_alloc::arena::Arena;
use memkit_alloc::heap::{arena, Heap};

use crate::{set_errno, EINVAL, ENOMEM};

/// NULL with errno ENOMEM when `p` is NULL.
fn or_enomem(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p
}

/// `memkit_heap_t *memkit_heap_new(void)`: a heap over the OS.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_heap_new() -> *mut Heap {
    Arena::new().map_or_else(
        || {
            set_errno(ENOMEM);
            null_mut()
        },
        Arena::into_raw,
    )
}

/// `memkit_heap_t *memkit_heap_new_fd(int fd, size_t max)`: a heap whose
/// blocks live in the first `max` bytes of the file `fd`, mapped shared.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_heap_new_fd(fd: c_int, max: usize) -> *mut Heap {
    match Arena::with_fd(fd, max) {
        Ok(a) => a.into_raw(),
        Err(e) => {
            set_errno(e.0);
            null_mut()
        }
    }
}

/// `void *memkit_heap_malloc(memkit_heap_t *heap, size_t size)`.
///
/// # Safety
/// `heap` is NULL or a live heap that no other thread uses meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_heap_malloc(heap: *mut Heap, size: usize) -> *mut u8 {
    if heap.is_null() {
        set_errno(EINVAL);
        return null_mut();
    }
    // SAFETY: per the contract.
    or_enomem(unsafe { arena::alloc(heap, size) })
}

/// `void *memkit_heap_calloc(memkit_heap_t *heap, size_t count, size_t size)`.
///
/// # Safety
/// As [`memkit_heap_malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_heap_calloc(heap: *mut Heap, count: usize, size: usize) -> *mut u8 {
    if heap.is_null() {
        set_errno(EINVAL);
        return null_mut();
    }
    // SAFETY: per the contract.
    or_enomem(unsafe { arena::calloc(heap, count, size) })
}

/// `void *memkit_heap_malloc_aligned(memkit_heap_t *heap, size_t size,
/// size_t alignment)`: EINVAL unless `alignment` is a power of two.
///
/// # Safety
/// As [`memkit_heap_malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_heap_malloc_aligned(
    heap: *mut Heap,
    size: usize,
    alignment: usize,
) -> *mut u8 {
    if heap.is_null() || !alignment.is_power_of_two() {
        set_errno(EINVAL);
        return null_mut();
    }
    // SAFETY: per the contract.
    or_enomem(unsafe { arena::alloc_aligned(heap, alignment, size) })
}

/// `void memkit_heap_free(void *p)`: `free`, for programs that link
/// libmemkit.so without preloading it.
///
/// # Safety
/// As `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_heap_free(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { memkit_alloc::free(p) }
}

/// `void *memkit_heap_base(memkit_heap_t *heap)`: where an fd heap maps
/// offset 0 of its file; NULL (errno EINVAL) for other heaps.
///
/// # Safety
/// `heap` is NULL or a live heap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_heap_base(heap: *mut Heap) -> *mut u8 {
    let mapping = if heap.is_null() {
        None
    } else {
        // SAFETY: per the contract, a live heap.
        unsafe { arena::mapping(heap) }
    };
    match mapping {
        Some((base, _)) => base,
        None => {
            set_errno(EINVAL);
            null_mut()
        }
    }
}

/// `void memkit_heap_destroy(memkit_heap_t *heap)`: frees every block of
/// the heap and the heap.
///
/// # Safety
/// `heap` is NULL or a live heap; none of its blocks is used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memkit_heap_destroy(heap: *mut Heap) {
    // SAFETY: per the contract; the Arena destroys it when dropped.
    drop(unsafe { Arena::from_raw(heap) });
}
