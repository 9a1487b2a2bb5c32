#!/usr/bin/env bash
# Prerequisites of tests/container_image.rs, installed only when missing (idempotent):
#   - Debian's podman, buildah, runc and mmdebstrap;
#   - the release server binary (`cargo build --release`; a no-op when it is up to date).
# Debian 12 (root) assumed, like .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
for tool in podman buildah runc mmdebstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "setup.sh: installing ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc mmdebstrap >/dev/null
fi

# Plain release profile (shared with benches/server_bench.sh); build_image.sh drops the debug
# line tables when it copies the binary, as the Dockerfile's own build does.
cargo build --release --locked --bin candle-serving
