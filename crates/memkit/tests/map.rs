//! memkit::map: a file truncated during a read gives `Err(Truncated)`,
//! never a signal; faults outside any view still kill the process (in a
//! child, this test binary re-run); FileViewMut grows and shrinks the file;
//! views in many threads at once; the madvise hints.

use std::fs::{self, OpenOptions};
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use memkit::map::{FileView, FileViewMut, Truncated};
use memkit_tests::child;
use memkit_tests::TempDir;

const PAGE: usize = 4096;

/// Byte `i` of the test files.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8 + 1
}

fn write_file(dir: &TempDir, name: &str, len: usize) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, (0..len).map(pattern).collect::<Vec<u8>>()).unwrap();
    p
}

fn truncate(p: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn truncation_during_a_read_is_an_error_not_a_signal() {
    let dir = TempDir::new("map-truncate");
    let p = write_file(&dir, "f", 16 * PAGE);
    let view = FileView::open(&p).unwrap();
    assert_eq!(view.len(), 16 * PAGE);
    let cut = PAGE + 100;
    let r = view.read(|b| {
        assert_eq!(b[5 * PAGE], pattern(5 * PAGE));
        truncate(&p, cut as u64);
        // Before the new end: the file; after it: zeros (the kernel's in
        // the last page, memkit's zero pages past it).
        assert!(b[..cut].iter().enumerate().all(|(i, &v)| v == pattern(i)));
        assert!(b[cut..].iter().all(|&v| v == 0));
        b.len()
    });
    assert_eq!(
        r,
        Err(Truncated {
            new_len: cut as u64,
            view_len: 16 * PAGE
        })
    );
    // Later reads past the end are answered again; reads before it are fine.
    // (black_box: a load whose value is unused may be left out, and then
    // nothing faults.)
    assert!(view.read(|b| black_box(b[10 * PAGE])).is_err());
    assert_eq!(view.read(|b| b[PAGE + 99]), Ok(pattern(PAGE + 99)));
    // The file grows back: the view shows its new bytes, not stale zeros.
    fs::write(&p, vec![0xab; 16 * PAGE]).unwrap();
    assert_eq!(view.read(|b| b.iter().all(|&v| v == 0xab)), Ok(true));
    // Populating a view of a shorter file fails instead of raising SIGBUS.
    truncate(&p, PAGE as u64);
    assert!(view.populate().is_err());
    let msg = view
        .read(|b| black_box(b[3 * PAGE]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("truncated to 4096 bytes"), "{msg}");
}

#[test]
fn a_fault_outside_any_view_still_kills_the_process() {
    const NAME: &str = "a_fault_outside_any_view_still_kills_the_process";
    if child::is_child(NAME) {
        let dir = TempDir::new("map-outside");
        let p = write_file(&dir, "f", 4 * PAGE);
        let how = std::env::var("HOW").unwrap();
        if how.ends_with("-dfl") {
            // No handler of Rust's before ours: ours chains to SIG_DFL.
            // SAFETY: restores the default action.
            unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
        }
        // A view, so the handler is installed.
        let view = FileView::open(&p).unwrap();
        assert_eq!(view.read(|b| b[0]), Ok(1));
        if how.starts_with("kill") {
            // A SIGBUS sent by a process, not a fault.
            // SAFETY: signals this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGBUS) };
        } else {
            // A plain mapping of another file, truncated under it.
            let q = write_file(&dir, "g", 4 * PAGE);
            let f = fs::File::open(&q).unwrap();
            // SAFETY: a fresh shared read-only mapping.
            let m = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4 * PAGE,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    f.as_raw_fd(),
                    0,
                )
            };
            assert_ne!(m, libc::MAP_FAILED);
            truncate(&q, 0);
            // SAFETY: inside the mapping; the access raises SIGBUS.
            let v = unsafe { std::ptr::read_volatile(m.cast::<u8>().add(2 * PAGE)) };
            println!("read {v} past the end of a truncated file");
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        println!("STILL ALIVE");
        return;
    }
    // Before ours: Rust's handler (it resets SIG_DFL for a fault that is
    // not a stack overflow, and returns), or SIG_DFL itself. A SIGBUS sent
    // with kill(2) is not a fault: under SIG_DFL it still kills (under
    // Rust's handler it did not even before memkit).
    for how in ["fault", "fault-dfl", "kill-dfl"] {
        let o = child::run_self(NAME, &[("HOW", how)]);
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGBUS),
            "{how}: {}",
            child::describe(&o)
        );
        assert!(!String::from_utf8_lossy(&o.stdout).contains("STILL ALIVE"));
    }
}

