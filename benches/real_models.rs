//! Engine latency on real architectures: every `<dir>/<name>/model.onnx` with an
//! `input_b16.npy` fixture, where `<dir>` is `$BENCH_MODELS` or `target/bench-models` (written
//! by `benches/real_models/make_models.py`). Batch 1 (the fixture's first row) and 16 (the whole
//! fixture), 1 and 2 intra-op threads; ids are `real/<name>/b<batch>_t<threads>`.
//!
//! Before timing a model the bench runs it once per batch and compares the first output with
//! `expected_b<batch>.npy` (onnxruntime's answer, written by make_models.py), printing one
//! `real_models check ...` line; a model that fails to load or run prints `real_models skip ...`
//! and is left out, so one unsupported architecture does not hide the others' numbers.
//! `benches/real_models.sh` runs this next to onnxruntime and reads those lines back.
//!
//! Filter like any criterion bench, e.g. `cargo bench --bench real_models -- light_resnet50`;
//! models no id of which can match a plain-text filter are not even loaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Tensor};
use candle_serving::engine::onnx::OnnxSession;
use candle_serving::engine::{Session, keep_candle_on_the_calling_thread, set_intra_op_threads};
use candle_serving::tensor::{HostTensor, TensorData};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};

/// The server's allocator (main.rs): the engine's per-op outputs are large, and the system
/// allocator maps and unmaps each one afresh, paying page faults that a pod never sees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCHES: [usize; 2] = [1, 16];
const THREADS: [usize; 2] = [1, 2];
/// Largest accepted `max |ours - ort| / max |ort|` on the first output.
const TOLERANCE: f64 = 1e-3;

fn models_dir() -> PathBuf {
    std::env::var_os("BENCH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-models"))
}

/// `(name, model directory)` for every model with its fixture, in name order.
fn models() -> Vec<(String, PathBuf)> {
    let dir = models_dir();
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_else(|e| {
            println!("real_models: no models in {} ({e}); run benches/real_models/make_models.py", dir.display());
            Vec::new()
        })
        .into_iter()
        .filter(|p: &PathBuf| p.join("model.onnx").is_file() && p.join("input_b16.npy").is_file())
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
        .collect();
    found.sort();
    found
}

/// The criterion filter, when it is plain text (criterion matches it as a regex; a filter with
/// regex syntax in it loads every model and lets criterion decide).
fn plain_filter() -> Option<String> {
    // criterion options that take a value; any other `-...` argument stands alone
    const VALUED: [&str; 16] = [
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--baseline-lenient",
        "--load-baseline",
        "--color",
        "-c",
        "--output-format",
        "--plotting-backend",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if VALUED.contains(&arg.as_str()) || arg == "--confidence-level" || arg == "--significance-level" {
            i += 2;
            continue;
        }
        if !arg.starts_with('-') {
            let plain = !arg.contains(|c: char| "\\.+*?()|[]{}^$".contains(c));
            return plain.then(|| arg.clone());
        }
        i += 1;
    }
    None
}

fn wanted(name: &str, filter: Option<&str>) -> bool {
    let Some(filter) = filter else { return true };
    BATCHES.iter().any(|b| THREADS.iter().any(|t| format!("real/{name}/b{b}_t{t}").contains(filter)))
}

