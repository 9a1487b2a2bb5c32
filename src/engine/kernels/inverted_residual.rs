//! MobileNet's inverted residual block as one kernel: a 1x1 conv that expands the channels, a
//! depthwise conv over them, and a 1x1 conv that projects them back (with the block's
//! shortcut), where neither the expanded tensor nor the depthwise output is ever stored whole
//! (`passes/inverted_residual.rs` joins the convs; either 1x1 conv may be absent).
//!
//! Those two tensors are the block's largest (MobileNetV2's first expanded one is 112x112x96,
//! 4.8 MB per image), and apart, each is written by one conv and read back by the next: at
//! batch 16 that traffic made the block memory-bound. Here each thread takes a contiguous share
//! of output rows and walks it in bands. For a band it runs the expanding GEMM over the input
//! rows the band's taps reach, into a buffer sized to stay in L2, the depthwise kernel over
//! that buffer into a second one, and the projecting GEMM from there into the output. The
//! expanded rows the next band shares with this one (the kernel's overlap: two rows of a 3x3
//! stride-1 conv) move to the front of the buffer instead of being computed again, so the GEMM
//! work is the unjoined convs', plus one overlap per thread.

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

/// Multiply-adds (all three convs) below which a call stays on one thread, as in `depthwise.rs`.
const PARALLEL_MACS: usize = 256 << 10;

/// A 1x1 conv of the block: weights packed `[in, out]`, `out` biases, its activation.
#[derive(Clone, Copy)]
pub(crate) struct Pointwise<'a> {
    pub(crate) weights: &'a PackedB,
    pub(crate) bias: &'a [f32],
    pub(crate) activation: Option<Activation>,
}

/// The block around a depthwise conv with HWIO weights `[kh, kw, 1, C]`, `C` biases and its
/// activation. `residual` (the output's shape) is added by the projection, before its
/// activation, so it needs one.
#[derive(Clone, Copy)]
pub(crate) struct Block<'a> {
    pub(crate) expand: Option<Pointwise<'a>>,
    pub(crate) weights: &'a [f32],
    pub(crate) bias: &'a [f32],
    pub(crate) activation: Option<Activation>,
    pub(crate) project: Option<Pointwise<'a>>,
    pub(crate) residual: Option<&'a [f32]>,
}

impl Block<'_> {
    fn in_c(&self, depthwise_channels: usize) -> usize {
        self.expand.map_or(depthwise_channels, |e| e.weights.k())
    }

    fn out_c(&self, depthwise_channels: usize) -> usize {
        self.project.map_or(depthwise_channels, |p| p.weights.n())
    }
}

impl Conv2d {
    /// `self` is the depthwise conv as if over the expanded tensor (`in_c == out_c == C`,
    /// `groups == C`); `input` is NHWC with the block's input channels. Returns the NHWC
    /// output with the block's output channels.
    pub(crate) fn run_block(&self, input: &[f32], block: &Block<'_>, threads: usize) -> Vec<f32> {
        let ch = self.out_c;
        let (in_c, out_c) = (block.in_c(ch), block.out_c(ch));
        assert!(self.in_c == ch && self.groups == ch, "inverted residual block: {self:?} is not depthwise");
        assert!(block.expand.is_none_or(|e| e.weights.n() == ch) && block.project.is_none_or(|p| p.weights.k() == ch), "inverted residual block: 1x1 convs for another channel count than {ch}");
        assert_eq!(input.len(), self.batch * self.in_h * self.in_w * in_c, "inverted residual block: input size");
        assert!(block.bias.len() == ch && block.weights.len() == self.kernel[0] * self.kernel[1] * ch, "inverted residual block: depthwise weight or bias size");
        assert!(block.expand.is_none_or(|e| e.bias.len() == ch) && block.project.is_none_or(|p| p.bias.len() == out_c), "inverted residual block: 1x1 conv bias size");
        let (rows, row_len) = (self.batch * self.out_h, self.out_w * out_c);
        assert!(block.residual.is_none_or(|r| r.len() == rows * row_len && block.project.is_some()), "inverted residual block: residual size, or a residual without a projection");
        if rows * row_len == 0 {
            return Vec::new();
        }
        let pixels = self.batch * self.out_h * self.out_w;
        let macs = self.batch * self.in_h * self.in_w * ch * if block.expand.is_some() { in_c } else { 0 }
            + pixels * ch * (self.kernel[0] * self.kernel[1] + if block.project.is_some() { out_c } else { 0 });
        let shares = if macs >= PARALLEL_MACS { threads.clamp(1, rows) } else { 1 };
        let job = Job { conv: self, input, block, in_c, out_c };
        // every output row is written by the share that owns it
        filled(rows * row_len, |out| {
            if shares == 1 {
                return job.rows(0, rows, out);
            }
            let per_share = rows.div_ceil(shares);
            out.par_chunks_mut(per_share * row_len).enumerate().for_each(|(i, part)| {
                let first = i * per_share;
                job.rows(first, first + part.len() / row_len, part);
            });
        })
    }
}

