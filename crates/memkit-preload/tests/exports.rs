//! libmemkit.so exports the complete malloc family, glibc's aliases, the
//! introspection set and the C++ operators, and needs almost nothing from
//! libc (PITFALLS: nothing that could allocate behind the allocator's back).

use std::process::Command;

fn dynamic_symbols(undefined: bool) -> Vec<String> {
    symbols_of(memkit_tests::lib_path(), undefined)
}

fn symbols_of(lib: &std::path::Path, undefined: bool) -> Vec<String> {
    let flag = if undefined {
        "--undefined-only"
    } else {
        "--defined-only"
    };
    let out = Command::new("nm")
        .args(["-D", flag])
        .arg(lib)
        .output()
        .expect("nm runs");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// The malloc family and the C++ operators: memkit-abi's export list, the
/// same in every front-end.
const FAMILY: [&str; 34] = [
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "cfree",
    "__libc_malloc",
    "__libc_free",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "__posix_memalign",
    "free_sized",
    "free_aligned_sized",
    "_ZdlPv",
    "_ZdaPv",
    "_ZdlPvm",
    "_ZdaPvm",
    "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
];

/// The throwing `operator new` forms, exported by both libraries.
const THROWING_NEW: [&str; 4] = [
    "_Znwm",
    "_Znam",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
];

fn missing(defined: &[String], wanted: &[&str]) -> Vec<String> {
    wanted
        .iter()
        .filter(|s| !defined.iter().any(|d| d == *s))
        .map(|s| s.to_string())
        .collect()
}

/// Rust internals must not leak out and interpose other Rust code.
fn no_rust_internals(defined: &[String]) {
    assert!(
        !defined
            .iter()
            .any(|d| d.starts_with("rust_") || d.starts_with("_ZN")),
        "{defined:?}"
    );
}

#[test]
fn exports_the_whole_malloc_family() {
    let defined = dynamic_symbols(false);
    let own = [
        "mallinfo",
        "mallinfo2",
        "malloc_trim",
        "malloc_stats",
        "malloc_info",
        "mallopt",
        "memkit_version",
        "memkit_stack_remaining",
    ];
    let lacking = [
        missing(&defined, &FAMILY),
        missing(&defined, &THROWING_NEW),
        missing(&defined, &own),
    ]
    .concat();
    assert!(lacking.is_empty(), "libmemkit.so lacks {lacking:?}");
    no_rust_internals(&defined);
}

/// libmemkit_check.so is the same export list over its backend, with the
/// throwing `operator new` forms (so every C++ block carries its kind).
#[test]
fn the_check_library_exports_the_same_list() {
    let defined = symbols_of(memkit_tests::check_lib_path(), false);
    let lacking = [missing(&defined, &FAMILY), missing(&defined, &THROWING_NEW)].concat();
    assert!(lacking.is_empty(), "libmemkit_check.so lacks {lacking:?}");
    no_rust_internals(&defined);
}

/// libmemkit_profile.so too, leaving the throwing forms to libstdc++ like
/// libmemkit.so.
#[test]
fn the_profile_library_exports_the_same_list() {
    let defined = symbols_of(memkit_tests::profile_lib_path(), false);
    let lacking = missing(&defined, &FAMILY);
    assert!(lacking.is_empty(), "libmemkit_profile.so lacks {lacking:?}");
    no_rust_internals(&defined);
}

#[test]
fn needs_nothing_from_libc_that_could_allocate() {
    let allowed = [
        "__errno_location",
        "abort",
        "clock_gettime",
        "environ",
        "fwrite",
        "memcpy",
        "memset",
        "memmove",
        "memcmp",
        "bcmp",
        "strlen",
        "pthread_atfork",
        // The record for `memkit run` learns the exit status; called once,
        // from the constructor (glibc allocates, with our malloc, only past
        // 32 handlers).
        "on_exit",
        "pthread_key_create",
        "pthread_setspecific",
        "__cxa_finalize",
        "__gmon_start__",
        "_ITM_deregisterTMCloneTable",
        "_ITM_registerTMCloneTable",
        "getauxval",
        // memkit_stack_remaining, on a thread's first call (never from the
        // allocator): the stack of threads other than the main one.
        // pthread_getattr_np allocates, through our malloc.
        "pthread_self",
        "pthread_getattr_np",
        "pthread_attr_getstack",
        "pthread_attr_destroy",
        // Shared-memory heaps (memkit_shm_*, never the allocator): their
        // robust process-shared locks are glibc's mutexes (the kernel's
        // robust-futex list is glibc's per thread). None allocates.
        "pthread_mutexattr_init",
        "pthread_mutexattr_setpshared",
        "pthread_mutexattr_setrobust",
        "pthread_mutexattr_destroy",
        "pthread_mutex_init",
        "pthread_mutex_lock",
        "pthread_mutex_unlock",
        "pthread_mutex_consistent",
        // Error-checking locks (a second lock in one thread is EDEADLK).
        "pthread_mutexattr_settype",
        // Huge blocks freed into the cache: how much of the block its last
        // use touched (glibc's wrapper is the bare system call).
        "mincore",
        // A throwing `operator new` with no memory left (never `malloc`):
        // libstdc++'s `std::get_new_handler` and `std::__throw_bad_alloc`.
        "dlsym",
    ];
    let unexpected: Vec<_> = dynamic_symbols(true)
        .into_iter()
        .filter(|s| !allowed.contains(&s.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "libmemkit.so needs unexpected symbols: {unexpected:?}"
    );
}

/// Every function include/*.h declares (what -lmemkit promises).
fn declared_functions() -> Vec<String> {
    let include = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(include).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with('*') || line.starts_with("/*") {
                continue;
            }
            if let Some(open) = line.find('(').filter(|_| line.ends_with(");")) {
                let name: String = line[..open]
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")
                    .to_owned();
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn exports_every_function_of_the_headers() {
    let declared = declared_functions();
    assert!(
        declared.iter().any(|f| f == "memkit_secure_malloc"),
        "{declared:?}"
    );
    let defined = dynamic_symbols(false);
    let missing: Vec<_> = declared.iter().filter(|f| !defined.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "declared in include/ but not exported: {missing:?}"
    );
}

/// `readelf` of the library, as text.
fn readelf(flag: &str) -> String {
    let out = Command::new("readelf")
        .arg(flag)
        .arg(memkit_tests::lib_path())
        .output()
        .expect("readelf runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The soname programs linked with -lmemkit depend on, and the version
/// note `memkit --version` reads (crates/memkit-sys/src/version.rs).
#[test]
fn has_a_soname_and_a_version_note() {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let dynamic = readelf("-d");
    assert!(
        dynamic.contains(&format!("Library soname: [libmemkit.so.{major}]")),
        "{dynamic}"
    );
    let notes = readelf("-n");
    let version_hex: Vec<String> = env!("CARGO_PKG_VERSION")
        .bytes()
        .chain([0])
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        notes.contains("Displaying notes found in: .note.memkit.version"),
        "{notes}"
    );
    assert!(notes.contains(&version_hex.join(" ")), "{notes}");
    // In a PT_NOTE segment, where a stripped or packaged copy keeps it.
    let segments = readelf("-lW");
    let headers: Vec<&str> = segments
        .lines()
        .skip_while(|l| !l.starts_with("Program Headers:"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| !l.trim_start().starts_with('['))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    let in_note = segments
        .lines()
        .skip_while(|l| !l.contains("Section to Segment mapping"))
        .skip(2)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let index: usize = words.next()?.parse().ok()?;
            Some((index, words.collect::<Vec<_>>()))
        })
        .any(|(i, sections)| {
            headers.get(i) == Some(&"NOTE") && sections.contains(&".note.memkit.version")
        });
    assert!(in_note, "{segments}");
}
