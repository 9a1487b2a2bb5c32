//! ModelProto -> Plan. Every failure names the node and op it came from, and all unsupported
//! operators are reported together so one load attempt tells the whole story.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use candle_core::{DType as CDType, Device, Tensor};

use crate::engine::LoadError;
use crate::proto::onnx::tensor_shape_proto::dimension::Value as DimValue;
use crate::proto::onnx::type_proto::Value as TypeValue;
use crate::proto::onnx::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::{DType, Dim, TensorSpec};

use super::attrs::NodeCtx;
use super::ops::{self, OpError, candle_dtype_for_onnx, dtype_for_onnx};
use super::passes;
use super::plan::{Plan, PlanBuilder};
use super::initializer;

pub(crate) struct Imported {
    pub(crate) plan: Plan,
    pub(crate) inputs: Vec<TensorSpec>,
    pub(crate) outputs: Vec<TensorSpec>,
}

/// Takes the model by value: the graph is rewritten in place rather than cloned, and its
/// initializers are drained into tensors, so the protos (views of the file's buffer when loaded
/// from a file) go once the weights are tensors.
pub(crate) fn import(model: ModelProto, device: &Device) -> Result<Imported, LoadError> {
    let target = if device.is_cpu() { passes::Target::Cpu } else { passes::Target::Other };
    import_for(model, device, target)
}

/// [`import`] with the graph passes aimed at `target`: `Other` on the CPU runs the graph as
/// the exporter wrote it, which is how the tests check each CPU rewrite against the original.
pub(crate) fn import_for(model: ModelProto, device: &Device, target: passes::Target) -> Result<Imported, LoadError> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| LoadError::Invalid("model declares no opset for the default ONNX domain".into()))?;
    let mut graph = model.graph.ok_or_else(|| LoadError::Invalid("model has no graph".into()))?;
    check_supported(&graph)?;
    let order = topological_order(&graph)?;
    let mut nodes: Vec<Option<NodeProto>> = std::mem::take(&mut graph.node).into_iter().map(Some).collect();
    graph.node = order.into_iter().filter_map(|i| nodes[i].take()).collect();
    passes::optimize(&mut graph, target)?;

    let mut builder = PlanBuilder::default();
    builder.expect_reads(read_counts(&graph));
    for init in std::mem::take(&mut graph.initializer) {
        builder.add_constant(&init.name, initializer::to_tensor(&init, device)?);
    }
    let graph = &graph;

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

    build_nodes(&mut builder, graph.node.iter(), opset, device)?;

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

/// Resolves each node to a kernel and adds it to `builder`; shared by the main graph and by
/// subgraph bodies, so a body gets the same registry, folding and error context.
///
/// A node with subgraphs (Loop, Scan, If) may read values of this scope by name without listing
/// them as inputs. Those implicit reads are appended to the step's inputs, so slot freeing and
/// constant folding see them like ordinary inputs; the ones already constant here are instead
/// handed to the builder (through [`NodeCtx::implicit`]) to bake into the body as constants.
fn build_nodes<'g>(
    builder: &mut PlanBuilder,
    nodes: impl Iterator<Item = &'g NodeProto>,
    opset: i64,
    device: &Device,
) -> Result<(), LoadError> {
    for node in nodes {
        let label = node_label(node);
        let mut implicit = Vec::new();
        for name in subgraph_reads(node) {
            if !builder.is_defined(&name) {
                let why = format!("a subgraph reads '{name}', which no enclosing graph defines");
                return Err(LoadError::Invalid(why).context(label));
            }
            let value = builder.constant(&name).cloned();
            implicit.push((name, value));
        }
        let ctx = NodeCtx { node, opset, device, implicit: &implicit };
        let build = ops::lookup(&node.op_type)
            .ok_or_else(|| LoadError::UnsupportedOps(vec![label.clone()]))?;
        let op = build(&ctx).map_err(|e| e.context(label.clone()))?;
        let mut inputs = node.input.clone();
        inputs.extend(implicit.into_iter().filter(|(_, value)| value.is_none()).map(|(name, _)| name));
        builder
            .add_node(&node.name, &node.op_type, op, &inputs, &node.output)
            .map_err(|e| e.context(label.clone()))?;
    }
    Ok(())
}

