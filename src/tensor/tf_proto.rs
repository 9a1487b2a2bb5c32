//! `tensorflow.TensorProto` <-> [`HostTensor`], with TensorFlow's decoding rules: `tensor_content`
//! wins when present (little-endian, exact length), otherwise the dtype's typed field is used and
//! its last value repeats to fill the shape (so one value broadcasts).
//!
//! Decoding is split into [`header`] and [`decode`] so that callers can check dtype and shape
//! against a signature before a single element is allocated.

use half::{bf16, f16};
use prost::bytes::Bytes;
use thiserror::Error;

use crate::proto::tensorflow::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto};

use super::shape::shape_string;
use super::{DType, HostTensor, TensorData, element_count};

#[derive(Debug, Error, PartialEq)]
pub enum TensorError {
    #[error("dtype {0} is not supported; send one of the numeric types (DT_FLOAT, DT_INT32, ...)")]
    UnsupportedDType(String),
    #[error("tensor_shape has unknown_rank set; a request tensor needs a concrete shape")]
    UnknownRank,
    #[error("tensor_shape {shape} has a negative dimension")]
    NegativeDim { shape: String },
    #[error("tensor_shape {shape} of {dtype} needs {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge { shape: String, dtype: DType, bytes: String, limit: usize },
    #[error("tensor_content has {got} bytes but shape {shape} of {dtype} needs {expected}")]
    ContentLength { got: usize, expected: usize, shape: String, dtype: DType },
    #[error("{dtype} values belong in {expected}, but the tensor carries values in {found}")]
    WrongField { dtype: DType, expected: &'static str, found: &'static str },
    #[error("{field} holds {got} values but shape {shape} has only {expected} elements")]
    TooManyValues { field: &'static str, got: usize, expected: usize, shape: String },
    #[error("value {value} in {field} is out of range for {dtype}")]
    OutOfRange { value: i64, field: &'static str, dtype: DType },
}

/// dtype and shape of a wire tensor, validated and size-checked but not yet materialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorHeader {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

pub fn dtype_from_tf(value: i32) -> Result<DType, TensorError> {
    let dt = DataType::try_from(value).map_err(|_| TensorError::UnsupportedDType(format!("enum value {value}")))?;
    Ok(match dt {
        DataType::DtFloat => DType::F32,
        DataType::DtDouble => DType::F64,
        DataType::DtHalf => DType::F16,
        DataType::DtBfloat16 => DType::BF16,
        DataType::DtInt8 => DType::I8,
        DataType::DtInt16 => DType::I16,
        DataType::DtInt32 => DType::I32,
        DataType::DtInt64 => DType::I64,
        DataType::DtUint8 => DType::U8,
        DataType::DtUint16 => DType::U16,
        DataType::DtUint32 => DType::U32,
        DataType::DtUint64 => DType::U64,
        DataType::DtBool => DType::Bool,
        other => return Err(TensorError::UnsupportedDType(other.as_str_name().to_string())),
    })
}

pub fn dtype_to_tf(dtype: DType) -> DataType {
    match dtype {
        DType::F32 => DataType::DtFloat,
        DType::F64 => DataType::DtDouble,
        DType::F16 => DataType::DtHalf,
        DType::BF16 => DataType::DtBfloat16,
        DType::I8 => DataType::DtInt8,
        DType::I16 => DataType::DtInt16,
        DType::I32 => DataType::DtInt32,
        DType::I64 => DataType::DtInt64,
        DType::U8 => DataType::DtUint8,
        DType::U16 => DataType::DtUint16,
        DType::U32 => DataType::DtUint32,
        DType::U64 => DataType::DtUint64,
        DType::Bool => DataType::DtBool,
    }
}

pub fn shape_to_tf(dims: impl IntoIterator<Item = i64>) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims.into_iter().map(|size| tensor_shape_proto::Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    }
}

/// Reads dtype and shape, rejecting negative dims and element counts whose byte size would
/// overflow or exceed `max_bytes`, before anything is allocated.
pub fn header(proto: &TensorProto, max_bytes: usize) -> Result<TensorHeader, TensorError> {
    let dtype = dtype_from_tf(proto.dtype)?;
    let shape_proto = proto.tensor_shape.clone().unwrap_or_default();
    if shape_proto.unknown_rank {
        return Err(TensorError::UnknownRank);
    }
    let raw: Vec<i64> = shape_proto.dim.iter().map(|d| d.size).collect();
    let raw_string = || format!("[{}]", raw.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","));
    let shape = raw
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| TensorError::NegativeDim { shape: raw_string() }))
        .collect::<Result<Vec<usize>, _>>()?;
    let bytes = element_count(&shape).and_then(|n| n.checked_mul(dtype.size_in_bytes()));
    match bytes {
        Some(b) if b <= max_bytes => Ok(TensorHeader { dtype, shape }),
        _ => {
            let exact = shape
                .iter()
                .try_fold(dtype.size_in_bytes() as u128, |acc, &d| acc.checked_mul(d as u128))
                .map_or_else(|| "more than 2^128".to_string(), |b| b.to_string());
            Err(TensorError::TooLarge { shape: raw_string(), dtype, bytes: exact, limit: max_bytes })
        }
    }
}

