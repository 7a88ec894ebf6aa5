#!/usr/bin/env bash
# `make bench`: streamgate side by side with nginx and with Express + the Stream
# Node SDK, on loopback, in one run (issue 6). Prints a markdown table and the
# ratios the issue sets targets for, and writes both to bench/results/latest.md.
#
# Servers, all on 127.0.0.1, each with one worker/thread:
#   streamgate        (bench/streamgate-bench.yaml)          token, pass-through, ceiling
#   nginx "upstream"  (bench/nginx/upstream.conf)            the static app, also hit directly
#   nginx "proxy"     (bench/nginx/proxy.conf)               proxy_pass to the upstream
#   HAProxy           (bench/haproxy/proxy.cfg)              a second pass-through peer
#   bare Pingora      (bench/pingora_floor.rs)               the pass-through floor
#   Express           (bench/reference-express/server.js)    token endpoint with the Node SDK
#   nginx + Lua       (bench/nginx/token-lua.conf)           token endpoint, the strongest peer
#   streamgate x2     (the same, with rate_limits.per_identity) token endpoint with the
#                      limit counted locally / in redis-server (issue 17)
# Throughput: wrk, 1 thread, 32 keep-alive connections, a warm-up run and then
# measured runs per case. Latency at a fixed rate (issue 12): oha holding
# 2,000 req/s over the same 32 connections, with its coordinated-omission
# correction, for the small GET and token rows.
#
# Knobs (environment): BENCH_DURATION (5s per measured run), BENCH_REPEAT (3
# measured runs per case, the median is reported), BENCH_WARMUP (2s),
# BENCH_CONNECTIONS (32), BENCH_RATE (2000 req/s), BENCH_RATE_DURATION (10s
# per fixed-rate run), BENCH_RATE_REPEAT (3 rounds, the median by p99 is
# reported), BENCH_RATE_WARMUP (2s), BENCH_PORT_BASE (18080: uses
# 18080-18092).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
ROOT=$(dirname "$BENCH_DIR")
cd "$ROOT"

DURATION=${BENCH_DURATION:-5s}
REPEAT=${BENCH_REPEAT:-3}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
RATE=${BENCH_RATE:-2000}
RATE_DURATION=${BENCH_RATE_DURATION:-10s}
RATE_REPEAT=${BENCH_RATE_REPEAT:-3}
RATE_WARMUP=${BENCH_RATE_WARMUP:-2s}
PORT_BASE=${BENCH_PORT_BASE:-18080}
SG_PORT=$PORT_BASE
UPSTREAM_PORT=$((PORT_BASE + 1))
NGINX_PROXY_PORT=$((PORT_BASE + 2))
EXPRESS_PORT=$((PORT_BASE + 3))
SG_ADMIN_PORT=$((PORT_BASE + 4))
FLOOR_PORT=$((PORT_BASE + 5))
HAPROXY_PORT=$((PORT_BASE + 6))
TOKEN_LUA_PORT=$((PORT_BASE + 7))
# The token endpoint with a per-user limit, counted locally and in Redis.
SG_LOCAL_PORT=$((PORT_BASE + 8))
SG_LOCAL_ADMIN_PORT=$((PORT_BASE + 9))
SG_REDIS_PORT=$((PORT_BASE + 10))
SG_REDIS_ADMIN_PORT=$((PORT_BASE + 11))
REDIS_PORT=$((PORT_BASE + 12))
REDIS_PASSWORD=bench-redis-password

# Fixed test credentials, the same for streamgate (in its YAML), Express and
# nginx + Lua.
STREAM_API_KEY=bench-key
STREAM_API_SECRET=bench-secret-not-a-real-stream-secret

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SG_BIN=$TARGET_DIR/release/streamgate
FLOOR_BIN=$TARGET_DIR/release/examples/pingora-floor
# The fixed-rate load generator, installed with cargo when missing.
OHA_VERSION=1.16.0
RESULTS=$BENCH_DIR/results/latest.md
TOKEN_BODY='{"userId":"john_doe","validityInSeconds":7200,"callId":"meeting-123","callType":"default"}'

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Cleanup: every process this script starts is recorded in PIDS and stopped on
# any exit, including errors and Ctrl-C.
# ---------------------------------------------------------------------------
begin_run streamgate-bench
# nginx started as root runs its worker as "nobody", which must be able to read
# the 1 MiB file in here (mktemp -d makes the directory 0700).
chmod 755 "$TMP"

# ---------------------------------------------------------------------------
# 1. Install what is missing: wrk, nginx, its Lua module, lua-cjson, HAProxy,
#    curl, Python and Node from Debian, the Node packages of the reference from
#    its package-lock.json, oha with cargo.
# ---------------------------------------------------------------------------
install_packages() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    command -v python3 >/dev/null || missing+=(python3)
    command -v redis-server >/dev/null || missing+=(redis-server)
    # The nginx + Lua token endpoint: lua-nginx-module (with NDK, lua-resty-core
    # and LuaJIT as its dependencies) as a dynamic module of Debian's nginx.
    [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing+=(libnginx-mod-http-lua)
    dpkg-query -W -f='${Status}' lua-cjson 2>/dev/null | grep -q 'ok installed' || missing+=(lua-cjson)
    [ "${#missing[@]}" = 0 ] && return
    log "installing ${missing[*]} from Debian"
    apt_install "${missing[@]}"
}

