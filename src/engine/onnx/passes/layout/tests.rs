//! Whole graphs run with the CPU rewrites and as written: the two must agree, and the plan must
//! show which ops stayed in NHWC.

use candle_core::{Device, Tensor};

use crate::engine::onnx::import::{Imported, import_for};
use crate::engine::onnx::passes::Target;
use crate::proto::onnx::attribute_proto::AttributeType;
use crate::proto::onnx::tensor_proto::DataType;
use crate::proto::onnx::type_proto::Value as TypeValue;
use crate::proto::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto, ValueInfoProto, type_proto};

fn value(name: &str) -> ValueInfoProto {
    let tensor = type_proto::Tensor { elem_type: DataType::Float as i32, shape: None };
    ValueInfoProto { name: name.into(), r#type: Some(TypeProto { value: Some(TypeValue::TensorType(tensor)), ..Default::default() }), ..Default::default() }
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

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: values.to_vec(), ..Default::default() }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

/// Deterministic values in [-1, 1), different per tensor.
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn floats(name: &str, dims: &[i64], seed: u32) -> TensorProto {
    let len = dims.iter().product::<i64>() as usize;
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type: DataType::Float as i32, float_data: values(len, seed), ..Default::default() }
}

fn int64s(name: &str, v: &[i64]) -> TensorProto {
    TensorProto { name: name.into(), dims: vec![v.len() as i64], data_type: DataType::Int64 as i32, int64_data: v.to_vec(), ..Default::default() }
}

fn model(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>, output: &str) -> ModelProto {
    let graph = GraphProto { node: nodes, input: vec![value("x")], output: vec![value(output)], initializer, ..Default::default() };
    ModelProto { ir_version: 8, opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }], graph: Some(graph), ..Default::default() }
}

fn run(imported: &Imported, x: &Tensor) -> Vec<f32> {
    let out = imported.plan.run(vec![x.clone()]).expect("run");
    out[0].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 output")
}

/// Runs `model` with and without the CPU passes on the same input; returns the optimised plan's
/// ops after checking the outputs agree.
fn agree(model: &ModelProto, input_dims: &[usize]) -> Vec<String> {
    let x = Tensor::from_vec(values(input_dims.iter().product(), 99), input_dims, &Device::Cpu).expect("input");
    let fast = import_for(model.clone(), &Device::Cpu, Target::Cpu).expect("load with passes");
    let plain = import_for(model.clone(), &Device::Cpu, Target::Other).expect("load without passes");
    let (got, want) = (run(&fast, &x), run(&plain, &x));
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "element {i}: {g} with passes, {w} without");
    }
    fast.plan.step_ops().iter().map(|s| s.to_string()).collect()
}

