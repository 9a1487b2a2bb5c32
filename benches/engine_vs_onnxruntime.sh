#!/usr/bin/env bash
# Engine vs onnxruntime on the models in models/: prints the README's ratio table.
# Needs python3 with venv; installs onnxruntime into target/bench-venv on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.18.1 numpy==1.26.4
fi
exec "$venv/bin/python" benches/engine_vs_onnxruntime.py "$@"
