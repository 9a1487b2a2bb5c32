//! The internal ops the CPU passes produce (NHWC conv and pools, dense layers), backed by
//! engine::kernels.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::kernels::Activation;
use crate::engine::kernels::conv::pack_hwio;
use crate::engine::kernels::packed::PackedB;
use crate::engine::kernels::custom::{ConvWeights, JoinedConv, Dense, DenseWeights, NhwcConv, NhwcGlobalPool, NhwcLrn, NhwcPool, NhwcScaleShift, Window2d};
use crate::engine::kernels::pool::Reduce;
use crate::engine::kernels::narrow;
use crate::engine::kernels::winograd::{self, WinogradWeights};
use crate::engine::onnx::attrs::NodeCtx;

use super::fused::{FUSED_MAX_POOL, activate, expansion_from_node, from_node, projection_from_node};
use super::window::{AutoPad, Axis, Window, positive};
use super::{Builder, Op, OpError, OpResult, required, with_f32_values};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("_NhwcConv", conv),
    ("_NhwcMaxPool", |ctx| pool(ctx, Reduce::Max)),
    ("_NhwcAveragePool", |ctx| pool(ctx, Reduce::Average { count_include_pad: ctx.int("count_include_pad", 0) != 0 })),
    ("_NhwcGlobalAveragePool", |_| Ok(Box::new(GlobalPool { max: false }))),
    ("_NhwcGlobalMaxPool", |_| Ok(Box::new(GlobalPool { max: true }))),
    ("_Dense", |ctx| Ok(Box::new(DenseOp { dense: Dense { activation: from_node(ctx)? }, packed: None }))),
    ("_NhwcScaleShift", |ctx| Ok(Box::new(ScaleShiftOp(NhwcScaleShift { activation: from_node(ctx)? })))),
    ("_NhwcLrn", |ctx| Ok(Box::new(LrnOp(NhwcLrn(super::norm::lrn_params(ctx)?))))),
];

struct LrnOp(NhwcLrn);

impl Op for LrnOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?.contiguous()?;
        Ok(vec![x.apply_op1_no_bwd(&self.0)?])
    }
}

struct ScaleShiftOp(NhwcScaleShift);

impl Op for ScaleShiftOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?.contiguous()?;
        let scale = required(inputs, 1, "scale")?;
        let shift = required(inputs, 2, "shift")?;
        Ok(vec![x.apply_op3_no_bwd(scale, shift, &self.0)?])
    }
}

struct DenseOp {
    dense: Dense,
    /// `W` packed for the GEMM once at load, when it is an initializer.
    packed: Option<PackedB>,
}

impl Op for DenseOp {
    fn prepare(&mut self, constants: &[Option<&Tensor>]) -> Result<(), OpError> {
        if let Some(w) = constants.get(1).copied().flatten().filter(|w| w.rank() == 2 && w.dtype() == candle_core::DType::F32) {
            let (k, n) = w.dims2()?;
            self.packed = Some(with_f32_values(w, "W", |w| PackedB::pack(w, k, n, n))?);
        }
        Ok(())
    }

    fn absorbed(&self, input: usize) -> bool {
        input == 1 && self.packed.is_some()
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "A")?.contiguous()?;
        let w = match &self.packed {
            Some(p) => DenseWeights::Packed(p),
            None => DenseWeights::Raw(required(inputs, 1, "B")?),
        };
        let b = required(inputs, 2, "bias")?;
        Ok(vec![self.dense.forward(&x, w, b)?])
    }
}

/// The 2-D window attributes of Conv, MaxPool and AveragePool, resolved against each input
/// by the same rules as the general N-D ops (`window.rs`).
struct Attrs {
    auto_pad: AutoPad,
    pads: Option<Vec<usize>>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    ceil_mode: bool,
}

