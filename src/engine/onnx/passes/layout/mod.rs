//! Runs conv stacks in NHWC on the CPU.
//!
//! ONNX convs are NCHW, where one pixel's channels are `H*W` floats apart; the NHWC kernels
//! want them adjacent (see engine::kernels). This pass rewrites every 2-D Conv with constant
//! weights, and every 2-D MaxPool/AveragePool, to an internal NHWC op, and lets the ops between
//! them follow their input's layout (`follow.rs`): pointwise ops, per-channel constants,
//! Concat, Pad, reductions and inference BatchNormalization, so a whole ResNet, DenseNet or
//! MobileNet has no transposes inside. Values keep their NCHW name for readers that still
//! need it; the NHWC version is a separate value `<name>__nhwc`, with a Transpose inserted only
//! where a layout boundary is crossed. Adjacent boundary transposes cancel in the next pass
//! (tf2onnx's NHWC->NCHW->NHWC sandwiches around Keras conv stacks vanish entirely).

use std::collections::{HashMap, HashSet};

use crate::engine::LoadError;
use crate::proto::onnx::{GraphProto, NodeProto};

use super::graph::{attr, float_dims, float_initializer_to_rewrite, ints_attr, put_float_initializer, reader_counts};

mod follow;

pub(crate) use follow::NHWC_SCALE_SHIFT;

/// Internal op names. They cannot clash with ONNX ops, which never start with `_`.
pub(crate) const NHWC_CONV: &str = "_NhwcConv";
pub(crate) const NHWC_MAX_POOL: &str = "_NhwcMaxPool";
pub(crate) const NHWC_AVERAGE_POOL: &str = "_NhwcAveragePool";
pub(crate) const NHWC_GLOBAL_AVERAGE_POOL: &str = "_NhwcGlobalAveragePool";
pub(crate) const NHWC_GLOBAL_MAX_POOL: &str = "_NhwcGlobalMaxPool";

const TO_NHWC: [i64; 4] = [0, 2, 3, 1];
const TO_NCHW: [i64; 4] = [0, 3, 1, 2];

pub(super) fn convs_to_nhwc(graph: &mut GraphProto) -> Result<(), LoadError> {
    // counted before the nodes move: a conv that alone reads its weights replaces them
    let readers = reader_counts(graph);
    let old_nodes = std::mem::take(&mut graph.node);
    let mut out: Vec<NodeProto> = Vec::with_capacity(old_nodes.len());
    // NCHW name -> its NHWC value, for every value that exists in NHWC
    let mut nhwc: HashMap<String, String> = HashMap::new();
    // values computed only in NHWC so far; a reader that needs NCHW gets a Transpose back
    let mut nchw_missing: HashSet<String> = HashSet::new();

    for mut node in old_nodes {
        match classify(graph, &node, &nhwc) {
            Kind::Keep => {
                // bodies of Loop/Scan/If read outer values by name
                let captured = node.attribute.iter().flat_map(|a| a.g.iter().chain(&a.graphs)).flat_map(|g| reader_counts(g).into_keys());
                for input in node.input.iter().cloned().chain(captured).collect::<Vec<_>>() {
                    restore(&mut out, &nhwc, &mut nchw_missing, &input);
                }
                out.push(node);
            }
            Kind::Follow(rewrite) => {
                follow::apply(graph, &mut node, rewrite);
                node.input = node.input.iter().map(|i| nhwc.get(i).cloned().unwrap_or_else(|| i.clone())).collect();
                if rewrite.output_is_nhwc() {
                    let name = node.output[0].clone();
                    node.output[0] = format!("{name}__nhwc");
                    nhwc.insert(name.clone(), node.output[0].clone());
                    nchw_missing.insert(name);
                }
                out.push(node);
            }
            Kind::Spatial(op) => {
                let input = node.input[0].clone();
                let source = match nhwc.get(&input) {
                    Some(v) => v.clone(),
                    None => {
                        let v = format!("{input}__nhwc");
                        out.push(transpose(&format!("{input}__to_nhwc"), &input, &v, &TO_NHWC));
                        nhwc.insert(input.clone(), v.clone());
                        v
                    }
                };
                let name = node.output[0].clone();
                node.op_type = op.into();
                node.input[0] = source;
                node.output[0] = format!("{name}__nhwc");
                if op == NHWC_CONV {
                    let sole_reader = readers.get(&node.input[1]).copied() == Some(1);
                    repack_conv_weights(graph, &mut node, sole_reader)?;
                }
                nhwc.insert(name.clone(), node.output[0].clone());
                nchw_missing.insert(name);
                out.push(node);
            }
        }
    }
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    for name in &outputs {
        restore(&mut out, &nhwc, &mut nchw_missing, name);
    }
    graph.node = out;
    Ok(())
}

