# SPDX-License-Identifier: Apache-2.0
"""A small NBD client written from the protocol document (doc/proto.md of the NBD project), for
tests that need control no packaged client gives: exactly which writes were acknowledged and
flushed before a kill -9, and hostile bytes on the wire. Fixed newstyle handshake, NBD_OPT_GO
(or NBD_OPT_LIST), simple replies only (no NBD_OPT_STRUCTURED_REPLY), one request at a time per
connection unless the caller pipelines with send_request()/read_reply()."""
import socket
import struct

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
OPT_REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 2, 3, 6, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR = 1 << 31
INFO_EXPORT = 0

# Transmission flags.
TF_HAS_FLAGS, TF_READ_ONLY, TF_SEND_FLUSH, TF_SEND_FUA = 1, 2, 4, 8
TF_SEND_TRIM, TF_SEND_WRITE_ZEROES, TF_CAN_MULTI_CONN = 32, 64, 256

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES = range(7)
CMD_FLAG_FUA = 1

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108


class NbdError(Exception):
    """The server refused an option (rep = NBD_REP_ERR_*) or a request (errno)."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"server closed the connection ({len(buf)}/{n} bytes read)")
        buf += chunk
    return bytes(buf)


def open_socket(unix=None, tcp=None, timeout=30):
    if unix is not None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(unix))
    else:
        s = socket.create_connection(tcp, timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def greet(sock):
    """Reads the server's greeting and sends the client flags; returns the handshake flags."""
    magic, opt, hflags = struct.unpack(">QQH", recv_exact(sock, 18))
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise NbdError(f"not a fixed newstyle server: {magic:#x} {opt:#x}")
    cflags = FLAG_FIXED_NEWSTYLE | (hflags & FLAG_NO_ZEROES)
    sock.sendall(struct.pack(">I", cflags))
    return hflags


def send_option(sock, opt, data=b""):
    sock.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def read_option_reply(sock):
    """(option, reply type, data) of one option reply."""
    magic, opt, rep, n = struct.unpack(">QIII", recv_exact(sock, 20))
    if magic != OPT_REPLY_MAGIC:
        raise NbdError(f"bad option reply magic {magic:#x}")
    if n > 1 << 20:
        raise NbdError(f"option reply of {n} bytes")
    return opt, rep, recv_exact(sock, n)


def list_exports(unix=None, tcp=None):
    """NBD_OPT_LIST: the export names this client is offered."""
    s = open_socket(unix, tcp)
    try:
        greet(s)
        send_option(s, OPT_LIST)
        names = []
        while True:
            _, rep, data = read_option_reply(s)
            if rep == REP_ACK:
                break
            if rep & REP_ERR:
                raise NbdError(f"LIST refused: {rep:#x} {data!r}", rep)
            if rep == REP_SERVER:
                (n,) = struct.unpack(">I", data[:4])
                names.append(data[4:4 + n].decode())
        send_option(s, OPT_ABORT)
        return names
    finally:
        s.close()


class Client:
    """One NBD connection in the transmission phase on one export."""

    def __init__(self, export, unix=None, tcp=None, timeout=30):
        self.sock = open_socket(unix, tcp, timeout)
        self.handle = 0
        try:
            greet(self.sock)
            name = export.encode()
            send_option(self.sock, OPT_GO, struct.pack(">I", len(name)) + name +
                        struct.pack(">H", 0))
            self.size = self.flags = None
            while True:
                _, rep, data = read_option_reply(self.sock)
                if rep & REP_ERR:
                    raise NbdError(f"GO {export!r} refused: {rep:#x} {data[:200]!r}", rep)
                if rep == REP_INFO and len(data) >= 2:
                    (kind,) = struct.unpack(">H", data[:2])
                    if kind == INFO_EXPORT:
                        self.size, self.flags = struct.unpack(">QH", data[2:12])
                elif rep == REP_ACK:
                    break
            if self.size is None:
                raise NbdError("GO acknowledged without NBD_INFO_EXPORT")
        except BaseException:
            self.sock.close()
            raise

    @property
    def read_only(self):
        return bool(self.flags & TF_READ_ONLY)

    def send_request(self, cmd, offset, length, data=b"", flags=0):
        self.handle += 1
        self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, self.handle,
                                      offset, length) + data)
        return self.handle

    def read_reply(self, read_len=0):
        """(errno, handle, data) of one simple reply; data only for a successful READ of
        read_len bytes."""
        magic, err, handle = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        if magic != SIMPLE_REPLY_MAGIC:
            raise NbdError(f"bad reply magic {magic:#x}")
        data = recv_exact(self.sock, read_len) if (read_len and not err) else b""
        return err, handle, data

    def _call(self, cmd, offset, length, data=b"", flags=0, read_len=0):
        h = self.send_request(cmd, offset, length, data, flags)
        err, got, out = self.read_reply(read_len)
        if got != h:
            raise NbdError(f"reply for handle {got}, expected {h}")
        if err:
            raise NbdError(f"command {cmd} at {offset}+{length}: error {err}", err)
        return out

    def read(self, offset, length):
        return self._call(CMD_READ, offset, length, read_len=length)

    def write(self, offset, data, fua=False):
        self._call(CMD_WRITE, offset, len(data), data, CMD_FLAG_FUA if fua else 0)

    def flush(self):
        self._call(CMD_FLUSH, 0, 0)

    def trim(self, offset, length):
        self._call(CMD_TRIM, offset, length)

    def write_zeroes(self, offset, length):
        self._call(CMD_WRITE_ZEROES, offset, length)

    def close(self):
        """NBD_CMD_DISC, then close."""
        try:
            self.send_request(CMD_DISC, 0, 0)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
