#!/usr/bin/env bash
# Server CPU per request of the real server (tiny_relu, no batching) next to the gRPC stack's
# floor (benches/grpc_floor.rs: tonic echoing Predict, nothing else), same load, same pinning,
# alternating ROUNDS times per concurrency; prints medians and the share above the floor.
#
#   PIN=1 benches/grpc_floor.sh     # ~2.5 minutes with the defaults, after the release builds
#
# Knobs: CONCURRENCY="8 32 128" ROUNDS=3 DURATION=5
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${CONCURRENCY:-"8 32 128"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
# shellcheck source=benches/side_by_side.sh
source benches/side_by_side.sh
cargo build --release --bins >&2
FLOOR=$(cargo bench --bench grpc_floor --no-run --message-format=json 2>/dev/null | jq -r 'select(.target.name == "grpc_floor" and .executable != null) | .executable')
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
REAL=$(port) REST=$(port) BARE=$(port)
"${SERVER_CPU[@]}" target/release/candle-serving --port="$REAL" --rest_api_port="$REST" --model_name=tiny_relu \
    --model_base_path=tests/fixtures/tiny_relu >/dev/null 2>&1 &
REAL_PID=$!
PIDS+=("$REAL_PID")
"${SERVER_CPU[@]}" "$FLOOR" "127.0.0.1:$BARE" >/dev/null 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_ready "$REST"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$BARE") 2>/dev/null && break; sleep 0.1; done
cpu() { server_cpu "$1" "$2" tiny_relu --concurrency "$3"; } # PORT PID CONCURRENCY
echo "$(machine), ${ROUNDS} alternating rounds of ${DURATION} s"
echo
echo "| concurrency | tonic floor µs/req (median) | candle-serving µs/req (median) | above the floor |"
echo "|---|---|---|---|"
for c in $CONCURRENCY; do
    floor=() real=()
    for _ in $(seq 1 "$ROUNDS"); do
        floor+=("$(cpu "$BARE" "$BARE_PID" "$c")")
        real+=("$(cpu "$REAL" "$REAL_PID" "$c")")
    done
    f=$(printf '%s\n' "${floor[@]}" | median) r=$(printf '%s\n' "${real[@]}" | median)
    echo "| $c | $f (${floor[*]}) | $r (${real[*]}) | $(awk -v a="$r" -v b="$f" 'BEGIN {printf "+%.1f µs", a - b}') |"
done