/// A Loop/Scan/If body compiled once at load into its own plan.
///
/// The plan's inputs are the body's formal inputs followed by the node's implicit reads that
/// were not constant at load (in [`NodeCtx::implicit`] order, i.e. the order in which they
/// trail the step's own inputs), so an op passes its trailing inputs through unchanged.
pub(crate) struct Subgraph {
    plan: Plan,
    formal_inputs: usize,
    /// Element type and static shape of each body output, when the graph declares them; only
    /// needed to shape a scan output that got zero iterations.
    output_types: Vec<(CDType, Option<Vec<usize>>)>,
}

impl Subgraph {
    pub(crate) fn formal_inputs(&self) -> usize {
        self.formal_inputs
    }

    pub(crate) fn outputs(&self) -> usize {
        self.output_types.len()
    }

    pub(crate) fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OpError> {
        if inputs.len() != self.plan.input_count() {
            return Err(OpError::Invalid(format!("the body takes {} inputs, got {}", self.plan.input_count(), inputs.len())));
        }
        self.plan.run(inputs).map_err(|e| OpError::Invalid(format!("in the body: {e}")))
    }

    /// The value of scan output `index` after zero iterations: `[0]` inserted at `axis` into
    /// the body output's declared shape (an unknown shape counts as a scalar).
    pub(crate) fn empty_stack(&self, index: usize, axis: usize, device: &Device) -> Result<Tensor, OpError> {
        let (dtype, shape) = self.output_types.get(index).cloned().unwrap_or((CDType::F32, None));
        let mut dims = shape.unwrap_or_default();
        dims.insert(axis.min(dims.len()), 0);
        Ok(Tensor::zeros(dims, dtype, device)?)
    }
}

/// Compiles the graph attribute `attribute` of `ctx`'s node.
pub(crate) fn compile_subgraph(ctx: &NodeCtx<'_>, attribute: &str) -> Result<Subgraph, LoadError> {
    let body = ctx.graph(attribute)?;
    let compile = || -> Result<Subgraph, LoadError> {
        let mut builder = PlanBuilder::default();
        for init in &body.initializer {
            builder.add_constant(&init.name, initializer::to_tensor(init, ctx.device)?);
        }
        let mut input_slots: Vec<usize> = body.input.iter().map(|vi| builder.add_input(&vi.name)).collect();
        for (name, value) in ctx.implicit {
            match value {
                Some(tensor) => builder.add_constant(name, tensor.clone()),
                None => input_slots.push(builder.add_input(name)),
            }
        }
        build_nodes(&mut builder, topological_order(body)?.into_iter().map(|i| &body.node[i]), ctx.opset, ctx.device)?;
        let mut output_slots = Vec::new();
        let mut output_types = Vec::new();
        for vi in &body.output {
            let slot = builder
                .slot(&vi.name)
                .ok_or_else(|| LoadError::Invalid(format!("body output '{}' is never produced", vi.name)))?;
            output_slots.push(slot);
            output_types.push(declared_type(vi));
        }
        Ok(Subgraph { plan: builder.finish(input_slots, output_slots), formal_inputs: body.input.len(), output_types })
    };
    compile().map_err(|e| e.context(format!("attribute '{attribute}'")))
}

