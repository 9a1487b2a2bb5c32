//! Pad: constant, reflect, edge and wrap modes; pads as an attribute (opset < 11) or an input
//! with an optional constant_value (>= 11) and axes (>= 18). Negative pads crop.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::window::filled;
use super::{Builder, Op, OpError, OpResult, axis, int_values, optional, required};

pub(super) const OPS: &[(&str, Builder)] = &[("Pad", pad)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

struct Pad {
    mode: Mode,
    /// Opset < 11 carries pads and value as attributes.
    attr_pads: Option<Vec<i64>>,
    attr_value: f64,
}

impl Pad {
    /// (begin, end) per dimension of a rank-`rank` input.
    fn pads(&self, inputs: &[Option<&Tensor>], rank: usize) -> Result<Vec<(i64, i64)>, OpError> {
        let pads = match &self.attr_pads {
            Some(p) => p.clone(),
            None => int_values(required(inputs, 1, "pads")?)?,
        };
        let axes: Vec<usize> = match optional(inputs, 3) {
            Some(a) => int_values(a)?.into_iter().map(|a| axis(a, rank)).collect::<Result<_, _>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(OpError::Invalid(format!(
                "pads has {} values, expected {} (begin and end for each of {} axes)",
                pads.len(),
                2 * axes.len(),
                axes.len()
            )));
        }
        let mut per_dim = vec![(0, 0); rank];
        for (i, &a) in axes.iter().enumerate() {
            per_dim[a] = (pads[i], pads[i + axes.len()]);
        }
        Ok(per_dim)
    }
}

/// Source index for output position `p` of an axis of length `n` padded by `begin` in front.
fn source(mode: Mode, p: i64, begin: i64, n: i64) -> i64 {
    let s = p - begin;
    match mode {
        Mode::Edge => s.clamp(0, n - 1),
        Mode::Wrap => s.rem_euclid(n),
        Mode::Reflect if n == 1 => 0,
        Mode::Reflect => {
            let period = 2 * (n - 1);
            let m = s.rem_euclid(period);
            if m >= n { period - m } else { m }
        }
        Mode::Constant => s,
    }
}

impl Op for Pad {
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "data")?;
        let pads = self.pads(inputs, x.rank())?;
        let value = match (self.mode, optional(inputs, 2)) {
            (Mode::Constant, Some(v)) if v.elem_count() > 0 => Some(v.flatten_all()?.narrow(0, 0, 1)?.to_dtype(x.dtype())?),
            _ => None,
        };
        if self.mode == Mode::Constant && pads.iter().all(|&(b, e)| b >= 0 && e >= 0) {
            let scalar = match &value {
                Some(v) => v.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?[0],
                None => self.attr_value as f32,
            };
            let growth: Vec<(usize, usize)> = pads.iter().map(|&(b, e)| (b as usize, e as usize)).collect();
            if let Some(y) = crate::engine::kernels::custom::pad_constant(x, &growth, scalar)? {
                return Ok(vec![y]);
            }
        }
        let mut y = x.clone();
        for (dim, &(begin, end)) in pads.iter().enumerate() {
            if begin == 0 && end == 0 {
                continue;
            }
            let n = y.dims()[dim] as i64;
            let out = n + begin + end;
            if out < 0 {
                return Err(OpError::Invalid(format!("pads ({begin}, {end}) crop more than the {n} cells of axis {dim}")));
            }
            if self.mode != Mode::Constant || (begin <= 0 && end <= 0) {
                if n == 0 && out > 0 {
                    return Err(OpError::Invalid(format!("cannot pad the empty axis {dim} in {:?} mode", self.mode)));
                }
                let index: Vec<u32> = (0..out).map(|p| source(self.mode, p, begin, n) as u32).collect();
                let index = Tensor::from_vec(index, out as usize, y.device())?;
                y = y.contiguous()?.index_select(&index, dim)?;
                continue;
            }
            // Constant mode: crop any negative side, then add the constant blocks.
            let start = (-begin).max(0);
            let keep = n - start - (-end).max(0);
            y = y.narrow(dim, start as usize, keep as usize)?;
            let mut parts = Vec::with_capacity(3);
            for (side, len) in [(0, begin), (1, end)] {
                if len <= 0 {
                    continue;
                }
                let mut dims = y.dims().to_vec();
                dims[dim] = len as usize;
                let block = match &value {
                    Some(v) => v.reshape(())?.broadcast_as(dims.as_slice())?.contiguous()?,
                    None => filled(self.attr_value, &dims, y.dtype(), y.device())?,
                };
                if side == 0 {
                    parts.push(block);
                    parts.push(y.clone());
                } else {
                    if parts.is_empty() {
                        parts.push(y.clone());
                    }
                    parts.push(block);
                }
            }
            y = Tensor::cat(&parts, dim)?;
        }
        Ok(vec![y])
    }
}

fn pad(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    let mode = match ctx.string("mode", "constant")?.as_str() {
        "constant" => Mode::Constant,
        "reflect" => Mode::Reflect,
        "edge" => Mode::Edge,
        "wrap" => Mode::Wrap,
        other => return Err(LoadError::Invalid(format!("attribute 'mode' has unknown value '{other}'"))),
    };
    let attr_pads = if ctx.opset < 11 {
        Some(ctx.ints("pads").ok_or_else(|| LoadError::Invalid("attribute 'pads' is required before opset 11".into()))?)
    } else {
        None
    };
    Ok(Box::new(Pad { mode, attr_pads, attr_value: f64::from(ctx.float("value", 0.0)) }))
}
