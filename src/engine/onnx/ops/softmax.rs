//! Softmax and LogSoftmax with their per-opset axis rules.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::unary::check_float;
use super::{Builder, Op, OpError, OpResult, axis, required};

pub(super) const OPS: &[(&str, Builder)] =
    &[("Softmax", |ctx| softmax(ctx, false)), ("LogSoftmax", |ctx| softmax(ctx, true))];

struct Softmax {
    axis: i64,
    /// Before opset 13 the input is flattened to 2-D at `axis` and normalised over the tail.
    coerce_2d: bool,
    log: bool,
}

impl Op for Softmax {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        check_float(x, if self.log { "LogSoftmax" } else { "Softmax" })?;
        if x.elem_count() == 0 {
            return Ok(vec![x.clone()]);
        }
        let rank = x.rank();
        let a = axis(self.axis, rank)?;
        let apply = |t: &Tensor, d: usize| -> Result<Tensor, OpError> {
            Ok(if self.log {
                candle_nn::ops::log_softmax(t, d)?
            } else if d + 1 == t.rank() {
                candle_nn::ops::softmax_last_dim(&t.contiguous()?)?
            } else {
                candle_nn::ops::softmax(t, d)?
            })
        };
        if self.coerce_2d && a + 1 != rank {
            let dims = x.dims();
            let rows: usize = dims[..a].iter().product();
            let cols: usize = dims[a..].iter().product();
            let y = apply(&x.reshape((rows, cols))?, 1)?;
            return Ok(vec![y.reshape(dims)?]);
        }
        Ok(vec![apply(x, a)?])
    }
}

fn softmax(ctx: &NodeCtx<'_>, log: bool) -> Result<Box<dyn Op>, LoadError> {
    let coerce_2d = ctx.opset < 13;
    let default_axis = if coerce_2d { 1 } else { -1 };
    Ok(Box::new(Softmax { axis: ctx.int("axis", default_axis), coerce_2d, log }))
}
