//! The v2 protocol's HTTP/REST API under `/v2` (the health probes live in `ops_http`, shared
//! with TF Serving's): server and model metadata, model readiness, inference with JSON
//! tensors or the binary tensor data extension, and the model repository extension.
//!
//! Binary data: when the `Inference-Header-Content-Length` header is present, the body is that
//! many bytes of JSON followed by each binary input's bytes, in input order, each input giving
//! its length in the `binary_data_size` parameter. Answers use the same framing when an output
//! asks for `binary_data` (or the request sets `binary_data_output`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use prost::bytes::Bytes;

use crate::error::{ErrorKind, ServingError};
use crate::metrics::Entrypoint;
use crate::repository::{IndexState, ManagerHandle};
use crate::request::{Incoming, RequestCore, TraceHeaders};
use crate::servable::RequestError;
use crate::tensor::{HostTensor, TensorData, le_bytes};
use crate::transport::json::{self, Value, Writer, write_f32, write_f64};
use crate::transport::rest::{RestError, json_response};

use super::tensor::from_json;
use super::{InferAnswer, InferCall, ModelMetadata, V2Input, Values, datatype};

/// The binary data extension's header: how many bytes of the body are JSON.
const HEADER_LENGTH: &str = "inference-header-content-length";

pub struct RestV2State {
    pub core: RequestCore,
    pub manager: ManagerHandle,
    /// `--rest_api_timeout_in_ms` (zero: none), as for TF Serving's REST Predict.
    pub timeout: Duration,
    pub max_body_bytes: usize,
    pub max_tensor_bytes: usize,
}

type Shared = State<Arc<RestV2State>>;
type Params = Path<HashMap<String, String>>;

pub fn router(state: RestV2State) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/models/{model}", get(metadata))
        .route("/v2/models/{model}/versions/{version}", get(metadata))
        .route("/v2/models/{model}/ready", get(ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route("/v2/repository/index", post(index))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
        .route("/v2/{*path}", any(unknown))
        .with_state(Arc::new(state))
}

/// `{"error": ...}` with the status of the error's kind, as TF Serving's REST API answers.
fn reply(result: Result<Response, ServingError>) -> Response {
    result.unwrap_or_else(error_reply)
}

fn error_reply(err: impl Into<ServingError>) -> Response {
    RestError::from(err.into()).into_response()
}

fn incoming(headers: &HeaderMap, api: &'static str, model: &str) -> Incoming {
    Incoming { entrypoint: Entrypoint::Rest, api, model: model.to_string(), trace: TraceHeaders::read(headers) }
}

fn param<'p>(params: &'p HashMap<String, String>, key: &str) -> &'p str {
    params.get(key).map_or("", String::as_str)
}

async fn unknown(method: Method, uri: Uri) -> Response {
    RestError::new(ErrorKind::NotFound, format!("Not a v2 protocol endpoint: {method} {}", uri.path())).into_response()
}

async fn server_metadata() -> Response {
    let mut w = Writer::new();
    w.begin_object().key("name").string(super::SERVER_NAME).key("version").string(env!("CARGO_PKG_VERSION"));
    w.key("extensions").begin_array();
    for extension in super::EXTENSIONS {
        w.string(extension);
    }
    w.end_array().end_object();
    json_response(StatusCode::OK, w.finish())
}

async fn metadata(State(state): Shared, Path(params): Params, headers: HeaderMap) -> Response {
    let model = param(&params, "model");
    let incoming = incoming(&headers, "model_metadata", model);
    reply(super::model_metadata(&state.core, incoming, param(&params, "version")).map(|m| json_response(StatusCode::OK, metadata_json(&m))))
}

