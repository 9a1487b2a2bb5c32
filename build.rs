//! Compiles proto/ with protox (pure Rust), so building needs no system `protoc`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "tensorflow_serving/apis/prediction_log.proto",
    "tensorflow_serving/config/model_server_config.proto",
    "tensorflow_serving/config/monitoring_config.proto",
    "tensorflow_serving/config/platform_config.proto",
    "tensorflow_serving/config/ssl_config.proto",
    "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
    "onnx/onnx.proto",
    "tensorflow/core/protobuf/tensor_bundle.proto",
    "tensorflow/core/protobuf/saved_model.proto",
    "inference/grpc_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(PROTOS)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC reflection and text-format parsing of config files.
    std::fs::write(out.join("descriptor_set.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".tensorflow.TensorProto.tensor_content")
        // an ONNX file's weights: slices of the file's one buffer, not a copy each (load memory)
        .bytes(".onnx.TensorProto.raw_data")
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