/// A value's declared element type (float32 when absent) and its shape if every dim is fixed.
fn declared_type(vi: &ValueInfoProto) -> (CDType, Option<Vec<usize>>) {
    let Some(TypeValue::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return (CDType::F32, None);
    };
    let dtype = candle_dtype_for_onnx(t.elem_type).unwrap_or(CDType::F32);
    let shape = t.shape.as_ref().and_then(|s| {
        s.dim
            .iter()
            .map(|d| match d.value {
                Some(DimValue::DimValue(n)) if n >= 0 => Some(n as usize),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
    });
    (dtype, shape)
}

/// Names a graph reads but does not define (its own inputs, initializers and node outputs
/// are defined), in first-read order: the values it takes from enclosing scopes.
fn free_names(graph: &GraphProto) -> Vec<String> {
    let mut defined: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
    defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    defined.extend(graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)));
    let mut seen = HashSet::new();
    let mut free = Vec::new();
    for node in &graph.node {
        for name in node.input.iter().cloned().chain(subgraph_reads(node)) {
            if !name.is_empty() && !defined.contains(name.as_str()) && seen.insert(name.clone()) {
                free.push(name);
            }
        }
    }
    free
}

/// The outer-scope values a node's subgraphs read (empty for ordinary nodes).
fn subgraph_reads(node: &NodeProto) -> Vec<String> {
    let mut reads: Vec<String> = Vec::new();
    for body in node.attribute.iter().flat_map(|a| a.g.iter().chain(&a.graphs)) {
        for name in free_names(body) {
            if !reads.contains(&name) {
                reads.push(name);
            }
        }
    }
    reads
}

fn node_label(node: &NodeProto) -> String {
    format!("node '{}' ({})", node.name, node.op_type)
}

/// Lists every unsupported operator with the nodes that use it, before any weight is decoded.
/// Subgraph bodies are walked too; their nodes are named `'outer'/'inner'`.
fn check_supported(graph: &GraphProto) -> Result<(), LoadError> {
    fn walk(graph: &GraphProto, prefix: &str, missing: &mut BTreeMap<String, Vec<String>>) {
        for node in &graph.node {
            let foreign = !(node.domain.is_empty() || node.domain == "ai.onnx");
            if foreign || ops::lookup(&node.op_type).is_none() {
                let op = if foreign { format!("{}.{}", node.domain, node.op_type) } else { node.op_type.clone() };
                missing.entry(op).or_default().push(format!("{prefix}'{}'", node.name));
            }
            for body in node.attribute.iter().flat_map(|a| a.g.iter().chain(&a.graphs)) {
                walk(body, &format!("{prefix}'{}'/", node.name), missing);
            }
        }
    }
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    walk(graph, "", &mut missing);
    if missing.is_empty() {
        return Ok(());
    }
    Err(LoadError::UnsupportedOps(
        missing.into_iter().map(|(op, nodes)| format!("{op} (nodes {})", nodes.join(", "))).collect(),
    ))
}

/// How many nodes read each value (subgraph bodies' implicit reads included), with one more
/// for each graph output so those are never dropped.
fn read_counts(graph: &GraphProto) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let names = graph.node.iter().flat_map(|n| n.input.iter().cloned().chain(subgraph_reads(n)));
    for name in names.chain(graph.output.iter().map(|o| o.name.clone())).filter(|n| !n.is_empty()) {
        *counts.entry(name).or_default() += 1;
    }
    counts
}

