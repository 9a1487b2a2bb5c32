//! v2 request tensors into the request core's [`RequestTensor`], and answers back out.
//!
//! A v2 input declares its own datatype and shape, so the declared header is checked against
//! the signature first, with the protocol's datatype names in the message, before any value
//! is converted. Contents come three ways: little-endian bytes (`raw_input_contents`, or the
//! REST binary data extension), the typed fields of `InferTensorContents`, or JSON values
//! already converted by the REST parser.

use half::{bf16, f16};
use prost::bytes::Bytes;

use crate::proto::inference::InferTensorContents;
use crate::servable::{RequestError, RequestTensor};
use crate::tensor::{DType, HostTensor, TensorData, TensorSpec, element_count, le_bytes};
use crate::transport::json::Value;

use super::datatype;

/// One input as the client sent it.
pub struct V2Input {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub values: Values,
    /// `--max_tensor_bytes`: the largest tensor a request may make us allocate.
    pub max_bytes: usize,
}

pub enum Values {
    /// Little-endian elements, in row-major order.
    Raw(Bytes),
    Typed(InferTensorContents),
    /// Converted from JSON (whose size the body limit already bounds).
    Decoded(TensorData),
    /// JSON data of a datatype the server does not know, left unread: `header` refuses the
    /// input before contents are asked for.
    Unread,
}

fn invalid(message: String) -> RequestError {
    RequestError::Invalid(message)
}

impl V2Input {
    fn shape_string(&self) -> String {
        format!("[{}]", self.shape.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
    }
}

impl RequestTensor for V2Input {
    fn header(&self, spec: &TensorSpec) -> Result<(DType, Vec<usize>), RequestError> {
        let want = datatype::name(spec.dtype);
        let dtype = match datatype::parse(&self.datatype) {
            Some(dtype) => dtype,
            None if self.datatype == datatype::BYTES => {
                return Err(invalid(format!(
                    "input '{}' has datatype BYTES, which this model does not take: it expects {want}",
                    self.name
                )));
            }
            None => return Err(invalid(format!("input '{}' has unknown datatype '{}'; this model expects {want}", self.name, self.datatype))),
        };
        if dtype != spec.dtype {
            return Err(invalid(format!("input '{}' has datatype {}, but the model expects {want}", self.name, self.datatype)));
        }
        let shape = self
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| invalid(format!("input '{}' has shape {} with a negative dimension", self.name, self.shape_string())))?;
        let bytes = element_count(&shape).and_then(|n| n.checked_mul(dtype.size_in_bytes()));
        if bytes.is_none_or(|b| b > self.max_bytes) {
            return Err(invalid(format!(
                "input '{}' of shape {} and datatype {} is larger than the limit of {} bytes (--max_tensor_bytes)",
                self.name,
                self.shape_string(),
                self.datatype,
                self.max_bytes
            )));
        }
        Ok((dtype, shape))
    }

    fn materialise(self, _: &TensorSpec, dtype: DType, shape: Vec<usize>) -> Result<HostTensor, RequestError> {
        let count = element_count(&shape).unwrap_or(usize::MAX);
        let shape_text = self.shape_string();
        let source = if matches!(self.values, Values::Typed(_)) { field_name(dtype) } else { "data" };
        let data = match self.values {
            Values::Raw(bytes) => {
                let expected = count.saturating_mul(dtype.size_in_bytes());
                if bytes.len() != expected {
                    return Err(invalid(format!(
                        "input '{}' has {} bytes of raw content, but shape {} of {} needs {expected}",
                        self.name,
                        bytes.len(),
                        shape_text,
                        self.datatype
                    )));
                }
                le_bytes::decode(dtype, &bytes)
            }
            Values::Typed(contents) => from_typed(&self.name, contents, dtype)?,
            Values::Decoded(data) => data,
            Values::Unread => return Err(invalid(format!("input '{}' has datatype {}, which cannot be read", self.name, self.datatype))),
        };
        if data.len() != count {
            return Err(invalid(format!(
                "input '{}' holds {} values in {source}, but shape {} has {count} elements",
                self.name,
                data.len(),
                shape_text
            )));
        }
        HostTensor::new(shape, data).map_err(|e| invalid(format!("input '{}': {e}", self.name)))
    }
}

