//! The tensor bundle reader against a bundle TensorFlow wrote (tests/fixtures/savedmodel/
//! make_bundle.py): every variable's dtype, shape and values as TensorFlow reads them back, and
//! damaged copies failing with the file and the variable named.

mod common;

use std::path::{Path, PathBuf};

use candle_serving::savedmodel::Bundle;
use candle_serving::tensor::TensorData;
use common::*;

fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/savedmodel/bundle")
}

fn prefix(dir: &Path) -> PathBuf {
    dir.join("variables/variables")
}

#[test]
fn every_variable_matches_what_tensorflow_reads() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).expect("expected.json")).expect("json");
    let expected = expected.as_object().expect("object");
    let bundle = Bundle::open(&prefix(&fixture_dir())).expect("open");
    assert_eq!(bundle.keys().collect::<Vec<_>>(), expected.keys().map(String::as_str).collect::<Vec<_>>());
    for (key, want) in expected {
        let values = want["values"].as_array().expect("values");
        let shape: Vec<usize> = want["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
        if want["dtype"] == "string" {
            let got = bundle.strings(key).expect(key);
            let want: Vec<Vec<u8>> = values.iter().map(|v| v.as_str().expect("str").chars().map(|c| c as u8).collect()).collect();
            assert_eq!(got, want, "{key}");
            continue;
        }
        let tensor = bundle.tensor(key).expect(key);
        assert_eq!(tensor.shape(), shape.as_slice(), "{key}");
        let floats = |v: &serde_json::Value| v.as_f64().expect("number");
        match tensor.data() {
            TensorData::F32(got) => assert_eq!(got, &values.iter().map(|v| floats(v) as f32).collect::<Vec<_>>(), "{key}"),
            TensorData::F64(got) => assert_eq!(got, &values.iter().map(floats).collect::<Vec<_>>(), "{key}"),
            TensorData::BF16(got) => assert_eq!(got.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), values.iter().map(|v| floats(v) as f32).collect::<Vec<_>>(), "{key}"),
            TensorData::I32(got) => assert_eq!(got, &values.iter().map(|v| v.as_i64().expect("int") as i32).collect::<Vec<_>>(), "{key}"),
            TensorData::I64(got) => assert_eq!(got, &values.iter().map(|v| v.as_i64().expect("int")).collect::<Vec<_>>(), "{key}"),
            TensorData::Bool(got) => assert_eq!(got, &values.iter().map(|v| v.as_bool().expect("bool")).collect::<Vec<_>>(), "{key}"),
            other => panic!("{key}: unexpected {:?}", other.dtype()),
        }
        let dtype = match tensor.data() {
            TensorData::F32(_) => "float32",
            TensorData::F64(_) => "float64",
            TensorData::BF16(_) => "bfloat16",
            TensorData::I32(_) => "int32",
            TensorData::I64(_) => "int64",
            TensorData::Bool(_) => "bool",
            _ => "other",
        };
        assert_eq!(want["dtype"], dtype, "{key}");
    }
}

/// A copy of the fixture's variables to damage.
fn copy_fixture() -> PathBuf {
    let dir = temp_dir("bundle");
    std::fs::create_dir_all(dir.join("variables")).expect("mkdir");
    for file in ["variables.index", "variables.data-00000-of-00001"] {
        std::fs::copy(fixture_dir().join("variables").join(file), dir.join("variables").join(file)).expect("copy");
    }
    dir
}

#[test]
fn damage_names_the_file_and_the_variable() {
    // A flipped byte inside the kernel's bytes: only that variable fails, by name.
    let dir = copy_fixture();
    let data = dir.join("variables/variables.data-00000-of-00001");
    let bundle = Bundle::open(&prefix(&fixture_dir())).expect("open");
    let kernel = "kernel/.ATTRIBUTES/VARIABLE_VALUE";
    let original = std::fs::read(&data).expect("read");
    let position = original
        .windows(4)
        .position(|w| w == bundle.tensor(kernel).map(|t| match t.data() { TensorData::F32(v) => v[0].to_le_bytes(), _ => [0; 4] }).expect("kernel"))
        .expect("the kernel's first value in the data file");
    let mut damaged = original.clone();
    damaged[position] ^= 0x01;
    std::fs::write(&data, &damaged).expect("write");
    let bundle = Bundle::open(&prefix(&dir)).expect("the index is intact");
    let err = bundle.tensor(kernel).expect_err("checksum").to_string();
    assert!(err.contains("variables.data-00000-of-00001") && err.contains(kernel) && err.contains("checksum"), "{err}");
    assert!(bundle.tensor("bias/.ATTRIBUTES/VARIABLE_VALUE").is_ok(), "other variables still read");

    // A truncated data file: the variables past the end fail, naming their bytes.
    std::fs::write(&data, &original[..original.len() / 2]).expect("write");
    let bundle = Bundle::open(&prefix(&dir)).expect("open");
    let failures: Vec<String> = bundle.keys().filter_map(|k| bundle.tensor(k).err().map(|e| e.to_string())).collect();
    assert!(failures.iter().any(|e| e.contains("outside the")), "{failures:?}");

    // A damaged index: the table's checksum fails, naming the index file.
    std::fs::write(&data, &original).expect("write");
    let index = dir.join("variables/variables.index");
    let mut bytes = std::fs::read(&index).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(&index, &bytes).expect("write");
    let err = Bundle::open(&prefix(&dir)).err().expect("bad index").to_string();
    assert!(err.contains("variables.index") && err.contains("checksum"), "{err}");

    // A missing shard.
    std::fs::remove_file(&data).expect("rm");
    std::fs::copy(fixture_dir().join("variables/variables.index"), &index).expect("copy");
    let err = Bundle::open(&prefix(&dir)).err().expect("no shard").to_string();
    assert!(err.contains("variables.data-00000-of-00001"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
