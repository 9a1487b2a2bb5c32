//! Shape manipulation: ops that change how a tensor's elements are indexed but not their
//! order (Reshape, Flatten, Squeeze, Unsqueeze, Expand), Transpose, and the shape queries.
//! Most fold away at load time when their inputs are constant.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::constant::shape_values;
use super::{Builder, Op, OpError, OpResult, axis, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Shape", shape),
    ("Size", |_| Ok(Box::new(Size))),
    ("Reshape", reshape),
    ("Flatten", |ctx| Ok(Box::new(Flatten(ctx.int("axis", 1))))),
    ("Transpose", |ctx| Ok(Box::new(Transpose(ctx.ints("perm"))))),
    ("Squeeze", |ctx| Ok(Box::new(Squeeze(axes_attr(ctx))))),
    ("Unsqueeze", |ctx| Ok(Box::new(Unsqueeze(axes_attr(ctx))))),
    ("Expand", |_| Ok(Box::new(Expand))),
];

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

struct Size;

impl Op for Size {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        Ok(vec![Tensor::new(x.elem_count() as i64, x.device())?])
    }
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
        if let Some(y) = crate::engine::kernels::custom::transpose(x, &perm)? {
            return Ok(vec![y]);
        }
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
        if positions.windows(2).any(|w| w[0] == w[1]) {
            return Err(OpError::Invalid(format!("Unsqueeze axes {axes:?} repeat an axis")));
        }
        let mut source = x.dims().iter();
        let dims: Vec<usize> =
            (0..out_rank).map(|i| if positions.contains(&i) { 1 } else { source.next().copied().unwrap_or(1) }).collect();
        Ok(vec![x.reshape(dims)?])
    }
}

struct Expand;

impl Op for Expand {
    /// numpy broadcasting in both directions: a 1 in `shape` keeps the input's size.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        let requested = shape_values(required(inputs, 1, "shape")?, "shape")?;
        let target = x.shape().broadcast_shape_binary_op(&requested.into(), "Expand")?;
        if target.elem_count() == 0 {
            return Ok(vec![Tensor::zeros(target, x.dtype(), x.device())?]);
        }
        Ok(vec![x.broadcast_as(target)?.contiguous()?])
    }
}
