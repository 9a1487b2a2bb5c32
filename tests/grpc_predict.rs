//! Predict against golden onnxruntime outputs, through the server and a tonic client.

mod common;

use candle_serving::proto::tensorflow::{DataType, TensorProto};
use common::*;

const ATOL: f32 = 1e-5;

#[tokio::test]
async fn keras_cnn_matches_onnxruntime_at_batch_1_and_16_by_default_and_by_version() {
    let server = Server::start(&[], "mnist_cnn").await;
    for batch in [1, 16] {
        check_golden(&mut server.predict_client().await, "mnist_cnn", "mnist_cnn", batch, None).await;
        check_golden(&mut server.predict_client().await, "mnist_cnn", "mnist_cnn", batch, Some(1)).await;
    }
}

#[tokio::test]
async fn pytorch_style_nchw_cnn_matches_onnxruntime() {
    let base = fixture("mnist_cnn_nchw");
    let server = Server::start(&["--model_name=mnist_cnn_nchw", &format!("--model_base_path={}", base.display())], "mnist_cnn_nchw").await;
    for batch in [1, 16] {
        check_golden(&mut server.predict_client().await, "mnist_cnn_nchw", "mnist_cnn_nchw", batch, None).await;
    }
}

/// Sequential-MNIST LSTM and GRU (Keras, tf2onnx), served from models/ with no flags like the CNN.
#[tokio::test]
async fn keras_lstm_and_gru_match_onnxruntime_at_batch_1_and_16() {
    let mut server = Server::start(&[], "mnist_lstm").await;
    server.wait_available("mnist_gru").await;
    for model in ["mnist_lstm", "mnist_gru"] {
        for batch in [1, 16] {
            check_golden(&mut server.predict_client().await, model, model, batch, None).await;
        }
    }
}

/// Batching must not leak between rows: every row of a batch of 16 equals that input run
/// alone, for every model in models/.
#[tokio::test]
async fn each_row_of_a_batch_equals_the_same_input_run_alone() {
    let mut server = Server::start(&[], "mnist_cnn").await;
    for model in ["mnist_lstm", "mnist_gru"] {
        server.wait_available(model).await;
    }
    let mut client = server.predict_client().await;
    for model in ["mnist_cnn", "mnist_lstm", "mnist_gru"] {
        let (dims, input) = npy(&fixture(&format!("{model}/input_b16.npy")));
        let batched = client.predict(predict_request(model, "image", float_tensor(&dims, input.clone()))).await.expect("batch");
        let batched = batched.into_inner().outputs["probabilities"].float_val.clone();
        let per_image: usize = dims[1..].iter().product();
        let mut one_dims = dims.clone();
        one_dims[0] = 1;
        for i in 0..16 {
            let one = input[i * per_image..(i + 1) * per_image].to_vec();
            let single = client.predict(predict_request(model, "image", float_tensor(&one_dims, one))).await.expect("single");
            let single = &single.into_inner().outputs["probabilities"].float_val;
            assert_close(single, &batched[i * 10..(i + 1) * 10], 1e-6, &format!("{model} row {i}"));
        }
    }
}

#[tokio::test]
async fn tensor_content_in_and_out() {
    let server = Server::start(&["--enable_serialization_as_tensor_content"], "mnist_cnn").await;
    let (dims, input) = npy(&fixture("mnist_cnn/input_b16.npy"));
    let (_, want) = npy(&fixture("mnist_cnn/output_b16.npy"));
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape(&dims)),
        tensor_content: input.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    };
    let response = server.predict_client().await.predict(predict_request("mnist_cnn", "image", tensor)).await.expect("predict");
    let out = &response.into_inner().outputs["probabilities"];
    assert!(out.float_val.is_empty(), "--enable_serialization_as_tensor_content answers in bytes");
    let got: Vec<f32> = out.tensor_content.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_close(&got, &want, ATOL, "tensor_content batch 16");
}

#[tokio::test]
async fn output_filter_selects_outputs() {
    let server = Server::start(&[], "mnist_cnn").await;
    let (dims, input) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let mut request = predict_request("mnist_cnn", "image", float_tensor(&dims, input));
    request.output_filter = vec!["probabilities".into()];
    let response = server.predict_client().await.predict(request).await.expect("predict").into_inner();
    assert_eq!(response.outputs.keys().collect::<Vec<_>>(), vec!["probabilities"]);
}
