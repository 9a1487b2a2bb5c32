//! Data movement along an axis: Concat, Split, Slice, Gather, Tile. Mostly folded away at load
//! when their inputs are constant; otherwise views or one copy.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::constant::shape_values;
use super::{Builder, Op, OpError, OpResult, axis, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[
    ("Concat", |ctx| Ok(Box::new(Concat(ctx.int("axis", 0))))),
    ("Split", split),
    ("Slice", slice),
    ("Gather", |ctx| Ok(Box::new(Gather(ctx.int("axis", 0))))),
    ("Tile", |_| Ok(Box::new(Tile))),
    ("_ChannelShuffle", |ctx| {
        let group = usize::try_from(ctx.int("group", 0)).ok().filter(|&g| g > 0)
            .ok_or_else(|| LoadError::Invalid("attribute 'group' must be positive".into()))?;
        Ok(Box::new(ChannelShuffle { group, channels_last: ctx.int("channels_last", 0) != 0 }))
    }),
];

/// ShuffleNet's channel shuffle on a 4-D value: channel `i * C/g + j` moves to `j * g + i`.
/// The graph pass that creates it (passes/shuffle.rs) has checked the exporter's shapes.
struct ChannelShuffle {
    group: usize,
    channels_last: bool,
}

impl Op for ChannelShuffle {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        let (n, a, b, c) = x.dims4()?;
        let (channels, g) = (if self.channels_last { c } else { a }, self.group);
        if channels % g != 0 {
            return Err(OpError::Invalid(format!("channel shuffle of {channels} channels into {g} groups")));
        }
        if self.channels_last && let Some(y) = crate::engine::kernels::custom::shuffle_last_axis(x, g)? {
            return Ok(vec![y]);
        }
        let y = if self.channels_last {
            x.reshape((n * a * b, g, c / g))?.transpose(1, 2)?.contiguous()?.reshape((n, a, b, c))?
        } else {
            x.reshape((n, g, a / g, b * c))?.transpose(1, 2)?.contiguous()?.reshape((n, a, b, c))?
        };
        Ok(vec![y])
    }
}

struct Concat(i64);

impl Op for Concat {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let first = parts.first().ok_or_else(|| OpError::Invalid("Concat needs at least one input".into()))?;
        let a = axis(self.0, first.rank())?;
        if let Some(joined) = crate::engine::kernels::custom::concat(&parts, a)? {
            return Ok(vec![joined]);
        }
        Ok(vec![Tensor::cat(&parts, a)?])
    }
}

struct Split {
    axis: i64,
    /// The `split` attribute (before opset 13; an input after).
    sizes_attr: Option<Vec<i64>>,
    /// Opset 18's `num_outputs`: equal chunks, the last one smaller when uneven.
    num_outputs: Option<usize>,
    /// How many outputs the node declares; without sizes the axis splits evenly among them.
    outputs: usize,
}

impl Op for Split {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        let a = axis(self.axis, x.rank())?;
        let n = x.dim(a)?;
        let sizes: Vec<usize> = match (optional(inputs, 1), &self.sizes_attr) {
            (Some(t), _) => shape_values(t, "split")?,
            (None, Some(s)) => s
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| OpError::Invalid(format!("split has negative size {d}"))))
                .collect::<Result<_, _>>()?,
            (None, None) => {
                let parts = self.num_outputs.unwrap_or(self.outputs).max(1);
                let chunk = if self.num_outputs.is_some() { n.div_ceil(parts) } else { n / parts };
                if self.num_outputs.is_none() && n % parts != 0 {
                    return Err(OpError::Invalid(format!("axis {a} of size {n} does not split evenly into {parts}")));
                }
                if chunk * (parts - 1) > n {
                    return Err(OpError::Invalid(format!("axis {a} of size {n} cannot give {parts} chunks")));
                }
                (0..parts).map(|i| if i + 1 < parts { chunk } else { n - chunk * (parts - 1) }).collect()
            }
        };
        if sizes.iter().sum::<usize>() != n {
            return Err(OpError::Invalid(format!("split sizes {sizes:?} do not add up to axis {a} of size {n}")));
        }
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for len in sizes {
            out.push(x.narrow(a, start, len)?);
            start += len;
        }
        Ok(out)
    }
}

