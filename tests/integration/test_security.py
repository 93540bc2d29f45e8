"""Security properties against the real Cassandra 5.0 node:

* local access control ([listen] allow_uids / allow_gids) with clients
  running as other uids (setpriv), over loopback TCP and a unix socket;
* the unix: listen address (mode, owner, group, stale socket handling);
* secrets never in any log output at debug level, nor in /proc/PID/cmdline
  or environ, and wiped from the daemon's memory after use;
* core dumps off by default;
* the defaults: verification on (verify = none refused unless
  acknowledged), TLS >= 1.2 (a TLS 1.1 node is refused), only ca_file
  trusted (not the system store), no plaintext fallback, loopback only.

The tests run as root (as in CI) so that clients can be started as other
users; they are skipped otherwise.
"""

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import cqlwire
from tunnel import Tunnel, scaled

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to "
                                "run clients as other uids")

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"

# Users every Debian-like system has: daemon (1:1) and bin (2:2).
DAEMON, BIN = 1, 2
NO_SUCH_UID = 54321

CLIENT = r'''
import json, socket, sys
def go(target, version):
    if target.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(target[5:])
    else:
        host, port = target.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(frame(version, 0, OP_OPTIONS))
    v, _, stream, op, body = read_frame(s)
    if op == OP_ERROR:
        raise CqlError(*parse_error(body))
    s.sendall(frame(version, 1, OP_STARTUP, startup_body()))
    v, _, stream, op, body = read_frame(s)
    if op == OP_ERROR:
        raise CqlError(*parse_error(body))
    assert op == OP_READY, op
    op, body = query(s, "SELECT release_version FROM system.local",
                     version=version)
    return op == OP_RESULT
try:
    ok = go(sys.argv[1], int(sys.argv[2]))
    print(json.dumps({"ok": ok}))
except CqlError as e:
    print(json.dumps({"ok": False, "code": e.code, "message": e.message}))
except (OSError, ConnectionError) as e:
    print(json.dumps({"ok": False, "errno": e.errno, "message": str(e)}))
'''


def as_user(uid, gid, target, version=4):
    """Run a CQL client as ${uid}:${gid} (no supplementary groups) against
    ${target} ("host:port" or "unix:/path"); returns its JSON result."""
    with open(os.path.join(HERE, "cqlwire.py")) as f:
        code = f.read() + CLIENT
    p = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid,
                        "--clear-groups", SYSTEM_PYTHON, "-c", code, target,
                        str(version)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def tcp(t):
    return "%s:%d" % (t.host, t.port)