#[test]
fn a_writable_view_grows_and_shrinks_the_file() {
    let dir = TempDir::new("map-grow");
    let p = dir.join("f");
    let mut view = FileViewMut::create(&p, PAGE as u64).unwrap();
    assert_eq!(view.len(), PAGE);
    view.write(|b| b.fill(1)).unwrap();
    view.set_len(256 * PAGE as u64).unwrap();
    assert_eq!(view.len(), 256 * PAGE);
    assert_eq!(fs::metadata(&p).unwrap().len(), 256 * PAGE as u64);
    view.write(|b| {
        assert!(b[..PAGE].iter().all(|&v| v == 1));
        assert!(b[PAGE..].iter().all(|&v| v == 0));
        b[256 * PAGE - 1] = 9;
    })
    .unwrap();
    view.flush().unwrap();
    let on_disk = fs::read(&p).unwrap();
    assert_eq!(on_disk.len(), 256 * PAGE);
    assert_eq!(
        (on_disk[0], on_disk[PAGE], on_disk[256 * PAGE - 1]),
        (1, 0, 9)
    );
    // Shrink, empty, grow from empty.
    view.set_len(100).unwrap();
    assert_eq!(view.len(), 100);
    assert_eq!(fs::metadata(&p).unwrap().len(), 100);
    assert_eq!(view.read(|b| (b.len(), b[99])), Ok((100, 1)));
    view.set_len(0).unwrap();
    assert!(view.is_empty());
    assert_eq!(view.read(|b| b.len()), Ok(0));
    view.set_len(3 * PAGE as u64 + 5).unwrap();
    view.write(|b| b[3 * PAGE + 4] = 7).unwrap();
    drop(view);
    let on_disk = fs::read(&p).unwrap();
    assert_eq!(
        (on_disk.len(), on_disk[0], on_disk[3 * PAGE + 4]),
        (3 * PAGE + 5, 0, 7)
    );
    // An existing file, truncated by someone else while being written.
    let mut view = FileViewMut::open(&p).unwrap();
    let r = view.write(|b| {
        truncate(&p, PAGE as u64);
        b[2 * PAGE] = 1; // lands in a zero page of this process: lost
        b[0] = 2;
    });
    assert_eq!(r.unwrap_err().new_len, PAGE as u64);
    view.set_len(2 * PAGE as u64).unwrap();
    assert_eq!(view.read(|b| (b[0], b[PAGE])), Ok((2, 0)));
}

#[test]
fn views_in_many_threads_at_once() {
    let dir = Arc::new(TempDir::new("map-threads"));
    // A view shared by readers while it is cut and grown back.
    let shared_path = write_file(&dir, "shared", 32 * PAGE);
    let shared = Arc::new(FileView::open(&shared_path).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (v, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut cut) = (0, 0);
                while !stop.load(SeqCst) || ok == 0 {
                    match v.read(|b| {
                        b.iter()
                            .enumerate()
                            .step_by(997)
                            .all(|(i, &x)| x == pattern(i) || x == 0)
                    }) {
                        Ok(all) => {
                            assert!(all);
                            ok += 1
                        }
                        Err(_) => cut += 1,
                    }
                }
                (ok, cut)
            })
        })
        .collect();
    // Threads with views of their own, each truncating its file mid-read.
    let own: Vec<_> = (0..8)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let p = write_file(&dir, &format!("own-{t}-{round}"), (8 + t) * PAGE);
                    let v = FileView::open(&p).unwrap();
                    let keep = (round % 4) * PAGE + 17;
                    let r = v.read(|b| {
                        truncate(&p, keep as u64);
                        b.iter().skip(keep).all(|&x| x == 0)
                    });
                    assert_eq!(r.unwrap_err().new_len, keep as u64);
                    assert_eq!(v.read(|b| b[keep - 1]), Ok(pattern(keep - 1)));
                }
            })
        })
        .collect();
    for i in 0..50 {
        truncate(&shared_path, ((i % 8) * PAGE) as u64);
        std::thread::sleep(std::time::Duration::from_millis(1));
        fs::write(
            &shared_path,
            (0..32 * PAGE).map(pattern).collect::<Vec<u8>>(),
        )
        .unwrap();
    }
    for t in own {
        t.join().unwrap();
    }
    stop.store(true, SeqCst);
    let (mut ok, mut cut) = (0, 0);
    for r in readers {
        let (o, c) = r.join().unwrap();
        ok += o;
        cut += c;
    }
    eprintln!("shared view: {ok} whole reads, {cut} cut short");
    assert!(ok > 0);
}

#[test]
fn hints_and_empty_files() {
    let dir = TempDir::new("map-hints");
    let p = write_file(&dir, "f", 64 * PAGE);
    let v = FileView::open(&p).unwrap();
    v.sequential().unwrap();
    v.random().unwrap();
    v.will_need().unwrap();
    v.populate().unwrap();
    v.dont_need().unwrap();
    // A kernel without transparent huge pages refuses the hint.
    if let Err(e) = v.hugepage() {
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    }
    assert_eq!(v.read(|b| b[63 * PAGE]), Ok(pattern(63 * PAGE)));
    let e = write_file(&dir, "empty", 0);
    let v = FileView::open(&e).unwrap();
    assert!(v.is_empty());
    assert_eq!(v.read(|b| b.len()), Ok(0));
    v.populate().unwrap();
    assert!(FileView::open(dir.join("missing")).is_err());
}
