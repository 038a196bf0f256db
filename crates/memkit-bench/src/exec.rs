//! Running one child process and measuring it: wall time, and user+sys CPU
//! and peak RSS from `wait4`'s rusage (which covers the child and every
//! descendant it waited for, e.g. cc1plus under g++).
//!
//! Children are started through a tiny C launcher (`launcher/launcher.c`)
//! that forks, execs and `wait4`s the program and writes its rusage to a
//! file: Linux passes a parent's RSS high-water mark on to forked children,
//! so a child forked by this (much larger) process would never report less
//! than our own peak RSS.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a child ended and what it cost.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    pub max_rss_kib: u64,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Measured {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// "exit 1", "killed by signal 11 (SIGSEGV)", "timed out after 60 s".
    pub fn describe_status(&self, timeout: Duration) -> String {
        if self.timed_out {
            format!("timed out after {} s", timeout.as_secs())
        } else if let Some(s) = self.signal {
            format!("killed by {}", memkit_sys::signal::describe(s))
        } else {
            format!("exit {}", self.code.unwrap_or(-1))
        }
    }
}

/// The compiled launcher.
#[derive(Debug, Clone)]
pub struct Launcher(pub PathBuf);

/// Name of the launcher's result file in a run directory.
const RESULT: &str = ".rusage";

impl Launcher {
    /// A command that runs `program` under `preload` (nothing preloaded for
    /// `None`) through the launcher, reporting into `dir`. Add arguments,
    /// environment, stdin and the working directory as usual, then [`start`]
    /// or [`run`] it with the same `dir`.
    pub fn command(&self, program: &Path, preload: Option<&Path>, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.0);
        cmd.arg(dir.join(RESULT))
            .arg(program)
            .env_remove("LD_PRELOAD")
            .env(
                "MEMKIT_BENCH_PRELOAD",
                preload.map(Path::as_os_str).unwrap_or(OsStr::new("")),
            );
        cmd
    }
}

/// A started child in its own process group.
pub struct Started {
    pid: libc::pid_t,
    start: Instant,
    done: mpsc::Receiver<(i32, libc::rusage, Instant)>,
}

/// Spawns `cmd` in a new process group with stdout and stderr going to
/// `dir/stdout` and `dir/stderr`. Stdin is /dev/null unless `cmd` set it.
pub fn start(cmd: &mut Command, dir: &Path) -> io::Result<Started> {
    let _ = fs::remove_file(dir.join(RESULT));
    let out = File::create(dir.join("stdout"))?;
    let err = File::create(dir.join("stderr"))?;
    cmd.stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    // The std Child is dropped without waiting: the thread below reaps the
    // process with wait4 to get its rusage.
    drop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: rusage is plain data; zeroed is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: pid is our child; status and ru are valid out-pointers.
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            if r == pid {
                break;
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                status = -1;
                break;
            }
        }
        let _ = tx.send((status, ru, Instant::now()));
    });
    Ok(Started {
        pid,
        start,
        done: rx,
    })
}

impl Started {
    /// Sends `sig` to the child's whole process group.
    pub fn signal_group(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions; the group is the
        // one we created for this child.
        unsafe {
            libc::kill(-self.pid, sig);
        }
    }

    /// True once the child has exited (without reaping it twice).
    pub fn try_finished(&self) -> Option<(i32, libc::rusage, Instant)> {
        self.done.try_recv().ok()
    }

    /// Waits for the child, killing its process group after `timeout`.
    /// Reads the captured output from `dir`.
    pub fn wait(self, timeout: Duration, dir: &Path) -> Measured {
        let (status, ru, end, timed_out) = match self.done.recv_timeout(timeout) {
            Ok((s, ru, end)) => (s, ru, end, false),
            Err(_) => {
                self.signal_group(libc::SIGKILL);
                let (s, ru, end) = self
                    .done
                    .recv()
                    .unwrap_or((-1, zero_rusage(), Instant::now()));
                (s, ru, end, true)
            }
        };
        finish(self.pid, self.start, status, ru, end, timed_out, dir)
    }

    /// Builds the measurement from a result obtained via `try_finished`.
    pub fn finished(self, (status, ru, end): (i32, libc::rusage, Instant), dir: &Path) -> Measured {
        finish(self.pid, self.start, status, ru, end, false, dir)
    }
}

fn zero_rusage() -> libc::rusage {
    // SAFETY: rusage is plain data; zeroed is a valid value.
    unsafe { std::mem::zeroed() }
}