install_node_packages() {
    local dir=$BENCH_DIR/reference-express
    # npm ci only when node_modules is missing or older than the lock file.
    if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
        [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        log "npm ci in bench/reference-express"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
}

# oha from crates.io (there is no Debian package): the one on PATH or in
# ~/.cargo/bin if it has the flags used here, else oha $OHA_VERSION built into
# ~/.cargo/bin (a few minutes, once).
install_oha() {
    local cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin flag
    OHA=$(command -v oha || true)
    [ -z "$OHA" ] && [ -x "$cargo_bin/oha" ] && OHA=$cargo_bin/oha
    if [ -n "$OHA" ]; then
        for flag in --latency-correction --worker-threads --output-format --wait-ongoing-requests-after-deadline; do
            "$OHA" --help | grep -q -- "$flag" || { log "$OHA has no $flag"; OHA=""; break; }
        done
    fi
    if [ -z "$OHA" ]; then
        log "cargo install --locked oha@$OHA_VERSION (into $cargo_bin; a few minutes, once)"
        cargo install --locked --version "$OHA_VERSION" oha >&2
        OHA=$cargo_bin/oha
    fi
}

install_packages
PATH=$PATH:/usr/sbin
install_node_packages
install_oha

# ---------------------------------------------------------------------------
# 2. Build streamgate and check the benchmark configuration.
# ---------------------------------------------------------------------------
log "cargo build --release (streamgate and the pingora-floor example)"
cargo build --release --bin streamgate --example pingora-floor >&2

export BENCH_TMP=$TMP BENCH_SG_PORT=$SG_PORT BENCH_UPSTREAM_PORT=$UPSTREAM_PORT BENCH_ADMIN_PORT=$SG_ADMIN_PORT
SG_CONFIG=$TMP/streamgate-bench.yaml
cp "$BENCH_DIR/streamgate-bench.yaml" "$SG_CONFIG"
CEILING=1
if ! "$SG_BIN" -t -c "$SG_CONFIG" >"$TMP/config-check.txt" 2>&1; then
    # The direct_response route action may not be in this streamgate yet: run
    # everything else and report the ceiling as n/a.
    # shellcheck disable=SC2016 # the backquotes are serde's, not a substitution
    if grep -q 'unknown field `direct_response`' "$TMP/config-check.txt"; then
        log "this streamgate does not accept direct_response: the ceiling row is n/a"
        grep -v 'direct_response:' "$BENCH_DIR/streamgate-bench.yaml" >"$SG_CONFIG"
        CEILING=0
        "$SG_BIN" -t -c "$SG_CONFIG" >"$TMP/config-check.txt" 2>&1 ||
            die "bench/streamgate-bench.yaml is invalid: $(cat "$TMP/config-check.txt")"
    else
        die "bench/streamgate-bench.yaml is invalid: $(cat "$TMP/config-check.txt")"
    fi
fi

# ---------------------------------------------------------------------------
# 3. Start the servers.
# ---------------------------------------------------------------------------

for port in "$SG_PORT" "$UPSTREAM_PORT" "$NGINX_PROXY_PORT" "$EXPRESS_PORT" "$SG_ADMIN_PORT" "$FLOOR_PORT" "$HAPROXY_PORT" "$TOKEN_LUA_PORT" \
    "$SG_LOCAL_PORT" "$SG_LOCAL_ADMIN_PORT" "$SG_REDIS_PORT" "$SG_REDIS_ADMIN_PORT" "$REDIS_PORT"; do
    port_in_use "$port" && die "127.0.0.1:$port is already in use (set BENCH_PORT_BASE to move all thirteen ports)"
done


# The upstream's document root: the 1 MiB file for the large-response case.
mkdir -p "$TMP/www"
head -c $((1024 * 1024)) /dev/zero | tr '\0' 'x' >"$TMP/www/1mib"

log "starting nginx upstream on :$UPSTREAM_PORT and nginx proxy on :$NGINX_PROXY_PORT"
NGINX_PORTS=(UPSTREAM_PORT="$UPSTREAM_PORT" NGINX_PROXY_PORT="$NGINX_PROXY_PORT")
start_nginx upstream "$BENCH_DIR/nginx/upstream.conf" "$UPSTREAM_PORT" "${NGINX_PORTS[@]}"
UPSTREAM_PIDS=$STARTED_PIDS
start_nginx proxy "$BENCH_DIR/nginx/proxy.conf" "$NGINX_PROXY_PORT" "${NGINX_PORTS[@]}"
NGINX_PROXY_PIDS=$STARTED_PIDS

log "starting the nginx + Lua token endpoint on :$TOKEN_LUA_PORT"
start_nginx token-lua "$BENCH_DIR/nginx/token-lua.conf" "$TOKEN_LUA_PORT" TOKEN_LUA_PORT="$TOKEN_LUA_PORT" \
    BENCH_DIR="$BENCH_DIR" STREAM_API_KEY="$STREAM_API_KEY" STREAM_API_SECRET="$STREAM_API_SECRET"
TOKEN_LUA_PIDS=$STARTED_PIDS

log "starting streamgate on :$SG_PORT"
RUST_LOG=warn "$SG_BIN" -c "$SG_CONFIG" >"$TMP/streamgate.log" 2>&1 &
SG_PID=$!
PIDS+=("$SG_PID")
wait_for_port "$SG_PID" "$SG_PORT" streamgate "$TMP/streamgate.log"

# The per-user limit rows: the bench config plus a limit no request reaches
# (a million per second), so that every request pays for the check and none
# is refused. Redis like the tests start it: a password, no persistence.
log "starting redis-server on :$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass "$REDIS_PASSWORD" --save "" \
    --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for_port "$REDIS_PID" "$REDIS_PORT" redis-server "$TMP/redis.log"
# start_limited NAME PORT ADMIN_PORT RATE_LIMITS_YAML: sets STARTED_PID.
start_limited() {
    local name=$1 port=$2 admin=$3
    sed -e "s/streamgate-bench\(-upgrade\)\{0,1\}\./streamgate-bench-$name\1./" "$SG_CONFIG" >"$TMP/sg-$name.yaml"
    printf '\nrate_limits:\n%s\n  per_identity: { requests: 1000000, window: 1s }\n' "$4" >>"$TMP/sg-$name.yaml"
    "$SG_BIN" -t -c "$TMP/sg-$name.yaml" >"$TMP/config-check-$name.txt" 2>&1 ||
        die "the $name limit config is invalid: $(cat "$TMP/config-check-$name.txt")"
    BENCH_SG_PORT=$port BENCH_ADMIN_PORT=$admin RUST_LOG=warn "$SG_BIN" -c "$TMP/sg-$name.yaml" >"$TMP/streamgate-$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    wait_for_port "$STARTED_PID" "$port" "streamgate ($name limit)" "$TMP/streamgate-$name.log"
}
log "starting streamgate with a local per-user limit on :$SG_LOCAL_PORT"
start_limited local "$SG_LOCAL_PORT" "$SG_LOCAL_ADMIN_PORT" "  backend: local"
SG_LOCAL_PID=$STARTED_PID
log "starting streamgate with a per-user limit in Redis on :$SG_REDIS_PORT"
start_limited redis "$SG_REDIS_PORT" "$SG_REDIS_ADMIN_PORT" \
    "  backend: redis
  redis: { url: \"redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0\", on_error: deny }"
SG_REDIS_PID=$STARTED_PID

log "starting HAProxy on :$HAPROXY_PORT"
sed -e "s/@HAPROXY_PORT@/$HAPROXY_PORT/g" -e "s/@UPSTREAM_PORT@/$UPSTREAM_PORT/g" \
    "$BENCH_DIR/haproxy/proxy.cfg" >"$TMP/haproxy.cfg"
haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
wait_for_port "$HAPROXY_PID" "$HAPROXY_PORT" haproxy "$TMP/haproxy.log"

log "starting the bare Pingora floor on :$FLOOR_PORT"
"$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "127.0.0.1:$UPSTREAM_PORT" >"$TMP/floor.log" 2>&1 &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
wait_for_port "$FLOOR_PID" "$FLOOR_PORT" pingora-floor "$TMP/floor.log"

log "starting the Express reference on :$EXPRESS_PORT"
(cd "$BENCH_DIR/reference-express" &&
    exec env NODE_ENV=production PORT="$EXPRESS_PORT" STREAM_API_KEY="$STREAM_API_KEY" \
        STREAM_API_SECRET="$STREAM_API_SECRET" node server.js) >"$TMP/express.log" 2>&1 &
EXPRESS_PID=$!
PIDS+=("$EXPRESS_PID")
wait_for_port "$EXPRESS_PID" "$EXPRESS_PORT" express "$TMP/express.log"

# ---------------------------------------------------------------------------
# 4. Check that every target answers what it should before timing it: a fast
#    404 or 502 would make a meaningless number.
# ---------------------------------------------------------------------------
expect() {
    local what=$1 pattern=$2
    shift 2
    local out
    out=$(curl -sS -m 10 -w '\n%{http_code}' "$@") || die "$what: request failed"
    if ! grep -q -- "$pattern" <<<"$out" || [ "$(tail -n1 <<<"$out")" != 200 ]; then
        die "$what: expected 200 and /$pattern/, got: $(head -c 300 <<<"$out")"
    fi
}

log "checking the targets"
# on_error: deny above: a token here means Redis answered.
for port in "$SG_PORT" "$EXPRESS_PORT" "$TOKEN_LUA_PORT" "$SG_LOCAL_PORT" "$SG_REDIS_PORT"; do
    expect "token on :$port" '"success":true,"data":{"token":"ey' -X POST \
        -H 'Content-Type: application/json' --data "$TOKEN_BODY" "http://127.0.0.1:$port/api/tokens/user"
done
# The nginx + Lua endpoint against streamgate's contract: tokens that verify
# with the secret and carry the same claims, the same answer's fields in the
# same order, the same 4xx and envelope for bad requests.
python3 "$BENCH_DIR/token_check.py" "$STREAM_API_SECRET" "$STREAM_API_KEY" \
    "http://127.0.0.1:$SG_PORT/api/tokens/user" "http://127.0.0.1:$TOKEN_LUA_PORT/api/tokens/user" >&2 ||
    die "the token endpoints do not serve the same contract (above)"
head -c $((1024 * 1024)) /dev/zero | tr '\0' 'a' >"$TMP/upload.bin"
for port in "$UPSTREAM_PORT" "$NGINX_PROXY_PORT" "$SG_PORT" "$FLOOR_PORT" "$HAPROXY_PORT"; do
    expect "small GET on :$port" '"source":"upstream"' "http://127.0.0.1:$port/small"
    size=$(curl -sS -m 10 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/1mib")
    [ "$size" = 1048576 ] || die "1 MiB GET on :$port: got $size bytes"
    # The upstream answers with $request_length as it stood when it answered:
    # at least the body's size means nginx had read all of it first.
    out=$(curl -sS -m 10 -X POST -H 'Content-Type: application/octet-stream' \
        --data-binary "@$TMP/upload.bin" "http://127.0.0.1:$port/upload")
    received=$(sed -n 's/.*"received":\([0-9]*\).*/\1/p' <<<"$out")
    [ "${received:-0}" -gt 1048576 ] || die "1 MiB upload on :$port: upstream answered $out"
done
if [ "$CEILING" = 1 ]; then
    expect "ceiling" '{"ok":true}' "http://127.0.0.1:$SG_PORT/ceiling"
fi

# ---------------------------------------------------------------------------
# 5. Measure. One row per case: warm-up run, reset the servers' peak RSS, the
#    measured run, then read the peak back.
# ---------------------------------------------------------------------------

# wrk prints latencies as 306.00us / 1.91ms / 1.02s; the table uses ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

ROWS=$TMP/rows.tsv
: >"$ROWS"
ROW=0

# CPU time (user + system, clock ticks) of the processes PIDs so far.
cpu_ticks() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

# CPU µs per request between two cpu_ticks readings, over the requests the
# wrk outputs FILES... report.
cpu_us_per_request() {
    local before=$1 after=$2
    shift 2
    awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
        /requests in/ {n += $1}
        END { if (n > 0) printf "%.1f", ticks * 1000000 / hz / n; else print "n/a" }' "$@"
}

# run_case KEY CASE TARGET URL LUA_SCRIPT|- PID...
# KEY names the row for the ratios; the PIDs are the server processes whose
# memory counts (the proxy's, not the upstream's behind it).
run_case() {
    local key=$1 case_name=$2 target=$3 url=$4 script=$5
    shift 5
    local args=(-t1 -c"$CONNECTIONS" --latency)
    [ "$script" != - ] && args+=(-s "$BENCH_DIR/wrk/$script")
    ROW=$((ROW + 1))
    log "[$ROW] $case_name: $target ($url)"
    wrk "${args[@]}" -d"$WARMUP" "$url" >/dev/null
    reset_peak_rss "$@"
    local ticks_before
    ticks_before=$(cpu_ticks "$@")
    # REPEAT measured runs; the row is the run with the median requests/s, so
    # that one run disturbed by the other processes on the machine does not
    # decide a ratio. Peak RSS is over all of them.
    local r runs=()
    for r in $(seq "$REPEAT"); do
        wrk "${args[@]}" -d"$DURATION" "$url" >"$TMP/wrk-$ROW-$key-$r.txt"
        runs+=("$(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk-$ROW-$key-$r.txt") $r")
    done
    local cpu_us
    cpu_us=$(cpu_us_per_request "$ticks_before" "$(cpu_ticks "$@")" "$TMP/wrk-$ROW-$key-"*.txt)
    local median
    median=$(printf '%s\n' "${runs[@]}" | sort -n | awk -v n="$REPEAT" 'NR == int((n + 1) / 2) {print $2}')
    local out=$TMP/wrk-$ROW-$key-$median.txt
    local rss_kib
    rss_kib=$(peak_rss_kib "$@")

    local rps p50 p99 non2xx errors note=""
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    non2xx=$(awk -F: '/Non-2xx or 3xx responses/ {gsub(/ /, "", $2); print $2}' "$out")
    errors=$(sed -n 's/.*Socket errors: *//p' "$out")
    [ -n "$non2xx" ] && note="$non2xx non-2xx responses!"
    [ -n "$errors" ] && note="${note:+$note; }socket errors: $errors"
    [ -n "$note" ] && log "    WARNING: $note (wrk output: $out)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$case_name" "$target" \
        "${rps:-0}" "$p50" "$p99" "$rss_kib" "$note" "$cpu_us" >>"$ROWS"
    log "    $rps req/s, p50 $p50 ms, p99 $p99 ms, CPU $cpu_us us/request, peak RSS $((rss_kib / 1024)) MiB"
}

SG=http://127.0.0.1:$SG_PORT
UP=http://127.0.0.1:$UPSTREAM_PORT
NX=http://127.0.0.1:$NGINX_PROXY_PORT
HA=http://127.0.0.1:$HAPROXY_PORT
EX=http://127.0.0.1:$EXPRESS_PORT
LUA=http://127.0.0.1:$TOKEN_LUA_PORT
FL=http://127.0.0.1:$FLOOR_PORT
# shellcheck disable=SC2086 # the PID lists are meant to split into arguments
{
    run_case token_sg "Token endpoint" "streamgate" "$SG/api/tokens/user" token.lua "$SG_PID"
    run_case token_sg_local "Token endpoint, per-user limit" "streamgate, limit local" \
        "http://127.0.0.1:$SG_LOCAL_PORT/api/tokens/user" token.lua "$SG_LOCAL_PID"
    run_case token_sg_redis "Token endpoint, per-user limit" "streamgate, limit in Redis (loopback)" \
        "http://127.0.0.1:$SG_REDIS_PORT/api/tokens/user" token.lua "$SG_REDIS_PID"
    run_case token_ex "Token endpoint" "Express + @stream-io/node-sdk" "$EX/api/tokens/user" token.lua "$EXPRESS_PID"
    run_case token_lua "Token endpoint" "nginx + Lua (HS256 via libcrypto FFI)" "$LUA/api/tokens/user" token.lua $TOKEN_LUA_PIDS
    if [ "$CEILING" = 1 ]; then
        run_case ceiling "Ceiling (constant body)" "streamgate direct_response" "$SG/ceiling" - "$SG_PID"
    else
        printf 'ceiling\tCeiling (constant body)\tstreamgate direct_response\tn/a\tn/a\tn/a\tn/a\tdirect_response not in this build\tn/a\n' >>"$ROWS"
    fi
    run_case small_direct "Small GET" "nginx direct (return 200)" "$UP/small" - $UPSTREAM_PIDS
    run_case small_nginx "Small GET" "nginx proxy_pass" "$NX/small" - $NGINX_PROXY_PIDS
    run_case small_haproxy "Small GET" "HAProxy" "$HA/small" - "$HAPROXY_PID"
    run_case small_sg "Small GET" "streamgate" "$SG/small" - "$SG_PID"
    run_case small_floor "Small GET" "bare Pingora (floor: bench/pingora_floor.rs)" "$FL/small" - "$FLOOR_PID"
    run_case big_direct "1 MiB response" "nginx direct (sendfile)" "$UP/1mib" - $UPSTREAM_PIDS
    run_case big_nginx "1 MiB response" "nginx proxy_pass" "$NX/1mib" - $NGINX_PROXY_PIDS
    run_case big_haproxy "1 MiB response" "HAProxy" "$HA/1mib" - "$HAPROXY_PID"
    run_case big_sg "1 MiB response" "streamgate" "$SG/1mib" - "$SG_PID"
    run_case up_direct "1 MiB upload" "nginx direct" "$UP/upload" upload.lua $UPSTREAM_PIDS
    run_case up_nginx "1 MiB upload" "nginx proxy_pass" "$NX/upload" upload.lua $NGINX_PROXY_PIDS
    run_case up_haproxy "1 MiB upload" "HAProxy" "$HA/upload" upload.lua "$HAPROXY_PID"
    run_case up_sg "1 MiB upload" "streamgate" "$SG/upload" upload.lua "$SG_PID"
}

# ---------------------------------------------------------------------------
# 5b. Latency at a fixed rate (issue 12). wrk above sends as fast as the
#     server answers, so its percentiles are those of a saturated server. Here
#     oha holds RATE req/s over the same CONNECTIONS connections, and with
#     --latency-correction times each request from when it was due, not from
#     when a connection was free to send it: a stall shows in the percentiles
#     instead of silently lowering the rate (coordinated omission). One oha
#     worker thread, like wrk's one thread. RATE_REPEAT rounds, every target
#     once per round so that drift on the machine spreads over all of them;
#     a row is the round with the median p99, the CPU column is over all rounds.
# ---------------------------------------------------------------------------

RATE_ROWS=$TMP/rate-rows.tsv
: >"$RATE_ROWS"
OHA_ARGS=(--no-tui --worker-threads 1 -c "$CONNECTIONS" -q "$RATE" --latency-correction
    --wait-ongoing-requests-after-deadline --output-format json)
OHA_TOKEN_ARGS=(-m POST -T application/json -d "$TOKEN_BODY")

# What a row needs from oha's JSON: achieved req/s, p50, p99, p99.9 (ms),
# responses, non-2xx responses, errors.
oha_fields() {
    python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d.get("latencyPercentiles") or {}
ms = lambda k: "n/a" if p.get(k) is None else "%.3f" % (p[k] * 1000)
codes = d.get("statusCodeDistribution") or {}
errors = sum((d.get("errorDistribution") or {}).values())
non2xx = sum(n for code, n in codes.items() if not code.startswith("2"))
print("\t".join([str(round(d["summary"].get("requestsPerSec") or 0)), ms("p50"), ms("p99"),
                 ms("p99.9"), str(sum(codes.values())), str(non2xx), str(errors)]))
PY
}

# rate_run KEY ROUND URL GET|POST: one oha run (after a warm-up in round 1).
declare -A RATE_TICKS=()
rate_run() {
    local key=$1 round=$2 url=$3 method=$4
    local args=("${OHA_ARGS[@]}")
    [ "$method" = POST ] && args+=("${OHA_TOKEN_ARGS[@]}")
    [ "$round" = 1 ] && "$OHA" "${args[@]}" -z "$RATE_WARMUP" "$url" >/dev/null
    local pids before
    read -ra pids <<<"${RATE_PIDS[$key]}"
    before=$(cpu_ticks "${pids[@]}")
    "$OHA" "${args[@]}" -z "$RATE_DURATION" "$url" >"$TMP/oha-$key-$round.json"
    RATE_TICKS[$key]=$((${RATE_TICKS[$key]:-0} + $(cpu_ticks "${pids[@]}") - before))
    local fields
    fields=$(oha_fields "$TMP/oha-$key-$round.json")
    log "    [$round/$RATE_REPEAT] $key: $(awk -F'\t' '{printf "%s req/s, p50 %s ms, p99 %s ms, p99.9 %s ms", $1, $2, $3, $4}' <<<"$fields")"
    printf '%s\t%s\t%s\n' "$key" "$round" "$fields" >>"$TMP/rate-runs.tsv"
}

# The rows: KEY, case, target, URL, method; and the PIDs whose CPU counts.
RATE_CASES=(
    "rate_direct|Small GET|nginx direct (return 200)|$UP/small|GET"
    "rate_nginx|Small GET|nginx proxy_pass|$NX/small|GET"
    "rate_haproxy|Small GET|HAProxy|$HA/small|GET"
    "rate_sg|Small GET|streamgate|$SG/small|GET"
    "rate_floor|Small GET|bare Pingora (floor)|$FL/small|GET"
    "rate_token_sg|Token endpoint|streamgate|$SG/api/tokens/user|POST"
    "rate_token_lua|Token endpoint|nginx + Lua (HS256 via libcrypto FFI)|$LUA/api/tokens/user|POST"
)
declare -A RATE_PIDS=(
    [rate_direct]=$UPSTREAM_PIDS [rate_nginx]=$NGINX_PROXY_PIDS [rate_haproxy]=$HAPROXY_PID
    [rate_sg]=$SG_PID [rate_floor]=$FLOOR_PID [rate_token_sg]=$SG_PID [rate_token_lua]=$TOKEN_LUA_PIDS
)
: >"$TMP/rate-runs.tsv"
log "fixed rate: $RATE req/s for $RATE_DURATION per run, $RATE_REPEAT rounds (oha, latency correction)"
for round in $(seq "$RATE_REPEAT"); do
    for entry in "${RATE_CASES[@]}"; do
        IFS='|' read -r key _ _ url method <<<"$entry"
        rate_run "$key" "$round" "$url" "$method"
    done
done

# One row per case: the round with the median p99; CPU µs/request over all
# rounds (the ticks of the PIDs over the responses of every measured run).
hz=$(getconf CLK_TCK)
for entry in "${RATE_CASES[@]}"; do
    IFS='|' read -r key case_name target _ _ <<<"$entry"
    median=$(awk -F'\t' -v k="$key" '$1 == k {print $5, $0}' "$TMP/rate-runs.tsv" | sort -g |
        awk -v n="$RATE_REPEAT" 'NR == int((n + 1) / 2)' | cut -d' ' -f2-)
    IFS=$'\t' read -r _ _ achieved p50 p99 p999 _ _ _ <<<"$median"
    # The spread of p99 over the rounds, so that the noise is in the report.
    p99_range=$(awk -F'\t' -v k="$key" '$1 == k && $5 != "n/a" {
        if (n++ == 0 || $5 < lo) lo = $5; if ($5 > hi) hi = $5 }
        END { if (n) printf "%.3f–%.3f", lo, hi; else print "n/a" }' "$TMP/rate-runs.tsv")
    responses=$(awk -F'\t' -v k="$key" '$1 == k {n += $7} END {print n + 0}' "$TMP/rate-runs.tsv")
    non2xx=$(awk -F'\t' -v k="$key" '$1 == k {n += $8} END {print n + 0}' "$TMP/rate-runs.tsv")
    errors=$(awk -F'\t' -v k="$key" '$1 == k {n += $9} END {print n + 0}' "$TMP/rate-runs.tsv")
    cpu_us=$(awk -v t="${RATE_TICKS[$key]}" -v hz="$hz" -v n="$responses" \
        'BEGIN { if (n > 0) printf "%.1f", t * 1000000 / hz / n; else print "n/a" }')
    note=""
    [ "$non2xx" != 0 ] && note="$non2xx non-2xx responses!"
    [ "$errors" != 0 ] && note="${note:+$note; }$errors errors!"
    # A rate not held means the server (or oha) fell behind: the latencies are
    # then those of a queue, not of the rate asked for.
    awk -v a="$achieved" -v r="$RATE" 'BEGIN { exit !(a < 0.98 * r) }' &&
        note="${note:+$note; }rate not held"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$case_name" "$target" \
        "$achieved" "$p50" "$p99" "$p999" "$cpu_us" "$p99_range" "$note" >>"$RATE_ROWS"
done

# ---------------------------------------------------------------------------
# 6. Report: the machine, the two tables, the ratios against the targets of
#    issues 6 and 12.
# ---------------------------------------------------------------------------
field() { awk -F'\t' -v k="$1" -v c="$2" '$1 == k {print $c}' "$ROWS"; }
rps() { field "$1" 4; }
p99() { field "$1" 6; }
cpu() { field "$1" 9; }
# The fixed-rate rows: p99 in ms, and what a proxy adds to the app's p99.
rate_p99() { awk -F'\t' -v k="$1" '$1 == k {print $6}' "$RATE_ROWS"; }
added_p99() {
    awk -v p="$(rate_p99 "$1")" -v d="$(rate_p99 rate_direct)" 'BEGIN {
        if (p == "" || d == "" || p == "n/a" || d == "n/a") print "n/a"; else printf "%.3f", p - d }'
}

# ratio A B: A/B with two decimals, or n/a when either side is missing (or B
# is not positive: an added latency at or below zero has no meaningful ratio).
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "n/a" || b == "n/a" || b + 0 <= 0) print "n/a"; else printf "%.2f", a / b }'
}
# verdict VALUE OP TARGET: "yes"/"no" for VALUE >= or <= TARGET.
verdict() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "n/a") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
        print ok ? "yes" : "**no**" }'
}

