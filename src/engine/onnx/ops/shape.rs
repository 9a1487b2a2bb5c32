//! Shape manipulation and data movement. Most of these fold away at load time when their
//! inputs are constant; the rest are views or small copies.

use candle_core::{DType as CDType, Tensor};

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::{Builder, Op, OpError, OpResult, axis, candle_dtype_for_onnx, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Identity", |_| Ok(Box::new(Identity))),
    ("Dropout", |_| Ok(Box::new(Identity))),
    ("Constant", constant),
    ("Shape", shape),
    ("Reshape", reshape),
    ("Flatten", |ctx| Ok(Box::new(Flatten(ctx.int("axis", 1))))),
    ("Transpose", |ctx| Ok(Box::new(Transpose(ctx.ints("perm"))))),
    ("Squeeze", |ctx| Ok(Box::new(Squeeze(axes_attr(ctx))))),
    ("Unsqueeze", |ctx| Ok(Box::new(Unsqueeze(axes_attr(ctx))))),
    ("Concat", |ctx| Ok(Box::new(Concat(ctx.int("axis", 0))))),
    ("Gather", |ctx| Ok(Box::new(Gather(ctx.int("axis", 0))))),
    ("Slice", slice),
    ("Cast", cast),
];

struct Identity;

impl Op for Identity {
    /// Dropout in inference is the identity; its optional mask output is all ones.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        Ok(vec![x.clone(), Tensor::ones(x.dims(), CDType::U8, x.device())?])
    }
}

struct Constant(Tensor);

impl Op for Constant {
    fn run(&self, _: &[Option<&Tensor>]) -> OpResult {
        Ok(vec![self.0.clone()])
    }
}

fn constant(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let device = ctx.device;
    let make = |r: candle_core::Result<Tensor>| r.map_err(|e| LoadError::Invalid(e.to_string()));
    let tensor = if let Some(t) = ctx.tensor("value")? {
        t
    } else if ctx.has("value_float") {
        make(Tensor::new(ctx.float("value_float", 0.0), device))?
    } else if ctx.has("value_int") {
        make(Tensor::new(ctx.int("value_int", 0), device))?
    } else if let Some(v) = ctx.ints("value_ints") {
        make(Tensor::new(v, device))?
    } else {
        return Err(LoadError::Invalid("Constant without a supported value attribute (value, value_float, value_int, value_ints)".into()));
    };
    Ok(Box::new(Constant(tensor)))
}

struct Shape {
    start: i64,
    end: Option<i64>,
}

impl Op for Shape {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let r = x.rank() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        let dims: Vec<i64> = x.dims()[s..e.max(s)].iter().map(|&d| d as i64).collect();
        let n = dims.len();
        Ok(vec![Tensor::from_vec(dims, n, x.device())?])
    }
}

fn shape(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Shape { start: ctx.int("start", 0), end: ctx.has("end").then(|| ctx.int("end", 0)) }))
}

struct Reshape {
    allow_zero: bool,
}

impl Op for Reshape {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let requested = int_values(required(inputs, 1, "shape")?)?;
        let mut dims = Vec::with_capacity(requested.len());
        let mut infer = None;
        for (i, &d) in requested.iter().enumerate() {
            match d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    dims.push(1);
                }
                0 if !self.allow_zero => {
                    dims.push(*x.dims().get(i).ok_or_else(|| OpError::Invalid(format!("shape {requested:?} copies dim {i} of a rank-{} input", x.rank())))?)
                }
                d if d >= 0 => dims.push(d as usize),
                _ => return Err(OpError::Invalid(format!("invalid target shape {requested:?}"))),
            }
        }
        if let Some(i) = infer {
            let known: usize = dims.iter().product();
            if known == 0 || x.elem_count() % known != 0 {
                return Err(OpError::Invalid(format!("cannot reshape {:?} into {requested:?}", x.dims())));
            }
            dims[i] = x.elem_count() / known;
        }
        if dims.iter().product::<usize>() != x.elem_count() {
            return Err(OpError::Invalid(format!("cannot reshape {:?} into {requested:?}", x.dims())));
        }
        Ok(vec![x.reshape(dims)?])
    }
}

fn reshape(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Reshape { allow_zero: ctx.int("allowzero", 0) != 0 }))
}

struct Flatten(i64);

impl Op for Flatten {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        let r = x.rank() as i64;
        let a = if self.0 < 0 { self.0 + r } else { self.0 };
        if !(0..=r).contains(&a) {
            return Err(OpError::Invalid(format!("axis {} is out of range for rank {r}", self.0)));
        }
        let (head, tail) = x.dims().split_at(a as usize);
        Ok(vec![x.reshape((head.iter().product::<usize>(), tail.iter().product::<usize>()))?])
    }
}

struct Transpose(Option<Vec<i64>>);

impl Op for Transpose {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let perm: Vec<usize> = match &self.0 {
            Some(p) => p.iter().map(|&a| axis(a, x.rank())).collect::<Result<_, _>>()?,
            None => (0..x.rank()).rev().collect(),
        };
        Ok(vec![x.permute(perm)?.contiguous()?])
    }
}

/// Before opset 13 `axes` is an attribute; from 13 on it is an optional input.
fn axes_attr(ctx: &NodeCtx<'_>) -> Option<Vec<i64>> {
    ctx.ints("axes")
}

fn axes_of(attr: &Option<Vec<i64>>, inputs: &[Option<&Tensor>]) -> Result<Option<Vec<i64>>, OpError> {
    match optional(inputs, 1) {
        Some(t) => Ok(Some(int_values(t)?)),
        None => Ok(attr.clone()),
    }
}

