//! The one-bug programs of `crates/memkit-tests/c/check/`: what each
//! case must report (and its twin must not), and the judging of a run.

use std::path::Path;
use std::process::Command;

use memkit_tests::{require, run};
use serde_json::Value;

use crate::{bugs, bugs_cxx, bugs_optimized, check, par_map, Checked, ERROR_EXIT, T};

// ---------------------------------------------------------------------------
// What a report must say
// ---------------------------------------------------------------------------

/// One expected report. Stacks are function names: the first is frame 0
/// (the entry point the program called: `malloc`, `free`, `memcpy`...), the
/// others must follow in this order, not necessarily adjacent. A C++ name
/// matches its demangled form with any parameter list.
#[derive(Clone, Copy)]
pub(crate) struct Expect {
    pub(crate) kind: &'static str,
    pub(crate) size: Option<u64>,
    pub(crate) offset: Option<i64>,
    /// Where it was found; empty: no stack (leaks, and what is found at
    /// exit, when the quarantine drains).
    pub(crate) stack: &'static [&'static str],
    /// `None`: `alloc_stack` must be null.
    pub(crate) alloc: Option<&'static [&'static str]>,
    pub(crate) free: Option<&'static [&'static str]>,
    /// Leaks: leak_kind, bytes, count.
    pub(crate) leak: Option<(&'static str, u64, u64)>,
    /// A phrase of the message.
    pub(crate) message: &'static str,
    pub(crate) address: Option<&'static str>,
}

pub(crate) const REPORT: Expect = Expect {
    kind: "",
    size: None,
    offset: None,
    stack: &[],
    alloc: None,
    free: None,
    leak: None,
    message: "",
    address: None,
};

/// A leak of `count` blocks of `size` bytes.
pub(crate) const fn leak(
    leak_kind: &'static str,
    size: u64,
    count: u64,
    alloc: &'static [&'static str],
) -> Expect {
    Expect {
        kind: "leak",
        size: Some(size),
        offset: Some(0),
        alloc: Some(alloc),
        leak: Some((leak_kind, size * count, count)),
        ..REPORT
    }
}

/// A report about a block allocated by `alloc_site_malloc` (check_bugs.c).
const fn on_block(
    kind: &'static str,
    size: u64,
    offset: i64,
    stack: &'static [&'static str],
) -> Expect {
    Expect {
        kind,
        size: Some(size),
        offset: Some(offset),
        stack,
        alloc: Some(&["malloc", "alloc_site_malloc", "main"]),
        ..REPORT
    }
}

const FREED: Option<&[&str]> = Some(&["free", "free_site_free", "main"]);

/// One case of a one-bug program: the reports of `CASE`, lines its stdout
/// must hold, and lines the stdout of `ok-CASE` must hold. No expected
/// report: the case is correct code (exit 0, `[]`) both ways.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) reports: &'static [Expect],
    pub(crate) stdout: &'static [&'static str],
    pub(crate) twin_stdout: &'static [&'static str],
}

const fn case(name: &'static str, reports: &'static [Expect]) -> Case {
    Case {
        name,
        reports,
        stdout: &[],
        twin_stdout: &[],
    }
}

const fn case_out(
    name: &'static str,
    reports: &'static [Expect],
    stdout: &'static [&'static str],
    twin_stdout: &'static [&'static str],
) -> Case {
    Case {
        name,
        reports,
        stdout,
        twin_stdout,
    }
}

const DOUBLE_FREE: Expect = Expect {
    message: "double-free",
    free: FREED,
    ..on_block(
        "double-free",
        40,
        0,
        &["free", "bug_site_double_free", "main"],
    )
};

const FREE_GLOBAL: Expect = Expect {
    kind: "invalid-free",
    stack: &["free", "bug_site_free_global", "main"],
    message: "a global of",
    ..REPORT
};

const TOO_BIG: u64 = 1 << 45;