@pytest.fixture
def open_dir():
    """A directory every uid may enter (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="cqltunnel-sec.", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- local access control over loopback TCP ---------------------------------

def test_allow_uids_tcp(tmp_path, tunnel_config):
    cfg = tunnel_config(listen={"allow_uids": "bin"})
    with Tunnel(str(tmp_path), cfg) as t:
        t.wait_log("1 user(s) and 0 group(s) may connect")
        # bin is let in, and its query reaches the real node.
        assert as_user(BIN, BIN, tcp(t)) == {"ok": True}
        assert as_user(BIN, BIN, tcp(t), version=3) == {"ok": True}
        # Anyone else gets a CQL ERROR naming them, and one log line.
        r = as_user(DAEMON, DAEMON, tcp(t))
        assert r["ok"] is False and r["code"] == 0x0000, r
        assert r["message"] == ("cqltunnel: uid 1 (daemon) is not in "
                                "[listen] allow_uids or allow_gids"), r
        t.wait_log("access denied: uid 1 (daemon) is not in [listen] "
                   "allow_uids or allow_gids")
        r = as_user(NO_SUCH_UID, NO_SUCH_UID, tcp(t))
        assert "uid %d (no such user, so no groups)" % NO_SUCH_UID in \
            r["message"], r
        # Root (this test) is not listed either.
        with pytest.raises(cqlwire.CqlError) as e:
            cqlwire.connect(t.host, t.port)
        assert "uid 0 (root) is not in" in e.value.message
        # A refused app that never sends anything is closed after 1 s.
        s = socket.create_connection((t.host, t.port))
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - t0 < 3
        s.close()
        log = t.log()
    denied = [line for line in log.splitlines() if "access denied" in line]
    assert len(denied) == 4, denied
    for line in denied:
        assert " app 127.0.0.1:" in line and " node - " in line, line


def test_allow_gids_tcp(tmp_path, tunnel_config):
    """Over TCP the groups are the uid's, from the user database: bin
    connecting with gid daemon is still bin."""
    cfg = tunnel_config(listen={"allow_gids": "daemon"})
    with Tunnel(str(tmp_path), cfg) as t:
        assert as_user(DAEMON, DAEMON, tcp(t)) == {"ok": True}
        r = as_user(BIN, DAEMON, tcp(t))
        assert r["ok"] is False, r
        assert "uid 2 (bin) is not in" in r["message"]


def test_allow_gids_supplementary(tmp_path, tunnel_config, open_dir):
    """A supplementary group counts.  The tunnel runs in a private mount
    namespace whose /etc/group makes bin a member of a test group."""
    fake = os.path.join(open_dir, "group")
    with open("/etc/group") as f:
        text = f.read()
    with open(fake, "w") as f:
        f.write(text.rstrip("\n") + "\ncqlit-clients:x:4711:bin\n")
    os.chmod(fake, 0o644)
    cfg = tunnel_config(listen={"allow_gids": "cqlit-clients"})
    t = Tunnel(str(tmp_path), cfg)
    t.prefix = ["unshare", "--mount", "--propagation", "private", "sh",
                "-c", 'mount --bind "$0" /etc/group && exec "$@"', fake]
    with t:
        assert as_user(BIN, BIN, tcp(t)) == {"ok": True}
        assert as_user(DAEMON, DAEMON, tcp(t))["ok"] is False


def test_allow_uids_translate_listeners(tmp_path, tunnel_config):
    """The per-node listener of translate mode checks too (a single node:
    its address is the main one; a second listener on a free prefix
    address is only made for other nodes, so check the main one)."""
    cfg = tunnel_config(listen={"allow_uids": str(BIN)},
                        cluster={"topology": "translate"})
    with Tunnel(str(tmp_path), cfg) as t:
        assert as_user(BIN, BIN, tcp(t)) == {"ok": True}
        assert as_user(DAEMON, DAEMON, tcp(t))["ok"] is False


def test_allow_uids_reload(tmp_path, tunnel_config):
    cfg = tunnel_config(listen={"allow_uids": str(BIN)})
    t = Tunnel(str(tmp_path), cfg)
    with t:
        assert as_user(DAEMON, DAEMON, tcp(t))["ok"] is False
        t.sections["listen"]["allow_uids"] = "%d, %d" % (BIN, DAEMON)
        from tunnel import write_ini
        write_ini(t.ini, t.sections)
        t.sighup()
        t.wait_log("configuration reloaded")
        assert as_user(DAEMON, DAEMON, tcp(t)) == {"ok": True}


def test_allow_uids_needs_loopback(tmp_path, tunnel_config):
    t = Tunnel(str(tmp_path), tunnel_config(listen={
        "address": "0.0.0.0:19042", "allow_remote": "yes",
        "allow_uids": "bin"}))
    rc, out = t.check()
    assert rc == 1
    assert "[listen] allow_uids: needs a loopback or unix: [listen] " \
        "address" in out, out


# -- unix socket --------------------------------------------------------------

def unix_config(tunnel_config, path, **listen):
    listen = dict(listen, address="unix:" + path)
    return tunnel_config(listen=listen, cluster={"topology": "pin"})


def test_unix_socket_mode_and_group(tmp_path, tunnel_config, open_dir):
    path = os.path.join(open_dir, "cql.sock")
    cfg = unix_config(tunnel_config, path, unix_group="daemon")
    t = Tunnel(str(tmp_path), cfg)
    with t:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_uid == 0 and st.st_gid == DAEMON
        assert "listening on unix:%s" % path in t.log()
        # The group may connect, through to the node.
        assert as_user(DAEMON, DAEMON, "unix:" + path) == {"ok": True}
        # Others are stopped by the file mode.
        r = as_user(BIN, BIN, "unix:" + path)
        assert r["ok"] is False and r["errno"] == 13, r	# EACCES
    # Removed at exit.
    assert not os.path.exists(path)


def test_unix_socket_allow_uids(tmp_path, tunnel_config, open_dir):
    path = os.path.join(open_dir, "cql.sock")
    cfg = unix_config(tunnel_config, path, unix_mode="0666",
                      allow_uids="daemon")
    with Tunnel(str(tmp_path), cfg) as t:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o666
        assert as_user(DAEMON, DAEMON, "unix:" + path) == {"ok": True}
        r = as_user(BIN, BIN, "unix:" + path)
        assert r["ok"] is False and r["code"] == 0, r
        assert r["message"].startswith("cqltunnel: uid 2 (bin), pid "), r
        t.wait_log("access denied: uid 2 (bin), pid ")
        assert "app unix node - " in t.log()


def test_unix_socket_allow_gids_peer_gid(tmp_path, tunnel_config,
                                         open_dir):
    """On a unix socket the gid the peer connected with counts too."""
    path = os.path.join(open_dir, "cql.sock")
    cfg = unix_config(tunnel_config, path, unix_mode="0666",
                      allow_gids="4711")
    with Tunnel(str(tmp_path), cfg):
        assert as_user(BIN, 4711, "unix:" + path) == {"ok": True}
        assert as_user(BIN, BIN, "unix:" + path)["ok"] is False


def test_unix_socket_stale_and_busy(tmp_path, tunnel_config, open_dir):
    path = os.path.join(open_dir, "cql.sock")
    # A socket nobody listens on is removed.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    assert os.path.exists(path)
    with Tunnel(str(tmp_path), unix_config(tunnel_config, path)) as t:
        assert "removed the stale socket %s" % path in t.log()
        # A second instance finds it busy and leaves it alone.
        t2 = Tunnel(str(tmp_path), unix_config(tunnel_config, path),
                    name="second")
        with pytest.raises(RuntimeError) as e:
            t2.start()
        assert "%s is in use: another process accepts connections on it" \
            % path in str(e.value)
        assert t2.stop() == 1		# (valgrind's error status is 3)
        assert as_user(0, 0, "unix:" + path) == {"ok": True}
    # A regular file is never removed.
    with open(path, "w") as f:
        f.write("not a socket\n")
    t3 = Tunnel(str(tmp_path), unix_config(tunnel_config, path), name="f")
    with pytest.raises(RuntimeError) as e:
        t3.start()
    assert t3.stop() == 1
    assert "%s exists and is not a socket; not removing it" % path in \
        str(e.value)
    assert open(path).read() == "not a socket\n"


def test_unix_socket_needs_pin(tmp_path, tunnel_config, open_dir):
    cfg = tunnel_config(listen={"address": "unix:%s/x.sock" % open_dir})
    rc, out = Tunnel(str(tmp_path), cfg).check()
    assert rc == 1
    assert "a unix: address needs [cluster] topology = pin" in out, out


# -- secrets ------------------------------------------------------------------

def sanitized(pid):
    """Whether ${pid} runs with AddressSanitizer (its shadow memory cannot
    be scanned, its quarantine keeps freed memory, and it sets its own
    core limit)."""
    with open("/proc/%d/maps" % pid) as maps:
        return "libasan" in maps.read()


def scan_memory(pid, needles):
    """Count each of ${needles} (bytes) in the writable memory of ${pid};
    None for an AddressSanitizer build."""
    if sanitized(pid):
        return None
    counts = dict.fromkeys(needles, 0)
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            if not parts[1].startswith("rw"):
                continue
            if len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError):
                continue
            for n in needles:
                counts[n] += data.count(n)
    return counts


@pytest.fixture(scope="module")
def probe_role(cassandra):
    """A role with a password found nowhere else, to grep for."""
    name = "sec_" + uuid.uuid4().hex[:8]
    password = "Pw-" + uuid.uuid4().hex
    c = cassandra.cluster()
    try:
        s = c.connect()
        s.execute("CREATE ROLE %s WITH PASSWORD = '%s' AND LOGIN = true"
                  % (name, password))
    finally:
        c.shutdown()
    return name, password


def run_secret_session(t, pw_file, password, name):
    """Handshakes, queries, a wrong password (reloaded in and out again).
    Returns how often the password was in the daemon's memory after the
    first sessions, before any reload."""
    from tunnel import write_ini
    for version in (3, 4):
        assert as_user(0, 0, tcp(t), version) == {"ok": True}
    for _ in range(20):
        assert as_user(0, 0, tcp(t)) == {"ok": True}
    mem = scan_memory(t.proc.pid, [password.encode()])
    before = mem[password.encode()] if mem is not None else None
    with open(pw_file, "w") as f:
        f.write("not-" + password + "\n")
    t.sighup()
    t.wait_log_count("configuration reloaded", 1)
    with pytest.raises(cqlwire.CqlError) as e:
        cqlwire.connect(t.host, t.port)
    assert "Provided username %s and/or password are incorrect" % name \
        in e.value.message
    with open(pw_file, "w") as f:
        f.write(password + "\n")
    write_ini(t.ini, t.sections)
    t.sighup()
    t.wait_log_count("configuration reloaded", 2)
    assert as_user(0, 0, tcp(t)) == {"ok": True}
    return before


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_never_logged_or_exposed(tmp_path, tunnel_config, pki,
                                         probe_role, fmt):
    name, password = probe_role
    passphrase = pki["client_key_passphrase"]
    pw_file = str(tmp_path / "pw")
    with open(pw_file, "w") as f:
        f.write(password + "\n")
    os.chmod(pw_file, 0o600)
    cfg = tunnel_config(auth={"username": name, "password_file": pw_file},
                        tls={"key_file": pki["client_enc_key"],
                             "key_password_file": pki["client_key_pass"]},
                        log={"level": "debug", "format": fmt})
    with Tunnel(str(tmp_path), cfg) as t:
        pid = t.proc.pid
        before = run_secret_session(t, pw_file, password, name)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read()
        with open("/proc/%d/environ" % pid, "rb") as f:
            environ = f.read()
        mem = scan_memory(pid, [password.encode(), passphrase.encode(),
                                ("not-" + password).encode()])
        log = t.log()
    for secret in (password, passphrase):
        assert secret not in log
        assert secret.encode() not in cmdline
        assert secret.encode() not in environ
    # Debug level really was on, and the failure was logged.
    assert "credentials injected" in log and "authentication failed" in log
    # The passphrase is gone from memory once the key is loaded.  The
    # password lives only in the current configuration generation's PLAIN
    # token: one copy, whatever number of sessions went through (the
    # config's own copy is wiped once the token is built, and none is left
    # in freed session, evbuffer or TLS buffers).  After the reloads, the
    # generations before (the one cqltunnel started with, and the
    # wrong-password one) went with their last sessions: only the current
    # generation's copy is left, and nothing of the replaced password.
    if mem is None:
        return		# AddressSanitizer build: no memory scan
    assert mem[passphrase.encode()] == 0, mem
    assert before == 1, before
    assert mem[password.encode()] == 1, mem
    assert mem[("not-" + password).encode()] == 0, mem


def test_key_pem_not_left_in_memory(tmp_path, tunnel_config, pki):
    """An unencrypted key file's PEM text does not stay in memory."""
    with open(pki["client_key"]) as f:
        lines = [ln for ln in f.read().splitlines() if "-----" not in ln]
    needles = [ln.encode() for ln in lines[1:4]]
    with Tunnel(str(tmp_path), tunnel_config()) as t:
        assert as_user(0, 0, tcp(t)) == {"ok": True}
        t.sighup()
        t.wait_log("configuration reloaded")
        mem = scan_memory(t.proc.pid, needles)
    if mem is None:
        pytest.skip("memory scan of an AddressSanitizer build")
    assert sum(mem.values()) == 0, mem


