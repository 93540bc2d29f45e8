"""Hot reload (issue 4): SIGHUP and `[tls] watch = yes` reload the whole
configuration into a new "generation" used by new sessions while open
sessions keep theirs; a broken file is refused and the old generation keeps
serving; `[tls] crl_file` revokes node certificates and is reloaded too.

Against the real Cassandra 5.0 node (TLS with require_client_auth +
PasswordAuthenticator) of the session fixture: reload under load (20
sessions streaming queries while the client certificate and key are
replaced and SIGHUP'd 20 times: no query fails), broken-file reloads,
restart-only settings, CRLs, and the inotify watch (rename over,
Kubernetes-style `..data` symlink swap, half-written file).  The node
accepts any client certificate from the test CA, so a rotated certificate
that works proves the new generation presents a valid identity.

Only which certificate a session presents needs the scripted fake node
(fake_node.py): a real Cassandra does not expose the serial of its
clients' certificates (5.0.6's system_views.clients shows only ssl_enabled,
ssl_protocol and ssl_cipher_suite), so
test_new_sessions_present_the_new_certificate records
`getpeercert()["serialNumber"]` per connection there.

Extra certificates and CRLs come from the test CA via pki_extra.py.
"""

import os
import re
import shutil
import signal
import socket
import threading
import time

import pytest
from cassandra.cluster import Cluster

import cqlwire as w
from fake_node import FakeNode, handshake_until_startup
from pki_extra import cert_serial, crl_serials, make_crl, make_leaf
from test_fake_node import fake_config
from tunnel import Tunnel, write_ini

RELOADED = "configuration reloaded from "
FAILED = "reload failed ("
WATCH_HIT = "[tls] watch: a watched file changed; reloading "
QUERY = "SELECT release_version FROM system.local"

_GEN_RE = re.compile(r"generation (\d+): client certificate serial "
                     r"0x([0-9A-Fa-f]+), expires (\d{4}-\d\d-\d\dT"
                     r"\d\d:\d\d:\d\dZ)")
_RELOADED_RE = re.compile(r"configuration reloaded from (\S+) \(generation "
                          r"(\d+)\); (\d+) open session\(s\) keep the one "
                          r"they started with")


# --- helpers ---

def generations(t):
    """[(generation, serial)] in the order the log announced them."""
    return [(int(g), int(s, 16)) for g, s, _ in _GEN_RE.findall(t.log())]


def install(src, dst):
    """Replace ${dst} by a copy of ${src} atomically (temp + rename), as
    certificate rotation tools do; keeps mode 0600 for keys."""
    tmp = os.path.join(os.path.dirname(dst), "." + os.path.basename(dst)
                       + ".tmp")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600 if dst.endswith(".key") else 0o644)
    os.rename(tmp, dst)


def live_identity(tmp_path, pki):
    """Copies of the session PKI's client certificate and key that a test
    may overwrite: {"crt", "key", "serial"}."""
    d = tmp_path / "live"
    d.mkdir()
    crt, key = str(d / "client.crt"), str(d / "client.key")
    install(pki["client_crt"], crt)
    install(pki["client_key"], key)
    return {"crt": crt, "key": key, "serial": cert_serial(crt)}


def rotate(leaf, live):
    """Put ${leaf}'s key and certificate in place of ${live}'s."""
    install(leaf["key"], live["key"])
    install(leaf["crt"], live["crt"])


def select_ok(sock):
    """One query on an open session; asserts the node's answer."""
    op, body = w.query(sock, QUERY)
    assert op == w.OP_RESULT
    names, rows = w.parse_rows(body)
    assert names == ["release_version"]
    assert rows[0][0].startswith(b"5."), rows


def new_session_ok(t):
    """A new session through the tunnel runs a query against the node."""
    s = w.connect(t.host, t.port, timeout=30)
    try:
        select_ok(s)
    finally:
        s.close()


def sighup_and_wait(t, text, n, timeout=10):
    t.sighup()
    t.wait_log_count(text, n, timeout=timeout)


def error_lines(t):
    """The log lines naming why a reload was refused."""
    return [ln for ln in t.log().splitlines() if " error reload: " in ln]


# --- 1. reload under load ---