impl Attrs {
    fn parse(ctx: &NodeCtx<'_>) -> Result<Self, LoadError> {
        let kernel = ctx.sizes("kernel_shape")?.filter(|k| k.len() == 2)
            .ok_or_else(|| LoadError::Invalid("attribute 'kernel_shape' must have 2 values".into()))?;
        let two = |name: &str| -> Result<Vec<usize>, LoadError> {
            match positive(ctx, name)? {
                None => Ok(vec![1, 1]),
                Some(v) if v.len() == 2 => Ok(v),
                Some(v) => Err(LoadError::Invalid(format!("attribute '{name}' has {} values, expected 2", v.len()))),
            }
        };
        let pads = ctx.sizes("pads")?;
        if let Some(p) = pads.as_ref().filter(|p| p.len() != 4) {
            return Err(LoadError::Invalid(format!("attribute 'pads' has {} values, expected 4", p.len())));
        }
        Ok(Self {
            auto_pad: AutoPad::parse(ctx)?,
            pads,
            strides: two("strides")?,
            dilations: two("dilations")?,
            kernel,
            ceil_mode: ctx.int("ceil_mode", 0) != 0,
        })
    }

    /// Padding and output size for an NHWC input.
    fn resolve(&self, x: &Tensor) -> Result<Window2d, OpError> {
        let (_, h, w, _) = x.dims4()?;
        let window = Window {
            auto_pad: self.auto_pad,
            pads: self.pads.as_deref(),
            kernel: &self.kernel,
            strides: &self.strides,
            dilations: &self.dilations,
            ceil_mode: self.ceil_mode,
        };
        let axes = window.resolve(&[h, w])?;
        let pair = |f: fn(&Axis) -> usize| [f(&axes[0]), f(&axes[1])];
        Ok(Window2d {
            kernel: pair(|a| a.kernel),
            strides: pair(|a| a.stride),
            dilations: pair(|a| a.dilation),
            pad_begin: pair(|a| a.pad_begin),
            out: pair(|a| a.output),
        })
    }
}

struct Conv {
    attrs: Attrs,
    groups: usize,
    activation: Option<Activation>,
    /// `[rows, columns]` of a max pool fused into the conv (`passes/max_pool.rs`).
    max_pool: Option<[usize; 2]>,
    /// The weights prepared once at load, when they are an initializer.
    packed: Option<Prepared>,
    /// The 1x1 convs `passes/inverted_residual.rs` joined to this depthwise conv: one in front
    /// (inputs 4 and 5: its weights and bias) and one after it (inputs 6 and 7; the shortcut,
    /// input 3, is then the projection's).
    expansion: Option<Joined>,
    projection: Option<Joined>,
}

/// A joined 1x1 conv: its activation, and its weights packed at load when they are an
/// initializer.
struct Joined {
    activation: Option<Activation>,
    packed: Option<PackedB>,
}

/// Input slots of a joined 1x1 conv's weights (its bias follows).
const EXPANSION_WEIGHTS: usize = 4;
const PROJECTION_WEIGHTS: usize = 6;

impl Op for Conv {
    fn prepare(&mut self, constants: &[Option<&Tensor>]) -> Result<(), OpError> {
        for (joined, slot) in [(&mut self.expansion, EXPANSION_WEIGHTS), (&mut self.projection, PROJECTION_WEIGHTS)] {
            if let (Some(joined), Some(w)) = (joined.as_mut(), constants.get(slot).copied().flatten()) {
                joined.packed = Some(pack_pointwise(w)?);
            }
        }
        let Some(w) = constants.get(1).copied().flatten() else { return Ok(()) };
        let (kh, kw, in_g, out_c) = w.dims4()?;
        // as `Conv2d::is_depthwise` (one input channel per group, any multiplier): that kernel
        // reads the HWIO weights themselves, so packing them would be a wasted copy
        let depthwise = in_g == 1 && self.groups > 1;
        if out_c % self.groups == 0 && !depthwise && w.dtype() == candle_core::DType::F32 {
            let dims = [kh, kw, in_g, out_c];
            let pair = |v: &[usize]| [v[0], v[1]];
            let winograd = winograd::applies([kh, kw], pair(&self.attrs.strides), pair(&self.attrs.dilations), self.groups, in_g, out_c);
            let groups = self.groups;
            self.packed = Some(with_f32_values(w, "W", |values| {
                if narrow::applies(dims, groups) {
                    Prepared::Narrow(dims, values.to_vec())
                } else if winograd {
                    Prepared::Winograd(WinogradWeights::from_hwio(values, in_g, out_c))
                } else {
                    Prepared::Gemm(dims, pack_hwio(values, dims, groups))
                }
            })?);
        }
        Ok(())
    }

