//! Fuses a residual Add into the NHWC conv that feeds it: `conv(x) + shortcut` becomes the
//! conv with `shortcut` as a fourth input, added in the conv's epilogue while the output tile
//! is still in cache. ResNet-style blocks end in Add then Relu; once the Add is inside the conv,
//! the activation pass fuses the Relu too, so a block's tail is no longer two passes over the
//! feature map.
//!
//! The fused node takes the Add's place in the node order, because the shortcut may be computed
//! after the conv (a projection shortcut usually is).

use crate::proto::onnx::GraphProto;

use super::graph::{FUSED_ACTIVATION, graph_outputs, initializer, reader_counts};
use super::layout::NHWC_CONV;

pub(super) fn into_conv(graph: &mut GraphProto) {
    while let Some((conv, add, shortcut)) = find(graph) {
        let mut fused = graph.node[conv].clone();
        fused.input.push(shortcut);
        fused.output[0] = graph.node[add].output[0].clone();
        graph.node[add] = fused;
        graph.node.remove(conv);
    }
}

/// `(conv, add, shortcut)`: an Add (or two-input Sum) of an NHWC conv's output, read by nothing
/// else, and a computed value (a constant is a bias, which the bias pass handles).
fn find(graph: &GraphProto) -> Option<(usize, usize, String)> {
    let readers = reader_counts(graph);
    let outputs = graph_outputs(graph);
    graph.node.iter().enumerate().find_map(|(add, node)| {
        if !matches!(node.op_type.as_str(), "Add" | "Sum") || node.input.len() != 2 || !node.domain.is_empty() || node.output.len() != 1 {
            return None;
        }
        (0..2).find_map(|side| {
            let (value, shortcut) = (&node.input[side], &node.input[1 - side]);
            if value == shortcut || initializer(graph, shortcut).is_some() || readers.get(value).copied() != Some(1) || outputs.contains(value) {
                return None;
            }
            let conv = graph.node[..add].iter().position(|n| n.op_type == NHWC_CONV && n.output.first() == Some(value))?;
            let c = &graph.node[conv];
            let plain = c.input.len() == 3 && !c.attribute.iter().any(|a| a.name == FUSED_ACTIVATION);
            plain.then(|| (conv, add, shortcut.clone()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::NodeProto;

    fn node(op: &str, input: &[&str], output: &str) -> NodeProto {
        NodeProto { op_type: op.into(), name: output.into(), input: input.iter().map(|s| s.to_string()).collect(), output: vec![output.into()], ..Default::default() }
    }

    #[test]
    fn the_add_becomes_the_conv_at_the_adds_place() {
        let nodes = vec![
            node(NHWC_CONV, &["x", "w", "b"], "main"),
            node(NHWC_CONV, &["x", "w2", "b2"], "projection"),
            node("Add", &["projection", "main"], "sum"),
            node("Relu", &["sum"], "y"),
        ];
        let mut graph = GraphProto { node: nodes, ..Default::default() };
        into_conv(&mut graph);
        let shape: Vec<(&str, Vec<&str>, &str)> =
            graph.node.iter().map(|n| (n.op_type.as_str(), n.input.iter().map(String::as_str).collect(), n.output[0].as_str())).collect();
        // the projection conv is read only by the Add, so it absorbs it and reads `main`
        assert_eq!(
            shape,
            [(NHWC_CONV, vec!["x", "w", "b"], "main"), (NHWC_CONV, vec!["x", "w2", "b2", "main"], "sum"), ("Relu", vec!["sum"], "y")]
        );
    }
}
