//! Real programs under LD_PRELOAD=libmemkit.so: each must do its job, and
//! malloc/free must bind to libmemkit.so in every process it starts.

use memkit_tests::*;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const MF: &[&str] = &["malloc", "free"];

/// The interpreter behind `python3` (skips pyenv-style shell shims).
fn python_exe() -> PathBuf {
    let o = run_ok(
        Command::new("python3").args(["-c", "import sys; print(sys.executable)"]),
        Duration::from_secs(60),
        "python3 -c 'print(sys.executable)'",
    );
    PathBuf::from(o.stdout.trim())
}

/// CPython's own regression tests, with PYTHONMALLOC=malloc so that every
/// object allocation goes through malloc. (test_socket hangs on this machine
/// with or without a preload; test_import_from_another_thread fails without
/// one because a site-packages .pth file imports threading at startup.)
#[test]
fn python_regrtest() {
    if !require("python_regrtest", &["python3"]) {
        return;
    }
    let py = python_exe();
    let probe = run(
        Command::new(&py).args(["-c", "import test.libregrtest"]),
        Duration::from_secs(60),
    );
    assert!(
        probe.success(),
        "python3 has no `test` package (CPython's test suite; on Debian: libpython3.X-testsuite)\n{}",
        probe.describe()
    );
    let dir = TempDir::new("python");
    let mut cmd = preloaded(&py);
    cmd.args(["-m", "test", "-j1", "--timeout", "240"])
        .args(["-i", "test_import_from_another_thread"])
        .args([
            "test_dict",
            "test_list",
            "test_unicode",
            "test_threading",
            "test_set",
        ])
        .env("PYTHONMALLOC", "malloc")
        .current_dir(dir.path());
    let o = run_checking_bindings(&mut cmd, Duration::from_secs(360), MF, "python3 -m test");
    assert!(
        o.stdout.contains("Result: SUCCESS"),
        "python -m test did not report success\n{}",
        o.describe()
    );
}

/// A git fast-import stream: `commits` commits over 40 files, each commit
/// rewriting three files with content derived from the commit number.
fn fast_import_stream(commits: usize) -> String {
    let mut s = String::new();
    for c in 1..=commits {
        let _ = writeln!(s, "commit refs/heads/main");
        let _ = writeln!(s, "mark :{c}");
        let _ = writeln!(
            s,
            "author A U Thor <author@example.invalid> {} +0000",
            1_600_000_000 + c * 60
        );
        let _ = writeln!(
            s,
            "committer A U Thor <author@example.invalid> {} +0000",
            1_600_000_000 + c * 60
        );
        let msg = format!("commit {c}: change files\n\nBody line for commit {c}.\n");
        let _ = write!(s, "data {}\n{}", msg.len(), msg);
        if c > 1 {
            let _ = writeln!(s, "from :{}", c - 1);
        }
        for k in 0..3 {
            let f = (c * 7 + k * 13) % 40;
            let mut body = String::new();
            for line in 0..(50 + (c * 31 + k) % 150) {
                let _ = writeln!(
                    body,
                    "file {f} line {line}: value {} rev {c}",
                    (line * 2654435761usize) % 1000003
                );
            }
            let _ = write!(
                s,
                "M 100644 inline dir{}/file{f}.txt\ndata {}\n{}",
                f % 5,
                body.len(),
                body
            );
        }
        if c % 50 == 0 {
            let _ = writeln!(s, "D dir{}/file{}.txt", (c / 50) % 5, (c / 50) % 40);
        }
        s.push('\n');
    }
    s
}