    fn absorbed(&self, input: usize) -> bool {
        let packed = |joined: &Option<Joined>| joined.as_ref().is_some_and(|j| j.packed.is_some());
        (input == 1 && self.packed.is_some()) || (input == EXPANSION_WEIGHTS && packed(&self.expansion)) || (input == PROJECTION_WEIGHTS && packed(&self.projection))
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?.contiguous()?;
        if self.expansion.is_some() || self.projection.is_some() {
            return self.run_block(&x, inputs);
        }
        let w = match &self.packed {
            Some(Prepared::Gemm(dims, panels)) => ConvWeights::Packed { dims: *dims, panels },
            Some(Prepared::Winograd(w)) => ConvWeights::Winograd(w),
            Some(Prepared::Narrow(dims, hwio)) => ConvWeights::Narrow { dims: *dims, hwio },
            None => ConvWeights::Hwio(required(inputs, 1, "W")?),
        };
        let b = required(inputs, 2, "B")?;
        let residual = inputs.get(3).copied().flatten();
        if residual.is_some() && self.max_pool.is_some() {
            return Err(OpError::Invalid("a conv with a residual input cannot also pool its output".into()));
        }
        let window = self.attrs.resolve(&x)?;
        let out_dims = [x.dim(0)?, window.out[0], window.out[1], w.dims()?[3]];
        let kernel = NhwcConv { window, groups: self.groups, activation: self.activation, max_pool: self.max_pool };
        let y = match residual {
            Some(r) if r.dims() != out_dims => {
                // the shortcut broadcasts: conv first, then the general Add and activation
                let plain = NhwcConv { activation: None, max_pool: None, ..kernel };
                activate(plain.forward(&x, w, b, None)?.broadcast_add(r)?, self.activation)?
            }
            Some(r) => kernel.forward(&x, w, b, Some(&r.contiguous()?))?,
            None => kernel.forward(&x, w, b, None)?,
        };
        Ok(vec![y])
    }
}

impl Conv {
    /// The depthwise conv with the 1x1 convs joined to it.
    fn run_block(&self, x: &Tensor, inputs: &[Option<&Tensor>]) -> OpResult {
        let shortcut = inputs.get(3).copied().flatten();
        if (shortcut.is_some() && self.projection.is_none()) || self.max_pool.is_some() || self.packed.is_some() {
            return Err(OpError::Invalid("a depthwise conv with 1x1 convs joined has no pool or packed weights, and a shortcut only with a projection".into()));
        }
        // weights that were not initializers are packed for this call
        let unpacked = |joined: &Option<Joined>, slot: usize| -> Result<Option<PackedB>, OpError> {
            match joined {
                Some(Joined { packed: None, .. }) => Ok(Some(pack_pointwise(required(inputs, slot, "joined 1x1 conv W")?)?)),
                _ => Ok(None),
            }
        };
        let (expand_weights, project_weights) = (unpacked(&self.expansion, EXPANSION_WEIGHTS)?, unpacked(&self.projection, PROJECTION_WEIGHTS)?);
        let kernel = NhwcConv { window: self.attrs.resolve(x)?, groups: self.groups, activation: self.activation, max_pool: None };
        let (w, b) = (required(inputs, 1, "W")?.contiguous()?, required(inputs, 2, "B")?);
        let shortcut = shortcut.map(|s| s.contiguous()).transpose()?;
        let expand = joined_conv(&self.expansion, &expand_weights, inputs, EXPANSION_WEIGHTS)?;
        let project = joined_conv(&self.projection, &project_weights, inputs, PROJECTION_WEIGHTS)?;
        Ok(vec![kernel.forward_block(x, expand, &w, b, project, shortcut.as_ref())?])
    }
}

