"""Cases a real Apache Cassandra node cannot produce, against the scripted
fake node in fake_node.py (TLS with a required client certificate, like the
real one): DSE's unified authenticator flow with an authorization id, a
node that answers STARTUP with nonsense, and a node that challenges
forever.  Everything else is tested against a real Cassandra."""

import pytest

import cqlwire as w
from fake_node import FakeNode, handshake_until_startup, serve_queries
from tunnel import Tunnel

DSE = "com.datastax.bdp.cassandra.auth.DseAuthenticator"


def fake_config(pki, port, password_file, **auth):
    a = {"username": "cassandra", "password_file": password_file()}
    a.update(auth)
    return {
        "listen": {"drain_timeout": "2s"},
        # pin: the scripted node cannot answer the control connection's
        # ring queries (translate mode is tested against real nodes).
        "cluster": {"contact_points": "127.0.0.1:%d" % port,
                    "handshake_timeout": "5s", "topology": "pin"},
        "tls": {"ca_file": pki["ca_crt"], "cert_file": pki["client_crt"],
                "key_file": pki["client_key"]},
        "auth": a,
        "log": {"level": "debug"},
    }


def dse_script(conn, node):
    v, stream = handshake_until_startup(conn)
    conn.sendall(w.frame(v, stream, w.OP_AUTHENTICATE, w.string(DSE),
                         response=True))
    _, _, st, op, body = w.read_frame(conn)
    assert (st, op) == (stream, w.OP_AUTH_RESPONSE)
    node.received.append(w.parse_bytes(body)[0])
    conn.sendall(w.frame(v, stream, w.OP_AUTH_CHALLENGE,
                         w.bytes_(b"PLAIN-START"), response=True))
    _, _, st, op, body = w.read_frame(conn)
    assert (st, op) == (stream, w.OP_AUTH_RESPONSE)
    node.received.append(w.parse_bytes(body)[0])
    conn.sendall(w.frame(v, stream, w.OP_AUTH_SUCCESS, w.bytes_(None),
                         response=True))
    serve_queries(conn, v)


@pytest.mark.parametrize("version", [4, 0x42])
def test_dse_plain_start_with_authzid(tmp_path, pki, password_file, version):
    with FakeNode(pki, dse_script) as node:
        cfg = fake_config(pki, node.port, password_file, authzid="alice")
        with Tunnel(str(tmp_path), cfg) as t:
            s = w.connect(t.host, t.port, version=version)
            op, _ = w.query(s, "SELECT 1", version=version)
            assert op == w.OP_RESULT
            s.close()
            t.wait_log("DSE mechanism exchange")
        assert node.errors == []
        assert node.received == [b"PLAIN", b"alice\0cassandra\0cassandra"]


def nonsense_script(conn, node):
    v, stream = handshake_until_startup(conn)
    conn.sendall(w.frame(v, stream, w.OP_RESULT, b"\0\0\0\1",
                         response=True))
    conn.recv(1)


def endless_challenge_script(conn, node):
    v, stream = handshake_until_startup(conn)
    conn.sendall(w.frame(v, stream, w.OP_AUTHENTICATE,
                         w.string("com.example.Chatty"), response=True))
    while True:
        try:
            w.read_frame(conn)
        except (ConnectionError, OSError):
            return
        node.received.append("response")
        conn.sendall(w.frame(v, stream, w.OP_AUTH_CHALLENGE, w.bytes_(b"?"),
                             response=True))


@pytest.mark.parametrize("script,expect", [
    (nonsense_script, "node answered STARTUP with RESULT"),
    (endless_challenge_script, "AUTH_CHALLENGE rounds"),
])
def test_misbehaving_node(tmp_path, pki, password_file, script, expect):
    with FakeNode(pki, script) as node:
        with Tunnel(str(tmp_path), fake_config(pki, node.port,
                                               password_file)) as t:
            for _ in range(2):      # and the next session works the same
                with pytest.raises(w.CqlError) as e:
                    w.connect(t.host, t.port)
                assert e.value.code == 0x000A
                assert e.value.message.startswith("cqltunnel: ")
                assert expect in e.value.message
            t.wait_log("protocol error")
            assert t.alive()
