//! Comparisons, boolean logic and Where. Bools live in candle as U8 0/1, which is also what
//! candle's comparison kernels produce.

use candle_core::{DType as CDType, Tensor};

use crate::engine::LoadError;

use super::{Builder, Op, OpError, OpResult, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Equal", |_| binary(|a, b| a.broadcast_eq(b))),
    ("Less", |_| binary(|a, b| a.broadcast_lt(b))),
    ("LessOrEqual", |_| binary(|a, b| a.broadcast_le(b))),
    ("Greater", |_| binary(|a, b| a.broadcast_gt(b))),
    ("GreaterOrEqual", |_| binary(|a, b| a.broadcast_ge(b))),
    ("And", |_| binary(|a, b| truth(a)?.broadcast_minimum(&truth(b)?))),
    ("Or", |_| binary(|a, b| truth(a)?.broadcast_maximum(&truth(b)?))),
    ("Xor", |_| binary(|a, b| truth(a)?.broadcast_ne(&truth(b)?))),
    ("Not", |_| Ok(Box::new(Not))),
    ("Where", |_| Ok(Box::new(Where))),
];

/// Normalises a bool tensor to 0/1 so that min/max/ne implement and/or/xor.
fn truth(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.dtype() == CDType::U8 { t.ne(0u8) } else { t.ne(0f64) }
}

struct Binary(fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>);

impl Op for Binary {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        if a.dtype() != b.dtype() {
            return Err(OpError::Invalid(format!("inputs have different types {:?} and {:?}", a.dtype(), b.dtype())));
        }
        Ok(vec![(self.0)(a, b)?])
    }
}

fn binary(f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Binary(f)))
}

struct Not;

impl Op for Not {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        Ok(vec![if x.dtype() == CDType::U8 { x.eq(0u8)? } else { x.eq(0f64)? }])
    }
}

struct Where;

impl Op for Where {
    /// All three operands broadcast together (numpy rules).
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let cond = required(inputs, 0, "condition")?;
        let x = required(inputs, 1, "X")?;
        let y = required(inputs, 2, "Y")?;
        if x.dtype() != y.dtype() {
            return Err(OpError::Invalid(format!("X is {:?} but Y is {:?}", x.dtype(), y.dtype())));
        }
        let shape = cond
            .shape()
            .broadcast_shape_binary_op(x.shape(), "Where")?
            .broadcast_shape_binary_op(y.shape(), "Where")?;
        let cond = cond.broadcast_as(&shape)?;
        Ok(vec![cond.where_cond(&x.broadcast_as(&shape)?, &y.broadcast_as(&shape)?)?])
    }
}
