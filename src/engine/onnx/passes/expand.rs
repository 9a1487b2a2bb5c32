//! Joins a 1x1 conv to the depthwise conv that reads its output: MobileNet's inverted residual
//! blocks, where a 1x1 conv expands the channels six-fold and a 3x3 depthwise conv filters them.
//!
//! The expanded tensor is the largest of the block (MobileNetV2's first is 112x112x96, 4.8 MB
//! per image) and each of its values is read by nine taps and nothing else. Apart, the 1x1
//! conv writes it to memory and the depthwise conv reads it back: at batch 16 that traffic
//! made the pair memory-bound (a 77 MB write and read for the first block). Joined, the
//! depthwise conv computes the expanded rows it needs a band at a time into a per-thread
//! buffer that stays in L2, and the expanded tensor never exists as a whole.

use crate::proto::onnx::{GraphProto, NodeProto};

use super::graph::{EXPAND_ACTIVATION, EXPAND_ALPHA, EXPAND_BETA, FUSED_ACTIVATION, FUSED_ALPHA, FUSED_BETA, FUSED_MAX_POOL, attr, graph_outputs, initializer, reader_counts};
use super::layout::NHWC_CONV;

pub(super) fn into_depthwise(graph: &mut GraphProto) {
    while let Some((expand, depthwise)) = find(graph) {
        let e = graph.node.remove(expand);
        let d = &mut graph.node[depthwise - 1];
        d.input[0] = e.input[0].clone();
        d.input.extend([String::new(), e.input[1].clone(), e.input[2].clone()]);
        for (from, to) in [(FUSED_ACTIVATION, EXPAND_ACTIVATION), (FUSED_ALPHA, EXPAND_ALPHA), (FUSED_BETA, EXPAND_BETA)] {
            if let Some(a) = attr(&e, from) {
                d.attribute.push(crate::proto::onnx::AttributeProto { name: to.to_string(), ..a.clone() });
            }
        }
    }
}

/// `(expand, depthwise)`: a plain 1x1 conv (stride 1, no padding, one group, constant weights
/// and bias, no residual or pool) whose output only a depthwise conv without a residual or
/// pool reads, with as many channels as the 1x1 conv makes.
fn find(graph: &GraphProto) -> Option<(usize, usize)> {
    let readers = reader_counts(graph);
    let outputs = graph_outputs(graph);
    graph.node.iter().enumerate().find_map(|(depthwise, d)| {
        let channels = depthwise_channels(graph, d)?;
        let value = d.input.first()?;
        if readers.get(value).copied() != Some(1) || outputs.contains(value) {
            return None;
        }
        let expand = graph.node[..depthwise].iter().position(|n| n.op_type == NHWC_CONV && n.output.first() == Some(value))?;
        (pointwise_channels(graph, &graph.node[expand])? == channels).then_some((expand, depthwise))
    })
}

/// A depthwise NHWC conv's channel count: weights `[kh, kw, 1, C]` with `C` groups, a bias,
/// and no multiplier, residual, pool or expansion of its own.
fn depthwise_channels(graph: &GraphProto, d: &NodeProto) -> Option<usize> {
    if d.op_type != NHWC_CONV || d.input.len() != 3 || d.output.len() != 1 || attr(d, FUSED_MAX_POOL).is_some() {
        return None;
    }
    let w = initializer(graph, d.input.get(1)?)?;
    let groups = attr(d, "group").map_or(1, |a| a.i);
    match w.dims.as_slice() {
        &[_, _, 1, c] if c == groups && c > 1 => usize::try_from(c).ok(),
        _ => None,
    }
}

