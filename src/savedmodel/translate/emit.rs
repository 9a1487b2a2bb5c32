//! Node and initializer builders the op translations share. Helper tensors are named
//! `<node>#<what>` (see `ops.rs`).

use crate::proto::onnx::AttributeProto;
use crate::proto::onnx::tensor_proto::DataType as OnnxType;
use crate::tensor::{HostTensor, TensorData};

use super::onnx::{self, int, ints};
use super::{Builder, SavedModelError, Value};

impl Builder<'_> {
    /// A node whose single output is `<name>:0`.
    pub(super) fn emit(&mut self, name: &str, op: &str, inputs: Vec<String>, attributes: Vec<AttributeProto>) -> Result<Vec<Value>, SavedModelError> {
        Ok(vec![Value::Tensor(self.emit_tensor(name, op, inputs, attributes))])
    }

    /// [`Builder::emit`], returning the output's name.
    pub(super) fn emit_tensor(&mut self, name: &str, op: &str, inputs: Vec<String>, attributes: Vec<AttributeProto>) -> String {
        let output = format!("{name}:0");
        self.nodes.push(onnx::node(op, name, inputs, vec![output.clone()], attributes));
        output
    }

    /// A node with `n` outputs `<name>:0..n`.
    pub(super) fn emit_n(&mut self, name: &str, op: &str, inputs: Vec<String>, n: usize, attributes: Vec<AttributeProto>) -> Result<Vec<Value>, SavedModelError> {
        let outputs: Vec<String> = (0..n).map(|i| format!("{name}:{i}")).collect();
        self.nodes.push(onnx::node(op, name, inputs, outputs.clone(), attributes));
        Ok(outputs.into_iter().map(Value::Tensor).collect())
    }

    /// `input` transposed by `perm`, as the tensor `<name>:0`.
    pub(super) fn transpose(&mut self, name: &str, input: &str, perm: &[i64]) -> String {
        self.emit_tensor(name, "Transpose", vec![input.to_string()], vec![ints("perm", perm)])
    }

    /// TF shape operands are int32 or int64; ONNX takes int64.
    pub(super) fn as_int64(&mut self, node: &str, what: &str, input: &str) -> String {
        self.emit_tensor(&format!("{node}#{what}"), "Cast", vec![input.to_string()], vec![int("to", OnnxType::Int64 as i64)])
    }

    /// A 1-D int64 initializer.
    pub(super) fn int64s(&mut self, name: &str, values: &[i64]) -> String {
        let tensor = HostTensor::new(vec![values.len()], TensorData::I64(values.to_vec())).expect("a vector of its own length");
        self.initializer(name, tensor);
        name.to_string()
    }

    /// A float scalar initializer.
    pub(super) fn scalar(&mut self, node: &str, what: &str, value: f32) -> String {
        let name = format!("{node}#{what}");
        let tensor = HostTensor::new(Vec::new(), TensorData::F32(vec![value])).expect("a scalar has one element");
        self.initializer(&name, tensor);
        name
    }
}