def test_core_dumps_off_by_default(tunnel_config, pki, open_dir):
    """Run as an unprivileged user (bin) with a core limit of 1 MiB: by
    default the soft limit drops to 0 and the process is not dumpable (its
    /proc entries then belong to root, and bin's other processes could not
    ptrace it); [daemon] allow_core_dumps = yes keeps both.  No secrets
    are configured, so that bin can read everything."""
    ca = os.path.join(open_dir, "ca.crt")
    shutil.copy(pki["ca_crt"], ca)
    os.chmod(ca, 0o644)

    def run(name, **over):
        cfg = tunnel_config(tls={"ca_file": ca, "cert_file": None,
                                 "key_file": None},
                            auth={"username": None, "password_file": None},
                            cluster={"topology": "pin"}, **over)
        t = Tunnel(open_dir, cfg, name=name)
        t.prefix = ["prlimit", "--core=1048576:1048576", "setpriv",
                    "--reuid=%d" % BIN, "--regid=%d" % BIN,
                    "--clear-groups"]
        return t

    with run("nodumps") as t:
        pid = t.proc.pid
        with open("/proc/%d/status" % pid) as f:
            assert "\nUid:\t%d\t" % BIN in f.read()
        with open("/proc/%d/limits" % pid) as f:
            core = [ln for ln in f if ln.startswith("Max core file size")]
        assert core[0].split()[4] == "0", core
        if not sanitized(pid):	# ASan lowers both limits before main()
            assert core[0].split()[5] == "1048576", core
        assert os.stat("/proc/%d/mem" % pid).st_uid == 0
    with run("dumps", daemon={"allow_core_dumps": "yes"}) as t:
        pid = t.proc.pid
        with open("/proc/%d/limits" % pid) as f:
            core = [ln for ln in f if ln.startswith("Max core file size")]
        if not sanitized(pid):	# ASan lowers the limit before main()
            assert core[0].split()[4:6] == ["1048576", "1048576"], core
        assert os.stat("/proc/%d/mem" % pid).st_uid == BIN
        t.wait_log("[daemon] allow_core_dumps = yes: a core dump holds the "
                   "password and the private key")


