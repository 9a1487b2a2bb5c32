//! The v2 protocol (KServe / Triton) from a Rust client: every engine datatype through raw,
//! typed, JSON and binary contents; refusals of datatypes a model cannot take; the v2 service
//! in health; v2 requests in the same metric series as TF Serving's. The official Triton
//! client is run against the shipped models in tests/kserve_v2.rs.

mod common;

use std::path::Path;

use candle_serving::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use candle_serving::proto::inference::model_infer_request::InferInputTensor;
use candle_serving::proto::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use candle_serving::proto::onnx::tensor_proto::DataType as OnnxType;
use candle_serving::proto::onnx::{GraphProto, NodeProto};
use common::*;
use half::{bf16, f16};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// One datatype under test: its v2 name, the ONNX element type of an Identity model over it,
/// six sample elements as little-endian bytes, as typed contents (None: raw only), and as JSON.
struct Sample {
    datatype: &'static str,
    onnx: OnnxType,
    raw: Vec<u8>,
    typed: Option<InferTensorContents>,
    json: &'static str,
}

fn le<T: Copy, const N: usize>(values: &[T], bytes: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| bytes(v)).collect()
}

fn samples() -> Vec<Sample> {
    let floats = [1.5f32, -2.0, 0.25, 3.0, 0.125, -7.5];
    let ints = [1i64, -2, 300, -400, 5, 6];
    let small = [1u32, 2, 250, 4, 5, 6];
    let bools = [true, false, true, true, false, false];
    let typed = |f: fn(&mut InferTensorContents)| {
        let mut c = InferTensorContents::default();
        f(&mut c);
        Some(c)
    };
    vec![
        Sample {
            datatype: "FP32",
            onnx: OnnxType::Float,
            raw: le(&floats, f32::to_le_bytes),
            typed: typed(|c| c.fp32_contents = vec![1.5, -2.0, 0.25, 3.0, 0.125, -7.5]),
            json: "[1.5,-2.0,0.25,3.0,0.125,-7.5]",
        },
        Sample {
            datatype: "FP64",
            onnx: OnnxType::Double,
            raw: le(&floats.map(f64::from), f64::to_le_bytes),
            typed: typed(|c| c.fp64_contents = vec![1.5, -2.0, 0.25, 3.0, 0.125, -7.5]),
            json: "[1.5,-2.0,0.25,3.0,0.125,-7.5]",
        },
        Sample {
            datatype: "FP16",
            onnx: OnnxType::Float16,
            raw: le(&floats.map(f16::from_f32), f16::to_le_bytes),
            typed: None,
            json: "[1.5,-2.0,0.25,3.0,0.125,-7.5]",
        },
        Sample {
            datatype: "BF16",
            onnx: OnnxType::Bfloat16,
            raw: le(&floats.map(bf16::from_f32), bf16::to_le_bytes),
            typed: None,
            json: "[1.5,-2.0,0.25,3.0,0.125,-7.5]",
        },
        Sample {
            datatype: "INT16",
            onnx: OnnxType::Int16,
            raw: le(&ints.map(|v| v as i16), i16::to_le_bytes),
            typed: typed(|c| c.int_contents = vec![1, -2, 300, -400, 5, 6]),
            json: "[1,-2,300,-400,5,6]",
        },
        Sample {
            datatype: "INT32",
            onnx: OnnxType::Int32,
            raw: le(&ints.map(|v| v as i32), i32::to_le_bytes),
            typed: typed(|c| c.int_contents = vec![1, -2, 300, -400, 5, 6]),
            json: "[1,-2,300,-400,5,6]",
        },
        Sample {
            datatype: "INT64",
            onnx: OnnxType::Int64,
            raw: le(&ints, i64::to_le_bytes),
            typed: typed(|c| c.int64_contents = vec![1, -2, 300, -400, 5, 6]),
            json: "[1,-2,300,-400,5,6]",
        },
        Sample {
            datatype: "UINT8",
            onnx: OnnxType::Uint8,
            raw: small.iter().map(|&v| v as u8).collect(),
            typed: typed(|c| c.uint_contents = vec![1, 2, 250, 4, 5, 6]),
            json: "[1,2,250,4,5,6]",
        },
        Sample {
            datatype: "UINT32",
            onnx: OnnxType::Uint32,
            raw: le(&small, u32::to_le_bytes),
            typed: typed(|c| c.uint_contents = vec![1, 2, 250, 4, 5, 6]),
            json: "[1,2,250,4,5,6]",
        },
        Sample {
            datatype: "BOOL",
            onnx: OnnxType::Bool,
            raw: bools.iter().map(|&b| u8::from(b)).collect(),
            typed: typed(|c| c.bool_contents = vec![true, false, true, true, false, false]),
            json: "[true,false,true,true,false,false]",
        },
    ]
}

