//! Arenas (heaps that are no thread's) over the OS and over a memfd:
//! allocation and freeing against a model of the live blocks, huge blocks,
//! blocks freed by other threads, destroy, and segments that never leave
//! their source.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use memkit_alloc::arena::Arena;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A size spread over small, medium and (rarely) huge blocks.
fn size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=59 => r.below(256) as usize,
        60..=94 => 256 + r.below(64 << 10) as usize,
        95..=98 => (64 << 10) + r.below(192 << 10) as usize,
        _ => (256 << 10) + r.below(6 << 20) as usize,
    }
}

fn fill(p: *mut u8, n: usize, seed: u8) {
    // SAFETY: the callers' blocks have n usable bytes.
    unsafe { std::ptr::write_bytes(p, seed, n.min(4096)) };
    if n > 4096 {
        // SAFETY: as above: the last byte of the block.
        unsafe { *p.add(n - 1) = seed };
    }
}

fn holds(p: *mut u8, n: usize, seed: u8) -> bool {
    // SAFETY: the callers' blocks have n usable bytes.
    let head = unsafe { std::slice::from_raw_parts(p, n.min(4096)) };
    // SAFETY: as above.
    head.iter().all(|&b| b == seed) && (n <= 4096 || unsafe { *p.add(n - 1) } == seed)
}

/// Random allocations and frees against a map of live blocks and their
/// contents; every block stays intact until freed and lies in `range`.
fn model(arena: &Arena, seed: u64, steps: usize, range: Option<(usize, usize)>) {
    let mut r = Rng(seed);
    let mut live: HashMap<usize, (usize, u8)> = HashMap::new();
    for step in 0..steps {
        if live.is_empty() || r.below(100) < 55 {
            let n = size(&mut r);
            let p = if r.below(8) == 0 {
                let align = 1usize << (4 + r.below(9));
                let p = arena.alloc_aligned(align, n);
                assert_eq!(p as usize % align, 0, "aligned to {align}");
                p
            } else if r.below(8) == 0 {
                let p = arena.alloc_zeroed(1, n);
                assert!(holds(p, n, 0), "zeroed block of {n}");
                p
            } else {
                arena.alloc(n)
            };
            assert!(!p.is_null(), "step {step}: alloc({n})");
            // SAFETY: a live block.
            assert!(unsafe { memkit_alloc::usable_size(p) } >= n);
            if let Some((lo, hi)) = range {
                assert!(
                    (lo..hi).contains(&(p as usize)),
                    "a block outside its source"
                );
            }
            let tag = step as u8 | 1;
            fill(p, n, tag);
            assert!(
                live.insert(p as usize, (n, tag)).is_none(),
                "handed out twice"
            );
        } else {
            let k = *live
                .keys()
                .nth(r.below(live.len() as u64) as usize)
                .unwrap();
            let (n, tag) = live.remove(&k).unwrap();
            assert!(holds(k as *mut u8, n, tag), "block {k:#x} of {n} changed");
            // SAFETY: a live block of the arena, freed once.
            unsafe { Arena::free(k as *mut u8) };
        }
        if step % 500 == 0 {
            assert!(arena.check(), "arena invariants at step {step}");
        }
    }
    for (&k, &(n, tag)) in &live {
        assert!(holds(k as *mut u8, n, tag), "block {k:#x} of {n} changed");
    }
    // Half are freed, the rest go with the arena.
    for (&k, _) in live.iter().step_by(2) {
        // SAFETY: a live block of the arena.
        unsafe { Arena::free(k as *mut u8) };
    }
    assert!(arena.check());
}

fn memfd() -> i32 {
    memkit_sys::shm::memfd(c"memkit-arena-test").expect("memfd_create")
}

#[test]
fn an_os_arena_keeps_every_block_intact() {
    let arena = Arena::new().expect("arena");
    model(&arena, 0x9e37_79b9_7f4a_7c15, 20_000, None);
}

