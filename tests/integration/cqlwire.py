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


# --- additions for test_compression.py / test_versions.py ---

OP_PREPARE, OP_EXECUTE = 0x09, 0x0A

# Envelope header flags.
FLAG_COMPRESSION, FLAG_TRACING, FLAG_CUSTOM_PAYLOAD = 0x01, 0x02, 0x04
FLAG_WARNING, FLAG_USE_BETA = 0x08, 0x10


def query_body_v5(cql, consistency=0x0001):
    # v5 and later: [int] flags instead of [byte]
    return long_string(cql) + struct.pack(">Hi", consistency, 0)


def frame_v1v2(version, stream, opcode, body=b"", flags=0):
    """Encode one v1/v2 envelope (8-byte header, 1-byte stream)."""
    return struct.pack(">BBbBi", version, flags, stream, opcode,
                       len(body)) + body


def read_frame_bytes(sock, header_len=9):
    """Read one envelope and return its exact bytes (header included);
    header_len 8 for v1/v2 frames."""
    hdr = read_exact(sock, header_len)
    length = struct.unpack(">i", hdr[header_len - 4:])[0]
    return hdr + (read_exact(sock, length) if length > 0 else b"")


def parse_envelope(data):
    """Decode the v3+ envelope at the start of data; returns (version,
    flags, stream, opcode, body)."""
    v, flags, stream, op, length = struct.unpack(">BBhBi", data[:9])
    return v, flags, stream, op, data[9:9 + length]


def read_segment_envelope(sock):
    """Read one uncompressed self-contained v5 segment holding exactly one
    envelope; returns (version, flags, stream, opcode, body)."""
    payload = read_crc_segment(sock)
    env = parse_envelope(payload)
    assert 9 + len(env[4]) == len(payload), "segment holds more than one " \
        "envelope"
    return env


def parse_string_list(body, off=0):
    n = struct.unpack(">H", body[off:off + 2])[0]
    off += 2
    out = []
    for _ in range(n):
        s, off = parse_string(body, off)
        out.append(s)
    return out, off


def parse_string_multimap(body, off=0):
    """[string multimap] (the SUPPORTED body) -> ({key: [values]}, end)."""
    n = struct.unpack(">H", body[off:off + 2])[0]
    off += 2
    out = {}
    for _ in range(n):
        k, off = parse_string(body, off)
        out[k], off = parse_string_list(body, off)
    return out, off


def parse_rows(body, v5=False):
    """Decode a RESULT Rows body (no paging state, no metadata skipping)
    into (column names, rows of raw [bytes] values)."""
    kind = struct.unpack(">i", body[:4])[0]
    assert kind == 0x0002, "RESULT kind %d is not Rows" % kind
    flags, ncols = struct.unpack(">ii", body[4:12])
    off = 12
    if flags & 0x0002:                  # Has_more_pages
        _, off = parse_bytes(body, off)
    if flags & 0x0008 and v5:           # Metadata_changed (v5)
        off += 2 + struct.unpack(">H", body[off:off + 2])[0]
    assert not flags & 0x0004, "No_metadata set"
    glob = flags & 0x0001
    if glob:
        _, off = parse_string(body, off)
        _, off = parse_string(body, off)
    names = []
    for _ in range(ncols):
        if not glob:
            _, off = parse_string(body, off)
            _, off = parse_string(body, off)
        name, off = parse_string(body, off)
        names.append(name)
        off = _skip_type(body, off)
    nrows = struct.unpack(">i", body[off:off + 4])[0]
    off += 4
    rows = []
    for _ in range(nrows):
        row = []
        for _ in range(ncols):
            val, off = parse_bytes(body, off)
            row.append(val)
        rows.append(row)
    return names, rows


def _skip_type(body, off):
    (t,) = struct.unpack(">H", body[off:off + 2])
    off += 2
    if t == 0x0000:                     # custom: [string] class
        _, off = parse_string(body, off)
    elif t in (0x0020, 0x0022):         # list, set
        off = _skip_type(body, off)
    elif t == 0x0021:                   # map
        off = _skip_type(body, _skip_type(body, off))
    elif t == 0x0030:                   # UDT
        _, off = parse_string(body, off)
        _, off = parse_string(body, off)
        n = struct.unpack(">H", body[off:off + 2])[0]
        off += 2
        for _ in range(n):
            _, off = parse_string(body, off)
            off = _skip_type(body, off)
    elif t == 0x0031:                   # tuple
        n = struct.unpack(">H", body[off:off + 2])[0]
        off += 2
        for _ in range(n):
            off = _skip_type(body, off)
    return off
