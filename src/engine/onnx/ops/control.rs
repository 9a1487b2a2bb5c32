//! Control flow with subgraphs: Loop and Scan.
//!
//! Each body is compiled once at load into its own plan ([`compile_subgraph`]), with the same
//! op registry and constant folding as the main graph; an iteration only runs that plan. Values
//! the body reads from enclosing scopes arrive as this node's trailing inputs (see
//! [`NodeCtx::implicit`]) and are passed on to the body after its formal inputs.

use candle_core::{DType as CDType, Device, Tensor};

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;
use crate::engine::onnx::import::{Subgraph, compile_subgraph};

use super::{Builder, Op, OpError, OpResult, axis, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("Loop", loop_op), ("Scan", scan)];

/// Splits a node's run-time inputs into its own and the trailing implicit ones.
fn split_implicit<'t>(inputs: &[Option<&'t Tensor>], formal: usize) -> Result<(Vec<Option<&'t Tensor>>, Vec<Tensor>), OpError> {
    let formal = formal.min(inputs.len());
    let implicit = inputs[formal..]
        .iter()
        .map(|t| t.cloned().ok_or_else(|| OpError::Invalid("an outer-scope value the body reads is missing".into())))
        .collect::<Result<_, _>>()?;
    Ok((inputs[..formal].to_vec(), implicit))
}

/// The single value of a scalar (or one-element) tensor, as i64.
fn scalar(t: &Tensor, what: &str) -> Result<i64, OpError> {
    match int_values(t)?.as_slice() {
        [v] => Ok(*v),
        other => Err(OpError::Invalid(format!("{what} must hold one value, got {}", other.len()))),
    }
}

/// Stacks one scan output's per-iteration values along a new `axis` (negative counts from the
/// end of the stacked rank), or builds its empty value when there were no iterations.
fn stack(body: &Subgraph, index: usize, parts: &[Tensor], axis_attr: i64, device: &Device) -> Result<Tensor, OpError> {
    match parts.first() {
        None => {
            let rank = body.empty_stack(index, 0, device)?.rank();
            body.empty_stack(index, axis(axis_attr, rank)?, device)
        }
        Some(first) => Ok(Tensor::stack(parts, axis(axis_attr, first.rank() + 1)?)?),
    }
}

/// ONNX Loop (opset 1-21). Inputs: trip count `M` and condition `cond` (both optional), then
/// the N loop-carried initial values. The body maps (iteration, cond, N carried) to (cond,
/// N carried, K scan outputs); the node yields the final carried values and the K scan
/// outputs stacked along a new axis 0.
struct Loop {
    body: Subgraph,
    carried: usize,
    scan_outputs: usize,
    device: Device,
}

fn loop_op(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let body = compile_subgraph(ctx, "body")?;
    let carried = ctx.node.input.len().checked_sub(2).ok_or_else(|| {
        LoadError::Invalid("Loop needs at least the M and cond inputs (either may be an empty name)".into())
    })?;
    if body.formal_inputs() != 2 + carried {
        return Err(LoadError::Invalid(format!(
            "attribute 'body' takes {} inputs, but the node's {carried} loop-carried values need {}",
            body.formal_inputs(),
            2 + carried
        )));
    }
    let scan_outputs = body.outputs().checked_sub(1 + carried).ok_or_else(|| {
        LoadError::Invalid(format!("attribute 'body' has {} outputs, fewer than cond + {carried} carried", body.outputs()))
    })?;
    if ctx.node.output.len() > carried + scan_outputs {
        return Err(LoadError::Invalid(format!(
            "Loop has {} outputs but its body yields only {carried} carried + {scan_outputs} scan values",
            ctx.node.output.len()
        )));
    }
    Ok(Box::new(Loop { body, carried, scan_outputs, device: ctx.device.clone() }))
}

