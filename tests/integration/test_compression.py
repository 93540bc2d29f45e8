"""Snappy body compression (native protocol v3/v4) through cqltunnel,
against the real Cassandra 5.0.6 node of the session fixture (TLS with
require_client_auth + PasswordAuthenticator).

What the node does (checked here directly over TLS, without the tunnel):
it offers COMPRESSION [snappy, lz4] in SUPPORTED, and once a STARTUP asks
for snappy it snappy-compresses every frame it sends with a body, including
the AUTHENTICATE (authenticator class name), AUTH_SUCCESS and ERROR frames
of the handshake that cqltunnel intercepts.

What these tests prove about cqltunnel: it passes the node's SUPPORTED to the
app unchanged (snappy included, since it can decode it), it decodes the
node's snappy-compressed handshake messages to inject the SASL PLAIN
credentials and answers the app READY, the session then carries snappy
frames both ways, a node ERROR sent snappy-compressed during the handshake
reaches the app readable, and the DataStax python driver with
compression='snappy' (no TLS, no credentials) works end to end
(create/insert/prepare/select).
"""

import socket
import struct
import uuid

import pytest
import snappy  # python-snappy (tests/integration/requirements.txt)
from cassandra.cluster import Cluster

import cqlwire
from cassandra_node import client_ssl_context
from tunnel import Tunnel

CREDENTIALS = b"\0cassandra\0cassandra"
PASSWORD_AUTHENTICATOR = "org.apache.cassandra.auth.PasswordAuthenticator"


def node_socket(cassandra, pki):
    """A direct mutual-TLS connection to the node (no tunnel)."""
    raw = socket.create_connection((cassandra.host, cassandra.native_port),
                                   timeout=10)
    return client_ssl_context(pki).wrap_socket(
        raw, server_hostname=cassandra.host)


def body_of(flags, body):
    """The uncompressed body of a v3/v4 frame under snappy."""
    if flags & cqlwire.FLAG_COMPRESSION:
        return snappy.decompress(body)
    return body


def supported(sock, version=4):
    sock.sendall(cqlwire.frame(version, 0, cqlwire.OP_OPTIONS))
    v, flags, stream, op, body = cqlwire.read_frame(sock)
    assert (v, stream, op) == (0x80 | version, 0, cqlwire.OP_SUPPORTED), \
        (v, stream, op, body)
    assert flags == 0, flags     # nothing negotiated yet
    return body


def test_node_offers_snappy_and_app_sees_it_unchanged(tmp_path, tunnel_config,
                                                      cassandra, pki):
    with node_socket(cassandra, pki) as s:
        node_body = supported(s)
    options, end = cqlwire.parse_string_multimap(node_body)
    assert end == len(node_body)
    assert "snappy" in options["COMPRESSION"], options
    assert "lz4" in options["COMPRESSION"], options

    with Tunnel(str(tmp_path), tunnel_config()) as t:
        with socket.create_connection((t.host, t.port), timeout=10) as s:
            app_body = supported(s)
    # cqltunnel decodes snappy, so it does not filter the list: the app
    # gets the node's SUPPORTED byte for byte.
    assert app_body == node_body


def test_node_compresses_its_handshake_with_snappy(cassandra, pki):
    """The premise of the tunnel tests below: with COMPRESSION=snappy the
    node's AUTHENTICATE and AUTH_SUCCESS are snappy-compressed (flag 0x01),
    so cqltunnel must decode snappy to see the authenticator and the
    outcome."""
    with node_socket(cassandra, pki) as s:
        s.sendall(cqlwire.frame(4, 1, cqlwire.OP_STARTUP,
                                cqlwire.startup_body("snappy")))
        v, flags, stream, op, body = cqlwire.read_frame(s)
        assert (v, stream, op) == (0x84, 1, cqlwire.OP_AUTHENTICATE)
        assert flags & cqlwire.FLAG_COMPRESSION, flags
        assert cqlwire.parse_string(snappy.decompress(body))[0] == \
            PASSWORD_AUTHENTICATOR
        # The server decompresses only when flag 0x01 is set: a plain
        # AUTH_RESPONSE (what cqltunnel sends) is fine.
        s.sendall(cqlwire.frame(4, 1, cqlwire.OP_AUTH_RESPONSE,
                                cqlwire.bytes_(CREDENTIALS)))
        v, flags, stream, op, body = cqlwire.read_frame(s)
        assert (v, stream, op) == (0x84, 1, cqlwire.OP_AUTH_SUCCESS)
        assert flags & cqlwire.FLAG_COMPRESSION, flags
        assert cqlwire.parse_bytes(snappy.decompress(body))[0] is None


def snappy_query(sock, cql, stream, compress=True):
    """Send a v4 QUERY (snappy-compressed unless compress is False) and
    return (flags, uncompressed body) of the RESULT."""
    body = cqlwire.query_body(cql)
    flags = 0
    if compress:
        body, flags = snappy.compress(body), cqlwire.FLAG_COMPRESSION
    sock.sendall(cqlwire.frame(4, stream, cqlwire.OP_QUERY, body,
                               flags=flags))
    v, rflags, st, op, rbody = cqlwire.read_frame(sock)
    assert (v, st) == (0x84, stream), (v, st)
    rbody = body_of(rflags, rbody)
    if op == cqlwire.OP_ERROR:
        raise cqlwire.CqlError(*cqlwire.parse_error(rbody))
    assert op == cqlwire.OP_RESULT, op
    return rflags, rbody


