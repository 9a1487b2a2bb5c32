//! Folds per-channel constant Mul and Add into the NHWC scale-and-shift before them.
//!
//! Caffe2-era exports (the onnx model zoo's DenseNet and Inception) follow each unfolded
//! BatchNormalization with a separate per-channel Mul and Add; together they are still one
//! affine map per channel, so one pass over the tensor does all three.

use crate::proto::onnx::GraphProto;

use super::graph::{FUSED_ACTIVATION, float_initializer, graph_outputs, put_float_initializer, reader_counts};
use super::layout::NHWC_SCALE_SHIFT;

pub(super) fn fold_into_scale_shift(graph: &mut GraphProto) {
    while let Some((producer, follower, factor, offset)) = find(graph) {
        let p = &graph.node[producer];
        let (scale_name, shift_name) = (p.input[1].clone(), p.input[2].clone());
        let (Some((_, mut scale)), Some((_, mut shift))) = (float_initializer(graph, &scale_name), float_initializer(graph, &shift_name)) else {
            return;
        };
        let at = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
        for c in 0..scale.len() {
            scale[c] *= at(&factor, c);
            shift[c] = shift[c] * at(&factor, c) + at(&offset, c);
        }
        // fresh names: another reader may share the old constants
        let tag = &graph.node[follower].output[0];
        let (new_scale, new_shift) = (format!("{tag}__scale"), format!("{tag}__shift"));
        put_float_initializer(graph, &new_scale, &[scale.len()], &scale);
        put_float_initializer(graph, &new_shift, &[shift.len()], &shift);
        // the follower was the producer's only reader: the producer now writes its result
        let result = graph.node.remove(follower).output.swap_remove(0);
        let p = &mut graph.node[if producer > follower { producer - 1 } else { producer }];
        p.input[1] = new_scale;
        p.input[2] = new_shift;
        p.output[0] = result;
    }
}

/// A Mul or Add whose only data input is an unfused scale-and-shift read by nothing else, and
/// whose other input is a per-channel (or single) float constant: `(producer, follower,
/// factor, offset)`.
fn find(graph: &GraphProto) -> Option<(usize, usize, Vec<f32>, Vec<f32>)> {
    let readers = reader_counts(graph);
    let outputs = graph_outputs(graph);
    graph.node.iter().enumerate().find_map(|(follower, node)| {
        let mul = match node.op_type.as_str() {
            "Mul" => true,
            "Add" => false,
            _ => return None,
        };
        if node.input.len() != 2 || !node.domain.is_empty() {
            return None;
        }
        (0..2).find_map(|side| {
            let (value, constant) = (&node.input[side], &node.input[1 - side]);
            let producer = graph.node.iter().position(|n| n.op_type == NHWC_SCALE_SHIFT && n.output.first() == Some(value))?;
            let p = &graph.node[producer];
            if readers.get(value).copied() != Some(1) || outputs.contains(value) || p.attribute.iter().any(|a| a.name == FUSED_ACTIVATION) {
                return None;
            }
            let channels = float_initializer(graph, &p.input[1])?.1.len();
            let (dims, values) = float_initializer(graph, constant)?;
            let per_channel = values.len() == 1 || (values.len() == channels && dims.last() == Some(&channels));
            if !per_channel {
                return None;
            }
            let (factor, offset) = if mul { (values, vec![0.0]) } else { (vec![1.0], values) };
            Some((producer, follower, factor, offset))
        })
    })
}
