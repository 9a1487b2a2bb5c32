//! ConvTranspose: N-D, grouped, strided and dilated, with pads, auto_pad, output_padding and
//! output_shape, optional bias.
//!
//! Computed as one matmul per group (W^T x gives every kernel tap's contribution at every input
//! position) followed by col2im: one index_add per spatial axis scatters tap k of input i to
//! output i*stride + k*dilation. That keeps it on candle ops (any device) and covers the groups
//! and per-axis strides that candle's conv_transpose2d lacks.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::conv::{add_bias, check_shapes};
use super::window::{AutoPad, per_axis, positive};
use super::{Builder, Op, OpError, OpResult, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("ConvTranspose", conv_transpose)];

struct ConvTranspose {
    auto_pad: AutoPad,
    pads: Option<Vec<usize>>,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    kernel_shape: Option<Vec<usize>>,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
    group: usize,
    /// W reordered to [G, M/G * K, C/G] for the column matmul, when W is a constant.
    weight: Option<Tensor>,
}

/// Where the output window starts in the full (unpadded) result and how long it is, per axis.
/// `begin` may be negative when output_shape asks for more than the full result holds.
struct Crop {
    begin: i64,
    len: usize,
}

impl ConvTranspose {
    fn crops(&self, input: &[usize], kernel: &[usize], strides: &[usize], dilations: &[usize]) -> Result<Vec<Crop>, OpError> {
        let n = input.len();
        let out_pad = per_axis(self.output_padding.as_deref(), n, 0, "output_padding")?;
        if let Some(p) = &self.pads && p.len() != 2 * n {
            return Err(OpError::Invalid(format!("attribute 'pads' has {} values, expected {}", p.len(), 2 * n)));
        }
        // output_shape may list only the spatial dims or, as some exporters do, N and C too.
        let target = match &self.output_shape {
            None => None,
            Some(s) if s.len() == n => Some(s.clone()),
            Some(s) if s.len() == n + 2 => Some(s[2..].to_vec()),
            Some(s) => return Err(OpError::Invalid(format!("attribute 'output_shape' has {} values, expected {n}", s.len()))),
        };
        (0..n)
            .map(|i| {
                let natural = ((input[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 + out_pad[i]) as i64;
                let same = matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
                let wanted = match &target {
                    Some(t) => Some(t[i] as i64),
                    None if same => Some((input[i] * strides[i]) as i64),
                    None => None,
                };
                let (begin, len) = match wanted {
                    Some(len) => {
                        // Total padding to trim; odd cells go to the end for SAME_UPPER, else to the start.
                        let total = natural - len;
                        let half = total.div_euclid(2);
                        let begin = if self.auto_pad == AutoPad::SameUpper { half } else { total - half };
                        (begin, len)
                    }
                    None => {
                        let (b, e) = match (&self.pads, self.auto_pad) {
                            (Some(p), AutoPad::NotSet) => (p[i] as i64, p[i + n] as i64),
                            _ => (0, 0),
                        };
                        (b, natural - b - e)
                    }
                };
                if len < 1 {
                    return Err(OpError::Invalid(format!("output length {len} on spatial axis {i} is not positive")));
                }
                Ok(Crop { begin, len: len as usize })
            })
            .collect()
    }
}

/// W `[C, M/G, K...]` -> `[G, M/G * K, C/G]`, so each group's columns come from one matmul.
fn reorder(w: &Tensor, g: usize) -> Result<Tensor, OpError> {
    let dims = w.dims();
    if dims.len() < 3 || g == 0 || !dims[0].is_multiple_of(g) {
        return Err(OpError::Invalid(format!("W {dims:?} does not fit group {g}")));
    }
    let (channels, per_group, taps) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
    Ok(w.contiguous()?.reshape((g, channels / g, per_group * taps))?.transpose(1, 2)?.contiguous()?)
}

impl Op for ConvTranspose {
    /// A constant W is reordered once here instead of on every request.
    fn prepare(&mut self, constants: &[Option<&Tensor>]) -> Result<(), OpError> {
        if let Some(w) = constants.get(1).copied().flatten() {
            self.weight = reorder(w, self.group).ok();
        }
        Ok(())
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        let (n, kernel) = check_shapes(x, w, self.group, self.kernel_shape.as_deref(), true)?;
        let strides = per_axis(self.strides.as_deref(), n, 1, "strides")?;
        let dilations = per_axis(self.dilations.as_deref(), n, 1, "dilations")?;
        let input = x.dims()[2..].to_vec();
        if input.contains(&0) {
            return Err(OpError::Invalid(format!("X {:?} has an empty spatial axis", x.dims())));
        }
        let crops = self.crops(&input, &kernel, &strides, &dilations)?;
        let (batch, channels) = (x.dims()[0], x.dims()[1]);
        let g = self.group;
        let m = w.dims()[1] * g;
        let positions: usize = input.iter().product();

        let wt = match &self.weight {
            Some(wt) => wt.clone(),
            None => reorder(w, g)?,
        };
        // x -> [G, C/G, N*L]
        let xs = x.contiguous()?.reshape((batch, channels, positions))?.transpose(0, 1)?.contiguous()?;
        let xs = xs.reshape((g, channels / g, batch * positions))?;
        let cols = wt.matmul(&xs)?; // [G, M/G*K, N*L] = [M, K1..Kn, N, I1..In]
        let mut shape = vec![m];
        shape.extend(&kernel);
        shape.push(batch);
        shape.extend(&input);
        // -> [N, M, K1, I1, ..., Kn, In] so each axis' (k, i) pair is adjacent for its scatter.
        let mut perm = vec![n + 1, 0];
        for i in 0..n {
            perm.push(1 + i);
            perm.push(n + 2 + i);
        }
        let mut y = cols.reshape(shape)?.permute(perm)?.contiguous()?;
        for i in 0..n {
            let dim = 2 + i;
            let full = (input[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1;
            let mut dims = y.dims().to_vec();
            let (k, len) = (dims[dim], dims[dim + 1]);
            dims.splice(dim..dim + 2, [k * len]);
            let src = y.reshape(dims.clone())?;
            let (stride, dilation) = (strides[i], dilations[i]);
            let index: Vec<u32> = (0..k).flat_map(|t| (0..len).map(move |j| (j * stride + t * dilation) as u32)).collect();
            let index = Tensor::from_vec(index, k * len, y.device())?;
            dims[dim] = full;
            let zeros = Tensor::zeros(dims, y.dtype(), y.device())?;
            y = zeros.index_add(&index, &src, dim)?;
            // Crop the padding, or extend with zeros (output_padding, a larger output_shape).
            let crop = &crops[i];
            let before = (-crop.begin).max(0) as usize;
            let start = crop.begin.max(0) as usize;
            let after = (start + crop.len).saturating_sub(full + before);
            if before > 0 || after > 0 {
                y = y.pad_with_zeros(dim, before, after)?;
            }
            y = y.narrow(dim, start, crop.len)?.contiguous()?;
        }
        Ok(vec![add_bias(y, optional(inputs, 2))?])
    }
}

fn conv_transpose(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let group = ctx.int("group", 1);
    if group < 1 {
        return Err(LoadError::Invalid(format!("attribute 'group' must be >= 1, got {group}")));
    }
    Ok(Box::new(ConvTranspose {
        auto_pad: AutoPad::parse(ctx)?,
        pads: ctx.sizes("pads")?,
        strides: positive(ctx, "strides")?,
        dilations: positive(ctx, "dilations")?,
        kernel_shape: ctx.sizes("kernel_shape")?,
        output_padding: ctx.sizes("output_padding")?,
        output_shape: ctx.sizes("output_shape")?,
        group: group as usize,
        weight: None,
    }))
}
