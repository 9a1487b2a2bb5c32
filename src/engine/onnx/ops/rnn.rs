//! LSTM, GRU and RNN (ONNX opsets 7-22): every direction, `sequence_lens`, initial states,
//! peepholes, `clip`, `input_forget`, `linear_before_reset`, `layout` and the activation list.
//!
//! Weights are transposed once (at load when they are initializers), the input projection of
//! many timesteps is one GEMM (all of them at small batch), and each step is one GEMM plus the
//! gate math on host buffers; see [`cell`]. Directions and slices of the batch are independent,
//! so they run in parallel on the intra-op threads. float32 only.

mod aligned;
mod cell;
mod gemm;
mod math;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::engine::LoadError;
use crate::engine::kernels::threads::intra_op_threads;
use crate::engine::onnx::attrs::NodeCtx;

use self::aligned::Aligned;
use self::cell::{Cell, DirWeights, Input, Unit};
use self::math::{Activation, dispatch};
use super::{Builder, Op, OpError, OpResult, int_values, optional, required, with_f32_values};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("LSTM", |ctx| build(ctx, Cell::Lstm { input_forget: ctx.int("input_forget", 0) != 0 })),
    ("GRU", |ctx| build(ctx, Cell::Gru { linear_before_reset: ctx.int("linear_before_reset", 0) != 0 })),
    ("RNN", |ctx| build(ctx, Cell::Rnn)),
];

/// Input positions shared by the three operators (LSTM adds `initial_c` and `P`).
const W: usize = 1;
const R: usize = 2;
const B: usize = 3;
const SEQUENCE_LENS: usize = 4;
const INITIAL_H: usize = 5;
const INITIAL_C: usize = 6;
const P: usize = 7;

/// Below this many multiply-adds a second thread costs more than it saves.
const PARALLEL_WORK: usize = 1 << 20;

struct Recurrent {
    cell: Cell,
    op: &'static str,
    directions: usize,
    reverse_only: bool,
    hidden_size: Option<usize>,
    /// `cell.activations()` functions per direction.
    acts: Vec<Vec<Activation>>,
    clip: Option<f32>,
    batch_major: bool,
    /// Which optional inputs the node names at all (an absent input and a runtime one are
    /// both `None` when weights are prepared).
    has_bias: bool,
    has_peephole: bool,
    want_y: bool,
    /// Weights repacked at load when they were constants.
    weights: Option<Weights>,
}

struct Weights {
    input: usize,
    hidden: usize,
    dirs: Vec<DirWeights>,
}

fn build(ctx: &NodeCtx<'_>, cell: Cell) -> Result<Box<dyn Op>, LoadError> {
    let bad = |name: &str, why: String| LoadError::Invalid(format!("attribute '{name}' {why}"));
    let (directions, reverse_only) = match ctx.string("direction", "forward")?.as_str() {
        "forward" => (1, false),
        "reverse" => (1, true),
        "bidirectional" => (2, false),
        other => return Err(bad("direction", format!("is '{other}'; expected forward, reverse or bidirectional"))),
    };
    let batch_major = match ctx.int("layout", 0) {
        0 => false,
        1 => true,
        other => return Err(bad("layout", format!("is {other}; expected 0 or 1"))),
    };
    let hidden_size = match ctx.has("hidden_size").then(|| ctx.int("hidden_size", 0)) {
        None => None,
        Some(h) if h > 0 => Some(h as usize),
        Some(h) => return Err(bad("hidden_size", format!("must be positive, got {h}"))),
    };
    let clip = match ctx.has("clip").then(|| ctx.float("clip", 0.0)) {
        None => None,
        Some(c) if c > 0.0 => Some(c),
        Some(c) => return Err(bad("clip", format!("must be positive, got {c}"))),
    };
    let per_dir = cell.activations();
    let names = ctx.strings("activations")?.unwrap_or_else(|| {
        let defaults: &[&str] = match cell {
            Cell::Lstm { .. } => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru { .. } => &["Sigmoid", "Tanh"],
            Cell::Rnn => &["Tanh"],
        };
        defaults.iter().map(|s| s.to_string()).cycle().take(per_dir * directions).collect()
    });
    let parsed = Activation::parse_list(
        &names,
        &ctx.floats("activation_alpha").unwrap_or_default(),
        &ctx.floats("activation_beta").unwrap_or_default(),
    )
    .map_err(|e| bad("activations", e))?;
    let acts = if parsed.len() == per_dir * directions {
        parsed.chunks(per_dir).map(<[Activation]>::to_vec).collect()
    } else if parsed.len() == per_dir {
        // onnxruntime also accepts one direction's list for a bidirectional node.
        vec![parsed; directions]
    } else {
        return Err(bad(
            "activations",
            format!("names {} functions; {} with {directions} direction(s) needs {}", parsed.len(), ctx.node.op_type, per_dir * directions),
        ));
    };
    let named = |i: usize| ctx.node.input.get(i).is_some_and(|n| !n.is_empty());
    Ok(Box::new(Recurrent {
        cell,
        op: match cell {
            Cell::Lstm { .. } => "LSTM",
            Cell::Gru { .. } => "GRU",
            Cell::Rnn => "RNN",
        },
        directions,
        reverse_only,
        hidden_size,
        acts,
        clip,
        batch_major,
        has_bias: named(B),
        has_peephole: matches!(cell, Cell::Lstm { .. }) && named(P),
        want_y: ctx.node.output.first().is_some_and(|n| !n.is_empty()),
        weights: None,
    }))
}

