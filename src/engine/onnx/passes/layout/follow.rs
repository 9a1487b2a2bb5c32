//! Which ops may read NHWC values directly, and how their attributes and constants change.
//!
//! Every op here either computes the same thing in any axis order (elementwise ops), or names
//! axes that are easy to renumber (Concat, Pad, reductions), or is a per-channel affine map
//! that becomes one fused NHWC scale-and-shift (inference BatchNormalization that no conv
//! absorbed, such as DenseNet's BN-ReLU before each conv), or normalises across channels (LRN,
//! which has an NHWC kernel). Keeping them in NHWC is what removes the transposes a whole
//! network would otherwise pay around each of them.

use std::collections::HashMap;

use crate::proto::onnx::{GraphProto, NodeProto};

use super::super::batchnorm::inference_affine;
use super::super::shuffle::CHANNEL_SHUFFLE;
use super::super::graph::{attr, constant_ints, float_initializer, initializer, int_attr, ints_attr, put_float_initializer, put_int_initializer};

/// `y = x * scale[c] + shift[c]` over NHWC `x`, with an optional fused activation: the form
/// an unfolded BatchNormalization takes, and where following per-channel Mul/Add fold in.
pub(crate) const NHWC_SCALE_SHIFT: &str = "_NhwcScaleShift";

/// ONNX's LRN over the channels of an NHWC value (the last axis rather than axis 1).
pub(crate) const NHWC_LRN: &str = "_NhwcLrn";

/// Where NCHW axis `a` sits in NHWC.
const NHWC_POSITION: [usize; 4] = [0, 3, 1, 2];

const UNARY: &[&str] = &[
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus", "Softsign",
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf", "Identity", "Dropout", "Reciprocal", "Floor", "Ceil", "Round", "Sign",
];

/// Elementwise ops with numpy broadcasting: constants that broadcast over NCHW get NHWC copies.
const BROADCAST: &[&str] = &["Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Pow", "PRelu"];

const REDUCE: &[&str] = &["ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum"];

#[derive(Debug, Clone, Copy)]
pub(super) enum Rewrite {
    Pointwise,
    Broadcast,
    Concat,
    Pad,
    ChannelShuffle,
    /// `keep_dims == false` gives a value whose axis order is the same in both layouts.
    Reduce { keep_dims: bool },
    BatchNorm,
    Lrn,
}

impl Rewrite {
    pub(super) fn output_is_nhwc(self) -> bool {
        !matches!(self, Self::Reduce { keep_dims: false })
    }
}

pub(super) fn rule(graph: &GraphProto, node: &NodeProto, nhwc: &HashMap<String, String>) -> Option<Rewrite> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return None;
    }
    let is_nhwc = |name: &String| nhwc.contains_key(name);
    let op = node.op_type.as_str();
    if UNARY.contains(&op) {
        // Clip's min/max are scalars; they stay as they are
        return is_nhwc(&node.input[0]).then_some(Rewrite::Pointwise);
    }
    if BROADCAST.contains(&op) {
        let mut any = false;
        for input in &node.input {
            if is_nhwc(input) {
                any = true;
            } else if !broadcast_constant(graph, input) {
                return None;
            }
        }
        return any.then_some(Rewrite::Broadcast);
    }
    match op {
        CHANNEL_SHUFFLE if is_nhwc(&node.input[0]) => Some(Rewrite::ChannelShuffle),
        "Concat" => {
            let axis = attr(node, "axis")?.i;
            (matches!(axis, 1 | -3) && node.input.iter().all(is_nhwc)).then_some(Rewrite::Concat)
        }
        "Pad" if is_nhwc(&node.input[0]) && node.input.len() <= 3 => {
            let mode_ok = attr(node, "mode").is_none_or(|m| matches!(m.s.as_slice(), b"constant" | b"reflect" | b"edge"));
            (mode_ok && pads(graph, node).is_some_and(|p| p.len() == 8)).then_some(Rewrite::Pad)
        }
        op if REDUCE.contains(&op) && is_nhwc(&node.input[0]) => {
            let axes = reduce_axes(graph, node)?;
            let keep_dims = attr(node, "keepdims").is_none_or(|k| k.i != 0);
            // without kept dims the surviving axes keep their relative order in both layouts
            // unless the channel axis survives next to a spatial one
            let order_agrees = axes.contains(&1) || (axes.contains(&2) && axes.contains(&3));
            (keep_dims || order_agrees).then_some(Rewrite::Reduce { keep_dims })
        }
        "LRN" if is_nhwc(&node.input[0]) => Some(Rewrite::Lrn),
        "BatchNormalization" if is_nhwc(&node.input[0]) && node.input.len() == 5 => {
            inference_affine(graph, node).map(|_| Rewrite::BatchNorm)
        }
        _ => None,
    }
}

