//! The leak check at exit, LeakSanitizer's way: stop the other threads,
//! scan the roots for anything that looks like a pointer into a live block
//! (interior pointers count), flood-fill through the blocks found; what is
//! never reached is leaked — `direct` when no leaked block points to it,
//! `indirect` when only leaked blocks do. Leaks are grouped by allocation
//! stack and kind, biggest first.
//!
//! Threads are stopped by a signal (`STOP_SIGNAL`) whose handler saves the
//! thread's registers and stack pointer and waits until the scan is over; a
//! thread that blocks the signal is not stopped and its stack is not
//! scanned (its blocks may then show as leaks).

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use crate::report::{self, Report};
use crate::roots::{self, Mapping};
use crate::table::{self, State};

/// The signal that stops threads for the scan (SIGRTMAX - 2).
pub fn stop_signal() -> i32 {
    libc::SIGRTMAX() - 2
}

const MAX_THREADS: usize = 1024;
const NREGS: usize = 23;

struct Stopped {
    tid: AtomicUsize,
    sp: AtomicUsize,
    tp: AtomicUsize,
    regs: [AtomicUsize; NREGS],
}

static STOPPED: [Stopped; MAX_THREADS] = [const {
    Stopped {
        tid: AtomicUsize::new(0),
        sp: AtomicUsize::new(0),
        tp: AtomicUsize::new(0),
        regs: [const { AtomicUsize::new(0) }; NREGS],
    }
}; MAX_THREADS];
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
static LEFT: AtomicUsize = AtomicUsize::new(0);
static RELEASE: AtomicUsize = AtomicUsize::new(0);

fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: fs:0 holds the thread pointer itself on x86_64 glibc.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly))
    };
    tp
}

extern "C" fn on_stop(_sig: i32, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Async-signal-safe: atomics, one syscall.
    let i = ARRIVED.fetch_add(1, AcqRel);
    if i < MAX_THREADS {
        let s = &STOPPED[i];
        // SAFETY: the kernel passes a ucontext_t as the third argument.
        let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
        for (r, v) in s.regs.iter().zip(uc.uc_mcontext.gregs.iter()) {
            r.store(*v as usize, Relaxed);
        }
        s.sp.store(
            uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize,
            Relaxed,
        );
        s.tp.store(thread_pointer(), Relaxed);
        // SAFETY: gettid has no preconditions.
        s.tid.store(unsafe { libc::gettid() } as usize, Release);
    }
    while RELEASE.load(Acquire) == 0 {
        // SAFETY: sched_yield is async-signal-safe.
        unsafe { libc::sched_yield() };
    }
    LEFT.fetch_add(1, AcqRel);
}

/// The other threads, but not the exited ones: a main thread that left
/// with pthread_exit stays listed, a zombie no signal reaches (the check
/// waited 2 s for it).
fn other_threads() -> Vec<i32> {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&t: &i32| t != me && !exited(t))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether thread `tid` has exited (state Z or X in its stat line).
fn exited(tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return true;
    };
    // "tid (comm) S ...": the comm may hold spaces and parentheses.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| matches!(state, "Z" | "X"))
}

/// Stops the threads `tids`; returns how many stopped and the old
/// handler. Allocates nothing (the caller may hold the side table).
fn stop_all(tids: &[i32]) -> (usize, libc::sigaction) {
    ARRIVED.store(0, Relaxed);
    LEFT.store(0, Relaxed);
    RELEASE.store(0, Relaxed);
    // SAFETY: installing a handler with a zeroed, then filled, sigaction.
    let old = unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_stop as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigfillset(&mut sa.sa_mask);
        let mut old: libc::sigaction = core::mem::zeroed();
        libc::sigaction(stop_signal(), &sa, &mut old);
        old
    };
    let mut sent = 0;
    for &t in tids {
        // SAFETY: signalling a thread of our own process.
        if unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), t, stop_signal()) } == 0 {
            sent += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while ARRIVED.load(Acquire) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    (ARRIVED.load(Acquire).min(MAX_THREADS), old)
}

fn resume_all(arrived: usize, old: libc::sigaction) {
    RELEASE.store(1, Release);
    let deadline = Instant::now() + Duration::from_secs(2);
    while LEFT.load(Acquire) < ARRIVED.load(Acquire) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = arrived;
    // SAFETY: restoring the handler saved by stop_all.
    unsafe { libc::sigaction(stop_signal(), &old, core::ptr::null_mut()) };
}

