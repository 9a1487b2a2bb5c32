"""Generates the real-architecture benchmark set into target/bench-models/<name>/.

The engine's own test models (models/) are small; this set is what users actually serve:
ImageNet CNNs (from ONNX's model zoo and from Keras applications) and text RNNs, so that
benches/real_models.rs measures the engine on realistic graphs, shapes and weights.

Each <name>/ gets:
  model.onnx        the model, batch dimension symbolic
  input_b16.npy     16 input rows (float32 images, or int64 token ids for the text models);
                    batch 1 is its first row
  expected_b1.npy   onnxruntime's first output for the first row
  expected_b16.npy  onnxruntime's first output for all 16 rows

Everything is seeded, so a rerun writes the same numbers. Existing models are kept unless
--force is given; name models on the command line to build only those.

Usage: target/bench-venv/bin/python benches/real_models/make_models.py [--force] [name...]
(benches/real_models/setup.sh creates that venv.)
"""
import argparse
import os
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# TensorFlow's C++ start-up notices would bury the progress lines
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("BENCH_MODELS", ROOT / "target/bench-models"))
LIGHT_DIR = Path(onnx.__file__).parent / "backend/test/data/light"
OPSET = 13


def seed_of(name):
    """A per-model seed, stable across runs and independent of build order."""
    return zlib.crc32(name.encode())


# --- ONNX zoo "light" models ------------------------------------------------------------------
#
# onnx ships the zoo's CNNs with every large float weight replaced by a ConstantOfShape filling
# it with 0.02 (the small tensors are kept as they were). All-equal weights make every channel
# compute the same thing, which neither looks like a real model numerically nor exercises
# accuracy, so each fill becomes a random initializer scaled the way training would leave it,
# and the BatchNormalization statistics are then calibrated on seeded images (Keras models
# too), so activations keep a realistic scale through the depth of the network.

LIGHT = ("resnet50", "densenet121", "inception_v1", "inception_v2", "squeezenet", "shufflenet", "vgg19")


def consumers(graph):
    """tensor name -> [(node, input index)]."""
    users = defaultdict(list)
    for node in graph.node:
        for k, name in enumerate(node.input):
            users[name].append((node, k))
    return users


def final_use(name, shape, users, inits):
    """(node, input index, shape there) of the operator that really consumes a weight, looking
    through the Reshape and Unsqueeze nodes the Caffe2 exports put between a weight and its
    operator (Inception v1's classifier weight is stored (1, 1, 1000, 1024))."""
    while True:
        (node, k), *_ = users[name]
        if node.op_type in ("Reshape", "Unsqueeze") and k == 0:
            if node.op_type == "Reshape" and node.input[1] in inits:
                target = numpy_helper.to_array(inits[node.input[1]])
                if (target > 0).all():
                    shape = target
            name = node.output[0]
            continue
        return node, k, shape


def attr(node, key, default):
    for a in node.attribute:
        if a.name == key:
            return onnx.helper.get_attribute_value(a)
    return default


def random_weight(shape, node, k, rng):
    """A random tensor for input `k` of `node`: He-normal for Conv/Gemm weights, near-identity
    for BatchNormalization and the affine Mul after it, small values for biases and means."""
    shape = tuple(int(d) for d in shape)
    op = node.op_type
    if op == "Conv" and k == 1:
        fan_in = int(np.prod(shape[1:]))
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if op == "Gemm" and k == 1:
        fan_in = int(np.prod(shape)) // (shape[0] if attr(node, "transB", 0) else shape[-1])
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if op == "BatchNormalization" and k == 1 or op == "Mul":
        return rng.uniform(0.8, 1.2, shape)
    if op == "BatchNormalization" and k == 4:
        return rng.uniform(0.5, 1.5, shape)
    if op in ("Conv", "Gemm", "BatchNormalization", "Add", "Sum"):
        return rng.normal(0.0, 0.05, shape)
    raise ValueError(f"no rule for a weight feeding {op} input {k} ({node.name or node.output[0]})")


