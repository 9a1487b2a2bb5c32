//! LSTM, GRU and RNN against onnxruntime: every case under tests/fixtures/rnn (written by
//! make_rnn_cases.py there) runs through the public session API and must match each output
//! within 1e-5. Also checks that bad attributes fail at load, naming the attribute.

use std::path::{Path, PathBuf};

use candle_core::{DType as CDType, Tensor};
use candle_serving::engine::onnx::OnnxSession;
use candle_serving::engine::{EngineOptions, Session};
use candle_serving::proto::onnx::{AttributeProto, ModelProto, attribute_proto::AttributeType};
use candle_serving::tensor::{HostTensor, TensorData};
use prost::Message;

const ATOL: f32 = 1e-5;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rnn")
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("fixtures/rnn")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 14, "expected the generated cases, found {}", dirs.len());
    dirs
}

fn read_npy(path: &Path) -> HostTensor {
    let t = Tensor::read_npy(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let shape = t.dims().to_vec();
    let flat = t.flatten_all().expect("flatten");
    let data = match t.dtype() {
        CDType::F32 => TensorData::F32(flat.to_vec1().expect("f32")),
        CDType::I32 => TensorData::I32(flat.to_vec1().expect("i32")),
        other => panic!("{}: unexpected dtype {other:?}", path.display()),
    };
    HostTensor::new(shape, data).expect("consistent npy")
}

fn run_case(dir: &Path) -> Result<(), String> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let session = OnnxSession::load(&dir.join("model.onnx"), &EngineOptions::default()).map_err(|e| format!("{name}: load: {e}"))?;
    let inputs: Vec<HostTensor> = session.inputs().iter().map(|s| read_npy(&dir.join(format!("in_{}.npy", s.key)))).collect();
    // Twice: the second run reuses whatever the first one left behind (there must be nothing).
    for round in 0..2 {
        let outputs = session.run(inputs.clone()).map_err(|e| format!("{name}: run: {e}"))?;
        for (spec, got) in session.outputs().iter().zip(&outputs) {
            let want = read_npy(&dir.join(format!("out_{}.npy", spec.key)));
            if got.shape() != want.shape() {
                return Err(format!("{name} {}: shape {:?}, want {:?}", spec.key, got.shape(), want.shape()));
            }
            let (TensorData::F32(g), TensorData::F32(w)) = (got.data(), want.data()) else {
                return Err(format!("{name} {}: not float32", spec.key));
            };
            let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            if worst.is_nan() || worst > ATOL {
                return Err(format!("{name} {} (run {round}): max |diff| {worst} > {ATOL}", spec.key));
            }
        }
    }
    Ok(())
}

#[test]
fn every_case_matches_onnxruntime() {
    // Two intra-op threads, so the larger cases also run split into batch slices.
    candle_serving::engine::set_intra_op_threads(2);
    let failures: Vec<String> = cases().iter().filter_map(|dir| run_case(dir).err()).collect();
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// A fixture model with one attribute of its recurrent node replaced, as bytes.
fn with_attribute(case: &str, attribute: AttributeProto) -> Vec<u8> {
    let bytes = std::fs::read(cases_dir().join(case).join("model.onnx")).expect("model");
    let mut model = ModelProto::decode(bytes.as_slice()).expect("decode");
    let node = &mut model.graph.as_mut().expect("graph").node[0];
    node.attribute.retain(|a| a.name != attribute.name);
    node.attribute.push(attribute);
    model.encode_to_vec()
}

fn load_error(bytes: &[u8]) -> String {
    match OnnxSession::from_bytes(bytes) {
        Ok(_) => panic!("model should not load"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_activation_fails_at_load_naming_the_attribute() {
    let attribute = AttributeProto {
        name: "activations".into(),
        r#type: AttributeType::Strings as i32,
        strings: vec![b"Sigmoid".to_vec(), b"Gelu".to_vec(), b"Tanh".to_vec()],
        ..Default::default()
    };
    let message = load_error(&with_attribute("lstm_forward_b1", attribute));
    assert!(message.contains("'activations'") && message.contains("Gelu"), "{message}");
}

#[test]
fn wrong_activation_count_and_bad_direction_fail_at_load() {
    let attribute = AttributeProto {
        name: "activations".into(),
        r#type: AttributeType::Strings as i32,
        strings: vec![b"Sigmoid".to_vec(), b"Tanh".to_vec()],
        ..Default::default()
    };
    let message = load_error(&with_attribute("lstm_forward_b1", attribute));
    assert!(message.contains("'activations'") && message.contains("needs 3"), "{message}");

    let attribute = AttributeProto {
        name: "direction".into(),
        r#type: AttributeType::String as i32,
        s: b"sideways".to_vec(),
        ..Default::default()
    };
    let message = load_error(&with_attribute("gru_lbr1_layout1_b1", attribute));
    assert!(message.contains("'direction'") && message.contains("sideways"), "{message}");
}

#[test]
fn weights_that_disagree_with_hidden_size_fail_at_load() {
    let attribute = AttributeProto { name: "hidden_size".into(), r#type: AttributeType::Int as i32, i: 7, ..Default::default() };
    let message = load_error(&with_attribute("rnn_bidirectional_lens_b5", attribute));
    assert!(message.contains("hidden_size is 7"), "{message}");
}

/// Latency of LSTM(input 28, hidden 128) over 28 steps at batch 1 and 64, next to
/// onnxruntime's: prepare the model with tests/fixtures/rnn/time_lstm_ort.py (which also
/// prints onnxruntime's figures), then run this in release mode with RNN_TIMING_DIR set.
#[test]
#[ignore = "timing; needs RNN_TIMING_DIR from time_lstm_ort.py and a release build"]
fn lstm_128_timing() {
    let Ok(dir) = std::env::var("RNN_TIMING_DIR") else {
        eprintln!("RNN_TIMING_DIR is not set; skipping");
        return;
    };
    let dir = PathBuf::from(dir);
    let threads = std::env::var("RNN_TIMING_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    candle_serving::engine::set_intra_op_threads(threads);
    let session = OnnxSession::load(&dir.join("model.onnx"), &EngineOptions::default()).expect("load");
    for (batch, iterations) in [(1usize, 3000usize), (64, 300)] {
        let x = read_npy(&dir.join(format!("x_b{batch}.npy")));
        let want = read_npy(&dir.join(format!("yh_b{batch}.npy")));
        let out = session.run(vec![x.clone()]).expect("run");
        let (TensorData::F32(got), TensorData::F32(want)) = (out[1].data(), want.data()) else { panic!("f32") };
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= ATOL, "batch {batch}: max |diff| {worst}");
        for _ in 0..iterations / 10 {
            session.run(vec![x.clone()]).expect("run");
        }
        let mut times: Vec<f64> = (0..iterations)
            .map(|_| {
                let input = vec![x.clone()];
                let start = std::time::Instant::now();
                session.run(input).expect("run");
                start.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        eprintln!(
            "candle-serving b{batch} t{threads}: median {:.1} us, min {:.1} us (max |diff| vs onnxruntime {worst:e})",
            times[times.len() / 2],
            times[0]
        );
    }
}
