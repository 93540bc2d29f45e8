"""Protocol version negotiation through cqltunnel, against the real
Cassandra 5.0.6 node of the session fixture (TLS with require_client_auth +
PasswordAuthenticator), with the raw cqlwire client (and the python driver
for v6-beta).

cqltunnel relays everything before STARTUP untouched, so version
negotiation is the node's.  What the node does (checked here directly over
TLS too, so that the expectations are the real node's, not ours):

* v1/v2 (8-byte headers) and unknown versions get ERROR 0x000A "Invalid or
  unsupported protocol version (N); supported versions are (3/v3, 4/v4,
  5/v5, 6/v6-beta)" on stream 0, in a v1/v2 frame for v1/v2 and a 0x85 frame
  for versions above 6;
* v6 without the USE_BETA flag (0x10) gets ERROR 0x000A "Beta version of the
  protocol used (6/v6-beta), but USE_BETA flag is unset" in a 0x86 frame
  (flags 0x10), stream 0;
* v6 WITH USE_BETA is accepted: SUPPORTED, AUTHENTICATE, then v5-style
  segments (CRC24/CRC32) from AUTH_RESPONSE on, and every envelope the client
  sends must carry USE_BETA (one without it gets the error above).

These tests prove that the app gets exactly those answers through the tunnel
and that the daemon keeps serving afterwards, and that the v6-beta handshake
works through the tunnel: every frame cqltunnel builds itself (the injected
AUTH_RESPONSE, READY, ERROR) carries USE_BETA in a beta version.
"""

import socket
import struct

import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable

import cqlwire
from cassandra_node import client_ssl_context
from tunnel import Tunnel

CREDENTIALS = b"\0cassandra\0cassandra"
SUPPORTED_VERSIONS = "3/v3, 4/v4, 5/v5, 6/v6-beta"
UNSUPPORTED = ("Invalid or unsupported protocol version (%d); supported "
               "versions are (" + SUPPORTED_VERSIONS + ")")
BETA_UNSET = ("Beta version of the protocol used (6/v6-beta), but USE_BETA "
              "flag is unset")
USE_BETA = cqlwire.FLAG_USE_BETA

def node_socket(cassandra, pki):
    """A direct mutual-TLS connection to the node (no tunnel)."""
    raw = socket.create_connection((cassandra.host, cassandra.native_port),
                                   timeout=10)
    return client_ssl_context(pki).wrap_socket(
        raw, server_hostname=cassandra.host)


def app_socket(t):
    return socket.create_connection((t.host, t.port), timeout=10)


def exchange(sock, data, header_len=9):
    sock.sendall(data)
    return cqlwire.read_frame_bytes(sock, header_len)


def still_serving(t):
    """The daemon is up and a normal v4 session works."""
    assert t.alive()
    s = cqlwire.connect(t.host, t.port, version=4)
    try:
        op, _ = cqlwire.query(s, "SELECT release_version FROM system.local")
        assert op == cqlwire.OP_RESULT
    finally:
        s.close()


@pytest.mark.parametrize("version", [1, 2])
def test_v1_v2_get_the_nodes_error(tmp_path, tunnel_config, cassandra, pki,
                                   version):
    request = cqlwire.frame_v1v2(version, 3, cqlwire.OP_OPTIONS)
    with node_socket(cassandra, pki) as s:
        node_reply = exchange(s, request, header_len=8)
    # The node answers in a v1/v2 frame (8-byte header), stream 0.
    v, flags, stream, op, length = struct.unpack(">BBbBi", node_reply[:8])
    assert (v, flags, stream, op) == (0x80 | version, 0, 0, cqlwire.OP_ERROR)
    assert cqlwire.parse_error(node_reply[8:]) == (0x000A,
                                                   UNSUPPORTED % version)

    with Tunnel(str(tmp_path), tunnel_config()) as t:
        for _ in range(2):
            with app_socket(t) as s:
                assert exchange(s, request, header_len=8) == node_reply
        still_serving(t)
        t.wait_log("proto v%d" % version)


def test_unknown_version_gets_the_nodes_error(tmp_path, tunnel_config,
                                              cassandra, pki):
    request = cqlwire.frame(7, 3, cqlwire.OP_OPTIONS)
    with node_socket(cassandra, pki) as s:
        node_reply = exchange(s, request)
    v, flags, stream, op, body = cqlwire.parse_envelope(node_reply)
    # 4.0+ answers with its CURRENT version (v5) in the header.
    assert (v, flags, stream, op) == (0x85, 0, 0, cqlwire.OP_ERROR)
    assert cqlwire.parse_error(body) == (0x000A, UNSUPPORTED % 7)
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        with app_socket(t) as s:
            assert exchange(s, request) == node_reply
        still_serving(t)


