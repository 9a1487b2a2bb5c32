//! 2-D convolution over NHWC input with HWIO weights, as one GEMM per chunk of output pixels.
//!
//! In NHWC a pixel's input channels are contiguous, so building the im2col rows is a handful of
//! `copy_from_slice` calls per pixel, and the GEMM result rows are already NHWC output pixels:
//! no transpose on either side. Chunks of rows keep the im2col buffer in L2 and are the unit of
//! parallel work, so batch 64 splits across threads while batch 1 stays on one.

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::gemm::{MatRef, sgemm};

/// Geometry of one convolution call, resolved for a concrete input size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2d {
    pub(crate) batch: usize,
    pub(crate) in_h: usize,
    pub(crate) in_w: usize,
    pub(crate) in_c: usize,
    pub(crate) out_h: usize,
    pub(crate) out_w: usize,
    pub(crate) out_c: usize,
    pub(crate) kernel: [usize; 2],
    pub(crate) strides: [usize; 2],
    pub(crate) dilations: [usize; 2],
    /// Padding before the first row and column (the end padding only shapes `out_h`/`out_w`).
    pub(crate) pad_begin: [usize; 2],
    pub(crate) groups: usize,
}

/// Floats of im2col buffer per chunk: about 128 KiB, well inside L2.
const CHUNK_FLOATS: usize = 32 * 1024;

/// Multiply-adds below which a conv runs on the calling thread (batch-1 MNIST conv2 is 2.2M).
const PARALLEL_MACS: usize = 4 << 20;

impl Conv2d {
    fn patch_len(&self) -> usize {
        self.kernel[0] * self.kernel[1] * (self.in_c / self.groups)
    }