#[test]
fn an_fd_arena_keeps_every_block_intact_inside_its_file() {
    let fd = memfd();
    let arena = Arena::with_fd(fd, 256 << 20).expect("fd arena");
    let (base, len) = arena.mapping().expect("an fd arena has a mapping");
    assert_eq!(len, 256 << 20);
    assert_eq!(base as usize % (4 << 20), 0);
    model(
        &arena,
        42,
        20_000,
        Some((base as usize, base as usize + len)),
    );
    memkit_sys::close(fd);
}

#[test]
fn fd_arena_blocks_are_in_the_file_at_their_offset() {
    let fd = memfd();
    let arena = Arena::with_fd(fd, 64 << 20).expect("fd arena");
    let (base, _) = arena.mapping().unwrap();
    // SAFETY: a dup of our memfd, owned by the File.
    let file = unsafe { File::from_raw_fd(memkit_sys::dup_cloexec(fd).unwrap()) };
    for n in [1usize, 100, 5000, 200 << 10, 3 << 20] {
        let p = arena.alloc(n);
        assert!(!p.is_null());
        let msg = format!("block of {n} bytes");
        // SAFETY: the block has n >= 1 bytes; at most msg.len() are written.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), p, msg.len().min(n)) };
        let mut got = vec![0u8; msg.len().min(n)];
        file.read_exact_at(&mut got, (p as usize - base as usize) as u64)
            .unwrap();
        assert_eq!(got, &msg.as_bytes()[..got.len()]);
    }
    drop(arena);
    memkit_sys::close(fd);
}

#[test]
fn huge_blocks_of_an_fd_arena_go_back_to_it_and_realloc_copies_them() {
    let fd = memfd();
    let arena = Arena::with_fd(fd, 64 << 20).expect("fd arena");
    let (base, len) = arena.mapping().unwrap();
    let inside = |p: *mut u8| (base as usize..base as usize + len).contains(&(p as usize));
    let p = arena.alloc(10 << 20);
    assert!(inside(p));
    fill(p, 10 << 20, 7);
    // SAFETY: a live block, freed once.
    unsafe { Arena::free(p) };
    // Its chunks are free again: the same place serves the next one.
    let q = arena.alloc(10 << 20);
    assert_eq!(q, p, "the freed chunks are reused");
    // A file of 64 MiB has no room for two more of 30 MiB.
    let a = arena.alloc(30 << 20);
    assert!(!a.is_null());
    assert!(arena.alloc(30 << 20).is_null(), "beyond the file");
    // Above 4 MiB of alignment: refused by an fd source.
    assert!(arena.alloc_aligned(8 << 20, 1 << 20).is_null());
    // realloc moves a block of another source by copying.
    fill(q, 10 << 20, 9);
    // SAFETY: a live block.
    let r = unsafe { memkit_alloc::realloc(q, 12 << 20) };
    assert!(!r.is_null() && !inside(r), "realloc'd to the thread's heap");
    assert!(holds(r, 10 << 20, 9));
    // SAFETY: live blocks.
    unsafe {
        memkit_alloc::free(r);
        Arena::free(a);
    }
    assert!(arena.check());
    memkit_sys::close(fd);
}

#[test]
fn blocks_freed_by_other_threads_come_back_to_the_arena_only() {
    let fd = memfd();
    // Four rounds of ~6 MB do not fit in 16 MiB unless the remote frees
    // come back to the arena.
    let arena = Arena::with_fd(fd, 16 << 20).expect("fd arena");
    let (base, len) = arena.mapping().unwrap();
    let range = base as usize..base as usize + len;
    let mut r = Rng(7);
    for round in 0..4 {
        let blocks: Vec<usize> = (0..5000)
            .map(|_| {
                let n = 16 + r.below(2000) as usize;
                let p = arena.alloc(n);
                assert!(!p.is_null(), "round {round}: remote frees not reused");
                fill(p, n.min(16), round as u8);
                p as usize
            })
            .collect();
        let range2 = range.clone();
        std::thread::spawn(move || {
            // The thread has a heap of its own (its cache of other heaps'
            // blocks must not take the arena's).
            // SAFETY: plain allocations of this thread.
            let mine: Vec<usize> = (0..100)
                .map(|_| unsafe { memkit_alloc::malloc(64) } as usize)
                .collect();
            for &b in &blocks {
                // SAFETY: live blocks of the arena, each freed once.
                unsafe { memkit_alloc::free(b as *mut u8) };
            }
            for _ in 0..20_000 {
                // SAFETY: allocations of this thread, freed at once.
                unsafe {
                    let p = memkit_alloc::malloc(16 + (blocks.len() % 2000));
                    assert!(
                        !range2.contains(&(p as usize)),
                        "an arena block in a thread heap"
                    );
                    memkit_alloc::free(p);
                }
            }
            for &p in &mine {
                // SAFETY: this thread's blocks.
                unsafe { memkit_alloc::free(p as *mut u8) };
            }
        })
        .join()
        .unwrap();
        assert!(arena.check(), "after remote frees, round {round}");
    }
    drop(arena);
    memkit_sys::close(fd);
}

