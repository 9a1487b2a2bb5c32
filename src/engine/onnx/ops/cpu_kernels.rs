//! The internal ops the CPU passes produce (NHWC conv and pools, dense layers), backed by
//! engine::kernels.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::kernels::custom::{Dense, NhwcConv, NhwcPool};
use crate::engine::kernels::geometry::{Padding, Window};
use crate::engine::kernels::pool::Reduce;
use crate::engine::onnx::attrs::NodeCtx;

use super::fused::from_node;
use super::{Builder, Op, OpResult, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("_NhwcConv", conv),
    ("_NhwcMaxPool", |ctx| pool(ctx, Reduce::Max)),
    ("_NhwcAveragePool", |ctx| pool(ctx, Reduce::Average { count_include_pad: ctx.int("count_include_pad", 0) != 0 })),
    ("_NhwcGlobalAveragePool", |_| Ok(Box::new(GlobalPool { max: false }))),
    ("_NhwcGlobalMaxPool", |_| Ok(Box::new(GlobalPool { max: true }))),
    ("_Dense", |ctx| Ok(Box::new(DenseOp(Dense { activation: from_node(ctx)? })))),
];

struct DenseOp(Dense);

impl Op for DenseOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "A")?.contiguous()?;
        let w = required(inputs, 1, "B")?;
        let b = required(inputs, 2, "bias")?;
        Ok(vec![x.apply_op3_no_bwd(w, b, &self.0)?])
    }
}

/// The 2-D window attributes shared by Conv, MaxPool and AveragePool.
pub(crate) fn window(ctx: &NodeCtx<'_>) -> Result<Window, LoadError> {
    let pair = |name: &str, default: usize| -> Result<[usize; 2], LoadError> {
        match ctx.sizes(name)? {
            None => Ok([default; 2]),
            Some(v) if v.len() == 2 => Ok([v[0], v[1]]),
            Some(v) => Err(LoadError::Invalid(format!("attribute '{name}' has {} values, expected 2", v.len()))),
        }
    };
    let kernel = match ctx.sizes("kernel_shape")? {
        Some(v) if v.len() == 2 => [v[0], v[1]],
        _ => return Err(LoadError::Invalid("attribute 'kernel_shape' must have 2 values".into())),
    };
    let padding = match ctx.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => match ctx.sizes("pads")? {
            None => Padding::Explicit([0; 4]),
            Some(p) if p.len() == 4 => Padding::Explicit([p[0], p[1], p[2], p[3]]),
            Some(p) => return Err(LoadError::Invalid(format!("attribute 'pads' has {} values, expected 4", p.len()))),
        },
        "SAME_UPPER" => Padding::Same { upper: true },
        "SAME_LOWER" => Padding::Same { upper: false },
        "VALID" => Padding::Valid,
        other => return Err(LoadError::Invalid(format!("attribute 'auto_pad' has unknown value '{other}'"))),
    };
    Ok(Window { kernel, strides: pair("strides", 1)?, dilations: pair("dilations", 1)?, padding, ceil_mode: ctx.int("ceil_mode", 0) != 0 })
}

struct Conv(NhwcConv);

impl Op for Conv {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?.contiguous()?;
        let w = required(inputs, 1, "W")?;
        let b = required(inputs, 2, "B")?;
        Ok(vec![x.apply_op3_no_bwd(w, b, &self.0)?])
    }
}

fn conv(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let groups = usize::try_from(ctx.int("group", 1)).ok().filter(|&g| g > 0)
        .ok_or_else(|| LoadError::Invalid("attribute 'group' must be positive".into()))?;
    Ok(Box::new(Conv(NhwcConv { window: window(ctx)?, groups, activation: from_node(ctx)? })))
}

struct Pool(NhwcPool);

impl Op for Pool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?.contiguous()?;
        // The kernel is f32-only; other dtypes (uint8 images, say) round-trip through f32,
        // which is exact for max pooling of 8/16-bit values.
        let dtype = x.dtype();
        if dtype != candle_core::DType::F32 {
            let y = x.to_dtype(candle_core::DType::F32)?.apply_op1_no_bwd(&self.0)?;
            return Ok(vec![y.to_dtype(dtype)?]);
        }
        Ok(vec![x.apply_op1_no_bwd(&self.0)?])
    }
}

fn pool(ctx: &NodeCtx<'_>, reduce: Reduce) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Pool(NhwcPool { window: window(ctx)?, reduce })))
}

struct GlobalPool {
    max: bool,
}

impl Op for GlobalPool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let (n, h, w, c) = x.dims4()?;
        let flat = x.reshape((n, h * w, c))?;
        let reduced = if self.max { flat.max_keepdim(1)? } else { flat.mean_keepdim(1)? };
        Ok(vec![reduced.reshape((n, 1, 1, c))?])
    }
}
