//! The core's introspection with glibc's interfaces (libmemkit.so and
//! libmemkit_profile.so, whose heap is the core's): `mallinfo`,
//! `mallinfo2`, `malloc_trim`, `malloc_stats`, `malloc_info`, `mallopt`.
//! Field meanings are documented in README ("Introspection"). The
//! exports themselves are defined in each library by
//! [`core_info_exports!`](crate::core_info_exports).

use core::ffi::c_void;
use core::fmt::Write;

use memkit_alloc::size_class::NBINS;
use memkit_alloc::util::BufWriter;
use memkit_alloc::AllocStats;

use crate::{set_errno, EINVAL};

/// Defines, in the calling crate, `mallinfo2`, `mallinfo`, `mallopt`,
/// `malloc_trim`, `malloc_stats` and `malloc_info` over the core.
#[macro_export]
macro_rules! core_info_exports {
    () => {
        $crate::info_exports!($crate::info::core_info2);

        /// `malloc_trim(3)`: returns free memory to the OS now; 1 if any
        /// was released. `pad` is accepted and ignored (memkit has no heap
        /// top to keep padding on).
        #[unsafe(no_mangle)]
        pub extern "C" fn malloc_trim(_pad: usize) -> i32 {
            $crate::core_info::trim()
        }

        /// `malloc_stats(3)`: the summary on stderr.
        #[unsafe(no_mangle)]
        pub extern "C" fn malloc_stats() {
            $crate::core_info::write_stats(2);
        }

        /// `malloc_info(3)` (see `memkit_abi::core_info::malloc_info`).
        ///
        /// # Safety
        /// `fp` is a `FILE *` open for writing, or null.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn malloc_info(options: i32, fp: *mut core::ffi::c_void) -> i32 {
            // SAFETY: per the contract.
            unsafe { $crate::core_info::malloc_info(options, fp) }
        }
    };
}

/// `malloc_trim`'s work: 1 if the core released memory.
pub fn trim() -> i32 {
    (memkit_alloc::trim() > 0) as i32
}

/// Writes the human summary of `malloc_stats` to `fd`.
pub fn write_stats(fd: i32) {
    let s = memkit_alloc::stats();
    let mut w = BufWriter::<512>::new();
    let _ = writeln!(
        w,
        "memkit {} malloc_stats (pid {})",
        env!("CARGO_PKG_VERSION"),
        memkit_sys::pid()
    );
    w.flush_to(fd);
    let _ = writeln!(
        w,
        "  in use:      {:>14} bytes  (small/medium {}, huge {} in {} blocks)",
        s.in_use(),
        s.small_in_use,
        s.huge_live_bytes,
        s.huge_live
    );
    w.flush_to(fd);
    let _ = writeln!(w, "  peak in use: {:>14} bytes  (sampled)", s.peak_in_use);
    w.flush_to(fd);
    let _ = writeln!(
        w,
        "  mapped:      {:>14} bytes  (segments {}, huge {}; peak {})",
        s.mapped(),
        s.segment_mapped,
        s.huge_mapped,
        s.peak_mapped
    );
    w.flush_to(fd);
    let _ = writeln!(
        w,
        "  returned:    {:>14} bytes unmapped, {} bytes purged; {} bytes free but resident",
        s.unmapped, s.purged, s.dirty
    );
    w.flush_to(fd);
    let _ = writeln!(
        w,
        "  calls:       {} allocations, {} frees, {} reallocs; {} bytes allocated; {} huge",
        s.allocs, s.frees, s.reallocs, s.allocated, s.huge_allocs
    );
    w.flush_to(fd);
    let _ = writeln!(
        w,
        "  threads:     {} seen, {} live heaps, {} dead heaps; cache: {} segments, {} huge blocks",
        s.threads, s.live_heaps, s.dead_heaps, s.cached_segments, s.cached_huge
    );
    w.flush_to(fd);
    let _ = writeln!(
        w,
        "  per thread heap:   allocations        frees   in use (bytes, this heap's net)"
    );
    w.flush_to(fd);
    let mut n = 0;
    memkit_alloc::heap::for_each_heap(|h, live| {
        n += 1;
        if n > 64 {
            return;
        }
        let sums = h.stats.sums();
        let _ = writeln!(
            w,
            "    {:#014x} {:<4} {:>12} {:>12} {:>12}",
            h as *const _ as usize,
            if live { "live" } else { "dead" },
            sums.allocs,
            sums.frees,
            sums.in_use
        );
        w.flush_to(fd);
    });
    if n > 64 {
        let _ = writeln!(w, "    ... and {} more heaps", n - 64);
        w.flush_to(fd);
    }
    let mut bins = [(0u32, 0u64, 0u64, 0u64); NBINS];
    memkit_alloc::heap::for_each_own_page(|bin, _bs, used, cap, res| {
        let b = &mut bins[bin];
        b.0 += 1;
        b.1 += used as u64;
        b.2 += cap as u64;
        b.3 += res as u64;
    });
    let _ = writeln!(
        w,
        "  size classes of this thread's heap: block size, pages, blocks used / carved / room"
    );
    w.flush_to(fd);
    for (bin, b) in bins.iter().enumerate() {
        if b.0 > 0 {
            let _ = writeln!(
                w,
                "    {:>8} B {:>6} {:>10} / {:>10} / {:>10}",
                memkit_alloc::size_class::bin_size(bin),
                b.0,
                b.1,
                b.2,
                b.3
            );
            w.flush_to(fd);
        }
    }
}

