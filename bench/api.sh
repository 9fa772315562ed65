#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/api.sh: sov-api (fsync on, one loop, pinned to one CPU) holding BENCH_SERVERS servers
# created through the compute API (t3.micro from a tiny image; without compute hosts they land
# in ERROR, which is all a listing needs). wrk, pinned to another CPU, drives two read paths over
# keep-alive connections with a token: GET /compute/v2.1/servers/detail?limit=100 (the first
# page, what dashboards and Terraform refreshes ask for) and Keystone token validation
# (GET /identity/v3/auth/tokens with X-Subject-Token, what every service does per request);
# requests/s and p50/p95/p99 latency for each. Then the wall time of `openstack server list`
# (Debian's CLI, clean environment, all pages; median of 3). The setup also reports how fast the
# servers were created (each create is durable before it is answered). The last line is
# `ratio <10 ms / p95 of servers/detail>` (medians over the runs): above 1 the p95 is under
# 10 ms.
#
# Environment: BENCH_DURATION (seconds per wrk run, default 10), BENCH_RUNS (runs per path,
# default 1), BENCH_WARMUP (seconds per path, default 2, not counted), BENCH_CONNECTIONS
# (default 8), BENCH_THREADS (wrk threads, default 1), BENCH_SERVERS (default 1000),
# BENCH_SERVER_CPU (default 0), BENCH_CLIENT_CPU (default 1), SOV_API (the binary, default
# bin/sov-api or build/src/api/sov-api), OPENSTACK (default /usr/bin/openstack), PYTHON
# (default /usr/bin/python3).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-10}
runs=${BENCH_RUNS:-1}
warmup=${BENCH_WARMUP:-2}
conns=${BENCH_CONNECTIONS:-8}
threads=${BENCH_THREADS:-1}
nservers=${BENCH_SERVERS:-1000}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
openstack_bin=${OPENSTACK:-/usr/bin/openstack}
python=${PYTHON:-/usr/bin/python3}
region=eu-central-1

die() {
    echo "bench/api.sh: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.bash
source "$root/bench/lib.bash"

sov_bin=
for b in ${SOV_API:-} "$root/bin/sov-api" "$root/build/src/api/sov-api"; do
    if [[ -x $b ]]; then
        sov_bin=$b
        break
    fi
done
[[ -n $sov_bin ]] || die "no sov-api in $root/bin or $root/build/src/api (run make)"
for tool in wrk taskset curl timeout "$openstack_bin" "$python"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ $nservers =~ ^[0-9]+$ && $nservers -ge 100 ]] || die "BENCH_SERVERS must be at least 100"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-bench-api.XXXXXX")
sov_pid=
wrk_pid=

cleanup() {
    stop_pid "$wrk_pid"
    stop_pid "$sov_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# sov-api: fsync on, no access log, quotas lifted so one project holds every server.
admin_password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
mkdir -p "$tmp/api" "$tmp/home"
cat >"$tmp/sov.ini" <<EOF
[server]
listen = 127.0.0.1:0
access_log = false

[log]
level = warn

[api]
data_dir = $tmp/api
fsync = true

[identity]
admin_password = $admin_password

[quota]
instances = -1
cores = -1
ram = -1
EOF
start_sov sov-api "$sov_bin"
url="http://127.0.0.1:$sov_port"
for ((i = 0; i < 100; i++)); do
    check_alive sov-api "$sov_pid" "$tmp/sov.log"
    curl -sf --max-time 1 -o /dev/null "$url/healthz" && break
    sleep 0.1
done
curl -sf --max-time 1 -o /dev/null "$url/healthz" || die "sov-api does not answer /healthz"

# A project-scoped admin token (password auth): the X-Subject-Token header of the answer.
issue_token() {
    curl -sf --max-time 10 -D - -o /dev/null -H 'Content-Type: application/json' -d '{"auth":
        {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",
         "domain": {"name": "Default"}, "password": "'"$admin_password"'"}}},
         "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}' \
        "$url/identity/v3/auth/tokens" | tr -d '\r' | awk 'tolower($1) == "x-subject-token:" { print $2 }'
}
token=$(issue_token)
[[ -n $token ]] || die "issuing a token failed"
subject=$(issue_token) # the token being validated: another one, as a service would see
[[ -n $subject ]] || die "issuing a second token failed"

