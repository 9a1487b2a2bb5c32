//! Direct max and average pooling over NHWC input.
//!
//! With channels innermost, every window tap is one contiguous run of `C` values, so the
//! reduction is an elementwise max/add over slices that the compiler vectorises; no im2col, no
//! index tensors.

use rayon::prelude::*;

/// Geometry of one pooling call, resolved for a concrete input size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool2d {
    pub(crate) batch: usize,
    pub(crate) in_h: usize,
    pub(crate) in_w: usize,
    pub(crate) channels: usize,
    pub(crate) out_h: usize,
    pub(crate) out_w: usize,
    pub(crate) kernel: [usize; 2],
    pub(crate) strides: [usize; 2],
    pub(crate) dilations: [usize; 2],
    pub(crate) pad_begin: [usize; 2],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reduce {
    Max,
    /// `count_include_pad`: divide by the kernel size instead of by the taps that hit real
    /// pixels.
    Average { count_include_pad: bool },
}

impl Pool2d {
    pub(crate) fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.channels
    }

    pub(crate) fn run(&self, input: &[f32], reduce: Reduce, threads: usize) -> Vec<f32> {
        let row_len = self.out_w * self.channels;
        if row_len == 0 {
            return vec![0.0; self.output_len()];
        }
        let rows = self.batch * self.out_h;
        let run_row = |(index, out): (usize, &mut [f32])| {
            let (n, oh) = (index / self.out_h, index % self.out_h);
            super::simd::dispatch(PoolRow { pool: self, input, n, oh, reduce, out });
        };
        // the work is the taps read, not the values written: SqueezeNet's first 3x3 max pool
        // writes 194K values but reads 1.7M, half of a millisecond on one thread
        let taps = rows * row_len * self.kernel[0] * self.kernel[1];
        // `window` writes every pixel's channels, padding-only windows included
        super::output::filled(self.output_len(), |output| {
            if threads > 1 && taps >= super::movement::PARALLEL_ELEMENTS {
                output.par_chunks_mut(row_len).enumerate().for_each(run_row);
            } else {
                output.chunks_mut(row_len).enumerate().for_each(run_row);
            }
        })
    }

    /// Kernel offsets `lo..hi` along axis `a` whose input index lands inside the image.
    fn taps(&self, o: usize, a: usize, size: usize) -> (usize, usize) {
        let (k, s, d) = (self.kernel[a] as isize, self.strides[a] as isize, self.dilations[a] as isize);
        let start = o as isize * s - self.pad_begin[a] as isize;
        let lo = if start < 0 { (-start + d - 1) / d } else { 0 };
        let hi = if start >= size as isize { 0 } else { (size as isize - start + d - 1) / d };
        (lo.min(k) as usize, hi.clamp(lo, k) as usize)
    }

    /// One output pixel, tap by tap: the reference [`PoolRow`] is tested against.
    #[cfg(test)]
    fn window(&self, input: &[f32], n: usize, oh: usize, ow: usize, reduce: Reduce, dst: &mut [f32]) {
        let c = self.channels;
        let image = &input[n * self.in_h * self.in_w * c..];
        let (ky_lo, ky_hi) = self.taps(oh, 0, self.in_h);
        let (kx_lo, kx_hi) = self.taps(ow, 1, self.in_w);
        let y0 = (oh * self.strides[0]) as isize - self.pad_begin[0] as isize;
        let x0 = (ow * self.strides[1]) as isize - self.pad_begin[1] as isize;
        let mut first = true;
        for ky in ky_lo..ky_hi {
            let iy = (y0 + (ky * self.dilations[0]) as isize) as usize;
            for kx in kx_lo..kx_hi {
                let ix = (x0 + (kx * self.dilations[1]) as isize) as usize;
                let at = (iy * self.in_w + ix) * c;
                let src = &image[at..at + c];
                if first {
                    dst.copy_from_slice(src);
                    first = false;
                } else {
                    fold_run(reduce, dst, src);
                }
            }
        }
        match reduce {
            // a window entirely in the padding has no value; ONNX leaves it at the lowest float
            Reduce::Max if first => dst.fill(f32::NEG_INFINITY),
            Reduce::Max => {}
            Reduce::Average { count_include_pad } => {
                let taps = (ky_hi - ky_lo) * (kx_hi - kx_lo);
                // with pads counted, every window divides by the full kernel, even one that
                // ceil_mode lets hang past the padding (onnxruntime's reading of the spec)
                let count = if count_include_pad { self.kernel[0] * self.kernel[1] } else { taps };
                if first {
                    dst.fill(0.0);
                }
                let scale = if count == 0 { 0.0 } else { 1.0 / count as f32 };
                dst.iter_mut().for_each(|d| *d *= scale);
            }
        }
    }
}

