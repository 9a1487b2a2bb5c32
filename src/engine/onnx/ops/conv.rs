//! Convolution (1-D and 2-D, grouped, with explicit or automatic padding).

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::{Builder, Op, OpError, OpResult, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("Conv", conv)];

/// ONNX `auto_pad`; shared with pooling.
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
}

/// Per spatial axis (begin, end) padding, resolved against the actual input size.
pub(super) fn resolve_pads(
    auto_pad: AutoPad,
    explicit: Option<&[usize]>,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Result<Vec<(usize, usize)>, OpError> {
    let n = input.len();
    match auto_pad {
        AutoPad::NotSet => match explicit {
            None => Ok(vec![(0, 0); n]),
            Some(p) if p.len() == 2 * n => Ok((0..n).map(|i| (p[i], p[i + n])).collect()),
            Some(p) => Err(OpError::Invalid(format!("pads has {} values, expected {}", p.len(), 2 * n))),
        },
        AutoPad::Valid => Ok(vec![(0, 0); n]),
        AutoPad::SameUpper | AutoPad::SameLower => Ok((0..n)
            .map(|i| {
                let out = input[i].div_ceil(strides[i]);
                let span = (kernel[i] - 1) * dilations[i] + 1;
                let total = ((out.saturating_sub(1)) * strides[i] + span).saturating_sub(input[i]);
                let small = total / 2;
                if auto_pad == AutoPad::SameUpper { (small, total - small) } else { (total - small, small) }
            })
            .collect()),
    }
}

struct Conv {
    auto_pad: AutoPad,
    pads: Option<Vec<usize>>,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    group: usize,
}

impl Op for Conv {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        let bias = optional(inputs, 2);
        let one_d = x.rank() == 3;
        // 1-D convolution runs as 2-D with a unit height, so there is one code path to tune.
        let (x, w) = match (x.rank(), w.rank()) {
            (3, 3) => (x.unsqueeze(2)?, w.unsqueeze(2)?),
            (4, 4) => (x.clone(), w.clone()),
            (xr, wr) => {
                return Err(OpError::Invalid(format!("Conv supports 1-D and 2-D inputs; got X rank {xr}, W rank {wr}")));
            }
        };
        let lift = |v: &Option<Vec<usize>>, default: usize| -> Result<Vec<usize>, OpError> {
            match v {
                None => Ok(vec![default; 2]),
                Some(v) if one_d && v.len() == 1 => Ok(vec![default, v[0]]),
                Some(v) if !one_d && v.len() == 2 => Ok(v.clone()),
                Some(v) => Err(OpError::Invalid(format!("attribute length {} does not match the input rank", v.len()))),
            }
        };
        let strides = lift(&self.strides, 1)?;
        let dilations = lift(&self.dilations, 1)?;
        let explicit = match &self.pads {
            Some(p) if one_d && p.len() == 2 => Some(vec![0, p[0], 0, p[1]]),
            other => other.clone(),
        };
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let pads = resolve_pads(self.auto_pad, explicit.as_deref(), &[h, wd], &[kh, kw], &strides, &dilations)?;
        if !one_d && (strides[0] != strides[1] || dilations[0] != dilations[1]) {
            return Err(OpError::Invalid(format!(
                "unequal strides {strides:?} or dilations {dilations:?} across axes are not supported yet"
            )));
        }
        let (stride, dilation) = (strides[1], dilations[1]);
        let symmetric = pads.iter().all(|&(b, e)| b == e) && pads[0].0 == pads[1].0;
        let (x, padding) = if symmetric && !one_d {
            (x, pads[0].0)
        } else {
            (x.pad_with_zeros(2, pads[0].0, pads[0].1)?.pad_with_zeros(3, pads[1].0, pads[1].1)?, 0)
        };
        let mut y = if one_d {
            x.squeeze(2)?.conv1d(&w.squeeze(2)?, padding, stride, dilation, self.group)?.unsqueeze(2)?
        } else {
            x.conv2d(&w, padding, stride, dilation, self.group)?
        };
        if let Some(b) = bias {
            y = y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?;
        }
        if one_d {
            y = y.squeeze(2)?;
        }
        Ok(vec![y])
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
        strides: ctx.sizes("strides")?,
        dilations: ctx.sizes("dilations")?,
        group: group as usize,
    }))
}
