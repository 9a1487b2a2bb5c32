//! Helpers the passes share: who reads a value, float initializers in and out, and attributes.

use std::collections::{HashMap, HashSet};

use crate::proto::onnx::attribute_proto::AttributeType;
use crate::proto::onnx::tensor_proto::DataType;
use crate::proto::onnx::{AttributeProto, GraphProto, NodeProto, TensorProto};

/// Private node attributes the fusion pass sets on Conv, Gemm and the NHWC conv: the activation
/// to apply inside the op, and its parameters (LeakyRelu's slope, Clip's bounds).
pub(crate) const FUSED_ACTIVATION: &str = "_fused_activation";
pub(crate) const FUSED_ALPHA: &str = "_fused_alpha";
/// Clip's upper bound (its lower bound travels in [`FUSED_ALPHA`]).
pub(crate) const FUSED_BETA: &str = "_fused_beta";
/// Private attribute of the NHWC conv: the `[rows, columns]` of a max pool the conv's output
/// goes through before anything reads it, windows side by side (stride = window, no padding,
/// floor mode). Set by the pool pass (`max_pool.rs`).
pub(crate) const FUSED_MAX_POOL: &str = "_fused_max_pool";
/// Private attributes of a depthwise NHWC conv joined to the 1x1 convs around it
/// (`inverted_residual.rs`): the activation of a 1x1 conv that computes its input from input 0
/// (weights and bias in inputs 4 and 5), and of one that projects its output (weights and bias
/// in inputs 6 and 7, the shortcut in input 3), with the names and values of
/// [`FUSED_ACTIVATION`] and its parameters. [`FUSED_ACTIVATION`] stays the depthwise conv's.
pub(crate) const EXPAND_ACTIVATION: &str = "_expand_activation";
pub(crate) const EXPAND_ALPHA: &str = "_expand_alpha";
pub(crate) const EXPAND_BETA: &str = "_expand_beta";
pub(crate) const PROJECT_ACTIVATION: &str = "_project_activation";
pub(crate) const PROJECT_ALPHA: &str = "_project_alpha";
pub(crate) const PROJECT_BETA: &str = "_project_beta";

/// How many node inputs read each value (graph outputs count as readers too, so a value the
/// caller asked for is never fused away).
pub(super) fn reader_counts(graph: &GraphProto) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for node in &graph.node {
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            *counts.entry(input.clone()).or_default() += 1;
        }
        // Loop/Scan/If bodies read outer values by name without listing them as inputs.
        for body in node.attribute.iter().flat_map(|a| a.g.iter().chain(&a.graphs)) {
            for (name, n) in reader_counts(body) {
                *counts.entry(name).or_default() += n;
            }
        }
    }
    for output in &graph.output {
        *counts.entry(output.name.clone()).or_default() += 1;
    }
    counts
}

/// Makes every reader of `from` read `to` instead, inside Loop/Scan/If bodies too: they read
/// outer values by name, so a pass that drops a node must rename there as well. (ONNX names
/// are unique across scopes, so a body never shadows `from`.)
pub(super) fn rename_reads(graph: &mut GraphProto, from: &str, to: &str) {
    for node in &mut graph.node {
        for input in node.input.iter_mut().filter(|i| *i == from) {
            *input = to.to_string();
        }
        for attribute in &mut node.attribute {
            for body in attribute.g.iter_mut().chain(attribute.graphs.iter_mut()) {
                rename_reads(body, from, to);
            }
        }
    }
}

pub(super) fn graph_outputs(graph: &GraphProto) -> HashSet<String> {
    graph.output.iter().map(|o| o.name.clone()).collect()
}

pub(super) fn initializer<'g>(graph: &'g GraphProto, name: &str) -> Option<&'g TensorProto> {
    graph.initializer.iter().find(|t| t.name == name)
}

/// A float32 initializer's dims and values, or `None` if it is not a plain float32 tensor.
pub(super) fn float_initializer(graph: &GraphProto, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    let t = initializer(graph, name)?;
    let dims = plain_float_dims(t)?;
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    Some((dims, values))
}