/// Kahn's algorithm over value names, as indices into `graph.node`; ONNX requires topological
/// order but exporters slip.
fn topological_order(graph: &GraphProto) -> Result<Vec<usize>, LoadError> {
    let produced_by: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().filter(|o| !o.is_empty()).map(move |o| (o.as_str(), i)))
        .collect();
    let mut pending = vec![0usize; graph.node.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, node) in graph.node.iter().enumerate() {
        // A subgraph's implicit reads are dependencies too.
        let deps: HashSet<usize> = node
            .input
            .iter()
            .cloned()
            .chain(subgraph_reads(node))
            .filter_map(|name| produced_by.get(name.as_str()).copied())
            .collect();
        pending[i] = deps.len();
        for d in deps {
            readers[d].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..graph.node.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
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

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::proto::onnx::attribute_proto::AttributeType;
    use crate::proto::onnx::tensor_proto::DataType;
    use crate::proto::onnx::{AttributeProto, OperatorSetIdProto, TensorProto, TypeProto, type_proto};

    fn value(name: &str, elem: DataType) -> ValueInfoProto {
        let tensor = type_proto::Tensor { elem_type: elem as i32, shape: None };
        ValueInfoProto { name: name.into(), r#type: Some(TypeProto { value: Some(TypeValue::TensorType(tensor)), ..Default::default() }), ..Default::default() }
    }

    fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn scalar_f32(name: &str, v: f32) -> TensorProto {
        TensorProto { name: name.into(), data_type: DataType::Float as i32, float_data: vec![v], ..Default::default() }
    }

    /// `acc = 0; for 3 iterations: acc = acc + <outer>`, where the body reads `outer` by name.
    fn loop_model(body_node: NodeProto, outer_is_input: bool) -> ModelProto {
        let body = GraphProto {
            node: vec![body_node, node("pass", "Identity", &["cond_in"], &["cond_out"])],
            input: vec![value("i", DataType::Int64), value("cond_in", DataType::Bool), value("acc_in", DataType::Float)],
            output: vec![value("cond_out", DataType::Bool), value("acc_out", DataType::Float)],
            ..Default::default()
        };
        let mut looped = node("loop", "Loop", &["M", "", "acc0"], &["acc"]);
        looped.attribute.push(AttributeProto { name: "body".into(), r#type: AttributeType::Graph as i32, g: Some(body), ..Default::default() });
        let mut initializer = vec![
            TensorProto { name: "M".into(), data_type: DataType::Int64 as i32, int64_data: vec![3], ..Default::default() },
            scalar_f32("acc0", 0.0),
        ];
        let mut input = vec![value("x", DataType::Float)];
        if outer_is_input {
            input.push(value("outer", DataType::Float));
        } else {
            initializer.push(scalar_f32("outer", 2.5));
        }
        let graph = GraphProto {
            node: vec![looped, node("use_x", "Add", &["acc", "x"], &["y"])],
            input,
            output: vec![value("y", DataType::Float)],
            initializer,
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 16 }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn run(imported: &Imported, inputs: &[f32]) -> f32 {
        let tensors = inputs.iter().map(|&v| Tensor::new(v, &Device::Cpu).expect("scalar")).collect();
        let out = imported.plan.run(tensors).expect("run");
        out[0].to_scalar::<f32>().expect("f32 scalar")
    }

    #[test]
    fn unsupported_ops_inside_a_body_are_listed_with_their_path() {
        let model = loop_model(node("frob", "Frobnicate", &["acc_in", "outer"], &["acc_out"]), false);
        let err = import(model, &Device::Cpu).err().expect("must fail").to_string();
        assert!(err.contains("Frobnicate (nodes 'loop'/'frob')"), "{err}");
    }

    #[test]
    fn a_body_reading_a_request_value_makes_it_an_input_of_the_loop_step() {
        let model = loop_model(node("add", "Add", &["acc_in", "outer"], &["acc_out"]), true);
        let imported = import(model, &Device::Cpu).expect("load");
        assert_eq!(imported.plan.step_ops(), ["Loop", "Add"]);
        assert_eq!(run(&imported, &[1.0, 0.5]), 2.5); // 3 * 0.5 + 1
    }

    #[test]
    fn a_loop_whose_inputs_and_outer_reads_are_constant_folds_away() {
        let model = loop_model(node("add", "Add", &["acc_in", "outer"], &["acc_out"]), false);
        let imported = import(model, &Device::Cpu).expect("load");
        assert_eq!(imported.plan.step_ops(), ["Add"]);
        assert_eq!(run(&imported, &[1.0]), 8.5); // 3 * 2.5 + 1
    }

    #[test]
    fn a_body_reading_an_undefined_name_fails_to_load() {
        let model = loop_model(node("add", "Add", &["acc_in", "nowhere"], &["acc_out"]), false);
        let err = import(model, &Device::Cpu).err().expect("must fail").to_string();
        assert!(err.contains("'nowhere'"), "{err}");
    }
}
