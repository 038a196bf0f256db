//! Bin queues: per bin, the heap's pages that have free blocks, first
//! page first (owner only).

use super::*;

/// # Safety
/// `h` is owned by the caller; `p` is a page of `h` not in any queue.
pub(super) unsafe fn queue_push_front(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).bin as usize;
        let f = (*h).first[bin];
        (*p).prev = null_mut();
        if f == empty_page() {
            (*p).next = null_mut();
            (*h).last[bin] = p;
        } else {
            (*p).next = f;
            (*f).prev = p;
        }
        (*h).first[bin] = p;
    }
}

/// # Safety
/// As [`queue_push_front`].
pub(super) unsafe fn queue_push_back(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).bin as usize;
        let l = (*h).last[bin];
        (*p).next = null_mut();
        if l == empty_page() {
            (*p).prev = null_mut();
            (*h).first[bin] = p;
        } else {
            (*p).prev = l;
            (*l).next = p;
        }
        (*h).last[bin] = p;
    }
}

/// # Safety
/// `h` is owned by the caller; `p` is in its bin queue.
pub(super) unsafe fn queue_remove(h: *mut Heap, p: *mut Page) {
    // SAFETY: per the contract.
    unsafe {
        let bin = (*p).bin as usize;
        let (n, pr) = ((*p).next, (*p).prev);
        if pr.is_null() {
            (*h).first[bin] = if n.is_null() { empty_page() } else { n };
        } else {
            (*pr).next = n;
        }
        if n.is_null() {
            (*h).last[bin] = if pr.is_null() { empty_page() } else { pr };
        } else {
            (*n).prev = pr;
        }
        (*p).next = null_mut();
        (*p).prev = null_mut();
    }
}
