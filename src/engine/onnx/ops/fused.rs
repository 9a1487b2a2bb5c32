//! Activations fused into Conv and Gemm by a graph pass. The pass records them as private node
//! attributes, so a fused node is still an ordinary NodeProto and this convention is the whole
//! contract between the pass and the kernels.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::onnx::attrs::NodeCtx;

use super::OpError;

pub(crate) use crate::engine::onnx::passes::{EXPAND_ACTIVATION, EXPAND_ALPHA, EXPAND_BETA, FUSED_ACTIVATION, FUSED_ALPHA, FUSED_BETA, FUSED_MAX_POOL, PROJECT_ACTIVATION, PROJECT_ALPHA, PROJECT_BETA};

/// The same activations the CPU kernels apply in their epilogues; ops that run on candle's own
/// kernels (any device) apply them as tensor ops.
pub(crate) use crate::engine::kernels::Activation;

/// The activation the fusion pass folded into this node, if any.
pub(crate) fn from_node(ctx: &NodeCtx<'_>) -> Result<Option<Activation>, LoadError> {
    named(ctx, [FUSED_ACTIVATION, FUSED_ALPHA, FUSED_BETA])
}

/// The activation of the 1x1 conv joined in front of this depthwise conv, if any.
pub(crate) fn expansion_from_node(ctx: &NodeCtx<'_>) -> Result<Option<Activation>, LoadError> {
    named(ctx, [EXPAND_ACTIVATION, EXPAND_ALPHA, EXPAND_BETA])
}

/// The activation of the 1x1 conv joined after this depthwise conv, if any.
pub(crate) fn projection_from_node(ctx: &NodeCtx<'_>) -> Result<Option<Activation>, LoadError> {
    named(ctx, [PROJECT_ACTIVATION, PROJECT_ALPHA, PROJECT_BETA])
}

fn named(ctx: &NodeCtx<'_>, [activation, alpha, beta]: [&str; 3]) -> Result<Option<Activation>, LoadError> {
    if !ctx.has(activation) {
        return Ok(None);
    }
    let name = ctx.string(activation, "")?;
    Activation::from_onnx(&name, ctx.float(alpha, 0.01), ctx.float(beta, f32::INFINITY)).map(Some).ok_or_else(|| {
        LoadError::Invalid(format!("attribute '{activation}' has unsupported value '{name}' (Relu, LeakyRelu, Sigmoid, Tanh, Clip)"))
    })
}

