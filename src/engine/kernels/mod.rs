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
pub(crate) mod inverted_residual;
pub(crate) mod lrn;
pub(crate) mod movement;
pub(crate) mod narrow;
pub(crate) mod output;
pub(crate) mod packed;
pub(crate) mod pool;
pub(crate) mod pooled_conv;
pub(crate) mod scratch;
pub(crate) mod simd;
pub(crate) mod threads;
pub(crate) mod winograd;

pub(crate) use activation::Activation;

/// The fastest single call of `f` over half a second (at least five calls), for the ignored
/// timing tests: on a shared machine the minimum is the run that was not preempted, where a
/// mean would measure the neighbours.
#[cfg(test)]
pub(crate) fn best_seconds(mut f: impl FnMut()) -> f64 {
    f();
    let start = std::time::Instant::now();
    let mut best = f64::INFINITY;
    let mut calls = 0;
    while calls < 5 || start.elapsed().as_secs_f64() < 0.5 {
        let t = std::time::Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        calls += 1;
    }
    best
}
