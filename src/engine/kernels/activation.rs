//! Activations fused into the kernel that produced the values, so they run while the output
//! chunk is still in cache instead of as another pass over memory.

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Activation {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    /// `min(max(x, lo), hi)`: ReLU6 is `Clip(0, 6)`, MobileNet's activation.
    Clip(f32, f32),
}

impl Activation {
    /// The ONNX op an activation node must have for the fusion pass to absorb it; `alpha` is
    /// LeakyRelu's slope or Clip's lower bound, `beta` Clip's upper bound.
    pub(crate) fn from_onnx(op_type: &str, alpha: f32, beta: f32) -> Option<Self> {
        Some(match op_type {
            "Relu" => Self::Relu,
            "LeakyRelu" => Self::LeakyRelu(alpha),
            "Sigmoid" => Self::Sigmoid,
            "Tanh" => Self::Tanh,
            "Clip" => Self::Clip(alpha, beta),
            _ => return None,
        })
    }

    pub(crate) fn apply(self, values: &mut [f32]) {
        match self {
            Self::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Self::LeakyRelu(alpha) => values.iter_mut().for_each(|v| *v = if *v < 0.0 { *v * alpha } else { *v }),
            Self::Sigmoid => values.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Self::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
            Self::Clip(lo, hi) => values.iter_mut().for_each(|v| *v = v.max(lo).min(hi)),
        }
    }
}

/// Optional-activation shorthand used by the kernels.
pub(crate) fn apply(activation: Option<Activation>, values: &mut [f32]) {
    if let Some(a) = activation {
        a.apply(values);
    }
}

/// Adds `bias` to every row of `values` (rows of `bias.len()`) and applies the activation, in
/// one pass (the depthwise conv's epilogue). Through pulp, as [`scale_shift_then`]: ReLU and
/// Clip clamp in registers, other activations run after the pass.
pub(crate) fn bias_then(activation: Option<Activation>, bias: &[f32], values: &mut [f32]) {
    let bounds = clamp_bounds(activation);
    super::simd::dispatch(BiasThen { bias, values: &mut *values, bounds });
    if bounds.is_none() {
        apply(activation, values);
    }
}

/// The `(lo, hi)` a ReLU or Clip clamps to; `None` for no activation and for the others.
fn clamp_bounds(activation: Option<Activation>) -> Option<(f32, f32)> {
    match activation {
        Some(Activation::Relu) => Some((0.0, f32::INFINITY)),
        Some(Activation::Clip(lo, hi)) => Some((lo, hi)),
        _ => None,
    }
}

/// `max(v, lo)` then `min(.., hi)` with `f32::max`/`min`'s NaN rule (a NaN comes out as `lo`).
#[inline(always)]
fn clamp<S: pulp::Simd>(s: S, v: S::f32s, lo: S::f32s, hi: S::f32s) -> S::f32s {
    let v = s.select_f32s(s.greater_than_f32s(v, lo), v, lo);
    s.select_f32s(s.less_than_f32s(v, hi), v, hi)
}

struct BiasThen<'a> {
    bias: &'a [f32],
    values: &'a mut [f32],
    bounds: Option<(f32, f32)>,
}

impl pulp::WithSimd for BiasThen<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let c = self.bias.len().max(1);
        let (clamps, (lo, hi)) = (self.bounds.is_some(), self.bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY)));
        let (vlo, vhi) = (s.splat_f32s(lo), s.splat_f32s(hi));
        let (bias, bias_tail) = S::as_simd_f32s(self.bias);
        for row in self.values.chunks_exact_mut(c) {
            let (head, tail) = S::as_mut_simd_f32s(row);
            for (v, &b) in head.iter_mut().zip(bias) {
                let y = s.add_f32s(*v, b);
                *v = if clamps { clamp(s, y, vlo, vhi) } else { y };
            }
            for (v, &b) in tail.iter_mut().zip(bias_tail) {
                let y = *v + b;
                *v = if clamps { y.max(lo).min(hi) } else { y };
            }
        }
    }
}