/// Every case of check_bugs.c (`check_bugs list` prints exactly these).
pub(crate) const C_CASES: &[Case] = &[
    case(
        "leak-direct",
        &[leak(
            "direct",
            48,
            1,
            &["malloc", "alloc_site_leak_direct", "main"],
        )],
    ),
    case(
        "leak-indirect",
        &[
            leak(
                "direct",
                32,
                1,
                &["malloc", "alloc_site_leak_outer", "main"],
            ),
            leak(
                "indirect",
                64,
                1,
                &["malloc", "alloc_site_leak_inner", "main"],
            ),
        ],
    ),
    case(
        "leak-cycle",
        &[
            leak(
                "direct",
                32,
                1,
                &["malloc", "alloc_site_leak_outer", "main"],
            ),
            leak(
                "indirect",
                32,
                1,
                &["malloc", "alloc_site_leak_outer", "main"],
            ),
        ],
    ),
    // 1000 blocks of one site: one report (main scrubs the stack, so that
    // the last pointer does not linger in a dead slot).
    case(
        "leak-many",
        &[leak(
            "direct",
            24,
            1000,
            &["malloc", "alloc_site_leak_many", "main"],
        )],
    ),
    case(
        "leak-strdup",
        &[leak(
            "direct",
            31,
            1,
            &["malloc", "alloc_site_strdup", "main"],
        )],
    ),
    case(
        "leak-thread",
        &[leak(
            "direct",
            72,
            1,
            &["malloc", "alloc_site_thread_leak", "thread_leak_body"],
        )],
    ),
    case(
        "leak-suppressed",
        &[leak(
            "direct",
            56,
            1,
            &["malloc", "alloc_site_suppressed", "main"],
        )],
    ),
    // The twins of these four keep the block reachable: through a global,
    // a __thread variable, the stack of a thread still alive at exit, a
    // pointer to the block's middle. The bugs drop that root.
    case(
        "leak-global",
        &[leak(
            "direct",
            100,
            1,
            &["malloc", "alloc_site_global", "main"],
        )],
    ),
    case(
        "leak-tls",
        &[leak(
            "direct",
            120,
            1,
            &["malloc", "alloc_site_tls", "main"],
        )],
    ),
    case(
        "leak-thread-stack",
        &[leak(
            "direct",
            88,
            1,
            &["malloc", "alloc_site_thread_held", "holder_body"],
        )],
    ),
    case(
        "leak-interior",
        &[leak(
            "direct",
            200,
            1,
            &["malloc", "alloc_site_interior", "main"],
        )],
    ),
    // Reachable only from anonymous memory the program mapped itself
    // (`scan_mmap`, on by default; see `scan_mmap_off_is_lsans_roots`).
    case(
        "leak-mmap",
        &[
            leak(
                "direct",
                152,
                1,
                &["malloc", "alloc_site_mmap_deep", "main"],
            ),
            leak("direct", 144, 1, &["malloc", "alloc_site_mmap", "main"]),
        ],
    ),
    case(
        "leak-stale-slot",
        &[leak(
            "direct",
            40,
            1,
            &["malloc", "alloc_site_leak_stale", "main"],
        )],
    ),
    case("double-free", &[DOUBLE_FREE]),
    // The checker's descriptors closed and their numbers reused.
    case("close-fds", &[DOUBLE_FREE]),
    // The block is out of quarantine: its address is still the heap's, the
    // message says so (it named "an anonymous mapping").
    case(
        "late-double-free",
        &[Expect {
            kind: "invalid-free",
            stack: &["free", "bug_site_late_double_free", "main"],
            message: "in the heap but in no live block",
            ..REPORT
        }],
    ),
    case(
        "invalid-free-interior",
        &[Expect {
            message: "not the start of a block",
            ..on_block(
                "invalid-free",
                32,
                8,
                &["free", "bug_site_free_interior", "main"],
            )
        }],
    ),
    case(
        "invalid-free-stack",
        &[Expect {
            kind: "invalid-free",
            stack: &["free", "bug_site_free_stack", "main"],
            message: "on the main thread's stack",
            ..REPORT
        }],
    ),
    case("invalid-free-global", &[FREE_GLOBAL]),
    case(
        "overflow-end",
        &[Expect {
            message: "past the block's end, found when free was called",
            ..on_block(
                "heap-buffer-overflow",
                24,
                24,
                &["free", "bug_site_overflow_end", "main"],
            )
        }],
    ),
    case(
        "overflow-before",
        &[Expect {
            message: "before the block's start",
            ..on_block(
                "heap-buffer-overflow",
                24,
                -1,
                &["free", "bug_site_overflow_before", "main"],
            )
        }],
    ),
    case_out(
        "overflow-before-aligned",
        &[Expect {
            message: "before the block's start",
            alloc: Some(&["memalign", "alloc_site_memalign", "main"]),
            ..on_block(
                "heap-buffer-overflow",
                40,
                -1,
                &["free", "bug_site_overflow_before", "main"],
            )
        }],
        &["ALIGNED 1 SMALL 1"],
        &["ALIGNED 1 SMALL 1"],
    ),
    case(
        "overflow-memcpy",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["memcpy", "bug_site_overflow_memcpy", "main"],
        )],
    ),
    // Not terminated: the comparison reads the byte past the end.
    case_out(
        "overflow-strcmp",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["strcmp", "bug_site_overflow_strcmp", "main"],
        )],
        &["CMP 0"],
        &["CMP 1"],
    ),
    case(
        "overflow-read",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["read", "bug_site_overflow_read", "main"],
        )],
    ),
    case(
        "overflow-fread",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["fread", "bug_site_overflow_fread", "main"],
        )],
    ),
    // 159 bytes and a NUL, far past the red zone.
    case(
        "overflow-fgets",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["fgets", "bug_site_overflow_fgets", "main"],
        )],
    ),
    // "1 2 3 4 5 6 7.5" is 15 bytes: with the 10 digits, 26 and a NUL.
    case_out(
        "overflow-sprintf",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["sprintf", "bug_site_overflow_sprintf", "main"],
        )],
        &["SPRINTF 25 "],
        &["SPRINTF 15 1 2 3 4 5 6 7.5"],
    ),
    // 28 bytes of output: 23 and a NUL fit a 24-byte buffer.
    case_out(
        "overflow-snprintf",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["snprintf", "bug_site_overflow_snprintf", "main"],
        )],
        &["SNPRINTF 28"],
        &["SNPRINTF 28"],
    ),
    // The string's NUL is the 25th byte.
    case(
        "overflow-stpcpy",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["stpcpy", "bug_site_overflow_stpcpy", "main"],
        )],
    ),
    case(
        "overflow-mempcpy",
        &[on_block(
            "heap-buffer-overflow",
            24,
            24,
            &["mempcpy", "bug_site_overflow_mempcpy", "main"],
        )],
    ),
    // A plain write after free is found when the quarantine drains at exit.
    case(
        "uaf-write",
        &[Expect {
            free: FREED,
            message: "left quarantine",
            ..on_block("use-after-free", 40, 8, &[])
        }],
    ),
    // Near the end of a larger block, found when newer frees push it out
    // of quarantine (the case's churn): the bounded check's tail.
    case(
        "uaf-write-tail",
        &[Expect {
            free: FREED,
            message: "left quarantine",
            ..on_block("use-after-free", 4096, 4090, &[])
        }],
    ),
    case(
        "uaf-memcpy",
        &[Expect {
            free: FREED,
            ..on_block(
                "use-after-free",
                40,
                0,
                &["memcpy", "bug_site_uaf_memcpy", "main"],
            )
        }],
    ),
    case(
        "uaf-realloc",
        &[Expect {
            free: Some(&["realloc", "realloc_site_move", "main"]),
            ..on_block("use-after-free", 16, 0, &[])
        }],
    ),
    case(
        "memcpy-overlap",
        &[Expect {
            kind: "memcpy-param-overlap",
            stack: &["memcpy", "bug_site_memcpy_overlap", "main"],
            message: "overlap",
            ..REPORT
        }],
    ),
    case_out(
        "bad-posix-memalign",
        &[Expect {
            kind: "invalid-alignment",
            stack: &["posix_memalign", "bug_site_posix_memalign", "main"],
            address: Some("0x18"),
            ..REPORT
        }],
        &["RC 22"],
        &["RC 0"],
    ),
    case_out(
        "bad-aligned-alloc",
        &[Expect {
            kind: "invalid-alignment",
            stack: &["aligned_alloc", "bug_site_aligned_alloc", "main"],
            address: Some("0x18"),
            ..REPORT
        }],
        &["NONNULL 1 ALIGNED32 1"],
        &["NONNULL 1 ALIGNED32 1"],
    ),
    case_out(
        "bad-aligned-alloc-zero",
        &[Expect {
            kind: "invalid-alignment",
            stack: &["aligned_alloc", "bug_site_aligned_alloc_zero", "main"],
            address: Some("0x0"),
            ..REPORT
        }],
        &["NONNULL 1 ALIGNED16 1"],
        &["NONNULL 1 ALIGNED16 1"],
    ),
    case(
        "free-sized-mismatch",
        &[Expect {
            message: "free_sized was told the block's size is 48 bytes; it was allocated with 40",
            ..on_block(
                "free-size-mismatch",
                40,
                0,
                &["free_sized", "bug_site_free_sized", "main"],
            )
        }],
    ),
    case_out(
        "bad-usable-size",
        &[on_block(
            "bad-malloc_usable_size",
            40,
            8,
            &["malloc_usable_size", "bug_site_usable_size", "main"],
        )],
        &["USABLE 0"],
        &["USABLE 40"],
    ),
    case_out(
        "malloc-too-big",
        &[Expect {
            kind: "allocation-size-too-big",
            size: Some(TOO_BIG),
            stack: &["malloc", "bug_site_malloc_too_big", "main"],
            ..REPORT
        }],
        &["NULL 1 ENOMEM 1"],
        &["NULL 0 ENOMEM 0"],
    ),
    case_out(
        "calloc-overflow",
        &[Expect {
            kind: "calloc-overflow",
            stack: &["calloc", "bug_site_calloc_overflow", "main"],
            ..REPORT
        }],
        &["NULL 1 ENOMEM 1"],
        &["NULL 0 ENOMEM 0"],
    ),
    // Reported as AddressSanitizer does; the block is left as it was.
    case_out(
        "reallocarray-overflow",
        &[Expect {
            kind: "reallocarray-overflow",
            stack: &["reallocarray", "bug_site_reallocarray_overflow", "main"],
            message: "reallocarray parameters overflow",
            ..REPORT
        }],
        &["NULL 1 ENOMEM 1"],
        &["NULL 0 ENOMEM 0"],
    ),
    // The alignment counts: 16 bytes aligned to 1 TiB need more than 1 TiB.
    case_out(
        "memalign-too-big",
        &[Expect {
            kind: "allocation-size-too-big",
            size: Some(16),
            stack: &["memalign", "bug_site_memalign_too_big", "main"],
            message: "with alignment 0x10000000000",
            ..REPORT
        }],
        &["NULL 1 ENOMEM 1"],
        &["NULL 0 ENOMEM 0"],
    ),
    case_out("fill", &[], &["FILL be"], &["FILL be"]),
    case_out(
        "two-bugs",
        &[DOUBLE_FREE, FREE_GLOBAL],
        &["AFTER-FIRST", "AFTER-SECOND"],
        &["AFTER-SECOND"],
    ),
    // The report comes from the child (its pid: see `fork_leak_is_the_childs`).
    case(
        "fork-leak",
        &[leak(
            "direct",
            64,
            1,
            &["malloc", "alloc_site_child_leak", "main"],
        )],
    ),
];