struct Squeeze(Option<Vec<i64>>);

impl Op for Squeeze {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let dims = x.dims();
        let drop: Vec<usize> = match axes_of(&self.0, inputs)? {
            None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
            Some(axes) => axes.iter().map(|&a| axis(a, dims.len())).collect::<Result<_, _>>()?,
        };
        if let Some(&bad) = drop.iter().find(|&&i| dims[i] != 1) {
            return Err(OpError::Invalid(format!("cannot squeeze axis {bad} of size {}", dims[bad])));
        }
        let kept: Vec<usize> = (0..dims.len()).filter(|i| !drop.contains(i)).map(|i| dims[i]).collect();
        Ok(vec![x.reshape(kept)?])
    }
}

struct Unsqueeze(Option<Vec<i64>>);

impl Op for Unsqueeze {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let axes = axes_of(&self.0, inputs)?.ok_or_else(|| OpError::Invalid("Unsqueeze needs axes".into()))?;
        let out_rank = x.rank() + axes.len();
        let mut positions: Vec<usize> = axes.iter().map(|&a| axis(a, out_rank)).collect::<Result<_, _>>()?;
        positions.sort_unstable();
        let mut source = x.dims().iter();
        let dims: Vec<usize> =
            (0..out_rank).map(|i| if positions.contains(&i) { 1 } else { source.next().copied().unwrap_or(1) }).collect();
        Ok(vec![x.reshape(dims)?])
    }
}

struct Concat(i64);

impl Op for Concat {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let first = parts.first().ok_or_else(|| OpError::Invalid("Concat needs at least one input".into()))?;
        let a = axis(self.0, first.rank())?;
        Ok(vec![Tensor::cat(&parts, a)?])
    }
}

struct Gather(i64);

impl Op for Gather {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        let a = axis(self.0, data.rank())?;
        let size = data.dim(a)? as i64;
        let picked = int_values(indices)?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + size } else { i };
                u32::try_from(j).ok().filter(|&j| i64::from(j) < size).ok_or_else(|| {
                    OpError::Invalid(format!("index {i} is out of range for axis {a} of size {size}"))
                })
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let n = picked.len();
        let selected = data.index_select(&Tensor::from_vec(picked, n, data.device())?, a)?;
        let mut dims = data.dims()[..a].to_vec();
        dims.extend_from_slice(indices.dims());
        dims.extend_from_slice(&data.dims()[a + 1..]);
        Ok(vec![selected.reshape(dims)?])
    }
}

/// Opset < 10 carries starts, ends and axes as attributes.
struct SliceAttrs {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
}

struct Slice {
    attrs: Option<SliceAttrs>,
}

impl Op for Slice {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let (starts, ends, axes, steps) = match &self.attrs {
            Some(a) => (a.starts.clone(), a.ends.clone(), a.axes.clone(), None),
            None => (
                int_values(required(inputs, 1, "starts")?)?,
                int_values(required(inputs, 2, "ends")?)?,
                optional(inputs, 3).map(int_values).transpose()?,
                optional(inputs, 4).map(int_values).transpose()?,
            ),
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(OpError::Invalid("starts, ends, axes and steps must have the same length".into()));
        }
        let mut y = x.clone();
        for i in 0..starts.len() {
            let a = axis(axes[i], x.rank())?;
            let dim = x.dim(a)? as i64;
            let step = steps[i];
            if step == 0 {
                return Err(OpError::Invalid("slice step must not be 0".into()));
            }
            let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (start, end) = if step > 0 {
                (norm(starts[i]).clamp(0, dim), norm(ends[i]).clamp(0, dim))
            } else {
                (norm(starts[i]).clamp(0, dim - 1), norm(ends[i]).clamp(-1, dim - 1))
            };
            if step == 1 {
                y = y.narrow(a, start as usize, (end - start).max(0) as usize)?;
            } else {
                let mut picked = Vec::new();
                let mut j = start;
                while (step > 0 && j < end) || (step < 0 && j > end) {
                    picked.push(j as u32);
                    j += step;
                }
                let n = picked.len();
                y = y.index_select(&Tensor::from_vec(picked, n, x.device())?, a)?;
            }
        }
        Ok(vec![y])
    }
}

fn slice(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let attrs = if ctx.opset < 10 {
        let starts = ctx.ints("starts").ok_or_else(|| LoadError::Invalid("attribute 'starts' is required".into()))?;
        let ends = ctx.ints("ends").ok_or_else(|| LoadError::Invalid("attribute 'ends' is required".into()))?;
        Some(SliceAttrs { starts, ends, axes: ctx.ints("axes") })
    } else {
        None
    };
    Ok(Box::new(Slice { attrs }))
}

struct Cast {
    to: CDType,
    to_bool: bool,
}

impl Op for Cast {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        if self.to_bool {
            return Ok(vec![x.ne(&x.zeros_like()?)?]);
        }
        Ok(vec![x.to_dtype(self.to)?])
    }
}

fn cast(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let to = ctx.int("to", 0) as i32;
    let target = candle_dtype_for_onnx(to)
        .ok_or_else(|| LoadError::Invalid(format!("Cast to ONNX element type {to} is not supported")))?;
    let to_bool = to == crate::proto::onnx::tensor_proto::DataType::Bool as i32;
    Ok(Box::new(Cast { to: target, to_bool }))
}
