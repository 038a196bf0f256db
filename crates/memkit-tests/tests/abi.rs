//! glibc-compatible ABI: the C and C++ programs in `c/` under LD_PRELOAD.

use memkit_tests::*;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// abi.c on plain glibc: validates the test program itself.
#[test]
fn abi_c_baseline_glibc() {
    if !require("abi_c_baseline_glibc", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("abi-base");
    let prog = compile_c("abi.c", dir.path(), "abi", &[]);
    run_ok(&mut Command::new(&prog), T, "abi (plain glibc)");
}

/// abi.c under libmemkit.so, with malloc/free (and the rest) bound to it.
#[test]
fn abi_c() {
    if !require("abi_c", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("abi");
    let prog = compile_c("abi.c", dir.path(), "abi", &[]);
    let mut cmd = preloaded(&prog);
    let o = run_checking_bindings(
        &mut cmd,
        T,
        &[
            "malloc",
            "free",
            "calloc",
            "realloc",
            "posix_memalign",
            "aligned_alloc",
            "memalign",
            "valloc",
            "pvalloc",
            "malloc_usable_size",
            "reallocarray",
            "mallinfo2",
            "malloc_trim",
            "mallopt",
            "malloc_stats",
            "malloc_info",
        ],
        "abi under libmemkit.so",
    );
    eprint!("{}", o.stdout);
}

/// The C++ operators: new/delete in all variants work under libmemkit.so,
/// and the deallocation and nothrow operators bind to it.
#[test]
fn abi_cxx() {
    if !require("abi_cxx", &["g++"]) {
        return;
    }
    let dir = TempDir::new("abi-cxx");
    let prog = compile_cxx("abi_cxx.cc", dir.path(), "abi_cxx", &["-std=gnu++17"]);
    run_ok(&mut Command::new(&prog), T, "abi_cxx (plain glibc)");
    let mut cmd = preloaded(&prog);
    run_checking_bindings(
        &mut cmd,
        T,
        &[
            "malloc",
            "free",
            "_ZdlPv",
            "_ZdaPv",
            "_ZdlPvm",
            "_ZdlPvSt11align_val_t",
            "_ZnwmRKSt9nothrow_t",
        ],
        "abi_cxx under libmemkit.so",
    );
}

/// The throwing `operator new` forms bind to libmemkit.so's own (naked
/// functions that call memkit directly, the new_handler when memory is
/// short, and throw `std::bad_alloc` through libstdc++: abi_cxx.cc's
/// `test_throwing_new_when_short`), not to libstdc++'s, which would reach
/// memkit through `malloc` with a call and a PLT jump more.
#[test]
fn abi_cxx_throwing_new_binds_to_memkit() {
    if !require("abi_cxx_throwing_new_binds_to_memkit", &["g++"]) {
        return;
    }
    let dir = TempDir::new("abi-cxx-new");
    let prog = compile_cxx("abi_cxx.cc", dir.path(), "abi_cxx", &["-std=gnu++17"]);
    let mut cmd = preloaded(&prog);
    let dbg = TempDir::new("ld-debug-new");
    cmd.env("LD_DEBUG", "bindings")
        .env("LD_DEBUG_OUTPUT", dbg.join("ld"));
    run_ok(&mut cmd, T, "abi_cxx under libmemkit.so (operator new)");
    let forms = ["_Znwm", "_Znam", "_ZnwmSt11align_val_t"];
    let b = read_bindings(dbg.path(), "ld", &forms);
    for sym in forms {
        assert!(
            b.iter().any(|b| b.symbol == sym
                && b.from.contains("abi_cxx")
                && b.to.contains("libmemkit")),
            "the program's `{sym}` did not bind to libmemkit.so: {:?}",
            b.iter()
                .map(|b| (&b.from, &b.symbol, &b.to))
                .collect::<Vec<_>>()
        );
    }
}

fn build_ctor(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ctor = compile_c(
        "ctor_alloc.c",
        dir.path(),
        "libctor.so",
        &["-shared", "-fPIC", "-DBUILD_CTOR_LIB"],
    );
    let tls = compile_c(
        "ctor_alloc.c",
        dir.path(),
        "libtls.so",
        &["-shared", "-fPIC", "-DBUILD_TLS_LIB"],
    );
    let prog = compile_c("ctor_alloc.c", dir.path(), "ctor_alloc", &[]);
    (ctor, tls, prog)
}

/// Another preloaded library allocates in its constructor and destructor,
/// loaded before and after libmemkit.so.
#[test]
fn ctor_alloc_both_orders() {
    if !require("ctor_alloc_both_orders", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("ctor");
    let (ctor, _tls, prog) = build_ctor(&dir);
    let lib = lib_path();
    // Plain glibc first (validates the test).
    let mut base = Command::new(&prog);
    base.arg("trivial").env("LD_PRELOAD", &ctor);
    run_ok(
        &mut base,
        T,
        "ctor_alloc trivial with libctor.so on plain glibc",
    );
    for (name, order) in [
        (
            "libctor.so first",
            format!("{} {}", ctor.display(), lib.display()),
        ),
        (
            "libmemkit.so first",
            format!("{} {}", lib.display(), ctor.display()),
        ),
    ] {
        let mut cmd = Command::new(&prog);
        cmd.arg("trivial").env("LD_PRELOAD", &order);
        let o = run_checking_bindings(
            &mut cmd,
            T,
            &["malloc", "free", "realloc", "calloc", "posix_memalign"],
            &format!("ctor_alloc trivial, LD_PRELOAD with {name}"),
        );
        assert!(
            o.stdout.contains("trivial ok"),
            "unexpected output: {}",
            o.stdout
        );
    }
}

/// dlopen/dlclose of a library with (dynamic) __thread variables from many
/// threads: glibc's DTV handling calls malloc/free at awkward moments.
#[test]
fn dlopen_tls_threads() {
    if !require("dlopen_tls_threads", &["gcc"]) {
        return;
    }
    let dir = TempDir::new("dltls");
    let (_ctor, tls, prog) = build_ctor(&dir);
    let mut base = Command::new(&prog);
    base.arg("dlopen-tls").arg(&tls);
    run_ok(&mut base, T, "ctor_alloc dlopen-tls on plain glibc");
    let mut cmd = preloaded(&prog);
    cmd.arg("dlopen-tls").arg(&tls);
    run_checking_bindings(
        &mut cmd,
        T,
        &["malloc", "free"],
        "ctor_alloc dlopen-tls under libmemkit.so",
    );
}