/// Applies an optional fused activation with candle ops.
pub(super) fn activate(y: Tensor, activation: Option<Activation>) -> Result<Tensor, OpError> {
    Ok(match activation {
        None => y,
        Some(Activation::Relu) => y.relu()?,
        Some(Activation::LeakyRelu(alpha)) => (y.relu()? + y.minimum(0f64)?.affine(f64::from(alpha), 0.0)?)?,
        Some(Activation::Sigmoid) => candle_nn::ops::sigmoid(&y)?,
        Some(Activation::Tanh) => y.tanh()?,
        Some(Activation::Clip(lo, hi)) => y.clamp(lo, hi)?,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use crate::engine::onnx::attrs::NodeCtx;
    use crate::proto::onnx::attribute_proto::AttributeType;
    use crate::proto::onnx::{AttributeProto, NodeProto};

    use super::super::{Op, lookup};
    use super::{FUSED_ACTIVATION, FUSED_ALPHA};

    fn string_attr(name: &str, value: &str) -> AttributeProto {
        AttributeProto { name: name.into(), s: value.as_bytes().to_vec(), r#type: AttributeType::String as i32, ..Default::default() }
    }

    fn float_attr(name: &str, value: f32) -> AttributeProto {
        AttributeProto { name: name.into(), f: value, r#type: AttributeType::Float as i32, ..Default::default() }
    }

    fn build(op: &str, attributes: Vec<AttributeProto>) -> Result<Box<dyn Op>, crate::engine::LoadError> {
        let node = NodeProto { op_type: op.into(), name: "n".into(), attribute: attributes, ..Default::default() };
        let ctx = NodeCtx { node: &node, opset: 17, device: &Device::Cpu, implicit: &[] };
        let builder = lookup(op).expect("op is registered");
        builder(&ctx)
    }

    fn run(op: &dyn Op, inputs: &[&Tensor]) -> Vec<f32> {
        let args: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
        let out = op.run(&args).expect("op runs");
        out[0].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 output")
    }

    /// Values on both sides of zero, so every activation's two regimes are exercised.
    fn inputs() -> (Tensor, Tensor, Tensor) {
        let x = Tensor::new(&[[[[0.5f32, -1.0, 2.0], [-0.5, 1.5, -2.0], [1.0, -1.5, 0.25]]]], &Device::Cpu).expect("x");
        let w = Tensor::new(&[[[[1.0f32, -1.0], [0.5, 2.0]]], [[[-1.0f32, 0.5], [1.5, -0.5]]]], &Device::Cpu).expect("w");
        let b = Tensor::new(&[0.1f32, -0.2], &Device::Cpu).expect("b");
        (x, w, b)
    }

    fn expect(plain: &[f32], activation: &str, alpha: f32) -> Vec<f32> {
        plain
            .iter()
            .map(|&v| match activation {
                "Relu" => v.max(0.0),
                "LeakyRelu" if v < 0.0 => v * alpha,
                "LeakyRelu" => v,
                "Sigmoid" => 1.0 / (1.0 + (-v).exp()),
                "Tanh" => v.tanh(),
                other => panic!("no reference for {other}"),
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn conv_applies_each_fused_activation() {
        let (x, w, b) = inputs();
        let plain = run(build("Conv", vec![]).expect("plain conv").as_ref(), &[&x, &w, &b]);
        assert!(plain.iter().any(|&v| v < 0.0) && plain.iter().any(|&v| v > 0.0), "test data covers both signs");
        for (activation, alpha) in [("Relu", 0.01), ("LeakyRelu", 0.2), ("Sigmoid", 0.01), ("Tanh", 0.01)] {
            let mut attributes = vec![string_attr(FUSED_ACTIVATION, activation)];
            if activation == "LeakyRelu" {
                attributes.push(float_attr(FUSED_ALPHA, alpha));
            }
            let fused = build("Conv", attributes).expect("fused conv");
            assert_close(&run(fused.as_ref(), &[&x, &w, &b]), &expect(&plain, activation, alpha));
        }
    }

    #[test]
    fn gemm_applies_fused_activation_with_default_alpha() {
        let a = Tensor::new(&[[1.0f32, -2.0, 0.5], [-1.0, 0.25, 3.0]], &Device::Cpu).expect("a");
        let b = Tensor::new(&[[0.5f32, -1.0], [1.0, 0.5], [-0.25, 2.0]], &Device::Cpu).expect("b");
        let c = Tensor::new(&[0.1f32, -0.3], &Device::Cpu).expect("c");
        let plain = run(build("Gemm", vec![]).expect("plain gemm").as_ref(), &[&a, &b, &c]);
        assert!(plain.iter().any(|&v| v < 0.0));
        // No _fused_alpha: LeakyRelu's own default slope, 0.01.
        let leaky = build("Gemm", vec![string_attr(FUSED_ACTIVATION, "LeakyRelu")]).expect("fused gemm");
        assert_close(&run(leaky.as_ref(), &[&a, &b, &c]), &expect(&plain, "LeakyRelu", 0.01));
        let relu = build("Gemm", vec![string_attr(FUSED_ACTIVATION, "Relu")]).expect("fused gemm");
        assert_close(&run(relu.as_ref(), &[&a, &b, &c]), &expect(&plain, "Relu", 0.0));
    }

    #[test]
    fn unknown_fused_activation_is_a_load_error_naming_the_attribute() {
        let err = build("Conv", vec![string_attr(FUSED_ACTIVATION, "Swish")]).err().expect("rejected");
        let message = err.to_string();
        assert!(message.contains(FUSED_ACTIVATION) && message.contains("Swish"), "{message}");
    }
}
