//! Which memkit this library is: the version note the `memkit` command
//! reads from the file (see `memkit_sys::version`), and `memkit_version()`
//! for the programs that run on it.

use core::ffi::c_char;

memkit_sys::version_note!(static VERSION_NOTE);

/// `const char *memkit_version(void)`: the library's version, e.g.
/// `"0.1.0"` (static storage; the bytes of its version note).
#[unsafe(no_mangle)]
pub extern "C" fn memkit_version() -> *const c_char {
    VERSION_NOTE.version_cstr().as_ptr()
}
