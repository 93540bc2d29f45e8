"""The whole-cluster tunnel (issue 3) against a real 3-node Cassandra 5.0
cluster on 127.0.0.1/.2/.3 (TLS with client certificates required and
PasswordAuthenticator on every node; see cassandra_cluster.py).

The apps are configured as legacy apps: the tunnel's main address as their
only contact point, no TLS, no credentials, and otherwise their drivers'
defaults (python: TokenAwarePolicy(DCAwareRoundRobinPolicy()); Node.js
cassandra-driver; cqlsh).

In translate mode (the default) the tunnel serves the first contact point's
node at its [listen] address (127.0.0.1:Q) and every other node at the next
address of translate_prefix (127.0.1.1:Q, 127.0.1.2:Q) on the same port,
and rewrites the addresses in system.local/peers/peers_v2 rows and
STATUS_CHANGE/TOPOLOGY_CHANGE events.  The nodes themselves listen on their
real addresses on one native port P != Q.

The node restart test runs last (pytest keeps file order): it stops and
restarts node 3 of the session's cluster.
"""

import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy
from cassandra.query import SimpleStatement

import cqlwire
from cassandra_cluster import (DATACENTER, HOSTS, KEYSPACE_RF1, KEYSPACE_RF3,
                               free_port_on)
from cassandra_node import cache_dir
from tunnel import Tunnel, scaled

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = "127.0.0.1"                              # [listen] address
TRANSLATE_NET = ipaddress.ip_network("127.0.1.0/24")   # default prefix
IPV4 = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"


# -- helpers ------------------------------------------------------------------

def tunnel_port():
    """A port free on the main address and on the first per-node addresses
    of translate_prefix (the tunnel listens on all of them)."""
    return free_port_on([MAIN] + ["127.0.1.%d" % i for i in range(1, 9)])


def reachable(t):
    """The per-node listeners the tunnel logged: {tunnel address: real
    address of the node or None}, from its "... reachable at ADDR:PORT"
    lines (the real address is the first IPv4 address before it, if
    any)."""
    out = {}
    for line in t.log().splitlines():
        m = re.search(r"reachable at (\S+)", line)
        if not m:
            continue
        addr = m.group(1).rstrip(".,;")
        before = re.findall(IPV4, line[:m.start()])
        out[addr] = before[0] if before else None
    return out


def wait_listeners(t, n=3, timeout=None):
    """Wait until the tunnel logged ${n} per-node listeners; return them."""
    timeout = timeout or scaled(30)
    deadline = time.monotonic() + timeout
    while True:
        got = reachable(t)
        if len(got) >= n:
            return got
        if not t.alive() or time.monotonic() > deadline:
            raise AssertionError("%d of %d \"reachable at\" lines after %d s"
                                 ":\n%s" % (len(got), n, timeout, t.log()))
        time.sleep(0.1)


@pytest.fixture
def translated(tmp_path, cluster_tunnel_config):
    """A translate-mode tunnel in front of the cluster, its three per-node
    listeners open; stopped (and checked to exit 0) after the test."""
    t = Tunnel(str(tmp_path), cluster_tunnel_config(), port=tunnel_port())
    with t:          # __exit__: SIGTERM, exit status 0, no sanitizer report
        wait_listeners(t)
        yield t


