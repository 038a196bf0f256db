//! Reports: text on stderr (or the log file) as they happen, one JSON
//! object per line in `json_dir/check.PID.jsonl`, suppressions, the
//! SUMMARY line and the exit status.
//!
//! Reports are rare: everything here may allocate (from memkit's core, as
//! the checker's own code) and takes one mutex, never on an allocation path
//! that finds nothing wrong.

use memkit_alloc::lock::SpinLock;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::*};

use memkit_trace::depot::{self, StackId};
use memkit_trace::symbolize::{self, Symbol};

use crate::options;

/// The version of the JSON report objects (`schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// What was found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub kind: &'static str,
    /// One line, without the address details that follow it.
    pub message: String,
    pub address: usize,
    /// The block's size, when the report concerns a block.
    pub size: Option<usize>,
    /// Offset of the address from the block's start (negative before it).
    pub offset: Option<i64>,
    pub thread: u32,
    /// Where it was detected.
    pub stack: StackId,
    pub alloc_stack: StackId,
    pub alloc_thread: u32,
    pub free_stack: StackId,
    pub free_thread: u32,
    /// Leaks: `direct` / `indirect` (or `reachable` with show_reachable).
    pub leak_kind: Option<&'static str>,
    pub bytes: usize,
    pub count: usize,
}

