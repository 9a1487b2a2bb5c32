//! Fuses a pointwise activation into the conv or GEMM that feeds it, so the activation runs on
//! each output chunk while it is still in cache instead of as another pass over the tensor.

use crate::engine::kernels::Activation;
use crate::proto::onnx::GraphProto;

use super::graph::{FUSED_ACTIVATION, FUSED_ALPHA, attr, float_attr, reader_counts, string_attr};
use super::layout::NHWC_CONV;

/// Ops whose builders honour [`FUSED_ACTIVATION`].
const PRODUCERS: &[&str] = &[NHWC_CONV];

pub(super) fn activations(graph: &mut GraphProto) {
    let readers = reader_counts(graph);
    let mut index = 0;
    while index < graph.node.len() {
        let act = &graph.node[index];
        let alpha = attr(act, "alpha").map_or(0.01, |a| a.f);
        let fusible = Activation::from_onnx(&act.op_type, alpha).is_some() && act.input.len() == 1 && act.output.len() == 1;
        let producer = fusible
            .then(|| {
                graph.node.iter().position(|p| {
                    PRODUCERS.contains(&p.op_type.as_str())
                        && p.output.first() == act.input.first()
                        && attr(p, FUSED_ACTIVATION).is_none()
                })
            })
            .flatten()
            .filter(|_| readers.get(&act.input[0]).copied() == Some(1));
        let Some(producer) = producer else {
            index += 1;
            continue;
        };
        let act = graph.node.remove(index);
        let p = &mut graph.node[if producer > index { producer - 1 } else { producer }];
        p.attribute.push(string_attr(FUSED_ACTIVATION, &act.op_type));
        if act.op_type == "LeakyRelu" {
            p.attribute.push(float_attr(FUSED_ALPHA, alpha));
        }
        p.output[0].clone_from(&act.output[0]);
    }
}
