//! ONNX TensorProto (initializers and Constant values) -> candle tensors, decoded once at load.

use candle_core::{Device, Tensor};

use crate::engine::LoadError;
use crate::proto::onnx::TensorProto;
use crate::proto::onnx::tensor_proto::DataType;

use super::ops::candle_dtype_for_onnx;

pub(crate) fn to_tensor(t: &TensorProto, device: &Device) -> Result<Tensor, LoadError> {
    let name = if t.name.is_empty() { "<unnamed>" } else { t.name.as_str() };
    decode(t, device).map_err(|e| e.context(format!("initializer '{name}'")))
}

fn decode(t: &TensorProto, device: &Device) -> Result<Tensor, LoadError> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(LoadError::Invalid("external data is not supported; embed the weights in the model file".into()));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| LoadError::Invalid(format!("negative dimension {d}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let count: usize = dims.iter().product();
    let raw = &t.raw_data;
    let dt = DataType::try_from(t.data_type).map_err(|_| LoadError::Invalid(format!("unknown data_type {}", t.data_type)))?;
    let bad_len = |got: usize| LoadError::Invalid(format!("holds {got} values but its shape {dims:?} needs {count}"));

    macro_rules! from_raw {
        ($ty:ty, $n:expr) => {{
            if raw.len() != count * $n {
                return Err(bad_len(raw.len() / $n));
            }
            raw.chunks_exact($n).map(|c| <$ty>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect::<Vec<$ty>>()
        }};
    }
    let tensor = match dt {
        DataType::Float => {
            let v: Vec<f32> = if raw.is_empty() { t.float_data.clone() } else { from_raw!(f32, 4) };
            if v.len() != count {
                return Err(bad_len(v.len()));
            }
            Tensor::from_vec(v, dims, device)
        }
        DataType::Double => {
            let v: Vec<f64> = if raw.is_empty() { t.double_data.clone() } else { from_raw!(f64, 8) };
            if v.len() != count {
                return Err(bad_len(v.len()));
            }
            Tensor::from_vec(v, dims, device)
        }
        DataType::Int64 => {
            let v: Vec<i64> = if raw.is_empty() { t.int64_data.clone() } else { from_raw!(i64, 8) };
            if v.len() != count {
                return Err(bad_len(v.len()));
            }
            Tensor::from_vec(v, dims, device)
        }
        DataType::Int32 => {
            let v: Vec<i32> = if raw.is_empty() { t.int32_data.clone() } else { from_raw!(i32, 4) };
            if v.len() != count {
                return Err(bad_len(v.len()));
            }
            Tensor::from_vec(v, dims, device)
        }
        DataType::Uint8 | DataType::Bool => {
            let v: Vec<u8> = if raw.is_empty() {
                t.int32_data.iter().map(|&x| x as u8).collect()
            } else {
                raw.clone()
            };
            if v.len() != count {
                return Err(bad_len(v.len()));
            }
            Tensor::from_vec(v, dims, device)
        }
        other => {
            return Err(LoadError::Invalid(format!(
                "data_type {} is not supported (candle dtype: {:?})",
                other.as_str_name(),
                candle_dtype_for_onnx(t.data_type)
            )));
        }
    };
    tensor.map_err(|e| LoadError::Invalid(e.to_string()))
}
