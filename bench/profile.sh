#!/usr/bin/env bash
# `make bench-profile`: where a proxied request's CPU goes, streamgate against
# the bare Pingora floor (bench/pingora_floor.rs), counted rather than timed so
# that the other processes on the machine do not move the numbers (issue 12).
#
# For each proxy, in front of the static nginx upstream of `make bench`:
#   - instructions per request, from valgrind's callgrind over PROFILE_REQUESTS
#     small GETs (sequential keep-alive requests from curl, after a warm-up),
#     with the largest items: streamgate's own functions, Pingora's header
#     inserts, the allocator and memcpy;
#   - allocations (malloc calls) per request, from the same profile;
#   - system calls per request, from strace -c over a short wrk run.
# Instruction counts repeat exactly for the same binary and requests
# (memcpy's `rep movsb` counts one per byte, so it overstates copies' time).
#
# Knobs: PROFILE_REQUESTS (2000), BENCH_PORT_BASE (18080: uses +20..+22).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
ROOT=$(dirname "$BENCH_DIR")
cd "$ROOT"

REQUESTS=${PROFILE_REQUESTS:-2000}
PORT_BASE=${BENCH_PORT_BASE:-18080}
PROXY_PORT=$((PORT_BASE + 20))
UPSTREAM_PORT=$((PORT_BASE + 21))
ADMIN_PORT=$((PORT_BASE + 22))
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-profile: %s\n' "$*" >&2; exit 1; }

begin_run streamgate-profile

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v strace >/dev/null || missing+=(strace)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" != 0 ]; then
    log "installing ${missing[*]} from Debian"
    apt_install "${missing[@]}"
fi
PATH=$PATH:/usr/sbin

log "cargo build --release (streamgate and the pingora-floor example)"
cargo build --release --bin streamgate --example pingora-floor >&2

for port in "$PROXY_PORT" "$UPSTREAM_PORT" "$ADMIN_PORT"; do
    port_in_use "$port" && die "127.0.0.1:$port is already in use (set BENCH_PORT_BASE)"
done
start_nginx upstream "$BENCH_DIR/nginx/upstream.conf" "$UPSTREAM_PORT" UPSTREAM_PORT="$UPSTREAM_PORT"

URL=http://127.0.0.1:$PROXY_PORT/small
# One curl config per 200 requests: curl reuses its connection for them.
for _ in $(seq 200); do printf 'url = "%s"\noutput = "/dev/null"\n' "$URL"; done >"$TMP/200.curl"

# start_proxy NAME [WRAPPER...]: the proxy NAME (streamgate or floor) on
# PROXY_PORT, under WRAPPER (valgrind) if given; sets PROXY_PID.
start_proxy() {
    local name=$1
    shift
    local command
    if [ "$name" = streamgate ]; then
        command=(env BENCH_TMP="$TMP" BENCH_SG_PORT="$PROXY_PORT" BENCH_UPSTREAM_PORT="$UPSTREAM_PORT"
            BENCH_ADMIN_PORT="$ADMIN_PORT" RUST_LOG=warn
            "$@" "$TARGET_DIR/release/streamgate" -c "$BENCH_DIR/streamgate-bench.yaml")
    else
        command=("$@" "$TARGET_DIR/release/examples/pingora-floor" "127.0.0.1:$PROXY_PORT" "127.0.0.1:$UPSTREAM_PORT")
    fi
    "${command[@]}" >"$TMP/$name.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    for _ in $(seq 300); do
        curl -s -o /dev/null "$URL" && return 0
        kill -0 "$PROXY_PID" 2>/dev/null || { cat "$TMP/$name.log" >&2; die "$name exited during start"; }
        sleep 0.1
    done
    die "$name did not answer on $URL within 30 s"
}

# Under valgrind the process is valgrind itself: SIGKILL is the one stop that
# does not wait for Pingora's graceful shutdown (its profile is dumped already).
stop_proxy() {
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
}

# callgrind_of NAME: the profile of REQUESTS requests, in $TMP/NAME.callgrind.
callgrind_of() {
    local name=$1
    log "$name under callgrind: $REQUESTS requests"
    start_proxy "$name" valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg"
    curl -s -K "$TMP/200.curl"
    callgrind_control -z "$PROXY_PID" >/dev/null
    for _ in $(seq $((REQUESTS / 200))); do curl -s -K "$TMP/200.curl"; done
    callgrind_control -d "$PROXY_PID" >/dev/null
    stop_proxy
    # The one dump (-d) of the measured requests.
    cp "$TMP/$name.cg.1" "$TMP/$name.callgrind"
}

