//! Replays every input the fuzzers ever crashed on (`tests/fuzz/regressions/<target>/`)
//! through the same entry points as the fuzz targets, so a fixed crash stays fixed under a
//! plain stable `cargo test`. No input may panic; a refused one must say why.

// The fuzz crate's own entry points; `pub` there, private to this test binary here.
#[path = "fuzz/src/targets.rs"]
#[allow(unreachable_pub)]
mod targets;

use std::path::Path;

#[test]
fn every_kept_fuzz_crash_returns_instead_of_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions");
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep"))
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("regression input");
            let outcome = std::panic::catch_unwind(|| target(&data));
            match outcome {
                Err(_) => panic!("{name}: {} panics again", file.display()),
                // Some crashes were in code that should have said "unknown" rather than
                // overflow (shape inference); once fixed, such an input is simply valid.
                Ok(Ok(())) => {}
                Ok(Err(message)) => assert!(!message.is_empty(), "{name}: {} is refused without a message", file.display()),
            }
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} fuzz regression inputs");
}

#[test]
fn the_committed_seeds_are_accepted_or_refused_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds");
    for (name, target) in targets::TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else { continue };
        for entry in entries {
            let file = entry.expect("directory entry").path();
            let data = std::fs::read(&file).expect("seed");
            assert!(std::panic::catch_unwind(|| target(&data)).is_ok(), "{name}: {} panics", file.display());
        }
    }
}

/// Rewrites the binary seeds in `tests/fuzz/seeds/` (the text ones are written by hand):
/// `cargo test --test fuzz_regressions -- --ignored write_binary_seeds`.
#[test]
#[ignore = "writes files; run by hand when the seed set changes"]
fn write_binary_seeds() {
    use candle_serving::proto::tensorflow::serving::prediction_log::LogType;
    use candle_serving::proto::tensorflow::serving::{ModelSpec, PredictLog, PredictRequest, PredictionLog};
    use candle_serving::proto::tensorflow::{DataType, TensorProto};
    use candle_serving::repository::write_tfrecords;
    use candle_serving::tensor::tf_proto::shape_to_tf;
    use prost::Message;

    let tensor = |dtype: DataType, dims: &[i64]| TensorProto {
        dtype: dtype as i32,
        tensor_shape: Some(shape_to_tf(dims.iter().copied())),
        ..Default::default()
    };
    let request = |inputs: Vec<(&str, TensorProto)>| PredictRequest {
        model_spec: Some(ModelSpec { name: "m".into(), signature_name: "serving_default".into(), ..Default::default() }),
        inputs: inputs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        output_filter: Vec::new(),
        ..Default::default()
    };
    let floats = TensorProto { float_val: vec![1.0, 2.5], ..tensor(DataType::DtFloat, &[2, 3]) };
    let content = TensorProto { tensor_content: vec![0, 0, 128, 63, 0, 0, 0, 64].into(), ..tensor(DataType::DtFloat, &[1, 2]) };
    let bytes = TensorProto { int_val: vec![7, 255], ..tensor(DataType::DtUint8, &[2]) };
    let halves = TensorProto { half_val: vec![0x3c00], ..tensor(DataType::DtHalf, &[1, 1]) };
    let longs = TensorProto { int64_val: vec![-1, i64::MAX], ..tensor(DataType::DtInt64, &[2]) };
    let bools = TensorProto { bool_val: vec![true, false], ..tensor(DataType::DtBool, &[2]) };
    let requests = [
        ("floats", request(vec![("x", floats.clone())])),
        ("content", request(vec![("x", content.clone())])),
        ("mixed", request(vec![("a", bytes), ("b", halves), ("c", longs), ("d", bools)])),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds");
    for (name, r) in &requests {
        std::fs::write(root.join("tensor_proto").join(format!("{name}.pb")), r.encode_to_vec()).expect("write");
    }
    let log = |r: &PredictRequest| {
        PredictionLog {
            log_type: Some(LogType::PredictLog(PredictLog { request: Some(r.clone()), response: None })),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let records: Vec<Vec<u8>> = requests.iter().map(|(_, r)| log(r)).collect();
    let file = write_tfrecords(records.iter().map(Vec::as_slice));
    std::fs::write(root.join("tfrecord_warmup/three_requests.tfrecord"), file).expect("write");
    let one = write_tfrecords([records[0].as_slice()]);
    std::fs::write(root.join("tfrecord_warmup/one_request.tfrecord"), one).expect("write");
}
