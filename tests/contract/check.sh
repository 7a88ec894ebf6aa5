#!/usr/bin/env bash
# make contract-check: the published contracts, checked with independent tools.
#
#   1. every shipped configuration (conf/*.yaml, demo/streamgate.yaml, the files
#      deploy/kubernetes's ConfigMaps are generated from) carries the editor's
#      `# yaml-language-server: $schema=` line pointing at
#      conf/streamgate.schema.json, and validates against that schema with
#      check-jsonschema; the fixtures of tests/fixtures/schema/ are accepted (or
#      refused) by the schema and by `streamgate -t` alike;
#   2. schemathesis generates requests from the OpenAPI document a running
#      streamgate serves at /openapi.json (every identity mode, on free loopback
#      ports) and checks every answer against it: status, headers, body, no 5xx.
#
# Installs what is missing: python3-venv (Debian) and the pinned tools of
# tests/contract/requirements.txt into tests/contract/.venv. Exits non-zero when
# any check failed.
set -euo pipefail

cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1
VENV=tests/contract/.venv
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
say() { echo "contract-check: $*"; }

apt_install() {
    say "apt-get install $*"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

command -v python3 >/dev/null || apt_install python3 python3-venv
want=$(sha256sum tests/contract/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    say "installing tests/contract/requirements.txt into $VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/contract/requirements.txt
    echo "$want" >"$VENV/.requirements.sha256"
fi

cargo build --quiet --bin streamgate
exec "$VENV/bin/python" tests/contract/check.py \
    --streamgate "${CARGO_TARGET_DIR:-target}/debug/streamgate" \
    --bin "$VENV/bin"
