//! memkit::stack: where buffers go (the thread's stack below the caller,
//! or memkit's heap), the rule at small and deep stacks, nothing left
//! allocated. A buffer is on the stack when it lies inside the thread's
//! stack (glibc's attributes) below the caller and memkit's allocator
//! does not know it; on the heap when memkit knows it as a live block.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use memkit::stack::{self, RED_ZONE, SHARE};

/// Tests that count memkit's live bytes run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The calling thread's stack, per glibc.
fn thread_stack() -> (usize, usize) {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut addr = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: attr is initialised by pthread_getattr_np, destroyed after.
    unsafe {
        assert_eq!(
            libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()),
            0
        );
        assert_eq!(
            libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size),
            0
        );
        libc::pthread_attr_destroy(attr.as_mut_ptr());
    }
    (addr as usize, addr as usize + size)
}

fn live_block(p: *const u8) -> usize {
    // SAFETY: usable_size accepts any pointer memkit never handed out.
    unsafe { memkit::raw::usable_size(p as *mut u8) }
}

#[derive(Debug, PartialEq)]
enum Place {
    Stack,
    Heap,
}

/// Where `len` bytes at `p` are, asserting it is one or the other. (Not
/// inlined: its frame stays out of the recursion's.)
#[inline(never)]
fn place(p: *const u8, len: usize, frame: *const u8) -> Place {
    let (lo, hi) = thread_stack();
    let a = p as usize;
    if a >= lo && a + len <= frame as usize && live_block(p) == 0 {
        Place::Stack
    } else {
        assert!(
            a + len <= lo || a >= hi,
            "{a:#x} partly on the stack {lo:#x}-{hi:#x}"
        );
        assert!(
            live_block(p) >= len,
            "{a:#x} neither on the stack nor a heap block"
        );
        Place::Heap
    }
}

fn buffer_place(len: usize) -> Place {
    let here = 0u8;
    let frame = std::hint::black_box(&here) as *const u8;
    stack::with_buffer(len, |buf| {
        assert_eq!(buf.len(), len);
        assert_eq!(buf.as_ptr() as usize % 16, 0);
        buf.fill(MaybeUninit::new(7));
        place(buf.as_ptr().cast(), len, frame)
    })
}

fn on_thread<R: Send + 'static>(stack: usize, f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_64_kib_thread_puts_1_kib_on_the_stack_and_60_kib_or_1_mib_on_the_heap() {
    let _s = serial();
    let before = memkit::stats().in_use();
    on_thread(64 * 1024, || {
        let (lo, hi) = thread_stack();
        let here = 0u8;
        let sp = std::hint::black_box(&here) as *const u8 as usize;
        let r = stack::remaining();
        assert!(hi - lo <= 80 * 1024, "stack {lo:#x}-{hi:#x}");
        assert!(
            r <= sp - lo && sp - lo - r < 2048,
            "remaining {r}, from here {}",
            sp - lo
        );
        assert_eq!(buffer_place(1024), Place::Stack);
        assert_eq!(buffer_place(60 * 1024), Place::Heap);
        assert_eq!(buffer_place(1 << 20), Place::Heap);
    });
    assert_eq!(memkit::stats().in_use(), before, "left allocated");
}