struct Live {
    user: usize,
    size: usize,
    stack: u32,
    /// 0 unreached, 1 reachable, 2 indirect ([`LEADER`] while its flood
    /// runs).
    mark: u8,
}

/// The mark of the unreached block whose contents are being flooded.
const LEADER: u8 = 3;

struct Heap {
    blocks: Vec<Live>,
    lo: usize,
    hi: usize,
}

impl Heap {
    fn find(&self, v: usize) -> Option<usize> {
        if v < self.lo || v >= self.hi {
            return None;
        }
        let i = self.blocks.partition_point(|b| b.user <= v);
        if i == 0 {
            return None;
        }
        let b = &self.blocks[i - 1];
        (v < b.user + b.size.max(1)).then_some(i - 1)
    }

    /// Marks every block a word of `[a, b)` points into with `mark` (only
    /// blocks still at `from`), and queues them.
    fn scan(&mut self, a: usize, b: usize, from: u8, mark: u8, work: &mut Vec<usize>) {
        let mut p = (a + 7) & !7;
        while p + 8 <= b {
            // SAFETY: callers pass readable ranges (mapped roots, live blocks).
            let v = unsafe { (p as *const usize).read_volatile() };
            if let Some(i) = self.find(v) {
                if self.blocks[i].mark == from {
                    self.blocks[i].mark = mark;
                    work.push(i);
                }
            }
            p += 8;
        }
    }

    fn flood(&mut self, work: &mut Vec<usize>, from: u8, mark: u8) {
        while let Some(i) = work.pop() {
            let (u, s) = (self.blocks[i].user, self.blocks[i].size);
            self.scan(u, u + s, from, mark, work);
        }
    }
}

unsafe extern "C" {
    /// ld.so's: its address names the dynamic linker's module.
    fn __tls_get_addr();
}

/// Where the exiting thread's stack is scanned from: the `sp` of the frame
/// that called `exit`, found by unwinding from `my` (the registers of the
/// checker's `fini`) past the frames of this library, ld.so (`_dl_fini`)
/// and libc (`exit`, `__run_exit_handlers`, and after a return from `main`
/// `__libc_start_call_main`). Between `fini` and that frame lie the exit
/// path's frames, whose unused slots still hold what the program's deeper
/// calls left there (a `std::map` built by a constructor kept its leaked
/// node's address in one: reachable, where Valgrind found it lost), and,
/// after a return from `main`, `main`'s own frame, whose locals are dead.
/// `my.sp` when the walk does not get there (a frame without unwind
/// rules).
fn exit_caller_sp(maps: &[Mapping], my: memkit_trace::unwind::Regs, own: usize) -> usize {
    let Some(stack) = roots::mapping_of(maps, my.sp) else {
        return my.sp;
    };
    let module = memkit_trace::modules::module_of;
    let skip = [
        module(own),
        module(libc::exit as *const () as usize),
        module(__tls_get_addr as *const () as usize),
    ];
    memkit_trace::unwind::first_sp_outside(my, stack.end, &skip, 64).unwrap_or(my.sp)
}

/// Scans one thread's roots. `red_zone`: bytes below `sp` that may still
/// hold a leaf function's live data (128 for a thread stopped by the
/// signal; 0 for the thread running the check, whose slots below its `sp`
/// are the checker's own, possibly holding every block's address).
fn scan_thread(
    h: &mut Heap,
    maps: &[Mapping],
    (sp, red_zone): (usize, usize),
    tp: usize,
    regs: &[usize],
    work: &mut Vec<usize>,
) {
    for &r in regs {
        if let Some(i) = h.find(r) {
            if h.blocks[i].mark == 0 {
                h.blocks[i].mark = 1;
                work.push(i);
            }
        }
    }
    // The stack from just below sp (the red zone) to its mapping's end,
    // which for a thread's stack includes its static TLS and descriptor.
    let stack = roots::mapping_of(maps, sp);
    if let Some(m) = stack {
        scan_not_own(h, sp.saturating_sub(red_zone).max(m.start), m.end, work);
    }
    // Static TLS sits below the thread pointer; pthread-specific data lives
    // in the descriptor above it. The main thread's is not on its stack.
    // A thread's is, scanned above already, and its 64 KiB below the thread
    // pointer would reach below sp, into dead frames.
    if let Some(m) = roots::mapping_of(maps, tp) {
        if m.readable && stack.is_none_or(|s| s.start != m.start) {
            scan_not_own(
                h,
                tp.saturating_sub(64 << 10).max(m.start),
                (tp + (8 << 10)).min(m.end),
                work,
            );
        }
    }
}

