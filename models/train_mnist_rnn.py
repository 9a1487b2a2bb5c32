"""Train the sequential-MNIST LSTM and GRU classifiers and export them to ONNX.

Why: the engine's RNN ops (LSTM, GRU, and the Loop tf2onnx may emit) need real,
trained models to serve and to compare against onnxruntime goldens. Each 28x28
image is read as 28 timesteps of 28 pixels (rows), so the input is [N, 28, 28]
without the CNN's channel axis.
Writes models/mnist_lstm/1/model.onnx and models/mnist_gru/1/model.onnx.

Run: .venv/bin/python models/train_mnist_rnn.py [lstm] [gru]   (default: both)
"""
import sys

import numpy as np
import onnx
import tensorflow as tf

from common import REPO, load_mnist
from train_mnist_cnn import INPUT_NAME, OUTPUT_NAME, keras_to_onnx, ort_predict, rename_value

EPOCHS = 8
UNITS = 128
CELLS = {"lstm": tf.keras.layers.LSTM, "gru": tf.keras.layers.GRU}


def onnx_path(cell):
    return REPO / "models" / f"mnist_{cell}" / "1" / "model.onnx"


def build_model(cell):
    # GRU keeps Keras' default reset_after=True (ONNX GRU linear_before_reset=1).
    # Fixed model/layer names: tf2onnx copies them into node names, so the file stays
    # byte-identical whether one cell or both are trained in a run.
    return tf.keras.Sequential([
        tf.keras.Input(shape=(28, 28), name=INPUT_NAME),
        CELLS[cell](UNITS, name=cell),
        tf.keras.layers.Dense(10, activation="softmax", name=OUTPUT_NAME),
    ], name=f"mnist_{cell}")


def export_onnx(model, path):
    import tf2onnx  # imported late: it is slow and only needed here

    # tf2onnx numbers generated node names from a process-wide counter; restart it so a
    # model's file does not depend on which models were exported before it in this run.
    tf2onnx.utils.INTERNAL_NAME = 1
    proto = keras_to_onnx(model, (None, 28, 28))
    g = proto.graph
    canonical_constants(g)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return proto


def canonical_constants(graph):
    """Name and order tf2onnx's shared small constants by first use.

    Why: tf2onnx merges identical constants and which duplicate's name survives varies
    from run to run (the values never do), so without this the file's bytes would.
    """
    first_use = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            first_use.setdefault(name, i)
    inits = sorted(graph.initializer, key=lambda t: (first_use.get(t.name, len(graph.node)), t.name))
    for k, t in enumerate(inits):
        if t.name.startswith("const_"):
            rename_value(graph, t.name, f"const_{k}")
            t.name = f"const_{k}"
    del graph.initializer[:]
    graph.initializer.extend(inits)


def all_op_types(graph):
    """Op types of a graph and of every subgraph (Loop/Scan/If bodies)."""
    ops = set()
    for n in graph.node:
        ops.add(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                ops |= all_op_types(a.g)
            for sub in a.graphs:
                ops |= all_op_types(sub)
    return ops


def train_one(cell, data):
    x_train, y_train, x_test, y_test = data
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    model = build_model(cell)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=EPOCHS, validation_split=0.1, verbose=2)

    keras_probs = model.predict(x_test, batch_size=1000, verbose=0)
    keras_acc = float(np.mean(keras_probs.argmax(1) == y_test))

    path = onnx_path(cell)
    proto = export_onnx(model, path)
    ort_probs = ort_predict(path, x_test)
    ort_acc = float(np.mean(ort_probs.argmax(1) == y_test))
    max_diff = float(np.max(np.abs(ort_probs - keras_probs)))

    print(f"[{cell}] wrote {path} ({path.stat().st_size} bytes)")
    print(f"[{cell}] top-level nodes:", [n.op_type for n in proto.graph.node])
    print(f"[{cell}] onnx op types (incl. subgraphs):", sorted(all_op_types(proto.graph)))
    print(f"[{cell}] test accuracy keras={keras_acc:.4f} onnxruntime={ort_acc:.4f} (n={len(y_test)})")
    print(f"[{cell}] max |keras - onnxruntime| = {max_diff:.3g}")
    if max_diff >= 1e-5:
        raise SystemExit(f"FAIL: {cell} keras/onnxruntime mismatch {max_diff} >= 1e-5")


def main():
    cells = sys.argv[1:] or list(CELLS)
    x_train, y_train, x_test, y_test = load_mnist()
    # Drop the CNN's channel axis: [N, 28, 28] = N sequences of 28 rows of 28 pixels.
    data = (x_train[..., 0], y_train, x_test[..., 0], y_test)
    for cell in cells:
        train_one(cell, data)


if __name__ == "__main__":
    main()
