#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/boot.sh: time to a usable server. sov-api and sov-compute (the configuration `sov up`
# writes: default agent poll, the accelerator the agent probes) run from ./bin in a temp
# directory; the tiny guest (scripts/guest-image) is uploaded to Glance as sov-tiny and an
# ed25519 key pair (ssh-keygen) is imported. Then, alternating BENCH_RUNS times:
#   ours: wall time from `openstack server create --image sov-tiny --flavor t3.micro --key-name K`
#         (Debian's CLI, clean environment, no --wait) to the first `ssh ... true` that exits 0
#         at the server's sov:ssh address (the server's details are polled for the address,
#         then ssh with a ConnectTimeout until it answers); then the server is deleted and
#         waited for until it is gone (not timed).
#   peer: the same image booted by a hand-written qemu-system-x86_64 command line: a qcow2
#         overlay on the raw image (qemu-img), a NoCloud seed ISO with the same key
#         (scripts/guest-image --seed), the accelerator sov-compute reports, the flavor's
#         vCPUs and RAM, virtio disks and NIC, -netdev user with a hostfwd for SSH; timed from
#         making the overlay to the same first `ssh ... true`; then QEMU is killed.
# Both sides poll at the same 200 ms interval and run on the same CPUs (BENCH_CPUS; sov-compute
# is pinned there and its guests inherit it). Prints every run, the medians, the accelerator,
# and last `ratio <median ours / median peer>` (the control plane's overhead; target <= 1.10,
# absolute median target < 60 s). Every wait has a deadline; everything started is stopped on
# exit.
#
# Environment: BENCH_RUNS (default 5), BENCH_CPUS (taskset list, default every CPU),
# BENCH_BOOT_TIMEOUT (seconds one boot may take, default 300), SOV_API, SOV_COMPUTE (the
# binaries, default bin/ or build/src/), OPENSTACK (default /usr/bin/openstack), PYTHON (default
# /usr/bin/python3), QEMU (default qemu-system-x86_64), BENCH_KEEP (a directory: each run's
# serial console log and QEMU command line are copied there).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${BENCH_RUNS:-5}
cpus=${BENCH_CPUS:-0-$(($(nproc) - 1))}
boot_timeout=${BENCH_BOOT_TIMEOUT:-300}
openstack_bin=${OPENSTACK:-/usr/bin/openstack}
python=${PYTHON:-/usr/bin/python3}
qemu=${QEMU:-qemu-system-x86_64}
keep=${BENCH_KEEP:-}
region=eu-central-1
flavor=t3.micro

