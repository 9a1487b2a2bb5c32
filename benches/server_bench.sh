#!/usr/bin/env bash
# Server benchmark: throughput, latency and server CPU per request of the release binary, with
# and without dynamic batching, measured by candle-serving-bench (gRPC Predict, closed loop).
#
#   benches/server_bench.sh            # ~2.5 minutes after the release build on a 2-core machine
#
# Writes a Markdown table to stdout and to benches/results/server_bench.md. Knobs (environment):
#   DURATION=5             measured seconds per row (plus 1 s warm-up)
#   CONCURRENCY="1 8 32 128"
#   BATCHING_ARGS="--enable_batching"   server flags of the batching rows
#   LSTM_DYNAMIC_DIM=16    size of the LSTM's dynamic non-batch dimensions (sequence length)
#   PIN=1                  server on CPU 0, load generator on CPU 1 (needs taskset and 2+ CPUs)
#   ONLY="mnist_cnn tiny_relu"   run only these models
#   TF_BATCHING_PARAMS=FILE  also run the batching rows with this --batching_parameters_file
#   V2=1                   also run the no-batching rows over the v2 protocol's gRPC ModelInfer
#                          (raw contents, as tritonclient sends), next to TF Serving's Predict
# Needs curl and jq. Server logs go to target/bench-logs/.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
CONCURRENCY=${CONCURRENCY:-"1 8 32 128"}
BATCHING_ARGS=${BATCHING_ARGS:---enable_batching}
LSTM_DYNAMIC_DIM=${LSTM_DYNAMIC_DIM:-16}
PIN=${PIN:-0}
ONLY=${ONLY:-}
TF_BATCHING_PARAMS=${TF_BATCHING_PARAMS:-}
V2=${V2:-1}
SERVER_CPU=()
BENCH_CPU=()
if [[ "$PIN" == 1 ]]; then
    command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]] || { echo "server_bench.sh: PIN=1 needs taskset and 2 CPUs" >&2; exit 1; }
    SERVER_CPU=(taskset -c 0)
    BENCH_CPU=(taskset -c 1)
fi
RESULTS=benches/results/server_bench.md
LOGS=target/bench-logs
SERVER=target/release/candle-serving
BENCH=target/release/candle-serving-bench

for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "server_bench.sh: needs $tool" >&2; exit 1; }
done

echo "building release binaries..." >&2
cargo build --release --bins >&2
mkdir -p "$LOGS" "$(dirname "$RESULTS")"

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT

# A loopback port nothing listens on (bash's /dev/tcp: a refused connect means free).
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# start_server LOGNAME MODEL BASE_PATH [extra flags...]: sets SERVER_PID, GRPC_PORT; waits for
# readiness.
start_server() {
    local log=$1 model=$2 base=$3
    shift 3
    GRPC_PORT=$(free_port)
    local rest_port
    rest_port=$(free_port)
    while [[ "$rest_port" == "$GRPC_PORT" ]]; do rest_port=$(free_port); done
    "${SERVER_CPU[@]}" "$SERVER" --port="$GRPC_PORT" --rest_api_port="$rest_port" --model_name="$model" \
        --model_base_path="$base" "$@" >"$LOGS/$log.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        if curl -sf "http://127.0.0.1:$rest_port/v1/health/ready" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $LOGS/$log.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "server not ready after 60 s; see $LOGS/$log.log" >&2
    exit 1
}

# bench LABEL MODEL [bench flags...]: one table row from one JSON run.
bench() {
    local label=$1 model=$2
    shift 2
    "${BENCH_CPU[@]}" "$BENCH" --target "127.0.0.1:$GRPC_PORT" --model "$model" --server-pid "$SERVER_PID" \
        --duration "$DURATION" --warmup 1 --json "$@" |
        jq -r --arg mode "$label" --arg model "$model" '
            def ms: if . == null then "-" else (. * 100 | round / 100 | tostring) end;
            def num: if . == null then "-" else (. | round | tostring) end;
            "| \($model) | \($mode) | \(.concurrency) | \(.batch) | \(.requests_per_s | num) | \(.items_per_s | num) | "
            + "\(.latency_ms.p50 | ms) | \(.latency_ms.p90 | ms) | \(.latency_ms.p99 | ms) | \(.latency_ms.max | ms) | "
            + "\(if .failed == 0 then "0" else "\(.failed) (" + ([.errors[] | "\(.key) \(.count)"] | join(", ")) + ")" end) | "
            + "\(.server_cpu.us_per_request // "-") | \(.client_cpu.us_per_request // "-") |"'
}

HEADER="| model | mode | concurrency | batch | req/s | items/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | client CPU µs/req |
|---|---|---|---|---|---|---|---|---|---|---|---|---|"

BATCHING_OK=1
if ! "$SERVER" --help | grep -q -- '--enable_batching'; then
    BATCHING_OK=0
fi
# name:base_path. tiny_relu (Relu on [N, 4]) has negligible compute, so its CPU per request is
# the serving path's own overhead.
MODELS=(mnist_cnn:models/mnist_cnn)
LSTM=$(find models -mindepth 1 -maxdepth 1 -type d -iname '*lstm*' -printf '%f\n' | sort | head -n 1)
[[ -n "$LSTM" ]] && MODELS+=("$LSTM:models/$LSTM")
TINY=tests/fixtures/tiny_relu
[[ -d "$TINY" ]] && MODELS+=("tiny_relu:$TINY")

