//! libmemkit_check.so's exports: memkit-abi's export list, the throwing
//! `operator new` forms included (so that every C++ allocation is tagged
//! and `new`/`free`, `new[]`/`delete` mismatches are seen), over the
//! checking allocator ([`Checked`]). Glibc's argument rules are the
//! layer's; the calls glibc refuses or bends are reported here
//! (`calloc-overflow`, `invalid-alignment`) and still return what glibc
//! returns.

use core::ffi::c_void;

use memkit_abi::info::Mallinfo2;
use memkit_abi::{oom, Backend, Edge, Kind};
use memkit_trace::unwind::Regs;

use crate::report::{self, Report};
use crate::{block, stacks, tls};

/// The checking allocator ([`block`]) as a backend.
pub struct Checked;

// SAFETY: block::alloc returns null or a block of `size` bytes aligned to
// `align` (>= 16), zeroed when asked, live until block::free; its usable
// size is the size asked for.
unsafe impl Backend for Checked {
    /// The export's registers: stacks are unwound from the function the
    /// program called, so the checker's own frames cost nothing to unwind.
    type Site = Regs;

    #[inline(always)]
    fn site() -> Regs {
        memkit_trace::unwind::here()
    }

    /// Allocates as the checker's own code (its fills and table updates
    /// must not be checked by the mem* interceptors).
    #[inline(always)]
    unsafe fn alloc(size: usize, align: usize, zero: bool, kind: Kind, site: Regs) -> *mut u8 {
        // SAFETY: any size and a power-of-two alignment (at least 16).
        let p = tls::inside(|| unsafe { block::alloc(size, align.max(16), kind, zero, site) });
        scrub();
        oom(p)
    }

    #[inline(always)]
    unsafe fn free(p: *mut u8, kind: Kind, call: &'static str, site: Regs) {
        // SAFETY: free reports whatever p is.
        tls::inside(|| unsafe { block::free(p, kind, call, site) });
        scrub();
    }

    #[inline(always)]
    unsafe fn free_sized(p: *mut u8, size: usize, kind: Kind, call: &'static str, site: Regs) {
        // SAFETY: free reports whatever p is.
        tls::inside(|| unsafe { block::free_sized(p, size, kind, call, site) });
        scrub();
    }

    #[inline(always)]
    unsafe fn realloc(p: *mut u8, size: usize, site: Regs) -> *mut u8 {
        // SAFETY: realloc reports invalid and double frees.
        let n = tls::inside(|| unsafe { block::realloc(p, size, site) });
        scrub();
        oom(n)
    }

    #[inline(always)]
    unsafe fn usable_size(p: *mut u8, site: Regs) -> usize {
        let n = tls::inside(|| block::usable_size(p, site));
        scrub();
        n
    }

    #[inline(always)]
    fn edge(e: Edge, site: Regs) {
        report_edge(e, site)
    }
}

memkit_abi::exports!(Checked, throwing_new = true);

