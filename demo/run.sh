#!/usr/bin/env bash
# `make demo`: the demo app (demo/app.rs) and streamgate in front of it
# (demo/streamgate.yaml), on loopback; then a script of commands to paste that
# shows a token in each identity mode, a refused impersonation in each,
# proxying and the admin endpoints. Runs until Ctrl-C, then stops both.
#
#   demo/run.sh            interactive
#   demo/run.sh --check    runs every command it prints, plus the page in
#                          headless Chromium, asserts each answer, and exits
#
# Addresses: LISTEN (127.0.0.1:3000), ADMIN_LISTEN (127.0.0.1:9901),
# APP_ADDRESS (127.0.0.1:8080). STREAMGATE_BIN: a streamgate to use instead of
# building the release one (tests/demo.rs passes the one `cargo test` built).
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

export LISTEN=${LISTEN:-127.0.0.1:3000}
export ADMIN_LISTEN=${ADMIN_LISTEN:-127.0.0.1:9901}
export APP_ADDRESS=${APP_ADDRESS:-127.0.0.1:8080}
# Absolute, so that the key set is found whatever a relative path resolves against.
export JWKS_FILE=$PWD/conf/example-jwks.json

target=${CARGO_TARGET_DIR:-target}
# streamgate as `make run` builds it (release, shared with it); the app in the
# dev profile, which `cargo test` has usually built already.
if [ -z "${STREAMGATE_BIN:-}" ]; then
  cargo build --release
  STREAMGATE_BIN=$target/release/streamgate
fi
cargo build --example demo-app
demo_app=$target/debug/examples/demo-app

app_pid=
gate_pid=
DEMO_DIR=$(mktemp -d /tmp/streamgate-demo.XXXXXX)
export DEMO_DIR
# Only the two processes started here, by pid: SIGINT, then SIGKILL after 5 s.
stop() {
  for pid in $gate_pid $app_pid; do
    kill -INT "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$DEMO_DIR"
}
trap stop EXIT
trap 'exit 130' INT TERM

"$demo_app" "$APP_ADDRESS" >"$DEMO_DIR/app.log" 2>&1 &
app_pid=$!
"$STREAMGATE_BIN" -c demo/streamgate.yaml >"$DEMO_DIR/streamgate.log" 2>&1 &
gate_pid=$!

ready=false
for _ in $(seq 300); do
  if ! kill -0 "$gate_pid" 2>/dev/null || ! kill -0 "$app_pid" 2>/dev/null; then break; fi
  if [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$ADMIN_LISTEN/readyz")" = 200 ]; then
    ready=true
    break
  fi
  sleep 0.1
done
if ! $ready; then
  echo "streamgate did not become ready on http://$ADMIN_LISTEN/readyz within 30 s; logs:" >&2
  tail -n 20 "$DEMO_DIR/app.log" "$DEMO_DIR/streamgate.log" >&2
  exit 1
fi

gate=http://$LISTEN
admin=http://$ADMIN_LISTEN
jar=$DEMO_DIR/cookies
json="-H 'Content-Type: application/json'"
bin=$STREAMGATE_BIN

# The script: `section TITLE`, then `step STATUS TEXT 'COMMAND' '# COMMENT'`.
# STATUS is the HTTP status the command's first line must show (- for
# commands that are not a single `curl -i`), TEXT a string its output must
# contain. Interactive: printed. --check: run as printed, in this shell (so
# TOKEN=… carries on), and asserted.
passed=0
failed=0
section() {
  printf '\n# %s\n' "$1"
}
step() {
  local status=$1 text=$2 command=$3 comment=$4
  printf '%s   %s\n' "$command" "$comment"
  $check || return 0
  # Not in $( ): a subshell would lose the TOKEN=… a step sets.
  eval "$command" >"$DEMO_DIR/out" 2>&1 || true
  local out
  out=$(<"$DEMO_DIR/out")
  if { [ "$status" = - ] || [[ $out =~ ^HTTP/[0-9.]+\ $status ]]; } && [[ $out == *"$text"* ]]; then
    passed=$((passed + 1))
    echo "  ok"
  else
    failed=$((failed + 1))
    printf '  FAILED: expected %s and %q in:\n%s\n' "$status" "$text" "$out" | sed 's/^/  /'
  fi
}

$check || cat <<EOF

