//! MatMul and Gemm.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::{Builder, Op, OpError, OpResult, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("MatMul", |_| Ok(Box::new(MatMul))), ("Gemm", gemm)];

struct MatMul;

impl Op for MatMul {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        // numpy rules: 1-D operands gain a unit dimension that is removed afterwards.
        let a2 = if a.rank() == 1 { a.unsqueeze(0)? } else { a.clone() };
        let b2 = if b.rank() == 1 { b.unsqueeze(1)? } else { b.clone() };
        let mut y = if a2.rank() == 2 && b2.rank() == 2 { a2.matmul(&b2)? } else { a2.broadcast_matmul(&b2)? };
        if b.rank() == 1 {
            y = y.squeeze(y.rank() - 1)?;
        }
        if a.rank() == 1 {
            y = y.squeeze(y.rank().saturating_sub(2))?;
        }
        Ok(vec![y])
    }
}

struct Gemm {
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
}

impl Op for Gemm {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        if a.rank() != 2 || b.rank() != 2 {
            return Err(OpError::Invalid(format!("Gemm needs 2-D inputs, got {:?} and {:?}", a.dims(), b.dims())));
        }
        let a = if self.trans_a { a.t()? } else { a.clone() };
        let b = if self.trans_b { b.t()? } else { b.clone() };
        let mut y = a.matmul(&b)?;
        if self.alpha != 1.0 {
            y = y.affine(self.alpha, 0.0)?;
        }
        if let Some(c) = optional(inputs, 2) {
            let c = if self.beta != 1.0 { c.affine(self.beta, 0.0)? } else { c.clone() };
            y = y.broadcast_add(&c)?;
        }
        Ok(vec![y])
    }
}

fn gemm(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Gemm {
        alpha: f64::from(ctx.float("alpha", 1.0)),
        beta: f64::from(ctx.float("beta", 1.0)),
        trans_a: ctx.int("transA", 0) != 0,
        trans_b: ctx.int("transB", 0) != 0,
    }))
}
