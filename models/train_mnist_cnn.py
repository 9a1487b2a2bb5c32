"""Train the small MNIST CNN and export it to ONNX for candle-serving.

Why: the server needs a real, TF-Serving-style model (input "image" NHWC
float32, output "probabilities") to serve and to compare against goldens.
Writes models/mnist_cnn/1/model.onnx (model repository layout name/version/).

Run: .venv/bin/python models/train_mnist_cnn.py
"""
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from common import ONNX_PATH

from cnn_recipe import INPUT_NAME, OUTPUT_NAME, train


def rename_value(graph, old, new):
    """Rename a tensor everywhere it appears in an ONNX graph."""
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def keras_to_onnx(model, input_shape):
    """Convert with tf2onnx (opset 13) into the TF-Serving-style signature: input `image`,
    output `probabilities`, a symbolic batch dimension `N`, no unused opset imports."""
    spec = (tf.TensorSpec(input_shape, tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    g = proto.graph
    assert len(g.input) == 1 and len(g.output) == 1, (g.input, g.output)
    rename_value(g, g.input[0].name, INPUT_NAME)
    rename_value(g, g.output[0].name, OUTPUT_NAME)
    # Make the batch dimension symbolic/dynamic on both ends.
    for vi in (g.input[0], g.output[0]):
        dim0 = vi.type.tensor_type.shape.dim[0]
        dim0.Clear()
        dim0.dim_param = "N"
    # Drop opset imports no node uses (tf2onnx always adds ai.onnx.ml).
    used = {n.domain for n in g.node}
    keep = [o for o in proto.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)
    return proto


def export_onnx(model):
    proto = keras_to_onnx(model, (None, 28, 28, 1))
    onnx.checker.check_model(proto)
    ONNX_PATH.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(ONNX_PATH))
    return proto


def ort_predict(path, x, batch=1000):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def main():
    model, x_test, y_test = train()

    keras_probs = model.predict(x_test, batch_size=1000, verbose=0)
    keras_acc = float(np.mean(keras_probs.argmax(1) == y_test))

    proto = export_onnx(model)
    ort_probs = ort_predict(ONNX_PATH, x_test)
    ort_acc = float(np.mean(ort_probs.argmax(1) == y_test))
    max_diff = float(np.max(np.abs(ort_probs - keras_probs)))

    print(f"wrote {ONNX_PATH} ({ONNX_PATH.stat().st_size} bytes)")
    print("onnx inputs:", [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
                           for i in proto.graph.input])
    print("onnx outputs:", [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
                            for o in proto.graph.output])
    print("onnx op types:", sorted({n.op_type for n in proto.graph.node}))
    print(f"test accuracy keras={keras_acc:.4f} onnxruntime={ort_acc:.4f} (n={len(y_test)})")
    print(f"max |keras - onnxruntime| = {max_diff:.3g}")
    if max_diff >= 1e-5:
        raise SystemExit(f"FAIL: keras/onnxruntime mismatch {max_diff} >= 1e-5")


if __name__ == "__main__":
    main()
