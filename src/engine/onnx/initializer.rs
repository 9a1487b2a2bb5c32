//! ONNX TensorProto (initializers and Constant values) -> candle tensors, decoded once at load.

use candle_core::{Device, Tensor};

use crate::engine::LoadError;
use crate::proto::onnx::TensorProto;
use crate::proto::onnx::tensor_proto::DataType;

use crate::tensor::element_count;

use super::ops::candle_dtype_for_onnx;

pub(crate) fn to_tensor(t: &TensorProto, device: &Device) -> Result<Tensor, LoadError> {
    let name = if t.name.is_empty() { "<unnamed>" } else { t.name.as_str() };
    decode(t, device).map_err(|e| e.context(format!("initializer '{name}'")))
}

fn decode(t: &TensorProto, device: &Device) -> Result<Tensor, LoadError> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(external_data_refused(t));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| LoadError::Invalid(format!("negative dimension {d}"))))
        .collect::<Result<Vec<_>, _>>()?;
    // The dims come from the file: a product that overflows must not wrap around and match
    // a short buffer. Every branch below compares this count with the data actually present
    // before building a tensor, so nothing is allocated for elements the file does not hold.
    let count = element_count(&dims)
        .ok_or_else(|| LoadError::Invalid(format!("shape {dims:?} has more elements than this machine can address")))?;
    let raw = &t.raw_data;
    let dt = DataType::try_from(t.data_type).map_err(|_| LoadError::Invalid(format!("unknown data_type {}", t.data_type)))?;
    let bad_len = |got: usize| LoadError::Invalid(format!("holds {got} values but its shape {dims:?} needs {count}"));

    macro_rules! from_raw {
        ($ty:ty, $n:expr) => {{
            if count.checked_mul($n) != Some(raw.len()) {
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
                raw.to_vec()
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

/// Weights stored next to the model (`data_location: EXTERNAL`) are refused, naming the file
/// the model points at. Reading them would mean opening a path chosen by the model file, which
/// needs its own confinement to the version directory; until that exists, the fix is on the
/// export side.
fn external_data_refused(t: &TensorProto) -> LoadError {
    let location = t.external_data.iter().find(|e| e.key == "location").map(|e| e.value.as_str());
    let file = location.map_or_else(String::new, |l| format!(" (location '{l}')"));
    LoadError::Invalid(format!(
        "stores its data in an external file{file}, which is not supported: embed the weights in model.onnx \
         (onnx.save_model(model, path, save_as_external_data=False))"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::StringStringEntryProto;

    fn float_tensor(dims: Vec<i64>, raw: Vec<u8>) -> TensorProto {
        TensorProto { name: "w".into(), data_type: DataType::Float as i32, dims, raw_data: raw.into(), ..Default::default() }
    }

    #[test]
    fn external_data_is_refused_naming_the_file() {
        let mut t = float_tensor(vec![2], Vec::new());
        t.data_location = 1;
        t.external_data = vec![StringStringEntryProto { key: "location".into(), value: "../../etc/passwd".into() }];
        let err = to_tensor(&t, &Device::Cpu).expect_err("external").to_string();
        assert!(err.starts_with("initializer 'w': invalid model: stores its data in an external file (location '../../etc/passwd')"), "{err}");
        assert!(err.contains("save_as_external_data=False"), "{err}");
    }

    #[test]
    fn shapes_whose_element_count_overflows_are_refused() {
        let t = float_tensor(vec![1 << 32, 1 << 32, 16], Vec::new());
        let err = to_tensor(&t, &Device::Cpu).expect_err("overflow").to_string();
        assert!(err.contains("more elements than this machine can address"), "{err}");
        let t = float_tensor(vec![1 << 62], vec![0; 8]);
        assert!(to_tensor(&t, &Device::Cpu).is_err());
    }
}
