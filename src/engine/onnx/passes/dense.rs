//! Turns MatMul (+ Add bias) and Gemm with constant weights into one internal dense op.
//!
//! Exporters write a Keras `Dense` as MatMul + Add and a PyTorch `Linear` as Gemm; both are a
//! GEMM whose bias can seed the output buffer. Only constant, float32 weights qualify, so the
//! rewrite never changes what a model computes.

use crate::proto::onnx::{GraphProto, NodeProto};

use super::graph::{attr, float_initializer, put_float_initializer, reader_counts};

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

/// A 2-D constant float weight, as `(k, n, values)`.
fn weights(graph: &GraphProto, name: &str) -> Option<(usize, usize, Vec<f32>)> {
    match float_initializer(graph, name)? {
        (dims, values) if dims.len() == 2 => Some((dims[0], dims[1], values)),
        _ => None,
    }
}

/// A bias that broadcasts along the last axis only: `[n]` or `[1, n]`.
fn bias(graph: &GraphProto, name: &str, n: usize) -> Option<Vec<f32>> {
    let (dims, values) = float_initializer(graph, name)?;
    let last_axis_only = dims.last() == Some(&n) && dims.iter().rev().skip(1).all(|&d| d == 1) && dims.len() <= 2;
    last_axis_only.then_some(values)
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
    let (_, n, _) = weights(graph, node.input.get(1)?)?;
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
    let (rows, cols, values) = weights(graph, node.input.get(1)?)?;
    let out = node.output.first()?.clone();
    let (n, w) = if flag("transB") != 0 {
        let mut t = vec![0.0f32; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = values[r * cols + c];
            }
        }
        let name = format!("{out}__weights_t");
        put_float_initializer(graph, &name, &[cols, rows], &t);
        (rows, name)
    } else {
        (cols, node.input[1].clone())
    };
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
    Some(dense(node, &node.input[0], w, b, &out))
}
