//! Weights packed once at load, and one register-tiled GEMM over them for conv, dense and RNN
//! cells, with bias, residual and activation applied to each output tile while it is still hot.
//!
//! `super::gemm::sgemm` goes through the gemm crate, which packs B on every call. Weights never
//! change after load, and for layers with few output rows (batch-1 ResNet50's 7x7 stages:
//! m = 49, k = 2048, n = 512) that packing costs as much as the arithmetic. Here B is packed
//! once, into the column panels the micro-kernel streams (what onnxruntime does at session
//! creation), and A is read in place: the kernel broadcasts A elements straight from its
//! row-major rows (NHWC pixels, im2col rows, a batch of dense inputs), so a call copies nothing,
//! except where A's rows lie a multiple of 2 KiB apart and alias in L1 (see `run`).
//!
//! Blocking, outermost first:
//! - `MC` rows of A, so their `KC`-wide slice (at most ~140 KiB) stays in L2 while every B panel
//!   passes over it;
//! - `KC` of the inner dimension, so a `KC x NR` slice of one B panel (16 KiB) stays in L1 while
//!   every micro-tile of the M block reuses it; partial sums accumulate in C across K blocks, and
//!   the epilogue runs with the last one;
//! - one B panel of `NR` columns;
//! - `MR` rows: one micro-tile, `MR x NR` accumulators in registers.
//!
//! The kernels see one strip at a time ([`Strip`]: one B panel slice against the M block's
//! rows), checked against its slices, so the SIMD module's `unsafe` rests on nothing but those
//! checks; the loop over micro-tiles runs inside the kernel module, where the check and the
//! dispatch are paid once per strip instead of once per 6 x 16 tile (that overhead was a fifth
//! of the time at k = 64).


use std::sync::OnceLock;

use rayon::prelude::*;

use super::activation::{self, Activation};
use super::scratch::with_scratch;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;
#[cfg(target_arch = "x86_64")]
mod raw;

/// Columns per B panel: two AVX2 vectors, four SSE or NEON vectors in the portable tile.
const NR: usize = 16;

/// Inner-dimension block: a `KC x NR` B slice is 16 KiB, half of a 32 KiB L1d, leaving room for
/// the A rows streaming past it. `k` is split into equal blocks no larger than this, so k = 300
/// is two blocks of 150 rather than 256 + 44.
const KC: usize = 256;

/// Rows of A per M block: `MC x KC` floats is 138 KiB, a quarter of a Zen 2/3 L2, so the block
/// survives the B panels streaming through beside it (A is not packed, so its rows sit `lda`
/// apart and use more sets than a packed block would). Rounded down to whole micro-tiles of
/// the kernel that runs (132 rows for AVX-512's 12, 138 for AVX2's 6), so no M block but the
/// last ends in a ragged tile.
const MC: usize = 138;

/// Multiply-adds below which [`gemm_parallel`] stays on the calling thread: waking the pool costs
/// tens of microseconds, about what 2M MACs take on one core at full speed.
const PARALLEL_MACS: usize = 2 << 20;

