//! The engine's own CPU kernels for the ops that dominate CNN and RNN serving time.
//!
//! candle's generic ops pay for strided copies and broadcasts around every conv and pool (see
//! ../shared/reference/candle.md: 10x behind onnxruntime on the MNIST CNN). These kernels work
//! on contiguous f32 slices in NHWC order, where a pixel's channels are one run of memory: conv
//! and dense layers become one GEMM over weights packed at load (`packed`) with bias, residual
//! and activation fused into its epilogue, depthwise convs a direct kernel (`depthwise`),
//! pooling a vectorisable max/sum over channel runs. They borrow candle's CPU storage, so the
//! plan still passes `Tensor`s around; on other devices the importer keeps candle's own ops.

pub(crate) mod activation;
pub(crate) mod conv;
pub(crate) mod custom;
pub(crate) mod depthwise;
pub(crate) mod lrn;
pub(crate) mod movement;
pub(crate) mod packed;
pub(crate) mod pool;
pub(crate) mod simd;
pub(crate) mod threads;
pub(crate) mod winograd;

pub(crate) use activation::Activation;