    /// 1x1, stride 1, no padding, one group: the input rows already are the im2col rows.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.strides == [1, 1] && self.pad_begin == [0, 0] && self.groups == 1
    }

    #[cfg(test)]
    fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }

    /// `input` is NHWC, `weights` HWIO (`[kh, kw, in_c / groups, out_c]`), `bias` has `out_c`
    /// values. Returns the NHWC output.
    pub(crate) fn run(&self, input: &[f32], weights: &[f32], bias: &[f32], act: Option<Activation>, threads: usize) -> Vec<f32> {
        if self.groups > 1 && self.groups == self.in_c {
            return super::depthwise::depthwise(self, input, weights, bias, act, threads);
        }
        self.run_im2col(input, weights, bias, act, threads)
    }

    /// Any grouping as im2col + one GEMM per group (depthwise convs took this path before
    /// their direct kernel; its timing test still compares the two).
    pub(super) fn run_im2col(&self, input: &[f32], weights: &[f32], bias: &[f32], act: Option<Activation>, threads: usize) -> Vec<f32> {
        let pixels = self.batch * self.out_h * self.out_w;
        let patch = self.patch_len();
        if pixels == 0 || self.out_c == 0 {
            return vec![0.0; pixels * self.out_c];
        }
        // zeroed by the allocator (fresh pages for large outputs), overwritten by the GEMMs
        let mut output = vec![0.0f32; pixels * self.out_c];
        let mut rows_per_chunk = (CHUNK_FLOATS / patch.max(1)).clamp(16, 4096).min(pixels);
        // waking the pool costs tens of microseconds: only worth it for a few million MACs
        let threads = if pixels * patch * self.out_c >= PARALLEL_MACS { threads } else { 1 };
        if threads > 1 && pixels >= 64 {
            // at least one chunk per thread, so small batches still use every core
            rows_per_chunk = rows_per_chunk.min(pixels.div_ceil(threads));
        }
        let in_g = self.in_c / self.groups;
        let out_g = self.out_c / self.groups;
        // Few channels per tap make pixel-major rows a scatter of tiny copies; tap-major columns
        // are long runs along the output row instead, and the GEMM reads them transposed.
        let tap_major = in_g < 16;
        let run_chunk = |col: &mut Vec<f32>, (index, out): (usize, &mut [f32])| {
            let first = index * rows_per_chunk;
            let rows = out.len() / self.out_c;
            if self.is_pointwise() {
                let a = MatRef::row_major(&input[first * self.in_c..(first + rows) * self.in_c], rows, self.in_c);
                sgemm(a, MatRef::row_major(weights, self.in_c, self.out_c), out, self.out_c, false, 1);
            } else {
                col.resize(rows * patch, 0.0);
                for g in 0..self.groups {
                    let a = if tap_major {
                        self.im2col_tap_major(input, first, rows, g * in_g, in_g, col);
                        MatRef { data: col, rows, cols: patch, row_stride: 1, col_stride: rows }
                    } else {
                        self.im2col(input, first, rows, g * in_g, in_g, col);
                        MatRef::row_major(col, rows, patch)
                    };
                    // weights for group g: columns g*out_g.. of the [patch, out_c] matrix
                    let b = MatRef { data: &weights[g * out_g..], rows: patch, cols: out_g, row_stride: self.out_c, col_stride: 1 };
                    sgemm(a, b, &mut out[g * out_g..], self.out_c, false, 1);
                }
            }
            activation::bias_then(act, bias, out);
        };
        let chunk_len = rows_per_chunk * self.out_c;
        if threads > 1 && pixels > rows_per_chunk {
            output.par_chunks_mut(chunk_len).enumerate().for_each_init(Vec::new, |col, c| run_chunk(col, c));
        } else {
            let mut col = Vec::new();
            output.chunks_mut(chunk_len).enumerate().for_each(|c| run_chunk(&mut col, c));
        }
        output
    }

    /// Writes im2col rows for output pixels `first..first + rows` (flattened over N, OH, OW),
    /// reading channels `c0..c0 + channels`; taps that fall into padding are zero.
    fn im2col(&self, input: &[f32], first: usize, rows: usize, c0: usize, channels: usize, col: &mut [f32]) {
        let [kh, kw] = self.kernel;
        let patch = kh * kw * channels;
        let per_image = self.out_h * self.out_w;
        // with unit dilation and every channel, a kernel row inside the image is one run
        let whole_rows = self.dilations[1] == 1 && channels == self.in_c;
        for (r, dst) in col.chunks_exact_mut(patch).take(rows).enumerate() {
            let pixel = first + r;
            let (n, rem) = (pixel / per_image, pixel % per_image);
            let (oh, ow) = (rem / self.out_w, rem % self.out_w);
            let image = &input[n * self.in_h * self.in_w * self.in_c..];
            let x0 = (ow * self.strides[1]) as isize - self.pad_begin[1] as isize;
            let inside_x = x0 >= 0 && x0 as usize + (kw - 1) * self.dilations[1] < self.in_w;
            for ky in 0..kh {
                let iy = (oh * self.strides[0] + ky * self.dilations[0]) as isize - self.pad_begin[0] as isize;
                let taps = &mut dst[ky * kw * channels..(ky + 1) * kw * channels];
                if iy < 0 || iy as usize >= self.in_h {
                    taps.fill(0.0);
                    continue;
                }
                let row = &image[iy as usize * self.in_w * self.in_c..];
                if whole_rows && inside_x {
                    let at = x0 as usize * self.in_c;
                    taps.copy_from_slice(&row[at..at + kw * channels]);
                    continue;
                }
                for (kx, tap) in taps.chunks_exact_mut(channels).enumerate() {
                    let ix = x0 + (kx * self.dilations[1]) as isize;
                    if ix < 0 || ix as usize >= self.in_w {
                        tap.fill(0.0);
                    } else {
                        let at = ix as usize * self.in_c + c0;
                        tap.copy_from_slice(&row[at..at + channels]);
                    }
                }
            }
        }
    }

    /// The same patches stored tap-major: `col[tap * rows + r]`. Each tap is filled along runs
    /// of one output row, which for unit stride reads consecutive input pixels.
    fn im2col_tap_major(&self, input: &[f32], first: usize, rows: usize, c0: usize, channels: usize, col: &mut [f32]) {
        let [_, kw] = self.kernel;
        let per_image = self.out_h * self.out_w;
        for (tap, dst) in col.chunks_exact_mut(rows).enumerate() {
            let ci = tap % channels;
            let kx = (tap / channels) % kw;
            let ky = tap / (channels * kw);
            let mut r = 0;
            while r < rows {
                let pixel = first + r;
                let (n, rem) = (pixel / per_image, pixel % per_image);
                let (oh, ow0) = (rem / self.out_w, rem % self.out_w);
                let run = (self.out_w - ow0).min(rows - r);
                let seg = &mut dst[r..r + run];
                r += run;
                let iy = (oh * self.strides[0] + ky * self.dilations[0]) as isize - self.pad_begin[0] as isize;
                if iy < 0 || iy as usize >= self.in_h {
                    seg.fill(0.0);
                    continue;
                }
                let base = ((n * self.in_h + iy as usize) * self.in_w) * self.in_c + c0 + ci;
                // input column of seg[j] is first + j * stride; keep the j that land inside
                let stride = self.strides[1] as isize;
                let first_x = (ow0 * self.strides[1] + kx * self.dilations[1]) as isize - self.pad_begin[1] as isize;
                let lo = if first_x >= 0 { 0 } else { ((-first_x + stride - 1) / stride) as usize }.min(run);
                let hi = if first_x >= self.in_w as isize {
                    0
                } else {
                    ((self.in_w as isize - first_x + stride - 1) / stride) as usize
                }
                .clamp(lo, run);
                seg[..lo].fill(0.0);
                seg[hi..].fill(0.0);
                if hi > lo {
                    let start = base + (first_x + lo as isize * stride) as usize * self.in_c;
                    let step = self.strides[1] * self.in_c;
                    let inside = &mut seg[lo..hi];
                    if step == 1 {
                        inside.copy_from_slice(&input[start..start + inside.len()]);
                    } else {
                        let src = input[start..].iter().step_by(step);
                        inside.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition of convolution, NHWC/HWIO, for checking the GEMM formulation.
    fn reference(c: &Conv2d, input: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let (in_g, out_g) = (c.in_c / c.groups, c.out_c / c.groups);
        let mut out = vec![0.0; c.output_len()];
        for n in 0..c.batch {
            for oh in 0..c.out_h {
                for ow in 0..c.out_w {
                    for m in 0..c.out_c {
                        let g = m / out_g;
                        let mut acc = bias[m];
                        for ky in 0..c.kernel[0] {
                            for kx in 0..c.kernel[1] {
                                let iy = (oh * c.strides[0] + ky * c.dilations[0]) as isize - c.pad_begin[0] as isize;
                                let ix = (ow * c.strides[1] + kx * c.dilations[1]) as isize - c.pad_begin[1] as isize;
                                if iy < 0 || ix < 0 || iy as usize >= c.in_h || ix as usize >= c.in_w {
                                    continue;
                                }
                                for ci in 0..in_g {
                                    let x = input[((n * c.in_h + iy as usize) * c.in_w + ix as usize) * c.in_c + g * in_g + ci];
                                    let wv = w[((ky * c.kernel[1] + kx) * in_g + ci) * c.out_c + m];
                                    acc += x * wv;
                                }
                            }
                        }
                        out[((n * c.out_h + oh) * c.out_w + ow) * c.out_c + m] = acc;
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    #[test]
    fn gemm_formulation_matches_the_definition() {
        let cases = [
            // batch, in_h, in_w, in_c, out_c, kernel, strides, dilations, pad, groups
            (2, 7, 6, 3, 4, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            (3, 9, 9, 4, 6, [3, 2], [2, 1], [1, 2], [0, 1], 2),
            (1, 5, 5, 4, 4, [3, 3], [1, 1], [1, 1], [1, 1], 4), // depthwise
            (4, 6, 5, 8, 5, [1, 1], [1, 1], [1, 1], [0, 0], 1), // pointwise
            (70, 6, 6, 1, 3, [3, 3], [1, 1], [1, 1], [0, 0], 1), // several chunks
            (2, 8, 9, 3, 5, [3, 3], [2, 2], [1, 1], [1, 1], 1), // tap-major, strided and padded
            (8, 20, 20, 16, 32, [3, 3], [1, 1], [1, 1], [1, 1], 1), // large enough to split across threads
            (2, 8, 9, 2, 5, [3, 3], [1, 3], [2, 2], [2, 2], 1), // tap-major, dilated, wide stride
            (3, 7, 7, 32, 8, [3, 3], [1, 1], [1, 1], [1, 1], 1), // pixel-major, whole kernel rows
            (2, 7, 7, 32, 4, [3, 3], [2, 2], [1, 2], [1, 0], 2), // pixel-major, per tap
        ];
        for (batch, in_h, in_w, in_c, out_c, kernel, strides, dilations, pad_begin, groups) in cases {
            let out_h = (in_h + 2 * pad_begin[0] - (dilations[0] * (kernel[0] - 1) + 1)) / strides[0] + 1;
            let out_w = (in_w + 2 * pad_begin[1] - (dilations[1] * (kernel[1] - 1) + 1)) / strides[1] + 1;
            let c = Conv2d { batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel, strides, dilations, pad_begin, groups };
            let input = values(batch * in_h * in_w * in_c, 1.0);
            let w = values(kernel[0] * kernel[1] * (in_c / groups) * out_c, 2.0);
            let bias = values(out_c, 3.0);
            let expected = reference(&c, &input, &w, &bias);
            for threads in [1, 2] {
                let got = c.run(&input, &w, &bias, Some(Activation::Relu), threads);
                for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert!((g - e.max(0.0)).abs() < 1e-5, "case {c:?} threads {threads} at {i}: {g} vs {e}");
                }
            }
        }
    }
}
