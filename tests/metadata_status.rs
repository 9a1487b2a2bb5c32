//! GetModelMetadata and GetModelStatus as TF Serving clients read them.

mod common;

use candle_serving::proto::tensorflow::DataType;
use candle_serving::proto::tensorflow::serving::model_spec::VersionChoice;
use candle_serving::proto::tensorflow::serving::model_version_status::State;
use candle_serving::proto::tensorflow::serving::{GetModelMetadataRequest, GetModelStatusRequest, SignatureDefMap};
use candle_serving::proto::tensorflow::tensor_info::Encoding;
use common::*;
use prost::Message;
use tonic::Code;

fn dims(info: &candle_serving::proto::tensorflow::TensorInfo) -> Vec<i64> {
    info.tensor_shape.as_ref().expect("shape").dim.iter().map(|d| d.size).collect()
}

#[tokio::test]
async fn metadata_describes_the_serving_default_signature() {
    let server = Server::start(&[], "mnist_cnn").await;
    let mut client = server.predict_client().await;
    let request = GetModelMetadataRequest { model_spec: Some(spec("mnist_cnn")), metadata_field: vec!["signature_def".into()] };
    let response = client.get_model_metadata(request).await.expect("metadata").into_inner();
    let model_spec = response.model_spec.expect("model_spec");
    assert_eq!(model_spec.name, "mnist_cnn");
    assert_eq!(model_spec.version_choice, Some(VersionChoice::Version(1)));
    assert_eq!(response.metadata.len(), 1);
    let any = &response.metadata["signature_def"];
    assert_eq!(any.type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap");
    let map = SignatureDefMap::decode(any.value.as_slice()).expect("SignatureDefMap");
    let sig = &map.signature_def["serving_default"];
    assert_eq!(sig.method_name, "tensorflow/serving/predict");
    let input = &sig.inputs["image"];
    assert_eq!(input.dtype, DataType::DtFloat as i32);
    assert_eq!(dims(input), vec![-1, 28, 28, 1]);
    assert_eq!(input.encoding, Some(Encoding::Name("image".into())));
    let output = &sig.outputs["probabilities"];
    assert_eq!(output.dtype, DataType::DtFloat as i32);
    assert_eq!(dims(output), vec![-1, 10]);
}

#[tokio::test]
async fn metadata_errors() {
    let server = Server::start(&[], "mnist_cnn").await;
    let mut client = server.predict_client().await;
    let none = GetModelMetadataRequest { model_spec: Some(spec("mnist_cnn")), metadata_field: vec![] };
    let status = client.get_model_metadata(none).await.expect_err("no field");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("at least one metadata_field"), "{}", status.message());
    let bad = GetModelMetadataRequest { model_spec: Some(spec("mnist_cnn")), metadata_field: vec!["graph".into()] };
    let status = client.get_model_metadata(bad).await.expect_err("bad field");
    assert_eq!(status.message(), "Metadata field graph is not supported");
    let unknown = GetModelMetadataRequest { model_spec: Some(spec("zzz")), metadata_field: vec!["signature_def".into()] };
    assert_eq!(client.get_model_metadata(unknown).await.expect_err("unknown").code(), Code::NotFound);
}

#[tokio::test]
async fn status_lists_versions_and_errors() {
    let server = Server::start(&[], "mnist_cnn").await;
    let mut client = server.model_client().await;
    let response = client.get_model_status(GetModelStatusRequest { model_spec: Some(spec("mnist_cnn")) }).await.expect("status");
    let versions = response.into_inner().model_version_status;
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].version, 1);
    assert_eq!(versions[0].state, State::Available as i32);
    let status = versions[0].status.as_ref().expect("status");
    assert_eq!((status.error_code, status.error_message.as_str()), (0, ""));

    let mut one = spec("mnist_cnn");
    one.version_choice = Some(VersionChoice::Version(3));
    let status = client.get_model_status(GetModelStatusRequest { model_spec: Some(one) }).await.expect_err("v3");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Could not find version 3 of model mnist_cnn");
    let status = client.get_model_status(GetModelStatusRequest { model_spec: Some(spec("zzz")) }).await.expect_err("unknown");
    assert_eq!(status.message(), "Could not find any versions of model zzz");
}
