//! Scratch buffers that stay with their thread from one kernel call to the next.
//!
//! im2col chunks, Winograd's transformed tiles and the GEMM's copied A blocks are 0.1-4 MB per
//! call. Allocated per call, each one was zeroed by `Vec::resize` or faulted in fresh from the
//! OS before the kernel overwrote it: `memset` alone was 4% of SqueezeNet's and 8% of
//! DenseNet121's batch-1 profiles on two threads. A buffer taken here holds whatever its
//! thread's last kernel left in it, so every caller writes each element before reading it.

use std::cell::RefCell;

/// Buffers larger than this go back to the allocator instead of staying with the thread: a
/// rare huge call (a large batch's chunk) should not pin its memory for the life of the pool.
const KEEP_FLOATS: usize = 4 << 20;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch, left over from earlier calls (zeros the
/// first time). Calls nest: each takes a buffer of its own, and a kernel that work-steals
/// another while `f` runs takes another one too.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    if len == 0 {
        return f(&mut []);
    }
    let mut buffer = FREE.with(|free| free.borrow_mut().pop()).unwrap_or_default();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    if buffer.len() <= KEEP_FLOATS {
        FREE.with(|free| free.borrow_mut().push(buffer));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nested calls get distinct buffers, and a buffer comes back to the next call with what
    /// the last one left in it (no zeroing pass).
    #[test]
    fn nested_calls_get_their_own_buffers_and_reuse_them() {
        with_scratch(4, |outer| {
            outer.fill(1.0);
            with_scratch(3, |inner| {
                inner.fill(2.0);
                assert_eq!(outer, [1.0; 4]);
            });
        });
        let reused = with_scratch(2, |b| b.to_vec());
        assert!(reused.iter().all(|&v| v == 1.0 || v == 2.0), "a fresh buffer instead of a kept one: {reused:?}");
    }
}
