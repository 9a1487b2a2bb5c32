//! Turns shape-only ops on initializers (Unsqueeze, Squeeze, Reshape, Flatten, Identity) into
//! initializers before the other passes look.
//!
//! The plan would fold them at load anyway, but the passes run first and only recognise a
//! per-channel scale or bias when it is an initializer: Caffe2-era exports write each BN's
//! scale as `Unsqueeze(bn_w, axes=[1, 2])`, which would otherwise keep DenseNet's 121 Mul/Add
//! pairs out of the convs and out of NHWC.

use crate::proto::onnx::{GraphProto, NodeProto, TensorProto};

use super::graph::{attr, constant_ints, initializer};

pub(super) fn fold_shape_ops(graph: &mut GraphProto) {
    let mut index = 0;
    while index < graph.node.len() {
        let node = &graph.node[index];
        let folded = initializer(graph, node.input.first().map_or("", String::as_str))
            .filter(|_| node.domain.is_empty() && node.output.len() == 1)
            .and_then(|t| Some((t, new_dims(graph, node, &t.dims)?)));
        let Some((source, dims)) = folded else {
            index += 1;
            continue;
        };
        let folded = TensorProto { name: node.output[0].clone(), dims, ..source.clone() };
        graph.initializer.push(folded);
        graph.node.remove(index);
    }
}

/// The dims `node` gives its (constant) first input, or `None` for another op or operands only
/// a request knows.
fn new_dims(graph: &GraphProto, node: &NodeProto, dims: &[i64]) -> Option<Vec<i64>> {
    let axes = || match attr(node, "axes") {
        Some(a) => Some(a.ints.clone()),
        None => constant_ints(graph, node.input.get(1).filter(|a| !a.is_empty())?),
    };
    match node.op_type.as_str() {
        "Identity" => Some(dims.to_vec()),
        "Unsqueeze" => {
            let axes = axes()?;
            let rank = (dims.len() + axes.len()) as i64;
            let mut at: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + rank } else { a }).collect();
            at.sort_unstable();
            if at.windows(2).any(|w| w[0] == w[1]) || at.iter().any(|&a| a < 0 || a >= rank) {
                return None;
            }
            let mut rest = dims.iter();
            (0..rank).map(|i| if at.binary_search(&i).is_ok() { Some(1) } else { rest.next().copied() }).collect()
        }
        "Squeeze" => {
            let rank = dims.len() as i64;
            let at: Vec<i64> = match node.input.len() > 1 || attr(node, "axes").is_some() {
                true => axes()?.iter().map(|&a| if a < 0 { a + rank } else { a }).collect(),
                false => (0..rank).filter(|&i| dims[i as usize] == 1).collect(),
            };
            if at.iter().any(|&a| a < 0 || a >= rank || dims[a as usize] != 1) {
                return None;
            }
            Some((0..rank).filter(|i| !at.contains(i)).map(|i| dims[i as usize]).collect())
        }
        "Reshape" => {
            let target = constant_ints(graph, node.input.get(1)?)?;
            let allow_zero = attr(node, "allowzero").is_some_and(|a| a.i != 0);
            let mut out: Vec<i64> = target.iter().enumerate().map(|(i, &t)| if t == 0 && !allow_zero { dims.get(i).copied().unwrap_or(-2) } else { t }).collect();
            let total: i64 = dims.iter().product();
            let known: i64 = out.iter().filter(|&&d| d != -1).product();
            match out.iter().filter(|&&d| d == -1).count() {
                0 => {}
                1 if known > 0 && total % known == 0 => *out.iter_mut().find(|d| **d == -1)? = total / known,
                _ => return None,
            }
            (out.iter().all(|&d| d >= 0) && out.iter().product::<i64>() == total).then_some(out)
        }
        "Flatten" => {
            let rank = dims.len() as i64;
            let a = attr(node, "axis").map_or(1, |a| a.i);
            let a = usize::try_from(if a < 0 { a + rank } else { a }).ok().filter(|&a| a <= dims.len())?;
            Some(vec![dims[..a].iter().product(), dims[a..].iter().product()])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::onnx::passes::graph::{float_initializer, ints_attr, put_float_initializer};

    #[test]
    fn unsqueezed_and_reshaped_constants_become_initializers() {
        let mut graph = GraphProto::default();
        put_float_initializer(&mut graph, "w", &[3], &[1.0, 2.0, 3.0]);
        graph.initializer.push(TensorProto { name: "shape".into(), dims: vec![2], data_type: 7, int64_data: vec![-1, 1], ..Default::default() });
        graph.node = vec![
            NodeProto { op_type: "Unsqueeze".into(), input: vec!["w".into()], output: vec!["u".into()], attribute: vec![ints_attr("axes", &[1, -1])], ..Default::default() },
            NodeProto { op_type: "Reshape".into(), input: vec!["w".into(), "shape".into()], output: vec!["r".into()], ..Default::default() },
            NodeProto { op_type: "Squeeze".into(), input: vec!["x".into()], output: vec!["kept".into()], ..Default::default() },
        ];
        fold_shape_ops(&mut graph);
        assert_eq!(graph.node.len(), 1, "the Squeeze of a request value stays");
        assert_eq!(float_initializer(&graph, "u"), Some((vec![3, 1, 1], vec![1.0, 2.0, 3.0])));
        assert_eq!(float_initializer(&graph, "r").map(|(d, _)| d), Some(vec![3, 1]));
    }
}
