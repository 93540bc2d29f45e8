"""A scripted fake CQL node (TLS server) for cases a real Cassandra cannot
produce: DSE's PLAIN / PLAIN-START exchange, an authzid check, malformed
or unexpected replies, endless AUTH_CHALLENGE loops, certificates a node
should never present, a node that closes mid-frame.  Every test using it
says so; everything else runs against a real Cassandra node.

For the hostile-input tests (test_hostile.py) a FakeNode can also stand in
front of a real node: with ${relay_to}, every connection that has no
script pushed for it is relayed (TLS terminated, a new mutual-TLS
connection to the real node) byte for byte, so a tunnel pointed at the
fake node carries real sessions (the "witness") beside the scripted
hostile ones.  push() queues a script, and optionally another server
certificate or no TLS at all, for the next accepted connection;
close_port() / reopen_port() make the port refuse connections.
"""

import select
import socket
import ssl
import threading

import cqlwire as w


class FakeNode:
    """Accept TLS connections (client certificate required) and run
    ${script}(conn, node) for each in a thread.  Records what scripts
    append to ${received}."""

    def __init__(self, pki, script=None, require_client_cert=True,
                 relay_to=None):
        self.pki = pki
        self.script = script or (relay_script(relay_to) if relay_to
                                 else None)
        self.received = []
        self.errors = []
        self.ctx = server_context(pki, pki["node_crt"], pki["node_key"],
                                  require_client_cert)
        self._queue = []
        self._lock = threading.Lock()
        self.accepted = 0
        self.sock = None
        self.port = 0
        self._listen()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _listen(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self.sock = sock

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self.sock.close()
        return False

    def push(self, script, ctx=None, tls=True):
        """Run ${script} for the next accepted connection (instead of the
        default), over TLS with ${ctx} (default: the node certificate), or
        on the raw TCP socket when not ${tls}."""
        with self._lock:
            self._queue.append((script, ctx, tls))

    def close_port(self):
        """Stop listening: connections to the port are refused (open
        connections stay)."""
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes accept()
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)

    def reopen_port(self):
        """Listen again on the same port."""
        self._listen()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                job = self._queue.pop(0) if self._queue else \
                    (self.script, None, True)
                self.accepted += 1
            threading.Thread(target=self._handle, args=(raw,) + job,
                             daemon=True).start()

    def _handle(self, raw, script, ctx, tls):
        if not tls:
            try:
                script(raw, self)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
            finally:
                raw.close()
            return
        try:
            conn = (ctx or self.ctx).wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.errors.append("tls: %s" % e)
            raw.close()
            return
        try:
            script(conn, self)
        except Exception as e:  # recorded; the test asserts on it
            self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass


def server_context(pki, crt, key, require_client_cert=True):
    """A TLS server context presenting ${crt} (which may hold a chain)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["ca_crt"])
    return ctx


def relay_script(target):
    """A script relaying the connection to the real node ${target} =
    (host, port, pki) over mutual TLS with the test client certificate."""
    host, port, pki = target

    def relay(conn, node):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki["ca_crt"])
        ctx.load_cert_chain(pki["client_crt"], pki["client_key"])
        ctx.check_hostname = False
        up = ctx.wrap_socket(socket.create_connection((host, port),
                                                      timeout=10))
        try:
            _pump(conn, up)
        finally:
            up.close()
    return relay


def _pump(a, b):
    """Copy bytes both ways between two TLS sockets until one side ends."""
    for s in (a, b):
        s.setblocking(False)
    peer = {a: b, b: a}
    while True:
        ready = [s for s in (a, b) if s.pending()]
        if not ready:
            ready, _, _ = select.select([a, b], [], [], 1.0)
        for s in ready:
            try:
                data = s.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            out = peer[s]
            out.settimeout(10)
            try:
                out.sendall(data)
            except (OSError, ssl.SSLError):
                return
            finally:
                out.setblocking(False)


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