# -- defaults -----------------------------------------------------------------

def test_verify_none_needs_acknowledgement(tmp_path, tunnel_config):
    t = Tunnel(str(tmp_path), tunnel_config(tls={"verify": "none"}))
    rc, out = t.check()
    assert rc == 1
    assert "[tls] verify: \"none\" turns off verification" in out, out
    assert "insecure_skip_verify = yes" in out
    t = Tunnel(str(tmp_path), tunnel_config(tls={
        "verify": "none", "insecure_skip_verify": "yes"}), name="ack")
    with t:
        assert "node certificates are NOT verified" in t.log()
        assert as_user(0, 0, tcp(t)) == {"ok": True}


def test_non_loopback_listen_refused(tmp_path, tunnel_config):
    rc, out = Tunnel(str(tmp_path), tunnel_config(listen={
        "address": "0.0.0.0:19042"})).check()
    assert rc == 1 and "is not a loopback address" in out, out


def test_system_store_not_used_unless_asked(tmp_path, tunnel_config, pki,
                                            monkeypatch):
    """OpenSSL's default store is whatever SSL_CERT_FILE says: point it at
    the node's CA.  With ca_file naming another CA the node is refused (the
    default store is not consulted); with ca_file = system it is used."""
    monkeypatch.setenv("SSL_CERT_FILE", pki["ca_crt"])
    cfg = tunnel_config(tls={"ca_file": pki["other_ca_crt"]})
    with Tunnel(str(tmp_path), cfg) as t:
        r = as_user(0, 0, tcp(t))
        assert r["ok"] is False, r
        assert "certificate verification failed" in r["message"], r
    cfg = tunnel_config(tls={"ca_file": "system"})
    with Tunnel(str(tmp_path), cfg, name="system") as t:
        assert as_user(0, 0, tcp(t)) == {"ok": True}


