# SPDX-License-Identifier: Apache-2.0
"""bench/net.sh's helper: adds COUNT ingress rules to the admin project's default security group
through the Neutron API, waits (bounded) until sov-net's last datapath pass carried them, and
prints the pass duration before and after (sov-net's /metrics)."""
import json
import sys
import time
import urllib.request

port, net_port, password, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = f"http://127.0.0.1:{port}"


def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"X-Auth-Token": token} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers, json.loads(r.read() or b"{}")


def metrics():
    with urllib.request.urlopen(f"http://127.0.0.1:{net_port}/metrics", timeout=10) as r:
        m = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                m[k] = float(v)
        return m


h, _ = call("POST", "/identity/v3/auth/tokens", {"auth": {"identity": {
    "methods": ["password"], "password": {"user": {"name": "admin", "domain": {"name": "Default"},
                                                   "password": password}}},
    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
tok = h["X-Subject-Token"]
project = _["token"]["project"]["id"]
N = "/network/v2.0"
call("PUT", f"{N}/quotas/{project}", {"quota": {"security_group_rule": -1}}, tok)
gid = call("GET", f"{N}/security-groups?name=default", token=tok)[1]["security_groups"][0]["id"]
before = metrics()
base_rules = before.get("sov_net_security_group_rules", 0)
for i in range(count):
    call("POST", f"{N}/security-group-rules", {"security_group_rule": {
        "security_group_id": gid, "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
        "port_range_min": 10000 + i, "port_range_max": 10000 + i,
        "remote_ip_prefix": f"198.18.{i // 250}.{i % 250}/32"}}, tok)
deadline = time.monotonic() + 120
m = metrics()
while m.get("sov_net_security_group_rules", 0) < base_rules + count:
    if time.monotonic() > deadline:
        sys.exit(f"sov-net did not apply the rules in time (base {base_rules}, now "
                 f"{m.get('sov_net_security_group_rules')}, passes {m.get('sov_net_realisations_total')}, "
                 f"errors {m.get('sov_net_realisation_errors_total')})")
    time.sleep(0.2)
    m = metrics()
print(int(before.get("sov_net_last_pass_ms", 0)), int(m["sov_net_last_pass_ms"]))
