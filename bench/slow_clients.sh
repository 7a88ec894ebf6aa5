#!/usr/bin/env bash
# Memory under many slow clients (issue 10, item 13): N connections each stuck
# midway through a 30 KiB request header, against one streamgate on loopback.
# Prints streamgate's resident memory (VmRSS, and the peak VmHWM) before the
# clients connect, while they are stuck, and some seconds after they left.
#
#   bench/slow_clients.sh            # N = 100 300 500
#   bench/slow_clients.sh 1000       # any list of N
#
# Each N gets a fresh streamgate. Knobs (environment): SG_BIN (default
# $CARGO_TARGET_DIR or target/, release/streamgate, built if missing), SLOW_SENT_KIB (how much of the
# header each client sends before it stalls, 15: midway), SLOW_HOLD (seconds
# the clients stay stuck, 5), SLOW_AFTER (seconds to wait after they leave,
# 10), SLOW_MAX_CONNECTIONS (http.max_downstream_connections; streamgate's
# default when unset), SLOW_PORT_BASE (18180: uses it and the next one). It only targets
# 127.0.0.1 and stops by itself (every wait is bounded; the clients time out
# too).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SG_BIN=${SG_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/streamgate}
SENT_KIB=${SLOW_SENT_KIB:-15}
HOLD=${SLOW_HOLD:-5}
AFTER=${SLOW_AFTER:-10}
PORT=${SLOW_PORT_BASE:-18180}
ADMIN_PORT=$((PORT + 1))
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(100 300 500)

die() { printf 'slow_clients: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$SG_BIN" ]; then
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi
command -v python3 >/dev/null || die "python3 is needed for the clients"
# One descriptor per client, in this shell's children and in streamgate.
ulimit -n 8192 2>/dev/null || true

TMP=$(mktemp -d /tmp/streamgate-slow.XXXXXX)
SG_PID=""
cleanup() {
    if [ -n "$SG_PID" ]; then kill "$SG_PID" 2>/dev/null || true; wait "$SG_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# The clients would be refused by a header timeout before they are measured:
# 60 s keeps them stuck for the whole hold (the default is 10 s).
cat >"$TMP/streamgate.yaml" <<EOF
listen: ["127.0.0.1:$PORT"]
upstreams:
  app: { address: "127.0.0.1:9", connect_timeout: 1s, read_timeout: 1s }
stream:
  api_key: bench-key
  api_secret: bench-secret-not-a-real-stream-secret
admin: { listen: "127.0.0.1:$ADMIN_PORT" }
access_log: { format: off }
http: { request_headers_timeout: 60s${SLOW_MAX_CONNECTIONS:+, max_downstream_connections: $SLOW_MAX_CONNECTIONS} }
server: { threads: 2, pid_file: "$TMP/streamgate.pid", upgrade_sock: "$TMP/upgrade.sock" }
EOF

# "VmRSS VmHWM" of the process, in KiB.
memory() {
    awk '/^VmRSS:/ {rss=$2} /^VmHWM:/ {hwm=$2} END {print rss, hwm}' "/proc/$SG_PID/status"
}

report() {
    local n=$1 phase=$2 rss hwm
    read -r rss hwm < <(memory)
    awk -v n="$n" -v phase="$phase" -v rss="$rss" -v hwm="$hwm" \
        'BEGIN { printf "| %5s | %-26s | %8.1f | %8.1f |\n", n, phase, rss / 1024, hwm / 1024 }'
}

wait_for_port() {
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "streamgate did not listen on :$1"
}

# Opens N connections, sends each the first SENT_KIB KiB of a request whose
# header is 30 KiB (or 1 KiB more than is sent), keeps them for HOLD seconds, then closes them all. Prints "ready"
# once all are connected and have sent, then how many streamgate answered or
# closed before they left (0 unless a limit refused them).
CLIENTS=$(cat <<'PY'
import socket, sys, time
n, port, hold, sent = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
fill = max(30, sent + 1) * 1024
header = b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-Fill: " + b"a" * fill + b"\r\n\r\n"
half = header[: sent * 1024]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(half)
    socks.append(s)
print("ready", flush=True)
time.sleep(hold)
early = 0
for s in socks:
    s.setblocking(False)
    try:
        early += s.recv(1) != b"x"
    except BlockingIOError:
        pass
    except OSError:
        early += 1
    s.close()
print(f"left early={early}", flush=True)
PY
)

printf '| %5s | %-26s | %8s | %8s |\n' N phase "RSS MiB" "HWM MiB"
printf '| ----: | :------------------------- | -------: | -------: |\n'
for n in "${COUNTS[@]}"; do
    "$SG_BIN" -c "$TMP/streamgate.yaml" >"$TMP/stdout.log" 2>"$TMP/stderr.log" &
    SG_PID=$!
    wait_for_port "$PORT"
    sleep 1
    report "$n" "before"
    python3 -c "$CLIENTS" "$n" "$PORT" "$HOLD" "$SENT_KIB" >"$TMP/clients.log" &
    clients=$!
    for _ in $(seq 300); do grep -q ready "$TMP/clients.log" && break; sleep 0.1; done
    grep -q ready "$TMP/clients.log" || die "the clients did not connect"
    sleep $((HOLD / 2))
    report "$n" "clients stuck"
    wait "$clients" || die "the clients failed"
    report "$n" "gone ($(sed -n 's/^left early=//p' "$TMP/clients.log") answered early)"
    sleep "$AFTER"
    report "$n" "${AFTER}s after"
    kill -INT "$SG_PID"; wait "$SG_PID" 2>/dev/null || true
    SG_PID=""
done
