//! Real programs on the checker: no report but leaks, and their normal
//! output.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use memkit_tests::{compile_c, require, run, TempDir};
use serde_json::Value;

use crate::{check, check_with, compiled, Checked, ERROR_EXIT, T};

/// Asserts that a real program's run reported nothing but leaks, and exited
/// as that implies (0 without reports, 23 with leaks).
fn only_leaks(what: &str, c: &Checked) {
    let other: Vec<&Value> = c.reports.iter().filter(|r| r["kind"] != "leak").collect();
    assert!(
        other.is_empty(),
        "{what}: reports other than leaks\n{}",
        c.describe()
    );
    let want = if c.reports.is_empty() { 0 } else { ERROR_EXIT };
    assert_eq!(c.code(), Some(want), "{what}\n{}", c.describe());
    eprintln!(
        "{what}: ok, {} leak report(s), {:.1?}",
        c.reports.len(),
        c.out.elapsed
    );
}

#[test]
fn python3() {
    if !require("python3", &["python3"]) {
        return;
    }
    let script = r#"
import json, re, threading, collections
d = {str(i): [i] * 3 for i in range(2000)}
s = json.dumps(d)
back = json.loads(s)
words = collections.Counter(re.findall(r"[0-9]+", s))
out = []
t = [threading.Thread(target=lambda k=k: out.append(sum(range(k * 1000)))) for k in range(4)]
for x in t: x.start()
for x in t: x.join()
print("PY", len(back), len(words), sorted(out)[-1])
"#;
    let c = check_with(
        &[],
        "python3",
        &["-c", script],
        &[("PYTHONMALLOC", OsStr::new("malloc"))],
    );
    only_leaks("python3", &c);
    c.stdout_has("PY 2000 2000 4498500", true);
}

#[test]
fn git() {
    if !require("git", &["git"]) {
        return;
    }
    let dir = TempDir::new("check-git");
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("a.txt"), "hello\n").unwrap();
    let home = dir.path().as_os_str();
    let env: &[(&str, &OsStr)] = &[
        ("HOME", home),
        ("GIT_CONFIG_NOSYSTEM", OsStr::new("1")),
        ("GIT_AUTHOR_NAME", OsStr::new("t")),
        ("GIT_AUTHOR_EMAIL", OsStr::new("t@example.invalid")),
        ("GIT_COMMITTER_NAME", OsStr::new("t")),
        ("GIT_COMMITTER_EMAIL", OsStr::new("t@example.invalid")),
    ];
    let r = repo.to_str().unwrap();
    let steps: &[&[&str]] = &[
        &["-C", r, "init", "-q"],
        &["-C", r, "add", "a.txt"],
        &["-C", r, "commit", "-q", "-m", "first commit"],
        &["-C", r, "log", "--oneline"],
    ];
    let mut last = None;
    for args in steps {
        let c = check_with(&[], "git", args, env);
        only_leaks(&format!("git {}", args[2]), &c);
        last = Some(c);
    }
    let log = last.unwrap();
    log.stdout_has("first commit", true);
}

#[test]
fn sqlite3() {
    if !require("sqlite3", &["sqlite3"]) {
        return;
    }
    let sql = "create table t(a integer primary key, b text); \
               insert into t(b) values ('x'), ('y'), ('z'); \
               create index tb on t(b); \
               select count(*), group_concat(b, ',') from t where b > 'w';";
    let c = check(&[], "sqlite3", &[":memory:", sql]);
    only_leaks("sqlite3", &c);
    c.stdout_has("3|x,y,z", true);
}

/// g++ and every process it starts (cc1plus, as, collect2, ld) on the
/// checker. The compiler leaks on purpose (it exits soon anyway), and a
/// leaking cc1plus would exit 23 and fail the compile, so `leak:*`
/// suppresses every leak: the leak scan still runs in each process.
#[test]
fn gxx() {
    if !require("gxx", &["g++"]) {
        return;
    }
    let dir = TempDir::new("check-gxx");
    let src = dir.join("tiny.cc");
    std::fs::write(
        &src,
        "#include <iostream>\n#include <map>\n#include <string>\n\
         int main() { std::map<std::string, int> m{{\"a\", 1}, {\"b\", 2}};\n\
         std::cout << \"TINY \" << m.size() << \"\\n\"; }\n",
    )
    .unwrap();
    let supp = dir.join("supp.txt");
    std::fs::write(&supp, "leak:*\n").unwrap();
    let exe = dir.join("tiny");
    let c = check(
        &["--suppressions", supp.to_str().unwrap()],
        "g++",
        &["-O1", src.to_str().unwrap(), "-o", exe.to_str().unwrap()],
    );
    c.expect(0, 0);
    let o = run(&mut Command::new(&exe), T);
    o.assert_success("the program g++ built");
    assert_eq!(o.stdout, "TINY 2\n");
}

/// c/stress.c: 4 threads allocating, reallocating and freeing blocks of
/// random sizes, handing them to each other through a shared ring, every
/// block's contents checked. It frees everything: no report at all.
#[test]
fn stress() {
    if !require("stress", &["gcc"]) {
        return;
    }
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = compiled(&P, |d| compile_c("stress.c", d, "check_stress", &[]));
    let c = check(&[], prog, &["4", "20000"]);
    c.expect(0, 0);
    c.stdout_has("stress: 4 threads x 20000 ops ok", true);
}
