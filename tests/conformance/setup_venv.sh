#!/usr/bin/env bash
# Create/refresh the Python venv that supplies ONNX's backend test data, and print the path of
# the installed `onnx/backend/test/data` directory as the last line of stdout.
#
# Why a venv: the node cases (model.onnx + TensorProto inputs/outputs) ship inside the `onnx`
# wheel, so pinning the wheel pins the conformance data; nothing is generated or downloaded at
# test time beyond this one pip install. A stamp file holding the sha256 of the pins makes
# repeated calls a fast no-op. Progress goes to stderr so stdout carries only the path.
#
# Usage: tests/conformance/setup_venv.sh <venv-dir>
set -euo pipefail

# protobuf 3.20.3 is the newest 3.x that onnx 1.16 is tested with and ships a pure-Python wheel,
# so it installs on any CPython the onnx wheel supports.
PINS=(onnx==1.16.2 numpy==1.26.4 protobuf==3.20.3)

if [ $# -ne 1 ]; then
  echo "usage: $0 <venv-dir>" >&2
  exit 2
fi
venv=$1
python=${PYTHON:-python3}
stamp="$venv/.candle-serving-onnx-pins.sha256"
want=$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -d' ' -f1)

# find_spec locates the package without importing it (and so without needing protobuf to load).
locate='import importlib.util, os, sys
spec = importlib.util.find_spec("onnx")
if spec is None or not spec.submodule_search_locations:
    sys.exit("onnx is not installed")
data = os.path.join(list(spec.submodule_search_locations)[0], "backend", "test", "data")
if not os.path.isdir(os.path.join(data, "node")):
    sys.exit("no node test data under " + data)
print(data)'

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup_venv: $venv is up to date (pins sha256 $want)" >&2
  exec "$venv/bin/python" -c "$locate"
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup_venv: creating venv $venv with $($python --version 2>&1)" >&2
  "$python" -m venv "$venv" >&2
else
  echo "setup_venv: venv $venv exists but the pins changed; updating" >&2
fi

echo "setup_venv: pip install ${PINS[*]}" >&2
"$venv/bin/pip" install --disable-pip-version-check -q "${PINS[@]}" >&2

echo "setup_venv: checking the import" >&2
"$venv/bin/python" -c 'import onnx, onnx.backend.test' >&2

echo "$want" > "$stamp"
echo "setup_venv: done; wrote stamp $stamp" >&2
"$venv/bin/python" -c "$locate"