/// The output channels of a 1x1, stride-1, unpadded, single-group NHWC conv with constant
/// weights `[1, 1, in_c, C]` and bias, and no residual or pool.
fn pointwise_channels(graph: &GraphProto, e: &NodeProto) -> Option<usize> {
    if e.input.len() != 3 || e.output.len() != 1 || attr(e, FUSED_MAX_POOL).is_some() {
        return None;
    }
    let ones = |name: &str| attr(e, name).is_none_or(|a| a.ints.iter().all(|&v| v == 1));
    let zeros = attr(e, "pads").is_none_or(|a| a.ints.iter().all(|&v| v == 0));
    let auto_pad = attr(e, "auto_pad").is_none_or(|a| matches!(a.s.as_slice(), b"" | b"NOTSET" | b"VALID"));
    if !(ones("strides") && ones("dilations") && zeros && auto_pad && attr(e, "group").is_none_or(|a| a.i == 1)) {
        return None;
    }
    initializer(graph, &e.input[2])?;
    match initializer(graph, &e.input[1])?.dims.as_slice() {
        &[1, 1, _, c] => usize::try_from(c).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::{TensorProto, ValueInfoProto};
    use super::super::graph::{int_attr, ints_attr, string_attr};

    fn conv(input: &[&str], output: &str, group: i64) -> NodeProto {
        NodeProto {
            op_type: NHWC_CONV.into(),
            name: output.into(),
            input: input.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: vec![int_attr("group", group)],
            ..Default::default()
        }
    }

    fn weights(name: &str, dims: &[i64]) -> TensorProto {
        TensorProto { name: name.into(), dims: dims.to_vec(), data_type: 1, ..Default::default() }
    }

    /// x -> 1x1 conv (8 -> 48, ReLU6) -> 3x3 depthwise over 48 -> y
    fn block() -> GraphProto {
        let mut e = conv(&["x", "we", "be"], "e", 1);
        e.attribute.push(string_attr(FUSED_ACTIVATION, "Clip"));
        e.attribute.push(crate::proto::onnx::AttributeProto { name: FUSED_BETA.into(), f: 6.0, r#type: 1, ..Default::default() });
        GraphProto {
            node: vec![e, conv(&["e", "wd", "bd"], "y", 48)],
            initializer: vec![weights("we", &[1, 1, 8, 48]), weights("be", &[48]), weights("wd", &[3, 3, 1, 48]), weights("bd", &[48])],
            output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn a_pointwise_conv_joins_the_depthwise_conv_that_reads_it() {
        let mut g = block();
        into_depthwise(&mut g);
        assert_eq!(g.node.len(), 1);
        let d = &g.node[0];
        assert_eq!(d.input, ["x", "wd", "bd", "", "we", "be"]);
        assert_eq!(d.output, ["y"]);
        assert_eq!(attr(d, EXPAND_ACTIVATION).map(|a| a.s.as_slice()), Some(b"Clip".as_slice()));
        assert_eq!(attr(d, EXPAND_BETA).map(|a| a.f), Some(6.0));
        assert!(attr(d, FUSED_ACTIVATION).is_none(), "the depthwise conv had no activation of its own");
    }

    #[test]
    fn strided_padded_shared_or_mismatched_convs_stay_apart() {
        let apart = |change: &dyn Fn(&mut GraphProto)| {
            let mut g = block();
            change(&mut g);
            into_depthwise(&mut g);
            g.node.len() == 2
        };
        assert!(apart(&|g| g.node[0].attribute.push(ints_attr("strides", &[2, 2]))));
        assert!(apart(&|g| g.node[0].attribute.push(ints_attr("pads", &[1, 1, 1, 1]))));
        assert!(apart(&|g| g.initializer[0] = weights("we", &[3, 3, 8, 48])));
        // the expanded value read by something else too
        assert!(apart(&|g| g.output.push(ValueInfoProto { name: "e".into(), ..Default::default() })));
        // a channel count that differs, a grouped (not depthwise) second conv, a residual
        assert!(apart(&|g| g.initializer[2] = weights("wd", &[3, 3, 1, 32])));
        assert!(apart(&|g| g.initializer[2] = weights("wd", &[3, 3, 2, 48])));
        assert!(apart(&|g| g.node[1].input.push("r".into())));
        // weights computed per request
        assert!(apart(&|g| g.initializer.remove(0).name.clear()));
    }
}
