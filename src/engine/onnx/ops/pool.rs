//! Max and average pooling, local and global (2-D).

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::conv::{AutoPad, resolve_pads};
use super::{Builder, Op, OpError, OpResult, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("MaxPool", |ctx| pool(ctx, Kind::Max)),
    ("AveragePool", |ctx| pool(ctx, Kind::Avg)),
    ("GlobalMaxPool", |_| Ok(Box::new(GlobalPool(Kind::Max)))),
    ("GlobalAveragePool", |_| Ok(Box::new(GlobalPool(Kind::Avg)))),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Max,
    Avg,
}

struct Pool {
    kind: Kind,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    pads: Option<Vec<usize>>,
    auto_pad: AutoPad,
    ceil_mode: bool,
    count_include_pad: bool,
}

/// Pads spatial axis `dim` with `value` (max pooling must not see padded zeros as maxima).
fn pad_with(x: &Tensor, dim: usize, before: usize, after: usize, value: f64) -> Result<Tensor, OpError> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::new();
    let mut dims = x.dims().to_vec();
    if before > 0 {
        dims[dim] = before;
        parts.push(Tensor::full(value, dims.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    parts.push(x.clone());
    if after > 0 {
        dims[dim] = after;
        parts.push(Tensor::full(value, dims.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    Ok(Tensor::cat(&parts, dim)?)
}

impl Op for Pool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        if x.rank() != 4 {
            return Err(OpError::Invalid(format!("only 2-D pooling (4-D input) is supported, got rank {}", x.rank())));
        }
        let (_, _, h, w) = x.dims4()?;
        let mut pads = resolve_pads(self.auto_pad, self.pads.as_deref(), &[h, w], &self.kernel, &self.strides, &[1, 1])?;
        // Explicit padding is part of the averaging window when count_include_pad is set;
        // the extra tail that ceil_mode adds never is.
        let explicit = pads.clone();
        if self.ceil_mode {
            for (i, size) in [h, w].into_iter().enumerate() {
                let (b, e) = pads[i];
                let span = size + b + e;
                if span < self.kernel[i] {
                    continue;
                }
                let mut out = (span - self.kernel[i]).div_ceil(self.strides[i]) + 1;
                if (out - 1) * self.strides[i] >= size + b {
                    out -= 1;
                }
                let need = ((out - 1) * self.strides[i] + self.kernel[i]).saturating_sub(span);
                pads[i].1 += need;
            }
        }
        let k = (self.kernel[0], self.kernel[1]);
        let s = (self.strides[0], self.strides[1]);
        let y = match self.kind {
            Kind::Max => {
                let xp = pad_with(&pad_with(x, 2, pads[0].0, pads[0].1, f64::NEG_INFINITY)?, 3, pads[1].0, pads[1].1, f64::NEG_INFINITY)?;
                xp.max_pool2d_with_stride(k, s)?
            }
            Kind::Avg => {
                let xp = x.pad_with_zeros(2, pads[0].0, pads[0].1)?.pad_with_zeros(3, pads[1].0, pads[1].1)?;
                let means = xp.avg_pool2d_with_stride(k, s)?;
                if pads.iter().all(|&(b, e)| b == 0 && e == 0) {
                    means
                } else {
                    // Divide by the number of counted cells in each window instead of k*k.
                    let ones = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?;
                    let mask = if self.count_include_pad {
                        let m = pad_with(&pad_with(&ones, 2, explicit[0].0, explicit[0].1, 1.0)?, 3, explicit[1].0, explicit[1].1, 1.0)?;
                        m.pad_with_zeros(2, 0, pads[0].1 - explicit[0].1)?.pad_with_zeros(3, 0, pads[1].1 - explicit[1].1)?
                    } else {
                        ones.pad_with_zeros(2, pads[0].0, pads[0].1)?.pad_with_zeros(3, pads[1].0, pads[1].1)?
                    };
                    let counted = mask.avg_pool2d_with_stride(k, s)?;
                    means.broadcast_div(&counted)?
                }
            }
        };
        Ok(vec![y])
    }
}

fn pool(ctx: &NodeCtx<'_>, kind: Kind) -> Result<Box<dyn Op>, LoadError> {
    let kernel = ctx.sizes("kernel_shape")?.ok_or_else(|| LoadError::Invalid("attribute 'kernel_shape' is required".into()))?;
    if kernel.len() != 2 {
        return Err(LoadError::Invalid(format!("only 2-D pooling is supported, kernel_shape has {} axes", kernel.len())));
    }
    if let Some(d) = ctx.sizes("dilations")? {
        if d.iter().any(|&d| d != 1) {
            return Err(LoadError::Invalid(format!("pooling dilations {d:?} are not supported")));
        }
    }
    if ctx.node.output.len() > 1 && !ctx.node.output[1].is_empty() {
        return Err(LoadError::Invalid("MaxPool's Indices output is not supported".into()));
    }
    let strides = ctx.sizes("strides")?.unwrap_or_else(|| vec![1, 1]);
    if strides.len() != 2 || strides.contains(&0) {
        return Err(LoadError::Invalid(format!("attribute 'strides' must have 2 positive values, got {strides:?}")));
    }
    Ok(Box::new(Pool {
        kind,
        kernel,
        strides,
        pads: ctx.sizes("pads")?,
        auto_pad: AutoPad::parse(ctx)?,
        ceil_mode: ctx.int("ceil_mode", 0) != 0,
        count_include_pad: ctx.int("count_include_pad", 0) != 0,
    }))
}

struct GlobalPool(Kind);

impl Op for GlobalPool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        if x.rank() < 3 {
            return Err(OpError::Invalid(format!("global pooling needs rank >= 3, got {}", x.rank())));
        }
        let dims = x.dims();
        let (n, c) = (dims[0], dims[1]);
        let flat = x.reshape((n, c, dims[2..].iter().product::<usize>()))?;
        let reduced = match self.0 {
            Kind::Max => flat.max_keepdim(2)?,
            Kind::Avg => flat.mean_keepdim(2)?,
        };
        let mut out = vec![n, c];
        out.extend(std::iter::repeat_n(1, dims.len() - 2));
        Ok(vec![reduced.reshape(out)?])
    }
}
