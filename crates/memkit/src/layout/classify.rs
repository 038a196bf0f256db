//! Reading a process and putting each mapping in its category.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use super::elf::{self, ElfInfo};
use super::procfs::{self, Proc, RawMapping, Stat, PF_KTHREAD};
use super::{
    Brk, Category, Layout, LayoutError, Mapping, MemkitInfo, Object, Options, Stats, Thread, Totals,
};

/// memkit's segments and huge blocks start on 4 MiB boundaries.
const MEMKIT_ALIGN: u64 = 4 << 20;
/// memkit's header kinds (`memkit-alloc`'s segment.rs).
const MEMKIT_KIND_SMALL: u32 = 1;
const MEMKIT_KIND_HUGE: u32 = 2;
/// glibc's per-thread malloc arenas: 64 MiB reservations, 64 MiB aligned.
const GLIBC_ARENA: u64 = 64 << 20;
/// The smallest thread stack glibc makes (PTHREAD_STACK_MIN).
const MIN_THREAD_STACK: u64 = 16 << 10;

pub fn read(pid: u32, options: &Options) -> Result<Layout, LayoutError> {
    let proc = Proc::new(pid);
    let stat = match proc.stat() {
        Ok(s) => s,
        Err(LayoutError::Exited { pid }) => return Err(LayoutError::NoSuchProcess { pid }),
        Err(e) => return Err(e),
    };
    check_alive(&stat, pid)?;

    let mut notes = Vec::new();
    let mut raw = Vec::new();
    let mut rollup = Stats::default();
    let mut consistent = true;
    // smaps and smaps_rollup are two reads: retry while the process changes
    // its memory between them.
    for attempt in 0..3 {
        raw = read_mappings(&proc, options.fast)?;
        let text = proc.read_string("smaps_rollup")?;
        rollup = procfs::parse_rollup(&text).map_err(|message| LayoutError::Parse {
            file: proc.path("smaps_rollup").display().to_string(),
            message,
        })?;
        if raw.is_empty() {
            // A zombie or a process that is exiting has no mm.
            check_alive(&proc.stat().map_err(|_| LayoutError::Exited { pid })?, pid)?;
            return Err(LayoutError::Exited { pid });
        }
        if options.fast {
            break;
        }
        let rss: u64 = raw.iter().filter_map(|m| m.stats).map(|s| s.rss_kib).sum();
        consistent = rss == rollup.rss_kib;
        if consistent {
            break;
        }
        if attempt == 2 {
            notes.push(format!(
                "the process changed its memory while being read: the mappings' RSS sums to {rss} KiB, \
                 smaps_rollup says {} KiB",
                rollup.rss_kib
            ));
        }
    }

    let threads = read_threads(&proc, &raw)?;
    let exe = fs::read_link(proc.path("exe"))
        .ok()
        .map(|p| p.display().to_string());
    let page_size = proc
        .read_bytes("auxv")
        .ok()
        .and_then(|b| procfs::parse_auxv_page_size(&b))
        .unwrap_or(4096);
    let command = match proc.cmdline() {
        c if c.is_empty() => format!("[{}]", stat.comm),
        c => c,
    };

    let cx = Context {
        proc: &proc,
        stat: &stat,
        exe: exe.as_deref(),
        page_size,
        threads: &threads,
    };
    let (mappings, objects, memkit) = classify(&raw, &cx, &mut notes);

    // The process may have gone (or its pid been reused) while we read.
    match proc.stat() {
        Ok(s) if s.starttime == stat.starttime && !matches!(s.state, 'Z' | 'X') => {}
        _ => return Err(LayoutError::Exited { pid }),
    }

    let mut categories = [Totals::default(); 10];
    let mut sum = Stats::default();
    for m in &mappings {
        let stats = m.stats.unwrap_or(Stats {
            size_kib: m.size_kib(),
            ..Stats::default()
        });
        let t = &mut categories[m.category.index()];
        t.mappings += 1;
        t.stats.add(&stats);
        sum.add(&stats);
    }
    let totals = Totals {
        mappings: mappings.len() as u64,
        stats: Stats {
            size_kib: sum.size_kib,
            ..rollup
        },
    };
    let heap_end = mappings
        .iter()
        .filter(|m| m.category == Category::Heap && m.end > stat.start_brk && stat.start_brk != 0)
        .map(|m| m.end)
        .max()
        .unwrap_or(stat.start_brk);
    Ok(Layout {
        pid,
        command,
        comm: stat.comm.clone(),
        exe,
        fast: options.fast,
        page_size,
        brk: Brk {
            start: stat.start_brk,
            current: heap_end,
        },
        start_stack: stat.start_stack,
        mappings,
        categories,
        totals,
        mappings_sum: (!options.fast).then_some(sum),
        consistent,
        objects,
        threads,
        memkit,
        notes,
    })
}

