//! What each fuzz target feeds its input to: one public entry point of the server per target,
//! called the way a request or a model load calls it. Every function returns `Err` with the
//! server's message when the input is refused; the only failures are panics, aborts and
//! allocations past the harness limit.
//!
//! This file is also compiled into the server's own `tests/fuzz_regressions.rs` (through
//! `#[path]`), so the kept crash inputs replay under a plain `cargo test` through exactly the
//! same calls, without nightly or libFuzzer.

use std::collections::BTreeMap;

use candle_serving::batching::BatchingOptions;
use candle_serving::config::model_config::{self, MODEL_SERVER_CONFIG};
use candle_serving::config::text_proto;
use candle_serving::engine::onnx::OnnxSession;
use candle_serving::engine::Session;
use candle_serving::proto::tensorflow::serving::{BatchingParameters, ModelServerConfig, MonitoringConfig, PredictRequest, SslConfig};
use candle_serving::repository::{WarmupRequest, read_warmup_requests};
use candle_serving::servable::{Signature, WireTensor, bind_inputs};
use candle_serving::tensor::tf_proto::dtype_from_tf;
use candle_serving::tensor::{DType, Dim, TensorSpec};
use candle_serving::transport::rest::decode_inputs;
use prost::Message;

/// The request tensor limit the harness runs with (the server's `--max_tensor_bytes`, whose
/// default of 2 GiB would let a single accepted input exceed the fuzzer's memory limit).
pub const MAX_TENSOR_BYTES: usize = 16 << 20;

/// The targets by name, as cargo-fuzz and `tests/fuzz/regressions/<name>/` call them.
pub const TARGETS: [(&str, fn(&[u8]) -> Result<(), String>); 5] = [
    ("tensor_proto", tensor_proto),
    ("rest_json", rest_json),
    ("text_config", text_config),
    ("tfrecord_warmup", tfrecord_warmup),
    ("onnx_import", onnx_import),
];

/// A gRPC `PredictRequest` body: protobuf decoding, then every input through the signature
/// check and `TensorProto` decoding.
pub fn tensor_proto(data: &[u8]) -> Result<(), String> {
    let request = PredictRequest::decode(data).map_err(|e| e.to_string())?;
    decode_request(request)
}

/// Binds a request's inputs against a signature built from the request itself (each input's
/// own dtype, any shape), so every dtype reaches the value decoding instead of stopping at a
/// dtype mismatch.
fn decode_request(request: PredictRequest) -> Result<(), String> {
    let inputs: BTreeMap<String, _> = request.inputs.into_iter().collect();
    let specs = inputs
        .iter()
        .map(|(key, proto)| TensorSpec { key: key.clone(), dtype: dtype_from_tf(proto.dtype).unwrap_or(DType::F32), shape: None })
        .collect();
    let signature = Signature { name: "serving_default".into(), method_name: String::new(), inputs: specs, outputs: Vec::new() };
    let wire = inputs.into_iter().map(|(key, proto)| (key, WireTensor { proto, max_bytes: MAX_TENSOR_BYTES })).collect();
    bind_inputs(&signature, wire).map(|_| ()).map_err(|e| e.to_string())
}

/// A REST Predict body against a few signatures: one float input of any shape, two named
/// inputs with fixed inner dims, and one input whose dtype follows the body's length (so the
/// fuzzer reaches every JSON-to-dtype conversion without a selector byte in the body).
pub fn rest_json(data: &[u8]) -> Result<(), String> {
    let spec = |key: &str, dtype, shape| TensorSpec { key: key.into(), dtype, shape };
    let signature = |inputs| Signature { name: "serving_default".into(), method_name: String::new(), inputs, outputs: Vec::new() };
    let any_dtype = DType::ALL[data.len() % DType::ALL.len()];
    let signatures = [
        signature(vec![spec("x", DType::F32, None)]),
        signature(vec![
            spec("a", DType::I64, Some(vec![Dim::Dynamic, Dim::Fixed(2)])),
            spec("b", DType::Bool, Some(vec![Dim::Dynamic])),
        ]),
        signature(vec![spec("x", any_dtype, None)]),
    ];
    let outcomes: Vec<Result<(), String>> =
        signatures.iter().map(|signature| decode_inputs(data, signature).map(|_| ()).map_err(|e| e.to_string())).collect();
    // Accepted if any signature takes it; otherwise the first signature's message.
    outcomes.iter().find(|o| o.is_ok()).cloned().unwrap_or_else(|| outcomes[0].clone())
}

/// A config file as each text-format message the server reads (model list, monitoring,
/// batching, SSL), including the checks that follow parsing (model list normalisation,
/// batching parameters).
pub fn text_config(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let models = text_proto::parse::<ModelServerConfig>(MODEL_SERVER_CONFIG, text, "fuzz.config")
        .map_err(|e| e.to_string())
        .and_then(|config| model_config::from_proto(config).map(|_| ()).map_err(|e| e.to_string()));
    let monitoring = text_proto::parse::<MonitoringConfig>("tensorflow.serving.MonitoringConfig", text, "fuzz.config")
        .map(|_| ())
        .map_err(|e| e.to_string());
    let batching = text_proto::parse::<BatchingParameters>("tensorflow.serving.BatchingParameters", text, "fuzz.config")
        .map_err(|e| e.to_string())
        .and_then(|params| BatchingOptions::from_params(&params, 4).map(|_| ()));
    let ssl = text_proto::parse::<SslConfig>("tensorflow.serving.SSLConfig", text, "fuzz.config").map(|_| ()).map_err(|e| e.to_string());
    models.or(monitoring).or(batching).or(ssl)
}

/// A warm-up file (`assets.extra/tf_serving_warmup_requests`): TFRecord framing, the
/// `PredictionLog` records, and each request's tensors as the warm-up would bind them.
pub fn tfrecord_warmup(data: &[u8]) -> Result<(), String> {
    let requests = read_warmup_requests(data).map_err(|e| e.to_string())?;
    requests
        .into_iter()
        .filter_map(|r| match r {
            WarmupRequest::Predict(p) => Some(p),
            _ => None,
        })
        .try_for_each(decode_request)
}

/// A `model.onnx` through the whole CPU load pipeline the repository runs for a version:
/// protobuf decoding, import, graph passes, constant folding and plan building.
pub fn onnx_import(data: &[u8]) -> Result<(), String> {
    let session = OnnxSession::from_bytes(data).map_err(|e| e.to_string())?;
    if session.outputs().is_empty() {
        return Err("a loaded session has no outputs".into());
    }
    Ok(())
}