/// Scans `[a, b)` as a root, leaving out the pages of memkit's own
/// bookkeeping (`map_meta` mappings: the checker's own allocator, whose
/// blocks hold the scan's own list of every block) and of the core's
/// segments. The kernel merges neighbouring anonymous mappings into one
/// line of /proc/self/maps: the 64 KiB below the main thread's thread
/// pointer, or a thread's stack mapping, could then reach into such a
/// mapping, and the scan's list of blocks made every block reachable (a
/// leak missed in about one run of forty).
fn scan_not_own(h: &mut Heap, a: usize, b: usize, work: &mut Vec<usize>) {
    const PAGE: usize = memkit_sys::OS_PAGE;
    const SEG: usize = memkit_alloc::segment::SEGMENT_SIZE;
    let mut p = a;
    while p < b {
        let page_end = ((p & !(PAGE - 1)) + PAGE).min(b);
        let chunk = p & !(SEG - 1);
        let core = memkit_alloc::core_mapping_len(chunk).is_some_and(|len| p < chunk + len);
        if !core && memkit_sys::meta_end(p).is_none() {
            h.scan(p, page_end, 0, 1, work);
        }
        p = page_end;
    }
}

/// Blocks the dynamic linker allocated count as roots: the DTVs and
/// dynamic TLS blocks of threads (`_dl_allocate_tls`), which glibc keeps
/// only in thread descriptors inside mmapped stacks — those of joined
/// threads too, in its stack cache — where the scan does not look.
/// LeakSanitizer treats them the same way.
fn linker_roots(h: &mut Heap, work: &mut Vec<usize>) {
    // SAFETY: getauxval has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_BASE) } as usize;
    if base == 0 {
        return;
    }
    let linker = memkit_trace::modules::module_of(base);
    if linker == 0 {
        return;
    }
    for (i, b) in h.blocks.iter_mut().enumerate() {
        // Frame 0 is the entry point the caller called (malloc, calloc...).
        let caller = memkit_trace::depot::frames(b.stack).get(1);
        if b.mark == 0 && caller.is_some_and(|&f| memkit_trace::unwind::split(f).0 == linker) {
            b.mark = 1;
            work.push(i);
        }
    }
}

/// Set in the child of a `fork` (an `exec` starts afresh).
static FORKED: AtomicBool = AtomicBool::new(false);

/// Called in a `fork` child: the threads of the parent other than the one
/// that forked do not exist here, but their stacks, with their static TLS
/// (thread-local pointers, pthread-specific data) and the pointers their
/// frames held, are still mapped, and the child may well use what they
/// point to. They were not roots: a block only they held was a leak of
/// the child's (a thread pool's thread-local buffers in every child that
/// exits).
pub fn note_forked() {
    FORKED.store(true, Relaxed);
}

/// In a `fork` child, the parent's thread stacks: anonymous writable
/// mappings of at least 16 KiB (`PTHREAD_STACK_MIN`) right above a
/// `PROT_NONE` one (glibc maps a thread's stack with its guard below),
/// not the heap's (core segments, guarded blocks). Scanned whole: where
/// each thread's stack pointer was is not known. (A stack glibc keeps
/// cached for a later thread counts too.)
fn parent_thread_stacks(maps: &[Mapping]) -> Vec<(usize, usize)> {
    maps.windows(2)
        .filter(|w| {
            let (guard, m) = (&w[0], &w[1]);
            guard.end == m.start
                && !guard.readable
                && !guard.writable
                && m.readable
                && m.writable
                && m.name.is_empty()
                && m.end - m.start >= 16 << 10
                && !memkit_alloc::in_block_memory(m.start)
                && crate::block::guarded_at(m.start).is_none()
        })
        .map(|w| (w[1].start, w[1].end))
        .collect()
}

