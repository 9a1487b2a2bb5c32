//! A signature as an ONNX graph, so the engine's importer, passes, plan and kernels serve
//! SavedModels too (what tf2onnx does offline, here at load time).
//!
//! The walk is demand-driven: it starts at the signature's output tensors and visits only what
//! they read, so dead nodes (Keras keeps whole unused cells), the save/restore machinery and
//! string constants are never translated. It stops at the fed tensors (the signature's
//! inputs). Function calls (StatefulPartitionedCall, PartitionedCall) are inlined, each body
//! under its call node's name; Identity, NoOp and control edges disappear; variable handles
//! (TF2 VarHandleOp, TF1 VariableV2) become initializers from the tensor bundle, bound by the
//! object graph or by the restore op; Consts become initializers. The same walk serves TF2
//! exports, whose outputs come from a call node, and TF1 graphs, whose ops sit in the outer
//! graph itself.
//!
//! The op table is in `ops.rs`. An op outside it fails the load with its name, node and
//! function.

mod constants;
mod control;
mod emit;
mod examples;
mod onnx;
mod ops;
mod slice;

pub(crate) use ops::UNTRANSLATED_DOMAIN;

use std::collections::HashMap;

use crate::proto::onnx::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto as OnnxTensor};
use crate::example::ExampleInput;
use crate::proto::tensorflow::{FunctionDef, MetaGraphDef, NodeDef, TensorInfo};
use crate::tensor::{Dim, HostTensor, TensorData, TensorSpec};

use super::meta_graph::{is_string, tensor_name, tensor_spec};
use super::{Bundle, SavedModelError};

/// Deeper than any real graph; a guard against a malformed file exhausting the stack.
const MAX_DEPTH: usize = 4096;

/// A signature translated for the engine.
pub struct Translated {
    pub model: ModelProto,
    /// Set when the signature takes serialized tf.Examples: the dense features its
    /// ParseExample reads, which are the model's inputs in their place.
    pub examples: Option<ExampleInput>,
    /// DT_STRING outputs that are one constant row per example (a classifier's class labels):
    /// output key and row.
    pub constant_rows: Vec<(String, Vec<String>)>,
}

/// The ONNX model computing `signature` of `meta`, with its variables from `bundle`.
pub fn to_onnx(meta: &MetaGraphDef, bundle: &Bundle, signature: &str) -> Result<Translated, SavedModelError> {
    let unsupported = |what: String| SavedModelError::Unsupported(format!("signature {signature:?}: {what}"));
    let def = meta.signature_def.get(signature).ok_or_else(|| unsupported("no such signature".into()))?;
    let graph = meta.graph_def.as_ref().ok_or_else(|| unsupported("no graph".into()))?;
    let library: HashMap<&str, &FunctionDef> = graph
        .library
        .iter()
        .flat_map(|l| l.function.iter())
        .filter_map(|f| f.signature.as_ref().map(|s| (s.name.as_str(), f)))
        .collect();
    let variables = super::binding::variable_keys(meta, bundle, signature)?;
    let sorted = |tensors: &HashMap<String, TensorInfo>| -> Vec<(String, TensorInfo)> {
        let mut entries: Vec<(String, TensorInfo)> = tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    };

    let mut fed = HashMap::new();
    let mut graph_inputs = Vec::new();
    for (key, info) in &sorted(&def.inputs) {
        let (node, index) = tensor_name(info).ok_or_else(|| unsupported(format!("input {key:?} is not a named tensor")))?;
        let value = if is_string(info) {
            Value::Examples(key.clone())
        } else {
            graph_inputs.push(onnx::value_info(&tensor_spec(signature, key, info)?));
            Value::Tensor(key.clone())
        };
        fed.insert(format!("{node}:{index}"), value);
    }
    let mut out = Builder {
        bundle,
        library: &library,
        variables: &variables,
        nodes: Vec::new(),
        initializers: Vec::new(),
        consts: HashMap::new(),
        depth: 0,
        examples: None,
    };
    let mut outer = Scope::graph(&graph.node, fed);
    let mut graph_outputs = Vec::new();
    let mut constant_rows = Vec::new();
    for (key, info) in &sorted(&def.outputs) {
        let (node, index) = tensor_name(info).ok_or_else(|| unsupported(format!("output {key:?} is not a named tensor")))?;
        match out.value(&mut outer, &format!("{node}:{index}"))? {
            Value::Strings { row, per_example: true } => constant_rows.push((key.clone(), row)),
            value => {
                let spec = tensor_spec(signature, key, info)?;
                let source = out.tensor(&value)?;
                out.nodes.push(onnx::node("Identity", key, vec![source], vec![key.clone()], Vec::new()));
                graph_outputs.push(onnx::value_info(&spec));
            }
        }
    }
    let examples = out.examples.take();
    if let Some(examples) = &examples {
        for feature in &examples.features {
            let mut shape = vec![Dim::Dynamic];
            shape.extend(feature.shape.iter().map(|&d| Dim::Fixed(d)));
            graph_inputs.push(onnx::value_info(&TensorSpec { key: feature.input.clone(), dtype: feature.dtype, shape: Some(shape) }));
        }
    }
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "candle-serving savedmodel".into(),
        graph: Some(GraphProto {
            node: out.nodes,
            name: signature.to_string(),
            initializer: out.initializers,
            input: graph_inputs,
            output: graph_outputs,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Translated { model, examples, constant_rows })
}

/// What a TF tensor reference resolves to.
#[derive(Debug, Clone)]
enum Value {
    /// An ONNX tensor of this name.
    Tensor(String),
    /// A variable's handle (or a TF1 ref variable): reading it gives the initializer of this
    /// checkpoint key.
    Variable(String),
    /// A TensorList (DT_VARIANT), as the RNN loops of Keras use them.
    List(control::List),
    /// The serialized tf.Examples fed as this signature input: only ParseExample reads them.
    Examples(String),
    /// A constant string vector (class labels); `per_example` once tiled over the examples.
    Strings { row: Vec<String>, per_example: bool },
}

/// The nodes one walk resolves references in: the outer graph, or a function body inlined
/// under a call node.
struct Scope<'m> {
    /// For messages: "the graph" or the function's name.
    label: String,
    /// Prefix of the ONNX names of this scope's nodes.
    prefix: String,
    nodes: HashMap<&'m str, &'m NodeDef>,
    /// A function's input args by name; in the outer graph, the fed tensors as `node:k`.
    bound: HashMap<String, Value>,
    /// Outputs of the nodes translated so far.
    done: HashMap<String, Vec<Value>>,
    /// References are `node:out_arg:k` in function bodies, `node[:k]` in the outer graph.
    function: bool,
}