/// Materialises the values described by `header` (obtained from the same proto).
pub fn decode(proto: &TensorProto, header: TensorHeader) -> Result<HostTensor, TensorError> {
    let TensorHeader { dtype, shape } = header;
    let count = element_count(&shape).unwrap_or(0);
    let data = if !proto.tensor_content.is_empty() {
        from_content(&proto.tensor_content, dtype, count, &shape)?
    } else {
        from_typed(proto, dtype, count, &shape)?
    };
    HostTensor::new(shape, data).map_err(|_| TensorError::ContentLength { got: 0, expected: count, shape: String::new(), dtype })
}

fn from_content(bytes: &Bytes, dtype: DType, count: usize, shape: &[usize]) -> Result<TensorData, TensorError> {
    let size = dtype.size_in_bytes();
    if bytes.len() != count * size {
        return Err(TensorError::ContentLength { got: bytes.len(), expected: count * size, shape: shape_string(shape), dtype });
    }
    Ok(super::le_bytes::decode(dtype, bytes))
}

/// The typed field TensorFlow uses for each dtype.
fn field_for(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float_val",
        DType::F64 => "double_val",
        DType::F16 | DType::BF16 => "half_val",
        DType::I8 | DType::I16 | DType::I32 | DType::U8 | DType::U16 => "int_val",
        DType::I64 => "int64_val",
        DType::U32 => "uint32_val",
        DType::U64 => "uint64_val",
        DType::Bool => "bool_val",
    }
}

fn populated_fields(p: &TensorProto) -> Vec<&'static str> {
    let candidates: [(&'static str, bool); 11] = [
        ("float_val", !p.float_val.is_empty()),
        ("double_val", !p.double_val.is_empty()),
        ("int_val", !p.int_val.is_empty()),
        ("int64_val", !p.int64_val.is_empty()),
        ("bool_val", !p.bool_val.is_empty()),
        ("half_val", !p.half_val.is_empty()),
        ("uint32_val", !p.uint32_val.is_empty()),
        ("uint64_val", !p.uint64_val.is_empty()),
        ("string_val", !p.string_val.is_empty()),
        ("scomplex_val", !p.scomplex_val.is_empty()),
        ("dcomplex_val", !p.dcomplex_val.is_empty()),
    ];
    candidates.into_iter().filter(|(_, set)| *set).map(|(name, _)| name).collect()
}

/// Repeats the last value to fill `count` (TensorFlow's rule); zero values give zeros.
fn fill<T: Copy + Default>(values: &[T], count: usize, field: &'static str, shape: &[usize]) -> Result<Vec<T>, TensorError> {
    if values.len() > count {
        return Err(TensorError::TooManyValues { field, got: values.len(), expected: count, shape: shape_string(shape) });
    }
    let mut out = Vec::with_capacity(count);
    out.extend_from_slice(values);
    out.resize(count, values.last().copied().unwrap_or_default());
    Ok(out)
}

fn narrow<T: TryFrom<i64> + Copy + Default>(
    values: &[i32],
    count: usize,
    dtype: DType,
    shape: &[usize],
) -> Result<Vec<T>, TensorError> {
    let converted = values
        .iter()
        .map(|&v| T::try_from(i64::from(v)).map_err(|_| TensorError::OutOfRange { value: i64::from(v), field: "int_val", dtype }))
        .collect::<Result<Vec<T>, _>>()?;
    fill(&converted, count, "int_val", shape)
}