struct Job<'a> {
    conv: &'a Conv2d,
    input: &'a [f32],
    block: &'a Block<'a>,
    in_c: usize,
    out_c: usize,
}

impl Job<'_> {
    /// Output rows `first..end` (flattened over batch and height) into `out`.
    fn rows(&self, first: usize, end: usize, out: &mut [f32]) {
        let (c, b) = (self.conv, self.block);
        let ch = c.out_c;
        let (kh, sh, dh, pad) = (c.kernel[0], c.strides[0], c.dilations[0], c.pad_begin[0]);
        let (in_row, out_row) = (c.in_w * ch, c.out_w * self.out_c);
        // input rows a band of `n` output rows reads at most
        let reach = |n: usize| (n - 1) * sh + (kh - 1) * dh + 1;
        let mut band = 1;
        while band < c.out_h && reach(band + 1) * in_row <= BAND_FLOATS {
            band += 1;
        }
        let held_len = if b.expand.is_some() { reach(band) * in_row } else { 0 };
        let depthwise_len = if b.project.is_some() { band * c.out_w * ch } else { 0 };
        with_scratch(held_len + depthwise_len, |scratch| {
            let (held_rows, depthwise_rows) = scratch.split_at_mut(held_len);
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
                let source: &[f32] = match b.expand {
                    Some(expand) => {
                        let kept = match held {
                            Some((image, from, to)) if image == n && from <= lo && lo < to => {
                                let kept = to.min(hi);
                                held_rows.copy_within((lo - from) * in_row..(kept - from) * in_row, 0);
                                kept
                            }
                            _ => lo,
                        };
                        self.expand(expand, n, kept, hi, &mut held_rows[(kept - lo) * in_row..(hi - lo) * in_row]);
                        held = Some((n, lo, hi));
                        &held_rows[..(hi - lo) * in_row]
                    }
                    None => &self.input[(n * c.in_h + lo) * in_row..(n * c.in_h + hi) * in_row],
                };
                // the band as a conv of its own over the source rows: its top padding is what
                // lies between its first tap and the first source row
                let band_conv = Conv2d { batch: 1, in_h: hi - lo, out_h: o1 - o0, pad_begin: [(lo as isize - top) as usize, c.pad_begin[1]], ..*c };
                let band_out = &mut out[(r - first) * out_row..][..(o1 - o0) * out_row];
                match b.project {
                    Some(project) => {
                        let filtered = &mut depthwise_rows[..(o1 - o0) * c.out_w * ch];
                        depthwise::write(&band_conv, source, b.weights, b.bias, b.activation, filtered);
                        let residual = b.residual.map(|res| &res[r * out_row..][..(o1 - o0) * out_row]);
                        let epilogue = Epilogue { bias: Some(project.bias), activation: project.activation, residual };
                        gemm(filtered, ch, (o1 - o0) * c.out_w, project.weights, band_out, self.out_c, &epilogue);
                    }
                    None => depthwise::write(&band_conv, source, b.weights, b.bias, b.activation, band_out),
                }
                r += o1 - o0;
            }
        });
    }

    /// The expanding conv's output rows `from..to` of image `n` into `out`.
    fn expand(&self, e: Pointwise<'_>, n: usize, from: usize, to: usize, out: &mut [f32]) {
        if from >= to {
            return;
        }
        let c = self.conv;
        let pixels = (to - from) * c.in_w;
        let a = &self.input[(n * c.in_h + from) * c.in_w * self.in_c..][..pixels * self.in_c];
        gemm(a, self.in_c, pixels, e.weights, out, c.out_c, &Epilogue { bias: Some(e.bias), activation: e.activation, residual: None });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::conv::tests::values;

    /// A 1x1 conv in float64: `[pixels, k] x [k, n] + bias`, then its activation.
    fn pointwise(x: &[f64], k: usize, w: &[f32], bias: &[f32], act: Option<Activation>) -> Vec<f64> {
        let n = bias.len();
        let mut out = Vec::with_capacity(x.len() / k * n);
        for pixel in x.chunks_exact(k) {
            for m in 0..n {
                let sum = bias[m] as f64 + pixel.iter().enumerate().map(|(i, v)| v * w[i * n + m] as f64).sum::<f64>();
                out.push(activate(act, sum));
            }
        }
        out
    }

    fn activate(act: Option<Activation>, v: f64) -> f64 {
        let Some(act) = act else { return v };
        let mut x = [v as f32];
        crate::engine::kernels::activation::apply(Some(act), &mut x);
        x[0] as f64
    }

    /// The depthwise conv of `c` in float64 over NHWC `x` with `C` channels.
    fn depthwise(c: &Conv2d, x: &[f64], w: &[f32], bias: &[f32], act: Option<Activation>) -> Vec<f64> {
        let ch = c.out_c;
        let mut out = vec![0.0f64; c.batch * c.out_h * c.out_w * ch];
        for n in 0..c.batch {
            for oh in 0..c.out_h {
                for ow in 0..c.out_w {
                    for m in 0..ch {
                        let mut acc = bias[m] as f64;
                        for ky in 0..c.kernel[0] {
                            for kx in 0..c.kernel[1] {
                                let iy = (oh * c.strides[0] + ky * c.dilations[0]) as isize - c.pad_begin[0] as isize;
                                let ix = (ow * c.strides[1] + kx * c.dilations[1]) as isize - c.pad_begin[1] as isize;
                                if iy < 0 || ix < 0 || iy as usize >= c.in_h || ix as usize >= c.in_w {
                                    continue;
                                }
                                acc += x[((n * c.in_h + iy as usize) * c.in_w + ix as usize) * ch + m] * w[(ky * c.kernel[1] + kx) * ch + m] as f64;
                            }
                        }
                        out[((n * c.out_h + oh) * c.out_w + ow) * ch + m] = activate(act, acc);
                    }
                }
            }
        }
        out
    }

    /// Strides 1 and 2, paddings from none to past the kernel's reach, dilation, odd sizes,
    /// channel counts with a lane tail, images taller than one band (several bands, rows
    /// carried from band to band), a batch whose shares start mid-image, 1 and 2 threads, and
    /// each of expand + project with a shortcut, expand only and project only: within 1e-5 of
    /// the float64 convs one after the other, relative to the output's largest magnitude.
    #[test]
    fn equals_the_convs_one_after_the_other() {
        crate::engine::set_intra_op_threads(2);
        let cases = [
            // batch, in_h, in_w, block in, channels, block out, kernel, stride, dilation, pad (top, left, bottom, right)
            (1, 7, 6, 8, 48, 8, 3, 1, 1, [1, 1, 1, 1]),
            (2, 9, 11, 5, 37, 6, 3, 2, 1, [1, 1, 1, 1]),
            (1, 40, 50, 16, 96, 24, 3, 2, 1, [0, 0, 1, 1]),
            (3, 30, 64, 24, 144, 24, 3, 1, 1, [1, 1, 1, 1]),
            (1, 12, 9, 7, 20, 9, 5, 1, 2, [3, 2, 4, 5]),
            (2, 5, 5, 4, 16, 4, 3, 1, 1, [0, 0, 0, 0]),
        ];
        for (batch, in_h, in_w, block_in, ch, block_out, k, s, d, pads) in cases {
            let out_h = (in_h + pads[0] + pads[2] - d * (k - 1) - 1) / s + 1;
            let out_w = (in_w + pads[1] + pads[3] - d * (k - 1) - 1) / s + 1;
            let c = Conv2d { batch, in_h, in_w, in_c: ch, out_h, out_w, out_c: ch, kernel: [k, k], strides: [s, s], dilations: [d, d], pad_begin: [pads[0], pads[1]], groups: ch };
            let (we, be, wd, bd) = (values(block_in * ch, 2.0), values(ch, 3.0), values(k * k * ch, 4.0), values(ch, 5.0));
            let (wp, bp) = (values(ch * block_out, 6.0), values(block_out, 7.0));
            let (expand_weights, project_weights) = (PackedB::pack(&we, block_in, ch, ch), PackedB::pack(&wp, ch, block_out, block_out));
            let residual = values(batch * out_h * out_w * block_out, 8.0);
            let relu6 = Some(Activation::Clip(0.0, 6.0));
            // (expand, project, shortcut)
            for (expanded, projected, shortcut) in [(true, true, true), (true, false, false), (false, true, false), (false, true, true)] {
                let input = values(batch * in_h * in_w * if expanded { block_in } else { ch }, 1.0);
                let x: Vec<f64> = input.iter().map(|&v| v as f64).collect();
                let x = if expanded { pointwise(&x, block_in, &we, &be, relu6) } else { x };
                let y = depthwise(&c, &x, &wd, &bd, relu6);
                let want = if projected {
                    let y = pointwise(&y, ch, &wp, &bp, None);
                    if shortcut { y.iter().zip(&residual).map(|(v, r)| v + *r as f64).collect() } else { y }
                } else {
                    y
                };
                let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let block = Block {
                    expand: expanded.then_some(Pointwise { weights: &expand_weights, bias: &be, activation: relu6 }),
                    weights: &wd,
                    bias: &bd,
                    activation: relu6,
                    project: projected.then_some(Pointwise { weights: &project_weights, bias: &bp, activation: None }),
                    residual: shortcut.then_some(&residual[..]),
                };
                for threads in [1, 2] {
                    let got = c.run_block(&input, &block, threads);
                    assert_eq!(got.len(), want.len());
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!((*g as f64 - w).abs() <= 1e-5 * scale, "{c:?} expand {expanded} project {projected} shortcut {shortcut} threads {threads} at {i}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
