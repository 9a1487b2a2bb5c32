//! Folds an inference-mode BatchNormalization into the Conv that feeds it.
//!
//! BN after a conv is a per-output-channel affine map, so it can live in the conv's weights and
//! bias: `s = scale / sqrt(var + eps)`, `W' = W * s[m]`, `b' = (b - mean) * s + beta`. That
//! removes four broadcast passes over the feature map per request.

use crate::engine::LoadError;
use crate::proto::onnx::GraphProto;

use super::graph::{attr, float_initializer, put_float_initializer, reader_counts};

pub(super) fn fold_into_conv(graph: &mut GraphProto) -> Result<(), LoadError> {
    let mut index = 0;
    while index < graph.node.len() {
        if graph.node[index].op_type == "BatchNormalization" {
            if let Some(conv) = foldable(graph, index) {
                fold(graph, conv, index);
                graph.node.remove(index);
                continue;
            }
        }
        index += 1;
    }
    Ok(())
}

/// The index of the Conv whose only reader is the BN at `bn`, if every tensor involved is a
/// float32 initializer of the expected size.
fn foldable(graph: &GraphProto, bn: usize) -> Option<usize> {
    let node = &graph.node[bn];
    let training = attr(node, "training_mode").is_some_and(|a| a.i != 0);
    if training || node.input.len() < 5 || node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return None;
    }
    let conv = graph.node.iter().position(|n| n.op_type == "Conv" && n.output.first() == node.input.first())?;
    let conv_node = &graph.node[conv];
    if reader_counts(graph).get(&node.input[0]).copied() != Some(1) || conv_node.input.len() < 2 {
        return None;
    }
    let (w_dims, _) = float_initializer(graph, &conv_node.input[1])?;
    let channels = *w_dims.first()?;
    let per_channel = |name: &str| float_initializer(graph, name).filter(|(d, _)| d.as_slice() == [channels]).map(|_| ());
    for name in &node.input[1..5] {
        per_channel(name)?;
    }
    if let Some(bias) = conv_node.input.get(2).filter(|b| !b.is_empty()) {
        per_channel(bias)?;
    }
    Some(conv)
}

fn fold(graph: &mut GraphProto, conv: usize, bn: usize) {
    let bn_node = graph.node[bn].clone();
    let eps = attr(&bn_node, "epsilon").map_or(1e-5, |a| a.f);
    let get = |name: &str| float_initializer(graph, name).map(|(_, v)| v).unwrap_or_default();
    let (scale, beta, mean, var) = (get(&bn_node.input[1]), get(&bn_node.input[2]), get(&bn_node.input[3]), get(&bn_node.input[4]));
    let conv_node = &graph.node[conv];
    let Some((w_dims, mut w)) = float_initializer(graph, &conv_node.input[1]) else { return };
    let channels = w_dims[0];
    let mut bias = match conv_node.input.get(2).filter(|b| !b.is_empty()) {
        Some(name) => get(name),
        None => vec![0.0; channels],
    };
    let per_out = w.len() / channels.max(1);
    for m in 0..channels {
        let s = scale[m] / (var[m] + eps).sqrt();
        w[m * per_out..(m + 1) * per_out].iter_mut().for_each(|x| *x *= s);
        bias[m] = (bias[m] - mean[m]) * s + beta[m];
    }
    let out = bn_node.output[0].clone();
    let (w_name, b_name) = (format!("{out}__folded_w"), format!("{out}__folded_b"));
    put_float_initializer(graph, &w_name, &w_dims, &w);
    put_float_initializer(graph, &b_name, &[channels], &bias);
    let conv_node = &mut graph.node[conv];
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
