"""Writes the SavedModels candle-serving serves without TensorFlow, with TensorFlow's own
answers as goldens.

  target/pyenv/bin/python models/make_savedmodels.py [cnn] [rnn] [layers]        # TF 2.15 / tf.keras 2.15
  target/keras3-venv/bin/python models/make_savedmodels.py [cnn] [rnn] [layers]  # TF 2.21 / Keras 3

The first (the interop venv, models/requirements.txt) writes
  models/mnist_cnn_savedmodel/1/      the shipped CNN (the recipe and weights of
                                      models/mnist_cnn), exported with model.export()
  tests/fixtures/savedmodel/set/module_two_signatures/1/  a tf.Module with two signatures
  tests/fixtures/savedmodel/set/module_slicing/1/  StridedSlice with every mask, shape ops
  tests/fixtures/savedmodel/set/channels_first/1/  a CNN in data_format NCHW
  tests/fixtures/savedmodel/set/half_plus_two/1/  TF Serving's half_plus_two, Classify/Regress
  tests/fixtures/savedmodel/set/tf1_graph/1/  a TF1 graph (tf.compat.v1, VariableV2) written by
                                      SavedModelBuilder
  tests/fixtures/savedmodel/set/keras2_{lstm,gru}/1/  sequential-MNIST LSTM (tf.saved_model.save)
                                      and GRU (model.export)
  tests/fixtures/savedmodel/set/keras2_layers/1/  most of the Keras layer set in one model
The second (models/requirements-keras3.txt) writes
  tests/fixtures/savedmodel/set/keras3_cnn/1/  a Keras 3 CNN, model.export()
  tests/fixtures/savedmodel/set/keras3_{lstm,gru}/1/  the LSTM and GRU, model.export()
  tests/fixtures/savedmodel/set/keras3_layers/1/  the layer-set model

Each model gets tests/fixtures/savedmodel/goldens/<model>/<signature>_{input,output}_<key>_b{1,16}.npy
and cases.json there:
TensorFlow's outputs (tf.saved_model.load, then the signature) for the first 1 and 16 MNIST
test images. Everything is seeded; the CNNs are trained on shared/data's MNIST subset.
"""
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import REPO, load_mnist  # noqa: E402

SET = REPO / "tests" / "fixtures" / "savedmodel" / "set"
GOLDENS = REPO / "tests" / "fixtures" / "savedmodel" / "goldens"
BATCHES = (1, 16)


def write_goldens(version_dir, cases, run=None):
    """cases: [(signature, {input key: array of 16 rows})]. Runs each signature in TF on the
    first 1 and 16 rows and writes the arrays to goldens/<model name>/. `run(signature, feed)`
    replaces the loaded SavedModel where TF's CPU kernels cannot run the graph itself."""
    golden = GOLDENS / version_dir.parent.name
    shutil.rmtree(golden, ignore_errors=True)
    golden.mkdir(parents=True)
    if run is None:
        loaded = tf.saved_model.load(str(version_dir))
        run = lambda signature, feed: loaded.signatures[signature](**feed)  # noqa: E731
    manifest = []
    for signature, inputs in cases:
        for batch in BATCHES:
            feed = {k: tf.constant(v[:batch]) for k, v in inputs.items()}
            outputs = {k: np.asarray(v) for k, v in run(signature, feed).items()}
            entry = {"signature": signature, "batch": batch, "inputs": {}, "outputs": {}}
            for kind, tensors in (("input", feed), ("output", outputs)):
                for key, value in tensors.items():
                    name = f"{signature}_{kind}_{key}_b{batch}.npy"
                    np.save(golden / name, np.asarray(value))
                    entry[kind + "s"][key] = name
            manifest.append(entry)
    (golden / "cases.json").write_text(json.dumps(manifest, indent=1) + "\n")


def mnist_images(n=16):
    _, _, x_test, _ = load_mnist()
    return x_test[:n]