impl Op for Loop {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let (formal, implicit) = split_implicit(inputs, 2 + self.carried)?;
        let trip_count = optional(&formal, 0).map(|t| scalar(t, "M")).transpose()?;
        // When cond is omitted the body's cond output is ignored, as the spec says.
        let mut cond = optional(&formal, 1).map(|t| scalar(t, "cond").map(|v| v != 0)).transpose()?;
        if trip_count.is_none() && cond.is_none() {
            return Err(OpError::Invalid("Loop has neither a trip count M nor a cond input, so it would never end".into()));
        }
        let mut carried = (0..self.carried)
            .map(|i| required(&formal, 2 + i, "v_initial").cloned())
            .collect::<Result<Vec<_>, _>>()?;
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); self.scan_outputs];
        let mut iteration = 0i64;
        while trip_count.is_none_or(|m| iteration < m) && cond.unwrap_or(true) {
            let mut args = Vec::with_capacity(2 + self.carried + implicit.len());
            args.push(Tensor::new(iteration, &self.device)?);
            args.push(Tensor::new(u8::from(cond.unwrap_or(true)), &self.device)?);
            args.append(&mut carried);
            args.extend(implicit.iter().cloned());
            let mut outputs = self.body.run(args)?.into_iter();
            let cond_out = outputs.next().ok_or_else(|| OpError::Invalid("the body returned no cond".into()))?;
            if cond.is_some() {
                cond = Some(scalar(&cond_out, "the body's cond output")? != 0);
            }
            carried = outputs.by_ref().take(self.carried).collect();
            for (scan, value) in scans.iter_mut().zip(outputs) {
                scan.push(value);
            }
            iteration += 1;
        }
        let mut results = carried;
        for (k, parts) in scans.iter().enumerate() {
            results.push(stack(&self.body, 1 + self.carried + k, parts, 0, &self.device)?);
        }
        Ok(results)
    }
}

/// ONNX Scan. Opset 9+: inputs are N initial states then M scan inputs; the body maps (N
/// states, one slice of each scan input) to (N states, K scan output slices), once per slice
/// along each input's scan axis (reversed where its direction is 1), and the slices are
/// stacked along each output's scan axis. Opset 8 adds a leading batch axis to every input and
/// output and an optional `sequence_lens` first input; it is run as one opset-9 scan per batch
/// row, with sequence lengths shorter than the data refused rather than padded.
struct Scan {
    body: Subgraph,
    states: usize,
    /// Opset 8's batch axis and `sequence_lens` input.
    batched: bool,
    input_axes: Vec<i64>,
    input_reverse: Vec<bool>,
    output_axes: Vec<i64>,
    output_reverse: Vec<bool>,
    device: Device,
}

fn scan(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let body = compile_subgraph(ctx, "body")?;
    let bad = |msg: String| LoadError::Invalid(msg);
    let scan_inputs = usize::try_from(ctx.int("num_scan_inputs", 0))
        .ok()
        .filter(|&m| m >= 1)
        .ok_or_else(|| bad("attribute 'num_scan_inputs' must be at least 1".into()))?;
    let batched = ctx.opset < 9;
    let own = ctx.node.input.len().saturating_sub(usize::from(batched));
    let states = own
        .checked_sub(scan_inputs)
        .ok_or_else(|| bad(format!("attribute 'num_scan_inputs' is {scan_inputs} but the node has {own} state and scan inputs")))?;
    if body.formal_inputs() != states + scan_inputs {
        return Err(bad(format!(
            "attribute 'body' takes {} inputs, expected {states} states + {scan_inputs} scan inputs",
            body.formal_inputs()
        )));
    }
    let scan_outputs = body
        .outputs()
        .checked_sub(states)
        .ok_or_else(|| bad(format!("attribute 'body' has {} outputs, fewer than its {states} states", body.outputs())))?;
    let list = |name: &str, len: usize| -> Result<Vec<i64>, LoadError> {
        match ctx.ints(name) {
            None => Ok(vec![0; len]),
            Some(v) if v.len() == len => Ok(v),
            Some(v) => Err(bad(format!("attribute '{name}' has {} entries, expected {len}", v.len()))),
        }
    };
    let reverse = |name: &str, len: usize| -> Result<Vec<bool>, LoadError> {
        list(name, len)?
            .into_iter()
            .map(|d| match d {
                0 => Ok(false),
                1 => Ok(true),
                other => Err(bad(format!("attribute '{name}' has direction {other}, expected 0 or 1"))),
            })
            .collect()
    };
    let (input_axes, input_reverse, output_axes, output_reverse) = if batched {
        (vec![0; scan_inputs], reverse("directions", scan_inputs)?, vec![0; scan_outputs], vec![false; scan_outputs])
    } else {
        (
            list("scan_input_axes", scan_inputs)?,
            reverse("scan_input_directions", scan_inputs)?,
            list("scan_output_axes", scan_outputs)?,
            reverse("scan_output_directions", scan_outputs)?,
        )
    };
    Ok(Box::new(Scan {
        body,
        states,
        batched,
        input_axes,
        input_reverse,
        output_axes,
        output_reverse,
        device: ctx.device.clone(),
    }))
}

