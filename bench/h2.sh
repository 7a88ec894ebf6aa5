#!/usr/bin/env bash
# `make bench-h2`: HTTP/2 and gRPC throughput through streamgate against the
# same servers reached directly, on loopback, one measured run per row (issue
# 11). Prints a markdown table and writes it to bench/results/h2-latest.md.
#
# Servers, all on 127.0.0.1, each with one worker/thread:
#   streamgate        (bench/streamgate-h2-bench.yaml)  h2c listener; upstreams h2c and HTTP/1.1
#   nginx "h2-app"    (bench/nginx/h2-app.conf)         the static app: h2c and HTTP/1.1 listeners
#   grpc-echo         (bench/grpc_echo.rs)              a tonic test.Echo/Unary app, h2c
#   nginx "grpc-proxy" (bench/nginx/grpc-proxy.conf)    grpc_pass to grpc-echo, the reference proxy
# The load generator is h2load (Debian's nghttp2-client): HTTP/2 with prior
# knowledge, 1 thread, BENCH_CLIENTS connections with BENCH_STREAMS concurrent
# streams each; gRPC calls are POSTs of one prepared message (h2load -d).
#
# Knobs (environment): BENCH_DURATION (5: seconds per measured run),
# BENCH_WARMUP (1: seconds), BENCH_CLIENTS (16), BENCH_STREAMS (4),
# BENCH_PORT_BASE (18280: uses 18280-18285).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
ROOT=$(dirname "$BENCH_DIR")
cd "$ROOT"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
CLIENTS=${BENCH_CLIENTS:-16}
STREAMS=${BENCH_STREAMS:-4}
PORT_BASE=${BENCH_PORT_BASE:-18280}
SG_PORT=$PORT_BASE
SG_ADMIN_PORT=$((PORT_BASE + 1))
APP_H2C_PORT=$((PORT_BASE + 2))
APP_H1_PORT=$((PORT_BASE + 3))
GRPC_APP_PORT=$((PORT_BASE + 4))
GRPC_PROXY_PORT=$((PORT_BASE + 5))

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SG_BIN=$TARGET_DIR/release/streamgate
ECHO_BIN=$TARGET_DIR/release/examples/grpc-echo
RESULTS=$BENCH_DIR/results/h2-latest.md

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-h2: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Cleanup: every process this script starts is recorded in PIDS and stopped on
# any exit, including errors and Ctrl-C.
# ---------------------------------------------------------------------------
begin_run streamgate-bench-h2

# ---------------------------------------------------------------------------
# 1. Install what is missing (h2load, nginx, curl), build, check the config.
# ---------------------------------------------------------------------------
missing=()
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" != 0 ]; then
    log "installing ${missing[*]} from Debian"
    apt_install "${missing[@]}"
fi
PATH=$PATH:/usr/sbin

log "cargo build --release (streamgate and the grpc-echo example)"
cargo build --release --bin streamgate --example grpc-echo >&2

for port in "$SG_PORT" "$SG_ADMIN_PORT" "$APP_H2C_PORT" "$APP_H1_PORT" "$GRPC_APP_PORT" "$GRPC_PROXY_PORT"; do
    port_in_use "$port" && die "127.0.0.1:$port is already in use (set BENCH_PORT_BASE to move all six ports)"
done

export BENCH_TMP=$TMP BENCH_SG_PORT=$SG_PORT BENCH_ADMIN_PORT=$SG_ADMIN_PORT \
    BENCH_APP_H2C_PORT=$APP_H2C_PORT BENCH_APP_H1_PORT=$APP_H1_PORT BENCH_GRPC_APP_PORT=$GRPC_APP_PORT
SG_CONFIG=$TMP/streamgate-h2-bench.yaml
cp "$BENCH_DIR/streamgate-h2-bench.yaml" "$SG_CONFIG"
# A streamgate without HTTP/2 upstreams refuses the config: the direct rows
# are still measured, streamgate's say why they are n/a.
SG_NOTE=""
if ! "$SG_BIN" -t -c "$SG_CONFIG" >"$TMP/config-check.txt" 2>&1; then
    SG_NOTE="config refused: $(grep -m1 -o 'upstreams[^,]*' "$TMP/config-check.txt" || head -c 120 "$TMP/config-check.txt")"
    log "streamgate refuses bench/streamgate-h2-bench.yaml, its rows are n/a: $(cat "$TMP/config-check.txt")"
