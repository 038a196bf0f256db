//! The layer's rules against a backend that records what it is asked.

extern crate std;

use core::ffi::c_void;
use core::ptr::null_mut;
use std::cell::RefCell;
use std::vec::Vec;

use crate::{c, cxx, errno, set_errno, Backend, Edge, Kind, EINVAL, ENOMEM};

#[derive(Debug, PartialEq)]
enum Call {
    Alloc(usize, usize, bool, Kind),
    Free(usize, Kind, &'static str),
    Realloc(usize, usize),
    Edge(Edge),
}

std::thread_local! {
    static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
    /// Whether alloc fails (null, as out of memory: errno ENOMEM).
    static FAIL: RefCell<bool> = const { RefCell::new(false) };
}

fn record(c: Call) {
    CALLS.with(|v| v.borrow_mut().push(c));
}

fn take() -> Vec<Call> {
    CALLS.with(|v| core::mem::take(&mut *v.borrow_mut()))
}

const BLOCK: usize = 0x1000;

struct Recorder;

// SAFETY: nothing it returns is ever dereferenced by these tests.
unsafe impl Backend for Recorder {
    type Site = ();
    fn site() {}
    unsafe fn alloc(size: usize, align: usize, zero: bool, kind: Kind, _: ()) -> *mut u8 {
        record(Call::Alloc(size, align, zero, kind));
        if FAIL.with(|f| *f.borrow()) {
            set_errno(ENOMEM);
            return null_mut();
        }
        BLOCK as *mut u8
    }
    unsafe fn free(p: *mut u8, kind: Kind, call: &'static str, _: ()) {
        record(Call::Free(p as usize, kind, call));
    }
    unsafe fn realloc(p: *mut u8, size: usize, _: ()) -> *mut u8 {
        record(Call::Realloc(p as usize, size));
        BLOCK as *mut u8
    }
    unsafe fn usable_size(p: *mut u8, _site: ()) -> usize {
        p as usize
    }
    fn edge(e: Edge, _: ()) {
        record(Call::Edge(e));
    }
}

type R = Recorder;

unsafe extern "C" fn realloc_export(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { c::realloc::<R>(p, size) }
}

#[test]
fn malloc_free_and_realloc_edges() {
    // SAFETY: the recorder hands out and takes back fake blocks only.
    unsafe {
        assert_eq!(c::malloc::<R>(0) as usize, BLOCK);
        c::free::<R>(null_mut());
        assert_eq!(c::realloc::<R>(null_mut(), 24) as usize, BLOCK);
        assert!(c::realloc::<R>(BLOCK as *mut c_void, 0).is_null());
        assert_eq!(c::realloc::<R>(BLOCK as *mut c_void, 40) as usize, BLOCK);
        assert_eq!(c::usable_size::<R>(0x20 as *mut c_void), 0x20);
    }
    assert_eq!(
        take(),
        [
            Call::Alloc(0, 16, false, Kind::Malloc),
            Call::Free(0, Kind::Malloc, "free"),
            Call::Alloc(24, 16, false, Kind::Malloc),
            Call::Free(BLOCK, Kind::Malloc, "realloc"),
            Call::Realloc(BLOCK, 40),
        ]
    );
}

#[test]
fn overflow_is_enomem_and_an_edge() {
    set_errno(0);
    // SAFETY: as above.
    unsafe {
        assert!(c::calloc::<R>(usize::MAX, 2).is_null());
        assert_eq!(errno(), ENOMEM);
        assert_eq!(c::calloc::<R>(3, 5) as usize, BLOCK);
        set_errno(0);
        let p = BLOCK as *mut c_void;
        assert!(c::reallocarray::<R>(p, 1 << 40, 1 << 40, realloc_export).is_null());
        assert_eq!(errno(), ENOMEM);
        assert_eq!(
            c::reallocarray::<R>(p, 3, 8, realloc_export) as usize,
            BLOCK
        );
        set_errno(0);
        assert!(c::pvalloc::<R>(usize::MAX).is_null());
        assert_eq!(errno(), ENOMEM);
        assert_eq!(c::pvalloc::<R>(0) as usize, BLOCK);
        assert_eq!(c::valloc::<R>(5) as usize, BLOCK);
    }
    assert_eq!(
        take(),
        [
            Call::Edge(Edge::CallocOverflow {
                n: usize::MAX,
                size: 2
            }),
            Call::Alloc(15, 16, true, Kind::Malloc),
            Call::Edge(Edge::ReallocarrayOverflow {
                n: 1 << 40,
                size: 1 << 40
            }),
            Call::Realloc(BLOCK, 24),
            Call::Alloc(4096, 4096, false, Kind::Malloc),
            Call::Alloc(5, 4096, false, Kind::Malloc),
        ]
    );
}

#[test]
fn alignment_rules() {
    let mut out = 0x1234 as *mut c_void;
    // SAFETY: as above; `out` is a local.
    unsafe {
        assert_eq!(c::posix_memalign::<R>(&mut out, 24, 10), EINVAL);
        assert_eq!(c::posix_memalign::<R>(&mut out, 4, 10), EINVAL);
        assert_eq!(out as usize, 0x1234, "written on failure");
        assert_eq!(c::posix_memalign::<R>(&mut out, 64, 10), 0);
        assert_eq!(out as usize, BLOCK);
        assert_eq!(c::memalign::<R>(24, 10) as usize, BLOCK);
        assert_eq!(c::aligned_alloc::<R>(0, 10) as usize, BLOCK);
        set_errno(0);
        assert!(c::memalign::<R>(usize::MAX, 10).is_null());
        assert_eq!(errno(), EINVAL);
        assert_eq!(
            cxx::new_aligned_nothrow::<R>(8, 48, Kind::NewArray) as usize,
            BLOCK
        );
    }
    let edge = |call, align| Call::Edge(Edge::AlignmentRoundedUp { call, align });
    assert_eq!(
        take(),
        [
            Call::Edge(Edge::PosixMemalignAlignment { align: 24 }),
            Call::Edge(Edge::PosixMemalignAlignment { align: 4 }),
            Call::Alloc(10, 64, false, Kind::Malloc),
            edge("memalign", 24),
            Call::Alloc(10, 32, false, Kind::Malloc),
            Call::Edge(Edge::AlignmentZero {
                call: "aligned_alloc"
            }),
            Call::Alloc(10, 1, false, Kind::Malloc),
            edge("memalign", usize::MAX),
            edge("operator new []", 48),
            Call::Alloc(8, 64, false, Kind::NewArray),
        ]
    );
}

#[test]
fn posix_memalign_keeps_errno_when_short_of_memory() {
    FAIL.with(|f| *f.borrow_mut() = true);
    set_errno(7);
    let mut out = 0x1234 as *mut c_void;
    // SAFETY: as above.
    let rc = unsafe { c::posix_memalign::<R>(&mut out, 64, 10) };
    FAIL.with(|f| *f.borrow_mut() = false);
    assert_eq!((rc, errno(), out as usize), (ENOMEM, 7, 0x1234));
    take();
}

#[test]
fn operators_carry_their_kind() {
    // SAFETY: as above.
    unsafe {
        cxx::new_nothrow::<R>(8, Kind::New);
        cxx::delete::<R>(BLOCK as *mut c_void, Kind::New);
        cxx::delete::<R>(BLOCK as *mut c_void, Kind::NewArray);
    }
    assert_eq!(
        take(),
        [
            Call::Alloc(8, 16, false, Kind::New),
            Call::Free(BLOCK, Kind::New, "operator delete"),
            Call::Free(BLOCK, Kind::NewArray, "operator delete []"),
        ]
    );
    assert_eq!(cxx::try_new::<R>(8, 16, 2) as usize, BLOCK);
    assert_eq!(take(), [Call::Alloc(8, 16, false, Kind::NewArray)]);
}