fn from_typed(p: &TensorProto, dtype: DType, count: usize, shape: &[usize]) -> Result<TensorData, TensorError> {
    let expected = field_for(dtype);
    let populated = populated_fields(p);
    if let Some(&found) = populated.iter().find(|&&f| f != expected) {
        return Err(TensorError::WrongField { dtype, expected, found });
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(fill(&p.float_val, count, expected, shape)?),
        DType::F64 => TensorData::F64(fill(&p.double_val, count, expected, shape)?),
        DType::F16 => TensorData::F16(
            narrow::<u16>(&p.half_val, count, dtype, shape)?.into_iter().map(f16::from_bits).collect(),
        ),
        DType::BF16 => TensorData::BF16(
            narrow::<u16>(&p.half_val, count, dtype, shape)?.into_iter().map(bf16::from_bits).collect(),
        ),
        DType::I8 => TensorData::I8(narrow(&p.int_val, count, dtype, shape)?),
        DType::I16 => TensorData::I16(narrow(&p.int_val, count, dtype, shape)?),
        DType::I32 => TensorData::I32(fill(&p.int_val, count, expected, shape)?),
        DType::U8 => TensorData::U8(narrow(&p.int_val, count, dtype, shape)?),
        DType::U16 => TensorData::U16(narrow(&p.int_val, count, dtype, shape)?),
        DType::I64 => TensorData::I64(fill(&p.int64_val, count, expected, shape)?),
        DType::U32 => TensorData::U32(fill(&p.uint32_val, count, expected, shape)?),
        DType::U64 => TensorData::U64(fill(&p.uint64_val, count, expected, shape)?),
        DType::Bool => TensorData::Bool(fill(&p.bool_val, count, expected, shape)?),
    })
}

