//! A TF2 signature as an ONNX graph, so the engine's importer, passes, plan and kernels serve
//! SavedModels too (what tf2onnx does offline, here at load time). The signature's call chain
//! is inlined (each function body under the call node's name), Identity, NoOp and control
//! edges disappear, captured variables become initializers from the tensor bundle and Const
//! nodes become initializers from their values.
//!
//! The op set is the first slice of the SavedModel issue: dense and convolutional layers
//! (MatMul, BiasAdd, AddV2, Sub, Mul, RealDiv, Relu, Relu6, Sigmoid, Tanh, Softmax, Cast,
//! Reshape, Conv2D, MaxPool, AvgPool in NHWC). An op outside it fails the load with its name
//! and the function it is in. NHWC ops become ONNX's NCHW ones between two transposes, which
//! the engine's layout pass cancels out between consecutive NHWC ops.

use std::collections::{HashMap, HashSet};

use crate::proto::onnx::tensor_proto::DataType as OnnxType;
use crate::proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto as OnnxTensor, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto, tensor_shape_proto, type_proto,
};
use crate::proto::tensorflow::attr_value::Value as AttrValue;
use crate::proto::tensorflow::{FunctionDef, MetaGraphDef, NodeDef};
use crate::tensor::{DType, HostTensor, TensorSpec, le_bytes, tf_proto};

use super::meta_graph::tensor_name;
use super::{Bundle, SavedModelError, captures};