impl<'m> Scope<'m> {
    fn graph(nodes: &'m [NodeDef], fed: HashMap<String, Value>) -> Self {
        Scope {
            label: "the graph".into(),
            prefix: String::new(),
            nodes: nodes.iter().map(|n| (n.name.as_str(), n)).collect(),
            bound: fed,
            done: HashMap::new(),
            function: false,
        }
    }
}

struct Builder<'m> {
    bundle: &'m Bundle,
    library: &'m HashMap<&'m str, &'m FunctionDef>,
    /// Variable node name (outer graph) -> checkpoint key.
    variables: &'m HashMap<String, String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<OnnxTensor>,
    /// Initializers by ONNX name, for ops whose operands must be known at load time
    /// (transpose permutations, slice bounds, axes).
    consts: HashMap<String, HostTensor>,
    depth: usize,
    /// The signature's ParseExample, once translated (one per signature).
    examples: Option<ExampleInput>,
}

impl<'m> Builder<'m> {
    /// The ONNX tensor a value reads as (a variable's value is its initializer).
    fn tensor(&mut self, value: &Value) -> Result<String, SavedModelError> {
        match value {
            Value::Tensor(name) => Ok(name.clone()),
            Value::Variable(key) => {
                if !self.consts.contains_key(key) {
                    let tensor = self.bundle.tensor(key)?;
                    self.initializer(key, tensor);
                }
                Ok(key.clone())
            }
            Value::List(list) => Err(SavedModelError::Unsupported(format!("a TensorList ({list:?}) is read as a tensor"))),
            Value::Examples(key) => Err(SavedModelError::Unsupported(format!(
                "input {key:?} (serialized tf.Examples) is read by an op other than ParseExample; only its dense features are served"
            ))),
            Value::Strings { .. } => Err(SavedModelError::Unsupported("a string tensor is computed on; only constant labels are served".into())),
        }
    }

    fn initializer(&mut self, name: &str, value: HostTensor) {
        self.initializers.push(onnx::tensor(name, &value));
        self.consts.insert(name.to_string(), value);
    }

