#!/usr/bin/env bash
# Create/refresh the Python venv used by the TF Serving interop client.
#
# Why a script: tensorflow-serving-api depends on `tensorflow` (the full GPU
# wheel), which would clash with tensorflow-cpu; it must be installed with
# --no-deps on top of the pinned requirements. A stamp file holding the sha256
# of the requirements (and this script) makes repeated calls a fast no-op.
#
# Usage: tests/python/setup_venv.sh <venv-dir>
set -euo pipefail

TFS_API_VERSION=2.15.1   # same major.minor as tensorflow-cpu in requirements.txt

if [ $# -ne 1 ]; then
  echo "usage: $0 <venv-dir>" >&2
  exit 2
fi
venv=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
req="$here/requirements.txt"
stamp="$venv/.candle-serving-requirements.sha256"
python=${PYTHON:-python3}

want=$( { cat "$req"; echo "tensorflow-serving-api==$TFS_API_VERSION"; } | sha256sum | cut -d' ' -f1)

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
echo "setup_venv: pip install --no-deps tensorflow-serving-api==$TFS_API_VERSION"
"$venv/bin/pip" install --disable-pip-version-check -q --no-deps "tensorflow-serving-api==$TFS_API_VERSION"

echo "setup_venv: checking imports"
"$venv/bin/python" -c 'import grpc, tensorflow, tensorflow_serving.apis.predict_pb2' 2>/dev/null \
  || { echo "setup_venv: import check failed" >&2; "$venv/bin/python" -c 'import grpc, tensorflow, tensorflow_serving.apis.predict_pb2'; exit 1; }

echo "$want" > "$stamp"
echo "setup_venv: done; wrote stamp $stamp"
