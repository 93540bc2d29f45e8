"""The admin endpoint ([admin] address) against real Cassandra 5.0 nodes:
/livez, /readyz (200 while a node is reachable with TLS + authentication,
503 with a JSON reason while it is not, and back), and /metrics in the
Prometheus text format, whose counters must match the traffic the test
generates.  SIGUSR1 logs a status line."""

import calendar
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import cqlwire
from cassandra_cluster import ClusterNode
from tunnel import Tunnel, free_port, scaled

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def get(port, path):
    """(status, content type, body) of GET http://127.0.0.1:port/path.
    With [listen] workers > 1 (CQLTUNNEL_TEST_WORKERS), the workers publish
    their counters every 0.5 s: /metrics waits that long first, so that
    what the test just did is counted."""
    if path == "/metrics" and os.environ.get("CQLTUNNEL_TEST_WORKERS"):
        time.sleep(0.6)
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def parse_metrics(text):
    """Strictly parse the text format: {(name, frozenset(labels)): value};
    every sample's family must have been declared by # HELP and # TYPE."""
    declared, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            declared[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels = m.group(1), {}
        if m.group(3):
            pos = 0
            for lm in LABEL.finditer(m.group(3)):
                assert lm.start() == pos, line
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
            assert pos == len(m.group(3)), line
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in declared or family in declared, \
            "undeclared %s" % name
        if declared.get(name) == "counter" or name.endswith("_total"):
            assert name.endswith("_total"), name
        samples[(name, frozenset(labels.items()))] = float(m.group(4))
    return samples


def promtool_check(text):
    """Prometheus's own linter (scripts/setup-deps installs promtool)."""
    promtool = os.environ.get("CQLTUNNEL_PROMTOOL", "promtool")
    if not os.access(promtool, os.X_OK):
        pytest.fail("promtool not found at %s (run scripts/setup-deps)"
                    % promtool)
    r = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout + r.stderr == "", \
        r.stdout + r.stderr


def metric(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def wait_ready(port, want, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = get(port, "/readyz")
        if status == want:
            return body
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.5)


def test_metrics_match_traffic(tmp_path, tunnel_config, pki):
    admin = free_port()
    cfg = tunnel_config(admin={"address": "127.0.0.1:%d" % admin})
    with Tunnel(str(tmp_path), cfg) as t:
        assert get(admin, "/livez")[0] == 200
        assert json.loads(wait_ready(admin, 200)) == {"ready": True}
        n = 5
        for _ in range(n):
            s = cqlwire.connect(t.host, t.port)
            op, _ = cqlwire.query(s, "SELECT release_version FROM "
                                  "system.local")
            assert op == cqlwire.OP_RESULT
            s.close()
        t.wait_log("session %d closed" % n)

        status, ctype, text = get(admin, "/metrics")
        assert status == 200
        assert ctype.startswith("text/plain; version=0.0.4")
        promtool_check(text)
        m = parse_metrics(text)
        assert metric(m, "cqltunnel_sessions_accepted_total") == n
        assert metric(m, "cqltunnel_sessions_closed_total",
                      reason="app_eof") == n
        assert metric(m, "cqltunnel_sessions_active") == 0
        assert metric(m, "cqltunnel_handshake_duration_seconds_count") == n
        assert metric(m, "cqltunnel_handshake_duration_seconds_bucket",
                      le="+Inf") == n
        assert metric(m, "cqltunnel_received_bytes_total", side="app") > 0
        assert metric(m, "cqltunnel_received_bytes_total", side="node") > 0
        assert metric(m, "cqltunnel_ready") == 1
        assert metric(m, "cqltunnel_auth_failures_total") == 0
        assert metric(m, "cqltunnel_config_generation") == 1
        node = t.sections["cluster"]["contact_points"]
        assert metric(m, "cqltunnel_node_up", node=node,
                      tunnel="%s:%d" % (t.host, t.port),
                      dc="datacenter1") == 1
        # The client certificate's expiry, as openssl reads it.
        out = subprocess.run(["openssl", "x509", "-noout", "-enddate",
                              "-serial", "-in", pki["client_crt"]],
                             capture_output=True, text=True,
                             check=True).stdout
        end = re.search(r"notAfter=(.*)", out).group(1)
        serial = "0x" + re.search(r"serial=(\w+)", out).group(1).upper()
        expiry = calendar.timegm(time.strptime(end, "%b %d %H:%M:%S %Y GMT"))
        assert metric(m, "cqltunnel_tls_cert_expiry_timestamp_seconds",
                      serial=serial) == pytest.approx(expiry, abs=1)
        info = [k for k in m if k[0] == "cqltunnel_build_info"]
        assert len(info) == 1

        # SIGUSR1: one status line.
        t.proc.send_signal(signal.SIGUSR1)
        t.wait_log("status: 0 session(s) open, %d accepted" % n)

        # Unknown paths and methods.
        assert get(admin, "/nope")[0] == 404
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % admin,
                                     method="POST", data=b"x")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 405


def tls_handshakes(admin):
    m = parse_metrics(get(admin, "/metrics")[2])
    return (metric(m, "cqltunnel_tls_handshakes_total", resumed="yes"),
            metric(m, "cqltunnel_tls_handshakes_total", resumed="no"))


@pytest.mark.parametrize("resumption", ["yes", "no"])
def test_tls_session_resumption(tmp_path, tunnel_config, resumption):
    """[tls] session_resumption (default yes): the real node (Java 17,
    TLS 1.3) resumes the session the tunnel kept from an earlier
    connection; a query works on the resumed connection; with "no" every
    handshake is a full one.  The control connection (admin endpoint on)
    makes handshakes too, so counts are compared before and after.  Node
    connection reuse is off: it would spare these sessions their TLS
    handshakes altogether."""
    admin = free_port()
    cfg = tunnel_config(admin={"address": "127.0.0.1:%d" % admin},
                        tls={"session_resumption": resumption},
                        cluster={"reuse_connections": "no"})
    with Tunnel(str(tmp_path), cfg) as t:
        wait_ready(admin, 200)
        s = cqlwire.connect(t.host, t.port)      # a full handshake, surely
        s.close()
        t.wait_log("session 1 closed")
        before = tls_handshakes(admin)
        n = 4
        for i in range(n):
            s = cqlwire.connect(t.host, t.port)
            op, _ = cqlwire.query(s, "SELECT release_version FROM "
                                  "system.local")
            assert op == cqlwire.OP_RESULT
            s.close()
            t.wait_log("session %d closed" % (i + 2))
        after = tls_handshakes(admin)
        resumed, full = after[0] - before[0], after[1] - before[1]
        if resumption == "yes":
            assert (resumed, full) == (n, 0), after
        else:
            assert (resumed, full) == (0, n), after
            assert after[0] == 0


def test_metrics_count_tls_and_auth_failures(tmp_path, tunnel_config, pki,
                                             password_file):
    admin = free_port()
    cfg = tunnel_config(admin={"address": "127.0.0.1:%d" % admin},
                        auth={"password_file": password_file("wrong", "bad")})
    with Tunnel(str(tmp_path), cfg) as t:
        for _ in range(2):
            with pytest.raises(cqlwire.CqlError):
                cqlwire.connect(t.host, t.port)
        t.wait_log("session 2 closed")
        m = parse_metrics(get(admin, "/metrics")[2])
        assert metric(m, "cqltunnel_auth_failures_total") == 2
        assert metric(m, "cqltunnel_sessions_closed_total",
                      reason="auth_failed") == 2
        # The control connection cannot log in either: not ready.
        body = json.loads(wait_ready(admin, 503))
        assert body["ready"] is False
        assert "incorrect" in body["reason"] or "Bad credentials" in \
            body["reason"] or "authentication" in body["reason"]

    cfg = tunnel_config(admin={"address": "127.0.0.1:%d" % admin},
                        tls={"ca_file": pki["other_ca_crt"]})
    (tmp_path / "2").mkdir()
    with Tunnel(str(tmp_path / "2"), cfg) as t:
        with pytest.raises(cqlwire.CqlError):
            cqlwire.connect(t.host, t.port)
        t.wait_log("session 1 closed")
        m = parse_metrics(get(admin, "/metrics")[2])
        fails = {dict(k[1])["reason"]: v for k, v in m.items()
                 if k[0] == "cqltunnel_tls_handshake_failures_total"}
        # The node sends the test CA in its chain; we trust another CA.
        assert fails == {"self-signed certificate in certificate chain":
                         1}, fails


@pytest.fixture(scope="module")
def own_node(base, pki):
    """A node of its own that this module may stop and restart."""
    node = ClusterNode(str(base / "admin-node"), pki=pki,
                       host="127.0.0.1")
    node.start()
    node.wait_ready()
    yield node
    node.stop()


def test_readyz_follows_the_node(tmp_path, own_node, tunnel_config):
    admin = free_port()
    cfg = tunnel_config(
        admin={"address": "127.0.0.1:%d" % admin},
        cluster={"contact_points": "127.0.0.1:%d" % own_node.native_port,
                 "topology": "pin"})
    os.makedirs(str(tmp_path), exist_ok=True)
    with Tunnel(str(tmp_path), cfg) as t:
        wait_ready(admin, 200)
        own_node.stop(keep=True)
        body = json.loads(wait_ready(admin, 503))
        assert body["ready"] is False and body["reason"]
        assert get(admin, "/livez")[0] == 200
        m = parse_metrics(get(admin, "/metrics")[2])
        assert metric(m, "cqltunnel_ready") == 0
        own_node.restart()
        wait_ready(admin, 200, timeout=90)
        s = cqlwire.connect(t.host, t.port)
        s.close()
        assert "control connection to 127.0.0.1:%d ready" % \
            own_node.native_port in t.log()


@pytest.mark.parametrize("client_auth", ["accept", "passthrough"])
def test_control_connection_whatever_client_auth(tmp_path, tunnel_config,
                                                 client_auth):
    """The control connection is the tunnel's own: it injects the
    configured credentials whatever [auth] client_auth says about apps.
    With accept it used to wait forever for its own answer to the
    AUTHENTICATE the tunnel sends apps, so /readyz stayed 503."""
    admin = free_port()
    cfg = tunnel_config(admin={"address": "127.0.0.1:%d" % admin},
                        auth={"client_auth": client_auth})
    with Tunnel(str(tmp_path), cfg) as t:
        assert json.loads(wait_ready(admin, 200, timeout=scaled(30))) == \
            {"ready": True}
        assert re.search(r"control connection to \S+ ready", t.log())


def test_reuse_across_node_restart(tmp_path, own_node, tunnel_config):
    """Node connections kept for reuse ([cluster] reuse_connections)
    while the node restarts: the kept connection sees the node close it
    and is dropped at once (not handed to the next app), and the session
    after the restart opens a new connection and works."""
    admin = free_port()
    cfg = tunnel_config(
        admin={"address": "127.0.0.1:%d" % admin},
        cluster={"contact_points": "127.0.0.1:%d" % own_node.native_port,
                 "topology": "pin", "reuse_idle_timeout": "10m"})
    os.makedirs(str(tmp_path), exist_ok=True)

    def pooled():
        m = parse_metrics(get(admin, "/metrics")[2])
        return (metric(m, "cqltunnel_node_connections_pooled"),
                metric(m, "cqltunnel_node_connections_reused_total"))

    with Tunnel(str(tmp_path), cfg) as t:
        wait_ready(admin, 200)
        s = cqlwire.connect(t.host, t.port)
        s.close()
        t.wait_log("node connection kept for reuse")
        assert pooled() == (1, 0)
        own_node.stop(keep=True)
        deadline = time.monotonic() + 30
        while pooled() != (0, 0):
            assert time.monotonic() < deadline, t.log()
            time.sleep(0.2)
        assert "closed: node closed it" in t.log() or \
            "closed: connection error" in t.log(), t.log()
        own_node.restart()
        wait_ready(admin, 200, timeout=90)
        s = cqlwire.connect(t.host, t.port)
        op, _ = cqlwire.query(s, "SELECT key FROM system.local")
        assert op == cqlwire.OP_RESULT
        s.close()
        t.wait_log("session 2 closed")
        # The node said DOWN for itself when it stopped; reaching it again
        # clears that, so its connections are kept again (and node_up).
        assert pooled() == (1, 0)
        m = parse_metrics(get(admin, "/metrics")[2])
        node = ("node", "127.0.0.1:%d" % own_node.native_port)
        assert [v for (name, labels), v in m.items()
                if name == "cqltunnel_node_up" and node in labels] == [1]


def test_json_log_lines(tmp_path, tunnel_config):
    """[log] format = json: every line is one JSON object."""
    cfg = tunnel_config(log={"level": "debug", "format": "json"})
    with Tunnel(str(tmp_path), cfg) as t:
        s = cqlwire.connect(t.host, t.port)
        cqlwire.query(s, "SELECT key FROM system.local")
        s.close()
        t.wait_log("session 1 closed")
        lines = t.log().splitlines()
    assert len(lines) > 5
    levels = set()
    for line in lines:
        obj = json.loads(line)
        assert set(obj) == {"ts", "level", "msg"}, obj
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
                        obj["ts"])
        levels.add(obj["level"])
    assert {"info", "debug"} <= levels


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private "
                    "mount namespace with its own /dev/log")
