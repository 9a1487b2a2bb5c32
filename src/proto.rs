//! Generated protobuf and gRPC types (see build.rs). Module nesting mirrors the proto packages
//! so that the generated cross-package paths resolve.
#![allow(clippy::all, missing_docs, unreachable_pub, rust_2018_idioms)]

pub mod tensorflow {
    tonic::include_proto!("tensorflow");

    pub mod error {
        tonic::include_proto!("tensorflow.error");
    }

    pub mod serving {
        tonic::include_proto!("tensorflow.serving");
    }
}

/// The KServe v2 / Open Inference Protocol (package `inference`).
pub mod inference {
    tonic::include_proto!("inference");
}

pub mod onnx {
    tonic::include_proto!("onnx");
}

/// Encoded `FileDescriptorSet` of every proto in proto/, for reflection and text-format configs.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor_set");
