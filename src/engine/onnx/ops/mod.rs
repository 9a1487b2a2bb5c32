//! Operator registry: one file per op family, each contributing a table of (name, builder).
//! Builders parse attributes at load; the returned [`Op`] only computes.

mod activation;
mod binary;
mod constant;
mod control;
mod conv;
mod conv_transpose;
mod cpu_kernels;
mod fused;
mod logic;
mod matmul;
mod movement;
mod norm;
mod pad;
mod pool;
mod reduce;
mod resize;
mod rnn;
mod shape;
mod softmax;
mod unary;
mod window;

use candle_core::{DType as CDType, Tensor};
use thiserror::Error;

use crate::engine::LoadError;
use crate::proto::onnx::tensor_proto::DataType as OnnxType;
use crate::tensor::DType;

use super::attrs::NodeCtx;

#[derive(Debug, Error)]
pub(crate) enum OpError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) type OpResult = Result<Vec<Tensor>, OpError>;

/// A node's kernel with its attributes already resolved.
pub(crate) trait Op: Send + Sync {
    /// `inputs[i]` is `None` for an omitted optional input.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult;

    /// Called once at load with the inputs already known then (initializers, folded constants;
    /// `None` elsewhere), so a kernel can repack its weights once instead of on every request.
    fn prepare(&mut self, _constants: &[Option<&Tensor>]) -> Result<(), OpError> {
        Ok(())
    }

    /// Whether `prepare` kept all that `run` needs of constant input `input`. The plan then
    /// passes `None` for it and drops the constant once nothing else reads it, so weights
    /// repacked at load replace the originals instead of sitting beside them.
    fn absorbed(&self, _input: usize) -> bool {
        false
    }
}

pub(crate) type Builder = fn(&NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError>;

const FAMILIES: &[&[(&str, Builder)]] = &[
    activation::OPS,
    binary::OPS,
    constant::OPS,
    control::OPS,
    conv::OPS,
    conv_transpose::OPS,
    cpu_kernels::OPS,
    logic::OPS,
    matmul::OPS,
    movement::OPS,
    norm::OPS,
    pad::OPS,
    pool::OPS,
    reduce::OPS,
    resize::OPS,
    rnn::OPS,
    shape::OPS,
    softmax::OPS,
    unary::OPS,
];

pub(crate) fn lookup(op_type: &str) -> Option<Builder> {
    FAMILIES.iter().flat_map(|f| f.iter()).find(|(name, _)| *name == op_type).map(|(_, b)| *b)
}

pub(crate) fn required<'t>(inputs: &[Option<&'t Tensor>], index: usize, what: &str) -> Result<&'t Tensor, OpError> {
    inputs.get(index).copied().flatten().ok_or_else(|| OpError::Invalid(format!("missing required input {index} ({what})")))
}

pub(crate) fn optional<'t>(inputs: &[Option<&'t Tensor>], index: usize) -> Option<&'t Tensor> {
    inputs.get(index).copied().flatten()
}

/// Runs `f` on a float32 tensor's values, borrowed in place when they already sit contiguous
/// in host memory (a request's input, a weight being packed at load: a copy of the largest
/// conv's weights was part of the load's peak), copied otherwise.
pub(crate) fn with_f32_values<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R, OpError> {
    if t.dtype() != CDType::F32 {
        return Err(OpError::Invalid(format!("{what} has dtype {:?}; only float32 is supported", t.dtype())));
    }
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            return Ok(f(&cpu.as_slice::<f32>()?[start..end]));
        }
    }
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&values))
}

/// Reads a small integer tensor (shapes, axes, indices) into host memory.
pub(crate) fn int_values(t: &Tensor) -> Result<Vec<i64>, OpError> {
    Ok(t.flatten_all()?.to_dtype(CDType::I64)?.to_vec1::<i64>()?)
}

/// Resolves a possibly negative axis against `rank` (ONNX allows `-rank..rank`).
pub(crate) fn axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(OpError::Invalid(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

pub(crate) fn candle_dtype_for_onnx(elem_type: i32) -> Option<CDType> {
    Some(match OnnxType::try_from(elem_type).ok()? {
        OnnxType::Float => CDType::F32,
        OnnxType::Double => CDType::F64,
        OnnxType::Float16 => CDType::F16,
        OnnxType::Bfloat16 => CDType::BF16,
        OnnxType::Uint8 | OnnxType::Bool => CDType::U8,
        OnnxType::Int16 => CDType::I16,
        OnnxType::Int32 => CDType::I32,
        OnnxType::Int64 => CDType::I64,
        OnnxType::Uint32 => CDType::U32,
        _ => return None,
    })
}

pub(crate) fn dtype_for_onnx(elem_type: i32) -> Option<DType> {
    Some(match OnnxType::try_from(elem_type).ok()? {
        OnnxType::Float => DType::F32,
        OnnxType::Double => DType::F64,
        OnnxType::Float16 => DType::F16,
        OnnxType::Bfloat16 => DType::BF16,
        OnnxType::Uint8 => DType::U8,
        OnnxType::Bool => DType::Bool,
        OnnxType::Int8 => DType::I8,
        OnnxType::Int16 => DType::I16,
        OnnxType::Int32 => DType::I32,
        OnnxType::Int64 => DType::I64,
        OnnxType::Uint16 => DType::U16,
        OnnxType::Uint32 => DType::U32,
        OnnxType::Uint64 => DType::U64,
        _ => return None,
    })
}
