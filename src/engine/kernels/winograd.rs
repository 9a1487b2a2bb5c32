//! 3x3 stride-1 convolutions as Winograd F(2x2, 3x3): each 2x2 block of output pixels from a
//! 4x4 block of input, with 16 multiplies per channel pair where the direct conv needs 36.
//!
//! Why: our GEMM runs the im2col form of a 3x3 conv at 100-112 GFLOP/s on a Zen 4 core, which
//! is about what onnxruntime's MLAS reaches too; with both at the core's FMA peak, the only way
//! past it is fewer multiplies. VGG, ResNet, DenseNet and Inception spend most of their time
//! in 3x3 stride-1 convs over 64 or more channels, where this cuts the GEMM work by 2.25x.
//!
//! The product is 16 independent GEMMs, one per position `xi` of the 4x4 transformed tile:
//! `M[xi] (tiles x out_c) = V[xi] (tiles x in_c) * U[xi] (in_c x out_c)`, with
//! - `U = G g G^T`, the weights transformed and packed once at load ([`WinogradWeights`]);
//! - `V = B^T d B`, each 4x4 input block transformed per request, a tile per GEMM row;
//! - `y = A^T M A`, the 2x2 output block, then bias, residual and activation as in every conv.
//!
//! F(2x2, 3x3) rather than F(4x4, 3x3): its transforms only add and subtract, and halve by
//! powers of two in `G`, so its rounding stays within a few ulps of the direct sum (the larger
//! tile's constants lose about two decimal digits); its 2.25x is most of what the larger tile's
//! 4x would give once the larger transforms are paid for.
//!
//! Tiles are processed in chunks that keep `V` and `M` (16 x (in_c + out_c) floats a tile)
//! within a few MiB, and across threads as contiguous shares of the tiles, as the direct conv
//! does with pixels.

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::conv::Conv2d;
use super::output::filled;
use super::packed::{Epilogue, PackedB, gemm};
use super::scratch::with_scratch;

/// Transformed positions per tile.
const POSITIONS: usize = 16;

/// Channels a transform handles at once. The transforms are written over fixed-size arrays of
/// this many lanes, which the compiler turns into vector adds and subtracts. They are compiled
/// for the baseline instruction set: run under AVX-512 target features (through
/// `simd::dispatch`) the same code was 20% slower on the 64-channel convs; the profile did not
/// say why (perhaps spills: a tile's transform holds 48 arrays of 16 lanes).
const LANES: usize = 16;

/// Floats of `V` and `M` together per chunk: 4 MiB, which an L3 slice holds beside the weights
/// streaming through; the GEMMs read `V` one L2-sized block at a time.
const CHUNK_FLOATS: usize = 1 << 20;

/// Fewest tiles per chunk: every chunk reads all 16 weight matrices once, so it must be tall
/// enough to pay for that read (as `conv::MIN_CHUNK_ROWS` for the direct conv).
const MIN_CHUNK_TILES: usize = 96;

/// Weights (floats, all 16 positions) up to which a conv with few tiles still splits its tiles
/// across threads rather than its positions: 1 MiB, half of an L2.
const SMALL_WEIGHTS: usize = 256 * 1024;

/// Fewest tiles per thread when few tiles split: two AVX-512 micro-tiles of GEMM rows.
const MIN_SHARE_TILES: usize = 24;

/// Input channels from which a 3x3 conv takes this path: below, the GEMMs' inner dimension is
/// too short for them to run near peak and the transforms cost more than they save (the MNIST
/// CNN's 32-channel conv stays direct).
pub(crate) const MIN_IN_CHANNELS: usize = 64;

/// Output channels from which a 3x3 conv takes this path: DenseNet's growth convs (32) qualify.
pub(crate) const MIN_OUT_CHANNELS: usize = 16;

