//! Removes data movement that shape inference proves is not needed: a Transpose that only moves
//! size-1 axes is a Reshape, a Reshape of a Reshape is one Reshape, and a Reshape to the shape
//! its input already has is nothing. tf2onnx's `[N,28,28,1] -> [N,1,28,28]` before a Keras conv
//! stack, followed by the layout pass's way back to NHWC, disappears entirely.

use crate::proto::onnx::{GraphProto, NodeProto, TensorProto};

use super::graph::{attr, graph_outputs, reader_counts, rename_reads};
use super::shapes::{Facts, infer};

pub(super) fn reshapes(graph: &mut GraphProto) {
    let facts = infer(graph);
    transposes_of_unit_axes(graph, &facts);
    reshape_chains(graph, &facts);
    identity_reshapes(graph, &facts);
}

/// A target shape for a Reshape that yields `dims`: -1 marks the one size only a request knows.
fn shape_constant(graph: &mut GraphProto, name: &str, dims: &[Option<usize>]) -> Option<String> {
    if dims.iter().filter(|d| d.is_none()).count() > 1 {
        return None;
    }
    let values = dims.iter().map(|d| d.map_or(-1, |n| n as i64)).collect();
    let name = format!("{name}__shape");
    graph.initializer.retain(|t| t.name != name);
    graph.initializer.push(TensorProto { name: name.clone(), dims: vec![dims.len() as i64], data_type: 7, int64_data: values, ..Default::default() });
    Some(name)
}

fn reshape(name: &str, input: &str, shape: String, output: &str) -> NodeProto {
    NodeProto { name: name.into(), op_type: "Reshape".into(), input: vec![input.into(), shape], output: vec![output.into()], ..Default::default() }
}

fn transposes_of_unit_axes(graph: &mut GraphProto, facts: &Facts) {
    for i in 0..graph.node.len() {
        let node = &graph.node[i];
        if node.op_type != "Transpose" {
            continue;
        }
        let (Some(x), Some(out)) = (facts.get(&node.input[0]), node.output.first().and_then(|o| facts.get(o))) else { continue };
        let Some(perm) = attr(node, "perm").map(|a| a.ints.clone()) else { continue };
        // the axes that are not size 1 must keep their order
        let moved: Vec<i64> = perm.iter().copied().filter(|&p| usize::try_from(p).ok().and_then(|p| x.dims.get(p)) != Some(&Some(1))).collect();
        if !moved.windows(2).all(|w| w[0] < w[1]) {
            continue;
        }
        let (name, input, output) = (node.name.clone(), node.input[0].clone(), node.output[0].clone());
        let dims = out.dims.clone();
        if let Some(shape) = shape_constant(graph, &output, &dims) {
            graph.node[i] = reshape(&name, &input, shape, &output);
        }
    }
}

fn reshape_chains(graph: &mut GraphProto, facts: &Facts) {
    for i in 0..graph.node.len() {
        if graph.node[i].op_type != "Reshape" {
            continue;
        }
        let inner_out = graph.node[i].input[0].clone();
        let readers = reader_counts(graph);
        let Some(inner) = graph.node.iter().find(|n| n.op_type == "Reshape" && n.output.first() == Some(&inner_out)) else { continue };
        if readers.get(&inner_out) != Some(&1) {
            continue;
        }
        let source = inner.input[0].clone();
        let output = graph.node[i].output[0].clone();
        let Some(dims) = facts.get(&output).map(|f| f.dims.clone()) else { continue };
        if let Some(shape) = shape_constant(graph, &output, &dims) {
            let name = graph.node[i].name.clone();
            graph.node[i] = reshape(&name, &source, shape, &output);
        }
    }
}

fn identity_reshapes(graph: &mut GraphProto, facts: &Facts) {
    let outputs = graph_outputs(graph);
    let mut renames = Vec::new();
    graph.node.retain(|n| {
        let same = n.op_type == "Reshape"
            && !outputs.contains(&n.output[0])
            && match (facts.get(&n.input[0]), facts.get(&n.output[0])) {
                // equal ranks, equal known sizes, at most one unknown: the unknown is equal too
                (Some(a), Some(b)) => a.dims == b.dims && a.dims.iter().filter(|d| d.is_none()).count() <= 1,
                _ => false,
            };
        if same {
            renames.push((n.output[0].clone(), n.input[0].clone()));
        }
        !same
    });
    for (from, to) in renames {
        rename_reads(graph, &from, &to);
    }
}