/// The fixture's first `batch` rows (f32 images or i64 token ids).
fn read_input(path: &Path, batch: usize) -> Result<HostTensor, String> {
    let t = Tensor::read_npy(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = t.narrow(0, 0, batch).map_err(|e| format!("{}: {e}", path.display()))?;
    let shape = t.dims().to_vec();
    let flat = t.flatten_all().map_err(|e| e.to_string())?;
    let data = match t.dtype() {
        DType::F32 => TensorData::F32(flat.to_vec1::<f32>().map_err(|e| e.to_string())?),
        DType::I64 => TensorData::I64(flat.to_vec1::<i64>().map_err(|e| e.to_string())?),
        other => return Err(format!("{}: fixture dtype {other:?} (want f32 or i64)", path.display())),
    };
    HostTensor::new(shape, data)
}

fn as_f64(t: &HostTensor) -> Result<Vec<f64>, String> {
    match t.data() {
        TensorData::F32(v) => Ok(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::F64(v) => Ok(v.clone()),
        _ => Err(format!("output dtype {:?} (want f32)", t.dtype())),
    }
}

/// One run at `batch` against `expected_b<batch>.npy`; prints the `real_models check` line.
/// `Err` only when the model cannot run at all.
fn check(name: &str, dir: &Path, session: &dyn Session, input: &HostTensor, batch: usize) -> Result<(), String> {
    let outputs = session.run(vec![input.clone()]).map_err(|e| format!("run at batch {batch}: {e}"))?;
    let ours = outputs.first().ok_or("no outputs")?;
    let expected_path = dir.join(format!("expected_b{batch}.npy"));
    if !expected_path.is_file() {
        println!("real_models check {name} b{batch}: no {}", expected_path.display());
        return Ok(());
    }
    let expected = Tensor::read_npy(&expected_path).map_err(|e| format!("{}: {e}", expected_path.display()))?;
    let want: Vec<f64> = expected
        .to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| e.to_string())?;
    let got = as_f64(ours)?;
    if ours.shape() != expected.dims() {
        println!(
            "real_models check {name} b{batch}: MISMATCH shape ours {:?} vs onnxruntime {:?}",
            ours.shape(),
            expected.dims()
        );
        return Ok(());
    }
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f64, |m, d| if d.is_nan() { f64::NAN } else { m.max(d) });
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
    let rel = diff / scale;
    let verdict = if rel <= TOLERANCE { "ok" } else { "MISMATCH" };
    println!("real_models check {name} b{batch}: max_abs_diff={diff:.3e} max_abs_expected={scale:.3e} rel={rel:.3e} {verdict}");
    Ok(())
}

#[allow(unsafe_code)]
fn real(c: &mut Criterion) {
    // SAFETY: criterion has started no thread yet; see the function's comment
    unsafe { keep_candle_on_the_calling_thread() };
    candle_serving::allocator::keep_freed_memory_warm();
    // the kernel pool is sized once, to the largest count; each case then splits across `t`
    set_intra_op_threads(THREADS[THREADS.len() - 1]);
    let filter = plain_filter();
    let mut group = c.benchmark_group("real");
    // one call of a big model at batch 16 takes seconds: flat sampling keeps it at
    // sample_size calls instead of criterion's linear 1 + 2 + ... + 10
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat);
    for (name, dir) in models() {
        if !wanted(&name, filter.as_deref()) {
            continue;
        }
        let session = match OnnxSession::load(&dir.join("model.onnx"), &Default::default()) {
            Ok(s) => s,
            Err(e) => {
                println!("real_models skip {name}: load failed: {e}");
                continue;
            }
        };
        let inputs: Result<Vec<HostTensor>, String> = BATCHES.iter().map(|&b| read_input(&dir.join("input_b16.npy"), b)).collect();
        let checked = inputs.and_then(|inputs| {
            BATCHES.iter().zip(&inputs).try_for_each(|(&b, x)| check(&name, &dir, &session, x, b))?;
            Ok(inputs)
        });
        let inputs = match checked {
            Ok(inputs) => inputs,
            Err(e) => {
                println!("real_models skip {name}: {e}");
                continue;
            }
        };
        for (batch, x) in BATCHES.iter().zip(&inputs) {
            for threads in THREADS {
                set_intra_op_threads(threads);
                group.bench_with_input(BenchmarkId::new(&name, format!("b{batch}_t{threads}")), x, |b, x| {
                    b.iter(|| session.run(vec![x.clone()]).expect("run"));
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, real);
criterion_main!(benches);
