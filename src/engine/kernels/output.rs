//! Kernel outputs allocated without zeroing them first.
//!
//! Every conv, pool, concat and scale-shift allocates its output per call and then writes
//! every element of it. `vec![0.0; len]` zeroed that memory first (or took fresh pages the
//! kernel zeroed on first touch): a second pass over each output, 3-4% of DenseNet121's and
//! SqueezeNet's batch-1 runs. onnxruntime hands its kernels uninitialised arena memory for
//! the same reason.
#![allow(unsafe_code)]

/// Plain number types: every bit pattern is a valid value, so memory of them that a kernel
/// has not written yet holds some number, never an invalid value.
pub(crate) trait Number: Copy + Send + Sync + 'static {}

impl Number for f32 {}
impl Number for f64 {}
impl Number for i32 {}
impl Number for i64 {}
impl Number for u8 {}
impl Number for u16 {}
impl Number for u32 {}

/// Whether [`written`] fills its memory with 0xFF bytes first in unit tests; `profile_plan`
/// turns it off to time what a pod runs.
#[cfg(test)]
pub(crate) static FILL_UNWRITTEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// A vector of `len` values, every one written by `write` before the vector exists: `write`
/// gets the vector's memory as it came from the allocator and must write each element, and
/// read none it has not written.
///
/// Unit tests get every byte set to 0xFF instead (NaN for floats, -1 or MAX for integers),
/// so a kernel that leaves an element unwritten fails its reference test rather than passing
/// on whatever the allocator left there. If `write` panics, the vector is dropped empty.
pub(crate) fn written<T: Number, R>(len: usize, write: impl FnOnce(&mut [T]) -> R) -> (Vec<T>, R) {
    let mut out = Vec::<T>::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    #[cfg(test)]
    if FILL_UNWRITTEN.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: `spare` is `len` writable values, and 0xFF bytes make a valid value of every
        // `Number` type.
        unsafe { std::ptr::write_bytes(spare.as_mut_ptr(), 0xFF, len) };
    }
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the slice covers exactly `spare`. Values
    // not yet written are only ever written through it (the caller's contract), never read.
    let view = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<T>(), len) };
    let result = write(view);
    // SAFETY: the capacity holds `len` values and `write` wrote every one of them.
    unsafe { out.set_len(len) };
    (out, result)
}

/// [`written`] for a `write` that returns nothing.
pub(crate) fn filled<T: Number>(len: usize, write: impl FnOnce(&mut [T])) -> Vec<T> {
    written(len, write).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_tests_see_unwritten_elements_as_nan() {
        let v: Vec<f32> = filled(5, |v| v[1] = 2.0);
        assert_eq!(v.len(), 5);
        assert!(v[1] == 2.0 && [0, 2, 3, 4].iter().all(|&i| v[i].is_nan()));
        let i: Vec<i64> = filled(2, |_| {});
        assert_eq!(i, [-1, -1]);
    }

    #[test]
    fn a_panicking_writer_leaves_nothing_behind() {
        let caught = std::panic::catch_unwind(|| filled::<f32>(3, |_| panic!("a kernel bug")));
        assert!(caught.is_err());
    }
}