fn model_name(sample: &Sample) -> String {
    format!("id_{}", sample.datatype.to_ascii_lowercase())
}

/// `<root>/<name>/1/model.onnx`: y = Identity(x), x and y of `elem` and shape [N, 3].
fn write_identity_model(root: &Path, name: &str, elem: OnnxType) {
    use candle_serving::proto::onnx::tensor_shape_proto::{Dimension, dimension};
    use candle_serving::proto::onnx::{TensorShapeProto, TypeProto, ValueInfoProto, type_proto};
    let value = |name: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension { value: Some(dimension::Value::DimParam("N".into())), ..Default::default() },
                        Dimension { value: Some(dimension::Value::DimValue(3)), ..Default::default() },
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![NodeProto { op_type: "Identity".into(), name: "id".into(), input: vec!["x".into()], output: vec!["y".into()], ..Default::default() }],
        input: vec![value("x")],
        output: vec![value("y")],
        ..Default::default()
    };
    std::fs::create_dir_all(root.join(name).join("1")).expect("mkdir");
    std::fs::write(root.join(name).join("1/model.onnx"), onnx_model_bytes(graph)).expect("write model");
}

/// A server with one Identity model per sample datatype (and REST on).
async fn identity_server() -> (Server, u16, Vec<Sample>) {
    let root = temp_dir("v2-datatypes");
    let samples = samples();
    let mut config = String::from("model_config_list {\n");
    for sample in &samples {
        let name = model_name(sample);
        write_identity_model(&root, &name, sample.onnx);
        config += &format!("  config {{ name: \"{name}\" base_path: \"{}\" model_platform: \"onnx\" }}\n", root.join(&name).display());
    }
    config += "}\n";
    let config_path = root.join("models.config");
    std::fs::write(&config_path, config).expect("write config");
    let flag = format!("--model_config_file={}", config_path.display());
    let (mut server, rest) = Server::start_with_rest(&[&flag], "id_fp32").await;
    for sample in &samples {
        server.wait_available(&model_name(sample)).await;
    }
    (server, rest, samples)
}

async fn client(server: &Server) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(server.url()).await.expect("connect")
}

fn request(model: &str, datatype: &str, contents: Option<InferTensorContents>, raw: Option<Vec<u8>>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        id: "req-7".into(),
        inputs: vec![InferInputTensor { name: "x".into(), datatype: datatype.into(), shape: vec![2, 3], contents, ..Default::default() }],
        raw_input_contents: raw.map(|r| vec![r.into()]).unwrap_or_default(),
        ..Default::default()
    }
}

fn check_answer(sample: &Sample, answer: &ModelInferResponse) {
    let what = sample.datatype;
    assert_eq!((answer.model_name.as_str(), answer.model_version.as_str(), answer.id.as_str()), (model_name(sample).as_str(), "1", "req-7"), "{what}");
    let output = &answer.outputs[0];
    assert_eq!((output.name.as_str(), output.datatype.as_str(), output.shape.as_slice()), ("y", what, &[2i64, 3][..]), "{what}");
}

