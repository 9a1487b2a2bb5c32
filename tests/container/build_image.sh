#!/usr/bin/env bash
# Builds the CPU image from Dockerfile on a machine with no container registry, as
# tests/container_image.rs does (see README, "Build and run the image"):
#   1. podman's configuration for these machines, tests/container/containers.conf (runtime runc,
#      no default ulimits); export CONTAINERS_CONF with its path to `podman run` the same way.
#   2. The runtime base image from Debian's packages: a bookworm rootfs with libc6, libgcc-s1 and
#      dash (and what they depend on) but no docs, translations or gconv modules, made by
#      mmdebstrap and imported by `podman import`. Bookworm, because the binary is built on this
#      (bookworm) host and linked against its glibc. Kept between runs; rm it with
#      `podman rmi localhost/candle-serving-base:bookworm`.
#   3. The release binary (`cargo build --release`, a no-op when up to date), its debug line
#      tables dropped as Dockerfile's own build does, in <target>/container/bin.
#   4. `podman build --target prebuilt`: Dockerfile's stage that takes the binary from the build
#      context `bin` instead of compiling it in the `build` stage (which podman skips, so
#      RUST_IMAGE is never pulled). Nothing is pulled: --pull=never.
#   5. With --check-cuda: Dockerfile.cuda up to the stages that need the CUDA images, i.e. the
#      whole file parsed and its `runtime` stage built on the base from 2 as a stand-in for
#      CUDA_RUNTIME_IMAGE (tagged TAG-cuda-runtime; the caller removes it).
#
# Usage: tests/container/build_image.sh [--check-cuda] [TAG]   (TAG default candle-serving:0.1.0)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

check_cuda=false
if [[ ${1:-} == --check-cuda ]]; then
  check_cuda=true
  shift
fi
tag=${1:-candle-serving:0.1.0}
base=localhost/candle-serving-base:bookworm

for tool in podman buildah runc mmdebstrap; do
  if ! command -v "$tool" >/dev/null; then
    echo "build_image.sh: $tool is missing; run tests/container/setup.sh (installs Debian's podman, buildah, runc, mmdebstrap)" >&2
    exit 1
  fi
done

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
work=$target_dir/container
mkdir -p "$work/bin"

# 1.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/tests/container/containers.conf}

# 2.
if ! podman image exists "$base"; then
  echo "build_image.sh: making $base with mmdebstrap" >&2
  rm -f "$work/base.tar"
  mmdebstrap --quiet --variant=extract --include=libc6,libgcc-s1,dash \
    --extract-hook='rm -rf "$1"/usr/share/doc "$1"/usr/share/locale "$1"/usr/share/man "$1"/usr/lib/x86_64-linux-gnu/gconv' \
    bookworm "$work/base.tar"
  podman import --quiet "$work/base.tar" "$base" >/dev/null
  rm -f "$work/base.tar"
fi

# 3.
cargo build --release --locked --bin candle-serving
strip --strip-debug -o "$work/bin/candle-serving" "$target_dir/release/candle-serving"

# 4.
podman build --pull=never --target prebuilt --build-context "bin=$work/bin" \
  --build-arg "RUNTIME_IMAGE=$base" -t "$tag" .

# 5.
if $check_cuda; then
  podman build --pull=never -f Dockerfile.cuda --target runtime \
    --build-arg "CUDA_RUNTIME_IMAGE=$base" -t "$tag-cuda-runtime" .
fi