@pytest.mark.parametrize("opcode,stream", [
    (cqlwire.OP_OPTIONS, 0), (cqlwire.OP_OPTIONS, 5),
    (cqlwire.OP_STARTUP, 0), (cqlwire.OP_STARTUP, 5),
], ids=["OPTIONS-stream0", "OPTIONS-stream5", "STARTUP-stream0",
        "STARTUP-stream5"])
def test_v6_without_use_beta_gets_the_nodes_error(tmp_path, tunnel_config,
                                                  cassandra, pki, opcode,
                                                  stream):
    body = cqlwire.startup_body() if opcode == cqlwire.OP_STARTUP else b""
    request = cqlwire.frame(6, stream, opcode, body)
    with node_socket(cassandra, pki) as s:
        node_reply = exchange(s, request)
    v, flags, rstream, op, rbody = cqlwire.parse_envelope(node_reply)
    assert (v, flags, rstream, op) == (0x86, USE_BETA, 0, cqlwire.OP_ERROR)
    assert cqlwire.parse_error(rbody) == (0x000A, BETA_UNSET)

    with Tunnel(str(tmp_path), tunnel_config()) as t:
        for _ in range(2):
            with app_socket(t) as s:
                app_reply = exchange(s, request)
            # Version byte, stream, opcode, length and body as the node
            # sent them (so drivers' downgrade logic sees the node's text).
            assert app_reply[0] == node_reply[0]
            assert app_reply[2:] == node_reply[2:]
            if (opcode, stream) != (cqlwire.OP_STARTUP, 0):
                # Relayed untouched.  (A STARTUP on stream 0 makes the
                # error look like the STARTUP's answer, which cqltunnel
                # re-encodes: see the next test.)
                assert app_reply == node_reply
        still_serving(t)


def test_v6_without_use_beta_startup_on_stream_0_byte_for_byte(
        tmp_path, tunnel_config, cassandra, pki):
    request = cqlwire.frame(6, 0, cqlwire.OP_STARTUP, cqlwire.startup_body())
    with node_socket(cassandra, pki) as s:
        node_reply = exchange(s, request)
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        with app_socket(t) as s:
            app_reply = exchange(s, request)
        assert app_reply == node_reply, (app_reply[:9].hex(),
                                         node_reply[:9].hex())


def v6_login(sock, token=CREDENTIALS):
    """STARTUP, AUTHENTICATE, AUTH_RESPONSE (in a segment), AUTH_SUCCESS."""
    sock.sendall(cqlwire.frame(6, 1, cqlwire.OP_STARTUP,
                               cqlwire.startup_body(), flags=USE_BETA))
    v, flags, stream, op, body = cqlwire.read_frame(sock)
    # The STARTUP answer is still a bare envelope.
    assert (v, flags, stream, op) == (0x86, USE_BETA, 1,
                                      cqlwire.OP_AUTHENTICATE), (op, body)
    sock.sendall(cqlwire.crc_segment(cqlwire.frame(
        6, 1, cqlwire.OP_AUTH_RESPONSE, cqlwire.bytes_(token),
        flags=USE_BETA)))
    return cqlwire.read_segment_envelope(sock)


def v6_query(sock, cql, stream, flags=USE_BETA):
    sock.sendall(cqlwire.crc_segment(cqlwire.frame(
        6, stream, cqlwire.OP_QUERY, cqlwire.query_body_v5(cql),
        flags=flags)))
    return cqlwire.read_segment_envelope(sock)