# The servers: one image, then BENCH_SERVERS creates over one keep-alive connection, bounded
# in time; then wait (bounded) until scheduling has settled every one of them, so that no
# background work runs while measuring. Setup, not measurement: not pinned.
cat >"$tmp/populate.py" <<'EOF'
import http.client, json, sys, time
port, token, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def call(method, path, body=None, raw=None, ctype="application/json", ok=(200, 201, 202, 204)):
    headers = {"X-Auth-Token": token}
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        headers["Content-Type"] = ctype
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    text = r.read()
    if r.status not in ok:
        sys.exit(f"{method} {path}: HTTP {r.status}: {text[:300]!r}")
    return json.loads(text) if text and "json" in (r.getheader("Content-Type") or "") else None
flavors = call("GET", "/compute/v2.1/flavors")["flavors"]
flavor = next((f["id"] for f in flavors if f["name"] == "t3.micro"), None)
if flavor is None:
    sys.exit("no flavor t3.micro")
image = call("POST", "/image/v2/images", {"name": "bench", "container_format": "bare",
                                           "disk_format": "raw"})["id"]
call("PUT", f"/image/v2/images/{image}/file", raw=b"sovcloud bench image\n",
     ctype="application/octet-stream")
t0 = time.monotonic()
deadline = t0 + 300
for i in range(count):
    if time.monotonic() > deadline:
        sys.exit(f"creating servers: only {i} of {count} in 300 s")
    call("POST", "/compute/v2.1/servers", {"server": {
        "name": f"bench-{i:05d}", "flavorRef": flavor, "imageRef": image}})
created = time.monotonic() - t0
print(f"created {count} servers in {created:.1f} s ({count / created:.0f}/s, "
      "each durable before its answer)")
deadline = time.monotonic() + 120
while True:
    servers, marker = [], None
    while True:
        q = "/compute/v2.1/servers/detail?limit=1000" + (f"&marker={marker}" if marker else "")
        page = call("GET", q)["servers"]
        servers += page
        if len(page) < 1000:
            break
        marker = page[-1]["id"]
    status = {}
    for s in servers:
        status[s["status"]] = status.get(s["status"], 0) + 1
    if len(servers) >= count and not status.get("BUILD"):
        break
    if time.monotonic() > deadline:
        sys.exit(f"servers did not settle in 120 s: {len(servers)} listed, {status}")
    time.sleep(0.5)
print(f"{len(servers)} servers listed: " +
      ", ".join(f"{k} {v}" for k, v in sorted(status.items())))
EOF
timeout 600 "$python" "$tmp/populate.py" "$sov_port" "$token" "$nservers" ||
    die "populating the servers failed"
check_alive sov-api "$sov_pid" "$tmp/sov.log"

# wrk script: one fixed request with the token headers; done() prints the figures.
cat >"$tmp/api.lua" <<'EOF'
local req
function init(args)
   local headers = {["X-Auth-Token"] = args[2]}
   if args[3] then
      headers["X-Subject-Token"] = args[3]
   end
   req = wrk.format("GET", args[1], headers, nil)
end
function request()
   return req
