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
