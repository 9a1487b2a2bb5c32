//! A register-tiled f32 GEMM for the recurrent step and the input projection.
//!
//! The shapes here are small (batch rows x a few hundred columns, k = hidden or input size)
//! and repeated once per timestep, so call overhead matters more than cache blocking: no
//! packing, no threads, operands read in place with their row strides. Generic over
//! [`pulp::Simd`] and `#[inline(always)]`, so it runs inside the caller's `vectorize` context.

use pulp::Simd;

/// A row-major operand: row `i` starts at `data[i * stride]`.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    pub(super) data: &'a [f32],
    pub(super) stride: usize,
}

/// What a product is added to.
#[derive(Clone, Copy)]
pub(super) enum Start<'a> {
    /// C = A . B
    Zero,
    /// C = row + A . B for every row of C (a bias, broadcast in registers, so C is only written).
    Row(&'a [f32]),
}

impl<'a> Start<'a> {
    /// The same start for the columns from `j` on.
    #[inline(always)]
    fn at(self, j: usize) -> Self {
        match self {
            Start::Row(row) => Start::Row(&row[j..]),
            other => other,
        }
    }
}

/// C (m x n, row stride `ldc`) = start + A (m x k) . B (k x n).
/// Inlined only in optimised builds, like `math::activate`.
#[cfg_attr(not(debug_assertions), inline(always))]
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm<S: Simd>(
    s: S,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    // Tiles sized to the register file: 32 vector registers with AVX-512, 16 with AVX2.
    if S::F32_LANES >= 16 {
        blocked::<S, 4, 4, 4>(s, m, n, k, a, b, c, ldc, start);
    } else {
        blocked::<S, 2, 3, 2>(s, m, n, k, a, b, c, ldc, start);
    }
}

/// Rows in tiles of 6 x `NR` vectors; the last m % 6 rows in wider tiles (`NR4`, `NR5` vectors
/// for 4 and 5 rows).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn blocked<S: Simd, const NR: usize, const NR4: usize, const NR5: usize>(
    s: S,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    let lanes = S::F32_LANES;
    let full = m / 6 * 6;
    if full > 0 {
        // Column panels outside, row tiles inside: a k x NR-vector panel of B stays in L1
        // while every row tile streams past it.
        let mut j = 0;
        while j + NR * lanes <= n {
            for i in (0..full).step_by(6) {
                tile::<S, 6, NR>(s, k, &a.data[i * a.stride..], a.stride, &b.data[j..], b.stride, &mut c[i * ldc + j..], ldc, start.at(j));
            }
            j += NR * lanes;
        }
        while j + lanes <= n {
            for i in (0..full).step_by(6) {
                tile::<S, 6, 1>(s, k, &a.data[i * a.stride..], a.stride, &b.data[j..], b.stride, &mut c[i * ldc + j..], ldc, start.at(j));
            }
            j += lanes;
        }
        if j < n {
            for i in (0..full).step_by(6) {
                tile_partial::<S, 6>(s, k, n - j, &a.data[i * a.stride..], a.stride, &b.data[j..], b.stride, &mut c[i * ldc + j..], ldc, start.at(j));
            }
        }
    }
    // The last m % 6 rows (all of them at batch 1): wider tiles keep enough independent
    // accumulators in flight to hide the FMA latency.
    if full == m {
        return; // (row `full` may not exist in a strided A or a tightly sized C)
    }
    let (a_rest, c_rest) = (Operand { data: &a.data[full * a.stride..], stride: a.stride }, &mut c[full * ldc..]);
    match m - full {
        1 => rows::<S, 1, 8>(s, n, k, a_rest, b, c_rest, ldc, start),
        2 => rows::<S, 2, 4>(s, n, k, a_rest, b, c_rest, ldc, start),
        3 => rows::<S, 3, 4>(s, n, k, a_rest, b, c_rest, ldc, start),
        4 => rows::<S, 4, NR4>(s, n, k, a_rest, b, c_rest, ldc, start),
        5 => rows::<S, 5, NR5>(s, n, k, a_rest, b, c_rest, ldc, start),
        _ => {}
    }
}

/// All n columns of MR rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows<S: Simd, const MR: usize, const NR: usize>(
    s: S,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    let lanes = S::F32_LANES;
    let mut j = 0;
    while j + NR * lanes <= n {
        tile::<S, MR, NR>(s, k, a.data, a.stride, &b.data[j..], b.stride, &mut c[j..], ldc, start.at(j));
        j += NR * lanes;
    }
    while j + lanes <= n {
        tile::<S, MR, 1>(s, k, a.data, a.stride, &b.data[j..], b.stride, &mut c[j..], ldc, start.at(j));
        j += lanes;
    }
    if j < n {
        tile_partial::<S, MR>(s, k, n - j, a.data, a.stride, &b.data[j..], b.stride, &mut c[j..], ldc, start.at(j));
    }
}

