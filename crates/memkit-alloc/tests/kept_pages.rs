//! Pages that empty stay in their bin queue, up to a budget per heap, and
//! the next batch of the same size is allocated from them without new
//! pages; trimming gives them back. (Each test runs on a thread of its own,
//! so that it sees a fresh heap.)

use memkit_alloc::heap::for_each_own_page;

/// A 1024-byte block's page: one 64 KiB slice holds 64 of them.
const SIZE: usize = 1024;
const PER_PAGE: usize = 64;

/// The calling thread's pages of `SIZE`-byte blocks: (pages, blocks used).
fn pages_of_size() -> (usize, u32) {
    let (mut pages, mut used) = (0, 0);
    for_each_own_page(|_, bs, u, _, _| {
        if bs == SIZE {
            pages += 1;
            used += u;
        }
    });
    (pages, used)
}

fn batch(n: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|i| {
            // SAFETY: a plain allocation; written within its size.
            unsafe {
                let p = memkit_alloc::malloc(SIZE);
                assert!(!p.is_null());
                p.write_bytes(i as u8, SIZE);
                p
            }
        })
        .collect()
}

fn free_all(blocks: &[*mut u8]) {
    for &b in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { memkit_alloc::free(b) };
    }
}

fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(f).join().expect("test thread");
}

#[test]
fn a_freed_batch_keeps_its_pages_for_the_next() {
    on_fresh_thread(|| {
        let n = 7 * PER_PAGE;
        let first = batch(n);
        let (pages, _) = pages_of_size();
        assert!(pages >= 7, "{pages} pages for {n} blocks");
        free_all(&first);
        // Every page stays (empty), not only the bin's current one.
        let (kept, used) = pages_of_size();
        assert_eq!(used, 0);
        assert_eq!(
            kept, pages,
            "pages given back on the free that emptied them"
        );
        // The next batch takes the same pages: no new page.
        let second = batch(n);
        let (after, used) = pages_of_size();
        assert_eq!(after, pages);
        assert_eq!(used as usize, n);
        free_all(&second);
    });
}

#[test]
fn kept_pages_stay_within_the_budget() {
    on_fresh_thread(|| {
        // 3 MiB of blocks: 48 pages, three times the 1 MiB budget.
        let n = 48 * PER_PAGE;
        let blocks = batch(n);
        let (pages, _) = pages_of_size();
        assert!(pages >= 48, "{pages} pages");
        free_all(&blocks);
        let (kept, used) = pages_of_size();
        assert_eq!(used, 0);
        // 16 kept pages of 64 KiB, and the bin's current page.
        assert!(
            (2..=17).contains(&kept),
            "{kept} empty pages kept out of {pages}"
        );
    });
}

#[test]
fn trim_gives_kept_pages_back() {
    on_fresh_thread(|| {
        let blocks = batch(7 * PER_PAGE);
        free_all(&blocks);
        assert!(pages_of_size().0 >= 7);
        memkit_alloc::heap::trim();
        let (pages, used) = pages_of_size();
        assert_eq!(used, 0);
        assert!(pages <= 1, "{pages} empty pages left after trim");
    });
}
