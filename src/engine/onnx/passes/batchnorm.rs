//! Folds an inference-mode BatchNormalization, or a per-channel constant Mul, into the Conv
//! that feeds it.
//!
//! Both are a per-output-channel affine map after the conv, so they can live in the conv's
//! weights and bias: `W' = W * s[m]`, `b' = b * s[m] + t[m]`, with `s = scale / sqrt(var + eps)`
//! and `t = beta - mean * s` for BN, `s = k` and `t = 0` for a Mul by `k`. Caffe2-era exports
//! write BN as BatchNormalization followed by its own Mul and Add; the Add then folds in the
//! bias pass. Each fold removes a broadcast pass over the feature map per request.

use crate::engine::LoadError;
use crate::proto::onnx::{GraphProto, NodeProto};

use super::graph::{attr, float_dims, float_initializer, float_initializer_to_rewrite, put_float_initializer, reader_counts};

pub(super) fn fold_into_conv(graph: &mut GraphProto) -> Result<(), LoadError> {
    let mut index = 0;
    while index < graph.node.len() {
        if let Some(fold_at) = foldable(graph, index) {
            fold(graph, &fold_at, index);
            graph.node.remove(index);
            continue;
        }
        index += 1;
    }
    Ok(())
}

/// A fold [`foldable`] found: the conv, the per-channel map, and whether the conv is the only
/// reader of its weights and of its bias (then the originals go as the folded ones are made).
struct Fold {
    conv: usize,
    scale: Vec<f32>,
    shift: Vec<f32>,
    sole_weights: bool,
    sole_bias: bool,
}

/// The Conv read only by node `at`, and the per-channel `(scale, shift)` that node applies to
/// its output, if every tensor involved is a float32 initializer of the expected size.
fn foldable(graph: &GraphProto, at: usize) -> Option<Fold> {
    let node = &graph.node[at];
    let candidate = matches!(node.op_type.as_str(), "BatchNormalization" | "Mul");
    if !candidate || !node.domain.is_empty() || node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return None;
    }
    // counted only for candidates: the walk over the whole graph is the costly part at load
    let readers = reader_counts(graph);
    let sole = |name: Option<&String>| name.is_some_and(|n| readers.get(n).copied() == Some(1));
    let conv_of = |value: &str| -> Option<(usize, usize)> {
        let conv = graph.node.iter().position(|n| n.op_type == "Conv" && n.domain.is_empty() && n.output.first().map(String::as_str) == Some(value))?;
        let conv_node = &graph.node[conv];
        if readers.get(value).copied() != Some(1) || conv_node.input.len() < 2 {
            return None;
        }
        let channels = *float_dims(graph, &conv_node.input[1])?.first()?;
        if let Some(bias) = conv_node.input.get(2).filter(|b| !b.is_empty()) {
            float_dims(graph, bias).filter(|d| d.as_slice() == [channels])?;
        }
        Some((conv, channels))
    };
    let (conv, scale, shift) = match node.op_type.as_str() {
        "BatchNormalization" => {
            let (conv, channels) = conv_of(&node.input[0])?;
            let (scale, shift) = inference_affine(graph, node).filter(|(scale, _)| scale.len() == channels)?;
            Some((conv, scale, shift))
        }
        "Mul" if node.input.len() == 2 => (0..2).find_map(|side| {
            let (conv, channels) = conv_of(&node.input[side])?;
            let (dims, k) = float_initializer(graph, &node.input[1 - side])?;
            // [C, 1, 1] or [1, C, 1, 1] lines up with NCHW's channel axis; one value is a scalar
            let mut d4 = vec![1usize; 4usize.saturating_sub(dims.len())];
            d4.extend(&dims);
            let per_channel = d4.len() == 4 && d4[0] == 1 && d4[2] == 1 && d4[3] == 1 && (d4[1] == channels || d4[1] == 1);
            if !per_channel {
                return None;
            }
            let scale = if k.len() == 1 { vec![k[0]; channels] } else { k };
            Some((conv, scale, vec![0.0; channels]))
        }),
        _ => None,
    }?;
    let conv_inputs = &graph.node[conv].input;
    Some(Fold { conv, scale, shift, sole_weights: sole(conv_inputs.get(1)), sole_bias: sole(conv_inputs.get(2)) })
}