#[test]
fn densenet_style_bn_relu_concat_pad_and_reduce_stay_in_nhwc() {
    let conv = |x: &str, w: &str, out: &str| node("Conv", &[x, w], out, vec![ints("pads", &[1, 1, 1, 1])]);
    let nodes = vec![
        conv("x", "w1", "c1"),
        conv("x", "w2", "c2"),
        node("Concat", &["c1", "c2"], "cat", vec![int("axis", 1)]),
        node("BatchNormalization", &["cat", "g", "b", "m", "v"], "bn", vec![]),
        node("Mul", &["bn", "k"], "scaled", vec![]),
        node("Add", &["scaled", "k2"], "shifted", vec![]),
        node("Clip", &["shifted", "lo", "hi"], "act", vec![]),
        // reflect: a zero pad would fold into the conv instead
        node("Pad", &["act", "pads"], "padded", vec![AttributeProto { name: "mode".into(), r#type: AttributeType::String as i32, s: b"reflect".to_vec(), ..Default::default() }]),
        node("Conv", &["padded", "w3"], "c3", vec![]),
        node("ReduceMean", &["c3"], "y", vec![ints("axes", &[2, 3]), int("keepdims", 0)]),
    ];
    let mut var = floats("v", &[8], 5);
    var.float_data.iter_mut().for_each(|v| *v = v.abs() + 0.5);
    let init = vec![
        floats("w1", &[4, 3, 3, 3], 1),
        floats("w2", &[4, 3, 3, 3], 2),
        floats("g", &[8], 3),
        floats("b", &[8], 4),
        var,
        floats("m", &[8], 6),
        floats("k", &[8, 1, 1], 7),
        floats("k2", &[1, 8, 1, 1], 8),
        floats("w3", &[5, 8, 3, 3], 9),
        TensorProto { name: "lo".into(), data_type: DataType::Float as i32, float_data: vec![0.0], ..Default::default() },
        TensorProto { name: "hi".into(), data_type: DataType::Float as i32, float_data: vec![0.5], ..Default::default() },
        int64s("pads", &[0, 0, 1, 2, 0, 0, 2, 1]),
    ];
    let ops = agree(&model(nodes, init, "y"), &[2, 3, 7, 6]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "_NhwcConv", "Concat", "_NhwcScaleShift", "Pad", "_NhwcConv", "ReduceMean"]);
}

/// GoogLeNet's conv -> max pool -> LRN -> conv: the LRN runs over the NHWC channels, so the
/// only transpose left is the one at the input (the 2x2 pool runs inside the first conv).
#[test]
fn lrn_between_convs_stays_in_nhwc() {
    let real = |name: &str, v: f32| AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: v, ..Default::default() };
    let nodes = vec![
        node("Conv", &["x", "w1"], "c1", vec![ints("pads", &[1, 1, 1, 1])]),
        node("MaxPool", &["c1"], "p1", vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])]),
        // a large alpha so the window sums matter at this scale
        node("LRN", &["p1"], "n1", vec![int("size", 5), real("alpha", 0.5), real("beta", 0.75), real("bias", 2.0)]),
        node("Conv", &["n1", "w2"], "y", vec![]),
    ];
    let init = vec![floats("w1", &[9, 3, 3, 3], 1), floats("w2", &[4, 9, 1, 1], 2)];
    let ops = agree(&model(nodes, init, "y"), &[2, 3, 8, 6]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "_NhwcLrn", "_NhwcConv", "Transpose"]);
}

/// Max pools with side-by-side windows join the conv before them, whichever kernel runs it:
/// the packed GEMM (odd sizes, so the floor-mode pool drops a row and a column), the depthwise
/// kernel and Winograd (64 input channels) pool after the conv instead.
#[test]
fn max_pools_fused_into_convs_agree_with_the_ops_apart() {
    let pool = |x: &str, out: &str, k: &[i64]| node("MaxPool", &[x], out, vec![ints("kernel_shape", k), ints("strides", k)]);
    let nodes = vec![
        node("Conv", &["x", "w1"], "c1", vec![]),
        node("Relu", &["c1"], "r1", vec![]),
        pool("r1", "p1", &[2, 2]),
        node("Conv", &["p1", "w2"], "c2", vec![int("group", 8), ints("pads", &[1, 1, 1, 1])]),
        pool("c2", "p2", &[1, 2]),
        node("Conv", &["p2", "w3"], "c3", vec![]),
        pool("c3", "y", &[2, 2]),
    ];
    let init = vec![floats("w1", &[8, 3, 3, 3], 1), floats("w2", &[8, 1, 3, 3], 2), floats("w3", &[4, 8, 1, 1], 3)];
    // 13x11 -> conv 11x9 -> pool 5x4 -> depthwise 5x4 -> pool 5x2 -> 1x1 conv -> pool 2x1
    let ops = agree(&model(nodes, init, "y"), &[2, 3, 13, 11]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "_NhwcConv", "_NhwcConv", "Transpose"]);
    let nodes = vec![node("Conv", &["x", "w"], "c", vec![ints("pads", &[1, 1, 1, 1])]), pool("c", "y", &[2, 2])];
    let ops = agree(&model(nodes, vec![floats("w", &[5, 64, 3, 3], 4)], "y"), &[1, 64, 7, 6]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "Transpose"]);
}

