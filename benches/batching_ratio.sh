#!/usr/bin/env bash
# The batching target of the request-core issue, measured robustly on a noisy machine: the CNN's
# offline batch-32 throughput (one 32-row request at a time through the no-batching server)
# against 32 single-image clients on the adaptive policy (--enable_batching) and on TF
# Serving's parameters (benches/config/batching.config), alternating the three ROUNDS times;
# prints every figure, the medians and the ratios.
#
#   PIN=1 benches/batching_ratio.sh      # ~1.5 minutes after the release build
#
# Knobs: ROUNDS=3 DURATION=5 CONCURRENCY=32 PARAMS=benches/config/batching.config
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONCURRENCY=${CONCURRENCY:-32}
PARAMS=${PARAMS:-benches/config/batching.config}
# shellcheck source=benches/side_by_side.sh
source benches/side_by_side.sh
cargo build --release --bins >&2
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
start() { # NAME [flags...]: sets <NAME>_PORT and <NAME>_PID
    local name=$1 grpc rest
    shift
    grpc=$(port) rest=$(port)
    "${SERVER_CPU[@]}" target/release/candle-serving --port="$grpc" --rest_api_port="$rest" --model_name=mnist_cnn \
        --model_base_path=models/mnist_cnn "$@" >/dev/null 2>&1 &
    PIDS+=($!)
    printf -v "${name}_PORT" '%s' "$grpc"
    printf -v "${name}_PID" '%s' "$!"
    wait_ready "$rest"
}
start PLAIN
start ADAPTIVE --enable_batching
start TF --enable_batching --batching_parameters_file="$PARAMS"
run() { # PORT PID [bench flags...] -> "items/s p50 p99"
    local port=$1 pid=$2
    shift 2
    "${BENCH_CPU[@]}" target/release/candle-serving-bench --target "127.0.0.1:$port" --model mnist_cnn --server-pid "$pid" \
        --duration "$DURATION" --warmup 1 --json "$@" | jq -r '"\(.items_per_s | round) \(.latency_ms.p50) \(.latency_ms.p99)"'
}
REF=() AD=() TFP=()
echo "$(machine), mnist_cnn, ${ROUNDS} alternating rounds of ${DURATION} s, $CONCURRENCY clients"
echo
echo "| round | batch-32 reference items/s | adaptive items/s (p50 / p99 ms) | TF params items/s (p50 / p99 ms) |"
echo "|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
    read -r ref _ _ < <(run "$PLAIN_PORT" "$PLAIN_PID" --concurrency 1 --batch 32)
    read -r ad ad50 ad99 < <(run "$ADAPTIVE_PORT" "$ADAPTIVE_PID" --concurrency "$CONCURRENCY")
    read -r tf tf50 tf99 < <(run "$TF_PORT" "$TF_PID" --concurrency "$CONCURRENCY")
    REF+=("$ref") AD+=("$ad") TFP+=("$tf")
    echo "| $r | $ref | $ad ($ad50 / $ad99) | $tf ($tf50 / $tf99) |"
done
ref=$(printf '%s\n' "${REF[@]}" | median) ad=$(printf '%s\n' "${AD[@]}" | median) tf=$(printf '%s\n' "${TFP[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }
echo "| median | $ref | $ad ($(ratio "$ad" "$ref")) | $tf ($(ratio "$tf" "$ref")) |"