/// An inference-mode BatchNormalization as the per-channel `(scale, shift)` it applies, if its
/// four parameters are 1-D float32 initializers of one length. The layout pass runs an unfolded
/// one as an NHWC scale-shift with the same values.
pub(super) fn inference_affine(graph: &GraphProto, node: &NodeProto) -> Option<(Vec<f32>, Vec<f32>)> {
    let training = attr(node, "training_mode").is_some_and(|a| a.i != 0);
    if training || node.input.len() < 5 {
        return None;
    }
    let param = |i: usize| float_initializer(graph, &node.input[i]).filter(|(d, _)| d.len() == 1).map(|(_, v)| v);
    let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    if [&beta, &mean, &var].iter().any(|p| p.len() != gamma.len()) {
        return None;
    }
    let eps = attr(node, "epsilon").map_or(1e-5, |a| a.f);
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
    let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Some((scale, shift))
}

fn fold(graph: &mut GraphProto, fold: &Fold, follower: usize) {
    let conv_inputs = graph.node[fold.conv].input.clone();
    let Some((w_dims, mut w)) = float_initializer_to_rewrite(graph, &conv_inputs[1], fold.sole_weights) else { return };
    let channels = w_dims[0];
    let mut bias = match conv_inputs.get(2).filter(|b| !b.is_empty()) {
        Some(name) => float_initializer_to_rewrite(graph, name, fold.sole_bias).map(|(_, v)| v).unwrap_or_default(),
        None => vec![0.0; channels],
    };
    let per_out = w.len() / channels.max(1);
    for m in 0..channels {
        w[m * per_out..(m + 1) * per_out].iter_mut().for_each(|x| *x *= fold.scale[m]);
        bias[m] = bias[m] * fold.scale[m] + fold.shift[m];
    }
    let out = graph.node[follower].output[0].clone();
    let (w_name, b_name) = (format!("{out}__folded_w"), format!("{out}__folded_b"));
    put_float_initializer(graph, &w_name, &w_dims, &w);
    put_float_initializer(graph, &b_name, &[channels], &bias);
    let conv_node = &mut graph.node[fold.conv];
    conv_node.input.truncate(1);
    conv_node.input.extend([w_name, b_name]);
    conv_node.output[0] = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::onnx::passes::graph::float_initializer;
    use crate::proto::onnx::NodeProto;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn folds_scale_shift_into_weights_and_bias() {
        let mut g = GraphProto {
            node: vec![node("Conv", &["x", "w"], &["c"]), node("BatchNormalization", &["c", "s", "b", "m", "v"], &["y"])],
            ..Default::default()
        };
        put_float_initializer(&mut g, "w", &[2, 1, 1, 1], &[1.0, 2.0]);
        put_float_initializer(&mut g, "s", &[2], &[2.0, 1.0]);
        put_float_initializer(&mut g, "b", &[2], &[0.5, -1.0]);
        put_float_initializer(&mut g, "m", &[2], &[1.0, 0.0]);
        put_float_initializer(&mut g, "v", &[2], &[4.0 - 1e-5, 1.0 - 1e-5]);
        fold_into_conv(&mut g).expect("fold");
        assert_eq!(g.node.len(), 1);
        assert_eq!(g.node[0].output, vec!["y"]);
        let (_, w) = float_initializer(&g, &g.node[0].input[1]).expect("w");
        let (_, b) = float_initializer(&g, &g.node[0].input[2]).expect("b");
        // channel 0: s = 2/2 = 1 -> w 1, b (0-1)*1+0.5; channel 1: s = 1 -> w 2, b -1
        assert!((w[0] - 1.0).abs() < 1e-6 && (w[1] - 2.0).abs() < 1e-6, "{w:?}");
        assert!((b[0] + 0.5).abs() < 1e-6 && (b[1] + 1.0).abs() < 1e-6, "{b:?}");
    }
}
