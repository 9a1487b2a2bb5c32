//! Which checkpoint key holds each variable a signature's function captures, the way TF2
//! binds them (`tf.saved_model.load`): the outer call node's function, its
//! `bound_inputs` in the SavedModel's object graph, and the checkpoint's own object graph
//! (`_CHECKPOINTABLE_OBJECT_GRAPH`) for the keys. The two object graphs are matched by walking
//! both from the root along children's local names, as TF's C++ loader does, rather than by
//! node id. Matching by variable name alone is ambiguous: Keras 3 stores every weight twice.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use prost::Message;

use crate::proto::tensorflow::attr_value::Value as AttrValue;
use crate::proto::tensorflow::saved_object::Kind;
use crate::proto::tensorflow::{MetaGraphDef, NodeDef, SavedObjectGraph, TrackableObjectGraph};
use crate::tensor::DType;

use super::meta_graph::tensor_name;
use super::{Bundle, SavedModelError};

const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";
const VARIABLE_VALUE: &str = "VARIABLE_VALUE";

/// One captured variable of a signature's function (captured constants need no binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The outer graph's input of the call node (a VarHandleOp), in call order.
    pub handle: String,
    pub checkpoint_key: String,
    pub dtype: DType,
}

/// The outer graph's node a signature's outputs come from (every output of a TF2 signature
/// comes from the same call node), and the function it calls.
pub fn signature_call<'m>(meta: &'m MetaGraphDef, signature: &str) -> Result<(&'m NodeDef, String), SavedModelError> {
    let unsupported = |what: String| SavedModelError::Unsupported(format!("signature {signature:?}: {what}"));
    let def = meta.signature_def.get(signature).ok_or_else(|| unsupported("no such signature".into()))?;
    let graph = meta.graph_def.as_ref().ok_or_else(|| unsupported("the meta graph has no graph".into()))?;
    let output = def.outputs.values().next().ok_or_else(|| unsupported("has no outputs".into()))?;
    let (call_name, _) = tensor_name(output).ok_or_else(|| unsupported("an output is not a named tensor".into()))?;
    let call = graph.node.iter().find(|n| n.name == call_name).ok_or_else(|| unsupported(format!("no node {call_name:?} in the graph")))?;
    match call.attr.get("f").and_then(|a| a.value.as_ref()) {
        Some(AttrValue::Func(f)) if matches!(call.op.as_str(), "StatefulPartitionedCall" | "PartitionedCall") => Ok((call, f.name.clone())),
        _ => Err(unsupported(format!("output node {call_name:?} ({}) is not a function call", call.op))),
    }
}

/// The function a signature calls and the variables it captures, in the order of the
/// function's trailing inputs.
pub fn captures(meta: &MetaGraphDef, bundle: &Bundle, signature: &str) -> Result<(String, Vec<Capture>), SavedModelError> {
    let unsupported = |what: String| SavedModelError::Unsupported(format!("signature {signature:?}: {what}"));
    let (call, function) = signature_call(meta, signature)?;
    let objects = meta.object_graph_def.as_ref().filter(|g| !g.nodes.is_empty()).ok_or_else(|| {
        unsupported("the meta graph has no object graph (a TF1 export, whose variables are bound through its restore op)".into())
    })?;
    let bound = objects
        .concrete_functions
        .get(&function)
        .map(|f| f.bound_inputs.clone())
        .ok_or_else(|| unsupported(format!("the object graph does not describe function {function:?}")))?;
    let data_inputs: Vec<&String> = call.input.iter().filter(|i| !i.starts_with('^')).collect();
    if bound.len() > data_inputs.len() {
        return Err(unsupported(format!("{function:?} binds {} captures but its call has {} inputs", bound.len(), data_inputs.len())));
    }
    let handles = &data_inputs[data_inputs.len() - bound.len()..];

    let checkpoint_graph = checkpoint_object_graph(bundle)?;
    let matched = match_object_graphs(objects, &checkpoint_graph);
    let mut out = Vec::with_capacity(bound.len());
    for (&id, handle) in bound.iter().zip(handles) {
        let node = usize::try_from(id).ok().and_then(|i| objects.nodes.get(i)).ok_or_else(|| unsupported(format!("capture {id} is not an object")))?;
        let variable = match &node.kind {
            Some(Kind::Variable(v)) => v,
            // A captured constant (a Normalization layer's mean) is an outer-graph Const node
            // feeding the call: the translation reads it as any other Const.
            Some(Kind::Constant(_)) => continue,
            Some(other) => return Err(unsupported(format!("captures {} (object {id}), which is not supported yet", kind_name(other)))),
            None => return Err(unsupported(format!("captures object {id} of no kind"))),
        };
        let key = matched
            .get(&(id as usize))
            .and_then(|&t| checkpoint_graph.nodes.get(t))
            .and_then(|t| t.attributes.iter().find(|a| a.name == VARIABLE_VALUE))
            .map(|a| a.checkpoint_key.clone())
            .ok_or_else(|| unsupported(format!("variable {:?} (object {id}) has no value in the checkpoint", variable.name)))?;
        let dtype = crate::tensor::tf_proto::dtype_from_tf(variable.dtype).map_err(|e| unsupported(format!("variable {:?}: {e}", variable.name)))?;
        out.push(Capture { handle: handle.split(':').next().unwrap_or(handle).to_string(), checkpoint_key: key, dtype });
    }
    Ok((function, out))
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::UserObject(_) => "a user object",
        Kind::Asset(_) => "an asset",
        Kind::Function(_) | Kind::BareConcreteFunction(_) => "a function",
        Kind::Variable(_) => "a variable",
        Kind::Constant(_) => "a constant",
        Kind::Resource(_) => "a resource (e.g. a lookup table)",
        Kind::CapturedTensor(_) => "a captured tensor",
    }
}

