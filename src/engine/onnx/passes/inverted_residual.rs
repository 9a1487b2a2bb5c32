//! Joins the 1x1 convs around a depthwise conv to it: MobileNet's inverted residual blocks,
//! where a 1x1 conv expands the channels six-fold, a 3x3 depthwise conv filters them and a 1x1
//! conv projects them back, with the block's input added as a shortcut.
//!
//! The expanded tensor and the depthwise output are the block's largest (MobileNetV2's first
//! expanded one is 112x112x96, 4.8 MB per image), and each is read by one conv and nothing
//! else. Apart, every conv writes its output to memory and the next reads it back: at batch 16
//! that traffic made the block memory-bound. Joined, the block runs a band of rows at a time
//! through buffers that stay in L2 (`kernels/inverted_residual.rs`), and neither tensor ever
//! exists as a whole.
//!
//! The joined node is the depthwise `_NhwcConv` with inputs `[x, W, B, shortcut, W_expand,
//! B_expand, W_project, B_project]` (empty names where a part is absent) and its output the
//! projection's.

use std::collections::HashMap;

use crate::proto::onnx::{AttributeProto, GraphProto, NodeProto};

use super::graph::{EXPAND_ACTIVATION, EXPAND_ALPHA, EXPAND_BETA, FUSED_ACTIVATION, FUSED_ALPHA, FUSED_BETA, FUSED_MAX_POOL, PROJECT_ACTIVATION, PROJECT_ALPHA, PROJECT_BETA, attr, graph_outputs, initializer, reader_counts};
use super::layout::NHWC_CONV;

/// Input slots of the joined node.
const SHORTCUT: usize = 3;
const EXPAND_WEIGHTS: usize = 4;
const PROJECT_WEIGHTS: usize = 6;

pub(super) fn join_expansions(graph: &mut GraphProto) {
    while let Some((expand, depthwise)) = find_expansion(graph) {
        let e = graph.node.remove(expand);
        let d = &mut graph.node[depthwise - 1];
        d.input[0] = e.input[0].clone();
        d.input.resize(EXPAND_WEIGHTS, String::new());
        d.input.extend([e.input[1].clone(), e.input[2].clone()]);
        move_activation(&e, d, [EXPAND_ACTIVATION, EXPAND_ALPHA, EXPAND_BETA]);
    }
}

pub(super) fn join_projections(graph: &mut GraphProto) {
    while let Some((depthwise, project)) = find_projection(graph) {
        let p = graph.node.remove(project);
        let d = &mut graph.node[depthwise];
        d.output[0] = p.output[0].clone();
        d.input.resize(PROJECT_WEIGHTS, String::new());
        d.input[SHORTCUT] = p.input.get(SHORTCUT).cloned().unwrap_or_default();
        d.input.extend([p.input[1].clone(), p.input[2].clone()]);
        move_activation(&p, d, [PROJECT_ACTIVATION, PROJECT_ALPHA, PROJECT_BETA]);
    }
}

/// `from`'s fused activation, as the attributes `names` of `to`.
fn move_activation(from: &NodeProto, to: &mut NodeProto, names: [&str; 3]) {
    for (old, new) in [FUSED_ACTIVATION, FUSED_ALPHA, FUSED_BETA].into_iter().zip(names) {
        if let Some(a) = attr(from, old) {
            to.attribute.push(AttributeProto { name: new.to_string(), ..a.clone() });
        }
    }
}

/// `(expand, depthwise)`: a plain 1x1 conv (see [`pointwise`]) without a shortcut whose
/// output only a depthwise conv with nothing joined yet reads, with as many channels as the
/// 1x1 conv makes.
fn find_expansion(graph: &GraphProto) -> Option<(usize, usize)> {
    let readers = reader_counts(graph);
    let outputs = graph_outputs(graph);
    graph.node.iter().enumerate().find_map(|(depthwise, d)| {
        if d.input.len() != 3 {
            return None;
        }
        let channels = depthwise_channels(graph, d)?;
        let value = d.input.first()?;
        if readers.get(value).copied() != Some(1) || outputs.contains(value) {
            return None;
        }
        let expand = graph.node[..depthwise].iter().position(|n| n.op_type == NHWC_CONV && n.output.first() == Some(value))?;
        let e = &graph.node[expand];
        (e.input.len() == 3 && pointwise(graph, e)?[1] == channels).then_some((expand, depthwise))
    })
}

