"""Shared helpers for the model/fixture scripts: locate and load the MNIST data.

The repo is checked out next to a `shared/` folder, so the data lives at
<repo>/../shared/data/mnist_subset.npz unless MNIST_NPZ overrides it.
"""
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "models" / "mnist_cnn" / "1"
ONNX_PATH = MODEL_DIR / "model.onnx"
KERAS_PATH = REPO / "models" / "mnist_cnn" / "keras" / "model.keras"
FIXTURES = REPO / "tests" / "fixtures"


def mnist_npz_path():
    return Path(os.environ.get("MNIST_NPZ", REPO.parent / "shared" / "data" / "mnist_subset.npz"))


def load_mnist():
    """Return (x_train, y_train, x_test, y_test); images float32 NHWC in [0, 1]."""
    d = np.load(mnist_npz_path())
    prep = lambda x: (x.astype(np.float32) / 255.0)[..., np.newaxis]
    return prep(d["x_train"]), d["y_train"].astype(np.int64), prep(d["x_test"]), d["y_test"].astype(np.int64)
