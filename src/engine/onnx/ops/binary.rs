//! Broadcasting arithmetic.

use candle_core::Tensor;

use crate::engine::LoadError;

use super::{Builder, Op, OpResult, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Add", |_| binary(|a, b| a.broadcast_add(b))),
    ("Sub", |_| binary(|a, b| a.broadcast_sub(b))),
    ("Mul", |_| binary(|a, b| a.broadcast_mul(b))),
    ("Div", |_| binary(|a, b| a.broadcast_div(b))),
];

struct Binary(fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>);

impl Op for Binary {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        Ok(vec![(self.0)(required(inputs, 0, "A")?, required(inputs, 1, "B")?)?])
    }
}

fn binary(f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Binary(f)))
}