/// B (`k x n`, the weights) packed once at load into column panels of `NR` floats: panel `p`
/// holds columns `p * NR..` as `k` rows of `NR` contiguous floats, the tail panel zero-padded,
/// so the kernel reads each K step's B values with two unaligned vector loads and never tests
/// for the edge of the matrix.
#[derive(Debug, Clone)]
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// `b` is row-major `[k, n]` with `row_stride` (>= n) floats per row: HWIO conv weights
    /// (`k = kh * kw * in_c`), a Keras Dense kernel, an RNN's stacked input weights.
    pub(crate) fn pack(b: &[f32], k: usize, n: usize, row_stride: usize) -> Self {
        assert!(row_stride >= n || k <= 1, "PackedB::pack: row stride {row_stride} < n {n}");
        Self::pack_view(b, k, n, row_stride, 1)
    }

    /// Element `(kk, j)` of B is `b[kk * row_stride + j * col_stride]`: `(1, k)` strides pack the
    /// transpose of a `[n, k]` matrix (ONNX Gemm with `transB = 1`, ONNX RNN/LSTM/GRU `W` and `R`)
    /// without the caller building a transposed copy first.
    pub(crate) fn pack_view(b: &[f32], k: usize, n: usize, row_stride: usize, col_stride: usize) -> Self {
        assert!(span(k, n, row_stride, col_stride).is_some_and(|end| end <= b.len()), "PackedB::pack: {k}x{n} view exceeds its slice of {}", b.len());
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0f32; panels * k * NR];
        if k > 0 {
            for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
                let j0 = p * NR;
                let cols = NR.min(n - j0);
                for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                    for (j, v) in row[..cols].iter_mut().enumerate() {
                        *v = b[kk * row_stride + (j0 + j) * col_stride];
                    }
                }
            }
        }
        Self { k, n, data }
    }

    pub(crate) fn k(&self) -> usize {
        self.k
    }

    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Panels `first..end` as one run of memory (panels are stored back to back).
    fn panels(&self, first: usize, end: usize) -> &[f32] {
        &self.data[first * self.k * NR..end * self.k * NR]
    }
}

/// What happens to each finished C tile while it is still in registers (or, for sigmoid and
/// tanh, in L1): a conv's bias, a ResNet block's shortcut and its activation cost no extra pass
/// over the output.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    /// `n` values, added to every row.
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) activation: Option<Activation>,
    /// Same layout as `c` (`m` rows of `ldc`), added after the bias and before the activation.
    pub(crate) residual: Option<&'a [f32]>,
}

/// `c[m x n]` (row stride `ldc`) = `epilogue(a[m x k] * b)`, on the calling thread. `a` is
/// row-major with row stride `lda` (>= k), so conv callers pass NHWC pixels or im2col rows
/// directly. Panics if a view does not fit its slice (a caller's shape bug).
pub(crate) fn gemm(a: &[f32], lda: usize, m: usize, b: &PackedB, c: &mut [f32], ldc: usize, epilogue: &Epilogue<'_>) {
    gemm_with(Isa::detect(), a, lda, m, b, c, ldc, epilogue, 1, PARALLEL_MACS);
}

/// [`gemm`] split across `threads` rayon tasks once the product is large enough to pay for
/// waking them. Many rows split by rows (in whole micro-tiles, so no task gets a ragged tile
/// in the middle); few rows (batch-1 dense layers, 7x7 conv stages) split the B panels instead,
/// each task writing its columns to a private buffer that is copied into `c` afterwards, a
/// copy of `m * n` floats against `m * k * n` multiply-adds. Each task reads all of A then, but
/// only its own share of B, which is the larger operand in those layers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_parallel(a: &[f32], lda: usize, m: usize, b: &PackedB, c: &mut [f32], ldc: usize, epilogue: &Epilogue<'_>, threads: usize) {
    gemm_with(Isa::detect(), a, lda, m, b, c, ldc, epilogue, threads, PARALLEL_MACS);
}

/// The instruction set a call runs at: detected once, or named by the tests.
#[derive(Debug, Clone, Copy)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
    #[cfg(target_arch = "x86_64")]
    Avx2Fma(avx2::Avx2Fma),
    Portable,
}

impl Isa {
    fn detect() -> Self {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            // CANDLE_SERVING_ISA=avx2 or portable caps the choice, for side-by-side timings
            let cap = std::env::var("CANDLE_SERVING_ISA").unwrap_or_default();
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = avx512::Avx512::new().filter(|_| cap.is_empty() || cap == "avx512") {
                return Self::Avx512(token);
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = avx2::Avx2Fma::new().filter(|_| cap != "portable") {
                return Self::Avx2Fma(token);
            }
            Self::Portable
        })
    }

    /// Every kernel this CPU can run, best last: the tests check each one.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut isas = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            isas.extend(avx2::Avx2Fma::new().map(Self::Avx2Fma));
            isas.extend(avx512::Avx512::new().map(Self::Avx512));
        }
        isas
    }

    /// Rows per micro-tile.
    fn mr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(_) => avx512::MR,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma(_) => avx2::MR,
            Self::Portable => portable::MR,
        }
    }

    fn strip(self, strip: Strip<'_>) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(token) => avx512::strip(token, strip),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma(token) => avx2::strip(token, strip),
            Self::Portable => portable::strip(strip),
        }
    }
}