fn split(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let num_outputs = match ctx.has("num_outputs").then(|| ctx.int("num_outputs", 0)) {
        None => None,
        Some(k) if k >= 1 => Some(k as usize),
        Some(k) => return Err(LoadError::Invalid(format!("attribute 'num_outputs' is {k}, must be at least 1"))),
    };
    Ok(Box::new(Split { axis: ctx.int("axis", 0), sizes_attr: ctx.ints("split"), num_outputs, outputs: ctx.node.output.len() }))
}

struct Gather(i64);

impl Op for Gather {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        let a = axis(self.0, data.rank())?;
        let size = data.dim(a)? as i64;
        let picked = int_values(indices)?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + size } else { i };
                u32::try_from(j).ok().filter(|&j| i64::from(j) < size).ok_or_else(|| {
                    OpError::Invalid(format!("index {i} is out of range for axis {a} of size {size}"))
                })
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let n = picked.len();
        let selected = data.index_select(&Tensor::from_vec(picked, n, data.device())?, a)?;
        let mut dims = data.dims()[..a].to_vec();
        dims.extend_from_slice(indices.dims());
        dims.extend_from_slice(&data.dims()[a + 1..]);
        Ok(vec![selected.reshape(dims)?])
    }
}

/// Opset < 10 carries starts, ends and axes as attributes.
struct SliceAttrs {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
}

struct Slice {
    attrs: Option<SliceAttrs>,
}

/// The first index and the (exclusive) end of a slice along an axis of size `dim`, clamped as
/// the ONNX spec says: start into [0, dim] and end into [0, dim] for positive steps, start into
/// [0, dim - 1] and end into [-1, dim - 1] for negative ones. An empty axis gives an empty range.
fn clamp_range(start: i64, end: i64, step: i64, dim: i64) -> (i64, i64) {
    let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    if dim == 0 {
        (0, 0)
    } else if step > 0 {
        (norm(start).clamp(0, dim), norm(end).clamp(0, dim))
    } else {
        (norm(start).clamp(0, dim - 1), norm(end).clamp(-1, dim - 1))
    }
}

impl Op for Slice {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let (starts, ends, axes, steps) = match &self.attrs {
            Some(a) => (a.starts.clone(), a.ends.clone(), a.axes.clone(), None),
            None => (
                int_values(required(inputs, 1, "starts")?)?,
                int_values(required(inputs, 2, "ends")?)?,
                optional(inputs, 3).map(int_values).transpose()?,
                optional(inputs, 4).map(int_values).transpose()?,
            ),
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(OpError::Invalid("starts, ends, axes and steps must have the same length".into()));
        }
        let mut y = x.clone();
        for i in 0..starts.len() {
            let a = axis(axes[i], x.rank())?;
            let dim = x.dim(a)? as i64;
            let step = steps[i];
            if step == 0 {
                return Err(OpError::Invalid("slice step must not be 0".into()));
            }
            let (start, end) = clamp_range(starts[i], ends[i], step, dim);
            let (span, stride) = if step > 0 { (end - start, step) } else { (start - end, -step) };
            let count = if span <= 0 { 0 } else { (span - 1) / stride + 1 };
            if count == 0 || y.elem_count() == 0 {
                // candle's narrow moves an empty view's offset past its storage (x[1:, -1] of
                // one row): build empty results fresh instead.
                let mut dims = y.dims().to_vec();
                dims[a] = count as usize;
                y = Tensor::zeros(dims, y.dtype(), y.device())?;
                continue;
            }
            if step == 1 {
                y = y.narrow(a, start as usize, (end - start).max(0) as usize)?;
                continue;
            }
            let picked: Vec<u32> = (0..count).map(|k| (start + k * step) as u32).collect();
            let n = picked.len();
            y = y.index_select(&Tensor::from_vec(picked, n, x.device())?, a)?;
        }
        Ok(vec![y])
    }
}

