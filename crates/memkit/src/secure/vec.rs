//! `SecretVec`: a growable byte string in secure memory.

use std::fmt;
use std::ops::{Deref, DerefMut};

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{opened, Error, Options, Protection, Raw};

/// Bytes in secure memory that can grow (see the [module docs](super)).
///
/// Growing moves the bytes to a larger secret and wipes the old copy;
/// shrinking wipes the bytes given up. An empty `SecretVec` holds no
/// memory until the first byte arrives.
pub struct SecretVec {
    raw: Option<Raw>,
    len: usize,
    cap: usize,
    opts: Options,
}

impl Default for SecretVec {
    fn default() -> Self {
        SecretVec::new()
    }
}

impl SecretVec {
    /// An empty vector (guarded, no access between borrows).
    pub const fn new() -> SecretVec {
        SecretVec::with_options(Options::new())
    }

    /// An empty vector whose secrets use `opts`.
    pub const fn with_options(opts: Options) -> SecretVec {
        SecretVec {
            raw: None,
            len: 0,
            cap: 0,
            opts,
        }
    }

    /// An empty vector with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Result<SecretVec, Error> {
        let mut v = SecretVec::new();
        v.reserve(cap)?;
        Ok(v)
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Result<SecretVec, Error> {
        let mut v = SecretVec::new();
        v.resize(len, 0)?;
        Ok(v)
    }

    /// Copies `bytes` in. The caller still owns (and should wipe) `bytes`;
    /// [`take_from`](Self::take_from) does both.
    pub fn from_slice(bytes: &[u8]) -> Result<SecretVec, Error> {
        let mut v = SecretVec::new();
        v.extend_from_slice(bytes)?;
        Ok(v)
    }

    /// Copies `src` in and wipes `src`.
    pub fn take_from(src: &mut [u8]) -> Result<SecretVec, Error> {
        let v = SecretVec::from_slice(src)?;
        super::memzero(src);
        Ok(v)
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the current secret holds before it must move.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Makes room for `additional` more bytes (moving and wiping the old
    /// copy if the secret grows).
    pub fn reserve(&mut self, additional: usize) -> Result<(), Error> {
        // An impossible size fails in the allocation with ENOMEM.
        let need = self.len.saturating_add(additional);
        if need <= self.cap {
            return Ok(());
        }
        let cap = need.max(self.cap.saturating_mul(2)).max(32);
        match &mut self.raw {
            None => {
                let mut r = Raw::alloc(cap, 16, &self.opts)?;
                r.close_write();
                self.raw = Some(r);
            }
            Some(r) => {
                r.realloc(cap)?;
                r.close_write();
            }
        }
        self.cap = cap;
        Ok(())
    }

    /// Appends bytes.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.reserve(bytes.len())?;
        let at = self.len;
        self.len += bytes.len();
        self.borrow_mut()[at..].copy_from_slice(bytes);
        Ok(())
    }

    /// Appends one byte.
    pub fn push(&mut self, b: u8) -> Result<(), Error> {
        self.extend_from_slice(&[b])
    }

    /// Sets the length, filling new bytes with `value` and wiping bytes cut
    /// off.
    pub fn resize(&mut self, len: usize, value: u8) -> Result<(), Error> {
        if len <= self.len {
            self.truncate(len);
            return Ok(());
        }
        self.reserve(len - self.len)?;
        let at = self.len;
        self.len = len;
        self.borrow_mut()[at..].fill(value);
        Ok(())
    }

    /// Shortens to `len` bytes, wiping the rest.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.borrow_mut()[len..].zeroize();
        self.len = len;
    }

    /// Wipes every byte and empties the vector (the memory stays).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Opens the bytes for reading while the guard lives (concurrent
    /// readers share one opening). Panics if `mprotect` fails.
    pub fn borrow(&self) -> SecretSlice<'_> {
        opened(self.try_borrow(), "open a secret for reading")
    }

    /// [`borrow`](Self::borrow), returning the `mprotect` failure.
    pub fn try_borrow(&self) -> Result<SecretSlice<'_>, Error> {
        if let Some(r) = &self.raw {
            r.open_read()?;
        }
        Ok(SecretSlice { v: self })
    }

    /// Opens the bytes for writing while the guard lives. Panics if
    /// `mprotect` fails.
    pub fn borrow_mut(&mut self) -> SecretSliceMut<'_> {
        opened(self.try_borrow_mut(), "open a secret for writing")
    }

    /// [`borrow_mut`](Self::borrow_mut), returning the `mprotect` failure.
    pub fn try_borrow_mut(&mut self) -> Result<SecretSliceMut<'_>, Error> {
        if let Some(r) = &mut self.raw {
            r.open_write()?;
        }
        Ok(SecretSliceMut { v: self })
    }

    /// Compares with `other` in time independent of where they differ.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        super::ct_eq(&self.borrow(), other)
    }

    /// A copy in a new secret with the same options.
    pub fn try_clone(&self) -> Result<SecretVec, Error> {
        let mut v = SecretVec::with_options(self.opts);
        v.extend_from_slice(&self.borrow())?;
        Ok(v)
    }

    /// What protection the bytes actually have (`None` before the first
    /// byte arrives).
    pub fn protection(&self) -> Option<Protection> {
        self.raw.as_ref().map(Raw::protection)
    }

    /// The secret's address, for tests and diagnostics.
    pub fn as_ptr(&self) -> *const u8 {
        self.raw
            .as_ref()
            .map_or(std::ptr::NonNull::dangling().as_ptr(), |r| r.ptr.as_ptr())
    }

    fn slice(&self) -> *mut [u8] {
        std::ptr::slice_from_raw_parts_mut(self.as_ptr().cast_mut(), self.len)
    }
}

impl Zeroize for SecretVec {
    /// Wipes the bytes and empties the vector.
    fn zeroize(&mut self) {
        self.clear();
    }
}

impl ZeroizeOnDrop for SecretVec {}

impl fmt::Debug for SecretVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretVec([REDACTED])")
    }
}

/// Read access to a [`SecretVec`]'s bytes.
pub struct SecretSlice<'a> {
    v: &'a SecretVec,
}

impl Deref for SecretSlice<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: len initialised bytes, readable while we live (or an
        // empty slice at a dangling, aligned address).
        unsafe { &*self.v.slice() }
    }
}

impl Drop for SecretSlice<'_> {
    fn drop(&mut self) {
        if let Some(r) = &self.v.raw {
            r.close_read();
        }
    }
}

impl fmt::Debug for SecretSlice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSlice([REDACTED])")
    }
}

/// Write access to a [`SecretVec`]'s bytes.
pub struct SecretSliceMut<'a> {
    v: &'a mut SecretVec,
}

impl Deref for SecretSliceMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: as SecretSlice, and open for writing.
        unsafe { &*self.v.slice() }
    }
}

impl DerefMut for SecretSliceMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; we hold the only borrow.
        unsafe { &mut *self.v.slice() }
    }
}

impl Drop for SecretSliceMut<'_> {
    fn drop(&mut self) {
        if let Some(r) = &mut self.v.raw {
            r.close_write();
        }
    }
}

impl fmt::Debug for SecretSliceMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSliceMut([REDACTED])")
    }
}