/// Whether a maps name is anonymous memory the program may keep pointers
/// in: no name, a named anonymous mapping (`[anon:…]`), the `brk` heap.
fn anonymous(name: &[u8]) -> bool {
    name.is_empty() || name.starts_with(b"[anon:") || name == b"[heap]"
}

/// Scans the program's own anonymous memory (Valgrind scans it too; a
/// block only an interpreter's `mmap`ed object pages point to is not a
/// leak): every readable and writable anonymous mapping, page by resident
/// page (`mincore`: an untouched page holds no pointer, and reading it
/// would fault), but not the memory that is not the program's:
///
/// - the heap (core segments and huge mappings, big and guarded blocks):
///   blocks are read only when the flood fill reaches them;
/// - memkit's own bookkeeping (`memkit_sys::map_meta`);
/// - thread stacks (a writable mapping right above a `PROT_NONE` guard,
///   or one holding a stopped thread's stack pointer): a live thread's
///   was scanned from its stack pointer up, and below it, or in the stack
///   of a thread that has exited (glibc keeps them for reuse), lie dead
///   frames whose stale pointers would hide leaks.
///
/// `text` is /proc/self/maps, read after the threads stopped.
fn scan_mmap(
    h: &mut Heap,
    text: &[u8],
    big: &[(usize, usize)],
    sps: &[usize],
    work: &mut Vec<usize>,
) {
    const SEG: usize = memkit_alloc::segment::SEGMENT_SIZE;
    const PAGE: usize = memkit_sys::OS_PAGE;
    let mut prev_none_end = 0usize;
    for (start, end, r, w, name) in roots::raw_mappings(text) {
        let after_guard = prev_none_end == start;
        prev_none_end = if !r && !w { end } else { 0 };
        if !(r && w && anonymous(name)) || after_guard {
            continue;
        }
        if sps.iter().any(|&sp| start <= sp && sp < end) {
            continue;
        }
        let mut p = start;
        while p < end {
            let chunk = p & !(SEG - 1);
            if let Some(len) = memkit_alloc::core_mapping_len(chunk) {
                if chunk + len > p {
                    p = (chunk + len).next_multiple_of(PAGE);
                    continue;
                }
            }
            if let Some(e) = memkit_sys::meta_end(p) {
                p = e.next_multiple_of(PAGE);
                continue;
            }
            let i = big.partition_point(|&(s, _)| s <= p);
            if i > 0 && p < big[i - 1].1 {
                p = big[i - 1].1.next_multiple_of(PAGE);
                continue;
            }
            // Up to the next chunk, big block or end.
            let mut stop = end.min(chunk + SEG);
            if let Some(&(s, _)) = big.get(i) {
                stop = stop.min(s.max(p + PAGE));
            }
            let mut vec = [0u8; SEG / PAGE];
            let pages = (stop - p) / PAGE;
            // SAFETY: p is page-aligned (mappings and the skips above are).
            if !unsafe { memkit_sys::resident_map(p as *mut u8, &mut vec[..pages]) } {
                break;
            }
            for (k, &v) in vec[..pages].iter().enumerate() {
                let page = p + k * PAGE;
                if v & 1 != 0 && memkit_sys::meta_end(page).is_none() {
                    h.scan(page, page + PAGE, 0, 1, work);
                }
            }
            p = stop;
        }
    }
}

