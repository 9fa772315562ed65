#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/net.sh: the VPC datapath sov-net builds, beside a plain veth pair in the same run (the
# ceiling). sov-api and sov-net run in a temporary directory; the VPC (subnets web and app, a
# router with an external gateway, ports, a floating IP) is made through the Neutron API, and the
# instances are namespaces holding the ports' `vi` ends. iperf3 (BENCH_SECONDS per run, one TCP
# stream, client and server pinned to different CPUs) and ping (BENCH_PINGS echoes) measure:
#   same subnet      web-a -> web-b over the subnet's bridge
#   routed           web-a -> app-c through the router namespace
#   NAT              app-c -> "internet" through the router's SNAT
#   veth ceiling     two namespaces joined by one veth pair
# The ceiling and the routed path alternate for BENCH_ROUNDS rounds (medians reported). Each path
# prints Gbit/s, its ratio to the ceiling and the mean RTT; the last line is
# `ratio <routed / ceiling>` (target >= 0.85). BENCH_BIG_TCP=1 runs sov-net with [net] big_tcp
# (256 KiB GSO/GRO limits on its veths, so the instances' TCP sends 256 KiB packets) and also
# measures a second plain veth pair given the same limits. Needs root, iproute2, nftables,
# iperf3 and python3; all traffic stays inside the namespaces this script creates and removes.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${BENCH_SECONDS:-5}
pings=${BENCH_PINGS:-50}
rounds=${BENCH_ROUNDS:-3}
big=${BENCH_BIG_TCP:-0} # 1: sov-net with [net] big_tcp, beside a second veth pair set alike
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
python=${PYTHON:-/usr/bin/python3}