struct Out {
    text_fd: i32,
    /// With `log_file`: its path and the identity of the file opened.
    log: Option<(String, Option<FileId>)>,
    json: Option<std::fs::File>,
    /// The JSON file's path and the identity of the file opened.
    json_path: String,
    json_id: Option<FileId>,
    suppressions: Vec<(String, String, usize)>,
    counts: Vec<(&'static str, usize)>,
    leak_bytes: usize,
    leak_blocks: usize,
    suppressed: usize,
}

static OUT: SpinLock<Option<Out>> = SpinLock::new(None);

/// The thread that holds `OUT` (0: none): the core's fault hook, run from
/// an allocation of that thread's report (the symbolizer's tables come
/// from the core), must not wait for it.
static EMITTER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Marks the calling thread as `OUT`'s holder until dropped (declared
/// after the lock's guard, so it is dropped first).
struct Emitting;

impl Emitting {
    fn new() -> Self {
        EMITTER.store(crate::tls::tid(), core::sync::atomic::Ordering::Relaxed);
        Emitting
    }
}

impl Drop for Emitting {
    fn drop(&mut self) {
        EMITTER.store(0, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether the calling thread is writing a report (holds `OUT`).
pub fn emitting_here() -> bool {
    EMITTER.load(core::sync::atomic::Ordering::Relaxed) == crate::tls::tid()
}

/// Around `fork`: the output's lock.
pub fn lock_for_fork() {
    OUT.raw_lock();
}

/// After `fork`, in parent and child.
pub fn unlock_after_fork() {
    // SAFETY: taken by lock_for_fork in this process (or its parent).
    unsafe { OUT.raw_unlock() };
}
/// Reports made (not suppressed); "reachable" listings do not count.
pub static REPORTED: AtomicUsize = AtomicUsize::new(0);
static STDERR: AtomicI32 = AtomicI32::new(-1);
/// The identity of the file `STDERR` was duplicated from (device, inode;
/// atomics, not a lock: no lock to find held in a `fork` child).
static STDERR_DEV: AtomicU64 = AtomicU64::new(0);
static STDERR_INO: AtomicU64 = AtomicU64::new(0);

/// A file's identity (device, inode): the same descriptor number may name
/// another file once the program closed it and opened one.
type FileId = (u64, u64);

/// The identity of the file `fd` names; None when it is not open.
fn identity(fd: i32) -> Option<FileId> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes the stat buffer when it succeeds.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: written by fstat above.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}
static WARNED: AtomicBool = AtomicBool::new(false);

/// Takes a duplicate of stderr at start: programs may close fd 2. With
/// `json_dir`, creates this process's (empty) report file: `memkit check`
/// tells by it that the program ran on the library at all (a statically
/// linked one, or one started without LD_PRELOAD, leaves none).
pub fn init() {
    if let Ok(fd) = memkit_sys::dup_cloexec(2) {
        if let Some((dev, ino)) = identity(fd) {
            STDERR_DEV.store(dev, Relaxed);
            STDERR_INO.store(ino, Relaxed);
        }
        STDERR.store(fd, Relaxed);
    }
    if let Some(d) = &options::get().json_dir {
        let path = format!("{d}/check.{}.jsonl", memkit_sys::pid());
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
    }
}

/// Where text reports go without `log_file`: the duplicate of stderr taken
/// at start, while it still names that file. A program may close every
/// descriptor above 2 (daemons, `closefrom`) and open others, which then
/// get its number: the reports went into whatever the program opened next
/// — the JSON report file itself, whose every text line `memkit check`
/// then dropped as "an incomplete report". Then stderr is taken again if
/// fd 2 still names the same file, else the reports go to fd 2 as it is
/// now (as AddressSanitizer's do); the stale number is left alone.
fn stderr_fd() -> i32 {
    let fd = STDERR.load(Relaxed);
    if fd < 0 {
        return 2;
    }
    let id = Some((STDERR_DEV.load(Relaxed), STDERR_INO.load(Relaxed)));
    if identity(fd) == id {
        return fd;
    }
    if identity(2) == id {
        if let Ok(d) = memkit_sys::dup_cloexec(2) {
            STDERR.store(d, Relaxed);
            return d;
        }
    }
    2
}

/// A one-line message about the checker itself (bad options, files).
pub fn warn(msg: &str) {
    let _ = memkit_sys::write_all(stderr_fd(), format!("memkit check: {msg}\n").as_bytes());
    WARNED.store(true, Relaxed);
}

fn append(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl Out {
    /// Before writing: the descriptors still name the files they were
    /// opened on (the program may have closed them, and reused their
    /// numbers); else the files are opened again by path (the stale
    /// numbers are the program's now, and are not closed).
    fn refresh(&mut self) {
        match &mut self.log {
            Some((path, id)) => {
                if identity(self.text_fd) != *id {
                    if let Ok(f) = append(path) {
                        self.text_fd = std::os::fd::IntoRawFd::into_raw_fd(f);
                        *id = identity(self.text_fd);
                    }
                }
            }
            None => self.text_fd = stderr_fd(),
        }
        let Some(j) = &self.json else { return };
        if identity(std::os::fd::AsRawFd::as_raw_fd(j)) == self.json_id {
            return;
        }
        if let Some(stale) = self.json.take() {
            let _ = std::os::fd::IntoRawFd::into_raw_fd(stale);
        }
        self.json = append(&self.json_path).ok();
        self.json_id = self
            .json
            .as_ref()
            .and_then(|f| identity(std::os::fd::AsRawFd::as_raw_fd(f)));
    }
}

fn open() -> Out {
    let o = options::get();
    let pid = memkit_sys::pid();
    let (text_fd, log) = match &o.log_file {
        Some(path) => {
            let path = format!("{path}.{pid}");
            match append(&path) {
                Ok(f) => {
                    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
                    (fd, Some((path, identity(fd))))
                }
                Err(e) => {
                    warn(&format!(
                        "cannot open log file {path}: {e}; reporting on stderr"
                    ));
                    (stderr_fd(), None)
                }
            }
        }
        None => (stderr_fd(), None),
    };
    let json_path = o
        .json_dir
        .as_ref()
        .map(|d| format!("{d}/check.{pid}.jsonl"))
        .unwrap_or_default();
    let json = o.json_dir.as_ref().and_then(|_| {
        append(&json_path)
            .map_err(|e| warn(&format!("cannot write JSON reports to {json_path}: {e}")))
            .ok()
    });
    let json_id = json
        .as_ref()
        .and_then(|f| identity(std::os::fd::AsRawFd::as_raw_fd(f)));
    let suppressions = o
        .suppressions
        .as_ref()
        .map(|p| load_suppressions(p))
        .unwrap_or_default();
    Out {
        text_fd,
        log,
        json,
        json_path,
        json_id,
        suppressions,
        counts: Vec::new(),
        leak_bytes: 0,
        leak_blocks: 0,
        suppressed: 0,
    }
}

/// Every report kind (docs/CHECK.md; `memkit check` checks a suppressions
/// file against the same list).
pub const KINDS: &[&str] = &[
    "leak",
    "double-free",
    "invalid-free",
    "heap-buffer-overflow",
    "use-after-free",
    "memcpy-param-overlap",
    "alloc-dealloc-mismatch",
    "invalid-alignment",
    "allocation-size-too-big",
    "calloc-overflow",
    "reallocarray-overflow",
    "new-delete-type-mismatch",
    "free-size-mismatch",
    "bad-malloc_usable_size",
];

/// Reads `kind:pattern` lines (`#` comments, blank lines ignored; a line
/// with an unknown kind is said and skipped: it could never match).
fn load_suppressions(path: &str) -> Vec<(String, String, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            warn(&format!("cannot read suppressions file {path}: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':').map(|(k, p)| (k.trim(), p.trim())) {
            Some((k, p)) if !p.is_empty() && (k == "*" || KINDS.contains(&k)) => {
                out.push((k.to_owned(), p.to_owned(), 0))
            }
            Some((k, p)) if !p.is_empty() => warn(&format!(
                "{path}:{}: `{k}` is no report kind (one of {}, or *)",
                n + 1,
                KINDS.join(", ")
            )),
            _ => warn(&format!("{path}:{}: `{line}` is not kind:pattern", n + 1)),
        }
    }
    out
}

/// A suppression pattern against a name, as LeakSanitizer matches them
/// (sanitizer_common's `TemplateMatch`): the pattern may match anywhere in
/// `text`, `*` matches any run of characters, a leading `^` anchors it at
/// the start and a trailing `$` at the end; everything else matches itself.
/// `leak:libc.so*` therefore matches `/lib/x86_64-linux-gnu/libc.so.6`.
pub fn template_match(pattern: &str, text: &str) -> bool {
    let (start, pattern) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, pattern) = match pattern.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let last = parts.len() - 1;
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == last && end {
            // The last part ends the text, after what matched before it
            // (`*$` ends anywhere).
            let ok = text.len() >= at + part.len() && text.ends_with(part);
            return ok && (i > 0 || !start || text.len() == part.len());
        }
        if part.is_empty() {
            continue;
        }
        if i == 0 && start {
            if !text.starts_with(part) {
                return false;
            }
            at = part.len();
        } else {
            match text[at..].find(part) {
                Some(k) => at += k + part.len(),
                None => return false,
            }
        }
    }
    true
}

/// Whether a suppression pattern matches a frame: its function or its
/// object's path ([`template_match`]).
fn frame_matches(pat: &str, s: &Symbol) -> bool {
    let test = |text: &str| template_match(pat, text);
    s.function.as_deref().is_some_and(test) || (!s.object.is_empty() && test(&s.object))
}

fn hex(a: usize) -> String {
    format!("{a:#x}")
}

fn frames_json(frames: &[Symbol]) -> serde_json::Value {
    serde_json::Value::Array(
        frames
            .iter()
            .map(|s| {
                serde_json::json!({
                    "address": hex(s.address),
                    "object": s.object,
                    "function": s.function,
                    "file": s.file,
                    "line": s.line,
                })
            })
            .collect(),
    )
}

fn write_stack(t: &mut String, frames: &[Symbol]) {
    if frames.is_empty() {
        t.push_str("    (no stack)\n");
    }
    for (i, s) in frames.iter().enumerate() {
        let _ = write!(
            t,
            "    #{i} {:#x} in {}",
            s.address,
            s.function.as_deref().unwrap_or("??")
        );
        if let Some(f) = &s.file {
            let _ = write!(t, " {f}");
            if let Some(l) = s.line {
                let _ = write!(t, ":{l}");
            }
        }
        if !s.object.is_empty() {
            let _ = write!(t, " ({})", s.object);
        }
        t.push('\n');
    }
}

fn sym(id: StackId) -> Vec<Symbol> {
    symbolize::stack(depot::frames(id), crate::stacks::own())
}

/// Whether the note of [`own_operator_new`] was printed.
static NOTED_OWN_NEW: AtomicBool = AtomicBool::new(false);

/// The object of an `operator new` that is not the checker's: a block
/// whose allocation stack is the checker's `malloc` called from an
/// `operator new` in another object (`-static-libstdc++` links libstdc++'s
/// into the executable, which binds its own calls to it: the preload
/// cannot interpose them). `new[]`/`delete` and `new`/`free` mismatches
/// in such a program are not seen (AddressSanitizer and Valgrind see
/// them); said once, with the first report that shows it.
fn own_operator_new(alloc: &[Symbol]) -> Option<&str> {
    let [first, second, ..] = alloc else {
        return None;
    };
    let f = first.function.as_deref()?;
    let n = second.function.as_deref()?;
    let libstdcxx = second
        .object
        .rsplit('/')
        .next()?
        .starts_with("libstdc++.so");
    (matches!(
        f,
        "malloc" | "aligned_alloc" | "posix_memalign" | "memalign"
    ) && n.starts_with("operator new")
        && !libstdcxx)
        .then_some(second.object.as_str())
}

/// Prints and records one report (unless suppressed); stops the process
/// when `halt_on_error` is set.
pub fn emit(r: Report) {
    crate::tls::inside(|| emit_inner(&r));
}

fn emit_inner(r: &Report) {
    let pid = memkit_sys::pid();
    let mut guard = OUT.lock();
    let _emitting = Emitting::new();
    let out = guard.get_or_insert_with(open);
    let stack = sym(r.stack);
    let alloc = sym(r.alloc_stack);
    let free = sym(r.free_stack);
    let reachable = r.leak_kind == Some("reachable");
    let all = stack.iter().chain(alloc.iter()).chain(free.iter());
    for frame in all {
        if let Some(s) = out
            .suppressions
            .iter_mut()
            .find(|(k, p, _)| (k == r.kind || k == "*") && frame_matches(p, frame))
        {
            s.2 += 1;
            out.suppressed += 1;
            return;
        }
    }
    out.refresh();
    let mut t = String::new();
    if r.kind == "leak" {
        let what = match r.leak_kind {
            Some("direct") => "Direct leak",
            Some("indirect") => "Indirect leak",
            _ => "Still reachable",
        };
        let _ = writeln!(
            t,
            "=={pid}== {what} of {} byte(s) in {} object(s) allocated from:",
            r.bytes, r.count
        );
        write_stack(&mut t, &alloc);
    } else {
        let _ = writeln!(
            t,
            "=={pid}== ERROR: memkit check: {} on address {:#x} in thread {}",
            r.kind, r.address, r.thread
        );
        let _ = writeln!(t, "=={pid}== {}", r.message);
        write_stack(&mut t, &stack);
        if r.free_stack != 0 {
            let _ = writeln!(t, "  freed by thread {} at:", r.free_thread);
            write_stack(&mut t, &free);
        }
        if r.alloc_stack != 0 {
            let _ = writeln!(
                t,
                "  {} by thread {} at:",
                if r.free_stack != 0 {
                    "previously allocated"
                } else {
                    "allocated"
                },
                r.alloc_thread
            );
            write_stack(&mut t, &alloc);
        }
    }
    if let Some(obj) = own_operator_new(&alloc) {
        if !NOTED_OWN_NEW.swap(true, Relaxed) {
            let _ = writeln!(
                t,
                "=={pid}== note: operator new in {obj} is the program's own (libstdc++ linked \
                 statically?): it calls malloc, so its blocks are malloc's to memkit check, \
                 which cannot see new/delete mismatches in it"
            );
        }
    }
    t.push('\n');
    let _ = memkit_sys::write_all(out.text_fd, t.as_bytes());
    if let Some(j) = &mut out.json {
        let opt = |id: StackId, s: &[Symbol]| {
            if id == 0 {
                serde_json::Value::Null
            } else {
                frames_json(s)
            }
        };
        let mut v = serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "pid": pid,
            "kind": r.kind,
            "message": r.message,
            "address": hex(r.address),
            "size": r.size,
            "offset": r.offset,
            "thread": r.thread,
            "stack": frames_json(&stack),
            "alloc_stack": opt(r.alloc_stack, &alloc),
            "free_stack": opt(r.free_stack, &free),
        });
        if let Some(lk) = r.leak_kind {
            v["leak_kind"] = lk.into();
            v["bytes"] = r.bytes.into();
            v["count"] = r.count.into();
        }
        let mut line = v.to_string();
        line.push('\n');
        let _ = j.write_all(line.as_bytes());
    }
    if reachable {
        return;
    }
    REPORTED.fetch_add(1, Relaxed);
    if r.kind == "leak" {
        out.leak_bytes += r.bytes;
        out.leak_blocks += r.count;
    }
    match out.counts.iter_mut().find(|(k, _)| *k == r.kind) {
        Some(c) => c.1 += 1,
        None => out.counts.push((r.kind, 1)),
    }
    if options::get().halt_on_error {
        drop(guard);
        summary();
        crate::exit_now(options::get().error_exitcode);
    }
}

