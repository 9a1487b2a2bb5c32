//! Conv: N-D (1-D, 2-D, 3-D...), grouped and depthwise, strided and dilated, with explicit or
//! automatic padding, optional bias and an optional fused activation.
//!
//! 1-D and 2-D convolutions whose strides and dilations are the same on every axis go to candle's
//! conv1d/conv2d (asymmetric padding is applied explicitly first); everything else runs as a
//! strided gather (im2col) plus one batched matmul over the groups.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::fused::{Activation, activate, from_node};
use super::window::{AutoPad, Axis, Window, gather_windows, pad_for_windows, pad_spatial, per_axis, positive};
use super::{Builder, Op, OpError, OpResult, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("Conv", conv)];

struct Conv {
    auto_pad: AutoPad,
    pads: Option<Vec<usize>>,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    kernel_shape: Option<Vec<usize>>,
    group: usize,
    activation: Option<Activation>,
}

/// Checks X and W against each other and the group count; returns (spatial rank, kernel dims).
pub(super) fn check_shapes(
    x: &Tensor,
    w: &Tensor,
    group: usize,
    kernel_shape: Option<&[usize]>,
    transposed: bool,
) -> Result<(usize, Vec<usize>), OpError> {
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(OpError::Invalid(format!(
            "X must be [N, C, spatial...] and W of the same rank; got X {:?}, W {:?}",
            x.dims(),
            w.dims()
        )));
    }
    let channels = x.dims()[1];
    let (w0, w1) = (w.dims()[0], w.dims()[1]);
    let ok = if transposed {
        // W is [C, M/group, k...]
        w0 == channels && channels.is_multiple_of(group)
    } else {
        // W is [M, C/group, k...]
        w1 * group == channels && w0 % group == 0
    };
    if !ok {
        return Err(OpError::Invalid(format!(
            "W {:?} does not fit X {:?} with group {group}",
            w.dims(),
            x.dims()
        )));
    }
    let kernel = w.dims()[2..].to_vec();
    if kernel.contains(&0) {
        return Err(OpError::Invalid(format!("W {:?} has an empty kernel axis", w.dims())));
    }
    if let Some(k) = kernel_shape && k != kernel.as_slice() {
        return Err(OpError::Invalid(format!("attribute 'kernel_shape' {k:?} does not match W's spatial dims {kernel:?}")));
    }
    Ok((x.rank() - 2, kernel))
}

/// Adds a per-output-channel bias to [N, M, spatial...].
pub(super) fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor, OpError> {
    let Some(b) = bias else { return Ok(y) };
    let m = y.dims()[1];
    if b.elem_count() != m {
        return Err(OpError::Invalid(format!("bias has {} values, expected {m} (one per output channel)", b.elem_count())));
    }
    let mut shape = vec![1; y.rank()];
    shape[1] = m;
    Ok(y.broadcast_add(&b.reshape(shape)?)?)
}

impl Op for Conv {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        let (n, kernel) = check_shapes(x, w, self.group, self.kernel_shape.as_deref(), false)?;
        let strides = per_axis(self.strides.as_deref(), n, 1, "strides")?;
        let dilations = per_axis(self.dilations.as_deref(), n, 1, "dilations")?;
        let window = Window {
            auto_pad: self.auto_pad,
            pads: self.pads.as_deref(),
            kernel: &kernel,
            strides: &strides,
            dilations: &dilations,
            ceil_mode: false,
        };
        let axes = window.resolve(&x.dims()[2..])?;
        let uniform = strides.iter().all(|&s| s == strides[0]) && dilations.iter().all(|&d| d == dilations[0]);
        let y = if uniform && (n == 1 || n == 2) { self.candle(x, w, &axes)? } else { self.im2col(x, w, &axes)? };
        let y = add_bias(y, optional(inputs, 2))?;
        Ok(vec![activate(y, self.activation)?])
    }
}

impl Conv {
    /// candle's own conv1d/conv2d; they take one symmetric padding, so anything else is padded here.
    fn candle(&self, x: &Tensor, w: &Tensor, axes: &[Axis]) -> Result<Tensor, OpError> {
        let (stride, dilation) = (axes[0].stride, axes[0].dilation);
        let symmetric = axes.iter().all(|a| a.pad_begin == axes[0].pad_begin && a.pad_end == axes[0].pad_begin);
        let (x, padding) = if symmetric {
            (x.clone(), axes[0].pad_begin)
        } else {
            let pads: Vec<(usize, usize)> = axes.iter().map(|a| (a.pad_begin, a.pad_end)).collect();
            (pad_spatial(x, &pads, 0.0)?, 0)
        };
        Ok(if axes.len() == 1 {
            x.conv1d(w, padding, stride, dilation, self.group)?
        } else {
            x.conv2d(w, padding, stride, dilation, self.group)?
        })
    }

    /// Any rank, any per-axis strides and dilations: gather windows into columns
    /// [G, C/G * K, N * L] and multiply by W as [G, M/G, C/G * K].
    fn im2col(&self, x: &Tensor, w: &Tensor, axes: &[Axis]) -> Result<Tensor, OpError> {
        let n = axes.len();
        let (batch, channels) = (x.dims()[0], x.dims()[1]);
        let m = w.dims()[0];
        let g = self.group;
        let taps: usize = axes.iter().map(|a| a.kernel).product();
        let outputs: Vec<usize> = axes.iter().map(|a| a.output).collect();
        let positions: usize = outputs.iter().product();
        let cols = gather_windows(&pad_for_windows(x, axes, 0.0)?, axes)?; // [N, C, K1, O1, ..., Kn, On]
        // -> [C, K1..Kn, N, O1..On]
        let mut perm = vec![1];
        perm.extend((0..n).map(|i| 2 + 2 * i));
        perm.push(0);
        perm.extend((0..n).map(|i| 3 + 2 * i));
        let cols = cols.permute(perm)?.contiguous()?.reshape((g, channels / g * taps, batch * positions))?;
        let w = w.contiguous()?.reshape((g, m / g, channels / g * taps))?;
        let y = w.matmul(&cols)?; // [G, M/G, N*L]
        let mut shape = vec![m, batch];
        shape.extend(&outputs);
        Ok(y.reshape(shape)?.transpose(0, 1)?.contiguous()?)
    }
}

fn conv(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let group = ctx.int("group", 1);
    if group < 1 {
        return Err(LoadError::Invalid(format!("attribute 'group' must be >= 1, got {group}")));
    }
    Ok(Box::new(Conv {
        auto_pad: AutoPad::parse(ctx)?,
        pads: ctx.sizes("pads")?,
        strides: positive(ctx, "strides")?,
        dilations: positive(ctx, "dilations")?,
        kernel_shape: ctx.sizes("kernel_shape")?,
        group: group as usize,
        activation: from_node(ctx)?,
    }))
}
