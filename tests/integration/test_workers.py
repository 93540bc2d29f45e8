"""[listen] workers: sessions run on several event loops (threads), against
a real Cassandra 5.0 node.  The main thread accepts and hands connections
to the workers in turn; what the workers share (open-session count for
max_connections, counters for /metrics, drain) must behave as with one
loop.  The 'workers' meson test also runs the core, reload, admin and
cluster suites with workers = 2 (CQLTUNNEL_TEST_WORKERS)."""

import os
import signal
import socket
import time

import pytest
from cassandra.cluster import Cluster

import cqlwire
from test_admin import get, metric, parse_metrics, wait_ready
from tunnel import Tunnel, free_port, slowdown


def threads(pid):
    """{tid: (name, runtime ns)} of a process."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "schedstat") as f:
                ns = int(f.read().split()[0])
        except OSError:
            continue
        out[int(tid)] = ns
    return out


def test_sessions_spread_over_workers(tmp_path, tunnel_config):
    """With workers = 2 there are two more threads, both run sessions,
    queries from many connections succeed, and /metrics counts every
    session of every worker."""
    admin = free_port()
    cfg = tunnel_config(listen={"workers": "2"},
                        admin={"address": "127.0.0.1:%d" % admin})
    with Tunnel(str(tmp_path), cfg) as t:
        t.wait_log("2 worker(s)")
        wait_ready(admin, 200)
        before = threads(t.proc.pid)
        assert len(before) >= 3, before
        socks = [cqlwire.connect(t.host, t.port) for _ in range(8)]
        for _ in range(50):
            for s in socks:
                op, _ = cqlwire.query(s, "SELECT release_version FROM "
                                      "system.local")
                assert op == cqlwire.OP_RESULT
        after = threads(t.proc.pid)
        busy = [tid for tid in before if tid != t.proc.pid and
                tid in after and after[tid] - before[tid] > 2000000]
        assert len(busy) >= 2, (before, after)
        for s in socks:
            s.close()
        t.wait_log_count("closed: app", 8)
        # Workers publish every 0.5 s.
        deadline = time.time() + 5
        while True:
            m = parse_metrics(get(admin, "/metrics")[2])
            if metric(m, "cqltunnel_sessions_accepted_total") == 8 and \
                    metric(m, "cqltunnel_sessions_closed_total",
                           reason="app_eof") == 8:
                break
            assert time.time() < deadline, m
            time.sleep(0.2)
        assert metric(m, "cqltunnel_sessions_active") == 0


def test_python_driver_with_workers(tmp_path, tunnel_config):
    """The python driver (translate mode, the default) through two
    workers: prepared statements and concurrent async queries."""
    cfg = tunnel_config(listen={"workers": "2"})
    with Tunnel(str(tmp_path), cfg) as t:
        cluster = Cluster([t.host], port=t.port, protocol_version=4)
        try:
            session = cluster.connect()
            hosts = [h.endpoint.address for h in cluster.metadata.all_hosts()]
            assert hosts == [t.host]
            session.execute("CREATE KEYSPACE IF NOT EXISTS wk WITH "
                            "replication = {'class': 'SimpleStrategy', "
                            "'replication_factor': 1}")
            session.execute("CREATE TABLE IF NOT EXISTS wk.t "
                            "(k int PRIMARY KEY, v text)")
            ins = session.prepare("INSERT INTO wk.t (k, v) VALUES (?, ?)")
            futures = [session.execute_async(ins, (i, "v%d" % i))
                       for i in range(300)]
            for f in futures:
                f.result()
            rows = session.execute("SELECT count(*) FROM wk.t")
            assert rows.one()[0] == 300
        finally:
            cluster.shutdown()


def test_max_connections_counts_all_workers(tmp_path, tunnel_config):
    """max_connections = 3 holds across the workers: the fourth app
    connection is refused while three are open on two workers."""
    cfg = tunnel_config(listen={"workers": "2", "max_connections": "3"})
    with Tunnel(str(tmp_path), cfg) as t:
        socks = [cqlwire.connect(t.host, t.port) for _ in range(3)]
        with pytest.raises(cqlwire.CqlError) as e:
            cqlwire.connect(t.host, t.port)
        assert e.value.code == 0x1001, e.value
        t.wait_log("max_connections (3) reached")
        for s in socks:
            op, _ = cqlwire.query(s, "SELECT release_version FROM "
                                  "system.local")
            assert op == cqlwire.OP_RESULT
            s.close()
        t.wait_log_count("closed: app", 3)
        s = cqlwire.connect(t.host, t.port)
        s.close()


def test_drain_with_workers(tmp_path, tunnel_config):
    """SIGTERM with sessions open on both workers: every query in flight is
    answered, then the tunnel exits 0 once the last session ends."""
    cfg = tunnel_config(listen={"workers": "2", "drain_timeout": "20s"})
    t = Tunnel(str(tmp_path), cfg)
    t.start()
    try:
        socks = [cqlwire.connect(t.host, t.port) for _ in range(6)]
        t.proc.send_signal(signal.SIGTERM)
        t.wait_log("draining 6 session(s)")
        for s in socks:
            op, _ = cqlwire.query(s, "SELECT release_version FROM "
                                  "system.local")
            assert op == cqlwire.OP_RESULT
        for s in socks:
            s.close()
        assert t.proc.wait(timeout=20) == 0
        t.wait_log("all sessions ended; exiting")
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


def test_reload_reaches_workers(tmp_path, tunnel_config, pki,
                                password_file):
    """SIGHUP with workers: new sessions on every worker use the new
    generation (a changed password file takes effect everywhere), open
    sessions keep theirs."""
    cfg = tunnel_config(listen={"workers": "2"})
    with Tunnel(str(tmp_path), cfg) as t:
        old = [cqlwire.connect(t.host, t.port) for _ in range(2)]
        pw = t.sections["auth"]["password_file"]
        with open(pw, "w") as f:
            f.write("wrong")
        t.sighup()
        t.wait_log("generation 2")
        for _ in range(4):
            with pytest.raises(Exception) as e:
                cqlwire.connect(t.host, t.port)
            assert "code=0x0100" in str(e.value), e.value
        for s in old:
            op, _ = cqlwire.query(s, "SELECT release_version FROM "
                                  "system.local")
            assert op == cqlwire.OP_RESULT
            s.close()
        with open(pw, "w") as f:
            f.write("cassandra")
        t.sighup()
        t.wait_log("generation 3")
        for _ in range(4):
            cqlwire.connect(t.host, t.port).close()


def cpu_ns(pid):
    """CPU time of a whole process (every thread), in ns."""
    return sum(threads(pid).values())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_busy_poll_spins_only_while_busy(tmp_path, tunnel_config, workers):
    """[listen] busy_poll = 200ms: while queries arrive (one every 20 ms,
    far apart enough that a sleeping loop would sleep between them) the
    tunnel keeps a CPU busy (as much as it gets of one); once they stop,
    it sleeps again within the window.  Without it the same traffic costs
    little CPU.  Measured from the kernel's per-thread run time
    (/proc/PID/task/*/schedstat)."""
    def run(busy):
        listen = {"workers": workers}
        if busy:
            listen["busy_poll"] = "200ms"
        cfg = tunnel_config(listen=listen)
        d = tmp_path / ("on" if busy else "off")
        d.mkdir()
        with Tunnel(str(d), cfg) as t:
            s = cqlwire.connect(t.host, t.port)
            try:
                t0, c0 = time.monotonic(), cpu_ns(t.proc.pid)
                while time.monotonic() - t0 < 2:
                    op, _ = cqlwire.query(s, "SELECT release_version "
                                          "FROM system.local")
                    assert op == cqlwire.OP_RESULT
                    time.sleep(0.02)
                busy_share = (cpu_ns(t.proc.pid) - c0) / 1e9 / \
                    (time.monotonic() - t0)
                time.sleep(0.2 * slowdown() + 0.3)   # the window runs out
                t1, c1 = time.monotonic(), cpu_ns(t.proc.pid)
                time.sleep(2)
                idle_share = (cpu_ns(t.proc.pid) - c1) / 1e9 / \
                    (time.monotonic() - t1)
            finally:
                s.close()
            return busy_share, idle_share

    on_busy, on_idle = run(True)
    off_busy, off_idle = run(False)
    print("CPU share: busy_poll on %.2f (idle %.2f), off %.2f (idle %.2f)"
          % (on_busy, on_idle, off_busy, off_idle))
    # A spinning loop shares the CPUs with the node and the client (two
    # cores in CI): about half a CPU there, a whole one on a quiet host.
    assert on_busy > max(0.25, 2 * off_busy), (on_busy, off_busy)
    assert on_idle < 0.1, on_idle
    assert off_idle < 0.1, off_idle
