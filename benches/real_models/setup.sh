#!/usr/bin/env bash
# Creates (or tops up) target/bench-venv with what benches/real_models needs: TensorFlow and
# tf2onnx to build and export the Keras models, onnx to rewrite the wheel's light_* models,
# onnxruntime as the reference. Idempotent: a venv that already has every pin is left alone.
# tf2onnx 1.16.1 asks for protobuf~=3.20, which TF 2.15 and onnx 1.16.2 also accept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv=target/bench-venv
pins=(tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx==1.16.2 onnxruntime==1.18.1 numpy==1.26.4 protobuf==3.20.3)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# `pip install` of already-satisfied pins still costs a resolver round trip; check locally first.
if ! "$venv/bin/python" - "${pins[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "${pins[@]}"
fi
