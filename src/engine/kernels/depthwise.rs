//! Depthwise convolution (`groups == in_c`) computed directly over NHWC input.
//!
//! Through im2col a depthwise layer is one GEMM per channel with k = kh * kw (9) and n = the
//! channel multiplier (1): all packing and call overhead around almost no arithmetic, which
//! kept MobileNetV2 at 0.12x onnxruntime (issue #12). In NHWC the same tap of neighbouring
//! channels is one contiguous run, and so is its weight row in HWIO, so the direct form is a
//! vector FMA per tap over a run of channels, reading input and weights in place.
//!
//! SIMD without `unsafe`: through pulp the kernel is compiled once per instruction set
//! (AVX-512, AVX2+FMA, scalar) from one generic body, and the best is picked at run time, the
//! way the RNN kernels do.

use std::ops::Range;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::activation::{self, Activation};
use super::conv::Conv2d;
use super::output::filled;
use super::simd::dispatch;

/// Multiply-adds below which a call stays on the calling thread. With the pool spinning between
/// a run's ops a fork costs a few microseconds, about what 256K depthwise MACs take on one
/// core. Batch-1 MobileNetV2 layers are 0.4M to 3.6M, ShuffleNet's 0.5M to 1M.
const PARALLEL_MACS: usize = 256 << 10;

/// The register tile is `PIXELS` output pixels x `VECTORS` vectors of channels (4 x 16
/// channels with AVX2). Depthwise has no reuse inside a pixel, so a 1-pixel tile costs two
/// loads per FMA and is load-bound; here each tap's weight vectors serve four pixels, 1.25
/// loads per FMA. The 8 accumulators are independent chains, enough to cover FMA latency (4
/// cycles) on two FMA ports, and with the 2 weight vectors and a loaded input they fit AVX2's
/// 16 registers without spills.
const PIXELS: usize = 4;
const VECTORS: usize = 2;

