//! The kernels as candle custom ops, so the plan keeps passing `Tensor`s. CPU only: the
//! importer rewrites graphs to these ops only when the session runs on the CPU.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape};

use super::activation::Activation;
use super::conv::Conv2d;
use super::geometry::Window;
use super::pool::{Pool2d, Reduce};
use super::threads::intra_op_threads;

fn f32s<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what} must be float32, got {:?}", storage.dtype())
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

fn nhwc(layout: &Layout, what: &str) -> Result<[usize; 4]> {
    match layout.dims() {
        &[n, h, w, c] => Ok([n, h, w, c]),
        dims => candle_core::bail!("{what} must be 4-D NHWC, got shape {dims:?}"),
    }
}

/// Conv over NHWC input (`s1`), HWIO weights (`s2`) and bias (`s3`).
pub(crate) struct NhwcConv {
    pub(crate) window: Window,
    pub(crate) groups: usize,
    pub(crate) activation: Option<Activation>,
}

impl CustomOp3 for NhwcConv {
    fn name(&self) -> &'static str {
        "nhwc-conv"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let [batch, in_h, in_w, in_c] = nhwc(l1, "conv input")?;
        let [kh, kw, in_g, out_c] = nhwc(l2, "conv weights")?;
        if [kh, kw] != self.window.kernel || in_g * self.groups != in_c || out_c % self.groups != 0 {
            candle_core::bail!(
                "conv input has {in_c} channels, weights are {kh}x{kw}x{in_g}x{out_c} with {} groups",
                self.groups
            );
        }
        if l3.dims() != [out_c] {
            candle_core::bail!("conv bias has shape {:?}, expected [{out_c}]", l3.dims());
        }
        let r = self.window.resolve([in_h, in_w]).map_err(candle_core::Error::msg)?;
        let conv = Conv2d {
            batch,
            in_h,
            in_w,
            in_c,
            out_h: r.out[0],
            out_w: r.out[1],
            out_c,
            kernel: self.window.kernel,
            strides: self.window.strides,
            dilations: self.window.dilations,
            pad_begin: r.pad_begin,
            groups: self.groups,
        };
        let out = conv.run(f32s(s1, l1, "conv input")?, f32s(s2, l2, "conv weights")?, f32s(s3, l3, "conv bias")?, self.activation, intra_op_threads());
        Ok((CpuStorage::F32(out), Shape::from_dims(&[batch, r.out[0], r.out[1], out_c])))
    }
}

/// Max or average pooling over NHWC input.
pub(crate) struct NhwcPool {
    pub(crate) window: Window,
    pub(crate) reduce: Reduce,
}

impl CustomOp1 for NhwcPool {
    fn name(&self) -> &'static str {
        "nhwc-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let [batch, in_h, in_w, channels] = nhwc(layout, "pool input")?;
        let r = self.window.resolve([in_h, in_w]).map_err(candle_core::Error::msg)?;
        let pool = Pool2d {
            batch,
            in_h,
            in_w,
            channels,
            out_h: r.out[0],
            out_w: r.out[1],
            kernel: self.window.kernel,
            strides: self.window.strides,
            dilations: self.window.dilations,
            pad_begin: r.pad_begin,
            pad_end: r.pad_end,
        };
        let out = pool.run(f32s(storage, layout, "pool input")?, self.reduce, intra_op_threads());
        Ok((CpuStorage::F32(out), Shape::from_dims(&[batch, r.out[0], r.out[1], channels])))
    }
}
