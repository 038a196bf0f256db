//! Allocation-free text: a stack buffer for the one-line messages, byte
//! counts in human units, errno names.

use core::fmt;

/// The stack text buffer for the one-line messages (memkit-sys's, shared
/// with the allocator core).
pub use memkit_sys::text::BufWriter as Msg;

/// A byte count as `N bytes`, `N KiB` or `N MiB` (exact multiples only, so
/// the number can be typed back into `ulimit -l`), or `unlimited`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b == u64::MAX {
            f.write_str("unlimited")
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} bytes")
        }
    }
}

/// The symbolic name of an errno value (`ENOMEM`), or `errno N`.
pub struct ErrnoName(pub i32);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.0 {
            1 => "EPERM",
            9 => "EBADF",
            11 => "EAGAIN",
            12 => "ENOMEM",
            14 => "EFAULT",
            22 => "EINVAL",
            24 => "EMFILE",
            38 => "ENOSYS",
            95 => "EOPNOTSUPP",
            n => return write!(f, "errno {n}"),
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn units_and_names() {
        let mut m = Msg::<128>::new();
        let _ = write!(
            m,
            "{} {} {} {} {} {}",
            Bytes(8 << 20),
            Bytes(65536),
            Bytes(1000),
            Bytes(u64::MAX),
            ErrnoName(12),
            ErrnoName(999)
        );
        assert_eq!(
            m.as_str(),
            "8 MiB 64 KiB 1000 bytes unlimited ENOMEM errno 999"
        );
        let mut short = Msg::<4>::new();
        let _ = write!(short, "abcdef");
        assert_eq!(short.as_str(), "abcd");
    }
}