fn metadata_json(m: &ModelMetadata) -> String {
    let mut w = Writer::new();
    w.begin_object().key("name").string(&m.name).key("versions").begin_array();
    for version in &m.versions {
        w.string(version);
    }
    w.end_array().key("platform").string(m.platform);
    for (key, tensors) in [("inputs", &m.inputs), ("outputs", &m.outputs)] {
        w.key(key).begin_array();
        for t in tensors {
            w.begin_object().key("name").string(&t.name).key("datatype").string(t.datatype);
            w.key("shape").raw(|out| write_dims(out, &t.shape));
            w.end_object();
        }
        w.end_array();
    }
    w.end_object();
    w.finish()
}

fn write_dims(out: &mut String, dims: &[i64]) {
    out.push('[');
    for (i, d) in dims.iter().enumerate() {
        let _ = write!(out, "{}{d}", if i > 0 { "," } else { "" });
    }
    out.push(']');
}

/// 200 when the version answers requests, 400 when not (Triton's codes; the body is empty).
async fn ready(State(state): Shared, Path(params): Params) -> StatusCode {
    if super::model_ready(state.core.repository(), param(&params, "model"), param(&params, "version")) {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn index(State(state): Shared, body: Bytes) -> Response {
    // `{"ready": true}` lists only the ready models; an empty body lists all.
    let ready_only = json::parse(&body).ok().and_then(|doc| doc.get("ready").cloned()) == Some(Value::Bool(true));
    let entries = match state.manager.index().await {
        Ok(entries) => entries,
        Err(err) => return error_reply(err),
    };
    let mut w = Writer::new();
    w.begin_array();
    for e in entries.iter().filter(|e| !ready_only || e.state == IndexState::Ready) {
        w.begin_object().key("name").string(&e.name);
        if let Some(version) = e.version {
            w.key("version").string(&version.to_string());
        }
        w.key("state").string(e.state.name()).key("reason").string(&e.reason).end_object();
    }
    w.end_array();
    json_response(StatusCode::OK, w.finish())
}

async fn load(State(state): Shared, Path(params): Params) -> Response {
    match state.manager.load(param(&params, "model")).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => error_reply(err),
    }
}

async fn unload(State(state): Shared, Path(params): Params) -> Response {
    match state.manager.unload(param(&params, "model")).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => error_reply(err),
    }
}

async fn infer(State(state): Shared, Path(params): Params, headers: HeaderMap, body: Body) -> Response {
    let model = param(&params, "model");
    let incoming = incoming(&headers, "infer", model);
    let started = Instant::now();
    let limit = state.max_body_bytes;
    let decoded = match axum::body::to_bytes(body, limit).await {
        Err(e) => Err(RequestError::Invalid(format!(
            "Failed to read the request body (at most {limit} bytes are accepted, --rest_api_max_body_bytes): {e}"
        ))),
        Ok(bytes) => decode(&state, &headers, bytes, param(&params, "version"), started),
    };
    let (call, request) = match decoded {
        Ok(decoded) => decoded,
        Err(err) => return reply(state.core.begin(incoming).finish(Err(err.into()))),
    };
    reply(super::infer(&state.core, incoming, call).await.map(|answer| encode(answer, &request)))
}

/// What the answer must echo or honour from the request.
struct Answering {
    id: Option<String>,
    /// Per requested output name: binary or JSON.
    binary: HashMap<String, bool>,
    binary_default: bool,
}

fn invalid(message: impl Into<String>) -> RequestError {
    RequestError::Invalid(message.into())
}

