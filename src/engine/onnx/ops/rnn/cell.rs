//! One direction over one slice of the batch: the input projection for many timesteps as one
//! GEMM, then per step one GEMM against the recurrent weights and the gate math row by row on
//! host buffers (no tensor per step: at batch 1 per-op overhead would dominate).

use pulp::{Simd, WithSimd};

use super::aligned::Aligned;
use super::gemm::{Operand, Start, gemm};
use super::math::{Activation, activate, clip, lanewise};

/// Bytes of input projection computed ahead: all timesteps at small batch (one GEMM), fewer
/// at large batch so that a block is still in L2 when its steps read it. Projecting all 28
/// steps of a batch of 64 at once (3.6 MB) made every step's read a trip to memory.
const PROJECTION_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cell {
    Lstm { input_forget: bool },
    Gru { linear_before_reset: bool },
    Rnn,
}

impl Cell {
    pub(super) fn gates(self) -> usize {
        match self {
            Cell::Lstm { .. } => 4,
            Cell::Gru { .. } => 3,
            Cell::Rnn => 1,
        }
    }

    /// How many activation functions one direction names (f, g, h for LSTM).
    pub(super) fn activations(self) -> usize {
        match self {
            Cell::Lstm { .. } => 3,
            Cell::Gru { .. } => 2,
            Cell::Rnn => 1,
        }
    }
}

/// One direction's weights as the kernels read them.
pub(super) struct DirWeights {
    /// W transposed: input x (gates * hidden), so the projection is a plain row-major GEMM.
    pub(super) w_t: Aligned,
    /// R transposed: hidden x (gates * hidden).
    pub(super) r_t: Aligned,
    /// Every bias that can be added before the recurrence, folded into the projection.
    pub(super) bias: Vec<f32>,
    /// GRU with `linear_before_reset`: Rbh, which must stay inside `r * (h R_h^T + Rbh)`.
    pub(super) rbh: Vec<f32>,
    /// LSTM peepholes in ONNX order (i, o, f).
    pub(super) peephole: Option<Vec<f32>>,
}

/// A block of the input projection: row (t, j) at ((t - first) * rows + j) * gates * hidden.
struct Projection {
    buf: Aligned,
    /// Timesteps per block.
    block: usize,
    first: usize,
    /// Timesteps `buf` holds now (0 before the first block).
    len: usize,
}

impl Projection {
    #[inline(always)]
    fn row(&self, t: usize, j: usize, rows: usize, gh: usize) -> &[f32] {
        let row = (t - self.first) * rows + j;
        &self.buf[row * gh..(row + 1) * gh]
    }
}

/// Where the input row for (timestep t, batch row j of this slice) lives.
#[derive(Clone, Copy)]
pub(super) enum Input<'a> {
    /// `layout = 0`: the whole X as [seq, batch, input]; this slice starts at batch row `first`.
    TimeMajor { x: &'a [f32], batch: usize, first: usize },
    /// `layout = 1`: this slice's rows of X, [rows, seq, input].
    BatchMajor { x: &'a [f32] },
}

pub(super) struct Unit<'a> {
    pub(super) cell: Cell,
    /// This direction's activation functions (f, g, h as the cell uses them).
    pub(super) acts: &'a [Activation],
    pub(super) clip: Option<f32>,
    pub(super) reverse: bool,
    pub(super) weights: &'a DirWeights,
    pub(super) input: Input<'a>,
    pub(super) input_size: usize,
    pub(super) hidden: usize,
    pub(super) steps: usize,
    /// Valid steps per batch row of this slice.
    pub(super) lens: &'a [usize],
    /// Initial states for this slice's rows, [rows, hidden].
    pub(super) h0: Option<&'a [f32]>,
    pub(super) c0: Option<&'a [f32]>,
    /// Y rows of this slice, indexed t * rows + j; empty when Y is not requested.
    pub(super) y: Vec<Option<&'a mut [f32]>>,
    pub(super) y_h: Vec<Option<&'a mut [f32]>>,
    pub(super) y_c: Vec<Option<&'a mut [f32]>>,
}

