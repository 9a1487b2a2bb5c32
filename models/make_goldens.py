"""Write golden input/output vectors for the NHWC MNIST model (test fixtures).

Why: the Rust server's tests compare its outputs against onnxruntime's on
fixed inputs (the first 16 test images), without needing Python at test time.
Writes tests/fixtures/mnist_cnn/{input,output}_b{1,16}.npy and labels_b16.npy.

Run after train_mnist_cnn.py: .venv/bin/python models/make_goldens.py
"""
import numpy as np
import onnxruntime as ort

from common import FIXTURES, ONNX_PATH, load_mnist

OUT = FIXTURES / "mnist_cnn"


def run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"image": x})[0]


def main():
    _, _, x_test, y_test = load_mnist()
    x16 = np.ascontiguousarray(x_test[:16], dtype=np.float32)  # (16, 28, 28, 1)
    x1 = np.ascontiguousarray(x16[:1])
    files = {
        "input_b16.npy": x16,
        "input_b1.npy": x1,
        "output_b16.npy": run_ort(ONNX_PATH, x16).astype(np.float32),
        "output_b1.npy": run_ort(ONNX_PATH, x1).astype(np.float32),
        "labels_b16.npy": y_test[:16].astype(np.int64),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, arr in files.items():
        np.save(OUT / name, arr)
        print(f"wrote {OUT / name} {arr.dtype} {arr.shape}")
    b1_vs_b16 = np.max(np.abs(files["output_b1.npy"] - files["output_b16.npy"][:1]))
    acc = np.mean(files["output_b16.npy"].argmax(1) == files["labels_b16.npy"])
    print(f"b16 accuracy {acc:.4f}; max |b1 - b16[0]| = {b1_vs_b16:.3g}")


if __name__ == "__main__":
    main()