const NEW_TOO_BIG: Expect = Expect {
    kind: "allocation-size-too-big",
    size: Some(TOO_BIG),
    ..REPORT
};

/// A mismatch on a block of `size` bytes from `alloc`.
const fn mismatch(
    size: u64,
    alloc: &'static [&'static str],
    stack: &'static [&'static str],
) -> Expect {
    Expect {
        kind: "alloc-dealloc-mismatch",
        size: Some(size),
        offset: Some(0),
        stack,
        alloc: Some(alloc),
        ..REPORT
    }
}

/// Every case of check_bugs_cxx.cc.
const CXX_CASES: &[Case] = &[
    case(
        "malloc-delete",
        &[Expect {
            message: "allocated with malloc, freed with operator delete",
            ..mismatch(
                16,
                &["malloc", "alloc_site_malloc"],
                &["operator delete", "bug_site_delete", "main"],
            )
        }],
    ),
    case(
        "new-free",
        &[Expect {
            message: "allocated with operator new, freed with free",
            ..mismatch(
                1,
                &["operator new", "alloc_site_new"],
                &["free", "bug_site_free", "main"],
            )
        }],
    ),
    case(
        "new-array-delete",
        &[mismatch(
            24,
            &["operator new[]", "alloc_site_new_array"],
            &["operator delete", "bug_site_delete", "main"],
        )],
    ),
    // 3 objects of 16 bytes after new[]'s 8-byte count; `delete` frees
    // the address past the count, which frees nothing: the block leaks
    // (Valgrind: "definitely lost" too).
    case(
        "new-array-dtor-delete",
        &[
            Expect {
                kind: "invalid-free",
                size: Some(56),
                offset: Some(8),
                stack: &["operator delete", "bug_site_delete_dtor", "main"],
                alloc: Some(&["operator new[]", "alloc_site_new_array_dtor"]),
                message: "`delete` of a `new[]` array; use `delete[]`",
                ..REPORT
            },
            leak(
                "direct",
                56,
                1,
                &["operator new[]", "alloc_site_new_array_dtor", "main"],
            ),
        ],
    ),
    case(
        "new-delete-array",
        &[mismatch(
            1,
            &["operator new", "alloc_site_new"],
            &["operator delete[]", "bug_site_delete_array", "main"],
        )],
    ),
    case(
        "aligned-new-delete",
        &[Expect {
            message: "allocated with operator new (align_val_t), freed with operator delete;",
            ..mismatch(
                40,
                &["operator new", "alloc_site_new_aligned"],
                &["operator delete", "bug_site_delete_plain", "main"],
            )
        }],
    ),
    case(
        "new-aligned-delete",
        &[Expect {
            message: "allocated with operator new, freed with operator delete (align_val_t)",
            ..mismatch(
                1,
                &["operator new", "alloc_site_new"],
                &["operator delete", "bug_site_delete_aligned", "main"],
            )
        }],
    ),
    case(
        "sized-delete",
        &[Expect {
            kind: "new-delete-type-mismatch",
            message: "size of the allocated type 64 bytes, size of the deallocated type 8 bytes",
            alloc: Some(&["operator new", "alloc_site_new_derived"]),
            ..mismatch(
                64,
                &[],
                &["operator delete", "bug_site_delete_base", "main"],
            )
        }],
    ),
    case(
        "sized-delete-array",
        &[Expect {
            kind: "new-delete-type-mismatch",
            message: "size of the allocated type 10 bytes, size of the deallocated type 20 bytes",
            ..mismatch(
                10,
                &["operator new[]", "alloc_site_new_array"],
                &["operator delete[]", "bug_site_delete_array_sized", "main"],
            )
        }],
    ),
    // A throwing new: the report, then std::bad_alloc.
    case_out(
        "new-too-big",
        &[Expect {
            stack: &["operator new", "bug_site_new_too_big", "main"],
            ..NEW_TOO_BIG
        }],
        &["CAUGHT"],
        &["ALLOCATED"],
    ),
    case_out(
        "new-array-too-big",
        &[Expect {
            stack: &["operator new[]", "bug_site_new_array_too_big", "main"],
            ..NEW_TOO_BIG
        }],
        &["CAUGHT"],
        &["ALLOCATED"],
    ),
    case_out(
        "nothrow-too-big",
        &[Expect {
            stack: &["operator new[]", "bug_site_nothrow_too_big", "main"],
            ..NEW_TOO_BIG
        }],
        &["NULL 1"],
        &["NULL 0"],
    ),
    // The new_handler runs once (and uninstalls itself), so new tries
    // twice, each try a report, then throws.
    case_out(
        "new-handler",
        &[
            Expect {
                stack: &["operator new[]", "bug_site_new_handler", "main"],
                ..NEW_TOO_BIG
            },
            Expect {
                stack: &["operator new[]", "bug_site_new_handler", "main"],
                ..NEW_TOO_BIG
            },
        ],
        &["CAUGHT", "HANDLER 1"],
        &["ALLOCATED", "HANDLER 0"],
    ),
    case(
        "leak-new",
        &[
            leak(
                "direct",
                48,
                1,
                &["operator new", "alloc_site_new_leak", "main"],
            ),
            leak(
                "indirect",
                48,
                1,
                &["operator new", "alloc_site_new_leak", "main"],
            ),
        ],
    ),
    // Correct code only: strings, containers, exceptions, aligned and
    // nothrow new.
    case_out("stl", &[], &["STL 2000"], &["STL 2000"]),
];

