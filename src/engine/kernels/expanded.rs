//! A depthwise conv over the output of a 1x1 conv that is never stored whole: the expansion
//! and depthwise halves of a MobileNet inverted-residual block (`passes/expand.rs`).
//!
//! Each thread takes a contiguous share of output rows and walks it in bands. For a band it
//! runs the 1x1 conv (a GEMM over whole input rows) for the expanded rows the band's taps
//! reach, into a buffer sized to stay in L2, then the depthwise kernel over that buffer. The
//! rows the next band shares with this one (the kernel's overlap, two rows of a 3x3 stride-1
//! conv) move to the front of the buffer instead of being computed again, so the GEMM work is
//! the unfused 1x1 conv's, plus one overlap per thread.

use rayon::prelude::*;

use super::activation::Activation;
use super::conv::Conv2d;
use super::depthwise;
use super::output::filled;
use super::packed::{Epilogue, PackedB, gemm};
use super::scratch::with_scratch;

/// Floats of expanded rows a band may hold: 384 KiB, room in a 1 MiB L2 for the weights and
/// the input rows the GEMM reads beside it. MobileNetV2's first block (112 columns of 96
/// channels) gets 4 output rows per band at stride 2, 9 expanded rows.
const BAND_FLOATS: usize = 96 * 1024;

/// Multiply-adds (both halves) below which a call stays on one thread, as in `depthwise.rs`.
const PARALLEL_MACS: usize = 256 << 10;

/// The 1x1 conv in front: weights packed `[in_c, C]`, `C` biases, its activation.
#[derive(Clone, Copy)]
pub(crate) struct Expansion<'a> {
    pub(crate) weights: &'a PackedB,
    pub(crate) bias: &'a [f32],
    pub(crate) activation: Option<Activation>,
}

impl Conv2d {
    /// `self` is the depthwise conv as if over the expanded tensor (`in_c == out_c == C`,
    /// `groups == C`); `input` is NHWC with the 1x1 conv's `in_c` channels. Returns the NHWC
    /// output with the depthwise bias and activation applied.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_expanded(&self, input: &[f32], expansion: Expansion<'_>, weights: &[f32], bias: &[f32], act: Option<Activation>, threads: usize) -> Vec<f32> {
        let (ch, k_in) = (self.out_c, expansion.weights.k());
        assert!(self.in_c == ch && self.groups == ch && expansion.weights.n() == ch, "expanded depthwise conv: {self:?} after a 1x1 conv to {} channels", expansion.weights.n());
        assert_eq!(input.len(), self.batch * self.in_h * self.in_w * k_in, "expanded depthwise conv: input size");
        assert!(expansion.bias.len() == ch && bias.len() == ch && weights.len() == self.kernel[0] * self.kernel[1] * ch, "expanded depthwise conv: weight or bias size");
        let (rows, row_len) = (self.batch * self.out_h, self.out_w * ch);
        if rows * row_len == 0 {
            return Vec::new();
        }
        let macs = self.batch * self.in_h * self.in_w * k_in * ch + rows * row_len * self.kernel[0] * self.kernel[1];
        let shares = if macs >= PARALLEL_MACS { threads.clamp(1, rows) } else { 1 };
        let job = Job { conv: self, input, expansion, weights, bias, act };
        // every output row is written by the share that owns it
        filled(rows * row_len, |out| {
            if shares == 1 {
                return job.rows(0, rows, out);
            }
            let mut parts = Vec::with_capacity(shares);
            let mut rest = out;
            for t in 0..shares {
                let (r0, r1) = (t * rows / shares, (t + 1) * rows / shares);
                let (part, tail) = rest.split_at_mut((r1 - r0) * row_len);
                parts.push((r0, r1, part));
                rest = tail;
            }
            parts.into_par_iter().for_each(|(r0, r1, part)| job.rows(r0, r1, part));
        })
    }
}

struct Job<'a> {
    conv: &'a Conv2d,
    input: &'a [f32],
    expansion: Expansion<'a>,
    weights: &'a [f32],
    bias: &'a [f32],
    act: Option<Activation>,
}