/// Whether a conv of this shape, with weights `[3, 3, in_c, out_c]`, runs here: 3x3, stride 1,
/// no dilation, one group, enough channels; `CANDLE_SERVING_WINOGRAD=0` turns it off (for
/// side-by-side timings, or a user who wants the direct sum's exact rounding).
pub(crate) fn applies(kernel: [usize; 2], strides: [usize; 2], dilations: [usize; 2], groups: usize, in_c: usize, out_c: usize) -> bool {
    kernel == [3, 3] && strides == [1, 1] && dilations == [1, 1] && groups == 1 && in_c >= MIN_IN_CHANNELS && out_c >= MIN_OUT_CHANNELS && enabled()
}

fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("CANDLE_SERVING_WINOGRAD").map_or(true, |v| v != "0"))
}

/// `U[xi] = G g G^T` for every input/output channel pair, packed for the GEMM: 16 matrices of
/// `in_c x out_c`, 16/9 of the HWIO weights' size.
pub(crate) struct WinogradWeights {
    positions: Vec<PackedB>,
    in_c: usize,
    out_c: usize,
}

impl WinogradWeights {
    /// From HWIO weights `[3, 3, in_c, out_c]`.
    pub(crate) fn from_hwio(w: &[f32], in_c: usize, out_c: usize) -> Self {
        assert_eq!(w.len(), 9 * in_c * out_c, "winograd weights: not 3 x 3 x {in_c} x {out_c}");
        let plane = in_c * out_c;
        // One row of the 4x4 transform at a time: its four planes are all of the transformed
        // weights that exist unpacked at once. All sixteen were 17 MiB of the load's peak for
        // ResNet50's largest conv, on top of their packed copy.
        let mut row_planes = vec![0.0f32; 4 * plane];
        let mut positions = Vec::with_capacity(POSITIONS);
        for row in 0..4 {
            for ci in 0..in_c {
                for co in 0..out_c {
                    let at = ci * out_c + co;
                    let g: [f32; 9] = std::array::from_fn(|k| w[k * plane + at]);
                    for (x, v) in transform_kernel_row(&g, row).into_iter().enumerate() {
                        row_planes[x * plane + at] = v;
                    }
                }
            }
            positions.extend(row_planes.chunks_exact(plane).map(|m| PackedB::pack(m, in_c, out_c, out_c)));
        }
        Self { positions, in_c, out_c }
    }

    pub(crate) fn in_c(&self) -> usize {
        self.in_c
    }

    pub(crate) fn out_c(&self) -> usize {
        self.out_c
    }
}

/// `G g G^T` for one 3x3 kernel `g` (row-major), as the 16 values of the 4x4 result, with
/// `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`. The load builds it a row at a
/// time ([`transform_kernel_row`]); the whole is what the tests check against the definition.
#[cfg(test)]
fn transform_kernel(g: &[f32; 9]) -> [f32; 16] {
    let mut u = [0.0f32; 16];
    for row in 0..4 {
        u[row * 4..row * 4 + 4].copy_from_slice(&transform_kernel_row(g, row));
    }
    u
}

/// Row `row` of [`transform_kernel`]'s result (positions `4 * row ..= 4 * row + 3`).
fn transform_kernel_row(g: &[f32; 9], row: usize) -> [f32; 4] {
    let side = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    // row `row` of G g (3 values), then that row times G^T
    let col = |j: usize| side(g[j], g[3 + j], g[6 + j])[row];
    side(col(0), col(1), col(2))
}

type Lanes = [f32; LANES];

/// `B^T d B` over `LANES` channels, `d` the 4x4 input block row-major, with
/// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
#[inline(always)]
fn transform_input(d: &[Lanes; 16]) -> [Lanes; 16] {
    #[inline(always)]
    fn side(a: &Lanes, b: &Lanes, c: &Lanes, e: &Lanes) -> [Lanes; 4] {
        let mut out = [[0.0f32; LANES]; 4];
        for l in 0..LANES {
            out[0][l] = a[l] - c[l];
            out[1][l] = b[l] + c[l];
            out[2][l] = c[l] - b[l];
            out[3][l] = b[l] - e[l];
        }
        out
    }
    let mut t = [[0.0f32; LANES]; 16];
    for j in 0..4 {
        let col = side(&d[j], &d[4 + j], &d[8 + j], &d[12 + j]);
        for i in 0..4 {
            t[i * 4 + j] = col[i];
        }
    }
    let mut v = [[0.0f32; LANES]; 16];
    for i in 0..4 {
        let row = side(&t[i * 4], &t[i * 4 + 1], &t[i * 4 + 2], &t[i * 4 + 3]);
        v[i * 4..i * 4 + 4].copy_from_slice(&row);
    }
    v
}

