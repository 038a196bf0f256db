//! Allocation-free text for one-line messages: a stack buffer that
//! collects formatted text and writes it with one `write`. Used by the
//! allocator core (warnings, reports, hardening faults) and by secure
//! memory (its refusals and aborts), which must not allocate.

use core::fmt;

/// A stack buffer that collects text; text beyond its capacity is cut (and
/// [`BufWriter::flush_to`] marks the cut with `...`).
pub struct BufWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> Default for BufWriter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> BufWriter<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        BufWriter {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }

    /// Appends bytes, cutting what does not fit.
    pub fn put(&mut self, s: &[u8]) {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        if n < s.len() {
            self.cut = true;
        }
    }

    /// The text collected so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text as `&str` (a character cut in the middle is dropped).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: from_utf8 checked these bytes.
                unsafe { core::str::from_utf8_unchecked(&self.buf[..e.valid_up_to()]) }
            }
        }
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }

    /// Writes the text to `fd` (a cut text ends in `...` and a newline) and
    /// empties the buffer.
    pub fn flush_to(&mut self, fd: i32) {
        if self.cut && self.len >= 4 {
            self.buf[self.len - 4..self.len].copy_from_slice(b"...\n");
        }
        let _ = crate::write_all(fd, &self.buf[..self.len]);
        self.clear();
    }

    /// Writes the text to standard error, ending it with a newline.
    pub fn to_stderr(&mut self) {
        if N == 0 {
            return;
        }
        if self.len == N {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        let _ = crate::write_all(2, &self.buf[..self.len + 1]);
    }
}

impl<const N: usize> fmt::Write for BufWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

/// `v` in decimal, written into the end of `digits`; returns the digits.
pub fn decimal(v: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut v = v;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn collects_and_cuts() {
        let mut w = BufWriter::<8>::new();
        let _ = write!(w, "ab{}", 12);
        assert_eq!(w.as_str(), "ab12");
        let _ = write!(w, "cdefgh");
        assert_eq!(w.as_str(), "ab12cdef");
        w.clear();
        assert_eq!(w.as_bytes(), b"");
        let mut d = [0; 20];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(u64::MAX, &mut d), b"18446744073709551615");
    }
}
