#!/usr/bin/env bash
# Create/refresh a Python venv for the official-client interop tests.
#
# Why a script: tensorflow-serving-api depends on `tensorflow` (the full GPU
# wheel), which would clash with tensorflow-cpu; it must be installed with
# --no-deps on top of the pinned requirements. A stamp file holding the sha256
# of the requirements makes repeated calls a fast no-op.
#
# Usage: tests/python/setup_venv.sh <venv-dir> [requirements-file]
#   Without a requirements file: the TF Serving client (requirements.txt plus
#   tensorflow-serving-api). With one: exactly that file's pins, e.g.
#   triton_requirements.txt, whose protobuf cannot share a venv with TF 2.15.
set -euo pipefail

TFS_API_VERSION=2.15.1   # same major.minor as tensorflow-cpu in requirements.txt

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 <venv-dir> [requirements-file]" >&2
  exit 2
fi
venv=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -eq 2 ]; then
  req=$2
  nodeps=()
  import_check=
else
  req="$here/requirements.txt"
  nodeps=("tensorflow-serving-api==$TFS_API_VERSION")
  import_check='import grpc, tensorflow, tensorflow_serving.apis.predict_pb2'
fi
stamp="$venv/.candle-serving-requirements.sha256"
python=${PYTHON:-python3}

want=$( { cat "$req"; printf '%s\n' "${nodeps[@]}"; } | sha256sum | cut -d' ' -f1)

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup_venv: $venv is up to date (requirements sha256 $want)"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup_venv: creating venv $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
else
  echo "setup_venv: venv $venv exists but requirements changed; updating"
fi

echo "setup_venv: pip install -r $req"
"$venv/bin/pip" install --disable-pip-version-check -q -r "$req"
for pkg in "${nodeps[@]}"; do
  echo "setup_venv: pip install --no-deps $pkg"
  "$venv/bin/pip" install --disable-pip-version-check -q --no-deps "$pkg"
done

if [ -n "$import_check" ]; then
  echo "setup_venv: checking imports"
  "$venv/bin/python" -c "$import_check" 2>/dev/null \
    || { echo "setup_venv: import check failed" >&2; "$venv/bin/python" -c "$import_check"; exit 1; }
else
  # A file of exact pins: every package must agree with what the others require.
  echo "setup_venv: pip check"
  "$venv/bin/pip" check --disable-pip-version-check
fi

echo "$want" > "$stamp"
echo "setup_venv: done; wrote stamp $stamp"