fn check_alive(stat: &Stat, pid: u32) -> Result<(), LayoutError> {
    if stat.flags & PF_KTHREAD != 0 {
        return Err(LayoutError::KernelThread {
            pid,
            comm: stat.comm.clone(),
        });
    }
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return Err(LayoutError::Zombie { pid });
    }
    Ok(())
}

fn read_mappings(proc: &Proc, fast: bool) -> Result<Vec<RawMapping>, LayoutError> {
    let name = if fast { "maps" } else { "smaps" };
    let text = proc.read_string(name)?;
    procfs::parse_smaps(&text, !fast).map_err(|message| LayoutError::Parse {
        file: proc.path(name).display().to_string(),
        message,
    })
}

/// The threads and their stack pointers. A thread that is running on a CPU
/// shows no stack pointer: it is asked again a few times.
fn read_threads(proc: &Proc, raw: &[RawMapping]) -> Result<Vec<Thread>, LayoutError> {
    let mut tids = proc.tids()?;
    // Main thread first.
    if let Some(i) = tids.iter().position(|&t| t == proc.pid) {
        tids[..=i].rotate_right(1);
    }
    let mut threads: Vec<Thread> = tids
        .iter()
        .map(|&tid| Thread {
            tid,
            name: fs::read_to_string(proc.path(&format!("task/{tid}/comm")))
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_default(),
            ..Thread::default()
        })
        .collect();
    for round in 0..5 {
        let mut missing = false;
        for t in threads.iter_mut().filter(|t| t.sp.is_none()) {
            // Not permitted (it needs ptrace access) or the thread is gone:
            // the stack is then found by its guard page, if at all.
            if let Ok(text) = fs::read_to_string(proc.path(&format!("task/{}/syscall", t.tid))) {
                t.sp = procfs::parse_syscall_sp(&text);
                missing |= t.sp.is_none();
            }
        }
        if !missing || round == 4 {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    for t in &mut threads {
        t.stack =
            t.sp.and_then(|sp| raw.iter().find(|m| (m.start..m.end).contains(&sp)))
                .map(|m| (m.start, m.end));
    }
    Ok(threads)
}

struct Context<'a> {
    proc: &'a Proc,
    stat: &'a Stat,
    exe: Option<&'a str>,
    page_size: u64,
    threads: &'a [Thread],
}

/// An ELF object found among the file mappings.
struct ObjectInfo {
    path: String,
    main_program: bool,
    /// Program headers and load bias, if the file could be read.
    elf: Option<(ElfInfo, u64)>,
}

impl ObjectInfo {
    /// The category of one of the object's file mappings.
    fn category_of(&self, m: &RawMapping, page: u64) -> Category {
        if m.perms.starts_with("---") {
            return Category::Other;
        }
        let Some((info, bias)) = &self.elf else {
            // Unreadable headers: go by the permissions.
            return if m.perms.as_bytes()[1] == b'w' {
                Category::Data
            } else {
                Category::Text
            };
        };
        let v = m.start.wrapping_sub(*bias);
        let load = info.loads.iter().find(|l| {
            let lo = l.vaddr & !(page - 1);
            let hi = (l.vaddr + l.memsz).next_multiple_of(page);
            (lo..hi).contains(&v)
        });
        match load {
            Some(l) if l.writable() => Category::Data,
            Some(_) => Category::Text,
            None => Category::Other,
        }
    }

    /// The page-aligned bss ranges `[start, end)`: anonymous memory of each
    /// writable PT_LOAD beyond its file part.
    fn bss_ranges(&self, page: u64) -> Vec<(u64, u64)> {
        let Some((info, bias)) = &self.elf else {
            return Vec::new();
        };
        info.loads
            .iter()
            .filter(|l| l.writable() && l.memsz > l.filesz)
            .map(|l| {
                let start = bias.wrapping_add(l.vaddr + l.filesz).next_multiple_of(page);
                let end = bias.wrapping_add(l.vaddr + l.memsz).next_multiple_of(page);
                (start, end)
            })
            .filter(|(s, e)| e > s)
            .collect()
    }
}

fn strip_deleted(path: &str) -> &str {
    path.strip_suffix(" (deleted)").unwrap_or(path)
}

fn is_file_backed(m: &RawMapping) -> bool {
    m.inode != 0 || m.path.starts_with('/')
}

fn is_anonymous(m: &RawMapping) -> bool {
    !is_file_backed(m) && (m.path.is_empty() || m.path.starts_with("[anon:"))
}

/// POSIX shm (`/dev/shm`), System V shm (`/SYSV...`), memfd and shared
/// anonymous memory (`/dev/zero (deleted)`, `[anon_shmem:NAME]`).
fn shm_kind(m: &RawMapping) -> Option<&'static str> {
    let p = m.path.as_str();
    if p.starts_with("/dev/shm/") || p.starts_with("/run/shm/") {
        Some("POSIX shared memory")
    } else if p.starts_with("/SYSV") {
        Some("System V shared memory")
    } else if p.starts_with("/memfd:") {
        Some("memfd")
    } else if p == "/dev/zero (deleted)" || p.starts_with("[anon_shmem") {
        Some("shared anonymous memory")
    } else {
        None
    }
}