/// `A^T m A` over `LANES` channels, `m` the 4x4 product row-major, with
/// `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`: the 2x2 output block, row-major.
#[inline(always)]
fn transform_output(m: &[Lanes; 16]) -> [Lanes; 4] {
    #[inline(always)]
    fn side(a: &Lanes, b: &Lanes, c: &Lanes, e: &Lanes) -> [Lanes; 2] {
        let mut out = [[0.0f32; LANES]; 2];
        for l in 0..LANES {
            out[0][l] = a[l] + b[l] + c[l];
            out[1][l] = b[l] - c[l] - e[l];
        }
        out
    }
    let mut s = [[0.0f32; LANES]; 8];
    for j in 0..4 {
        let col = side(&m[j], &m[4 + j], &m[8 + j], &m[12 + j]);
        s[j] = col[0];
        s[4 + j] = col[1];
    }
    let mut y = [[0.0f32; LANES]; 4];
    for i in 0..2 {
        let row = side(&s[i * 4], &s[i * 4 + 1], &s[i * 4 + 2], &s[i * 4 + 3]);
        y[i * 2] = row[0];
        y[i * 2 + 1] = row[1];
    }
    y
}

impl Conv2d {
    /// Output tiles along each axis: `ceil(out / 2)`.
    fn tiles(&self) -> [usize; 2] {
        [self.out_h.div_ceil(2), self.out_w.div_ceil(2)]
    }

    /// The conv over [`WinogradWeights`] (the caller checked [`applies`]), NHWC in and out,
    /// with `residual` (the output's shape) added before the activation.
    pub(crate) fn run_winograd(&self, input: &[f32], weights: &WinogradWeights, bias: &[f32], residual: Option<&[f32]>, act: Option<Activation>, threads: usize) -> Vec<f32> {
        assert!(self.kernel == [3, 3] && self.strides == [1, 1] && self.dilations == [1, 1] && self.groups == 1, "winograd conv: not a 3x3 stride-1 conv");
        assert!(weights.in_c == self.in_c && weights.out_c == self.out_c, "winograd conv: weights for another shape");
        assert_eq!(input.len(), self.batch * self.in_h * self.in_w * self.in_c, "winograd conv: input size");
        assert_eq!(bias.len(), self.out_c, "winograd conv: bias size");
        let out_len = self.batch * self.out_h * self.out_w * self.out_c;
        assert!(residual.is_none_or(|r| r.len() == out_len), "winograd conv: residual size");
        // each output pixel lies in exactly one tile, which stores it
        filled(out_len, |output| self.write_winograd(input, weights, bias, residual, act, threads, output))
    }

    /// [`Self::run_winograd`] into `output`, every element of which it writes.
    #[allow(clippy::too_many_arguments)]
    fn write_winograd(&self, input: &[f32], weights: &WinogradWeights, bias: &[f32], residual: Option<&[f32]>, act: Option<Activation>, threads: usize, output: &mut [f32]) {
        let [th, tw] = self.tiles();
        let tiles = self.batch * th * tw;
        if tiles == 0 || self.out_c == 0 {
            return;
        }
        let target = (CHUNK_FLOATS / (POSITIONS * (self.in_c + self.out_c))).max(MIN_CHUNK_TILES);
        let job = Job { conv: self, input, weights, bias, residual, act };
        // a run of whole tile rows writes one contiguous run of output rows
        let row_start = |tile_row: usize| (tile_row / th * self.out_h + (2 * (tile_row % th)).min(self.out_h)) * self.out_w * self.out_c;
        let tile_rows = self.batch * th;
        // Few tiles (batch 1 at 14x14 or 7x7) split by positions inside each chunk, each thread
        // reading half of the weights; but where the weights are small (DenseNet's 128 -> 32
        // convs: 256 KiB) the transforms, which that leaves on one thread, cost more than
        // reading all the weights twice, so the tiles split.
        let small_weights = POSITIONS * self.in_c * self.out_c <= SMALL_WEIGHTS;
        let split_tiles = tiles >= 2 * MIN_CHUNK_TILES || (small_weights && tiles >= 2 * MIN_SHARE_TILES);
        if threads > 1 && split_tiles && tile_rows >= threads {
            // each thread one contiguous share of whole tile rows, chunked on its own
            let mut shares = Vec::with_capacity(threads);
            let mut rest = &mut output[..];
            let mut taken = 0;
            for t in 0..threads {
                let (r0, r1) = (t * tile_rows / threads, (t + 1) * tile_rows / threads);
                let (share, tail) = rest.split_at_mut(row_start(r1) - taken);
                shares.push((r0 * tw, r1 * tw, row_start(r0), share));
                taken = row_start(r1);
                rest = tail;
            }
            shares.into_par_iter().for_each(|(first, end, base, share)| job.share(first, end, target, 1, share, base));
        } else {
            job.share(0, tiles, target, threads, output, 0);
        }
    }
}

