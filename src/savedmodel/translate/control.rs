//! `While` loops over TensorLists, the form every Keras RNN layer (LSTM, GRU, SimpleRNN, in
//! tf.keras 2 and Keras 3) takes in a SavedModel, as an ONNX `Loop` the engine runs.
//!
//! The loop variables fall in three kinds:
//! * *invariant*: the body returns the variable unchanged (kernels, the input list, the trip
//!   bound). The body reads the outer value directly, as an ONNX outer-scope value;
//! * *carried*: an ordinary tensor the body updates (counters, `h`, `c`): a Loop-carried value;
//! * *written list*: a `TensorListReserve`d list the body writes one item into per iteration.
//!   Its items become a Loop scan output. Keras writes either at index 0 of a one-item list
//!   (`return_sequences=False`: the list ends holding the last item) or at the time step, a
//!   counter from 0 in steps of 1 (the list ends holding every item in order; Keras runs one
//!   iteration per item, whose count may be known only at run time). Those two are checked when
//!   the loop is translated; any other write pattern is refused, so a list is never assembled
//!   wrongly.
//!
//! The condition function is translated twice: on the initial values (the Loop's `cond` input)
//! and on each iteration's results (the body's `cond` output).

use crate::proto::onnx::tensor_proto::DataType as OnnxType;
use crate::proto::onnx::{GraphProto, ValueInfoProto};
use crate::proto::tensorflow::attr_value::Value as AttrValue;
use crate::proto::tensorflow::{FunctionDef, NodeDef};

use super::onnx::{self, int};
use super::{Builder, Value};

/// A TensorList value during translation.
#[derive(Debug, Clone)]
pub(crate) enum List {
    /// Items stacked along axis 0 of this ONNX tensor (`TensorListFromTensor`, or a loop's
    /// written list after the loop).
    Stacked(String),
    /// `TensorListReserve`'s list of `len` items (known at load, or only at run time), none
    /// written yet.
    Reserved { len: Option<i64> },
    /// In a loop body: loop variable `var`, a list the body writes.
    Slot { var: usize },
    /// In a loop body: `item` written at `index` into loop variable `var`'s list.
    Written { var: usize, index: Box<Value>, item: String },
}

/// Where a loop writes its list's items.
enum WriteIndex {
    /// Always this index.
    Constant(i64),
    /// The time step: a carried counter starting at 0, plus 1 per iteration.
    Step,
}

/// A translated loop body's graph inputs and outputs (cond, carried values, written items),
/// and where each written list's items go.
struct LoopBody {
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    indices: std::collections::HashMap<usize, WriteIndex>,
}

/// The kinds of loop variable (see the module doc).
enum Var {
    Invariant,
    Carried,
    Written,
}

impl<'m> Builder<'m> {
    /// The TensorList ops, or `None` for any other op.
    pub(super) fn list_op(&mut self, name: &str, node: &NodeDef, inputs: &[Value]) -> Option<Result<Vec<Value>, String>> {
        let result = match node.op.as_str() {
            "TensorListFromTensor" => self.tensor(&inputs[0]).map(|t| vec![Value::List(List::Stacked(t))]).map_err(|e| e.to_string()),
            "TensorListReserve" => Ok(vec![Value::List(List::Reserved { len: self.known_ints(&inputs[1]).and_then(|l| l.first().copied()) })]),
            "TensorListGetItem" => match &inputs[0] {
                Value::List(List::Stacked(items)) => {
                    let items = items.clone();
                    self.tensor(&inputs[1]).map_err(|e| e.to_string()).map(|index| {
                        let item = self.emit_tensor(name, "Gather", vec![items, index], vec![int("axis", 0)]);
                        vec![Value::Tensor(item)]
                    })
                }
                other => Err(format!("reads an item of {other:?}, which is not a list of known items")),
            },
            "TensorListSetItem" => match &inputs[0] {
                Value::List(List::Slot { var }) => self.tensor(&inputs[2]).map_err(|e| e.to_string()).map(|item| {
                    vec![Value::List(List::Written { var: *var, index: Box::new(inputs[1].clone()), item })]
                }),
                other => Err(format!("writes into {other:?}; only a loop's own list, once per iteration, is translated")),
            },
            "TensorListStack" => match &inputs[0] {
                Value::List(List::Stacked(items)) => Ok(vec![Value::Tensor(items.clone())]),
                other => Err(format!("stacks {other:?}, which is not a list of known items")),
            },
            op if op.starts_with("TensorList") => Err(format!("op {op} is not translated yet")),
            _ => return None,
        };
        Some(result)
    }

