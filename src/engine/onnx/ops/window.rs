//! Sliding-window geometry shared by convolution and pooling: per-axis attributes, padding
//! resolution and the strided gather (im2col) that the general N-D paths build on.

use candle_core::{DType, Device, Tensor};

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::OpError;

/// ONNX `auto_pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AutoPad {
    NotSet,
    Valid,
    SameUpper,
    SameLower,
}

impl AutoPad {
    pub(super) fn parse(ctx: &NodeCtx<'_>) -> Result<Self, LoadError> {
        match ctx.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => Ok(AutoPad::NotSet),
            "VALID" => Ok(AutoPad::Valid),
            "SAME_UPPER" => Ok(AutoPad::SameUpper),
            "SAME_LOWER" => Ok(AutoPad::SameLower),
            other => Err(LoadError::Invalid(format!("attribute 'auto_pad' has unknown value '{other}'"))),
        }
    }

    /// Splits a total padding the way SAME_UPPER / SAME_LOWER prescribe (the odd cell goes to
    /// the end for UPPER, to the beginning for LOWER).
    pub(super) fn split(self, total: usize) -> (usize, usize) {
        let small = total / 2;
        if self == AutoPad::SameLower { (total - small, small) } else { (small, total - small) }
    }
}

/// Strides and dilations must be positive; a zero would divide by zero or collapse the window.
pub(super) fn positive(ctx: &NodeCtx<'_>, name: &str) -> Result<Option<Vec<usize>>, LoadError> {
    let v = ctx.sizes(name)?;
    if let Some(v) = &v && v.contains(&0) {
        return Err(LoadError::Invalid(format!("attribute '{name}' must be positive, got {v:?}")));
    }
    Ok(v)
}

/// Expands an optional per-spatial-axis attribute to `n` values.
pub(super) fn per_axis(v: Option<&[usize]>, n: usize, default: usize, name: &str) -> Result<Vec<usize>, OpError> {
    match v {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v.to_vec()),
        Some(v) => Err(OpError::Invalid(format!("attribute '{name}' has {} values but the input has {n} spatial axes", v.len()))),
    }
}

/// One spatial axis of a window operation, with padding resolved against the actual input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Axis {
    pub(super) input: usize,
    pub(super) kernel: usize,
    pub(super) stride: usize,
    pub(super) dilation: usize,
    pub(super) pad_begin: usize,
    pub(super) pad_end: usize,
    pub(super) output: usize,
}

impl Axis {
    pub(super) fn span(&self) -> usize {
        (self.kernel - 1) * self.dilation + 1
    }

    /// Padded length the taps actually reach; with ceil_mode it can exceed the explicit padding.
    pub(super) fn reach(&self) -> usize {
        (self.output - 1) * self.stride + self.span()
    }
}

/// Window attributes of a Conv or pooling node, per spatial axis.
pub(super) struct Window<'a> {
    pub(super) auto_pad: AutoPad,
    pub(super) pads: Option<&'a [usize]>,
    pub(super) kernel: &'a [usize],
    pub(super) strides: &'a [usize],
    pub(super) dilations: &'a [usize],
    /// Pooling's ceil_mode: a last partial window is kept unless it would start in the end padding.
    pub(super) ceil_mode: bool,
}

impl Window<'_> {
    pub(super) fn resolve(&self, input: &[usize]) -> Result<Vec<Axis>, OpError> {
        let n = input.len();
        if let Some(p) = self.pads && p.len() != 2 * n {
            return Err(OpError::Invalid(format!("attribute 'pads' has {} values, expected {}", p.len(), 2 * n)));
        }
        (0..n)
            .map(|i| {
                let (kernel, stride, dilation) = (self.kernel[i], self.strides[i], self.dilations[i]);
                if kernel == 0 {
                    return Err(OpError::Invalid(format!("kernel size 0 on spatial axis {i}")));
                }
                let span = (kernel - 1) * dilation + 1;
                let size = input[i];
                if size == 0 {
                    return Err(OpError::Invalid(format!("spatial axis {i} of the input is empty")));
                }
                let (pad_begin, pad_end, output) = match self.auto_pad {
                    AutoPad::SameUpper | AutoPad::SameLower => {
                        let output = size.div_ceil(stride);
                        let total = ((output.max(1) - 1) * stride + span).saturating_sub(size);
                        let (b, e) = self.auto_pad.split(total);
                        (b, e, output)
                    }
                    AutoPad::Valid | AutoPad::NotSet => {
                        let (b, e) = match (self.auto_pad, self.pads) {
                            (AutoPad::NotSet, Some(p)) => (p[i], p[i + n]),
                            _ => (0, 0),
                        };
                        let padded = size + b + e;
                        if padded < span {
                            return Err(OpError::Invalid(format!(
                                "window of {span} cells (kernel {kernel}, dilation {dilation}) does not fit the padded \
                                 input of {padded} on spatial axis {i}"
                            )));
                        }
                        let mut output = if self.ceil_mode {
                            (padded - span).div_ceil(stride) + 1
                        } else {
                            (padded - span) / stride + 1
                        };
                        if self.ceil_mode && output > 1 && (output - 1) * stride >= size + b {
                            output -= 1;
                        }
                        (b, e, output)
                    }
                };
                Ok(Axis { input: size, kernel, stride, dilation, pad_begin, pad_end, output })
            })
            .collect()
    }
}