/// A joined 1x1 conv as the kernel takes it: weights packed at load, or for this call (`own`).
fn joined_conv<'t>(joined: &'t Option<Joined>, own: &'t Option<PackedB>, inputs: &[Option<&'t Tensor>], slot: usize) -> Result<Option<JoinedConv<'t>>, OpError> {
    let Some(j) = joined else { return Ok(None) };
    let weights = j.packed.as_ref().or(own.as_ref()).ok_or_else(|| OpError::Invalid("joined 1x1 conv weights are missing".into()))?;
    Ok(Some((weights, required(inputs, slot + 1, "joined 1x1 conv B")?, j.activation)))
}

/// A 1x1 conv's HWIO weights `[1, 1, in_c, C]` packed as the GEMM's `[in_c, C]`.
fn pack_pointwise(w: &Tensor) -> Result<PackedB, OpError> {
    let (kh, kw, in_c, out_c) = w.dims4()?;
    if (kh, kw) != (1, 1) || w.dtype() != candle_core::DType::F32 {
        return Err(OpError::Invalid(format!("the joined 1x1 conv has {kh}x{kw} {:?} weights", w.dtype())));
    }
    with_f32_values(w, "the joined 1x1 conv's weights", |w| PackedB::pack(w, in_c, out_c, out_c))
}

/// A conv's weights in the form its kernel reads: GEMM panels with their HWIO dims, the
/// Winograd transform of a 3x3 stride-1 conv's, or a first layer's HWIO weights as they are.
enum Prepared {
    Gemm([usize; 4], Vec<PackedB>),
    Winograd(WinogradWeights),
    Narrow([usize; 4], Vec<f32>),
}

fn conv(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let groups = usize::try_from(ctx.int("group", 1)).ok().filter(|&g| g > 0)
        .ok_or_else(|| LoadError::Invalid("attribute 'group' must be positive".into()))?;
    let max_pool = match ctx.sizes(FUSED_MAX_POOL)?.as_deref() {
        None => None,
        Some(&[rows, columns]) if rows > 0 && columns > 0 => Some([rows, columns]),
        Some(other) => return Err(LoadError::Invalid(format!("attribute '{FUSED_MAX_POOL}' must be two positive sizes, got {other:?}"))),
    };
    let joined = |slot: usize, activation: Option<Activation>| ctx.node.input.get(slot).is_some_and(|name| !name.is_empty()).then_some(Joined { activation, packed: None });
    let expansion = joined(EXPANSION_WEIGHTS, expansion_from_node(ctx)?);
    let projection = joined(PROJECTION_WEIGHTS, projection_from_node(ctx)?);
    Ok(Box::new(Conv { attrs: Attrs::parse(ctx)?, groups, activation: from_node(ctx)?, max_pool, packed: None, expansion, projection }))
}

struct Pool {
    attrs: Attrs,
    reduce: Reduce,
}

impl Op for Pool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?.contiguous()?;
        let kernel = NhwcPool { window: self.attrs.resolve(&x)?, reduce: self.reduce };
        // The kernel is f32-only; other dtypes (uint8 images, say) round-trip through f32,
        // which is exact for max pooling of 8/16-bit values.
        let dtype = x.dtype();
        if dtype != candle_core::DType::F32 {
            let y = x.to_dtype(candle_core::DType::F32)?.apply_op1_no_bwd(&kernel)?;
            return Ok(vec![y.to_dtype(dtype)?]);
        }
        Ok(vec![x.apply_op1_no_bwd(&kernel)?])
    }
}

fn pool(ctx: &NodeCtx<'_>, reduce: Reduce) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Pool { attrs: Attrs::parse(ctx)?, reduce }))
}

struct GlobalPool {
    max: bool,
}

impl Op for GlobalPool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?.contiguous()?;
        let reduce = if self.max { Reduce::Max } else { Reduce::Average { count_include_pad: false } };
        Ok(vec![x.apply_op1_no_bwd(&NhwcGlobalPool(reduce))?])
    }
}
