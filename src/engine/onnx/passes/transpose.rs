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
