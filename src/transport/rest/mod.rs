//! TF Serving's REST API on axum: model status, metadata and Predict under `/v1/models`, with
//! TF's paths, JSON dialect (NaN/Infinity tokens, `.0` floats), error texts and HTTP codes.
//!
//! The router only claims paths under `/v1/` (and `/V1/`, as TF matches case-insensitively),
//! through a catch-all route rather than a fallback, so other routers merged next to it
//! (metrics, `/v1/health/*`) keep their own, more specific, routes.

mod inference;
mod predict;
mod reply;
mod routes;
mod status;
mod tensor;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;

use crate::error::ErrorKind;
use crate::metrics::Entrypoint;
use crate::request::{Incoming, Request, RequestCore, TraceHeaders};

pub(crate) use reply::json_response;

pub use predict::decode_inputs;
pub use reply::RestError;
use routes::{Route, Verb};

use crate::servable::Method as ExampleMethod;

/// What the REST handlers share.
pub struct RestState {
    pub core: RequestCore,
    /// `--rest_api_timeout_in_ms`: the most a Predict may spend between its body arriving and
    /// its answer (parsing, queueing, inference) before it is answered with 504. Status and
    /// metadata answer from memory and are not limited. Zero disables the limit.
    pub timeout: Duration,
    /// `--rest_api_max_body_bytes`: JSON costs far more memory once parsed than its bytes
    /// (each number becomes a 32-byte node), so this stays well below gRPC's INT32_MAX.
    pub max_body_bytes: usize,
}

/// The REST API routes, ready to be merged with other routers and served.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/v1/{*path}", any(handle))
        .route("/V1/{*path}", any(handle))
        .with_state(Arc::new(state))
}

/// Every REST request: route, run under the timeout, record it, answer JSON.
async fn handle(State(state): State<Arc<RestState>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let route = routes::parse(&method, uri.path());
    let incoming = Incoming {
        entrypoint: Entrypoint::Rest,
        // Counted under an empty model name: the request named none we could read.
        api: route.as_ref().map_or("unknown", Route::api),
        model: route.as_ref().map_or(String::new(), |r| r.model().to_string()),
        trace: TraceHeaders::read(&headers),
    };
    let mut request = state.core.begin(incoming);
    let result = match route {
        Err(err) => Err(err),
        Ok(route) => dispatch(&state, route, body, &mut request).await,
    };
    match request.finish(result) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(err) => err.into_response(),
    }
}

async fn dispatch(state: &RestState, route: Route, body: Body, request: &mut Request<'_>) -> Result<String, RestError> {
    match route {
        Route::Status { model, version } => status::status(state.core.repository(), &model, version),
        Route::Metadata { model, version } => {
            let (version, json) = status::metadata(state.core.repository(), &model, &version)?;
            request.served_by(version);
            Ok(json)
        }
        inference => run_inference(state, inference, body, request).await,
    }
}

/// Predict, Classify and Regress: admitted, the body read within `--rest_api_max_body_bytes`,
/// and the whole run bounded by `--rest_api_timeout_in_ms`.
async fn run_inference(state: &RestState, route: Route, body: Body, request: &mut Request<'_>) -> Result<String, RestError> {
    request.admit()?;
    let deadline = (!state.timeout.is_zero()).then(|| Instant::now() + state.timeout);
    let limit = state.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        RestError::invalid(format!("Failed to read the request body (at most {limit} bytes are accepted, --rest_api_max_body_bytes): {e}"))
    })?;
    let work = async {
        match route {
            Route::Predict { version, .. } => predict::run(request, &version, &bytes, deadline).await,
            Route::Examples { version, verb, .. } => {
                let method = match verb {
                    Verb::Classify => ExampleMethod::Classify,
                    Verb::Regress => ExampleMethod::Regress,
                };
                inference::run(request, &version, method, &bytes, deadline).await
            }
            Route::Status { .. } | Route::Metadata { .. } => unreachable!("dispatch answers status and metadata itself"),
        }
    };
    if state.timeout.is_zero() {
        return work.await;
    }
    // The deadline can fire in two places (this timer, or the queue that drops expired work
    // before compute); either way the client gets the same 504 naming the flag.
    let expired = || {
        RestError::new(
            ErrorKind::DeadlineExceeded,
            format!("Deadline exceeded: the request did not finish within --rest_api_timeout_in_ms={} ms", state.timeout.as_millis()),
        )
    };
    match tokio::time::timeout(state.timeout, work).await {
        Ok(Err(e)) if e.kind() == ErrorKind::DeadlineExceeded => Err(expired()),
        Ok(result) => result,
        Err(_) => Err(expired()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        let core = RequestCore::new(
            Arc::new(crate::repository::ModelRepository::new()),
            Arc::new(crate::metrics::Metrics::new().expect("metrics")),
            crate::request::Admission::new(0),
            crate::telemetry::Tracer::disabled(),
        );
        let state = RestState { core, timeout: Duration::from_secs(5), max_body_bytes: 1 << 20 };
        router(state).merge(Router::new().route("/v1/health/live", get(|| async { "live" })))
    }

    async fn call(app: Router, method: Method, path: &str, body: &str) -> (StatusCode, Option<String>, String) {
        let request = axum::http::Request::builder().method(method).uri(path).body(Body::from(body.to_string())).expect("request");
        let response = app.oneshot(request).await.expect("response");
        let status = response.status();
        let content_type =
            response.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn merged_routes_keep_their_paths() {
        let (status, _, body) = call(app(), Method::GET, "/v1/health/live", "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "live"));
        let (status, content_type, body) = call(app(), Method::GET, "/v1/health/other", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(body, r#"{"error":"Malformed request: GET /v1/health/other"}"#);
        let (status, _, _) = call(app(), Method::GET, "/metrics", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn errors_are_json_with_tf_codes() {
        let (status, _, body) = call(app(), Method::GET, "/v1/models", "").await;
        assert_eq!((status, body.as_str()), (StatusCode::BAD_REQUEST, r#"{"error":"Missing model name in request."}"#));
        let (status, _, body) = call(app(), Method::POST, "/v1/models/nope:predict", r#"{"instances": [1]}"#).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, r#"{"error":"Servable not found for request: Latest(nope)"}"#)
        );
        let (status, _, body) = call(app(), Method::POST, "/v1/models/nope:predict", "").await;
        assert_eq!((status, body.as_str()), (StatusCode::BAD_REQUEST, r#"{"error":"JSON Parse error: The document is empty"}"#));
        let (status, _, body) = call(app(), Method::POST, "/V1/MODELS/nope:classify", r#"{"examples": [{"x": 1.0}]}"#).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, r#"{"error":"Servable not found for request: Latest(nope)"}"#));
        let (status, _, body) = call(app(), Method::GET, "/v1/models/nope/metadata", "").await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, r#"{"error":"Servable not found for request: Latest(nope)"}"#));
    }
}
