//! Pointwise activations and Clip. Attributes are read once at load; the float-only ones reject
//! integer tensors rather than reach candle's unimplemented integer kernels.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::unary::check_float;
use super::{Builder, Op, OpError, OpResult, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Relu", |_| Ok(Box::new(Relu))),
    ("Sigmoid", |_| act(Kind::Sigmoid)),
    ("Tanh", |_| act(Kind::Tanh)),
    ("Softplus", |_| act(Kind::Softplus)),
    ("Softsign", |_| act(Kind::Softsign)),
    ("LeakyRelu", |ctx| act(Kind::LeakyRelu(attr(ctx, "alpha", 0.01)))),
    ("Elu", |ctx| act(Kind::Elu(attr(ctx, "alpha", 1.0)))),
    ("Selu", selu),
    ("HardSigmoid", |ctx| act(Kind::HardSigmoid(attr(ctx, "alpha", 0.2), attr(ctx, "beta", 0.5)))),
    ("Gelu", gelu),
    ("Clip", clip),
];

fn attr(ctx: &NodeCtx<'_>, name: &str, default: f32) -> f64 {
    f64::from(ctx.float(name, default))
}

struct Relu;

impl Op for Relu {
    /// candle's relu kernel is defined for every dtype, so integers pass through here too.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        Ok(vec![required(inputs, 0, "X")?.relu()?])
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Sigmoid,
    Tanh,
    Softplus,
    Softsign,
    LeakyRelu(f64),
    Elu(f64),
    Selu { alpha: f64, gamma: f64 },
    HardSigmoid(f64, f64),
    GeluErf,
    GeluTanh,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sigmoid => "Sigmoid",
            Kind::Tanh => "Tanh",
            Kind::Softplus => "Softplus",
            Kind::Softsign => "Softsign",
            Kind::LeakyRelu(_) => "LeakyRelu",
            Kind::Elu(_) => "Elu",
            Kind::Selu { .. } => "Selu",
            Kind::HardSigmoid(..) => "HardSigmoid",
            Kind::GeluErf | Kind::GeluTanh => "Gelu",
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Kind::Sigmoid => candle_nn::ops::sigmoid(x),
            Kind::Tanh => x.tanh(),
            // max(x, 0) + log(1 + exp(-|x|)): the textbook log(1 + exp(x)) overflows for large x.
            Kind::Softplus => x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?,
            Kind::Softsign => x / (x.abs()? + 1.0)?,
            Kind::LeakyRelu(alpha) => x.relu()? + x.minimum(0f64)?.affine(alpha, 0.0)?,
            Kind::Elu(alpha) => x.elu(alpha),
            // gamma * (max(x, 0) + alpha * (exp(min(x, 0)) - 1))
            Kind::Selu { alpha, gamma } => {
                let neg = x.minimum(0f64)?.exp()?.affine(alpha, -alpha)?;
                (x.relu()? + neg)?.affine(gamma, 0.0)
            }
            Kind::HardSigmoid(alpha, beta) => x.affine(alpha, beta)?.clamp(0f64, 1f64),
            Kind::GeluErf => x.gelu_erf(),
            Kind::GeluTanh => x.gelu(),
        }
    }
}

impl Op for Kind {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        check_float(x, self.name())?;
        Ok(vec![self.apply(x)?])
    }
}

fn act(kind: Kind) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(kind))
}

fn selu(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    // ONNX's defaults, given to float precision in the spec.
    act(Kind::Selu { alpha: attr(ctx, "alpha", 1.673_263_2), gamma: attr(ctx, "gamma", 1.050_701) })
}

fn gelu(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    match ctx.string("approximate", "none")?.as_str() {
        "none" => act(Kind::GeluErf),
        "tanh" => act(Kind::GeluTanh),
        other => Err(LoadError::Invalid(format!("attribute 'approximate' is '{other}', expected 'none' or 'tanh'"))),
    }
}

/// Bounds come from inputs 1 and 2 from opset 11 on, from attributes before.
struct Clip {
    attr_bounds: Option<(f32, f32)>,
}

impl Op for Clip {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        if let Some((lo, hi)) = self.attr_bounds {
            check_float(x, "Clip")?;
            return Ok(vec![x.clamp(lo, hi)?]);
        }
        let bound = |i: usize, what: &str| -> Result<Option<Tensor>, OpError> {
            match optional(inputs, i) {
                None => Ok(None),
                Some(b) if b.elem_count() != 1 => {
                    Err(OpError::Invalid(format!("Clip's {what} must be a scalar, got shape {:?}", b.dims())))
                }
                Some(b) if b.dtype() != x.dtype() => {
                    Err(OpError::Invalid(format!("Clip's {what} is {:?} but the input is {:?}", b.dtype(), x.dtype())))
                }
                Some(b) => Ok(Some(b.reshape(())?.broadcast_as(x.shape())?)),
            }
        };
        let mut y = x.clone();
        // numpy.clip order: raise to min first, then cap at max, so min > max yields max.
        if let Some(lo) = bound(1, "min")? {
            y = y.maximum(&lo)?;
        }
        if let Some(hi) = bound(2, "max")? {
            y = y.minimum(&hi)?;
        }
        Ok(vec![y])
    }
}

fn clip(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let attr_bounds = (ctx.opset < 11).then(|| (ctx.float("min", f32::MIN), ctx.float("max", f32::MAX)));
    Ok(Box::new(Clip { attr_bounds }))
}