/// The ONNX model computing `signature` of `meta`, with its variables from `bundle`.
pub fn to_onnx(meta: &MetaGraphDef, bundle: &Bundle, signature: &str) -> Result<ModelProto, SavedModelError> {
    let unsupported = |what: String| SavedModelError::Unsupported(format!("signature {signature:?}: {what}"));
    let sig = super::meta_graph::signature(meta, signature)?;
    let def = &meta.signature_def[signature];
    let graph = meta.graph_def.as_ref().ok_or_else(|| unsupported("no graph".into()))?;
    let library: HashMap<&str, &FunctionDef> = graph
        .library
        .iter()
        .flat_map(|l| l.function.iter())
        .filter_map(|f| f.signature.as_ref().map(|s| (s.name.as_str(), f)))
        .collect();
    let (function, bound) = captures(meta, bundle, signature)?;

    let mut out = Builder { bundle, library: &library, nodes: Vec::new(), initializers: Vec::new(), emitted: HashSet::new() };
    // The outer call's inputs: placeholders (the signature's inputs) and variable handles.
    let mut outer: HashMap<String, Value> = HashMap::new();
    for spec in &sig.inputs {
        let (node, _) = tensor_name(&def.inputs[&spec.key]).ok_or_else(|| unsupported(format!("input {:?} is not a named tensor", spec.key)))?;
        outer.insert(node.to_string(), Value::Tensor(spec.key.clone()));
    }
    for capture in &bound {
        outer.insert(capture.handle.clone(), Value::Variable(capture.checkpoint_key.clone()));
    }
    let (call, _) = super::binding::signature_call(meta, signature)?;
    let args = call
        .input
        .iter()
        .filter(|i| !i.starts_with('^'))
        .map(|i| outer.get(i.split(':').next().unwrap_or(i)).cloned().ok_or_else(|| unsupported(format!("call input {i:?} is neither an input nor a variable"))))
        .collect::<Result<Vec<_>, _>>()?;
    let results = out.inline(&function, &call.name, args)?;

    let mut graph_outputs = Vec::new();
    for spec in &sig.outputs {
        let (_, index) = tensor_name(&def.outputs[&spec.key]).ok_or_else(|| unsupported(format!("output {:?} is not a named tensor", spec.key)))?;
        let value = results.get(index).ok_or_else(|| unsupported(format!("output {:?} is result {index} of {} results", spec.key, results.len())))?;
        let source = out.tensor(value)?;
        out.nodes.push(onnx_node("Identity", &spec.key, vec![source], vec![spec.key.clone()], Vec::new()));
        graph_outputs.push(value_info(spec));
    }
    Ok(ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "candle-serving savedmodel".into(),
        graph: Some(GraphProto {
            node: out.nodes,
            name: signature.to_string(),
            initializer: out.initializers,
            input: sig.inputs.iter().map(value_info).collect(),
            output: graph_outputs,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What a TF tensor reference resolves to.
#[derive(Debug, Clone)]
enum Value {
    /// An ONNX tensor of this name.
    Tensor(String),
    /// A captured variable's resource handle: reading it gives the initializer of this key.
    Variable(String),
}

struct Builder<'m> {
    bundle: &'m Bundle,
    library: &'m HashMap<&'m str, &'m FunctionDef>,
    nodes: Vec<NodeProto>,
    initializers: Vec<OnnxTensor>,
    emitted: HashSet<String>,
}

impl Builder<'_> {
    /// The ONNX tensor a value reads as (a variable's value is its initializer).
    fn tensor(&mut self, value: &Value) -> Result<String, SavedModelError> {
        match value {
            Value::Tensor(name) => Ok(name.clone()),
            Value::Variable(key) => {
                if self.emitted.insert(key.clone()) {
                    let tensor = self.bundle.tensor(key)?;
                    self.initializers.push(onnx_tensor(key, &tensor));
                }
                Ok(key.clone())
            }
        }
    }

    /// Emits `function`'s body under `prefix` with its inputs bound to `args`; returns its
    /// results in output order.
    fn inline(&mut self, function: &str, prefix: &str, args: Vec<Value>) -> Result<Vec<Value>, SavedModelError> {
        let unsupported = |what: String| SavedModelError::Unsupported(format!("function {function:?}: {what}"));
        let def = *self.library.get(function).ok_or_else(|| unsupported("is not in the graph's library".into()))?;
        let signature = def.signature.as_ref().ok_or_else(|| unsupported("has no signature".into()))?;
        if args.len() != signature.input_arg.len() {
            return Err(unsupported(format!("takes {} inputs but is called with {}", signature.input_arg.len(), args.len())));
        }
        let mut env: HashMap<String, Vec<Value>> = signature.input_arg.iter().zip(args).map(|(a, v)| (a.name.clone(), vec![v])).collect();
        // Function bodies are not sorted: emit a node once all its inputs are known.
        let mut pending: Vec<&NodeDef> = def.node_def.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut waiting = Vec::new();
            for node in pending {
                let inputs: Option<Vec<Value>> = node.input.iter().filter(|i| !i.starts_with('^')).map(|i| resolve(&env, i)).collect();
                match inputs {
                    Some(inputs) => {
                        let outputs = self.node(function, prefix, node, inputs)?;
                        env.insert(node.name.clone(), outputs);
                    }
                    None => waiting.push(node),
                }
            }
            if waiting.len() == before {
                let names: Vec<&str> = waiting.iter().map(|n| n.name.as_str()).collect();
                return Err(unsupported(format!("nodes {names:?} read tensors nothing produces")));
            }
            pending = waiting;
        }
        signature
            .output_arg
            .iter()
            .map(|arg| {
                let reference = def.ret.get(&arg.name).ok_or_else(|| unsupported(format!("output {:?} is not returned", arg.name)))?;
                resolve(&env, reference).ok_or_else(|| unsupported(format!("output {:?} reads {reference:?}, which nothing produces", arg.name)))
            })
            .collect()
    }

    /// One function-body node: its outputs (usually one).
    fn node(&mut self, function: &str, prefix: &str, node: &NodeDef, inputs: Vec<Value>) -> Result<Vec<Value>, SavedModelError> {
        let name = format!("{prefix}/{}", node.name);
        let unsupported = |what: String| SavedModelError::Unsupported(format!("function {function:?}, node {:?} ({}): {what}", node.name, node.op));
        let attr = |key: &str| node.attr.get(key).and_then(|a| a.value.as_ref());
        let flag = |key: &str| matches!(attr(key), Some(AttrValue::B(true)));
        match node.op.as_str() {
            "NoOp" => Ok(Vec::new()),
            "Identity" | "ReadVariableOp" => Ok(inputs.into_iter().take(1).collect()),
            "IdentityN" => Ok(inputs),
            "StatefulPartitionedCall" | "PartitionedCall" => {
                let Some(AttrValue::Func(f)) = attr("f") else { return Err(unsupported("has no function".into())) };
                self.inline(&f.name.clone(), &name, inputs)
            }
            "Const" => {
                let Some(AttrValue::Tensor(value)) = attr("value") else { return Err(unsupported("has no value".into())) };
                let header = tf_proto::header(value, usize::MAX).map_err(|e| unsupported(e.to_string()))?;
                let tensor = tf_proto::decode(value, header).map_err(|e| unsupported(e.to_string()))?;
                let output = format!("{name}:0");
                self.initializers.push(onnx_tensor(&output, &tensor));
                Ok(vec![Value::Tensor(output)])
            }
            op => {
                let ins = inputs.iter().map(|v| self.tensor(v)).collect::<Result<Vec<_>, _>>()?;
                match op {
                    // BatchMatMulV2 broadcasts its batch dimensions as ONNX's MatMul does; its
                    // adj_x/adj_y (transposing the last two axes) are not translated yet.
                    "BatchMatMulV2" if flag("adj_x") || flag("adj_y") => Err(unsupported("adj_x/adj_y are not translated yet".into())),
                    "BatchMatMulV2" => self.emit(&name, "MatMul", ins, Vec::new()),
                    "MatMul" => {
                        let mut ins = ins;
                        for (i, key) in [(0, "transpose_a"), (1, "transpose_b")] {
                            if flag(key) {
                                ins[i] = self.transpose(&format!("{name}/{key}"), &ins[i], &[1, 0]);
                            }
                        }
                        self.emit(&name, "MatMul", ins, Vec::new())
                    }
                    "BiasAdd" => match attr("data_format") {
                        Some(AttrValue::S(format)) if format.as_slice() == b"NCHW" => Err(unsupported("NCHW BiasAdd is not supported yet".into())),
                        _ => self.emit(&name, "Add", ins, Vec::new()),
                    },
                    "AddV2" | "Add" => self.emit(&name, "Add", ins, Vec::new()),
                    "Sub" => self.emit(&name, "Sub", ins, Vec::new()),
                    "Mul" => self.emit(&name, "Mul", ins, Vec::new()),
                    "RealDiv" => self.emit(&name, "Div", ins, Vec::new()),
                    "Relu" => self.emit(&name, "Relu", ins, Vec::new()),
                    "Sigmoid" => self.emit(&name, "Sigmoid", ins, Vec::new()),
                    "Tanh" => self.emit(&name, "Tanh", ins, Vec::new()),
                    "Softmax" => self.emit(&name, "Softmax", ins, vec![int("axis", -1)]),
                    "Relu6" => {
                        let (low, high) = (self.scalar(&name, "min", 0.0), self.scalar(&name, "max", 6.0));
                        self.emit(&name, "Clip", vec![ins[0].clone(), low, high], Vec::new())
                    }
                    "Reshape" => {
                        // TF shapes are int32 or int64; ONNX's Reshape takes int64.
                        let shape = format!("{name}/shape:0");
                        self.nodes.push(onnx_node("Cast", &format!("{name}/shape"), vec![ins[1].clone()], vec![shape.clone()], vec![int("to", OnnxType::Int64 as i64)]));
                        self.emit(&name, "Reshape", vec![ins[0].clone(), shape], Vec::new())
                    }
                    "Conv2D" | "MaxPool" | "AvgPool" => {
                        if matches!(attr("data_format"), Some(AttrValue::S(f)) if f.as_slice() == b"NCHW") {
                            return Err(unsupported("NCHW is not supported yet".into()));
                        }
                        let list = |key: &str| match attr(key) {
                            Some(AttrValue::List(l)) => l.i.clone(),
                            _ => Vec::new(),
                        };
                        // NHWC lists: [1, h, w, 1].
                        let spatial = |values: Vec<i64>, default: i64| if values.len() == 4 { vec![values[1], values[2]] } else { vec![default, default] };
                        let mut attributes = vec![match attr("padding") {
                            Some(AttrValue::S(p)) if p.as_slice() == b"SAME" => string("auto_pad", "SAME_UPPER"),
                            Some(AttrValue::S(p)) if p.as_slice() == b"VALID" => string("auto_pad", "VALID"),
                            _ => return Err(unsupported("only SAME and VALID padding are translated".into())),
                        }];
                        attributes.push(ints("strides", &spatial(list("strides"), 1)));
                        let mut conv_inputs = vec![self.transpose(&format!("{name}/nchw"), &ins[0], &[0, 3, 1, 2])];
                        let onnx_op = match op {
                            "Conv2D" => {
                                attributes.push(ints("dilations", &spatial(list("dilations"), 1)));
                                // HWIO filters to OIHW.
                                conv_inputs.push(self.transpose(&format!("{name}/oihw"), &ins[1], &[3, 2, 0, 1]));
                                "Conv"
                            }
                            pool => {
                                attributes.push(ints("kernel_shape", &spatial(list("ksize"), 1)));
                                if pool == "MaxPool" { "MaxPool" } else { "AveragePool" }
                            }
                        };
                        let result = format!("{name}/nchw_out:0");
                        self.nodes.push(onnx_node(onnx_op, &name, conv_inputs, vec![result.clone()], attributes));
                        self.emit(&name, "Transpose", vec![result], vec![ints("perm", &[0, 2, 3, 1])])
                    }
                    "Cast" => {
                        let Some(AttrValue::Type(to)) = attr("DstT") else { return Err(unsupported("has no DstT".into())) };
                        let dtype = tf_proto::dtype_from_tf(*to).map_err(|e| unsupported(e.to_string()))?;
                        self.emit(&name, "Cast", ins, vec![int("to", onnx_type(dtype) as i64)])
                    }
                    other => Err(unsupported(format!("op {other} is not translated yet"))),
                }
            }
        }
    }
}

impl Builder<'_> {
    /// A node whose single output is `<name>:0`.
    fn emit(&mut self, name: &str, op: &str, inputs: Vec<String>, attributes: Vec<AttributeProto>) -> Result<Vec<Value>, SavedModelError> {
        let output = format!("{name}:0");
        self.nodes.push(onnx_node(op, name, inputs, vec![output.clone()], attributes));
        Ok(vec![Value::Tensor(output)])
    }

    /// `input` transposed by `perm`, as the tensor `<name>:0`.
    fn transpose(&mut self, name: &str, input: &str, perm: &[i64]) -> String {
        let output = format!("{name}:0");
        self.nodes.push(onnx_node("Transpose", name, vec![input.to_string()], vec![output.clone()], vec![ints("perm", perm)]));
        output
    }

    /// A float scalar initializer (Clip's bounds).
    fn scalar(&mut self, node: &str, what: &str, value: f32) -> String {
        let name = format!("{node}/{what}");
        let tensor = HostTensor::new(Vec::new(), crate::tensor::TensorData::F32(vec![value])).expect("a scalar has one element");
        self.initializers.push(onnx_tensor(&name, &tensor));
        name
    }
}