/// One output row of a [`Pool2d`], through pulp: the crate is built for baseline x86-64, where
/// the per-tap loops compiled to 4-lane SSE. Each output vector folds its window's taps in
/// registers, in [`Pool2d::window`]'s order and with its comparison and rounding, so the two
/// agree exactly (NaNs included); `window` stays as the reference the tests hold this to.
struct PoolRow<'a> {
    pool: &'a Pool2d,
    input: &'a [f32],
    n: usize,
    oh: usize,
    reduce: Reduce,
    out: &'a mut [f32],
}

impl pulp::WithSimd for PoolRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        match self.reduce {
            Reduce::Max => self.row::<S, true>(s),
            Reduce::Average { .. } => self.row::<S, false>(s),
        }
    }
}

impl PoolRow<'_> {
    #[inline(always)]
    fn row<S: pulp::Simd, const MAX: bool>(self, s: S) {
        let p = self.pool;
        let (c, lanes) = (p.channels, S::F32_LANES);
        let image = &self.input[self.n * p.in_h * p.in_w * c..(self.n + 1) * p.in_h * p.in_w * c];
        let (ky_lo, ky_hi) = p.taps(self.oh, 0, p.in_h);
        let y0 = (self.oh * p.strides[0]) as isize - p.pad_begin[0] as isize;
        let mut offsets = Vec::with_capacity((ky_hi - ky_lo) * p.kernel[1]);
        for (ow, dst) in self.out.chunks_exact_mut(c).enumerate() {
            let (kx_lo, kx_hi) = p.taps(ow, 1, p.in_w);
            let x0 = (ow * p.strides[1]) as isize - p.pad_begin[1] as isize;
            let taps = (ky_hi - ky_lo) * (kx_hi - kx_lo);
            if taps == 0 {
                // a window entirely in the padding: the lowest float for max, 0 for average
                dst.fill(if MAX { f32::NEG_INFINITY } else { 0.0 });
                continue;
            }
            let scale = match self.reduce {
                Reduce::Average { count_include_pad: true } => 1.0 / (p.kernel[0] * p.kernel[1]) as f32,
                _ => 1.0 / taps as f32,
            };
            // input offsets of the window's inside taps, row-major
            offsets.clear();
            for ky in ky_lo..ky_hi {
                let iy = (y0 + (ky * p.dilations[0]) as isize) as usize;
                offsets.extend((kx_lo..kx_hi).map(|kx| (iy * p.in_w + (x0 + (kx * p.dilations[1]) as isize) as usize) * c));
            }
            let at = |t: usize| offsets[t];
            let mut i = 0;
            while i + lanes <= c {
                let load = |t: usize| S::as_simd_f32s(&image[at(t) + i..at(t) + i + lanes]).0[0];
                let mut acc = load(0);
                for t in 1..taps {
                    let v = load(t);
                    acc = if MAX { s.select_f32s(s.greater_than_f32s(v, acc), v, acc) } else { s.add_f32s(acc, v) };
                }
                if !MAX {
                    acc = s.mul_f32s(acc, s.splat_f32s(scale));
                }
                S::as_mut_simd_f32s(&mut dst[i..i + lanes]).0[0] = acc;
                i += lanes;
            }
            for (j, d) in dst.iter_mut().enumerate().skip(i) {
                let mut acc = image[at(0) + j];
                for t in 1..taps {
                    let v = image[at(t) + j];
                    acc = if MAX { if v > acc { v } else { acc } } else { acc + v };
                }
                *d = if MAX { acc } else { acc * scale };
            }
        }
    }
}

