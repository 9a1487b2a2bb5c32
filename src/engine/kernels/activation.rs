//! Activations fused into the kernel that produced the values, so they run while the output
//! chunk is still in cache instead of as another pass over memory.

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Activation {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
}

impl Activation {
    /// The ONNX op an activation node must have for the fusion pass to absorb it.
    pub(crate) fn from_onnx(op_type: &str, alpha: f32) -> Option<Self> {
        Some(match op_type {
            "Relu" => Self::Relu,
            "LeakyRelu" => Self::LeakyRelu(alpha),
            "Sigmoid" => Self::Sigmoid,
            "Tanh" => Self::Tanh,
            _ => return None,
        })
    }

    pub(crate) fn apply(self, values: &mut [f32]) {
        match self {
            Self::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Self::LeakyRelu(alpha) => values.iter_mut().for_each(|v| *v = if *v < 0.0 { *v * alpha } else { *v }),
            Self::Sigmoid => values.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Self::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
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
        Some(other) => {
            each(bias, values, |x| x);
            other.apply(values);
        }
    }
}