/// One B panel slice against a block of rows: `c[rows x cols] (+)= a[rows x kc] * b[kc x NR]`,
/// then `finish` on the last K block. Each slice starts at the strip's first element.
struct Strip<'t> {
    a: &'t [f32],
    lda: usize,
    rows: usize,
    kc: usize,
    /// `kc` rows of `NR` floats.
    b: &'t [f32],
    c: &'t mut [f32],
    ldc: usize,
    /// 1..=NR; the B panel is zero-padded to NR, but C and the epilogue inputs end at `cols`.
    cols: usize,
    /// Add to what C holds (a previous K block's partial sums) instead of overwriting it.
    accumulate: bool,
    finish: Option<Finish<'t>>,
    /// The `kc x NR` B slice the next strip reads, pulled towards L1 while this one computes:
    /// each slice is used by one strip only, and hardware prefetchers lose the stream where it
    /// jumps from one panel to the next.
    next_b: Option<&'t [f32]>,
}

/// The epilogue as one strip sees it: `bias` from the strip's first column, `residual` from its
/// first element with `ldr` floats per row.
#[derive(Clone, Copy)]
struct Finish<'t> {
    bias: Option<&'t [f32]>,
    residual: Option<&'t [f32]>,
    ldr: usize,
    activation: Option<Activation>,
}

impl Strip<'_> {
    /// Every index a kernel touches lies inside its slice; the SIMD kernel's soundness rests
    /// on this and nothing else, so it is checked here, not trusted from the driver.
    fn check(&self) {
        let fits = |len: usize, rows: usize, cols: usize, stride: usize| span(rows, cols, stride, 1).is_some_and(|end| end <= len);
        assert!(self.rows >= 1 && (1..=NR).contains(&self.cols) && self.kc >= 1, "packed strip: empty or too wide");
        assert!(fits(self.a.len(), self.rows, self.kc, self.lda), "packed strip: A view exceeds its slice");
        let b_len = self.kc.checked_mul(NR);
        assert!(b_len.is_some_and(|len| len <= self.b.len()), "packed strip: B view exceeds its slice");
        assert!(self.next_b.is_none_or(|next| b_len.is_some_and(|len| len <= next.len())), "packed strip: next B view exceeds its slice");
        assert!(fits(self.c.len(), self.rows, self.cols, self.ldc), "packed strip: C view exceeds its slice");
        if let Some(f) = &self.finish {
            assert!(f.bias.is_none_or(|b| b.len() >= self.cols), "packed strip: bias shorter than the strip");
            assert!(f.residual.is_none_or(|r| fits(r.len(), self.rows, self.cols, f.ldr)), "packed strip: residual view exceeds its slice");
        }
    }
}

/// One past the largest index a `rows x cols` view touches; `None` on overflow.
fn span(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(row_stride)?.checked_add((cols - 1).checked_mul(col_stride)?)?.checked_add(1)
}