/// Zeroes the call-clobbered registers before an entry point returns to
/// the program. The checker's code leaves block addresses in them (a
/// record's fields, an evicted block); a program thread that then blocks
/// in a system call (which keeps them) holds them until the leak check
/// reads its registers as roots, and a block it leaked looks reachable.
#[inline(always)]
fn scrub() {
    // SAFETY: only writes registers the ABI lets a callee clobber, all
    // declared as outputs.
    unsafe {
        core::arch::asm!(
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor edi, edi",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            out("rcx") _,
            out("rdx") _,
            out("rsi") _,
            out("rdi") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// Reports a call glibc refuses or bends, with the caller's stack.
#[cold]
#[inline(never)]
fn report_edge(e: Edge, site: Regs) {
    match e {
        Edge::CallocOverflow { n, size } => report::emit(Report {
            kind: "calloc-overflow",
            message: format!(
                "calloc parameters overflow: count * size ({n} * {size}) cannot be represented"
            ),
            thread: tls::tid(),
            stack: stacks::at(site),
            ..Report::default()
        }),
        Edge::PosixMemalignAlignment { align } => bad_alignment(
            "posix_memalign",
            align,
            "not a power of two multiple of sizeof(void *)",
            site,
        ),
        Edge::AlignmentRoundedUp { call, align } => {
            bad_alignment(call, align, "not a power of two (glibc rounds it up)", site)
        }
        Edge::AlignmentZero { call } => bad_alignment(
            call,
            0,
            "not a valid alignment (glibc 2.36 serves it as malloc)",
            site,
        ),
        // AddressSanitizer's name; the block is left as it was.
        Edge::ReallocarrayOverflow { n, size } => report::emit(Report {
            kind: "reallocarray-overflow",
            message: format!(
                "reallocarray parameters overflow: count * size ({n} * {size}) cannot be represented"
            ),
            thread: tls::tid(),
            stack: stacks::at(site),
            ..Report::default()
        }),
    }
}

fn bad_alignment(func: &str, align: usize, why: &str, site: Regs) {
    report::emit(Report {
        kind: "invalid-alignment",
        message: format!("invalid alignment requested in {func}: {align:#x}, {why}"),
        address: align,
        thread: tls::tid(),
        stack: stacks::at(site),
        ..Report::default()
    });
}

/// `malloc_trim`: the core gives back its free memory (the quarantine
/// keeps its blocks); 1 if any was released.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> i32 {
    (tls::inside(memkit_alloc::trim) > 0) as i32
}

memkit_abi::info_exports!(info2);

/// What `mallinfo2` says under the checker (docs/CHECK.md,
/// "Introspection"): `uordblks` the bytes the program's live blocks were
/// asked with (as Valgrind's memcheck counts them), `fsmblks` what the
/// quarantine holds, `arena` the core's memory under both.
fn info2() -> Mallinfo2 {
    let h = block::heap_stats();
    let s = memkit_alloc::stats();
    let arena = s.mapped() as usize;
    Mallinfo2 {
        arena,
        ordblks: h.live_blocks,
        hblks: s.huge_live as usize,
        hblkhd: s.huge_live_bytes as usize,
        fsmblks: h.quarantine_bytes,
        uordblks: h.live_bytes,
        fordblks: arena.saturating_sub(h.live_bytes),
        keepcost: s.dirty as usize,
        ..Mallinfo2::default()
    }
}

/// The `malloc_stats` summary (and `malloc_info`'s figures).
fn stats_text() -> String {
    let h = block::heap_stats();
    let s = memkit_alloc::stats();
    format!(
        "memkit check malloc_stats (pid {})\n\
         \x20 in use:      {:>14} bytes in {} blocks (as the program asked for them)\n\
         \x20 quarantine:  {:>14} bytes in {} blocks (bound {} bytes; blocks, red zones and records)\n\
         \x20 core:        {:>14} bytes mapped, {} in use (blocks with their red zones), {} free but resident\n",
        memkit_sys::pid(),
        h.live_bytes,
        h.live_blocks,
        h.quarantine_bytes,
        h.quarantined,
        h.quarantine_bound,
        s.mapped(),
        s.in_use(),
        s.dirty,
    )
}

/// `malloc_stats(3)`: the summary on stderr.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_stats() {
    let t = tls::inside(stats_text);
    let _ = memkit_sys::write_all(2, t.as_bytes());
}

unsafe extern "C" {
    fn fwrite(p: *const c_void, size: usize, n: usize, f: *mut c_void) -> usize;
}

/// `malloc_info(3)`: XML in glibc's shape, one `<heap>` (the checker's
/// blocks are not per thread); `options` must be 0 (`EINVAL` otherwise,
/// like glibc).
///
/// # Safety
/// `fp` is a `FILE *` open for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_info(options: i32, fp: *mut c_void) -> i32 {
    if options != 0 || fp.is_null() {
        memkit_abi::set_errno(memkit_abi::EINVAL);
        return -1;
    }
    let text = tls::inside(|| {
        let h = block::heap_stats();
        let s = memkit_alloc::stats();
        format!(
            "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n\
             <total type=\"fast\" count=\"0\" size=\"0\"/>\n\
             <total type=\"rest\" count=\"{}\" size=\"{}\"/>\n\
             <total type=\"inuse\" count=\"{}\" size=\"{}\"/>\n</heap>\n\
             <total type=\"fast\" count=\"0\" size=\"0\"/>\n\
             <total type=\"rest\" count=\"{}\" size=\"{}\"/>\n\
             <total type=\"mmap\" count=\"{}\" size=\"{}\"/>\n\
             <system type=\"current\" size=\"{}\"/>\n\
             <system type=\"max\" size=\"{}\"/>\n\
             <aspace type=\"total\" size=\"{}\"/>\n\
             <aspace type=\"mprotect\" size=\"{}\"/>\n</malloc>\n",
            h.quarantined,
            h.quarantine_bytes,
            h.live_blocks,
            h.live_bytes,
            h.quarantined,
            h.quarantine_bytes,
            s.huge_live,
            s.huge_live_bytes,
            s.mapped(),
            s.peak_mapped,
            s.mapped(),
            s.mapped(),
        )
    });
    // SAFETY: per the contract; the text is ours.
    let n = unsafe { fwrite(text.as_ptr().cast(), 1, text.len(), fp) };
    if n == text.len() {
        0
    } else {
        -1
    }
}
