//! The REST API against the server: TF Serving's paths, JSON bodies and error codes, read
//! back with reqwest and the server's own TF-dialect JSON parser (responses may carry bare
//! `NaN` tokens, which standard parsers reject).

mod common;

use std::time::Duration;

use candle_serving::transport::json::{self, Value, write_f32};
use common::*;

struct Rest {
    base: String,
    client: reqwest::Client,
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    /// The `error` member of an error reply.
    fn error(&self) -> String {
        let doc = json::parse(self.body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {}", self.body));
        doc.get("error").and_then(Value::as_str).unwrap_or_else(|| panic!("no error in {}", self.body)).to_string()
    }
}

impl Rest {
    fn new(port: u16) -> Rest {
        Rest { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.timeout(Duration::from_secs(120)).send().await.expect("send");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.text().await.expect("body");
        Reply { status, content_type, body }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, body: impl Into<String>) -> Reply {
        let request = self.client.post(format!("{}{path}", self.base)).header("content-type", "application/json");
        self.send(request.body(body.into())).await
    }
}

/// Row-major `values` as nested JSON lists of `dims`, floats printed as the server prints them.
fn nested_json(out: &mut String, values: &[f32], dims: &[usize]) {
    let Some((&n, inner)) = dims.split_first() else {
        write_f32(out, values[0]);
        return;
    };
    let stride: usize = inner.iter().product();
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        nested_json(out, &values[i * stride..(i + 1) * stride], inner);
    }
    out.push(']');
}

fn tensor_json(dims: &[usize], values: &[f32]) -> String {
    let mut out = String::new();
    nested_json(&mut out, values, dims);
    out
}

/// Every number in a nested list, row-major, and the nesting's shape.
fn flatten(value: &Value<'_>) -> (Vec<usize>, Vec<f32>) {
    fn walk(value: &Value<'_>, level: usize, shape: &mut Vec<usize>, out: &mut Vec<f32>) {
        match value {
            Value::Array(items) => {
                if shape.len() == level {
                    shape.push(items.len());
                }
                assert_eq!(shape[level], items.len(), "ragged output");
                items.iter().for_each(|item| walk(item, level + 1, shape, out));
            }
            other => out.push(other.as_f64().unwrap_or_else(|| panic!("not a number: {other}")) as f32),
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(value, 0, &mut shape, &mut out);
    (shape, out)
}

/// The image batch of a fixture as a JSON tensor, with the golden probabilities.
fn golden(batch: usize) -> (String, Vec<usize>, Vec<f32>) {
    let (dims, values) = npy(&fixture(&format!("mnist_cnn/input_b{batch}.npy")));
    assert_eq!(dims, [batch, 28, 28, 1]);
    let (want_dims, want) = npy(&fixture(&format!("mnist_cnn/output_b{batch}.npy")));
    (tensor_json(&dims, &values), want_dims, want)
}

#[tokio::test]
async fn predict_matches_goldens_in_row_and_columnar_form() {
    let (server, port) = Server::start_with_rest(&[], "mnist_cnn").await;
    let rest = Rest::new(port);
    for batch in [1, 16] {
        let (images, want_dims, want) = golden(batch);

        let reply = rest.post("/v1/models/mnist_cnn:predict", format!(r#"{{"instances": {images}}}"#)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.content_type, "application/json");
        let doc = json::parse(reply.body.as_bytes()).expect("response JSON");
        let (shape, got) = flatten(doc.get("predictions").expect("predictions"));
        assert_eq!(shape, want_dims, "one list of 10 probabilities per instance");
        assert_close(&got, &want, 1e-5, &format!("row b{batch}"));

        let body = format!(r#"{{"signature_name": "serving_default", "inputs": {images}}}"#);
        let reply = rest.post("/v1/models/mnist_cnn/versions/1:predict", body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let doc = json::parse(reply.body.as_bytes()).expect("response JSON");
        let (shape, got) = flatten(doc.get("outputs").expect("outputs"));
        assert_eq!(shape, want_dims);
        assert_close(&got, &want, 1e-5, &format!("columnar b{batch}"));
    }

    // Whole numbers are fine for a float input; floats print with a decimal point or exponent.
    let zeros = tensor_json(&[1, 28, 28, 1], &[0.0; 784]).replace("0.0", "0");
    let reply = rest.post("/v1/models/mnist_cnn:predict", format!(r#"{{"instances": {zeros}}}"#)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let doc = json::parse(reply.body.as_bytes()).expect("response JSON");
    let row = &doc.get("predictions").and_then(Value::as_array).expect("predictions")[0];
    assert!(row.as_array().expect("row").iter().all(|p| !p.is_integer()), "{}", reply.body);
    drop(server);
}

#[tokio::test]
async fn status_and_metadata_match_tf_serving_json() {
    let (_server, port) = Server::start_with_rest(&[], "mnist_cnn").await;
    let rest = Rest::new(port);
    let available = r#"{"model_version_status":[{"version":"1","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}}]}"#;
    // TF matches paths case-insensitively and ignores a label when reporting status.
    for path in ["/v1/models/mnist_cnn", "/v1/models/mnist_cnn/versions/1", "/v1/models/mnist_cnn/labels/stable", "/V1/Models/mnist_cnn"] {
        let reply = rest.get(path).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, available), "{path}");
        assert_eq!(reply.content_type, "application/json");
    }

    let dim = |size: i64| format!(r#"{{"size":"{size}","name":""}}"#);
    let info = |name: &str, dims: &[i64]| {
        let dims: Vec<String> = dims.iter().map(|&d| dim(d)).collect();
        format!(
            r#""{name}":{{"dtype":"DT_FLOAT","tensor_shape":{{"dim":[{}],"unknown_rank":false}},"name":"{name}"}}"#,
            dims.join(",")
        )
    };
    let metadata = format!(
        r#"{{"model_spec":{{"name":"mnist_cnn","signature_name":"","version":"1"}},"metadata":{{"signature_def":{{"signature_def":{{"serving_default":{{"inputs":{{{}}},"outputs":{{{}}},"method_name":"tensorflow/serving/predict","defaults":{{}}}}}}}}}}}}"#,
        info("image", &[-1, 28, 28, 1]),
        info("probabilities", &[-1, 10])
    );
    for path in ["/v1/models/mnist_cnn/metadata", "/v1/models/mnist_cnn/versions/1/metadata"] {
        let reply = rest.get(path).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, metadata.as_str()), "{path}");
        assert!(json::parse(reply.body.as_bytes()).is_ok());
    }
}

#[tokio::test]
async fn errors_have_tf_codes_and_messages() {
    let (_server, port) = Server::start_with_rest(&[], "mnist_cnn").await;
    let rest = Rest::new(port);
    let predict = "/v1/models/mnist_cnn:predict";
    let one_image = tensor_json(&[1, 28, 28, 1], &[0.5; 784]);

    let cases: Vec<(&str, &str, String, u16, String)> = vec![
        ("malformed JSON", predict, "{\"instances\": [1,}".into(), 400, "JSON Parse error: Invalid value. at offset: 17".into()),
        ("empty body", predict, String::new(), 400, "JSON Parse error: The document is empty".into()),
        ("not an object", predict, "[1]".into(), 400, "JSON Value: [1] Is not object".into()),
        (
            "both keys",
            predict,
            r#"{"instances": [1], "inputs": [1]}"#.into(),
            400,
            "expecting only one of 'inputs' or 'instances' keys to exist".into(),
        ),
        ("neither key", predict, r#"{"signature_name": "serving_default"}"#.into(), 400, "Missing 'inputs' or 'instances' key".into()),
        (
            "signature_name not a string",
            predict,
            r#"{"signature_name": 3, "instances": [1]}"#.into(),
            400,
            "'signature_name' key must be a string value.".into(),
        ),
        (
            "wrong shape",
            predict,
            format!(r#"{{"inputs": {}}}"#, tensor_json(&[1, 28, 28], &[0.5; 784])),
            400,
            "input 'image' has shape [1,28,28] but the signature expects [-1,28,28,1]".into(),
        ),
        (
            "ragged instances",
            predict,
            r#"{"instances": [[[[1]]], [[[1], [2]]]]}"#.into(),
            400,
            "Failed to process element: 1 of 'instances' list. Error: Encountered list at unexpected size: 2 at level: 1 expected size: 1"
                .into(),
        ),
        (
            "string for float",
            predict,
            format!(r#"{{"inputs": {}}}"#, one_image.replacen("0.5", "\"x\"", 1)),
            400,
            r#"JSON Value: "x" Type: String is not of expected type: float"#.into(),
        ),
        (
            "b64 for float",
            predict,
            format!(r#"{{"inputs": {}}}"#, one_image.replacen("0.5", r#"{"b64": "AAAA"}"#, 1)),
            400,
            "DT_STRING".into(),
        ),
        (
            "unknown model",
            "/v1/models/nope:predict",
            format!(r#"{{"instances": {one_image}}}"#),
            404,
            "Servable not found for request: Latest(nope)".into(),
        ),
        (
            "unknown version",
            "/v1/models/mnist_cnn/versions/7:predict",
            format!(r#"{{"instances": {one_image}}}"#),
            404,
            "Servable not found for request: Specific(mnist_cnn, 7)".into(),
        ),
        (
            "unknown label",
            "/v1/models/mnist_cnn/labels/canary:predict",
            format!(r#"{{"instances": {one_image}}}"#),
            400,
            "Unrecognized servable version label: canary".into(),
        ),
        (
            "unknown signature",
            predict,
            format!(r#"{{"signature_name": "nope", "instances": {one_image}}}"#),
            400,
            "Serving signature key \"nope\" not found".into(),
        ),
        ("non-numeric version", "/v1/models/mnist_cnn/versions/x:predict", "{}".into(), 400, "Failed to convert version: x to numeric.".into()),
        ("classify without examples", "/v1/models/mnist_cnn:classify", "{}".into(), 400, "'examples' is missing".into()),
        ("regress with no example", "/v1/models/mnist_cnn:regress", r#"{"examples": []}"#.into(), 400, "Input is empty".into()),
        (
            "classify on an ONNX model",
            "/v1/models/mnist_cnn:classify",
            r#"{"examples": [{"x": 1.0}]}"#.into(),
            400,
            "no classify or regress signatures (it has serving_default (tensorflow/serving/predict))".into(),
        ),
        ("unknown verb", "/v1/models/mnist_cnn:explain", "{}".into(), 400, "Malformed request: POST /v1/models/mnist_cnn:explain".into()),
    ];
    for (what, path, body, status, message) in cases {
        let reply = rest.post(path, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(reply.content_type, "application/json", "{what}");
        let error = reply.error();
        assert!(error.contains(&message), "{what}: {error:?} should contain {message:?}");
    }

    let gets = [
        ("/v1/models", 400, "Missing model name in request."),
        ("/v1/models/nope", 404, "Could not find any versions of model nope"),
        ("/v1/models/mnist_cnn/versions/3", 404, "Could not find version 3 of model mnist_cnn"),
        ("/v1/models/mnist_cnn/versions/abc", 400, "Failed to convert version: abc to numeric."),
        ("/v1/models/nope/metadata", 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/mnist_cnn/versions/3/metadata", 404, "Servable not found for request: Specific(mnist_cnn, 3)"),
        ("/v1/models/mnist_cnn:predict", 400, "Malformed request: GET /v1/models/mnist_cnn:predict"),
        ("/v1/unknown", 400, "Malformed request: GET /v1/unknown"),
    ];
    for (path, status, message) in gets {
        let reply = rest.get(path).await;
        assert_eq!((reply.status, reply.error()), (status, message.to_string()), "{path}");
        assert_eq!(reply.content_type, "application/json", "{path}");
    }
}

#[tokio::test]
async fn nan_and_infinity_tokens_are_accepted() {
    let (_server, port) = Server::start_with_rest(&[], "mnist_cnn").await;
    let rest = Rest::new(port);
    // Row 0: the bare tokens TF's parser accepts. Row 1: alternating +-3e38, which overflows in
    // the first convolution, so inf - inf turns the logits (and the softmax) into NaN.
    let mut pixels = vec![0.25f32; 2 * 784];
    pixels[0] = f32::INFINITY;
    pixels[1] = f32::NEG_INFINITY;
    pixels[300..400].fill(f32::NAN);
    for (i, p) in pixels[784..].iter_mut().enumerate() {
        *p = if i % 2 == 0 { -3e38 } else { 3e38 };
    }
    let images = tensor_json(&[2, 28, 28, 1], &pixels);
    assert!(images.contains("[NaN]") && images.contains("[-Infinity]") && images.contains("[Infinity]"));
    let reply = rest.post("/v1/models/mnist_cnn:predict", format!(r#"{{"instances": {images}}}"#)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let doc = json::parse(reply.body.as_bytes()).expect("response parses in TF's dialect");
    let (shape, got) = flatten(doc.get("predictions").expect("predictions"));
    assert_eq!(shape, [2, 10]);
    assert!(got[..10].iter().all(|p| p.is_finite()), "{}", reply.body);
    assert!(got[10..].iter().all(|p| p.is_nan()), "{}", reply.body);
    // Written as the bare token, as TF does, not as a string or null.
    assert!(reply.body.contains("[NaN,NaN,") && !reply.body.contains("\"NaN\""), "{}", reply.body);
}

#[tokio::test]
async fn timeout_answers_504() {
    let (_server, port) = Server::start_with_rest(&["--rest_api_timeout_in_ms=1"], "mnist_cnn").await;
    let rest = Rest::new(port);
    // Parsing 512 images alone takes far more than 1 ms, so the deadline passes before the
    // model's answer can arrive however fast the machine is.
    let (dims, values) = npy(&fixture("mnist_cnn/input_b16.npy"));
    let batch: Vec<f32> = values.iter().copied().cycle().take(512 * 784).collect();
    assert_eq!(dims[1..], [28, 28, 1]);
    let images = tensor_json(&[512, 28, 28, 1], &batch);
    let reply = rest.post("/v1/models/mnist_cnn:predict", format!(r#"{{"instances": {images}}}"#)).await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(reply.error().contains("rest_api_timeout_in_ms"), "{}", reply.body);
    // Status requests are not subject to the Predict deadline.
    assert_eq!(rest.get("/v1/models/mnist_cnn").await.status, 200);
}

#[tokio::test]
async fn metrics_and_health_share_the_rest_port() {
    let (_server, port) = Server::start_with_rest(&[], "mnist_cnn").await;
    let rest = Rest::new(port);
    let (images, _, _) = golden(1);
    assert_eq!(rest.post("/v1/models/mnist_cnn:predict", format!(r#"{{"instances": {images}}}"#)).await.status, 200);
    assert_eq!(rest.post("/v1/models/nope:predict", format!(r#"{{"instances": {images}}}"#)).await.status, 404);
    assert_eq!(rest.get("/v1/models/mnist_cnn/metadata").await.status, 200);
    assert_eq!(rest.get("/v1/health/live").await.status, 200);
    let text = rest.get("/metrics").await.body;
    for line in [
        r#":tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"} 1"#,
        r#":tensorflow:serving:request_latency_count{API="predict",entrypoint="REST",model_name="mnist_cnn"} 1"#,
        r#"candle_serving_requests_total{code="OK",method="metadata",model="mnist_cnn",version="1"} 1"#,
        r#"candle_serving_inflight_requests{model="mnist_cnn"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
