"""Build a PyTorch-export-style (NCHW, Flatten + Gemm) copy of the MNIST CNN.

Why: torch.onnx exports look different from tf2onnx ones (NCHW input, Flatten,
Gemm with transB=1). This builds that op style with onnx.helper, without torch,
using the SAME trained weights as models/mnist_cnn/1/model.onnx, so the server
can be tested on both styles. Writes tests/fixtures/mnist_cnn_nchw/1/model.onnx
plus goldens next to it in tests/fixtures/mnist_cnn_nchw/.

Weights come from the tf2onnx file: ONNX Conv weights are OIHW by definition
(tf2onnx already converted Keras' HWIO), so they are reused as is. The Dense
weight [1600, 10] multiplies a Flatten of NHWC activations, i.e. rows in
(h, w, c) order; ONNX Flatten on NCHW yields (c, h, w) order, so its rows are
permuted and the matrix transposed to [10, 1600] for Gemm(transB=1).

Run after train_mnist_cnn.py: .venv/bin/python models/make_nchw_variant.py
"""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from common import FIXTURES, ONNX_PATH, load_mnist

OUT = FIXTURES / "mnist_cnn_nchw"
MODEL_PATH = OUT / "1" / "model.onnx"
POOL_H, POOL_W, CHANNELS = 5, 5, 64  # shape after the second MaxPool


def trained_weights(path):
    """Extract (W1, B1, W2, B2, Wd, Bd) from the tf2onnx model, walking its graph."""
    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert len(convs) == 2
    for c in convs:  # Keras 'valid' convs: no padding, unit strides/dilations
        attrs = {a.name: helper.get_attribute_value(a) for a in c.attribute}
        assert not any(attrs.get("pads", [])) and attrs.get("auto_pad", b"NOTSET") == b"NOTSET"
        assert attrs.get("strides", [1, 1]) == [1, 1] and attrs.get("group", 1) == 1
    # The flatten must be over NHWC: Transpose(perm 0,2,3,1) -> Reshape -> MatMul.
    perms = [helper.get_attribute_value(n.attribute[0]) for n in g.node if n.op_type == "Transpose"]
    assert perms == [[0, 2, 3, 1]], perms
    matmul = next(n for n in g.node if n.op_type == "MatMul")
    add = next(n for n in g.node if n.op_type == "Add")
    bias = next(i for i in add.input if i in init)
    return (init[convs[0].input[1]], init[convs[0].input[2]],
            init[convs[1].input[1]], init[convs[1].input[2]],
            init[matmul.input[1]], init[bias])


def dense_to_gemm_nchw(wd):
    """[h*w*c, 10] rows in (h, w, c) order -> [10, c*h*w] for Gemm(transB=1)."""
    w = wd.reshape(POOL_H, POOL_W, CHANNELS, -1)          # (h, w, c, out)
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1).reshape(w.shape[-1], -1))  # (out, c*h*w)


def build(w1, b1, w2, b2, wd, bd):
    w3 = dense_to_gemm_nchw(wd)
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in
             [("W1", w1), ("B1", b1), ("W2", w2), ("B2", b2), ("W3", w3), ("B3", bd)]]
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    nodes = [
        helper.make_node("Conv", ["image", "W1", "B1"], ["conv1"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], **pool),
        helper.make_node("Conv", ["pool1", "W2", "B2"], ["conv2"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv2"], ["relu2"]),
        helper.make_node("MaxPool", ["relu2"], ["pool2"], **pool),
        helper.make_node("Flatten", ["pool2"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W3", "B3"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "mnist_cnn_nchw",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="candle-serving/make_nchw_variant.py")
    model.ir_version = 7  # readable by any onnxruntime/onnx that supports opset 13
    onnx.checker.check_model(model, full_check=True)
    return model


def run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"image": x})[0]


def main():
    model = build(*trained_weights(ONNX_PATH))
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(MODEL_PATH))
    print(f"wrote {MODEL_PATH} ({MODEL_PATH.stat().st_size} bytes)")
    print("onnx op types:", sorted({n.op_type for n in model.graph.node}))

    _, _, x_test, y_test = load_mnist()
    nchw = np.ascontiguousarray(x_test.transpose(0, 3, 1, 2))  # (N, 1, 28, 28)
    ref = run_ort(ONNX_PATH, x_test)
    got = run_ort(MODEL_PATH, nchw)
    diff = float(np.max(np.abs(got - ref)))
    print(f"test accuracy nhwc={np.mean(ref.argmax(1) == y_test):.4f} "
          f"nchw={np.mean(got.argmax(1) == y_test):.4f} (n={len(y_test)})")
    print(f"max |nchw - nhwc| over the test set = {diff:.3g}")
    if diff >= 1e-5:
        raise SystemExit(f"FAIL: NCHW variant differs from NHWC model by {diff} >= 1e-5")

    x16, x1 = nchw[:16], nchw[:1]
    files = {"input_b16.npy": x16, "output_b16.npy": run_ort(MODEL_PATH, x16),
             "input_b1.npy": x1, "output_b1.npy": run_ort(MODEL_PATH, x1)}
    for name, arr in files.items():
        np.save(OUT / name, np.ascontiguousarray(arr, dtype=np.float32))
        print(f"wrote {OUT / name} float32 {arr.shape}")
    nhwc_gold = FIXTURES / "mnist_cnn" / "output_b16.npy"
    if nhwc_gold.exists():
        d = np.max(np.abs(files["output_b16.npy"] - np.load(nhwc_gold)))
        print(f"max |nchw b16 golden - nhwc b16 golden| = {d:.3g}")

if __name__ == "__main__":
    main()