class OldTlsNode:
    """A TLS server that speaks at most TLS 1.1 (OpenSSL's security level
    lowered so that it may), recording what happens."""

    def __init__(self, pki):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["node_crt"], pki["node_key"])
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.handshakes = []
        self.errors = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn = self.ctx.wrap_socket(raw, server_side=True)
                self.handshakes.append(conn.version())
                conn.close()
            except (ssl.SSLError, OSError) as e:
                self.errors.append(str(e))
                raw.close()

    def close(self):
        self.sock.close()


def test_tls_below_1_2_refused(tmp_path, tunnel_config, pki):
    node = OldTlsNode(pki)
    # The server side really can do TLS 1.1 here (else the test proves
    # nothing): a client allowing it completes a handshake.
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.set_ciphers("ALL:@SECLEVEL=0")
    cctx.minimum_version = ssl.TLSVersion.TLSv1
    try:
        with socket.create_connection(("127.0.0.1", node.port)) as raw:
            with cctx.wrap_socket(raw) as c:
                assert c.version() in ("TLSv1", "TLSv1.1")
    except ssl.SSLError as e:
        node.close()
        pytest.skip("this OpenSSL cannot serve TLS 1.1: %s" % e)
    try:
        cfg = tunnel_config(cluster={"contact_points": "127.0.0.1:%d"
                                     % node.port, "topology": "pin"})
        with Tunnel(str(tmp_path), cfg) as t:
            r = as_user(0, 0, tcp(t))
            assert r["ok"] is False, r
            assert "TLS handshake failed" in r["message"], r
            assert "protocol version" in r["message"], r
            t.wait_log("TLS failed")
        assert len(node.handshakes) == 1, node.handshakes	# ours only
    finally:
        node.close()