/// `input` is NHWC, `weights` HWIO `[kh, kw, 1, out_c]`, `bias` has `out_c` values; output
/// channel `m` reads input channel `m / (out_c / in_c)`. Returns the NHWC output.
pub(crate) fn depthwise(conv: &Conv2d, input: &[f32], weights: &[f32], bias: &[f32], act: Option<Activation>, threads: usize) -> Vec<f32> {
    let macs = conv.batch * conv.out_h * conv.out_w * conv.out_c * conv.kernel[0] * conv.kernel[1];
    let threads = if macs >= PARALLEL_MACS { threads } else { 1 };
    run(conv, input, weights, bias, act, threads, &|rows: Rows<'_>| dispatch(rows))
}

/// Every output row of `conv` into `out`, on the calling thread: a band of rows the caller
/// carved out of a larger conv (`inverted_residual.rs`).
pub(super) fn write(conv: &Conv2d, input: &[f32], weights: &[f32], bias: &[f32], act: Option<Activation>, out: &mut [f32]) {
    assert_eq!(conv.out_c, conv.in_c, "depthwise band: a channel multiplier");
    dispatch(Rows { geo: &Geometry::new(conv), input, weights, bias, act, first: 0, out });
}

/// `exec` runs a block of output rows at some instruction set (tests pick each in turn).
fn run(conv: &Conv2d, input: &[f32], weights: &[f32], bias: &[f32], act: Option<Activation>, threads: usize, exec: &(dyn Fn(Rows<'_>) + Sync)) -> Vec<f32> {
    let rows = conv.batch * conv.out_h;
    let row_len = conv.out_w * conv.out_c;
    if rows * row_len == 0 {
        return Vec::new();
    }
    // A multiplier above 1 is rare (no common model has one): repeating each input value
    // `multiplier` times makes output channel m read input channel m, the multiplier-1 case.
    let multiplier = conv.out_c / conv.in_c;
    let repeated: Vec<f32>;
    let input = if multiplier == 1 {
        input
    } else {
        repeated = input.iter().flat_map(|&v| std::iter::repeat_n(v, multiplier)).collect();
        &repeated
    };
    let geo = Geometry::new(conv);
    // a few blocks per thread, so one slow core does not hold up the rest
    let per_block = if threads > 1 { rows.div_ceil(threads * 4) } else { rows };
    let job = |(index, out): (usize, &mut [f32])| exec(Rows { geo: &geo, input, weights, bias, act, first: index * per_block, out });
    // every output row is written by one block
    filled(rows * row_len, |output| {
        if per_block < rows {
            output.par_chunks_mut(per_block * row_len).enumerate().for_each(job);
        } else {
            job((0, output));
        }
    })
}

/// The conv with its input channels already expanded to `out_c`, and the output columns whose
/// every horizontal tap lands inside the image (they take the unclipped, multi-pixel tile).
struct Geometry {
    conv: Conv2d,
    interior: Range<usize>,
}

impl Geometry {
    fn new(conv: &Conv2d) -> Self {
        let kw = conv.kernel[1];
        let full = |ow: &usize| conv.taps_x(*ow) == (0..kw);
        let start = (0..conv.out_w).find(full).unwrap_or(conv.out_w);
        let end = (start..conv.out_w).find(|ow| !full(ow)).unwrap_or(conv.out_w);
        Self { conv: *conv, interior: start..end }
    }
}

impl Conv2d {
    pub(super) fn taps_y(&self, oh: usize) -> Range<usize> {
        taps(oh * self.strides[0], self.pad_begin[0], self.kernel[0], self.dilations[0], self.in_h)
    }

    pub(super) fn taps_x(&self, ow: usize) -> Range<usize> {
        taps(ow * self.strides[1], self.pad_begin[1], self.kernel[1], self.dilations[1], self.in_w)
    }
}

/// The taps `k` of a window whose tap 0 sits at `at - pad` that land inside `0..extent`: the
/// padding is clipped once per row or pixel instead of tested per tap.
fn taps(at: usize, pad: usize, kernel: usize, dilation: usize, extent: usize) -> Range<usize> {
    // tap k lands at at + k * dilation - pad, inside when pad <= at + k * d < extent + pad
    let lo = pad.saturating_sub(at).div_ceil(dilation).min(kernel);
    let hi = (extent + pad).saturating_sub(at).div_ceil(dilation).clamp(lo, kernel);
    lo..hi
}

/// Output rows `first..` (flattened over N and OH) into `out`, bias and activation included.
struct Rows<'a> {
    geo: &'a Geometry,
    input: &'a [f32],
    weights: &'a [f32],
    bias: &'a [f32],
    act: Option<Activation>,
    first: usize,
    out: &'a mut [f32],
}

impl WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let c = &self.geo.conv;
        let image_len = c.in_h * c.in_w * c.out_c;
        for (i, out) in self.out.chunks_exact_mut(c.out_w * c.out_c).enumerate() {
            let (n, oh) = ((self.first + i) / c.out_h, (self.first + i) % c.out_h);
            let row = Row { geo: self.geo, image: &self.input[n * image_len..(n + 1) * image_len], weights: self.weights, oh, ky: c.taps_y(oh) };
            let interior = &self.geo.interior;
            let mut ow = 0;
            while ow < c.out_w {
                if interior.contains(&ow) && ow + PIXELS <= interior.end {
                    row.pixels::<S, PIXELS>(s, ow, 0..c.kernel[1], out);
                    ow += PIXELS;
                } else {
                    row.pixels::<S, 1>(s, ow, c.taps_x(ow), out);
                    ow += 1;
                }
            }
            // the row is still in cache; bias_then carries every fused activation
            activation::bias_then(self.act, self.bias, out);
        }
    }
}

/// One output row: its image, vertical taps and row index.
struct Row<'a> {
    geo: &'a Geometry,
    image: &'a [f32],
    weights: &'a [f32],
    oh: usize,
    ky: Range<usize>,
}