unsafe extern "C" {
    fn fwrite(p: *const c_void, size: usize, n: usize, f: *mut c_void) -> usize;
}

struct FileWriter {
    f: *mut c_void,
    buf: BufWriter<1024>,
}

impl FileWriter {
    fn flush(&mut self) {
        let b = self.buf.as_bytes();
        // SAFETY: the caller of malloc_info passed a valid FILE*.
        unsafe { fwrite(b.as_ptr().cast(), 1, b.len(), self.f) };
        self.buf.clear();
    }
}

impl Write for FileWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.buf.as_bytes().len() + s.len() > 1000 {
            self.flush();
        }
        if s.len() > 1000 {
            // SAFETY: as above.
            unsafe { fwrite(s.as_ptr().cast(), 1, s.len(), self.f) };
            return Ok(());
        }
        self.buf.write_str(s)
    }
}

fn xml(w: &mut impl Write, s: &AllocStats) -> core::fmt::Result {
    writeln!(w, "<malloc version=\"1\">")?;
    // Gather first: writing may allocate (stdio buffers), which must not
    // happen while the heap registry is locked.
    let mut heaps = [(false, 0u64, 0u64, 0i64); 256];
    let mut n = 0;
    memkit_alloc::heap::for_each_heap(|h, live| {
        if n < heaps.len() {
            let sums = h.stats.sums();
            heaps[n] = (live, sums.allocs, sums.frees, sums.in_use);
            n += 1;
        }
    });
    for (nr, &(live, allocs, frees, in_use)) in heaps[..n].iter().enumerate() {
        writeln!(
            w,
            "<heap nr=\"{nr}\" state=\"{}\">",
            if live { "live" } else { "dead" }
        )?;
        writeln!(w, "<sizes>\n</sizes>")?;
        writeln!(w, "<total type=\"fast\" count=\"0\" size=\"0\"/>")?;
        writeln!(w, "<total type=\"rest\" count=\"0\" size=\"0\"/>")?;
        writeln!(
            w,
            "<total type=\"inuse\" count=\"{}\" size=\"{}\"/>",
            allocs.saturating_sub(frees),
            in_use.max(0)
        )?;
        writeln!(w, "</heap>")?;
    }
    writeln!(w, "<total type=\"fast\" count=\"0\" size=\"0\"/>")?;
    writeln!(
        w,
        "<total type=\"rest\" count=\"{}\" size=\"{}\"/>",
        s.cached_segments + s.cached_huge,
        s.dirty
    )?;
    writeln!(
        w,
        "<total type=\"mmap\" count=\"{}\" size=\"{}\"/>",
        s.huge_live, s.huge_live_bytes
    )?;
    writeln!(w, "<system type=\"current\" size=\"{}\"/>", s.mapped())?;
    writeln!(w, "<system type=\"max\" size=\"{}\"/>", s.peak_mapped)?;
    writeln!(w, "<aspace type=\"total\" size=\"{}\"/>", s.mapped())?;
    writeln!(w, "<aspace type=\"mprotect\" size=\"{}\"/>", s.mapped())?;
    writeln!(w, "</malloc>")
}

/// `malloc_info(3)`: XML in glibc's shape (one `<heap>` per memkit heap).
/// `options` must be 0 (EINVAL otherwise, like glibc).
///
/// # Safety
/// `fp` is a `FILE *` open for writing, or null.
pub unsafe fn malloc_info(options: i32, fp: *mut c_void) -> i32 {
    if options != 0 || fp.is_null() {
        set_errno(EINVAL);
        return -1;
    }
    let s = memkit_alloc::stats();
    let mut w = FileWriter {
        f: fp,
        buf: BufWriter::new(),
    };
    let r = xml(&mut w, &s);
    w.flush();
    if r.is_ok() {
        0
    } else {
        -1
    }
}
