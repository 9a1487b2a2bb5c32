//! Fuses a pointwise activation into the conv or GEMM that feeds it, so the activation runs on
//! each output chunk while it is still in cache instead of as another pass over the tensor.

use crate::engine::kernels::Activation;
use crate::proto::onnx::GraphProto;

use crate::proto::onnx::NodeProto;

use super::graph::{FUSED_ACTIVATION, FUSED_ALPHA, FUSED_BETA, attr, float_attr, float_initializer, reader_counts, string_attr};
use super::dense::DENSE;
use super::layout::{NHWC_CONV, NHWC_SCALE_SHIFT};

/// Ops whose builders honour [`FUSED_ACTIVATION`].
const PRODUCERS: &[&str] = &[NHWC_CONV, NHWC_SCALE_SHIFT, DENSE, "Conv", "Gemm"];

/// The activation `node` computes on its first input, with its parameters; Clip's bounds must
/// be attributes (opset < 11) or constant scalars.
fn activation_of(graph: &GraphProto, node: &NodeProto) -> Option<(Activation, f32, f32)> {
    if node.output.len() != 1 || node.input.is_empty() {
        return None;
    }
    let (alpha, beta) = if node.op_type == "Clip" {
        let bound = |i: usize, name: &str, default: f32| match node.input.get(i).filter(|n| !n.is_empty()) {
            Some(input) => float_initializer(graph, input).filter(|(_, v)| v.len() == 1).map(|(_, v)| v[0]),
            None => Some(attr(node, name).map_or(default, |a| a.f)),
        };
        (bound(1, "min", f32::NEG_INFINITY)?, bound(2, "max", f32::INFINITY)?)
    } else if node.input.len() == 1 {
        (attr(node, "alpha").map_or(0.01, |a| a.f), f32::INFINITY)
    } else {
        return None;
    };
    Some((Activation::from_onnx(&node.op_type, alpha, beta)?, alpha, beta))
}

pub(super) fn activations(graph: &mut GraphProto) {
    let readers = reader_counts(graph);
    let mut index = 0;
    while index < graph.node.len() {
        let act = &graph.node[index];
        let found = activation_of(graph, act);
        let producer = found
            .is_some()
            .then(|| {
                graph.node.iter().position(|p| {
                    PRODUCERS.contains(&p.op_type.as_str())
                        && p.output.first() == act.input.first()
                        && attr(p, FUSED_ACTIVATION).is_none()
                })
            })
            .flatten()
            .filter(|_| readers.get(&act.input[0]).copied() == Some(1));
        let (Some(producer), Some((_, alpha, beta))) = (producer, found) else {
            index += 1;
            continue;
        };
        let act = graph.node.remove(index);
        let p = &mut graph.node[if producer > index { producer - 1 } else { producer }];
        p.attribute.push(string_attr(FUSED_ACTIVATION, &act.op_type));
        p.attribute.push(float_attr(FUSED_ALPHA, alpha));
        p.attribute.push(float_attr(FUSED_BETA, beta));
        p.output[0].clone_from(&act.output[0]);
    }
}