def test_raw_startup_snappy_v4(tmp_path, tunnel_config, cassandra):
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        for _ in range(2):     # and again on a second session
            with socket.create_connection((t.host, t.port), timeout=10) as s:
                supported(s)
                s.sendall(cqlwire.frame(4, 1, cqlwire.OP_STARTUP,
                                        cqlwire.startup_body("snappy")))
                v, flags, stream, op, body = cqlwire.read_frame(s)
                if op == cqlwire.OP_ERROR:
                    pytest.fail("ERROR instead of READY: code=0x%04x %s\n%s"
                                % (cqlwire.parse_error(body_of(flags, body))
                                   + (t.log(),)))
                assert (v, stream, op) == (0x84, 1, cqlwire.OP_READY)
                assert flags in (0, cqlwire.FLAG_COMPRESSION), flags
                assert body_of(flags, body) == b""

                # A result cqltunnel does not rewrite: relayed as the node
                # sent it, snappy-compressed.
                rflags, rbody = snappy_query(
                    s, "SELECT keyspace_name FROM system_schema.keyspaces",
                    stream=2)
                assert rflags & cqlwire.FLAG_COMPRESSION, rflags
                names, rows = cqlwire.parse_rows(rbody)
                assert names == ["keyspace_name"]
                assert b"system_auth" in [r[0] for r in rows], rows

                # system.local (rewritten in translate mode; may come back
                # uncompressed), asked with an uncompressed request.
                _, rbody = snappy_query(
                    s, "SELECT release_version, rpc_address, rpc_port FROM "
                    "system.local", stream=3, compress=False)
                names, rows = cqlwire.parse_rows(rbody)
                assert names == ["release_version", "rpc_address",
                                 "rpc_port"]
                assert rows[0][0] == b"5.0.6"
                # ... with the node's address and port replaced by the
                # tunnel's.
                assert socket.inet_ntoa(rows[0][1]) == t.host
                assert struct.unpack(">i", rows[0][2])[0] == t.port

        # cqltunnel read the class name from the snappy-compressed
        # AUTHENTICATE and injected the credentials.
        t.wait_log("handshake done (v4, authenticator %s, credentials "
                   "injected)" % PASSWORD_AUTHENTICATOR)
        assert t.log().count("handshake done (v4,") == 2, t.log()
        assert "uses authenticator %s; answering with a SASL PLAIN token" \
            % PASSWORD_AUTHENTICATOR in t.log()
        assert "corrupt" not in t.log() and "unexpected" not in t.log()


def test_snappy_bad_credentials_error_reaches_app(tmp_path, tunnel_config,
                                                  password_file):
    """The node's ERROR to our AUTH_RESPONSE is snappy-compressed: the app
    must get it readable, on its STARTUP stream, and the daemon keeps
    serving."""
    cfg = tunnel_config(auth={"password_file": password_file(
        "wrong", "wrong-password")})
    with Tunnel(str(tmp_path), cfg) as t:
        for _ in range(2):
            with socket.create_connection((t.host, t.port), timeout=10) as s:
                s.sendall(cqlwire.frame(4, 7, cqlwire.OP_STARTUP,
                                        cqlwire.startup_body("snappy")))
                v, flags, stream, op, body = cqlwire.read_frame(s)
                assert (v, stream, op) == (0x84, 7, cqlwire.OP_ERROR)
                code, msg = cqlwire.parse_error(body_of(flags, body))
                assert code == 0x0100, (code, msg)
                assert "Provided username cassandra and/or password are " \
                    "incorrect" in msg, msg
        assert t.alive()
        t.wait_log("authentication failed")
        assert "wrong" not in t.log()


def roundtrip(session):
    ks = "it_" + uuid.uuid4().hex[:8]
    session.execute("CREATE KEYSPACE %s WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}"
                    % ks)
    session.execute("CREATE TABLE %s.t (k int PRIMARY KEY, v text)" % ks)
    # Values that compress well and poorly, so that the bodies are really
    # snappy-encoded both ways.
    big = "snappy " * 2000
    session.execute("INSERT INTO %s.t (k, v) VALUES (1, 'through the "
                    "tunnel')" % ks)
    ins = session.prepare("INSERT INTO %s.t (k, v) VALUES (?, ?)" % ks)
    session.execute(ins, [2, big])
    prepared = session.prepare("SELECT v FROM %s.t WHERE k = ?" % ks)
    first = session.execute(prepared, [1]).one().v
    second = session.execute(prepared, [2]).one().v
    session.execute("DROP KEYSPACE %s" % ks)
    return first, second == big


@pytest.mark.parametrize("version", [3, 4])
def test_driver_snappy_roundtrip(tmp_path, tunnel_config, version):
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        # A legacy app: no ssl_context, no auth_provider.
        c = Cluster([t.host], port=t.port, connect_timeout=10,
                    protocol_version=version, compression="snappy")
        try:
            s = c.connect()
            assert roundtrip(s) == ("through the tunnel", True)
            assert c.protocol_version == version
            # Snappy really was negotiated (the driver silently falls back
            # to no compression when SUPPORTED lacks it).
            conns = [c.control_connection._connection]
            conns += [pool._connection for pool in s._pools.values()]
            for conn in conns:
                assert conn.compressor is snappy.compress, conn.compressor
        finally:
            c.shutdown()
        t.wait_log("credentials injected")
        assert "handshake done (v%d, authenticator %s, credentials injected)" \
            % (version, PASSWORD_AUTHENTICATOR) in t.log()
