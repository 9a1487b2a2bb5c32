#!/usr/bin/env bash
# Fuzzes candle-serving's input parsers and model importer with cargo-fuzz (libFuzzer).
#
#   tests/fuzz/run.sh [seconds_per_target] [target...]
#
# Builds every target once, replays the kept crash inputs (tests/fuzz/regressions/<target>/),
# then runs each target for seconds_per_target (default 60) on a corpus seeded from the
# repository's own models, fixtures and configs. Exits non-zero if any input crashes, panics,
# aborts, times out or allocates past the limits below; the input is left in
# tests/fuzz/artifacts/<target>/. Needs only the stable and nightly toolchains: cargo-fuzz is
# installed when missing.
#
# Environment: FUZZ_TARGET_DIR (build directory, default tests/fuzz/target), FUZZ_SANITIZER
# (none or address, default none: see the README's "Fuzzing" section for why).
set -euo pipefail

seconds=${1:-60}
shift || true
all_targets=(tensor_proto rest_json text_config tfrecord_warmup onnx_import)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

fuzz=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$fuzz/../.." && pwd)
target_dir=${FUZZ_TARGET_DIR:-$fuzz/target}
sanitizer=${FUZZ_SANITIZER:-none}

# One input may use this much memory in all (RSS) and in one allocation. The harness enforces
# the allocation limit itself as well (MAX_ALLOCATION in src/lib.rs), since libFuzzer's
# -malloc_limit_mb needs sanitizer hooks that a `-s none` build lacks.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=25)

started=$SECONDS
log() { printf '[fuzz %4ds] %s\n' "$((SECONDS - started))" "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

log "building ${#all_targets[@]} targets (sanitizer: $sanitizer)"
# Release with debug assertions: overflow checks turn a wrapped size computation into a crash.
# 16 codegen units instead of cargo-fuzz's 1 let both CI cores work on the big crates (candle).
(cd "$repo" && cargo +nightly fuzz build --fuzz-dir tests/fuzz -O --debug-assertions \
    --sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir")
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=$target_dir/$triple/release
log "build done"

# Seeds come from the repository at run time, so the committed corpus stays small.
seed() {
    local name=$1 dest=$fuzz/corpus/$1
    mkdir -p "$dest"
    cp -n "$fuzz/seeds/$name"/* "$dest/" 2>/dev/null || true
    local files=()
    case $name in
        onnx_import) mapfile -t files < <(find "$repo/models" "$repo/tests" -name '*.onnx' -not -path "$fuzz/*") ;;
        text_config) mapfile -t files < <(find "$repo/k8s" "$repo/tests" -name '*.config' -not -path "$fuzz/*") ;;
        tfrecord_warmup) mapfile -t files < <(find "$repo/models" "$repo/tests" -name 'tf_serving_warmup_requests' -not -path "$fuzz/*") ;;
        rest_json) mapfile -t files < <(find "$repo/tests" -name '*.json' -not -path "$fuzz/*") ;;
    esac
    for f in "${files[@]}"; do
        local rel=${f#"$repo"/}
        cp -n "$f" "$dest/${rel//\//_}"
    done
}

failed=()
for name in "${targets[@]}"; do
    bin=$bin_dir/$name
    mkdir -p "$fuzz/artifacts/$name"
    mapfile -t kept < <(find "$fuzz/regressions/$name" -type f -not -name .gitkeep | sort)
    if ((${#kept[@]})); then
        log "$name: replaying ${#kept[@]} regression inputs"
        if ! "$bin" "${limits[@]}" -artifact_prefix="$fuzz/artifacts/$name/" "${kept[@]}" >"$fuzz/artifacts/$name/replay.log" 2>&1; then
            tail -n 30 "$fuzz/artifacts/$name/replay.log"
            failed+=("$name (regression replay)")
            continue
        fi
    fi
    seed "$name"
    log "$name: fuzzing for ${seconds}s ($(find "$fuzz/corpus/$name" -type f | wc -l) corpus inputs)"
    if ! "$bin" "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$fuzz/artifacts/$name/" "$fuzz/corpus/$name" >"$fuzz/artifacts/$name/fuzz.log" 2>&1; then
        tail -n 40 "$fuzz/artifacts/$name/fuzz.log"
        failed+=("$name")
        continue
    fi
    grep -E '^stat::number_of_executed_units|^Done ' "$fuzz/artifacts/$name/fuzz.log" | sed "s/^/  $name: /" || true
done

# The closing line CI reads, in the plain `N passed, N failed` form.
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
    log "FAILED: ${failed[*]}"
    echo "Crashing inputs are in tests/fuzz/artifacts/<target>/. Once fixed, keep each one in"
    echo "tests/fuzz/regressions/<target>/ (tests/fuzz_regressions.rs replays them under cargo test)."
    exit 1
fi
log "all targets passed"