fi

# ---------------------------------------------------------------------------
# 2. Start the servers.
# ---------------------------------------------------------------------------
NGINX_PORTS=(APP_H2C_PORT="$APP_H2C_PORT" APP_H1_PORT="$APP_H1_PORT"
    GRPC_APP_PORT="$GRPC_APP_PORT" GRPC_PROXY_PORT="$GRPC_PROXY_PORT")

log "starting the nginx app on :$APP_H2C_PORT (h2c) and :$APP_H1_PORT (HTTP/1.1)"
start_nginx h2-app "$BENCH_DIR/nginx/h2-app.conf" "$APP_H2C_PORT" "${NGINX_PORTS[@]}"
APP_PIDS=$STARTED_PIDS

log "starting grpc-echo on :$GRPC_APP_PORT and nginx grpc_pass on :$GRPC_PROXY_PORT"
"$ECHO_BIN" serve "127.0.0.1:$GRPC_APP_PORT" >"$TMP/grpc-echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_for_port "$ECHO_PID" "$GRPC_APP_PORT" grpc-echo "$TMP/grpc-echo.log"
start_nginx grpc-proxy "$BENCH_DIR/nginx/grpc-proxy.conf" "$GRPC_PROXY_PORT" "${NGINX_PORTS[@]}"
GRPC_PROXY_PIDS=$STARTED_PIDS

if [ -z "$SG_NOTE" ]; then
    log "starting streamgate on :$SG_PORT"
    RUST_LOG=warn "$SG_BIN" -c "$SG_CONFIG" >"$TMP/streamgate.log" 2>&1 &
    SG_PID=$!
    PIDS+=("$SG_PID")
    wait_for_port "$SG_PID" "$SG_PORT" streamgate "$TMP/streamgate.log"
fi

# ---------------------------------------------------------------------------
# 3. Check that every target answers what it should over HTTP/2 before timing
#    it: a fast 404, 502 or gRPC error would make a meaningless number. A
#    direct target failing is the harness's fault (stop); streamgate failing
#    is a finding (its rows say why).
# ---------------------------------------------------------------------------
"$ECHO_BIN" frame hello >"$TMP/call.bin"

# check_h2 URL: empty if an HTTP/2 GET of URL is the app's answer, else why not.
check_h2() {
    local out
    out=$(curl -sS -m 10 --http2-prior-knowledge -w '\n%{http_version} %{http_code}' "$1" 2>&1) ||
        { echo "GET failed: $(tail -n1 <<<"$out")"; return; }
    if ! grep -q '"source":"upstream"' <<<"$out" || [ "$(tail -n1 <<<"$out")" != "2 200" ]; then
        echo "GET answered: $(tr '\n' ' ' <<<"$out" | head -c 120)"
    fi
}

# check_grpc URL: empty if a call of test.Echo/Unary at URL is echoed with
# grpc-status 0 over HTTP/2, else why not. curl writes the trailers into the
# header dump after the headers.
check_grpc() {
    local head=$TMP/check-grpc.head body=$TMP/check-grpc.body
    curl -sS -m 10 --http2-prior-knowledge -D "$head" -o "$body" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary "@$TMP/call.bin" "$1" 2>"$TMP/check-grpc.err" ||
        { echo "call failed: $(cat "$TMP/check-grpc.err")"; return; }
    if ! grep -qi '^grpc-status: 0' "$head" || ! cmp -s "$body" "$TMP/call.bin"; then
        echo "call answered: $(tr '\r\n' '  ' <"$head" | head -c 160)"
    fi
}