/// MobileNetV2's inverted residual blocks: the 1x1 expansion (ReLU6) and the 1x1 projection
/// with its shortcut join the 3x3 depthwise conv between them, at stride 1 and 2 and with the
/// images taller than one band of the joined kernel, and the whole graph agrees with the ops
/// as written.
#[test]
fn a_pointwise_conv_joined_to_its_depthwise_conv_agrees_with_the_ops_apart() {
    let clip = |x: &str, out: &str| node("Clip", &[x, "lo", "hi"], out, vec![]);
    let nodes = vec![
        node("Conv", &["x", "we1", "be1"], "e1", vec![]),
        clip("e1", "r1"),
        node("Conv", &["r1", "wd1", "bd1"], "d1", vec![int("group", 48), ints("pads", &[1, 1, 1, 1])]),
        clip("d1", "r2"),
        node("Conv", &["r2", "wp1"], "q1", vec![]),
        node("Add", &["q1", "x"], "p1", vec![]),
        node("Conv", &["p1", "we2", "be2"], "e2", vec![]),
        clip("e2", "r3"),
        node("Conv", &["r3", "wd2", "bd2"], "y", vec![int("group", 40), ints("pads", &[0, 0, 1, 1]), ints("strides", &[2, 2])]),
    ];
    let init = vec![
        floats("we1", &[48, 8, 1, 1], 1),
        floats("be1", &[48], 2),
        floats("wd1", &[48, 1, 3, 3], 3),
        floats("bd1", &[48], 4),
        floats("wp1", &[8, 48, 1, 1], 5),
        floats("we2", &[40, 8, 1, 1], 6),
        floats("be2", &[40], 7),
        floats("wd2", &[40, 1, 3, 3], 8),
        floats("bd2", &[40], 9),
        TensorProto { name: "lo".into(), data_type: DataType::Float as i32, float_data: vec![0.0], ..Default::default() },
        TensorProto { name: "hi".into(), data_type: DataType::Float as i32, float_data: vec![6.0], ..Default::default() },
    ];
    let ops = agree(&model(nodes, init, "y"), &[2, 8, 45, 57]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "_NhwcConv", "Transpose"]);
}

/// A classifier head: global average and max pools over NHWC conv outputs give what the NCHW
/// ops give, per image.
#[test]
fn global_pools_after_a_conv_reduce_the_nhwc_pixels() {
    for (op, internal) in [("GlobalAveragePool", "_NhwcGlobalAveragePool"), ("GlobalMaxPool", "_NhwcGlobalMaxPool")] {
        let nodes = vec![node("Conv", &["x", "w1"], "c1", vec![ints("pads", &[1, 1, 1, 1])]), node(op, &["c1"], "y", vec![])];
        let ops = agree(&model(nodes, vec![floats("w1", &[6, 3, 3, 3], 1)], "y"), &[3, 3, 7, 5]);
        assert_eq!(ops, ["Transpose", "_NhwcConv", internal, "Transpose"]);
    }
}

#[test]
fn residual_sum_and_channel_broadcasts_stay_in_nhwc_and_keepdims_reductions_stay_nhwc() {
    let nodes = vec![
        node("Conv", &["x", "w1"], "c1", vec![]),
        node("Relu", &["c1"], "r1", vec![]),
        node("Conv", &["r1", "w2"], "c2", vec![]),
        node("Sum", &["c2", "c1"], "s", vec![]),
        node("ReduceMean", &["s"], "gap", vec![ints("axes", &[2, 3]), int("keepdims", 1)]),
        node("Sigmoid", &["gap"], "gate", vec![]),
        node("Mul", &["s", "gate"], "se", vec![]),
        node("Div", &["se", "k"], "y", vec![]),
    ];
    let init = vec![floats("w1", &[4, 3, 1, 1], 1), floats("w2", &[4, 4, 1, 1], 2), floats("k", &[4, 1, 1], 3)];
    let ops = agree(&model(nodes, init, "y"), &[1, 3, 5, 4]);
    // the Sum is the second conv's residual
    assert_eq!(ops, ["Transpose", "_NhwcConv", "Relu", "_NhwcConv", "ReduceMean", "Sigmoid", "Mul", "Div", "Transpose"]);
}