    /// The value of `reference` in `scope`, translating what it reads first.
    fn value(&mut self, scope: &mut Scope<'m>, reference: &str) -> Result<Value, SavedModelError> {
        let label = scope.label.clone();
        let unsupported = |what: String| SavedModelError::Unsupported(format!("{label}: {what}"));
        let (node, index) = if scope.function {
            match reference.split(':').collect::<Vec<_>>().as_slice() {
                [arg] => return scope.bound.get(*arg).cloned().ok_or_else(|| unsupported(format!("{arg:?} is not an input"))),
                [node, output] => (node.to_string(), (output.to_string(), 0)),
                [node, output, k] => (node.to_string(), (output.to_string(), k.parse().map_err(|_| unsupported(format!("bad reference {reference:?}")))?)),
                _ => return Err(unsupported(format!("bad reference {reference:?}"))),
            }
        } else {
            let (node, k) = match reference.rsplit_once(':') {
                Some((node, k)) => (node, k.parse().map_err(|_| unsupported(format!("bad reference {reference:?}")))?),
                None => (reference, 0usize),
            };
            if let Some(fed) = scope.bound.get(&format!("{node}:{k}")) {
                return Ok(fed.clone());
            }
            (node.to_string(), (String::new(), k))
        };
        let outputs = self.node_outputs(scope, &node)?;
        let def = scope.nodes[node.as_str()];
        let (output_arg, k) = index;
        let flat = ops::output_index(&def.op, &output_arg, k);
        outputs.get(flat).cloned().ok_or_else(|| unsupported(format!("{reference:?} reads output {flat} of node {node:?} ({}), which has {} translated", def.op, outputs.len())))
    }

    /// Translates node `name` of `scope` once, after its inputs.
    fn node_outputs(&mut self, scope: &mut Scope<'m>, name: &str) -> Result<Vec<Value>, SavedModelError> {
        if let Some(done) = scope.done.get(name) {
            return Ok(done.clone());
        }
        let node = *scope.nodes.get(name).ok_or_else(|| SavedModelError::Unsupported(format!("{}: no node {name:?}", scope.label)))?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SavedModelError::Unsupported(format!("{}: node {name:?} is more than {MAX_DEPTH} nodes deep (or in a cycle)", scope.label)));
        }
        let outputs = match self.string_node(scope, node) {
            Some(outputs) => outputs,
            None => node
                .input
                .iter()
                .filter(|i| !i.starts_with('^'))
                .map(|i| self.value(scope, i))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|inputs| self.translate(scope, node, inputs)),
        };
        self.depth -= 1;
        let outputs = outputs?;
        scope.done.insert(name.to_string(), outputs.clone());
        Ok(outputs)
    }

    /// `function`'s body under `prefix` with its inputs bound to `args`: its results in
    /// output order, translating only what they read.
    fn inline(&mut self, function: &str, prefix: &str, args: Vec<Value>) -> Result<Vec<Value>, SavedModelError> {
        let unsupported = |what: String| SavedModelError::Unsupported(format!("function {function:?}: {what}"));
        let def = *self.library.get(function).ok_or_else(|| unsupported("is not in the graph's library".into()))?;
        let signature = def.signature.as_ref().ok_or_else(|| unsupported("has no signature".into()))?;
        if args.len() != signature.input_arg.len() {
            return Err(unsupported(format!("takes {} inputs but is called with {}", signature.input_arg.len(), args.len())));
        }
        let mut scope = Scope {
            label: format!("function {function:?}"),
            prefix: prefix.to_string(),
            nodes: def.node_def.iter().map(|n| (n.name.as_str(), n)).collect(),
            bound: signature.input_arg.iter().zip(args).map(|(a, v)| (a.name.clone(), v)).collect(),
            done: HashMap::new(),
            function: true,
        };
        signature
            .output_arg
            .iter()
            .map(|arg| {
                let reference = def.ret.get(&arg.name).ok_or_else(|| unsupported(format!("output {:?} is not returned", arg.name)))?;
                self.value(&mut scope, reference)
            })
            .collect()
    }

    /// The value of an operand that must be known at load time (a Const or a variable).
    fn known(&mut self, value: &Value) -> Option<HostTensor> {
        match value {
            Value::Tensor(name) => self.consts.get(name).cloned(),
            Value::Variable(key) => {
                self.tensor(value).ok()?;
                self.consts.get(key).cloned()
            }
            Value::List(_) | Value::Examples(_) | Value::Strings { .. } => None,
        }
    }

    /// [`Builder::known`] as integers (shapes, axes, permutations, bounds).
    fn known_ints(&mut self, value: &Value) -> Option<Vec<i64>> {
        match self.known(value)?.into_parts().1 {
            TensorData::I32(v) => Some(v.into_iter().map(i64::from).collect()),
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }
}
