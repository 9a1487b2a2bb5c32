//! Recognises ShuffleNet's channel shuffle, `Reshape [N, g, C/g, H, W] -> Transpose
//! [0, 2, 1, 3, 4] -> Reshape [N, C, H, W]`, and replaces it with one internal op.
//!
//! Written that way the shuffle names NCHW axes in rank 5, which no layout rule can follow, so
//! every shuffle would cost a transpose out of NHWC and one back. As one op it is a
//! permutation of the channel axis, which reads the same in NHWC (`layout::follow`).

use crate::proto::onnx::{GraphProto, NodeProto};

use super::graph::{attr, constant_ints, graph_outputs, int_attr, reader_counts};

/// Internal op: `group` attribute, and `channels_last = 1` once the layout pass moved it.
pub(crate) const CHANNEL_SHUFFLE: &str = "_ChannelShuffle";

pub(super) fn channel_shuffles(graph: &mut GraphProto) {
    while let Some((first, transpose, last, group)) = find(graph) {
        let node = NodeProto {
            name: graph.node[first].name.clone(),
            op_type: CHANNEL_SHUFFLE.into(),
            input: vec![graph.node[first].input[0].clone()],
            output: vec![graph.node[last].output[0].clone()],
            attribute: vec![int_attr("group", group)],
            ..Default::default()
        };
        graph.node[last] = node;
        // `first < transpose < last` in topological order
        graph.node.remove(transpose);
        graph.node.remove(first);
    }
}

fn find(graph: &GraphProto) -> Option<(usize, usize, usize, i64)> {
    let readers = reader_counts(graph);
    let outputs = graph_outputs(graph);
    let only_reader = |value: &str, op: &str| -> Option<usize> {
        if readers.get(value).copied() != Some(1) || outputs.contains(value) {
            return None;
        }
        graph.node.iter().position(|n| n.op_type == op && n.domain.is_empty() && n.input.first().map(String::as_str) == Some(value))
    };
    graph.node.iter().enumerate().find_map(|(first, node)| {
        if node.op_type != "Reshape" || !node.domain.is_empty() || node.input.len() != 2 {
            return None;
        }
        let split = constant_ints(graph, &node.input[1])?;
        let [_, g, per, h, w] = split[..] else { return None };
        let transpose = only_reader(&node.output[0], "Transpose")?;
        if attr(&graph.node[transpose], "perm")?.ints != [0, 2, 1, 3, 4] {
            return None;
        }
        let last = only_reader(&graph.node[transpose].output[0], "Reshape")?;
        let merged = constant_ints(graph, graph.node[last].input.get(1)?)?;
        let [_, c, h2, w2] = merged[..] else { return None };
        let spatial_kept = h2 == h && w2 == w && h > 0 && w > 0;
        (g > 0 && per > 0 && c == g * per && spatial_kept && attr(node, "allowzero").is_none_or(|a| a.i == 0)).then_some((first, transpose, last, g))
    })
}