/// Runs the leak check and reports what leaked.
///
/// The side table's shards are taken *before* the other threads are
/// stopped and released after they resume (LeakSanitizer locks its
/// allocator before it stops the world for the same reason): a thread
/// stopped while it held a shard would otherwise hang the check when it
/// reads that shard. A thread that asks for a shard meanwhile waits for
/// it in a loop that yields, where the stop signal reaches it. The
/// mappings and the threads are listed and the list of blocks reserved
/// beforehand too: nothing between the taking and the release may call
/// into libc's allocating functions (they come back to this library's
/// `malloc`, which records the block in a shard).
pub fn check(show_reachable: bool, scan_anon: bool, own: usize, my: memkit_trace::unwind::Regs) {
    let maps = roots::mappings();
    let my_sp = exit_caller_sp(&maps, my, own);
    // Read again once the threads are stopped (a mapping unmapped between
    // would fault the scan), into a buffer reserved now.
    let mut raw = if scan_anon && memkit_sys::meta_complete() {
        roots::reserve_maps()
    } else {
        Vec::new()
    };
    let big = if scan_anon {
        crate::block::big_ranges()
    } else {
        Vec::new()
    };
    let mut sps = Vec::with_capacity(MAX_THREADS + 1);
    let mut live = 0usize;
    table::for_each(|m| live += (m.state() == State::Live) as usize);
    let mut blocks = Vec::with_capacity(live + live / 4 + 1024);
    let mut work = Vec::with_capacity(1024);
    // Listing the threads allocates through libc (opendir), which would
    // ask for a shard: before the shards are taken.
    let tids = other_threads();
    let parent_stacks = if FORKED.load(Relaxed) {
        parent_thread_stacks(&maps)
    } else {
        Vec::new()
    };
    table::lock_all();
    crate::own_alloc::hold();
    let (stopped, old) = stop_all(&tids);
    // SAFETY: lock_all above; unlock_all below, after the scan.
    unsafe {
        table::for_each_held(|m| {
            if m.state() == State::Live {
                blocks.push(Live {
                    user: m.user,
                    size: m.size(),
                    stack: m.alloc_stack,
                    mark: 0,
                });
            }
        })
    };
    blocks.sort_by_key(|b| b.user);
    let lo = blocks.first().map_or(0, |b| b.user);
    let hi = blocks
        .iter()
        .map(|b| b.user + b.size.max(1))
        .max()
        .unwrap_or(0);
    let mut h = Heap { blocks, lo, hi };
    linker_roots(&mut h, &mut work);
    for (a, b, _) in roots::globals(own) {
        h.scan(a, b, 0, 1, &mut work);
    }
    scan_thread(&mut h, &maps, (my_sp, 0), thread_pointer(), &[], &mut work);
    for &(a, b) in &parent_stacks {
        h.scan(a, b, 0, 1, &mut work);
    }
    sps.push(my_sp);
    sps.extend(STOPPED.iter().take(stopped).map(|s| s.sp.load(Relaxed)));
    if raw.capacity() > 0 {
        roots::read_maps_raw(&mut raw);
        scan_mmap(&mut h, &raw, &big, &sps, &mut work);
    }
    for s in STOPPED.iter().take(stopped) {
        if s.tid.load(Acquire) == 0 {
            continue;
        }
        let regs: Vec<usize> = s.regs.iter().map(|r| r.load(Relaxed)).collect();
        let sp = (s.sp.load(Relaxed), 128);
        scan_thread(&mut h, &maps, sp, s.tp.load(Relaxed), &regs, &mut work);
    }
    h.flood(&mut work, 0, 1);
    resume_all(stopped, old);
    crate::own_alloc::release();
    table::unlock_all();
    // Blocks reached only from unreached blocks are indirect leaks. Each
    // unreached block in turn is the entry of what it reaches (Valgrind's
    // clique leader), held apart while its flood runs, so that a cycle of
    // leaked blocks leads back to it without making it indirect: a cycle
    // is one direct leak and the rest indirect (it was all indirect, and
    // a leaked list with its last node pointing back was no direct leak).
    for i in 0..h.blocks.len() {
        if h.blocks[i].mark == 0 {
            h.blocks[i].mark = LEADER;
            let (u, s) = (h.blocks[i].user, h.blocks[i].size);
            h.scan(u, u + s, 0, 2, &mut work);
            h.flood(&mut work, 0, 2);
            h.blocks[i].mark = 0;
        }
    }
    let mut groups: Vec<(u32, u8, usize, usize, usize, usize)> = Vec::new();
    for b in &h.blocks {
        if b.mark == 1 && !show_reachable {
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == b.stack && g.1 == b.mark) {
            Some(g) => {
                g.2 += b.size;
                g.3 += 1;
            }
            None => groups.push((b.stack, b.mark, b.size, 1, b.user, b.size)),
        }
    }
    groups.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
    for (stack, mark, bytes, count, first, first_size) in groups {
        let leak_kind = match mark {
            0 => "direct",
            2 => "indirect",
            _ => "reachable",
        };
        report::emit(Report {
            kind: "leak",
            message: format!("{bytes} byte(s) in {count} block(s) ({leak_kind})"),
            address: first,
            size: Some(first_size),
            offset: Some(0),
            thread: crate::tls::tid(),
            alloc_stack: stack,
            leak_kind: Some(leak_kind),
            bytes,
            count,
            ..Report::default()
        });
    }
}
