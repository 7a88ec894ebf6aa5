#!/usr/bin/env bash
# `make bench-tracing`: what tracing costs streamgate per request. The same
# bench config without a `tracing` section (W3C context propagated only: the
# default) and exporting every span (sampling ratio 1) over OTLP/HTTP to a
# collector that discards what it gets (nginx, bench/nginx/otlp-sink.conf),
# so the cost is streamgate's; token endpoint and proxied small GET:
#   - instructions per request under callgrind (PROFILE_REQUESTS sequential
#     keep-alive requests; the exporter's thread is counted: the batches of
#     the measured spans are sent before the profile is taken), repeatable
#     whatever else the machine is doing;
#   - requests/s and CPU µs per request under wrk (one thread,
#     BENCH_CONNECTIONS connections), the median of ROUNDS interleaved rounds.
# Writes bench/results/tracing-latest.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=$ROOT/bench
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
ROUNDS=${BENCH_ROUNDS:-3}
REQUESTS=${PROFILE_REQUESTS:-2000}
TOKEN_BODY='{"userId":"john_doe","validityInSeconds":7200,"callId":"meeting-123","callType":"default"}'
PORT_BASE=${BENCH_PORT_BASE:-18180}
UPSTREAM_PORT=$PORT_BASE
SINK_PORT=$((PORT_BASE + 1))
OFF_PORT=$((PORT_BASE + 2))
ON_PORT=$((PORT_BASE + 3))
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SG_BIN=$TARGET_DIR/release/streamgate
RESULTS=$BENCH_DIR/results/tracing-latest.md

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-tracing: %s\n' "$*" >&2; exit 1; }