def test_node_accepts_v6_with_use_beta(cassandra, pki):
    """The premise of the tunnel tests below, directly against the node."""
    with node_socket(cassandra, pki) as s:
        s.sendall(cqlwire.frame(6, 0, cqlwire.OP_OPTIONS, flags=USE_BETA))
        v, flags, stream, op, body = cqlwire.read_frame(s)
        assert (v, stream, op) == (0x86, 0, cqlwire.OP_SUPPORTED)
        options, _ = cqlwire.parse_string_multimap(body)
        assert "6/v6-beta" in options["PROTOCOL_VERSIONS"], options

        v, flags, stream, op, body = v6_login(s)
        assert (v, stream, op) == (0x86, 1, cqlwire.OP_AUTH_SUCCESS), \
            cqlwire.parse_error(body) if op == cqlwire.OP_ERROR else op
        v, flags, stream, op, body = v6_query(
            s, "SELECT release_version FROM system.local", 2)
        assert (v, stream, op) == (0x86, 2, cqlwire.OP_RESULT), body
        assert cqlwire.parse_rows(body, v5=True)[1] == [[b"5.0.6"]]
        # Every envelope must carry USE_BETA, not only the first ones.
        v, flags, stream, op, body = v6_query(
            s, "SELECT release_version FROM system.local", 3, flags=0)
        assert (stream, op) == (3, cqlwire.OP_ERROR)
        assert cqlwire.parse_error(body) == (0x000A, BETA_UNSET)

    # And an AUTH_RESPONSE without USE_BETA (what cqltunnel sends) is
    # refused.
    with node_socket(cassandra, pki) as s:
        s.sendall(cqlwire.frame(6, 1, cqlwire.OP_STARTUP,
                                cqlwire.startup_body(), flags=USE_BETA))
        assert cqlwire.read_frame(s)[3] == cqlwire.OP_AUTHENTICATE
        s.sendall(cqlwire.crc_segment(cqlwire.frame(
            6, 1, cqlwire.OP_AUTH_RESPONSE, cqlwire.bytes_(CREDENTIALS))))
        v, flags, stream, op, body = cqlwire.read_segment_envelope(s)
        assert (stream, op) == (1, cqlwire.OP_ERROR)
        assert cqlwire.parse_error(body) == (0x000A, BETA_UNSET)


def test_v6_use_beta_options_relayed(tmp_path, tunnel_config, cassandra,
                                     pki):
    request = cqlwire.frame(6, 0, cqlwire.OP_OPTIONS, flags=USE_BETA)
    with node_socket(cassandra, pki) as s:
        node_reply = exchange(s, request)
    assert cqlwire.parse_envelope(node_reply)[:4] == (
        0x86, USE_BETA, 0, cqlwire.OP_SUPPORTED)
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        with app_socket(t) as s:
            assert exchange(s, request) == node_reply


def test_v6_use_beta_through_the_tunnel(tmp_path, tunnel_config):
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        with app_socket(t) as s:
            s.sendall(cqlwire.frame(6, 0, cqlwire.OP_OPTIONS,
                                    flags=USE_BETA))
            assert cqlwire.read_frame(s)[3] == cqlwire.OP_SUPPORTED
            s.sendall(cqlwire.frame(6, 1, cqlwire.OP_STARTUP,
                                    cqlwire.startup_body(), flags=USE_BETA))
            v, flags, stream, op, body = cqlwire.read_frame(s)
            assert op != cqlwire.OP_ERROR, (
                "ERROR instead of READY: code=0x%04x %s"
                % cqlwire.parse_error(body))
            # READY, a bare envelope: the app switches to segments on it.
            assert (v, stream, op) == (0x86, 1, cqlwire.OP_READY)
            assert body == b""
            v, flags, stream, op, body = v6_query(
                s, "SELECT release_version FROM system.local", 2)
            assert (v, stream, op) == (0x86, 2, cqlwire.OP_RESULT), (
                cqlwire.parse_error(body) if op == cqlwire.OP_ERROR else op)
            assert cqlwire.parse_rows(body, v5=True)[1] == [[b"5.0.6"]]
        t.wait_log("handshake done (v6, authenticator org.apache.cassandra."
                   "auth.PasswordAuthenticator, credentials injected)")


def test_driver_v6_beta_direct_to_node(cassandra, pki):
    """The python driver itself speaks v6-beta with this node."""
    c = Cluster([cassandra.host], port=cassandra.native_port,
                ssl_context=client_ssl_context(pki),
                ssl_options={"server_hostname": cassandra.host},
                auth_provider=PlainTextAuthProvider("cassandra", "cassandra"),
                protocol_version=6, allow_beta_protocol_version=True,
                compression=False, connect_timeout=10)
    try:
        s = c.connect()
        row = s.execute("SELECT release_version FROM system.local").one()
        assert row.release_version == "5.0.6"
        assert c.protocol_version == 6
    finally:
        c.shutdown()


def test_driver_v6_beta_through_the_tunnel(tmp_path, tunnel_config):
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        # A legacy app: no ssl_context, no auth_provider.
        c = Cluster([t.host], port=t.port, protocol_version=6,
                    allow_beta_protocol_version=True, compression=False,
                    connect_timeout=10)
        try:
            s = c.connect()
            row = s.execute("SELECT release_version FROM system.local").one()
            assert row.release_version == "5.0.6"
            assert c.protocol_version == 6
        finally:
            c.shutdown()
