#!/usr/bin/env python3
"""A real 3-node Apache Cassandra 5.0 cluster on 127.0.0.1, .2 and .3 for
the whole-cluster (translate mode) tests.

Every node is a CassandraNode (cassandra_node.py): TLS only on the native
port with client certificates required, PasswordAuthenticator, the shared
test PKI (whose node certificate names 127.0.0.1..3).  All nodes listen on
the same native port and the same storage port, each on its own loopback
address, so a driver that learns a node's address from system.peers dials
exactly what it would in production (real address, cluster port).

* one token per node, evenly spaced over the Murmur3 ring (so with an RF 1
  keyspace every node owns a third of the keys);
* all three nodes are seeds and start at once (a seed never waits for a
  shadow round, so no start order is needed); SimpleSnitch, so one data
  centre "datacenter1", rack "rack1";
* system_auth and system_traces are created with RF 3
  (-Dcassandra.system_auth.default_rf / system_traces.default_rf): logins
  and traces keep working while one node is down; the roles table is also
  read once at CL ALL, which read-repairs the default superuser onto every
  node whichever node created it;
* two keyspaces, made directly against the nodes (TLS + credentials):
  KEYSPACE_RF3 (RF 3) and KEYSPACE_RF1 (RF 1, where exactly one node is
  the replica of a key, for token-aware routing checks), each with a table
  kv (k int PRIMARY KEY, v text).

    with CassandraCluster(base, pki=pki) as cluster:
        cluster.contact_points()      # "127.0.0.1:P, 127.0.0.2:P, ..."
        cluster.nodes[2].stop(keep=True); cluster.restart(2)

Command line (with the venv's python), to time a start and a stop:

    cassandra_cluster.py [--base DIR] selfcheck
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import cassandra_node
from cassandra_node import CassandraNode, log, make_pki

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
DATACENTER = "datacenter1"
KEYSPACE_RF3 = "cqltunnel_rf3"
KEYSPACE_RF1 = "cqltunnel_rf1"
MIN_TOKEN = -2 ** 63


def ring_tokens(n):
    """${n} evenly spaced Murmur3 tokens (the first is the minimum)."""
    return [MIN_TOKEN + i * (2 ** 64 // n) for i in range(n)]


def free_port_on(hosts):
    """A TCP port that is free on every address of ${hosts} right now."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no port free on all of %s" % (hosts,))


class ClusterNode(CassandraNode):
    """A CassandraNode that can be restarted in its own directory (same
    data, same host_id), as an operator restarts a node."""

    def restart(self, timeout=180):
        """Stop (SIGTERM, keeping the directory) if running, then launch the
        JVM again on the same directory and wait until it is ready."""
        if self.node_dir is None:
            raise RuntimeError("restart() before start()")
        self.stop(keep=True)
        # wait_ready() looks for the CQL listener line in system.log: keep
        # the previous run's log under another name.
        n = 1
        while os.path.exists("%s.%d" % (self.log_path, n)):
            n += 1
        if os.path.exists(self.log_path):
            os.rename(self.log_path, "%s.%d" % (self.log_path, n))
        env = dict(os.environ, MALLOC_ARENA_MAX="4")
        env.pop("JAVA_TOOL_OPTIONS", None)
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.node_dir, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=cassandra_node._die_with_parent
                if self.die_with_parent else None)
        self.pid = self.proc.pid
        self.started_at = time.monotonic()
        with open(os.path.join(self.node_dir, "cassandra.pid"), "w") as f:
            f.write("%d\n" % self.pid)
        cassandra_node._RUNNING.add(self)
        log("restarted pid %d on %s in %s" % (self.pid, self.host,
                                               self.node_dir))
        return self.wait_ready(timeout)


