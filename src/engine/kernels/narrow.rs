//! Direct convolution for first layers: few input channels (a grey or RGB image) and a small
//! kernel, computed straight from the NHWC input with no im2col and no GEMM.
//!
//! Through im2col such a conv is a GEMM with k = kh * kw * in_c = 9 (the MNIST CNN's first
//! layer) or 27 (a 3x3 RGB stem): each micro-tile does 9 multiply-adds per output value and
//! then its whole epilogue, and im2col copies 3 floats at a time. It ran at 25 GFLOP/s, a
//! quarter of a core's FMA peak, and took more time than the network's second conv with 12x
//! its arithmetic. Here output channels sit in the vector lanes: each tap's weight row is
//! loaded once per tile and every input value is broadcast, so a tile of `PIXELS` pixels by
//! `VECTORS` vectors does 12 FMAs per 2 weight loads and 6 broadcasts, with bias as the
//! accumulators' starting value and ReLU applied in registers.
//!
//! SIMD without `unsafe`, through pulp, as the depthwise kernel.

use std::ops::Range;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::activation::{self, Activation};
use super::conv::Conv2d;
use super::output::filled;
use super::simd::dispatch;

/// Largest patch (`kh * kw * in_c`) this kernel takes. Past it the GEMM's micro-tiles amortise
/// their epilogue and run near peak (ResNet's 7x7 RGB stem, k = 147, at 87 GFLOP/s a core),
/// which a broadcast per input value cannot match.
const MAX_PATCH: usize = 32;

/// The register tile: 6 pixels x 2 vectors of channels, 12 accumulators, 2 weight vectors and a
/// broadcast input: 15 registers, inside AVX2's 16. Two vectors per pixel share each broadcast.
/// With AVX-512's 32 registers a 64-channel block takes 4 vectors (24 accumulators), so each
/// broadcast feeds 4 FMAs; at 2 vectors, 64 channels ran no faster than the GEMM.
const PIXELS: usize = 6;
const VECTORS: usize = 2;

/// Output channels must fill whole vectors at every instruction set (16 AVX-512 lanes).
const CHANNEL_MULTIPLE: usize = 16;

/// Most output channels: what the first layers of the models we serve have (MNIST CNN,
/// MobileNetV2 and Inception v3 32, SqueezeNet and the ResNets 64). Measured with
/// `conv::tests::timing`, one thread, against the GEMM: SqueezeNet's 3x3 stride-2 RGB stem
/// (64 channels) 654 -> 515 us at batch 1 and 13.1 -> 10.3 ms at batch 16; the 32-channel
/// stems 422 -> 259 us and 8.2 -> 5.1 ms; the MNIST CNN's first conv 15.1 -> 8.2 us.
const MAX_OUT_C: usize = 64;

/// Whether a conv with these HWIO weight dims and groups runs here.
pub(crate) fn applies([kh, kw, in_g, out_c]: [usize; 4], groups: usize) -> bool {
    groups == 1 && kh * kw * in_g <= MAX_PATCH && out_c > 0 && out_c <= MAX_OUT_C && out_c % CHANNEL_MULTIPLE == 0
}

/// One conv call over its NHWC input and HWIO weights.
pub(crate) struct Narrow<'a> {
    conv: &'a Conv2d,
    input: &'a [f32],
    weights: &'a [f32],
    bias: &'a [f32],
    act: Option<Activation>,
    /// Output columns whose every horizontal tap lands inside the image.
    interior: Range<usize>,
}

impl<'a> Narrow<'a> {
    pub(crate) fn new(conv: &'a Conv2d, input: &'a [f32], weights: &'a [f32], bias: &'a [f32], act: Option<Activation>) -> Self {
        let [kh, kw] = conv.kernel;
        assert!(applies([kh, kw, conv.in_c, conv.out_c], conv.groups), "{conv:?} is not a narrow conv");
        assert_eq!(weights.len(), kh * kw * conv.in_c * conv.out_c, "narrow conv weights");
        assert_eq!(bias.len(), conv.out_c, "narrow conv bias");
        assert_eq!(input.len(), conv.batch * conv.in_h * conv.in_w * conv.in_c, "narrow conv input");
        let full = |ow: &usize| conv.taps_x(*ow) == (0..kw);
        let start = (0..conv.out_w).find(full).unwrap_or(conv.out_w);
        let end = (start..conv.out_w).find(|ow| !full(ow)).unwrap_or(conv.out_w);
        Self { conv, input, weights, bias, act, interior: start..end }
    }

