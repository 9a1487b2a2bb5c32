# Helpers the side-by-side benchmark scripts share (sourced, not run): pinning, ports,
# medians and the machine line every table starts with.

SERVER_CPU=() BENCH_CPU=()
if [[ "${PIN:-0}" == 1 ]]; then
    command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]] || { echo "PIN=1 needs taskset and 2 CPUs" >&2; exit 1; }
    SERVER_CPU=(taskset -c 0) BENCH_CPU=(taskset -c 1)
fi

# A random loopback port (collisions are retried by the caller's readiness wait failing).
port() { echo $((20000 + RANDOM % 40000)); }

# Waits until the REST port answers /v1/health/ready.
wait_ready() {
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$1/v1/health/ready" >/dev/null && return 0; sleep 0.1; done
    echo "no server ready on REST port $1" >&2
    exit 1
}

# The server's CPU per request under one closed-loop run: PORT PID MODEL [bench flags...].
server_cpu() {
    local port=$1 pid=$2 model=$3
    shift 3
    "${BENCH_CPU[@]}" target/release/candle-serving-bench --target "127.0.0.1:$port" --model "$model" --server-pid "$pid" \
        --duration "$DURATION" --warmup 1 --json "$@" | jq '.server_cpu.us_per_request'
}

# The median of the numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# "<date>, commit <sha>, <n> cores (<lscpu model name>)".
machine() {
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)'), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))"
}