class CassandraCluster:
    """Three ClusterNodes on HOSTS, one native port for all (native_port),
    one storage port for all, plus the schema described above."""

    def __init__(self, base_dir=None, *, pki=None, hosts=HOSTS,
                 heap=None, native_port=None, storage_port=None,
                 cluster_name="cqltunnel-cluster-it"):
        self._own_base = base_dir is None
        self.base_dir = os.path.abspath(
            base_dir or tempfile.mkdtemp(prefix="cqltunnel-cluster-"))
        os.makedirs(self.base_dir, exist_ok=True)
        self.pki = pki or make_pki(os.path.join(self.base_dir, "pki"))
        self.hosts = tuple(hosts)
        self.heap = heap or os.environ.get("CQLTUNNEL_CLUSTER_HEAP", "512m")
        self.native_port = native_port or free_port_on(self.hosts)
        self.storage_port = storage_port or free_port_on(self.hosts)
        while self.storage_port == self.native_port:
            self.storage_port = free_port_on(self.hosts)
        self.tokens = ring_tokens(len(self.hosts))
        seeds = ",".join("%s:%d" % (h, self.storage_port) for h in self.hosts)
        self.nodes = [
            ClusterNode(self.base_dir, pki=self.pki, host=h,
                        native_port=self.native_port,
                        storage_port=self.storage_port, seeds=seeds,
                        initial_token=tok, cluster_name=cluster_name,
                        heap=self.heap,
                        extra_yaml={"auto_bootstrap": False},
                        jvm_args=["-Dcassandra.system_auth.default_rf=%d"
                                  % len(self.hosts),
                                  "-Dcassandra.system_traces.default_rf=%d"
                                  % len(self.hosts),
                                  "-Dcassandra.system_distributed."
                                  "default_rf=%d" % len(self.hosts)])
            for h, tok in zip(self.hosts, self.tokens)]
        self.host_ids = {}              # real address -> host_id (str)
        self.started_in = None          # seconds: start() to schema ready
        self.stopped_in = None

    # -- addresses ------------------------------------------------------------

    def contact_points(self):
        """The [cluster] contact_points value naming every node."""
        return ", ".join("%s:%d" % (h, self.native_port) for h in self.hosts)

    def owner(self, token):
        """The real address of the node owning ${token} (RF 1,
        SimpleStrategy: the first node whose token is >= it, wrapping)."""
        for h, t in sorted(zip(self.hosts, self.tokens),
                           key=lambda x: x[1]):
            if token <= t:
                return h
        return min(zip(self.hosts, self.tokens), key=lambda x: x[1])[0]

    # -- lifecycle ------------------------------------------------------------

    def start(self, timeout=240):
        t0 = time.monotonic()
        try:
            lib = cassandra_node.fetch_cassandra()
            for n in self.nodes:
                n.lib_dir = lib
                n.start()
            for n in self.nodes:
                n.wait_ready(timeout)
            self._wait_ring(deadline=t0 + timeout)
            self._make_schema()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        log("3-node cluster ready in %.1f s (native port %d on %s)"
            % (self.started_in, self.native_port, ", ".join(self.hosts)))
        return self

    def admin_cluster(self, **kwargs):
        """A python-driver Cluster straight to the nodes (TLS + client
        certificate + cassandra/cassandra), default load balancing."""
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster
        kwargs.setdefault("compression", False)
        kwargs.setdefault("connect_timeout", 10)
        return Cluster(list(self.hosts), port=self.native_port,
                       ssl_context=cassandra_node.client_ssl_context(
                           self.pki),
                       auth_provider=PlainTextAuthProvider(
                           *cassandra_node.SUPERUSER), **kwargs)

    def _wait_ring(self, deadline):
        """Until every node sees the two others as peers with tokens and
        the driver sees all of them up."""
        last = None
        while True:
            try:
                c = self.admin_cluster()
                try:
                    s = c.connect()
                    ok = len(c.metadata.all_hosts()) == len(self.hosts) and \
                        all(h.is_up for h in c.metadata.all_hosts())
                    if ok:
                        for h in c.metadata.all_hosts():
                            rows = list(s.execute(
                                "SELECT peer, tokens FROM system.peers",
                                host=h))
                            if len(rows) != len(self.hosts) - 1 or \
                                    not all(r.tokens for r in rows):
                                ok = False
                                last = "%s sees %r" % (h, rows)
                    if ok:
                        return
                    last = last or "hosts %r" % c.metadata.all_hosts()
                finally:
                    c.shutdown()
            except Exception as e:      # noqa: BLE001 - retried
                last = repr(e)
            if time.monotonic() > deadline:
                raise RuntimeError("the 3 nodes did not form a ring: %s\n%s"
                                   % (last, "\n".join(
                                       n.log_tail(20) for n in self.nodes)))
            time.sleep(1)

    def _make_schema(self):
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement
        c = self.admin_cluster()
        try:
            s = c.connect()
            # Put the default superuser on every replica (RF 3 from the
            # start, but the node that created it may have done so before
            # the others joined): a CL ALL read repairs it.
            s.execute(SimpleStatement(
                "SELECT role, salted_hash FROM system_auth.roles",
                consistency_level=ConsistencyLevel.ALL))
            for ks, rf in ((KEYSPACE_RF3, len(self.hosts)),
                           (KEYSPACE_RF1, 1)):
                s.execute("CREATE KEYSPACE IF NOT EXISTS %s WITH replication "
                          "= {'class': 'SimpleStrategy', "
                          "'replication_factor': %d}" % (ks, rf))
                s.execute("CREATE TABLE IF NOT EXISTS %s.kv (k int PRIMARY "
                          "KEY, v text)" % ks)
            if not c.control_connection.wait_for_schema_agreement():
                raise RuntimeError("no schema agreement")
            for h in c.metadata.all_hosts():
                self.host_ids[str(h.broadcast_address or h.address)] = \
                    str(h.host_id)
        finally:
            c.shutdown()

    def restart(self, i, timeout=180):
        """Restart node ${i} (0-based) in place; returns it once ready."""
        return self.nodes[i].restart(timeout)

    def stop(self):
        """SIGTERM every node at once, wait (SIGKILL after 30 s), remove the
        node directories (unless CQLTUNNEL_KEEP_NODES=1).  Safe twice."""
        t0 = time.monotonic()
        for n in self.nodes:
            if n.alive():
                n.proc.terminate()
        for n in self.nodes:
            n.stop(timeout=30)
        self.stopped_in = time.monotonic() - t0
        log("3-node cluster stopped in %.1f s" % self.stopped_in)
        if self._own_base and \
                os.environ.get("CQLTUNNEL_KEEP_NODES") != "1":
            import shutil
            shutil.rmtree(self.base_dir, ignore_errors=True)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def selfcheck(base=None):
    """Start the cluster, check the keyspaces and the ring, stop it; print
    the timings."""
    t0 = time.monotonic()
    cluster = CassandraCluster(base)
    cluster.start()
    try:
        c = cluster.admin_cluster()
        try:
            s = c.connect()
            rows = {r.keyspace_name: r.replication for r in s.execute(
                "SELECT keyspace_name, replication FROM "
                "system_schema.keyspaces")}
            for ks, rf in ((KEYSPACE_RF3, "3"), (KEYSPACE_RF1, "1"),
                           ("system_auth", "3"), ("system_traces", "3")):
                assert rows[ks]["replication_factor"] == rf, (ks, rows[ks])
            hosts = sorted((h.address, h.datacenter, str(h.host_id))
                           for h in c.metadata.all_hosts())
            print("hosts: %s" % hosts)
            print("keyspaces: %s" % {k: rows[k] for k in (
                KEYSPACE_RF3, KEYSPACE_RF1, "system_auth")})
        finally:
            c.shutdown()
    finally:
        cluster.stop()
    print("started in %.1f s, stopped in %.1f s, total %.1f s" % (
        cluster.started_in, cluster.stopped_in, time.monotonic() - t0))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="directory for the nodes and the PKI")
    ap.add_argument("command", choices=("selfcheck",))
    a = ap.parse_args(argv)
    return selfcheck(a.base and os.path.abspath(a.base))


if __name__ == "__main__":
    sys.exit(main())
