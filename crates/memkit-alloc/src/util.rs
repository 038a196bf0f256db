//! Small allocation-free helpers: a fixed-size text buffer for messages.

/// A stack buffer that collects text and writes it to a file descriptor in one
/// `write`; text beyond its capacity is cut and marked with `...`.
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
    pub const fn new() -> Self {
        BufWriter {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }

    pub fn put(&mut self, s: &[u8]) {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        if n < s.len() {
            self.cut = true;
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }

    /// Writes the text to `fd` and empties the buffer.
    pub fn flush_to(&mut self, fd: i32) {
        if self.cut && self.len >= 4 {
            self.buf[self.len - 4..self.len].copy_from_slice(b"...\n");
        }
        let _ = memkit_sys::write_all(fd, &self.buf[..self.len]);
        self.clear();
    }
}

impl<const N: usize> core::fmt::Write for BufWriter<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}
