//! Stack buffers that cannot overflow the stack: on the stack when they
//! fit with room to spare, else on memkit's heap.
//!
//! ```
//! use std::mem::MaybeUninit;
//!
//! let n = 1000;
//! let sum = memkit::stack::with_buffer(n, |buf: &mut [MaybeUninit<u8>]| {
//!     for (i, b) in buf.iter_mut().enumerate() {
//!         b.write(i as u8);
//!     }
//!     // SAFETY: every byte was written above.
//!     buf.iter().map(|b| unsafe { b.assume_init() } as u64).sum::<u64>()
//! });
//! assert_eq!(sum, (0..1000u64).map(|i| i % 256).sum::<u64>());
//! println!("{} bytes of stack left", memkit::stack::remaining());
//! ```
//!
//! The rule is the C header's (`include/memkit-stack.h`, docs/STACK.md):
//! a buffer goes on the stack only if it takes at most a quarter
//! ([`SHARE`]) of what [`remaining`] reports beyond a [`RED_ZONE`] of
//! 32 KiB. Stack buffers are frames of fixed sizes: the length in bytes
//! rounded up to a power of two from 256 B to [`MAX_STACK`] (1 MiB), so a
//! buffer may take up to twice its length of stack; the rule is applied to
//! that rounded size. Anything larger, or that does not fit, comes from
//! memkit's allocator (`memkit::raw`), whatever the global allocator is,
//! and is freed when the closure returns or unwinds.
//!
//! Rust's x86_64 code probes every page of a frame larger than a page in
//! order from the top (`probe-stack=inline-asm`), so a stack buffer never
//! jumps over a guard page.

use std::mem::{align_of, size_of, MaybeUninit};

use memkit_sys::stack;

pub use memkit_sys::stack::{RED_ZONE, SHARE};

/// The largest buffer put on the stack (longer ones always go to the heap).
pub const MAX_STACK: usize = 1 << 20;

/// The smallest stack frame a buffer takes.
const MIN_STACK: usize = 256;

/// What a stack frame adds to its buffer (return address, saved
/// registers, the call's own words), counted against the rule.
const FRAME: usize = 256;

/// Bytes between the caller and the end of the calling thread's usable
/// stack: the same computation as C's `memkit_stack_remaining` (the main
/// thread: the stack mapping and `RLIMIT_STACK`; other threads:
/// `pthread_getattr_np`), cached per thread on the first call. 0 when the
/// stack pointer is outside the thread's stack (an alternate signal stack)
/// or the stack is unknown.
pub fn remaining() -> usize {
    stack::remaining()
}

/// Calls `f` with `len` uninitialised bytes: on the stack when they fit
/// (see the [module](self) documentation), else on memkit's heap. The
/// buffer is aligned to 16 and released when `f` returns.
pub fn with_buffer<R>(len: usize, f: impl FnOnce(&mut [MaybeUninit<u8>]) -> R) -> R {
    with_buffer_of::<u8, R>(len, f)
}

/// [`with_buffer`] for `len` values of `T` (uninitialised; nothing is
/// dropped when the buffer is released). Panics if `len * size_of::<T>()`
/// overflows, and aborts if the heap fallback is out of memory.
pub fn with_buffer_of<T, R>(len: usize, f: impl FnOnce(&mut [MaybeUninit<T>]) -> R) -> R {
    let bytes = len
        .checked_mul(size_of::<T>())
        .expect("stack buffer size overflows usize");
    let align = align_of::<T>();
    // Frames are aligned to 16; a stricter alignment takes room to align in.
    let need = bytes.saturating_add(if align > 16 { align - 1 } else { 0 });
    if let Some(frame) = stack_frame_for(need) {
        let mut f = Some(f);
        let mut out = None;
        let mut run = |raw: *mut u8| {
            let p = raw
                .wrapping_add(raw.align_offset(align))
                .cast::<MaybeUninit<T>>();
            // SAFETY: p is aligned for T and `len` values of T fit between
            // p and the end of the frame's `frame` bytes (need <= frame);
            // the frame lives until `run` returns.
            let buf = unsafe { std::slice::from_raw_parts_mut(p, len) };
            out = Some((f.take().expect("called once"))(buf));
        };
        on_stack(frame, &mut run);
        return out.expect("the stack frame ran the closure");
    }
    let heap = HeapBuffer::new(bytes, align);
    // SAFETY: the block holds `bytes` = len * size_of::<T>() bytes aligned
    // to align_of::<T>() (dangling but aligned for 0 bytes), and lives
    // until `heap` drops, after `f`.
    let buf = unsafe { std::slice::from_raw_parts_mut(heap.ptr.cast::<MaybeUninit<T>>(), len) };
    f(buf)
}

/// The stack frame size for `need` bytes if it fits now.
fn stack_frame_for(need: usize) -> Option<usize> {
    if need > MAX_STACK {
        return None;
    }
    let frame = need.max(MIN_STACK).next_power_of_two();
    stack::fits(frame + FRAME, stack::remaining()).then_some(frame)
}

/// Runs `f` on a frame holding `frame` bytes (a power of two between
/// [`MIN_STACK`] and [`MAX_STACK`]).
fn on_stack(frame: usize, f: &mut dyn FnMut(*mut u8)) {
    match frame.trailing_zeros() {
        0..=8 => in_frame::<256>(f),
        9 => in_frame::<512>(f),
        10 => in_frame::<1024>(f),
        11 => in_frame::<2048>(f),
        12 => in_frame::<4096>(f),
        13 => in_frame::<8192>(f),
        14 => in_frame::<16384>(f),
        15 => in_frame::<32768>(f),
        16 => in_frame::<65536>(f),
        17 => in_frame::<131072>(f),
        18 => in_frame::<262144>(f),
        19 => in_frame::<524288>(f),
        _ => in_frame::<1048576>(f),
    }
}

#[repr(C, align(16))]
struct Frame<const N: usize>([MaybeUninit<u8>; N]);

/// The buffer is this function's frame: entering it moves the stack
/// pointer down by N (probed), returning gives it back.
#[inline(never)]
fn in_frame<const N: usize>(f: &mut dyn FnMut(*mut u8)) {
    let mut frame = Frame::<N>([MaybeUninit::uninit(); N]);
    f(frame.0.as_mut_ptr().cast());
}

/// A heap fallback, freed on drop (also when the closure unwinds).
struct HeapBuffer {
    ptr: *mut u8,
}

impl HeapBuffer {
    fn new(bytes: usize, align: usize) -> HeapBuffer {
        // SAFETY: align is a power of two (an alignment of a type).
        let ptr = unsafe { memkit_alloc::aligned_alloc(align.max(16), bytes.max(1)) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(bytes.max(1), align.max(16))
                    .expect("a valid layout"),
            );
        }
        HeapBuffer { ptr }
    }
}

impl Drop for HeapBuffer {
    fn drop(&mut self) {
        // SAFETY: a live block from aligned_alloc, freed once.
        unsafe { memkit_alloc::free(self.ptr) }
    }
}
