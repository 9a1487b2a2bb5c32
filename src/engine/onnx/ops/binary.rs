//! Broadcasting arithmetic (numpy rules, as candle's `broadcast_*` ops implement them), Pow, and
//! the variadic Max/Min/Sum/Mean.

use candle_core::{DType as CDType, Tensor};

use crate::engine::LoadError;

use super::unary::check_float;
use super::{Builder, Op, OpError, OpResult, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Add", |_| binary(|a, b| a.broadcast_add(b))),
    ("Sub", |_| binary(|a, b| a.broadcast_sub(b))),
    ("Mul", |_| binary(|a, b| a.broadcast_mul(b))),
    ("Div", |_| Ok(Box::new(Div))),
    ("Pow", |_| Ok(Box::new(Pow))),
    ("Max", |_| Ok(Box::new(Variadic::Max))),
    ("Min", |_| Ok(Box::new(Variadic::Min))),
    ("Sum", |_| Ok(Box::new(Variadic::Sum))),
    ("Mean", |_| Ok(Box::new(Variadic::Mean))),
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

struct Div;

impl Op for Div {
    /// Integer division truncates toward zero, as ONNX's reference does; a zero divisor would
    /// panic inside candle's integer kernel, so it is caught first.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        if !b.dtype().is_float() && b.elem_count() > 0 && b.eq(0f64)?.flatten_all()?.max(0)?.to_scalar::<u8>()? != 0 {
            return Err(OpError::Invalid("integer division by zero".into()));
        }
        Ok(vec![a.broadcast_div(b)?])
    }
}

/// Materialises `t` broadcast to `shape` as a host vector of `dtype`.
fn host<T: candle_core::WithDType>(t: &Tensor, shape: &candle_core::Shape, dtype: CDType) -> Result<Vec<T>, OpError> {
    Ok(t.to_dtype(dtype)?.broadcast_as(shape)?.contiguous()?.flatten_all()?.to_vec1::<T>()?)
}

struct Pow;

impl Op for Pow {
    /// The result has X's type. candle's `pow` is exp(y * ln x), wrong for negative bases, so
    /// this computes on the host: f32 powf for f32^f32 (what numpy does), integer powers for
    /// int^int, and f64 otherwise.
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let y = required(inputs, 1, "Y")?;
        let shape = x.shape().broadcast_shape_binary_op(y.shape(), "Pow")?;
        let device = x.device();
        let out = match (x.dtype(), y.dtype()) {
            (CDType::F32, CDType::F32) => {
                let (xs, ys) = (host::<f32>(x, &shape, CDType::F32)?, host::<f32>(y, &shape, CDType::F32)?);
                let v: Vec<f32> = xs.iter().zip(&ys).map(|(&a, &b)| a.powf(b)).collect();
                Tensor::from_vec(v, &shape, device)?
            }
            (xt, yt) if !xt.is_float() && !yt.is_float() => {
                let (xs, ys) = (host::<i64>(x, &shape, CDType::I64)?, host::<i64>(y, &shape, CDType::I64)?);
                let v: Vec<i64> = xs
                    .iter()
                    .zip(&ys)
                    .map(|(&a, &b)| match u32::try_from(b) {
                        Ok(e) => a.wrapping_pow(e),
                        Err(_) if b < 0 => (a as f64).powf(b as f64) as i64,
                        Err(_) => a.wrapping_pow(u32::MAX),
                    })
                    .collect();
                Tensor::from_vec(v, &shape, device)?.to_dtype(xt)?
            }
            (xt, _) => {
                let (xs, ys) = (host::<f64>(x, &shape, CDType::F64)?, host::<f64>(y, &shape, CDType::F64)?);
                let v: Vec<f64> = xs.iter().zip(&ys).map(|(&a, &b)| a.powf(b)).collect();
                Tensor::from_vec(v, &shape, device)?.to_dtype(xt)?
            }
        };
        Ok(vec![out])
    }
}

enum Variadic {
    Max,
    Min,
    Sum,
    Mean,
}

impl Op for Variadic {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let mut parts = inputs.iter().flatten();
        let first = parts.next().ok_or_else(|| OpError::Invalid("needs at least one input".into()))?;
        let mut acc = (*first).clone();
        let mut count = 1usize;
        for t in parts {
            acc = match self {
                Variadic::Max => acc.broadcast_maximum(t)?,
                Variadic::Min => acc.broadcast_minimum(t)?,
                Variadic::Sum | Variadic::Mean => acc.broadcast_add(t)?,
            };
            count += 1;
        }
        if let Variadic::Mean = self {
            check_float(&acc, "Mean")?;
            acc = acc.affine(1.0 / count as f64, 0.0)?;
        }
        Ok(vec![acc])
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn integer_division_by_zero_is_an_error_not_a_panic() {
        let a = Tensor::new(&[4i64, 9], &Device::Cpu).unwrap();
        let b = Tensor::new(&[2i64, 0], &Device::Cpu).unwrap();
        let err = Div.run(&[Some(&a), Some(&b)]).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("integer division by zero"));
        let q = Div.run(&[Some(&Tensor::new(&[-7i64], &Device::Cpu).unwrap()), Some(&Tensor::new(&[2i64], &Device::Cpu).unwrap())]);
        assert_eq!(q.unwrap()[0].to_vec1::<i64>().unwrap(), vec![-3], "truncates toward zero");
    }

    #[test]
    fn pow_handles_negative_bases_and_keeps_the_base_type() {
        let x = Tensor::new(&[-2f32, 3.0], &Device::Cpu).unwrap();
        let y = Tensor::new(&[3i64], &Device::Cpu).unwrap();
        let out = Pow.run(&[Some(&x), Some(&y)]).unwrap();
        assert_eq!(out[0].to_vec1::<f32>().unwrap(), vec![-8.0, 27.0]);
        let xi = Tensor::new(&[2i32, -3], &Device::Cpu).unwrap();
        let yf = Tensor::new(&[2.5f32, 2.0], &Device::Cpu).unwrap();
        let out = Pow.run(&[Some(&xi), Some(&yf)]).unwrap();
        assert_eq!(out[0].to_vec1::<i32>().unwrap(), vec![5, 9]);
    }
}