def onnx_weights(path):
    """The initializers of an ONNX file by shape, read with the onnx package of the conformance
    venv (target/onnx-venv; this venv has no onnx)."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "weights.npz"
        script = ("import sys, numpy, onnx, onnx.numpy_helper as h; m = onnx.load(sys.argv[1]); "
                  "numpy.savez(sys.argv[2], *[h.to_array(t) for t in m.graph.initializer])")
        subprocess.run([str(REPO / "target" / "onnx-venv" / "bin" / "python"), "-c", script, str(path), str(dump)], check=True)
        arrays = list(np.load(dump).values())
    return {a.shape: a for a in arrays}


def shipped_cnn():
    """models/mnist_cnn_savedmodel: the shipped CNN (cnn_recipe.py) with the weights of
    models/mnist_cnn/1/model.onnx, so the two formats serve one model. Retraining is not
    bit-identical across CPUs, so the weights are copied; the export is checked against the
    ONNX goldens (onnxruntime's answers) before it is kept."""
    from cnn_recipe import build_model
    model = build_model()
    weights = onnx_weights(REPO / "models" / "mnist_cnn" / "1" / "model.onnx")
    for layer in model.layers:
        if not layer.weights:
            continue
        kernel, bias = (w.shape for w in layer.weights)
        onnx_kernel = tuple(reversed(kernel)) if len(kernel) == 4 else tuple(kernel)
        # Conv kernels are OIHW in ONNX, HWIO in Keras; a tf2onnx MatMul keeps [in, out].
        value = weights[(kernel[3], kernel[2], kernel[0], kernel[1])].transpose(2, 3, 1, 0) if len(kernel) == 4 else weights[onnx_kernel]
        layer.set_weights([value, weights[tuple(bias)]])
    out = REPO / "models" / "mnist_cnn_savedmodel" / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    model.export(str(out))
    onnx_golden = np.load(REPO / "tests" / "fixtures" / "mnist_cnn" / "output_b16.npy")
    images = np.load(REPO / "tests" / "fixtures" / "mnist_cnn" / "input_b16.npy")
    got = tf.saved_model.load(str(out)).signatures["serving_default"](image=tf.constant(images))
    (name, probs), = got.items()
    diff = float(np.abs(probs.numpy() - onnx_golden).max())
    print(f"{out}: output {name!r}, max |SavedModel - onnxruntime golden| = {diff:.3g}")
    if diff > 1e-5:
        raise SystemExit("the SavedModel does not hold the ONNX model's weights")
    write_goldens(out, [("serving_default", {"image": images})])


class TwoHeads(tf.Module):
    """Two signatures over shared variables, with different input keys and outputs."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(11)
        self.w = tf.Variable(rng.normal(0, 0.05, (784, 10)).astype(np.float32), name="w")
        self.b = tf.Variable(rng.normal(0, 0.1, (10,)).astype(np.float32), name="b")
        self.scale = tf.Variable(np.float32(0.5), name="scale")

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="pixels")])
    def classify_pixels(self, pixels):
        logits = tf.matmul(pixels, self.w) + self.b
        return {"probabilities": tf.nn.softmax(logits), "logits": logits}

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="x"),
                                  tf.TensorSpec([None, 10], tf.float32, name="bias")])
    def scaled_logits(self, x, bias):
        return {"scaled": (tf.matmul(x, self.w) + bias) * self.scale}


def module_two_signatures():
    out = SET / "module_two_signatures" / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    module = TwoHeads()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.classify_pixels,
                                                      "scaled_logits": module.scaled_logits})
    pixels = mnist_images().reshape(16, 784)
    bias = np.random.default_rng(12).normal(0, 1, (16, 10)).astype(np.float32)
    write_goldens(out, [("serving_default", {"pixels": pixels}), ("scaled_logits", {"x": pixels, "bias": bias})])


class Slicing(tf.Module):
    """StridedSlice with every mask (begin, end, ellipsis, new axis, shrink), negative strides
    and indices, and the shape ops around them; every output keeps the batch axis, so rows
    can be checked alone."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 6], tf.float32, name="x")])
    def __call__(self, x):
        batch = tf.shape(x)[0]
        return {
            "ellipsis_tail": x[..., 1:5:2],
            "new_axis": x[:, tf.newaxis, ::-2],
            "shrink_back": x[:, 1:, -1],
            "ellipsis_middle": x[:, ::-1, ..., 0:1],
            "front_and_back": x[:, 2, ..., tf.newaxis, -3],
            "reshaped": tf.reshape(x[:, ::2, :], tf.stack([batch, -1])),
        }


def module_slicing():
    out = SET / "module_slicing" / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    module = Slicing()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.__call__})
    x = np.random.default_rng(14).normal(0, 1, (16, 4, 6)).astype(np.float32)
    write_goldens(out, [("serving_default", {"x": x})])