fn checkpoint_object_graph(bundle: &Bundle) -> Result<TrackableObjectGraph, SavedModelError> {
    let serialized = bundle.strings(OBJECT_GRAPH_KEY)?;
    let first = serialized.first().ok_or_else(|| SavedModelError::Unsupported(format!("{OBJECT_GRAPH_KEY} is empty")))?;
    TrackableObjectGraph::decode(first.as_slice())
        .map_err(|e| SavedModelError::Unsupported(format!("{OBJECT_GRAPH_KEY} does not parse: {e}")))
}

/// SavedModel object id -> checkpoint object id, from both roots along children of the same
/// local name (breadth first, each object once, so cycles end).
fn match_object_graphs(saved: &SavedObjectGraph, checkpoint: &TrackableObjectGraph) -> HashMap<usize, usize> {
    let mut matched = HashMap::from([(0usize, 0usize)]);
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    while let Some((s, c)) = queue.pop_front() {
        let (Some(saved_node), Some(checkpoint_node)) = (saved.nodes.get(s), checkpoint.nodes.get(c)) else { continue };
        for child in &saved_node.children {
            let Some(twin) = checkpoint_node.children.iter().find(|k| k.local_name == child.local_name) else { continue };
            let (Ok(sid), Ok(cid)) = (usize::try_from(child.node_id), usize::try_from(twin.node_id)) else { continue };
            if let Entry::Vacant(slot) = matched.entry(sid) {
                slot.insert(cid);
                queue.push_back((sid, cid));
            }
        }
    }
    matched
}

/// Variable node -> checkpoint key, as a TF1 graph's restore op assigns them (route B): every
/// `Assign`/`AssignVariableOp` in the outer graph whose value is output `k` of a `RestoreV2`
/// (through Identity nodes) binds its variable to that RestoreV2's `tensor_names[k]`.
pub fn restored_variables(meta: &MetaGraphDef) -> HashMap<String, String> {
    let Some(graph) = meta.graph_def.as_ref() else { return HashMap::new() };
    let nodes: HashMap<&str, &NodeDef> = graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
    let data_inputs = |n: &'_ NodeDef| n.input.iter().filter(|i| !i.starts_with('^')).cloned().collect::<Vec<String>>();
    let split = |reference: &str| -> (String, usize) {
        match reference.rsplit_once(':') {
            Some((node, k)) => (node.to_string(), k.parse().unwrap_or(0)),
            None => (reference.to_string(), 0),
        }
    };
    let mut out = HashMap::new();
    for assign in graph.node.iter().filter(|n| matches!(n.op.as_str(), "Assign" | "AssignVariableOp")) {
        let inputs = data_inputs(assign);
        let (Some(variable), Some(value)) = (inputs.first(), inputs.get(1)) else { continue };
        let (mut source, mut index) = split(value);
        while let Some(node) = nodes.get(source.as_str()).filter(|n| n.op == "Identity") {
            let Some(input) = data_inputs(node).into_iter().next() else { break };
            (source, index) = split(&input);
        }
        let Some(restore) = nodes.get(source.as_str()).filter(|n| n.op == "RestoreV2") else { continue };
        let Some(names) = data_inputs(restore).get(1).and_then(|i| nodes.get(split(i).0.as_str())) else { continue };
        let Some(AttrValue::Tensor(names)) = names.attr.get("value").and_then(|a| a.value.as_ref()) else { continue };
        if let Some(key) = names.string_val.get(index) {
            out.insert(split(variable).0, String::from_utf8_lossy(key).into_owned());
        }
    }
    out
}

/// Every variable handle of the outer graph that `signature` reads, with its checkpoint key:
/// the captures of a TF2 signature's function (route A), and what the restore op assigns
/// (route B, TF1 graphs).
pub fn variable_keys(meta: &MetaGraphDef, bundle: &Bundle, signature: &str) -> Result<HashMap<String, String>, SavedModelError> {
    let mut keys = restored_variables(meta);
    let has_object_graph = meta.object_graph_def.as_ref().is_some_and(|g| !g.nodes.is_empty());
    if has_object_graph && signature_call(meta, signature).is_ok() {
        let (_, bound) = captures(meta, bundle, signature)?;
        keys.extend(bound.into_iter().map(|c| (c.handle, c.checkpoint_key)));
    }
    Ok(keys)
}
