"""Run the real cqltunnel binary for the integration tests.

A Tunnel writes an INI file from a dict of sections, starts the binary on a
free loopback port, waits until it listens, and on stop() sends SIGTERM and
checks that it exits cleanly.  Its log (stderr) is kept for assertions.
"""

import os
import signal
import socket
import subprocess
import time


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wrapper():
    """The command words CQLTUNNEL_WRAPPER puts before every run of the
    binary: the 'valgrind' meson tests set it to valgrind with leak
    checking (an error or a definite or indirect leak makes the daemon
    exit 3).  [] if unset."""
    return os.environ.get("CQLTUNNEL_WRAPPER", "").split()


def slowdown():
    """How many times longer than natively the tunnel may take for
    anything: CQLTUNNEL_SLOWDOWN if set, else 10 under CQLTUNNEL_WRAPPER
    (valgrind runs the daemon some 30 times slower, and every daemon starts
    cold: its first TLS handshake takes ~2 s on a busy 2-core machine),
    else 1.  Tests scale their timeouts (and the tunnel's own, where they
    set them short) with it."""
    v = os.environ.get("CQLTUNNEL_SLOWDOWN")
    if v:
        return float(v)
    return 10.0 if wrapper() else 1.0


def scaled(seconds):
    """${seconds} times slowdown()."""
    return seconds * slowdown()


def binary():
    path = os.environ.get("CQLTUNNEL_BIN")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "build", "cqltunnel")
    if not os.access(path, os.X_OK):
        raise RuntimeError("cqltunnel binary not found at %s (set "
                           "CQLTUNNEL_BIN)" % path)
    return path


def command(*args):
    """The argv that runs the binary with ${args}, under CQLTUNNEL_WRAPPER
    when set (use this, not binary(), so that valgrind sees every run)."""
    return wrapper() + [binary()] + list(args)


def write_ini(path, sections):
    with open(path, "w") as f:
        for name, keys in sections.items():
            f.write("[%s]\n" % name)
            for k, v in keys.items():
                if v is None:
                    continue
                f.write("%s = %s\n" % (k, v))
            f.write("\n")


class Tunnel:
    def __init__(self, workdir, sections, name="tunnel", port=None):
        self.workdir = workdir
        self.name = name
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.sections = {k: dict(v) for k, v in sections.items()}
        self.sections.setdefault("listen", {})
        self.sections["listen"].setdefault("address",
                                           "%s:%d" % (self.host, self.port))
        self.ini = os.path.join(workdir, name + ".ini")
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        # Command words before the binary (e.g. unshare ... sh -c ...),
        # and then CQLTUNNEL_WRAPPER's (see wrapper()): every tunnel runs
        # under it, and its error exit status fails stop()'s caller.
        self.prefix = []
        self.wrapper = wrapper()

    def check(self):
        """Run `cqltunnel -t` on this config; returns (rc, output)."""
        write_ini(self.ini, self.sections)
        p = subprocess.run(self.prefix + command("-t", "-c", self.ini),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=scaled(30))
        return p.returncode, p.stdout.decode()

    def start(self, timeout=None):
        if timeout is None:
            timeout = scaled(10)
        write_ini(self.ini, self.sections)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.prefix + self.wrapper
                                     + [binary(), "-c", self.ini],
                                     stdout=self._log, stderr=self._log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("cqltunnel exited with %d:\n%s"
                                   % (self.proc.returncode, self.log()))
            if "listening on" in self.log():
                return self
            time.sleep(0.05)
        raise RuntimeError("cqltunnel did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=None):
        deadline = time.time() + (timeout or scaled(10))
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        raise AssertionError("%r not in the tunnel log:\n%s"
                             % (text, self.log()))

    def count_log(self, text):
        """How many times ${text} occurs in the log so far."""
        return self.log().count(text)

    def wait_log_count(self, text, n, timeout=None):
        """Wait until ${text} occurs at least ${n} times in the log."""
        deadline = time.time() + (timeout or scaled(10))
        while time.time() < deadline:
            if self.count_log(text) >= n:
                return True
            time.sleep(0.02)
        raise AssertionError("%r not %d times in the tunnel log:\n%s"
                             % (text, n, self.log()))

    def sighup(self):
        """Ask the daemon to reload its configuration."""
        self.proc.send_signal(signal.SIGHUP)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Stop the daemon and return its exit status (killing it if it
        does not exit in time, which counts as a failure)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout or max(40, scaled(12)))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                raise AssertionError("cqltunnel ignored signal %d:\n%s"
                                     % (sig, self.log()))
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        rc = self.stop()
        if exc[0] is None:
            assert rc == 0, "cqltunnel exited with %r:\n%s" % (rc, self.log())
        sanitizer = [line for line in self.log().splitlines()
                     if "Sanitizer" in line or "runtime error:" in line]
        assert not sanitizer, "\n".join(sanitizer)
        return False
