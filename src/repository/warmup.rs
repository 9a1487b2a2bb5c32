//! Warm-up before a version turns AVAILABLE (TF Serving's `--enable_model_warmup`): replay the
//! Predict, Classify, Regress and MultiInference logs in
//! `assets.extra/tf_serving_warmup_requests`, or, without that file, run one synthetic request
//! shaped by the signature, so the first real request is not the slow one.

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use thiserror::Error;

use crate::proto::tensorflow::serving::prediction_log::LogType;
use crate::proto::tensorflow::serving::{ClassificationRequest, MultiInferenceRequest, PredictRequest, PredictionLog, RegressionRequest};
use crate::servable::{DEFAULT_SIGNATURE, Examples, Method, PredictCall, PredictError, Servable, WireTensor};
use crate::tensor::{Dim, HostTensor, TensorData, TensorSpec, element_count};

use super::confine::confined;
use super::tfrecord::{self, RecordError};

pub(crate) const WARMUP_FILE: &str = "assets.extra/tf_serving_warmup_requests";
/// TF Serving's cap on warm-up records.
const MAX_RECORDS: usize = 1000;

/// Why a warm-up file could not be read; the caller prefixes the file's path.
#[derive(Debug, Error)]
pub enum WarmupError {
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error("has {count} records, more than the limit of {MAX_RECORDS}")]
    TooManyRecords { count: usize },
    #[error("warm-up record {index}: not a PredictionLog: {reason}")]
    NotPredictionLog { index: usize, reason: String },
    #[error("warm-up record {index}: only Predict, Classify, Regress and MultiInference logs are supported")]
    NotPredictLog { index: usize },
}

/// One replayable warm-up record.
#[derive(Debug, Clone)]
pub enum WarmupRequest {
    Predict(PredictRequest),
    Classify(ClassificationRequest),
    Regress(RegressionRequest),
    MultiInference(MultiInferenceRequest),
}

/// Splits a warm-up file into its requests: TFRecord framing, checksums, the record cap, then
/// one `PredictionLog` per record. Nothing is run; tensors stay in wire form until the request
/// is checked against the signature. Public so the fuzz target reaches it.
pub fn read_warmup_requests(bytes: &[u8]) -> Result<Vec<WarmupRequest>, WarmupError> {
    let records = tfrecord::records(bytes)?;
    if records.len() > MAX_RECORDS {
        return Err(WarmupError::TooManyRecords { count: records.len() });
    }
    records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let log = PredictionLog::decode(*record)
                .map_err(|e| WarmupError::NotPredictionLog { index, reason: e.to_string() })?;
            match log.log_type {
                Some(LogType::PredictLog(p)) => Ok(WarmupRequest::Predict(p.request.unwrap_or_default())),
                Some(LogType::ClassifyLog(c)) => Ok(WarmupRequest::Classify(c.request.unwrap_or_default())),
                Some(LogType::RegressLog(r)) => Ok(WarmupRequest::Regress(r.request.unwrap_or_default())),
                Some(LogType::MultiInferenceLog(m)) => Ok(WarmupRequest::MultiInference(m.request.unwrap_or_default())),
                _ => Err(WarmupError::NotPredictLog { index }),
            }
        })
        .collect()
}

