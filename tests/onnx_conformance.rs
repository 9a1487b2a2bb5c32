//! ONNX's own backend node tests (plus the pytorch-converted and pytorch-operator cases shipped in
//! the `onnx` wheel), run through the public engine API. Which cases must pass is data: the
//! allow-list in tests/conformance/manifest.txt. The wheel is installed into target/onnx-venv by
//! tests/conformance/setup_venv.sh on first run.
//!
//! Every listed case is run and all failures are reported together, so one run shows the whole
//! picture. `ONNX_CONFORMANCE_MANIFEST=<file>` runs another list (handy for trying candidates).

mod common;

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_serving::engine::Session;
use common::repo_root;
use candle_serving::engine::onnx::OnnxSession;
use candle_serving::proto::onnx::TensorProto;
use candle_serving::proto::onnx::tensor_proto::DataType;
use candle_serving::tensor::{HostTensor, TensorData};
use prost::Message;

/// ONNX's backend defaults (onnx/backend/test/runner: rtol=1e-3, atol=1e-7).
const DEFAULT_RTOL: f64 = 1e-3;
const DEFAULT_ATOL: f64 = 1e-7;

/// Runs the setup script and returns the wheel's `backend/test/data` directory.
fn data_dir() -> PathBuf {
    let output = Command::new("bash")
        .arg(repo_root().join("tests/conformance/setup_venv.sh"))
        .arg(repo_root().join("target/onnx-venv"))
        .output()
        .expect("run tests/conformance/setup_venv.sh");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "setting up the ONNX venv failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(stdout.lines().last().expect("setup_venv.sh printed the data dir").trim());
    assert!(dir.join("node").is_dir(), "{} has no node/ directory", dir.display());
    dir
}

struct Case {
    /// As written in the manifest: `test_relu` or `pytorch-operator/test_operator_add`.
    name: String,
    atol: f64,
    rtol: f64,
}

impl Case {
    /// Plain names are node tests; `ort/<case>` are this repository's onnxruntime-generated cases
    /// (tests/conformance/ort); `tests/...` names a case committed elsewhere in this repository
    /// (same layout); other names with a slash are relative to the data dir.
    fn dir(&self, data: &Path) -> PathBuf {
        if self.name.starts_with("tests/") {
            repo_root().join(&self.name)
        } else if let Some(local) = self.name.strip_prefix("ort/") {
            repo_root().join("tests/conformance/ort").join(local)
        } else if self.name.contains('/') {
            data.join(&self.name)
        } else {
            data.join("node").join(&self.name)
        }
    }
}

fn parse_manifest(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let mut case = Case { name: name.to_string(), atol: DEFAULT_ATOL, rtol: DEFAULT_RTOL };
        for tag in words {
            let parsed = match tag.split_once('=') {
                Some(("atol", v)) => v.parse().map(|v| case.atol = v).ok(),
                Some(("rtol", v)) => v.parse().map(|v| case.rtol = v).ok(),
                _ => None,
            };
            assert!(parsed.is_some(), "manifest line {}: bad tag '{tag}' (expected atol=<f> or rtol=<f>)", number + 1);
        }
        assert!(
            !cases.iter().any(|c| c.name == case.name),
            "manifest line {}: '{}' is listed twice",
            number + 1,
            case.name
        );
        cases.push(case);
    }
    cases
}

fn dims(t: &TensorProto) -> Result<Vec<usize>, String> {
    t.dims.iter().map(|&d| usize::try_from(d).map_err(|_| format!("negative dim {d}"))).collect()
}

/// Little-endian fixed-width values from `raw_data`, or the typed field when `raw_data` is empty.
fn values<T: Clone, const N: usize>(raw: &[u8], typed: &[T], from_le: fn([u8; N]) -> T) -> Result<Vec<T>, String> {
    if raw.is_empty() {
        return Ok(typed.to_vec());
    }
    if !raw.len().is_multiple_of(N) {
        return Err(format!("raw_data length {} is not a multiple of {N}", raw.len()));
    }
    Ok(raw.chunks_exact(N).map(|c| from_le(c.try_into().expect("chunks_exact gives N bytes"))).collect())
}

/// ONNX TensorProto -> HostTensor, written here rather than borrowed from the engine so that a bug
/// in the engine's decoder cannot hide itself.
fn host_tensor(t: &TensorProto) -> Result<HostTensor, String> {
    let shape = dims(t)?;
    let raw = &t.raw_data[..];
    let data = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => TensorData::F32(values(raw, &t.float_data, f32::from_le_bytes)?),
        Ok(DataType::Double) => TensorData::F64(values(raw, &t.double_data, f64::from_le_bytes)?),
        Ok(DataType::Int32) => TensorData::I32(values(raw, &t.int32_data, i32::from_le_bytes)?),
        Ok(DataType::Int64) => TensorData::I64(values(raw, &t.int64_data, i64::from_le_bytes)?),
        // uint32 travels in uint64_data, int16 in int32_data (ONNX's onnx.proto rules).
        Ok(DataType::Uint32) => TensorData::U32(if raw.is_empty() {
            t.uint64_data.iter().map(|&v| v as u32).collect()
        } else {
            values(raw, &[], u32::from_le_bytes)?
        }),
        Ok(DataType::Int16) => TensorData::I16(if raw.is_empty() {
            t.int32_data.iter().map(|&v| v as i16).collect()
        } else {
            values(raw, &[], i16::from_le_bytes)?
        }),
        // bool and uint8 travel one per int32 in the typed field, one byte each in raw_data.
        Ok(DataType::Uint8) => TensorData::U8(if raw.is_empty() {
            t.int32_data.iter().map(|&v| v as u8).collect()
        } else {
            raw.to_vec()
        }),
        Ok(DataType::Bool) => TensorData::Bool(if raw.is_empty() {
            t.int32_data.iter().map(|&v| v != 0).collect()
        } else {
            raw.iter().map(|&v| v != 0).collect()
        }),
        Ok(other) => return Err(format!("the harness does not decode {} tensors", other.as_str_name())),
        Err(_) => return Err(format!("unknown data_type {}", t.data_type)),
    };
    HostTensor::new(shape, data)
}

