"""Minimal CQL native-protocol helpers for the integration tests.

The real drivers (DataStax python-driver, cqlsh) are what the tests use to
prove that apps work through cqltunnel.  This module exists for what a
driver does not expose: exact bytes on the wire, many raw connections at
once, and the scripted fake node (fake_node.py).  v3/v4 framing only, plus
the v5 segment checksums for the fake node.
"""

import socket
import struct
import zlib

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_OPTIONS, OP_SUPPORTED, OP_QUERY, OP_RESULT = 0x05, 0x06, 0x07, 0x08
OP_AUTH_CHALLENGE, OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x0E, 0x0F, 0x10


def frame(version, stream, opcode, body=b"", flags=0, response=False):
    """Encode one v3+ envelope."""
    v = version | (0x80 if response else 0)
    return struct.pack(">BBhBi", v, flags, stream, opcode, len(body)) + body


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def long_string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">i", len(b)) + b


def bytes_(b):
    if b is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(b)) + b


def string_map(d):
    out = struct.pack(">H", len(d))
    for k, v in d.items():
        out += string(k) + string(v)
    return out


def startup_body(compression=None):
    opts = {"CQL_VERSION": "3.0.0"}
    if compression:
        opts["COMPRESSION"] = compression
    return string_map(opts)


def query_body(cql, consistency=0x0001):
    # [long string] query, [short] consistency, [byte] flags (v4: byte)
    return long_string(cql) + struct.pack(">HB", consistency, 0)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes"
                                  % (len(buf), n))
        buf += chunk
    return buf


def read_frame(sock):
    """Read one v3+ envelope; returns (version, flags, stream, opcode, body)."""
    hdr = read_exact(sock, 9)
    v, flags, stream, op, length = struct.unpack(">BBhBi", hdr)
    body = read_exact(sock, length) if length > 0 else b""
    return v, flags, stream, op, body


def parse_error(body):
    code, n = struct.unpack(">iH", body[:6])
    return code, body[6:6 + n].decode("utf-8", "replace")


def parse_string(body, off=0):
    n = struct.unpack(">H", body[off:off + 2])[0]
    return body[off + 2:off + 2 + n].decode(), off + 2 + n


def parse_bytes(body, off=0):
    n = struct.unpack(">i", body[off:off + 4])[0]
    if n < 0:
        return None, off + 4
    return body[off + 4:off + 4 + n], off + 4 + n


class CqlError(Exception):
    def __init__(self, code, message):
        super().__init__("code=0x%04x %s" % (code, message))
        self.code = code
        self.message = message


def connect(host, port, version=4, timeout=10.0):
    """Open a plaintext connection and run OPTIONS + STARTUP; returns the
    socket once READY.  Raises CqlError for an ERROR answer."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(frame(version, 0, OP_OPTIONS))
    v, _, stream, op, body = read_frame(s)
    if op == OP_ERROR:
        s.close()
        raise CqlError(*parse_error(body))
    assert op == OP_SUPPORTED, op
    s.sendall(frame(version, 1, OP_STARTUP, startup_body()))
    v, _, stream, op, body = read_frame(s)
    if op == OP_ERROR:
        s.close()
        raise CqlError(*parse_error(body))
    if op != OP_READY:
        s.close()
        raise AssertionError("expected READY, got opcode 0x%02x" % op)
    assert stream == 1
    return s


def query(sock, cql, version=4, stream=2):
    """Send a QUERY and return (opcode, body) of the answer."""
    sock.sendall(frame(version, stream, OP_QUERY, query_body(cql)))
    v, _, st, op, body = read_frame(sock)
    assert st == stream, (st, stream)
    if op == OP_ERROR:
        raise CqlError(*parse_error(body))
    return op, body


# --- v5 segment checksums (the fake node speaks v5 framing) ---

def crc24(data):
    crc = 0x875060
    for b in data:
        crc ^= b << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1974F0B
    return crc & 0xFFFFFF


def crc32(data):
    return zlib.crc32(data, zlib.crc32(b"\xfa\x2d\x55\xca")) & 0xFFFFFFFF


def crc_segment(payload, self_contained=True):
    word = len(payload) | ((1 << 17) if self_contained else 0)
    hdr = word.to_bytes(3, "little")
    return (hdr + crc24(hdr).to_bytes(3, "little") + payload
            + crc32(payload).to_bytes(4, "little"))


def read_crc_segment(sock):
    hdr = read_exact(sock, 6)
    word = int.from_bytes(hdr[:3], "little")
    if crc24(hdr[:3]) != int.from_bytes(hdr[3:6], "little"):
        raise ValueError("bad CRC24")
    n = word & 0x1FFFF
    payload = read_exact(sock, n)
    trailer = read_exact(sock, 4)
    if crc32(payload) != int.from_bytes(trailer, "little"):
        raise ValueError("bad CRC32")
    return payload
