//! Folds a per-channel constant Add after a Conv into the Conv's bias, so the conv kernels add
//! it in their epilogue (and an activation after it fuses too) instead of a pass over the
//! tensor. TensorFlow writes a conv's bias as a separate BiasAdd, in NHWC: a SavedModel's
//! Conv2D arrives as Conv, Transpose to NHWC, Add of a `[C]` bias. An NCHW graph's Add of a
//! `[C, 1, 1]` bias right after the Conv folds the same way.

use crate::proto::onnx::GraphProto;

use super::graph::{attr, float_initializer, put_float_initializer, reader_counts};

const TO_NHWC: [i64; 4] = [0, 2, 3, 1];

pub(super) fn into_conv(graph: &mut GraphProto) {
    while let Some(fold) = find(graph) {
        apply(graph, fold);
    }
}

struct Fold {
    add: usize,
    conv: usize,
    /// The Transpose to NHWC between them, if any.
    transpose: Option<usize>,
    bias: Vec<f32>,
}

fn find(graph: &GraphProto) -> Option<Fold> {
    let readers = reader_counts(graph);
    let single = |name: &str| readers.get(name).copied() == Some(1);
    let producer = |name: &str| graph.node.iter().position(|n| n.output.first().map(String::as_str) == Some(name));
    graph.node.iter().enumerate().find_map(|(add, node)| {
        if node.op_type != "Add" || !node.domain.is_empty() || node.input.len() != 2 {
            return None;
        }
        (0..2).find_map(|side| {
            let (value, constant) = (&node.input[side], &node.input[1 - side]);
            if !single(value) {
                return None;
            }
            let mut at = producer(value)?;
            let mut transpose = None;
            let source = &graph.node[at];
            if source.op_type == "Transpose" && attr(source, "perm").is_some_and(|p| p.ints == TO_NHWC) && single(&source.input[0]) {
                transpose = Some(at);
                at = producer(&source.input[0])?;
            }
            let conv = &graph.node[at];
            if conv.op_type != "Conv" || !conv.domain.is_empty() || conv.output.len() != 1 {
                return None;
            }
            let (weights, _) = float_initializer(graph, conv.input.get(1)?)?;
            let channels = *weights.first()?;
            let (dims, values) = float_initializer(graph, constant)?;
            // Per channel: [C] or [1, 1, 1, C] after the NHWC transpose; [C, 1, 1] or
            // [1, C, 1, 1] on the NCHW output.
            let per_channel = match transpose {
                Some(_) => dims.last() == Some(&channels) && dims.len() <= 4 && dims.iter().rev().skip(1).all(|&d| d == 1),
                None => matches!(dims.as_slice(), [c, 1, 1] | [1, c, 1, 1] if *c == channels),
            };
            if !per_channel || values.len() != channels {
                return None;
            }
            let existing = match conv.input.get(2).filter(|b| !b.is_empty()) {
                Some(b) => float_initializer(graph, b)?.1,
                None => vec![0.0; channels],
            };
            let bias = existing.iter().zip(&values).map(|(a, b)| a + b).collect();
            Some(Fold { add, conv: at, transpose, bias })
        })
    })
}

fn apply(graph: &mut GraphProto, fold: Fold) {
    let add = graph.node[fold.add].clone();
    let bias_name = format!("{}__conv_bias", add.output[0]);
    put_float_initializer(graph, &bias_name, &[fold.bias.len()], &fold.bias);
    let conv = &mut graph.node[fold.conv];
    conv.input.resize(3, String::new());
    conv.input[2] = bias_name;
    // The Add's output is now the last node's before it.
    let last = fold.transpose.unwrap_or(fold.conv);
    graph.node[last].output[0].clone_from(&add.output[0]);
    graph.node.remove(fold.add);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::attribute_proto::AttributeType;
    use crate::proto::onnx::{AttributeProto, NodeProto};

    fn node(op: &str, input: &[&str], output: &str) -> NodeProto {
        NodeProto { op_type: op.into(), name: output.into(), input: input.iter().map(|s| s.to_string()).collect(), output: vec![output.into()], ..Default::default() }
    }

    #[test]
    fn a_bias_add_after_the_nhwc_transpose_becomes_the_conv_bias() {
        let mut graph = GraphProto::default();
        put_float_initializer(&mut graph, "w", &[2, 1, 1, 1], &[1.0, 1.0]);
        put_float_initializer(&mut graph, "b", &[2], &[0.5, -0.5]);
        let mut transpose = node("Transpose", &["c"], "t");
        transpose.attribute.push(AttributeProto { name: "perm".into(), r#type: AttributeType::Ints as i32, ints: TO_NHWC.to_vec(), ..Default::default() });
        graph.node = vec![node("Conv", &["x", "w"], "c"), transpose, node("Add", &["t", "b"], "y"), node("Relu", &["y"], "z")];
        into_conv(&mut graph);
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "Transpose", "Relu"]);
        assert_eq!(graph.node[1].output[0], "y");
        let (_, bias) = float_initializer(&graph, &graph.node[0].input[2]).expect("bias");
        assert_eq!(bias, [0.5, -0.5]);
    }

    #[test]
    fn an_add_another_node_also_reads_is_left_alone() {
        let mut graph = GraphProto::default();
        put_float_initializer(&mut graph, "w", &[2, 1, 1, 1], &[1.0, 1.0]);
        put_float_initializer(&mut graph, "b", &[2, 1, 1], &[0.5, -0.5]);
        graph.node = vec![node("Conv", &["x", "w"], "c"), node("Add", &["c", "b"], "y"), node("Relu", &["c"], "z")];
        into_conv(&mut graph);
        assert_eq!(graph.node.len(), 3, "the conv's output is read twice");
    }
}