# syscalls_of NAME: system calls per request over 3 s of wrk, in $TMP/NAME.syscalls.
syscalls_of() {
    local name=$1
    log "$name under strace -c: 3 s of wrk"
    start_proxy "$name"
    wrk -t1 -c32 -d1s "$URL" >/dev/null
    strace -c -f -p "$PROXY_PID" -o "$TMP/$name.strace" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    wrk -t1 -c32 -d3s "$URL" >"$TMP/$name.wrk"
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    stop_proxy
    local n
    n=$(awk '/requests in/ {print $1}' "$TMP/$name.wrk")
    awk -v n="$n" '$NF !~ /^(total|syscall)$/ && $4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {
        printf "%s %.2f\n", $NF, $4 / n }' "$TMP/$name.strace" | sort -k2 -rn >"$TMP/$name.syscalls"
}

for name in floor streamgate; do
    callgrind_of "$name"
    syscalls_of "$name"
done

# Per request, from a callgrind file: total instructions, instructions in
# functions matching a pattern (self cost), malloc calls.
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'; }
self_matching() {
    callgrind_annotate --threshold=100 "$1" 2>/dev/null |
        awk -v re="$2" '$0 ~ re && $2 ~ /^\(/ {gsub(",", "", $1); s += $1} END {print s + 0}'
}
inclusive_matching() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
        awk -v re="$2" '$0 ~ re && $2 ~ /^\(/ {gsub(",", "", $1); if ($1 > m) m = $1} END {print m + 0}'
}
mallocs() {
    callgrind_annotate --tree=calling --threshold=100 "$1" 2>/dev/null |
        sed -n 's/.*  >   .*malloc\.c:malloc (\([0-9,]*\)x).*/\1/p' | tr -d , | awk '{s += $1} END {print s + 0}'
}
per() { awk -v v="$1" -v n="$REQUESTS" 'BEGIN {printf "%.1f", v / n / 1000}'; }

report() {
    local f=$TMP/floor.callgrind s=$TMP/streamgate.callgrind
    echo "## Where a proxied request's CPU goes"
    echo
    echo "- When: $(date -u '+%Y-%m-%d %H:%M UTC'), streamgate $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- $REQUESTS small GETs through each proxy (callgrind, instructions in thousands per request); system calls over 3 s of wrk (32 connections)."
    echo
    echo "| Per request | bare Pingora | streamgate |"
    echo "| --- | ---: | ---: |"
    echo "| Instructions (thousands) | $(per "$(total "$f")") | $(per "$(total "$s")") |"
    echo "| of which malloc/free/realloc | $(per "$(self_matching "$f" 'malloc\.c|arena\.c')") | $(per "$(self_matching "$s" 'malloc\.c|arena\.c')") |"
    echo "| of which memcpy/memmove | $(per "$(self_matching "$f" 'memmove-vec')") | $(per "$(self_matching "$s" 'memmove-vec')") |"
    echo "| Pingora's case-keeping header inserts (inclusive) | $(per "$(inclusive_matching "$f" 'pingora_http::insert_header_value')") | $(per "$(inclusive_matching "$s" 'pingora_http::insert_header_value')") |"
    echo "| Pingora's timers (register) | $(per "$(inclusive_matching "$f" 'TimerManager::register_timer')") | $(per "$(inclusive_matching "$s" 'TimerManager::register_timer')") |"
    echo "| malloc calls | $(awk -v v="$(mallocs "$f")" -v n="$REQUESTS" 'BEGIN {printf "%.0f", v / n}') | $(awk -v v="$(mallocs "$s")" -v n="$REQUESTS" 'BEGIN {printf "%.0f", v / n}') |"
    echo "| System calls | $(awk '{s += $2} END {printf "%.2f", s}' "$TMP/floor.syscalls") | $(awk '{s += $2} END {printf "%.2f", s}' "$TMP/streamgate.syscalls") |"
    echo
    echo "streamgate's own phases (inclusive, thousands of instructions per request):"
    echo
    echo "| Function | Instructions |"
    echo "| --- | ---: |"
    callgrind_annotate --inclusive=yes --threshold=100 "$s" 2>/dev/null |
        awk -v n="$REQUESTS" '/streamgate::/ && $0 !~ /process_new|drop_in_place/ && $2 ~ /^\(/ {
            gsub(",", "", $1); name = $0; sub(/^[^?]*\?\?\?:/, "", name); sub(/ \[.*/, "", name); sub(/^[^:]*\.rs:/, "", name)
            if ($1 / n >= 100) printf "| `%s` | %.1f |\n", name, $1 / n / 1000 }' | head -n 15
    echo
    echo "System calls per request:"
    echo
    echo "| Call | bare Pingora | streamgate |"
    echo "| --- | ---: | ---: |"
    join -a1 -a2 -e 0 -o 0,1.2,2.2 <(sort "$TMP/floor.syscalls") <(sort "$TMP/streamgate.syscalls") |
        sort -k3 -rn | awk '{printf "| `%s` | %s | %s |\n", $1, $2, $3}'
}

mkdir -p "$BENCH_DIR/results"
report | tee "$BENCH_DIR/results/profile-latest.md"
log "written to bench/results/profile-latest.md"