class ChannelsFirst(tf.Module):
    """A CNN written channels-first (data_format NCHW), as GPU-trained graphs are: Conv2D
    (SAME and EXPLICIT padding, strided), BiasAdd, FusedBatchNormV3, MaxPool and AvgPool."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(15)
        f = lambda *shape, scale=0.3: tf.Variable(rng.normal(0, scale, shape).astype(np.float32))  # noqa: E731
        self.k1, self.b1, self.k2 = f(3, 3, 1, 4), f(4), f(3, 3, 4, 6)
        self.scale, self.offset, self.mean = f(4, scale=1.0), f(4), f(4)
        self.variance = tf.Variable(rng.uniform(0.5, 2.0, 4).astype(np.float32))

    def forward(self, image, data_format):
        nchw = data_format == "NCHW"
        pads = [[0, 0], [0, 0], [1, 1], [0, 1]] if nchw else [[0, 0], [1, 1], [0, 1], [0, 0]]
        y = tf.nn.conv2d(image, self.k1, strides=1, padding="SAME", data_format=data_format)
        y = tf.nn.bias_add(y, self.b1, data_format=data_format)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, self.scale, self.offset, self.mean, self.variance, epsilon=1e-3,
                                                   data_format=data_format, is_training=False)
        y = tf.nn.max_pool2d(tf.nn.relu(y), 2, 2, "VALID", data_format=data_format)
        y = tf.nn.conv2d(y, self.k2, strides=2, padding=pads, data_format=data_format)
        y = tf.nn.avg_pool2d(y, 2, 1, "SAME", data_format=data_format)
        return y if nchw else tf.transpose(y, [0, 3, 1, 2])

    @tf.function(input_signature=[tf.TensorSpec([None, 1, 28, 28], tf.float32, name="image")])
    def __call__(self, image):
        y = self.forward(image, "NCHW")
        return {"features": tf.reshape(y, tf.stack([tf.shape(y)[0], -1]))}


def channels_first():
    """TF's CPU kernels run no NCHW conv, so the goldens come from the same module's NHWC twin
    (same variables, input and output transposed)."""
    out = SET / "channels_first" / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    module = ChannelsFirst()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.__call__})

    def twin(_signature, feed):
        y = module.forward(tf.transpose(feed["image"], [0, 2, 3, 1]), "NHWC")
        return {"features": tf.reshape(y, [tf.shape(y)[0], -1]).numpy()}

    write_goldens(out, [("serving_default", {"image": mnist_images().transpose(0, 3, 1, 2).copy()})], run=twin)


def tf1_graph():
    """TF1 style: ref variables (VariableV2), a Saver's restore op, signatures by tensor name;
    besides Predict, a classify and a regress signature over serialized tf.Examples."""
    out = SET / "tf1_graph" / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    v1 = tf.compat.v1
    rng = np.random.default_rng(13)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 784], name="x")
        w = v1.get_variable("w", initializer=rng.normal(0, 0.05, (784, 32)).astype(np.float32), use_resource=False)
        b = v1.get_variable("b", initializer=rng.normal(0, 0.1, (32,)).astype(np.float32), use_resource=False)
        w2 = v1.get_variable("w2", initializer=rng.normal(0, 0.2, (32, 10)).astype(np.float32), use_resource=False)
        hidden = tf.nn.relu(tf.matmul(x, w) + b, name="hidden")
        logits = tf.matmul(hidden, w2, name="logits")
        probs = tf.nn.softmax(logits, name="probabilities")
        # Estimator-style classify and regress signatures over serialized tf.Examples.
        examples = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = v1.parse_example(examples, {"pixels": v1.FixedLenFeature([784], tf.float32)})
        example_scores = tf.nn.softmax(tf.matmul(tf.nn.relu(tf.matmul(parsed["pixels"], w) + b), w2), name="example_scores")
        digits = tf.constant([str(d).encode() for d in range(10)])
        example_classes = tf.tile(tf.expand_dims(digits, 0), tf.stack([tf.shape(examples)[0], 1]), name="example_classes")
        ink = tf.reduce_mean(parsed["pixels"], axis=1, keepdims=True, name="ink")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            signatures = {
                "serving_default": v1.saved_model.predict_signature_def(inputs={"pixels": x}, outputs={"probabilities": probs, "hidden": hidden}),
                "classify_digits": v1.saved_model.classification_signature_def(examples, example_classes, example_scores),
                "regress_ink": v1.saved_model.regression_signature_def(examples, ink),
            }
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures)
            builder.save()
    write_goldens(out, [("serving_default", {"pixels": mnist_images().reshape(16, 784)})])


def rnn(keras, cell, name, export):
    """A sequential-MNIST classifier (each image row one timestep), trained briefly: the
    RNN layers lower to While loops over TensorLists in both Keras generations."""
    keras.utils.set_random_seed(9)
    x_train, y_train, _, _ = load_mnist()
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    model = keras.Sequential([
        keras.Input((28, 28), name="rows"),
        layer(32),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train[:2048, :, :, 0], y_train[:2048], batch_size=128, epochs=1, verbose=2)
    out = SET / name / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    export(model, out)
    write_goldens(out, [("serving_default", {"rows": mnist_images()[:, :, :, 0]})])


def layers(keras, name):
    """One functional model over most of the Keras layer set a CNN or RNN export uses, so each
    layer's ops are checked against TensorFlow: Rescaling, ZeroPadding2D, Conv2D without bias,
    BatchNormalization, ReLU6, DepthwiseConv2D (multiplier 2), swish, SeparableConv2D, average
    and max pooling, Add, Multiply, global average and max pooling, Concatenate, Dropout,
    Normalization, Reshape, Conv1D, Bidirectional GRU (reset_after=False), Embedding, SimpleRNN
    returning sequences, LSTM, Dense."""
    keras.utils.set_random_seed(21)
    L = keras.layers
    image = keras.Input((28, 28, 1), name="image")
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = L.Rescaling(2.0, offset=-1.0)(image)
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(max_value=6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = L.Activation("swish")(x)
    x = L.SeparableConv2D(12, 3, padding="same", activation="relu")(x)
    x = L.Add()([L.AveragePooling2D(2)(x), L.MaxPooling2D(2)(x)])
    x = L.Multiply()([x, L.Activation("sigmoid")(x)])
    pictures = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(x)])
    pictures = L.Normalization(mean=0.5, variance=0.25)(L.Dropout(0.3)(pictures))
    rows = L.Conv1D(8, 3, padding="same", activation="tanh")(L.Reshape((28, 28))(image))
    rows = L.Bidirectional(L.GRU(8, reset_after=False))(rows)
    words = L.SimpleRNN(8, return_sequences=True)(L.Embedding(50, 8)(tokens))
    words = L.LSTM(8)(words)
    probabilities = L.Dense(10, activation="softmax")(L.Concatenate()([pictures, rows, words]))
    model = keras.Model([image, tokens], probabilities)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x_train, y_train, _, _ = load_mnist()
    rng = np.random.default_rng(22)
    model.fit([x_train[:1024], rng.integers(0, 50, (1024, 12)).astype(np.int32)], y_train[:1024], batch_size=64, epochs=1, verbose=2)
    out = SET / name / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    model.export(str(out))
    write_goldens(out, [("serving_default", {"image": mnist_images(), "tokens": rng.integers(0, 50, (16, 12)).astype(np.int32)})])


def half_plus_two():
    """TF Serving's half_plus_two test model, rebuilt with tf.compat.v1 and SavedModelBuilder:
    y = a*x + b with a=0.5, b=2, c=3; Predict, Classify and Regress signatures over the same
    graph (as TF Serving's own test suite uses them), plus a classifier with string labels and
    several scores. Its answers are checked in tests/python/classify_regress.py."""
    out = SET / "half_plus_two" / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a", use_resource=False)
        b = v1.Variable(2.0, name="b", use_resource=False)
        c = v1.Variable(3.0, name="c", use_resource=False)
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32),
                                               "x2": v1.FixedLenFeature([1], tf.float32, default_value=[0.0])})
        x = tf.identity(parsed["x"], name="x")
        x2 = tf.identity(parsed["x2"], name="x2")
        y = tf.add(tf.multiply(a, x), b, name="y")
        y2 = tf.add(tf.multiply(a, x), c, name="y2")
        y3 = tf.add(tf.multiply(a, x2), c, name="y3")
        labels = tf.constant([b"negative", b"zero", b"positive"])
        sign_classes = tf.tile(tf.expand_dims(labels, 0), tf.stack([tf.shape(x)[0], 1]), name="sign_classes")
        sign_scores = tf.nn.softmax(tf.concat([-x, 0.0 * x, x], axis=1), name="sign_scores")
        info = v1.saved_model.build_tensor_info
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out))
            sigs = v1.saved_model
            signatures = {
                "serving_default": sigs.predict_signature_def(inputs={"x": x}, outputs={"y": y}),
                "classify_x_to_y": sigs.classification_signature_def(serialized, None, y),
                "regress_x_to_y": sigs.regression_signature_def(serialized, y),
                "regress_x_to_y2": sigs.regression_signature_def(serialized, y2),
                "regress_x2_to_y3": sigs.build_signature_def({"inputs": info(x2)}, {"outputs": info(y3)}, sigs.REGRESS_METHOD_NAME),
                "classify_sign": sigs.classification_signature_def(serialized, sign_classes, sign_scores),
            }
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures)
            builder.save()
    x_values = np.linspace(-4.0, 4.0, 16, dtype=np.float32).reshape(16, 1)
    write_goldens(out, [("serving_default", {"x": x_values})])


def keras3_cnn():
    import keras
    keras.utils.set_random_seed(7)
    x_train, y_train, _, _ = load_mnist()
    model = keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train[:4096], y_train[:4096], batch_size=128, epochs=1, verbose=2)
    out = SET / "keras3_cnn" / "1"
    shutil.rmtree(out.parent, ignore_errors=True)
    model.export(str(out))
    write_goldens(out, [("serving_default", {"image": mnist_images()})])


def main():
    if tf.__version__.startswith("2.15"):
        only = sys.argv[1:]
        if not only or "cnn" in only:
            shipped_cnn()
            module_two_signatures()
            module_slicing()
            channels_first()
            tf1_graph()
            half_plus_two()
        if not only or "rnn" in only:
            # tf.keras 2 users save with tf.saved_model.save as often as with model.export.
            rnn(tf.keras, "lstm", "keras2_lstm", lambda m, out: tf.saved_model.save(m, str(out)))
            rnn(tf.keras, "gru", "keras2_gru", lambda m, out: m.export(str(out)))
        if not only or "layers" in only:
            layers(tf.keras, "keras2_layers")
    else:
        import keras
        only = sys.argv[1:]
        if not only or "cnn" in only:
            keras3_cnn()
        if not only or "rnn" in only:
            rnn(keras, "lstm", "keras3_lstm", lambda m, out: m.export(str(out)))
            rnn(keras, "gru", "keras3_gru", lambda m, out: m.export(str(out)))
        if not only or "layers" in only:
            layers(keras, "keras3_layers")
    print("done")


if __name__ == "__main__":
    main()
