//! Resize (opsets 10-19) and the older Upsample: nearest (every nearest_mode), linear and cubic
//! (cubic_coeff_a, exclude_outside, antialias), every coordinate_transformation_mode, scales or
//! sizes (with keep_aspect_ratio_policy and axes), tf_crop_and_resize's roi and
//! extrapolation_value, on any number of axes.
//!
//! Separable: each resized axis is one weighted sum of index_selects, with taps and weights
//! computed on the host from the axis lengths alone (so it runs on any device).

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::{Builder, Op, OpError, OpResult, axis, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("Resize", resize), ("Upsample", upsample)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coordinates {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    TfCropAndResize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Upsample and Resize-10: floor when enlarging, ceil when shrinking (onnxruntime's rule).
    Simple,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

struct Resize {
    mode: Mode,
    coordinates: Coordinates,
    nearest: Nearest,
    cubic_a: f64,
    exclude_outside: bool,
    extrapolation: f64,
    antialias: bool,
    axes: Option<Vec<i64>>,
    policy: AspectPolicy,
    /// Where the scales input sits: 1 for Upsample-9 and Resize-10, 2 from Resize-11 on.
    scales_input: usize,
    /// Upsample-7 carries its scales as an attribute.
    attr_scales: Option<Vec<f32>>,
}

/// One resized axis: for every output cell, the input taps and their weights, and whether the
/// cell falls outside tf_crop_and_resize's region (then it takes extrapolation_value).
struct AxisPlan {
    taps: Vec<Vec<(usize, f64)>>,
    outside: Vec<bool>,
}

/// An optional input that may also be given as an empty tensor (opset 11's way to omit it).
fn nonempty(t: Option<&Tensor>) -> Option<&Tensor> {
    t.filter(|t| t.elem_count() > 0)
}

fn float_values(t: &Tensor) -> Result<Vec<f64>, OpError> {
    Ok(t.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?)
}

impl Resize {
    fn source(&self, o: usize, input: usize, output: usize, scale: f64, roi: (f64, f64)) -> f64 {
        let (o, inp, out) = (o as f64, input as f64, output as f64);
        match self.coordinates {
            Coordinates::HalfPixel => (o + 0.5) / scale - 0.5,
            Coordinates::HalfPixelSymmetric => {
                let adjustment = out / (scale * inp);
                let offset = inp / 2.0 * (1.0 - adjustment);
                offset + (o + 0.5) / scale - 0.5
            }
            Coordinates::PytorchHalfPixel if output > 1 => (o + 0.5) / scale - 0.5,
            Coordinates::PytorchHalfPixel => 0.0,
            Coordinates::AlignCorners if output > 1 => o * (inp - 1.0) / (out - 1.0),
            Coordinates::AlignCorners => 0.0,
            Coordinates::Asymmetric => o / scale,
            Coordinates::TfHalfPixelForNn => (o + 0.5) / scale,
            Coordinates::TfCropAndResize if output > 1 => roi.0 * (inp - 1.0) + o * (roi.1 - roi.0) * (inp - 1.0) / (out - 1.0),
            Coordinates::TfCropAndResize => 0.5 * (roi.0 + roi.1) * (inp - 1.0),
        }
    }

    fn nearest_index(&self, x: f64, scale: f64) -> f64 {
        match self.nearest {
            Nearest::RoundPreferFloor => (x - 0.5).ceil(),
            Nearest::RoundPreferCeil => (x + 0.5).floor(),
            Nearest::Floor => x.floor(),
            Nearest::Ceil => x.ceil(),
            Nearest::Simple if scale < 1.0 => x.ceil(),
            Nearest::Simple => x.floor(),
        }
    }

    /// Interpolation kernel at distance `d` (in input cells, already scaled for antialias).
    fn kernel(&self, d: f64) -> f64 {
        let d = d.abs();
        match self.mode {
            Mode::Nearest | Mode::Linear => (1.0 - d).max(0.0),
            Mode::Cubic => {
                let a = self.cubic_a;
                if d <= 1.0 {
                    ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
                } else if d < 2.0 {
                    ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
                } else {
                    0.0
                }
            }
        }
    }

    fn plan_axis(&self, input: usize, output: usize, scale: f64, roi: (f64, f64)) -> AxisPlan {
        let last = input as i64 - 1;
        let mut taps = Vec::with_capacity(output);
        let mut outside = Vec::with_capacity(output);
        for o in 0..output {
            let x = self.source(o, input, output, scale, roi);
            outside.push(self.coordinates == Coordinates::TfCropAndResize && (x < 0.0 || x > last as f64));
            if self.mode == Mode::Nearest {
                let i = (self.nearest_index(x, scale) as i64).clamp(0, last);
                taps.push(vec![(i as usize, 1.0)]);
                continue;
            }
            // Antialiasing stretches the kernel by 1/scale when shrinking.
            let stretch = if self.antialias { scale.min(1.0) } else { 1.0 };
            let half_width = if self.mode == Mode::Cubic { 2.0 } else { 1.0 };
            let first = (-half_width / stretch).floor() as i64 + 1;
            let base = x.floor();
            let ratio = x - base;
            let mut cell: Vec<(i64, f64)> =
                (first..=1 - first).map(|j| (base as i64 + j, self.kernel((j as f64 - ratio) * stretch))).collect();
            if self.exclude_outside {
                for (i, w) in cell.iter_mut() {
                    if *i < 0 || *i > last {
                        *w = 0.0;
                    }
                }
            }
            if self.antialias || self.exclude_outside {
                let sum: f64 = cell.iter().map(|(_, w)| w).sum();
                if sum != 0.0 {
                    for (_, w) in cell.iter_mut() {
                        *w /= sum;
                    }
                }
            }
            taps.push(cell.into_iter().filter(|&(_, w)| w != 0.0).map(|(i, w)| (i.clamp(0, last) as usize, w)).collect());
        }
        AxisPlan { taps, outside }
    }

    /// Resizes dimension `dim` of `x` per `plan`.
    fn apply(&self, x: &Tensor, dim: usize, plan: &AxisPlan) -> Result<Tensor, OpError> {
        let output = plan.taps.len();
        let width = plan.taps.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut shape = vec![1; x.rank()];
        shape[dim] = output;
        let x = x.contiguous()?;
        let mut y: Option<Tensor> = None;
        for t in 0..width {
            // Cells with fewer taps repeat their first one with weight 0.
            let (index, weight): (Vec<u32>, Vec<f64>) = plan
                .taps
                .iter()
                .map(|cell| match cell.get(t) {
                    Some(&(i, w)) => (i as u32, w),
                    None => (cell.first().map_or(0, |c| c.0 as u32), 0.0),
                })
                .unzip();
            let picked = x.index_select(&Tensor::from_vec(index, output, x.device())?, dim)?;
            let term = if self.mode == Mode::Nearest {
                picked
            } else {
                let weight = Tensor::from_vec(weight, shape.as_slice(), x.device())?.to_dtype(x.dtype())?;
                picked.broadcast_mul(&weight)?
            };
            y = Some(match y {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
        let y = y.ok_or_else(|| OpError::Invalid("resize produced no taps".into()))?;
        if !plan.outside.iter().any(|&o| o) {
            return Ok(y);
        }
        let keep: Vec<f64> = plan.outside.iter().map(|&o| if o { 0.0 } else { 1.0 }).collect();
        let fill: Vec<f64> = plan.outside.iter().map(|&o| if o { self.extrapolation } else { 0.0 }).collect();
        let keep = Tensor::from_vec(keep, shape.as_slice(), y.device())?.to_dtype(y.dtype())?;
        let fill = Tensor::from_vec(fill, shape.as_slice(), y.device())?.to_dtype(y.dtype())?;
        Ok(y.broadcast_mul(&keep)?.broadcast_add(&fill)?)
    }
}

impl Op for Resize {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let rank = x.rank();
        if self.mode != Mode::Nearest && !x.dtype().is_float() {
            return Err(OpError::Invalid(format!("linear and cubic resizing need a float input, got {:?}", x.dtype())));
        }
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?,
            None => (0..rank).collect(),
        };
        let scales = match &self.attr_scales {
            Some(s) => Some(s.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()),
            None => nonempty(optional(inputs, self.scales_input)).map(float_values).transpose()?,
        };
        let sizes = if self.scales_input == 2 { nonempty(optional(inputs, 3)).map(int_values).transpose()? } else { None };
        let roi = if self.scales_input == 2 { nonempty(optional(inputs, 1)).map(float_values).transpose()? } else { None };
        let count = axes.len();
        let check = |what: &str, len: usize, want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(OpError::Invalid(format!("{what} has {len} values, expected {want}")))
            }
        };
        let dims = x.dims().to_vec();
        // (output length, scale) for each listed axis.
        let targets: Vec<(usize, f64)> = match (&scales, &sizes) {
            (_, Some(sizes)) => {
                check("sizes", sizes.len(), count)?;
                if sizes.iter().any(|&s| s < 1) {
                    return Err(OpError::Invalid(format!("sizes {sizes:?} must be positive")));
                }
                let ratios: Vec<f64> = axes.iter().zip(sizes).map(|(&a, &s)| s as f64 / dims[a] as f64).collect();
                let uniform = match self.policy {
                    AspectPolicy::Stretch => None,
                    AspectPolicy::NotLarger => ratios.iter().copied().reduce(f64::min),
                    AspectPolicy::NotSmaller => ratios.iter().copied().reduce(f64::max),
                };
                match uniform {
                    None => sizes.iter().zip(ratios).map(|(&s, r)| (s as usize, r)).collect(),
                    Some(r) => axes.iter().map(|&a| (((r * dims[a] as f64) + 0.5).floor() as usize, r)).collect(),
                }
            }
            (Some(scales), None) => {
                check("scales", scales.len(), count)?;
                if scales.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
                    return Err(OpError::Invalid(format!("scales {scales:?} must be positive")));
                }
                axes.iter()
                    .enumerate()
                    .map(|(i, &a)| {
                        let extent = match (&roi, self.coordinates) {
                            (Some(r), Coordinates::TfCropAndResize) if r.len() == 2 * count => r[i + count] - r[i],
                            _ => 1.0,
                        };
                        // In f32, as onnxruntime does: 5 * 1.4f32 is 7 there but 6.9999... in f64.
                        let length = (dims[a] as f32 * extent as f32 * scales[i] as f32).floor();
                        (length as usize, scales[i])
                    })
                    .collect()
            }
            (None, None) => return Err(OpError::Invalid("Resize needs either scales or sizes".into())),
        };
        if let Some(r) = &roi && self.coordinates == Coordinates::TfCropAndResize {
            check("roi", r.len(), 2 * count)?;
        }
        let mut y = x.clone();
        for (i, &a) in axes.iter().enumerate() {
            let (output, scale) = targets[i];
            if dims[a] == 0 {
                return Err(OpError::Invalid(format!("cannot resize the empty axis {a}")));
            }
            if output == 0 {
                return Err(OpError::Invalid(format!("output length of axis {a} would be 0")));
            }
            let crop = self.coordinates == Coordinates::TfCropAndResize;
            if output == dims[a] && scale == 1.0 && !crop {
                continue;
            }
            let region = match &roi {
                Some(r) if crop => (r[i], r[i + count]),
                _ => (0.0, 1.0),
            };
            let plan = self.plan_axis(dims[a], output, scale, region);
            y = self.apply(&y, a, &plan)?;
        }
        Ok(vec![y])
    }
}

fn parse_mode(ctx: &NodeCtx<'_>) -> Result<Mode, LoadError> {
    match ctx.string("mode", "nearest")?.as_str() {
        "nearest" => Ok(Mode::Nearest),
        "linear" | "bilinear" => Ok(Mode::Linear),
        "cubic" => Ok(Mode::Cubic),
        other => Err(LoadError::Invalid(format!("attribute 'mode' has unknown value '{other}'"))),
    }
}

fn resize(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    if ctx.opset < 11 {
        return upsample(ctx);
    }
    let coordinates = match ctx.string("coordinate_transformation_mode", "half_pixel")?.as_str() {
        "half_pixel" => Coordinates::HalfPixel,
        "half_pixel_symmetric" => Coordinates::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coordinates::PytorchHalfPixel,
        "align_corners" => Coordinates::AlignCorners,
        "asymmetric" => Coordinates::Asymmetric,
        "tf_half_pixel_for_nn" => Coordinates::TfHalfPixelForNn,
        "tf_crop_and_resize" => Coordinates::TfCropAndResize,
        other => {
            return Err(LoadError::Invalid(format!("attribute 'coordinate_transformation_mode' has unknown value '{other}'")));
        }
    };
    let nearest = match ctx.string("nearest_mode", "round_prefer_floor")?.as_str() {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => return Err(LoadError::Invalid(format!("attribute 'nearest_mode' has unknown value '{other}'"))),
    };
    let policy = match ctx.string("keep_aspect_ratio_policy", "stretch")?.as_str() {
        "stretch" => AspectPolicy::Stretch,
        "not_larger" => AspectPolicy::NotLarger,
        "not_smaller" => AspectPolicy::NotSmaller,
        other => return Err(LoadError::Invalid(format!("attribute 'keep_aspect_ratio_policy' has unknown value '{other}'"))),
    };
    Ok(Box::new(Resize {
        mode: parse_mode(ctx)?,
        coordinates,
        nearest,
        cubic_a: f64::from(ctx.float("cubic_coeff_a", -0.75)),
        exclude_outside: ctx.int("exclude_outside", 0) != 0,
        extrapolation: f64::from(ctx.float("extrapolation_value", 0.0)),
        antialias: ctx.int("antialias", 0) != 0,
        axes: ctx.ints("axes"),
        policy,
        scales_input: 2,
        attr_scales: None,
    }))
}

/// Upsample (opsets 7-9) and Resize-10: asymmetric coordinates, scales only.
fn upsample(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let mode = parse_mode(ctx)?;
    if mode == Mode::Cubic {
        return Err(LoadError::Invalid("attribute 'mode' = cubic needs Resize from opset 11".into()));
    }
    let attr_scales = ctx.node.attribute.iter().find(|a| a.name == "scales").map(|a| a.floats.clone());
    Ok(Box::new(Resize {
        mode,
        coordinates: Coordinates::Asymmetric,
        nearest: Nearest::Simple,
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation: 0.0,
        antialias: false,
        axes: None,
        policy: AspectPolicy::Stretch,
        scales_input: 1,
        attr_scales,
    }))
}
