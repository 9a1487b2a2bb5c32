//! Warm-up before a version turns AVAILABLE (TF Serving's `--enable_model_warmup`): replay the
//! Predict logs in `assets.extra/tf_serving_warmup_requests`, or, without that file, run one
//! synthetic request shaped by the signature, so the first real request is not the slow one.

use std::path::Path;
use std::sync::Arc;

use prost::Message;

use crate::proto::tensorflow::serving::PredictionLog;
use crate::proto::tensorflow::serving::prediction_log::LogType;
use crate::repository::VersionRequest;
use crate::serving::{DEFAULT_SIGNATURE, PredictCall, Servable, WireTensor, predict_on};
use crate::tensor::{DType, Dim, HostTensor, TensorData};

use super::tfrecord;

pub(crate) const WARMUP_FILE: &str = "assets.extra/tf_serving_warmup_requests";
/// TF Serving's cap on warm-up records.
const MAX_RECORDS: usize = 1000;

/// Runs the warm-up for `servable` stored in `dir`; returns how many requests ran.
pub(crate) async fn warm_up(servable: &Arc<Servable>, dir: &Path, max_tensor_bytes: usize) -> Result<usize, String> {
    let file = dir.join(WARMUP_FILE);
    if !file.is_file() {
        return synthetic(servable).await.map(|()| 1);
    }
    let bytes = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let records = tfrecord::records(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    if records.len() > MAX_RECORDS {
        return Err(format!("{} has {} records, more than the limit of {MAX_RECORDS}", file.display(), records.len()));
    }
    for (index, record) in records.iter().enumerate() {
        let log = PredictionLog::decode(*record).map_err(|e| format!("warm-up record {index}: not a PredictionLog: {e}"))?;
        let request = match log.log_type {
            Some(LogType::PredictLog(p)) => p.request.unwrap_or_default(),
            _ => return Err(format!("warm-up record {index}: only PredictLog records are supported")),
        };
        let signature_name = request.model_spec.map(|s| s.signature_name).unwrap_or_default();
        let call = PredictCall {
            model: servable.name().to_string(),
            version: VersionRequest::Specific(servable.version()),
            signature_name,
            inputs: request.inputs.into_iter().map(|(k, proto)| (k, WireTensor { proto, max_bytes: max_tensor_bytes })).collect(),
            output_filter: request.output_filter,
            deadline: None,
        };
        predict_on(Arc::clone(servable), call).await.map_err(|e| format!("warm-up record {index} failed: {e}"))?;
    }
    Ok(records.len())
}

fn zeros(dtype: DType, n: usize) -> TensorData {
    match dtype {
        DType::F32 => TensorData::F32(vec![0.0; n]),
        DType::F64 => TensorData::F64(vec![0.0; n]),
        DType::F16 => TensorData::F16(vec![half::f16::ZERO; n]),
        DType::BF16 => TensorData::BF16(vec![half::bf16::ZERO; n]),
        DType::I8 => TensorData::I8(vec![0; n]),
        DType::I16 => TensorData::I16(vec![0; n]),
        DType::I32 => TensorData::I32(vec![0; n]),
        DType::I64 => TensorData::I64(vec![0; n]),
        DType::U8 => TensorData::U8(vec![0; n]),
        DType::U16 => TensorData::U16(vec![0; n]),
        DType::U32 => TensorData::U32(vec![0; n]),
        DType::U64 => TensorData::U64(vec![0; n]),
        DType::Bool => TensorData::Bool(vec![false; n]),
    }
}

/// One all-zeros request with every free dimension set to 1.
async fn synthetic(servable: &Arc<Servable>) -> Result<(), String> {
    let signature = servable.signature(DEFAULT_SIGNATURE).map_err(|e| e.to_string())?;
    let mut inputs = std::collections::HashMap::new();
    for spec in &signature.inputs {
        let shape: Vec<usize> = match &spec.shape {
            Some(dims) => dims.iter().map(|d| if let Dim::Fixed(n) = d { *n } else { 1 }).collect(),
            None => return Ok(()), // nothing sensible to synthesise for an unknown rank
        };
        let count = shape.iter().product();
        let tensor = HostTensor::new(shape, zeros(spec.dtype, count)).map_err(|e| e.to_string())?;
        inputs.insert(spec.key.clone(), tensor);
    }
    let call = PredictCall {
        model: servable.name().to_string(),
        version: VersionRequest::Specific(servable.version()),
        signature_name: DEFAULT_SIGNATURE.to_string(),
        inputs,
        output_filter: Vec::new(),
        deadline: None,
    };
    predict_on(Arc::clone(servable), call).await.map(|_| ()).map_err(|e| format!("synthetic warm-up request failed: {e}"))
}