struct Job<'a> {
    conv: &'a Conv2d,
    input: &'a [f32],
    weights: &'a WinogradWeights,
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    act: Option<Activation>,
}

impl Job<'_> {
    /// Tiles `first..end` in chunks of about `target`, writing `out`, the output from element
    /// `base` on.
    fn share(&self, first: usize, end: usize, target: usize, threads: usize, out: &mut [f32], base: usize) {
        // equal chunks, so the last is not a sliver that pays a full weight read
        let rows = (end - first).div_ceil((end - first).div_ceil(target).max(1)).max(1);
        let (in_c, out_c) = (self.conv.in_c, self.conv.out_c);
        with_scratch(POSITIONS * rows * (in_c + out_c), |scratch| {
            let mut at = first;
            while at < end {
                let count = rows.min(end - at);
                let (v, rest) = scratch.split_at_mut(POSITIONS * count * in_c);
                self.chunk(at, count, v, &mut rest[..POSITIONS * count * out_c], threads, out, base);
                at += count;
            }
        });
    }

    /// Tiles `first..first + rows`: transform into `v`, 16 GEMMs into `m` (split across
    /// `threads` by position when the caller could not split the tiles), transform back. `v`
    /// and `m` are scratch: every element is written before it is read.
    #[allow(clippy::too_many_arguments)]
    fn chunk(&self, first: usize, rows: usize, v: &mut [f32], m: &mut [f32], threads: usize, out: &mut [f32], base: usize) {
        let (in_c, out_c) = (self.conv.in_c, self.conv.out_c);
        for r in 0..rows {
            self.load(first + r, r, rows, v);
        }
        let v = &*v;
        let product = |xi: usize, m: &mut [f32]| gemm(&v[xi * rows * in_c..], in_c, rows, &self.weights.positions[xi], m, out_c, &Epilogue::default());
        if threads > 1 {
            let per = POSITIONS.div_ceil(threads);
            m.par_chunks_mut(per * rows * out_c).enumerate().for_each(|(t, ms)| {
                for (i, m) in ms.chunks_exact_mut(rows * out_c).enumerate() {
                    product(t * per + i, m);
                }
            });
        } else {
            for (xi, m) in m.chunks_exact_mut(rows * out_c).enumerate() {
                product(xi, m);
            }
        }
        for r in 0..rows {
            self.store(first + r, r, rows, m, out, base);
        }
    }

    /// `(image, tile row, tile column)` of a tile index.
    fn place(&self, tile: usize) -> (usize, usize, usize) {
        let [th, tw] = self.conv.tiles();
        (tile / (th * tw), tile % (th * tw) / tw, tile % tw)
    }

    /// Writes tile `tile`'s `B^T d B` into row `r` of each of the 16 `V` matrices.
    fn load(&self, tile: usize, r: usize, rows: usize, v: &mut [f32]) {
        let c = self.conv;
        let (n, ty, tx) = self.place(tile);
        let image = &self.input[n * c.in_h * c.in_w * c.in_c..][..c.in_h * c.in_w * c.in_c];
        // the 16 input pixels of the 4x4 block, None where it hangs over the padding
        let pixel = |k: usize| -> Option<&[f32]> {
            let iy = (2 * ty + k / 4) as isize - c.pad_begin[0] as isize;
            let ix = (2 * tx + k % 4) as isize - c.pad_begin[1] as isize;
            (iy >= 0 && ix >= 0 && (iy as usize) < c.in_h && (ix as usize) < c.in_w).then(|| &image[(iy as usize * c.in_w + ix as usize) * c.in_c..][..c.in_c])
        };
        let pixels: [Option<&[f32]>; 16] = std::array::from_fn(pixel);
        let stride = rows * c.in_c;
        // zeroed once per tile, not per channel block (that memset was 7% of DenseNet's
        // batch-1 run): the padding pixels are never written, and lanes past a short last
        // block's `width` hold the block before's values, which are never stored
        let mut d = [[0.0f32; LANES]; 16];
        for c0 in (0..c.in_c).step_by(LANES) {
            let width = LANES.min(c.in_c - c0);
            for (lanes, p) in d.iter_mut().zip(&pixels) {
                if let Some(p) = p {
                    copy_lanes(lanes, &p[c0..], width);
                }
            }
            for (xi, lanes) in transform_input(&d).iter().enumerate() {
                copy_lanes(&mut v[xi * stride + r * c.in_c + c0..], lanes, width);
            }
        }
    }

    /// Transforms row `r` of the 16 `M` matrices back into tile `tile`'s output pixels, with
    /// bias, residual and activation; `out` starts at output element `base`.
    fn store(&self, tile: usize, r: usize, rows: usize, m: &[f32], out: &mut [f32], base: usize) {
        let c = self.conv;
        let (n, ty, tx) = self.place(tile);
        let stride = rows * c.out_c;
        let mut block = [[0.0f32; LANES]; 4];
        // the block's pixels inside the output (an odd size leaves the last tiles half empty)
        let inside = |k: usize| 2 * ty + k / 2 < c.out_h && 2 * tx + k % 2 < c.out_w;
        let offset = |k: usize| ((n * c.out_h + 2 * ty + k / 2) * c.out_w + 2 * tx + k % 2) * c.out_c;
        // every block overwrites the lanes it stores (as in `load`)
        let mut p = [[0.0f32; LANES]; 16];
        for c0 in (0..c.out_c).step_by(LANES) {
            let width = LANES.min(c.out_c - c0);
            for (xi, lanes) in p.iter_mut().enumerate() {
                copy_lanes(lanes, &m[xi * stride + r * c.out_c + c0..], width);
            }
            let y = transform_output(&p);
            for (k, (dst, y)) in block.iter_mut().zip(&y).enumerate() {
                if !inside(k) {
                    continue;
                }
                for l in 0..width {
                    dst[l] = y[l] + self.bias[c0 + l];
                }
                if let Some(res) = self.residual {
                    for (d, r) in dst[..width].iter_mut().zip(&res[offset(k) + c0..]) {
                        *d += r;
                    }
                }
                activation::apply(self.act, &mut dst[..width]);
                copy_lanes(&mut out[offset(k) - base + c0..], dst, width);
            }
        }
    }
}