/// What could be learnt about a file with an executable mapping.
enum ElfRead {
    Elf(ElfInfo),
    NotElf,
    Unreadable,
}

/// Reads the program headers of the object mapped by `m`, checking that
/// the file found is the one mapped (same inode).
fn read_object_elf(proc: &Proc, m: &RawMapping, notes: &mut Vec<String>) -> ElfRead {
    let path = strip_deleted(&m.path);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if !m.path.ends_with(" (deleted)") {
        // Through the process's root, for processes in another mount namespace.
        candidates.push(proc.dir.join("root").join(path.trim_start_matches('/')));
        candidates.push(PathBuf::from(path));
    }
    candidates.push(
        proc.dir
            .join(format!("map_files/{:x}-{:x}", m.start, m.end)),
    );
    for c in &candidates {
        match fs::metadata(c) {
            Ok(md) if md.ino() == m.inode => {}
            _ => continue,
        }
        match elf::read(c) {
            Ok(Ok(Some(info))) => return ElfRead::Elf(info),
            Ok(Ok(None)) => return ElfRead::NotElf,
            Ok(Err(e)) => {
                notes.push(format!(
                    "{path}: bad ELF program headers ({e}); text/data told apart by permissions"
                ));
                return ElfRead::Unreadable;
            }
            Err(_) => continue,
        }
    }
    notes.push(format!(
        "{path}: cannot read its ELF headers; text/data told apart by permissions"
    ));
    ElfRead::Unreadable
}

/// The load bias: the address of the object's first PT_LOAD minus its
/// virtual address, from the lowest mapping at that segment's file offset.
fn load_bias(info: &ElfInfo, maps: &[&RawMapping], page: u64) -> Option<u64> {
    let first = info.loads.iter().min_by_key(|l| l.vaddr)?;
    let off = first.offset & !(page - 1);
    let m = maps
        .iter()
        .filter(|m| m.offset == off)
        .min_by_key(|m| m.start)
        .or_else(|| maps.first())?;
    Some(m.start.wrapping_sub(first.vaddr & !(page - 1)))
}