/// Rewrites axes and constants in `node` for NHWC inputs (the caller renames the inputs).
pub(super) fn apply(graph: &mut GraphProto, node: &mut NodeProto, rewrite: Rewrite) {
    match rewrite {
        Rewrite::Pointwise => {}
        Rewrite::Broadcast => {
            for input in &mut node.input {
                if let Some(name) = nhwc_constant(graph, input) {
                    *input = name;
                }
            }
        }
        Rewrite::Concat => set_int(node, "axis", 3),
        Rewrite::ChannelShuffle => node.attribute.push(int_attr("channels_last", 1)),
        Rewrite::Lrn => node.op_type = NHWC_LRN.into(),
        Rewrite::Pad => {
            let Some(p) = pads(graph, node) else { return };
            let permuted: Vec<i64> = [0, 2, 3, 1, 4, 6, 7, 5].iter().map(|&i| p[i]).collect();
            if node.input.len() >= 2 && !node.input[1].is_empty() {
                let name = format!("{}__nhwc_pads", node.output[0]);
                put_int_initializer(graph, &name, &permuted);
                node.input[1] = name;
            } else {
                node.attribute.retain(|a| a.name != "pads");
                node.attribute.push(ints_attr("pads", &permuted));
            }
        }
        Rewrite::Reduce { .. } => {
            let Some(axes) = reduce_axes(graph, node) else { return };
            let mut moved: Vec<i64> = axes.iter().map(|&a| NHWC_POSITION[a] as i64).collect();
            moved.sort_unstable();
            if attr(node, "axes").is_some() {
                node.attribute.retain(|a| a.name != "axes");
                node.attribute.push(ints_attr("axes", &moved));
            } else {
                let name = format!("{}__nhwc_axes", node.output[0]);
                put_int_initializer(graph, &name, &moved);
                node.input[1] = name;
            }
        }
        Rewrite::BatchNorm => {
            let Some((scale, shift)) = inference_affine(graph, node) else { return };
            let base = node.output[0].clone();
            let (scale_name, shift_name) = (format!("{base}__bn_scale"), format!("{base}__bn_shift"));
            put_float_initializer(graph, &scale_name, &[scale.len()], &scale);
            put_float_initializer(graph, &shift_name, &[shift.len()], &shift);
            node.op_type = NHWC_SCALE_SHIFT.into();
            node.input = vec![node.input[0].clone(), scale_name, shift_name];
            node.attribute.clear();
        }
    }
}

/// A constant operand an elementwise op can take in NHWC: one value of any type, or a float
/// tensor of rank <= 4 (numpy broadcasting aligns it to the trailing NCHW axes).
fn broadcast_constant(graph: &GraphProto, name: &str) -> bool {
    let Some(t) = initializer(graph, name) else { return false };
    let count: i64 = t.dims.iter().product();
    count == 1 || (t.dims.len() <= 4 && float_initializer(graph, name).is_some())
}

/// The NHWC copy of a broadcast constant, or `None` when it reads the same in both layouts.
fn nhwc_constant(graph: &mut GraphProto, name: &str) -> Option<String> {
    let (dims, values) = float_initializer(graph, name)?;
    if values.len() <= 1 {
        return None;
    }
    let mut d4 = [1usize; 4];
    d4[4 - dims.len()..].copy_from_slice(&dims);
    let [n, c, h, w] = d4;
    let copy = format!("{name}__nhwc_const");
    if initializer(graph, &copy).is_none() {
        let mut out = vec![0.0f32; values.len()];
        for (i, &v) in values.iter().enumerate() {
            let (x, rest) = (i % w, i / w);
            let (y, rest) = (rest % h, rest / h);
            let (ch, b) = (rest % c, rest / c);
            out[((b * h + y) * w + x) * c + ch] = v;
        }
        put_float_initializer(graph, &copy, &[n, h, w, c], &out);
    }
    Some(copy)
}

fn pads(graph: &GraphProto, node: &NodeProto) -> Option<Vec<i64>> {
    match node.input.get(1).filter(|p| !p.is_empty()) {
        Some(name) => constant_ints(graph, name),
        None => attr(node, "pads").map(|a| a.ints.clone()),
    }
}

/// The reduced NCHW axes, normalised to 0..4; `None` when they are not known at load time or
/// not all given (reducing every axis by default is left to the NCHW op).
fn reduce_axes(graph: &GraphProto, node: &NodeProto) -> Option<Vec<usize>> {
    let axes = match attr(node, "axes") {
        Some(a) => a.ints.clone(),
        None => constant_ints(graph, node.input.get(1).filter(|a| !a.is_empty())?)?,
    };
    let axes: Option<Vec<usize>> = axes.iter().map(|&a| usize::try_from(if a < 0 { a + 4 } else { a }).ok().filter(|&a| a < 4)).collect();
    axes.filter(|a| !a.is_empty())
}

fn set_int(node: &mut NodeProto, name: &str, value: i64) {
    if let Some(a) = node.attribute.iter_mut().find(|a| a.name == name) {
        a.i = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::TensorProto;

    #[test]
    fn channel_constants_move_to_the_last_axis() {
        let mut graph = GraphProto::default();
        // [C=2, 1, 3]: broadcasts over N and H of an NCHW value with W = 3
        put_float_initializer(&mut graph, "k", &[2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let name = nhwc_constant(&mut graph, "k").expect("a copy");
        let (dims, values) = float_initializer(&graph, &name).expect("float");
        assert_eq!(dims, vec![1, 1, 3, 2]);
        assert_eq!(values, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // a scalar reads the same in both layouts
        graph.initializer.push(TensorProto { name: "s".into(), data_type: 7, int64_data: vec![2], ..Default::default() });
        assert!(broadcast_constant(&graph, "s"));
        assert_eq!(nhwc_constant(&mut graph, "s"), None);
    }
}
