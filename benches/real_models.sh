#!/usr/bin/env bash
# The engine vs onnxruntime on real architectures (ResNet50, DenseNet121, Inception, VGG19,
# SqueezeNet, ShuffleNet, Keras applications, text LSTM/GRU): sets up target/bench-venv, writes
# the models into target/bench-models if they are missing, runs benches/real_models.rs and
# onnxruntime, and prints a markdown table on stdout (progress and step times on stderr).
# Arguments go to criterion, e.g. `benches/real_models.sh light_resnet50` or `-- b16_t2`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "${1-}" = "--" ] && shift
step() { # NAME COMMAND...: runs it with stdout on stderr, then reports how long it took
  local name=$1 start=$SECONDS
  shift
  "$@" >&2
  echo "real_models.sh: $name took $((SECONDS - start)) s" >&2
}
step "venv setup" benches/real_models/setup.sh
step "model generation" target/bench-venv/bin/python benches/real_models/make_models.py
start=$SECONDS
status=0
target/bench-venv/bin/python benches/real_models/compare.py "$@" || status=$?
echo "real_models.sh: bench run took $((SECONDS - start)) s" >&2
exit $status
