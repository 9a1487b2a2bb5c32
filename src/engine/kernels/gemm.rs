//! The engine's single `unsafe` boundary: a bounds-checked front for the `gemm` crate.
//!
//! `gemm::gemm` takes raw pointers and strides so it can serve every layout; here every view is
//! checked against its slice before the call, which makes the call sound.
#![allow(unsafe_code)]

use gemm::Parallelism;

/// A read-only matrix inside a slice: element (r, c) is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major matrix.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The same memory read as its transpose (no copy).
    #[cfg(test)]
    fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    fn fits(&self) -> bool {
        span(self.rows, self.cols, self.row_stride, self.col_stride).is_some_and(|end| end <= self.data.len())
    }
}

/// One past the largest index a `rows x cols` view touches; `None` on overflow.
fn span(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(row_stride)?.checked_add((cols - 1).checked_mul(col_stride)?)?.checked_add(1)
}

/// `c = a * b` (or `c += a * b` with `accumulate`), where `c` is dense row-major with `ldc`
/// floats per row. Panics only on a caller's shape bug, which the checks turn into a clear
/// message instead of memory corruption.
pub(crate) fn sgemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, accumulate: bool, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "sgemm: inner dimensions differ ({m}x{k} * {}x{n})", b.rows);
    assert!(a.fits() && b.fits(), "sgemm: operand view exceeds its slice");
    assert!(n <= ldc || m <= 1, "sgemm: ldc {ldc} < n {n}");
    assert!(span(m, n, ldc, 1).is_some_and(|end| end <= c.len()), "sgemm: output view exceeds its slice");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: every index the kernel reads or writes, (rows-1)*row_stride + (cols-1)*col_stride,
    // was checked above to lie inside its slice; `c` is borrowed mutably, so it cannot alias
    // `a` or `b`; strides fit in isize because they index a live allocation.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|p| a.data[i * a.row_stride + p * a.col_stride] * b.data[p * b.row_stride + j * b.col_stride])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn matches_naive_product_for_plain_transposed_and_accumulated_views() {
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..56).map(|i| (i as f32 * 0.11).cos()).collect();
        let (av, bv) = (MatRef::row_major(&a, 5, 7), MatRef::row_major(&b, 7, 8));
        for threads in [1, 2] {
            let mut c = vec![0.0; 40];
            sgemm(av, bv, &mut c, 8, false, threads);
            for (x, y) in c.iter().zip(naive(av, bv)) {
                assert!((x - y).abs() < 1e-5);
            }
            let mut acc = vec![1.0; 40];
            sgemm(av, bv, &mut acc, 8, true, threads);
            for (x, y) in acc.iter().zip(naive(av, bv)) {
                assert!((x - (y + 1.0)).abs() < 1e-5);
            }
        }
        // b read as the transpose of an 8x7 matrix
        let bt = MatRef::row_major(&b, 8, 7).t();
        let mut c = vec![0.0; 5 * 8];
        sgemm(MatRef::row_major(&a, 5, 7), bt, &mut c, 8, false, 1);
        for (x, y) in c.iter().zip(naive(MatRef::row_major(&a, 5, 7), bt)) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn refuses_views_past_the_slice() {
        let a = vec![0.0; 4];
        let mut c = vec![0.0; 4];
        sgemm(MatRef { data: &a, rows: 2, cols: 3, row_stride: 3, col_stride: 1 }, MatRef::row_major(&a, 3, 1), &mut c, 1, false, 1);
    }
}
