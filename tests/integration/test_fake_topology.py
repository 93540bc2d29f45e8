"""Translate mode against a scripted fake node, for what a real Cassandra 5.0
cannot produce: a node without system.peers_v2 (Cassandra 3.x, DSE), with
DSE's native_transport_address / native_transport_port columns, and peers
whose addresses refuse connections.  The real-cluster behaviour (python
driver, cqlsh, Node.js driver, token-aware routing, node down/up) is in
test_cluster.py; this file checks the control connection's fall-back to
system.peers, the rewriting of the DSE columns and of events, and that a
per-node address whose node is down answers with a CQL ERROR naming it.
"""

import socket
import struct
import threading
import uuid

import pytest

import cqlwire as w
from fake_node import FakeNode, handshake_until_startup
from tunnel import Tunnel

OP_REGISTER, OP_EVENT = 0x0B, 0x0C
T_INET, T_INT, T_UUID, T_VARCHAR, T_SET = 0x10, 0x09, 0x0C, 0x0D, 0x22

COLUMNS = [("peer", T_INET), ("data_center", T_VARCHAR), ("host_id", T_UUID),
           ("rpc_address", T_INET), ("native_transport_address", T_INET),
           ("native_transport_port", T_INT), ("tokens", T_SET)]

# Two peers on loopback addresses where nothing listens (connections to
# them are refused at once; no traffic leaves the machine).
PEERS = [("127.0.0.201", uuid.UUID(int=0x201)),
         ("127.0.0.202", uuid.UUID(int=0x202))]
PEER_PORT = 9
LOCAL_ID = uuid.UUID(int=0x100)


def rows_body(table, rows):
    out = struct.pack(">iii", 2, 0x0001, len(COLUMNS))
    out += w.string("system") + w.string(table)
    for name, t in COLUMNS:
        out += w.string(name) + struct.pack(">H", t)
        if t == T_SET:
            out += struct.pack(">H", T_VARCHAR)
    out += struct.pack(">i", len(rows))
    for r in rows:
        for cell in r:
            out += w.bytes_(cell)
    return out


def row(addr, host_id, port):
    ip = socket.inet_aton(addr)
    tokens = struct.pack(">ii", 1, 2) + b"42"
    return [ip, b"dc1", host_id.bytes, ip, ip, struct.pack(">i", port),
            tokens]


def status_event(addr, port, change="DOWN"):
    return (w.string("STATUS_CHANGE") + w.string(change) + bytes([4])
            + socket.inet_aton(addr) + struct.pack(">i", port))


def old_node_script(conn, node):
    """No peers_v2; DSE columns; an event after each system.peers read."""
    v, stream = handshake_until_startup(conn)
    conn.sendall(w.frame(v, stream, w.OP_READY, response=True))
    while True:
        try:
            _, _, stream, op, body = w.read_frame(conn)
        except (ConnectionError, OSError):
            return
        if op == OP_REGISTER:
            conn.sendall(w.frame(v, stream, w.OP_READY, response=True))
            continue
        q = w.parse_bytes(body)[0] if op == w.OP_QUERY else b""
        q = q.decode() if q else ""
        node.received.append(q)
        if "peers_v2" in q:
            err = struct.pack(">i", 0x2200) + w.string(
                "unconfigured table peers_v2")
            conn.sendall(w.frame(v, stream, w.OP_ERROR, err,
                                 response=True))
        elif "system.peers" in q:
            conn.sendall(w.frame(v, stream, w.OP_RESULT, rows_body(
                "peers", [row(a, h, PEER_PORT) for a, h in PEERS]),
                response=True))
            conn.sendall(w.frame(v, -1, OP_EVENT, status_event(
                PEERS[1][0], PEER_PORT), response=True))
        elif "system.local" in q:
            conn.sendall(w.frame(v, stream, w.OP_RESULT, rows_body(
                "local", [row("127.0.0.1", LOCAL_ID, node.port)]),
                response=True))
        else:
            conn.sendall(w.frame(v, stream, w.OP_RESULT,
                                 b"\x00\x00\x00\x01", response=True))


