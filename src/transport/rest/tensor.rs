//! JSON values as request tensors. The shape comes from the nesting and the dtype from the
//! signature (JSON carries none), checked in two steps like the gRPC tensors: `header` walks the
//! structure without allocating, so the signature check in `Servable::predict` runs before
//! `materialise` allocates and converts. Texts follow TF's json_tensor.cc.

use half::{bf16, f16};

use crate::servable::{RequestError, RequestTensor};
use crate::tensor::{DType, HostTensor, TensorData, TensorSpec, element_count};

use crate::transport::json::{Value, preview};

/// One request tensor, borrowed from the parsed body.
#[derive(Debug)]
pub(super) enum JsonTensor<'v, 'a> {
    /// Columnar format: the tensor is this value, its shape the nesting.
    Whole(&'v Value<'a>),
    /// Row format: one value per instance, stacked along a new leading (batch) dimension.
    /// `named` says the instances were objects, so messages name the key as TF does.
    Rows { rows: Vec<&'v Value<'a>>, named: bool },
}

/// TF's `DataTypeString`, which its JSON type errors print (`float`, not `DT_FLOAT`).
fn tf_type_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::F16 => "half",
        DType::BF16 => "bfloat16",
        DType::I8 => "int8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::U8 => "uint8",
        DType::U16 => "uint16",
        DType::U32 => "uint32",
        DType::U64 => "uint64",
        DType::Bool => "bool",
    }
}

/// `{"b64": "<string>"}`, TF's wrapper for binary DT_STRING values.
pub(super) fn is_base64_object(value: &Value<'_>) -> bool {
    matches!(value, Value::Object(members) if members.len() == 1 && members[0].0 == "b64" && matches!(members[0].1, Value::String(_)))
}

/// An object that names tensors (as opposed to a `b64` value).
pub(super) fn is_named_object(value: &Value<'_>) -> bool {
    matches!(value, Value::Object(_)) && !is_base64_object(value)
}

/// The shape implied by following the first element at every level (TF's
/// `GetDenseTensorShape`); [`check_nesting`] then proves every other element agrees.
fn dense_shape(value: &Value<'_>) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut current = value;
    while let Value::Array(items) = current {
        shape.push(items.len());
        match items.first() {
            Some(first) => current = first,
            None => break,
        }
    }
    shape
}

/// Every list at level `l` has `shape[l]` elements and every scalar sits at the deepest level,
/// so the element count is exactly the product of `shape`: a ragged body cannot make us
/// allocate for elements it does not contain.
fn check_nesting(value: &Value<'_>, shape: &[usize], level: usize) -> Result<(), String> {
    let rank = shape.len();
    match value {
        Value::Array(items) => {
            let Some(&expected) = shape.get(level) else {
                return Err(format!("Encountered list at unexpected level: {level} expected < {rank}"));
            };
            if items.len() != expected {
                return Err(format!(
                    "Encountered list at unexpected size: {} at level: {level} expected size: {expected}",
                    items.len()
                ));
            }
            items.iter().try_for_each(|item| check_nesting(item, shape, level + 1))
        }
        _ if level != rank => Err(format!(
            "JSON Value: {} found at incorrect level: {} in the JSON DOM. Expected at level: {rank}",
            preview(value),
            level + 1
        )),
        _ => Ok(()),
    }
}

fn row_context(index: usize, key: &str, named: bool) -> String {
    if named {
        format!("Failed to process element: {index} key: {key} of 'instances' list. Error: ")
    } else {
        format!("Failed to process element: {index} of 'instances' list. Error: ")
    }
}

impl RequestTensor for JsonTensor<'_, '_> {
    fn header(&self, spec: &TensorSpec) -> Result<(DType, Vec<usize>), RequestError> {
        let shape = match self {
            JsonTensor::Whole(value) => {
                let shape = dense_shape(value);
                check_nesting(value, &shape, 0).map_err(RequestError::Invalid)?;
                shape
            }
            JsonTensor::Rows { rows, named } => {
                let row_shape = rows.first().map(|row| dense_shape(row)).unwrap_or_default();
                for (index, row) in rows.iter().enumerate() {
                    check_nesting(row, &row_shape, 0)
                        .map_err(|e| RequestError::Invalid(format!("{}{e}", row_context(index, &spec.key, *named))))?;
                }
                let mut shape = Vec::with_capacity(row_shape.len() + 1);
                shape.push(rows.len());
                shape.extend(row_shape);
                shape
            }
        };
        Ok((spec.dtype, shape))
    }

