//! The list of workloads, in report order: each one's name, a one-line
//! description for the report and how it runs (see [`Kind`]).

use crate::workloads::{Kind, Workload};

/// Every workload, in report order.
pub fn all() -> Vec<Workload> {
    use Kind::*;
    vec![
        Workload {
            name: "fixed-sizes",
            about: "1 thread: malloc+free pairs of 16, 64, 256 and 4096 B (ns/pair in the metrics)",
            kind: C {
                file: "fixed_sizes.c",
                source: include_str!("../workloads/fixed_sizes.c"),
                full: &["10000000"],
                quick: &["100000"],
            },
        },
        Workload {
            name: "random-batch",
            about: "1 thread: batches of 1000 random sizes 16-1024 B, freed in random order",
            kind: C {
                file: "random_batch.c",
                source: include_str!("../workloads/random_batch.c"),
                full: &["8000"],
                quick: &["100"],
            },
        },
        Workload {
            name: "random-replace",
            about: "1 thread: a live set of 10000 random sizes 16-528 B; each step frees a random block and allocates a new size",
            kind: C {
                file: "random_replace.c",
                source: include_str!("../workloads/random_replace.c"),
                full: &["1", "20000000", "10000"],
                quick: &["1", "100000", "10000"],
            },
        },
        Workload {
            name: "random-replace-2t",
            about: "as random-replace, in 2 threads with a live set each",
            kind: C {
                file: "random_replace.c",
                source: include_str!("../workloads/random_replace.c"),
                full: &["2", "10000000", "10000"],
                quick: &["2", "50000", "10000"],
            },
        },
        Workload {
            name: "realloc-mix",
            about: "1 thread: random sizes (16 B-512 KiB) and lifetimes, 45% of touches are realloc",
            kind: C {
                file: "realloc_mix.c",
                source: include_str!("../workloads/realloc_mix.c"),
                full: &["3000000"],
                quick: &["50000"],
            },
        },
        Workload {
            name: "larson",
            about: "2 threads x 10 generations replace random slots of a shared array (remote frees)",
            kind: C {
                file: "larson.c",
                source: include_str!("../workloads/larson.c"),
                full: &["2", "10", "300000"],
                quick: &["2", "3", "10000"],
            },
        },
        Workload {
            name: "xmalloc",
            about: "producer/consumer: one thread allocates 16-512 B, the other frees",
            kind: C {
                file: "xmalloc.c",
                source: include_str!("../workloads/xmalloc.c"),
                full: &["10000000"],
                quick: &["100000"],
            },
        },
        Workload {
            name: "cache-thrash",
            about: "2 threads allocate 8 B objects and write them hard (active false sharing)",
            kind: C {
                file: "false_sharing.c",
                source: include_str!("../workloads/false_sharing.c"),
                full: &["thrash", "2", "500000", "2000"],
                quick: &["thrash", "2", "5000", "200"],
            },
        },
        Workload {
            name: "cache-scratch",
            about: "as cache-thrash, but each thread first frees an object the main thread allocated (passive)",
            kind: C {
                file: "false_sharing.c",
                source: include_str!("../workloads/false_sharing.c"),
                full: &["scratch", "2", "500000", "2000"],
                quick: &["scratch", "2", "5000", "200"],
            },
        },
        Workload {
            name: "thread-churn",
            about: "1500 generations of 2 short-lived threads; blocks freed by the next generation",
            kind: C {
                file: "thread_churn.c",
                source: include_str!("../workloads/thread_churn.c"),
                full: &["2", "1500", "2000"],
                quick: &["2", "30", "300"],
            },
        },
        Workload {
            name: "large-blocks",
            about: "churn of 5-25 MiB blocks (some grown by realloc), every page touched",
            kind: C {
                file: "large_blocks.c",
                source: include_str!("../workloads/large_blocks.c"),
                full: &["400"],
                quick: &["20"],
            },
        },
        Workload {
            name: "fragmentation",
            about: "1M blocks of 16-256 B, 90% freed in random order; RSS after free/trim/refill in the metrics",
            kind: C {
                file: "fragmentation.c",
                source: include_str!("../workloads/fragmentation.c"),
                full: &["1000000"],
                quick: &["50000"],
            },
        },
        Workload {
            name: "larson-sized",
            about: "larson with C++ operator new and sized operator delete(void*, size_t)",
            kind: C {
                file: "larson.c",
                source: include_str!("../workloads/larson.c"),
                full: &["2", "10", "100000", "sized"],
                quick: &["2", "3", "10000", "sized"],
            },
        },
        Workload {
            name: "mstress",
            about: "50 rounds of 2 threads: small/large objects retained, freed, handed between threads",
            kind: C {
                file: "mstress.c",
                source: include_str!("../workloads/mstress.c"),
                full: &["2", "50", "50000"],
                quick: &["2", "3", "2000"],
            },
        },
        Workload {
            name: "mstress-x10",
            about: "as mstress with 20 threads a round (10x the CPUs), 5000 steps each",
            kind: C {
                file: "mstress.c",
                source: include_str!("../workloads/mstress.c"),
                full: &["20", "50", "5000"],
                quick: &["20", "2", "200"],
            },
        },
        Workload {
            name: "rptest",
            about: "2 threads: batches of 1000 random sizes 16-16000 B, half of each freed by the other thread",
            kind: C {
                file: "rptest.c",
                source: include_str!("../workloads/rptest.c"),
                full: &["2", "1000", "1000"],
                quick: &["2", "20", "200"],
            },
        },
        Workload {
            name: "alloc-test",
            about: "1 thread: random slots of a 65536-slot live set that breathes (25-100% full), sizes skewed small",
            kind: C {
                file: "alloc_test.c",
                source: include_str!("../workloads/alloc_test.c"),
                full: &["5000000", "65536"],
                quick: &["100000", "4096"],
            },
        },
        Workload {
            name: "malloc-large",
            about: "1 thread: 3 slots of 5-25 MiB blocks replaced 5000 times, each touched in part",
            kind: C {
                file: "malloc_large.c",
                source: include_str!("../workloads/malloc_large.c"),
                full: &["5000"],
                quick: &["50"],
            },
        },
        Workload {
            name: "buffer-churn",
            about: "1 thread: one 1-5 MiB buffer at a time (malloc, then calloc, alternately), written sparsely and freed",
            kind: C {
                file: "buffer_churn.c",
                source: include_str!("../workloads/buffer_churn.c"),
                full: &["20000"],
                quick: &["200"],
            },
        },
        Workload {
            name: "glibc-simple",
            about: "batches of 25-1600 blocks of 16-1024 B allocated then freed, in the main thread then a second",
            kind: C {
                file: "glibc_simple.c",
                source: include_str!("../workloads/glibc_simple.c"),
                full: &["500000"],
                quick: &["3200"],
            },
        },
        Workload {
            name: "glibc-thread",
            about: "2 threads: free and reallocate random slots of a 1024-slot set, sizes 4 B-32 KiB ~ 1/size",
            kind: C {
                file: "glibc_thread.c",
                source: include_str!("../workloads/glibc_thread.c"),
                full: &["2", "3000000"],
                quick: &["2", "50000"],
            },
        },
        Workload {
            name: "cfrac",
            about: "1 thread: continued fractions of sqrt(N) with heap bignums (cfrac's small-object churn)",
            kind: C {
                file: "cfrac.c",
                source: include_str!("../workloads/cfrac.c"),
                full: &["6000", "150"],
                quick: &["50", "150"],
            },
        },
        Workload {
            name: "espresso",
            about: "1 thread: prime implicants and greedy covers of random Boolean functions (espresso's cube churn)",
            kind: C {
                file: "espresso.c",
                source: include_str!("../workloads/espresso.c"),
                full: &["1000"],
                quick: &["20"],
            },
        },
        Workload {
            name: "python",
            about: "python3 (PYTHONMALLOC=malloc): dicts, lists, strings, objects, sorting",
            kind: Python,
        },
        Workload {
            name: "rbstress",
            about: "ruby, 1 thread: strings of random lengths, a third kept in a set replaced at random, the rest dropped in chunks for the GC",
            kind: Ruby {
                threads: "1",
                full: "800000",
                quick: "20000",
            },
        },
        Workload {
            name: "rbstress-2t",
            about: "ruby, 2 threads (one runs at a time): rbstress's churn; the GC frees either thread's blocks",
            kind: Ruby {
                threads: "2",
                full: "400000",
                quick: "10000",
            },
        },
        Workload {
            name: "sqlite",
            about: "sqlite3 shell: 150k-row bulk insert, 2 indexes, update, delete, checks",
            kind: Sqlite,
        },
        Workload {
            name: "gxx",
            about: "g++ -O2 -c of a 300-line C++17 file (cc1plus included)",
            kind: Gxx,
        },
        Workload {
            name: "git",
            about: "git: 5 commits of a 300-file tree, log, diff, repack -adf, fsck, grep",
            kind: Git,
        },
        Workload {
            name: "redis",
            about: "redis-server under the allocator, redis-benchmark -n 100000 -P 16 (7 commands); RSS/CPU = server",
            kind: Redis,
        },
    ]
}
