"""Write golden input/output vectors for the TF-style models (test fixtures).

Why: the Rust server's tests compare its outputs against onnxruntime's on
fixed inputs (the first 16 test images), without needing Python at test time.
Writes tests/fixtures/<model>/{input,output}_b{1,16}.npy and labels_b16.npy for
mnist_cnn (NHWC [N, 28, 28, 1]) and the sequential-MNIST RNNs mnist_lstm and
mnist_gru ([N, 28, 28]: 28 timesteps of 28 pixels).

Run after the training scripts: .venv/bin/python models/make_goldens.py [model ...]
(default: all three).
"""
import sys

import numpy as np
import onnxruntime as ort

from common import FIXTURES, REPO, load_mnist

# model name -> how a test image batch (NHWC) becomes that model's input
MODELS = {
    "mnist_cnn": lambda x: x,
    "mnist_lstm": lambda x: x[..., 0],
    "mnist_gru": lambda x: x[..., 0],
}


def run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"image": x})[0]


def write_goldens(model, x_test, y_test):
    path = REPO / "models" / model / "1" / "model.onnx"
    out = FIXTURES / model
    x16 = np.ascontiguousarray(MODELS[model](x_test[:16]), dtype=np.float32)
    x1 = np.ascontiguousarray(x16[:1])
    files = {
        "input_b16.npy": x16,
        "input_b1.npy": x1,
        "output_b16.npy": run_ort(path, x16).astype(np.float32),
        "output_b1.npy": run_ort(path, x1).astype(np.float32),
        "labels_b16.npy": y_test[:16].astype(np.int64),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in files.items():
        np.save(out / name, arr)
        print(f"wrote {out / name} {arr.dtype} {arr.shape}")
    b1_vs_b16 = np.max(np.abs(files["output_b1.npy"] - files["output_b16.npy"][:1]))
    acc = np.mean(files["output_b16.npy"].argmax(1) == files["labels_b16.npy"])
    print(f"{model}: b16 accuracy {acc:.4f}; max |b1 - b16[0]| = {b1_vs_b16:.3g}")


def main():
    models = sys.argv[1:] or list(MODELS)
    _, _, x_test, y_test = load_mnist()
    for model in models:
        write_goldens(model, x_test, y_test)


if __name__ == "__main__":
    main()
