#!/usr/bin/env python3
"""Node restart under load (issue 6), against a real Cassandra 5.0 node.

A real node (TLS + client certificate + PasswordAuthenticator, as in the
integration tests) behind cqltunnel (translate mode).  SESSIONS raw CQL
sessions run queries in a loop; after a while the node is stopped, kept
down, and started again on the same ports.  Every session that loses its
connection reconnects every 0.5 s.  Recorded: queries answered before,
during and after; how sessions failed (connection closed by the node's
restart, CQL ERROR from the tunnel with its text, anything else); the time
to the first successful reconnect; that the tunnel stayed up; and its
descriptors at the start and after every session closed.

Usage (with the integration venv's python, after scripts/setup-deps):
    tests/soak/node_restart.py BUILD/cqltunnel [SESSIONS] [DOWN_SECONDS]
Writes tests/soak/results/node-restart.txt (or $SOAK_OUT).
"""

import collections
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import cqlwire as w  # noqa: E402
from cassandra_node import CassandraNode, make_pki  # noqa: E402
from tunnel import Tunnel  # noqa: E402

QUERY = "SELECT release_version FROM system.local"


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Load:
    def __init__(self, t, n):
        self.t = t
        self.n = n
        self.phase = "before"
        self.ok = collections.Counter()
        self.failures = collections.Counter()
        self.reconnects = 0             # sessions back after a failure
        self.first_reconnect = None     # time of the first of them
        self.node_start_at = None
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(n)]

    def run(self):
        s = None
        failed = False
        while not self.stop.is_set():
            try:
                if s is None:
                    s = w.connect(self.t.host, self.t.port, timeout=10)
                    if failed:
                        failed = False
                        self.reconnects += 1
                        if self.first_reconnect is None:
                            self.first_reconnect = time.time()
                op, _ = w.query(s, QUERY)
                assert op == w.OP_RESULT
                self.ok[self.phase] += 1
                time.sleep(0.02)
            except w.CqlError as e:
                msg = e.message
                if "cannot connect to node" in msg:
                    msg = msg.split(": ")[0] + ": cannot connect to node " \
                        "...: " + msg.rsplit(": ", 1)[-1]
                self.failures["CQL ERROR 0x%04x %s" % (e.code, msg)] += 1
                failed = True
                if s is not None:
                    s.close()
                s = None
                time.sleep(0.5)
            except (ConnectionError, OSError) as e:
                self.failures["connection closed (%s)"
                              % type(e).__name__] += 1
                failed = True
                if s is not None:
                    s.close()
                s = None
                time.sleep(0.5)
        if s is not None:
            s.close()


def main():
    binary = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    down = float(sys.argv[3]) if len(sys.argv) > 3 else 10
    os.environ["CQLTUNNEL_BIN"] = binary
    out_dir = os.environ.get("SOAK_OUT", os.path.join(HERE, "results"))
    os.makedirs(out_dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="cqltunnel-restart-")
    pki = make_pki(os.path.join(base, "pki"))
    node = CassandraNode(base, pki=pki).__enter__()
    pw = os.path.join(base, "password")
    with open(pw, "w") as f:
        f.write("cassandra\n")
    os.chmod(pw, 0o600)
    t = Tunnel(base, {
        "listen": {"drain_timeout": "5s"},
        "cluster": {"contact_points": "%s:%d" % (node.host,
                                                 node.native_port),
                    "connect_timeout": "3s", "handshake_timeout": "10s"},
        "tls": {"ca_file": pki["ca_crt"], "cert_file": pki["client_crt"],
                "key_file": pki["client_key"]},
        "auth": {"username": "cassandra", "password_file": pw},
        "log": {"level": "info"},
    }).start()
    lines = []
    try:
        time.sleep(2)
        fd0 = fds(t.proc.pid)
        load = Load(t, n)
        for th in load.threads:
            th.start()
        time.sleep(20)
        load.phase = "during"
        t_stop = time.time()
        node.stop(keep=False)
        stopped_in = time.time() - t_stop
        time.sleep(down)
        node2 = CassandraNode(base, pki=pki, native_port=node.native_port,
                              storage_port=node.storage_port)
        load.node_start_at = time.time()
        node2.start()
        node2.wait_ready()
        load.phase = "after"
        time.sleep(20)
        load.stop.set()
        for th in load.threads:
            th.join(timeout=30)
        alive = t.alive()
        deadline = time.time() + 15
        while fds(t.proc.pid) != fd0 and time.time() < deadline:
            time.sleep(0.2)
        fd1 = fds(t.proc.pid)
        lines += [
            "node restart under load: %d sessions through cqltunnel "
            "(translate) to a real Cassandra 5.0.6 node" % n,
            "node stopped (SIGTERM) in %.1f s, kept down %.0f s, restarted "
            "(ready after %.1f s)" % (stopped_in, down, node2.ready_after),
            "queries answered: before %d, during %d, after %d"
            % (load.ok["before"], load.ok["during"], load.ok["after"]),
            "sessions back after a failure: %d (of %d); the first %.1f s "
            "after the node's JVM was started" % (
                load.reconnects, n, (load.first_reconnect or 0)
                - load.node_start_at),
            "failures seen by the sessions:",
        ] + ["  %6d  %s" % (c, k) for k, c in load.failures.most_common()]
        lines += [
            "tunnel alive throughout: %s" % alive,
            "tunnel descriptors: %d before the load, %d after every session "
            "closed" % (fd0, fd1),
            "tunnel log: %d session close lines; %d 'connect failed'"
            % (t.count_log(" closed: app "), t.count_log("connect failed")),
        ]
        ok = (alive and fd1 == fd0 and load.reconnects >= n
              and load.ok["after"] > 0
              and all(k.startswith(("CQL ERROR", "connection closed"))
                      for k in load.failures))
        lines.append("result: %s" % ("PASS" if ok else "FAIL"))
        node2.stop()
    finally:
        rc = t.stop()
        lines.append("tunnel exit status: %s" % rc)
        node.stop()
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(out_dir, "node-restart.txt"), "w") as f:
        f.write(text)
    return 0 if ok and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
