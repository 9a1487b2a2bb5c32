#![no_main]
//! See `candle_serving_fuzz::targets::onnx_import`.

#[global_allocator]
static ALLOC: candle_serving_fuzz::LimitedAlloc = candle_serving_fuzz::LimitedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = candle_serving_fuzz::targets::onnx_import(data);
});
