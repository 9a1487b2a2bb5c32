//! Graph rewrites between decoding and planning. Each pass is a small, separately tested
//! transformation of the ONNX graph itself, so the planner and the ops never see a difference
//! between a rewritten node and one an exporter wrote, and a pass that does not apply leaves
//! the graph untouched.
//!
//! Order matters: BatchNormalization and a following bias Add fold into the Conv before the
//! Conv changes layout, activations fuse into whichever conv survived, and
//! only then does a max pool join its conv (the activation runs before the pool), and the 1x1
//! convs around a depthwise conv join it (each carries its activation by then).

mod affine;
mod batchnorm;
mod constants;
mod bias;
mod dense;
mod inverted_residual;
mod fuse;
mod graph;
mod identity;
mod layout;
mod max_pool;
mod pad;
mod residual;
mod shapes;
mod shuffle;
mod simplify;
mod transpose;

use crate::engine::LoadError;
use crate::proto::onnx::GraphProto;

pub(crate) use graph::{EXPAND_ACTIVATION, EXPAND_ALPHA, EXPAND_BETA, FUSED_ACTIVATION, FUSED_ALPHA, FUSED_BETA, FUSED_MAX_POOL, PROJECT_ACTIVATION, PROJECT_ALPHA, PROJECT_BETA};

/// What the graph will run on; the layout pass targets the CPU kernels only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Cpu,
    Other,
}

/// Rewrites `graph` in place. `graph.node` must already be in topological order.
pub(crate) fn optimize(graph: &mut GraphProto, target: Target) -> Result<(), LoadError> {
    identity::remove(graph);
    constants::fold_shape_ops(graph);
    batchnorm::fold_into_conv(graph)?;
    bias::into_conv(graph);
    pad::into_conv(graph);
    if target == Target::Cpu {
        shuffle::channel_shuffles(graph);
        layout::convs_to_nhwc(graph)?;
        affine::fold_into_scale_shift(graph);
        residual::into_conv(graph);
        transpose::cancel_pairs(graph);
        simplify::reshapes(graph);
        dense::matmul_bias(graph);
    }
    fuse::activations(graph);
    if target == Target::Cpu {
        max_pool::into_conv(graph);
        inverted_residual::join_expansions(graph);
        inverted_residual::join_projections(graph);
    }
    graph::remove_dead_nodes(graph);
    Ok(())
}