fn decode(state: &RestV2State, headers: &HeaderMap, body: Bytes, version: &str, now: Instant) -> Result<(InferCall, Answering), RequestError> {
    let json_length = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n <= body.len())
            .ok_or_else(|| invalid(format!("Inference-Header-Content-Length must be a byte count within the body's {} bytes", body.len())))?,
    };
    let doc = json::parse(&body[..json_length]).map_err(|e| invalid(e.to_string()))?;
    if !matches!(doc, Value::Object(_)) {
        return Err(invalid("the inference request must be a JSON object"));
    }
    let id = match doc.get("id") {
        None => None,
        Some(Value::String(s)) => Some(s.to_string()),
        Some(other) => return Err(invalid(format!("'id' must be a string, not {}", other.type_name()))),
    };
    let parameters = doc.get("parameters");
    let binary_default = bool_parameter(parameters, "binary_data_output")?.unwrap_or(false);
    let mut deadline = (!state.timeout.is_zero()).then(|| now + state.timeout);
    if let Some(timeout) = parameters.and_then(|p| p.get("timeout")) {
        let us = match timeout {
            Value::Int(us) if *us >= 0 => *us as u64,
            Value::Uint(us) => *us,
            _ => return Err(invalid("the 'timeout' parameter must be a non-negative integer of microseconds")),
        };
        deadline = super::grpc::earliest(deadline, Some(now + Duration::from_micros(us)));
    }
    let Some(Value::Array(inputs)) = doc.get("inputs") else {
        return Err(invalid("the inference request needs an 'inputs' array"));
    };
    let mut binary = body.slice(json_length..);
    let mut decoded = Vec::with_capacity(inputs.len());
    for input in inputs {
        decoded.push(decode_input(input, &mut binary, state.max_tensor_bytes)?);
    }
    if !binary.is_empty() {
        return Err(invalid(format!("{} bytes of binary data follow the inputs' binary_data_size total", binary.len())));
    }
    let mut names = Vec::new();
    let mut binary_outputs = HashMap::new();
    match doc.get("outputs") {
        None => {}
        Some(Value::Array(outputs)) => {
            for output in outputs {
                let name = output.get("name").and_then(Value::as_str).ok_or_else(|| invalid("each requested output needs a 'name'"))?;
                let parameters = output.get("parameters");
                if parameters.and_then(|p| p.get("classification")).is_some() {
                    return Err(invalid(format!(
                        "output '{name}' asks for the classification extension, which this server does not implement"
                    )));
                }
                let wants_binary = bool_parameter(parameters, "binary_data")?.unwrap_or(binary_default);
                binary_outputs.insert(name.to_string(), wants_binary);
                names.push(name.to_string());
            }
        }
        Some(other) => return Err(invalid(format!("'outputs' must be an array, not {}", other.type_name()))),
    }
    let call = InferCall { version: version.to_string(), inputs: decoded, outputs: names, deadline };
    Ok((call, Answering { id, binary: binary_outputs, binary_default }))
}

fn bool_parameter(parameters: Option<&Value<'_>>, key: &str) -> Result<Option<bool>, RequestError> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(format!("the '{key}' parameter must be a boolean, not {}", other.type_name()))),
    }
}

fn decode_input(input: &Value<'_>, binary: &mut Bytes, max_bytes: usize) -> Result<V2Input, RequestError> {
    let name = input.get("name").and_then(Value::as_str).ok_or_else(|| invalid("each input needs a 'name' string"))?;
    let field = |key: &str| input.get(key).ok_or_else(|| invalid(format!("input '{name}' needs '{key}'")));
    let datatype = field("datatype")?.as_str().ok_or_else(|| invalid(format!("input '{name}': 'datatype' must be a string")))?;
    let shape = field("shape")?
        .as_array()
        .and_then(|dims| dims.iter().map(|d| if let Value::Int(i) = d { Some(*i) } else { None }).collect::<Option<Vec<i64>>>())
        .ok_or_else(|| invalid(format!("input '{name}': 'shape' must be an array of integers")))?;
    let binary_size = match input.get("parameters").and_then(|p| p.get("binary_data_size")) {
        None => None,
        Some(Value::Int(n)) if *n >= 0 => Some(*n as usize),
        Some(_) => return Err(invalid(format!("input '{name}': 'binary_data_size' must be a non-negative integer"))),
    };
    let values = match binary_size {
        Some(size) => {
            if size > binary.len() {
                return Err(invalid(format!(
                    "input '{name}' declares {size} bytes of binary data but only {} remain in the body",
                    binary.len()
                )));
            }
            Values::Raw(binary.split_to(size))
        }
        None => {
            let data = field("data")?;
            let mut flat = Vec::new();
            flatten(data, &mut flat);
            match datatype::parse(datatype) {
                Some(dtype) => Values::Decoded(from_json(name, dtype, &flat)?),
                None => Values::Unread,
            }
        }
    };
    Ok(V2Input { name: name.to_string(), datatype: datatype.to_string(), shape, values, max_bytes })
}

