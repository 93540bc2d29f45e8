"""systemd integration against a real Cassandra 5.0 node: the sd_notify
messages (READY=1 once listening, RELOADING=1/READY=1 around reloads,
STOPPING=1 on SIGTERM, WATCHDOG=1 at half of WATCHDOG_USEC) received on a
fake NOTIFY_SOCKET, and socket activation (the listening socket passed as
fd 3 with LISTEN_FDS/LISTEN_PID).  systemd itself is not running here; the
unit files are checked separately with systemd-analyze (scripts/test)."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import cqlwire
from tunnel import command, free_port, scaled, write_ini


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait(self, pred, timeout=None):
        """Collect messages until one satisfies ${pred}; return it."""
        deadline = time.monotonic() + (timeout or scaled(20))
        while True:
            for m in self.messages:
                if pred(m):
                    self.messages.remove(m)
                    return m
            left = deadline - time.monotonic()
            assert left > 0, "no matching notification in %r" % \
                self.messages
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append(dict(line.split("=", 1) for line in
                                      data.decode().split("\n") if line))

    def close(self):
        self.sock.close()


def start(tmp_path, sections, env=None, argv_prefix=(), pass_fds=()):
    ini = str(tmp_path / "cqltunnel.ini")
    write_ini(ini, sections)
    log = open(str(tmp_path / "cqltunnel.log"), "w")
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.Popen(list(argv_prefix) + command("-c", ini),
                            stdout=log, stderr=subprocess.STDOUT, env=e,
                            pass_fds=pass_fds)
    return proc, str(tmp_path / "cqltunnel.log")


def read(path):
    with open(path) as f:
        return f.read()


def test_notify_lifecycle(tmp_path, tunnel_config):
    port = free_port()
    cfg = tunnel_config(listen={"address": "127.0.0.1:%d" % port})
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    proc, log = start(tmp_path, cfg, env={
        "NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "400000"})
    try:
        ready = ns.wait(lambda m: m.get("READY") == "1")
        assert ready["STATUS"] == "listening on 127.0.0.1:%d" % port
        # The listener is up by the time READY=1 is sent.
        s = cqlwire.connect("127.0.0.1", port)
        op, _ = cqlwire.query(s, "SELECT key FROM system.local")
        assert op == cqlwire.OP_RESULT
        # Watchdog pings at half the interval.
        t0 = time.monotonic()
        for _ in range(3):
            ns.wait(lambda m: m.get("WATCHDOG") == "1", timeout=2)
        assert time.monotonic() - t0 < 1.5

        # A reload: RELOADING=1, then READY=1.
        proc.send_signal(signal.SIGHUP)
        ns.wait(lambda m: m.get("RELOADING") == "1")
        m = ns.wait(lambda m: m.get("READY") == "1")
        assert m["STATUS"] == "configuration reloaded"
        # A broken configuration: still READY=1, saying so.
        with open(str(tmp_path / "cqltunnel.ini"), "a") as f:
            f.write("\n[tls]\nbogus = 1\n")
        proc.send_signal(signal.SIGHUP)
        ns.wait(lambda m: m.get("RELOADING") == "1")
        m = ns.wait(lambda m: m.get("READY") == "1")
        assert m["STATUS"] == "reload failed; old configuration kept"
        op, _ = cqlwire.query(s, "SELECT key FROM system.local", stream=3)
        assert op == cqlwire.OP_RESULT

        # SIGTERM: STOPPING=1, then a clean exit once the session ends.
        proc.send_signal(signal.SIGTERM)
        ns.wait(lambda m: m.get("STOPPING") == "1")
        s.close()
        assert proc.wait(timeout=scaled(30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()
    text = read(log)
    assert "systemd watchdog: pinging every 200 ms" in text
    assert "ERROR: AddressSanitizer" not in text


def test_socket_activation(tmp_path, tunnel_config):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    # [listen] address names another port: the passed socket wins.
    cfg = tunnel_config(listen={"address": "127.0.0.1:%d" % free_port()},
                        cluster={"topology": "pin"})
    fd = lsock.fileno()
    # What systemd does: the socket as fd 3, LISTEN_PID = the service's pid.
    wrapper = [sys.executable, "-c",
               "import os, sys; os.dup2(%d, 3); "
               "os.environ['LISTEN_PID'] = str(os.getpid()); "
               "os.environ['LISTEN_FDS'] = '1'; "
               "os.execvp(sys.argv[1], sys.argv[1:])" % fd]
    proc, log = start(tmp_path, cfg, argv_prefix=wrapper, pass_fds=(fd,))
    lsock.close()
    try:
        deadline = time.monotonic() + scaled(20)
        while "listening on" not in read(log):
            assert time.monotonic() < deadline, read(log)
            assert proc.poll() is None, read(log)
            time.sleep(0.1)
        assert ("using the listening socket passed by systemd "
                "(127.0.0.1:%d)" % port) in read(log)
        s = cqlwire.connect("127.0.0.1", port)
        op, _ = cqlwire.query(s, "SELECT key FROM system.local")
        assert op == cqlwire.OP_RESULT
        s.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=scaled(30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_credentials_directory(tmp_path, tunnel_config):
    """password_file = %credentials%/NAME, as with LoadCredential=."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cql-password").write_text("cassandra\n")
    (creds / "cql-password").chmod(0o400)
    port = free_port()
    cfg = tunnel_config(listen={"address": "127.0.0.1:%d" % port},
                        auth={"password_file":
                              "%credentials%/cql-password"})
    ini = str(tmp_path / "check.ini")
    write_ini(ini, cfg)
    r = subprocess.run(command("-t", "-c", ini), capture_output=True,
                       text=True, env=dict(os.environ,
                                           CREDENTIALS_DIRECTORY=str(creds)))
    assert r.returncode == 0, r.stderr
    env = dict(os.environ)
    env.pop("CREDENTIALS_DIRECTORY", None)
    r = subprocess.run(command("-t", "-c", ini), capture_output=True,
                       text=True, env=env)
    assert r.returncode == 1
    assert "[auth] password_file: %credentials%/ needs " \
        "$CREDENTIALS_DIRECTORY" in r.stderr
    proc, log = start(tmp_path, cfg,
                      env={"CREDENTIALS_DIRECTORY": str(creds)})
    try:
        deadline = time.monotonic() + scaled(20)
        while "listening on" not in read(log):
            assert time.monotonic() < deadline, read(log)
            time.sleep(0.1)
        s = cqlwire.connect("127.0.0.1", port)
        assert cqlwire.query(s, "SELECT key FROM system.local")[0] == \
            cqlwire.OP_RESULT
        s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=scaled(30))
    assert rc == 0, read(log)