#[allow(clippy::too_many_arguments)]
/// `parallel_macs` is [`PARALLEL_MACS`] except in tests, which split small products too.
fn gemm_with(isa: Isa, a: &[f32], lda: usize, m: usize, b: &PackedB, c: &mut [f32], ldc: usize, epilogue: &Epilogue<'_>, threads: usize, parallel_macs: usize) {
    let (k, n) = (b.k, b.n);
    assert!(lda >= k, "packed gemm: lda {lda} < k {k}");
    assert!(ldc >= n, "packed gemm: ldc {ldc} < n {n}");
    assert!(span(m, k, lda, 1).is_some_and(|end| end <= a.len()), "packed gemm: A ({m}x{k}, lda {lda}) exceeds its slice of {}", a.len());
    let c_end = span(m, n, ldc, 1).filter(|&end| end <= c.len());
    let Some(c_end) = c_end else { panic!("packed gemm: C ({m}x{n}, ldc {ldc}) exceeds its slice of {}", c.len()) };
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), n, "packed gemm: bias has {} values for {n} columns", bias.len());
    }
    if let Some(r) = epilogue.residual {
        assert!(c_end <= r.len(), "packed gemm: residual ({m}x{n}, ldc {ldc}) exceeds its slice of {}", r.len());
    }
    if m == 0 || n == 0 {
        return;
    }
    let c = &mut c[..c_end];
    let finish = Finish { bias: epilogue.bias, residual: epilogue.residual, ldr: ldc, activation: epilogue.activation };
    let panels = n.div_ceil(NR);
    let macs = m.saturating_mul(k).saturating_mul(n);
    if threads <= 1 || macs < parallel_macs {
        return run(isa, a, lda, m, b.panels(0, panels), k, n, c, ldc, finish);
    }
    let mr = isa.mr();
    // Work of the busiest task, in micro-tiles, either way. Whole-tile row shares leave one
    // task short where the tiles do not divide evenly (m = 49 on 2 threads is 5 tiles against
    // 4), where panel shares of a ResNet stage split evenly; panels win only clearly, since they
    // cost the private buffers and the copy.
    let row_tiles = m.div_ceil(mr);
    let by_rows = row_tiles.div_ceil(threads) * panels;
    let by_panels = row_tiles * panels.div_ceil(threads);
    let split_panels = panels >= 2 && (m < 2 * mr * threads || by_panels * 20 < by_rows * 19);
    if !split_panels {
        let per = row_tiles.div_ceil(threads) * mr;
        c.par_chunks_mut(per * ldc).enumerate().for_each(|(i, c)| {
            let r0 = i * per;
            let rows = per.min(m - r0);
            let finish = Finish { residual: finish.residual.map(|r| &r[r0 * ldc..]), ..finish };
            run(isa, &a[r0 * lda..], lda, rows, b.panels(0, panels), k, n, c, ldc, finish);
        });
    } else {
        let tasks = threads.min(panels);
        let per = panels.div_ceil(tasks);
        let parts: Vec<(usize, usize, Vec<f32>)> = (0..panels.div_ceil(per))
            .into_par_iter()
            .map(|t| {
                let (p0, p1) = (t * per, ((t + 1) * per).min(panels));
                let (j0, j1) = (p0 * NR, (p1 * NR).min(n));
                let width = j1 - j0;
                let mut part = vec![0.0f32; m * width];
                let finish = Finish { bias: finish.bias.map(|bias| &bias[j0..j1]), residual: finish.residual.map(|r| &r[j0..]), ..finish };
                run(isa, a, lda, m, b.panels(p0, p1), k, width, &mut part, width, finish);
                (j0, width, part)
            })
            .collect();
        for (j0, width, part) in parts {
            for (row, src) in c.chunks_mut(ldc).zip(part.chunks_exact(width)) {
                row[j0..j0 + width].copy_from_slice(src);
            }
        }
    }
}