/// The typed field of each datatype, for messages.
fn field_name(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "bool_contents",
        DType::I8 | DType::I16 | DType::I32 => "int_contents",
        DType::I64 => "int64_contents",
        DType::U8 | DType::U16 | DType::U32 => "uint_contents",
        DType::U64 => "uint64_contents",
        DType::F32 => "fp32_contents",
        DType::F64 => "fp64_contents",
        DType::F16 | DType::BF16 => "raw_input_contents",
    }
}

fn narrow<T: TryFrom<W>, W: Copy + std::fmt::Display>(name: &str, values: Vec<W>, dtype: DType) -> Result<Vec<T>, RequestError> {
    values
        .into_iter()
        .map(|v| T::try_from(v).map_err(|_| invalid(format!("input '{name}': value {v} is out of range for {}", datatype::name(dtype)))))
        .collect()
}

fn from_typed(name: &str, c: InferTensorContents, dtype: DType) -> Result<TensorData, RequestError> {
    Ok(match dtype {
        DType::Bool => TensorData::Bool(c.bool_contents),
        DType::I8 => TensorData::I8(narrow(name, c.int_contents, dtype)?),
        DType::I16 => TensorData::I16(narrow(name, c.int_contents, dtype)?),
        DType::I32 => TensorData::I32(c.int_contents),
        DType::I64 => TensorData::I64(c.int64_contents),
        DType::U8 => TensorData::U8(narrow(name, c.uint_contents, dtype)?),
        DType::U16 => TensorData::U16(narrow(name, c.uint_contents, dtype)?),
        DType::U32 => TensorData::U32(c.uint_contents),
        DType::U64 => TensorData::U64(c.uint64_contents),
        DType::F32 => TensorData::F32(c.fp32_contents),
        DType::F64 => TensorData::F64(c.fp64_contents),
        DType::F16 | DType::BF16 => {
            return Err(invalid(format!(
                "input '{name}' is {}, which has no typed contents field: send it in raw_input_contents",
                datatype::name(dtype)
            )));
        }
    })
}