fn slice(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let attrs = if ctx.opset < 10 {
        let starts = ctx.ints("starts").ok_or_else(|| LoadError::Invalid("attribute 'starts' is required".into()))?;
        let ends = ctx.ints("ends").ok_or_else(|| LoadError::Invalid("attribute 'ends' is required".into()))?;
        Some(SliceAttrs { starts, ends, axes: ctx.ints("axes") })
    } else {
        None
    };
    Ok(Box::new(Slice { attrs }))
}

struct Tile;

impl Op for Tile {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "input")?;
        let repeats = shape_values(required(inputs, 1, "repeats")?, "repeats")?;
        if repeats.len() != x.rank() {
            return Err(OpError::Invalid(format!("{} repeats for a rank-{} input", repeats.len(), x.rank())));
        }
        if repeats.contains(&0) || x.elem_count() == 0 {
            let dims: Vec<usize> = x.dims().iter().zip(&repeats).map(|(d, r)| d * r).collect();
            return Ok(vec![Tensor::zeros(dims, x.dtype(), x.device())?]);
        }
        Ok(vec![x.repeat(repeats)?])
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    fn ints(v: &[i64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn slicing_an_empty_axis_backwards_is_empty_not_a_panic() {
        let x = Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap();
        let (s, e, a, st) = (ints(&[-1]), ints(&[i64::MIN]), ints(&[0]), ints(&[-1]));
        let y = Slice { attrs: None }.run(&[Some(&x), Some(&s), Some(&e), Some(&a), Some(&st)]).unwrap();
        assert_eq!(y[0].dims(), &[0, 3]);
    }

    /// `x[1:, -1]` of one row: the first axis empties, and the second is still sliced (candle's
    /// narrow of an empty view would move its offset past the storage).
    #[test]
    fn slicing_after_an_axis_empties_stays_empty() {
        let x = Tensor::zeros((1, 4, 6), DType::F32, &Device::Cpu).unwrap();
        let (s, e, a, st) = (ints(&[1, -1]), ints(&[i64::MAX, i64::MAX]), ints(&[0, 1]), ints(&[1, 1]));
        let y = Slice { attrs: None }.run(&[Some(&x), Some(&s), Some(&e), Some(&a), Some(&st)]).unwrap();
        assert_eq!(y[0].dims(), &[0, 1, 6]);
        let host = crate::engine::convert::from_candle(&y[0], crate::tensor::DType::F32).expect("an empty result converts");
        assert_eq!(host.shape(), &[0, 1, 6]);
    }

    #[test]
    fn huge_steps_take_one_element() {
        let x = Tensor::arange(0f32, 5.0, &Device::Cpu).unwrap();
        let (s, e, a, st) = (ints(&[1]), ints(&[5]), ints(&[0]), ints(&[i64::MAX]));
        let y = Slice { attrs: None }.run(&[Some(&x), Some(&s), Some(&e), Some(&a), Some(&st)]).unwrap();
        assert_eq!(y[0].to_vec1::<f32>().unwrap(), vec![1.0]);
    }

    #[test]
    fn split_num_outputs_makes_the_last_chunk_smaller() {
        let x = Tensor::arange(0f32, 7.0, &Device::Cpu).unwrap();
        let op = Split { axis: 0, sizes_attr: None, num_outputs: Some(4), outputs: 4 };
        let parts: Vec<usize> = op.run(&[Some(&x)]).unwrap().iter().map(|t| t.elem_count()).collect();
        assert_eq!(parts, vec![2, 2, 2, 1]);
        let even = Split { axis: 0, sizes_attr: None, num_outputs: None, outputs: 2 };
        assert!(even.run(&[Some(&x)]).is_err(), "7 does not split evenly in two");
    }
}
