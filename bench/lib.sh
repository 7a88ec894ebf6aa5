# Shared by bench/run.sh and bench/soak.sh: ports on loopback, and stopping
# what a harness started. The caller defines `die MESSAGE`.

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
