//! Reductions and ArgMax/ArgMin. `axes` is an attribute before opset 18 (13 for ReduceSum) and
//! an optional input after; a model only ever carries one of the two, so both are accepted.

use candle_core::{DType as CDType, Tensor};

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::unary::check_float;
use super::{Builder, Op, OpError, OpResult, axis, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("ReduceSum", |ctx| reduce(ctx, Kind::Sum)),
    ("ReduceMean", |ctx| reduce(ctx, Kind::Mean)),
    ("ReduceMax", |ctx| reduce(ctx, Kind::Max)),
    ("ReduceMin", |ctx| reduce(ctx, Kind::Min)),
    ("ReduceProd", |ctx| reduce(ctx, Kind::Prod)),
    ("ReduceSumSquare", |ctx| reduce(ctx, Kind::SumSquare)),
    ("ReduceL1", |ctx| reduce(ctx, Kind::L1)),
    ("ReduceL2", |ctx| reduce(ctx, Kind::L2)),
    ("ReduceLogSum", |ctx| reduce(ctx, Kind::LogSum)),
    ("ReduceLogSumExp", |ctx| reduce(ctx, Kind::LogSumExp)),
    ("ArgMax", |ctx| arg(ctx, false)),
    ("ArgMin", |ctx| arg(ctx, true)),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    SumSquare,
    L1,
    L2,
    LogSum,
    LogSumExp,
}

impl Kind {
    /// The value of a reduction over no elements, per the ONNX spec (a float; casting it to an
    /// integer type saturates -inf/+inf to the type's min/max, which is what the spec asks).
    fn empty_value(self) -> f64 {
        match self {
            Kind::Prod => 1.0,
            Kind::Sum | Kind::SumSquare | Kind::L1 | Kind::L2 => 0.0,
            Kind::Mean => f64::NAN,
            Kind::Max | Kind::LogSum | Kind::LogSumExp => f64::NEG_INFINITY,
            Kind::Min => f64::INFINITY,
        }
    }

    /// Reduces `x` over `axes` (sorted, distinct, non-empty), keeping the reduced dims.
    fn apply(self, x: &Tensor, axes: &[usize]) -> Result<Tensor, OpError> {
        let axes = axes.to_vec();
        let sum = |t: &Tensor| t.sum_keepdim(axes.clone());
        let fold = |t: &Tensor, max: bool| -> candle_core::Result<Tensor> {
            let mut y = t.clone();
            for &a in &axes {
                y = if max { y.max_keepdim(a)? } else { y.min_keepdim(a)? };
            }
            Ok(y)
        };
        if matches!(self, Kind::L2 | Kind::LogSum | Kind::LogSumExp) {
            check_float(x, "this reduction")?;
        }
        Ok(match self {
            Kind::Sum => sum(x)?,
            Kind::Mean => {
                let n: usize = axes.iter().map(|&a| x.dims()[a]).product();
                if x.dtype().is_float() {
                    x.mean_keepdim(axes)?
                } else {
                    // candle's mean scales by 1/n converted to the integer type, i.e. by 0.
                    sum(x)?.to_dtype(CDType::F64)?.affine(1.0 / n as f64, 0.0)?.to_dtype(x.dtype())?
                }
            }
            Kind::Max => fold(x, true)?,
            Kind::Min => fold(x, false)?,
            Kind::Prod => product(x, &axes)?,
            Kind::SumSquare => sum(&x.mul(x)?)?,
            Kind::L1 => sum(&x.abs()?)?,
            Kind::L2 => sum(&x.mul(x)?)?.sqrt()?,
            Kind::LogSum => sum(x)?.log()?,
            Kind::LogSumExp => {
                let m = fold(x, true)?;
                // A row of -inf would give -inf - -inf = NaN; shifting by 0 there is exact.
                let shift = m.ne(f64::NEG_INFINITY)?.where_cond(&m, &m.zeros_like()?)?;
                (sum(&x.broadcast_sub(&shift)?.exp()?)?.log()? + shift)?
            }
        })
    }
}

/// candle has no product reduction: move the reduced axes last, then multiply row by row on the
/// host (in i64 for integers, f64 for floats).
fn product(x: &Tensor, axes: &[usize]) -> Result<Tensor, OpError> {
    let rank = x.rank();
    let kept: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).collect();
    let order: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let row: usize = axes.iter().map(|&a| x.dims()[a]).product();
    let moved = x.permute(order)?.contiguous()?.flatten_all()?;
    let out_dims: Vec<usize> = x.dims().iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
    let y = if x.dtype().is_float() {
        let v = moved.to_dtype(CDType::F64)?.to_vec1::<f64>()?;
        let p: Vec<f64> = v.chunks_exact(row).map(|r| r.iter().product()).collect();
        Tensor::from_vec(p, out_dims, x.device())?
    } else {
        let v = moved.to_dtype(CDType::I64)?.to_vec1::<i64>()?;
        let p: Vec<i64> = v.chunks_exact(row).map(|r| r.iter().fold(1i64, |a, &b| a.wrapping_mul(b))).collect();
        Tensor::from_vec(p, out_dims, x.device())?
    };
    Ok(y.to_dtype(x.dtype())?)
}

