#!/usr/bin/env bash
# The README's test command. On a fresh Debian machine it installs what the tests need, then runs
# every check:
#   1. Debian packages the tests call: python3-venv (official-client and ONNX venvs), openssl and
#      curl (TLS tests), prometheus (a real scrape), podman/buildah/runc/mmdebstrap and the
#      release binary (the container image test; tests/container/setup.sh);
#   2. `cargo test`: unit, integration, official Python client, ONNX conformance, TLS, connection
#      hardening, Kubernetes manifests, the container image, cargo deny;
#   3. every fuzz target for FUZZ_SECONDS each (default 60; 0 skips), plus the saved crashes.
#      Fuzzing runs even when a test failed (the exit status is the first failure's), so one run
#      reports both.
# Each step is skipped only when what it installs is already there; a missing tool is installed,
# never silently skipped. Extra arguments go to `cargo test` (e.g. `bash tests/run.sh --test tls`
# runs one test file and no fuzzing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sudo=()
if [ "$(id -u)" != 0 ]; then
  sudo=(sudo)
fi

packages=()
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3 python3-venv)
command -v openssl >/dev/null || packages+=(openssl)
command -v curl >/dev/null || packages+=(curl)
command -v prometheus >/dev/null || packages+=(prometheus)
if ((${#packages[@]})); then
  echo "run.sh: installing ${packages[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
fi

bash tests/container/setup.sh

cargo --version
python3 --version
df -h . | tail -n 1 | awk '{print "run.sh: disk free before the tests: " $4}'
status=0
cargo test --no-fail-fast "$@" || status=$?

if (($# == 0)); then
  df -h . | tail -n 1 | awk '{print "run.sh: disk free after the tests: " $4}'
  # CI sets this (.ci/run): the debug build is not read again, and the fuzz build needs the room.
  if [ -n "${FREE_DISK_BEFORE_FUZZ:-}" ]; then
    rm -rf target/debug
    df -h . | tail -n 1 | awk '{print "run.sh: disk free before fuzzing: " $4}'
  fi
  bash tests/fuzz/run.sh "${FUZZ_SECONDS:-60}" || { rc=$?; ((status)) || status=$rc; }
fi
exit "$status"
