#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/s3.sh: sov-s3 PUT and GET throughput and p99 latency for 4 KiB and 1 MiB objects (fsync
# on, one worker) through presigned URLs, against nginx serving the same objects as static files
# (the ceiling for a GET path). Servers share one CPU, wrk drives them over keep-alive
# connections from another, with a Lua script that rotates through BENCH_OBJECTS keys per size.
# Runs alternate (sov, nginx, sov, ...) so drift in the machine hits both sides alike; the last
# line is `ratio <median sov / median nginx objects/s for 1 MiB GETs>`.
# The erasure-coding run: a second sov-s3 on four drive directories (2+2) beside the first one
# (one data directory), PUT and GET of 1 MiB and 64 MiB objects alternated between the two, and
# `ec/one` lines: the EC daemon's objects/s over the single-drive daemon's (the EC overhead).
#
# Environment: BENCH_DURATION (seconds per run, default 5), BENCH_RUNS (runs per measurement,
# default 3), BENCH_CONNECTIONS (default 16), BENCH_THREADS (wrk threads, default 2),
# BENCH_WARMUP (seconds, default 1, not counted), BENCH_OBJECTS (keys per size, default 200),
# BENCH_SERVER_CPU (default 0), BENCH_CLIENT_CPU (default 1), NGINX (default /usr/sbin/nginx),
# PYTHON (with boto3, default /usr/bin/python3), BENCH_EC (0 skips the erasure-coding run),
# BENCH_EC_OBJECTS (keys per size there, default 4), BENCH_EC_CONNECTIONS (default 2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-5}
runs=${BENCH_RUNS:-3}
conns=${BENCH_CONNECTIONS:-16}
threads=${BENCH_THREADS:-2}
warmup=${BENCH_WARMUP:-1}
objects=${BENCH_OBJECTS:-200}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
nginx_bin=${NGINX:-/usr/sbin/nginx}
python=${PYTHON:-/usr/bin/python3}
bucket=bench
region=eu-central-1
access_key=SOVBENCHKEY000000001
secret_key=benchsecretbenchsecretbenchsecret0001
sizes=(4096 1048576)
ec_run=${BENCH_EC:-1}
ec_objects=${BENCH_EC_OBJECTS:-4}
ec_conns=${BENCH_EC_CONNECTIONS:-2}
ec_sizes=(1048576 67108864)

