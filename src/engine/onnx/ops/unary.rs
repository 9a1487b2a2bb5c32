//! Pointwise math. candle's integer kernels for exp/log/sqrt/neg are `todo!()` panics, so every
//! op here checks the dtype first and either takes a safe integer path or names the problem.

use candle_core::Tensor;

use crate::engine::LoadError;

use super::{Builder, Op, OpError, OpResult, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Sqrt", |_| float_op("Sqrt", Tensor::sqrt)),
    ("Exp", |_| float_op("Exp", Tensor::exp)),
    ("Log", |_| float_op("Log", Tensor::log)),
    ("Erf", |_| float_op("Erf", Tensor::erf)),
    ("Reciprocal", |_| float_op("Reciprocal", Tensor::recip)),
    ("Floor", |_| float_op("Floor", Tensor::floor)),
    ("Ceil", |_| float_op("Ceil", Tensor::ceil)),
    ("Sin", |_| float_op("Sin", Tensor::sin)),
    ("Cos", |_| float_op("Cos", Tensor::cos)),
    ("Neg", |_| Ok(Box::new(Neg))),
    ("Abs", |_| Ok(Box::new(Abs))),
];

/// Fails with a clear message instead of reaching one of candle's integer `todo!()` kernels.
pub(crate) fn check_float(x: &Tensor, op: &str) -> Result<(), OpError> {
    if x.dtype().is_float() {
        Ok(())
    } else {
        Err(OpError::Invalid(format!("{op} needs a floating-point input, got {:?}", x.dtype())))
    }
}

struct FloatOp {
    name: &'static str,
    f: fn(&Tensor) -> candle_core::Result<Tensor>,
}

impl Op for FloatOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        check_float(x, self.name)?;
        Ok(vec![(self.f)(x)?])
    }
}

fn float_op(name: &'static str, f: fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(FloatOp { name, f }))
}

struct Neg;

impl Op for Neg {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        if x.dtype().is_float() {
            return Ok(vec![x.neg()?]);
        }
        if matches!(x.dtype(), candle_core::DType::U8 | candle_core::DType::U32) {
            return Err(OpError::Invalid(format!("Neg of an unsigned {:?} tensor", x.dtype())));
        }
        // Integer negation as 0 - x: candle's integer `neg` kernel is unimplemented.
        Ok(vec![x.zeros_like()?.sub(x)?])
    }
}

struct Abs;

impl Op for Abs {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        Ok(vec![required(inputs, 0, "X")?.abs()?])
    }
}