/// The SUMMARY line (and the suppressions used), once at exit.
pub fn summary() {
    crate::tls::inside(|| {
        let pid = memkit_sys::pid();
        let mut guard = OUT.lock();
        let _emitting = Emitting::new();
        let Some(out) = guard.as_mut() else { return };
        out.refresh();
        let mut t = String::new();
        let used: Vec<_> = out.suppressions.iter().filter(|s| s.2 > 0).collect();
        if !used.is_empty() {
            let _ = writeln!(t, "=={pid}== Suppressions used:");
            for (k, p, n) in used {
                let _ = writeln!(t, "=={pid}==   {n:>6} {k}:{p}");
            }
        }
        let n = REPORTED.load(Relaxed);
        if n > 0 {
            let parts: Vec<String> = out
                .counts
                .iter()
                .map(|(k, c)| {
                    if *k == "leak" {
                        format!(
                            "{c} leak ({} bytes in {} blocks)",
                            out.leak_bytes, out.leak_blocks
                        )
                    } else {
                        format!("{c} {k}")
                    }
                })
                .collect();
            let _ = writeln!(
                t,
                "=={pid}== SUMMARY: memkit check: {n} report(s): {}",
                parts.join(", ")
            );
        }
        if !t.is_empty() {
            let _ = memkit_sys::write_all(out.text_fd, t.as_bytes());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::template_match as m;

    /// LeakSanitizer's rules (sanitizer_common's TemplateMatch).
    #[test]
    fn suppression_patterns_match_as_leak_sanitizer_does() {
        // No wildcard: a substring.
        assert!(m("xmalloc", "my_xmalloc_impl"));
        assert!(!m("xmalloc", "malloc"));
        // A wildcard pattern is not anchored either.
        assert!(m("libc.so*", "/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(m("third_party_*", "/src/third_party_zlib/inflate.so"));
        assert!(m("a*c", "xxabbbcxx"));
        assert!(!m("a*c", "xxcbbba"));
        assert!(m("*", "anything"));
        // Anchors.
        assert!(m("^foo", "foobar"));
        assert!(!m("^foo", "afoobar"));
        assert!(m("bar$", "foobar"));
        assert!(!m("bar$", "foobarx"));
        assert!(m("^foo$", "foo"));
        assert!(!m("^foo$", "foofoo"));
        assert!(m("^f*r$", "foobar"));
        assert!(!m("^f*r$", "foobarz"));
        assert!(m("^std::*$", "std::vector"));
        assert!(m("o*$", "foo"));
        // The last part cannot reuse what an earlier part matched.
        assert!(!m("ab*ba$", "aba"));
    }
}