/// Encodes a result. TF Serving answers in the typed fields unless
/// `--enable_serialization_as_tensor_content` asks for the compact byte form.
pub fn encode(tensor: &HostTensor, as_content: bool) -> TensorProto {
    let mut proto = TensorProto {
        dtype: dtype_to_tf(tensor.dtype()) as i32,
        tensor_shape: Some(shape_to_tf(tensor.shape().iter().map(|&d| d as i64))),
        ..Default::default()
    };
    if as_content {
        proto.tensor_content = Bytes::from(super::le_bytes::encode(tensor.data()));
        return proto;
    }
    match tensor.data() {
        TensorData::F32(v) => proto.float_val = v.clone(),
        TensorData::F64(v) => proto.double_val = v.clone(),
        TensorData::F16(v) => proto.half_val = v.iter().map(|x| i32::from(x.to_bits())).collect(),
        TensorData::BF16(v) => proto.half_val = v.iter().map(|x| i32::from(x.to_bits())).collect(),
        TensorData::I8(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I16(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I32(v) => proto.int_val = v.clone(),
        TensorData::U8(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::U16(v) => proto.int_val = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I64(v) => proto.int64_val = v.clone(),
        TensorData::U32(v) => proto.uint32_val = v.clone(),
        TensorData::U64(v) => proto.uint64_val = v.clone(),
        TensorData::Bool(v) => proto.bool_val = v.clone(),
    }
    proto
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn proto(dtype: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(shape_to_tf(dims.iter().copied())),
            ..Default::default()
        }
    }

    fn roundtrip(t: &HostTensor, as_content: bool) -> HostTensor {
        let p = encode(t, as_content);
        let h = header(&p, LIMIT).expect("header");
        decode(&p, h).expect("decode")
    }

    fn sample(dtype: DType) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![1.5, -2.0, f32::MAX, 0.0, 1e-30, -0.5]),
            DType::F64 => TensorData::F64(vec![1.5, -2.0, f64::MAX, 0.0, 1e-300, -0.5]),
            DType::F16 => TensorData::F16([1.5f32, -2.0, 65504.0, 0.0, 0.25, -0.5].map(f16::from_f32).to_vec()),
            DType::BF16 => TensorData::BF16([1.5f32, -2.0, 3.0e38, 0.0, 0.25, -0.5].map(bf16::from_f32).to_vec()),
            DType::I8 => TensorData::I8(vec![i8::MIN, -1, 0, 1, 2, i8::MAX]),
            DType::I16 => TensorData::I16(vec![i16::MIN, -1, 0, 1, 2, i16::MAX]),
            DType::I32 => TensorData::I32(vec![i32::MIN, -1, 0, 1, 2, i32::MAX]),
            DType::I64 => TensorData::I64(vec![i64::MIN, -1, 0, 1, 2, i64::MAX]),
            DType::U8 => TensorData::U8(vec![0, 1, 2, 3, 128, u8::MAX]),
            DType::U16 => TensorData::U16(vec![0, 1, 2, 3, 128, u16::MAX]),
            DType::U32 => TensorData::U32(vec![0, 1, 2, 3, 128, u32::MAX]),
            DType::U64 => TensorData::U64(vec![0, 1, 2, 3, 128, u64::MAX]),
            DType::Bool => TensorData::Bool(vec![true, false, true, true, false, false]),
        }
    }

    #[test]
    fn every_dtype_roundtrips_through_typed_fields_and_content() {
        for dtype in DType::ALL {
            let t = HostTensor::new(vec![2, 3], sample(dtype)).expect("tensor");
            assert_eq!(roundtrip(&t, false), t, "typed fields, {dtype}");
            assert_eq!(roundtrip(&t, true), t, "tensor_content, {dtype}");
        }
    }

    #[test]
    fn typed_fields_follow_tensorflow_conventions() {
        let t = HostTensor::new(vec![2], TensorData::U8(vec![7, 9])).expect("tensor");
        let p = encode(&t, false);
        assert_eq!(p.dtype, DataType::DtUint8 as i32);
        assert_eq!(p.int_val, vec![7, 9]);
        let h = HostTensor::new(vec![1], TensorData::BF16(vec![bf16::from_f32(1.0)])).expect("tensor");
        assert_eq!(encode(&h, false).half_val, vec![0x3f80]);
    }

    #[test]
    fn a_single_value_broadcasts_and_the_last_value_repeats() {
        let mut p = proto(DataType::DtFloat, &[2, 3]);
        p.float_val = vec![4.0];
        let t = decode(&p, header(&p, LIMIT).expect("header")).expect("decode");
        assert_eq!(t.data(), &TensorData::F32(vec![4.0; 6]));
        p.float_val = vec![1.0, 2.0];
        let t = decode(&p, header(&p, LIMIT).expect("header")).expect("decode");
        assert_eq!(t.data(), &TensorData::F32(vec![1.0, 2.0, 2.0, 2.0, 2.0, 2.0]));
    }

    #[test]
    fn content_of_the_wrong_length_is_rejected() {
        let mut p = proto(DataType::DtFloat, &[2, 2]);
        p.tensor_content = Bytes::from(vec![0u8; 15]);
        let err = decode(&p, header(&p, LIMIT).expect("header")).expect_err("short content");
        assert_eq!(err.to_string(), "tensor_content has 15 bytes but shape [2,2] of DT_FLOAT needs 16");
    }

    #[test]
    fn negative_and_absurd_shapes_fail_before_allocation() {
        let p = proto(DataType::DtFloat, &[1, -3]);
        assert_eq!(header(&p, LIMIT), Err(TensorError::NegativeDim { shape: "[1,-3]".into() }));
        let p = proto(DataType::DtFloat, &[i64::MAX, i64::MAX]);
        let err = header(&p, LIMIT).expect_err("overflow");
        assert!(err.to_string().contains("over the limit of 1048576 bytes"), "{err}");
        let p = proto(DataType::DtDouble, &[1 << 20]);
        let err = header(&p, LIMIT).expect_err("too large");
        assert!(err.to_string().contains("needs 8388608 bytes"), "{err}");
    }

    #[test]
    fn values_in_the_wrong_field_or_out_of_range_are_rejected() {
        let mut p = proto(DataType::DtFloat, &[1]);
        p.int_val = vec![3];
        let err = decode(&p, header(&p, LIMIT).expect("header")).expect_err("wrong field");
        assert_eq!(err.to_string(), "DT_FLOAT values belong in float_val, but the tensor carries values in int_val");
        let mut p = proto(DataType::DtUint8, &[1]);
        p.int_val = vec![300];
        let err = decode(&p, header(&p, LIMIT).expect("header")).expect_err("range");
        assert_eq!(err.to_string(), "value 300 in int_val is out of range for DT_UINT8");
        let mut p = proto(DataType::DtInt32, &[2]);
        p.int_val = vec![1, 2, 3];
        assert!(decode(&p, header(&p, LIMIT).expect("header")).is_err());
    }

    #[test]
    fn strings_and_quantized_types_are_named_in_the_error() {
        let p = proto(DataType::DtString, &[1]);
        assert_eq!(header(&p, LIMIT), Err(TensorError::UnsupportedDType("DT_STRING".into())));
    }
}