/// An MR x (NR vectors) block of C, accumulated in registers over all of k.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Simd, const MR: usize, const NR: usize>(
    s: S,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    let width = NR * S::F32_LANES;
    let mut acc = [[s.splat_f32s(0.0); NR]; MR];
    match start {
        Start::Zero => {}
        Start::Row(bias) => {
            let (loaded, _) = S::as_simd_f32s(&bias[..width]);
            for row in acc.iter_mut() {
                for (slot, v) in row.iter_mut().zip(loaded) {
                    *slot = *v;
                }
            }
        }
    }
    let a_rows: [&[f32]; MR] = std::array::from_fn(|i| &a[i * lda..i * lda + k]);
    for p in 0..k {
        let (bv, _) = S::as_simd_f32s(&b[p * ldb..p * ldb + width]);
        for (row, a_row) in acc.iter_mut().zip(&a_rows) {
            let av = s.splat_f32s(a_row[p]);
            for (slot, bj) in row.iter_mut().zip(bv) {
                *slot = s.mul_add_e_f32s(av, *bj, *slot);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let (out, _) = S::as_mut_simd_f32s(&mut c[i * ldc..i * ldc + width]);
        for (slot, v) in out.iter_mut().zip(row) {
            *slot = *v;
        }
    }
}

/// The last `width` (< one vector) columns of MR rows, through masked loads and stores.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_partial<S: Simd, const MR: usize>(
    s: S,
    k: usize,
    width: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    start: Start<'_>,
) {
    let mut acc = [s.splat_f32s(0.0); MR];
    match start {
        Start::Zero => {}
        Start::Row(bias) => acc = [s.partial_load_f32s(&bias[..width]); MR],
    }
    for p in 0..k {
        let bv = s.partial_load_f32s(&b[p * ldb..p * ldb + width]);
        for (i, slot) in acc.iter_mut().enumerate() {
            *slot = s.mul_add_e_f32s(s.splat_f32s(a[i * lda + p]), bv, *slot);
        }
    }
    for (i, v) in acc.iter().enumerate() {
        s.partial_store_f32s(&mut c[i * ldc..i * ldc + width], *v);
    }
}

#[cfg(test)]
mod tests {
    use pulp::WithSimd;

    use super::super::math::at_every_level;
    use super::*;

    struct Case<'a> {
        m: usize,
        n: usize,
        k: usize,
        a: Operand<'a>,
        b: Operand<'a>,
        c: Vec<f32>,
        ldc: usize,
        start: Start<'a>,
    }

    impl WithSimd for Case<'_> {
        type Output = Vec<f32>;
        #[inline(always)]
        fn with_simd<S: Simd>(mut self, s: S) -> Vec<f32> {
            gemm(s, self.m, self.n, self.k, self.a, self.b, &mut self.c, self.ldc, self.start);
            self.c
        }
    }

    /// A deterministic pseudo-random fill, so failures reproduce.
    fn fill(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_a_naive_product_for_every_tile_shape_stride_and_tail() {
        for m in [1, 2, 3, 4, 5, 6, 7, 13, 32] {
            for n in [1, 3, 8, 15, 16, 17, 40, 64, 100] {
                for k in [1, 2, 7, 33] {
                    let bias = fill(n, 4);
                    for start in [Start::Zero, Start::Row(&bias)] {
                        let (lda, ldb, ldc) = (k + 3, n + 5, n + 2);
                        // Operands end exactly at their last element, as strided views do.
                        let a = fill((m - 1) * lda + k, 1);
                        let b = fill((k - 1) * ldb + n, 2);
                        let before = fill((m - 1) * ldc + n, 3);
                        let results = at_every_level(|| Case {
                            m,
                            n,
                            k,
                            a: Operand { data: &a, stride: lda },
                            b: Operand { data: &b, stride: ldb },
                            c: before.clone(),
                            ldc,
                            start,
                        });
                        for c in results {
                            for i in 0..m {
                                for j in (0..ldc).take_while(|j| i * ldc + j < c.len()) {
                                    let got = c[i * ldc + j];
                                    if j >= n {
                                        assert_eq!(got, before[i * ldc + j], "padding column touched");
                                        continue;
                                    }
                                    let dot: f32 = (0..k).map(|p| a[i * lda + p] * b[p * ldb + j]).sum();
                                    let want = dot
                                        + match start {
                                            Start::Zero => 0.0,
                                            Start::Row(r) => r[j],
                                        };
                                    assert!(
                                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                        "m={m} n={n} k={k} at ({i},{j}): {got} vs {want}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