/// A reference inside a function body: an input arg name, or `node:output_arg:k`. Every op in
/// the translated set has one output list, so `k` is the output's index.
fn resolve(env: &HashMap<String, Vec<Value>>, reference: &str) -> Option<Value> {
    let mut parts = reference.split(':');
    let node = parts.next()?;
    let index = match (parts.next(), parts.next()) {
        (None, _) => 0,
        (Some(k), None) => k.parse().ok()?,
        (Some(_), Some(k)) => k.parse().ok()?,
    };
    env.get(node)?.get(index).cloned()
}

fn onnx_type(dtype: DType) -> OnnxType {
    match dtype {
        DType::F32 => OnnxType::Float,
        DType::F64 => OnnxType::Double,
        DType::F16 => OnnxType::Float16,
        DType::BF16 => OnnxType::Bfloat16,
        DType::I8 => OnnxType::Int8,
        DType::I16 => OnnxType::Int16,
        DType::I32 => OnnxType::Int32,
        DType::I64 => OnnxType::Int64,
        DType::U8 => OnnxType::Uint8,
        DType::U16 => OnnxType::Uint16,
        DType::U32 => OnnxType::Uint32,
        DType::U64 => OnnxType::Uint64,
        DType::Bool => OnnxType::Bool,
    }
}

fn onnx_tensor(name: &str, tensor: &HostTensor) -> OnnxTensor {
    OnnxTensor {
        name: name.to_string(),
        dims: tensor.shape().iter().map(|&d| d as i64).collect(),
        data_type: onnx_type(tensor.dtype()) as i32,
        raw_data: le_bytes::encode(tensor.data()),
        ..Default::default()
    }
}

fn onnx_node(op: &str, name: &str, input: Vec<String>, output: Vec<String>, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto { op_type: op.to_string(), name: name.to_string(), input, output, attribute, ..Default::default() }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::Int as i32, i: value, ..Default::default() }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::String as i32, s: value.as_bytes().to_vec(), ..Default::default() }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::Ints as i32, ints: values.to_vec(), ..Default::default() }
}

fn value_info(spec: &TensorSpec) -> ValueInfoProto {
    let dims = spec.shape.as_ref().map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| tensor_shape_proto::Dimension {
                value: Some(match d.as_i64() {
                    -1 => tensor_shape_proto::dimension::Value::DimParam("N".into()),
                    n => tensor_shape_proto::dimension::Value::DimValue(n),
                }),
                ..Default::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: spec.key.clone(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: onnx_type(spec.dtype) as i32, shape: dims })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