#[tokio::test]
async fn every_engine_datatype_round_trips_raw_typed_json_and_binary() {
    let (server, rest, samples) = identity_server().await;
    let mut grpc = client(&server).await;
    let http = reqwest::Client::new();
    for sample in &samples {
        let model = model_name(sample);
        let what = sample.datatype;

        // Raw in, raw out.
        let answer = grpc.model_infer(request(&model, what, None, Some(sample.raw.clone()))).await.expect(what).into_inner();
        check_answer(sample, &answer);
        assert_eq!(answer.raw_output_contents.len(), 1, "{what}: raw answers a raw request");
        assert_eq!(answer.raw_output_contents[0].as_ref(), sample.raw.as_slice(), "{what}: raw values");
        assert!(answer.outputs[0].contents.is_none(), "{what}");

        // Typed in, typed out; FP16 and BF16 have no typed field, so they are refused in and
        // answered raw.
        match &sample.typed {
            Some(contents) => {
                let answer = grpc.model_infer(request(&model, what, Some(contents.clone()), None)).await.expect(what).into_inner();
                check_answer(sample, &answer);
                assert!(answer.raw_output_contents.is_empty(), "{what}: typed answers a typed request");
                assert_eq!(answer.outputs[0].contents.as_ref(), Some(contents), "{what}: typed values");
            }
            None => {
                let status = grpc.model_infer(request(&model, what, Some(InferTensorContents::default()), None)).await.expect_err(what);
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}");
                assert!(status.message().contains(what) && status.message().contains("raw_input_contents"), "{}", status.message());
            }
        }

        // REST, JSON in and out, nested data.
        let body = format!(
            r#"{{"id":"j1","inputs":[{{"name":"x","shape":[2,3],"datatype":"{what}","data":{}}}]}}"#,
            nest(sample.json)
        );
        let response = http.post(format!("http://127.0.0.1:{rest}/v2/models/{model}/infer")).body(body).send().await.expect("post");
        assert_eq!(response.status(), 200, "{what}");
        let json: serde_json::Value = response.json().await.expect("json");
        assert_eq!(json["id"], "j1", "{what}");
        assert_eq!(json["outputs"][0]["datatype"], what, "{what}");
        assert_eq!(json["outputs"][0]["shape"], serde_json::json!([2, 3]), "{what}");
        let want: serde_json::Value = serde_json::from_str(sample.json).expect("sample json");
        assert_eq!(json["outputs"][0]["data"], want, "{what}: JSON values");

        // REST, binary in and out.
        let header = format!(
            r#"{{"inputs":[{{"name":"x","shape":[2,3],"datatype":"{what}","parameters":{{"binary_data_size":{}}}}}],"outputs":[{{"name":"y","parameters":{{"binary_data":true}}}}]}}"#,
            sample.raw.len()
        );
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&sample.raw);
        let response = http
            .post(format!("http://127.0.0.1:{rest}/v2/models/{model}/infer"))
            .header("Inference-Header-Content-Length", header.len())
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200, "{what}");
        let json_length: usize =
            response.headers()["inference-header-content-length"].to_str().expect("ascii").parse().expect("length");
        let bytes = response.bytes().await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&bytes[..json_length]).expect("json part");
        assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], sample.raw.len(), "{what}");
        assert!(json["outputs"][0].get("data").is_none(), "{what}: binary outputs carry no JSON data");
        assert_eq!(&bytes[json_length..], sample.raw.as_slice(), "{what}: binary values");
    }
}

/// `[a,b,c,d,e,f]` as `[[a,b,c],[d,e,f]]`: the v2 protocol accepts nested data too.
fn nest(flat: &str) -> String {
    let items: Vec<&str> = flat.trim_matches(['[', ']']).split(',').collect();
    format!("[[{}],[{}]]", items[..3].join(","), items[3..].join(","))
}

#[tokio::test]
async fn datatypes_the_model_cannot_take_are_refused_by_name() {
    let (server, rest, _) = identity_server().await;
    let mut grpc = client(&server).await;
    for (datatype, bytes) in [("INT8", 6), ("UINT16", 12), ("UINT64", 48), ("BYTES", 0), ("FP64", 48), ("COMPLEX", 0)] {
        let status = grpc.model_infer(request("id_fp32", datatype, None, Some(vec![0; bytes]))).await.expect_err(datatype);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{datatype}");
        assert!(status.message().contains(datatype) && status.message().contains("FP32"), "{datatype}: {}", status.message());
    }
    // Shape, input name, output name and version problems name what is wrong.
    let mut wrong_shape = request("id_fp32", "FP32", None, Some(vec![0; 24]));
    wrong_shape.inputs[0].shape = vec![3, 2];
    let status = grpc.model_infer(wrong_shape).await.expect_err("shape");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("[3,2]"), "{}", status.message());
    let mut wrong_name = request("id_fp32", "FP32", None, Some(vec![0; 24]));
    wrong_name.inputs[0].name = "image".into();
    let status = grpc.model_infer(wrong_name).await.expect_err("name");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("image"), "{}", status.message());
    let mut wrong_version = request("id_fp32", "FP32", None, Some(vec![0; 24]));
    wrong_version.model_version = "9".into();
    let status = grpc.model_infer(wrong_version).await.expect_err("version");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("id_fp32") && status.message().contains('9'), "{}", status.message());
    let short = request("id_fp32", "FP32", None, Some(vec![0; 20]));
    let status = grpc.model_infer(short).await.expect_err("short raw");
    assert!(status.message().contains("20 bytes") && status.message().contains("needs 24"), "{}", status.message());

    // REST answers the same problems as `{"error": ...}` with the code's HTTP status.
    let http = reqwest::Client::new();
    let post = |path: &str, body: &str| http.post(format!("http://127.0.0.1:{rest}{path}")).body(body.to_string()).send();
    let response = post("/v2/models/id_fp32/infer", r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"INT8","data":[1,2,3]}]}"#).await.expect("post");
    assert_eq!(response.status(), 400);
    let error = response.json::<serde_json::Value>().await.expect("json")["error"].as_str().expect("error").to_string();
    assert!(error.contains("INT8") && error.contains("FP32"), "{error}");
    let response = post("/v2/models/nope/infer", r#"{"inputs":[]}"#).await.expect("post");
    assert_eq!(response.status(), 404);
    let response = post("/v2/models/id_fp32/infer", r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2]}]}"#).await.expect("post");
    assert_eq!(response.status(), 400);
    let error = response.json::<serde_json::Value>().await.expect("json")["error"].as_str().expect("error").to_string();
    assert!(error.contains("2 values") && error.contains("[1,3]"), "{error}");
}

