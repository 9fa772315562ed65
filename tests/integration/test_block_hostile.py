# SPDX-License-Identifier: Apache-2.0
"""Hostile NBD input on raw sockets: garbage instead of a handshake, bad magics, oversized
options and export names, requests out of range or larger than the daemon serves, unknown
commands, half-sent requests and abandoned connections. Through all of it a well-behaved client
on another export keeps a connection open and keeps working, and the daemon stays up."""
import os
import socket
import struct

import pytest

from conftest import MIB, qemu_io
import nbdwire
from nbdwire import (CMD_READ, CMD_WRITE, EINVAL, IHAVEOPT, OPT_GO, REQUEST_MAGIC,
                     greet, open_socket, recv_exact)


def drain(sock):
    """Reads until the server closes; returns what it sent. The callers have shut down their
    side, so a server that keeps the connection open is stuck: fail after 30 s of silence."""
    sock.settimeout(30)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            assert len(data) < 64 * MIB, "the server keeps sending"
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("the server neither closed nor answered after EOF") from None
    return data


def closes(sock):
    """The server ends the connection: EOF or reset, not silence."""
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


@pytest.fixture
def victim(block):
    """A daemon with a bystander export held open by a well-behaved client, and a target."""
    block.create_volume("bystander", 4 * MIB)
    block.create_volume("target", 4 * MIB)
    c = nbdwire.Client("bystander", unix=block.socket)
    c.write(0, b"B" * 65536, fua=True)
    yield block, c
    assert block.alive(), "sov-block died:\n" + block.log_tail()
    assert c.read(0, 65536) == b"B" * 65536
    c.write(65536, b"b" * 4096, fua=True)
    c.close()
    qemu_io(block.uri("target"), "write -P 9 0 4k", "read -P 9 0 4k")
    assert block.request("GET", "/healthz")[0] == 200


def go(sock, export):
    name = export.encode()
    nbdwire.send_option(sock, OPT_GO, struct.pack(">I", len(name)) + name + b"\0\0")
    while True:
        _, rep, _ = nbdwire.read_option_reply(sock)
        if rep == nbdwire.REP_ACK:
            return
        assert not rep & nbdwire.REP_ERR, hex(rep)


def transmission(block, export="target"):
    s = open_socket(unix=block.socket)
    greet(s)
    go(s, export)
    return s


def test_garbage_instead_of_handshake(victim):
    block, _ = victim
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(4096), b"\0" * 4,
                 b"\xff\xff\xff\xff", b"\x00\x00\x00\x03" + os.urandom(100)):
        s = open_socket(unix=block.socket)
        recv_exact(s, 18)
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        drain(s)  # the server may answer an option error first; it must not hang or crash
        s.close()
    # Over TCP as well, where the client is not even granted.
    s = open_socket(tcp=("127.0.0.1", block.nbd_port), timeout=10)
    recv_exact(s, 18)
    s.sendall(os.urandom(65536))
    s.shutdown(socket.SHUT_WR)
    drain(s)
    s.close()


def test_bad_option_magic_and_oversized_options(victim):
    block, _ = victim
    s = open_socket(unix=block.socket)
    greet(s)
    s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
    assert closes(s)
    s.close()
    # An option claiming 4 GiB of data, then a client that goes away: whether the server
    # discards what comes or closes at once, it must not allocate it or stall anyone else.
    s = open_socket(unix=block.socket)
    greet(s)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 0xFFFFFFFF) + b"x" * 100000)
    nbdwire.Client("target", unix=block.socket).close()
    s.close()
    # An export name longer than the protocol's 4096 bytes, and one whose length field lies.
    for payload in (struct.pack(">I", 8192) + b"n" * 8192 + b"\0\0",
                    struct.pack(">I", 0xFFFFFF00) + b"target" + b"\0\0",
                    struct.pack(">I", 6) + b"target" + struct.pack(">H", 30000)):
        s = open_socket(unix=block.socket)
        greet(s)
        nbdwire.send_option(s, OPT_GO, payload)
        try:
            _, rep, _ = nbdwire.read_option_reply(s)
            assert rep & nbdwire.REP_ERR, hex(rep)
        except ConnectionError:
            pass  # closing on it is also fine
        s.close()
    # Unknown options get an error reply and the handshake can go on.
    s = open_socket(unix=block.socket)
    greet(s)
    nbdwire.send_option(s, 0x7777, b"abc")
    _, rep, _ = nbdwire.read_option_reply(s)
    assert rep == nbdwire.REP_ERR | 1  # NBD_REP_ERR_UNSUP
    go(s, "target")
    s.close()


