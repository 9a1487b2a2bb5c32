# syntax=docker/dockerfile:1
# CPU image, a drop-in for tensorflow/serving:
#   docker build -t candle-serving:0.1.0 .
#   docker run -p 8500:8500 -p 8501:8501 -v "$PWD/models/mnist_cnn:/models/mnist_cnn:ro" \
#     -e MODEL_NAME=mnist_cnn --read-only candle-serving:0.1.0
# Two ways to get the server binary, one per final stage:
#   (default, last stage)  compiled in the `build` stage from RUST_IMAGE;
#   --target prebuilt      a binary built outside, given as the build context `bin` (a directory
#                          holding `candle-serving`): `--build-context bin=DIR`. For machines with
#                          no registry to pull RUST_IMAGE from; the binary must be linked against
#                          the runtime base's glibc (bookworm). tests/container/build_image.sh
#                          builds the image this way and tests/container_image.rs runs it.
# Either way the unused stages are skipped. Images are fully qualified so podman needs no
# short-name resolution.
ARG RUST_IMAGE=docker.io/library/rust:1.89-bookworm
# Needs only glibc, libgcc_s and a /bin/sh for the entrypoint: the runtime stage runs no
# commands, so a base without coreutils works (the test uses a bookworm rootfs of libc6,
# libgcc-s1 and dash).
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Drop the line tables Cargo.toml keeps for release builds: 90 MB -> 14 MB; symbols stay, so
# backtraces still name functions. Set in both steps so the dependency layer stays valid.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
# 1. Dependencies: built against a stub for every target Cargo.toml declares (`path = "src/…"`),
#    so this layer is reused until Cargo.toml, Cargo.lock, build.rs or the protos change.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
RUN for f in $(sed -n 's/^path = "\(src\/.*\.rs\)"$/\1/p' Cargo.toml); do \
      mkdir -p "$(dirname "$f")" && echo 'fn main() {}' >"$f"; \
    done \
 && cargo build --release --locked \
 && rm -rf src
# 2. The server (touch: the stubs' artefacts must not look newer than the real sources).
COPY src ./src
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin candle-serving

# Everything but the server binary. No RUN: the base needs no shell utilities at build time.
FROM ${RUNTIME_IMAGE} AS runtime
# Same variables and defaults as tensorflow/serving; the entrypoint serves
# $MODEL_BASE_PATH/$MODEL_NAME unless the args say otherwise.
ENV MODEL_BASE_PATH=/models \
    MODEL_NAME=model
COPY --chmod=0755 docker/entrypoint.sh /usr/bin/tf_serving_entrypoint.sh
# Manifests that set `command: [tensorflow_model_server]` keep working.
COPY --chmod=0755 docker/tensorflow_model_server /usr/bin/tensorflow_model_server
# Models are mounted under /models (WORKDIR creates it, root-owned, without a shell). Read-only
# is fine: the server writes nothing, so --read-only / readOnlyRootFilesystem work.
WORKDIR /models
WORKDIR /
USER 65532:65532
EXPOSE 8500 8501
ENTRYPOINT ["/usr/bin/tf_serving_entrypoint.sh"]

FROM runtime AS prebuilt
COPY --from=bin --chmod=0755 candle-serving /usr/bin/candle-serving

FROM runtime
COPY --from=build /src/target/release/candle-serving /usr/bin/candle-serving
