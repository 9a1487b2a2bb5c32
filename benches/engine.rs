//! Engine latency per model (every `models/<name>/1/model.onnx`, and every
//! `models/<name>/1/saved_model.pb` through its `serving_default`, with an input fixture in
//! `tests/fixtures/<name>/input_b16.npy`; a `<base>_savedmodel` model reads `<base>`'s), batch
//! 1 and 64, 1 and 2 intra-op threads. `mnist_cnn` and `mnist_cnn_savedmodel` hold the same
//! Keras model as tf2onnx wrote it and as `model.export()` wrote it: their rows show that both
//! formats run on one plan.
//!
//! `benches/engine_vs_onnxruntime.sh` runs this next to onnxruntime on the same files and
//! prints the ratio table the README quotes. Filter like any criterion bench, e.g.
//! `cargo bench --bench engine -- mnist_cnn/b64`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use candle_core::Tensor;
use candle_serving::engine::onnx::OnnxSession;
use candle_serving::engine::{Session, keep_candle_on_the_calling_thread, set_intra_op_threads};
use candle_serving::tensor::{HostTensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// The server's allocator and its setting (`allocator.rs`), so the table times what a pod runs:
/// on the system allocator, each batch-64 call of the MNIST CNN mapped its larger outputs
/// afresh and faulted them in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCHES: [usize; 2] = [1, 64];
const THREADS: [usize; 2] = [1, 2];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Models (ONNX file or SavedModel version directory) with a fixture, in name order.
fn models() -> Vec<(String, PathBuf, PathBuf)> {
    let mut found: Vec<_> = std::fs::read_dir(root().join("models"))
        .map(|dir| dir.flatten().collect())
        .unwrap_or_else(|_| Vec::new())
        .into_iter()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = entry.path().join("1");
            let model = [version.join("model.onnx"), version.join("saved_model.pb")].into_iter().find(|p| p.is_file())?;
            let fixture = name.strip_suffix("_savedmodel").unwrap_or(&name);
            let input = root().join("tests/fixtures").join(fixture).join("input_b16.npy");
            input.is_file().then_some((name, model, input))
        })
        .collect();
    found.sort();
    found
}

fn load(model: &Path) -> Arc<dyn Session> {
    if model.extension().is_some_and(|e| e == "onnx") {
        return Arc::new(OnnxSession::load(model, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", model.display())));
    }
    let dir = model.parent().expect("version directory");
    let loaded = candle_serving::savedmodel::load(dir, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let entry = loaded.signatures.into_iter().find(|s| s.signature.name == "serving_default").expect("serving_default");
    entry.session.expect("serving_default runs")
}

/// `batch` rows cycled from the 16 fixture rows.
fn batch_input(path: &Path, batch: usize) -> HostTensor {
    let t = Tensor::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dims = t.dims().to_vec();
    let values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 fixture");
    let row: usize = dims[1..].iter().product();
    let rows = dims[0];
    let data: Vec<f32> = (0..batch).flat_map(|i| values[(i % rows) * row..(i % rows + 1) * row].iter().copied()).collect();
    let mut shape = dims;
    shape[0] = batch;
    HostTensor::new(shape, TensorData::F32(data)).expect("input tensor")
}

#[allow(unsafe_code)]
fn engine(c: &mut Criterion) {
    // SAFETY: criterion has started no thread yet; see the function's comment
    unsafe { keep_candle_on_the_calling_thread() };
    candle_serving::allocator::keep_freed_memory_warm();
    // the kernel pool is sized once, to the largest count; each case then splits across `t`
    set_intra_op_threads(THREADS[THREADS.len() - 1]);
    let mut group = c.benchmark_group("engine");
    group.warm_up_time(Duration::from_millis(800)).measurement_time(Duration::from_secs(3)).sample_size(40);
    for (name, model, input) in models() {
        let session = load(&model);
        for batch in BATCHES {
            let x = batch_input(&input, batch);
            for threads in THREADS {
                set_intra_op_threads(threads);
                group.bench_with_input(BenchmarkId::new(&name, format!("b{batch}_t{threads}")), &x, |b, x| {
                    b.iter(|| session.run(vec![x.clone()]).expect("run"));
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