/// The header memkit puts at the start of each segment and huge block:
/// `heap: *mut Heap, kind: u32` (null heap for huge blocks).
fn memkit_header(mem: Option<&fs::File>, addr: u64) -> Option<Option<&'static str>> {
    let mut buf = [0u8; 12];
    mem?.read_exact_at(&mut buf, addr).ok()?;
    let heap = u64::from_ne_bytes(buf[..8].try_into().ok()?);
    let kind = u32::from_ne_bytes(buf[8..12].try_into().ok()?);
    Some(match kind {
        MEMKIT_KIND_SMALL if heap != 0 => Some("memkit heap"),
        MEMKIT_KIND_HUGE if heap == 0 => Some("memkit huge block"),
        _ => None,
    })
}

/// The label of a mapping of a memkit shared heap (`memkit shared heap
/// /NAME`), if `m` is one: the whole object mapped from offset 0, with
/// memkit's header and the geometry of its size (read through
/// /proc/PID/mem, checked by `memkit_shm::inspect::recognise`).
fn shared_heap(mem: &mut Option<Option<fs::File>>, proc: &Proc, m: &RawMapping) -> Option<String> {
    if m.offset != 0 {
        return None;
    }
    let mem = mem
        .get_or_insert_with(|| fs::File::open(proc.path("mem")).ok())
        .as_ref()?;
    let len = m.end - m.start;
    let mut read_at = |off: u64, buf: &mut [u8]| {
        off.checked_add(buf.len() as u64).is_some_and(|e| e <= len)
            && mem.read_exact_at(buf, m.start + off).is_ok()
    };
    memkit_shm::inspect::recognise(len, &mut read_at).ok()?;
    let deleted = m.path.ends_with(" (deleted)");
    let path = strip_deleted(&m.path);
    let mut label = if let Some(name) = path
        .strip_prefix("/dev/shm/")
        .or_else(|| path.strip_prefix("/run/shm/"))
    {
        if deleted {
            format!("memkit shared heap /{name}, removed")
        } else {
            format!("memkit shared heap /{name}")
        }
    } else if path.starts_with("/memfd:") {
        "memkit shared heap, anonymous (memfd)".to_owned()
    } else {
        "memkit shared heap".to_owned()
    };
    if !m.perms.starts_with("rw") {
        label.push_str(", read-only");
    }
    Some(label)
}

