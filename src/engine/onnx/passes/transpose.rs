//! Removes Transpose pairs that compose to the identity, such as the NCHW->NHWC boundary the
//! layout pass inserts right before an exporter's own NHWC->NCHW transpose.

use std::collections::HashMap;

use crate::proto::onnx::{GraphProto, NodeProto};

use super::graph::{attr, graph_outputs, reader_counts, rename_reads};

pub(super) fn cancel_pairs(graph: &mut GraphProto) {
    let outputs = graph_outputs(graph);
    loop {
        let producers: HashMap<&str, &NodeProto> =
            graph.node.iter().filter(|n| n.op_type == "Transpose").filter_map(|n| Some((n.output.first()?.as_str(), n))).collect();
        let found = graph.node.iter().find_map(|second| {
            if second.op_type != "Transpose" {
                return None;
            }
            let first = producers.get(second.input.first()?.as_str())?;
            let (p1, p2) = (attr(first, "perm")?.ints.clone(), attr(second, "perm")?.ints.clone());
            let identity = p1.len() == p2.len() && p2.iter().enumerate().all(|(i, &a)| usize::try_from(a).ok().and_then(|a| p1.get(a)) == Some(&(i as i64)));
            // the pair's result is `first`'s input; a graph output keeps its own name
            (identity && !outputs.contains(&second.output[0])).then(|| (second.output[0].clone(), first.input[0].clone()))
        });
        let Some((result, original)) = found else { break };
        rename_reads(graph, &result, &original);
        graph.node.retain(|n| n.output.first() != Some(&result));
        // the first transpose goes too once nothing else reads it
        let readers = reader_counts(graph);
        graph.node.retain(|n| n.op_type != "Transpose" || n.output.iter().any(|o| readers.contains_key(o)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::attribute_proto::AttributeType;
    use crate::proto::onnx::AttributeProto;

    fn node(op: &str, input: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: input.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        }
    }

    fn perm(values: &[i64]) -> Vec<AttributeProto> {
        vec![AttributeProto { name: "perm".into(), r#type: AttributeType::Ints as i32, ints: values.to_vec(), ..Default::default() }]
    }

    /// A cancelled pair's result read only inside a Loop body (an RNN reading a transposed
    /// sequence): the body must read the pair's input afterwards, not a value nothing defines.
    #[test]
    fn a_cancelled_pair_is_renamed_inside_loop_bodies() {
        let body = GraphProto { node: vec![node("Gather", &["t2", "i"], "item", Vec::new())], ..Default::default() };
        let lp = NodeProto {
            attribute: vec![AttributeProto { name: "body".into(), r#type: AttributeType::Graph as i32, g: Some(body), ..Default::default() }],
            ..node("Loop", &["", "c"], "out", Vec::new())
        };
        let mut graph = GraphProto {
            node: vec![node("Transpose", &["x"], "t1", perm(&[1, 0, 2])), node("Transpose", &["t1"], "t2", perm(&[1, 0, 2])), lp],
            ..Default::default()
        };
        cancel_pairs(&mut graph);
        assert_eq!(graph.node.iter().map(|n| n.op_type.as_str()).collect::<Vec<_>>(), ["Loop"]);
        let body = graph.node[0].attribute[0].g.as_ref().expect("body");
        assert_eq!(body.node[0].input, ["x", "i"]);
    }
}