begin_run streamgate-bench-tracing
chmod 755 "$TMP"
missing=()
for tool in wrk nginx valgrind curl; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
[ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
PATH=$PATH:/usr/sbin
(cd "$ROOT" && cargo build --release)

start_nginx upstream "$BENCH_DIR/nginx/upstream.conf" "$UPSTREAM_PORT" UPSTREAM_PORT="$UPSTREAM_PORT"
start_nginx otlp-sink "$BENCH_DIR/nginx/otlp-sink.conf" "$SINK_PORT" SINK_PORT="$SINK_PORT"

TRACING="tracing:
  otlp: { endpoint: \"http://127.0.0.1:$SINK_PORT/v1/traces\" }
  sampling_ratio: 1.0"

# start_streamgate NAME PORT on|off [WRAPPER...]: the bench config on PORT,
# exporting spans when on, under WRAPPER (valgrind) if given; sets
# STARTED_SG to its pid once it answers.
start_streamgate() {
    local name=$1 port=$2 mode=$3
    shift 3
    local conf=$TMP/$name.yaml
    cat "$BENCH_DIR/streamgate-bench.yaml" >"$conf"
    [ "$mode" = on ] && printf '%s\n' "$TRACING" >>"$conf"
    mkdir -p "$TMP/$name"
    env BENCH_SG_PORT="$port" BENCH_UPSTREAM_PORT="$UPSTREAM_PORT" BENCH_ADMIN_PORT=$((port + 100)) \
        BENCH_TMP="$TMP/$name" RUST_LOG=warn OTEL_BSP_SCHEDULE_DELAY=100 \
        "$@" "$SG_BIN" -c "$conf" >"$TMP/$name.log" 2>&1 &
    STARTED_SG=$!
    PIDS+=("$STARTED_SG")
    for _ in $(seq 600); do
        curl -s -o /dev/null "http://127.0.0.1:$port/small" && return 0
        kill -0 "$STARTED_SG" 2>/dev/null || { cat "$TMP/$name.log" >&2; die "streamgate $name exited during start"; }
        sleep 0.1
    done
    die "streamgate $name did not answer within 60 s"
}

# curl configs of 200 keep-alive requests each: small GETs, token POSTs.
curl_config() {
    local port=$1 case_name=$2
    for _ in $(seq 200); do
        if [ "$case_name" = token ]; then
            printf 'url = "http://127.0.0.1:%s/api/tokens/user"\ndata = %s\nheader = "Content-Type: application/json"\noutput = "/dev/null"\n' \
                "$port" "'$TOKEN_BODY'"
        else
            printf 'url = "http://127.0.0.1:%s/small"\noutput = "/dev/null"\n' "$port"
        fi
    done
}

# instructions MODE CASE: instructions per request of CASE with tracing MODE.
instructions() {
    local mode=$1 case_name=$2 port=$((PORT_BASE + 10)) name=cg-$1-$2
    curl_config "$port" "$case_name" >"$TMP/$name.curl"
    start_streamgate "$name" "$port" "$mode" valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg"
    curl -s -K "$TMP/$name.curl"
    sleep 2
    callgrind_control -z "$STARTED_SG" >/dev/null
    for _ in $(seq $((REQUESTS / 200))); do curl -s -K "$TMP/$name.curl"; done
    # The measured spans' batches leave within OTEL_BSP_SCHEDULE_DELAY (and
    # valgrind's slowness): wait them out inside the profile.
    sleep 3
    callgrind_control -d "$STARTED_SG" >/dev/null
    kill -KILL "$STARTED_SG" 2>/dev/null || true
    wait "$STARTED_SG" 2>/dev/null || true
    callgrind_annotate "$TMP/$name.cg.1" 2>/dev/null |
        awk -v n="$REQUESTS" '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%.0f\n", $1 / n; exit}'
}

declare -A INSTR
for case_name in token small; do
    for mode in off on; do
        INSTR[$case_name-$mode]=$(instructions "$mode" "$case_name")
        log "$case_name, tracing $mode: ${INSTR[$case_name-$mode]} instructions/request"
    done
done

start_streamgate off "$OFF_PORT" off
OFF_PID=$STARTED_SG
start_streamgate on "$ON_PORT" on
ON_PID=$STARTED_SG

# One wrk run against PORT's PATH; prints "requests/s cpu_us_per_request".
measure() {
    local port=$1 path=$2 pid=$3 script=$4
    local args=(-t1 -c"$CONNECTIONS" -d"$DURATION")
    [ "$script" != - ] && args+=(-s "$BENCH_DIR/wrk/$script")
    wrk "${args[@]}" -d2s "http://127.0.0.1:$port$path" >/dev/null
    local before after out
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(wrk "${args[@]}" "http://127.0.0.1:$port$path")
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    printf '%s\n' "$out" | awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
        /requests in/ {n = $1} /Requests\/sec/ {rps = $2}
        END { printf "%.0f %.1f\n", rps, ticks * 1000000 / hz / n }'
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

declare -A RPS CPU
for round in $(seq "$ROUNDS"); do
    for case_name in token small; do
        for mode in off on; do
            port=$OFF_PORT pid=$OFF_PID
            [ "$mode" = on ] && port=$ON_PORT pid=$ON_PID
            if [ "$case_name" = token ]; then
                read -r rps cpu < <(measure "$port" /api/tokens/user "$pid" token.lua)
            else
                read -r rps cpu < <(measure "$port" /small "$pid" -)
            fi
            log "round $round, $case_name, tracing $mode: $rps requests/s, $cpu µs CPU/request"
            RPS[$case_name-$mode]+="$rps "
            CPU[$case_name-$mode]+="$cpu "
        done
    done
done
kill -0 "$ON_PID" || die "the tracing streamgate died: $(cat "$TMP/on.log")"

row() {
    local case_name=$1 label=$2 rps_off rps_on cpu_off cpu_on
    rps_off=$(tr ' ' '\n' <<<"${RPS[$case_name-off]}" | grep . | median)
    rps_on=$(tr ' ' '\n' <<<"${RPS[$case_name-on]}" | grep . | median)
    cpu_off=$(tr ' ' '\n' <<<"${CPU[$case_name-off]}" | grep . | median)
    cpu_on=$(tr ' ' '\n' <<<"${CPU[$case_name-on]}" | grep . | median)
    awk -v l="$label" -v ro="$rps_off" -v rn="$rps_on" -v co="$cpu_off" -v cn="$cpu_on" \
        -v ioff="${INSTR[$case_name-off]}" -v ion="${INSTR[$case_name-on]}" 'BEGIN {
        printf "| %s | %d | %d | +%d (+%.0f %%) | %d | %d | %.2f× | %.1f | %.1f |\n",
            l, ioff, ion, ion - ioff, (ion - ioff) * 100 / ioff, ro, rn, rn / ro, co, cn }'
}
{
    echo "# Tracing on vs off ($(date -u +%Y-%m-%dT%H:%MZ), streamgate $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) cores)"
    echo
    echo "Off: no \`tracing\` section (W3C context propagated only); on: every span exported over"
    echo "OTLP/HTTP to nginx discarding it. Instructions: callgrind, $REQUESTS sequential keep-alive"
    echo "requests, the exporter's thread included. Requests/s and CPU: wrk -t1 -c$CONNECTIONS"
    echo "-d$DURATION, median of $ROUNDS interleaved rounds."
    echo
    echo "| Case | Instructions/request off | on | added | Requests/s off | on | on/off | CPU µs/request off | on |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    row token "Token endpoint"
    row small "Small GET proxied"
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