ROWS=()
OFFLINE=""
for entry in "${MODELS[@]}"; do
    model=${entry%%:*} base=${entry#*:}
    if [[ -n "$ONLY" && " $ONLY " != *" $model "* ]]; then
        continue
    fi
    extra=()
    [[ "$model" == "$LSTM" ]] && extra=(--dynamic-dim "$LSTM_DYNAMIC_DIM")
    echo "== $model, no batching" >&2
    start_server "$model-nobatch" "$model" "$base"
    for c in $CONCURRENCY; do
        ROWS+=("$(bench "no batching" "$model" --concurrency "$c" "${extra[@]}")")
        if [[ "$V2" == 1 ]]; then
            ROWS+=("$(bench "no batching, v2 gRPC" "$model" --concurrency "$c" --protocol grpc-v2 "${extra[@]}")")
        fi
    done
    if [[ "$model" != tiny_relu ]]; then
        OFFLINE+="$(bench "offline batch-32 reference" "$model" --concurrency 1 --batch 32 "${extra[@]}")"$'\n'
    fi
    stop_server
    if [[ $BATCHING_OK == 1 ]]; then
        echo "== $model, batching ($BATCHING_ARGS)" >&2
        # shellcheck disable=SC2086 # BATCHING_ARGS is a list of flags
        start_server "$model-batch" "$model" "$base" $BATCHING_ARGS
        for c in $CONCURRENCY; do
            ROWS+=("$(bench "batching" "$model" --concurrency "$c" "${extra[@]}")")
        done
        stop_server
        if [[ -n "$TF_BATCHING_PARAMS" && "$model" != tiny_relu ]]; then
            echo "== $model, batching with $TF_BATCHING_PARAMS" >&2
            start_server "$model-batch-tf" "$model" "$base" --enable_batching --batching_parameters_file="$TF_BATCHING_PARAMS"
            for c in $CONCURRENCY; do
                ROWS+=("$(bench "batching (TF params)" "$model" --concurrency "$c" "${extra[@]}")")
            done
            stop_server
        fi
    fi
done

{
    echo "# Server benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)'),"
    echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), release build."
    echo
    echo "$HEADER"
    printf '%s\n' "${ROWS[@]}"
    printf '%s' "$OFFLINE"
    echo
    echo "Notes:"
    if [[ "$PIN" == 1 ]]; then
        echo "- Pinned (PIN=1): the server runs on CPU 0 only (so it has 1 compute thread and 1 I/O thread), the load generator on CPU 1."
    fi
    if [[ "$V2" == 1 ]]; then
        echo "- \"v2 gRPC\" rows: the same load over the KServe v2 protocol (\`inference.GRPCInferenceService/ModelInfer\`, raw_input_contents), on the same server right after its TF Serving row."
    fi
    echo "- Load: \`candle-serving-bench\`, gRPC Predict, closed loop (each of *concurrency* workers keeps one request in flight), one HTTP/2 connection, random float inputs shaped by GetModelMetadata, batch 1 unless stated; ${DURATION} s measured after 1 s of uncounted warm-up."
    echo "- req/s and items/s count successful requests (items = requests × batch). Latency percentiles are exact (every latency kept and sorted) over successful requests."
    echo "- server CPU µs/req = (utime + stime of the server process from /proc/PID/stat, end minus start of the measured phase) / requests sent; /proc resolution is 10 ms, so short low-rate rows are coarse. client CPU is the load generator's own; both run on the same $(nproc) cores, so at high concurrency they compete and the throughput is a lower bound for the server alone."
    echo "- \"offline batch-32 reference\" is the engine's batch-32 throughput measured through the no-batching server (one request of 32 rows at a time, concurrency 1): items/s is the reference for what dynamic batching can reach. It is not a separate in-process benchmark."
    if [[ $BATCHING_OK == 1 ]]; then
        echo "- batching rows: server started with \`$BATCHING_ARGS\`."
        if [[ -n "$TF_BATCHING_PARAMS" ]]; then
            echo "- batching (TF params) rows: \`--enable_batching --batching_parameters_file\` with: $(tr '\n' ' ' < "$TF_BATCHING_PARAMS")"
        fi
    else
        echo "- batching rows skipped: this build of candle-serving does not accept --enable_batching."
    fi
    if [[ -z "$LSTM" ]]; then
        echo "- LSTM rows skipped: models/ has no LSTM model yet."
    else
        echo "- $LSTM: dynamic non-batch dimensions set to $LSTM_DYNAMIC_DIM."
    fi
    if [[ -d "$TINY" ]]; then
        echo "- tiny_relu ($TINY, Relu on float32 [1, 4]) has negligible compute: its server CPU µs/req is the serving path's overhead (gRPC, validation, conversion, queueing), the figure for the <= 20 µs/request target. mnist_cnn's includes the CNN's compute."
    fi
} | tee "$RESULTS"
