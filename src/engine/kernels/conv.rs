//! 2-D convolution over NHWC input with weights packed once at load, as one packed GEMM per
//! chunk of output pixels (depthwise convs have their own direct kernel, `depthwise.rs`).
//!
//! In NHWC a pixel's input channels are contiguous, so a 1x1 stride-1 conv reads its input
//! rows as the GEMM's A with no copy at all, and other convs build im2col rows with a handful
//! of `copy_from_slice` calls per pixel; the GEMM result rows are already NHWC output pixels.
//! Bias, a residual shortcut and the activation run in the GEMM's epilogue, per tile. Chunks of
//! rows keep the im2col buffer in L2 and are the unit of parallel work when there are enough
//! of them (batch 16); with few (batch 1) the GEMM splits its own rows or weight panels.

use rayon::prelude::*;

use super::activation::Activation;
use super::output::filled;
use super::packed::{Epilogue, PackedB, gemm, gemm_parallel};
use super::scratch::with_scratch;

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

/// Floats of im2col rows per chunk: 1 MiB, the L2 of a Zen 4 core (Intel's are larger), so a
/// chunk written by im2col is still cached when the GEMM reads it back, block by block.
pub(super) const CHUNK_FLOATS: usize = 256 * 1024;

/// Fewest output pixels per chunk. Every chunk streams all of the packed weights once, so a
/// chunk must be tall enough to pay for that read: ResNet50's 3x3 convs at 7x7 and 14x14 have
/// 2.4-9.4 MB of weights, and 16-row chunks (what a 128 KiB chunk allowed there) spent most of
/// their time waiting for weights from memory (43 GFLOP/s against 80 in the kernel's timing).
pub(super) const MIN_CHUNK_ROWS: usize = 96;

/// Multiply-adds below which a conv runs on the calling thread. Within a model run the pool's
/// other threads spin between ops (`threads::on_pool`), so a fork costs a few microseconds, and
/// batch-1 ShuffleNet's grouped 1x1 convs (3.6M each at 14x14), which stayed on one thread
/// under the earlier 4M, ran 1.5x faster split. Runs short enough to stay off the pool (the
/// MNIST CNN at batch 1) never split (`threads::intra_op_threads`).
pub(super) const PARALLEL_MACS: usize = 1 << 20;

/// HWIO weights (`[kh, kw, in_c / groups, out_c]`) packed for the GEMM: one [`PackedB`] per
/// group, `kh * kw * in_g` rows by `out_c / groups` columns. Done once at load.
pub(crate) fn pack_hwio(weights: &[f32], [kh, kw, in_g, out_c]: [usize; 4], groups: usize) -> Vec<PackedB> {
    let out_g = out_c / groups.max(1);
    (0..groups).map(|g| PackedB::pack(&weights[g * out_g..], kh * kw * in_g, out_g, out_c)).collect()
}

/// Floats of input and output pixels a grouped 1x1 conv runs all its groups over before it
/// moves on: 512 KiB, half of a Zen 4 L2.
const GROUPED_BLOCK_FLOATS: usize = 128 * 1024;

/// Rows of the GEMM tiles that chunk and share boundaries fall on: two 6-row AVX2 tiles, one
/// 12-row AVX-512 tile.
const TILE_ROWS: usize = 12;

/// Output pixels per im2col chunk for a conv whose patches are `patch` floats: about
/// [`CHUNK_FLOATS`], but no fewer than [`MIN_CHUNK_ROWS`].
fn chunk_target(patch: usize) -> usize {
    (CHUNK_FLOATS / patch.max(1)).clamp(MIN_CHUNK_ROWS, 4096)
}

/// Rows per chunk when `rows` are cut into chunks of at most about `target`: equal chunks, in
/// whole tiles, so no chunk but the last ends in a ragged tile.
fn even_chunks(rows: usize, target: usize) -> usize {
    rows.div_ceil(rows.div_ceil(target).max(1)).next_multiple_of(TILE_ROWS).min(rows).max(1)
}

