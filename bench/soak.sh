#!/usr/bin/env bash
# `make soak`: ten minutes of mixed traffic through a streamgate this script
# starts itself, on loopback, to see that nothing grows without bound (issue 10,
# item 14). Not a test and not a benchmark: it measures growth, not throughput.
#
# Processes, all on 127.0.0.1:
#   the fake app   bench/soak/upstream.py    asyncio: /bytes/N, /echo, /reset, /ws
#   streamgate     bench/soak/streamgate-soak.yaml, threads: 1, access log off
#   the load       bench/soak/soak.py        asyncio workers per traffic kind,
#                                            samples, verdict, report
# The report (markdown) goes to stdout and to bench/results/soak-latest.md; the
# exit status is soak.py's: 0 the verdict holds, 1 it does not, 2 no soak ran.
#
# Knobs (environment): SOAK_SECONDS (600; e.g. 60 to try it), SOAK_WORKERS
# (e.g. "tokens=8,small=8,large=2,ws=4,slow=20,reset=1"), SOAK_PORT_BASE (18180:
# uses 18180-18182), SOAK_BUILD (1: cargo build --release first; 0 uses the
# binary as it is).
set -euo pipefail

SOAK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/soak
ROOT=$(dirname "$(dirname "$SOAK_DIR")")
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
cd "$ROOT"

SECONDS_OF_LOAD=${SOAK_SECONDS:-600}
PORT_BASE=${SOAK_PORT_BASE:-18180}
BUILD=${SOAK_BUILD:-1}
SG_PORT=$PORT_BASE
UPSTREAM_PORT=$((PORT_BASE + 1))
ADMIN_PORT=$((PORT_BASE + 2))
# The app closes idle keep-alive connections after this (Node's default is 5 s);
# the quiesced samples wait for it, so that streamgate's idle pool drains.
APP_IDLE=4

SG_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/streamgate
RESULTS=$ROOT/bench/results/soak-latest.md

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'soak: %s\n' "$*" >&2; exit 2; }

[[ "$SECONDS_OF_LOAD" =~ ^[0-9]+$ ]] && [ "$SECONDS_OF_LOAD" -ge 10 ] ||
    die "SOAK_SECONDS must be a whole number of seconds, at least 10 (got '$SECONDS_OF_LOAD')"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# ---------------------------------------------------------------------------
# Cleanup: every process this script starts is recorded in PIDS and stopped,
# by its pid, on any exit, including errors and Ctrl-C.
# ---------------------------------------------------------------------------
begin_run streamgate-soak

# ---------------------------------------------------------------------------
# 1. Install what is missing: python3 (standard library only) from Debian.
# ---------------------------------------------------------------------------
if ! command -v python3 >/dev/null; then
    log "installing python3 from Debian"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "python3 >= 3.11 is needed (asyncio.timeout); found $(python3 --version 2>&1)"

# ---------------------------------------------------------------------------
# 2. Build streamgate and check the soak configuration.
# ---------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    cargo build --release >&2
fi
[ -x "$SG_BIN" ] || die "$SG_BIN is missing (run cargo build --release, or leave SOAK_BUILD unset)"

export SOAK_TMP=$TMP SOAK_SG_PORT=$SG_PORT SOAK_UPSTREAM_PORT=$UPSTREAM_PORT SOAK_ADMIN_PORT=$ADMIN_PORT
SG_CONFIG=$TMP/streamgate-soak.yaml
cp "$SOAK_DIR/streamgate-soak.yaml" "$SG_CONFIG"
"$SG_BIN" -t -c "$SG_CONFIG" >"$TMP/config-check.txt" 2>&1 ||
    die "bench/soak/streamgate-soak.yaml is invalid: $(cat "$TMP/config-check.txt")"

# ---------------------------------------------------------------------------
# 3. Start the app and streamgate.
# ---------------------------------------------------------------------------

for port in "$SG_PORT" "$UPSTREAM_PORT" "$ADMIN_PORT"; do
    port_in_use "$port" && die "127.0.0.1:$port is already in use (set SOAK_PORT_BASE to move all three ports)"
done


log "starting the fake app on :$UPSTREAM_PORT"
python3 "$SOAK_DIR/upstream.py" --port "$UPSTREAM_PORT" --idle-timeout "$APP_IDLE" >"$TMP/upstream.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
wait_for_port "$UPSTREAM_PID" "$UPSTREAM_PORT" "the fake app" "$TMP/upstream.log"

log "starting streamgate on :$SG_PORT (admin :$ADMIN_PORT)"
RUST_LOG=warn "$SG_BIN" -c "$SG_CONFIG" >"$TMP/streamgate.log" 2>&1 &
SG_PID=$!
PIDS+=("$SG_PID")
wait_for_port "$SG_PID" "$SG_PORT" streamgate "$TMP/streamgate.log"
wait_for_port "$SG_PID" "$ADMIN_PORT" "streamgate's admin listener" "$TMP/streamgate.log"

# ---------------------------------------------------------------------------
# 4. The soak. soak.py stops by itself; `timeout` is a backstop should it hang
#    (load + two quiesced samples + the final wait come to about 2 minutes more).
# ---------------------------------------------------------------------------
log "soak: ${SECONDS_OF_LOAD}s of load (report: ${RESULTS#"$ROOT"/})"
rc=0
timeout --signal=TERM --kill-after=10 $((SECONDS_OF_LOAD + 300)) \
    python3 "$SOAK_DIR/soak.py" --sg-port "$SG_PORT" --admin-port "$ADMIN_PORT" \
    --upstream-port "$UPSTREAM_PORT" --pid "$SG_PID" --seconds "$SECONDS_OF_LOAD" \
    --app-idle "$APP_IDLE" --report "$RESULTS" --sg-log "$TMP/streamgate.log" --root "$ROOT" \
    --binary "$SG_BIN" || rc=$?

kill -0 "$SG_PID" 2>/dev/null || { log "streamgate is no longer running; its log:"; tail -n 50 "$TMP/streamgate.log" >&2; rc=1; }
case $rc in
    0) log "verdict: PASS (written to ${RESULTS#"$ROOT"/})" ;;
    1) log "verdict: FAIL (written to ${RESULTS#"$ROOT"/})" ;;
    124) log "soak.py did not finish in time"; tail -n 50 "$TMP/streamgate.log" >&2 ;;
    *) log "no soak ran (exit $rc); streamgate's log:"; tail -n 50 "$TMP/streamgate.log" >&2 ;;
esac
exit "$rc"