log "checking the targets"
why=$(check_h2 "http://127.0.0.1:$APP_H2C_PORT/small")
[ -z "$why" ] || die "nginx app (h2c): $why"
why=$(check_grpc "http://127.0.0.1:$GRPC_APP_PORT/test.Echo/Unary")
[ -z "$why" ] || die "grpc-echo: $why"
why=$(check_grpc "http://127.0.0.1:$GRPC_PROXY_PORT/test.Echo/Unary")
[ -z "$why" ] || die "nginx grpc_pass: $why"
# Each streamgate row's note: empty when its target answered correctly.
SG_H2C_NOTE=$SG_NOTE
SG_H1_NOTE=$SG_NOTE
SG_GRPC_NOTE=$SG_NOTE
if [ -z "$SG_NOTE" ]; then
    SG_H2C_NOTE=$(check_h2 "http://127.0.0.1:$SG_PORT/small")
    SG_H1_NOTE=$(check_h2 "http://127.0.0.1:$SG_PORT/h1/small")
    SG_GRPC_NOTE=$(check_grpc "http://127.0.0.1:$SG_PORT/test.Echo/Unary")
    for note in "$SG_H2C_NOTE" "$SG_H1_NOTE" "$SG_GRPC_NOTE"; do
        [ -z "$note" ] || log "streamgate: $note"
    done
fi

# ---------------------------------------------------------------------------
# 4. Measure: per row a warm-up, then one measured run of h2load, with every
#    request's time logged so that p50 and p99 can be read (h2load itself
#    reports only min, max and mean).
# ---------------------------------------------------------------------------
ROWS=$TMP/rows.tsv
: >"$ROWS"
ROW=0

# percentile P FILE: the P-th percentile of h2load's --log-file (third column,
# microseconds) in ms.
percentile() {
    cut -f3 "$2" | sort -n | awk -v p="$1" '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        i = int(NR * p / 100 + 0.5); if (i < 1) i = 1; if (i > NR) i = NR
        printf "%.2f", v[i] / 1000 }'
}

# run_case KEY CASE TARGET URL NOTE KIND PID...
# KIND is `get` or `grpc`; a non-empty NOTE (the target failed its check)
# skips the row as n/a. The PIDs are the processes whose memory counts (the
# proxy's, not the app's behind it).
run_case() {
    local key=$1 case_name=$2 target=$3 url=$4 skip=$5 kind=$6
    shift 6
    ROW=$((ROW + 1))
    if [ -n "$skip" ]; then
        log "[$ROW] $case_name: $target: n/a ($skip)"
        printf '%s\t%s\t%s\tn/a\tn/a\tn/a\tn/a\t%s\n' "$key" "$case_name" "$target" "$skip" >>"$ROWS"
        return
    fi
    local args=(-t1 -c"$CLIENTS" -m"$STREAMS")
    if [ "$kind" = grpc ]; then
        args+=(-d "$TMP/call.bin" -H 'content-type: application/grpc' -H 'te: trailers')
    fi
    log "[$ROW] $case_name: $target ($url)"
    h2load "${args[@]}" -D"$WARMUP" "$url" >/dev/null
    reset_peak_rss "$@"
    local out=$TMP/h2load-$ROW-$key.txt requests=$TMP/h2load-$ROW-$key.log
    h2load "${args[@]}" -D"$DURATION" --log-file="$requests" "$url" >"$out"
    local rss_kib rps p50 p99 failed non2xx note=""
    rss_kib=$(peak_rss_kib "$@")
    rps=$(awk '/^finished in/ {print $4}' "$out")
    p50=$(percentile 50 "$requests")
    p99=$(percentile 99 "$requests")
    failed=$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")
    non2xx=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$out")
    [ "${failed:-0}" = 0 ] || note="$failed failed/errored/timed out"
    [ "${non2xx:-0}" = 0 ] || note="${note:+$note; }$non2xx non-2xx"
    [ -n "$note" ] && log "    WARNING: $note (h2load output: $out)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$case_name" "$target" \
        "${rps:-0}" "$p50" "$p99" "$rss_kib" "$note" >>"$ROWS"
    log "    $rps req/s, p50 $p50 ms, p99 $p99 ms, peak RSS $((rss_kib / 1024)) MiB"
}

