//! f32 buffers that start on a 64-byte boundary.
//!
//! An AVX-512 vector is one cache line: a load from a misaligned address touches two lines and
//! costs about twice as much. malloc only promises 16 bytes (and large blocks come back at
//! page + 16), so a plain `Vec<f32>` made every weight load in the step GEMM split, and the
//! speed depended on where the allocator happened to put the weights.

use std::ops::{Deref, DerefMut};

const ALIGN_FLOATS: usize = 16;

pub(super) struct Aligned {
    raw: Vec<f32>,
    start: usize,
    len: usize,
}

impl Aligned {
    pub(super) fn zeros(len: usize) -> Self {
        let raw = vec![0.0f32; len + ALIGN_FLOATS - 1];
        // Addresses of f32s are multiples of 4, so the distance to the next line is too.
        let start = (64 - raw.as_ptr() as usize % 64) % 64 / 4;
        Self { raw, start, len }
    }

    pub(super) fn from_slice(values: &[f32]) -> Self {
        let mut out = Self::zeros(values.len());
        out.copy_from_slice(values);
        out
    }
}

impl Deref for Aligned {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_whatever_the_size() {
        for len in [0, 1, 15, 16, 17, 1000, 70_000] {
            let buf = Aligned::from_slice(&vec![1.5; len]);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.as_ptr() as usize % 64, 0, "len {len}");
            assert!(buf.iter().all(|&v| v == 1.5));
        }
    }
}