#[tokio::test]
async fn the_v2_service_is_in_health_and_its_requests_in_the_shared_metrics() {
    let (server, rest, _) = identity_server().await;
    assert_eq!(grpc_health(server.port, "inference.GRPCInferenceService").await.expect("health"), ServingStatus::Serving);
    let mut grpc = client(&server).await;
    let raw = vec![0u8; 24];
    grpc.model_infer(request("id_fp32", "FP32", None, Some(raw))).await.expect("grpc infer");
    let body = r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#;
    let response = reqwest::Client::new().post(format!("http://127.0.0.1:{rest}/v2/models/id_fp32/infer")).body(body).send().await.expect("post");
    assert_eq!(response.status(), 200);

    let text = scrape(rest).await;
    let series = |name: &str, labels: &[&str]| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    assert_eq!(series(":tensorflow:serving:request_count{", &["model_name=\"id_fp32\"", "status=\"OK\""]), 2.0, "{text}");
    for api in ["ModelInfer", "infer"] {
        let api_label = format!("API=\"{api}\"");
        assert_eq!(series(":tensorflow:serving:request_latency_count{", &["model_name=\"id_fp32\"", &api_label]), 1.0, "{api}");
        assert_eq!(series(":tensorflow:serving:runtime_latency_count{", &["model_name=\"id_fp32\"", &api_label]), 1.0, "{api}");
    }
    assert_eq!(series("candle_serving_compute_duration_seconds_count{", &["model=\"id_fp32\""]), 2.0);
    assert_eq!(series("candle_serving_queue_duration_seconds_count{", &["model=\"id_fp32\""]), 2.0);
}

/// What grpcurl does: list the services through server reflection, then resolve the v2
/// service's file by symbol.
#[tokio::test]
async fn reflection_lists_and_describes_the_v2_service() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = Server::start(&["--model_base_path=models/mnist_cnn", "--model_name=mnist_cnn"], "mnist_cnn").await;
    let channel = tonic::transport::Channel::from_shared(server.url()).expect("url").connect().await.expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let ask = |message: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(message) };
    let requests = vec![ask(MessageRequest::ListServices(String::new())), ask(MessageRequest::FileContainingSymbol("inference.GRPCInferenceService".into()))];
    let mut answers = client.server_reflection_info(tokio_stream::iter(requests)).await.expect("reflection").into_inner();

    let listed = answers.message().await.expect("stream").expect("first answer");
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else { panic!("{listed:?}") };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for wanted in ["inference.GRPCInferenceService", "tensorflow.serving.PredictionService", "grpc.health.v1.Health"] {
        assert!(names.contains(&wanted), "{wanted} not in {names:?}");
    }
    let described = answers.message().await.expect("stream").expect("second answer");
    let Some(MessageResponse::FileDescriptorResponse(files)) = described.message_response else { panic!("{described:?}") };
    use prost::Message;
    let file = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("descriptor"))
        .find(|f| f.package() == "inference")
        .expect("the inference package's file");
    let methods: Vec<&str> = file.service[0].method.iter().map(|m| m.name()).collect();
    assert!(methods.contains(&"ModelInfer") && methods.contains(&"RepositoryModelLoad"), "{methods:?}");
}