/// `(depthwise, project)`: a depthwise conv (expanded or not, no projection yet) whose output
/// only a plain 1x1 conv over its channels reads; the 1x1 conv's shortcut, if any, must be
/// computed before the depthwise conv runs.
fn find_projection(graph: &GraphProto) -> Option<(usize, usize)> {
    let readers = reader_counts(graph);
    let outputs = graph_outputs(graph);
    let produced_at: HashMap<&str, usize> = graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    graph.node.iter().enumerate().find_map(|(depthwise, d)| {
        if !(d.input.len() == 3 || d.input.len() == PROJECT_WEIGHTS && d.input[SHORTCUT].is_empty()) {
            return None;
        }
        let channels = depthwise_channels(graph, d)?;
        let value = d.output.first()?;
        if readers.get(value).copied() != Some(1) || outputs.contains(value) {
            return None;
        }
        let project = depthwise + 1 + graph.node[depthwise + 1..].iter().position(|n| n.op_type == NHWC_CONV && n.input.first() == Some(value))?;
        let p = &graph.node[project];
        let [in_c, _] = pointwise(graph, p)?;
        let shortcut_ready = p.input.get(SHORTCUT).is_none_or(|s| s.is_empty() || produced_at.get(s.as_str()).is_none_or(|&at| at < depthwise));
        (in_c == channels && p.input.len() <= 4 && shortcut_ready).then_some((depthwise, project))
    })
}

/// A depthwise NHWC conv's channel count: weights `[kh, kw, 1, C]` with `C` groups, a bias, and
/// no channel multiplier or pool.
fn depthwise_channels(graph: &GraphProto, d: &NodeProto) -> Option<usize> {
    if d.op_type != NHWC_CONV || d.input.len() < 3 || d.input[2].is_empty() || d.output.len() != 1 || attr(d, FUSED_MAX_POOL).is_some() {
        return None;
    }
    let w = initializer(graph, d.input.get(1)?)?;
    let groups = attr(d, "group").map_or(1, |a| a.i);
    match w.dims.as_slice() {
        &[_, _, 1, c] if c == groups && c > 1 => usize::try_from(c).ok(),
        _ => None,
    }
}

/// `[in_c, out_c]` of a 1x1, stride-1, unpadded, single-group NHWC conv with constant weights
/// `[1, 1, in_c, out_c]` and bias and no pool (it may have a shortcut, input 3).
fn pointwise(graph: &GraphProto, e: &NodeProto) -> Option<[usize; 2]> {
    if !(3..=4).contains(&e.input.len()) || e.output.len() != 1 || attr(e, FUSED_MAX_POOL).is_some() {
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
        &[1, 1, i, o] => Some([usize::try_from(i).ok()?, usize::try_from(o).ok()?]),
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
        e.attribute.push(AttributeProto { name: FUSED_BETA.into(), f: 6.0, r#type: 1, ..Default::default() });
        GraphProto {
            node: vec![e, conv(&["e", "wd", "bd"], "y", 48)],
            initializer: vec![weights("we", &[1, 1, 8, 48]), weights("be", &[48]), weights("wd", &[3, 3, 1, 48]), weights("bd", &[48])],
            output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    /// [`block`] with the depthwise output projected back to 8 channels, `x` added: z.
    fn projected_block() -> GraphProto {
        let mut g = block();
        g.node.push(conv(&["y", "wp", "bp", "x"], "z", 1));
        g.initializer.extend([weights("wp", &[1, 1, 48, 8]), weights("bp", &[8])]);
        g.output[0].name = "z".into();
        g
    }

    #[test]
    fn a_pointwise_conv_joins_the_depthwise_conv_that_reads_it() {
        let mut g = block();
        join_expansions(&mut g);
        assert_eq!(g.node.len(), 1);
        let d = &g.node[0];
        assert_eq!(d.input, ["x", "wd", "bd", "", "we", "be"]);
        assert_eq!(d.output, ["y"]);
        assert_eq!(attr(d, EXPAND_ACTIVATION).map(|a| a.s.as_slice()), Some(b"Clip".as_slice()));
        assert_eq!(attr(d, EXPAND_BETA).map(|a| a.f), Some(6.0));
        assert!(attr(d, FUSED_ACTIVATION).is_none(), "the depthwise conv had no activation of its own");
    }

    #[test]
    fn the_projection_and_its_shortcut_join_too() {
        let mut g = projected_block();
        join_expansions(&mut g);
        join_projections(&mut g);
        assert_eq!(g.node.len(), 1);
        assert_eq!(g.node[0].input, ["x", "wd", "bd", "x", "we", "be", "wp", "bp"]);
        assert_eq!(g.node[0].output, ["z"]);
        // without an expansion, the projection joins the depthwise conv alone
        let mut g = projected_block();
        join_projections(&mut g);
        assert_eq!(g.node.len(), 2);
        assert_eq!(g.node[1].input, ["e", "wd", "bd", "x", "", "", "wp", "bp"]);
        // a shortcut computed after the depthwise conv would be read before it exists
        let mut g = projected_block();
        g.node[2].input[3] = "late".into();
        g.node.insert(2, conv(&["x", "wl", "bl"], "late", 1));
        join_projections(&mut g);
        assert_eq!(g.node.len(), 4);
    }

    #[test]
    fn strided_padded_shared_or_mismatched_convs_stay_apart() {
        let apart = |change: &dyn Fn(&mut GraphProto)| {
            let mut g = block();
            change(&mut g);
            join_expansions(&mut g);
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
        // a projection to another channel count than the depthwise conv's
        let mut g = projected_block();
        g.initializer[4] = weights("wp", &[1, 1, 40, 8]);
        join_projections(&mut g);
        assert_eq!(g.node.len(), 3);
    }
}