/// git: fast-import 300 commits, 30 more `git commit`s, gc, fsck, log --stat,
/// all under the preload (every git process and the shell).
#[test]
fn git_repository() {
    if !require("git_repository", &["git"]) {
        return;
    }
    let dir = TempDir::new("git");
    fs::write(dir.join("stream"), fast_import_stream(300)).unwrap();
    let script = r#"
set -eu
git() { command git -c user.name=memkit -c user.email=memkit@example.invalid -c init.defaultBranch=main \
    -c gc.autoDetach=false -c pack.threads=2 -c core.pager=cat "$@"; }
git init -q repo
cd repo
git fast-import --quiet < ../stream
git checkout -q main
i=1
while [ $i -le 30 ]; do
    printf 'extra %s\n' "$i" >> dir0/extra.txt
    seq 1 "$((i * 20))" > "dir1/seq$((i % 7)).txt"
    git add -A
    git commit -q -m "manual commit $i"
    i=$((i + 1))
done
git gc --quiet
git fsck --full --strict --no-progress
git repack -a -d -f --window=50 --depth=20 -q
git fsck --full --no-progress
echo "count $(git rev-list --count HEAD)"
echo "logstat $(git log --stat | wc -l)"
echo "files $(git ls-files | wc -l)"
echo "blame $(git blame -s dir0/extra.txt | wc -l)"
echo "diff $(git diff --stat HEAD~200 HEAD | tail -n 1)"
git log --format=%s -n 1
"#;
    let mut cmd = preloaded("sh");
    cmd.args(["-c", script])
        .current_dir(dir.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir.path());
    let o = run_checking_bindings(&mut cmd, Duration::from_secs(240), MF, "git script");
    let out = &o.stdout;
    assert!(out.contains("count 330\n"), "expected 330 commits:\n{out}");
    assert!(
        out.contains("blame 30\n"),
        "expected blame of 30 lines:\n{out}"
    );
    assert!(
        out.contains("manual commit 30"),
        "last commit message:\n{out}"
    );
    let logstat: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("logstat "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        logstat > 330 * 5,
        "git log --stat printed only {logstat} lines:\n{out}"
    );
    eprint!("{out}");
}