    fn materialise(self, spec: &TensorSpec, dtype: DType, shape: Vec<usize>) -> Result<HostTensor, RequestError> {
        let count = element_count(&shape)
            .ok_or_else(|| RequestError::Invalid(format!("input '{}' has too many elements", spec.key)))?;
        let key = spec.key.as_str();
        let data = match dtype {
            DType::F32 => TensorData::F32(self.collect(key, count, |v| decimal(v, dtype, F32_MAX_INT, f64::from(f32::MAX)).map(|x| x as f32))?),
            DType::F64 => TensorData::F64(self.collect(key, count, |v| decimal(v, dtype, F64_MAX_INT, f64::MAX))?),
            DType::F16 => TensorData::F16(
                self.collect(key, count, |v| decimal(v, dtype, F32_MAX_INT, f64::from(f32::MAX)).map(f16::from_f64))?,
            ),
            DType::BF16 => TensorData::BF16(
                self.collect(key, count, |v| decimal(v, dtype, F32_MAX_INT, f64::from(f32::MAX)).map(bf16::from_f64))?,
            ),
            DType::I8 => TensorData::I8(self.collect(key, count, |v| integer(v, dtype))?),
            DType::I16 => TensorData::I16(self.collect(key, count, |v| integer(v, dtype))?),
            DType::I32 => TensorData::I32(self.collect(key, count, |v| integer(v, dtype))?),
            DType::I64 => TensorData::I64(self.collect(key, count, |v| integer(v, dtype))?),
            DType::U8 => TensorData::U8(self.collect(key, count, |v| integer(v, dtype))?),
            DType::U16 => TensorData::U16(self.collect(key, count, |v| integer(v, dtype))?),
            DType::U32 => TensorData::U32(self.collect(key, count, |v| integer(v, dtype))?),
            DType::U64 => TensorData::U64(self.collect(key, count, |v| integer(v, dtype))?),
            DType::Bool => TensorData::Bool(self.collect(key, count, |v| match v {
                Value::Bool(b) => Ok(*b),
                _ => Err(type_error(v, dtype)),
            })?),
        };
        HostTensor::new(shape, data).map_err(RequestError::Invalid)
    }
}

impl JsonTensor<'_, '_> {
    /// Converts every leaf in row-major order; `count` (already validated against the nesting)
    /// sizes the buffer once.
    fn collect<T>(&self, key: &str, count: usize, convert: impl Fn(&Value<'_>) -> Result<T, String>) -> Result<Vec<T>, RequestError> {
        let mut out = Vec::with_capacity(count);
        match self {
            JsonTensor::Whole(value) => push_leaves(value, &mut out, &convert).map_err(RequestError::Invalid)?,
            JsonTensor::Rows { rows, named } => {
                for (index, row) in rows.iter().enumerate() {
                    push_leaves(row, &mut out, &convert)
                        .map_err(|e| RequestError::Invalid(format!("{}{e}", row_context(index, key, *named))))?;
                }
            }
        }
        Ok(out)
    }
}

fn push_leaves<T>(value: &Value<'_>, out: &mut Vec<T>, convert: &impl Fn(&Value<'_>) -> Result<T, String>) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| push_leaves(item, out, convert)),
        leaf => {
            out.push(convert(leaf)?);
            Ok(())
        }
    }
}

/// Largest integers a float type holds exactly (2^digits - 1); TF rejects larger JSON integers
/// for float inputs rather than silently rounding them.
const F32_MAX_INT: u64 = (1 << f32::MANTISSA_DIGITS) - 1;
const F64_MAX_INT: u64 = (1 << f64::MANTISSA_DIGITS) - 1;

fn type_error(value: &Value<'_>, dtype: DType) -> String {
    let mut message =
        format!("JSON Value: {} Type: {} is not of expected type: {}", preview(value), value.type_name(), tf_type_name(dtype));
    if is_base64_object(value) {
        message.push_str(
            " ({\"b64\": ...} carries binary DT_STRING data; this input is not a string tensor, and this server has no string inputs)",
        );
    }
    message
}

/// Any JSON number (and NaN/Infinity) for a float input, unless it would lose precision.
fn decimal(value: &Value<'_>, dtype: DType, max_int: u64, max_abs: f64) -> Result<f64, String> {
    let lossy = || format!("Cannot convert JSON value: {} to {} without loss of precision.", preview(value), tf_type_name(dtype));
    match *value {
        Value::Int(i) if i.unsigned_abs() <= max_int => Ok(i as f64),
        Value::Uint(u) if u <= max_int => Ok(u as f64),
        Value::Int(_) | Value::Uint(_) => Err(lossy()),
        Value::Float(f) if f.is_finite() && f.abs() > max_abs => Err(lossy()),
        Value::Float(f) => Ok(f),
        _ => Err(type_error(value, dtype)),
    }
}