def derandomize_light(name):
    """The wheel's light_<name>.onnx with random weights and a symbolic batch dimension."""
    model = onnx.load(str(LIGHT_DIR / f"light_{name}.onnx"))
    graph = model.graph
    rng = np.random.default_rng(seed_of(name))
    inits = {t.name: t for t in graph.initializer}
    users = consumers(graph)

    fills = [n for n in graph.node if n.op_type == "ConstantOfShape"]
    new_inits = []
    for node in fills:
        shape = numpy_helper.to_array(inits[node.input[0]])
        use, k, use_shape = final_use(node.output[0], shape, users, inits)
        value = random_weight(use_shape, use, k, rng).astype(np.float32).reshape(shape)
        new_inits.append(numpy_helper.from_array(value, node.output[0]))
    for node in fills:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)

    # IR 3 lists every initializer as a graph input too, which makes them overridable feeds:
    # onnxruntime then may not fold them (no Conv+BatchNormalization fusion), which no served
    # model would suffer. IR 4 lets initializers be plain constants.
    inits = {t.name: t for t in graph.initializer}
    init_names = set(inits)
    real_inputs = [i for i in graph.input if i.name in used and i.name not in init_names]
    del graph.input[:]
    graph.input.extend(real_inputs)
    model.ir_version = max(model.ir_version, 4)

    # batch 1 is baked into the declared shapes and into the Reshape targets (the flatten before
    # the classifier, ShuffleNet's channel shuffle): make it symbolic / inferred
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "N"
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] in init_names:
            continue
        target = numpy_helper.to_array(inits[node.input[1]]).copy()
        if target[0] == 1:
            target[0] = -1
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(target, node.input[1]))
    del graph.value_info[:]
    calibrate_batchnorm(model, calibration_images(name, (3, 224, 224)))
    onnx.checker.check_model(model, full_check=True)
    return model


def calibration_images(name, dims):
    """Seeded N(0, 1) images, drawn apart from the benchmark fixture."""
    return np.random.default_rng(seed_of(name) + 2).standard_normal((8, *dims)).astype(np.float32)


def calibrate_batchnorm(model, x):
    """Sets each BatchNormalization's mean and variance to the statistics of its input on `x`,
    as training leaves them.

    With random weights and arbitrary statistics the activations grow or fade from layer to
    layer (ResNet's residual sums double their variance per block), and the classifier's
    softmax ends one-hot on every row: unrealistic, and an output that hides numeric errors.
    One onnxruntime run of a copy in which every BatchNormalization normalises with its batch's
    own statistics (and exports them) gives each layer the statistics it sees once the layers
    before it are calibrated too: the single-pass equivalent of calibrating layer by layer.
    """
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    nodes, stats = [], []
    for i, node in enumerate(graph.node):
        if node.op_type != "BatchNormalization":
            nodes.append(node)
            continue
        x_in, scale, bias, *_ = node.input
        p = f"calib{i}_"
        eps = attr(node, "epsilon", 1e-5)
        graph.initializer.append(numpy_helper.from_array(np.array(eps, np.float32), p + "eps"))
        nodes += [
            helper.make_node("ReduceMean", [x_in], [p + "mean"], axes=[0, 2, 3]),
            helper.make_node("Sub", [x_in, p + "mean"], [p + "centred"]),
            helper.make_node("Mul", [p + "centred", p + "centred"], [p + "sq"]),
            helper.make_node("ReduceMean", [p + "sq"], [p + "var"], axes=[0, 2, 3]),
            helper.make_node("Add", [p + "var", p + "eps"], [p + "var_eps"]),
            helper.make_node("Sqrt", [p + "var_eps"], [p + "std"]),
            helper.make_node("Div", [p + "centred", p + "std"], [p + "norm"]),
            helper.make_node("Unsqueeze", [scale], [p + "scale"], axes=[1, 2]),
            helper.make_node("Unsqueeze", [bias], [p + "bias"], axes=[1, 2]),
            helper.make_node("Mul", [p + "norm", p + "scale"], [p + "scaled"]),
            helper.make_node("Add", [p + "scaled", p + "bias"], [node.output[0]]),
        ]
        stats.append((node, p + "mean", p + "var"))
        for name in (p + "mean", p + "var"):
            graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    if not stats:
        return
    del graph.node[:]
    graph.node.extend(nodes)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, {graph.input[0].name: x})))
    inits = {t.name: t for t in model.graph.initializer}
    for node, mean, var in stats:
        for k, name in ((3, mean), (4, var)):
            stat = values[name].reshape(-1).astype(np.float32)
            inits[node.input[k]].CopyFrom(numpy_helper.from_array(stat, node.input[k]))


# --- Keras models through tf2onnx ------------------------------------------------------------

KERAS = ("keras_mobilenetv2", "keras_resnet50", "keras_densenet121", "keras_inceptionv3")
TEXT = ("text_bilstm", "text_conv_gru", "text_conv_gru_loop")
SEQ_LEN = 100
VOCAB = 20000


