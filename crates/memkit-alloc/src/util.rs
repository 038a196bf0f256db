//! Small allocation-free helpers: the stack text buffer for messages
//! (defined once, in memkit-sys, and shared with secure memory).

pub use memkit_sys::text::BufWriter;
