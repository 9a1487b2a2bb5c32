//! Building blocks of the ONNX model a signature becomes.

use crate::proto::onnx::tensor_proto::DataType as OnnxType;
use crate::proto::onnx::{
    AttributeProto, NodeProto, TensorProto as OnnxTensor, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_shape_proto,
    type_proto,
};
use crate::tensor::{DType, HostTensor, TensorSpec, le_bytes};

pub(super) fn onnx_type(dtype: DType) -> OnnxType {
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

pub(super) fn tensor(name: &str, tensor: &HostTensor) -> OnnxTensor {
    OnnxTensor {
        name: name.to_string(),
        dims: tensor.shape().iter().map(|&d| d as i64).collect(),
        data_type: onnx_type(tensor.dtype()) as i32,
        raw_data: le_bytes::encode(tensor.data()).into(),
        ..Default::default()
    }
}

pub(super) fn node(op: &str, name: &str, input: Vec<String>, output: Vec<String>, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto { op_type: op.to_string(), name: name.to_string(), input, output, attribute, ..Default::default() }
}

pub(super) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::Int as i32, i: value, ..Default::default() }
}

pub(super) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::Float as i32, f: value, ..Default::default() }
}

pub(super) fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::String as i32, s: value.as_bytes().to_vec(), ..Default::default() }
}

pub(super) fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::Ints as i32, ints: values.to_vec(), ..Default::default() }
}

pub(super) fn graph(name: &str, value: crate::proto::onnx::GraphProto) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_proto::AttributeType::Graph as i32, g: Some(value), ..Default::default() }
}

/// A value of a known element type and unknown shape (`Undefined`: type unknown too).
pub(super) fn typed(name: &str, elem_type: OnnxType) -> ValueInfoProto {
    let r#type = (elem_type != OnnxType::Undefined).then(|| TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: elem_type as i32, shape: None })),
        ..Default::default()
    });
    ValueInfoProto { name: name.to_string(), r#type, ..Default::default() }
}

pub(super) fn value_info(spec: &TensorSpec) -> ValueInfoProto {
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