impl WithSimd for Unit<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let rows = self.lens.len();
        let (hid, steps) = (self.hidden, self.steps);
        let gh = self.cell.gates() * hid;
        let uniform = self.lens.iter().all(|&l| l == steps);
        // Ragged lengths read different timesteps in one step: project them all up front.
        let block = if uniform { (PROJECTION_BYTES / (rows * gh * 4).max(1)).clamp(1, steps.max(1)) } else { steps.max(1) };
        let mut proj = Projection { buf: Aligned::zeros(block * rows * gh), block, first: 0, len: 0 };
        let state = |initial: Option<&[f32]>| initial.map_or_else(|| Aligned::zeros(rows * hid), Aligned::from_slice);
        let mut h = state(self.h0);
        let mut c = match self.cell {
            Cell::Lstm { .. } => state(self.c0),
            _ => Aligned::zeros(0),
        };
        let mut g = Aligned::zeros(rows * gh);
        let mut reset_h = match self.cell {
            Cell::Gru { linear_before_reset: false } => Aligned::zeros(rows * hid),
            _ => Aligned::zeros(0),
        };
        let w = self.weights;
        let r_t = Operand { data: &w.r_t, stride: gh };
        let longest = self.lens.iter().copied().max().unwrap_or(0);

        for step in 0..longest {
            let time = |j: usize| if self.reverse { self.lens[j] - 1 - step } else { step };
            let active = |j: usize| step < self.lens[j];
            if let Some(j) = (0..rows).find(|&j| active(j)) {
                self.project(s, &mut proj, time(j), rows);
            }
            let x_row = |t: usize, j: usize| proj.row(t, j, rows, gh);
            match self.cell {
                Cell::Lstm { input_forget } => {
                    gemm(s, rows, gh, hid, Operand { data: &h, stride: hid }, r_t, &mut g, gh, Start::Zero);
                    for j in (0..rows).filter(|&j| active(j)) {
                        let (gj, cj, hj) = (&mut g[j * gh..(j + 1) * gh], &mut c[j * hid..(j + 1) * hid], &mut h[j * hid..(j + 1) * hid]);
                        self.lstm_row(s, input_forget, x_row(time(j), j), gj, cj, hj);
                    }
                }
                Cell::Gru { linear_before_reset: true } => {
                    gemm(s, rows, gh, hid, Operand { data: &h, stride: hid }, r_t, &mut g, gh, Start::Zero);
                    for j in (0..rows).filter(|&j| active(j)) {
                        let x = x_row(time(j), j);
                        let (gj, hj) = (&mut g[j * gh..(j + 1) * gh], &mut h[j * hid..(j + 1) * hid]);
                        self.gru_gates(s, x, gj);
                        let (zr, gh_part) = gj.split_at_mut(2 * hid);
                        let (r, xh, rbh) = (&zr[hid..], &x[2 * hid..], w.rbh.as_slice());
                        lanewise!(s, gh_part, (r, xh, rbh), |v| s.mul_add_e_f32s(r, s.add_f32s(v, rbh), xh));
                        self.gru_finish(s, gj, hj);
                    }
                }
                Cell::Gru { linear_before_reset: false } => {
                    // z and r first; the candidate's recurrent product needs r * h.
                    gemm(s, rows, 2 * hid, hid, Operand { data: &h, stride: hid }, r_t, &mut g, gh, Start::Zero);
                    for j in (0..rows).filter(|&j| active(j)) {
                        let gj = &mut g[j * gh..(j + 1) * gh];
                        self.gru_gates(s, x_row(time(j), j), gj);
                        let (r, hj) = (&gj[hid..2 * hid], &h[j * hid..(j + 1) * hid]);
                        lanewise!(s, &mut reset_h[j * hid..(j + 1) * hid], (r, hj), |_v| s.mul_f32s(r, hj));
                    }
                    let r_h = Operand { data: &w.r_t[2 * hid..], stride: gh };
                    gemm(s, rows, hid, hid, Operand { data: &reset_h, stride: hid }, r_h, &mut g[2 * hid..], gh, Start::Zero);
                    for j in (0..rows).filter(|&j| active(j)) {
                        let x = x_row(time(j), j);
                        let (gj, hj) = (&mut g[j * gh..(j + 1) * gh], &mut h[j * hid..(j + 1) * hid]);
                        let (gh_part, xh) = (&mut gj[2 * hid..], &x[2 * hid..]);
                        lanewise!(s, gh_part, (xh), |v| s.add_f32s(v, xh));
                        self.gru_finish(s, gj, hj);
                    }
                }
                Cell::Rnn => {
                    gemm(s, rows, gh, hid, Operand { data: &h, stride: hid }, r_t, &mut g, gh, Start::Zero);
                    for j in (0..rows).filter(|&j| active(j)) {
                        let (gj, x) = (&mut g[j * gh..(j + 1) * gh], x_row(time(j), j));
                        lanewise!(s, gj, (x), |v| s.add_f32s(v, x));
                        if let Some(limit) = self.clip {
                            clip(s, limit, gj);
                        }
                        activate(s, self.acts[0], gj);
                        h[j * hid..(j + 1) * hid].copy_from_slice(gj);
                    }
                }
            }
            if !self.y.is_empty() {
                for j in (0..rows).filter(|&j| active(j)) {
                    if let Some(row) = self.y[time(j) * rows + j].as_deref_mut() {
                        row.copy_from_slice(&h[j * hid..(j + 1) * hid]);
                    }
                }
            }
        }
        for (j, out) in self.y_h.iter_mut().enumerate() {
            if let Some(out) = out.as_deref_mut() {
                out.copy_from_slice(&h[j * hid..(j + 1) * hid]);
            }
        }
        for (j, out) in self.y_c.iter_mut().enumerate() {
            if let (Some(out), Some(state)) = (out.as_deref_mut(), c.get(j * hid..(j + 1) * hid)) {
                out.copy_from_slice(state);
            }
        }
    }
}

