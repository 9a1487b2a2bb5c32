//! Static shape and element-type inference for the ops whose output shape follows from their
//! input shapes and constant operands. Unknown stays unknown: a dim a request decides (the batch)
//! is `None`, and an op without a rule gives no facts, so a pass that needs a shape simply does
//! not fire. The facts drive the rewrites in `simplify`.

use std::collections::HashMap;

use crate::proto::onnx::tensor_shape_proto::dimension::Value as DimValue;
use crate::proto::onnx::type_proto::Value as TypeValue;
use crate::proto::onnx::{GraphProto, NodeProto, ValueInfoProto};

use super::graph::{attr, constant_ints};

/// What is known about one value before any request arrives.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fact {
    /// ONNX `TensorProto.DataType`; 0 when unknown.
    pub(super) elem_type: i32,
    /// Per-axis size, `None` for a size only a request decides.
    pub(super) dims: Vec<Option<usize>>,
}

pub(super) type Facts = HashMap<String, Fact>;

/// Facts for every value whose shape can be derived, walking `graph.node` in order (which the
/// caller keeps topological).
pub(super) fn infer(graph: &GraphProto) -> Facts {
    let mut facts = Facts::new();
    for vi in graph.input.iter().chain(&graph.value_info) {
        if let Some(f) = declared(vi) {
            facts.insert(vi.name.clone(), f);
        }
    }
    for t in &graph.initializer {
        let dims = t.dims.iter().map(|&d| usize::try_from(d).ok()).collect();
        facts.insert(t.name.clone(), Fact { elem_type: t.data_type, dims });
    }
    for node in &graph.node {
        if let (Some(fact), Some(out)) = (rule(graph, &facts, node), node.output.first()) {
            facts.insert(out.clone(), fact);
        }
    }
    facts
}

fn declared(vi: &ValueInfoProto) -> Option<Fact> {
    let Some(TypeValue::TensorType(t)) = vi.r#type.as_ref()?.value.as_ref() else { return None };
    let dims = t
        .shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(DimValue::DimValue(n)) if n > 0 => Some(n as usize),
            _ => None,
        })
        .collect();
    Some(Fact { elem_type: t.elem_type, dims })
}

const SAME_SHAPE: &[&str] = &[
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "HardSigmoid", "Softplus", "Softsign", "Abs", "Neg", "Exp",
    "Log", "Sqrt", "Erf", "Identity", "Softmax", "LogSoftmax", "Clip", "Dropout", "Gelu", "Reciprocal", "Floor", "Ceil",
];

/// The element count of `dims`: unknown if any dim is, and also if the product overflows (the
/// dims come from the model file; a pass must not fire on a size it cannot represent).
fn size(mut dims: impl Iterator<Item = Option<usize>>) -> Option<usize> {
    dims.try_fold(1usize, |acc, d| acc.checked_mul(d?))
}

