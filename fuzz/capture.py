#!/usr/bin/env python3
"""Record real CQL byte streams for the fuzz seed corpora.

Runs the integration harness's real Cassandra 5.0 node (TLS, client
certificates, PasswordAuthenticator) and the real cqltunnel binary, with two
recording proxies, so that no line of the daemon changes:

    app (python driver, cqlsh)
      -> plain TCP recorder        records app->tunnel, tunnel->app
      -> cqltunnel (listen)
      -> TLS recorder               terminates the tunnel's TLS with the test
                                    PKI's node certificate (valid for
                                    127.0.0.1), opens its own mutual-TLS
                                    connection to the node, and records the
                                    plaintext tunnel->node, node->tunnel
      -> Cassandra

The sessions: the python driver with protocol v3, v4, v5, v4+lz4, v5+lz4 and
negotiated (DSE_V2 -> DSE_V1 -> v5), each creating a keyspace (SCHEMA_CHANGE
events), a table, rows, prepared statements, paging, and system.local /
peers / peers_v2 queries (plain and prepared); cqlsh with v3, v4, v5.

Output: RAWDIR/NNN-<side>.bin (side: a2t t2a t2n n2t) and RAWDIR/index.json
(scenario and accept time of every connection).  fuzz/mkseeds.py turns that
into fuzz/corpus/<target>/.

Run with the integration venv's python (it needs cassandra-driver):

    ~/.cache/cqltunnel/venv/bin/python fuzz/capture.py --build build \\
        --out /tmp/cql-capture
"""

import argparse
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from cassandra_node import (CassandraNode, client_ssl_context,  # noqa: E402
                            free_port, make_pki)
from tunnel import Tunnel  # noqa: E402


class Recorder:
    """A TCP proxy that records both directions of every connection.
    With ${server_ctx} it terminates TLS on the accepting side, and with
    ${client_ctx} it speaks TLS to the upstream."""

    def __init__(self, out, prefix, upstream, server_ctx=None,
                 client_ctx=None, sides=("up", "down")):
        self.out = out
        self.prefix = prefix
        self.upstream = upstream
        self.server_ctx = server_ctx
        self.client_ctx = client_ctx
        self.sides = sides
        self.scenario = "setup"
        self.index = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(raw,),
                             daemon=True).start()

    def _conn(self, raw):
        with self.lock:
            n = len(self.index)
            self.index.append({"n": n, "prefix": self.prefix,
                               "scenario": self.scenario,
                               "t": time.monotonic()})
        try:
            a = raw
            if self.server_ctx is not None:
                a = self.server_ctx.wrap_socket(raw, server_side=True)
            b = socket.create_connection(self.upstream, timeout=10)
            if self.client_ctx is not None:
                b = self.client_ctx.wrap_socket(
                    b, server_hostname=self.upstream[0])
        except (OSError, ssl.SSLError):
            raw.close()
            return
        base = os.path.join(self.out, "%s%03d" % (self.prefix, n))
        with open(base + "-" + self.sides[0] + ".bin", "wb") as up, \
                open(base + "-" + self.sides[1] + ".bin", "wb") as down:
            self._pump(a, b, up, down)

    @staticmethod
    def _pump(a, b, up, down):
        for s in (a, b):
            s.setblocking(False)
        try:
            while True:
                ready = [s for s in (a, b) if isinstance(s, ssl.SSLSocket)
                         and s.pending()]
                if not ready:
                    ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    dst, rec = (b, up) if src is a else (a, down)
                    try:
                        data = src.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    if not data:
                        return
                    rec.write(data)
                    rec.flush()
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
        except (OSError, ssl.SSLError):
            return
        finally:
            a.close()
            b.close()

    def stop(self):
        self.stopping = True
        self.sock.close()