impl Job<'_> {
    /// Output rows `first..end` (flattened over batch and height) into `out`.
    fn rows(&self, first: usize, end: usize, out: &mut [f32]) {
        let c = self.conv;
        let (kh, sh, dh, pad) = (c.kernel[0], c.strides[0], c.dilations[0], c.pad_begin[0]);
        let (in_row, out_row) = (c.in_w * c.out_c, c.out_w * c.out_c);
        // expanded rows a band of `b` output rows reads at most
        let reach = |b: usize| (b - 1) * sh + (kh - 1) * dh + 1;
        let mut band = 1;
        while band < c.out_h && reach(band + 1) * in_row <= BAND_FLOATS {
            band += 1;
        }
        with_scratch(reach(band) * in_row, |held_rows| {
            // (image, first, end) of the expanded rows `held_rows` starts with
            let mut held: Option<(usize, usize, usize)> = None;
            let mut r = first;
            while r < end {
                let (n, o0) = (r / c.out_h, r % c.out_h);
                let o1 = (o0 + band).min(c.out_h).min(o0 + end - r);
                // input rows the taps of output rows o0..o1 reach, clipped to the image
                let top = (o0 * sh) as isize - pad as isize;
                let lo = top.max(0) as usize;
                let hi = ((((o1 - 1) * sh + (kh - 1) * dh + 1) as isize - pad as isize).max(0) as usize).clamp(lo, c.in_h);
                let kept = match held {
                    Some((image, from, to)) if image == n && from <= lo && lo < to => {
                        let kept = to.min(hi);
                        held_rows.copy_within((lo - from) * in_row..(kept - from) * in_row, 0);
                        kept
                    }
                    _ => lo,
                };
                self.expand(n, kept, hi, &mut held_rows[(kept - lo) * in_row..(hi - lo) * in_row]);
                held = Some((n, lo, hi));
                // the band as a conv of its own over the held rows: its top padding is what
                // lies between its first tap and the first held row
                let band_conv = Conv2d { batch: 1, in_h: hi - lo, out_h: o1 - o0, pad_begin: [(lo as isize - top) as usize, c.pad_begin[1]], ..*c };
                let band_out = &mut out[(r - first) * out_row..][..(o1 - o0) * out_row];
                depthwise::write(&band_conv, &held_rows[..(hi - lo) * in_row], self.weights, self.bias, self.act, band_out);
                r += o1 - o0;
            }
        });
    }

    /// The 1x1 conv's output rows `from..to` of image `n` into `out`.
    fn expand(&self, n: usize, from: usize, to: usize, out: &mut [f32]) {
        if from >= to {
            return;
        }
        let c = self.conv;
        let (k, e) = (self.expansion.weights.k(), &self.expansion);
        let pixels = (to - from) * c.in_w;
        let a = &self.input[(n * c.in_h + from) * c.in_w * k..][..pixels * k];
        gemm(a, k, pixels, e.weights, out, c.out_c, &Epilogue { bias: Some(e.bias), activation: e.activation, residual: None });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::conv::tests::values;

    /// The 1x1 conv, then the depthwise conv, each in float64 with its activation.
    #[allow(clippy::too_many_arguments)]
    fn reference(c: &Conv2d, input: &[f32], k_in: usize, we: &[f32], be: &[f32], e_act: Option<Activation>, wd: &[f32], bd: &[f32], act: Option<Activation>) -> Vec<f64> {
        let ch = c.out_c;
        let apply = |a: Option<Activation>, v: f64| {
            let mut x = [v as f32];
            crate::engine::kernels::activation::apply(a, &mut x);
            if a.is_some() { x[0] as f64 } else { v }
        };
        let pixels = c.batch * c.in_h * c.in_w;
        let mut expanded = vec![0.0f64; pixels * ch];
        for p in 0..pixels {
            for m in 0..ch {
                let mut acc = be[m] as f64;
                for i in 0..k_in {
                    acc += input[p * k_in + i] as f64 * we[i * ch + m] as f64;
                }
                expanded[p * ch + m] = apply(e_act, acc);
            }
        }
        let mut out = vec![0.0f64; c.batch * c.out_h * c.out_w * ch];
        for n in 0..c.batch {
            for oh in 0..c.out_h {
                for ow in 0..c.out_w {
                    for m in 0..ch {
                        let mut acc = bd[m] as f64;
                        for ky in 0..c.kernel[0] {
                            for kx in 0..c.kernel[1] {
                                let iy = (oh * c.strides[0] + ky * c.dilations[0]) as isize - c.pad_begin[0] as isize;
                                let ix = (ow * c.strides[1] + kx * c.dilations[1]) as isize - c.pad_begin[1] as isize;
                                if iy < 0 || ix < 0 || iy as usize >= c.in_h || ix as usize >= c.in_w {
                                    continue;
                                }
                                let at = ((n * c.in_h + iy as usize) * c.in_w + ix as usize) * ch + m;
                                acc += expanded[at] * wd[(ky * c.kernel[1] + kx) * ch + m] as f64;
                            }
                        }
                        out[((n * c.out_h + oh) * c.out_w + ow) * ch + m] = apply(act, acc);
                    }
                }
            }
        }
        out
    }

    /// Strides 1 and 2, paddings from none to past the kernel's reach, dilation, odd sizes,
    /// channel counts with a lane tail, images taller than one band (several bands, rows carried
    /// from band to band), a batch whose shares start mid-image, 1 and 2 threads: within 1e-5
    /// of the float64 definition, relative to the output's largest magnitude.
    #[test]
    fn equals_the_pointwise_conv_then_the_depthwise_conv() {
        crate::engine::set_intra_op_threads(2);
        let cases = [
            // batch, in_h, in_w, k_in, channels, kernel, stride, dilation, pad (top, left, bottom, right)
            (1, 7, 6, 8, 48, 3, 1, 1, [1, 1, 1, 1]),
            (2, 9, 11, 5, 37, 3, 2, 1, [1, 1, 1, 1]),
            (1, 40, 50, 16, 96, 3, 2, 1, [0, 0, 1, 1]),
            (3, 30, 64, 24, 144, 3, 1, 1, [1, 1, 1, 1]),
            (1, 12, 9, 7, 20, 5, 1, 2, [3, 2, 4, 5]),
            (2, 5, 5, 4, 16, 3, 1, 1, [0, 0, 0, 0]),
        ];
        for (batch, in_h, in_w, k_in, ch, k, s, d, pads) in cases {
            let out_h = (in_h + pads[0] + pads[2] - d * (k - 1) - 1) / s + 1;
            let out_w = (in_w + pads[1] + pads[3] - d * (k - 1) - 1) / s + 1;
            let c = Conv2d { batch, in_h, in_w, in_c: ch, out_h, out_w, out_c: ch, kernel: [k, k], strides: [s, s], dilations: [d, d], pad_begin: [pads[0], pads[1]], groups: ch };
            let input = values(batch * in_h * in_w * k_in, 1.0);
            let (we, be, wd, bd) = (values(k_in * ch, 2.0), values(ch, 3.0), values(k * k * ch, 4.0), values(ch, 5.0));
            let packed = PackedB::pack(&we, k_in, ch, ch);
            for (e_act, act) in [(None, None), (Some(Activation::Clip(0.0, 6.0)), Some(Activation::Relu))] {
                let want = reference(&c, &input, k_in, &we, &be, e_act, &wd, &bd, act);
                let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let expansion = Expansion { weights: &packed, bias: &be, activation: e_act };
                for threads in [1, 2] {
                    let got = c.run_expanded(&input, expansion, &wd, &bd, act, threads);
                    assert_eq!(got.len(), want.len());
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!((*g as f64 - w).abs() <= 1e-5 * scale, "{c:?} {e_act:?} {act:?} threads {threads} at {i}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