fn classify(
    raw: &[RawMapping],
    cx: &Context<'_>,
    notes: &mut Vec<String>,
) -> (Vec<Mapping>, Vec<Object>, Option<MemkitInfo>) {
    let page = cx.page_size;

    // ELF objects: file mappings of a file with an executable mapping, or
    // the program itself.
    let mut groups: HashMap<(&str, u64), Vec<&RawMapping>> = HashMap::new();
    for m in raw
        .iter()
        .filter(|m| is_file_backed(m) && shm_kind(m).is_none())
    {
        groups.entry((m.dev.as_str(), m.inode)).or_default().push(m);
    }
    let mut objects: HashMap<(&str, u64), ObjectInfo> = HashMap::new();
    for (key, maps) in &groups {
        let path = strip_deleted(&maps[0].path);
        let main_program = cx.exe == Some(path);
        if !main_program && !maps.iter().any(|m| m.perms.as_bytes()[2] == b'x') {
            continue;
        }
        let head = maps
            .iter()
            .min_by_key(|m| m.start)
            .copied()
            .unwrap_or(maps[0]);
        let elf = match read_object_elf(cx.proc, head, notes) {
            ElfRead::Elf(info) => load_bias(&info, maps, page).map(|bias| (info, bias)),
            ElfRead::NotElf => continue,
            ElfRead::Unreadable => None,
        };
        objects.insert(
            *key,
            ObjectInfo {
                path: maps[0].path.clone(),
                main_program,
                elf,
            },
        );
    }
    let bss: Vec<(u64, u64, &str)> = objects
        .values()
        .flat_map(|o| {
            o.bss_ranges(page)
                .into_iter()
                .map(move |(s, e)| (s, e, o.path.as_str()))
        })
        .collect();

    // memkit: libmemkit.so mapped in the process.
    let library = raw
        .iter()
        .find(|m| {
            let name = m.path.rsplit('/').next().unwrap_or("");
            m.path.starts_with('/') && name.starts_with("libmemkit") && name.contains(".so")
        })
        .map(|m| strip_deleted(&m.path).to_owned());
    let mem = library
        .as_ref()
        .and_then(|_| fs::File::open(cx.proc.path("mem")).ok());
    // Opened at the first shared mapping, whether or not libmemkit.so is
    // mapped (the Rust API links memkit's shared heaps statically).
    let mut shm_mem: Option<Option<fs::File>> = None;
    let mut memkit_checked = 0;
    let mut memkit_probable = 0;

    let heap_start = cx.stat.start_brk;
    let heap_end = raw
        .iter()
        .find(|m| m.path == "[heap]")
        .map_or(heap_start, |m| m.end.max(heap_start));

    let mut out: Vec<Mapping> = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let mut object = None;
        let mut label: Option<String> = None;
        let prev = i
            .checked_sub(1)
            .map(|j| &raw[j])
            .filter(|p| p.end == m.start);
        let next = raw.get(i + 1).filter(|n| n.start == m.end);
        let sp_threads: Vec<&Thread> = cx
            .threads
            .iter()
            .filter(|t| t.sp.is_some_and(|sp| (m.start..m.end).contains(&sp)))
            .collect();
        let path = m.path.as_str();
        let category = if path == "[heap]" {
            Category::Heap
        } else if path == "[stack]" {
            label = Some("main thread".into());
            Category::Stack
        } else if path.starts_with('[') && !path.starts_with("[anon") {
            // [vdso], [vvar], [vvar_vclock], [vsyscall], [uprobes]...
            Category::Other
        } else if let Some(kind) = shm_kind(m) {
            label = Some(match shared_heap(&mut shm_mem, cx.proc, m) {
                Some(name) => name,
                None => kind.into(),
            });
            Category::Shm
        } else if is_file_backed(m) {
            match objects.get(&(m.dev.as_str(), m.inode)) {
                Some(o) => {
                    object = Some(o.path.clone());
                    let c = o.category_of(m, page);
                    if c == Category::Other {
                        label = Some("gap between segments".into());
                    }
                    c
                }
                None if m.perms.starts_with("---") => {
                    label = Some("no access".into());
                    Category::Other
                }
                None => Category::File,
            }
        } else if m.perms.starts_with("---") {
            label = Some(
                if next.is_some_and(|n| n.perms == "rw-p" && is_anonymous(n)) {
                    "guard page".into()
                } else {
                    "no access (reserved)".into()
                },
            );
            Category::Other
        } else if is_anonymous(m) && m.start < heap_end && m.end > heap_start {
            Category::Heap
        } else if let Some(&(s, e, o)) = bss
            .iter()
            .find(|&&(s, e, _)| is_anonymous(m) && m.start < e && m.end > s)
        {
            object = Some(o.to_owned());
            if m.end > e || m.start < s {
                let extra = (m.end - m.start).saturating_sub(e.min(m.end) - s.max(m.start));
                label = Some(format!(
                    "bss, merged with {} KiB of other anonymous memory",
                    extra / 1024
                ));
            }
            Category::Bss
        } else if !sp_threads.is_empty() {
            if sp_threads.iter().any(|t| t.tid == cx.proc.pid) {
                label = Some("main thread (not [stack])".into());
                Category::Stack
            } else {
                let names: Vec<String> = sp_threads
                    .iter()
                    .map(|t| format!("thread {} ({})", t.tid, t.name))
                    .collect();
                label = Some(names.join(", "));
                Category::ThreadStack
            }
        } else if m.perms == "rw-p"
            && m.start % GLIBC_ARENA == 0
            && next.is_some_and(|n| {
                n.perms == "---p" && is_anonymous(n) && n.end - m.start == GLIBC_ARENA
            })
        {
            // glibc's per-thread arenas: 64 MiB reserved, 64 MiB aligned, the
            // used part read-write and the rest inaccessible.
            label = Some("malloc arena (glibc, probable)".into());
            Category::Anon
        } else if m.perms == "rw-p"
            && m.path.is_empty()
            && m.end - m.start >= MIN_THREAD_STACK
            && prev.is_some_and(|p| p.perms == "---p" && is_anonymous(p))
            && (library.is_none() || m.start % MEMKIT_ALIGN != 0)
        {
            label = Some(
                "thread stack (probable: guard page below, no thread's stack pointer in it)".into(),
            );
            Category::ThreadStack
        } else {
            if let Some(name) = path
                .strip_prefix("[anon:")
                .and_then(|p| p.strip_suffix(']'))
            {
                label = Some(name.to_owned());
                if name.starts_with("memkit") {
                    memkit_checked += 1;
                }
            } else if library.is_some() && m.perms == "rw-p" && m.start % MEMKIT_ALIGN == 0 {
                match memkit_header(mem.as_ref(), m.start) {
                    Some(Some(name)) => {
                        memkit_checked += 1;
                        label = Some(name.into());
                    }
                    Some(None) => {}
                    None => {
                        memkit_probable += 1;
                        label = Some("memkit heap (probable)".into());
                    }
                }
            } else if m.perms == "rw-p"
                && m.path.is_empty()
                && prev.is_some_and(|p| p.perms == "---p" && is_anonymous(p))
            {
                // Smaller than any thread stack: Rust's and others' sigaltstack.
                label = Some("signal stack (probable: guard page below)".into());
            }
            Category::Anon
        };
        out.push(Mapping {
            start: m.start,
            end: m.end,
            perms: m.perms.clone(),
            offset: m.offset,
            dev: m.dev.clone(),
            inode: m.inode,
            path: (!m.path.is_empty()).then(|| m.path.clone()),
            category,
            object,
            label,
            stats: m.stats,
            vm_flags: m.vm_flags.clone(),
        });
    }

    // Guard pages: the inaccessible page under a thread stack, and glibc's
    // arena reserve after an arena.
    for i in 1..out.len() {
        let (lo, hi) = out.split_at_mut(i);
        let (below, m) = (&mut lo[i - 1], &hi[0]);
        if below.end == m.start
            && below.category == Category::Other
            && below.perms == "---p"
            && below.is_anonymous()
        {
            match m.category {
                Category::ThreadStack => below.label = Some("guard page (thread stack)".into()),
                Category::Stack => below.label = Some("guard page (stack)".into()),
                _ => {}
            }
        }
        if m.category == Category::Other
            && m.perms == "---p"
            && below.end == m.start
            && below.label.as_deref() == Some("malloc arena (glibc, probable)")
        {
            hi[0].label = Some("malloc arena reserve (glibc)".into());
        }
    }

    let memkit = library.map(|library| MemkitInfo {
        library: Some(library),
        regions: memkit_checked + memkit_probable,
        method: if memkit_probable > 0 {
            "libmemkit.so is mapped; 4 MiB-aligned anonymous rw mappings are memkit's segments \
             (probable: their headers could not be read)"
                .into()
        } else {
            "libmemkit.so is mapped; 4 MiB-aligned anonymous rw mappings that start with a memkit \
             segment or huge-block header (read from /proc/PID/mem)"
                .into()
        },
    });

    // Objects in address order, with their mappings summed.
    let mut objs: Vec<Object> = objects
        .values()
        .map(|o| Object {
            path: o.path.clone(),
            base: o.elf.as_ref().map_or(0, |(_, b)| *b),
            main_program: o.main_program,
            elf_sizes: o.elf.as_ref().map(|(i, _)| i.sizes()),
            totals: Totals::default(),
        })
        .collect();
    for m in &out {
        let Some(o) = m.object.as_deref() else {
            continue;
        };
        if let Some(obj) = objs.iter_mut().find(|x| x.path == o) {
            obj.totals.mappings += 1;
            obj.totals.stats.add(&m.stats.unwrap_or(Stats {
                size_kib: m.size_kib(),
                ..Stats::default()
            }));
        }
    }
    let first_addr = |o: &Object| {
        out.iter()
            .find(|m| m.object.as_deref() == Some(&o.path))
            .map_or(0, |m| m.start)
    };
    objs.sort_by_key(first_addr);
    (out, objs, memkit)
}