def roundtrip(session, label):
    """Traffic worth recording: DDL (schema events), DML, prepared
    statements, paging, and the topology tables."""
    ks = "cap_" + uuid.uuid4().hex[:8]
    session.execute("CREATE KEYSPACE %s WITH replication = {'class': "
                    "'SimpleStrategy', 'replication_factor': 1}" % ks)
    session.execute("CREATE TABLE %s.t (k int PRIMARY KEY, v text, "
                    "b blob, m map<text, int>)" % ks)
    ins = session.prepare("INSERT INTO %s.t (k, v, b, m) VALUES (?, ?, ?, ?)"
                          % ks)
    for i in range(12):
        session.execute(ins, [i, "%s row %d" % (label, i), bytes([i]) * i,
                              {"a": i}])
    session.execute("SELECT * FROM %s.t" % ks, timeout=20).all()
    from cassandra.query import SimpleStatement
    st = SimpleStatement("SELECT k, v FROM %s.t" % ks, fetch_size=5)
    list(session.execute(st))
    sel = session.prepare("SELECT v FROM %s.t WHERE k = ?" % ks)
    session.execute(sel, [3]).one()
    for q in ("SELECT * FROM system.local", "SELECT * FROM system.peers",
              "SELECT peer, rpc_address, host_id FROM system.peers",
              "SELECT * FROM system.peers_v2"):
        try:
            session.execute(q).all()
        except Exception:                    # noqa: BLE001 - v3 lacks some
            pass
    local = session.prepare("SELECT * FROM system.local WHERE key = ?")
    session.execute(local, ["local"]).all()
    session.execute("ALTER TABLE %s.t ADD w int" % ks)
    session.execute("DROP KEYSPACE %s" % ks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build",
                    help="meson build dir with the cqltunnel binary")
    ap.add_argument("--out", required=True, help="raw capture directory")
    args = ap.parse_args()

    os.environ.setdefault("CQLTUNNEL_BIN", os.path.abspath(
        os.path.join(args.build, "cqltunnel")))
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    base = tempfile.mkdtemp(prefix="cqltunnel-capture-")
    pki = make_pki(os.path.join(base, "pki"))
    node = CassandraNode(base, pki=pki)
    node.start()
    tls_rec = app_rec = tun = None
    try:
        node.wait_ready()
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(pki["node_crt"], pki["node_key"])
        tls_rec = Recorder(out, "n", (node.host, node.native_port),
                           server_ctx=server_ctx,
                           client_ctx=client_ssl_context(pki),
                           sides=("t2n", "n2t"))
        pw = os.path.join(base, "password")
        with open(pw, "w") as f:
            f.write("cassandra\n")
        os.chmod(pw, 0o600)
        sections = {
            "listen": {"drain_timeout": "5s"},
            "cluster": {"contact_points": "127.0.0.1:%d" % tls_rec.port,
                        "connect_timeout": "3s",
                        "handshake_timeout": "10s"},
            "tls": {"ca_file": pki["ca_crt"],
                    "cert_file": pki["client_crt"],
                    "key_file": pki["client_key"]},
            "auth": {"username": "cassandra", "password_file": pw},
            "log": {"level": "debug"},
        }
        tun = Tunnel(base, sections, port=free_port())
        tun.start()
        shutil.copy(tun.ini, os.path.join(out, "tunnel.ini"))
        app_rec = Recorder(out, "a", (tun.host, tun.port),
                           sides=("a2t", "t2a"))

        from cassandra.cluster import Cluster
        runs = [("v3", 3, False), ("v4", 4, False), ("v5", 5, False),
                ("v4-lz4", 4, "lz4"), ("v5-lz4", 5, "lz4"),
                ("negotiated", None, False)]
        for label, version, comp in runs:
            app_rec.scenario = tls_rec.scenario = "driver-" + label
            kw = {"compression": comp, "connect_timeout": 20}
            if version is not None:
                kw["protocol_version"] = version
            c = Cluster(["127.0.0.1"], port=app_rec.port, **kw)
            try:
                roundtrip(c.connect(), label)
            finally:
                c.shutdown()
            print("capture: %s done" % label, flush=True)
        cqlsh = os.path.join(os.path.dirname(sys.executable), "cqlsh")
        for v in ("3", "4", "5"):
            app_rec.scenario = tls_rec.scenario = "cqlsh-v" + v
            subprocess.run([cqlsh, "127.0.0.1", str(app_rec.port),
                            "--protocol-version", v, "-e",
                            "SELECT * FROM system.local; "
                            "SELECT * FROM system.peers; SHOW VERSION"],
                           stdout=subprocess.DEVNULL, timeout=120,
                           env=dict(os.environ, HOME=base))
            print("capture: cqlsh v%s done" % v, flush=True)
        time.sleep(1)
    finally:
        if tun is not None:
            tun.stop()
        for r in (app_rec, tls_rec):
            if r is not None:
                r.stop()
        node.stop()
    index = (app_rec.index if app_rec else []) + \
        (tls_rec.index if tls_rec else [])
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    shutil.rmtree(base, ignore_errors=True)
    print("capture: %d connections recorded in %s" % (len(index), out))


if __name__ == "__main__":
    main()
