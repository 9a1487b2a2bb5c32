//! A conv and the max pool after it in one kernel, for pools whose windows sit side by side
//! (`passes/max_pool.rs` fuses them): the conv's output is computed a band of rows at a time
//! into per-thread scratch and pooled there, so it never reaches memory.

use rayon::prelude::*;

use super::activation::Activation;
use super::conv::{CHUNK_FLOATS, Conv2d, MIN_CHUNK_ROWS, PARALLEL_MACS};
use super::output::filled;
use super::packed::{Epilogue, PackedB, gemm};
use super::scratch::with_scratch;

/// A conv's weights as one of its kernels reads them.
#[derive(Clone, Copy)]
pub(crate) enum Kernel<'a> {
    /// GEMM panels from [`super::conv::pack_hwio`].
    Packed(&'a [PackedB]),
    /// HWIO weights of a first-layer conv (`narrow::applies`).
    Narrow(&'a [f32]),
}

impl Conv2d {
    /// The conv, then a max pool whose `[rows, columns]` windows sit side by side (stride =
    /// window, no padding, floor mode). Returns the pooled NHWC output, `[batch, out_h / rows,
    /// out_w / columns, out_c]`.
    ///
    /// Works in bands of pooled rows: the conv pixels under a band's windows are computed
    /// (bias and activation included) into a per-thread scratch, then the max over each window
    /// is taken while they are in cache, so the conv's full output never reaches memory. Pixels
    /// past the last whole window are never computed.
    pub(crate) fn run_max_pooled(&self, input: &[f32], weights: Kernel<'_>, bias: &[f32], act: Option<Activation>, window: [usize; 2], threads: usize) -> Vec<f32> {
        let [ph, pw] = window;
        assert!(ph > 0 && pw > 0, "max pool window {window:?} is empty");
        let (pooled_h, pooled_w) = (self.out_h / ph, self.out_w / pw);
        let patch = self.patch_len();
        let (in_g, out_g) = (self.in_c / self.groups, self.out_c / self.groups);
        let (narrow, packed) = match weights {
            Kernel::Packed(packed) => {
                assert!(packed.len() == self.groups && packed.iter().all(|p| p.k() == patch && p.n() == out_g), "conv weights packed for another shape");
                (None, packed)
            }
            Kernel::Narrow(hwio) => (Some(super::narrow::Narrow::new(self, input, hwio, bias, act)), &[][..]),
        };
        let row_len = pooled_w * self.out_c;
        let rows = self.batch * pooled_h;
        // conv pixels under one pooled row's windows: `ph` conv rows of `pooled_w * pw` pixels
        let (span, band) = (pooled_w * pw, ph * pooled_w * pw);
        // bands per chunk: the chunk's im2col rows and sums together about a quarter of
        // [`CHUNK_FLOATS`], so both stay in L2 between the GEMM writing the sums and the pool
        // reading them
        let per_chunk = ((CHUNK_FLOATS / 4 / (patch + self.out_c)).max(MIN_CHUNK_ROWS) / band.max(1)).max(1);
        let col_len = if narrow.is_some() { 0 } else { per_chunk * band * patch };
        let epilogue = |g: usize| Epilogue { bias: Some(&bias[g * out_g..(g + 1) * out_g]), activation: act, residual: None };
        // the conv pixels of `bands` pooled rows from `first` (flattened over N and pooled H)
        let compute = |first: usize, bands: usize, col: &mut [f32], sums: &mut [f32]| {
            let origin = |j: usize| ((first + j) / pooled_h, (first + j) % pooled_h * ph);
            if let Some(narrow) = &narrow {
                for (j, rows) in sums.chunks_exact_mut(band * self.out_c).enumerate() {
                    let (n, oh) = origin(j);
                    for (dy, row) in rows.chunks_exact_mut(span * self.out_c).enumerate() {
                        narrow.row(n, oh + dy, span, row);
                    }
                }
                return;
            }
            let col = &mut col[..bands * band * patch];
            for (g, p) in packed.iter().enumerate() {
                for (j, rows) in col.chunks_exact_mut(band * patch).enumerate() {
                    let (n, oh) = origin(j);
                    for (dy, row) in rows.chunks_exact_mut(span * patch).enumerate() {
                        self.im2col(input, (n * self.out_h + oh + dy) * self.out_w, span, g * in_g, in_g, row);
                    }
                }
                gemm(col, patch, bands * band, p, &mut sums[g * out_g..], self.out_c, &epilogue(g));
            }
        };
        // `first` is the first pooled row of `out`
        let run = |first: usize, out: &mut [f32]| {
            let chunk = per_chunk.min(out.len() / row_len);
            with_scratch(col_len, |col| {
                with_scratch(chunk * band * self.out_c, |sums| {
                    for (i, out) in out.chunks_mut(chunk * row_len).enumerate() {
                        let bands = out.len() / row_len;
                        let sums = &mut sums[..bands * band * self.out_c];
                        compute(first + i * chunk, bands, col, sums);
                        super::pool::max_pool_bands(sums, out, [ph, pw], pooled_w, self.out_c);
                    }
                })
            })
        };
        // every pooled pixel's channels are written by `pool::max_pool_bands`
        filled(rows * row_len, |output| {
            if output.is_empty() {
                return;
            }
            if threads > 1 && rows >= 2 && rows * band * patch * self.out_c >= PARALLEL_MACS {
                let per_task = rows.div_ceil(threads);
                output.par_chunks_mut(per_task * row_len).enumerate().for_each(|(t, out)| run(t * per_task, out));
            } else {
                run(0, output);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::conv::pack_hwio;
    use crate::engine::kernels::conv::tests::{reference, values};

    /// The fused max pool against the definition: the conv's sums, bias, activation, then the
    /// max over each window, for windows that do and do not divide the output (the floor-mode
    /// pool drops the rest), grouped and padded convs, bands split into several chunks and
    /// across threads.
    #[test]
    fn a_fused_max_pool_equals_the_pool_of_the_definition() {
        let cases = [
            // batch, in_h, in_w, in_c, out_c, kernel, strides, pad, groups, window
            (1, 28, 28, 1, 32, 3, 1, 0, 1, [2, 2]), // the MNIST CNN's first conv
            (3, 13, 13, 32, 64, 3, 1, 0, 1, [2, 2]), // its second: 11x11, the last row and column dropped
            (2, 9, 8, 6, 10, 3, 1, 1, 2, [3, 2]),
            (2, 11, 12, 3, 5, 3, 2, 1, 1, [1, 3]),
            (1, 3, 3, 2, 4, 3, 1, 0, 1, [2, 2]), // a 1x1 output: no whole window
            (40, 20, 20, 16, 24, 3, 1, 1, 1, [2, 2]), // several chunks per thread
            (2, 15, 14, 3, 32, 3, 2, 1, 1, [2, 3]), // an RGB stem: the narrow kernel too
        ];
        for (batch, in_h, in_w, in_c, out_c, k, s, pad, groups, window) in cases {
            let (out_h, out_w) = ((in_h + 2 * pad - k) / s + 1, (in_w + 2 * pad - k) / s + 1);
            let c = Conv2d { batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel: [k, k], strides: [s, s], dilations: [1, 1], pad_begin: [pad, pad], groups };
            let input = values(batch * in_h * in_w * in_c, 1.0);
            let w = values(k * k * (in_c / groups) * out_c, 2.0);
            let bias = values(out_c, 3.0);
            let sums = reference(&c, &input, &w, &bias);
            let (pooled_h, pooled_w) = (out_h / window[0], out_w / window[1]);
            let mut expected = vec![f32::NEG_INFINITY; batch * pooled_h * pooled_w * out_c];
            for n in 0..batch {
                for (y, x, m) in positions(pooled_h, pooled_w, out_c) {
                    let at = ((n * pooled_h + y) * pooled_w + x) * out_c + m;
                    for dy in 0..window[0] {
                        for dx in 0..window[1] {
                            let v = sums[((n * out_h + y * window[0] + dy) * out_w + x * window[1] + dx) * out_c + m].max(0.0);
                            expected[at] = expected[at].max(v);
                        }
                    }
                }
            }
            let packed = pack_hwio(&w, [k, k, in_c / groups, out_c], groups);
            let mut kernels = vec![("packed", Kernel::Packed(&packed))];
            if super::super::narrow::applies([k, k, in_c / groups, out_c], groups) {
                kernels.push(("narrow", Kernel::Narrow(&w)));
            }
            for ((name, kernel), threads) in kernels.into_iter().flat_map(|k| [(k, 1), (k, 2)]) {
                let got = c.run_max_pooled(&input, kernel, &bias, Some(Activation::Relu), window, threads);
                assert_eq!(got.len(), expected.len(), "case {c:?}");
                for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert!((g - e).abs() < 1e-5, "{name} case {c:?} window {window:?} threads {threads} at {i}: {g} vs {e}");
                }
            }
        }
    }

    /// Every `(y, x, m)` below the bounds, `m` fastest.
    fn positions(h: usize, w: usize, c: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        (0..h).flat_map(move |y| (0..w).flat_map(move |x| (0..c).map(move |m| (y, x, m))))
    }

}