/// Runs the warm-up for `servable` stored in `dir` under `base`; returns how many requests ran.
pub(crate) async fn warm_up(servable: &Arc<Servable>, base: &Path, dir: &Path, max_tensor_bytes: usize) -> Result<usize, String> {
    let file = dir.join(WARMUP_FILE);
    if !file.is_file() {
        return synthetic(servable, max_tensor_bytes).await.map(|()| 1);
    }
    confined(base, &file).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let requests = read_warmup_requests(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let count = requests.len();
    for (index, request) in requests.into_iter().enumerate() {
        replay(servable, request, max_tensor_bytes).await.map_err(|e| format!("warm-up record {index} failed: {e}"))?;
    }
    Ok(count)
}

async fn replay(servable: &Servable, request: WarmupRequest, max_tensor_bytes: usize) -> Result<(), PredictError> {
    let signature = |spec: Option<&crate::proto::tensorflow::serving::ModelSpec>| spec.map(|s| s.signature_name.clone()).unwrap_or_default();
    match request {
        WarmupRequest::Predict(request) => {
            let call = PredictCall {
                signature_name: signature(request.model_spec.as_ref()),
                inputs: request.inputs.into_iter().map(|(k, proto)| (k, WireTensor { proto, max_bytes: max_tensor_bytes })).collect(),
                output_filter: request.output_filter,
                deadline: None,
            };
            servable.predict(call).await.map(drop)
        }
        WarmupRequest::Classify(request) => {
            let examples = Examples::of(request.input.as_ref())?;
            servable.infer_examples(Method::Classify, &signature(request.model_spec.as_ref()), examples, None).await.map(drop)
        }
        WarmupRequest::Regress(request) => {
            let examples = Examples::of(request.input.as_ref())?;
            servable.infer_examples(Method::Regress, &signature(request.model_spec.as_ref()), examples, None).await.map(drop)
        }
        WarmupRequest::MultiInference(request) => {
            let tasks = request
                .tasks
                .iter()
                .map(|t| Ok((Method::from_name(&t.method_name)?, signature(t.model_spec.as_ref()))))
                .collect::<Result<Vec<_>, crate::servable::RequestError>>()?;
            let examples = Examples::of(request.input.as_ref())?;
            servable.multi_infer(&tasks, examples, None).await.map(drop)
        }
    }
}

/// The all-zeros input for `spec`, every free dimension set to 1; `None` for an unknown rank.
/// The model file chooses the fixed dimensions, so their byte size is checked against the
/// request tensor limit before anything is allocated: a model declaring `[2^40, 2^40]` fails
/// its load with a message instead of aborting the server.
fn synthetic_input(spec: &TensorSpec, max_tensor_bytes: usize) -> Result<Option<HostTensor>, String> {
    let Some(dims) = &spec.shape else { return Ok(None) };
    let shape: Vec<usize> = dims.iter().map(|d| if let Dim::Fixed(n) = d { *n } else { 1 }).collect();
    let count = element_count(&shape)
        .filter(|n| n.checked_mul(spec.dtype.size_in_bytes()).is_some_and(|bytes| bytes <= max_tensor_bytes))
        .ok_or_else(|| {
            format!(
                "synthetic warm-up request: input '{}' declares shape {} of {}, larger than the request tensor limit of {max_tensor_bytes} bytes",
                spec.key,
                spec.shape_string(),
                spec.dtype
            )
        })?;
    HostTensor::new(shape, TensorData::zeros(spec.dtype, count)).map(Some)
}

/// One all-zeros request with every free dimension set to 1.
async fn synthetic(servable: &Arc<Servable>, max_tensor_bytes: usize) -> Result<(), String> {
    // A model without `serving_default` (a tf.Module's named signatures) gets no synthetic
    // request: there is no signature a client would call by default.
    let Ok(signature) = servable.signature(DEFAULT_SIGNATURE) else { return Ok(()) };
    let mut inputs = std::collections::HashMap::new();
    for spec in &signature.inputs {
        match synthetic_input(spec, max_tensor_bytes)? {
            Some(tensor) => inputs.insert(spec.key.clone(), tensor),
            None => return Ok(()), // nothing sensible to synthesise for an unknown rank
        };
    }
    let call = PredictCall {
        signature_name: DEFAULT_SIGNATURE.to_string(),
        inputs,
        output_filter: Vec::new(),
        deadline: None,
    };
    servable.predict(call).await.map(|_| ()).map_err(|e| format!("synthetic warm-up request failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::write_tfrecords;
    use crate::tensor::DType;

    #[test]
    fn a_model_declaring_a_huge_input_fails_warm_up_before_allocating() {
        let spec = TensorSpec { key: "x".into(), dtype: DType::F32, shape: Some(vec![Dim::Fixed(1 << 40), Dim::Fixed(1 << 40)]) };
        let err = synthetic_input(&spec, 1 << 30).expect_err("too large");
        assert!(err.contains("input 'x' declares shape [1099511627776,1099511627776] of DT_FLOAT"), "{err}");
        let spec = TensorSpec { key: "x".into(), dtype: DType::F64, shape: Some(vec![Dim::Dynamic, Dim::Fixed(3)]) };
        let tensor = synthetic_input(&spec, 1 << 30).expect("small").expect("known rank");
        assert_eq!(tensor.shape(), &[1, 3]);
    }

    #[test]
    fn warm_up_files_are_read_into_requests_or_refused_with_the_record() {
        let log = PredictionLog {
            log_type: Some(LogType::PredictLog(crate::proto::tensorflow::serving::PredictLog {
                request: Some(PredictRequest { output_filter: vec!["y".into()], ..Default::default() }),
                response: None,
            })),
            ..Default::default()
        };
        let bytes = log.encode_to_vec();
        let requests = read_warmup_requests(&write_tfrecords([bytes.as_slice()])).expect("read");
        assert!(matches!(&requests[0], WarmupRequest::Predict(p) if p.output_filter == ["y"]), "{requests:?}");
        let err = read_warmup_requests(&write_tfrecords([b"\xff".as_slice()])).expect_err("garbage");
        assert!(err.to_string().starts_with("warm-up record 0: not a PredictionLog"), "{err}");
        let empty = PredictionLog::default().encode_to_vec();
        let err = read_warmup_requests(&write_tfrecords([bytes.as_slice(), empty.as_slice()])).expect_err("no predict log");
        assert_eq!(err.to_string(), "warm-up record 1: only Predict, Classify, Regress and MultiInference logs are supported");
        let many = vec![bytes.as_slice(); MAX_RECORDS + 1];
        let err = read_warmup_requests(&write_tfrecords(many)).expect_err("too many");
        assert_eq!(err.to_string(), "has 1001 records, more than the limit of 1000");
    }
}