fn read_tensor(path: &Path) -> Result<HostTensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let proto = TensorProto::decode(bytes.as_slice()).map_err(|e| format!("decode {}: {e}", path.display()))?;
    host_tensor(&proto).map_err(|e| format!("{}: {e}", path.display()))
}

/// `prefix_0.pb`, `prefix_1.pb`, ... until the first gap.
fn read_numbered(dir: &Path, prefix: &str) -> Result<Vec<HostTensor>, String> {
    (0..).map(|k| dir.join(format!("{prefix}_{k}.pb"))).take_while(|p| p.is_file()).map(|p| read_tensor(&p)).collect()
}

fn as_f64(data: &TensorData) -> Option<Vec<f64>> {
    match data {
        TensorData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::F64(v) => Some(v.clone()),
        _ => None,
    }
}

/// `|got - want| <= atol + rtol * |want|`, NaN matching NaN, as numpy's `assert_allclose` does.
fn compare(index: usize, got: &HostTensor, want: &HostTensor, case: &Case) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("output {index}: shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    if got.dtype() != want.dtype() {
        return Err(format!("output {index}: dtype {}, expected {}", got.dtype(), want.dtype()));
    }
    let (Some(g), Some(w)) = (as_f64(got.data()), as_f64(want.data())) else {
        return match got.data() == want.data() {
            true => Ok(()),
            false => Err(format!("output {index}: {} values differ (exact comparison)", got.dtype())),
        };
    };
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok = if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a.is_infinite() || b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= case.atol + case.rtol * b.abs()
        };
        if !ok {
            let diff = if a.is_finite() && b.is_finite() { (a - b).abs() } else { f64::INFINITY };
            if worst.is_none_or(|(_, d)| diff > d) {
                worst = Some((i, diff));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, diff)) => Err(format!(
            "output {index}: max abs diff {diff:e} at flat index {i} (got {}, expected {}; atol {:e}, rtol {:e})",
            g[i], w[i], case.atol, case.rtol
        )),
    }
}

/// How a case's model is loaded: with the CPU graph rewrites the server uses, and as written.
/// Every case runs both ways, so a rewrite that changes a result fails against its own case.
#[derive(Clone, Copy, Debug)]
enum Load {
    Rewritten,
    AsWritten,
}

/// Loads the case's model and runs every `test_data_set_*`; returns how many data sets ran.
fn run_case(case: &Case, data: &Path, load: Load) -> Result<usize, String> {
    let dir = case.dir(data);
    if !dir.is_dir() {
        return Err(format!("no such case directory {}", dir.display()));
    }
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| format!("read model.onnx: {e}"))?;
    let session = match load {
        Load::Rewritten => OnnxSession::from_bytes(&bytes),
        Load::AsWritten => OnnxSession::from_bytes_as_written(&bytes),
    }
    .map_err(|e| format!("load error: {e}"))?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_")))
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err("no test_data_set_* directories".into());
    }
    for set in &sets {
        let label = set.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let inputs = read_numbered(set, "input").map_err(|e| format!("{label}: {e}"))?;
        let expected = read_numbered(set, "output").map_err(|e| format!("{label}: {e}"))?;
        if inputs.len() != session.inputs().len() {
            return Err(format!("{label}: {} input files but the session takes {} inputs", inputs.len(), session.inputs().len()));
        }
        let outputs = session.run(inputs).map_err(|e| format!("{label}: run error: {e}"))?;
        if outputs.len() != expected.len() {
            return Err(format!("{label}: {} outputs, expected {}", outputs.len(), expected.len()));
        }
        for (k, (got, want)) in outputs.iter().zip(&expected).enumerate() {
            compare(k, got, want, case).map_err(|e| format!("{label}: {e}"))?;
        }
    }
    Ok(sets.len())
}

#[test]
fn onnx_node_tests_from_manifest() {
    let manifest = std::env::var_os("ONNX_CONFORMANCE_MANIFEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/conformance/manifest.txt"));
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()));
    let cases = parse_manifest(&text);
    assert!(!cases.is_empty(), "{} lists no cases", manifest.display());
    let data = data_dir();

    let mut failures = Vec::new();
    let mut data_sets = 0;
    for case in &cases {
        for load in [Load::Rewritten, Load::AsWritten] {
            // An engine panic is a failure of that case, not the end of the run.
            let outcome = catch_unwind(AssertUnwindSafe(|| run_case(case, &data, load)))
                .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(p.as_ref()))));
            match outcome {
                Ok(n) => data_sets += n,
                Err(reason) => failures.push(format!("{} ({load:?}): {reason}", case.name)),
            }
        }
    }
    println!(
        "onnx conformance: {} cases listed, each loaded rewritten and as written: {} runs passed ({data_sets} data sets), {} failed",
        cases.len(),
        2 * cases.len() - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        let mut report = format!("{} of {} conformance runs failed:\n", failures.len(), 2 * cases.len());
        for f in &failures {
            let _ = writeln!(report, "  {f}");
        }
        panic!("{report}");
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}