end
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("bench-api requests=%d duration_us=%d p50_us=%d p95_us=%d " ..
                          "p99_us=%d errors=%d\n", summary.requests, summary.duration,
                          latency:percentile(50), latency:percentile(95),
                          latency:percentile(99),
                          e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

detail_path="/compute/v2.1/servers/detail?limit=100"
token_path="/identity/v3/auth/tokens"

# Before measuring: both requests answer 200, the page holds 100 servers.
n=$(curl -sf --max-time 10 -H "X-Auth-Token: $token" "$url$detail_path" |
    "$python" -c 'import json, sys; print(len(json.load(sys.stdin)["servers"]))') ||
    die "GET $detail_path failed"
[[ $n == 100 ]] || die "GET $detail_path lists $n servers, want 100"
curl -sf --max-time 10 -o /dev/null -H "X-Auth-Token: $token" -H "X-Subject-Token: $subject" \
    "$url$token_path" || die "validating a token failed"

# One wrk run (in the background so that an interrupt reaches the trap); sets rps, p50, p95,
# p99 (ms). Errors, non-2xx answers or a dead server fail the benchmark.
wrk_run() {
    local secs=$1
    shift
    taskset -c "$client_cpu" timeout $((secs + 30)) wrk -t "$threads" -c "$conns" -d "${secs}s" \
        --timeout 10s --latency -s "$tmp/api.lua" "$url/" -- "$@" >"$tmp/wrk.out" 2>&1 &
    wrk_pid=$!
    wait "$wrk_pid" || {
        cat "$tmp/wrk.out" >&2
        die "wrk failed"
    }
    wrk_pid=
    check_alive sov-api "$sov_pid" "$tmp/sov.log"
    local line
    line=$(grep '^bench-api ' "$tmp/wrk.out") || {
        cat "$tmp/wrk.out" >&2
        die "no bench-api line in wrk output"
    }
    if [[ $line != *" errors=0" ]] || grep -qE 'Non-2xx|Socket errors' "$tmp/wrk.out"; then
        cat "$tmp/wrk.out" >&2
        die "wrk saw errors"
    fi
    read -r rps p50 p95 p99 < <(awk '{
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            if (v["requests"] == 0) exit 1
            printf "%.1f %.3f %.3f %.3f\n", v["requests"] / (v["duration_us"] / 1e6),
                v["p50_us"] / 1000, v["p95_us"] / 1000, v["p99_us"] / 1000
        }' <<<"$line") || die "wrk completed no requests"
}

line_out() {
    printf '%-26s %10.1f req/s   p50 %7.3f ms   p95 %7.3f ms   p99 %7.3f ms\n' "$@"
}

echo "bench api: $sov_bin (port $sov_port, fsync on, CPU $server_cpu), $nservers servers;" \
    "wrk -t $threads -c $conns -d ${duration}s keep-alive on CPU $client_cpu, $runs run(s) each"

declare -A all_rps all_p50 all_p95 all_p99
paths=(detail token)
measure() {
    local which=$1 secs=$2
    if [[ $which == detail ]]; then
        wrk_run "$secs" "$detail_path" "$token"
    else
        wrk_run "$secs" "$token_path" "$token" "$subject"
    fi
}
if [[ $warmup != 0 ]]; then
    for p in "${paths[@]}"; do
        measure "$p" "$warmup"
    done
fi
for ((r = 1; r <= runs; r++)); do
    for p in "${paths[@]}"; do
        measure "$p" "$duration"
        all_rps[$p]+="$rps "
        all_p50[$p]+="$p50 "
        all_p95[$p]+="$p95 "
        all_p99[$p]+="$p99 "
        ((runs == 1)) || line_out "run $r $p" "$rps" "$p50" "$p95" "$p99"
    done
done

declare -A med_p95
declare -A labels=([detail]="servers/detail?limit=100" [token]="token validation")
for p in "${paths[@]}"; do
    # shellcheck disable=SC2086 # the runs' figures, one word each
    med_p95[$p]=$(median ${all_p95[$p]})
    # shellcheck disable=SC2086
    line_out "${labels[$p]}" "$(median ${all_rps[$p]})" "$(median ${all_p50[$p]})" \
        "${med_p95[$p]}" "$(median ${all_p99[$p]})"
done

# `openstack server list`: a fresh CLI process each time (start-up, authentication, catalog,
# version discovery and every page), as a user at a shell sees it.
times=()
for ((r = 1; r <= 3; r++)); do
    t0=$(date +%s%N)
    env -i PATH=/usr/bin:/bin HOME="$tmp/home" LANG=C.UTF-8 \
        OS_AUTH_URL="$url/identity/v3" OS_IDENTITY_API_VERSION=3 OS_USERNAME=admin \
        OS_PASSWORD="$admin_password" OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default \
        OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=$region OS_INTERFACE=public \
        timeout 120 "$openstack_bin" server list -f value -c ID >"$tmp/list.out" 2>"$tmp/list.err" || {
        cat "$tmp/list.err" >&2
        die "openstack server list failed"
    }
    t1=$(date +%s%N)
    n=$(wc -l <"$tmp/list.out")
    [[ $n == "$nservers" ]] || die "openstack server list printed $n servers, want $nservers"
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
done
printf '%-26s %10.3f s (median of 3: %s; %d servers)\n' "openstack server list" \
    "$(median "${times[@]}")" "${times[*]}" "$nservers"

if [[ -s $tmp/sov.log ]]; then
    echo "bench/api.sh: sov-api logged $(wc -l <"$tmp/sov.log") line(s); the last:" >&2
    tail -n 5 "$tmp/sov.log" >&2
fi

awk -v p="${med_p95[detail]}" 'BEGIN { if (p <= 0) p = 0.001; printf "ratio %.2f\n", 10 / p }'
