//! Folds a zero Pad into the Conv that reads it: Keras's `ZeroPadding2D` before a stride-2
//! conv (MobileNet, ResNet's stem) arrives as a Pad node, which would copy the whole feature
//! map once more per request, when the conv's own padding reads the same zeros for free.

use crate::proto::onnx::GraphProto;

use super::graph::{attr, constant_ints, float_initializer, graph_outputs, ints_attr, reader_counts};

pub(super) fn into_conv(graph: &mut GraphProto) {
    while let Some((pad, conv, spatial)) = find(graph) {
        let source = graph.node[pad].input[0].clone();
        let c = &mut graph.node[conv];
        let mut pads = attr(c, "pads").map_or(vec![0; 4], |a| a.ints.clone());
        for (p, extra) in pads.iter_mut().zip(spatial) {
            *p += extra;
        }
        c.attribute.retain(|a| a.name != "pads");
        c.attribute.push(ints_attr("pads", &pads));
        c.input[0] = source;
        graph.node.remove(pad);
    }
}

/// `(pad, conv, [top, left, bottom, right])` for a constant-zero Pad of only the two spatial
/// axes of a 4-D value, read by nothing but a 2-D Conv with explicit padding.
fn find(graph: &GraphProto) -> Option<(usize, usize, [i64; 4])> {
    let readers = reader_counts(graph);
    let outputs = graph_outputs(graph);
    graph.node.iter().enumerate().find_map(|(pad, node)| {
        if node.op_type != "Pad" || !node.domain.is_empty() || node.output.len() != 1 {
            return None;
        }
        let constant_mode = attr(node, "mode").is_none_or(|m| m.s == b"constant");
        let zero = match node.input.get(2).filter(|v| !v.is_empty()) {
            Some(v) => float_initializer(graph, v).is_some_and(|(_, v)| v.iter().all(|&x| x == 0.0)),
            None => attr(node, "value").is_none_or(|a| a.f == 0.0),
        };
        let pads = match node.input.get(1).filter(|p| !p.is_empty()) {
            Some(p) => constant_ints(graph, p)?,
            None => attr(node, "pads")?.ints.clone(),
        };
        let [0, 0, t, l, 0, 0, b, r] = pads[..] else { return None };
        let out = &node.output[0];
        if !constant_mode || !zero || node.input.len() > 3 || [t, l, b, r].iter().any(|&p| p < 0) || readers.get(out).copied() != Some(1) || outputs.contains(out) {
            return None;
        }
        let conv = graph.node.iter().position(|n| n.op_type == "Conv" && n.domain.is_empty() && n.input.first() == Some(out))?;
        let c = &graph.node[conv];
        let explicit = attr(c, "auto_pad").is_none_or(|a| a.s.is_empty() || a.s == b"NOTSET");
        let two_d = attr(c, "pads").is_none_or(|a| a.ints.len() == 4) && attr(c, "kernel_shape").is_none_or(|a| a.ints.len() == 2);
        (explicit && two_d).then_some((pad, conv, [t, l, b, r]))
    })
}