    /// The whole NHWC output, rows split across `threads`.
    pub(crate) fn run(&self, threads: usize) -> Vec<f32> {
        let c = self.conv;
        let row_len = c.out_w * c.out_c;
        let rows = c.batch * c.out_h;
        let macs = rows * row_len * c.kernel[0] * c.kernel[1] * c.in_c;
        let row = |(index, out): (usize, &mut [f32])| self.row(index / c.out_h, index % c.out_h, c.out_w, out);
        // every row's pixels are written by `row`
        filled(rows * row_len, |output| {
            if row_len == 0 {
            } else if threads > 1 && rows > 1 && macs >= super::conv::PARALLEL_MACS {
                output.par_chunks_mut(row_len).enumerate().for_each(row);
            } else {
                output.chunks_mut(row_len).enumerate().for_each(row);
            }
        })
    }

    /// Output pixels `0..span` of row `oh` of image `n` into `out` (`span * out_c` values),
    /// bias and activation included.
    pub(crate) fn row(&self, n: usize, oh: usize, span: usize, out: &mut [f32]) {
        dispatch(Row { k: self, n, oh, span, out });
        // ReLU is applied in registers; the other activations once the row is written
        if self.act != Some(Activation::Relu) {
            activation::apply(self.act, out);
        }
    }
}

struct Row<'k, 'a, 'o> {
    k: &'k Narrow<'a>,
    n: usize,
    oh: usize,
    span: usize,
    out: &'o mut [f32],
}

impl WithSimd for Row<'_, '_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let c = self.k.conv;
        let lanes = S::F32_LANES;
        let image_len = c.in_h * c.in_w * c.in_c;
        let image = &self.k.input[self.n * image_len..(self.n + 1) * image_len];
        let out = &mut self.out[..self.span * c.out_c];
        let tile = Tile { k: self.k, image, oh: self.oh, ky: c.taps_y(self.oh) };
        // channel blocks outside, pixels inside: a block's weights stay in L1 for the row
        let mut c0 = 0;
        // 32 registers (AVX-512): 4 vectors x 6 pixels, each broadcast feeding 4 FMAs
        while S::REGISTER_COUNT >= 32 && c0 + 2 * VECTORS * lanes <= c.out_c {
            tile.block::<S, { 2 * VECTORS }>(s, c0, self.span, out);
            c0 += 2 * VECTORS * lanes;
        }
        while c0 + VECTORS * lanes <= c.out_c {
            tile.block::<S, VECTORS>(s, c0, self.span, out);
            c0 += VECTORS * lanes;
        }
        while c0 < c.out_c {
            tile.block::<S, 1>(s, c0, self.span, out);
            c0 += lanes;
        }
    }
}

/// One output row's image, vertical taps and row index.
struct Tile<'k, 'a> {
    k: &'k Narrow<'a>,
    image: &'k [f32],
    oh: usize,
    ky: Range<usize>,
}

impl Tile<'_, '_> {
    /// Channels `c0..c0 + R * lanes` of pixels `0..span`.
    #[inline(always)]
    fn block<S: Simd, const R: usize>(&self, s: S, c0: usize, span: usize, out: &mut [f32]) {
        let interior = &self.k.interior;
        let mut ow = 0;
        while ow < span {
            if interior.contains(&ow) && ow + PIXELS <= interior.end.min(span) {
                self.tile::<S, PIXELS, R>(s, ow, 0..self.k.conv.kernel[1], c0, out);
                ow += PIXELS;
            } else {
                self.tile::<S, 1, R>(s, ow, self.k.conv.taps_x(ow), c0, out);
                ow += 1;
            }
        }
    }

    /// Pixels `ow..ow + P` over horizontal taps `kx` (all of them when `P > 1`).
    #[inline(always)]
    fn tile<S: Simd, const P: usize, const R: usize>(&self, s: S, ow: usize, kx: Range<usize>, c0: usize, out: &mut [f32]) {
        let c = self.k.conv;
        let (ic, oc, kw) = (c.in_c, c.out_c, c.kernel[1]);
        let (row_len, pixel_step, tap_step) = (c.in_w * ic, c.strides[1] * ic, c.dilations[1] * ic);
        let (taps, first_tap) = (kx.len(), kx.start);
        if taps == 0 {
            let bias = load::<S, R>(&self.k.bias[c0..]);
            return store::<S, P, R>(s, &[bias; P], &mut out[ow * oc + c0..], oc, self.k.act == Some(Activation::Relu));
        }
        // from tap `first_tap` of pixel `ow` to the last input value of pixel `ow + P - 1`
        let at = (ow * c.strides[1] + first_tap * c.dilations[1] - c.pad_begin[1]) * ic;
        let len = (P - 1) * pixel_step + (taps - 1) * tap_step + ic;
        let mut acc = [load::<S, R>(&self.k.bias[c0..]); P];
        for ky in self.ky.clone() {
            let iy = self.oh * c.strides[0] + ky * c.dilations[0] - c.pad_begin[0];
            let window = &self.image[iy * row_len + at..iy * row_len + at + len];
            let weights = &self.k.weights[((ky * kw + first_tap) * ic) * oc..((ky * kw + first_tap + taps) * ic) * oc];
            for t in 0..taps {
                for ci in 0..ic {
                    let w = load::<S, R>(&weights[(t * ic + ci) * oc + c0..]);
                    let x = t * tap_step + ci;
                    for (p, acc) in acc.iter_mut().enumerate() {
                        let v = s.splat_f32s(window[x + p * pixel_step]);
                        for (a, w) in acc.iter_mut().zip(w) {
                            *a = s.mul_add_e_f32s(v, w, *a);
                        }
                    }
                }
            }
        }
        store::<S, P, R>(s, &acc, &mut out[ow * oc + c0..], oc, self.k.act == Some(Activation::Relu));
    }
}

