#!/usr/bin/env bash
# Renders the base and every overlay with `kubectl kustomize` and validates the result strictly
# (k8s/validate.py check). Installs what is missing: kubectl (Debian's kubernetes-client, whose
# kustomize v2 these kustomizations are kept compatible with) and kubernetes-validate (pinned in
# k8s/requirements.txt, in a venv under target/). Exits non-zero on any problem.
#
# Environment:
#   KUBECTL             kubectl to use (default: kubectl on PATH)
#   K8S_VERSIONS        Kubernetes versions to validate against (default: "1.30.0 1.37.0")
#   CANDLE_SERVING_BIN  server binary; when set (or target/debug/candle-serving exists), every
#                       flag in the manifests must appear in its --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=target/k8s-venv
OUT=target/k8s-rendered
KUBECTL=${KUBECTL:-kubectl}
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}

if ! command -v "$KUBECTL" >/dev/null; then
  echo "validate.sh: no kubectl; installing Debian's kubernetes-client" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
  KUBECTL=kubectl
fi

# Reinstall the venv whenever k8s/requirements.txt changes.
if ! cmp -s k8s/requirements.txt "$VENV/requirements.installed"; then
  echo "validate.sh: installing kubernetes-validate into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r k8s/requirements.txt
  cp k8s/requirements.txt "$VENV/requirements.installed"
fi

known=()
bin=${CANDLE_SERVING_BIN:-target/debug/candle-serving}
if [ -x "$bin" ]; then
  "$bin" --help >"$VENV/help.txt"
  known=(--known-flags "$VENV/help.txt")
else
  echo "validate.sh: $bin not built; flags in the manifests are not checked against --help" >&2
fi

rm -rf "$OUT"
mkdir -p "$OUT"
targets=(k8s/base k8s/overlays/*/)
status=0
for dir in "${targets[@]}"; do
  dir=${dir%/}
  name=$(basename "$dir")
  # kustomize v5 warns that `bases`/`patchesStrategicMerge` are deprecated; they are kept on
  # purpose (kustomize v2 knows nothing else), so only those warnings are dropped.
  if ! "$KUBECTL" kustomize "$dir" >"$OUT/$name.yaml" 2>"$OUT/$name.err"; then
    echo "FAIL $name: kubectl kustomize $dir"
    sed 's/^/     /' "$OUT/$name.err"
    status=1
    continue
  fi
  grep -v -e "^# Warning: '\(bases\|patchesStrategicMerge\)' is deprecated" -e '^$' "$OUT/$name.err" >&2 || true
done

versions=()
for v in $K8S_VERSIONS; do versions+=(--kubernetes-version "$v"); done
rendered=("$OUT"/*.yaml)
"$VENV/bin/python" k8s/validate.py check "${versions[@]}" "${known[@]}" "${rendered[@]}" || status=1
"$VENV/bin/python" k8s/validate.py describe "$OUT/base.yaml" >"$OUT/base.json" || status=1

# sed, not head: head would exit early and kill kubectl with SIGPIPE, failing the pipeline.
kubectl_version=$("$KUBECTL" version --client 2>/dev/null | sed -nE '1{s/.*GitVersion:"([^"]+)".*/\1/; s/^Client Version: //; p;}') || true
if [ "$status" = 0 ]; then
  echo "validate.sh: ${#rendered[@]} renders valid for Kubernetes $K8S_VERSIONS ($kubectl_version); description in $OUT/base.json"
else
  echo "validate.sh: FAILED (see above)"
fi
exit "$status"
