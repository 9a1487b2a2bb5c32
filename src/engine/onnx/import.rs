//! ModelProto -> Plan. Every failure names the node and op it came from, and all unsupported
//! operators are reported together so one load attempt tells the whole story.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use candle_core::Device;

use crate::engine::LoadError;
use crate::proto::onnx::tensor_shape_proto::dimension::Value as DimValue;
use crate::proto::onnx::type_proto::Value as TypeValue;
use crate::proto::onnx::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::{DType, Dim, TensorSpec};

use super::attrs::NodeCtx;
use super::ops::{self, dtype_for_onnx};
use super::passes;
use super::plan::{Plan, PlanBuilder};
use super::initializer;

pub(crate) struct Imported {
    pub(crate) plan: Plan,
    pub(crate) inputs: Vec<TensorSpec>,
    pub(crate) outputs: Vec<TensorSpec>,
}

pub(crate) fn import(model: &ModelProto, device: &Device) -> Result<Imported, LoadError> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| LoadError::Invalid("model declares no opset for the default ONNX domain".into()))?;
    let original = model.graph.as_ref().ok_or_else(|| LoadError::Invalid("model has no graph".into()))?;
    check_supported(original)?;
    let mut graph = original.clone();
    graph.node = topological_order(original)?.into_iter().cloned().collect();
    let target = if device.is_cpu() { passes::Target::Cpu } else { passes::Target::Other };
    passes::optimize(&mut graph, target)?;
    let graph = &graph;

    let mut builder = PlanBuilder::default();
    for init in &graph.initializer {
        builder.add_constant(&init.name, initializer::to_tensor(init, device)?);
    }

    let mut inputs = Vec::new();
    let mut input_slots = Vec::new();
    for vi in &graph.input {
        if builder.is_defined(&vi.name) {
            continue; // an initializer listed as input (IR < 4): a constant, not a request input
        }
        let spec = value_spec(vi).map_err(|e| e.context(format!("graph input '{}'", vi.name)))?;
        if crate::engine::convert::candle_dtype(spec.dtype).is_none() && spec.dtype != DType::Bool {
            return Err(LoadError::Invalid(format!("graph input '{}' has dtype {}, which the engine cannot take", vi.name, spec.dtype)));
        }
        input_slots.push(builder.add_input(&vi.name));
        inputs.push(spec);
    }

    for node in &graph.node {
        let label = node_label(node);
        let ctx = NodeCtx { node, opset, device };
        let build = ops::lookup(&node.op_type)
            .ok_or_else(|| LoadError::UnsupportedOps(vec![label.clone()]))?;
        let op = build(&ctx).map_err(|e| e.context(label.clone()))?;
        builder
            .add_node(&node.name, &node.op_type, op, &node.input, &node.output)
            .map_err(|e| e.context(label.clone()))?;
    }

    let mut outputs = Vec::new();
    let mut output_slots = Vec::new();
    for vi in &graph.output {
        let spec = value_spec(vi).map_err(|e| e.context(format!("graph output '{}'", vi.name)))?;
        let slot = builder
            .slot(&vi.name)
            .ok_or_else(|| LoadError::Invalid(format!("graph output '{}' is never produced", vi.name)))?;
        output_slots.push(slot);
        outputs.push(spec);
    }
    if outputs.is_empty() {
        return Err(LoadError::Invalid("graph has no outputs".into()));
    }
    Ok(Imported { plan: builder.finish(input_slots, output_slots), inputs, outputs })
}

fn node_label(node: &NodeProto) -> String {
    format!("node '{}' ({})", node.name, node.op_type)
}

/// Lists every unsupported operator with the nodes that use it, before any weight is decoded.
fn check_supported(graph: &GraphProto) -> Result<(), LoadError> {
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in &graph.node {
        let foreign = !(node.domain.is_empty() || node.domain == "ai.onnx");
        if foreign || ops::lookup(&node.op_type).is_none() {
            let op = if foreign { format!("{}.{}", node.domain, node.op_type) } else { node.op_type.clone() };
            missing.entry(op).or_default().push(format!("'{}'", node.name));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(LoadError::UnsupportedOps(
        missing.into_iter().map(|(op, nodes)| format!("{op} (nodes {})", nodes.join(", "))).collect(),
    ))
}

/// Kahn's algorithm over value names; ONNX requires topological order but exporters slip.
fn topological_order(graph: &GraphProto) -> Result<Vec<&NodeProto>, LoadError> {
    let produced_by: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().filter(|o| !o.is_empty()).map(move |o| (o.as_str(), i)))
        .collect();
    let mut pending = vec![0usize; graph.node.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, node) in graph.node.iter().enumerate() {
        let deps: HashSet<usize> = node.input.iter().filter_map(|name| produced_by.get(name.as_str()).copied()).collect();
        pending[i] = deps.len();
        for d in deps {
            readers[d].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..graph.node.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_front() {
        order.push(&graph.node[i]);
        for &r in &readers[i] {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.push_back(r);
            }
        }
    }
    if order.len() != graph.node.len() {
        return Err(LoadError::Invalid("graph has a cycle".into()));
    }
    Ok(order)
}

fn value_spec(vi: &ValueInfoProto) -> Result<TensorSpec, LoadError> {
    let tensor = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t,
        _ => return Err(LoadError::Invalid("only tensor-typed inputs and outputs are supported".into())),
    };
    let dtype = dtype_for_onnx(tensor.elem_type)
        .ok_or_else(|| LoadError::Invalid(format!("element type {} is not supported", tensor.elem_type)))?;
    let shape = tensor.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match d.value {
                Some(DimValue::DimValue(n)) if n > 0 => Dim::Fixed(n as usize),
                _ => Dim::Dynamic,
            })
            .collect()
    });
    Ok(TensorSpec { key: signature_key(&vi.name), dtype, shape })
}

/// TF-exported graphs name tensors `x:0`; clients use the bare alias.
fn signature_key(name: &str) -> String {
    name.strip_suffix(":0").unwrap_or(name).to_string()
}
