//! Every bad request gets the documented code and a message naming the problem, and the server
//! keeps answering good requests afterwards.

mod common;

use candle_serving::proto::tensorflow::serving::model_spec::VersionChoice;
use candle_serving::proto::tensorflow::serving::{ClassificationRequest, PredictRequest};
use candle_serving::proto::tensorflow::{DataType, TensorProto};
use common::*;
use tonic::Code;

fn good_request() -> PredictRequest {
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    predict_request("mnist_cnn", "image", float_tensor(&dims, input))
}

fn with_input(name: &str, tensor: TensorProto) -> PredictRequest {
    predict_request("mnist_cnn", name, tensor)
}

/// Sends `request`, checks code and message fragments, then proves the server still serves.
async fn expect_error(server: &Server, request: PredictRequest, code: Code, fragments: &[&str]) {
    let mut client = server.predict_client().await;
    let status = client.predict(request).await.expect_err("request should fail");
    assert_eq!(status.code(), code, "message: {}", status.message());
    for fragment in fragments {
        assert!(status.message().contains(fragment), "'{}' does not contain '{fragment}'", status.message());
    }
    let ok = client.predict(good_request()).await.expect("server keeps serving after an error");
    assert_eq!(ok.into_inner().outputs["probabilities"].float_val.len(), 10);
}

#[tokio::test]
async fn model_and_version_errors() {
    let server = Server::start(&[], "mnist_cnn").await;
    let mut request = good_request();
    request.model_spec.as_mut().expect("spec").name = "nope".into();
    expect_error(&server, request, Code::NotFound, &["Servable not found for request: Latest(nope)"]).await;

    let mut request = good_request();
    request.model_spec.as_mut().expect("spec").version_choice = Some(VersionChoice::Version(7));
    expect_error(&server, request, Code::NotFound, &["Servable not found for request: Specific(mnist_cnn, 7)"]).await;

    let mut request = good_request();
    request.model_spec.as_mut().expect("spec").version_choice = Some(VersionChoice::VersionLabel("canary".into()));
    expect_error(&server, request, Code::InvalidArgument, &["Unrecognized servable version label: canary"]).await;

    let mut request = good_request();
    request.model_spec.as_mut().expect("spec").name.clear();
    expect_error(&server, request, Code::InvalidArgument, &["ModelSpec has no name specified."]).await;

    let mut request = good_request();
    request.model_spec = None;
    expect_error(&server, request, Code::InvalidArgument, &["Missing ModelSpec"]).await;

    let mut request = good_request();
    request.model_spec.as_mut().expect("spec").signature_name = "classify".into();
    expect_error(&server, request, Code::FailedPrecondition, &["Serving signature key \"classify\" not found", "serving_default"]).await;
}

#[tokio::test]
async fn input_key_errors_name_the_expected_keys() {
    let server = Server::start(&[], "mnist_cnn").await;
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let tensor = float_tensor(&dims, input);

    let mut missing = good_request();
    missing.inputs.clear();
    expect_error(&server, missing, Code::InvalidArgument, &["0!=1", "Missing but required: {image}"]).await;

    let mut extra = good_request();
    extra.inputs.insert("mask".into(), tensor.clone());
    expect_error(&server, extra, Code::InvalidArgument, &["2!=1", "Sent extra: {mask}", "{image}"]).await;

    let misnamed = with_input("img", tensor);
    expect_error(&server, misnamed, Code::InvalidArgument, &["Signature input alias: image not found", "{image}", "{img}"]).await;
}

#[tokio::test]
async fn dtype_and_shape_errors_name_both_sides() {
    let server = Server::start(&[], "mnist_cnn").await;
    let ints = TensorProto {
        dtype: DataType::DtInt32 as i32,
        tensor_shape: Some(shape(&[1, 28, 28, 1])),
        int_val: vec![0],
        ..Default::default()
    };
    expect_error(&server, with_input("image", ints), Code::InvalidArgument, &["DT_FLOAT", "DT_INT32", "image"]).await;

    let strings = TensorProto {
        dtype: DataType::DtString as i32,
        tensor_shape: Some(shape(&[1])),
        string_val: vec![b"x".to_vec()],
        ..Default::default()
    };
    expect_error(&server, with_input("image", strings), Code::InvalidArgument, &["DT_STRING", "not supported"]).await;

    let rank3 = float_tensor(&[1, 28, 28], vec![0.0]);
    expect_error(&server, with_input("image", rank3), Code::InvalidArgument, &["[1,28,28]", "[-1,28,28,1]"]).await;

    let wrong_dims = float_tensor(&[2, 28, 27, 1], vec![0.0]);
    expect_error(&server, with_input("image", wrong_dims), Code::InvalidArgument, &["[2,28,27,1]", "[-1,28,28,1]"]).await;

    let mut filtered = good_request();
    filtered.output_filter = vec!["logits".into()];
    expect_error(&server, filtered, Code::InvalidArgument, &["output tensor alias not found in signature: logits", "{probabilities}"]).await;
}

#[tokio::test]
async fn malformed_tensors_are_rejected_before_allocation() {
    let server = Server::start(&[], "mnist_cnn").await;
    let short = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape(&[1, 28, 28, 1])),
        tensor_content: vec![0u8; 100].into(),
        ..Default::default()
    };
    expect_error(&server, with_input("image", short), Code::InvalidArgument, &["tensor parsing error: image", "100 bytes", "3136"]).await;

    let mut negative = float_tensor(&[1, 28, 28, 1], vec![0.0]);
    negative.tensor_shape.as_mut().expect("shape").dim[0].size = -5;
    expect_error(&server, with_input("image", negative), Code::InvalidArgument, &["negative dimension", "[-5,28,28,1]"]).await;

    // 2^40 images from a one-value tensor: must be refused, not allocated.
    let absurd = float_tensor(&[1 << 40, 28, 28, 1], vec![0.0]);
    expect_error(&server, with_input("image", absurd), Code::InvalidArgument, &["over the limit"]).await;

    let overflow = float_tensor(&[usize::MAX >> 2, usize::MAX >> 2, 28, 1], vec![0.0]);
    expect_error(&server, with_input("image", overflow), Code::InvalidArgument, &["over the limit"]).await;

    let mut wrong_field = float_tensor(&[1, 28, 28, 1], vec![]);
    wrong_field.double_val = vec![0.5];
    expect_error(&server, with_input("image", wrong_field), Code::InvalidArgument, &["float_val", "double_val"]).await;
}

/// ONNX models have no classify or regress signatures: Classify answers FAILED_PRECONDITION
/// naming the signature asked for and the ones the model has, and Predict keeps serving.
#[tokio::test]
async fn classify_on_an_onnx_model_names_what_it_has() {
    use candle_serving::proto::tensorflow::serving::{ExampleList, Input, input};
    use candle_serving::proto::tensorflow::{Example, Features};
    let server = Server::start(&[], "mnist_cnn").await;
    let mut client = server.predict_client().await;
    let status = client.classify(ClassificationRequest::default()).await.expect_err("classify");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "Missing ModelSpec"));
    let example = Example { features: Some(Features::default()) };
    let request = ClassificationRequest {
        model_spec: Some(spec("mnist_cnn")),
        input: Some(Input { kind: Some(input::Kind::ExampleList(ExampleList { examples: vec![example] })) }),
    };
    let status = client.classify(request).await.expect_err("classify");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    for words in ["\"serving_default\"", "tensorflow/serving/classify", "serving_default (tensorflow/serving/predict)"] {
        assert!(status.message().contains(words), "{words} not in {}", status.message());
    }
    assert!(client.predict(good_request()).await.is_ok());
}