enum Kind {
    Keep,
    /// Reads NHWC values as they are, once `follow::apply` has rewritten its axes and constants.
    Follow(follow::Rewrite),
    Spatial(&'static str),
}

fn classify(graph: &GraphProto, node: &NodeProto, nhwc: &HashMap<String, String>) -> Kind {
    // Every rewrite reads input 0 and renames output 0. A malformed node without them stays
    // as it is, and its op builder then refuses it with the node's name.
    if node.input.first().is_none_or(|i| i.is_empty()) || node.output.len() != 1 {
        return Kind::Keep;
    }
    let is_2d = |name: &str| attr(node, name).is_none_or(|a| a.ints.len() == 2);
    let first_nhwc = node.input.first().is_some_and(|i| nhwc.contains_key(i));
    match node.op_type.as_str() {
        "Conv" if node.domain.is_empty() && node.output.len() == 1 => {
            let weights = node.input.get(1).and_then(|w| float_dims(graph, w));
            let bias_ok = node.input.get(2).is_none_or(|b| b.is_empty() || float_dims(graph, b).is_some());
            match weights {
                Some(dims) if dims.len() == 4 && bias_ok && is_2d("kernel_shape") => Kind::Spatial(NHWC_CONV),
                _ => Kind::Keep,
            }
        }
        "MaxPool" if node.output.len() == 1 && is_2d("kernel_shape") && attr(node, "kernel_shape").is_some() => {
            Kind::Spatial(NHWC_MAX_POOL)
        }
        "AveragePool" if is_2d("kernel_shape") && attr(node, "kernel_shape").is_some() => Kind::Spatial(NHWC_AVERAGE_POOL),
        // global pools only pay off when their input is NHWC already
        "GlobalAveragePool" if first_nhwc => Kind::Spatial(NHWC_GLOBAL_AVERAGE_POOL),
        "GlobalMaxPool" if first_nhwc => Kind::Spatial(NHWC_GLOBAL_MAX_POOL),
        _ => follow::rule(graph, node, nhwc).map_or(Kind::Keep, Kind::Follow),
    }
}

/// Emits `Transpose(<name>__nhwc) -> <name>` the first time an NCHW reader needs a value that
/// so far only exists in NHWC.
fn restore(out: &mut Vec<NodeProto>, nhwc: &HashMap<String, String>, nchw_missing: &mut HashSet<String>, name: &str) {
    if let Some(source) = nhwc.get(name).filter(|_| nchw_missing.remove(name)) {
        out.push(transpose(&format!("{name}__to_nchw"), source, name, &TO_NCHW));
    }
}

fn transpose(name: &str, input: &str, output: &str, perm: &[i64; 4]) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: "Transpose".into(),
        input: vec![input.into()],
        output: vec![output.into()],
        attribute: vec![ints_attr("perm", perm)],
        ..Default::default()
    }
}

/// OIHW -> HWIO, the layout whose rows are im2col patches; a missing bias becomes zeros so the
/// kernel always adds one. `sole_reader`: nothing else reads the OIHW weights, which then go.
fn repack_conv_weights(graph: &mut GraphProto, node: &mut NodeProto, sole_reader: bool) -> Result<(), LoadError> {
    let Some((dims, w)) = float_initializer_to_rewrite(graph, &node.input[1], sole_reader) else {
        return Err(LoadError::Invalid("conv weights vanished during the layout pass".into()));
    };
    let [o, i, h, k] = [dims[0], dims[1], dims[2], dims[3]];
    let mut hwio = vec![0.0f32; w.len()];
    for oc in 0..o {
        for ic in 0..i {
            for y in 0..h {
                for x in 0..k {
                    hwio[((y * k + x) * i + ic) * o + oc] = w[((oc * i + ic) * h + y) * k + x];
                }
            }
        }
    }
    drop(w);
    let base = node.output[0].trim_end_matches("__nhwc").to_string();
    let w_name = format!("{base}__hwio");
    put_float_initializer(graph, &w_name, &[h, k, i, o], &hwio);
    let b_name = match node.input.get(2).filter(|b| !b.is_empty()) {
        Some(b) => b.clone(),
        None => {
            let b = format!("{base}__zero_bias");
            put_float_initializer(graph, &b, &[o], &vec![0.0; o]);
            b
        }
    };
    node.input.truncate(1);
    node.input.extend([w_name, b_name]);
    if attr(node, "kernel_shape").is_none() {
        node.attribute.push(ints_attr("kernel_shape", &[h as i64, k as i64]));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