fn rule(graph: &GraphProto, facts: &Facts, node: &NodeProto) -> Option<Fact> {
    let input = |i: usize| node.input.get(i).and_then(|n| facts.get(n));
    match node.op_type.as_str() {
        op if SAME_SHAPE.contains(&op) => input(0).cloned(),
        "Cast" => Some(Fact { elem_type: attr(node, "to")?.i as i32, ..input(0)?.clone() }),
        "Transpose" => {
            let x = input(0)?;
            let perm: Vec<usize> = match attr(node, "perm") {
                Some(a) => a.ints.iter().map(|&p| usize::try_from(p).ok()).collect::<Option<_>>()?,
                None => (0..x.dims.len()).rev().collect(),
            };
            let dims = perm.iter().map(|&p| x.dims.get(p).copied()).collect::<Option<Vec<_>>>()?;
            Some(Fact { elem_type: x.elem_type, dims })
        }
        "Reshape" => {
            let x = input(0)?;
            let target = constant_ints(graph, node.input.get(1)?)?;
            let allow_zero = attr(node, "allowzero").is_some_and(|a| a.i != 0);
            let mut dims: Vec<Option<usize>> = Vec::with_capacity(target.len());
            for (i, &t) in target.iter().enumerate() {
                dims.push(match t {
                    0 if !allow_zero => *x.dims.get(i)?,
                    -1 => None,
                    t => Some(usize::try_from(t).ok()?),
                });
            }
            // -1 is whatever is left once the known sizes are divided out
            if let Some(hole) = target.iter().position(|&t| t == -1) {
                let total = size(x.dims.iter().copied());
                let known = size(dims.iter().enumerate().filter(|(i, _)| *i != hole).map(|(_, d)| *d));
                dims[hole] = match (total, known) {
                    (Some(t), Some(k)) if k > 0 && t % k == 0 => Some(t / k),
                    _ => None,
                };
            }
            Some(Fact { elem_type: x.elem_type, dims })
        }
        "Flatten" => {
            let x = input(0)?;
            let rank = x.dims.len() as i64;
            let a = attr(node, "axis").map_or(1, |a| a.i);
            let a = usize::try_from(if a < 0 { a + rank } else { a }).ok()?.min(x.dims.len());
            let outer = size(x.dims[..a].iter().copied());
            let inner = size(x.dims[a..].iter().copied());
            Some(Fact { elem_type: x.elem_type, dims: vec![outer, inner] })
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (input(0)?, input(1)?);
            let rank = a.dims.len().max(b.dims.len());
            let at = |f: &Fact, i: usize| if i + f.dims.len() < rank { Some(1) } else { f.dims[i + f.dims.len() - rank] };
            let dims = (0..rank)
                .map(|i| match (at(a, i), at(b, i)) {
                    (Some(1), d) | (d, Some(1)) => d,
                    (Some(x), Some(y)) if x == y => Some(x),
                    _ => None,
                })
                .collect();
            Some(Fact { elem_type: a.elem_type, dims })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::onnx::passes::graph::ints_attr;
    use crate::proto::onnx::TensorProto;

    #[test]
    fn reshape_and_transpose_shapes_follow_from_constants() {
        let input = crate::proto::onnx::ValueInfoProto {
            name: "x".into(),
            r#type: Some(crate::proto::onnx::TypeProto {
                value: Some(TypeValue::TensorType(crate::proto::onnx::type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(crate::proto::onnx::TensorShapeProto {
                        dim: [None, Some(28), Some(28), Some(1)]
                            .iter()
                            .map(|d| crate::proto::onnx::tensor_shape_proto::Dimension {
                                value: Some(match d {
                                    Some(n) => DimValue::DimValue(*n),
                                    None => DimValue::DimParam("N".into()),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let graph = GraphProto {
            input: vec![input],
            initializer: vec![TensorProto { name: "s".into(), dims: vec![4], data_type: 7, int64_data: vec![-1, 1, 28, 28], ..Default::default() }],
            node: vec![
                NodeProto { op_type: "Reshape".into(), input: vec!["x".into(), "s".into()], output: vec!["r".into()], ..Default::default() },
                NodeProto {
                    op_type: "Transpose".into(),
                    input: vec!["r".into()],
                    output: vec!["t".into()],
                    attribute: vec![ints_attr("perm", &[0, 2, 3, 1])],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let facts = infer(&graph);
        assert_eq!(facts["r"].dims, vec![None, Some(1), Some(28), Some(28)]);
        assert_eq!(facts["t"].dims, vec![None, Some(28), Some(28), Some(1)]);
        assert_eq!(facts["t"].elem_type, 1);
    }

    #[test]
    fn sizes_that_overflow_are_unknown() {
        assert_eq!(size([Some(3), Some(4)].into_iter()), Some(12));
        assert_eq!(size([Some(3), None].into_iter()), None);
        assert_eq!(size([Some(usize::MAX), Some(2)].into_iter()), None);
    }
}