die() {
    echo "bench/net.sh: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.bash
source "$root/bench/lib.bash"

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for tool in ip nft iperf3 taskset curl "$python" busybox; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/bootstrap installs it)"
done
api_bin=$root/bin/sov-api
net_bin=$root/bin/sov-net
[[ -x $api_bin && -x $net_bin ]] || die "bin/sov-api and bin/sov-net are missing (run make)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-bench-net.XXXXXX")
tag=b$$
sov_pid=
net_pid=
cleanup() {
    stop_pid "$net_pid"
    stop_pid "$sov_pid"
    # the DHCP servers sov-net leaves serving when it stops (the next sov-net would adopt them)
    local pidf pid
    for pidf in "/run/sov-net/$tag"/dhcp/*/pid; do
        [[ -f $pidf ]] || continue
        pid=$(<"$pidf")
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null |
            grep -qxF -- "--conf-file=${pidf%/pid}/conf" && kill -KILL "$pid"
    done
    rm -rf "/run/sov-net/$tag"
    for ns in $(ip netns list | awk '{ print $1 }'); do
        [[ $ns == "$tag"* ]] && ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# sov-api
admin_password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
agent_token=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
mkdir -p "$tmp/api"
cat >"$tmp/sov.ini" <<EOF
[server]
listen = 127.0.0.1:0
access_log = false
[log]
level = warn
[api]
data_dir = $tmp/api
[identity]
admin_password = $admin_password
[agent]
token = $agent_token
EOF
start_sov sov-api "$api_bin"
api_port=$sov_port

# sov-net, its datapath in namespace ${tag}host
ip netns add "${tag}host"
ip -n "${tag}host" link set lo up
cat >"$tmp/net.ini" <<EOF
[server]
listen = 127.0.0.1:0
[log]
level = warn
[net]
api_url = http://127.0.0.1:$api_port
agent_token = $agent_token
host = bench
netns = ${tag}host
prefix = $tag
state_dir = $tmp/net
big_tcp = $([[ $big == 1 ]] && echo true || echo false)
EOF
taskset -c "$server_cpu" "$net_bin" --config "$tmp/net.ini" --port-file "$tmp/net.port" \
    >"$tmp/net.log" 2>&1 &
net_pid=$!

# the VPC through the Neutron API; prints "name port_id mac ip" per port
cat >"$tmp/vpc.py" <<'EOF'
import json, sys, time, urllib.request
port, password = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"X-Auth-Token": token} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers, json.loads(r.read() or b"{}")
h, _ = call("POST", "/identity/v3/auth/tokens", {"auth": {"identity": {"methods": ["password"],
    "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": password}}},
    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
tok = h["X-Subject-Token"]
N = "/network/v2.0"
def make(kind, body):
    return call("POST", f"{N}/{kind}s", {kind: body}, tok)[1][kind]
pub = make("network", {"name": "public", "router:external": True})
pubsub = make("subnet", {"network_id": pub["id"], "cidr": "203.0.113.0/24", "ip_version": 4,
                         "gateway_ip": "203.0.113.1", "enable_dhcp": False})
vpc = make("network", {"name": "vpc"})
web = make("subnet", {"network_id": vpc["id"], "cidr": "10.0.1.0/24", "ip_version": 4})
app = make("subnet", {"network_id": vpc["id"], "cidr": "10.0.2.0/24", "ip_version": 4})
r = make("router", {"name": "r1", "external_gateway_info": {"network_id": pub["id"]}})
for s in (web, app):
    call("PUT", f"{N}/routers/{r['id']}/add_router_interface", {"subnet_id": s["id"]}, tok)
ports = {}
for name, sub in (("a", web), ("b", web), ("c", app)):
    ports[name] = make("port", {"network_id": vpc["id"], "name": name,
                                "fixed_ips": [{"subnet_id": sub["id"]}]})
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    st = [call("GET", f"{N}/ports/{p['id']}", token=tok)[1]["port"]["status"]
          for p in ports.values()]
    if all(s == "ACTIVE" for s in st):
        break
    time.sleep(0.2)
else:
    sys.exit("ports did not become ACTIVE")
print("bridge", "sb" + pubsub["id"].replace("-", "")[:12])
for name, p in ports.items():
    print(name, p["id"].replace("-", "")[:12], p["mac_address"], p["fixed_ips"][0]["ip_address"])
EOF
for ((i = 0; i < 100; i++)); do [[ -s $tmp/net.port ]] && break; sleep 0.1; done
check_alive sov-net "$net_pid" "$tmp/net.log"
"$python" "$tmp/vpc.py" "$api_port" "$admin_password" >"$tmp/vpc.txt" || die "VPC setup failed"

declare -A ip_of
while read -r name id mac addr; do
    if [[ $name == bridge ]]; then
        ext_bridge=$id
        continue
    fi
    ns=${tag}$name
    ip netns add "$ns"
    ip -n "${tag}host" link set "vi$id" netns "$ns"
    ip -n "$ns" link set "vi$id" address "$mac"
    prefix=10.0.1.1
    [[ $addr == 10.0.2.* ]] && prefix=10.0.2.1
    ip -n "$ns" addr add "$addr/24" dev "vi$id"
    ip -n "$ns" link set "vi$id" up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "$prefix"
    ip_of[$name]=$addr
done <"$tmp/vpc.txt"
# the internet, on the external bridge; and the ceiling: one veth pair
ip netns add "${tag}inet"
ip -n "${tag}host" link add "${tag}x" type veth peer name eth0 netns "${tag}inet"
ip -n "${tag}host" link set "${tag}x" master "$ext_bridge" up
ip -n "${tag}inet" addr add 203.0.113.1/24 dev eth0
ip -n "${tag}inet" link set eth0 up
ip netns add "${tag}v1"
ip netns add "${tag}v2"
ip -n "${tag}v1" link add eth0 type veth peer name eth0 netns "${tag}v2"
ip -n "${tag}v1" addr add 192.0.2.1/24 dev eth0
ip -n "${tag}v2" addr add 192.0.2.2/24 dev eth0
ip -n "${tag}v1" link set eth0 up
ip -n "${tag}v2" link set eth0 up
if [[ $big == 1 ]]; then # a second plain pair with sov-net's BIG TCP limits
    ip netns add "${tag}v3"
    ip netns add "${tag}v4"
    ip -n "${tag}v3" link add eth0 type veth peer name eth0 netns "${tag}v4"
    ip -n "${tag}v3" addr add 192.0.2.5/30 dev eth0
    ip -n "${tag}v4" addr add 192.0.2.6/30 dev eth0
    for ns in "${tag}v3" "${tag}v4"; do
        ip netns exec "$ns" "$python" "$root/bench/gso.py" eth0 262144
        ip -n "$ns" link set eth0 up
    done
fi

# one measurement: iperf3 from client ns to server ns at addr; prints "gbits rtt_ms"
measure() {
    local cns=$1 sns=$2 addr=$3 gbits rtt i
    for ((i = 0; i < 100; i++)); do
        ip netns exec "$cns" busybox ping -c 1 -W 1 "$addr" >/dev/null 2>&1 && break
        sleep 0.1
    done
    ip netns exec "$sns" taskset -c "$server_cpu" timeout $((seconds + 20)) iperf3 -s -1 \
        >/dev/null 2>&1 &
    local srv=$!
    for ((i = 0; i < 50; i++)); do
        ip netns exec "$sns" sh -c 'cat /proc/net/tcp' | grep -q ':1451 00000000:0000 0A' && break
        sleep 0.1
    done
    gbits=$(ip netns exec "$cns" taskset -c "$client_cpu" timeout $((seconds + 20)) \
        iperf3 -c "$addr" -t "$seconds" -J | "$python" -c \
        'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))')
    wait "$srv" 2>/dev/null || true
    rtt=$(ip netns exec "$cns" busybox ping -c "$pings" -i 0.01 "$addr" 2>/dev/null |
        awk -F/ '/min\/avg\/max/ { print $4 }')
    echo "$gbits ${rtt:-nan}"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# the ceiling and the routed path alternate for BENCH_ROUNDS rounds and each reports its median
# (this machine's rates drift by +-20% within a minute); the other paths run once
declare -a ceils=() ceil_rtts=() routeds=() routed_rtts=() bigs=()
for ((round = 0; round < rounds; round++)); do
    read -r g t < <(measure "${tag}v1" "${tag}v2" 192.0.2.2)
    ceils+=("$g") ceil_rtts+=("$t")
    if [[ $big == 1 ]]; then
        read -r g t < <(measure "${tag}v3" "${tag}v4" 192.0.2.6)
        bigs+=("$g")
    fi
    read -r g t < <(measure "${tag}a" "${tag}c" "${ip_of[c]}")
    routeds+=("$g") routed_rtts+=("$t")
done
ceil=$(median "${ceils[@]}") ceil_rtt=$(median "${ceil_rtts[@]}")
routed=$(median "${routeds[@]}") routed_rtt=$(median "${routed_rtts[@]}")
read -r same same_rtt < <(measure "${tag}a" "${tag}b" "${ip_of[b]}")
read -r nat nat_rtt < <(measure "${tag}c" "${tag}inet" 203.0.113.1)
echo "rounds: veth ${ceils[*]}; routed ${routeds[*]} (Gbit/s; medians below)"
printf '%-14s %8s Gbit/s  %5s x ceiling  rtt %s ms\n' \
    "veth ceiling" "$ceil" "1.00" "$ceil_rtt" \
    "same subnet" "$same" "$(ratio "$same" "$ceil")" "$same_rtt" \
    "routed" "$routed" "$(ratio "$routed" "$ceil")" "$routed_rtt" \
    "NAT" "$nat" "$(ratio "$nat" "$ceil")" "$nat_rtt"
if [[ $big == 1 ]]; then
    vbig=$(median "${bigs[@]}")
    printf '%-14s %8s Gbit/s  (rounds %s): routed is %s x it\n' "veth 256K" "$vbig" \
        "${bigs[*]}" "$(ratio "$routed" "$vbig")"
fi
echo "security groups: the default group's rules on every instance port (in the paths above)"

# the time to apply 1,000 security group rules: a datapath pass with them, beside one without
read -r pass0 pass1 < <("$python" "$root/bench/net-rules.py" "$api_port" "$(cat "$tmp/net.port")" \
    "$admin_password" 1000) || { tail -n 5 "$tmp/net.log" >&2; die "adding 1,000 rules failed"; }
echo "datapath pass: ${pass0} ms with the default rules, ${pass1} ms with 1,000 more rules"
# the same traffic with the 1,000 rules in place (the conntrack fast path keeps it cheap)
read -r routed2 routed2_rtt < <(measure "${tag}a" "${tag}c" "${ip_of[c]}")
printf '%-14s %8s Gbit/s  %5s x ceiling  rtt %s ms\n' "routed+1k" "$routed2" \
    "$(ratio "$routed2" "$ceil")" "$routed2_rtt"
echo "ratio $(ratio "$routed" "$ceil")"