/// `out = act(x * scale + shift)` per channel, rows of `scale.len()` channels: an inference
/// BatchNormalization that no conv absorbed, in one pass instead of four broadcasts.
///
/// Through pulp, because the crate is built for baseline x86-64, where this loop compiled to
/// 4-lane SSE: DenseNet121 runs 62 of these, one before each conv. ReLU and Clip apply in
/// registers; the rounding is the scalar loop's (a multiply, then an add).
pub(crate) fn scale_shift_then(activation: Option<Activation>, scale: &[f32], shift: &[f32], x: &[f32], out: &mut [f32]) {
    let bounds = clamp_bounds(activation);
    super::simd::dispatch(ScaleShift { scale, shift, x, out, bounds });
    if bounds.is_none() {
        apply(activation, out);
    }
}

/// `out = x * scale + shift` per pixel row, clamped to `bounds` if any: `max(v, lo)` then
/// `min(.., hi)` as `f32::max`/`min` do it, so a NaN sum comes out as `lo` (0 for ReLU), as in
/// the scalar kernels.
struct ScaleShift<'a> {
    scale: &'a [f32],
    shift: &'a [f32],
    x: &'a [f32],
    out: &'a mut [f32],
    bounds: Option<(f32, f32)>,
}

impl pulp::WithSimd for ScaleShift<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let c = self.scale.len().max(1);
        let (clamps, (lo, hi)) = (self.bounds.is_some(), self.bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY)));
        let (vlo, vhi) = (s.splat_f32s(lo), s.splat_f32s(hi));
        let (scale, scale_tail) = S::as_simd_f32s(self.scale);
        let (shift, shift_tail) = S::as_simd_f32s(self.shift);
        for (row, src) in self.out.chunks_exact_mut(c).zip(self.x.chunks_exact(c)) {
            let (out, out_tail) = S::as_mut_simd_f32s(row);
            let (x, x_tail) = S::as_simd_f32s(src);
            for (((o, &v), &a), &b) in out.iter_mut().zip(x).zip(scale).zip(shift) {
                let y = s.add_f32s(s.mul_f32s(v, a), b);
                *o = if clamps { clamp(s, y, vlo, vhi) } else { y };
            }
            for (((o, &v), &a), &b) in out_tail.iter_mut().zip(x_tail).zip(scale_tail).zip(shift_tail) {
                let y = v * a + b;
                *o = if clamps { y.max(lo).min(hi) } else { y };
            }
        }
    }
}

/// `values = act(values + addend)` elementwise: a residual shortcut and the activation after it.
pub(crate) fn add_then(activation: Option<Activation>, addend: &[f32], values: &mut [f32]) {
    fn each(addend: &[f32], values: &mut [f32], f: impl Fn(f32) -> f32) {
        values.iter_mut().zip(addend).for_each(|(v, a)| *v = f(*v + a));
    }
    match activation {
        None => each(addend, values, |x| x),
        Some(Activation::Relu) => each(addend, values, |x| x.max(0.0)),
        Some(Activation::Clip(lo, hi)) => each(addend, values, |x| x.max(lo).min(hi)),
        Some(other) => {
            each(addend, values, |x| x);
            other.apply(values);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector loop against the scalar definition, `f32::max`/`min` included: whole vectors
    /// and a tail, NaN and infinite inputs, every activation kind.
    #[test]
    fn scale_shift_and_bias_match_the_scalar_definition_nans_included() {
        for channels in [1, 19, 32, 48] {
            let pixels = 5;
            let mut x: Vec<f32> = (0..pixels * channels).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
            let len = x.len();
            x[3 % len] = f32::NAN;
            x[(7 * channels / 2) % len] = f32::INFINITY;
            let scale: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32 * 0.1).collect();
            let shift: Vec<f32> = (0..channels).map(|c| c as f32 * -0.05).collect();
            for act in [None, Some(Activation::Relu), Some(Activation::Clip(-0.5, 1.5)), Some(Activation::Sigmoid), Some(Activation::LeakyRelu(0.1))] {
                let mut out = vec![0.0; x.len()];
                scale_shift_then(act, &scale, &shift, &x, &mut out);
                let mut biased = x.clone();
                bias_then(act, &shift, &mut biased);
                for (i, &v) in x.iter().enumerate() {
                    let c = i % channels;
                    let mut want = [v * scale[c] + shift[c], v + shift[c]];
                    apply(act, &mut want);
                    for (got, want, what) in [(out[i], want[0], "scale-shift"), (biased[i], want[1], "bias")] {
                        assert!(got == want || (got.is_nan() && want.is_nan()), "{what} {act:?} channels {channels} at {i}: {got} vs {want}");
                    }
                }
            }
        }
    }
}
