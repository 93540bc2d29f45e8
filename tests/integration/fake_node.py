"""A scripted fake CQL node (TLS server) for cases a real Cassandra cannot
produce: DSE's PLAIN / PLAIN-START exchange, an authzid check, malformed
or unexpected replies, endless AUTH_CHALLENGE loops.  Every test using it
says so; everything else runs against a real Cassandra node.
"""

import socket
import ssl
import threading

import cqlwire as w


class FakeNode:
    """Accept TLS connections (client certificate required) and run
    ${script}(conn, node) for each in a thread.  Records what scripts
    append to ${received}."""

    def __init__(self, pki, script, require_client_cert=True):
        self.script = script
        self.received = []
        self.errors = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["node_crt"], pki["node_key"])
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(pki["ca_crt"])
        self.ctx = ctx
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self.sock.close()
        return False

    def _serve(self):
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,),
                             daemon=True).start()

    def _handle(self, raw):
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.errors.append("tls: %s" % e)
            raw.close()
            return
        try:
            self.script(conn, self)
        except Exception as e:  # recorded; the test asserts on it
            self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass


def handshake_until_startup(conn):
    """Answer OPTIONS with SUPPORTED, return the STARTUP frame."""
    while True:
        v, flags, stream, op, body = w.read_frame(conn)
        if op == w.OP_OPTIONS:
            supported = (b"\x00\x02" + w.string("CQL_VERSION")
                         + b"\x00\x01" + w.string("3.4.7")
                         + w.string("COMPRESSION") + b"\x00\x01"
                         + w.string("lz4"))
            conn.sendall(w.frame(v, stream, w.OP_SUPPORTED, supported,
                                 response=True))
            continue
        assert op == w.OP_STARTUP, op
        return v, stream


def serve_queries(conn, v):
    """Answer every QUERY with RESULT Void until the peer closes."""
    while True:
        try:
            _, _, stream, op, _ = w.read_frame(conn)
        except ConnectionError:
            return
        conn.sendall(w.frame(v, stream, w.OP_RESULT, b"\x00\x00\x00\x01",
                             response=True))
