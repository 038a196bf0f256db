// A Rust program for the check-mode and profiler tests: a leaked vector
// from `shapes::keep_bytes` (4242 B), a freed one from `shapes::churn` on a
// spawned thread (1234 B). std's runtime start and each spawned thread call
// pthread_getattr_np, which allocates under the thread's lock.
mod shapes {
    #[inline(never)]
    pub fn keep_bytes(n: usize) -> Vec<u8> {
        std::hint::black_box(vec![7u8; n])
    }
    #[inline(never)]
    pub fn churn(n: usize) -> usize {
        std::hint::black_box(vec![1u8; n]).len()
    }
}

fn main() {
    let t = std::thread::spawn(|| shapes::churn(1234));
    assert_eq!(t.join().unwrap(), 1234);
    let v = shapes::keep_bytes(4242);
    assert_eq!(v[4241], 7);
    std::mem::forget(v);
    println!("done");
}