/// Generated C++ using <map>, <string>, <regex>, <unordered_map>, <set> heavily:
/// `n` template instantiations, each self-checking.
fn generated_cxx(n: usize) -> String {
    let mut s = String::from(
        r#"#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

template <int I> struct Key {
    std::string s;
    bool operator<(const Key &o) const { return s < o.s; }
    bool operator==(const Key &o) const { return s == o.s; }
};
template <int I> struct KeyHash {
    size_t operator()(const Key<I> &k) const { return std::hash<std::string>()(k.s) ^ I; }
};

template <int I> long work() {
    std::map<Key<I>, std::vector<std::string>> m;
    std::unordered_map<Key<I>, long, KeyHash<I>> u;
    std::set<std::string> words;
    for (int i = 0; i < 2000; i++) {
        Key<I> k{"k" + std::to_string((i * (I + 3)) % 211) + "_" + std::to_string(I)};
        m[k].push_back(std::string(i % 37, 'a' + (i % 26)));
        u[k] += i;
        words.insert(std::to_string(i % 300));
    }
    static const std::regex re("k([0-9]+)_([0-9]+)");
    long by_regex = 0, by_hand = 0;
    for (auto &kv : m) {
        std::smatch mm;
        if (!std::regex_match(kv.first.s, mm, re)) return -1;
        by_regex += std::stol(mm[1]) * (long)kv.second.size() + std::stol(mm[2]);
        size_t us = kv.first.s.find('_');
        by_hand += std::stol(kv.first.s.substr(1, us - 1)) * (long)kv.second.size() + std::stol(kv.first.s.substr(us + 1));
    }
    long total = 0;
    for (auto &kv : u) total += kv.second;
    std::vector<std::string> sorted(words.begin(), words.end());
    std::sort(sorted.begin(), sorted.end(), [](const std::string &a, const std::string &b) {
        return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    std::ostringstream os;
    for (auto &w : sorted) os << w << ',';
    if (by_regex != by_hand || total != 1999L * 2000 / 2 || sorted.size() != 300 || sorted.back() != "299") return -1;
    return by_regex + (long)os.str().size();
}
"#,
    );
    s.push_str("int main() {\n    long sum = 0, r;\n");
    for i in 0..n {
        let _ = writeln!(s, "    if ((r = work<{i}>()) < 0) {{ std::printf(\"work<{i}> failed\\n\"); return 1; }} sum += r;");
    }
    s.push_str("    std::printf(\"cxx ok %ld\\n\", sum);\n    return 0;\n}\n");
    s
}

/// gcc and g++ themselves (driver, cc1/cc1plus, as, collect2/ld) under the
/// preload: compile real code, compare with the output of a compiler run
/// without the preload, run the results.
#[test]
fn gcc_and_gxx_compile() {
    if !require("gcc_and_gxx_compile", &["gcc", "g++"]) {
        return;
    }
    let dir = TempDir::new("gcc");
    let t = Duration::from_secs(300);

    // C: the same assembly with and without the preload.
    let abi = c_source("abi.c");
    let mut c1 = preloaded("gcc");
    c1.args(["-O2", "-g", "-fno-builtin", "-S", "-o"])
        .arg(dir.join("abi_memkit.s"))
        .arg(&abi);
    run_checking_bindings(&mut c1, t, MF, "gcc -O2 -S abi.c");
    let mut c0 = Command::new("gcc");
    c0.args(["-O2", "-g", "-fno-builtin", "-S", "-o"])
        .arg(dir.join("abi_glibc.s"))
        .arg(&abi);
    run_ok(&mut c0, t, "gcc -O2 -S abi.c (plain glibc)");
    let (a, b) = (
        fs::read(dir.join("abi_memkit.s")).unwrap(),
        fs::read(dir.join("abi_glibc.s")).unwrap(),
    );
    assert!(
        a == b,
        "gcc -S output differs with and without libmemkit.so (see {})",
        dir.path().display()
    );

    // C: compile + assemble + link under the preload, then run the program.
    let mut c2 = preloaded("gcc");
    c2.args(["-O2", "-pipe", "-fno-builtin", "-pthread", "-o"])
        .arg(dir.join("stress"))
        .arg(c_source("stress.c"));
    run_checking_bindings(&mut c2, t, MF, "gcc -O2 -pipe stress.c (compile+link)");
    run_ok(
        preloaded(dir.join("stress")).args(["2", "200000"]),
        t,
        "stress built by preloaded gcc",
    );

    // C++: a template- and regex-heavy generated file.
    fs::write(dir.join("gen.cc"), generated_cxx(24)).unwrap();
    let mut cx = preloaded("g++");
    cx.args(["-O2", "-std=gnu++17", "-o"])
        .arg(dir.join("gen"))
        .arg(dir.join("gen.cc"));
    run_checking_bindings(&mut cx, t, MF, "g++ -O2 gen.cc");
    let o = run_ok(&mut preloaded(dir.join("gen")), t, "generated C++ program");
    assert!(
        o.stdout.starts_with("cxx ok "),
        "unexpected output: {}",
        o.stdout
    );
    let o0 = run_ok(
        &mut Command::new(dir.join("gen")),
        t,
        "generated C++ program (plain glibc)",
    );
    assert_eq!(
        o.stdout, o0.stdout,
        "generated program prints different results with and without the preload"
    );
}

/// sqlite3: 200k rows in one transaction through a recursive CTE, an index,
/// queries checked against values computed here.
#[test]
fn sqlite3_database() {
    if !require("sqlite3_database", &["sqlite3"]) {
        return;
    }
    const N: u64 = 200_000;
    let dir = TempDir::new("sqlite");
    let sql = format!(
        r#"
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {N})
INSERT INTO t(k, s) SELECT (x * 7919) % 100003, printf('row-%08d-%s', (x * 31337) % {N}, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)) FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
SELECT 'count', count(*) FROM t;
SELECT 'small', count(*) FROM t WHERE k < 50000;
SELECT 'distinct', count(DISTINCT k) FROM t;
SELECT 'len', sum(length(s)) FROM t;
SELECT 'median', s FROM t ORDER BY s LIMIT 1 OFFSET {half};
SELECT 'groups', count(*) FROM (SELECT k % 1000 AS g, count(*) AS n FROM t GROUP BY g HAVING n > 0);
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
SELECT 'after', count(*) FROM t;
PRAGMA integrity_check;
"#,
        half = N / 2
    );
    fs::write(dir.join("script.sql"), &sql).unwrap();
    let mut cmd = preloaded("sh");
    cmd.args(["-c", "sqlite3 -batch test.db < script.sql"])
        .current_dir(dir.path());
    let o = run_checking_bindings(&mut cmd, Duration::from_secs(240), MF, "sqlite3");

    // Expected values.
    let ks: Vec<u64> = (1..=N).map(|x| (x * 7919) % 100003).collect();
    let small = ks.iter().filter(|&&k| k < 50000).count();
    let distinct = ks.iter().collect::<HashSet<_>>().len();
    let strs: Vec<String> = (1..=N)
        .map(|x| {
            format!(
                "row-{:08}-{}",
                (x * 31337) % N,
                &"abcdefghijklmnopqrstuvwxyz"[(x % 26) as usize..]
            )
        })
        .collect();
    let len: usize = strs.iter().map(|s| s.len()).sum();
    let mut sorted = strs.clone();
    sorted.sort();
    let median = &sorted[(N / 2) as usize];
    let groups = ks.iter().map(|k| k % 1000).collect::<HashSet<_>>().len();
    let after = N - N / 3;
    let expect: BTreeMap<&str, String> = [
        ("count", N.to_string()),
        ("small", small.to_string()),
        ("distinct", distinct.to_string()),
        ("len", len.to_string()),
        ("median", median.clone()),
        ("groups", groups.to_string()),
        ("after", after.to_string()),
    ]
    .into_iter()
    .collect();
    for (k, v) in &expect {
        let line = format!("{k}|{v}");
        assert!(
            o.stdout.lines().any(|l| l == line),
            "sqlite3: expected line `{line}` in output:\n{}",
            o.stdout
        );
    }
    assert!(
        o.stdout.lines().any(|l| l == "ok"),
        "integrity_check failed:\n{}",
        o.stdout
    );
}