/// Pixel `p`'s accumulators to `out[p * pixel_len..]`, through ReLU if `relu`
/// (`x > 0 ? x : 0`, so NaN becomes 0 as in the other kernels).
#[inline(always)]
fn store<S: Simd, const P: usize, const R: usize>(s: S, acc: &[[S::f32s; R]; P], out: &mut [f32], pixel_len: usize, relu: bool) {
    let zero = s.splat_f32s(0.0);
    for (p, acc) in acc.iter().enumerate() {
        let (dst, _) = S::as_mut_simd_f32s(&mut out[p * pixel_len..p * pixel_len + R * S::F32_LANES]);
        for (d, &a) in dst.iter_mut().zip(acc) {
            *d = if relu { s.select_f32s(s.greater_than_f32s(a, zero), a, zero) } else { a };
        }
    }
}

#[inline(always)]
fn load<S: Simd, const R: usize>(from: &[f32]) -> [S::f32s; R] {
    let (v, _) = S::as_simd_f32s(&from[..R * S::F32_LANES]);
    std::array::from_fn(|r| v[r])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::conv::tests::{reference, values};

    type Exec = Box<dyn Fn(Row<'_, '_, '_>)>;

    /// Every instruction set this CPU runs, scalar code included.
    fn levels() -> Vec<(&'static str, Exec)> {
        let mut out: Vec<(&'static str, Exec)> = vec![("scalar", Box::new(|row: Row<'_, '_, '_>| row.with_simd(pulp::Scalar::new())))];
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            out.push(("avx2", Box::new(move |row: Row<'_, '_, '_>| Simd::vectorize(simd, row))));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            out.push(("avx512", Box::new(move |row: Row<'_, '_, '_>| Simd::vectorize(simd, row))));
        }
        out
    }

    #[test]
    fn direct_sums_match_the_definition_at_every_padding_stride_and_width() {
        let cases = [
            // batch, in_h, in_w, in_c, out_c, kernel, strides, dilations, pad
            (2, 28, 28, 1, 32, [3, 3], [1, 1], [1, 1], [0, 0]), // the MNIST CNN's first conv
            (1, 17, 19, 3, 64, [3, 3], [2, 2], [1, 1], [1, 1]), // an RGB stem, padded, odd sizes
            (1, 9, 8, 3, 48, [3, 3], [2, 2], [1, 1], [1, 1]), // a 2-vector and a 1-vector block
            (3, 9, 11, 2, 16, [3, 2], [1, 2], [2, 1], [2, 1]), // dilated, uneven strides, one block
            (1, 5, 4, 4, 16, [2, 2], [1, 1], [1, 1], [1, 1]), // narrower than a tile
            (2, 12, 40, 1, 32, [5, 5], [1, 1], [1, 1], [2, 2]), // interior tiles and edge pixels
        ];
        for (batch, in_h, in_w, in_c, out_c, kernel, strides, dilations, pad_begin) in cases {
            let out_h = (in_h + 2 * pad_begin[0] - (dilations[0] * (kernel[0] - 1) + 1)) / strides[0] + 1;
            let out_w = (in_w + 2 * pad_begin[1] - (dilations[1] * (kernel[1] - 1) + 1)) / strides[1] + 1;
            let c = Conv2d { batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel, strides, dilations, pad_begin, groups: 1 };
            let input = values(batch * in_h * in_w * in_c, 1.0);
            let w = values(kernel[0] * kernel[1] * in_c * out_c, 2.0);
            let bias = values(out_c, 3.0);
            let expected = reference(&c, &input, &w, &bias);
            let check = |got: &[f32], how: &str| {
                assert_eq!(got.len(), expected.len());
                for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert!((g - e.max(0.0)).abs() < 1e-5, "case {c:?} {how} at {i}: {g} vs {e}");
                }
            };
            let k = Narrow::new(&c, &input, &w, &bias, Some(Activation::Relu));
            for threads in [1, 2] {
                check(&k.run(threads), &format!("{threads} threads"));
            }
            for (level, exec) in levels() {
                let mut got = vec![0.0; expected.len()];
                for (i, out) in got.chunks_mut(c.out_w * c.out_c).enumerate() {
                    exec(Row { k: &k, n: i / c.out_h, oh: i % c.out_h, span: c.out_w, out });
                }
                check(&got, level);
            }
        }
    }
}