/// The blocked loop nest over one thread's share; `panels` holds `n.div_ceil(NR)` panels of
/// `k x NR`, `finish.residual` starts at this share's first element.
#[allow(clippy::too_many_arguments)]
fn run(isa: Isa, a: &[f32], lda: usize, m: usize, panels: &[f32], k: usize, n: usize, c: &mut [f32], ldc: usize, finish: Finish<'_>) {
    if k == 0 {
        return epilogue_only(c, ldc, m, n, finish);
    }
    // K blocks exist so a B slice stays in L1 across the M block's micro-tiles; with a single
    // micro-tile of rows (batch-1 dense) there is no reuse to protect, and one pass per panel
    // streams B front to back, which is all a GEMV-shaped call can do.
    let blocks = if m <= isa.mr() { 1 } else { k.div_ceil(KC) };
    let kc_max = k.div_ceil(blocks);
    let npanels = n.div_ceil(NR);
    let slice = |p: usize, k0: usize, kc: usize| &panels[p * k * NR + k0 * NR..][..kc * NR];
    let mc = MC / isa.mr() * isa.mr();
    // A rows a multiple of 2 KiB apart (1x1 convs over 512, 1024 or 2048 channels) put a
    // tile's rows in the same few L1 sets: twelve of them overflow its eight ways, and the
    // AVX-512 kernel lost a quarter of its speed at lda = 1024. Such blocks are copied, once per
    // M and K block, into rows one cache line longer than the block, which every panel then
    // reads.
    let copy_a = lda.is_multiple_of(512) && npanels > 1 && m > isa.mr();
    let ldp = kc_max + 16;
    // the copied rows' first kc floats are written before every read (scratch, not zeroed)
    with_scratch(if copy_a { mc.min(m) * ldp } else { 0 }, |a_block| {
        for i0 in (0..m).step_by(mc) {
            let rows = mc.min(m - i0);
            for kb in 0..blocks {
                let k0 = kb * kc_max;
                let kc = kc_max.min(k - k0);
                let last = kb + 1 == blocks;
                let (a_strip, a_stride) = if copy_a {
                    for (r, dst) in a_block.chunks_exact_mut(ldp).take(rows).enumerate() {
                        dst[..kc].copy_from_slice(&a[(i0 + r) * lda + k0..][..kc]);
                    }
                    (&a_block[..], ldp)
                } else {
                    (&a[i0 * lda + k0..], lda)
                };
                for p in 0..npanels {
                    let j0 = p * NR;
                    let next_b = if p + 1 < npanels {
                        Some(slice(p + 1, k0, kc))
                    } else if !last {
                        Some(slice(0, k0 + kc, kc_max.min(k - k0 - kc)))
                    } else {
                        None
                    };
                    let finish = last.then(|| Finish {
                        bias: finish.bias.map(|bias| &bias[j0..]),
                        residual: finish.residual.map(|r| &r[i0 * finish.ldr + j0..]),
                        ..finish
                    });
                    isa.strip(Strip {
                        a: a_strip,
                        lda: a_stride,
                        rows,
                        kc,
                        b: slice(p, k0, kc),
                        c: &mut c[i0 * ldc + j0..],
                        ldc,
                        cols: NR.min(n - j0),
                        accumulate: kb > 0,
                        finish,
                        // Shorter than this strip's kc at the last K block of uneven splits: skip it.
                        // Unblocked (m <= MR), the panels are read back to back, one sequential stream
                        // the hardware prefetcher already follows, and a whole slice would not fit L1.
                        next_b: next_b.filter(|next| blocks > 1 && next.len() >= kc * NR),
                    });
                }
            }
        }
    });
}

/// `k == 0`: the product is zero, so C is the epilogue of nothing.
fn epilogue_only(c: &mut [f32], ldc: usize, m: usize, n: usize, finish: Finish<'_>) {
    for (i, row) in c.chunks_mut(ldc).take(m).enumerate() {
        let row = &mut row[..n];
        row.fill(0.0);
        finish_row(row, finish.bias, finish.residual.map(|r| &r[i * finish.ldr..]), finish.activation);
    }
}

/// The scalar epilogue of one row of finished sums: the portable kernel's, and the reference
/// order (bias, residual, activation) the SIMD kernels follow in registers.
fn finish_row(row: &mut [f32], bias: Option<&[f32]>, residual: Option<&[f32]>, act: Option<Activation>) {
    if let Some(bias) = bias {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
    if let Some(r) = residual {
        row.iter_mut().zip(r).for_each(|(v, r)| *v += r);
    }
    activation::apply(act, row);
}

#[cfg(test)]
mod tests;
