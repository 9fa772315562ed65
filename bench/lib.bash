# SPDX-License-Identifier: Apache-2.0
# bench/lib.bash: helpers every bench/*.sh sources (after defining die); not a benchmark itself.

# Stops one server we started: SIGTERM (both drain and exit), SIGKILL if it lingers.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

check_alive() {
    local name=$1 pid=$2 log=$3
    kill -0 "$pid" 2>/dev/null && return 0
    tail -n 20 "$log" >&2 || true
    die "$name exited"
}

# Starts a sovcloud daemon (name, binary[, stem]) pinned to $server_cpu with $tmp/<stem>.ini
# (stem: sov) and waits for its port file $tmp/<stem>.port; sets sov_pid and sov_port.
start_sov() {
    local name=$1 bin=$2 stem=${3:-sov} i
    taskset -c "$server_cpu" "$bin" --config "$tmp/$stem.ini" --port-file "$tmp/$stem.port" \
        --pidfile "$tmp/$stem.pid" >"$tmp/$stem.log" 2>&1 &
    sov_pid=$!
    for ((i = 0; i < 100; i++)); do
        [[ -s $tmp/$stem.port ]] && break
        kill -0 "$sov_pid" 2>/dev/null || break
        sleep 0.05
    done
    [[ -s $tmp/$stem.port ]] || {
        tail -n 20 "$tmp/$stem.log" >&2 || true
        die "$name wrote no port file"
    }
    sov_port=$(head -n1 "$tmp/$stem.port")
}