def test_reload_under_load(tmp_path, tunnel_config, pki):
    """20 sessions stream queries while, 20 times, the client certificate
    and key are replaced by a new pair (new serial), the CA file changes
    (the test CA alone / with an unrelated CA) and the CRL is replaced by
    one revoking the client certificate just retired, each time followed
    by SIGHUP."""
    nsessions, nreloads = 20, 20
    live = live_identity(tmp_path, pki)
    leaves = [make_leaf(pki, str(tmp_path / "rotated"), "client-%02d" % i)
              for i in range(nreloads)]
    assert len({live["serial"]} | {lf["serial"] for lf in leaves}) == \
        nreloads + 1
    # CRLs for the node's CA revoking our retired client certificates
    # (the node does not read them; they must only load and not revoke
    # the node).
    crls = [make_crl(pki, str(tmp_path / "crls" / ("%02d.pem" % i)),
                     [(leaves[i - 1] if i else live)["crt"]])
            for i in range(nreloads)]
    bundle = str(tmp_path / "ca-bundle.pem")
    with open(bundle, "w") as f:
        f.write(open(pki["other_ca_crt"]).read() + open(pki["ca_crt"]).read())
    ca, crl = str(tmp_path / "live" / "ca.crt"), str(tmp_path / "live" /
                                                     "crl.pem")
    install(pki["ca_crt"], ca)
    install(make_crl(pki, str(tmp_path / "crls" / "empty.pem")), crl)
    cfg = tunnel_config(tls={"cert_file": live["crt"],
                             "key_file": live["key"], "ca_file": ca,
                             "crl_file": crl},
                        log={"level": "info"})
    ok = [0] * nsessions
    churn_ok = [0]
    errors = []
    stop = threading.Event()

    def streamer(i):
        try:
            s = w.connect(t.host, t.port, timeout=30)
        except Exception as e:  # noqa: BLE001
            errors.append("session %d: connect: %r" % (i, e))
            return
        try:
            while not stop.is_set():
                select_ok(s)
                ok[i] += 1
        except Exception as e:  # noqa: BLE001
            errors.append("session %d after %d queries: %r" % (i, ok[i], e))
        finally:
            s.close()

    def churn():
        # New sessions all along: each lands on whichever generation is
        # current when it connects.
        while not stop.is_set():
            try:
                new_session_ok(t)
                churn_ok[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append("new session after %d: %r" % (churn_ok[0], e))
                return

    def wait_progress(snapshot, timeout=20):
        """Every streamer answered one more query since ${snapshot}."""
        deadline = time.time() + timeout
        while time.time() < deadline and not errors:
            if all(a > b for a, b in zip(ok, snapshot)):
                return
            time.sleep(0.01)
        raise AssertionError("sessions stalled: %s; errors %s"
                             % (ok, errors))

    with Tunnel(str(tmp_path), cfg) as t:
        assert generations(t) == [(1, live["serial"])]
        threads = [threading.Thread(target=streamer, args=(i,))
                   for i in range(nsessions)]
        threads.append(threading.Thread(target=churn))
        for th in threads:
            th.start()
        try:
            wait_progress([0] * nsessions, timeout=60)
            started = time.time()
            for i, leaf in enumerate(leaves):
                rotate(leaf, live)
                install(bundle if i % 2 == 0 else pki["ca_crt"], ca)
                install(crls[i], crl)
                before = list(ok)
                sighup_and_wait(t, RELOADED, i + 1)
                # Each of the 20 open sessions keeps answering after each
                # reload (they are on an older generation by now).
                wait_progress(before)
            elapsed = time.time() - started
            wait_progress(list(ok))
        finally:
            stop.set()
            for th in threads:
                th.join(timeout=60)
        assert not any(th.is_alive() for th in threads)
        assert errors == [], errors
        assert min(ok) > nreloads, ok

        # Every reload succeeded, generations 2..21 in order, each logging
        # the serial of the certificate installed before its SIGHUP.
        assert FAILED not in t.log()
        assert generations(t) == [(1, live["serial"])] + [
            (i + 2, leaf["serial"]) for i, leaf in enumerate(leaves)]
        reloaded = _RELOADED_RE.findall(t.log())
        assert [int(g) for _, g, _ in reloaded] == list(range(2, 22))
        assert all(p == t.ini for p, _, _ in reloaded)
        assert all(int(n) >= nsessions for _, _, n in reloaded), reloaded
        assert t.count_log("SIGHUP: reloading") == nreloads
        last = generations(t)[-1][1]
        assert last == cert_serial(live["crt"]) == leaves[-1]["serial"]

        # New sessions after the last reload work against the real node:
        # raw ones and a legacy app with the python driver.
        for _ in range(5):
            new_session_ok(t)
        c = Cluster([t.host], port=t.port, protocol_version=4,
                    compression=False, connect_timeout=10)
        try:
            row = c.connect().execute(QUERY).one()
            assert row.release_version.startswith("5.")
        finally:
            c.shutdown()
        print("%d reloads under load in %.1fs; %d queries on %d open "
              "sessions, %d new sessions meanwhile"
              % (nreloads, elapsed, sum(ok), nsessions, churn_ok[0]))
        assert churn_ok[0] > 0


# --- 2. which certificate new sessions present (fake node) ---

def serial_script(conn, node):
    """Record (client certificate serial, query text) for every QUERY."""
    serial = int(conn.getpeercert()["serialNumber"], 16)
    v, stream = handshake_until_startup(conn)
    conn.sendall(w.frame(v, stream, w.OP_AUTHENTICATE,
                         w.string("org.apache.cassandra.auth."
                                  "PasswordAuthenticator"), response=True))
    _, _, st, op, _ = w.read_frame(conn)
    assert (st, op) == (stream, w.OP_AUTH_RESPONSE)
    conn.sendall(w.frame(v, stream, w.OP_AUTH_SUCCESS, w.bytes_(None),
                         response=True))
    while True:
        try:
            _, _, st, op, body = w.read_frame(conn)
        except (ConnectionError, OSError):
            return
        assert op == w.OP_QUERY, op
        n = int.from_bytes(body[:4], "big")
        node.received.append((serial, body[4:4 + n].decode()))
        conn.sendall(w.frame(v, st, w.OP_RESULT, b"\0\0\0\1",
                             response=True))


def test_new_sessions_present_the_new_certificate(tmp_path, pki,
                                                  password_file):
    # Fake node: the only way to see the serial the server sees.
    live = live_identity(tmp_path, pki)
    b = make_leaf(pki, str(tmp_path / "rotated"), "client-b")
    c = make_leaf(pki, str(tmp_path / "rotated"), "client-c")
    with FakeNode(pki, serial_script) as node:
        cfg = fake_config(pki, node.port, password_file)
        cfg["tls"].update(cert_file=live["crt"], key_file=live["key"])
        with Tunnel(str(tmp_path), cfg) as t:
            s1 = w.connect(t.host, t.port)
            w.query(s1, "gen1 before")

            rotate(b, live)
            sighup_and_wait(t, RELOADED, 1)
            s2 = w.connect(t.host, t.port)
            w.query(s2, "gen2 new")
            w.query(s1, "gen1 after one reload")

            rotate(c, live)
            sighup_and_wait(t, RELOADED, 2)
            s3 = w.connect(t.host, t.port)
            w.query(s3, "gen3 new")
            w.query(s2, "gen2 after a reload")
            w.query(s1, "gen1 after two reloads")

            # The oldest generation's last session ends; the others live on.
            s1.close()
            t.wait_log_count(" closed: app ", 1)    # its summary line
            w.query(s2, "gen2 after gen1 ended")
            w.query(s3, "gen3 after gen1 ended")
            s2.close()
            s3.close()
            t.wait_log_count(" closed: app ", 3)
            assert generations(t) == [(1, live["serial"]), (2, b["serial"]),
                                      (3, c["serial"])]
        assert node.errors == []
        a = cert_serial(pki["client_crt"])
        assert node.received == [
            (a, "gen1 before"),
            (b["serial"], "gen2 new"),
            (a, "gen1 after one reload"),
            (c["serial"], "gen3 new"),
            (b["serial"], "gen2 after a reload"),
            (a, "gen1 after two reloads"),
            (b["serial"], "gen2 after gen1 ended"),
            (c["serial"], "gen3 after gen1 ended"),
        ]


# --- 3. a broken file is refused and the old generation keeps serving ---

def _ini_with(t, *inserts):
    """Write the tunnel's config with each (after, line) of ${inserts}:
    ${line} inserted after the line ${after}; returns the 1-based numbers
    of the inserted lines in the file written."""
    write_ini(t.ini, t.sections)
    with open(t.ini) as f:
        lines = f.read().splitlines()
    for after, line in inserts:
        lines.insert(lines.index(after) + 1, line)
    with open(t.ini, "w") as f:
        f.write("\n".join(lines) + "\n")
    n = [lines.index(line) + 1 for _, line in inserts]
    return n[0] if len(n) == 1 else n


def test_broken_reload_keeps_serving(tmp_path, tunnel_config, pki):
    live = live_identity(tmp_path, pki)
    stranger = make_leaf(pki, str(tmp_path / "other"), "stranger")
    cfg = tunnel_config(tls={"cert_file": live["crt"],
                             "key_file": live["key"]})
    good_crt = open(live["crt"]).read()
    with Tunnel(str(tmp_path), cfg) as t:
        old = w.connect(t.host, t.port)
        select_ok(old)
        nfailed = 0

        def refused(*expect, errors=1):
            nonlocal nfailed
            nfailed += 1
            sighup_and_wait(t, FAILED, nfailed)
            last = [ln for ln in t.log().splitlines() if FAILED in ln][-1]
            assert last.endswith("reload failed (%d error(s)); still using "
                                 "configuration generation 1" % errors), last
            errs = error_lines(t)
            assert any(all(e in ln for e in expect) for ln in errs), \
                (expect, errs)
            assert RELOADED not in t.log()
            assert generations(t) == [(1, live["serial"])]
            # The open session and a new one (generation 1) keep working.
            select_ok(old)
            new_session_ok(t)
            assert t.alive()

        # A half-written PEM (cut in the middle of the base64).
        with open(live["crt"], "w") as f:
            f.write(good_crt[:len(good_crt) // 2])
        cert_line = open(t.ini).read().splitlines().index(
            "cert_file = " + live["crt"]) + 1
        refused("%s:%d: [tls] cert_file: cannot load certificate %s"
                % (t.ini, cert_line, live["crt"]))

        # A complete certificate with a key that is not its own.
        install(pki["client_crt"], live["crt"])
        install(stranger["key"], live["key"])
        refused("[tls] key_file", "does not match certificate", live["key"])

        # A half-written key.
        key = open(pki["client_key"]).read()
        with open(live["key"], "w") as f:
            f.write(key[:len(key) // 2])
        refused("[tls] key_file", live["key"])
        install(pki["client_key"], live["key"])

        # INI syntax error, then an unknown key (a typo of a new key).
        n = _ini_with(t, ("[tls]", "this line is not ini"))
        refused("%s:%d: syntax error" % (t.ini, n))
        n = _ini_with(t, ("[tls]", "crl_fil = /nowhere/crl.pem"))
        refused("%s:%d: [tls] crl_fil: unknown key" % (t.ini, n))

        # Several mistakes at once: all of them are reported.
        n1, n2 = _ini_with(t, ("[auth]", "user = nobody"),
                           ("[tls]", "verify = sometimes"))
        refused("%s:%d: [auth] user: unknown key" % (t.ini, n1),
                errors=2)
        refused_too = "%s:%d: [tls] verify: " % (t.ini, n2)
        assert any(refused_too in ln for ln in error_lines(t)), \
            error_lines(t)

        # Fixed: the reload goes through, to generation 2.
        install(pki["client_crt"], live["crt"])
        write_ini(t.ini, t.sections)
        sighup_and_wait(t, RELOADED, 1)
        assert t.count_log(FAILED) == nfailed == 6
        assert generations(t) == [(1, live["serial"]), (2, live["serial"])]
        select_ok(old)
        new_session_ok(t)
        old.close()
        assert t.alive()


def rpc_port(sock):
    """system.local's rpc_port as this session sees it (translate mode
    rewrites it to the tunnel's port)."""
    op, body = w.query(sock, "SELECT rpc_address, rpc_port FROM "
                       "system.local")
    return int.from_bytes(w.parse_rows(body)[1][0][1], "big")


def test_restart_only_settings_are_reported(tmp_path, tunnel_config, pki):
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        old = w.connect(t.host, t.port)
        assert rpc_port(old) == t.port
        sections = {k: dict(v) for k, v in t.sections.items()}
        # A port held bound but not listening: nothing else on the machine
        # (another suite's tunnel or fake node) can answer on it, so a
        # refused connection below means this tunnel did not move.
        hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hold.bind(("127.0.0.1", 0))
        other_port = hold.getsockname()[1]
        sections["listen"]["address"] = "127.0.0.1:%d" % other_port
        sections["cluster"]["contact_points"] += ", localhost:1"
        sections["cluster"]["topology"] = "pin"
        write_ini(t.ini, sections)
        sighup_and_wait(t, RELOADED, 1)
        log = t.log()
        assert ("reload: [listen] address/allow_remote changed; restart "
                "cqltunnel to apply (still 127.0.0.1:%d)" % t.port) in log
        assert ("reload: [cluster] contact_points changed; restart "
                "cqltunnel to apply") in log
        assert ("reload: [cluster] topology, translate_prefix or local_dc "
                "changed; restart cqltunnel to apply") in log
        # Still served where it was, still translated.
        select_ok(old)
        new_session_ok(t)
        s = w.connect(t.host, t.port)
        assert rpc_port(s) == t.port
        s.close()
        with pytest.raises(OSError):
            w.connect("127.0.0.1", other_port, timeout=2)
        hold.close()
        old.close()


def test_credentials_reload(tmp_path, tunnel_config, pki):
    """The password file is part of a generation too."""
    cfg = tunnel_config()
    pw = cfg["auth"]["password_file"]
    with Tunnel(str(tmp_path), cfg) as t:
        old = w.connect(t.host, t.port)
        select_ok(old)

        # A world-readable password file is refused.
        os.chmod(pw, 0o644)
        sighup_and_wait(t, FAILED, 1)
        assert any("[auth] password_file: %s: readable by everyone" % pw
                   in ln for ln in error_lines(t)), error_lines(t)
        new_session_ok(t)

        # A wrong password is a valid configuration: new sessions get the
        # node's answer, the open one is not affected.
        with open(pw, "w") as f:
            f.write("wrong\n")
        os.chmod(pw, 0o600)
        sighup_and_wait(t, RELOADED, 1)
        with pytest.raises(w.CqlError) as e:
            new_session_ok(t)
        assert e.value.code == 0x0100, e.value
        assert "password are incorrect" in e.value.message
        select_ok(old)

        with open(pw, "w") as f:
            f.write("cassandra\n")
        sighup_and_wait(t, RELOADED, 2)
        new_session_ok(t)
        select_ok(old)
        old.close()
        assert "wrong" not in t.log()


# --- 4. CRL ---

def test_crl_revoked_node_certificate(tmp_path, tunnel_config, pki):
    node_serial = cert_serial(pki["node_crt"])
    revoked = make_crl(pki, str(tmp_path / "revokes-node.pem"),
                       [pki["node_crt"]])
    assert crl_serials(revoked) == {node_serial}
    with Tunnel(str(tmp_path), tunnel_config(tls={"crl_file": revoked}),
                name="revoked") as t:
        for _ in range(2):      # and the tunnel keeps serving
            with pytest.raises(w.CqlError) as e:
                new_session_ok(t)
            assert e.value.message.startswith("cqltunnel: TLS to node")
            assert "certificate revoked" in e.value.message, e.value.message
        assert t.alive()
        t.wait_log("certificate revoked")

    # A CRL of the same CA that revokes something else: the node is fine.
    other = make_leaf(pki, str(tmp_path / "other"), "revoked-client")
    crl = make_crl(pki, str(tmp_path / "revokes-other.pem"), [other["crt"]])
    assert crl_serials(crl) == {other["serial"]}
    with Tunnel(str(tmp_path), tunnel_config(tls={"crl_file": crl}),
                name="other-revoked") as t:
        new_session_ok(t)
        new_session_ok(t)

    # CRL_CHECK_ALL: every CA of the chain needs a CRL; one from an
    # unrelated CA does not cover the test CA, so nothing is accepted.
    unrelated = make_crl(pki, str(tmp_path / "unrelated.pem"), ca="other-ca")
    with Tunnel(str(tmp_path), tunnel_config(tls={"crl_file": unrelated}),
                name="unrelated") as t:
        with pytest.raises(w.CqlError) as e:
            new_session_ok(t)
        assert "unable to get certificate CRL" in e.value.message, \
            e.value.message
        # Both CRLs in one file: accepted again.
        both = str(tmp_path / "both.pem")
        with open(both, "w") as f:
            f.write(open(unrelated).read() + open(crl).read())
        t.sections["tls"]["crl_file"] = both
        write_ini(t.ini, t.sections)
        sighup_and_wait(t, RELOADED, 1)
        new_session_ok(t)


def test_crl_reload(tmp_path, tunnel_config, pki):
    other = make_leaf(pki, str(tmp_path / "other"), "revoked-client")
    harmless = make_crl(pki, str(tmp_path / "revokes-other.pem"),
                        [other["crt"]])
    revoking = make_crl(pki, str(tmp_path / "revokes-node.pem"),
                        [other["crt"], pki["node_crt"]])
    live = str(tmp_path / "crl.pem")
    install(harmless, live)
    with Tunnel(str(tmp_path), tunnel_config(tls={"crl_file": live})) as t:
        old = w.connect(t.host, t.port)
        select_ok(old)

        # The node's certificate gets revoked: new sessions fail, the open
        # one (verified before, generation 1) goes on.
        install(revoking, live)
        sighup_and_wait(t, RELOADED, 1)
        for _ in range(2):
            with pytest.raises(w.CqlError) as e:
                new_session_ok(t)
            assert "certificate revoked" in e.value.message, e.value.message
        select_ok(old)

        # A crl_file that is no CRL is refused; generation 2 stays.
        install(pki["ca_crt"], live)
        sighup_and_wait(t, FAILED, 1)
        assert any("[tls] crl_file" in ln and "holds no PEM CRL" in ln
                   for ln in error_lines(t)), error_lines(t)
        t.wait_log("still using configuration generation 2")
        with pytest.raises(w.CqlError):
            new_session_ok(t)

        # Back to a CRL without the node: new sessions work again.
        install(harmless, live)
        sighup_and_wait(t, RELOADED, 2)
        new_session_ok(t)
        select_ok(old)
        old.close()
        assert t.alive()


@pytest.mark.parametrize("case", ["not a CRL", "missing", "truncated"])
def test_crl_file_check(tmp_path, tunnel_config, pki, case):
    path = str(tmp_path / "crl.pem")
    if case == "not a CRL":
        install(pki["ca_crt"], path)
        expect = "holds no PEM CRL"
    elif case == "missing":
        expect = "cannot open %s" % path
    else:
        data = open(make_crl(pki, str(tmp_path / "full.pem"),
                             [pki["other_client_crt"]])).read()
        with open(path, "w") as f:
            f.write(data[:len(data) // 2])
        expect = "crl.pem"
    t = Tunnel(str(tmp_path), tunnel_config(tls={"crl_file": path}))
    rc, out = t.check()
    assert rc == 1, out
    line = open(t.ini).read().splitlines().index("crl_file = " + path) + 1
    assert "%s:%d: [tls] crl_file: " % (t.ini, line) in out, out
    assert expect in out, out


def test_crl_file_with_truncated_second_crl_is_refused(tmp_path,
                                                       tunnel_config, pki):
    # A bundle of CRLs (one per CA) whose second one is half-written, as a
    # rotation tool that is not atomic leaves it: cert_file and ca_file
    # refuse a truncated trailing PEM block ("bad end line"); crl_file
    # must too, or a reload drops a CA's CRL without a word.
    one = open(make_crl(pki, str(tmp_path / "one.pem"))).read()
    two = open(make_crl(pki, str(tmp_path / "two.pem"),
                        ca="other-ca")).read()
    path = str(tmp_path / "bundle.pem")
    with open(path, "w") as f:
        f.write(one + two[:len(two) // 2])
    rc, out = Tunnel(str(tmp_path), tunnel_config(
        tls={"crl_file": path})).check()
    assert rc == 1, out
    assert "[tls] crl_file" in out, out


# --- 5. [tls] watch = yes ---

def wait_reload(t, n, timeout=5):
    """Wait (bounded) for the n-th successful reload; returns seconds."""
    started = time.time()
    t.wait_log_count(RELOADED, n, timeout=timeout)
    return time.time() - started


def test_watch_rename_over(tmp_path, tunnel_config, pki):
    live = live_identity(tmp_path, pki)
    b = make_leaf(pki, str(tmp_path / "rotated"), "client-b")
    cfg = tunnel_config(tls={"cert_file": live["crt"],
                             "key_file": live["key"], "watch": "yes"})
    with Tunnel(str(tmp_path), cfg) as t:
        # The config's (and the password file's), live/ and the CA's.
        t.wait_log("[tls] watch: watching 3 directories for changes")
        old = w.connect(t.host, t.port)
        # A new certificate and key renamed over the old files.
        rotate(b, live)
        took = wait_reload(t, 1)
        assert t.count_log(WATCH_HIT) == 1
        assert "SIGHUP" not in t.log()
        assert FAILED not in t.log()
        assert generations(t)[-1] == (2, b["serial"])
        new_session_ok(t)
        select_ok(old)

        # An edit of the config file itself (written in place) is seen
        # too: here, a log level change.
        t.sections["log"]["level"] = "info"
        write_ini(t.ini, t.sections)
        wait_reload(t, 2)
        assert generations(t)[-1] == (3, b["serial"])
        new_session_ok(t)
        old.close()
    print("reloaded %.2fs after the rename" % took)


def test_watch_directory_replaced(tmp_path, tunnel_config, pki):
    """The watch is re-armed by each reload: after the whole directory of
    the certificate is swapped for another (two renames), changes in the
    new directory are still seen.  Also: `watch = yes` switched on by a
    reload takes effect."""
    live = live_identity(tmp_path, pki)
    b, c = (make_leaf(pki, str(tmp_path / "rotated"), n)
            for n in ("client-b", "client-c"))
    cfg = tunnel_config(tls={"cert_file": live["crt"],
                             "key_file": live["key"]})
    with Tunnel(str(tmp_path), cfg) as t:
        assert "[tls] watch: watching" not in t.log()
        t.sections["tls"]["watch"] = "yes"
        write_ini(t.ini, t.sections)
        sighup_and_wait(t, RELOADED, 1)
        t.wait_log("[tls] watch: watching 3 directories for changes")

        # A new directory with the new pair takes the place of live/.
        new = tmp_path / "live.new"
        new.mkdir()
        install(b["crt"], str(new / "client.crt"))
        install(b["key"], str(new / "client.key"))
        os.rename(str(tmp_path / "live"), str(tmp_path / "live.old"))
        os.rename(str(new), str(tmp_path / "live"))
        wait_reload(t, 2)
        assert generations(t)[-1] == (3, b["serial"])
        new_session_ok(t)

        # The watch now follows the new live/.
        rotate(c, live)
        wait_reload(t, 3)
        assert generations(t)[-1] == (4, c["serial"])
        new_session_ok(t)
        assert t.count_log(WATCH_HIT) == 2
        assert FAILED not in t.log()


def _k8s_volume(d, files, stamp):
    """A Kubernetes secret volume as the kubelet's AtomicWriter makes it:
    ${d}/..${stamp}/<files>, ${d}/..data -> ..${stamp}, and
    ${d}/<name> -> ..data/<name>; or, if ${d}/..data exists, an atomic swap
    of ..data to the new timestamped directory and removal of the old."""
    ts = os.path.join(d, ".." + stamp)
    os.makedirs(ts)
    for name, src in files.items():
        shutil.copyfile(src, os.path.join(ts, name))
        os.chmod(os.path.join(ts, name), 0o600 if name.endswith(".key")
                 else 0o644)
    data = os.path.join(d, "..data")
    old = os.readlink(data) if os.path.islink(data) else None
    os.symlink(".." + stamp, os.path.join(d, "..data_tmp"))
    os.rename(os.path.join(d, "..data_tmp"), data)
    for name in files:
        if not os.path.islink(os.path.join(d, name)):
            os.symlink(os.path.join("..data", name), os.path.join(d, name))
    if old is not None:
        shutil.rmtree(os.path.join(d, old))


def test_watch_kubernetes_symlink_swap(tmp_path, tunnel_config, pki):
    d = str(tmp_path / "secret")
    os.makedirs(d)
    leaves = [make_leaf(pki, str(tmp_path / "rotated"), "client-%d" % i)
              for i in range(3)]

    def files(leaf):
        return {"ca.crt": pki["ca_crt"], "tls.crt": leaf["crt"],
                "tls.key": leaf["key"]}

    _k8s_volume(d, files(leaves[0]), "2026_01_01_00_00_00.000000001")
    cfg = tunnel_config(tls={"ca_file": os.path.join(d, "ca.crt"),
                             "cert_file": os.path.join(d, "tls.crt"),
                             "key_file": os.path.join(d, "tls.key"),
                             "watch": "yes"})
    with Tunnel(str(tmp_path), cfg) as t:
        t.wait_log("[tls] watch: watching")
        t.wait_log("generation 1: client certificate")
        assert generations(t) == [(1, leaves[0]["serial"])]
        old = w.connect(t.host, t.port)
        select_ok(old)
        # Two rotations: the watch must survive the first swap.
        for i, stamp in ((1, "2026_01_02_00_00_00.000000002"),
                         (2, "2026_01_03_00_00_00.000000003")):
            _k8s_volume(d, files(leaves[i]), stamp)
            wait_reload(t, i)
            assert generations(t)[-1] == (i + 1, leaves[i]["serial"])
            new_session_ok(t)
            select_ok(old)
        assert sorted(os.listdir(d)) == [
            "..2026_01_03_00_00_00.000000003", "..data", "ca.crt",
            "tls.crt", "tls.key"]
        assert "SIGHUP" not in t.log()
        assert FAILED not in t.log()
        old.close()


def test_watch_half_written_file(tmp_path, tunnel_config, pki):
    live = live_identity(tmp_path, pki)
    b, c = (make_leaf(pki, str(tmp_path / "rotated"), n)
            for n in ("client-b", "client-c"))
    cfg = tunnel_config(tls={"cert_file": live["crt"],
                             "key_file": live["key"], "watch": "yes"})

    def write_in_place(path, text):
        with open(path, "w") as f:
            f.write(text)

    with Tunnel(str(tmp_path), cfg) as t:
        t.wait_log("[tls] watch: watching")
        t.wait_log("generation 1: client certificate")
        old = w.connect(t.host, t.port)
        crt_b = open(b["crt"]).read()

        # A writer that stops half-way: the reload it triggers is refused
        # and the daemon keeps serving with generation 1...
        write_in_place(live["crt"], crt_b[:len(crt_b) // 2])
        t.wait_log_count(FAILED, 1, timeout=5)
        assert any("[tls] cert_file" in ln and live["crt"] in ln
                   for ln in error_lines(t)), error_lines(t)
        new_session_ok(t)
        select_ok(old)
        # ... and when it finishes (key, then the whole certificate), the
        # next reload takes the new pair.
        write_in_place(live["key"], open(b["key"]).read())
        write_in_place(live["crt"], crt_b)
        wait_reload(t, 1)
        assert generations(t)[-1] == (2, b["serial"])
        assert t.alive()
        new_session_ok(t)
        select_ok(old)

        # Half and whole written in quick succession (well within the
        # 500 ms settle time): one reload, of the complete file, no failure.
        crt_c = open(c["crt"]).read()
        nfailed = t.count_log(FAILED)
        write_in_place(live["crt"], crt_c[:len(crt_c) // 3])
        write_in_place(live["key"], open(c["key"]).read())
        write_in_place(live["crt"], crt_c)
        wait_reload(t, 2)
        time.sleep(1)           # no second reload follows
        assert t.count_log(RELOADED) == 2
        assert t.count_log(FAILED) == nfailed == 1
        assert generations(t)[-1] == (3, c["serial"])
        new_session_ok(t)
        select_ok(old)
        old.close()
        assert t.alive()


def test_drain_under_load(tmp_path, tunnel_config):
    """SIGTERM while 10 sessions have pipelined queries in flight: every
    query is answered, the sessions end on their own, the daemon exits 0
    without a second signal."""
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        stop = threading.Event()
        results, errors = [], []

        def worker():
            try:
                s = w.connect(t.host, t.port)
                answered = 0
                while not stop.is_set():
                    for st in range(1, 6):      # five in flight at once
                        s.sendall(w.frame(4, st, w.OP_QUERY,
                                                w.query_body(
                                                    "SELECT key FROM "
                                                    "system.local")))
                    for _ in range(5):
                        _, _, _, op, _ = w.read_frame(s)
                        assert op == w.OP_RESULT, op
                        answered += 1
                s.close()
                results.append(answered)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=worker) for _ in range(10)]
        for th in threads:
            th.start()
        t.wait_log_count("handshake done", 10)
        time.sleep(0.5)
        t.proc.send_signal(signal.SIGTERM)
        t.wait_log("draining 10 session")
        time.sleep(0.5)     # keep querying while draining
        stop.set()
        for th in threads:
            th.join(timeout=30)
        assert errors == []
        assert len(results) == 10 and min(results) > 0
        assert t.proc.wait(timeout=30) == 0
        assert "all sessions ended; exiting" in t.log()
        assert "drain timeout" not in t.log()
