//! Pointwise activations and the softmax family.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::{Builder, Op, OpError, OpResult, axis, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Relu", |_| unary(|x| x.relu())),
    ("Sigmoid", |_| unary(candle_nn::ops::sigmoid)),
    ("Tanh", |_| unary(|x| x.tanh())),
    ("Exp", |_| unary(|x| x.exp())),
    ("Log", |_| unary(|x| x.log())),
    ("Sqrt", |_| unary(|x| x.sqrt())),
    ("Neg", |_| unary(|x| x.neg())),
    ("Abs", |_| unary(|x| x.abs())),
    ("LeakyRelu", leaky_relu),
    ("Softmax", |ctx| softmax(ctx, false)),
    ("LogSoftmax", |ctx| softmax(ctx, true)),
];

struct Unary(fn(&Tensor) -> candle_core::Result<Tensor>);

impl Op for Unary {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        Ok(vec![(self.0)(required(inputs, 0, "X")?)?])
    }
}

fn unary(f: fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Unary(f)))
}

struct LeakyRelu(f64);

impl Op for LeakyRelu {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let neg = x.minimum(0f64)?.affine(self.0, 0.0)?;
        Ok(vec![(x.relu()? + neg)?])
    }
}

fn leaky_relu(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(LeakyRelu(f64::from(ctx.float("alpha", 0.01)))))
}

struct Softmax {
    axis: i64,
    /// Before opset 13 the input is flattened to 2-D at `axis` and normalised over the tail.
    coerce_2d: bool,
    log: bool,
}

impl Op for Softmax {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
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
