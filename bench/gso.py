#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""bench/gso.py DEV SIZE: sets DEV's GSO/GRO size limits (generic and IPv4) in the current
network namespace over rtnetlink, as sov-net does with [net] big_tcp (Debian 12's iproute2
predates IFLA_GSO_IPV4_MAX_SIZE). bench/net.sh gives its plain veth pair the same limits."""
import errno
import socket
import struct
import sys

RTM_NEWLINK, NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 16, 1, 4, 2
ATTRS = (41, 58, 63, 64)  # IFLA_GSO_MAX_SIZE, GRO_MAX_SIZE, GSO_IPV4_MAX_SIZE, GRO_IPV4_MAX_SIZE

dev, size = sys.argv[1], int(sys.argv[2])
index = socket.if_nametoindex(dev)
attrs = b"".join(struct.pack("=HHI", 8, a, size) for a in ATTRS)
body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0) + attrs
msg = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body
with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
    s.sendto(msg, (0, 0))
    answer = s.recv(4096)
    _, kind, _, _, _ = struct.unpack_from("=IHHII", answer)
    error = struct.unpack_from("=i", answer, 16)[0] if kind == NLMSG_ERROR else 0
    if error:
        sys.exit(f"gso.py: {dev}: {errno.errorcode.get(-error, error)}")