/// The typed contents of an output; `None` for FP16 and BF16, which only travel raw.
pub fn typed_contents(tensor: &HostTensor) -> Option<InferTensorContents> {
    let mut c = InferTensorContents::default();
    match tensor.data() {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::I8(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I16(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I32(v) => c.int_contents = v.clone(),
        TensorData::I64(v) => c.int64_contents = v.clone(),
        TensorData::U8(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::U16(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::U32(v) => c.uint_contents = v.clone(),
        TensorData::U64(v) => c.uint64_contents = v.clone(),
        TensorData::F32(v) => c.fp32_contents = v.clone(),
        TensorData::F64(v) => c.fp64_contents = v.clone(),
        TensorData::F16(_) | TensorData::BF16(_) => return None,
    }
    Some(c)
}

pub fn shape_i64(tensor: &HostTensor) -> Vec<i64> {
    tensor.shape().iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect()
}

/// JSON `data` (already flattened) as `dtype` elements. JSON integers are accepted for float
/// types; a float for an integer type, or a value out of range, is refused.
pub fn from_json(name: &str, dtype: DType, values: &[&Value<'_>]) -> Result<TensorData, RequestError> {
    let bad = |v: &Value<'_>| {
        invalid(format!("input '{name}': {} value {} cannot be read as {}", v.type_name(), crate::transport::json::preview(v), datatype::name(dtype)))
    };
    macro_rules! float {
        ($conv:expr) => {
            values.iter().map(|v| v.as_f64().map($conv).ok_or_else(|| bad(v))).collect::<Result<Vec<_>, _>>()?
        };
    }
    macro_rules! int {
        ($ty:ty) => {
            values
                .iter()
                .map(|v| match v {
                    Value::Int(i) => <$ty>::try_from(*i).map_err(|_| bad(v)),
                    Value::Uint(u) => <$ty>::try_from(*u).map_err(|_| bad(v)),
                    _ => Err(bad(v)),
                })
                .collect::<Result<Vec<$ty>, _>>()?
        };
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(float!(|x| x as f32)),
        DType::F64 => TensorData::F64(float!(|x| x)),
        DType::F16 => TensorData::F16(float!(f16::from_f64)),
        DType::BF16 => TensorData::BF16(float!(bf16::from_f64)),
        DType::I8 => TensorData::I8(int!(i8)),
        DType::I16 => TensorData::I16(int!(i16)),
        DType::I32 => TensorData::I32(int!(i32)),
        DType::I64 => TensorData::I64(int!(i64)),
        DType::U8 => TensorData::U8(int!(u8)),
        DType::U16 => TensorData::U16(int!(u16)),
        DType::U32 => TensorData::U32(int!(u32)),
        DType::U64 => TensorData::U64(int!(u64)),
        DType::Bool => TensorData::Bool(
            values.iter().map(|v| if let Value::Bool(b) = v { Ok(*b) } else { Err(bad(v)) }).collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Dim;

    fn spec() -> TensorSpec {
        TensorSpec { key: "x".into(), dtype: DType::F32, shape: Some(vec![Dim::Dynamic, Dim::Fixed(2)]) }
    }

    fn input(datatype: &str, shape: Vec<i64>, values: Values) -> V2Input {
        V2Input { name: "x".into(), datatype: datatype.into(), shape, values, max_bytes: 1 << 20 }
    }

    #[test]
    fn raw_and_typed_contents_decode() {
        let raw = Bytes::from([1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        let t = input("FP32", vec![2, 2], Values::Raw(raw));
        let (dtype, shape) = t.header(&spec()).expect("header");
        let tensor = t.materialise(&spec(), dtype, shape).expect("tensor");
        assert_eq!(tensor.data(), &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));

        let contents = InferTensorContents { fp32_contents: vec![5.0, 6.0], ..Default::default() };
        let t = input("FP32", vec![1, 2], Values::Typed(contents));
        let (dtype, shape) = t.header(&spec()).expect("header");
        assert_eq!(t.materialise(&spec(), dtype, shape).expect("tensor").shape(), &[1, 2]);
    }

    #[test]
    fn mismatches_name_the_problem() {
        let t = input("FP64", vec![1, 2], Values::Raw(Bytes::new()));
        let err = t.header(&spec()).expect_err("dtype").to_string();
        assert!(err.contains("FP64") && err.contains("FP32") && err.contains("'x'"), "{err}");
        let err = input("BYTES", vec![1, 2], Values::Raw(Bytes::new())).header(&spec()).expect_err("bytes").to_string();
        assert!(err.contains("BYTES") && err.contains("FP32"), "{err}");
        let err = input("FP32", vec![1, -2], Values::Raw(Bytes::new())).header(&spec()).expect_err("negative").to_string();
        assert!(err.contains("[1,-2]"), "{err}");
        let t = input("FP32", vec![1, 2], Values::Raw(Bytes::from_static(&[0; 4])));
        let (dtype, shape) = t.header(&spec()).expect("header");
        let err = t.materialise(&spec(), dtype, shape).expect_err("short").to_string();
        assert!(err.contains("4 bytes") && err.contains("needs 8"), "{err}");
        let t = input("FP32", vec![1 << 20, 2], Values::Raw(Bytes::new()));
        assert!(t.header(&spec()).expect_err("large").to_string().contains("--max_tensor_bytes"));
    }

    #[test]
    fn json_values_convert_by_datatype() {
        let doc = crate::transport::json::parse(b"[1, 2.5, -3]").expect("json");
        let values: Vec<&Value<'_>> = doc.as_array().expect("array").iter().collect();
        assert_eq!(from_json("x", DType::F32, &values).expect("f32"), TensorData::F32(vec![1.0, 2.5, -3.0]));
        let err = from_json("x", DType::I32, &values).expect_err("float as int").to_string();
        assert!(err.contains("2.5") && err.contains("INT32"), "{err}");
        let ints: Vec<&Value<'_>> = vec![&values[0], &values[2]];
        assert!(from_json("x", DType::U8, &ints).is_err(), "-3 is out of range for UINT8");
    }
}
