//! Values that come from attributes or scalars (Constant, ConstantOfShape, Range), type
//! conversion (Cast, CastLike) and the inference-time identities (Identity, Dropout).

use candle_core::{DType as CDType, Tensor};

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;
use crate::proto::onnx::tensor_proto::DataType as OnnxType;

use super::{Builder, Op, OpError, OpResult, candle_dtype_for_onnx, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Identity", |_| Ok(Box::new(Identity))),
    ("Dropout", dropout),
    ("Constant", constant),
    ("ConstantOfShape", constant_of_shape),
    ("Range", |_| Ok(Box::new(Range))),
    ("Cast", cast),
    ("CastLike", |_| Ok(Box::new(CastLike))),
];

struct Identity;

impl Op for Identity {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        Ok(vec![required(inputs, 0, "input")?.clone()])
    }
}

struct Dropout {
    /// From opset 12 `ratio` and `training_mode` are inputs 1 and 2.
    mode_input: bool,
}

impl Op for Dropout {
    /// Inference is the identity with an all-true mask. Training mode with a non-zero ratio would
    /// need random numbers nobody can reproduce; it is refused rather than silently ignored.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        if self.mode_input {
            let training = optional(inputs, 2).map(int_values).transpose()?.is_some_and(|v| v.iter().any(|&b| b != 0));
            let ratio = match optional(inputs, 1) {
                Some(r) => r.flatten_all()?.to_dtype(CDType::F64)?.to_vec1::<f64>()?.first().copied().unwrap_or(0.5),
                None => 0.5,
            };
            if training && ratio != 0.0 {
                return Err(OpError::Invalid(format!(
                    "Dropout in training mode (ratio {ratio}) is random; the engine runs inference only"
                )));
            }
        }
        Ok(vec![x.clone(), Tensor::ones(x.dims(), CDType::U8, x.device())?])
    }
}

fn dropout(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Dropout { mode_input: ctx.opset >= 12 }))
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
    let floats = ctx.node.attribute.iter().find(|a| a.name == "value_floats").map(|a| a.floats.clone());
    let tensor = if let Some(t) = ctx.tensor("value")? {
        t
    } else if ctx.has("value_float") {
        make(Tensor::new(ctx.float("value_float", 0.0), device))?
    } else if ctx.has("value_int") {
        make(Tensor::new(ctx.int("value_int", 0), device))?
    } else if let Some(v) = ctx.ints("value_ints") {
        make(Tensor::new(v, device))?
    } else if let Some(v) = floats {
        make(Tensor::new(v, device))?
    } else {
        return Err(LoadError::Invalid(
            "Constant without a supported value attribute (value, value_float(s), value_int(s))".into(),
        ));
    };
    Ok(Box::new(Constant(tensor)))
}

/// Reads a shape input: a 1-D list of non-negative sizes.
pub(super) fn shape_values(t: &Tensor, what: &str) -> Result<Vec<usize>, OpError> {
    int_values(t)?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| OpError::Invalid(format!("{what} has negative size {d}"))))
        .collect()
}

struct ConstantOfShape(Tensor);

impl Op for ConstantOfShape {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let dims = shape_values(required(inputs, 0, "input")?, "shape")?;
        if dims.contains(&0) {
            return Ok(vec![Tensor::zeros(dims, self.0.dtype(), self.0.device())?]);
        }
        Ok(vec![self.0.broadcast_as(dims)?.contiguous()?])
    }
}

fn constant_of_shape(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let value = match ctx.tensor("value")? {
        Some(t) if t.elem_count() == 1 => t.reshape(()).map_err(|e| LoadError::Invalid(e.to_string()))?,
        Some(t) => {
            return Err(LoadError::Invalid(format!("attribute 'value' must hold one element, has shape {:?}", t.dims())));
        }
        None => Tensor::new(0f32, ctx.device).map_err(|e| LoadError::Invalid(e.to_string()))?,
    };
    Ok(Box::new(ConstantOfShape(value)))
}

/// Refuses absurd lengths before allocating them.
const MAX_RANGE_LEN: f64 = (1u64 << 32) as f64;

struct Range;

impl Op for Range {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let start = required(inputs, 0, "start")?;
        let limit = required(inputs, 1, "limit")?;
        let delta = required(inputs, 2, "delta")?;
        let dtype = start.dtype();
        if limit.dtype() != dtype || delta.dtype() != dtype {
            return Err(OpError::Invalid("start, limit and delta must have the same type".into()));
        }
        let scalar = |t: &Tensor, what: &str| -> Result<f64, OpError> {
            if t.elem_count() != 1 {
                return Err(OpError::Invalid(format!("{what} must be a scalar, got shape {:?}", t.dims())));
            }
            Ok(t.flatten_all()?.to_dtype(CDType::F64)?.to_vec1::<f64>()?[0])
        };
        let (s, l, d) = (scalar(start, "start")?, scalar(limit, "limit")?, scalar(delta, "delta")?);
        if d == 0.0 {
            return Err(OpError::Invalid("delta must not be 0".into()));
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if !n.is_finite() || n > MAX_RANGE_LEN {
            return Err(OpError::Invalid(format!("Range({s}, {l}, {d}) is too long")));
        }
        let n = n as usize;
        let device = start.device();
        let out = if dtype.is_float() {
            let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
            Tensor::from_vec(v, n, device)?.to_dtype(dtype)?
        } else {
            // integers stay exact in i64
            let (s, d) = (int_values(start)?[0], int_values(delta)?[0]);
            let v: Vec<i64> = (0..n as i64).map(|i| s.wrapping_add(i.wrapping_mul(d))).collect();
            Tensor::from_vec(v, n, device)?.to_dtype(dtype)?
        };
        Ok(vec![out])
    }
}

struct Cast {
    to: CDType,
    to_bool: bool,
}

fn convert(x: &Tensor, to: CDType, to_bool: bool) -> OpResult {
    if to_bool {
        return Ok(vec![x.ne(&x.zeros_like()?)?]);
    }
    Ok(vec![x.to_dtype(to)?])
}

impl Op for Cast {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        convert(required(inputs, 0, "input")?, self.to, self.to_bool)
    }
}

fn cast(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let to = ctx.int("to", 0) as i32;
    let target = candle_dtype_for_onnx(to)
        .ok_or_else(|| LoadError::Invalid(format!("Cast to ONNX element type {to} is not supported")))?;
    Ok(Box::new(Cast { to: target, to_bool: to == OnnxType::Bool as i32 }))
}

struct CastLike;

impl Op for CastLike {
    /// The target is the second input's candle dtype. bool and uint8 share U8 there, so a cast
    /// "like" a bool converts numerically (0.5 -> 0) rather than by truth; exporters emit
    /// CastLike for float types in practice.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let like = required(inputs, 1, "target_type")?;
        convert(required(inputs, 0, "input")?, like.dtype(), false)
    }
}