#[test]
fn a_residual_add_and_its_relu_fuse_into_the_conv_and_a_broadcast_shortcut_still_adds_right() {
    let nodes = vec![
        node("Conv", &["x", "w1"], "c1", vec![ints("pads", &[1, 1, 1, 1])]),
        node("Conv", &["x", "w2"], "c2", vec![ints("pads", &[1, 1, 1, 1])]),
        node("Add", &["c2", "c1"], "s", vec![]),
        node("Relu", &["s"], "r", vec![]),
        node("ReduceMax", &["r"], "m", vec![ints("axes", &[2, 3]), int("keepdims", 1)]),
        node("Conv", &["r", "w3"], "c3", vec![]),
        // [N, C, 1, 1] + [N, C, H, W]: the computed shortcut broadcasts
        node("Add", &["c3", "m"], "y", vec![]),
    ];
    let init = vec![floats("w1", &[4, 3, 3, 3], 1), floats("w2", &[4, 3, 3, 3], 2), floats("w3", &[4, 4, 1, 1], 3)];
    let ops = agree(&model(nodes, init, "y"), &[2, 3, 5, 6]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "_NhwcConv", "ReduceMax", "_NhwcConv", "Transpose"]);
}

/// `PLAN_MODEL=<model.onnx> cargo test --lib print_plan -- --ignored --nocapture` shows which
/// ops a real model's plan runs and how many transposes are left: the first look when a
/// model is slower than expected.
#[test]
#[ignore]
fn print_plan() {
    let path = std::env::var("PLAN_MODEL").expect("PLAN_MODEL=<path to model.onnx>");
    let bytes = std::fs::read(&path).expect("read the model");
    let model = <ModelProto as prost::Message>::decode(bytes.as_slice()).expect("decode");
    let imported = crate::engine::onnx::import::import(model, &Device::Cpu).expect("load");
    let mut counts = std::collections::BTreeMap::new();
    for op in imported.plan.step_ops() {
        *counts.entry(op.to_string()).or_insert(0) += 1;
    }
    println!("{path}: {counts:?}");
}