impl Unit<'_> {
    /// Makes sure `proj` holds timestep `t`: X . W^T + bias for the block of timesteps around
    /// it, one GEMM when the block's input rows are contiguous in X.
    #[inline(always)]
    fn project<S: Simd>(&self, s: S, proj: &mut Projection, t: usize, rows: usize) {
        if (proj.first..proj.first + proj.len).contains(&t) {
            return;
        }
        let gh = self.cell.gates() * self.hidden;
        let (steps, inp) = (self.steps, self.input_size);
        let first = t / proj.block * proj.block;
        let len = proj.block.min(steps - first);
        (proj.first, proj.len) = (first, len);
        let w_t = Operand { data: &self.weights.w_t, stride: gh };
        let bias = Start::Row(&self.weights.bias);
        match self.input {
            Input::TimeMajor { x, batch, .. } if rows == batch => {
                let a = Operand { data: &x[first * batch * inp..], stride: inp };
                gemm(s, len * rows, gh, inp, a, w_t, &mut proj.buf, gh, bias);
            }
            Input::BatchMajor { x } if rows == 1 => {
                gemm(s, len, gh, inp, Operand { data: &x[first * inp..], stride: inp }, w_t, &mut proj.buf, gh, bias);
            }
            Input::TimeMajor { x, batch, first: b0 } => {
                for t in first..first + len {
                    let a = Operand { data: &x[(t * batch + b0) * inp..], stride: inp };
                    gemm(s, rows, gh, inp, a, w_t, &mut proj.buf[(t - first) * rows * gh..], gh, bias);
                }
            }
            Input::BatchMajor { x } => {
                for t in first..first + len {
                    let a = Operand { data: &x[t * inp..], stride: steps * inp };
                    gemm(s, rows, gh, inp, a, w_t, &mut proj.buf[(t - first) * rows * gh..], gh, bias);
                }
            }
        }
    }

    /// i, o, f, c gates (ONNX order) -> new cell state `c` and hidden state `h`, in place.
    /// `g` holds h_prev . R^T on entry and is scratch afterwards.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn lstm_row<S: Simd>(&self, s: S, input_forget: bool, x: &[f32], g: &mut [f32], c: &mut [f32], h: &mut [f32]) {
        let hid = self.hidden;
        let (f_act, g_act, h_act) = (self.acts[0], self.acts[1], self.acts[2]);
        lanewise!(s, &mut *g, (x), |v| s.add_f32s(v, x));
        let peephole = self.weights.peephole.as_deref().map(|p| (&p[..hid], &p[hid..2 * hid], &p[2 * hid..3 * hid]));
        if peephole.is_none() && !input_forget {
            // i, o and f sit side by side and all take f: one pass over 3 * hidden. Without
            // a peephole, o does not wait for the new c.
            if let Some(limit) = self.clip {
                clip(s, limit, &mut *g);
            }
            let (ifo, gc) = g.split_at_mut(3 * hid);
            activate(s, f_act, ifo);
            activate(s, g_act, gc);
            let (gi, rest) = ifo.split_at(hid);
            let (go, gf) = rest.split_at(hid);
            lanewise!(s, &mut *c, (gf, gi, gc), |v| s.mul_add_e_f32s(gf, v, s.mul_f32s(gi, gc)));
            gc.copy_from_slice(c);
            activate(s, h_act, gc);
            lanewise!(s, h, (go, gc), |_v| s.mul_f32s(go, gc));
            return;
        }
        let (gi, rest) = g.split_at_mut(hid);
        let (go, rest) = rest.split_at_mut(hid);
        let (gf, gc) = rest.split_at_mut(hid);
        if let Some((pi, _, pf)) = peephole {
            lanewise!(s, &mut *gi, (pi, c), |v| s.mul_add_e_f32s(pi, c, v));
            lanewise!(s, &mut *gf, (pf, c), |v| s.mul_add_e_f32s(pf, c, v));
        }
        if let Some(limit) = self.clip {
            clip(s, limit, gi);
            clip(s, limit, gf);
            clip(s, limit, gc);
        }
        activate(s, f_act, gi);
        if input_forget {
            // Coupled gates as onnxruntime defines them (the ONNX reference ignores the flag).
            let one = s.splat_f32s(1.0);
            lanewise!(s, &mut *gf, (gi), |_v| s.sub_f32s(one, gi));
        } else {
            activate(s, f_act, gf);
        }
        activate(s, g_act, gc);
        lanewise!(s, &mut *c, (gf, gi, gc), |v| s.mul_add_e_f32s(gf, v, s.mul_f32s(gi, gc)));
        if let Some((_, po, _)) = peephole {
            lanewise!(s, &mut *go, (po, c), |v| s.mul_add_e_f32s(po, c, v));
        }
        if let Some(limit) = self.clip {
            clip(s, limit, go);
        }
        activate(s, f_act, go);
        gc.copy_from_slice(c);
        activate(s, h_act, gc);
        lanewise!(s, h, (go, gc), |_v| s.mul_f32s(go, gc));
    }

    /// GRU update and reset gates: z, r = f(x + h . R^T) over the first 2 * hidden columns.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn gru_gates<S: Simd>(&self, s: S, x: &[f32], g: &mut [f32]) {
        let zr = &mut g[..2 * self.hidden];
        lanewise!(s, &mut *zr, (x), |v| s.add_f32s(v, x));
        if let Some(limit) = self.clip {
            clip(s, limit, zr);
        }
        activate(s, self.acts[0], zr);
    }

    /// GRU candidate (its pre-activation already in the last third of `g`) and the new state
    /// h = (1 - z) * candidate + z * h_prev.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn gru_finish<S: Simd>(&self, s: S, g: &mut [f32], h: &mut [f32]) {
        let hid = self.hidden;
        let (zr, candidate) = g.split_at_mut(2 * hid);
        if let Some(limit) = self.clip {
            clip(s, limit, candidate);
        }
        activate(s, self.acts[1], candidate);
        let (z, candidate) = (&zr[..hid], &*candidate);
        let one = s.splat_f32s(1.0);
        lanewise!(s, h, (z, candidate), |v| s.mul_add_e_f32s(s.sub_f32s(one, z), candidate, s.mul_f32s(z, v)));
    }
}