/// A tensor of `shape` filled with `value` in `dtype`; out-of-range values saturate, so
/// `-inf` becomes the smallest integer for integer dtypes.
pub(super) fn filled(value: f64, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor, OpError> {
    Ok(match dtype {
        DType::F32 => Tensor::full(value as f32, shape, device)?,
        DType::F64 => Tensor::full(value, shape, device)?,
        DType::F16 => Tensor::full(half::f16::from_f64(value), shape, device)?,
        DType::BF16 => Tensor::full(half::bf16::from_f64(value), shape, device)?,
        DType::U8 => Tensor::full(value as u8, shape, device)?,
        DType::U32 => Tensor::full(value as u32, shape, device)?,
        DType::I16 => Tensor::full(value as i16, shape, device)?,
        DType::I32 => Tensor::full(value as i32, shape, device)?,
        DType::I64 => Tensor::full(value as i64, shape, device)?,
        other => return Err(OpError::Invalid(format!("dtype {other:?} is not supported here"))),
    })
}

/// Pads spatial axes with a constant: `pads[i]` is (begin, end) for dimension `2 + i`.
pub(super) fn pad_spatial(x: &Tensor, pads: &[(usize, usize)], value: f64) -> Result<Tensor, OpError> {
    let mut t = x.clone();
    for (i, &(before, after)) in pads.iter().enumerate() {
        if before == 0 && after == 0 {
            continue;
        }
        let dim = 2 + i;
        if value == 0.0 {
            t = t.pad_with_zeros(dim, before, after)?;
            continue;
        }
        let mut dims = t.dims().to_vec();
        let mut parts = Vec::with_capacity(3);
        if before > 0 {
            dims[dim] = before;
            parts.push(filled(value, &dims, t.dtype(), t.device())?);
        }
        parts.push(t.clone());
        if after > 0 {
            dims[dim] = after;
            parts.push(filled(value, &dims, t.dtype(), t.device())?);
        }
        t = Tensor::cat(&parts, dim)?;
    }
    Ok(t)
}

/// Pads `x` ([N, C, spatial...]) so that every tap of every window is in range: the explicit
/// or automatic padding first, then whatever ceil_mode's last window needs at the end.
pub(super) fn pad_for_windows(x: &Tensor, axes: &[Axis], value: f64) -> Result<Tensor, OpError> {
    let pads: Vec<(usize, usize)> = axes
        .iter()
        .map(|a| {
            let reach = a.reach();
            let padded = a.input + a.pad_begin + a.pad_end;
            (a.pad_begin, a.pad_end + reach.saturating_sub(padded))
        })
        .collect();
    pad_spatial(x, &pads, value)
}

/// The strided gather behind im2col: `x` is [N, C, P1..Pn] padded per [`pad_for_windows`]; the
/// result is [N, C, K1, O1, ..., Kn, On] where entry (k, o) of axis i is `x[o*stride + k*dilation]`.
/// One index_select per axis keeps this on candle ops, so it runs on any device.
pub(super) fn gather_windows(x: &Tensor, axes: &[Axis]) -> Result<Tensor, OpError> {
    let mut t = x.contiguous()?;
    for (i, a) in axes.iter().enumerate() {
        let dim = 2 + 2 * i;
        let mut dims = t.dims().to_vec();
        if a.kernel == 1 && a.stride == 1 && dims[dim] == a.output {
            dims.insert(dim, 1);
            t = t.reshape(dims)?;
            continue;
        }
        let index: Vec<u32> = (0..a.kernel)
            .flat_map(|k| (0..a.output).map(move |o| (o * a.stride + k * a.dilation) as u32))
            .collect();
        let index = Tensor::from_vec(index, a.kernel * a.output, t.device())?;
        t = t.index_select(&index, dim)?;
        dims[dim] = a.output;
        dims.insert(dim, a.kernel);
        t = t.reshape(dims)?;
    }
    Ok(t)
}
