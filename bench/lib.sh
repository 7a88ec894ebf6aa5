# Shared by bench/run.sh and bench/soak.sh: stopping what a harness started.

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
