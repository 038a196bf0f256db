//! libmemkit.so exports the complete malloc family, glibc's aliases, the
//! introspection set and the C++ operators, and needs almost nothing from
//! libc (PITFALLS: nothing that could allocate behind the allocator's back).

use std::process::Command;

fn dynamic_symbols(undefined: bool) -> Vec<String> {
    let flag = if undefined {
        "--undefined-only"
    } else {
        "--defined-only"
    };
    let out = Command::new("nm")
        .args(["-D", flag])
        .arg(memkit_tests::lib_path())
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

#[test]
fn exports_the_whole_malloc_family() {
    let defined = dynamic_symbols(false);
    let required = [
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
        "mallinfo",
        "mallinfo2",
        "malloc_trim",
        "malloc_stats",
        "malloc_info",
        "mallopt",
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
        "memkit_stack_remaining",
    ];
    let missing: Vec<_> = required
        .iter()
        .filter(|s| !defined.iter().any(|d| d == *s))
        .collect();
    assert!(missing.is_empty(), "libmemkit.so lacks {missing:?}");
    // Rust internals must not leak out and interpose other Rust code.
    assert!(
        !defined
            .iter()
            .any(|d| d.starts_with("rust_") || d.starts_with("_ZN")),
        "{defined:?}"
    );
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