struct Reduce {
    kind: Kind,
    axes_attr: Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

impl Op for Reduce {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let requested = match optional(inputs, 1) {
            Some(t) => int_values(t)?,
            None => self.axes_attr.clone().unwrap_or_default(),
        };
        if requested.is_empty() && self.noop_with_empty_axes {
            return Ok(vec![x.clone()]);
        }
        // A scalar reduces as a one-element vector, then takes its scalar shape back.
        let scalar = x.rank() == 0;
        let x = if scalar { x.reshape(1)? } else { x.clone() };
        let rank = x.rank();
        let mut axes: Vec<usize> = if requested.is_empty() || scalar {
            (0..rank).collect()
        } else {
            requested.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?
        };
        axes.sort_unstable();
        axes.dedup();
        let kept: Vec<usize> =
            x.dims().iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        let y = if x.elem_count() == 0 {
            Tensor::full(self.kind.empty_value(), kept.as_slice(), x.device())?.to_dtype(x.dtype())?
        } else {
            self.kind.apply(&x, &axes)?
        };
        if scalar {
            return Ok(vec![y.reshape(())?]);
        }
        if self.keepdims {
            return Ok(vec![y]);
        }
        let squeezed: Vec<usize> =
            kept.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect();
        Ok(vec![y.reshape(squeezed)?])
    }
}

fn reduce(ctx: &NodeCtx<'_>, kind: Kind) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Reduce {
        kind,
        axes_attr: ctx.ints("axes"),
        keepdims: ctx.int("keepdims", 1) != 0,
        noop_with_empty_axes: ctx.int("noop_with_empty_axes", 0) != 0,
    }))
}

struct Arg {
    axis: i64,
    keepdims: bool,
    select_last_index: bool,
    min: bool,
}

impl Op for Arg {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let a = axis(self.axis, x.rank())?;
        let n = x.dim(a)?;
        if n == 0 {
            return Err(OpError::Invalid(format!("cannot take the arg{} of an empty axis {a}", if self.min { "min" } else { "max" })));
        }
        let pick = |t: &Tensor| if self.min { t.argmin_keepdim(a) } else { t.argmax_keepdim(a) };
        // candle keeps the first of equal values; for the last, search the reversed axis.
        let index = if self.select_last_index {
            let reversed: Vec<u32> = (0..n as u32).rev().collect();
            let flipped = x.index_select(&Tensor::from_vec(reversed, n, x.device())?, a)?;
            pick(&flipped)?.to_dtype(CDType::I64)?.affine(-1.0, (n - 1) as f64)?
        } else {
            pick(x)?.to_dtype(CDType::I64)?
        };
        Ok(vec![if self.keepdims { index } else { index.squeeze(a)? }])
    }
}

fn arg(ctx: &NodeCtx<'_>, min: bool) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Arg {
        axis: ctx.int("axis", 0),
        keepdims: ctx.int("keepdims", 1) != 0,
        select_last_index: ctx.int("select_last_index", 0) != 0,
        min,
    }))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn max_over(axes: Vec<i64>) -> Reduce {
        Reduce { kind: Kind::Max, axes_attr: Some(axes), keepdims: false, noop_with_empty_axes: false }
    }

    #[test]
    fn max_over_an_empty_axis_is_the_lowest_value_not_a_panic() {
        let x = Tensor::zeros((2, 0), candle_core::DType::F32, &Device::Cpu).unwrap();
        let y = max_over(vec![1]).run(&[Some(&x)]).unwrap();
        assert_eq!(y[0].to_vec1::<f32>().unwrap(), vec![f32::NEG_INFINITY; 2]);
        let xi = Tensor::zeros((0, 3), candle_core::DType::I64, &Device::Cpu).unwrap();
        let y = max_over(vec![0]).run(&[Some(&xi)]).unwrap();
        assert_eq!(y[0].to_vec1::<i64>().unwrap(), vec![i64::MIN; 3]);
    }

    #[test]
    fn argmax_picks_first_or_last_of_ties() {
        let x = Tensor::new(&[[1f32, 5.0, 5.0, 2.0]], &Device::Cpu).unwrap();
        let first = Arg { axis: 1, keepdims: false, select_last_index: false, min: false };
        let last = Arg { select_last_index: true, ..first };
        assert_eq!(first.run(&[Some(&x)]).unwrap()[0].to_vec1::<i64>().unwrap(), vec![1]);
        assert_eq!(last.run(&[Some(&x)]).unwrap()[0].to_vec1::<i64>().unwrap(), vec![2]);
    }
}
