//! `SecretBox<T>`: one value in secure memory.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{size_of, ManuallyDrop};
use std::ops::{Deref, DerefMut};

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{opened, Error, Options, Protection, Raw};

/// Types whose all-zero bytes are a valid value (integers, floats, `bool`,
/// `char`, arrays of them), so [`SecretBox::init_with`] can build them in
/// zeroed secure memory.
///
/// # Safety
/// An implementor guarantees that every field may be all zero bytes (no
/// references, `NonZero*`, or enums without a zero discriminant).
pub unsafe trait Zeroable {}

macro_rules! zeroable {
    ($($t:ty),*) => { $(
        // SAFETY: zero is a valid value of this primitive.
        unsafe impl Zeroable for $t {}
    )* };
}
zeroable!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char);
// SAFETY: an array of zeroable elements is zeroable.
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}

/// A `T` in secure memory (see the [module docs](super)).
///
/// The value is reached only through borrow guards, which open the memory
/// for their lifetime. `T` should keep its secret inline (arrays, plain
/// structs): heap memory a `T` owns (a `String` field) is ordinary memory.
/// Dropping the box runs `T`'s destructor, checks the canaries and wipes
/// the memory.
pub struct SecretBox<T: Zeroize> {
    raw: Raw,
    _t: PhantomData<T>,
}

// SAFETY: the box owns its T like Box<T>.
unsafe impl<T: Zeroize + Send> Send for SecretBox<T> {}
// SAFETY: shared access hands out only &T.
unsafe impl<T: Zeroize + Sync> Sync for SecretBox<T> {}

impl<T: Zeroize> SecretBox<T> {
    /// Moves `value` into a new guarded secret. The bytes of the moved
    /// value in this function's frame are wiped, but copies the caller made
    /// earlier are not: prefer [`init_with`](Self::init_with), which builds
    /// the secret in place.
    pub fn new(value: T) -> Result<Self, Error> {
        Self::new_with_options(value, &Options::new())
    }

    /// [`new`](Self::new) with [`Options`].
    pub fn new_with_options(value: T, opts: &Options) -> Result<Self, Error> {
        let mut value = ManuallyDrop::new(value);
        let mut b = Self::alloc(opts)?;
        // SAFETY: the secret is read-write, sized and aligned for T, and
        // holds no value yet; our copy is never dropped, only wiped.
        unsafe {
            b.ptr().write(ManuallyDrop::take(&mut value));
            super::memzero(std::slice::from_raw_parts_mut(
                (&mut *value as *mut T).cast::<u8>(),
                size_of::<T>(),
            ));
        }
        b.raw.close_write();
        Ok(b)
    }

    /// Builds the secret in place: the new secure memory is all zeros (a
    /// valid `T`, see [`Zeroable`]), and `init` fills it there, so the
    /// secret never exists anywhere else.
    pub fn init_with(init: impl FnOnce(&mut T)) -> Result<Self, Error>
    where
        T: Zeroable,
    {
        Self::init_with_options(&Options::new(), init)
    }

    /// [`init_with`](Self::init_with) with [`Options`].
    pub fn init_with_options(opts: &Options, init: impl FnOnce(&mut T)) -> Result<Self, Error>
    where
        T: Zeroable,
    {
        let mut b = Self::alloc(opts)?;
        // SAFETY: the memory is read-write, sized and aligned for T, and
        // zeroed, which T: Zeroable promises is a valid T.
        init(unsafe { &mut *b.ptr() });
        b.raw.close_write();
        Ok(b)
    }

    fn alloc(opts: &Options) -> Result<Self, Error> {
        Ok(SecretBox {
            raw: Raw::alloc(size_of::<T>(), align_of::<T>(), opts)?,
            _t: PhantomData,
        })
    }

    fn ptr(&self) -> *mut T {
        self.raw.ptr.as_ptr().cast()
    }

    /// Opens the secret for reading while the guard lives. Concurrent
    /// readers share one opening. Panics if `mprotect` fails (out of
    /// mappings); see [`try_borrow`](Self::try_borrow).
    pub fn borrow(&self) -> SecretRef<'_, T> {
        opened(self.try_borrow(), "open a secret for reading")
    }

    /// [`borrow`](Self::borrow), returning the `mprotect` failure.
    pub fn try_borrow(&self) -> Result<SecretRef<'_, T>, Error> {
        self.raw.open_read()?;
        Ok(SecretRef { b: self })
    }

    /// Opens the secret for writing while the guard lives. Panics if
    /// `mprotect` fails; see [`try_borrow_mut`](Self::try_borrow_mut).
    pub fn borrow_mut(&mut self) -> SecretMut<'_, T> {
        opened(self.try_borrow_mut(), "open a secret for writing")
    }

    /// [`borrow_mut`](Self::borrow_mut), returning the `mprotect` failure.
    pub fn try_borrow_mut(&mut self) -> Result<SecretMut<'_, T>, Error> {
        self.raw.open_write()?;
        Ok(SecretMut { b: self })
    }

    /// What protection the secret actually has.
    pub fn protection(&self) -> Protection {
        self.raw.protection()
    }

    /// The secret's address, for tests and diagnostics (reading it without
    /// a guard faults while the secret is closed).
    pub fn as_ptr(&self) -> *const u8 {
        self.raw.ptr.as_ptr()
    }
}

impl<T: Zeroize> Drop for SecretBox<T> {
    fn drop(&mut self) {
        // The value's destructor may read or write it (zeroizing heap parts).
        if self.raw.open_write().is_ok() {
            // SAFETY: the box holds a live T, dropped exactly once here.
            unsafe { std::ptr::drop_in_place(self.ptr()) };
        }
        // Raw's drop checks the canaries, wipes and frees.
    }
}

impl<T: Zeroize> Zeroize for SecretBox<T> {
    fn zeroize(&mut self) {
        self.borrow_mut().zeroize();
    }
}

impl<T: Zeroize> ZeroizeOnDrop for SecretBox<T> {}

impl<T: Zeroize> fmt::Debug for SecretBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBox<{}>([REDACTED])", std::any::type_name::<T>())
    }
}

/// Read access to a [`SecretBox`]; closes it again when the last reader
/// drops.
pub struct SecretRef<'a, T: Zeroize> {
    b: &'a SecretBox<T>,
}

impl<T: Zeroize> Deref for SecretRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the secret holds a live T and is readable while we live.
        unsafe { &*self.b.ptr() }
    }
}

impl<T: Zeroize> Drop for SecretRef<'_, T> {
    fn drop(&mut self) {
        self.b.raw.close_read();
    }
}

impl<T: Zeroize> fmt::Debug for SecretRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretRef([REDACTED])")
    }
}

/// Write access to a [`SecretBox`]; closes it when dropped.
pub struct SecretMut<'a, T: Zeroize> {
    b: &'a mut SecretBox<T>,
}

impl<T: Zeroize> Deref for SecretMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the secret holds a live T and is open while we live.
        unsafe { &*self.b.ptr() }
    }
}

impl<T: Zeroize> DerefMut for SecretMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, read-write, and we hold the only borrow.
        unsafe { &mut *self.b.ptr() }
    }
}

impl<T: Zeroize> Drop for SecretMut<'_, T> {
    fn drop(&mut self) {
        self.b.raw.close_write();
    }
}

impl<T: Zeroize> fmt::Debug for SecretMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretMut([REDACTED])")
    }
}