def keras_model(name):
    """(model, input spec) for a Keras application with random weights or a text RNN, built
    after seeding TF so the weights are the same on every run."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed_of(name))
    apps = tf.keras.applications
    if name == "keras_mobilenetv2":
        return apps.MobileNetV2(weights=None), tf.TensorSpec((None, 224, 224, 3), tf.float32, "input")
    if name == "keras_resnet50":
        return apps.ResNet50(weights=None), tf.TensorSpec((None, 224, 224, 3), tf.float32, "input")
    if name == "keras_densenet121":
        return apps.DenseNet121(weights=None), tf.TensorSpec((None, 224, 224, 3), tf.float32, "input")
    if name == "keras_inceptionv3":
        return apps.InceptionV3(weights=None), tf.TensorSpec((None, 299, 299, 3), tf.float32, "input")
    layers = tf.keras.layers
    ids = tf.TensorSpec((None, SEQ_LEN), tf.int64, "tokens")
    if name == "text_bilstm":
        model = tf.keras.Sequential(
            [
                layers.Input((SEQ_LEN,), dtype="int64"),
                layers.Embedding(VOCAB, 128),
                layers.Bidirectional(layers.LSTM(64)),
                layers.Dense(1, activation="sigmoid"),
            ]
        )
        return model, ids
    if name in ("text_conv_gru", "text_conv_gru_loop"):
        # tf2onnx matches Keras' default GRU (reset_after=True, the cuDNN layout) to an ONNX
        # GRU op; with reset_after=False it finds no pattern and emits the cell as a Loop
        # body, the form every other recurrent layer it cannot fuse takes: both are measured.
        model = tf.keras.Sequential(
            [
                layers.Input((SEQ_LEN,), dtype="int64"),
                layers.Embedding(VOCAB, 128),
                layers.Conv1D(64, 5, activation="relu"),
                layers.GRU(64, reset_after=name == "text_conv_gru"),
                layers.Dense(10),
            ]
        )
        return model, ids
    raise KeyError(name)


def calibrate_keras_batchnorm(model, x):
    """Keras' counterpart of calibrate_batchnorm: a freshly built BatchNormalization holds mean
    0 and variance 1 whatever its input. One training-mode call with momentum 0 replaces every
    layer's moving statistics with the batch's, each layer seeing inputs normalised by the
    layers before it, which is what those layers then do at inference."""
    bns = [layer for layer in model.submodules if layer.__class__.__name__ == "BatchNormalization"]
    for layer in bns:
        layer.momentum = 0.0
    model(x, training=True)
    return len(bns)


def export_keras(name):
    """tf2onnx export at opset 13 with a symbolic batch dimension."""
    import tf2onnx

    model, spec = keras_model(name)
    if spec.dtype.is_floating:
        calibrate_keras_batchnorm(model, calibration_images(name, spec.shape[1:]))
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=[spec], opset=OPSET)
    onnx.checker.check_model(proto, full_check=True)
    return proto


# --- fixtures ----------------------------------------------------------------------------------


def make_input(name, model):
    """16 seeded rows matching the model's (single) input: N(0, 1) images, as after the usual
    per-channel normalisation, or uniform token ids below the vocabulary size."""
    rng = np.random.default_rng(seed_of(name) + 1)
    (value,) = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim][1:]
    if value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
        return rng.integers(1, VOCAB, size=(16, *dims), dtype=np.int64)
    return rng.standard_normal((16, *dims)).astype(np.float32)


def reference_outputs(path, x):
    """onnxruntime's first output on the first row and on all 16 (default optimisations)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    return session.run(None, {feed: x[:1]})[0], session.run(None, {feed: x})[0]


def describe(model):
    """The op histogram, printed so the log shows how each architecture was exported (e.g.
    whether tf2onnx kept an LSTM/GRU op or unrolled it into a Loop)."""
    ops = defaultdict(int)

    def walk(graph):
        for node in graph.node:
            ops[node.op_type] += 1
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(model.graph)
    return ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))


def build(name):
    if name.startswith("light_"):
        return derandomize_light(name.removeprefix("light_"))
    return export_keras(name)


def main():
    names = [f"light_{n}" for n in LIGHT] + list(KERAS) + list(TEXT)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild models that already exist")
    parser.add_argument("names", nargs="*", metavar="name", help=f"models to build (default: all): {' '.join(names)}")
    args = parser.parse_args()
    unknown = set(args.names) - set(names)
    if unknown:
        parser.error(f"unknown models: {' '.join(sorted(unknown))}")
    for name in args.names or names:
        out = OUT / name
        files = [out / f for f in ("model.onnx", "input_b16.npy", "expected_b1.npy", "expected_b16.npy")]
        if not args.force and all(f.is_file() for f in files):
            print(f"{name}: present")
            continue
        start = time.perf_counter()
        model = build(name)
        out.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out / "model.onnx"))
        x = make_input(name, model)
        np.save(out / "input_b16.npy", x)
        b1, b16 = reference_outputs(out / "model.onnx", x)
        np.save(out / "expected_b1.npy", b1)
        np.save(out / "expected_b16.npy", b16)
        size = (out / "model.onnx").stat().st_size / 2**20
        print(f"{name}: {size:.0f} MiB, input {x.dtype}{list(x.shape)}, output {list(b16.shape)} "
              f"(max {np.abs(b16).max():.3g}, std {b16.std():.3g}), {time.perf_counter() - start:.0f} s")
        print(f"  ops: {describe(model)}")


if __name__ == "__main__":
    sys.exit(main())