fn invalid(msg: String) -> OpError {
    OpError::Invalid(msg)
}

/// A float32 tensor's values in host memory, in row-major order.
fn host_values(t: &Tensor, what: &str) -> Result<Vec<f32>, OpError> {
    if t.dtype() != DType::F32 {
        return Err(invalid(format!("{what} has dtype {:?}; only float32 is supported", t.dtype())));
    }
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl Recurrent {
    /// Checks W, R, B and P against each other and lays them out for the kernels.
    fn pack(&self, w: &Tensor, r: &Tensor, b: Option<&Tensor>, p: Option<&Tensor>) -> Result<Weights, OpError> {
        let gates = self.cell.gates();
        let dirs = self.directions;
        let (wd, gh, input) = w.dims3().map_err(|_| invalid(format!("W must be [directions, gates*hidden, input], got {:?}", w.dims())))?;
        let hidden = gh / gates;
        if wd != dirs || gh % gates != 0 || hidden == 0 {
            return Err(invalid(format!(
                "W has shape {:?}; {} with {dirs} direction(s) needs [{dirs}, {gates}*hidden, input]",
                w.dims(),
                self.op
            )));
        }
        if let Some(h) = self.hidden_size.filter(|&h| h != hidden) {
            return Err(invalid(format!("hidden_size is {h} but W has {gh} rows ({gates} gates of {hidden})")));
        }
        if r.dims() != [dirs, gh, hidden] {
            return Err(invalid(format!("R has shape {:?}; expected {:?}", r.dims(), [dirs, gh, hidden])));
        }
        if let Some(b) = b.filter(|b| b.dims() != [dirs, 2 * gh]) {
            return Err(invalid(format!("B has shape {:?}; expected {:?}", b.dims(), [dirs, 2 * gh])));
        }
        if let Some(p) = p.filter(|p| p.dims() != [dirs, 3 * hidden]) {
            return Err(invalid(format!("P has shape {:?}; expected {:?}", p.dims(), [dirs, 3 * hidden])));
        }
        let w = host_values(w, "W")?;
        let r = host_values(r, "R")?;
        let b = b.map(|b| host_values(b, "B")).transpose()?.unwrap_or_else(|| vec![0.0; dirs * 2 * gh]);
        let p = p.map(|p| host_values(p, "P")).transpose()?;
        let transpose = |m: &[f32], cols: usize| {
            let mut t = Aligned::zeros(m.len());
            for (row, values) in m.chunks_exact(cols).enumerate() {
                for (col, v) in values.iter().enumerate() {
                    t[col * gh + row] = *v;
                }
            }
            t
        };
        let dirs = (0..dirs)
            .map(|d| {
                let (wb, rb) = b[d * 2 * gh..(d + 1) * 2 * gh].split_at(gh);
                let mut bias: Vec<f32> = wb.iter().zip(rb).map(|(x, y)| x + y).collect();
                let mut rbh = Vec::new();
                if let Cell::Gru { linear_before_reset: true } = self.cell {
                    // The candidate's recurrent bias is scaled by r, so it cannot be pre-summed.
                    bias[2 * hidden..].copy_from_slice(&wb[2 * hidden..]);
                    rbh = rb[2 * hidden..].to_vec();
                }
                DirWeights {
                    w_t: transpose(&w[d * gh * input..(d + 1) * gh * input], input),
                    r_t: transpose(&r[d * gh * hidden..(d + 1) * gh * hidden], hidden),
                    bias,
                    rbh,
                    peephole: p.as_ref().map(|p| p[d * 3 * hidden..(d + 1) * 3 * hidden].to_vec()),
                }
            })
            .collect();
        Ok(Weights { input, hidden, dirs })
    }

    /// An initial state as [directions][batch][hidden], whatever the layout.
    fn initial_state(&self, t: &Tensor, what: &str, batch: usize, hidden: usize) -> Result<Vec<f32>, OpError> {
        let d = self.directions;
        let want = if self.batch_major { [batch, d, hidden] } else { [d, batch, hidden] };
        if t.dims() != want {
            return Err(invalid(format!("{what} has shape {:?}; expected {want:?}", t.dims())));
        }
        let values = host_values(t, what)?;
        if !self.batch_major {
            return Ok(values);
        }
        let mut out = vec![0.0; values.len()];
        for (i, row) in values.chunks_exact(hidden).enumerate() {
            let (b, dir) = (i / d, i % d);
            out[(dir * batch + b) * hidden..][..hidden].copy_from_slice(row);
        }
        Ok(out)
    }

    fn sequence_lens(&self, inputs: &[Option<&Tensor>], batch: usize, steps: usize) -> Result<Vec<usize>, OpError> {
        let Some(t) = optional(inputs, SEQUENCE_LENS) else {
            return Ok(vec![steps; batch]);
        };
        let lens = int_values(t)?;
        if lens.len() != batch {
            return Err(invalid(format!("sequence_lens has {} values for a batch of {batch}", lens.len())));
        }
        lens.into_iter()
            .map(|l| {
                usize::try_from(l)
                    .ok()
                    .filter(|&l| l <= steps)
                    .ok_or_else(|| invalid(format!("sequence_lens value {l} is outside [0, {steps}]")))
            })
            .collect()
    }
}

/// Hands each `hidden`-wide row of `buf` to the unit that writes it: `place(i)` is (unit,
/// position) for row `i`, and unit `u` has `sizes[u]` positions. An empty `buf` (an output
/// nobody asked for) gives every unit an empty list.
fn distribute<'a>(
    buf: &'a mut [f32],
    hidden: usize,
    sizes: &[usize],
    place: impl Fn(usize) -> (usize, usize),
) -> Vec<Vec<Option<&'a mut [f32]>>> {
    let empty = buf.is_empty();
    let mut lists: Vec<Vec<Option<&'a mut [f32]>>> =
        sizes.iter().map(|&n| (0..if empty { 0 } else { n }).map(|_| None).collect()).collect();
    for (i, row) in buf.chunks_exact_mut(hidden).enumerate() {
        let (unit, pos) = place(i);
        lists[unit][pos] = Some(row);
    }
    lists
}

