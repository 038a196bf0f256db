//! `inspect`: a heap read from its file's bytes, as `memkit shm ls` reads
//! it, agrees with the handle's own statistics; files that are not heaps
//! (no magic, a forged geometry, a short read) are refused, never trusted.

use std::fs::File;
use std::mem::offset_of;
use std::os::unix::fs::FileExt as _;

use memkit_shm::inspect::{inspect, Refusal};
use memkit_shm::{layout, registry, Heap};

fn name(tag: &str) -> Vec<u8> {
    format!("/memkit-test-inspect-{tag}-{}", std::process::id()).into_bytes()
}

struct Unlink(Vec<u8>);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = Heap::unlink(&self.0);
    }
}

fn path(n: &[u8]) -> String {
    format!("/dev/shm{}", String::from_utf8_lossy(n))
}

fn look(bytes: &[u8]) -> Result<memkit_shm::inspect::Summary, Refusal> {
    inspect(
        bytes.len() as u64,
        &mut |off, buf| {
            let Some(src) = bytes.get(off as usize..off as usize + buf.len()) else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        },
        &registry::alive,
    )
}

#[test]
fn agrees_with_the_handle_and_takes_no_slot() {
    let n = name("agree");
    let _u = Unlink(n.clone());
    let h = Heap::create(&n, 8 << 20, 0).unwrap();
    let mut blocks = Vec::new();
    for i in 0..300 {
        blocks.push(h.alloc(16 + (i * 37) % 3000).unwrap());
    }
    blocks.push(h.alloc(100_000).unwrap());
    for b in blocks.iter().step_by(3) {
        h.free(b.as_ptr());
    }
    let st = h.stats().unwrap();
    let file = File::open(path(&n)).unwrap();
    let size = file.metadata().unwrap().len();
    let s = inspect(
        size,
        &mut |off, buf| file.read_exact_at(buf, off).is_ok(),
        &registry::alive,
    )
    .unwrap();
    assert_eq!(s.size, 8 << 20);
    assert_eq!(s.capacity, st.capacity);
    assert_eq!((s.used, s.cached), (st.used, st.cached), "{st:?}");
    assert!(s.used >= 100_000);
    assert_eq!(s.creator_pid, std::process::id());
    assert_eq!(s.alive_dead(), (1, 0));
    assert!(!s.stale());
    assert_eq!(s.attached()[0].pid, std::process::id());
    // Looking took no slot: still one attached process.
    assert_eq!(h.attached(), (1, 0));
    drop(h);
    let s = inspect(
        size,
        &mut |off, buf| file.read_exact_at(buf, off).is_ok(),
        &registry::alive,
    )
    .unwrap();
    assert_eq!(s.alive_dead(), (0, 0));
    assert!(s.stale(), "closed by everyone: stale");
}

#[test]
fn a_dead_attacher_counts_as_dead() {
    let n = name("dead");
    let _u = Unlink(n.clone());
    let h = Heap::create(&n, 1 << 20, 0).unwrap();
    let mut bytes = std::fs::read(path(&n)).unwrap();
    drop(h);
    // Our slot, recorded with a start time no process has.
    let s = look(&bytes).unwrap();
    assert_eq!(s.alive_dead(), (1, 0));
    let g = layout::Geometry::for_size(1 << 20);
    let start = g.slots_off as usize + offset_of!(layout::Slot, start);
    bytes[start..start + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
    let s = look(&bytes).unwrap();
    assert_eq!(s.alive_dead(), (0, 1));
    assert!(s.stale());
}

#[test]
fn files_that_are_not_heaps_are_refused() {
    assert_eq!(look(&[0u8; 10]).unwrap_err(), Refusal::TooSmall);
    assert_eq!(look(&vec![7u8; 1 << 20]).unwrap_err(), Refusal::NoMagic);
    assert!(!Refusal::NoMagic.is_memkit());

    let n = name("forged");
    let _u = Unlink(n.clone());
    drop(Heap::create(&n, 1 << 20, 0).unwrap());
    let good = std::fs::read(path(&n)).unwrap();
    assert!(look(&good).is_ok());

    // The header claims another size than the file's.
    let mut b = good.clone();
    let size_at = offset_of!(layout::Header, size);
    b[size_at..size_at + 8].copy_from_slice(&(64u64 << 30).to_ne_bytes());
    assert_eq!(look(&b).unwrap_err(), Refusal::Geometry);
    // A table offset past the end of the file.
    let mut b = good.clone();
    let table_at = offset_of!(layout::Header, table_off);
    b[table_at..table_at + 8].copy_from_slice(&(1u64 << 40).to_ne_bytes());
    assert_eq!(look(&b).unwrap_err(), Refusal::Geometry);
    // Another layout version.
    let mut b = good.clone();
    let v = offset_of!(layout::Header, version);
    b[v..v + 4].copy_from_slice(&99u32.to_ne_bytes());
    assert_eq!(look(&b).unwrap_err(), Refusal::Version(99));
    assert!(Refusal::Version(99).is_memkit());
    // Garbage in the unit table: bounded, no panic, figures within size.
    let mut b = good.clone();
    let g = layout::Geometry::for_size(1 << 20);
    for u in 0..g.units as usize {
        let at = g.table_off as usize + 4 * u;
        b[at..at + 4].copy_from_slice(&(0xc000_0000u32 | (u as u32 * 7919)).to_ne_bytes());
    }
    let s = look(&b).unwrap();
    assert!(s.used <= s.size, "{}", s.used);
    // The file shrank under the reader: a short read.
    let size = good.len() as u64;
    let r = inspect(
        size,
        &mut |off, buf| {
            let end = off as usize + buf.len();
            end <= 8192 && {
                buf.copy_from_slice(&good[off as usize..end]);
                true
            }
        },
        &registry::alive,
    );
    assert_eq!(r.unwrap_err(), Refusal::Read);
}