def test_syslog_target(tmp_path, tunnel_config):
    """[log] target = syslog: lines reach /dev/log as daemon-facility
    messages tagged cqltunnel[PID].  /dev/log is a socket of this test's,
    bound in a private mount namespace."""
    import socket as so
    sock_path = str(tmp_path / "log.sock")
    rx = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    rx.bind(sock_path)
    rx.settimeout(1)
    port = free_port()
    cfg = tunnel_config(listen={"address": "127.0.0.1:%d" % port},
                        log={"level": "info", "target": "syslog"})
    ini = str(tmp_path / "syslog.ini")
    import shlex
    from tunnel import command, scaled, write_ini
    write_ini(ini, cfg)
    script = ("mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && "
              "touch /dev/log && mount --bind %s /dev/log && exec %s"
              % (sock_path, " ".join(shlex.quote(a) for a in
                                     command("-c", ini))))
    proc = subprocess.Popen(["unshare", "--mount", "--propagation",
                             "private", "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    got = []
    try:
        deadline = time.monotonic() + scaled(20)
        while not any("listening on 127.0.0.1:%d" % port in m for m in got):
            assert time.monotonic() < deadline, got
            assert proc.poll() is None, proc.stdout.read()
            try:
                got.append(rx.recv(4096).decode())
            except so.timeout:
                pass
        s = cqlwire.connect("127.0.0.1", port)
        s.close()
        while not any("session 1 closed" in m for m in got):
            assert time.monotonic() < deadline + 10, got
            try:
                got.append(rx.recv(4096).decode())
            except so.timeout:
                pass
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=scaled(30))[0].decode()
        rx.close()
    assert proc.returncode == 0, out
    line = next(m for m in got if "listening on" in m)
    # <30> = facility daemon (3) * 8 + severity info (6).
    assert re.match(r"<30>.*cqltunnel\[\d+\]: cqltunnel .* listening on",
                    line), line
    # Nothing on stderr: everything went to syslog.
    assert "listening on" not in out, out