die() {
    echo "bench/s3.sh: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.bash
source "$root/bench/lib.bash"

sov_bin=
for b in "$root/bin/sov-s3" "$root/build/src/s3/sov-s3"; do
    if [[ -x $b ]]; then
        sov_bin=$b
        break
    fi
done
[[ -n $sov_bin ]] || die "no sov-s3 in $root/bin or $root/build/src/s3 (run make)"
for tool in "$nginx_bin" wrk taskset curl sha256sum "$python"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
"$python" -c 'import boto3' 2>/dev/null || die "$python cannot import boto3"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-bench-s3.XXXXXX")
sov_pid=
ec_pid=
nginx_pid=
wrk_pid=

# Stops one process we started: SIGTERM (servers drain and exit), SIGKILL if it lingers.
cleanup() {
    stop_pid "$wrk_pid"
    stop_pid "$sov_pid"
    stop_pid "$ec_pid"
    stop_pid "$nginx_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port for nginx: bind port 0, read what the kernel picked, let it go.
free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# "4 KiB" / "1 MiB" for a size in bytes.
human() {
    if (($1 >= 1048576)); then
        echo "$(($1 / 1048576)) MiB"
    else
        echo "$(($1 / 1024)) KiB"
    fi
}

# Waits until a server answers HTTP at all on a port (any status will do).
wait_http() {
    local name=$1 pid=$2 port=$3 log=$4 i code
    for ((i = 0; i < 100; i++)); do
        check_alive "$name" "$pid" "$log"
        code=$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
        [[ $code != 000 && -n $code ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$log" >&2 || true
    die "$name did not answer on port $port"
}

# Fetches a URL and dies unless the body's SHA-256 is the expected one: both servers must hand
# out the very bytes that were stored for the comparison to mean anything.
check_sha256() {
    local what=$1 url=$2 want=$3 got
    curl -sf --max-time 10 -o "$tmp/check.body" "$url" || die "$what: GET $url failed"
    got=$(sha256sum <"$tmp/check.body" | cut -d' ' -f1)
    [[ $got == "$want" ]] || die "$what: body sha256 $got, expected $want"
}

# sov-s3: one worker, fsync on, no access log, port 0 reported through --port-file.
mkdir -p "$tmp/s3" "$tmp/www" "$tmp/urls"
# nginx started as root serves files as nobody: let it through the mktemp directory (0700).
chmod 0755 "$tmp" "$tmp/www"
cat >"$tmp/sov.ini" <<EOF
[server]
listen = 127.0.0.1:0
workers = 1
access_log = false

[log]
level = warn

[s3]
data_dir = $tmp/s3
region = $region
access_key_id = $access_key
secret_access_key = $secret_key
fsync = true
EOF
start_sov sov-s3 "$sov_bin"
wait_http sov-s3 "$sov_pid" "$sov_port" "$tmp/sov.log"

# The objects: uploaded to sov-s3 with boto3, the same bytes written for nginx, and presigned
# URLs for wrk. Not pinned: it is setup, not measurement.
"$python" "$root/bench/s3-setup.py" "http://127.0.0.1:$sov_port" "$access_key" "$secret_key" \
    "$region" "$bucket" "$objects" "$tmp/www" "$tmp/urls" "${sizes[@]}" ||
    die "uploading the bench objects failed"
check_alive sov-s3 "$sov_pid" "$tmp/sov.log"

# nginx: the template with this run's prefix, document root and port, foreground, one worker.
nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
sed -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@ROOT@|$tmp/www|g" -e "s|@PORT@|$nginx_port|g" \
    "$root/bench/nginx-s3.conf.in" >"$tmp/nginx/nginx.conf"
taskset -c "$server_cpu" "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" \
    >"$tmp/nginx.log" 2>&1 &
nginx_pid=$!
wait_http nginx "$nginx_pid" "$nginx_port" "$tmp/nginx.log"

# Before measuring anything: a presigned GET from sov-s3 and the same path from nginx return
# the uploaded bytes, and a presigned PUT (what the PUT runs send) stores its body.
for size in "${sizes[@]}"; do
    url=$(cat "$tmp/urls/check-$size.url")
    want=$(cat "$tmp/urls/check-$size.sha256")
    check_sha256 "sov-s3 $(human "$size")" "$url" "$want"
    check_sha256 "nginx $(human "$size")" "http://127.0.0.1:$nginx_port/${url#http://*/}" "$want"
    put_path=$(head -n1 "$tmp/urls/put-$size.paths")
    curl -sf --max-time 10 -o /dev/null -T "$tmp/urls/put-$size.body" \
        "http://127.0.0.1:$sov_port$put_path" || die "sov-s3 $(human "$size"): presigned PUT failed"
done

# One wrk run; sets ops (objects/s) and p99 (ms). wrk runs in the background so that an
# interrupt reaches the trap at once and cleanup can stop it. Non-2xx answers or socket errors
# make the numbers meaningless, so they fail the benchmark, as does a server that died.
wrk_run() {
    local name=$1 pid=$2 log=$3 port=$4 secs=$5
    shift 5
    taskset -c "$client_cpu" wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 10s --latency \
        -s "$root/bench/s3.lua" "http://127.0.0.1:$port/" -- "$@" >"$tmp/wrk.out" 2>&1 &
    wrk_pid=$!
    wait "$wrk_pid" || {
        cat "$tmp/wrk.out" >&2
        die "wrk failed against $name"
    }
    wrk_pid=
    check_alive "$name" "$pid" "$log"
    local line
    line=$(grep '^bench-s3 ' "$tmp/wrk.out") || {
        cat "$tmp/wrk.out" >&2
        die "no bench-s3 line in wrk output"
    }
    if [[ $line != *" errors=0" ]] || grep -qE 'Non-2xx|Socket errors' "$tmp/wrk.out"; then
        cat "$tmp/wrk.out" >&2
        die "wrk saw errors against $name"
    fi
    read -r ops p99 < <(awk '{
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            if (v["requests"] == 0) exit 1
            printf "%.2f %.2f\n", v["requests"] / (v["duration_us"] / 1e6), v["p99_us"] / 1000
        }' <<<"$line") || die "wrk completed no requests against $name"
}

# The measurements of one run, in order: name, server, method, size. GETs alternate between
# sov-s3 and nginx; PUTs are sov-s3's alone.
measurements=()
for size in "${sizes[@]}"; do
    measurements+=("sov PUT $size" "sov GET $size" "nginx GET $size")
done

# Runs one measurement; sets ops and p99.
measure() {
    local who=$1 method=$2 size=$3 secs=$4
    local paths="$tmp/urls/${method,,}-$size.paths"
    if [[ $who == sov ]]; then
        if [[ $method == PUT ]]; then
            wrk_run sov-s3 "$sov_pid" "$tmp/sov.log" "$sov_port" "$secs" "$paths" PUT \
                "$tmp/urls/put-$size.body"
        else
            wrk_run sov-s3 "$sov_pid" "$tmp/sov.log" "$sov_port" "$secs" "$paths"
        fi
    else
        wrk_run nginx "$nginx_pid" "$tmp/nginx.log" "$nginx_port" "$secs" "$paths"
    fi
}

line_out() {
    local label=$1 size=$2 o=$3 p=$4
    printf '%-18s %-7s %10.1f obj/s %9.1f MiB/s   p99 %8.2f ms\n' "$label" "$(human "$size")" \
        "$o" "$(awk -v o="$o" -v s="$size" 'BEGIN { print o * s / 1048576 }')" "$p"
}

echo "bench s3: $sov_bin (port $sov_port, 1 worker, fsync on) vs" \
    "$("$nginx_bin" -v 2>&1 | sed 's/.*: //') (port $nginx_port, static files)"
echo "bench s3: $objects presigned URLs per size, wrk -t $threads -c $conns -d ${duration}s" \
    "keep-alive on CPU $client_cpu, servers on CPU $server_cpu, $runs runs each"
if [[ $warmup != 0 ]]; then
    for m in "${measurements[@]}"; do
        # shellcheck disable=SC2086 # split the measurement into its words
        measure $m "$warmup"
    done
fi

declare -A all_ops all_p99
for ((r = 1; r <= runs; r++)); do
    for m in "${measurements[@]}"; do
        # shellcheck disable=SC2086
        measure $m "$duration"
        all_ops[$m]+="$ops "
        all_p99[$m]+="$p99 "
        read -r who method size <<<"$m"
        line_out "run $r $who $method" "$size" "$ops" "$p99"
    done
done

declare -A med_ops
for m in "${measurements[@]}"; do
    read -r who method size <<<"$m"
    # shellcheck disable=SC2086
    med_ops[$m]=$(median ${all_ops[$m]})
    # shellcheck disable=SC2086
    line_out "median $who $method" "$size" "${med_ops[$m]}" "$(median ${all_p99[$m]})"
done

# Anything sov-s3 logged at warn or above while under load is worth a look.
if [[ -s $tmp/sov.log ]]; then
    echo "bench/s3.sh: sov-s3 logged $(wc -l <"$tmp/sov.log") line(s); the last:" >&2
    tail -n 5 "$tmp/sov.log" >&2
fi

# ---- erasure coding: the same daemon on four drives (2+2) beside one data directory ----
if [[ $ec_run != 0 ]]; then
    mkdir -p "$tmp/s3ec" "$tmp/dr/0" "$tmp/dr/1" "$tmp/dr/2" "$tmp/dr/3" "$tmp/www-ec" \
        "$tmp/urls-one" "$tmp/urls-ec"
    sed -e "s|^data_dir = .*|data_dir = $tmp/s3ec|" "$tmp/sov.ini" >"$tmp/ec.ini"
    printf 'drives = %s\nec = 2+2\n' "$tmp/dr/0,$tmp/dr/1,$tmp/dr/2,$tmp/dr/3" >>"$tmp/ec.ini"
    one_pid=$sov_pid one_port=$sov_port
    start_sov "sov-s3 (erasure coding)" "$sov_bin" ec
    ec_pid=$sov_pid ec_port=$sov_port
    sov_pid=$one_pid sov_port=$one_port
    wait_http "sov-s3 (erasure coding)" "$ec_pid" "$ec_port" "$tmp/ec.log"
    "$python" "$root/bench/s3-setup.py" "http://127.0.0.1:$sov_port" "$access_key" "$secret_key" \
        "$region" ecbench "$ec_objects" "$tmp/www-ec" "$tmp/urls-one" "${ec_sizes[@]}" ||
        die "uploading the EC bench objects (one drive) failed"
    "$python" "$root/bench/s3-setup.py" "http://127.0.0.1:$ec_port" "$access_key" "$secret_key" \
        "$region" ecbench "$ec_objects" "$tmp/www-ec" "$tmp/urls-ec" "${ec_sizes[@]}" ||
        die "uploading the EC bench objects (erasure coding) failed"
    for size in "${ec_sizes[@]}"; do
        check_sha256 "sov-s3 EC $(human "$size")" "$(cat "$tmp/urls-ec/check-$size.url")" \
            "$(cat "$tmp/urls-ec/check-$size.sha256")"
    done
    shards=$(find "$tmp/dr" -type f -path '*/ec/*' | wc -l)
    ((shards == 4 * ${#ec_sizes[@]} * ec_objects)) ||
        die "expected $((4 * ${#ec_sizes[@]} * ec_objects)) shard files on the drives, found $shards"

    ec_measure() {
        local who=$1 method=$2 size=$3 secs=$4 port pid log urls
        if [[ $who == one ]]; then
            port=$sov_port pid=$sov_pid log=$tmp/sov.log urls=$tmp/urls-one
        else
            port=$ec_port pid=$ec_pid log=$tmp/ec.log urls=$tmp/urls-ec
        fi
        local saved_conns=$conns saved_threads=$threads
        conns=$ec_conns threads=1
        if [[ $method == PUT ]]; then
            wrk_run "sov-s3 $who" "$pid" "$log" "$port" "$secs" "$urls/put-$size.paths" PUT \
                "$urls/put-$size.body"
        else
            wrk_run "sov-s3 $who" "$pid" "$log" "$port" "$secs" "$urls/get-$size.paths"
        fi
        conns=$saved_conns threads=$saved_threads
    }
    echo "bench s3 ec: 4 drive directories, 2+2, vs one data directory; $ec_objects keys per size," \
        "wrk -t 1 -c $ec_conns -d ${duration}s, $runs runs each"
    ec_ms=()
    for size in "${ec_sizes[@]}"; do
        for method in PUT GET; do
            ec_ms+=("one $method $size" "ec $method $size")
        done
    done
    declare -A ec_ops
    for ((r = 1; r <= runs; r++)); do
        for m in "${ec_ms[@]}"; do
            # shellcheck disable=SC2086
            ec_measure $m "$duration"
            ec_ops[$m]+="$ops "
            read -r who method size <<<"$m"
            line_out "run $r $who $method" "$size" "$ops" "$p99"
        done
    done
    for size in "${ec_sizes[@]}"; do
        for method in PUT GET; do
            # shellcheck disable=SC2086
            a=$(median ${ec_ops[ec $method $size]})
            # shellcheck disable=SC2086
            b=$(median ${ec_ops[one $method $size]})
            line_out "median one $method" "$size" "$b" 0
            line_out "median ec $method" "$size" "$a" 0
            awk -v a="$a" -v b="$b" -v m="$method" -v s="$(human "$size")" \
                'BEGIN { printf "ec/one %s %s %.3f\n", m, s, a / b }'
        done
    done
fi

for size in 4096 1048576; do
    awk -v a="${med_ops[sov GET $size]}" -v b="${med_ops[nginx GET $size]}" -v s="$(human "$size")" \
        'BEGIN { printf "sov/nginx GET %s %.3f\n", s, a / b }'
done
awk -v a="${med_ops[sov GET 1048576]}" -v b="${med_ops[nginx GET 1048576]}" \
    'BEGIN { printf "ratio %.3f\n", a / b }'
