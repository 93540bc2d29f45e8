"""Reuse of authenticated node connections ([cluster] reuse_connections)
against a real Cassandra 5.0 node.

When an app closes cleanly (nothing in flight, no USE, no REGISTER, no
EVENT, no compression, v3/v4), its node connection is kept, and the next
app whose STARTUP is identical gets it: its OPTIONS is answered from what
the node said on that connection, its STARTUP with READY.  Everything
else must behave as without reuse: these tests check both that reuse
happens and that no state crosses from one app to the next."""

import os
import socket
import struct
import time
import uuid

from cassandra.cluster import Cluster

import cqlwire
from tunnel import Tunnel, free_port
from test_admin import get, metric, parse_metrics, wait_ready

OP_REGISTER, OP_EVENT = 0x0B, 0x0C


def metrics(admin):
    m = parse_metrics(get(admin, "/metrics")[2])
    return (metric(m, "cqltunnel_node_connections_reused_total"),
            metric(m, "cqltunnel_node_connections_pooled"))


def wait_pooled(admin, want, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        reused, pooled = metrics(admin)
        if pooled == want:
            return reused
        assert time.monotonic() < deadline, (reused, pooled, want)
        time.sleep(0.2)


def open_session(t, opts=None, version=4, options=True):
    """Connect with a STARTUP of ${opts}; returns the socket once READY."""
    if opts is None:
        opts = {"CQL_VERSION": "3.0.0"}
    s = socket.create_connection((t.host, t.port), timeout=10)
    if options:
        s.sendall(cqlwire.frame(version, 0, cqlwire.OP_OPTIONS))
        v, _, stream, op, body = cqlwire.read_frame(s)
        assert (v, stream, op) == (0x80 | version, 0, cqlwire.OP_SUPPORTED)
        assert b"CQL_VERSION" in body
    s.sendall(cqlwire.frame(version, 1, cqlwire.OP_STARTUP,
                            cqlwire.string_map(opts)))
    v, _, stream, op, body = cqlwire.read_frame(s)
    assert (v, stream, op) == (0x80 | version, 1, cqlwire.OP_READY), \
        (v, stream, op, body)
    return s


def my_ports(s, driver):
    """The client ports the node lists for connections whose STARTUP
    named DRIVER_NAME ${driver}."""
    op, body = cqlwire.query(s, "SELECT driver_name, port FROM "
                             "system_views.clients")
    _, rows = cqlwire.parse_rows(body)
    return sorted(struct.unpack(">i", port)[0] for name, port in rows
                  if name is not None and name.decode() == driver)


def config(tunnel_config, admin, **cluster):
    return tunnel_config(admin={"address": "127.0.0.1:%d" % admin},
                         cluster=cluster)


def closed(t, n, kept):
    """Wait for the close line of session ${n}; check whether its node
    connection was kept."""
    t.wait_log("session %d closed" % n)
    line = [x for x in t.log().splitlines()
            if "session %d closed" % n in x][0]
    assert ("node connection kept for reuse" in line) == kept, line
    return line


def test_sequential_sessions_share_one_node_connection(tmp_path,
                                                        tunnel_config):
    """(a) connect, query, close twice: the second app gets the first's
    node connection (metric, log, and the node lists one connection)."""
    admin = free_port()
    driver = "reuse-" + uuid.uuid4().hex[:8]
    opts = {"CQL_VERSION": "3.0.0", "DRIVER_NAME": driver,
            "DRIVER_VERSION": "1"}
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        s = open_session(t, opts)
        first = my_ports(s, driver)
        assert len(first) == 1, first
        s.close()
        closed(t, 1, True)
        assert wait_pooled(admin, 1) == 0
        s = open_session(t, opts)
        assert my_ports(s, driver) == first
        op, _ = cqlwire.query(s, "SELECT release_version FROM system.local")
        assert op == cqlwire.OP_RESULT
        s.close()
        line = closed(t, 2, True)
        assert "reused node connection" in line
        assert wait_pooled(admin, 1) == 1
        # Without OPTIONS first (some drivers go straight to STARTUP).
        s = open_session(t, opts, options=False)
        assert my_ports(s, driver) == first
        s.close()
        closed(t, 3, True)
        assert wait_pooled(admin, 1) == 2


def test_use_keyspace_is_not_reused(tmp_path, tunnel_config):
    """(b) a USE changes the connection's keyspace: never handed on, and
    the next app's unqualified table name fails as it should."""
    admin = free_port()
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        s = open_session(t)
        op, body = cqlwire.query(s, "USE system")
        assert op == cqlwire.OP_RESULT
        assert struct.unpack(">i", body[:4])[0] == 0x0003
        op, _ = cqlwire.query(s, "SELECT key FROM local", stream=3)
        assert op == cqlwire.OP_RESULT
        s.close()
        closed(t, 1, False)
        assert "node connection not kept: a USE set" in t.log()
        assert wait_pooled(admin, 0) == 0
        s = open_session(t)
        try:
            cqlwire.query(s, "SELECT key FROM local")
            raise AssertionError("unqualified table worked without USE")
        except cqlwire.CqlError as e:
            assert e.code == 0x2200, e        # Invalid: no keyspace
        s.close()
        assert metrics(admin)[0] == 0


def test_register_is_not_reused(tmp_path, tunnel_config):
    """(c) a REGISTER subscribes the connection to events: never handed
    on; the next app sees no EVENT for a schema change it makes."""
    admin = free_port()
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        s = open_session(t)
        body = struct.pack(">H", 1) + cqlwire.string("SCHEMA_CHANGE")
        s.sendall(cqlwire.frame(4, 5, OP_REGISTER, body))
        _, _, stream, op, _ = cqlwire.read_frame(s)
        assert (stream, op) == (5, cqlwire.OP_READY)
        s.close()
        closed(t, 1, False)
        assert "node connection not kept: app sent a request other" in \
            t.log()
        s = open_session(t)
        ks = "reuse_" + uuid.uuid4().hex[:8]
        op, _ = cqlwire.query(s, "CREATE KEYSPACE %s WITH replication = "
                              "{'class': 'SimpleStrategy', "
                              "'replication_factor': 1}" % ks)
        assert op == cqlwire.OP_RESULT
        s.settimeout(1.5)
        try:
            frame = cqlwire.read_frame(s)
            raise AssertionError("unexpected frame %r" % (frame,))
        except socket.timeout:
            pass
        s.settimeout(10)
        cqlwire.query(s, "DROP KEYSPACE %s" % ks, stream=3)
        s.close()
        # The DDL's SCHEMA_CHANGE result is harmless: that one is kept.
        closed(t, 2, True)
        assert metrics(admin)[0] == 0


def test_requests_in_flight_are_not_reused(tmp_path, tunnel_config):
    """(d) the app closes with requests unanswered: the answers would
    reach the next app, so the connection is closed."""
    admin = free_port()
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        s = open_session(t)
        q = b"".join(cqlwire.frame(4, 10 + i, cqlwire.OP_QUERY,
                                   cqlwire.query_body(
                                       "SELECT * FROM system_schema.columns"))
                     for i in range(20))
        s.sendall(q)
        s.shutdown(socket.SHUT_WR)
        s.close()
        line = closed(t, 1, False)
        # Either the close is seen first (app closed), or a write of an
        # answer to the app fails first (app connection error).
        assert "node connection not kept: requests in flight" in t.log() \
            or "app connection error" in line, line
        assert wait_pooled(admin, 0) == 0


def test_different_startup_is_not_reused(tmp_path, tunnel_config):
    """(e) a STARTUP that differs in any option (here DRIVER_NAME) gets a
    connection of its own; both are kept afterwards."""
    admin = free_port()
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        s = open_session(t, {"CQL_VERSION": "3.0.0", "DRIVER_NAME": "a"})
        s.close()
        closed(t, 1, True)
        wait_pooled(admin, 1)
        s = open_session(t, {"CQL_VERSION": "3.0.0", "DRIVER_NAME": "b"})
        cqlwire.query(s, "SELECT key FROM system.local")
        s.close()
        closed(t, 2, True)
        assert wait_pooled(admin, 2) == 0
        # Another protocol version with the same options: no match either.
        s = open_session(t, {"CQL_VERSION": "3.0.0", "DRIVER_NAME": "a"},
                         version=3)
        s.close()
        closed(t, 3, True)
        assert wait_pooled(admin, 3) == 0


def test_compression_is_not_reused(tmp_path, tunnel_config):
    """(f) STARTUP with COMPRESSION = lz4: bodies cannot be read, so the
    connection is never kept (and such an app never takes one)."""
    admin = free_port()
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        s = open_session(t)
        s.close()
        closed(t, 1, True)
        wait_pooled(admin, 1)
        for n in (2, 3):
            s = socket.create_connection((t.host, t.port), timeout=10)
            s.sendall(cqlwire.frame(4, 1, cqlwire.OP_STARTUP,
                                    cqlwire.startup_body("lz4")))
            _, _, stream, op, _ = cqlwire.read_frame(s)
            assert (stream, op) == (1, cqlwire.OP_READY)
            s.close()
            closed(t, n, False)
        assert metrics(admin) == (0, 1)


def test_reload_empties_the_pool(tmp_path, tunnel_config):
    """(g) SIGHUP: connections kept under the old configuration are
    closed, and the next session opens a new one."""
    admin = free_port()
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        s = open_session(t)
        s.close()
        closed(t, 1, True)
        wait_pooled(admin, 1)
        t.sighup()
        t.wait_log("configuration reloaded")
        wait_pooled(admin, 0)
        assert "closed: pool emptied" in t.log()
        s = open_session(t)
        cqlwire.query(s, "SELECT key FROM system.local")
        s.close()
        closed(t, 2, True)
        assert wait_pooled(admin, 1) == 0


def test_idle_timeout(tmp_path, tunnel_config):
    """(h) a kept connection is closed after reuse_idle_timeout."""
    admin = free_port()
    cfg = config(tunnel_config, admin, reuse_idle_timeout="1s")
    with Tunnel(str(tmp_path), cfg) as t:
        wait_ready(admin, 200)
        s = open_session(t)
        s.close()
        closed(t, 1, True)
        t.wait_log("closed: idle time limit", timeout=5)
        assert wait_pooled(admin, 0) == 0


def test_reuse_off(tmp_path, tunnel_config):
    """(i) reuse_connections = no: every session has its own."""
    admin = free_port()
    cfg = config(tunnel_config, admin, reuse_connections="no")
    with Tunnel(str(tmp_path), cfg) as t:
        wait_ready(admin, 200)
        for n in (1, 2, 3):
            s = open_session(t)
            cqlwire.query(s, "SELECT key FROM system.local")
            s.close()
            closed(t, n, False)
        assert metrics(admin) == (0, 0)


def test_max_idle_zero(tmp_path, tunnel_config):
    """reuse_max_idle = 0 disables reuse too."""
    admin = free_port()
    cfg = config(tunnel_config, admin, reuse_max_idle="0")
    with Tunnel(str(tmp_path), cfg) as t:
        wait_ready(admin, 200)
        for n in (1, 2):
            s = open_session(t)
            s.close()
            closed(t, n, False)
        assert metrics(admin) == (0, 0)


def test_python_driver_reconnects(tmp_path, tunnel_config):
    """(j) the DataStax driver connecting and disconnecting repeatedly
    (v4 and no compression, so that its connections can be kept): every
    round works."""
    admin = free_port()
    with Tunnel(str(tmp_path), config(tunnel_config, admin)) as t:
        wait_ready(admin, 200)
        for i in range(5):
            c = Cluster([t.host], port=t.port, connect_timeout=10,
                        protocol_version=4, compression=False)
            sess = c.connect()
            row = sess.execute("SELECT release_version FROM "
                               "system.local").one()
            assert row.release_version.startswith("5.")
            ks = sess.execute("SELECT keyspace_name FROM "
                              "system_schema.keyspaces")
            assert "system" in [r.keyspace_name for r in ks]
            c.shutdown()
        reused, _ = metrics(admin)
        assert reused >= 1, t.log()
        assert "Sanitizer" not in t.log()


def test_accept_mode_reuses_after_app_auth(tmp_path, tunnel_config):
    """client_auth = accept: the app that gets a kept connection is still
    challenged (AUTHENTICATE, then AUTH_SUCCESS for whatever it sends),
    as every app in that mode is.  (No wait for /readyz: the control
    connection does not complete its handshake in accept mode.)"""
    admin = free_port()
    cfg = tunnel_config(admin={"address": "127.0.0.1:%d" % admin},
                        auth={"client_auth": "accept"})
    with Tunnel(str(tmp_path), cfg) as t:
        for n in (1, 2):
            s = socket.create_connection((t.host, t.port), timeout=10)
            s.sendall(cqlwire.frame(4, 1, cqlwire.OP_STARTUP,
                                    cqlwire.startup_body()))
            _, _, stream, op, body = cqlwire.read_frame(s)
            assert (stream, op) == (1, cqlwire.OP_AUTHENTICATE), op
            s.sendall(cqlwire.frame(4, 1, cqlwire.OP_AUTH_RESPONSE,
                                    cqlwire.bytes_(b"\0app\0anything")))
            _, _, stream, op, _ = cqlwire.read_frame(s)
            assert (stream, op) == (1, cqlwire.OP_AUTH_SUCCESS), op
            op, _ = cqlwire.query(s, "SELECT key FROM system.local")
            assert op == cqlwire.OP_RESULT
            s.close()
            closed(t, n, True)
        assert wait_pooled(admin, 1) == 1
