//! How much memory an ONNX load holds at its peak, counted by this binary's allocator.
//!
//! The budget the deployment is sized by is the pod's resident memory (`load_rss.py` in
//! benches/real_models reads it for the real architectures). This test pins the part of it the
//! engine controls, allocation by allocation: at no moment of the load is more than one weight
//! held in two forms, and once loaded each weight is held once, in its packed form. A model
//! built here has the rewrites that used to copy weights: BatchNormalization folded into the
//! conv before it, convs moved to NHWC, a PyTorch-style `Gemm(transB=1)` transposed, and a 3x3
//! conv packed for Winograd.
#![allow(unsafe_code)] // the counting allocator: it only forwards to `System` and counts

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_serving::engine::onnx::OnnxSession;
use candle_serving::engine::{EngineOptions, Session};
use candle_serving::proto::onnx::tensor_proto::DataType;
use candle_serving::proto::onnx::tensor_shape_proto::{Dimension, dimension};
use candle_serving::proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, type_proto,
};
use candle_serving::tensor::{HostTensor, TensorData};
use prost::Message;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // counted as the new block appearing before the old one goes, as a moving realloc does
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = (1 << 20) as f64;

/// Deterministic values in [-0.5, 0.5), different per tensor.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn weight(name: &str, dims: &[usize], seed: u32) -> TensorProto {
    let n = dims.iter().product();
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values(n, seed).iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: output.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() }).collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// x [1, 256, 8, 8] -> Conv 3x3 -> BN -> Relu -> Conv 1x1 (256 -> 1024) -> BN -> global average
/// pool -> Flatten -> Gemm (transB, 1024 -> 2048) -> MatMul (2048 -> 512) -> y [1, 512].
fn model() -> ModelProto {
    let mut initializer = vec![
        weight("w3", &[256, 256, 3, 3], 1),
        weight("b3", &[256], 2),
        weight("w1", &[1024, 256, 1, 1], 3),
        weight("gemm_w", &[2048, 1024], 4),
        weight("gemm_b", &[2048], 5),
        weight("matmul_w", &[2048, 512], 6),
    ];
    for (bn, channels) in [("bn3", 256), ("bn1", 1024)] {
        for (i, param) in ["scale", "bias", "mean", "var"].iter().enumerate() {
            let mut t = weight(&format!("{bn}_{param}"), &[channels], 10 + i as u32);
            if *param == "var" {
                // a variance must be positive
                let v: Vec<f32> = values(channels, 20).iter().map(|x| x.abs() + 0.5).collect();
                t.raw_data = v.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into();
            }
            initializer.push(t);
        }
    }
    let bn = |name: &str, input: &str| {
        node("BatchNormalization", &[input, &format!("{name}_scale"), &format!("{name}_bias"), &format!("{name}_mean"), &format!("{name}_var")], name, vec![])
    };
    let graph = GraphProto {
        name: "load_memory".into(),
        node: vec![
            node("Conv", &["x", "w3", "b3"], "c3", vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])]),
            bn("bn3", "c3"),
            node("Relu", &["bn3"], "r3", vec![]),
            node("Conv", &["r3", "w1"], "c1", vec![ints("kernel_shape", &[1, 1])]),
            bn("bn1", "c1"),
            node("GlobalAveragePool", &["bn1"], "pooled", vec![]),
            node("Flatten", &["pooled"], "flat", vec![]),
            node("Gemm", &["flat", "gemm_w", "gemm_b"], "dense", vec![int("transB", 1)]),
            node("MatMul", &["dense", "matmul_w"], "y", vec![]),
        ],
        initializer,
        input: vec![value("x", &[1, 256, 8, 8])],
        output: vec![value("y", &[1, 512])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(graph),
        ..Default::default()
    }
}

#[test]
fn a_load_holds_at_most_one_weight_twice_and_keeps_only_packed_forms() {
    let model = model();
    let graph = model.graph.as_ref().expect("graph");
    let size = |name: &str| graph.initializer.iter().find(|t| t.name == name).map_or(0, |t| t.raw_data.len());
    let weights: usize = graph.initializer.iter().map(|t| t.raw_data.len()).sum();
    let largest = graph.initializer.iter().map(|t| t.raw_data.len()).max().unwrap_or(0);
    // Winograd's packed weights are 16/9 of the 3x3 conv's
    let winograd_extra = size("w3") * 7 / 9;

    let dir = std::env::temp_dir().join(format!("load-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("model.onnx");
    let bytes = model.encode_to_vec();
    std::fs::write(&path, &bytes).expect("write");
    drop(model);

    let options = EngineOptions::default();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let session = OnnxSession::load(&path, &options).expect("load");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let kept = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    std::fs::remove_dir_all(&dir).expect("clean up");

    let slack = 1 << 20;
    let report = format!(
        "weights {:.2} MiB (largest {:.2}), load peak {:.2} MiB, kept {:.2} MiB",
        weights as f64 / MIB,
        largest as f64 / MIB,
        peak as f64 / MIB,
        kept as f64 / MIB
    );
    eprintln!("{report}");
    // Packed forms only: the weights, Winograd's share beyond them, and small change.
    assert!(kept <= weights + winograd_extra + slack, "{report}");
    // One weight in two forms at once, at most (and the Winograd conv's transform rows, 4/9 of
    // its weights); reading the whole file first, or rewriting every weight before the
    // originals go, held two or three copies of all of them.
    assert!(peak <= weights + winograd_extra + largest * 5 / 4 + slack, "{report}");

    // and the rewrites computed what the graph as written computes
    let as_written = OnnxSession::from_bytes_as_written(&bytes).expect("load as written");
    let x = HostTensor::new(vec![1, 256, 8, 8], TensorData::F32(values(256 * 64, 99))).expect("x");
    let got = session.run(vec![x.clone()]).expect("run");
    let want = as_written.run(vec![x]).expect("run as written");
    let (TensorData::F32(got), TensorData::F32(want)) = (got[0].data(), want[0].data()) else { panic!("not f32") };
    assert_eq!(got.len(), 512);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "y[{i}]: {g} vs {w} as written");
    }
}