version_of() { node -p "require('$BENCH_DIR/reference-express/node_modules/$1/package.json').version"; }
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
deb_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
rate_label=$(sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$RATE")
revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && revision="$revision+local changes"

# ratio_row LABEL A B [OP TARGET [SHOWN]]: a row of the ratios table, A/B
# against TARGET (OP ">=" or "<=", shown as "≥ TARGET×" / "≤ TARGET×" unless
# SHOWN says otherwise); without OP, a row for information only.
ratio_row() {
    local r shown
    r=$(ratio "$2" "$3")
    if [ $# -lt 5 ]; then
        echo "| $1 | ${r}× | — | — |"
        return
    fi
    if [ "$4" = '>=' ]; then shown="≥ $5×"; else shown="≤ $5×"; fi
    echo "| $1 | ${r}× | ${6:-$shown} | $(verdict "$r" "$4" "$5") |"
}

report() {
    echo "## streamgate benchmark"
    echo
    echo "- When: $(date -u '+%Y-%m-%d %H:%M UTC'), streamgate $revision"
    echo "- Machine: ${cpu:-unknown CPU}, $(nproc) cores, $(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "- Software: $(nginx -v 2>&1 | sed 's/^nginx version: //'), node $(node --version), express $(version_of express), @stream-io/node-sdk $(version_of @stream-io/node-sdk)," \
        "lua-nginx-module $(deb_version libnginx-mod-http-lua), LuaJIT $(deb_version libluajit2-5.1-2), lua-cjson $(deb_version lua-cjson)," \
        "$(wrk --version 2>&1 | head -n1 | awk '{print $1, $2}'), $("$OHA" --version)"
    echo "- Load: wrk, 1 thread, $CONNECTIONS keep-alive connections, $WARMUP warm-up then $REPEAT measured runs of $DURATION (the median by requests/s is shown), all on 127.0.0.1;" \
        "every server on one worker/thread (streamgate \`threads: 1\`, nginx \`worker_processes 1\`, node)."
    echo "- Peak RSS: VmHWM of the server's processes during the measured run (nginx: master + worker; for a proxy, the proxy only)."
    echo "- Fixed rate: oha, 1 worker thread, $CONNECTIONS keep-alive connections holding $rate_label req/s with \`--latency-correction\` (each request timed from when it was due)," \
        "$RATE_WARMUP warm-up then $RATE_REPEAT rounds of $RATE_DURATION per target, every target once per round (the round with the median p99 is shown; CPU over all rounds)."
    echo
    echo "| Case | Target | Requests/s | CPU µs/request | p50 (ms) | p99 (ms) | Peak RSS (MiB) | Note |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    awk -F'\t' '{
        rss = ($7 == "n/a") ? "n/a" : sprintf("%.1f", $7 / 1024)
        rps = ($4 == "n/a") ? "n/a" : sprintf("%.0f", $4)
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, rps, $9, $5, $6, rss, $8 }' "$ROWS"
    echo
    echo "Latency at a fixed $rate_label req/s (oha, coordinated omission corrected); added p99 = the proxy's p99 − nginx direct's p99."
    echo
    echo "| Case | Target | Achieved req/s | CPU µs/request | p50 (ms) | p99 (ms) | p99, all rounds (ms) | p99.9 (ms) | Added p99 (ms) | Note |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    local key case_name target achieved p50 p99 p999 cpu_us note p99_range added
    # The note is last: read would merge the tabs around an empty field.
    while IFS=$'\t' read -r key case_name target achieved p50 p99 p999 cpu_us p99_range note; do
        added="—"
        case $key in rate_nginx | rate_haproxy | rate_sg | rate_floor) added=$(added_p99 "$key") ;; esac
        echo "| $case_name | $target | $achieved | $cpu_us | $p50 | $p99 | $p99_range | $p999 | $added | $note |"
    done <"$RATE_ROWS"
    echo

    local sg_rss
    echo "| Ratio (same run) | Measured | Target | Met |"
    echo "| --- | ---: | ---: | :---: |"
    ratio_row "Token endpoint vs Express, requests/s" "$(rps token_sg)" "$(rps token_ex)" '>=' 50
    ratio_row "Token endpoint vs Express, p99 ($(p99 token_sg) vs $(p99 token_ex) ms)" \
        "$(p99 token_sg)" "$(p99 token_ex)" '<=' 0.9999 "< 1×"
    ratio_row "Token endpoint vs nginx direct \`return 200\`, requests/s" "$(rps token_sg)" "$(rps small_direct)" '>=' 0.5
    local key label
    for key in small big up; do
        case $key in
            small) label="small GET" ;;
            big) label="1 MiB response" ;;
            up) label="1 MiB upload" ;;
        esac
        ratio_row "Pass-through ($label) vs nginx proxy_pass, requests/s" "$(rps ${key}_sg)" "$(rps ${key}_nginx)" '>=' 1.0
        ratio_row "Pass-through ($label) vs nginx proxy_pass, p99 ($(p99 ${key}_sg) vs $(p99 ${key}_nginx) ms)" \
            "$(p99 ${key}_sg)" "$(p99 ${key}_nginx)" '<=' 1.0
    done
    local peer target
    for peer in "nginx proxy_pass:small_nginx:1.0" "HAProxy:small_haproxy:1.0" "bare Pingora:small_floor:1.05"; do
        IFS=: read -r label key target <<<"$peer"
        ratio_row "Pass-through (small GET) vs $label, CPU µs/request ($(cpu small_sg) vs $(cpu "$key"))" \
            "$(cpu small_sg)" "$(cpu "$key")" '<=' "$target"
    done
    ratio_row "Token endpoint vs nginx + Lua, requests/s" "$(rps token_sg)" "$(rps token_lua)" '>=' 1.5
    ratio_row "Token endpoint vs nginx + Lua, CPU µs/token ($(cpu token_sg) vs $(cpu token_lua))" \
        "$(cpu token_sg)" "$(cpu token_lua)" '<=' 0.6
    ratio_row "Added p99 latency at $rate_label req/s, streamgate vs nginx proxy_pass ($(added_p99 rate_sg) vs $(added_p99 rate_nginx) ms)" \
        "$(added_p99 rate_sg)" "$(added_p99 rate_nginx)" '<=' 1.0
    ratio_row "Added p99 latency at $rate_label req/s, streamgate vs bare Pingora ($(added_p99 rate_sg) vs $(added_p99 rate_floor) ms), for information" \
        "$(added_p99 rate_sg)" "$(added_p99 rate_floor)"
    ratio_row "Token endpoint vs ceiling, requests/s" "$(rps token_sg)" "$(rps ceiling)" '>=' 0.8
    ratio_row "Token endpoint, per-user limit in Redis vs local, requests/s, for information" \
        "$(rps token_sg_redis)" "$(rps token_sg_local)"
    ratio_row "Token endpoint, per-user limit in Redis vs local, CPU µs/token ($(cpu token_sg_redis) vs $(cpu token_sg_local)) (streamgate only: Redis's own CPU not counted), for information" \
        "$(cpu token_sg_redis)" "$(cpu token_sg_local)"
    sg_rss=$(awk -F'\t' '$3 ~ /^streamgate/ && $7 != "n/a" && $7 + 0 > m {m = $7} END {printf "%.1f", m / 1024}' "$ROWS")
    echo "| streamgate peak RSS under load (largest row) | ${sg_rss} MiB | ≤ 32 MiB | $(verdict "$sg_rss" '<=' 32) |"
}

mkdir -p "$(dirname "$RESULTS")"
report | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
