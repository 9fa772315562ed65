#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/http.sh: requests per second of sov-demo's GET /hello (core HTTP server, one worker, no
# access log) against nginx answering the same 20-byte text/plain body, both pinned to one CPU
# and driven by wrk over keep-alive connections from another CPU. Runs alternate (sov, nginx,
# sov, ...) so drift in the machine hits both sides alike; the last line is
# `ratio <median sov / median nginx>`.
#
# Environment: BENCH_DURATION (seconds per run, default 5), BENCH_RUNS (runs per server,
# default 3), BENCH_CONNECTIONS (default 50), BENCH_WARMUP (seconds, default 1, not counted),
# BENCH_SERVER_CPU (default 0), BENCH_CLIENT_CPU (default 1), NGINX (default /usr/sbin/nginx).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-5}
runs=${BENCH_RUNS:-3}
conns=${BENCH_CONNECTIONS:-50}
warmup=${BENCH_WARMUP:-1}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
nginx_bin=${NGINX:-/usr/sbin/nginx}
body=$'Hello from sovcloud\n'

die() {
    echo "bench/http.sh: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.bash
source "$root/bench/lib.bash"

sov_bin=
for b in "$root/bin/sov-demo" "$root/build/src/demo/sov-demo"; do
    if [[ -x $b ]]; then
        sov_bin=$b
        break
    fi
done
[[ -n $sov_bin ]] || die "no sov-demo in $root/bin or $root/build/src/demo (run make)"
for tool in "$nginx_bin" wrk taskset curl; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-bench-http.XXXXXX")
sov_pid=
nginx_pid=
wrk_pid=

cleanup() {
    stop_pid "$wrk_pid"
    stop_pid "$sov_pid"
    stop_pid "$nginx_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port for nginx: bind port 0, read what the kernel picked, let it go.
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# Waits until GET /hello answers, then checks that the body is byte for byte the expected one
# (both servers must send the same bytes for the comparison to mean anything).
wait_ready() {
    local name=$1 pid=$2 port=$3 log=$4 i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "$name exited during startup"
        fi
        if curl -sf --max-time 1 -o "$tmp/$name.body" "http://127.0.0.1:$port/hello" 2>/dev/null; then
            cmp -s "$tmp/$name.body" "$tmp/expected.body" ||
                die "$name answered /hello with '$(cat "$tmp/$name.body")'"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2 || true
    die "$name did not answer on port $port"
}

printf '%s' "$body" >"$tmp/expected.body"

# sov-demo: one worker, no access log, port 0 reported through --port-file.
cat >"$tmp/sov.ini" <<EOF
[server]
listen = 127.0.0.1:0
workers = 1
access_log = false

[log]
level = warn
EOF
start_sov sov-demo "$sov_bin"
wait_ready sov-demo "$sov_pid" "$sov_port" "$tmp/sov.log"

# nginx: the template with this run's prefix and port, foreground, one worker.
nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
sed -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@PORT@|$nginx_port|g" "$root/bench/nginx-http.conf.in" \
    >"$tmp/nginx/nginx.conf"
taskset -c "$server_cpu" "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" \
    >"$tmp/nginx.log" 2>&1 &
nginx_pid=$!
wait_ready nginx "$nginx_pid" "$nginx_port" "$tmp/nginx.log"

# One wrk run against a port; sets rps to its requests/s. wrk runs in the background so that
# an interrupt reaches the trap at once and cleanup can stop it. Non-2xx answers or socket
# errors make the number meaningless, so they fail the benchmark.
wrk_run() {
    local port=$1 secs=$2
    taskset -c "$client_cpu" wrk -t 1 -c "$conns" -d "${secs}s" --timeout 5s \
        "http://127.0.0.1:$port/hello" >"$tmp/wrk.out" 2>&1 &
    wrk_pid=$!
    wait "$wrk_pid" || {
        cat "$tmp/wrk.out" >&2
        die "wrk failed against port $port"
    }
    wrk_pid=
    if grep -qE 'Non-2xx|Socket errors' "$tmp/wrk.out"; then
        cat "$tmp/wrk.out" >&2
        die "wrk saw errors against port $port"
    fi
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
    [[ -n $rps ]] || {
        cat "$tmp/wrk.out" >&2
        die "no Requests/sec in wrk output"
    }
}

echo "bench http: $sov_bin (port $sov_port) vs $("$nginx_bin" -v 2>&1 | sed 's/.*: //') (port $nginx_port)"
echo "bench http: GET /hello, wrk -t 1 -c $conns -d ${duration}s keep-alive on CPU $client_cpu," \
    "servers on CPU $server_cpu, $runs runs each"
if [[ $warmup != 0 ]]; then
    wrk_run "$sov_port" "$warmup"
    wrk_run "$nginx_port" "$warmup"
fi

sov_rps=()
nginx_rps=()
for ((r = 1; r <= runs; r++)); do
    wrk_run "$sov_port" "$duration"
    sov_rps+=("$rps")
    printf 'run %d sov   %12.2f req/s\n' "$r" "$rps"
    wrk_run "$nginx_port" "$duration"
    nginx_rps+=("$rps")
    printf 'run %d nginx %12.2f req/s\n' "$r" "$rps"
done

sov_med=$(median "${sov_rps[@]}")
nginx_med=$(median "${nginx_rps[@]}")
printf 'median sov   %12.2f req/s\n' "$sov_med"
printf 'median nginx %12.2f req/s\n' "$nginx_med"
awk -v a="$sov_med" -v b="$nginx_med" 'BEGIN { printf "ratio %.3f\n", a / b }'