impl Row<'_> {
    /// Every channel of pixels `ow..ow + P`, in `VECTORS`-vector blocks, then single and
    /// partial vectors. Pixels outside and channels inside make the reads a forward sweep
    /// through the input rows. With channel blocks outside, each block swept the rows again,
    /// touching 2 of every 9 cache lines at 144 channels, and out of cache (batch 16) the
    /// prefetchers did not follow: 56x56x144 took 14.4 ms for 16 images against 0.25 ms for
    /// one image in cache.
    #[inline(always)]
    fn pixels<S: Simd, const P: usize>(&self, s: S, ow: usize, kx: Range<usize>, out: &mut [f32]) {
        let (ch, lanes) = (self.geo.conv.out_c, S::F32_LANES);
        let mut c0 = 0;
        while c0 + VECTORS * lanes <= ch {
            self.block::<S, P, VECTORS, false>(s, ow, kx.clone(), c0, VECTORS * lanes, out);
            c0 += VECTORS * lanes;
        }
        while c0 + lanes <= ch {
            self.block::<S, P, 1, false>(s, ow, kx.clone(), c0, lanes, out);
            c0 += lanes;
        }
        if c0 < ch {
            self.block::<S, P, 1, true>(s, ow, kx, c0, ch - c0, out);
        }
    }

    /// One channel block of `P` pixels: whole-vector interior tiles read vector slices.
    #[inline(always)]
    fn block<S: Simd, const P: usize, const R: usize, const PART: bool>(&self, s: S, ow: usize, kx: Range<usize>, c0: usize, width: usize, out: &mut [f32]) {
        // (tile_vectors at P = 1 measured slower than tile)
        if P == PIXELS && !PART && self.geo.conv.out_c.is_multiple_of(S::F32_LANES) {
            self.tile_vectors::<S, R>(s, ow, c0, out);
        } else {
            self.tile::<S, P, R, PART>(s, ow, kx, c0, width, out);
        }
    }

    /// Pixels `ow..ow + P` of the row over horizontal taps `kx` (all of them when `P > 1`).
    #[inline(always)]
    fn tile<S: Simd, const P: usize, const R: usize, const PART: bool>(&self, s: S, ow: usize, kx: Range<usize>, c0: usize, width: usize, out: &mut [f32]) {
        let c = &self.geo.conv;
        let (ch, kw, row_len) = (c.out_c, c.kernel[1], c.in_w * c.out_c);
        let mut acc = [[s.splat_f32s(0.0); R]; P];
        // offsets of tap kx = 0 for each pixel, in floats from the start of the input row
        let x0: [usize; P] = std::array::from_fn(|p| ((ow + p) * c.strides[1]) * ch + c0);
        let (pad, step) = (c.pad_begin[1] * ch, c.dilations[1] * ch);
        for ky in self.ky.clone() {
            let iy = self.oh * c.strides[0] + ky * c.dilations[0] - c.pad_begin[0];
            let in_row = &self.image[iy * row_len..(iy + 1) * row_len];
            for tx in kx.clone() {
                let w = load::<S, R, PART>(s, &self.weights[(ky * kw + tx) * ch + c0..], width);
                for (acc, x0) in acc.iter_mut().zip(x0) {
                    let x = load::<S, R, PART>(s, &in_row[x0 + tx * step - pad..], width);
                    for ((a, x), w) in acc.iter_mut().zip(x).zip(w) {
                        *a = s.mul_add_e_f32s(x, w, *a);
                    }
                }
            }
        }
        store::<S, P, R, PART>(s, &acc, &mut out[ow * ch + c0..], ch, width);
    }

    /// The interior tile when every pixel's channels are whole vectors (MobileNet's always
    /// are), read as vector slices. Each pixel gets a slice of the same length per kernel row,
    /// so one bounds test per tap covers all of them; `tile`, slicing per load, spends more
    /// instructions on bounds than on FMAs (15 against 18 GFLOP/s on AVX2, where unchecked
    /// indexing reached 20).
    #[inline(always)]
    fn tile_vectors<S: Simd, const R: usize>(&self, s: S, ow: usize, c0: usize, out: &mut [f32]) {
        let c = &self.geo.conv;
        let (lanes, kw, sw) = (S::F32_LANES, c.kernel[1], c.strides[1]);
        let (chv, cv) = (c.out_c / lanes, c0 / lanes);
        let ((image, _), (weights, _)) = (S::as_simd_f32s(self.image), S::as_simd_f32s(self.weights));
        let (row_len, tap_step) = (c.in_w * chv, c.dilations[1] * chv);
        // from tap 0 of this channel block to the end of the same block in the last tap
        let (span, weight_span) = ((kw - 1) * tap_step + R, (kw - 1) * chv + R);
        let mut acc = [[s.splat_f32s(0.0); R]; PIXELS];
        for ky in self.ky.clone() {
            let iy = self.oh * c.strides[0] + ky * c.dilations[0] - c.pad_begin[0];
            let row = &image[iy * row_len..(iy + 1) * row_len];
            // interior pixels: tap 0 of pixel ow + p is inside, at column (ow + p) * sw - pad
            let xs: [&[S::f32s]; PIXELS] = std::array::from_fn(|p| {
                let at = ((ow + p) * sw - c.pad_begin[1]) * chv + cv;
                &row[at..at + span]
            });
            let w_at = ky * kw * chv + cv;
            let ws = &weights[w_at..w_at + weight_span];
            for tx in 0..kw {
                let (x_at, w_at) = (tx * tap_step, tx * chv);
                let wv = &ws[w_at..w_at + R];
                for (acc, xs) in acc.iter_mut().zip(&xs) {
                    for ((a, x), w) in acc.iter_mut().zip(&xs[x_at..x_at + R]).zip(wv) {
                        *a = s.mul_add_e_f32s(*x, *w, *a);
                    }
                }
            }
        }
        store::<S, PIXELS, R, false>(s, &acc, &mut out[ow * c.out_c + c0..], c.out_c, R * lanes);
    }
}

