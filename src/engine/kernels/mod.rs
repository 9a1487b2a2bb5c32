//! The engine's own CPU kernels for the ops that dominate CNN and RNN serving time.
//!
//! candle's generic ops pay for strided copies and broadcasts around every conv and pool (see
//! ../shared/reference/candle.md: 10x behind onnxruntime on the MNIST CNN). These kernels work
//! on contiguous f32 slices in NHWC order, where a pixel's channels are one run of memory: conv
//! becomes one packed GEMM per chunk of output pixels with bias and activation fused, pooling a
//! vectorisable max/sum over channel runs. They plug into candle as custom ops, so the plan
//! still passes `Tensor`s around; on other devices the importer keeps candle's own ops.

pub(crate) mod activation;
pub(crate) mod conv;
pub(crate) mod custom;
pub(crate) mod depthwise;
pub(crate) mod gemm;
pub(crate) mod packed;
pub(crate) mod pool;
pub(crate) mod threads;

pub(crate) use activation::Activation;