/// perl: a 400k-entry hash, sorting, string work, and ithreads.
#[test]
fn perl_hash_sort() {
    if !require("perl_hash_sort", &["perl"]) {
        return;
    }
    let script = r#"
use strict; use warnings;
my %h;
for my $i (0 .. 399_999) {
    my $k = sprintf("key%07d", ($i * 7919) % 1_000_003);
    $h{$k} = $i;
}
my @keys = sort keys %h;
my $sum = 0; $sum += $h{$_} for @keys[0 .. 999];
my @by_val = sort { $h{$b} <=> $h{$a} } keys %h;
my $joined = join(",", map { uc } @keys[0 .. 9999]);
my @parts = split /,/, $joined;
my $rx = 0; for (@parts) { $rx++ if /^KEY00[0-4]/ }
print "count ", scalar(@keys), "\n";
print "first $keys[0]\nlast $keys[-1]\n";
print "sum $sum\n";
print "top $by_val[0]\n";
print "parts ", scalar(@parts), " rx $rx\n";
my $threads_ok = eval {
    require threads;
    my @t = map { my $n = $_; threads->create(sub {
        my %m; $m{"t$n-$_"} = [$_, "x" x ($_ % 50)] for 1 .. 50_000;
        my @s = sort { $m{$a}[0] <=> $m{$b}[0] } keys %m;
        return scalar(@s) . ":" . $s[-1];
    }) } 1 .. 4;
    join(" ", map { $_->join } @t);
};
print "threads ", (defined $threads_ok ? $threads_ok : "unavailable: $@"), "\n";
"#;
    let dir = TempDir::new("perl");
    fs::write(dir.join("t.pl"), script).unwrap();
    let mut cmd = preloaded("perl");
    cmd.arg(dir.join("t.pl"));
    let o = run_checking_bindings(&mut cmd, Duration::from_secs(240), MF, "perl");

    let mut h: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..400_000u64 {
        h.insert(format!("key{:07}", (i * 7919) % 1_000_003), i);
    }
    let keys: Vec<&String> = h.keys().collect();
    let sum: u64 = keys[..1000].iter().map(|k| h[*k]).sum();
    let top = h.iter().max_by_key(|(_, v)| **v).unwrap().0;
    let rx = keys[..10000]
        .iter()
        .filter(|k| k.to_uppercase().starts_with("KEY00") && matches!(k.as_bytes()[5], b'0'..=b'4'))
        .count();
    let expected = format!(
        "count {}\nfirst {}\nlast {}\nsum {sum}\ntop {top}\nparts 10000 rx {rx}\n",
        keys.len(),
        keys[0],
        keys[keys.len() - 1]
    );
    assert!(
        o.stdout.starts_with(&expected),
        "perl output:\n{}\nexpected to start with:\n{expected}",
        o.stdout
    );
    let threads_line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("threads "))
        .unwrap_or("");
    if threads_line.contains("unavailable") {
        eprintln!("note: perl without ithreads: {threads_line}");
    } else {
        let want = (1..=4)
            .map(|n| format!("50000:t{n}-50000"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            threads_line,
            format!("threads {want}"),
            "perl threads output"
        );
    }
}
