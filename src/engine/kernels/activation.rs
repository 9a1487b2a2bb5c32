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
/// one pass. The match sits outside the loops so each arm compiles to its own vector loop.
pub(crate) fn bias_then(activation: Option<Activation>, bias: &[f32], values: &mut [f32]) {
    fn each(bias: &[f32], values: &mut [f32], f: impl Fn(f32) -> f32) {
        for row in values.chunks_exact_mut(bias.len().max(1)) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v = f(*v + b));
        }
    }
    match activation {
        None => each(bias, values, |x| x),
        Some(Activation::Relu) => each(bias, values, |x| x.max(0.0)),
        Some(Activation::LeakyRelu(alpha)) => each(bias, values, |x| if x < 0.0 { x * alpha } else { x }),
        Some(Activation::Clip(lo, hi)) => each(bias, values, |x| x.max(lo).min(hi)),
        Some(other) => {
            each(bias, values, |x| x);
            other.apply(values);
        }
    }
}

/// `out = act(x * scale + shift)` per channel, rows of `scale.len()` channels: an inference
/// BatchNormalization that no conv absorbed, in one pass instead of four broadcasts.
pub(crate) fn scale_shift_then(activation: Option<Activation>, scale: &[f32], shift: &[f32], x: &[f32], out: &mut [f32]) {
    fn each(scale: &[f32], shift: &[f32], x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
        let c = scale.len().max(1);
        for (row, src) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for (((o, &v), &s), &b) in row.iter_mut().zip(src).zip(scale).zip(shift) {
                *o = f(v * s + b);
            }
        }
    }
    match activation {
        None => each(scale, shift, x, out, |v| v),
        Some(Activation::Relu) => each(scale, shift, x, out, |v| v.max(0.0)),
        Some(Activation::Clip(lo, hi)) => each(scale, shift, x, out, |v| v.max(lo).min(hi)),
        Some(other) => {
            each(scale, shift, x, out, |v| v);
            other.apply(out);
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