/// [`float_initializer`]'s dims alone, without decoding the values: what a pass checks before
/// it decides to rewrite (a weight decoded only to read its shape was a transient copy of the
/// largest layers, 392 MiB for VGG19's first dense layer).
pub(super) fn float_dims(graph: &GraphProto, name: &str) -> Option<Vec<usize>> {
    plain_float_dims(initializer(graph, name)?)
}

fn plain_float_dims(t: &TensorProto) -> Option<Vec<usize>> {
    if t.data_type != DataType::Float as i32 || t.data_location == 1 || !t.external_data.is_empty() {
        return None;
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    let held = if t.raw_data.is_empty() { Some(t.float_data.len()) } else { t.raw_data.len().is_multiple_of(4).then_some(t.raw_data.len() / 4) };
    (held == Some(count)).then_some(dims)
}

/// [`float_initializer`] for a pass about to write a rewritten copy under a new name. When
/// `sole_reader` (the node being rewritten reads it and nothing else does) the original leaves
/// the graph here, so its bytes are freed before the copy is made instead of both staying until
/// the dead-value sweep at the end: every conv weight went through two such rewrites (BN folded
/// in, then OIHW -> HWIO), and the load's peak held all three forms.
pub(super) fn float_initializer_to_rewrite(graph: &mut GraphProto, name: &str, sole_reader: bool) -> Option<(Vec<usize>, Vec<f32>)> {
    let decoded = float_initializer(graph, name)?;
    // an initializer also listed as a graph input (IR < 4) is a default the caller may override
    if sole_reader && !graph.input.iter().any(|i| i.name == name) {
        graph.initializer.retain(|t| t.name != name);
    }
    Some(decoded)
}

/// A small integer tensor's values, when it is an int64 initializer.
pub(super) fn constant_ints(graph: &GraphProto, name: &str) -> Option<Vec<i64>> {
    let t = initializer(graph, name)?;
    if !t.int64_data.is_empty() {
        return Some(t.int64_data.clone());
    }
    if t.data_type == DataType::Int64 as i32 && !t.raw_data.is_empty() {
        return Some(t.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect());
    }
    None
}

/// Adds (or replaces) a 1-D int64 initializer.
pub(super) fn put_int_initializer(graph: &mut GraphProto, name: &str, values: &[i64]) {
    graph.initializer.retain(|t| t.name != name);
    graph.initializer.push(TensorProto {
        name: name.to_string(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    });
}

/// Adds (or replaces) a float32 initializer.
pub(super) fn put_float_initializer(graph: &mut GraphProto, name: &str, dims: &[usize], values: &[f32]) {
    put_float_initializer_bytes(graph, name, dims, values.iter().flat_map(|v| v.to_le_bytes()).collect());
}

/// [`put_float_initializer`] from the values' little-endian bytes.
pub(super) fn put_float_initializer_bytes(graph: &mut GraphProto, name: &str, dims: &[usize], bytes: Vec<u8>) {
    graph.initializer.retain(|t| t.name != name);
    graph.initializer.push(TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: bytes.into(),
        ..Default::default()
    });
}

pub(super) fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(super) fn string_attr(name: &str, value: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::String as i32, s: value.as_bytes().to_vec(), ..Default::default() }
}

pub(super) fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: value, ..Default::default() }
}

pub(super) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

pub(super) fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: values.to_vec(), ..Default::default() }
}

/// Drops nodes none of whose outputs is read (repeatedly, so whole dead chains go), then
/// initializers nothing reads.
pub(crate) fn remove_dead_nodes(graph: &mut GraphProto) {
    loop {
        let readers = reader_counts(graph);
        let before = graph.node.len();
        graph.node.retain(|n| n.output.iter().any(|o| !o.is_empty() && readers.contains_key(o)));
        if graph.node.len() == before {
            break;
        }
    }
    let readers = reader_counts(graph);
    // An initializer also listed as a graph input (IR < 4) stays: dropping it would turn it
    // into an input every request must supply.
    let inputs: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let keep: Vec<bool> = graph.initializer.iter().map(|t| readers.contains_key(&t.name) || inputs.contains(t.name.as_str())).collect();
    let mut keep = keep.into_iter();
    graph.initializer.retain(|_| keep.next().unwrap_or(true));
}
