//! Max and average pooling, local (N-D, with pads, auto_pad, strides, dilations, ceil_mode,
//! count_include_pad, MaxPool's Indices) and global.
//!
//! 2-D windows without dilation use candle's pool2d kernels on the padded input; every other case
//! gathers the windows (im2col) and reduces over the kernel axes.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::window::{AutoPad, Axis, Window, gather_windows, pad_for_windows, per_axis, positive};
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
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
    auto_pad: AutoPad,
    ceil_mode: bool,
    /// Divide by the full kernel size (padding and ceil_mode's overhang count as zeros), as
    /// onnxruntime does; otherwise by the number of real input cells in the window.
    count_include_pad: bool,
    /// MaxPool's optional second output.
    indices: bool,
    /// storage_order = 1: Indices are column-major over the spatial axes.
    column_major: bool,
}

impl Op for Pool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let n = self.kernel.len();
        if x.rank() != n + 2 {
            return Err(OpError::Invalid(format!(
                "kernel_shape has {n} axes, so X must have rank {}; got {:?}",
                n + 2,
                x.dims()
            )));
        }
        if self.kind == Kind::Avg && !x.dtype().is_float() {
            return Err(OpError::Invalid(format!("AveragePool needs a float input, got {:?}", x.dtype())));
        }
        let strides = per_axis(self.strides.as_deref(), n, 1, "strides")?;
        let dilations = per_axis(self.dilations.as_deref(), n, 1, "dilations")?;
        let window = Window {
            auto_pad: self.auto_pad,
            pads: self.pads.as_deref(),
            kernel: &self.kernel,
            strides: &strides,
            dilations: &dilations,
            ceil_mode: self.ceil_mode,
        };
        let axes = window.resolve(&x.dims()[2..])?;
        let fill = if self.kind == Kind::Max { f64::NEG_INFINITY } else { 0.0 };
        let padded = pad_for_windows(x, &axes, fill)?;
        if self.indices {
            return self.max_with_indices(x, &padded, &axes);
        }
        if n == 2 && dilations.iter().all(|&d| d == 1) {
            let k = (axes[0].kernel, axes[1].kernel);
            let s = (axes[0].stride, axes[1].stride);
            let y = match self.kind {
                Kind::Max => padded.max_pool2d_with_stride(k, s)?,
                Kind::Avg => padded.avg_pool2d_with_stride(k, s)?,
            };
            // candle floors the output size over the padded length, which can leave one extra window.
            let y = y.narrow(2, 0, axes[0].output)?.narrow(3, 0, axes[1].output)?;
            return Ok(vec![match self.kind {
                // candle divided by the full window already.
                Kind::Avg if !self.count_include_pad => y.broadcast_mul(&self.counts(&axes, x, true)?)?,
                _ => y,
            }]);
        }
        let mut y = gather_windows(&padded, &axes)?; // [N, C, K1, O1, ..., Kn, On]
        for i in (0..n).rev() {
            y = match self.kind {
                Kind::Max => y.max(2 + 2 * i)?,
                Kind::Avg => y.sum(2 + 2 * i)?,
            };
        }
        if self.kind == Kind::Avg {
            y = if self.count_include_pad {
                y.affine(1.0 / self.kernel.iter().product::<usize>() as f64, 0.0)?
            } else {
                y.broadcast_div(&self.counts(&axes, x, false)?)?
            };
        }
        Ok(vec![y])
    }
}

impl Pool {
    /// Real input cells under each window, shaped [O1, ..., On] to broadcast against the output;
    /// `relative` gives kernel size / count instead, to rescale a mean over the full window.
    fn counts(&self, axes: &[Axis], x: &Tensor, relative: bool) -> Result<Tensor, OpError> {
        let outputs: Vec<usize> = axes.iter().map(|a| a.output).collect();
        let mut counts = vec![1f64];
        for a in axes {
            let per: Vec<f64> = (0..a.output)
                .map(|o| {
                    let real = (0..a.kernel)
                        .filter(|&k| {
                            let p = o * a.stride + k * a.dilation;
                            p >= a.pad_begin && p - a.pad_begin < a.input
                        })
                        .count()
                        .max(1) as f64;
                    if relative { a.kernel as f64 / real } else { real }
                })
                .collect();
            counts = counts.iter().flat_map(|&c| per.iter().map(move |&p| c * p)).collect();
        }
        Ok(Tensor::from_vec(counts, outputs, x.device())?.to_dtype(x.dtype())?)
    }