#[test]
fn segments_never_leave_their_source() {
    // An OS arena's empty segments may go to the process's cache; an fd
    // arena's go back to its file: a thread's malloc never sees them.
    let fd = memfd();
    let arena = Arena::with_fd(fd, 32 << 20).expect("fd arena");
    let (base, len) = arena.mapping().unwrap();
    let range = base as usize..base as usize + len;
    // Fill several segments, then free everything.
    let blocks: Vec<usize> = (0..3000).map(|_| arena.alloc(8000) as usize).collect();
    assert!(blocks.iter().all(|b| range.contains(b)));
    for &b in &blocks {
        // SAFETY: live blocks.
        unsafe { Arena::free(b as *mut u8) };
    }
    // Collect them (the arena's slow paths), so that its segments empty.
    for _ in 0..200 {
        let p = arena.alloc(100_000);
        // SAFETY: a live block.
        unsafe { Arena::free(p) };
    }
    let got: Vec<usize> = (0..2000)
        // SAFETY: plain allocations.
        .map(|_| unsafe { memkit_alloc::malloc(8000) } as usize)
        .collect();
    assert!(
        got.iter().all(|p| !range.contains(p)),
        "a file segment in a thread heap"
    );
    for &p in &got {
        // SAFETY: live blocks.
        unsafe { memkit_alloc::free(p as *mut u8) };
    }
    // The whole file is free again: one block of nearly its size fits.
    let big = arena.alloc(len - (1 << 20));
    assert!(!big.is_null(), "the arena's segments went back to its file");
    drop(arena);
    memkit_sys::close(fd);
}

/// 512-byte blocks of the file that hold data.
fn file_blocks(fd: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .blocks()
}

#[test]
fn destroy_frees_everything_and_the_heap_is_reused() {
    let fd = memfd();
    for round in 0..3 {
        let arena = Arena::with_fd(fd, 16 << 20).expect("fd arena");
        // Fill the file (small, medium and huge blocks), leave it all live.
        let mut n = 0;
        for size in [100_000usize, 1000, 40] {
            loop {
                let p = arena.alloc(size);
                if p.is_null() {
                    break;
                }
                fill(p, size, 3);
                n += 1;
            }
        }
        assert!(n > 100, "round {round}: {n} blocks");
        assert!(file_blocks(fd) > 1000, "the file holds the blocks");
        drop(arena);
        assert_eq!(file_blocks(fd), 0, "destroy freed the file's pages");
    }
    // Also an OS arena with small and huge blocks left live.
    let arena = Arena::new().unwrap();
    for i in 0..1000 {
        assert!(!arena.alloc(i * 37 + 1).is_null());
    }
    assert!(!arena.alloc(20 << 20).is_null());
    assert!(arena.check());
    drop(arena);
    memkit_sys::close(fd);
}

#[test]
fn a_bad_fd_or_size_is_refused() {
    assert!(Arena::with_fd(-1, 1 << 20).is_err());
    let fd = memfd();
    assert_eq!(Arena::with_fd(fd, 0).err(), Some(memkit_sys::Errno(22)));
    assert!(Arena::with_fd(fd, memkit_alloc::arena::FD_MAX + 1).is_err());
    memkit_sys::close(fd);
}