die() {
    echo "bench/boot.sh: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.bash
source "$root/bench/lib.bash"

find_bin() { # NAME ENV_OVERRIDE SUBDIR
    local b
    for b in ${2:-} "$root/bin/$1" "$root/build/src/$3/$1"; do
        if [[ -x $b ]]; then
            echo "$b"
            return 0
        fi
    done
    die "no $1 in $root/bin or $root/build/src/$3 (run make)"
}
api_bin=$(find_bin sov-api "${SOV_API:-}" api)
compute_bin=$(find_bin sov-compute "${SOV_COMPUTE:-}" compute)
for tool in taskset curl timeout ssh ssh-keygen qemu-img "$qemu" "$openstack_bin" "$python"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number"
[[ $boot_timeout =~ ^[1-9][0-9]*$ ]] || die "BENCH_BOOT_TIMEOUT must be a positive number"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-bench-boot.XXXXXX")
api_pid=
compute_pid=
peer_pid=
sid=

# Guests outlive sov-compute by design: the ones under our state directory are ended here too
# (only a process whose command line names our directory).
kill_guests() {
    local f pid
    for f in "$tmp"/compute/servers/*/qemu.pid; do
        [[ -f $f ]] || continue
        pid=$(head -n1 "$f" 2>/dev/null | tr -dc 0-9) || continue
        if [[ -n $pid ]] && grep -qF "$tmp" "/proc/$pid/cmdline" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

cleanup() {
    stop_pid "$peer_pid"
    stop_pid "$compute_pid"
    kill_guests
    stop_pid "$api_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ns() { date +%s%N; }
# Seconds from t0 (ns) to the modification time of a file (QEMU writes its -pidfile once it
# has set the machine up, just before the guest runs).
file_secs_since() {
    local m
    m=$(stat -c %.9Y "$2" 2>/dev/null) || {
        echo "?"
        return 0
    }
    awk -v a="$1" -v m="$m" 'BEGIN { printf "%.2f", m - a / 1e9 }'
}
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

# Starts a daemon pinned to $cpus with $tmp/NAME.ini and waits for its port file; sets
# daemon_pid and daemon_port.
start_daemon() {
    local name=$1 bin=$2 i
    taskset -c "$cpus" "$bin" --config "$tmp/$name.ini" --port-file "$tmp/$name.port" \
        --pidfile "$tmp/$name.pid" >"$tmp/$name.log" 2>&1 &
    daemon_pid=$!
    for ((i = 0; i < 200; i++)); do
        [[ -s $tmp/$name.port ]] && break
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.05
    done
    [[ -s $tmp/$name.port ]] || {
        tail -n 20 "$tmp/$name.log" >&2 || true
        die "$name wrote no port file"
    }
    daemon_port=$(head -n1 "$tmp/$name.port")
}

# sov-api and sov-compute as `sov up` configures them.
admin_password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
agent_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$tmp/api" "$tmp/compute" "$tmp/home" "$tmp/peer"
cat >"$tmp/sov-api.ini" <<EOF
[server]
listen = 127.0.0.1:0

[log]
level = warn

[api]
data_dir = $tmp/api

[identity]
admin_password = $admin_password

[agent]
token = $agent_token
EOF
start_daemon sov-api "$api_bin"
api_pid=$daemon_pid
api_port=$daemon_port
url="http://127.0.0.1:$api_port"
for ((i = 0; i < 100; i++)); do
    check_alive sov-api "$api_pid" "$tmp/sov-api.log"
    curl -sf --max-time 1 -o /dev/null "$url/healthz" && break
    sleep 0.1
done
curl -sf --max-time 1 -o /dev/null "$url/healthz" || die "sov-api does not answer /healthz"
cat >"$tmp/sov-compute.ini" <<EOF
[server]
listen = 127.0.0.1:0

[log]
level = warn

[compute]
api_url = $url
agent_token = $agent_token
host = bench-1
state_dir = $tmp/compute
EOF
start_daemon sov-compute "$compute_bin"
compute_pid=$daemon_pid

export OS_AUTH_URL="$url/identity/v3" OS_IDENTITY_API_VERSION=3 OS_USERNAME=admin \
    OS_PASSWORD="$admin_password" OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default \
    OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=$region OS_INTERFACE=public
os() {
    env -i PATH=/usr/bin:/bin HOME="$tmp/home" LANG=C.UTF-8 OS_AUTH_URL="$OS_AUTH_URL" \
        OS_IDENTITY_API_VERSION=3 OS_USERNAME=admin OS_PASSWORD="$admin_password" \
        OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default \
        OS_REGION_NAME=$region OS_INTERFACE=public timeout 120 "$openstack_bin" "$@"
}

# The API side of the bench in one small client: it logs in with the OS_* variables above and
# polls every 200 ms up to a deadline.
cat >"$tmp/api.py" <<'EOF'
import http.client, json, os, sys, time
from urllib.parse import urlsplit
u = urlsplit(os.environ["OS_AUTH_URL"])
def call(method, path, body=None, token=None, raw=None, ok=(200, 201, 202, 204)):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"X-Auth-Token": token} if token else {}
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        headers["Content-Type"] = ("application/octet-stream" if raw is not None
                                   else "application/json")
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    text = r.read()
    conn.close()
    if ok and r.status not in ok:
        sys.exit(f"{method} {path}: HTTP {r.status}: {text[:300]!r}")
    doc = json.loads(text) if text and "json" in (r.getheader("Content-Type") or "") else None
    return r.status, doc, r.getheader("X-Subject-Token")
def login():
    e = os.environ
    _, _, token = call("POST", "/identity/v3/auth/tokens", {"auth": {"identity": {
        "methods": ["password"], "password": {"user": {"name": e["OS_USERNAME"], "domain": {
            "name": e["OS_USER_DOMAIN_NAME"]}, "password": e["OS_PASSWORD"]}}}, "scope": {
        "project": {"name": e["OS_PROJECT_NAME"], "domain": {
            "name": e["OS_PROJECT_DOMAIN_NAME"]}}}}})
    return token
def poll(fn, what, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
token = login()
cmd, args = sys.argv[1], sys.argv[2:]
NOVA = "/compute/v2.1"
if cmd == "setup":  # IMAGE_FILE PUBKEY_FILE KEYNAME FLAVOR -> "accel vcpus ram_mb"
    disk, pub, key, flavor = args
    hv = poll(lambda: call("GET", NOVA + "/os-hypervisors/detail", token=token)[1]
              ["hypervisors"], "sov-compute to register", 60)
    _, img, _ = call("POST", "/image/v2/images", {"name": "sov-tiny", "disk_format": "raw",
                                                  "container_format": "bare"}, token)
    with open(disk, "rb") as f:
        call("PUT", f"/image/v2/images/{img['id']}/file", token=token, raw=f.read())
    poll(lambda: call("GET", f"/image/v2/images/{img['id']}", token=token)[1]["status"] ==
         "active", "the image to become active", 60)
    with open(pub) as f:
        call("POST", NOVA + "/os-keypairs", {"keypair": {"name": key,
                                                         "public_key": f.read().strip()}}, token)
    fl = [f for f in call("GET", NOVA + "/flavors/detail", token=token)[1]["flavors"]
          if f["name"] == flavor]
    if not fl:
        sys.exit(f"no flavor {flavor}")
    print(hv[0]["hypervisor_type"], fl[0]["vcpus"], fl[0]["ram"])
elif cmd == "ssh-addr":  # SERVER_ID TIMEOUT -> host:port
    def addr():
        st, doc, _ = call("GET", f"{NOVA}/servers/{args[0]}", token=token, ok=None)
        if st != 200:
            sys.exit(f"server {args[0]}: HTTP {st}")
        s = doc["server"]
        if s["status"] == "ERROR":
            sys.exit(f"server {args[0]} is in ERROR: {s.get('fault')}")
        return s.get("sov:ssh")
    print(poll(addr, f"server {args[0]} to have an SSH address", float(args[1])))
elif cmd == "delete":  # SERVER_ID TIMEOUT
    call("DELETE", f"{NOVA}/servers/{args[0]}", token=token, ok=(204, 404))
    poll(lambda: call("GET", f"{NOVA}/servers/{args[0]}", token=token, ok=None)[0] == 404,
         f"server {args[0]} to be gone", float(args[1]))
else:
    sys.exit(f"unknown command {cmd}")
EOF

# The image, the key pair, the accelerator and the flavor's size.
"$root/scripts/guest-image" "$tmp/sov-tiny.raw" >"$tmp/guest-image.log" 2>&1 || {
    cat "$tmp/guest-image.log" >&2
    die "scripts/guest-image failed"
}
ssh-keygen -q -t ed25519 -N '' -C bench -f "$tmp/key" || die "ssh-keygen failed"
read -r accel vcpus ram < <(timeout 300 "$python" "$tmp/api.py" setup "$tmp/sov-tiny.raw" \
    "$tmp/key.pub" bench "$flavor") || die "setup through the API failed"
[[ -n ${ram:-} ]] || die "setup through the API failed"
check_alive sov-compute "$compute_pid" "$tmp/sov-compute.log"

# Polls `ssh root@HOST -p PORT true` every 200 ms until it exits 0 (1) or the deadline passes.
# QEMU's user-mode networking accepts a forwarded connection before the guest can answer it, and
# ssh then waits out its whole ConnectTimeout: a probe for the server's banner with a 1 s limit
# comes first, so that a boot is not measured in steps of ConnectTimeout.
banner() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1" && head -c 4 <&3' "$1" "$2" 2>/dev/null
}
wait_ssh() {
    local host=$1 port=$2 deadline=$3
    while (($(now_ns) < deadline)); do
        [[ $(banner "$host" "$port") == SSH- ]] &&
            timeout 20 ssh -q -i "$tmp/key" -p "$port" -o BatchMode=yes -o ConnectTimeout=5 \
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
            "root@$host" true </dev/null 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ours_times=()
peer_times=()
run_ours() {
    local r=$1 t0 deadline addr
    t0=$(now_ns)
    deadline=$((t0 + boot_timeout * 1000000000))
    sid=$(os server create --image sov-tiny --flavor "$flavor" --key-name bench \
        -f value -c id "bench-boot-$r" 2>"$tmp/create.err") || {
        cat "$tmp/create.err" >&2
        die "openstack server create failed"
    }
    local t_cli
    t_cli=$(secs_since "$t0")
    addr=$("$python" "$tmp/api.py" ssh-addr "$sid" "$boot_timeout") ||
        die "run $r: no SSH address for server $sid"
    local t_addr
    t_addr=$(secs_since "$t0")
    wait_ssh "${addr%:*}" "${addr##*:}" "$deadline" || {
        tail -n 20 "$tmp/compute/servers/$sid/serial.log" >&2 2>/dev/null || true
        die "run $r: ssh into server $sid did not answer in $boot_timeout s"
    }
    local t
    t=$(secs_since "$t0")
    ours_times+=("$t")
    printf 'run %d ours %7.2f s   (create returned %.2f s, address %.2f s, QEMU up %s s)\n' \
        "$r" "$t" "$t_cli" "$t_addr" "$(file_secs_since "$t0" "$tmp/compute/servers/$sid/qemu.pid")"
    if [[ -n $keep ]]; then
        mkdir -p "$keep/ours-$r"
        cp "$tmp/compute/servers/$sid/serial.log" "$keep/ours-$r/" 2>/dev/null || true
        local qpid
        qpid=$(head -n1 "$tmp/compute/servers/$sid/qemu.pid" 2>/dev/null | tr -dc 0-9) || true
        tr '\0' ' ' <"/proc/$qpid/cmdline" >"$keep/ours-$r/cmdline" 2>/dev/null || true
        cp "/proc/$qpid/cgroup" "$keep/ours-$r/cgroup" 2>/dev/null || true
    fi
    "$python" "$tmp/api.py" delete "$sid" 120 || die "run $r: deleting server $sid failed"
    sid=
    check_alive sov-compute "$compute_pid" "$tmp/sov-compute.log"
}

run_peer() {
    local r=$1 t0 deadline port dir=$tmp/peer/$1
    mkdir -p "$dir/seed"
    port=$(free_port)
    t0=$(now_ns)
    deadline=$((t0 + boot_timeout * 1000000000))
    qemu-img create -q -f qcow2 -b "$tmp/sov-tiny.raw" -F raw "$dir/disk.qcow2" ||
        die "qemu-img create failed"
    printf 'instance-id: peer-%d\nlocal-hostname: peer-%d\npublic-keys:\n  - "%s"\n' "$r" "$r" \
        "$(cat "$tmp/key.pub")" >"$dir/seed/meta-data"
    "$root/scripts/guest-image" --seed "$dir/seed" "$dir/seed.iso" || die "seed ISO failed"
    taskset -c "$cpus" "$qemu" -name "peer-$r" -machine q35 -accel "$accel" -smp "$vcpus" \
        -m "${ram}M" -nodefaults -display none \
        -drive "file=$dir/disk.qcow2,format=qcow2,if=virtio" \
        -drive "file=$dir/seed.iso,format=raw,if=virtio,readonly=on" \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
        -serial "file:$dir/serial.log" -pidfile "$dir/qemu.pid" >"$dir/qemu.log" 2>&1 &
    peer_pid=$!
    wait_ssh 127.0.0.1 "$port" "$deadline" || {
        cat "$dir/qemu.log" >&2
        tail -n 20 "$dir/serial.log" >&2 || true
        die "run $r: ssh into the peer guest did not answer in $boot_timeout s"
    }
    local t
    t=$(secs_since "$t0")
    peer_times+=("$t")
    printf 'run %d peer %7.2f s   (QEMU up %s s)\n' "$r" "$t" \
        "$(file_secs_since "$t0" "$dir/qemu.pid")"
    if [[ -n $keep ]]; then
        mkdir -p "$keep/peer-$r"
        cp "$dir/serial.log" "$keep/peer-$r/" 2>/dev/null || true
        tr '\0' ' ' <"/proc/$peer_pid/cmdline" >"$keep/peer-$r/cmdline" 2>/dev/null || true
    fi
    kill -KILL "$peer_pid" 2>/dev/null || true
    wait "$peer_pid" 2>/dev/null || true
    peer_pid=
    rm -rf "$dir"
}

echo "bench boot: $api_bin + $compute_bin, accelerator $accel (as sov-compute reports it)," \
    "flavor $flavor ($vcpus vCPU, $ram MiB), CPUs $cpus, $runs run(s) each, alternating;" \
    "run 1 of ours includes the agent's first fetch of the image"
for ((r = 1; r <= runs; r++)); do
    run_ours "$r"
    run_peer "$r"
done

ours_med=$(median "${ours_times[@]}")
peer_med=$(median "${peer_times[@]}")
printf 'ours  median %7.2f s  (%s)\n' "$ours_med" "${ours_times[*]}"
printf 'peer  median %7.2f s  (%s)\n' "$peer_med" "${peer_times[*]}"
printf 'accelerator %s; absolute median %.2f s (target < 60 s)\n' "$accel" "$ours_med"
awk -v o="$ours_med" -v p="$peer_med" 'BEGIN { if (p <= 0) p = 0.001; printf "ratio %.2f\n", o / p }'