def wait_until(what, predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %d s waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def app_cluster(t, **kw):
    """A legacy app: the tunnel as only contact point, no ssl_context, no
    auth_provider, the driver's default load balancing policy."""
    kw.setdefault("connect_timeout", scaled(10))
    return Cluster([t.host], port=t.port, **kw)


def pools_ready(cluster, session, n=3):
    hosts = cluster.metadata.all_hosts()
    if len(hosts) != n or not all(h.is_up for h in hosts):
        return False
    state = session.get_pool_state()
    return all(state.get(h, {}).get("open_count", 0) >= 1 for h in hosts)


def wait_pools(cluster, session, n=3, timeout=None):
    try:
        wait_until("%d hosts up with open pools" % n,
                   lambda: pools_ready(cluster, session, n),
                   timeout or scaled(60))
    except AssertionError:
        raise AssertionError("hosts %r, pools %r" % (
            [(str(h.endpoint), h.is_up) for h in cluster.metadata.all_hosts()],
            {str(h.endpoint): s for h, s in
             session.get_pool_state().items()}))


def by_real(cluster):
    """{real address of the node (system.local/peers "peer",
    never rewritten): driver Host}."""
    return {str(h.broadcast_address): h for h in cluster.metadata.all_hosts()}


def established():
    """Established TCP sockets of this machine from `ss -tnp`: a list of
    (local "ip:port", peer "ip:port", {pids})."""
    ss = shutil.which("ss")
    assert ss, "ss (iproute2) is needed: scripts/setup-deps installs it"
    out = subprocess.run([ss, "-Htnp", "state", "established"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=30, check=True).stdout
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        pids = {int(p) for p in re.findall(r"pid=(\d+)", " ".join(f[4:]))}
        rows.append((f[2], f[3], pids))
    return rows


def hostport(addr, port):
    return "%s:%d" % (addr, port)


class EventListener:
    """A raw protocol-v4 connection through the tunnel that REGISTERs for
    STATUS_CHANGE and TOPOLOGY_CHANGE and collects the events:
    (type, change, address, port)."""

    def __init__(self, host, port):
        self.sock = cqlwire.connect(host, port, version=4)
        body = struct.pack(">H", 2) + cqlwire.string("STATUS_CHANGE") + \
            cqlwire.string("TOPOLOGY_CHANGE")
        self.sock.sendall(cqlwire.frame(4, 5, 0x0B, body))   # REGISTER
        _, _, _, op, body = cqlwire.read_frame(self.sock)
        if op == cqlwire.OP_ERROR:
            raise cqlwire.CqlError(*cqlwire.parse_error(body))
        assert op == cqlwire.OP_READY, op
        self.events = []
        self.error = None
        self._stop = False
        self.sock.settimeout(0.5)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                _, _, stream, op, body = cqlwire.read_frame(self.sock)
            except socket.timeout:
                continue
            except Exception as e:          # noqa: BLE001
                if not self._stop:
                    self.error = repr(e)
                return
            if op != 0x0C:                  # EVENT
                continue
            kind, off = cqlwire.parse_string(body)
            if kind not in ("STATUS_CHANGE", "TOPOLOGY_CHANGE"):
                continue
            change, off = cqlwire.parse_string(body, off)
            n = body[off]
            addr = socket.inet_ntop(socket.AF_INET if n == 4
                                    else socket.AF_INET6,
                                    body[off + 1:off + 1 + n])
            (port,) = struct.unpack(">i", body[off + 1 + n:off + 5 + n])
            self.events.append((kind, change, addr, port))

    def wait_for(self, event, timeout):
        wait_until("event %r (got %r, error %r)" % (event, self.events,
                                                     self.error),
                   lambda: event in self.events, timeout)

    def close(self):
        self._stop = True
        self.thread.join(5)
        self.sock.close()


def cqlsh_path():
    return os.path.join(os.path.dirname(os.environ.get(
        "CQLTUNNEL_PYTHON", "python3")), "cqlsh")


def node_modules():
    return os.environ.get("CQLTUNNEL_NODE_MODULES") or os.path.join(
        cache_dir(), "node", "node_modules")


# -- translate mode -----------------------------------------------------------

def test_python_driver_discovers_every_node_through_the_tunnel(
        translated, cassandra_cluster):
    t = translated
    q = t.port
    listeners = reachable(t)
    c = app_cluster(t)
    try:
        s = c.connect()
        wait_pools(c, s)
        hosts = c.metadata.all_hosts()
        assert len(hosts) == 3, hosts
        endpoints = {h.endpoint.address for h in hosts}
        assert len(endpoints) == 3, endpoints
        # Every host at a tunnel address on the tunnel's port, never a real
        # node address or the nodes' port.
        for h in hosts:
            assert h.endpoint.port == q, h.endpoint
            a = ipaddress.ip_address(h.endpoint.address)
            assert str(a) == MAIN or a in TRANSLATE_NET, h.endpoint
            assert h.datacenter == DATACENTER, h
            assert h.rack == "rack1", h
        # The first contact point's node keeps the main address; the two
        # others got addresses of translate_prefix.
        real = by_real(c)
        assert set(real) == set(HOSTS), real
        assert real[HOSTS[0]].endpoint.address == MAIN
        assert sum(1 for a in endpoints if ipaddress.ip_address(a)
                   in TRANSLATE_NET) == 2, endpoints
        # host_id (never rewritten) is the node's own.
        assert {r: str(h.host_id) for r, h in real.items()} == \
            cassandra_cluster.host_ids
        # The addresses the tunnel says it listens on are those.
        assert {hostport(a, q) for a in endpoints} == set(listeners), \
            (endpoints, listeners)
        for r, h in real.items():
            if listeners.get(hostport(h.endpoint.address, q)):
                assert listeners[hostport(h.endpoint.address, q)] == r, \
                    listeners

        # A pool to each node through its own listener: count the driver's
        # established connections per tunnel listener.
        me = os.getpid()
        per_listener = {hostport(a, q): 0 for a in endpoints}
        for local, peer, pids in established():
            if me in pids and peer in per_listener:
                per_listener[peer] += 1
        assert all(n >= 1 for n in per_listener.values()), per_listener

        # Each listener reaches its own node: requests spread over the three
        # pools are answered by the node the driver meant.
        served = {}
        for _ in range(12):
            rs = s.execute("SELECT broadcast_address FROM system.local")
            host = rs.response_future.coordinator_host.endpoint
            node = str(rs.one().broadcast_address)
            assert host == by_real(c)[node].endpoint, (host, node)
            served[str(host)] = served.get(str(host), 0) + 1
        assert len(served) == 3, served
    finally:
        c.shutdown()


def test_token_aware_routing_reaches_the_replica(translated,
                                                 cassandra_cluster):
    c = app_cluster(translated)
    try:
        s = c.connect()
        wait_pools(c, s)
        real = by_real(c)
        insert = s.prepare("INSERT INTO %s.kv (k, v) VALUES (?, ?)"
                           % KEYSPACE_RF1)
        select = s.prepare("SELECT v FROM %s.kv WHERE k = ?" % KEYSPACE_RF1)
        tm = c.metadata.token_map
        owners = {}
        for k in range(20):
            for stmt, args in ((insert, (k, "v%d" % k)), (select, (k,))):
                bound = stmt.bind(args)
                token = tm.token_class.from_key(bound.routing_key).value
                # The replica (RF 1: the one) from the ring we configured...
                replica = cassandra_cluster.owner(token)
                # ...is the one the driver computed from the (untouched)
                # tokens of the rows it read through the tunnel...
                replicas = c.metadata.get_replicas(KEYSPACE_RF1,
                                                   bound.routing_key)
                assert [str(h.broadcast_address) for h in replicas] == \
                    [replica], (k, replicas)
                rs = s.execute(bound, trace=True)
                # ...the driver sent the request to that node's listener...
                assert rs.response_future.coordinator_host.endpoint == \
                    real[replica].endpoint, (k, replica)
                # ...and that node coordinated it (real address, from
                # system_traces).
                trace = rs.get_query_trace(max_wait_sec=30)
                assert str(trace.coordinator) == replica, \
                    (k, trace.coordinator, replica)
            owners.setdefault(replica, []).append(k)
            assert s.execute(select, (k,)).one().v == "v%d" % k
        # The keys covered every node, so every listener was checked.
        assert set(owners) == set(HOSTS), owners
    finally:
        c.shutdown()


def test_no_connection_reaches_a_node_except_from_the_tunnel(
        translated, cassandra_cluster):
    t = translated
    p = cassandra_cluster.native_port
    c = app_cluster(t)
    try:
        s = c.connect()
        wait_pools(c, s)
        for k in range(30):
            s.execute("INSERT INTO %s.kv (k, v) VALUES (%d, 'x')"
                      % (KEYSPACE_RF3, k))
        listeners = {hostport(h.endpoint.address, t.port)
                     for h in c.metadata.all_hosts()}
        real = {hostport(h, p) for h in HOSTS}
        rows = established()
        clients = [(local, peer, pids) for local, peer, pids in rows
                   if peer in real]
        # The nodes' native port only has cqltunnel as client...
        assert clients, "no connection to the nodes at all?"
        assert all(pids == {t.proc.pid} for _, _, pids in clients), \
            [r for r in clients if r[2] != {t.proc.pid}]
        # ...and cqltunnel is connected to every node.
        assert {peer for _, peer, _ in clients} == real, clients
        # The app (this process) only talks to the tunnel's listeners.
        mine = [(local, peer) for local, peer, pids in rows
                if os.getpid() in pids]
        assert mine and all(peer in listeners for _, peer in mine), \
            (mine, listeners)
    finally:
        c.shutdown()


def test_cqlsh_sees_tunnel_addresses(translated, tmp_path):
    t = translated
    p = subprocess.run(
        [cqlsh_path(), t.host, str(t.port), "-e",
         "SELECT peer, rpc_address FROM system.peers; "
         "SELECT rpc_address FROM system.local"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=scaled(90),
        env=dict(os.environ, HOME=str(tmp_path)))
    out = p.stdout.decode()
    assert p.returncode == 0, out
    peers = dict(re.findall(r"^\s*(%s)\s*\|\s*(%s)\s*$" % (IPV4, IPV4),
                            out, re.M))
    local = re.findall(r"^\s*(%s)\s*$" % IPV4, out, re.M)
    # peer is the node's real address (identity, untouched); rpc_address is
    # where the app must connect: the tunnel's address for that node.
    assert set(peers) == set(HOSTS[1:]), out
    for real, addr in peers.items():
        assert ipaddress.ip_address(addr) in TRANSLATE_NET, out
    assert len(set(peers.values())) == 2, out
    assert local == [MAIN], out
    # The same addresses the tunnel listens on for those nodes.
    listeners = reachable(t)
    assert {hostport(a, t.port) for a in peers.values()} | \
        {hostport(MAIN, t.port)} == set(listeners), (out, listeners)
    for real, addr in peers.items():
        if listeners.get(hostport(addr, t.port)):
            assert listeners[hostport(addr, t.port)] == real, listeners


def test_nodejs_driver_discovers_every_node(translated, cassandra_cluster):
    t = translated
    node = shutil.which("node")
    modules = node_modules()
    assert node, "node is needed: scripts/setup-deps installs nodejs"
    assert os.path.isdir(os.path.join(modules, "cassandra-driver")), \
        "no cassandra-driver in %s: run scripts/setup-deps" % modules
    wait_ms = int(scaled(30000))
    p = subprocess.run(
        [node, os.path.join(HERE, "node", "discover.js"),
         hostport(t.host, t.port), DATACENTER, "--wait-ms", str(wait_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=wait_ms / 1000 + 90,
        env=dict(os.environ, NODE_PATH=modules))
    assert p.returncode == 0, (p.stdout.decode(), p.stderr.decode())
    out = json.loads(p.stdout.decode())
    assert not out.get("error") and not out["errors"], out
    hosts = out["hosts"]
    listeners = set(reachable(t))
    assert len(hosts) == 3, out
    assert {h["address"] for h in hosts} == listeners, (out, listeners)
    assert hostport(MAIN, t.port) in listeners
    for h in hosts:
        assert h["isUp"], out
        assert h["openConnections"] >= 1, out
        assert h["datacenter"] == DATACENTER, out
    assert sorted(h["hostId"] for h in hosts) == \
        sorted(cassandra_cluster.host_ids.values()), out
    assert set(out["connectedHosts"]) == listeners, out
    # Its round-robin queries went through every listener.
    assert set(out["queried"]) == listeners, out


# -- pin mode -----------------------------------------------------------------

def test_pin_mode_single_host_app(tmp_path, cluster_tunnel_config,
                                  cassandra_cluster):
    """topology = pin: no per-node listeners, no rewriting; an app with a
    whitelist of the tunnel's address works, each of its connections
    reaching one of the contact points."""
    cfg = cluster_tunnel_config(cluster={"topology": "pin"})
    t = Tunnel(str(tmp_path), cfg, port=tunnel_port())
    rc, out = t.check()
    assert rc == 0, out
    p = cassandra_cluster.native_port
    with t:
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([t.host]))
        c = app_cluster(t, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        try:
            s = c.connect()
            # The ring the app reads is the real one: nothing is rewritten.
            for _ in range(6):
                local = s.execute("SELECT broadcast_address, rpc_address "
                                  "FROM system.local").one()
                assert str(local.broadcast_address) in HOSTS, local
                assert local.rpc_address == local.broadcast_address, local
                peers = {str(r.peer): str(r.rpc_address) for r in s.execute(
                    "SELECT peer, rpc_address FROM system.peers")}
                assert peers == {h: h for h in HOSTS
                                 if h != str(local.broadcast_address)}, peers
                v2 = {(str(r.peer), str(r.native_address), r.native_port)
                      for r in s.execute("SELECT peer, native_address, "
                                         "native_port FROM system.peers_v2")}
                assert v2 == {(h, h, p) for h in HOSTS
                              if h != str(local.broadcast_address)}, v2
            # So the driver knows the other nodes at their real addresses
            # and port, and (whitelist) never dials them.
            others = [h.endpoint for h in c.metadata.all_hosts()
                      if h.endpoint.port != t.port]
            assert len(c.metadata.all_hosts()) == 3, c.metadata.all_hosts()
            assert len(others) == 2, c.metadata.all_hosts()
            assert all(e.address in HOSTS and e.port == p for e in others), \
                others
            assert {str(h.endpoint) for h in s.get_pool_state()} == \
                {hostport(t.host, t.port)}
            # The app reads and writes through its single host.
            key = uuid.uuid4().int % 1000000
            s.execute("INSERT INTO %s.kv (k, v) VALUES (%d, 'pinned')"
                      % (KEYSPACE_RF3, key))
            rs = s.execute(SimpleStatement(
                "SELECT v FROM %s.kv WHERE k = %d" % (KEYSPACE_RF3, key),
                consistency_level=ConsistencyLevel.ONE), trace=True)
            assert rs.one().v == "pinned"
            assert str(rs.get_query_trace(max_wait_sec=30).coordinator) in \
                HOSTS
            mine = [peer for _, peer, pids in established()
                    if os.getpid() in pids]
            assert mine and set(mine) == {hostport(t.host, t.port)}, mine
        finally:
            c.shutdown()
        # No per-node listener.
        assert "reachable at" not in t.log(), t.log()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.1.1", t.port), timeout=2).close()


# -- a node goes down and comes back (keep last: it restarts node 3) ----------

def test_node_down_and_back_at_the_same_address(translated,
                                                cassandra_cluster):
    t = translated
    q = t.port
    node3 = cassandra_cluster.nodes[2]
    c = app_cluster(t)
    events = None
    try:
        s = c.connect()
        wait_pools(c, s)
        host3 = by_real(c)[HOSTS[2]]
        addr3, id3 = host3.endpoint.address, host3.host_id
        assert addr3 != MAIN
        events = EventListener(t.host, q)
        insert = s.prepare("INSERT INTO %s.kv (k, v) VALUES (?, ?)"
                           % KEYSPACE_RF3)
        insert.consistency_level = ConsistencyLevel.ONE
        select = s.prepare("SELECT v FROM %s.kv WHERE k = ?" % KEYSPACE_RF3)
        select.consistency_level = ConsistencyLevel.ONE

        t0 = time.monotonic()
        node3.stop(keep=True)                  # SIGTERM: drains, announces
        wait_until("the driver to mark %s down" % addr3,
                   lambda: not host3.is_up, 60)
        down_after = time.monotonic() - t0
        # The node's DOWN event reached the app with the tunnel address.
        events.wait_for(("STATUS_CHANGE", "DOWN", addr3, q), 60)
        # Requests keep succeeding at CL ONE with RF 3.
        for k in range(30):
            s.execute(insert, (k, "while-down-%d" % k))
            assert s.execute(select, (k,)).one().v == "while-down-%d" % k
        # A new connection to the down node's address gets a CQL ERROR
        # naming the node.
        t1 = time.monotonic()
        with pytest.raises((cqlwire.CqlError, ConnectionError)) as e:
            cqlwire.query(cqlwire.connect(addr3, q, version=4, timeout=15),
                          "SELECT key FROM system.local")
        assert time.monotonic() - t1 < 15
        assert isinstance(e.value, cqlwire.CqlError), e.value
        assert HOSTS[2] in e.value.message, e.value.message

        t2 = time.monotonic()
        cassandra_cluster.restart(2)
        restarted_in = time.monotonic() - t2
        t3 = time.monotonic()
        wait_until("the driver to see %s up again" % addr3,
                   lambda: host3.is_up and s.get_pool_state().get(
                       host3, {}).get("open_count", 0) >= 1, 180, 0.5)
        up_after = time.monotonic() - t3
        events.wait_for(("STATUS_CHANGE", "UP", addr3, q), 60)
        # Same node, same address; no new listener for it.
        again = by_real(c)[HOSTS[2]]
        assert again is host3 or again.endpoint == host3.endpoint
        assert again.endpoint.address == addr3 and again.host_id == id3
        assert len(c.metadata.all_hosts()) == 3
        assert len(reachable(t)) == 3, reachable(t)
        # No event ever carried a real address.
        assert all(ipaddress.ip_address(a) in TRANSLATE_NET or a == MAIN
                   for _, _, a, _ in events.events), events.events
        assert all(p == q for _, _, _, p in events.events), events.events
        # And node 3 serves its keys again through its address.
        ins1 = s.prepare("INSERT INTO %s.kv (k, v) VALUES (?, ?)"
                         % KEYSPACE_RF1)
        tm = c.metadata.token_map
        served = 0
        for k in range(100):
            bound = ins1.bind((k, "back"))
            token = tm.token_class.from_key(bound.routing_key).value
            if cassandra_cluster.owner(token) != HOSTS[2]:
                continue
            rs = s.execute(bound, trace=True)
            assert rs.response_future.coordinator_host.endpoint == \
                host3.endpoint
            assert str(rs.get_query_trace(max_wait_sec=30).coordinator) == \
                HOSTS[2]
            served += 1
            if served == 5:
                break
        assert served == 5
        print("node 3: driver saw it down %.1f s after SIGTERM; restarted "
              "in %.1f s; driver saw it up %.1f s later; events %r"
              % (down_after, restarted_in, up_after, events.events))
    finally:
        if events is not None:
            events.close()
        c.shutdown()
        if not node3.alive():           # leave the cluster whole
            cassandra_cluster.restart(2)