def parse_rows(body):
    kind, flags, ncols = struct.unpack(">iii", body[:12])
    assert kind == 2 and flags & 1
    off = 12
    _, off = w.parse_string(body, off)
    _, off = w.parse_string(body, off)
    names = []
    for _ in range(ncols):
        name, off = w.parse_string(body, off)
        (t,) = struct.unpack(">H", body[off:off + 2])
        off += 2 + (2 if t == T_SET else 0)
        names.append(name)
    (nrows,) = struct.unpack(">i", body[off:off + 4])
    off += 4
    rows = []
    for _ in range(nrows):
        r = {}
        for name in names:
            r[name], off = w.parse_bytes(body, off)
        rows.append(r)
    assert off == len(body)
    return rows


@pytest.fixture
def fake_cfg(pki, password_file):
    def make(port):
        return {
            "listen": {"drain_timeout": "2s"},
            "cluster": {"contact_points": "127.0.0.1:%d" % port,
                        "handshake_timeout": "5s",
                        "connect_timeout": "2s"},
            "tls": {"ca_file": pki["ca_crt"], "cert_file": pki["client_crt"],
                    "key_file": pki["client_key"]},
            "auth": {"username": "cassandra",
                     "password_file": password_file()},
            "log": {"level": "debug"},
        }
    return make


def test_old_node_peers_v1_dse_columns(tmp_path, pki, fake_cfg):
    with FakeNode(pki, old_node_script) as node:
        with Tunnel(str(tmp_path), fake_cfg(node.port)) as t:
            # The control connection fell back to system.peers and gave
            # each peer a listener on its own loopback address.
            t.wait_log("system.peers_v2 refused")
            t.wait_log("node 127.0.0.201:%d (dc dc1) reachable at "
                       "127.0.1.1:%d" % (PEER_PORT, t.port))
            t.wait_log("node 127.0.0.202:%d (dc dc1) reachable at "
                       "127.0.1.2:%d" % (PEER_PORT, t.port))
            want = {PEERS[0][1]: "127.0.1.1", PEERS[1][1]: "127.0.1.2"}

            s = w.connect(t.host, t.port)
            op, body = w.query(s, "SELECT * FROM system.peers")
            assert op == w.OP_RESULT
            rows = parse_rows(body)
            assert len(rows) == 2
            for r in rows:
                hid = uuid.UUID(bytes=r["host_id"])
                tunnel_ip = socket.inet_aton(want[hid])
                assert r["rpc_address"] == tunnel_ip
                assert r["native_transport_address"] == tunnel_ip
                assert r["native_transport_port"] == struct.pack(">i",
                                                                 t.port)
                # Identity columns are untouched.
                assert r["peer"] in [socket.inet_aton(a) for a, _ in PEERS]
                assert r["tokens"] == struct.pack(">ii", 1, 2) + b"42"
            # The node's event names the peer's real address; the app sees
            # the peer's tunnel address.
            _, _, stream, op, body = w.read_frame(s)
            assert (stream, op) == (-1, OP_EVENT)
            assert body == status_event("127.0.1.2", t.port)

            # system.local: the contact point's node keeps the listen
            # address.
            op, body = w.query(s, "SELECT * FROM system.local WHERE "
                               "key='local'", stream=3)
            (local,) = parse_rows(body)
            assert local["rpc_address"] == socket.inet_aton(t.host)
            assert local["native_transport_port"] == struct.pack(">i",
                                                                 t.port)
            s.close()

            # A peer's address whose node refuses connections: a CQL ERROR
            # naming that node, at once.
            with pytest.raises(w.CqlError) as e:
                w.connect("127.0.1.1", t.port)
            assert e.value.message.startswith(
                "cqltunnel: cannot connect to node 127.0.0.201:%d"
                % PEER_PORT)
        assert node.errors == []
        assert "SELECT * FROM system.peers_v2" in node.received
        assert "SELECT * FROM system.peers" in node.received


def test_pin_mode_rewrites_nothing(tmp_path, pki, fake_cfg):
    with FakeNode(pki, old_node_script) as node:
        cfg = fake_cfg(node.port)
        cfg["cluster"]["topology"] = "pin"
        with Tunnel(str(tmp_path), cfg) as t:
            s = w.connect(t.host, t.port)
            op, body = w.query(s, "SELECT * FROM system.peers")
            rows = parse_rows(body)
            assert sorted(r["rpc_address"] for r in rows) == sorted(
                socket.inet_aton(a) for a, _ in PEERS)
            _, _, stream, op, body = w.read_frame(s)
            assert body == status_event(PEERS[1][0], PEER_PORT)
            s.close()
            assert "reachable at" not in t.log()
        # No control connection in pin mode: only the app's queries.
        assert node.received == ["SELECT * FROM system.peers"]
