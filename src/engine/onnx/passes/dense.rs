//! Turns MatMul (+ Add bias) and Gemm with constant weights into one internal dense op.
//!
//! Exporters write a Keras `Dense` as MatMul + Add and a PyTorch `Linear` as Gemm; both are a
//! GEMM whose bias can seed the output buffer. Only constant, float32 weights qualify, so the
//! rewrite never changes what a model computes.

use crate::proto::onnx::{GraphProto, NodeProto};

use super::graph::{attr, float_dims, float_initializer, float_initializer_to_rewrite, put_float_initializer, put_float_initializer_bytes, reader_counts};

pub(crate) const DENSE: &str = "_Dense";

pub(super) fn matmul_bias(graph: &mut GraphProto) {
    let mut index = 0;
    while index < graph.node.len() {
        let node = graph.node[index].clone();
        let rewritten = match node.op_type.as_str() {
            "MatMul" if node.domain.is_empty() => from_matmul(graph, index, &node),
            "Gemm" if node.domain.is_empty() => from_gemm(graph, &node),
            _ => None,
        };
        if let Some(dense) = rewritten {
            graph.node[index] = dense;
        }
        index += 1;
    }
}

/// A 2-D constant float weight's `(rows, columns)`.
fn weight_dims(graph: &GraphProto, name: &str) -> Option<(usize, usize)> {
    match float_dims(graph, name)?.as_slice() {
        &[rows, columns] => Some((rows, columns)),
        _ => None,
    }
}

/// A bias that broadcasts along the last axis only: `[n]` or `[1, n]`.
fn bias(graph: &GraphProto, name: &str, n: usize) -> Option<Vec<f32>> {
    let (dims, values) = float_initializer(graph, name)?;
    let last_axis_only = dims.last() == Some(&n) && dims.iter().rev().skip(1).all(|&d| d == 1) && dims.len() <= 2;
    last_axis_only.then_some(values)
}

/// Writes the `[cols, rows]` transpose of row-major `values` as a new initializer, straight
/// into its bytes: the largest dense layers (VGG19's first, 392 MiB) are the load's peak, and
/// a float copy between would be a third of it.
fn put_transposed(graph: &mut GraphProto, name: &str, rows: usize, cols: usize, values: &[f32]) {
    let mut bytes = vec![0u8; values.len() * 4];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, v) in row.iter().enumerate() {
            let at = (c * rows + r) * 4;
            bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    put_float_initializer_bytes(graph, name, &[cols, rows], bytes);
}

fn dense(node: &NodeProto, input: &str, w: String, b: String, output: &str) -> NodeProto {
    NodeProto {
        name: node.name.clone(),
        op_type: DENSE.into(),
        input: vec![input.into(), w, b],
        output: vec![output.into()],
        ..Default::default()
    }
}

fn from_matmul(graph: &mut GraphProto, index: usize, node: &NodeProto) -> Option<NodeProto> {
    let (_, n) = weight_dims(graph, node.input.get(1)?)?;
    let out = node.output.first()?.clone();
    // an Add reading only this MatMul's output and a constant bias absorbs into it
    let add = graph
        .node
        .iter()
        .enumerate()
        .skip(index + 1)
        .find(|(_, a)| a.op_type == "Add" && a.input.contains(&out))
        .map(|(i, a)| (i, a.clone()));
    if let Some((add_index, add)) = add.filter(|_| reader_counts(graph).get(&out) == Some(&1)) {
        let other = add.input.iter().find(|i| **i != out)?.clone();
        if let Some(values) = bias(graph, &other, n) {
            let b = format!("{}__bias", add.output[0]);
            put_float_initializer(graph, &b, &[n], &values);
            let fused = dense(node, &node.input[0], node.input[1].clone(), b, &add.output[0]);
            graph.node.remove(add_index);
            return Some(fused);
        }
    }
    let b = format!("{out}__zero_bias");
    put_float_initializer(graph, &b, &[n], &vec![0.0; n]);
    Some(dense(node, &node.input[0], node.input[1].clone(), b, &out))
}

fn from_gemm(graph: &mut GraphProto, node: &NodeProto) -> Option<NodeProto> {
    let flag = |name: &str| attr(node, name).map_or(0, |a| a.i);
    let scale = |name: &str| attr(node, name).map_or(1.0, |a| a.f);
    if flag("transA") != 0 || scale("alpha") != 1.0 || scale("beta") != 1.0 {
        return None;
    }
    let (rows, cols) = weight_dims(graph, node.input.get(1)?)?;
    let out = node.output.first()?.clone();
    let transposed = flag("transB") != 0;
    let n = if transposed { rows } else { cols };
    // the bias is checked before the weights are rewritten: a refused bias leaves the Gemm as it was
    let b = match node.input.get(2).filter(|c| !c.is_empty()) {
        Some(c) => {
            let values = bias(graph, c, n)?;
            let name = format!("{out}__bias");
            put_float_initializer(graph, &name, &[n], &values);
            name
        }
        None => {
            let name = format!("{out}__zero_bias");
            put_float_initializer(graph, &name, &[n], &vec![0.0; n]);
            name
        }
    };
    let w = if transposed {
        let name = format!("{out}__weights_t");
        let sole_reader = reader_counts(graph).get(&node.input[1]).copied() == Some(1);
        let (_, values) = float_initializer_to_rewrite(graph, &node.input[1], sole_reader)?;
        put_transposed(graph, &name, rows, cols, &values);
        name
    } else {
        node.input[1].clone()
    };
    Some(dense(node, &node.input[0], w, b, &out))
}