// ---------------------------------------------------------------------------
// Judging runs
// ---------------------------------------------------------------------------

/// Whether a symbolized function name is `want` (C++: with any parameters).
fn is_function(name: &str, want: &str) -> bool {
    name == want
        || name
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('('))
}

/// The function names of a stack (`??` where unknown).
fn functions(stack: &Value) -> Vec<String> {
    stack
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| f["function"].as_str().unwrap_or("??").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a stack against the expected names (see [`Expect`]).
fn stack_matches(what: &str, stack: &Value, want: Option<&[&str]>) -> Result<(), String> {
    let Some(want) = want else {
        return if stack.is_null() {
            Ok(())
        } else {
            Err(format!("{what} is not null"))
        };
    };
    let names = functions(stack);
    if want.is_empty() {
        return if names.is_empty() {
            Ok(())
        } else {
            Err(format!("{what} is not empty: {names:?}"))
        };
    }
    if !names.first().is_some_and(|f| is_function(f, want[0])) {
        return Err(format!("{what}: frame 0 is not {}: {names:?}", want[0]));
    }
    let mut rest = names.iter().skip(1);
    for w in &want[1..] {
        if !rest.any(|f| is_function(f, w)) {
            return Err(format!(
                "{what}: no {w} (after the names before it): {names:?}"
            ));
        }
    }
    Ok(())
}

pub(crate) fn matches(r: &Value, e: &Expect) -> Result<(), String> {
    if r["kind"] != e.kind {
        return Err(format!("kind {} (want {})", r["kind"], e.kind));
    }
    if r["size"].as_u64() != e.size {
        return Err(format!("size {} (want {:?})", r["size"], e.size));
    }
    if r["offset"].as_i64() != e.offset {
        return Err(format!("offset {} (want {:?})", r["offset"], e.offset));
    }
    let message = r["message"].as_str().unwrap_or("");
    if !message.contains(e.message) {
        return Err(format!("message {message:?} lacks {:?}", e.message));
    }
    if let Some(a) = e.address {
        if r["address"] != a {
            return Err(format!("address {} (want {a})", r["address"]));
        }
    }
    if let Some((lk, bytes, count)) = e.leak {
        let got = (
            r["leak_kind"].as_str(),
            r["bytes"].as_u64(),
            r["count"].as_u64(),
        );
        if got != (Some(lk), Some(bytes), Some(count)) {
            return Err(format!(
                "leak (kind, bytes, count) {got:?} (want {:?})",
                (lk, bytes, count)
            ));
        }
    } else if r.get("leak_kind").is_some() {
        return Err("leak_kind on a report that is no leak".into());
    }
    stack_matches("stack", &r["stack"], Some(e.stack))?;
    stack_matches("alloc_stack", &r["alloc_stack"], e.alloc)?;
    stack_matches("free_stack", &r["free_stack"], e.free)
}

/// The stderr text of each report, as the JSON says it.
pub(crate) fn text_matches(stderr: &str, r: &Value) -> Result<(), String> {
    let line = match r["leak_kind"].as_str() {
        Some(lk) => format!(
            "{} of {} byte(s) in {} object(s)",
            match lk {
                "direct" => "Direct leak",
                "indirect" => "Indirect leak",
                _ => "Still reachable",
            },
            r["bytes"],
            r["count"]
        ),
        None => format!(
            "ERROR: memkit check: {} on address {}",
            r["kind"].as_str().unwrap_or(""),
            r["address"].as_str().unwrap_or("")
        ),
    };
    if stderr.contains(&line) {
        Ok(())
    } else {
        Err(format!("stderr lacks `{line}`"))
    }
}

/// Checks one run of `arg` (CASE or ok-CASE) against what it must do.
fn judge(c: &Checked, arg: &str, expect: &[Expect], stdout: &[&str]) -> Result<(), String> {
    let want_code = if expect.is_empty() { 0 } else { ERROR_EXIT };
    if c.code() != Some(want_code) {
        return Err(format!(
            "exit status {} (want {want_code})",
            c.out.status_text()
        ));
    }
    for line in std::iter::once(format!("END {arg}")).chain(stdout.iter().map(|s| s.to_string())) {
        if !c.out.stdout.lines().any(|l| l == line) {
            return Err(format!("stdout lacks the line `{line}`"));
        }
    }
    if c.reports.len() != expect.len() {
        return Err(format!(
            "{} report(s) (want {})",
            c.reports.len(),
            expect.len()
        ));
    }
    let mut unmatched: Vec<&Value> = c.reports.iter().collect();
    for e in expect {
        let mut why = Vec::new();
        let at = unmatched.iter().position(|r| match matches(r, e) {
            Ok(()) => true,
            Err(w) => {
                why.push(w);
                false
            }
        });
        match at {
            Some(i) => {
                text_matches(&c.out.stderr, unmatched[i])?;
                unmatched.remove(i);
            }
            None => {
                return Err(format!(
                    "no {} report as expected: {}",
                    e.kind,
                    why.join("; ")
                ))
            }
        }
    }
    let summary = format!("SUMMARY: memkit check: {} report(s)", expect.len());
    if !expect.is_empty() && !c.out.stderr.contains(&summary) {
        return Err(format!("stderr lacks `{summary}`"));
    }
    Ok(())
}

/// Runs every case of `cases` with its bug and as its twin (in parallel);
/// panics with every failure.
fn run_cases(program: &Path, cases: &[Case]) {
    let runs: Vec<(&Case, bool)> = cases.iter().flat_map(|c| [(c, true), (c, false)]).collect();
    let results = par_map(&runs, |&(c, bug)| {
        let arg = if bug {
            c.name.to_string()
        } else {
            format!("ok-{}", c.name)
        };
        let checked = check(&[], program, &[&arg]);
        let verdict = if bug {
            judge(&checked, &arg, c.reports, c.stdout)
        } else {
            judge(&checked, &arg, &[], c.twin_stdout)
        };
        (arg, checked, verdict)
    });
    let mut failures = String::new();
    for (arg, checked, verdict) in &results {
        match verdict {
            Ok(()) => eprintln!(
                "{arg}: ok ({} report(s), {:.0?})",
                checked.reports.len(),
                checked.out.elapsed
            ),
            Err(e) => {
                eprintln!("{arg}: FAILED: {e}");
                failures.push_str(&format!("\n=== {arg}: {e}\n{}", checked.describe()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:{failures}",
        program.display()
    );
}

/// The program's `list` is exactly the table's cases.
fn assert_lists_agree(program: &Path, cases: &[Case]) {
    let o = run(Command::new(program).arg("list"), T);
    o.assert_success("list");
    let listed: Vec<&str> = o.stdout.lines().collect();
    let table: Vec<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(
        listed,
        table,
        "{}'s cases and the table differ",
        program.display()
    );
}

// ---------------------------------------------------------------------------
// The one-bug programs
// ---------------------------------------------------------------------------

#[test]
fn c_cases() {
    if require("c_cases", &["gcc"]) {
        assert_lists_agree(bugs(), C_CASES);
        run_cases(bugs(), C_CASES);
    }
}

/// The same at -O2 -fomit-frame-pointer: no frame-pointer chain to follow,
/// every stack is the DWARF unwinder's.
#[test]
fn c_cases_optimized() {
    if require("c_cases_optimized", &["gcc"]) {
        run_cases(bugs_optimized(), C_CASES);
    }
}

#[test]
fn cxx_cases() {
    if require("cxx_cases", &["g++"]) {
        assert_lists_agree(bugs_cxx(), CXX_CASES);
        run_cases(bugs_cxx(), CXX_CASES);
    }
}

/// The fork-leak report is the child's: its pid is the one the parent
/// printed.
#[test]
fn fork_leak_is_the_childs() {
    if !require("fork_leak_is_the_childs", &["gcc"]) {
        return;
    }
    let c = check(&[], bugs(), &["fork-leak"]);
    let child = c
        .out
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("CHILD ")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no CHILD line\n{}", c.describe()));
    // The child kept its own status (0) although it leaked, the parent
    // exited 0: memkit exits 23, and says whose report it was.
    c.expect(ERROR_EXIT, 1)
        .stdout_has(&format!("CHILD {child} STATUS 0"), true)
        .stderr_has(
            "memkit check: 1 report(s) from 1 process(es); exit status 23 (the program's own: 0)",
            true,
        );
    let pid = c.reports[0]["pid"].as_u64();
    assert_eq!(pid, Some(child), "{}", c.describe());
    // LeakSanitizer's way, on request: the leaking child exits 23 itself.
    let c = check(&["--fail-each-process"], bugs(), &["fork-leak"]);
    c.expect(ERROR_EXIT, 1)
        .stdout_has(&format!("STATUS {ERROR_EXIT}"), true);
}
