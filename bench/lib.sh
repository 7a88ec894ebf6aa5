# shellcheck shell=bash
# Shared by bench/run.sh, bench/h2.sh and bench/soak.sh: installing what is
# missing, ports on loopback, the memory of a process, and stopping what a
# harness started. The caller defines `die MESSAGE`.

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# Set while lib.sh's policy-rc.d is in place; the caller's exit trap removes it
# if an install is interrupted.
REMOVE_POLICY_RC=0

# Installs Debian packages, as root or with sudo. Installing nginx would start
# the system nginx on port 80: a policy-rc.d that says "no" (exit 101) stops
# that for the install; container images usually ship one.
apt_install() {
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        REMOVE_POLICY_RC=1
    fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    remove_policy_rc
}

remove_policy_rc() {
    if [ "$REMOVE_POLICY_RC" = 1 ]; then
        $SUDO rm -f /usr/sbin/policy-rc.d
        REMOVE_POLICY_RC=0
    fi
}

# Starts a run: a temp directory in $TMP (named after $1), an empty PIDS and
# SG_PID, and on any exit (errors and Ctrl-C included) every process in PIDS
# stopped by its pid, an apt policy this run set removed, and $TMP deleted.
begin_run() {
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    SG_PID=""
    trap end_run EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

end_run() {
    stop_started
    remove_policy_rc
    rm -rf "$TMP"
}

# PIDs of the direct children of $1 (nginx workers), from /proc so no procps needed.
children_of() {
    grep -l "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3 || true
}

# Peak RSS is VmHWM. Writing 5 to clear_refs resets it to the current RSS, so
# each row's peak is its own (the warm-up's resident memory still counts).
reset_peak_rss() {
    local pid
    for pid in "$@"; do
        echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    done
}
peak_rss_kib() {
    local pid total=0 kib
    for pid in "$@"; do
        kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# Whether something accepts connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until $2 accepts connections; gives up if process $1 dies or after 20 s.
wait_for_port() {
    local pid=$1 port=$2 name=$3 log_file=$4
    for _ in $(seq 200); do
        port_in_use "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log_file" >&2; die "$name exited during start"; }
        sleep 0.1
    done
    cat "$log_file" >&2
    die "$name did not listen on 127.0.0.1:$port within 20 s"
}

# nginx from a template in bench/nginx/: @TMP@ and each @NAME@ given as
# NAME=value filled in, run in the foreground (daemon off) so that its master
# PID is ours, until it listens on 127.0.0.1:$3. Adds the master and its
# workers to PIDS and sets STARTED_PIDS to "master worker..." (a global: a
# $(...) subshell could not add to PIDS). Needs TMP, the harness's temp dir.
STARTED_PIDS=""
start_nginx() {
    local name=$1 template=$2 port=$3
    shift 3
    local conf=$TMP/$name.conf substitutions=(-e "s#@TMP@#$TMP#g") pair
    for pair in "$@"; do
        substitutions+=(-e "s#@${pair%%=*}@#${pair#*=}#g")
    done
    mkdir -p "$TMP/nginx-$name"
    sed "${substitutions[@]}" "$template" >"$conf"
    # -e: nginx opens its compiled-in error log before reading the config.
    nginx -p "$TMP/nginx-$name" -e "$TMP/$name.stderr.log" -c "$conf" >"$TMP/$name.stdout.log" 2>&1 &
    local master=$!
    PIDS+=("$master")
    wait_for_port "$master" "$port" "nginx $name" "$TMP/$name.stderr.log"
    # The master listens before it forks the worker: give the fork a moment.
    local workers=""
    for _ in $(seq 50); do
        workers=$(children_of "$master")
        [ -n "$workers" ] && break
        sleep 0.1
    done
    [ -n "$workers" ] || die "nginx $name has no worker process"
    # Workers are recorded too, so that they are stopped even if the master is
    # killed (they would outlive it).
    # shellcheck disable=SC2206
    PIDS+=($workers)
    # shellcheck disable=SC2034 # read by the caller
    STARTED_PIDS="$master ${workers//$'\n'/ }"
}

# Stops every pid in the PIDS array, by its pid: SIGINT for streamgate
# ($SG_PID), whose SIGTERM is a graceful shutdown that waits out its drain and
# grace periods; SIGTERM for the others (nginx, node and python stop on it;
# background jobs of a script ignore SIGINT). Whatever is still alive after
# 5 s gets SIGKILL.
stop_started() {
    local pid
    for pid in "${PIDS[@]}"; do
        if [ "$pid" = "$SG_PID" ]; then
            kill -INT "$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    local alive
    for _ in $(seq 50); do
        alive=0
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