/// The first `width` floats of `src` into `dst`: a full vector of lanes as moves of a size
/// known when compiling, which the compiler turns into vector loads and stores, where a
/// `copy_from_slice` of a run-time width is a `memcpy` call per 16 floats (32 calls per tile
/// and channel block).
#[inline(always)]
fn copy_lanes(dst: &mut [f32], src: &[f32], width: usize) {
    if width == LANES {
        dst[..LANES].copy_from_slice(&src[..LANES]);
    } else {
        dst[..width].copy_from_slice(&src[..width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    /// The direct sum in float64, NHWC / HWIO.
    fn reference(c: &Conv2d, input: &[f32], w: &[f32], bias: &[f32], residual: Option<&[f32]>) -> Vec<f64> {
        let mut out = vec![0.0f64; c.batch * c.out_h * c.out_w * c.out_c];
        for n in 0..c.batch {
            for oh in 0..c.out_h {
                for ow in 0..c.out_w {
                    for m in 0..c.out_c {
                        let mut acc = bias[m] as f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oh + ky) as isize - c.pad_begin[0] as isize;
                                let ix = (ow + kx) as isize - c.pad_begin[1] as isize;
                                if iy < 0 || ix < 0 || iy as usize >= c.in_h || ix as usize >= c.in_w {
                                    continue;
                                }
                                for ci in 0..c.in_c {
                                    let x = input[((n * c.in_h + iy as usize) * c.in_w + ix as usize) * c.in_c + ci] as f64;
                                    acc += x * w[((ky * 3 + kx) * c.in_c + ci) * c.out_c + m] as f64;
                                }
                            }
                        }
                        let at = ((n * c.out_h + oh) * c.out_w + ow) * c.out_c + m;
                        out[at] = acc + residual.map_or(0.0, |r| r[at] as f64);
                    }
                }
            }
        }
        out
    }

    /// Even and odd output sizes (half-empty last tiles), every padding from none to more than
    /// the kernel's reach on one side, channel counts with and without a lane tail, a residual,
    /// several chunks, and the threaded paths (tiles shared out, positions shared out), against
    /// the float64 direct sum: within 1e-5 of the output's largest magnitude.
    #[test]
    fn matches_the_direct_sum_for_every_tile_and_padding() {
        let cases = [
            // batch, in_h, in_w, in_c, out_c, pad [top, left], extra pad [bottom, right], residual
            (1, 6, 6, 64, 16, [1, 1], [1, 1], false),
            (2, 7, 5, 70, 17, [1, 1], [1, 1], true),
            (1, 9, 8, 64, 40, [0, 0], [0, 0], false),
            (3, 5, 6, 65, 16, [2, 0], [0, 2], true),
            (1, 3, 3, 64, 16, [1, 1], [1, 1], false),
            (2, 30, 30, 64, 32, [1, 1], [1, 1], true), // several chunks, tiles shared by threads
            (1, 14, 14, 96, 48, [1, 1], [1, 1], false), // few tiles, small weights: tiles shared
            (1, 6, 6, 128, 160, [1, 1], [1, 1], true), // few tiles, large weights: positions shared
        ];
        for (batch, in_h, in_w, in_c, out_c, pad, extra, with_residual) in cases {
            let (out_h, out_w) = (in_h + pad[0] + extra[0] - 2, in_w + pad[1] + extra[1] - 2);
            let c = Conv2d { batch, in_h, in_w, in_c, out_h, out_w, out_c, kernel: [3, 3], strides: [1, 1], dilations: [1, 1], pad_begin: pad, groups: 1 };
            let input = values(batch * in_h * in_w * in_c, 1.0);
            let w = values(9 * in_c * out_c, 2.0);
            let bias = values(out_c, 3.0);
            let residual = with_residual.then(|| values(batch * out_h * out_w * out_c, 4.0));
            let weights = WinogradWeights::from_hwio(&w, in_c, out_c);
            let want = reference(&c, &input, &w, &bias, residual.as_deref());
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for act in [None, Some(Activation::Relu)] {
                for threads in [1, 2] {
                    let got = c.run_winograd(&input, &weights, &bias, residual.as_deref(), act, threads);
                    assert_eq!(got.len(), want.len());
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        let w = if act.is_some() { w.max(0.0) } else { *w };
                        assert!((*g as f64 - w).abs() <= 1e-5 * scale, "case {c:?} {act:?} threads {threads} at {i}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_kernel_transform_is_g_g_gt() {
        let g: [f32; 9] = std::array::from_fn(|i| (i as f32 * 0.37).cos());
        let big_g = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        let u = transform_kernel(&g);
        for i in 0..4 {
            for j in 0..4 {
                let mut want = 0.0f64;
                for a in 0..3 {
                    for b in 0..3 {
                        want += big_g[i][a] * g[a * 3 + b] as f64 * big_g[j][b];
                    }
                }
                assert!((u[i * 4 + j] as f64 - want).abs() < 1e-6, "({i}, {j})");
            }
        }
    }
}
