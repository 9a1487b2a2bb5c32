//! Removes the ops that are the identity at inference: Identity, and Dropout without a
//! `training_mode` input whose mask nobody reads. Left in, they are one more node for the layout
//! pass to stop at: a Dropout keeps its mask output, so the pass cannot let it follow NHWC, and
//! SqueezeNet paid two full transposes of its last feature map around the one before its
//! classifier.

use crate::proto::onnx::GraphProto;

use super::graph::{graph_outputs, reader_counts, rename_reads};

pub(super) fn remove(graph: &mut GraphProto) {
    let outputs = graph_outputs(graph);
    let readers = reader_counts(graph);
    let mut i = 0;
    while i < graph.node.len() {
        let n = &graph.node[i];
        let identity = n.domain.is_empty()
            && match n.op_type.as_str() {
                "Identity" => n.input.len() == 1 && n.output.len() == 1,
                // a training_mode input may say "training"; the op itself decides then
                "Dropout" => n.input.get(2).is_none_or(|m| m.is_empty()) && n.output.iter().skip(1).all(|m| m.is_empty() || (!readers.contains_key(m) && !outputs.contains(m))),
                _ => false,
            }
            && n.input.first().is_some_and(|i| !i.is_empty())
            && n.output.first().is_some_and(|o| !o.is_empty() && !outputs.contains(o));
        if identity {
            // renamed at once, so a chain of identities collapses onto the first source
            let n = graph.node.remove(i);
            rename_reads(graph, &n.output[0], &n.input[0]);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::NodeProto;
    use crate::proto::onnx::ValueInfoProto;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        NodeProto { op_type: op.into(), name: outputs[0].into(), input: strings(inputs), output: strings(outputs), ..Default::default() }
    }

    fn ops_and_inputs(graph: &GraphProto) -> Vec<(String, Vec<String>)> {
        graph.node.iter().map(|n| (n.op_type.clone(), n.input.clone())).collect()
    }

    #[test]
    fn inference_identities_vanish_and_their_readers_read_the_source() {
        let mut graph = GraphProto {
            node: vec![
                node("Relu", &["x"], &["a"]),
                node("Dropout", &["a", "ratio"], &["b", "mask"]),
                node("Identity", &["b"], &["c"]),
                node("Relu", &["c"], &["y"]),
            ],
            output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }],
            ..Default::default()
        };
        remove(&mut graph);
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(ops_and_inputs(&graph), vec![("Relu".into(), s(&["x"])), ("Relu".into(), s(&["a"]))]);
    }

    #[test]
    fn dropouts_that_may_train_or_whose_mask_is_read_stay() {
        let mut graph = GraphProto {
            node: vec![
                node("Dropout", &["x", "ratio", "training"], &["a"]),
                node("Dropout", &["a"], &["b", "mask"]),
                node("Not", &["mask"], &["m"]),
                node("Identity", &["b"], &["y"]),
            ],
            output: vec![ValueInfoProto { name: "y".into(), ..Default::default() }, ValueInfoProto { name: "m".into(), ..Default::default() }],
            ..Default::default()
        };
        let before = ops_and_inputs(&graph);
        remove(&mut graph);
        assert_eq!(ops_and_inputs(&graph), before, "a graph output's producer stays too");
    }
}
