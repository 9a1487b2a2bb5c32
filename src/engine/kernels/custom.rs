//! The kernels behind the plan's `Tensor`s: candle custom ops where three inputs suffice, and
//! direct borrows of CPU storage where an op takes more. CPU only: the importer rewrites graphs
//! to these ops only when the session runs on the CPU.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Device, Layout, Result, Shape, Storage, StorageRef, Tensor};

use super::activation::Activation;
use super::conv::{Conv2d, pack_hwio};
use super::pooled_conv::Kernel;
use super::winograd::WinogradWeights;
use super::packed::{Epilogue, PackedB, gemm_parallel};
use super::pool::{Pool2d, Reduce};
use super::threads::intra_op_threads;
use super::movement::map_pixels;

fn f32s<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what} must be float32, got {:?}", storage.dtype())
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// A tensor's storage held for reading, so ops with more inputs than candle's `CustomOp3`
/// takes can borrow each one's values side by side.
struct Borrowed<'t> {
    storage: StorageRef<'t>,
    layout: &'t Layout,
}

impl<'t> Borrowed<'t> {
    fn new(t: &'t Tensor) -> Self {
        let (storage, layout) = t.storage_and_layout();
        Self { storage, layout }
    }

    /// The values of a contiguous CPU f32 tensor.
    fn f32s(&self, what: &str) -> Result<&[f32]> {
        let Storage::Cpu(cpu) = &*self.storage else { candle_core::bail!("{what} must be on the CPU") };
        f32s(cpu, self.layout, what)
    }
}

/// Whether `Borrowed::f32s` can read `t` as it is: a contiguous f32 tensor on the CPU.
fn host_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

fn nhwc(layout: &Layout, what: &str) -> Result<[usize; 4]> {
    match layout.dims() {
        &[n, h, w, c] => Ok([n, h, w, c]),
        dims => candle_core::bail!("{what} must be 4-D NHWC, got shape {dims:?}"),
    }
}

/// A 2-D window with its padding and output size already resolved for the input at hand (the
/// ONNX rules for `pads`, `auto_pad` and `ceil_mode` live in the op layer, shared with the
/// general N-D conv and pooling).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window2d {
    pub(crate) kernel: [usize; 2],
    pub(crate) strides: [usize; 2],
    pub(crate) dilations: [usize; 2],
    pub(crate) pad_begin: [usize; 2],
    pub(crate) out: [usize; 2],
}