/// Writes `P` pixels' accumulators, pixel p at `out[p * pixel_len..]`.
#[inline(always)]
fn store<S: Simd, const P: usize, const R: usize, const PART: bool>(s: S, acc: &[[S::f32s; R]; P], out: &mut [f32], pixel_len: usize, width: usize) {
    for (p, acc) in acc.iter().enumerate() {
        let at = p * pixel_len;
        if PART {
            s.partial_store_f32s(&mut out[at..at + width], acc[0]);
        } else {
            let (dst, _) = S::as_mut_simd_f32s(&mut out[at..at + R * S::F32_LANES]);
            dst.copy_from_slice(acc);
        }
    }
}

/// `R` vectors from the start of `from` (`PART`: the first `width` values of one).
#[inline(always)]
fn load<S: Simd, const R: usize, const PART: bool>(s: S, from: &[f32], width: usize) -> [S::f32s; R] {
    if PART {
        [s.partial_load_f32s(&from[..width]); R]
    } else {
        let (v, _) = S::as_simd_f32s(&from[..R * S::F32_LANES]);
        std::array::from_fn(|r| v[r])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A fixed-seed LCG (Knuth's MMIX constants): reproducible cases without a dependency.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }

        fn values(&mut self, len: usize) -> Vec<f32> {
            (0..len).map(|_| self.below(2001) as f32 / 1000.0 - 1.0).collect()
        }
    }

    /// The definition in f64, with the sum of |terms| each output's rounding error scales with.
    fn reference(c: &Conv2d, input: &[f32], w: &[f32], bias: &[f32]) -> Vec<(f64, f64)> {
        let multiplier = c.out_c / c.in_c;
        let at = |o: usize, k: usize, d: usize, p: usize| (o + k * d).checked_sub(p);
        (0..c.batch * c.out_h * c.out_w * c.out_c)
            .map(|i| {
                let (m, ow, oh, n) = (i % c.out_c, i / c.out_c % c.out_w, i / c.out_c / c.out_w % c.out_h, i / c.out_c / c.out_w / c.out_h);
                let (mut acc, mut mag) = (f64::from(bias[m]), f64::from(bias[m].abs()));
                for (ky, kx) in (0..c.kernel[0]).flat_map(|ky| (0..c.kernel[1]).map(move |kx| (ky, kx))) {
                    let iy = at(oh * c.strides[0], ky, c.dilations[0], c.pad_begin[0]).filter(|&y| y < c.in_h);
                    let ix = at(ow * c.strides[1], kx, c.dilations[1], c.pad_begin[1]).filter(|&x| x < c.in_w);
                    if let (Some(iy), Some(ix)) = (iy, ix) {
                        let x = input[((n * c.in_h + iy) * c.in_w + ix) * c.in_c + m / multiplier];
                        let term = f64::from(x) * f64::from(w[(ky * c.kernel[1] + kx) * c.out_c + m]);
                        (acc, mag) = (acc + term, mag + term.abs());
                    }
                }
                (acc, mag)
            })
            .collect()
    }

    /// Output size for the given padding at both ends; `None` when the window does not fit.
    fn out_len(input: usize, pad: usize, pad_end: usize, kernel: usize, stride: usize, dilation: usize) -> Option<usize> {
        let span = dilation * (kernel - 1) + 1;
        (input + pad + pad_end).checked_sub(span).map(|room| room / stride + 1)
    }

    /// Every instruction set this CPU has, scalar included, so the sweep covers paths that
    /// dispatch would not pick here.
    type Exec = Box<dyn Fn(Rows<'_>) + Sync>;
    fn levels() -> Vec<(&'static str, Exec)> {
        let mut out: Vec<(&'static str, Exec)> = vec![("scalar", Box::new(|rows: Rows<'_>| rows.with_simd(pulp::Scalar::new())))];
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if let Some(simd) = pulp::x86::V3::try_new() {
            out.push(("avx2", Box::new(move |rows: Rows<'_>| Simd::vectorize(simd, rows))));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            out.push(("avx512", Box::new(move |rows: Rows<'_>| Simd::vectorize(simd, rows))));
        }
        out
    }

    #[test]
    fn random_shapes_match_the_definition() {
        // Clip's upper bound low enough that both ends clip
        let acts = [None, Some(Activation::Relu), Some(Activation::LeakyRelu(0.1)), Some(Activation::Sigmoid), Some(Activation::Tanh), Some(Activation::Clip(0.0, 0.5))];
        let kernels = [[1, 1], [2, 2], [3, 3], [3, 1], [1, 3], [5, 5], [5, 3]];
        let levels = levels();
        let mut rng = Lcg(12);
        let mut cases = 0;
        while cases < 240 {
            let kernel = kernels[rng.below(kernels.len())];
            let (strides, dilations) = ([1 + rng.below(3), 1 + rng.below(3)], [1 + rng.below(2), 1 + rng.below(2)]);
            let (pad_begin, pad_end) = ([rng.below(3), rng.below(3)], [rng.below(3), rng.below(3)]);
            let (batch, in_h, in_w) = (1 + rng.below(3), 1 + rng.below(17), 1 + rng.below(17));
            let (in_c, multiplier) = (1 + rng.below(70), 1 + rng.below(3));
            let (Some(out_h), Some(out_w)) = (
                out_len(in_h, pad_begin[0], pad_end[0], kernel[0], strides[0], dilations[0]),
                out_len(in_w, pad_begin[1], pad_end[1], kernel[1], strides[1], dilations[1]),
            ) else {
                continue;
            };
            let out_c = in_c * multiplier;
            let c = Conv2d { batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel, strides, dilations, pad_begin, groups: in_c };
            let input = rng.values(batch * in_h * in_w * in_c);
            let w = rng.values(kernel[0] * kernel[1] * out_c);
            let bias = rng.values(out_c);
            let act = acts[cases % acts.len()];
            // activated once here; the f32 activation only shrinks differences (slope <= 1)
            let expected: Vec<(f32, f32)> = reference(&c, &input, &w, &bias)
                .into_iter()
                .map(|(e, mag)| {
                    let mut e = [e as f32];
                    activation::apply(act, &mut e);
                    (e[0], 1e-5 * mag.max(1.0) as f32)
                })
                .collect();
            let check = |got: &[f32], how: &str| {
                assert_eq!(got.len(), expected.len(), "{c:?}");
                for (i, (&g, &(e, tol))) in got.iter().zip(&expected).enumerate() {
                    assert!((g - e).abs() <= tol, "{c:?} {act:?} {how} at {i}: {g} vs {e}");
                }
            };
            // every level on one thread and split in row blocks, the split on half the cases;
            // scalar code at opt-level 0 is slow, and lanes = 1 has no tails to cover, so it
            // gets a quarter of them
            for (name, exec) in &levels {
                if *name == "scalar" && cases % 4 != 0 {
                    continue;
                }
                for threads in if cases % 2 == 0 { &[1, 2][..] } else { &[1] } {
                    let threads = *threads;
                    check(&run(&c, &input, &w, &bias, act, threads, exec.as_ref()), &format!("{name}, {threads} threads"));
                }
            }
            if cases % 8 == 0 {
                check(&c.run(&input, &w, &bias, act, 1), "Conv2d::run");
            }
            cases += 1;
        }
    }

    /// MobileNetV2's depthwise layers (3x3, pad 1) at batch `DW_BATCH` (1), old path against
    /// new on `DW_THREADS` (1): `cargo test --release --lib depthwise -- --ignored --nocapture`.
    /// At batch 16 the input and output no longer fit in cache, as in a batched network.
    #[test]
    #[ignore]
    fn mobilenet_v2_timing() {
        let shapes = [(112, 32, 1), (112, 96, 2), (56, 144, 1), (28, 192, 1), (14, 384, 1), (7, 960, 1)];
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let (batch, threads) = (env("DW_BATCH"), env("DW_THREADS"));
        let mut rng = Lcg(7);
        println!("{:<16} {:>8} {:>12} {:>12} {:>12} {:>12} {:>8}", "input", "stride", "im2col us", "GFLOP/s", "direct us", "GFLOP/s", "speedup");
        for (size, ch, stride) in shapes {
            let out = (size + 2 - 3) / stride + 1;
            let (kernel, strides, dilations, pad_begin) = ([3, 3], [stride; 2], [1, 1], [1, 1]);
            let c = Conv2d { batch, in_h: size, in_w: size, in_c: ch, out_h: out, out_w: out, out_c: ch, kernel, strides, dilations, pad_begin, groups: ch };
            let (input, w, bias) = (rng.values(batch * size * size * ch), rng.values(9 * ch), rng.values(ch));
            let flops = (2 * batch * out * out * ch * 9) as f64;
            let time = |f: &dyn Fn() -> Vec<f32>| {
                let mut best = f64::INFINITY;
                let start = Instant::now();
                while start.elapsed().as_secs_f64() < 1.0 {
                    let t = Instant::now();
                    std::hint::black_box(f());
                    best = best.min(t.elapsed().as_secs_f64());
                }
                best
            };
            let old = if batch == 1 { time(&|| c.run_im2col(&input, &w, &bias, Some(Activation::Relu), threads)) } else { f64::NAN };
            let new = time(&|| depthwise(&c, &input, &w, &bias, Some(Activation::Relu), threads));
            let (label, gflops) = (format!("{size}x{size}x{ch}"), |t: f64| flops / t / 1e9);
            println!("{label:<16} {stride:>8} {:>12.1} {:>12.2} {:>12.1} {:>12.2} {:>7.1}x", old * 1e6, gflops(old), new * 1e6, gflops(new), old / new);
        }
    }
}
