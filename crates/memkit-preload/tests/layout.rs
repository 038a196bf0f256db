//! libmemkit.so's code placement (hot-text.ld): the code every program runs
//! sits together in `.text.memkit_hot`, in an executable segment of its
//! own; the rest is in other segments, so that it is not mapped into a
//! program's RSS with the hot code (the kernel maps whole page-cache folios
//! around a fault, up to the end of the mapping).

use std::process::Command;

fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(memkit_tests::lib_path())
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex number")
}

/// `(address, size)` of an allocated section, from `readelf -SW`.
fn section(name: &str) -> Option<(u64, u64)> {
    let text = run("readelf", &["-SW"]);
    text.lines().find_map(|l| {
        let l = l.split(']').nth(1)?;
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&name)).then(|| (hex(f[2]), hex(f[4])))
    })
}

/// `(address, memory size)` of each PT_LOAD, from `readelf -lW`.
fn loads() -> Vec<(u64, u64)> {
    run("readelf", &["-lW"])
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (hex(f[2]), hex(f[5]))
        })
        .collect()
}

/// Address of every defined function symbol whose name starts with `prefix`.
fn functions(prefix: &str) -> Vec<(String, u64)> {
    run("nm", &[])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && (f[1] == "t" || f[1] == "T") && f[2].starts_with(prefix))
                .then(|| (f[2].to_owned(), hex(f[0])))
        })
        .collect()
}

/// The functions a trivial program runs (start-up, `malloc`, `free`, the
/// first page refill, exit; callgrind, docs/BENCHMARKS.md) and the malloc
/// family's common entry points.
const HOT: [&str; 17] = [
    "malloc",
    "free",
    "_Znwm",
    "calloc",
    "realloc",
    "posix_memalign",
    "_ZdlPv",
    "_ZN6memkit9lifecycle4init17h",
    "_ZN6memkit9lifecycle4fini17h",
    "_ZN12memkit_alloc6config4load17h",
    "_ZN12memkit_alloc4heap6thread11thread_init17h",
    "_ZN12memkit_alloc4heap8Registry8new_heap17h",
    "_ZN12memkit_alloc4heap5alloc14alloc_bin_slow17h",
    "_ZN12memkit_alloc11malloc_slow17h",
    "_ZN12memkit_alloc7segment5alloc17h",
    "_ZN12memkit_alloc15free_other_heap17h",
    "_ZN10memkit_sys11map_aligned17h",
];

/// Functions most programs never run.
const COLD: [&str; 5] = [
    "memkit_shm_create",
    "memkit_secure_realloc",
    "malloc_info",
    "_ZN12memkit_alloc4huge4free17h",
    "_ZN12memkit_alloc4heap6thread11thread_done17h",
];

#[test]
fn hot_code_is_together_and_alone_in_its_segment() {
    let (hot, hot_len) = section(".text.memkit_hot").expect("a .text.memkit_hot section");
    assert!(
        hot_len <= 48 << 10,
        ".text.memkit_hot is {hot_len} bytes: more than 48 KiB of code every program maps"
    );
    let inside = |a: u64| a >= hot && a < hot + hot_len;
    for name in HOT {
        let found = functions(name);
        let exact: Vec<_> = if name.starts_with("_ZN") {
            found
        } else {
            found.into_iter().filter(|(n, _)| n == name).collect()
        };
        assert!(!exact.is_empty(), "no function {name}");
        for (n, a) in exact {
            assert!(inside(a), "{n} at {a:#x} is outside .text.memkit_hot");
        }
    }
    for name in COLD {
        let found = functions(name);
        assert!(!found.is_empty(), "no function {name}");
        for (n, a) in found {
            assert!(!inside(a), "{n} at {a:#x} is in .text.memkit_hot");
        }
    }
    // The hot section's segment holds nothing of memkit's but it (and the
    // few bytes of crt code in .text, .init, .fini, .plt).
    let (seg, seg_len) = loads()
        .into_iter()
        .find(|&(a, len)| a <= hot && hot < a + len)
        .expect("a PT_LOAD holding .text.memkit_hot");
    assert!(
        seg_len <= hot_len + (4 << 10),
        "the hot segment ({seg:#x}, {seg_len} bytes) holds more than .text.memkit_hot"
    );
    for cold in [".text.memkit_warm", ".text.memkit_cold", ".eh_frame"] {
        let (a, _) = section(cold).unwrap_or_else(|| panic!("a {cold} section"));
        assert!(
            a < seg || a >= seg + seg_len,
            "{cold} shares the hot code's segment"
        );
    }
}

/// `.data` is file-backed: the kernel maps all of it around the first
/// fault, so every byte of it is resident in every program. The zeroed
/// tables (the ownership maps' leaf slots, 16 KiB) belong in `.bss`,
/// whose untouched pages never are (segment.rs, `Leaves`).
#[test]
fn data_holds_no_zeroed_tables() {
    let (_, len) = section(".data").expect("a .data section");
    assert!(
        len <= 8 << 10,
        ".data is {len} bytes (it was 5 KiB; 21 KiB with the leaf slots in it)"
    );
}