SG=http://127.0.0.1:$SG_PORT
# shellcheck disable=SC2086 # the PID lists are meant to split into arguments
{
    run_case h2_direct "h2c small GET" "nginx direct (h2c)" "http://127.0.0.1:$APP_H2C_PORT/small" "" get $APP_PIDS
    run_case h2_sg_h2c "h2c small GET" "streamgate → nginx, h2c upstream" "$SG/small" "$SG_H2C_NOTE" get "$SG_PID"
    run_case h2_sg_h1 "h2c small GET" "streamgate → nginx, HTTP/1.1 upstream" "$SG/h1/small" "$SG_H1_NOTE" get "$SG_PID"
    run_case grpc_direct "gRPC unary" "tonic direct" "http://127.0.0.1:$GRPC_APP_PORT/test.Echo/Unary" "" grpc "$ECHO_PID"
    run_case grpc_nginx "gRPC unary" "nginx grpc_pass" "http://127.0.0.1:$GRPC_PROXY_PORT/test.Echo/Unary" "" grpc $GRPC_PROXY_PIDS
    run_case grpc_sg "gRPC unary" "streamgate, h2c upstream" "$SG/test.Echo/Unary" "$SG_GRPC_NOTE" grpc "$SG_PID"
}

# ---------------------------------------------------------------------------
# 5. Report: the machine, the table, streamgate against the direct target and
#    the reference proxy of the same run.
# ---------------------------------------------------------------------------
rps() { awk -F'\t' -v k="$1" '$1 == k {print $4}' "$ROWS"; }
p99() { awk -F'\t' -v k="$1" '$1 == k {print $6}' "$ROWS"; }
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f×", a / b }'
}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && revision="$revision+local changes"
tonic_version=$(awk '/^name = "tonic"$/ {getline; gsub(/"/, "", $3); print $3; exit}' "$ROOT/Cargo.lock")

report() {
    echo "## streamgate HTTP/2 and gRPC benchmark"
    echo
    echo "- When: $(date -u '+%Y-%m-%d %H:%M UTC'), streamgate $revision"
    echo "- Machine: ${cpu:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "- Software: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(h2load --version 2>&1 | head -n1), tonic $tonic_version (bench/grpc_echo.rs on hyper's HTTP/2 server)"
    echo "- Load: h2load, HTTP/2 with prior knowledge (h2c), 1 thread, $CLIENTS connections × $STREAMS concurrent streams, ${WARMUP}s warm-up then one measured run of ${DURATION}s per row, all on 127.0.0.1;" \
        "every server on one worker/thread (streamgate \`threads: 1\`, nginx \`worker_processes 1\`, grpc-echo on a current-thread runtime)."
    echo "- gRPC rows: unary \`test.Echo/Unary\` calls of a 7-byte message, echoed; checked beforehand to end with \`grpc-status: 0\`."
    echo "- Latency: p50/p99 over every request of the measured run (h2load --log-file). Peak RSS: VmHWM of the serving processes during the row (nginx: master + worker; for a proxy, the proxy only)."
    echo
    echo "| Case | Target | Requests/s | p50 (ms) | p99 (ms) | Peak RSS (MiB) | Note |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | --- |"
    awk -F'\t' '{
        rss = ($7 == "n/a") ? "n/a" : sprintf("%.1f", $7 / 1024)
        rps = ($4 == "n/a") ? "n/a" : sprintf("%.0f", $4)
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, rps, $5, $6, rss, $8 }' "$ROWS"
    echo
    echo "| Ratio (same run) | Requests/s | p99 |"
    echo "| --- | ---: | ---: |"
    local pair a b label
    for pair in "h2_sg_h2c h2_direct h2c small GET: streamgate (h2c upstream) vs nginx direct" \
        "h2_sg_h1 h2_direct h2c small GET: streamgate (HTTP/1.1 upstream) vs nginx direct" \
        "grpc_sg grpc_direct gRPC unary: streamgate vs tonic direct" \
        "grpc_nginx grpc_direct gRPC unary: nginx grpc_pass vs tonic direct" \
        "grpc_sg grpc_nginx gRPC unary: streamgate vs nginx grpc_pass"; do
        read -r a b label <<<"$pair"
        echo "| $label | $(ratio "$(rps "$a")" "$(rps "$b")") | $(ratio "$(p99 "$a")" "$(p99 "$b")") |"
    done
}

mkdir -p "$(dirname "$RESULTS")"
report | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