impl Op for Recurrent {
    fn prepare(&mut self, constants: &[Option<&Tensor>]) -> Result<(), OpError> {
        let known = |i: usize| constants.get(i).copied().flatten();
        let (Some(w), Some(r)) = (known(W), known(R)) else { return Ok(()) };
        let b = known(B);
        let p = if self.has_peephole { known(P) } else { None };
        if (self.has_bias && b.is_none()) || (self.has_peephole && p.is_none()) {
            return Ok(()); // some weights arrive per request: pack then
        }
        self.weights = Some(self.pack(w, r, b, p)?);
        Ok(())
    }

    fn absorbed(&self, input: usize) -> bool {
        self.weights.is_some() && matches!(input, W | R | B | P)
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let (d0, d1, input) = x.dims3().map_err(|_| invalid(format!("X must have rank 3, got shape {:?}", x.dims())))?;
        let (steps, batch) = if self.batch_major { (d1, d0) } else { (d0, d1) };
        let packed;
        let weights = match &self.weights {
            Some(w) => w,
            None => {
                let peephole = if self.has_peephole { optional(inputs, P) } else { None };
                packed = self.pack(required(inputs, W, "W")?, required(inputs, R, "R")?, optional(inputs, B), peephole)?;
                &packed
            }
        };
        if weights.input != input {
            return Err(invalid(format!("X has input size {input} but W expects {}", weights.input)));
        }
        let hidden = weights.hidden;
        let dirs = self.directions;
        let lens = self.sequence_lens(inputs, batch, steps)?;
        let h0 = optional(inputs, INITIAL_H).map(|t| self.initial_state(t, "initial_h", batch, hidden)).transpose()?;
        let is_lstm = matches!(self.cell, Cell::Lstm { .. });
        let c0 = match optional(inputs, INITIAL_C) {
            Some(t) if is_lstm => Some(self.initial_state(t, "initial_c", batch, hidden)?),
            _ => None,
        };

        // Units of work: each direction times a slice of the batch, sized to the thread pool.
        let threads = intra_op_threads();
        let work = steps * batch * self.cell.gates() * hidden * (hidden + input) * dirs;
        let slices = if threads > 1 && work >= PARALLEL_WORK { (threads / dirs).clamp(1, batch.max(1)) } else { 1 };
        let bounds: Vec<(usize, usize)> =
            (0..slices).map(|k| (k * batch / slices, (k + 1) * batch / slices)).collect();
        let slice_of = |b: usize| bounds.iter().position(|&(lo, hi)| b >= lo && b < hi).unwrap_or(0);

        let mut y = if self.want_y { vec![0.0f32; steps * dirs * batch * hidden] } else { Vec::new() };
        let mut y_h = vec![0.0f32; dirs * batch * hidden];
        let mut y_c = if is_lstm { vec![0.0f32; dirs * batch * hidden] } else { Vec::new() };
        let rows_of = |u: usize| bounds[u % slices].1 - bounds[u % slices].0;
        let step_sizes: Vec<usize> = (0..dirs * slices).map(|u| steps * rows_of(u)).collect();
        let state_sizes: Vec<usize> = (0..dirs * slices).map(rows_of).collect();
        // Where each output row goes: (unit, position in that unit's list).
        let y_place = |i: usize| {
            let (t, d, b) = if self.batch_major {
                (i / dirs % steps, i % dirs, i / (dirs * steps))
            } else {
                (i / (dirs * batch), i / batch % dirs, i % batch)
            };
            let k = slice_of(b);
            (d * slices + k, t * rows_of(k) + b - bounds[k].0)
        };
        let state_place = |i: usize| {
            let (d, b) = if self.batch_major { (i % dirs, i / dirs) } else { (i / batch, i % batch) };
            let k = slice_of(b);
            (d * slices + k, b - bounds[k].0)
        };

        with_f32_values(x, "X", |xv| {
            let y_rows = distribute(&mut y, hidden, &step_sizes, y_place);
            let yh_rows = distribute(&mut y_h, hidden, &state_sizes, state_place);
            let yc_rows = distribute(&mut y_c, hidden, &state_sizes, state_place);
            let mut units = Vec::with_capacity(dirs * slices);
            for (u, ((y, y_h), y_c)) in y_rows.into_iter().zip(yh_rows).zip(yc_rows).enumerate() {
                let (d, (lo, hi)) = (u / slices, bounds[u % slices]);
                let own = (d * batch + lo) * hidden..(d * batch + hi) * hidden;
                units.push(Unit {
                    cell: self.cell,
                    acts: &self.acts[d],
                    clip: self.clip,
                    reverse: self.reverse_only || d == 1,
                    weights: &weights.dirs[d],
                    input: if self.batch_major {
                        Input::BatchMajor { x: &xv[lo * steps * input..hi * steps * input] }
                    } else {
                        Input::TimeMajor { x: xv, batch, first: lo }
                    },
                    input_size: input,
                    hidden,
                    steps,
                    lens: &lens[lo..hi],
                    h0: h0.as_ref().map(|s| &s[own.clone()]),
                    c0: c0.as_ref().map(|s| &s[own.clone()]),
                    y,
                    y_h,
                    y_c,
                });
            }
            if units.len() == 1 {
                units.into_iter().for_each(dispatch);
            } else {
                units.into_par_iter().for_each(dispatch);
            }
        })?;

        let device = x.device();
        let state_shape = if self.batch_major { vec![batch, dirs, hidden] } else { vec![dirs, batch, hidden] };
        let y = if self.want_y {
            let shape = if self.batch_major { vec![batch, steps, dirs, hidden] } else { vec![steps, dirs, batch, hidden] };
            Tensor::from_vec(y, shape, device)?
        } else {
            Tensor::zeros(0, DType::F32, device)?
        };
        let mut out = vec![y, Tensor::from_vec(y_h, state_shape.clone(), device)?];
        if is_lstm {
            out.push(Tensor::from_vec(y_c, state_shape, device)?);
        }
        Ok(out)
    }
}