fn finish(
    pid: libc::pid_t,
    start: Instant,
    status: i32,
    ru: libc::rusage,
    end: Instant,
    timed_out: bool,
    dir: &Path,
) -> Measured {
    // Whatever the child left running in its group (a daemonized helper)
    // goes too.
    // SAFETY: as in signal_group.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let mut wall_s = end.duration_since(start).as_secs_f64();
    let (mut user_s, mut sys_s) = (tv(ru.ru_utime), tv(ru.ru_stime));
    let mut max_rss_kib = ru.ru_maxrss.max(0) as u64;
    let mut status = status;
    // The launcher's report on the real program, when it got that far.
    if let Some(r) = read_result(&dir.join(RESULT)) {
        status = r.0;
        wall_s = r.1;
        user_s = r.2;
        sys_s = r.3;
        max_rss_kib = r.4;
    }
    let (code, signal) = if status == -1 {
        (None, None)
    } else if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Measured {
        wall_s,
        user_s,
        sys_s,
        max_rss_kib,
        code,
        signal,
        timed_out,
        stdout: read_lossy(&dir.join("stdout")),
        stderr: read_lossy(&dir.join("stderr")),
    }
}

/// Parses the launcher's line: status, wall ns, user us, sys us, max RSS KiB.
fn read_result(p: &Path) -> Option<(i32, f64, f64, f64, u64)> {
    let text = fs::read_to_string(p).ok()?;
    let v: Vec<i64> = text
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<i64>>>()?;
    if v.len() != 5 {
        return None;
    }
    Some((
        v[0] as i32,
        v[1] as f64 * 1e-9,
        v[2] as f64 * 1e-6,
        v[3] as f64 * 1e-6,
        v[4].max(0) as u64,
    ))
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Runs `cmd` to completion (see [`start`] and [`Started::wait`]).
pub fn run(cmd: &mut Command, dir: &Path, timeout: Duration) -> io::Result<Measured> {
    Ok(start(cmd, dir)?.wait(timeout, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("memkit-bench-exec-{}-{name}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn launcher() -> Launcher {
        let d = std::env::temp_dir().join(format!("memkit-bench-launcher-{}", std::process::id()));
        Launcher(crate::workloads::build_launcher(&d).unwrap_or_else(|e| panic!("{e}")))
    }

    fn sh(l: &Launcher, script: &str, dir: &Path) -> Command {
        let mut c = l.command(Path::new("/bin/sh"), None, dir);
        c.args(["-c", script]);
        c
    }

    #[test]
    fn measures_a_child() {
        let l = launcher();
        let d = tmp("ok");
        let m = run(
            &mut sh(&l, "echo hi; echo err >&2; echo $LD_PRELOAD; exit 3", &d),
            &d,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(m.code, Some(3));
        assert_eq!(m.stdout, "hi\n\n");
        assert_eq!(m.stderr, "err\n");
        // A shell, not this test process: a few MiB at most.
        assert!(
            m.max_rss_kib > 0 && m.max_rss_kib < 8 * 1024,
            "{}",
            m.max_rss_kib
        );
        assert!(m.wall_s > 0.0);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn sets_the_preload() {
        let l = launcher();
        let d = tmp("preload");
        let mut c = l.command(Path::new("/bin/sh"), Some(Path::new("/nonexistent.so")), &d);
        c.args(["-c", "echo \"$LD_PRELOAD\""]);
        let m = run(&mut c, &d, Duration::from_secs(20)).unwrap();
        assert!(m.success());
        assert_eq!(m.stdout, "/nonexistent.so\n");
        assert!(m.stderr.contains("cannot be preloaded"), "{}", m.stderr);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn times_out_and_kills_the_group() {
        let l = launcher();
        let d = tmp("timeout");
        let m = run(
            &mut sh(&l, "sleep 30 & sleep 30", &d),
            &d,
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(m.timed_out);
        assert!(!m.success());
        assert!(m
            .describe_status(Duration::from_millis(300))
            .contains("timed out"));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn reports_a_signal() {
        let l = launcher();
        let d = tmp("signal");
        let m = run(
            &mut sh(&l, "kill -SEGV $$", &d),
            &d,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(m.signal, Some(libc::SIGSEGV));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_missing_program_is_exit_127() {
        let l = launcher();
        let d = tmp("missing");
        let m = run(
            &mut l.command(Path::new("/nonexistent/prog"), None, &d),
            &d,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(m.code, Some(127));
        assert!(m.stderr.contains("cannot run"));
        fs::remove_dir_all(d).unwrap();
    }
}
