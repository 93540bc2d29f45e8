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


def binary():
    path = os.environ.get("CQLTUNNEL_BIN")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "build", "cqltunnel")
    if not os.access(path, os.X_OK):
        raise RuntimeError("cqltunnel binary not found at %s (set "
                           "CQLTUNNEL_BIN)" % path)
    return path


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
        # Command words before the binary (e.g. unshare ... sh -c ...).
        # CQLTUNNEL_WRAPPER runs every tunnel under a tool: the 'valgrind'
        # meson test sets it to valgrind with leak checking, whose error
        # exit status then fails stop().
        self.prefix = os.environ.get("CQLTUNNEL_WRAPPER", "").split()

    def check(self):
        """Run `cqltunnel -t` on this config; returns (rc, output)."""
        write_ini(self.ini, self.sections)
        p = subprocess.run([binary(), "-t", "-c", self.ini],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        return p.returncode, p.stdout.decode()

    def start(self, timeout=None):
        if timeout is None:
            timeout = 60 if self.prefix else 10
        write_ini(self.ini, self.sections)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.prefix + [binary(), "-c", self.ini],
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

    def wait_log(self, text, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        raise AssertionError("%r not in the tunnel log:\n%s"
                             % (text, self.log()))

    def count_log(self, text):
        """How many times ${text} occurs in the log so far."""
        return self.log().count(text)

    def wait_log_count(self, text, n, timeout=10):
        """Wait until ${text} occurs at least ${n} times in the log."""
        deadline = time.time() + timeout
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

    def stop(self, sig=signal.SIGTERM, timeout=40):
        """Stop the daemon and return its exit status (killing it if it
        does not exit in time, which counts as a failure)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
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