streamgate is listening on $gate (admin $admin), in front of the demo app on
http://$APP_ADDRESS. pids: streamgate $gate_pid, app $app_pid; logs in $DEMO_DIR/ (removed at exit).
Open $gate/ in a browser: sign in, then "Get a Stream token" (forward_auth).
Paste these in another terminal, from $PWD:
EOF
started=$SECONDS
if $check; then
  # Bounded: no command of the check waits for an answer longer than this.
  printf 'max-time = 10\n' >"$DEMO_DIR/.curlrc"
  export CURL_HOME=$DEMO_DIR
fi
# -i everywhere: the status is the point.
section "forward_auth: the app's session cookie decides (POST /api/tokens/user)"
step 401 'Unauthorized' "curl -si -X POST $gate/api/tokens/user $json -d '{}'" \
  "# no cookie: 401"
step 303 'demo_session=' "curl -si -c $jar -d username=alice $gate/login" \
  "# sign in at the app, through streamgate"
step 200 '"id":"alice"' "curl -si -b $jar $gate/api/me" \
  "# the app's who-am-I, which streamgate asks"
step 200 '"userId":"alice"' "curl -si -b $jar -X POST $gate/api/tokens/user $json -d '{}'" \
  "# a token for alice"
step 403 'userId does not match the authenticated user' "curl -si -b $jar -X POST $gate/api/tokens/user $json -d '{\"userId\":\"bob\"}'" \
  "# alice asks for bob: 403"

section "header: an auth proxy in front says who the user is (trusted peer: loopback)"
step 200 '"userId":"alice"' "curl -si -X POST $gate/demo/header/token -H 'X-Forwarded-User: alice' $json -d '{}'" \
  "# a token for alice"
step 403 'userId does not match the authenticated user' "curl -si -X POST $gate/demo/header/token -H 'X-Forwarded-User: alice' $json -d '{\"userId\":\"bob\"}'" \
  "# alice asks for bob: 403"

section "jwt: a token from the identity provider (the development key of conf/dev-idp/)"
step - '' "TOKEN=\$($bin dev-jwt --sub alice)" \
  "# an IdP token for alice"
step 200 '"userId":"alice"' "curl -si -X POST $gate/demo/jwt/token -H \"Authorization: Bearer \$TOKEN\" $json -d '{}'" \
  "# a token for alice"
step 403 'userId does not match the authenticated user' "curl -si -X POST $gate/demo/jwt/token -H \"Authorization: Bearer \$TOKEN\" $json -d '{\"userId\":\"bob\"}'" \
  "# alice asks for bob: 403"
step - '' "FORGED=\$($bin dev-jwt --sub bob --key tests/fixtures/idp-key-1.pem)" \
  "# signed with a key streamgate does not trust"
step 401 'Unauthorized' "curl -si -X POST $gate/demo/jwt/token -H \"Authorization: Bearer \$FORGED\" $json -d '{}'" \
  "# forged: 401"

section "proxying: everything else goes to the app"
step 200 '"app":"streamgate demo app"' "curl -si $gate/api/hello" \
  "# the app's answer, with the X-Forwarded-For and X-Request-Id streamgate added"

section "admin"
step 200 'ready' "curl -si $admin/readyz" \
  "# 200 once the keys are loaded and the listeners are up"
step - 'streamgate_tokens_issued_total{' "curl -s $admin/metrics | grep -E '^streamgate_tokens_(issued|refused)_total'" \
  "# what was minted and refused above, and why"

if ! $check; then
  printf '\nCtrl-C stops the demo (streamgate %s and the app %s).\n' "$gate_pid" "$app_pid"
  wait "$gate_pid"
  exit
fi

# The browser path: the page signs in and mints with fetch() in a real browser.
section "the page in a headless browser"
if ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
  else
    echo "!!! SKIPPED: no chromium and no apt-get to install it; the browser check did not run !!!" >&2
  fi
fi
if command -v chromium >/dev/null; then
  step - '<code id="token-user">alice</code>' \
    "timeout 30 chromium --headless --disable-gpu --no-sandbox --disable-dev-shm-usage --user-data-dir=$DEMO_DIR/chromium --virtual-time-budget=5000 --dump-dom '$gate/?demo_user=alice'" \
    "# the DOM after sign-in and fetch(): #token-user is alice"
fi

echo
echo "demo check: $passed ok, $failed failed, in $((SECONDS - started)) s"
[ "$failed" = 0 ]