    /// MaxPool with its Indices output: flat positions into X (row-major over N, C and the
    /// spatial axes, or column-major over the spatial axes with storage_order = 1); ties go to
    /// the first window cell in row-major order, as in onnxruntime.
    fn max_with_indices(&self, x: &Tensor, padded: &Tensor, axes: &[Axis]) -> OpResult {
        let n = axes.len();
        let (batch, channels) = (x.dims()[0], x.dims()[1]);
        let outputs: Vec<usize> = axes.iter().map(|a| a.output).collect();
        let positions: usize = outputs.iter().product();
        let taps: usize = axes.iter().map(|a| a.kernel).product();
        let windows = gather_windows(padded, axes)?;
        let mut perm = vec![0, 1];
        perm.extend((0..n).map(|i| 3 + 2 * i));
        perm.extend((0..n).map(|i| 2 + 2 * i));
        let windows = windows.permute(perm)?.contiguous()?.reshape((batch, channels, positions, taps))?;
        let values = windows.max(3)?;
        let best = windows.argmax(3)?.flatten_all()?.to_vec1::<u32>()?;

        let input: Vec<usize> = axes.iter().map(|a| a.input).collect();
        let plane: usize = input.iter().product();
        // Flat-index weight of each spatial axis in the chosen storage order.
        let mut weight = vec![1usize; n];
        if self.column_major {
            for i in 1..n {
                weight[i] = weight[i - 1] * input[i - 1];
            }
        } else {
            for i in (0..n.saturating_sub(1)).rev() {
                weight[i] = weight[i + 1] * input[i + 1];
            }
        }
        let mut indices = Vec::with_capacity(best.len());
        for (flat, &tap) in best.iter().enumerate() {
            let (plane_index, mut position, mut tap) = (flat / positions, flat % positions, tap as usize);
            let mut offset = 0usize;
            for i in (0..n).rev() {
                let a = &axes[i];
                let (o, k) = (position % a.output, tap % a.kernel);
                position /= a.output;
                tap /= a.kernel;
                // A window always holds a real cell, so the maximum never sits in the padding
                // unless the input itself is -inf there; clamp so the index stays valid.
                let p = (o * a.stride + k * a.dilation).saturating_sub(a.pad_begin).min(a.input - 1);
                offset += p * weight[i];
            }
            indices.push((plane_index * plane + offset) as i64);
        }
        let mut shape = vec![batch, channels];
        shape.extend(&outputs);
        let values = values.reshape(shape.as_slice())?;
        let indices = Tensor::from_vec(indices, shape, x.device())?;
        Ok(vec![values, indices])
    }
}

fn pool(ctx: &NodeCtx<'_>, kind: Kind) -> Result<Box<dyn Op>, LoadError> {
    let kernel = ctx.sizes("kernel_shape")?.ok_or_else(|| LoadError::Invalid("attribute 'kernel_shape' is required".into()))?;
    if kernel.is_empty() || kernel.contains(&0) {
        return Err(LoadError::Invalid(format!("attribute 'kernel_shape' must list positive sizes, got {kernel:?}")));
    }
    let indices = kind == Kind::Max && ctx.node.output.get(1).is_some_and(|o| !o.is_empty());
    Ok(Box::new(Pool {
        kind,
        kernel,
        strides: positive(ctx, "strides")?,
        dilations: positive(ctx, "dilations")?,
        pads: ctx.sizes("pads")?,
        auto_pad: AutoPad::parse(ctx)?,
        ceil_mode: ctx.int("ceil_mode", 0) != 0,
        count_include_pad: ctx.int("count_include_pad", 0) != 0,
        indices,
        column_major: ctx.int("storage_order", 0) != 0,
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