/// A conv's weights: the HWIO tensor itself, or the GEMM panels [`pack_hwio`] made of it at load.
/// Packed weights carry their HWIO dims, so the plan can drop the tensor once they are made and
/// the model's weights sit in memory once.
#[derive(Clone, Copy)]
pub(crate) enum ConvWeights<'a> {
    Hwio(&'a Tensor),
    Packed { dims: [usize; 4], panels: &'a [PackedB] },
    /// A 3x3 stride-1 conv's weights transformed for [`super::winograd`].
    Winograd(&'a WinogradWeights),
    /// A first layer's HWIO weights, kept for [`super::narrow`] with their dims.
    Narrow { dims: [usize; 4], hwio: &'a [f32] },
}

impl ConvWeights<'_> {
    /// `[kh, kw, in_c / groups, out_c]`.
    pub(crate) fn dims(&self) -> Result<[usize; 4]> {
        match self {
            Self::Hwio(w) => nhwc(w.layout(), "conv weights"),
            Self::Packed { dims, .. } | Self::Narrow { dims, .. } => Ok(*dims),
            Self::Winograd(w) => Ok([3, 3, w.in_c(), w.out_c()]),
        }
    }
}

/// A dense layer's `[K, N]` weights: the tensor itself, or packed at load (see [`ConvWeights`]).
#[derive(Clone, Copy)]
pub(crate) enum DenseWeights<'a> {
    Raw(&'a Tensor),
    Packed(&'a PackedB),
}

/// Conv over NHWC input, HWIO weights and bias, with an optional residual (a value of the
/// output's shape added before the activation: a ResNet block's shortcut).
#[derive(Clone, Copy)]
pub(crate) struct NhwcConv {
    pub(crate) window: Window2d,
    pub(crate) groups: usize,
    pub(crate) activation: Option<Activation>,
    /// A max pool over the activated output, windows side by side (`passes/max_pool.rs`).
    pub(crate) max_pool: Option<[usize; 2]>,
}

/// A 1x1 conv joined to a depthwise conv: packed `[in, out]` weights, bias, activation.
pub(crate) type JoinedConv<'a> = (&'a PackedB, &'a Tensor, Option<Activation>);

impl NhwcConv {
    /// The conv's geometry over an NHWC input of `dims` (the window is already resolved).
    fn conv2d(&self, [batch, in_h, in_w, in_c]: [usize; 4], out_c: usize) -> Conv2d {
        let win = self.window;
        Conv2d {
            batch,
            in_h,
            in_w,
            in_c,
            out_h: win.out[0],
            out_w: win.out[1],
            out_c,
            kernel: win.kernel,
            strides: win.strides,
            dilations: win.dilations,
            pad_begin: win.pad_begin,
            groups: self.groups,
        }
    }

    /// Weights that were not packed at load are packed for this call. Depthwise convs read the
    /// HWIO tensor itself, so the op never packs theirs.
    pub(crate) fn forward(&self, x: &Tensor, weights: ConvWeights<'_>, b: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let [batch, in_h, in_w, in_c] = nhwc(x.layout(), "conv input")?;
        let [kh, kw, in_g, out_c] = weights.dims()?;
        if [kh, kw] != self.window.kernel || in_g * self.groups != in_c || out_c % self.groups != 0 {
            candle_core::bail!(
                "conv input has {in_c} channels, weights are {kh}x{kw}x{in_g}x{out_c} with {} groups",
                self.groups
            );
        }
        if b.dims() != [out_c] {
            candle_core::bail!("conv bias has shape {:?}, expected [{out_c}]", b.dims());
        }
        let win = self.window;
        let conv = self.conv2d([batch, in_h, in_w, in_c], out_c);
        let dims = [batch, win.out[0], win.out[1], out_c];
        if let Some(r) = residual.filter(|r| r.dims() != dims) {
            candle_core::bail!("conv residual has shape {:?}, the conv's output {dims:?}", r.dims());
        }
        if let Some(window) = self.max_pool {
            if residual.is_some() || window.contains(&0) {
                candle_core::bail!("a conv with a residual or an empty window {window:?} cannot pool its output");
            }
            let pooled = [batch, win.out[0] / window[0], win.out[1] / window[1], out_c];
            let kernel = match weights {
                ConvWeights::Packed { panels, .. } if !conv.is_depthwise() => Kernel::Packed(panels),
                ConvWeights::Narrow { hwio, .. } => Kernel::Narrow(hwio),
                // the other kernels write the whole output, then the pool kernel reads it
                _ => {
                    let unpooled = Self { max_pool: None, ..*self }.forward(x, weights, b, None)?;
                    let pool = NhwcPool {
                        window: Window2d { kernel: window, strides: window, dilations: [1, 1], pad_begin: [0, 0], out: [pooled[1], pooled[2]] },
                        reduce: Reduce::Max,
                    };
                    return unpooled.apply_op1_no_bwd(&pool);
                }
            };
            let (x, b) = (Borrowed::new(x), Borrowed::new(b));
            let out = conv.run_max_pooled(x.f32s("conv input")?, kernel, b.f32s("conv bias")?, self.activation, window, intra_op_threads());
            return Tensor::from_vec(out, &pooled, &Device::Cpu);
        }
        let threads = intra_op_threads();
        let (x, b) = (Borrowed::new(x), Borrowed::new(b));
        let residual = residual.map(Borrowed::new);
        let (x, b) = (x.f32s("conv input")?, b.f32s("conv bias")?);
        let residual = residual.as_ref().map(|r| r.f32s("conv residual")).transpose()?;
        let out = match weights {
            ConvWeights::Hwio(w) if conv.is_depthwise() => {
                let act = if residual.is_some() { None } else { self.activation };
                let w = Borrowed::new(w);
                let mut out = super::depthwise::depthwise(&conv, x, w.f32s("conv weights")?, b, act, threads);
                if let Some(r) = residual {
                    super::activation::add_then(self.activation, r, &mut out);
                }
                out
            }
            ConvWeights::Packed { .. } if conv.is_depthwise() => {
                candle_core::bail!("a depthwise conv's weights were packed for the GEMM; it reads them as HWIO")
            }
            ConvWeights::Hwio(w) => {
                let packed = pack_hwio(Borrowed::new(w).f32s("conv weights")?, [kh, kw, in_g, out_c], self.groups);
                conv.run_packed(x, &packed, b, residual, self.activation, threads)
            }
            ConvWeights::Packed { panels, .. } => conv.run_packed(x, panels, b, residual, self.activation, threads),
            ConvWeights::Narrow { hwio, .. } => {
                let act = if residual.is_some() { None } else { self.activation };
                let mut out = super::narrow::Narrow::new(&conv, x, hwio, b, act).run(threads);
                if let Some(r) = residual {
                    super::activation::add_then(self.activation, r, &mut out);
                }
                out
            }
            ConvWeights::Winograd(w) if conv.strides == [1, 1] && conv.dilations == [1, 1] && conv.groups == 1 => {
                conv.run_winograd(x, w, b, residual, self.activation, threads)
            }
            ConvWeights::Winograd(_) => candle_core::bail!("a conv's weights were transformed for a 3x3 stride-1 conv, but it runs with {conv:?}"),
        };
        Tensor::from_vec(out, &dims, &Device::Cpu)
    }

    /// `project(depthwise(expand(x))) + shortcut`, the three convs of an inverted residual
    /// block run a band of rows at a time (`inverted_residual.rs`); either 1x1 conv may be
    /// absent, and the shortcut needs the projection. `weights` are the depthwise conv's HWIO
    /// `[kh, kw, 1, C]`.
    pub(crate) fn forward_block(&self, x: &Tensor, expand: Option<JoinedConv<'_>>, weights: &Tensor, b: &Tensor, project: Option<JoinedConv<'_>>, shortcut: Option<&Tensor>) -> Result<Tensor> {
        let [batch, in_h, in_w, in_c] = nhwc(x.layout(), "conv input")?;
        let [kh, kw, in_g, ch] = nhwc(weights.layout(), "depthwise weights")?;
        let block_in = expand.map_or(ch, |(p, _, _)| p.k());
        let expand_fits = expand.is_none_or(|(p, _, _)| p.n() == ch);
        let project_fits = project.is_none_or(|(p, _, _)| p.k() == ch);
        if block_in != in_c || !expand_fits || !project_fits || in_g != 1 || self.groups != ch || [kh, kw] != self.window.kernel || self.max_pool.is_some() {
            candle_core::bail!(
                "a depthwise conv with weights {kh}x{kw}x{in_g}x{ch} and {} groups cannot run between 1x1 convs of {:?} and {:?} (in, out) channels over an input of {in_c} channels",
                self.groups,
                expand.map(|(p, _, _)| (p.k(), p.n())),
                project.map(|(p, _, _)| (p.k(), p.n()))
            );
        }
        let block_out = project.map_or(ch, |(p, _, _)| p.n());
        let biases_fit = b.dims() == [ch] && expand.is_none_or(|(_, b, _)| b.dims() == [ch]) && project.is_none_or(|(_, b, _)| b.dims() == [block_out]);
        if !biases_fit {
            candle_core::bail!("the biases of a depthwise conv over {ch} channels and its 1x1 convs do not match their channel counts");
        }
        let win = self.window;
        let dims = [batch, win.out[0], win.out[1], block_out];
        if let Some(s) = shortcut.filter(|s| s.dims() != dims || project.is_none()) {
            candle_core::bail!("the shortcut has shape {:?}, the projection's output {dims:?}", s.dims());
        }
        // as if over the expanded tensor: `ch` channels in and out, one group each
        let conv = self.conv2d([batch, in_h, in_w, ch], ch);
        let (expand, project) = (expand.map(BorrowedJoined::new), project.map(BorrowedJoined::new));
        let (x, w, b, shortcut) = (Borrowed::new(x), Borrowed::new(weights), Borrowed::new(b), shortcut.map(Borrowed::new));
        let block = super::inverted_residual::Block {
            expand: expand.as_ref().map(BorrowedJoined::pointwise).transpose()?,
            weights: w.f32s("depthwise weights")?,
            bias: b.f32s("conv bias")?,
            activation: self.activation,
            project: project.as_ref().map(BorrowedJoined::pointwise).transpose()?,
            residual: shortcut.as_ref().map(|s| s.f32s("shortcut")).transpose()?,
        };
        let out = conv.run_block(x.f32s("conv input")?, &block, intra_op_threads());
        Tensor::from_vec(out, &dims, &Device::Cpu)
    }
}

/// A [`JoinedConv`] with its bias borrowed for reading.
struct BorrowedJoined<'t>(&'t PackedB, Borrowed<'t>, Option<Activation>);

impl<'t> BorrowedJoined<'t> {
    fn new((weights, bias, activation): JoinedConv<'t>) -> Self {
        Self(weights, Borrowed::new(bias), activation)
    }

    fn pointwise(&self) -> Result<super::inverted_residual::Pointwise<'_>> {
        Ok(super::inverted_residual::Pointwise { weights: self.0, bias: self.1.f32s("1x1 conv bias")?, activation: self.2 })
    }
}

/// `act(x * scale + shift)` per channel over NHWC input (`s1`), with `[C]` scale (`s2`) and
/// shift (`s3`).
pub(crate) struct NhwcScaleShift {
    pub(crate) activation: Option<Activation>,
}

impl CustomOp3 for NhwcScaleShift {
    fn name(&self) -> &'static str {
        "nhwc-scale-shift"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let channels = l1.dims().last().copied().unwrap_or(0);
        if l2.dims().iter().product::<usize>() != channels || l3.dims().iter().product::<usize>() != channels {
            candle_core::bail!("scale-shift of {:?} needs {channels} scales and shifts, got {:?} and {:?}", l1.dims(), l2.dims(), l3.dims());
        }
        let x = f32s(s1, l1, "scale-shift input")?;
        let (scale, shift) = (f32s(s2, l2, "scale")?, f32s(s3, l3, "shift")?);
        // whole pixels per call: each starts at channel 0
        let out = map_pixels(x, channels, intra_op_threads(), |x, out| {
            super::activation::scale_shift_then(self.activation, scale, shift, x, out)
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// LRN across the last axis (channels) of NHWC input.
pub(crate) struct NhwcLrn(pub(crate) super::lrn::Lrn);

impl CustomOp1 for NhwcLrn {
    fn name(&self) -> &'static str {
        "nhwc-lrn"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let [_, _, _, channels] = nhwc(layout, "LRN input")?;
        let out = self.0.run(f32s(storage, layout, "LRN input")?, channels, intra_op_threads());
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Global max or average pooling of NHWC input to `[n, 1, 1, c]`.
pub(crate) struct NhwcGlobalPool(pub(crate) Reduce);

impl CustomOp1 for NhwcGlobalPool {
    fn name(&self) -> &'static str {
        "nhwc-global-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let [n, h, w, c] = nhwc(layout, "global pool input")?;
        let out = super::pool::global_pool(f32s(storage, layout, "global pool input")?, n, h * w, c, self.0);
        Ok((CpuStorage::F32(out), Shape::from((n, 1, 1, c))))
    }
}

/// Max or average pooling over NHWC input.
pub(crate) struct NhwcPool {
    pub(crate) window: Window2d,
    pub(crate) reduce: Reduce,
}

impl CustomOp1 for NhwcPool {
    fn name(&self) -> &'static str {
        "nhwc-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let [batch, in_h, in_w, channels] = nhwc(layout, "pool input")?;
        let win = self.window;
        let pool = Pool2d {
            batch,
            in_h,
            in_w,
            channels,
            out_h: win.out[0],
            out_w: win.out[1],
            kernel: win.kernel,
            strides: win.strides,
            dilations: win.dilations,
            pad_begin: win.pad_begin,
        };
        let out = pool.run(f32s(storage, layout, "pool input")?, self.reduce, intra_op_threads());
        Ok((CpuStorage::F32(out), Shape::from_dims(&[batch, win.out[0], win.out[1], channels])))
    }
}

/// Concat along `axis` as one parallel copy ([`super::movement`]) when every part is a contiguous
/// f32 CPU tensor of the same rank whose dims agree off the axis; `None` otherwise, for candle's
/// `cat` to do (and to word the error when the shapes disagree).
pub(crate) fn concat(parts: &[&Tensor], axis: usize) -> Result<Option<Tensor>> {
    let Some(first) = parts.first() else { return Ok(None) };
    let rank = first.rank();
    let fits = |t: &&Tensor| host_f32(t) && t.rank() == rank && (0..rank).all(|d| d == axis || t.dims()[d] == first.dims()[d]);
    if axis >= rank || !parts.iter().all(fits) {
        return Ok(None);
    }
    let rows: usize = first.dims()[..axis].iter().product();
    let inner: usize = first.dims()[axis + 1..].iter().product();
    let borrowed: Vec<Borrowed<'_>> = parts.iter().map(|t| Borrowed::new(t)).collect();
    let views = borrowed.iter().map(|b| b.f32s("concat input")).collect::<Result<Vec<_>>>()?;
    let widths: Vec<usize> = parts.iter().map(|t| t.dims()[axis] * inner).collect();
    let out = super::movement::concat_rows(&views, &widths, rows, intra_op_threads());
    let mut dims = first.dims().to_vec();
    dims[axis] = parts.iter().map(|t| t.dims()[axis]).sum();
    Tensor::from_vec(out, dims, &Device::Cpu).map(Some)
}

/// Constant padding of a contiguous f32 CPU tensor as one parallel copy
/// ([`super::movement::pad_constant`]); `None` for other tensors, for candle's `cat` to do.
pub(crate) fn pad_constant(x: &Tensor, pads: &[(usize, usize)], value: f32) -> Result<Option<Tensor>> {
    if !host_f32(x) || pads.len() != x.rank() {
        return Ok(None);
    }
    let out = super::movement::pad_constant(Borrowed::new(x).f32s("pad input")?, x.dims(), pads, value, intra_op_threads());
    let dims: Vec<usize> = x.dims().iter().zip(pads).map(|(&d, &(b, e))| d + b + e).collect();
    Tensor::from_vec(out, dims, &Device::Cpu).map(Some)
}

/// A transpose that swaps two blocks of axes (NCHW <-> NHWC, see
/// [`super::movement::batched_swap`]) of a contiguous f32 CPU tensor, as one tiled copy;
/// `None` for other tensors and permutations, which candle's strided copy handles. candle's
/// copy took 0.3 ms for a 224 x 224 RGB image on its way into the first conv.
pub(crate) fn transpose(x: &Tensor, perm: &[usize]) -> Result<Option<Tensor>> {
    let Some(view) = super::movement::batched_swap(x.dims(), perm).filter(|_| host_f32(x)) else { return Ok(None) };
    let out = super::movement::transpose_batched(Borrowed::new(x).f32s("transpose input")?, view, intra_op_threads());
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    Tensor::from_vec(out, dims, &Device::Cpu).map(Some)
}

/// ShuffleNet's channel shuffle over the last axis of a contiguous f32 CPU tensor, as one parallel
/// copy; `None` for other tensors, which candle's reshape-transpose handles.
pub(crate) fn shuffle_last_axis(x: &Tensor, group: usize) -> Result<Option<Tensor>> {
    let channels = x.dims().last().copied().unwrap_or(0);
    if !host_f32(x) || group == 0 || channels % group != 0 {
        return Ok(None);
    }
    let out = super::movement::shuffle_channels(Borrowed::new(x).f32s("shuffle input")?, channels, group, intra_op_threads());
    Tensor::from_vec(out, x.dims(), &Device::Cpu).map(Some)
}

/// A dense layer `y = act(x · W + b)` over the last axis of `x`, with `W` `[K, N]` and `b` `[N]`:
/// the bias seeds the output and the activation runs on it in place, so a Keras `Dense` is one
/// GEMM call instead of MatMul, a broadcast Add and an activation.
pub(crate) struct Dense {
    pub(crate) activation: Option<Activation>,
}

impl Dense {
    /// Weights that were not packed at load are packed for this call.
    pub(crate) fn forward(&self, x: &Tensor, weights: DenseWeights<'_>, b: &Tensor) -> Result<Tensor> {
        let (&k, lead) = match x.dims().split_last() {
            Some(split) => split,
            None => candle_core::bail!("dense input must have at least one axis"),
        };
        let (wk, n) = match weights {
            DenseWeights::Raw(w) => match w.dims() {
                &[wk, n] => (wk, n),
                dims => candle_core::bail!("dense weights must be 2-D, got {dims:?}"),
            },
            DenseWeights::Packed(p) => (p.k(), p.n()),
        };
        if wk != k || b.dims().iter().product::<usize>() != n {
            candle_core::bail!("dense shapes disagree: input {:?}, weights [{wk}, {n}], bias {:?}", x.dims(), b.dims());
        }
        let rows: usize = lead.iter().product();
        let fresh;
        let packed = match weights {
            DenseWeights::Packed(p) => p,
            DenseWeights::Raw(w) => {
                fresh = PackedB::pack(Borrowed::new(w).f32s("dense weights")?, k, n, n);
                &fresh
            }
        };
        let (x, b) = (Borrowed::new(x), Borrowed::new(b));
        let epilogue = Epilogue { bias: Some(b.f32s("dense bias")?), activation: self.activation, residual: None };
        let x = x.f32s("dense input")?;
        // the GEMM writes every row and column
        let out = super::output::filled(rows * n, |out| gemm_parallel(x, k, rows, packed, out, n, &epilogue, intra_op_threads()));
        let mut dims = lead.to_vec();
        dims.push(n);
        Tensor::from_vec(out, dims, &Device::Cpu)
    }
}