    /// A `While` node as an ONNX Loop; its outputs are the loop variables' final values.
    pub(super) fn while_loop(&mut self, name: &str, node: &NodeDef, inputs: Vec<Value>) -> Result<Vec<Value>, String> {
        let func = |key: &str| match node.attr.get(key).and_then(|a| a.value.as_ref()) {
            Some(AttrValue::Func(f)) => Ok(f.name.clone()),
            _ => Err(format!("has no {key} function")),
        };
        let (cond, body) = (func("cond")?, func("body")?);
        let body_def: &'m FunctionDef = self.library.get(body.as_str()).copied().ok_or_else(|| format!("body {body:?} is not in the library"))?;
        let signature = body_def.signature.as_ref().ok_or("the body has no signature")?;
        let n = inputs.len();
        if signature.input_arg.len() != n || signature.output_arg.len() != n {
            return Err(format!("the body takes {} and returns {} values for {n} loop variables", signature.input_arg.len(), signature.output_arg.len()));
        }
        let types = match node.attr.get("T").and_then(|a| a.value.as_ref()) {
            Some(AttrValue::List(l)) => l.r#type.clone(),
            _ => Vec::new(),
        };
        let kinds = (0..n)
            .map(|i| {
                if passes_through(body_def, &signature.output_arg[i].name, &signature.input_arg[i].name) {
                    return Ok(Var::Invariant);
                }
                match &inputs[i] {
                    Value::List(List::Reserved { .. }) => Ok(Var::Written),
                    Value::List(other) => Err(format!("loop variable {i} is a list ({other:?}) the body changes other than by writing")),
                    _ => Ok(Var::Carried),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        // The body reads invariant variables from the outer graph: their initializers must be
        // there, not inside the body.
        for (value, kind) in inputs.iter().zip(&kinds) {
            if matches!((value, kind), (Value::Variable(_), Var::Invariant)) {
                self.tensor(value).map_err(|e| e.to_string())?;
            }
        }
        let first_cond = self.inline(&cond, &format!("{name}#cond0"), inputs.clone()).map_err(|e| e.to_string())?;
        let first_cond = first_cond.first().ok_or("the condition returns nothing")?.clone();
        let first_cond = self.tensor(&first_cond).map_err(|e| e.to_string())?;

        // The body graph, built in its own node and initializer lists.
        let outer = (std::mem::take(&mut self.nodes), std::mem::take(&mut self.initializers));
        let built = self.loop_body(name, &cond, body_def, &inputs, &kinds, &types);
        let (body_nodes, body_initializers) = (std::mem::replace(&mut self.nodes, outer.0), std::mem::replace(&mut self.initializers, outer.1));
        let LoopBody { inputs: body_inputs, outputs: body_outputs, indices } = built?;
        let body_graph = GraphProto {
            node: body_nodes,
            name: format!("{name}#body"),
            initializer: body_initializers,
            input: body_inputs,
            output: body_outputs,
            ..Default::default()
        };

        let mut loop_inputs = vec![String::new(), first_cond];
        let mut loop_outputs = Vec::new();
        let mut outputs = Vec::with_capacity(n);
        for (i, kind) in kinds.iter().enumerate() {
            if let Var::Carried = kind {
                loop_inputs.push(self.tensor(&inputs[i]).map_err(|e| e.to_string())?);
                loop_outputs.push(format!("{name}#final{i}"));
            }
        }
        for (i, kind) in kinds.iter().enumerate() {
            if let Var::Written = kind {
                loop_outputs.push(format!("{name}#items{i}"));
            }
        }
        self.nodes.push(onnx::node("Loop", name, loop_inputs, loop_outputs, vec![onnx::graph("body", body_graph)]));
        for (i, kind) in kinds.iter().enumerate() {
            outputs.push(match kind {
                Var::Invariant => inputs[i].clone(),
                Var::Carried => Value::Tensor(format!("{name}#final{i}")),
                Var::Written => {
                    let items = format!("{name}#items{i}");
                    let Value::List(List::Reserved { len }) = inputs[i] else { unreachable!("written lists start reserved") };
                    let stacked = match indices.get(&i) {
                        Some(WriteIndex::Step) => items,
                        // A one-item list written at 0 each iteration holds the last item.
                        Some(WriteIndex::Constant(0)) if len == Some(1) => {
                            let operands = vec![
                                items,
                                self.int64s(&format!("{name}#last{i}_start"), &[-1]),
                                self.int64s(&format!("{name}#last{i}_end"), &[i64::MAX]),
                                self.int64s(&format!("{name}#last{i}_axis"), &[0]),
                            ];
                            self.emit_tensor(&format!("{name}#last{i}"), "Slice", operands, Vec::new())
                        }
                        _ => return Err(format!("loop variable {i}: a list of {len:?} items written at a constant index is not translated")),
                    };
                    Value::List(List::Stacked(stacked))
                }
            });
        }
        Ok(outputs)
    }

    /// Translates the body into `self.nodes` (swapped out by the caller).
    fn loop_body(&mut self, name: &str, cond: &str, body_def: &'m FunctionDef, inputs: &[Value], kinds: &[Var], types: &[i32]) -> Result<LoopBody, String> {
        let body = body_def.signature.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let mut body_inputs = vec![onnx::typed(&format!("{name}#iteration"), OnnxType::Int64), onnx::typed(&format!("{name}#cond_in"), OnnxType::Bool)];
        let mut args = Vec::with_capacity(inputs.len());
        for (i, kind) in kinds.iter().enumerate() {
            args.push(match kind {
                Var::Invariant => inputs[i].clone(),
                Var::Carried => {
                    let input = format!("{name}#in{i}");
                    let dtype = types.get(i).and_then(|t| crate::tensor::tf_proto::dtype_from_tf(*t).ok());
                    body_inputs.push(onnx::typed(&input, dtype.map_or(OnnxType::Float, onnx::onnx_type)));
                    Value::Tensor(input)
                }
                Var::Written => Value::List(List::Slot { var: i }),
            });
        }
        let results = self.inline(&body, &format!("{name}#body"), args).map_err(|e| e.to_string())?;
        let next_cond = self.inline(cond, &format!("{name}#cond"), results.clone()).map_err(|e| e.to_string())?;
        let next_cond = self.tensor(next_cond.first().ok_or("the condition returns nothing")?).map_err(|e| e.to_string())?;
        let mut body_outputs = vec![onnx::typed(&self.identity(&format!("{name}#cond_out"), next_cond), OnnxType::Bool)];
        let mut scans = Vec::new();
        let mut indices = std::collections::HashMap::new();
        let signature = body_def.signature.as_ref().ok_or("the body has no signature")?;
        for (i, kind) in kinds.iter().enumerate() {
            match kind {
                Var::Invariant => {}
                Var::Carried => {
                    let value = self.tensor(&results[i]).map_err(|e| e.to_string())?;
                    body_outputs.push(onnx::typed(&self.identity(&format!("{name}#out{i}"), value), OnnxType::Undefined));
                }
                Var::Written => {
                    let Value::List(List::Written { var, index, item }) = &results[i] else {
                        return Err(format!("loop variable {i}: the body does not write its list once per iteration"));
                    };
                    if *var != i {
                        return Err(format!("loop variable {i} returns the list of variable {var}"));
                    }
                    let write = match self.known_ints(index).as_deref() {
                        Some([c]) => WriteIndex::Constant(*c),
                        _ => {
                            let counter = (0..inputs.len()).find(|&j| matches!(index.as_ref(), Value::Tensor(t) if *t == format!("{name}#in{j}")));
                            let counts_up = counter.is_some_and(|j| {
                                self.known_ints(&inputs[j]).as_deref() == Some(&[0])
                                    && steps_by_one(body_def, &signature.output_arg[j].name, &signature.input_arg[j].name)
                            });
                            if !counts_up {
                                return Err(format!("loop variable {i}: items are written at an index that is neither constant nor the time step"));
                            }
                            WriteIndex::Step
                        }
                    };
                    indices.insert(i, write);
                    scans.push(onnx::typed(&self.identity(&format!("{name}#scan{i}"), item.clone()), OnnxType::Float));
                }
            }
        }
        body_outputs.extend(scans);
        Ok(LoopBody { inputs: body_inputs, outputs: body_outputs, indices })
    }

    /// An Identity node giving `input` the name `output` (body outputs must be named).
    fn identity(&mut self, output: &str, input: String) -> String {
        self.nodes.push(onnx::node("Identity", output, vec![input], vec![output.to_string()], Vec::new()));
        output.to_string()
    }
}

/// Follows `reference` in `def` back through Identity nodes to the node or arg it copies.
fn source<'d>(def: &'d FunctionDef, mut reference: &'d str) -> (&'d str, Option<&'d NodeDef>) {
    loop {
        let node_name = reference.split(':').next().unwrap_or(reference);
        if !reference.contains(':') {
            return (reference, None);
        }
        let Some(node) = def.node_def.iter().find(|n| n.name == node_name) else { return (reference, None) };
        if node.op != "Identity" {
            return (reference, Some(node));
        }
        match node.input.iter().find(|i| !i.starts_with('^')) {
            Some(input) => reference = input,
            None => return (reference, Some(node)),
        }
    }
}

/// Whether the body returns input arg `input` unchanged as output arg `output`.
fn passes_through(def: &FunctionDef, output: &str, input: &str) -> bool {
    def.ret.get(output).is_some_and(|r| source(def, r).0 == input)
}

/// Whether the body returns `input + 1` as `output` (a time step counter).
fn steps_by_one(def: &FunctionDef, output: &str, input: &str) -> bool {
    let Some(reference) = def.ret.get(output) else { return false };
    let (_, Some(add)) = source(def, reference) else { return false };
    if !matches!(add.op.as_str(), "AddV2" | "Add") {
        return false;
    }
    let operands: Vec<&str> = add.input.iter().filter(|i| !i.starts_with('^')).map(|i| source(def, i).0).collect();
    let is_one = |r: &str| {
        let name = r.split(':').next();
        const_int(def.node_def.iter().find(|n| n.op == "Const" && name == Some(n.name.as_str()))) == Some(1)
    };
    matches!(operands.as_slice(), [a, b] if (*a == input && is_one(b)) || (*b == input && is_one(a)))
}

/// A Const node's value, when it is one integer.
fn const_int(node: Option<&NodeDef>) -> Option<i64> {
    use crate::tensor::{TensorData, tf_proto};
    let Some(AttrValue::Tensor(t)) = node?.attr.get("value").and_then(|a| a.value.as_ref()) else { return None };
    let value = tf_proto::decode(t, tf_proto::header(t, 64).ok()?).ok()?;
    match value.into_parts().1 {
        TensorData::I32(v) if v.len() == 1 => Some(i64::from(v[0])),
        TensorData::I64(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}