#[test]
fn typed_buffers_are_aligned_for_their_type() {
    #[repr(align(4096))]
    struct Page(#[allow(dead_code)] [u8; 4096]);
    on_thread(1 << 20, || {
        stack::with_buffer_of::<u64, _>(100, |buf| {
            assert_eq!(buf.len(), 100);
            assert_eq!(buf.as_ptr() as usize % 8, 0);
        });
        let here = 0u8;
        let frame = std::hint::black_box(&here) as *const u8;
        for n in [1, 3, 100] {
            let p = stack::with_buffer_of::<Page, _>(n, |buf| {
                assert_eq!(buf.len(), n);
                assert_eq!(buf.as_ptr() as usize % 4096, 0);
                place(buf.as_ptr().cast(), n * 4096, frame)
            });
            // 100 pages and room to align them (a 512 KiB frame) are more
            // than a quarter of a 1 MiB stack beyond the red zone; 1 and 3
            // pages fit.
            assert_eq!(p, if n == 100 { Place::Heap } else { Place::Stack }, "{n}");
        }
        // Zero-sized types and empty buffers.
        stack::with_buffer_of::<(), _>(1 << 40, |buf| assert_eq!(buf.len(), 1 << 40));
        stack::with_buffer(0, |buf| assert!(buf.is_empty()));
    });
}

const DEPTH: usize = 1000;
const LEVEL: usize = 64 * 1024;

/// Each level: remaining() on entry, whether its buffer was on the stack.
fn recurse(depth: usize, frame_top: usize, out: &mut Vec<(usize, bool)>) {
    if depth == DEPTH {
        return;
    }
    let r = stack::remaining();
    let here = 0u8;
    let frame = std::hint::black_box(&here) as *const u8;
    stack::with_buffer(LEVEL, |buf| {
        let on_stack = place(buf.as_ptr().cast(), LEVEL, frame) == Place::Stack;
        assert!(!on_stack || (buf.as_ptr() as usize) < frame_top);
        out.push((r, on_stack));
        buf.fill(MaybeUninit::new(depth as u8));
        recurse(depth + 1, frame_top, out);
        check_fill(buf, depth as u8);
    });
}

/// Nothing deeper wrote into a level's buffer.
#[inline(never)]
fn check_fill(buf: &[MaybeUninit<u8>], v: u8) {
    // SAFETY: the level filled every byte.
    let filled = unsafe { &*(buf as *const [MaybeUninit<u8>] as *const [u8]) };
    assert!(filled.iter().step_by(4093).all(|&b| b == v));
}

#[test]
fn recursion_1000_deep_with_64_kib_a_level_on_an_8_mib_stack() {
    let _s = serial();
    let s0 = memkit::stats();
    let levels = on_thread(8 << 20, || {
        let here = 0u8;
        let top = std::hint::black_box(&here) as *const u8 as usize;
        let mut out = Vec::with_capacity(DEPTH);
        recurse(0, top, &mut out);
        out
    });
    let s1 = memkit::stats();
    assert_eq!(levels.len(), DEPTH);
    let stacked = levels.iter().take_while(|l| l.1).count();
    // On the stack while it fits, then the heap, never back.
    assert!(levels[stacked..].iter().all(|l| !l.1));
    // A 64 KiB frame and its few hundred bytes need SHARE (4) times that
    // beyond the red zone; 8 MiB hold about (8 MiB - 32 KiB - 256 KiB) /
    // 64 KiB, and leave the 874 levels on the heap at least 288 KiB.
    let need = RED_ZONE + SHARE * (LEVEL + 256);
    for (d, &(r, on_stack)) in levels.iter().enumerate() {
        if d > 0 {
            assert!(r < levels[d - 1].0, "remaining grew at depth {d}");
        }
        assert!(
            if on_stack { r >= need } else { r < need + 2048 },
            "depth {d}: {r} left, on the stack: {on_stack}"
        );
    }
    assert!(
        (105..=124).contains(&stacked),
        "{stacked} levels on the stack"
    );
    eprintln!(
        "{stacked} levels on the stack, {} on the heap",
        DEPTH - stacked
    );
    // The heap levels were memkit's blocks, all freed again.
    assert!(s1.allocs - s0.allocs >= (DEPTH - stacked) as u64);
    assert_eq!(s1.in_use(), s0.in_use(), "left allocated");
}

#[test]
fn remaining_shrinks_as_the_stack_deepens() {
    fn deeper(n: usize, out: &mut Vec<usize>) {
        let pad = [0u8; 2048];
        std::hint::black_box(&pad);
        out.push(stack::remaining());
        if n > 0 {
            deeper(n - 1, out);
        }
    }
    on_thread(1 << 20, || {
        let mut r = Vec::new();
        deeper(50, &mut r);
        assert!(r[0] > 900 * 1024 && r[0] < 1 << 20, "{}", r[0]);
        for w in r.windows(2) {
            assert!(w[1] + 2048 <= w[0], "{w:?}");
        }
    });
}

/// A thread that forks: the child's only thread has the pid for its id
/// but runs on the thread's stack, which is what remaining() measures.
#[test]
fn a_child_forked_by_a_thread_measures_the_thread_stack() {
    on_thread(256 * 1024, || {
        let (lo, _) = thread_stack();
        // SAFETY: the child only measures and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let here = 0u8;
            let sp = std::hint::black_box(&here) as *const u8 as usize;
            let r = stack::remaining();
            let ok = r > 128 * 1024 && r <= sp - lo && sp - lo - r < 4096;
            // SAFETY: ends the child without running the parent's exit code.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
    });
}

#[test]
fn a_panicking_closure_frees_its_heap_buffer() {
    let _s = serial();
    let before = memkit::stats().in_use();
    let r = std::panic::catch_unwind(|| {
        stack::with_buffer(2 << 20, |buf| {
            assert!(live_block(buf.as_ptr().cast()) >= 2 << 20);
            panic!("inside");
        })
    });
    assert!(r.is_err());
    assert_eq!(memkit::stats().in_use(), before);
}
