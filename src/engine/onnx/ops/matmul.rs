//! MatMul (numpy semantics: N-D batched, broadcasting, 1-D operands) and Gemm (transA, transB,
//! alpha, beta, optional unidirectionally broadcast C, optional fused activation).

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::fused::{Activation, activate, from_node};
use super::{Builder, Op, OpError, OpResult, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("MatMul", |_| Ok(Box::new(MatMul))), ("Gemm", gemm)];

struct MatMul;

impl Op for MatMul {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        if a.rank() == 0 || b.rank() == 0 {
            return Err(OpError::Invalid(format!("MatMul needs operands of rank >= 1, got {:?} and {:?}", a.dims(), b.dims())));
        }
        // numpy rules: a 1-D operand gains a unit dimension that is removed afterwards.
        let a2 = if a.rank() == 1 { a.unsqueeze(0)? } else { a.clone() };
        let b2 = if b.rank() == 1 { b.unsqueeze(1)? } else { b.clone() };
        let (k, k2) = (a2.dims()[a2.rank() - 1], b2.dims()[b2.rank() - 2]);
        if k != k2 {
            return Err(OpError::Invalid(format!(
                "MatMul inner dimensions differ: A {:?} has {k} columns, B {:?} has {k2} rows",
                a.dims(),
                b.dims()
            )));
        }
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
    activation: Option<Activation>,
}

impl Op for Gemm {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        if a.rank() != 2 || b.rank() != 2 {
            return Err(OpError::Invalid(format!("Gemm needs 2-D A and B, got {:?} and {:?}", a.dims(), b.dims())));
        }
        // Transposes stay strided views; candle's matmul reads either memory order directly.
        let a = if self.trans_a { a.t()? } else { a.clone() };
        let b = if self.trans_b { b.t()? } else { b.clone() };
        let (m, k) = a.dims2()?;
        let (k2, n) = b.dims2()?;
        if k != k2 {
            return Err(OpError::Invalid(format!(
                "Gemm inner dimensions differ: op(A) is [{m}, {k}], op(B) is [{k2}, {n}]"
            )));
        }
        let mut y = a.matmul(&b)?;
        if self.alpha != 1.0 {
            y = y.affine(self.alpha, 0.0)?;
        }
        if let Some(c) = optional(inputs, 2) {
            // beta = 0 drops C entirely (so a C holding inf or NaN cannot leak in), as onnxruntime does.
            if self.beta != 0.0 {
                if c.rank() > 2 {
                    return Err(OpError::Invalid(format!("Gemm's C must have rank <= 2, got {:?}", c.dims())));
                }
                let c = c.broadcast_as((m, n)).map_err(|_| {
                    OpError::Invalid(format!("Gemm's C {:?} does not broadcast to the output [{m}, {n}]", c.dims()))
                })?;
                let c = if self.beta != 1.0 { c.affine(self.beta, 0.0)? } else { c };
                y = y.add(&c)?;
            }
        }
        Ok(vec![activate(y, self.activation)?])
    }
}

fn gemm(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Gemm {
        alpha: f64::from(ctx.float("alpha", 1.0)),
        beta: f64::from(ctx.float("beta", 1.0)),
        trans_a: ctx.int("transA", 0) != 0,
        trans_b: ctx.int("transB", 0) != 0,
        activation: from_node(ctx)?,
    }))
}