/// Nested (`[[1, 2], [3, 4]]`) and flat (`[1, 2, 3, 4]`) data both list elements in row-major
/// order; the element count is checked against the shape later.
fn flatten<'v, 'a>(value: &'v Value<'a>, into: &mut Vec<&'v Value<'a>>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, into)),
        leaf => into.push(leaf),
    }
}

fn encode(answer: InferAnswer, request: &Answering) -> Response {
    let mut w = Writer::new();
    w.begin_object().key("model_name").string(&answer.model_name).key("model_version").string(&answer.model_version);
    if let Some(id) = &request.id {
        w.key("id").string(id);
    }
    w.key("outputs").begin_array();
    let mut blobs = Vec::new();
    for (name, tensor) in &answer.outputs {
        w.begin_object().key("name").string(name).key("datatype").string(datatype::name(tensor.dtype()));
        w.key("shape").raw(|out| write_dims(out, &super::tensor::shape_i64(tensor)));
        if request.binary.get(name).copied().unwrap_or(request.binary_default) {
            let bytes = le_bytes::encode(tensor.data());
            w.key("parameters").begin_object().key("binary_data_size").raw(|out| {
                let _ = write!(out, "{}", bytes.len());
            });
            w.end_object();
            blobs.push(bytes);
        } else {
            w.key("data").raw(|out| write_data(out, tensor));
        }
        w.end_object();
    }
    w.end_array().end_object();
    let json = w.finish();
    if blobs.is_empty() {
        return json_response(StatusCode::OK, json);
    }
    let json_length = json.len();
    let mut body = json.into_bytes();
    blobs.iter().for_each(|b| body.extend_from_slice(b));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(json_length)),
        ],
        body,
    )
        .into_response()
}

/// The elements as a flat JSON array, row-major (the v2 protocol's output form).
fn write_data(out: &mut String, tensor: &HostTensor) {
    fn list<T>(out: &mut String, values: &[T], mut one: impl FnMut(&mut String, &T)) {
        out.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            one(out, v);
        }
        out.push(']');
    }
    fn int(out: &mut String, v: impl std::fmt::Display) {
        let _ = write!(out, "{v}");
    }
    match tensor.data() {
        TensorData::F32(v) => list(out, v, |o, x| write_f32(o, *x)),
        TensorData::F64(v) => list(out, v, |o, x| write_f64(o, *x)),
        TensorData::F16(v) => list(out, v, |o, x| write_f32(o, x.to_f32())),
        TensorData::BF16(v) => list(out, v, |o, x| write_f32(o, x.to_f32())),
        TensorData::I8(v) => list(out, v, |o, x| int(o, x)),
        TensorData::I16(v) => list(out, v, |o, x| int(o, x)),
        TensorData::I32(v) => list(out, v, |o, x| int(o, x)),
        TensorData::I64(v) => list(out, v, |o, x| int(o, x)),
        TensorData::U8(v) => list(out, v, |o, x| int(o, x)),
        TensorData::U16(v) => list(out, v, |o, x| int(o, x)),
        TensorData::U32(v) => list(out, v, |o, x| int(o, x)),
        TensorData::U64(v) => list(out, v, |o, x| int(o, x)),
        TensorData::Bool(v) => list(out, v, |o, x| o.push_str(if *x { "true" } else { "false" })),
    }
}