def test_bad_requests_in_transmission(victim):
    block, _ = victim
    # Out of range reads and writes: EINVAL (or ENOSPC for writes), connection still usable.
    s = transmission(block)
    c = nbdwire.Client.__new__(nbdwire.Client)
    c.sock, c.handle = s, 0
    for cmd, off, ln, data in ((CMD_READ, 4 * MIB, 512, b""), (CMD_READ, 4 * MIB - 512, 1024, b""),
                               (CMD_READ, 2 ** 64 - 512, 1024, b""),
                               (CMD_WRITE, 4 * MIB - 4, 8, b"12345678"),
                               (CMD_READ, 0, 0, b"")):
        c.send_request(cmd, off, ln, data)
        err, _, _ = c.read_reply()
        if ln:
            assert err in (EINVAL, nbdwire.ENOSPC, nbdwire.EOVERFLOW), (cmd, off, ln, err)
    # Unknown command type: EINVAL, and the connection goes on.
    c.send_request(99, 0, 0)
    err, _, _ = c.read_reply()
    assert err == EINVAL
    c.write(0, b"ok" * 256)
    assert c.read(0, 512) == b"ok" * 256
    # A READ larger than the daemon serves (1 GiB): an error, never 1 GiB of allocation.
    c.send_request(CMD_READ, 0, 1 << 30)
    try:
        err, _, _ = c.read_reply()
        assert err in (EINVAL, nbdwire.EOVERFLOW, nbdwire.ENOMEM)
    except ConnectionError:
        pass
    s.close()
    # A WRITE announcing 1 GiB of payload (over the 32 MiB the daemon serves), then a client
    # that goes away after 1 MiB: nothing of it may land on the volume.
    s = transmission(block)
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 1, 0, 1 << 30) + b"x" * MIB)
    s.close()
    qemu_io(block.uri("target"), "read -P 0 512 1048064", read_only=True)
    # Bad request magic: the server closes.
    s = transmission(block)
    s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 512))
    assert closes(s)
    s.close()
    # Random bytes in transmission.
    s = transmission(block)
    s.sendall(os.urandom(1 << 16))
    s.shutdown(socket.SHUT_WR)
    drain(s)
    s.close()


def test_half_requests_and_abandoned_connections(victim):
    block, _ = victim
    held = []
    for i in range(40):
        s = open_socket(unix=block.socket)
        if i % 4 == 1:
            recv_exact(s, 18)
        elif i % 4 == 2:
            greet(s)
            s.sendall(struct.pack(">QI", IHAVEOPT, OPT_GO))  # half an option header
        elif i % 4 == 3:
            s = transmission(block)
            # Half a write: the header and part of its payload.
            s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 1, 0, 65536) +
                      b"h" * 1000)
        held.append(s)
    # The daemon keeps serving others while these hang.
    qemu_io(block.uri("target"), "write -P 7 64k 64k", "read -P 7 64k 64k")
    # Half the connections vanish with a reset, half with a plain close.
    for i, s in enumerate(held):
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # The half write was never applied.
    qemu_io(block.uri("target"), "read -P 0 0 64k", "read -P 7 64k 64k", read_only=True)
    assert block.alive()


def test_pipelined_flood(victim):
    """Many requests sent without reading replies: the daemon pauses reading rather than
    buffering without bound, and answers all of them once the client reads."""
    block, _ = victim
    s = transmission(block)
    n = 2000
    reqs = b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, (i % 64) * 65536,
                                65536) for i in range(n))
    s.settimeout(60)
    s.sendall(reqs)
    seen = set()
    for _ in range(n):
        magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
        assert magic == nbdwire.SIMPLE_REPLY_MAGIC and err == 0
        recv_exact(s, 65536)
        seen.add(handle)
    assert seen == set(range(n))
    s.close()
