//! The C API of stack buffers (`include/memkit-stack.h`): how much stack
//! the calling thread has left. `MEMKIT_STACK_BUFFER` itself is a macro of
//! the header, over this function.

/// `size_t memkit_stack_remaining(void)`: bytes between the caller and the
/// end of the calling thread's usable stack (0 off the thread's stack, e.g.
/// on an alternate signal stack). The first call of a thread computes the
/// bounds (other threads than the main one: `pthread_getattr_np`, which
/// allocates) and must not be made from a signal handler; later calls are
/// async-signal-safe. See `memkit_sys::stack`.
#[unsafe(no_mangle)]
pub extern "C" fn memkit_stack_remaining() -> usize {
    memkit_sys::stack::remaining()
}