/// `PLAN_MODEL=<model.onnx> [PLAN_BATCH=1] [PLAN_THREADS=2] cargo test --release --lib
/// profile_plan -- --ignored --nocapture`: wall time per op type over `PLAN_RUNS` (10) runs of a
/// random input (unknown dims become the batch), slowest first, and the best and median of as
/// many unprofiled runs. Where the README says why a model is slow,
/// this is the profile it read.
#[test]
#[ignore]
#[allow(unsafe_code)]
fn profile_plan() {
    // SAFETY: run alone (`profile_plan --ignored`), before this test starts a thread
    unsafe { crate::engine::keep_candle_on_the_calling_thread() };
    crate::allocator::keep_freed_memory_warm();
    crate::engine::kernels::output::FILL_UNWRITTEN.store(false, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::var("PLAN_MODEL").expect("PLAN_MODEL=<path to model.onnx>");
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (batch, threads) = (env("PLAN_BATCH", 1), env("PLAN_THREADS", 2));
    crate::engine::set_intra_op_threads(threads);
    let bytes = std::fs::read(&path).expect("read the model");
    let model = <ModelProto as prost::Message>::decode(bytes.as_slice()).expect("decode");
    let input = model.graph.as_ref().expect("graph").input.first().expect("an input").clone();
    let dims: Vec<usize> = match input.r#type.and_then(|t| t.value) {
        Some(crate::proto::onnx::type_proto::Value::TensorType(t)) => t
            .shape
            .map(|s| s.dim.iter().map(|d| match d.value {
                Some(crate::proto::onnx::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => v as usize,
                _ => batch,
            }).collect())
            .unwrap_or_default(),
        _ => panic!("the first input is not a tensor"),
    };
    let imported = crate::engine::onnx::import::import(model, &Device::Cpu).expect("load");
    let x = Tensor::rand(0f32, 1f32, dims.as_slice(), &Device::Cpu).expect("input");
    let mut per_op: std::collections::HashMap<String, (std::time::Duration, usize)> = Default::default();
    let mut per_node: std::collections::HashMap<String, std::time::Duration> = Default::default();
    let runs = env("PLAN_RUNS", 10);
    crate::engine::kernels::threads::on_pool(|| imported.plan.run(vec![x.clone()])).expect("warm-up run");
    let started = std::time::Instant::now();
    for _ in 0..runs {
        let plan = &imported.plan;
        let (per_op, per_node) = (&mut per_op, &mut per_node);
        crate::engine::kernels::threads::on_pool(|| plan
            .run_profiled(vec![x.clone()], &mut |op, args, results, t| {
                let e = per_op.entry(op.to_string()).or_default();
                e.0 += t;
                e.1 += 1;
                let dims = |t: &Tensor| format!("{:?}", t.dims());
                let ins: Vec<String> = args.iter().flatten().map(|t| dims(t)).collect();
                let key = format!("{op} {} -> {}", ins.join(" "), results.first().map(dims).unwrap_or_default());
                *per_node.entry(key).or_default() += t;
            }))
            .expect("run");
    }
    let total = started.elapsed() / runs as u32;
    // unprofiled runs: on a shared VM the mean drifts 20-60% between runs of the same binary,
    // the fastest and the median runs much less, so A/B comparisons read these
    let mut plain: Vec<f64> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            crate::engine::kernels::threads::on_pool(|| imported.plan.run(vec![x.clone()])).expect("run");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    plain.sort_by(f64::total_cmp);
    println!("unprofiled runs: best {:.3} ms, median {:.3} ms", plain[0], plain[plain.len() / 2]);
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    let in_ops: std::time::Duration = rows.iter().map(|r| r.1.0).sum::<std::time::Duration>() / runs as u32;
    println!("{path}: input {dims:?}, {threads} threads, {total:?} per run, {in_ops:?} in ops");
    for (op, (t, n)) in rows {
        println!("{op:>28} {:>10.3} ms {:>5.1}% x{}", t.as_secs_f64() * 1e3 / runs as f64, 100.0 * t.as_secs_f64() / runs as f64 / total.as_secs_f64(), n / runs);
    }
    let mut nodes: Vec<_> = per_node.into_iter().collect();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.1));
    for (key, t) in nodes.into_iter().take(env("PLAN_TOP", 25)) {
        println!("{:>10.3} ms  {key}", t.as_secs_f64() * 1e3 / runs as f64);
    }
}

#[test]
fn a_channel_shuffle_between_grouped_convs_stays_in_nhwc() {
    let nodes = vec![
        node("Conv", &["x", "w1"], "c1", vec![int("group", 2)]),
        node("Reshape", &["c1", "split"], "r1", vec![]),
        node("Transpose", &["r1"], "t", vec![ints("perm", &[0, 2, 1, 3, 4])]),
        node("Reshape", &["t", "merge"], "r2", vec![]),
        node("Conv", &["r2", "w2"], "y", vec![int("group", 3), ints("pads", &[1, 1, 1, 1])]),
    ];
    let init = vec![
        floats("w1", &[6, 2, 1, 1], 1),
        floats("w2", &[3, 2, 3, 3], 2),
        int64s("split", &[-1, 2, 3, 5, 4]),
        int64s("merge", &[-1, 6, 5, 4]),
    ];
    let ops = agree(&model(nodes, init, "y"), &[2, 4, 5, 4]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "_ChannelShuffle", "_NhwcConv", "Transpose"]);
}

#[test]
fn a_zero_pad_before_a_strided_conv_becomes_the_convs_padding() {
    let nodes = vec![
        node("Pad", &["x", "pads"], "p", vec![]),
        node("Conv", &["p", "w"], "y", vec![ints("strides", &[2, 2]), int("group", 3), ints("pads", &[1, 0, 0, 0])]),
    ];
    let init = vec![floats("w", &[3, 1, 3, 3], 1), int64s("pads", &[0, 0, 0, 0, 0, 0, 1, 2])];
    let ops = agree(&model(nodes, init, "y"), &[2, 3, 8, 7]);
    assert_eq!(ops, ["Transpose", "_NhwcConv", "Transpose"]);
}