/// Folds one run of channels into the accumulator row: elementwise max, or sum for averages
/// (divided by the count once the window is done). The match is per run, outside the loop, so
/// each arm vectorises.
fn fold_run(reduce: Reduce, acc: &mut [f32], run: &[f32]) {
    match reduce {
        Reduce::Max => acc.iter_mut().zip(run).for_each(|(a, &v)| *a = if v > *a { v } else { *a }),
        Reduce::Average { .. } => acc.iter_mut().zip(run).for_each(|(a, &v)| *a += v),
    }
}

/// Max over each window of `sums` into `out`: `sums` is bands of `window[0]` rows of
/// `pooled_w * window[1]` NHWC pixels (a conv's output under one row of side-by-side windows),
/// `out` one pooled row per band. Taps fold in [`Pool2d`]'s order and with its comparison (a
/// later tap wins only if it is greater), so a pool fused into a conv gives the values, NaNs
/// included, of the two ops apart. Through pulp: the crate is built for baseline x86-64, where
/// the elementwise loop compiles to 4-lane SSE.
pub(super) fn max_pool_bands(sums: &[f32], out: &mut [f32], window: [usize; 2], pooled_w: usize, channels: usize) {
    super::simd::dispatch(MaxPoolBands { sums, out, window, pooled_w, channels });
}

struct MaxPoolBands<'a> {
    sums: &'a [f32],
    out: &'a mut [f32],
    window: [usize; 2],
    pooled_w: usize,
    channels: usize,
}

impl pulp::WithSimd for MaxPoolBands<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let ([ph, pw], channels) = (self.window, self.channels);
        let span = self.pooled_w * pw * channels;
        for (band, out) in self.sums.chunks_exact(ph * span).zip(self.out.chunks_exact_mut(self.pooled_w * channels)) {
            for (px, dst) in out.chunks_exact_mut(channels).enumerate() {
                // tap t of this window starts at taps[t]; each output vector folds all taps
                // in registers (a masked store per tap, reloaded by the next, stalled)
                let at = px * pw * channels;
                let tap = |t: usize| &band[(t / pw) * span + at + (t % pw) * channels..][..channels];
                let (dst_head, dst_tail) = S::as_mut_simd_f32s(dst);
                let lanes = S::F32_LANES;
                for (i, d) in dst_head.iter_mut().enumerate() {
                    let mut m = S::as_simd_f32s(&tap(0)[i * lanes..(i + 1) * lanes]).0[0];
                    for t in 1..ph * pw {
                        let v = S::as_simd_f32s(&tap(t)[i * lanes..(i + 1) * lanes]).0[0];
                        m = s.select_f32s(s.greater_than_f32s(v, m), v, m);
                    }
                    *d = m;
                }
                let done = dst_head.len() * lanes;
                for (c, d) in dst_tail.iter_mut().enumerate() {
                    let mut m = tap(0)[done + c];
                    for t in 1..ph * pw {
                        let v = tap(t)[done + c];
                        m = if v > m { v } else { m };
                    }
                    *d = m;
                }
            }
        }
    }
}

