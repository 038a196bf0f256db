//! The allocator within one process: random allocations and frees
//! against a model of live blocks, exhaustion and recovery, named
//! objects, foreign pointers, checks after each phase.

use std::collections::BTreeMap;

use memkit_shm::Heap;

fn name(tag: &str) -> Vec<u8> {
    format!("/memkit-test-core-{tag}-{}", std::process::id()).into_bytes()
}

struct Unlink(Vec<u8>);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = Heap::unlink(&self.0);
    }
}

/// xorshift: deterministic and dependency-free.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn random_allocations_against_a_model() {
    let n = name("model");
    let _u = Unlink(n.clone());
    let h = Heap::create(&n, 8 << 20, 0o600).expect("create");
    let mut live: BTreeMap<usize, (usize, u8)> = BTreeMap::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..200_000u32 {
        let r = rng(&mut seed);
        if r % 3 != 0 || live.is_empty() {
            let size = match r % 100 {
                0..=79 => (r >> 8) as usize % 256,
                80..=97 => (r >> 8) as usize % 8192,
                _ => (r >> 8) as usize % 200_000,
            };
            match h.alloc(size) {
                Ok(p) => {
                    let a = p.as_ptr() as usize;
                    assert_eq!(a % 16, 0);
                    if let Some((&b, &(bs, _))) = live.range(..=a).next_back() {
                        assert!(b + bs.max(1) <= a, "overlap {b:#x}+{bs} {a:#x}");
                    }
                    if let Some((&b, _)) = live.range(a..).next() {
                        assert!(a + size.max(1) <= b, "overlap {a:#x}+{size} {b:#x}");
                    }
                    let tag = (i % 251) as u8;
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { std::ptr::write_bytes(p.as_ptr(), tag, size) };
                    live.insert(a, (size, tag));
                    assert_eq!(h.at(h.offset(p.as_ptr())), p.as_ptr());
                }
                Err(e) => assert_eq!(e.0, 12, "only ENOMEM"),
            }
        } else {
            let k = (rng(&mut seed) as usize) % live.len();
            let (&a, &(size, tag)) = live.iter().nth(k).unwrap();
            // SAFETY: a live block of `size` bytes.
            let s = unsafe { std::slice::from_raw_parts(a as *const u8, size) };
            assert!(s.iter().all(|&b| b == tag), "block {a:#x} overwritten");
            h.free(a as *mut u8);
            live.remove(&a);
        }
        if i % 20_000 == 0 {
            h.check().expect("consistent");
        }
    }
    h.check().expect("consistent");
    for (&a, _) in &live {
        h.free(a as *mut u8);
    }
    h.check().expect("consistent after freeing everything");
    let st = h.stats().unwrap();
    assert_eq!(st.used, 0, "{st:?}");
}

#[test]
fn exhaustion_then_recovery() {
    let n = name("full");
    let _u = Unlink(n.clone());
    let h = Heap::create(&n, 1 << 20, 0o600).expect("create");
    let cap = h.stats().unwrap().capacity as usize;
    for size in [24usize, 1000, 5000, 70_000] {
        let mut got = Vec::new();
        loop {
            match h.alloc(size) {
                Ok(p) => got.push(p.as_ptr()),
                Err(e) => {
                    assert_eq!(e.0, 12);
                    break;
                }
            }
        }
        assert!(
            got.len() * size > cap / 2,
            "{size}: only {} blocks",
            got.len()
        );
        h.check().expect("consistent when full");
        for p in got {
            h.free(p);
        }
        h.check().expect("consistent after frees");
        let st = h.stats().unwrap();
        let big = h.alloc(cap - (64 << 10)).unwrap_or_else(|e| {
            panic!(
                "{size}: the whole heap again: {e:?} {st:?} after: {:?}",
                h.stats()
            )
        });
        h.free(big.as_ptr());
    }
}

#[test]
fn foreign_and_interior_pointers_are_ignored() {
    let n = name("foreign");
    let _u = Unlink(n.clone());
    let h = Heap::create(&n, 1 << 20, 0o600).expect("create");
    let a = h.alloc(100).unwrap().as_ptr();
    let b = h.alloc(100_000).unwrap().as_ptr();
    let mut local = 5u64;
    for p in [
        &mut local as *mut u64 as *mut u8,
        std::ptr::null_mut(),
        h.base(),
        h.base().wrapping_add(4096),
        a.wrapping_add(16),
        b.wrapping_add(4096),
        b.wrapping_add(8),
    ] {
        h.free(p);
    }
    h.check().expect("consistent");
    let st = h.stats().unwrap();
    assert!(st.used >= 100_000 + 100, "{st:?}");
    h.free(a);
    h.free(b);
    h.free(b);
    assert_eq!(h.stats().unwrap().used, 0);
    h.check().expect("consistent");
}

#[test]
fn named_objects() {
    let n = name("named");
    let _u = Unlink(n.clone());
    let h = Heap::create(&n, 1 << 20, 0o600).expect("create");
    let (p, created) = h.named(b"counter", 8).unwrap();
    assert!(created);
    let (q, created) = h.named(b"counter", 8).unwrap();
    assert!(!created);
    assert_eq!(p, q);
    assert_eq!(h.named(b"counter", 100).unwrap_err().0, 22);
    assert_eq!(h.named(b"", 8).unwrap_err().0, 22);
    let r = Heap::open(&n, false).expect("read-only");
    let (rp, _) = r.named(b"counter", 8).unwrap();
    assert_eq!(r.offset(rp.as_ptr()), h.offset(p.as_ptr()));
    assert_eq!(r.named(b"nothing", 8).unwrap_err().0, 2);
    assert_eq!(r.alloc(8).unwrap_err().0, 30);
    let keys: Vec<_> = (0..memkit_shm::layout::NAMED_MAX)
        .filter_map(|i| h.named_entry(i))
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key(), b"counter");
    h.remove_named(b"counter").unwrap();
    assert_eq!(h.stats().unwrap().used, 0);
    h.check().expect("consistent");
    r.check().expect("consistent read-only");
}

#[test]
fn names_and_errors() {
    assert_eq!(Heap::create(b"no-slash", 1 << 20, 0).err().unwrap().0, 22);
    assert_eq!(Heap::create(b"/a/b", 1 << 20, 0).err().unwrap().0, 22);
    assert_eq!(
        Heap::open(b"/memkit-test-none-here", true).err().unwrap().0,
        2
    );
    let n = name("dup");
    let _u = Unlink(n.clone());
    let h = Heap::create(&n, 1 << 20, 0).expect("create");
    assert_eq!(Heap::create(&n, 1 << 20, 0).err().unwrap().0, 17);
    drop(h);
    let path = format!("/dev/shm{}", String::from_utf8_lossy(&n));
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let other = name("foreign-file");
    let _u2 = Unlink(other.clone());
    std::fs::write(
        format!("/dev/shm{}", String::from_utf8_lossy(&other)),
        vec![7u8; 1 << 20],
    )
    .unwrap();
    assert_eq!(Heap::open(&other, true).err().unwrap().0, 22);
}
