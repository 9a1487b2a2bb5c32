//! HostTensor <-> candle Tensor. The only place that knows both representations.

use candle_core::{DType as CDType, Device, Tensor};

use crate::tensor::{DType, HostTensor, TensorData};

/// The candle dtype that stores `dtype`, if candle has one.
pub(crate) fn candle_dtype(dtype: DType) -> Option<CDType> {
    Some(match dtype {
        DType::F32 => CDType::F32,
        DType::F64 => CDType::F64,
        DType::F16 => CDType::F16,
        DType::BF16 => CDType::BF16,
        DType::I16 => CDType::I16,
        DType::I32 => CDType::I32,
        DType::I64 => CDType::I64,
        DType::U8 => CDType::U8,
        DType::U32 => CDType::U32,
        DType::I8 | DType::U16 | DType::U64 | DType::Bool => return None,
    })
}

pub(crate) fn to_candle(tensor: HostTensor, device: &Device) -> candle_core::Result<Tensor> {
    let (shape, data) = tensor.into_parts();
    match data {
        TensorData::F32(v) => Tensor::from_vec(v, shape, device),
        TensorData::F64(v) => Tensor::from_vec(v, shape, device),
        TensorData::F16(v) => Tensor::from_vec(v, shape, device),
        TensorData::BF16(v) => Tensor::from_vec(v, shape, device),
        TensorData::I16(v) => Tensor::from_vec(v, shape, device),
        TensorData::I32(v) => Tensor::from_vec(v, shape, device),
        TensorData::I64(v) => Tensor::from_vec(v, shape, device),
        TensorData::U8(v) => Tensor::from_vec(v, shape, device),
        TensorData::U32(v) => Tensor::from_vec(v, shape, device),
        TensorData::Bool(v) => Tensor::from_vec(v.into_iter().map(u8::from).collect::<Vec<u8>>(), shape, device),
        other => Err(candle_core::Error::Msg(format!("{} tensors are not supported by the candle engine", other.dtype()))),
    }
}

/// Converts an engine result to the declared output dtype. `want` comes from the signature, so a
/// graph that computes in another precision is cast back rather than surprising the client.
pub(crate) fn from_candle(tensor: &Tensor, want: DType) -> candle_core::Result<HostTensor> {
    let shape = tensor.dims().to_vec();
    if tensor.elem_count() == 0 {
        // An empty view's offset may lie past its storage (candle's narrow); nothing to read.
        return HostTensor::new(shape, TensorData::zeros(want, 0)).map_err(candle_core::Error::Msg);
    }
    let flat = tensor.flatten_all()?;
    let data = match want {
        DType::F32 => TensorData::F32(flat.to_dtype(CDType::F32)?.to_vec1()?),
        DType::F64 => TensorData::F64(flat.to_dtype(CDType::F64)?.to_vec1()?),
        DType::F16 => TensorData::F16(flat.to_dtype(CDType::F16)?.to_vec1()?),
        DType::BF16 => TensorData::BF16(flat.to_dtype(CDType::BF16)?.to_vec1()?),
        DType::I16 => TensorData::I16(flat.to_dtype(CDType::I16)?.to_vec1()?),
        DType::I32 => TensorData::I32(flat.to_dtype(CDType::I32)?.to_vec1()?),
        DType::I64 => TensorData::I64(flat.to_dtype(CDType::I64)?.to_vec1()?),
        DType::U8 => TensorData::U8(flat.to_dtype(CDType::U8)?.to_vec1()?),
        DType::U32 => TensorData::U32(flat.to_dtype(CDType::U32)?.to_vec1()?),
        DType::Bool => {
            let v: Vec<u8> = flat.to_dtype(CDType::U8)?.to_vec1()?;
            TensorData::Bool(v.into_iter().map(|x| x != 0).collect())
        }
        DType::I8 => TensorData::I8(flat.to_dtype(CDType::I64)?.to_vec1::<i64>()?.into_iter().map(|x| x as i8).collect()),
        DType::U16 => TensorData::U16(flat.to_dtype(CDType::I64)?.to_vec1::<i64>()?.into_iter().map(|x| x as u16).collect()),
        DType::U64 => TensorData::U64(flat.to_dtype(CDType::I64)?.to_vec1::<i64>()?.into_iter().map(|x| x as u64).collect()),
    };
    HostTensor::new(shape, data).map_err(candle_core::Error::Msg)
}