impl Scan {
    /// One opset-9 scan: returns the final states followed by the stacked scan outputs.
    fn scan(&self, mut states: Vec<Tensor>, sequences: &[&Tensor], implicit: &[Tensor]) -> OpResult {
        let axes = sequences
            .iter()
            .zip(&self.input_axes)
            .map(|(x, &a)| axis(a, x.rank()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut length = None;
        for (i, (x, &a)) in sequences.iter().zip(&axes).enumerate() {
            let n = x.dim(a)?;
            if *length.get_or_insert(n) != n {
                return Err(OpError::Invalid(format!("scan input {i} has {n} steps along axis {a}, the others {length:?}")));
            }
        }
        let length = length.unwrap_or(0);
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); self.output_axes.len()];
        for t in 0..length {
            let mut args = Vec::with_capacity(states.len() + sequences.len() + implicit.len());
            args.append(&mut states);
            for ((x, &a), &reverse) in sequences.iter().zip(&axes).zip(&self.input_reverse) {
                let index = if reverse { length - 1 - t } else { t };
                args.push(x.narrow(a, index, 1)?.squeeze(a)?.contiguous()?);
            }
            args.extend(implicit.iter().cloned());
            let mut outputs = self.body.run(args)?.into_iter();
            states = outputs.by_ref().take(self.states).collect();
            for (scan, value) in scans.iter_mut().zip(outputs) {
                scan.push(value);
            }
        }
        let mut results = states;
        for (k, mut parts) in scans.into_iter().enumerate() {
            if self.output_reverse[k] {
                parts.reverse();
            }
            results.push(stack(&self.body, self.states + k, &parts, self.output_axes[k], &self.device)?);
        }
        Ok(results)
    }
}

impl Op for Scan {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let lead = usize::from(self.batched);
        let own = lead + self.states + self.input_axes.len();
        let (formal, implicit) = split_implicit(inputs, own)?;
        let values = (lead..own)
            .map(|i| required(&formal, i, if i < lead + self.states { "initial state" } else { "scan input" }))
            .collect::<Result<Vec<_>, _>>()?;
        let (states, sequences) = values.split_at(self.states);
        if !self.batched {
            return self.scan(states.iter().map(|&t| t.clone()).collect(), sequences, &implicit);
        }
        let batch = values.first().map(|t| t.dim(0)).transpose()?.unwrap_or(0);
        if let Some(lens) = optional(&formal, 0) {
            let full = sequences.first().map(|x| x.dim(1)).transpose()?.unwrap_or(0);
            if int_values(lens)?.iter().any(|&n| n != full as i64) {
                return Err(OpError::Invalid(format!("sequence_lens shorter than the {full} steps of the data are not supported")));
            }
        }
        let mut rows: Vec<Vec<Tensor>> = Vec::with_capacity(batch);
        for b in 0..batch {
            let states = states.iter().map(|t| t.get(b)).collect::<Result<Vec<_>, _>>()?;
            let sequences = sequences.iter().map(|t| t.get(b)).collect::<Result<Vec<_>, _>>()?;
            rows.push(self.scan(states, &sequences.iter().collect::<Vec<_>>(), &implicit)?);
        }
        let outputs = self.states + self.output_axes.len();
        (0..outputs)
            .map(|k| {
                let parts: Vec<&Tensor> = rows.iter().map(|row| &row[k]).collect();
                if parts.is_empty() {
                    return Ok(Tensor::zeros(0, CDType::F32, &self.device)?);
                }
                Ok(Tensor::stack(&parts, 0)?)
            })
            .collect()
    }
}
