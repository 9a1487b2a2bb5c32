#!/usr/bin/env bash
# Server CPU per request of the KServe v2 gRPC protocol against TF Serving's Predict, on one
# server, alternating the two protocols ROUNDS times per concurrency so that the VM's drift hits
# both alike; prints the median of each and their ratio. Uses the release binaries that
# server_bench.sh builds.
#
#   PIN=1 benches/protocol_overhead.sh      # ~2 minutes with the defaults
#
# Knobs: MODEL=tiny_relu BASE=tests/fixtures/tiny_relu CONCURRENCY="8 32 128" ROUNDS=3 DURATION=5
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tiny_relu}
BASE=${BASE:-tests/fixtures/tiny_relu}
CONCURRENCY=${CONCURRENCY:-"8 32 128"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
# shellcheck source=benches/side_by_side.sh
source benches/side_by_side.sh
cargo build --release --bins >&2
GRPC=$(port) REST=$(port)
"${SERVER_CPU[@]}" target/release/candle-serving --port="$GRPC" --rest_api_port="$REST" --model_name="$MODEL" \
    --model_base_path="$BASE" >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
wait_ready "$REST"
cpu() { server_cpu "$GRPC" "$SERVER" "$MODEL" --concurrency "$1" --protocol "$2"; } # CONCURRENCY PROTOCOL
echo "$(machine), $MODEL, ${ROUNDS} alternating rounds of ${DURATION} s"
echo
echo "| concurrency | TF Predict µs/req (median) | v2 ModelInfer µs/req (median) | v2 / TF |"
echo "|---|---|---|---|"
for c in $CONCURRENCY; do
    tf=() v2=()
    for _ in $(seq 1 "$ROUNDS"); do
        tf+=("$(cpu "$c" grpc)")
        v2+=("$(cpu "$c" grpc-v2)")
    done
    t=$(printf '%s\n' "${tf[@]}" | median) v=$(printf '%s\n' "${v2[@]}" | median)
    echo "| $c | $t (${tf[*]}) | $v (${v2[*]}) | $(awk -v a="$v" -v b="$t" 'BEGIN {printf "%.2f", a / b}') |"
done