def test_plaintext_node_never_gets_plaintext(tmp_path, tunnel_config):
    """A node that answers in plaintext CQL: the tunnel fails TLS and
    never sends a CQL frame in the clear."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    received = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.settimeout(5)
            data = b""
            try:
                data = c.recv(65536)
                # A plaintext CQL node's reply: an ERROR frame.
                c.sendall(cqlwire.frame(4, 0, cqlwire.OP_ERROR,
                                        b"\x00\x00\x00\x0a\x00\x02no",
                                        response=True))
                data += c.recv(65536)
            except OSError:
                pass
            received.append(data)
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        cfg = tunnel_config(cluster={"contact_points": "127.0.0.1:%d"
                                     % port, "topology": "pin"})
        with Tunnel(str(tmp_path), cfg) as t:
            r = as_user(0, 0, tcp(t))
            assert r["ok"] is False, r
            assert r["message"].startswith("cqltunnel: TLS"), r
            t.wait_log("TLS failed")
    finally:
        srv.close()
    assert received
    for data in received:
        # A TLS handshake record (ClientHello), never a CQL frame.
        assert data[:1] == b"\x16", data[:16]
        assert b"STARTUP" not in data and b"CQL_VERSION" not in data


# -- socket activation -------------------------------------------------------

def activated(tmp_path, cfg, lsock):
    """Start cqltunnel as systemd would, with ${lsock} as fd 3."""
    import sys
    from test_systemd import start
    fd = lsock.fileno()
    wrapper = [sys.executable, "-c",
               "import os, sys; os.dup2(%d, 3); "
               "os.environ['LISTEN_PID'] = str(os.getpid()); "
               "os.environ['LISTEN_FDS'] = '1'; "
               "os.execvp(sys.argv[1], sys.argv[1:])" % fd]
    return start(tmp_path, cfg, argv_prefix=wrapper, pass_fds=(fd,))


def wait_for(proc, log, text, timeout=None):
    from test_systemd import read
    deadline = time.monotonic() + (timeout or scaled(20))
    while text not in read(log):
        assert time.monotonic() < deadline, read(log)
        assert proc.poll() is None, read(log)
        time.sleep(0.1)
    return read(log)


def test_socket_activation_unix_allow_uids(tmp_path, tunnel_config,
                                           open_dir):
    """A unix socket passed by systemd is adopted, and allow_uids applies
    to it (the peer comes from SO_PEERCRED)."""
    path = os.path.join(open_dir, "activated.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    os.chmod(path, 0o666)
    lsock.listen(16)
    cfg = unix_config(tunnel_config, path, allow_uids="bin")
    proc, log = activated(tmp_path, cfg, lsock)
    lsock.close()
    try:
        wait_for(proc, log, "listening on")
        assert "using the listening socket passed by systemd (unix:%s)" \
            % path in wait_for(proc, log, "listening on")
        assert as_user(BIN, BIN, "unix:" + path) == {"ok": True}
        r = as_user(DAEMON, DAEMON, "unix:" + path)
        assert r["ok"] is False and "uid 1 (daemon), pid " in \
            r["message"], r
        wait_for(proc, log, "access denied: uid 1 (daemon)")
        proc.send_signal(15)
        assert proc.wait(timeout=scaled(30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # systemd's socket: not ours to remove.
    assert os.path.exists(path)


def test_socket_activation_remote_with_allow_uids(tmp_path, tunnel_config):
    """A passed socket on a wildcard address cannot be combined with
    allow_uids: refused at start."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("0.0.0.0", 0))
    lsock.listen(16)
    cfg = tunnel_config(listen={"allow_uids": "bin"},
                        cluster={"topology": "pin"})
    proc, log = activated(tmp_path, cfg, lsock)
    lsock.close()
    try:
        assert proc.wait(timeout=scaled(30)) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    from test_systemd import read
    assert "is not loopback or unix, so [listen] allow_uids/allow_gids " \
        "cannot identify who connects" in read(log), read(log)