/// A JSON integer in range of the input's integer type; decimals (even `1.0`) are rejected as
/// TF does, so a float never silently truncates into an int tensor.
fn integer<T: TryFrom<i64> + TryFrom<u64>>(value: &Value<'_>, dtype: DType) -> Result<T, String> {
    let converted = match *value {
        Value::Int(i) => T::try_from(i).ok(),
        Value::Uint(u) => T::try_from(u).ok(),
        _ => None,
    };
    converted.ok_or_else(|| type_error(value, dtype))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Dim;
    use crate::transport::json::parse;

    fn spec(dtype: DType) -> TensorSpec {
        TensorSpec { key: "x".into(), dtype, shape: None }
    }

    fn columnar(body: &str, dtype: DType) -> Result<HostTensor, String> {
        let value = parse(body.as_bytes()).map_err(|e| e.to_string())?;
        let spec = spec(dtype);
        let tensor = JsonTensor::Whole(&value);
        let (dtype, shape) = tensor.header(&spec).map_err(|e| e.to_string())?;
        tensor.materialise(&spec, dtype, shape).map_err(|e| e.to_string())
    }

    #[test]
    fn shape_comes_from_nesting() {
        let t = columnar("[[1, 2.5, NaN], [4, -Infinity, 6]]", DType::F32).expect("tensor");
        assert_eq!(t.shape(), &[2, 3]);
        let TensorData::F32(v) = t.data() else { panic!("f32") };
        assert_eq!(v[..2], [1.0, 2.5]);
        assert!(v[2].is_nan() && v[4] == f32::NEG_INFINITY);
        assert_eq!(columnar("7", DType::F64).expect("scalar").shape(), &[] as &[usize]);
        assert_eq!(columnar("[[], []]", DType::F32).expect("empty").shape(), &[2, 0]);
    }

    #[test]
    fn ragged_nesting_is_named() {
        let e = columnar("[[1, 2], [3]]", DType::F32).expect_err("ragged");
        assert_eq!(e, "Encountered list at unexpected size: 1 at level: 1 expected size: 2");
        let e = columnar("[[1, 2], 3]", DType::F32).expect_err("scalar among lists");
        assert_eq!(e, "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2");
        let e = columnar("[1, [2]]", DType::F32).expect_err("list among scalars");
        assert_eq!(e, "Encountered list at unexpected level: 1 expected < 1");
    }

    #[test]
    fn value_kinds_follow_the_dtype() {
        let e = columnar("[1, 2.0]", DType::I32).expect_err("decimal for int");
        assert_eq!(e, "JSON Value: 2.0 Type: Number is not of expected type: int32");
        let e = columnar("[300]", DType::I8).expect_err("out of range");
        assert!(e.ends_with("is not of expected type: int8"), "{e}");
        let e = columnar("[-1]", DType::U32).expect_err("negative unsigned");
        assert!(e.ends_with("is not of expected type: uint32"), "{e}");
        let TensorData::U64(v) = columnar("[18446744073709551615]", DType::U64).expect("u64").into_parts().1 else {
            panic!("u64")
        };
        assert_eq!(v, [u64::MAX]);
        let e = columnar("[true]", DType::F32).expect_err("bool for float");
        assert_eq!(e, "JSON Value: true Type: True is not of expected type: float");
        let e = columnar("[16777217]", DType::F32).expect_err("lossy");
        assert_eq!(e, "Cannot convert JSON value: 16777217 to float without loss of precision.");
        let e = columnar("[1e300]", DType::F32).expect_err("out of f32 range");
        assert!(e.starts_with("Cannot convert JSON value: 1e+300 to float"), "{e}");
        let e = columnar(r#"[{"b64": "AAAA"}]"#, DType::F32).expect_err("b64");
        assert!(e.contains("Type: Object is not of expected type: float") && e.contains("DT_STRING"), "{e}");
        let t = columnar("[[true, false]]", DType::Bool).expect("bool");
        assert_eq!(t.data(), &TensorData::Bool(vec![true, false]));
        let t = columnar("[3, -4]", DType::F64).expect("ints for double");
        assert_eq!(t.data(), &TensorData::F64(vec![3.0, -4.0]));
    }

    #[test]
    fn rows_stack_along_a_batch_dimension() {
        let body = parse(b"[[[1], [2]], [[3], [4]], [[5], [6]]]").expect("json");
        let rows: Vec<&Value<'_>> = body.as_array().expect("array").iter().collect();
        let spec = TensorSpec { key: "x".into(), dtype: DType::F32, shape: Some(vec![Dim::Dynamic, Dim::Fixed(2), Dim::Fixed(1)]) };
        let tensor = JsonTensor::Rows { rows, named: false };
        let (dtype, shape) = tensor.header(&spec).expect("header");
        assert_eq!(shape, [3, 2, 1]);
        let t = tensor.materialise(&spec, dtype, shape).expect("tensor");
        assert_eq!(t.data(), &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));

        let body = parse(b"[[1, 2], [3]]").expect("json");
        let rows = body.as_array().expect("array").iter().collect();
        let e = JsonTensor::Rows { rows, named: true }.header(&spec).expect_err("ragged row");
        assert_eq!(
            e.to_string(),
            "Failed to process element: 1 key: x of 'instances' list. Error: Encountered list at unexpected size: 1 at level: 0 expected size: 2"
        );
    }
}