/// Global average or max pooling of NHWC `input` (`batch` images of `pixels` pixels of
/// `channels` values) to `batch x channels`. Each pixel's channels are one run, so the reduction
/// is a vector add or max of every run into one accumulator row, in pixel order. candle's
/// reduction over the middle axis of `[n, h*w, c]` walked it with strided indices: 0.6 ms for
/// SqueezeNet's 13x13x1000 head, a twentieth of the network.
pub(crate) fn global_pool(input: &[f32], batch: usize, pixels: usize, channels: usize, reduce: Reduce) -> Vec<f32> {
    assert_eq!(input.len(), batch * pixels * channels, "global pool input is not {batch} x {pixels} x {channels}");
    let mut out = vec![0.0f32; batch * channels];
    if channels == 0 {
        return out;
    }
    for (n, acc) in out.chunks_exact_mut(channels).enumerate() {
        let image = &input[n * pixels * channels..(n + 1) * pixels * channels];
        let mut rows = image.chunks_exact(channels);
        match rows.next() {
            Some(first) => acc.copy_from_slice(first),
            // no pixels: the max of nothing is the lowest float; the average is 0 / 0
            None if reduce == Reduce::Max => acc.fill(f32::NEG_INFINITY),
            None => {}
        }
        rows.for_each(|px| fold_run(reduce, acc, px));
        if let Reduce::Average { .. } = reduce {
            // candle's and onnxruntime's order: the sum, then times 1 / count
            let scale = (1.0 / pixels as f64) as f32;
            acc.iter_mut().for_each(|a| *a *= scale);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_average_over_channel_runs() {
        // 1 image, 3x3, 2 channels; channel 1 = -channel 0
        let input: Vec<f32> = (0..9).flat_map(|i| [i as f32, -(i as f32)]).collect();
        let p = Pool2d {
            batch: 1, in_h: 3, in_w: 3, channels: 2, out_h: 2, out_w: 2,
            kernel: [2, 2], strides: [1, 1], dilations: [1, 1], pad_begin: [0, 0],
        };
        assert_eq!(p.run(&input, Reduce::Max, 1), vec![4.0, -0.0, 5.0, -1.0, 7.0, -3.0, 8.0, -4.0]);
        let avg = p.run(&input, Reduce::Average { count_include_pad: false }, 2);
        assert_eq!(avg, vec![2.0, -2.0, 3.0, -3.0, 5.0, -5.0, 6.0, -6.0]);
        // padding 1 on every side, 3x3 window, stride 2: corners see 4 real pixels of 9 taps
        let padded = Pool2d { out_h: 2, out_w: 2, kernel: [3, 3], strides: [2, 2], pad_begin: [1, 1], ..p };
        let excl = padded.run(&input, Reduce::Average { count_include_pad: false }, 1);
        let incl = padded.run(&input, Reduce::Average { count_include_pad: true }, 1);
        assert_eq!(excl[0], (0.0 + 1.0 + 3.0 + 4.0) / 4.0);
        assert_eq!(incl[0], (0.0 + 1.0 + 3.0 + 4.0) / 9.0);
        assert_eq!(padded.run(&input, Reduce::Max, 1)[0], 4.0);
    }

    /// The vector rows against the per-pixel reference, bit for bit: channel counts with and
    /// without a tail, padding (windows partly and wholly outside), dilation, NaN and infinite
    /// inputs, max and both averages, on every split.
    #[test]
    fn vector_rows_equal_the_per_pixel_reference() {
        for (channels, k, stride, pad, dilation) in [(19, 3, 2, 1, 1), (32, 2, 2, 0, 1), (64, 3, 1, 1, 2), (5, 3, 1, 2, 1)] {
            let (batch, in_h, in_w) = (2, 7, 6);
            let out = |size: usize| (size + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
            let p = Pool2d {
                batch, in_h, in_w, channels, out_h: out(in_h), out_w: out(in_w),
                kernel: [k, k], strides: [stride, stride], dilations: [dilation, dilation], pad_begin: [pad, pad],
            };
            let mut input: Vec<f32> = (0..batch * in_h * in_w * channels).map(|i| ((i as f32) * 0.61).sin()).collect();
            input[5] = f32::NAN;
            input[channels * 3 + 1] = f32::INFINITY;
            input[channels * 8 + 2] = f32::NAN;
            for reduce in [Reduce::Max, Reduce::Average { count_include_pad: false }, Reduce::Average { count_include_pad: true }] {
                let mut want = vec![0.0; p.output_len()];
                for (i, dst) in want.chunks_exact_mut(channels).enumerate() {
                    let (n, rest) = (i / (p.out_h * p.out_w), i % (p.out_h * p.out_w));
                    p.window(&input, n, rest / p.out_w, rest % p.out_w, reduce, dst);
                }
                for threads in [1, 2] {
                    let got = p.run(&input, reduce, threads);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{reduce:?} {p:?} at {i}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn global_pools_reduce_each_channel_over_the_pixels() {
        // 2 images, 3 pixels, 2 channels: channel 1 = -channel 0
        let input: Vec<f32> = (0..6).flat_map(|i| [i as f32, -(i as f32)]).collect();
        assert_eq!(global_pool(&input, 2, 3, 2, Reduce::Max), vec![2.0, -0.0, 5.0, -3.0]);
        assert_eq!(global_pool(&input, 2, 3, 2, Reduce::Average { count_include_pad: false }), vec![1.0, -1.0, 4.0, -4.0]);
        assert_eq!(global_pool(&[], 1, 0, 2, Reduce::Max), vec![f32::NEG_INFINITY; 2]);
        assert!(global_pool(&[], 1, 0, 2, Reduce::Average { count_include_pad: false }).iter().all(|v| v.is_nan()));
    }
}