/// Where each thread's contiguous share of `pixels` starts, plus `pixels` at the end: the
/// boundaries nearest to equal shares that fall on whole tiles. Cutting the pixels into chunks
/// first and handing the chunks out left threads unequal work when the chunks did not divide
/// evenly (ResNet50's and VGG's 14x14 stages: 196 pixels as chunks of 60, 60, 60 and 16, so 120
/// rows against 76); here 196 pixels split 96 / 100, and each share is then chunked on its own.
fn thread_shares(pixels: usize, threads: usize) -> Vec<usize> {
    let mut bounds: Vec<usize> = (0..threads).map(|t| ((t * pixels / threads + TILE_ROWS / 2) / TILE_ROWS * TILE_ROWS).min(pixels)).collect();
    bounds.push(pixels);
    bounds
}

impl Conv2d {
    pub(super) fn patch_len(&self) -> usize {
        self.kernel[0] * self.kernel[1] * (self.in_c / self.groups)
    }

    /// 1x1, stride 1, no padding: each group's input channels already are its im2col rows.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.strides == [1, 1] && self.pad_begin == [0, 0]
    }

    pub(crate) fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_c
    }

    #[cfg(test)]
    fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }

    /// `input` is NHWC, `weights` HWIO (`[kh, kw, in_c / groups, out_c]`), `bias` has `out_c`
    /// values. Returns the NHWC output. Packs the weights on every call: the plan's ops use
    /// [`Self::run_packed`] with weights packed at load.
    #[cfg(test)]
    pub(crate) fn run(&self, input: &[f32], weights: &[f32], bias: &[f32], act: Option<Activation>, threads: usize) -> Vec<f32> {
        if self.is_depthwise() {
            return super::depthwise::depthwise(self, input, weights, bias, act, threads);
        }
        self.run_im2col(input, weights, bias, act, threads)
    }

    /// Any grouping as im2col + one GEMM per group, packing the weights first (depthwise convs
    /// took this path before their direct kernel; its timing test still compares the two).
    #[cfg(test)]
    pub(super) fn run_im2col(&self, input: &[f32], weights: &[f32], bias: &[f32], act: Option<Activation>, threads: usize) -> Vec<f32> {
        let packed = pack_hwio(weights, [self.kernel[0], self.kernel[1], self.in_c / self.groups, self.out_c], self.groups);
        self.run_packed(input, &packed, bias, None, act, threads)
    }

    /// The conv over weights from [`pack_hwio`], with `residual` (the output's shape) added
    /// before the activation.
    pub(crate) fn run_packed(&self, input: &[f32], packed: &[PackedB], bias: &[f32], residual: Option<&[f32]>, act: Option<Activation>, threads: usize) -> Vec<f32> {
        let pixels = self.batch * self.out_h * self.out_w;
        let patch = self.patch_len();
        let out_g = self.out_c / self.groups;
        assert!(packed.len() == self.groups && packed.iter().all(|p| p.k() == patch && p.n() == out_g), "conv weights packed for another shape");
        assert!(residual.is_none_or(|r| r.len() == pixels * self.out_c), "conv residual has the wrong size");
        // every pixel's every group is written by a GEMM
        filled(pixels * self.out_c, |output| self.write_packed(input, packed, bias, residual, act, threads, output))
    }

    /// [`Self::run_packed`] into `output`, every element of which it writes.
    #[allow(clippy::too_many_arguments)]
    fn write_packed(&self, input: &[f32], packed: &[PackedB], bias: &[f32], residual: Option<&[f32]>, act: Option<Activation>, threads: usize, output: &mut [f32]) {
        let pixels = self.batch * self.out_h * self.out_w;
        let patch = self.patch_len();
        let (in_g, out_g) = (self.in_c / self.groups, self.out_c / self.groups);
        if pixels == 0 || self.out_c == 0 {
            return;
        }
        let epilogue = |g: usize, first: usize| Epilogue {
            bias: Some(&bias[g * out_g..(g + 1) * out_g]),
            activation: act,
            residual: residual.map(|r| &r[first * self.out_c + g * out_g..]),
        };
        let threads = if pixels * patch * self.out_c >= PARALLEL_MACS { threads } else { 1 };
        if self.is_pointwise() {
            if self.groups > 1 {
                // Grouped 1x1 convs (ShuffleNet) have small GEMMs per group: splitting each one
                // would cost a fork and join per group, so the pixels split once instead and
                // each task runs every group on its rows. Within a task, every group runs on
                // one block of rows before the next block starts: a group reads a slice of
                // each input pixel and writes a slice of each output pixel, so group by group
                // over all pixels streamed the whole input and output through memory once per
                // group (ShuffleNet's 28x28x136 convs at batch 16: 8.7 ms, against 2.4 ms in
                // onnxruntime).
                let per_task = if threads > 1 && pixels >= 2 * threads { pixels.div_ceil(threads) } else { pixels };
                let block = (GROUPED_BLOCK_FLOATS / (self.in_c + self.out_c)).next_multiple_of(TILE_ROWS);
                let task = |(task, out): (usize, &mut [f32])| {
                    for (b, out) in out.chunks_mut(block * self.out_c).enumerate() {
                        let first = task * per_task + b * block;
                        let rows = out.len() / self.out_c;
                        for (g, p) in packed.iter().enumerate() {
                            let a = &input[first * self.in_c + g * in_g..];
                            gemm(a, self.in_c, rows, p, &mut out[g * out_g..], self.out_c, &epilogue(g, first));
                        }
                    }
                };
                if per_task < pixels {
                    output.par_chunks_mut(per_task * self.out_c).enumerate().for_each(task);
                } else {
                    task((0, output));
                }
                return;
            }
            for (g, p) in packed.iter().enumerate() {
                gemm_parallel(&input[g * in_g..], self.in_c, pixels, p, &mut output[g * out_g..], self.out_c, &epilogue(g, 0), threads);
            }
            return;
        }
        let target = chunk_target(patch);
        // `first` is the chunk's first pixel, `out` its output rows, `col` at least their patches
        let run_chunk = |col: &mut [f32], first: usize, out: &mut [f32], inner: usize| {
            let rows = out.len() / self.out_c;
            let col = &mut col[..rows * patch];
            for (g, p) in packed.iter().enumerate() {
                self.im2col(input, first, rows, g * in_g, in_g, col);
                let out_group = &mut out[g * out_g..];
                if inner > 1 {
                    gemm_parallel(col, patch, rows, p, out_group, self.out_c, &epilogue(g, first), inner);
                } else {
                    gemm(col, patch, rows, p, out_group, self.out_c, &epilogue(g, first));
                }
            }
        };
        // each share (the whole output on one thread) in equal chunks of about `target` rows,
        // built in this thread's scratch (im2col writes every element of its rows)
        let run_share = |first: usize, share: &mut [f32], inner: usize| {
            let rows = even_chunks(share.len() / self.out_c, target);
            with_scratch(rows * patch, |col| {
                for (i, out) in share.chunks_mut(rows * self.out_c).enumerate() {
                    run_chunk(col, first + i * rows, out, inner);
                }
            });
        };
        if threads > 1 && pixels.div_ceil(target) >= threads {
            // a chunk per thread or more: each thread takes one contiguous share of the pixels
            let bounds = thread_shares(pixels, threads);
            let mut shares = Vec::with_capacity(threads);
            let mut rest = &mut output[..];
            for pair in bounds.windows(2) {
                let (share, tail) = rest.split_at_mut((pair[1] - pair[0]) * self.out_c);
                shares.push((pair[0], share));
                rest = tail;
            }
            shares.into_par_iter().for_each(|(first, share)| run_share(first, share, 1));
        } else {
            // fewer chunks than threads (batch 1 at 7x7 or 14x14): the GEMM splits its own rows
            // or weight panels
            run_share(0, output, threads);
        }
    }

    /// Writes im2col rows for output pixels `first..first + rows` (flattened over N, OH, OW),
    /// reading channels `c0..c0 + channels`; taps that fall into padding are zero.
    pub(super) fn im2col(&self, input: &[f32], first: usize, rows: usize, c0: usize, channels: usize, col: &mut [f32]) {
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
                    copy_run(taps, &row[at..at + kw * channels]);
                    continue;
                }
                for (kx, tap) in taps.chunks_exact_mut(channels).enumerate() {
                    let ix = x0 + (kx * self.dilations[1]) as isize;
                    if ix < 0 || ix as usize >= self.in_w {
                        tap.fill(0.0);
                    } else {
                        let at = ix as usize * self.in_c + c0;
                        copy_run(tap, &row[at..at + channels]);
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of first layers: a 3x3 conv over one channel
/// copies 3 floats per kernel row and pixel, and a `memcpy` call per run (the length is not
/// known when compiling) made im2col take 2 of the MNIST CNN's 2.5 ms first conv at batch 64,
/// against 0.4 ms for its GEMM. Under 32 floats the run goes as fixed-size moves the compiler
/// inlines: 8 at a time, then 4, 2 and 1.
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    if n >= 32 {
        dst.copy_from_slice(src);
        return;
    }
    let src = &src[..n];
    let mut at = 0;
    while n - at >= 8 {
        dst[at..at + 8].copy_from_slice(&src[at..at + 8]);
        at += 8;
    }
    if n - at >= 4 {
        dst[at..at + 4].copy_from_slice(&src[at..at + 4]);
        at += 4;
    }
    if n - at >= 2 {
        dst[at..at + 2].copy_from_slice(&src[at..at + 2]);
        at += 2;
    }
    if n - at == 1 {
        dst[at] = src[at];
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Direct definition of convolution, NHWC/HWIO, for checking the GEMM formulation.
    pub(in crate::engine::kernels) fn reference(c: &Conv2d, input: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
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

    pub(in crate::engine::kernels) fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    #[test]
    fn chunks_cover_every_pixel_in_whole_tiles_and_even_shares() {
        for (pixels, patch) in [(1, 27), (49, 4608), (196, 2304), (3136, 576), (50176, 576), (1152, 576), (12544, 147), (784, 4608)] {
            let target = chunk_target(patch);
            assert!(target >= MIN_CHUNK_ROWS && (target == MIN_CHUNK_ROWS || target * patch <= CHUNK_FLOATS), "patch {patch}: {target} rows");
            let rows = even_chunks(pixels, target);
            assert!(rows == pixels || rows.is_multiple_of(TILE_ROWS), "{pixels} px, patch {patch}: {rows} rows");
            assert!(rows >= MIN_CHUNK_ROWS.min(pixels) && rows <= target + TILE_ROWS, "{pixels} px, patch {patch}: {rows} rows");
            for threads in [1, 2, 3] {
                let bounds = thread_shares(pixels, threads);
                assert_eq!((bounds.len(), bounds[0], bounds[threads]), (threads + 1, 0, pixels));
                for pair in bounds.windows(2) {
                    let share = pair[1] - pair[0];
                    assert!(pair[0].is_multiple_of(TILE_ROWS) || pair[0] == pixels, "{pixels} px / {threads}: a share starts mid-tile at {}", pair[0]);
                    // each end is within half a tile of an equal share's
                    assert!(share.abs_diff(pixels / threads) <= TILE_ROWS, "{pixels} px / {threads}: {bounds:?}");
                }
            }
        }
        // the 7x7 stage of ResNet50 is one chunk: its 9.4 MB of weights are read once
        assert_eq!(even_chunks(49, chunk_target(4608)), 49);
        // and the 14x14 stage splits 96 / 100, not 120 / 76
        assert_eq!(thread_shares(196, 2), [0, 96, 196]);
    }

    #[test]
    fn short_runs_copy_every_value() {
        let src: Vec<f32> = (0..40).map(|i| i as f32 + 0.5).collect();
        for n in 0..40 {
            let mut dst = vec![-1.0f32; n];
            copy_run(&mut dst, &src[..n]);
            assert_eq!(dst, src[..n], "{n} values");
        }
    }

    /// `CONV_SHAPES="batch,h,w,cin,cout,k,stride,pad;..." cargo test --release --lib
    /// conv::tests::timing -- --ignored --nocapture`: GFLOP/s of the fastest call in half a
    /// second, on 1 and 2 threads (run inside the intra-op pool, as a model's ops are). The
    /// profile says how long a conv takes in a network; this says what the same conv does alone.
    #[test]
    #[ignore]
    fn timing() {
        crate::engine::set_intra_op_threads(2);
        let shapes = std::env::var("CONV_SHAPES").unwrap_or_else(|_| "1,224,224,3,64,3,2,0;1,55,55,16,64,3,1,1;1,13,13,64,256,3,1,1;16,56,56,64,64,3,1,1".into());
        for shape in shapes.split(';') {
            let v: Vec<usize> = shape.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            let [batch, in_h, in_w, in_c, out_c, k, s, pad] = v[..] else { panic!("batch,h,w,cin,cout,k,stride,pad: {shape}") };
            let (out_h, out_w) = ((in_h + 2 * pad - k) / s + 1, (in_w + 2 * pad - k) / s + 1);
            let c = Conv2d { batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel: [k, k], strides: [s, s], dilations: [1, 1], pad_begin: [pad, pad], groups: 1 };
            let input = values(batch * in_h * in_w * in_c, 1.0);
            let w = values(k * k * in_c * out_c, 2.0);
            let bias = values(out_c, 3.0);
            let flops = 2.0 * (batch * out_h * out_w * k * k * in_c * out_c) as f64;
            // `run(threads)` on 1 and 2 threads, inside the pool
            let time = |run: &(dyn Fn(usize) + Sync)| -> String {
                let cells: Vec<String> = [1, 2]
                    .iter()
                    .map(|&t| {
                        let secs = crate::engine::kernels::threads::on_pool(|| crate::engine::kernels::best_seconds(|| run(t)));
                        format!("t{t} {:8.1} us {:6.1} GF/s", secs * 1e6, flops / secs / 1e9)
                    })
                    .collect();
                cells.join("  ")
            };
            let packed = pack_hwio(&w, [k, k, in_c, out_c], 1);
            eprintln!("{shape:>28}: {}", time(&|t| drop(c.run_packed(&input, &packed, &bias, None, Some(Activation::Relu), t))));
            if super::super::narrow::applies([k, k, in_c, out_c], 1) {
                let cells = time(&|t| drop(super::super::narrow::Narrow::new(&c, &input, &w, &bias, Some(Activation::Relu)).run(t)));
                eprintln!("{:>28}  {cells} (narrow)", "");
            }
            if k == 3 && s == 1 {
                let wino = super::super::winograd::WinogradWeights::from_hwio(&w, in_c, out_c);
                let cells = time(&|t| drop(c.run_winograd(&input, &wino, &bias, None, Some(Activation::Relu), t)));
                eprintln!("{:>28}  {cells} (winograd; direct-conv FLOPs)", "");
            }
        }
    }

    #[test]
    fn gemm_formulation_matches_the_definition() {
        let cases = [
            // batch, in_h, in_w, in_c, out_c, kernel, strides, dilations, pad, groups
            (2, 7, 6, 3, 4, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            (3, 9, 9, 4, 6, [3, 2], [2, 1], [1, 2], [0, 1], 2),
            (1, 5, 5, 4, 4, [3, 3], [1, 1], [1, 1], [1, 1], 4), // depthwise
            (4, 6, 5, 8, 5, [1, 1], [1, 1], [1, 1], [0, 0], 1), // pointwise
            (70, 6, 6, 1, 3, [3, 3], [1, 1], [1, 1], [0, 0], 1), // many images in one chunk
            (2, 24, 24, 64, 8, [3, 3], [1, 1], [1, 1], [1, 1], 1), // several chunks, a ragged last one
            (2, 8, 9, 3, 5, [3, 3], [2, 2], [1, 1], [1, 1], 1), // tap-major, strided and padded
            (8, 20, 20, 16, 32, [3, 3], [1, 1], [1, 1], [1, 1], 1), // large enough to split across threads
            (2, 8, 9, 2, 5, [3, 3], [1, 3], [2, 2], [2, 2], 1), // tap-major, dilated, wide stride
            (3, 7, 7, 32, 8, [3, 3], [1, 1], [1, 1], [1, 1], 1), // pixel-major, whole kernel rows
            (2, 7, 7, 32, 4, [3, 3], [2, 2], [1, 2], [1, 0], 2), // pixel-major, per tap
            (4, 28, 27, 48, 96, [1, 1], [1, 1], [1, 1], [0, 0], 3), // grouped 1x1: pixels split across threads, several blocks each
            (1, 14, 14, 64, 64, [3, 3], [2, 2], [1, 1], [1, 1], 1), // one chunk: the GEMM splits inside it
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
