#!/usr/bin/env python3
"""A real Apache Cassandra 5.0 node for the integration tests and the demo.

The node speaks TLS only on its native (CQL) port, requires a client
certificate signed by the test CA (mutual TLS) and authenticates with
PasswordAuthenticator (default superuser cassandra/cassandra): the setup
cqltunnel exists for.

Nothing comes from apache.org and nothing runs in Docker:

* fetch_cassandra() resolves org.apache.cassandra:cassandra-all and its
  runtime dependencies from Maven Central with tests/cassandra/pom.xml
  (there is no binary tarball on Central for 4.x/5.x) into a cache dir;
* make_pki() makes a throwaway PKI with the openssl command line;
* CassandraNode writes cassandra.yaml and logback.xml into a fresh directory
  and starts org.apache.cassandra.service.CassandraDaemon with the Debian
  OpenJDK 17 (Cassandra 5.0 needs JDK 11 or 17: it calls
  System.setSecurityManager, which JDK 24+ refuses).

Standard library only; cassandra-driver is used for the readiness check when
it can be imported (a small built-in CQL v4 client is used otherwise).

Typical use:

    pki = make_pki(os.path.join(base, "pki"))
    with CassandraNode(base, pki=pki) as node:     # start() + wait_ready()
        ... connect to node.host:node.native_port with TLS ...

Command line (run it with the venv's python for the driver checks):

    cassandra_node.py fetch                 # resolve jars, print lib dir
    cassandra_node.py pki DIR               # make the test PKI in DIR
    cassandra_node.py --base DIR start      # start a node, leave it running
    cassandra_node.py --base DIR status
    cassandra_node.py --base DIR stop
    cassandra_node.py [--base DIR] selfcheck  # start, smoke test, stop

Environment: CQLTUNNEL_CACHE (default ~/.cache/cqltunnel) holds the jars;
CQLTUNNEL_JAVA overrides the java binary; CQLTUNNEL_KEEP_NODES=1 keeps node
directories (data included) after stop() for post-mortems.
"""

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

CASSANDRA_VERSION = "5.0.6"

HERE = os.path.dirname(os.path.abspath(__file__))
POM = os.path.join(HERE, "..", "cassandra", "pom.xml")

# The Debian OpenJDK 17 (amd64 first, then any other architecture).  Never
# the Temurin 25 that may be the default "java" on the project's machines.
JAVA_CANDIDATES = (
    "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
    "/usr/lib/jvm/java-17-openjdk-*/bin/java",
    "/usr/lib/jvm/java-11-openjdk-*/bin/java",
)

# Written by Cassandra once the native transport accepts connections.
READY_LINE = "Starting listening for CQL clients"
# Startup failures worth reporting early (the JVM usually exits right after).
FATAL_LINES = ("Exception encountered during startup",
               "Fatal configuration error")

SUPERUSER = ("cassandra", "cassandra")
CLIENT_KEY_PASSPHRASE = "cqltunnel-test-passphrase"


def log(msg):
    """Progress messages go to stderr (pytest shows them on failure)."""
    sys.stderr.write("cassandra_node: %s\n" % msg)
    sys.stderr.flush()


def cache_dir():
    """$CQLTUNNEL_CACHE or ~/.cache/cqltunnel."""
    return os.environ.get("CQLTUNNEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "cqltunnel")


def find_java():
    """The java binary Cassandra runs on: $CQLTUNNEL_JAVA or a JDK 17."""
    env = os.environ.get("CQLTUNNEL_JAVA")
    if env:
        return env
    for pattern in JAVA_CANDIDATES:
        for path in sorted(glob.glob(pattern)):
            if os.access(path, os.X_OK):
                return path
    raise RuntimeError("no OpenJDK 17 found under /usr/lib/jvm (apt-get "
                       "install openjdk-17-jdk-headless, or set "
                       "CQLTUNNEL_JAVA)")


@contextlib.contextmanager
def _locked(path):
    """An exclusive flock on ${path}: serialises parallel test processes
    that fetch jars or make the PKI in the same directory."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# Cassandra jars from Maven Central

def fetch_cassandra(cache=None, version=CASSANDRA_VERSION):
    """Resolve cassandra-all ${version} and its runtime closure into
    ${cache}/cassandra-${version}/lib with Maven; return that lib dir.

    Idempotent: a stamp file (holding a hash of the pom and the version) is
    written only after mvn succeeded, so an interrupted copy is redone and a
    changed pom re-resolves.  The jars go to a temporary directory first and
    are renamed into place."""
    cache = cache or cache_dir()
    home = os.path.join(cache, "cassandra-%s" % version)
    lib = os.path.join(home, "lib")
    stamp = os.path.join(home, "lib.stamp")
    with open(POM, "rb") as f:
        want = hashlib.sha256(f.read() + version.encode()).hexdigest()

    def done():
        try:
            with open(stamp) as f:
                have = f.read().strip()
        except OSError:
            return False
        return have == want and os.path.exists(
            os.path.join(lib, "cassandra-all-%s.jar" % version))

    if done():
        return lib
    with _locked(os.path.join(home, ".lock")):
        if done():
            return lib
        mvn = shutil.which("mvn")
        if not mvn:
            raise RuntimeError("mvn not found (apt-get install maven)")
        tmp = tempfile.mkdtemp(prefix="lib.", dir=home)
        env = dict(os.environ)
        # Run Maven itself on the same JDK 17 (whatever "java" is).
        env["JAVA_HOME"] = os.path.dirname(os.path.dirname(
            os.path.realpath(find_java())))
        cmd = [mvn, "-B", "-q", "-f", os.path.abspath(POM), "package",
               "-Dcassandra.version=%s" % version,
               "-Dcassandra.lib=%s" % tmp]
        log("resolving cassandra-all %s from Maven Central" % version)
        t0 = time.monotonic()
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError("mvn failed (%d):\n%s" % (
                r.returncode, r.stdout[-4000:]))
        if os.path.isdir(lib):
            shutil.rmtree(lib)
        os.rename(tmp, lib)
        with open(stamp, "w") as f:
            f.write(want + "\n")
        log("%d jars in %s (%.1f s)" % (len(os.listdir(lib)), lib,
                                        time.monotonic() - t0))
    return lib


# ---------------------------------------------------------------------------
# Test PKI

# Files make_pki() writes, by the key they have in its result.
PKI_FILES = {
    "ca_crt": "ca.crt", "ca_key": "ca.key",
    "other_ca_crt": "other-ca.crt", "other_ca_key": "other-ca.key",
    "node_crt": "node.crt", "node_key": "node.key",
    "node_keystore": "node-keystore.pem",
    "client_crt": "client.crt", "client_key": "client.key",
    "client_enc_key": "client-enc.key",
    "client_key_pass": "client-key-pass.txt",
    "client_rsa_enc_key": "client-rsa-enc.key",
    "other_client_crt": "other-client.crt",
    "other_client_key": "other-client.key",
}

# Leaf certificate extensions (openssl -extfile syntax).  With the CA's
# (_make_ca) strict enough for Python 3.13's VERIFY_X509_STRICT (critical
# CA keyUsage, key identifiers).
_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""
# The node certificate also names 127.0.0.2 and .3 so that a later
# three-node cluster on 127.0.0.N can share it.
_NODE_SAN = "subjectAltName = IP:127.0.0.1, IP:127.0.0.2, IP:127.0.0.3, " \
            "DNS:localhost\n"


def _openssl(*args, cwd):
    r = subprocess.run(("openssl",) + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args),
                                                       r.stdout))


def _serial():
    return "0x" + os.urandom(12).hex()


def _make_ca(d, name, cn):
    """Self-signed RSA-2048 CA certificate + unencrypted PKCS#8 key."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-noenc",
             "-keyout", name + ".key", "-out", name + ".crt",
             "-days", "3650", "-subj", "/CN=" + cn, "-set_serial", _serial(),
             "-config", "/dev/null",     # no distro defaults: only these
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=d)


def _make_leaf(d, name, cn, ca, ext):
    """RSA-2048 key (unencrypted PKCS#8) + certificate signed by ${ca}."""
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    _openssl("req", "-newkey", "rsa:2048", "-noenc", "-keyout",
             name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
             "-config", "/dev/null", cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt",
             "-CAkey", ca + ".key", "-set_serial", _serial(), "-days",
             "3650", "-sha256", "-extfile", name + ".ext", "-out",
             name + ".crt", cwd=d)
    os.unlink(os.path.join(d, name + ".csr"))
    os.unlink(os.path.join(d, name + ".ext"))


def make_pki(directory):
    """Make (once) the test PKI in ${directory}; return {key: path} for the
    keys of PKI_FILES plus "dir" and "client_key_passphrase" (the text).

    * ca: the test CA; the node trusts client certificates it signed.
    * other-ca: an unrelated CA; other-client is signed by it and rejected.
    * node: server certificate (SAN IP:127.0.0.1..3, DNS:localhost,
      serverAuth); node-keystore.pem = PKCS#8 key + node cert + CA cert, the
      single PEM file PEMBasedSslContextFactory takes as "keystore".
    * client: clientAuth certificate; client.key is unencrypted PKCS#8,
      client-enc.key the same key as encrypted PKCS#8 (passphrase in
      client-key-pass.txt, mode 0600, one line), client-rsa-enc.key the same
      key as a traditional "BEGIN RSA PRIVATE KEY" with Proc-Type/DEK-Info.

    All keys are RSA-2048: Cassandra's PEM reader wants PKCS#8 (any
    algorithm) and the traditional encrypted form exists for RSA only.
    Files are generated in a temporary subdirectory and moved into place,
    so a half-made PKI is never seen; an existing complete one is reused."""
    directory = os.path.abspath(directory)
    paths = {k: os.path.join(directory, v) for k, v in PKI_FILES.items()}
    paths["dir"] = directory
    paths["client_key_passphrase"] = CLIENT_KEY_PASSPHRASE

    def complete():
        return all(os.path.exists(paths[k]) for k in PKI_FILES)

    if complete():
        return paths
    os.makedirs(directory, exist_ok=True)
    with _locked(os.path.join(directory, ".lock")):
        if complete():
            return paths
        t = tempfile.mkdtemp(prefix=".pki.", dir=directory)
        try:
            _make_ca(t, "ca", "cqltunnel test CA")
            _make_ca(t, "other-ca", "cqltunnel untrusted CA")
            _make_leaf(t, "node", "localhost", "ca",
                       _LEAF_EXT.format(eku="serverAuth") + _NODE_SAN)
            _make_leaf(t, "client", "cqltunnel-client", "ca",
                       _LEAF_EXT.format(eku="clientAuth"))
            _make_leaf(t, "other-client", "cqltunnel-untrusted-client",
                       "other-ca", _LEAF_EXT.format(eku="clientAuth"))
            with open(os.path.join(t, "node-keystore.pem"), "w") as out:
                for part in ("node.key", "node.crt", "ca.crt"):
                    with open(os.path.join(t, part)) as f:
                        out.write(f.read())
            passfile = os.path.join(t, "client-key-pass.txt")
            fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600)
            with os.fdopen(fd, "w") as f:
                f.write(CLIENT_KEY_PASSPHRASE + "\n")
            _openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in",
                     "client.key", "-passout", "file:client-key-pass.txt",
                     "-out", "client-enc.key", cwd=t)
            _openssl("rsa", "-in", "client.key", "-traditional", "-aes256",
                     "-passout", "file:client-key-pass.txt",
                     "-out", "client-rsa-enc.key", cwd=t)
            _check_pki(t)
            for name in PKI_FILES.values():
                os.chmod(os.path.join(t, name),
                         0o600 if name.endswith((".key", ".txt"))
                         or name == "node-keystore.pem" else 0o644)
                os.replace(os.path.join(t, name),
                           os.path.join(directory, name))
        finally:
            shutil.rmtree(t, ignore_errors=True)
    return paths


def _check_pki(d):
    """Fail loudly if openssl wrote other formats than the tests rely on."""
    def head(name):
        with open(os.path.join(d, name)) as f:
            return f.read()
    for name in ("node.key", "client.key", "other-client.key"):
        if not head(name).startswith("-----BEGIN PRIVATE KEY-----"):
            raise RuntimeError("%s is not unencrypted PKCS#8" % name)
    if not head("client-enc.key").startswith(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----"):
        raise RuntimeError("client-enc.key is not encrypted PKCS#8")
    rsa = head("client-rsa-enc.key")
    if not (rsa.startswith("-----BEGIN RSA PRIVATE KEY-----")
            and "Proc-Type: 4,ENCRYPTED" in rsa and "DEK-Info:" in rsa):
        raise RuntimeError("client-rsa-enc.key is not a traditional "
                           "encrypted RSA key")


def client_ssl_context(pki, cert=True, ca="ca_crt"):
    """An ssl.SSLContext for a direct client of the node: verifies the node
    against the test CA (hostname included) and presents the client
    certificate unless cert is False (or presents "other_client" when
    cert == "other")."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki[ca])
    if cert == "other":
        ctx.load_cert_chain(pki["other_client_crt"], pki["other_client_key"])
    elif cert:
        ctx.load_cert_chain(pki["client_crt"], pki["client_key"])
    return ctx


# ---------------------------------------------------------------------------
# A minimal CQL v4 client: enough to log in and learn the authenticator

class CqlLoginError(Exception):
    """The node answered ERROR during the login (code, message)."""

    def __init__(self, code, message):
        super().__init__("code=%04x %s" % (code, message))
        self.code = code
        self.message = message


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the node")
        buf += chunk
    return buf


def _cql_request(sock, opcode, body):
    sock.sendall(struct.pack(">BBhBi", 0x04, 0, 1, opcode, len(body)) + body)
    _, _, _, op, length = struct.unpack(">BBhBi", _read_exact(sock, 9))
    reply = _read_exact(sock, length)
    if op == 0x00:                              # ERROR: [int] code, [string]
        code, n = struct.unpack(">iH", reply[:6])
        raise CqlLoginError(code, reply[6:6 + n].decode("utf-8", "replace"))
    return op, reply


def probe_login(host, port, ssl_context, username=SUPERUSER[0],
                password=SUPERUSER[1], timeout=10.0):
    """Log in over TLS with protocol v4 and SASL PLAIN, without any driver.

    Returns the authenticator class name the node sent in AUTHENTICATE
    (None if it answered READY at once).  Raises CqlLoginError for an
    ERROR reply (e.g. bad credentials), ssl.SSLError/OSError for TLS and
    connection failures."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ssl_context.wrap_socket(raw, server_hostname=host) as s:
            opts = {"CQL_VERSION": "3.0.0"}
            body = struct.pack(">H", len(opts))
            for k, v in opts.items():
                for item in (k, v):
                    body += struct.pack(">H", len(item)) + item.encode()
            op, reply = _cql_request(s, 0x01, body)          # STARTUP
            if op == 0x02:                                   # READY
                return None
            if op != 0x03:
                raise ConnectionError("unexpected opcode 0x%02x" % op)
            (n,) = struct.unpack(">H", reply[:2])
            authenticator = reply[2:2 + n].decode()
            token = b"\0" + username.encode() + b"\0" + password.encode()
            op, _ = _cql_request(s, 0x0F,                    # AUTH_RESPONSE
                                 struct.pack(">i", len(token)) + token)
            if op != 0x10:                                   # AUTH_SUCCESS
                raise ConnectionError("unexpected opcode 0x%02x after "
                                      "AUTH_RESPONSE" % op)
            return authenticator


# ---------------------------------------------------------------------------
# The node

def free_port(host="127.0.0.1"):
    """A TCP port that is free on ${host} right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# JVM flags: Cassandra 5.0's conf/jvm-server.options + jvm17-server.options
# minus production-only settings (AlwaysPreTouch, NUMA, heap dumps, GC logs),
# plus the JDK-only exports bin/cassandra.in.sh adds when javac is present.
_JPMS_EXPORTS = (
    "java.base/jdk.internal.misc", "java.management.rmi/"
    "com.sun.jmx.remote.internal.rmi", "java.management/"
    "com.sun.jmx.remote.security", "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server", "java.sql/java.sql", "java.base/java.lang.ref",
    "jdk.unsupported/sun.misc", "jdk.attach/sun.tools.attach",
    "jdk.compiler/com.sun.tools.javac.file",
)
_JPMS_OPENS = (
    "java.base/java.lang.module", "java.base/jdk.internal.loader",
    "java.base/jdk.internal.ref", "java.base/jdk.internal.reflect",
    "java.base/jdk.internal.math", "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar",
    "jdk.management/com.sun.management.internal", "java.base/sun.nio.ch",
    "java.base/java.io", "java.base/java.lang.reflect", "java.base/java.lang",
    "java.base/java.util", "java.base/java.nio",
    "jdk.compiler/com.sun.tools.javac",
)
_JVM_FLAGS = (
    "-Xss256k", "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1", "-XX:MaxGCPauseMillis=300",
    "-XX:ParallelGCThreads=2", "-XX:ConcGCThreads=1",
    "-XX:+ExitOnOutOfMemoryError", "-XX:+PerfDisableSharedMem",
    # No JIT tiers beyond C1 for the short-lived test JVM: starts faster.
    "-XX:TieredStopAtLevel=1",
    "-ea", "-da:net.openhft...",
    "-Djava.net.preferIPv4Stack=true", "-Dchronicle.analytics.disable=true",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    # Test-only speedups (CassandraRelevantProperties):
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.superuser_setup_delay_ms=0",
    "-Dcassandra.skip_sync=true",
    "-Dcassandra.auth_bcrypt_gensalt_log2_rounds=4",
    "-Dcassandra.available_processors=2",
    "-Dcassandra-foreground=yes",
)

_LOGBACK = """\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder>
      <pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""

# Registry of running nodes, killed when the Python process exits.
_RUNNING = set()


@atexit.register
def _kill_running_nodes():
    for node in list(_RUNNING):
        node.stop(graceful=False)


def _die_with_parent():
    """preexec_fn: SIGKILL the JVM when the process that started it dies,
    even by SIGKILL (Linux PR_SET_PDEATHSIG), so no JVM is ever orphaned."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:          # the parent died before prctl
        os._exit(1)


def _yaml(value):
    """A YAML scalar: JSON strings, numbers and booleans are valid YAML."""
    return json.dumps(value)


class CassandraNode:
    """One Cassandra 5.0 node on ${host}: TLS-only native port with client
    certificates required, PasswordAuthenticator, superuser cassandra.

    base_dir: where the node's fresh directory is made (a temporary one,
      removed by stop(), if None).  node_dir = base_dir/node-XXXX holds
      conf/, logs/ (system.log, stdout.log), storage/ and tmp/.
    pki: make_pki() result; default make_pki(base_dir/pki).
    lib_dir: Cassandra jars; default fetch_cassandra().
    host: listen, rpc and seed address (127.0.0.N for a local cluster).
    native_port / storage_port: default free ports on ${host}.
    seeds: "host:port,..." of the seed nodes (default: this node).
    initial_token: the node's single token (num_tokens 1).
    heap: -Xms/-Xmx.
    authorizer: AllowAllAuthorizer or CassandraAuthorizer.
    jdk_tls: force JDK TLS instead of netty-tcnative (BoringSSL).
    die_with_parent: kill the JVM when this Python process dies.
    extra_yaml: {key: value} top-level cassandra.yaml settings to add or
      replace (scalars; JSON-encoded).
    jvm_args: more JVM arguments (e.g. -Dcassandra.ring_delay_ms=...).
    java: the java binary (default find_java()).

    For a local cluster give every node the same pki, storage_port and
    seeds, its own host (127.0.0.N) and initial_token, and
    extra_yaml={"auto_bootstrap": False} to the non-seed nodes.
    """

    def __init__(self, base_dir=None, *, pki=None, lib_dir=None,
                 host="127.0.0.1", native_port=None, storage_port=None,
                 seeds=None, initial_token=0, cluster_name="cqltunnel-it",
                 heap="512m", authorizer="AllowAllAuthorizer", jdk_tls=False,
                 die_with_parent=True, extra_yaml=None, jvm_args=(),
                 java=None):
        self._own_base = base_dir is None
        self.base_dir = os.path.abspath(
            base_dir or tempfile.mkdtemp(prefix="cqltunnel-cassandra-"))
        os.makedirs(self.base_dir, exist_ok=True)
        self.pki = pki or make_pki(os.path.join(self.base_dir, "pki"))
        self.lib_dir = lib_dir
        self.host = host
        self.native_port = native_port or free_port(host)
        self.storage_port = storage_port or free_port(host)
        self.seeds = seeds or "%s:%d" % (host, self.storage_port)
        self.initial_token = initial_token
        self.cluster_name = cluster_name
        self.heap = heap
        self.authorizer = authorizer
        self.jdk_tls = jdk_tls
        self.die_with_parent = die_with_parent
        self.extra_yaml = dict(extra_yaml or {})
        self.jvm_args = list(jvm_args)
        self.java = java
        self.node_dir = None
        self.log_path = None            # system.log
        self.stdout_path = None         # the JVM's stdout + stderr
        self.yaml_path = None
        self.logback_path = None
        self.pid = None
        self.proc = None
        self.started_at = None
        self.ready_after = None         # seconds from start() to ready

    # -- files --------------------------------------------------------------

    def _write_config(self):
        conf = os.path.join(self.node_dir, "conf")
        for sub in ("conf", "logs", "storage", "tmp", "triggers"):
            os.makedirs(os.path.join(self.node_dir, sub), exist_ok=True)
        settings = {
            "cluster_name": self.cluster_name,
            "num_tokens": 1,
            "initial_token": str(self.initial_token),
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "endpoint_snitch": "SimpleSnitch",
            "listen_address": self.host,
            "rpc_address": self.host,
            "storage_port": self.storage_port,
            "native_transport_port": self.native_port,
            "start_native_transport": True,
            # data, commitlog, hints, saved_caches, cdc_raw: under
            # -Dcassandra.storagedir.
            "commitlog_sync": "periodic",
            "commitlog_sync_period": "10s",
            "commitlog_segment_size": "8MiB",
            "auto_snapshot": False,
            "memtable_allocation_type": "heap_buffers",
            "concurrent_compactors": 1,
            "storage_compatibility_mode": "NONE",
            "authenticator": "PasswordAuthenticator",
            "authorizer": self.authorizer,
            "role_manager": "CassandraRoleManager",
            # No auth caches: role and password changes apply at once.
            "credentials_validity": "0ms",
            "roles_validity": "0ms",
            "permissions_validity": "0ms",
        }
        settings.update(self.extra_yaml)
        lines = ["# Written by tests/integration/cassandra_node.py"]
        lines += ["%s: %s" % (k, _yaml(v)) for k, v in settings.items()]
        lines += [
            "seed_provider:",
            "  - class_name: org.apache.cassandra.locator.SimpleSeedProvider",
            "    parameters:",
            "      - seeds: %s" % _yaml(self.seeds),
            # TLS only on the native port, client certificate required.
            # keystore: PKCS#8 key + certificate chain in one PEM file;
            # truststore: the CA(s) client certificates must chain to.
            "client_encryption_options:",
            "  enabled: true",
            "  optional: false",
            "  ssl_context_factory:",
            "    class_name: "
            "org.apache.cassandra.security.PEMBasedSslContextFactory",
            "  keystore: %s" % _yaml(self.pki["node_keystore"]),
            "  truststore: %s" % _yaml(self.pki["ca_crt"]),
            "  require_client_auth: true",
        ]
        self.yaml_path = os.path.join(conf, "cassandra.yaml")
        with open(self.yaml_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.logback_path = os.path.join(conf, "logback.xml")
        with open(self.logback_path, "w") as f:
            f.write(_LOGBACK.format(log=self.log_path))

    def command(self):
        """The java command line (after start() chose node_dir)."""
        lib = self.lib_dir
        jamm = sorted(glob.glob(os.path.join(lib, "jamm-*.jar")))
        d = self.node_dir
        cmd = [self.java or find_java(),
               "-Xms" + self.heap, "-Xmx" + self.heap]
        cmd += _JVM_FLAGS
        for e in _JPMS_EXPORTS:
            cmd += ["--add-exports", e + "=ALL-UNNAMED"]
        for o in _JPMS_OPENS:
            cmd += ["--add-opens", o + "=ALL-UNNAMED"]
        if jamm:
            cmd.append("-javaagent:" + jamm[0])
        if self.jdk_tls:
            cmd.append("-Dcassandra.disable_tcactive_openssl=true")
        cmd += self.jvm_args
        cmd += [
            "-Djava.io.tmpdir=" + os.path.join(d, "tmp"),
            "-Dcassandra.config=file://" + self.yaml_path,
            "-Dcassandra.storagedir=" + os.path.join(d, "storage"),
            "-Dcassandra.logdir=" + os.path.join(d, "logs"),
            "-Dcassandra.triggers_dir=" + os.path.join(d, "triggers"),
            "-Dlogback.configurationFile=" + self.logback_path,
            "-cp", os.path.join(d, "conf") + ":" + os.path.join(lib, "*"),
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return cmd

    # -- lifecycle ----------------------------------------------------------

    def start(self):
        """Make a fresh node directory, write the config, launch the JVM.
        Returns at once; call wait_ready() next."""
        if self.proc is not None:
            raise RuntimeError("node already started")
        self.lib_dir = self.lib_dir or fetch_cassandra()
        self.node_dir = tempfile.mkdtemp(prefix="node-", dir=self.base_dir)
        self.log_path = os.path.join(self.node_dir, "logs", "system.log")
        self.stdout_path = os.path.join(self.node_dir, "logs", "stdout.log")
        self._write_config()
        env = dict(os.environ, MALLOC_ARENA_MAX="4")
        env.pop("JAVA_TOOL_OPTIONS", None)
        with open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.node_dir, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,     # no terminal ^C to the JVM
                preexec_fn=_die_with_parent if self.die_with_parent else None)
        self.pid = self.proc.pid
        self.started_at = time.monotonic()
        with open(os.path.join(self.node_dir, "cassandra.pid"), "w") as f:
            f.write("%d\n" % self.pid)
        _RUNNING.add(self)
        log("started pid %d on %s native %d storage %d in %s" % (
            self.pid, self.host, self.native_port, self.storage_port,
            self.node_dir))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=60):
        """The last lines of system.log and of the JVM's stdout/stderr."""
        out = []
        for path in (self.log_path, self.stdout_path):
            if path and os.path.exists(path):
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-lines:]
                out.append("---- %s (last %d lines)\n%s" % (
                    path, len(tail), "".join(tail)))
        return "\n".join(out)

    def _fail(self, why):
        """Kill the node, keep its directory for a post-mortem, raise."""
        msg = "Cassandra node %s:%d: %s (node dir kept: %s)\n%s" % (
            self.host, self.native_port, why, self.node_dir, self.log_tail())
        self.stop(graceful=False, keep=True)
        raise RuntimeError(msg)

    def _log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_ready(self, timeout=180):
        """Wait for the CQL listener line, then retry a real TLS + client
        certificate + cassandra/cassandra login until it works (the default
        superuser is created asynchronously).  Stops the node and raises
        RuntimeError with the log tail on failure or timeout."""
        if self.proc is None:
            raise RuntimeError("wait_ready() before start()")
        deadline = self.started_at + timeout
        while True:
            text = self._log_text()
            if READY_LINE in text:
                break
            if not self.alive():
                self._fail("JVM exited with status %s during startup"
                           % self.proc.returncode)
            for marker in FATAL_LINES:
                if marker in text:
                    self._fail("startup failed (%r in the log)" % marker)
            if time.monotonic() > deadline:
                self._fail("no CQL listener after %d s" % timeout)
            time.sleep(0.25)
        last = None
        while True:
            if not self.alive():
                self._fail("JVM exited with status %s" % self.proc.returncode)
            try:
                self._login_check()
                break
            except Exception as e:          # noqa: BLE001 - retried
                last = e
            if time.monotonic() > deadline:
                self._fail("login as cassandra never succeeded in %d s: %r"
                           % (timeout, last))
            time.sleep(0.5)
        self.ready_after = time.monotonic() - self.started_at
        log("ready in %.1f s" % self.ready_after)
        return self

    def _login_check(self):
        """One authenticated TLS round trip (driver if importable)."""
        if importlib.util.find_spec("cassandra") is None:
            probe_login(self.host, self.native_port,
                        client_ssl_context(self.pki))
            return
        cluster = self.cluster(connect_timeout=5, control_connection_timeout=5)
        try:
            session = cluster.connect()
            session.execute("SELECT release_version FROM system.local")
        finally:
            cluster.shutdown()

    def cluster(self, username=SUPERUSER[0], password=SUPERUSER[1],
                cert=True, **kwargs):
        """A cassandra-driver Cluster for this node (not connected): TLS with
        the test CA and the client certificate (cert: see
        client_ssl_context), PlainTextAuthProvider (none if username is
        None), only this node in the load balancing policy, no compression
        unless asked.  Other keyword arguments (protocol_version=,
        compression="lz4", ...) go to Cluster()."""
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import (EXEC_PROFILE_DEFAULT, Cluster,
                                       ExecutionProfile)
        from cassandra.policies import WhiteListRoundRobinPolicy
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([self.host]),
            request_timeout=30)
        kwargs.setdefault("execution_profiles",
                          {EXEC_PROFILE_DEFAULT: profile})
        # The driver's default (True) silently picks lz4 when installed.
        kwargs.setdefault("compression", False)
        if username is not None:
            kwargs.setdefault("auth_provider", PlainTextAuthProvider(
                username=username, password=password))
        return Cluster([self.host], port=self.native_port,
                       ssl_context=client_ssl_context(self.pki, cert=cert),
                       **kwargs)

    def authenticator_class(self, username=SUPERUSER[0],
                            password=SUPERUSER[1]):
        """The class name the node sends in AUTHENTICATE (logs in once)."""
        return probe_login(self.host, self.native_port,
                           client_ssl_context(self.pki), username, password)

    def stop(self, timeout=30, graceful=True, keep=None):
        """Stop the JVM: SIGTERM (Cassandra drains, about 5 s) then SIGKILL
        after ${timeout} s; graceful=False sends SIGKILL at once, which is
        fine for a throwaway node.  Then removes the node directory (a
        temporary base dir whole) unless keep, which defaults to
        CQLTUNNEL_KEEP_NODES=1.  Safe to call twice."""
        if keep is None:
            keep = os.environ.get("CQLTUNNEL_KEEP_NODES") == "1"
        _RUNNING.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            try:
                if not graceful:
                    raise subprocess.TimeoutExpired(self.proc.args, 0)
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if graceful:
                    log("pid %d ignored SIGTERM for %d s: SIGKILL"
                        % (self.pid, timeout))
                self.proc.kill()
                self.proc.wait()
        if not keep:
            if self._own_base:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            elif self.node_dir:
                shutil.rmtree(self.node_dir, ignore_errors=True)
        return self

    def __enter__(self):
        self.start()
        return self.wait_ready()

    def __exit__(self, *exc):
        self.stop()
        return False

    def info(self):
        """What a client needs, as a JSON-able dict."""
        return {"pid": self.pid, "host": self.host,
                "native_port": self.native_port,
                "storage_port": self.storage_port, "node_dir": self.node_dir,
                "log_path": self.log_path, "pki": self.pki}


# ---------------------------------------------------------------------------
# Self-check: the smoke test a developer runs by hand

def _cqlsh_path():
    for cand in (os.path.join(os.path.dirname(sys.executable), "cqlsh"),
                 shutil.which("cqlsh")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def write_cqlshrc(path, pki, cert=True):
    """A cqlshrc for TLS with the test CA (+ client certificate)."""
    lines = ["[ssl]", "certfile = %s" % pki["ca_crt"], "validate = true"]
    if cert:
        lines += ["userkey = %s" % pki["client_key"],
                  "usercert = %s" % pki["client_crt"]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def smoke(node):
    """Driver (v3/v4/v5, lz4 on v4/v5), cqlsh (v3/v4/v5) and negative
    checks against a ready node; prints one line per check, raises on
    failure."""
    from cassandra.cluster import NoHostAvailable

    def check(name, fn):
        """Run fn, print its name, duration and result."""
        t0 = time.monotonic()
        result = fn()
        print("ok   %-32s %5.2f s  %s" % (name, time.monotonic() - t0,
                                          result if result else ""))

    def crud(version, compression=False):
        cluster = node.cluster(protocol_version=version,
                               compression=compression)
        try:
            s = cluster.connect()
            s.execute("CREATE KEYSPACE IF NOT EXISTS smoke WITH replication "
                      "= {'class': 'SimpleStrategy', 'replication_factor': 1}")
            table = "smoke.t_v%d_%s" % (version, compression or "none")
            s.execute("CREATE TABLE IF NOT EXISTS %s (k int PRIMARY KEY, "
                      "v text)" % table)
            blob = "x" * 5000               # big enough to be compressed
            s.execute("INSERT INTO %s (k, v) VALUES (%%s, %%s)" % table,
                      (1, blob))
            row = s.execute("SELECT v FROM %s WHERE k = 1" % table).one()
            assert row.v == blob, row
            conn = cluster.control_connection._connection
            return "protocol v%d, compressor=%s" % (
                cluster.protocol_version,
                getattr(conn.compressor, "__name__", conn.compressor))
        finally:
            cluster.shutdown()

    for v in (3, 4, 5):
        check("driver v%d" % v, lambda v=v: crud(v))
    for v in (4, 5):
        check("driver v%d lz4" % v, lambda v=v: crud(v, "lz4"))

    def no_cert():
        cluster = node.cluster(cert=False, connect_timeout=5)
        try:
            cluster.connect()
        except NoHostAvailable as e:
            return "rejected: %r" % list(e.errors.values())[0]
        finally:
            cluster.shutdown()
        raise AssertionError("a client without certificate was accepted")

    def untrusted_cert():
        try:
            probe_login(node.host, node.native_port,
                        client_ssl_context(node.pki, cert="other"))
        except (ssl.SSLError, OSError) as e:
            return "rejected: %r" % e
        raise AssertionError("a client certificate of another CA worked")

    def wrong_password():
        cluster = node.cluster(password="wrong", connect_timeout=5)
        try:
            cluster.connect()
        except NoHostAvailable as e:
            return "rejected: %s" % list(e.errors.values())[0]
        finally:
            cluster.shutdown()
        raise AssertionError("a wrong password was accepted")

    def wrong_password_raw():
        try:
            probe_login(node.host, node.native_port,
                        client_ssl_context(node.pki), "cassandra", "wrong")
        except CqlLoginError as e:
            assert e.code == 0x0100, e
            return "ERROR 0x%04x %r" % (e.code, e.message)
        raise AssertionError("a wrong password was accepted")

    check("no client certificate", no_cert)
    check("client cert of another CA", untrusted_cert)
    check("wrong password (driver)", wrong_password)
    check("wrong password (raw v4)", wrong_password_raw)
    check("AUTHENTICATE class", node.authenticator_class)

    cqlsh = _cqlsh_path()
    if not cqlsh:
        print("skip cqlsh (not installed)")
        return
    rc = write_cqlshrc(os.path.join(node.node_dir, "cqlshrc"), node.pki)
    for v in (3, 4, 5):
        def run(v=v):
            r = subprocess.run(
                [cqlsh, "--cqlshrc", rc, "--ssl", "-u", "cassandra", "-p",
                 "cassandra", "--protocol-version", str(v), "-e",
                 "SELECT k FROM smoke.t_v5_none; SHOW VERSION",
                 node.host, str(node.native_port)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                timeout=60)
            # SHOW VERSION prints e.g. "[cqlsh 6.2.2 | Cassandra 5.0.6 |
            # CQL spec 3.4.7 | Native protocol v5]" (the negotiated version).
            m = re.search(r"\[cqlsh .*Native protocol v(\d)\]", r.stdout)
            assert r.returncode == 0 and m and m.group(1) == str(v), r.stdout
            return m.group(0)
        check("cqlsh --protocol-version %d" % v, run)


def _is_cassandra(pid):
    """Is ${pid} (still) a CassandraDaemon JVM?  Guards against pid reuse."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"org.apache.cassandra.service.CassandraDaemon" in f.read()
    except OSError:
        return False


def _state_file(base):
    return os.path.join(base, "node.json")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="base directory for nodes and the PKI")
    ap.add_argument("--heap", default="512m")
    ap.add_argument("--jdk-tls", action="store_true",
                    help="JDK TLS instead of netty-tcnative (BoringSSL)")
    ap.add_argument("command", choices=("fetch", "pki", "start", "status",
                                        "stop", "selfcheck"))
    ap.add_argument("dir", nargs="?", help="pki: target directory")
    a = ap.parse_args(argv)

    if a.command == "fetch":
        print(fetch_cassandra())
        return 0
    if a.command == "pki":
        print(json.dumps(make_pki(a.dir or a.base or "pki"), indent=2))
        return 0
    if a.command == "selfcheck":
        base = a.base and os.path.abspath(a.base)
        node = CassandraNode(base, heap=a.heap, jdk_tls=a.jdk_tls)
        node.start()
        node.wait_ready()
        try:
            smoke(node)
        finally:
            t0 = time.monotonic()
            node.stop()
            print("stopped in %.1f s (ready after %.1f s)"
                  % (time.monotonic() - t0, node.ready_after))
        return 0

    if not a.base:
        ap.error("%s needs --base DIR" % a.command)
    base = os.path.abspath(a.base)
    state = _state_file(base)
    if a.command == "start":
        if os.path.exists(state):
            with open(state) as f:
                old = json.load(f)
            if _is_cassandra(old["pid"]):
                ap.error("a node runs (pid %d): stop it first" % old["pid"])
            os.unlink(state)            # stale: that JVM is gone
        node = CassandraNode(base, heap=a.heap, jdk_tls=a.jdk_tls,
                             die_with_parent=False)
        node.start()
        _RUNNING.discard(node)          # outlives this process
        node.wait_ready()
        info = node.info()
        with open(state, "w") as f:
            json.dump(info, f, indent=2)
        print(json.dumps(info, indent=2))
        return 0
    try:
        with open(state) as f:
            info = json.load(f)
    except FileNotFoundError:
        print("no node (%s missing)" % state)
        return 1 if a.command == "status" else 0
    pid = info["pid"]
    running = _is_cassandra(pid)
    if a.command == "status":
        print(json.dumps(dict(info, running=running), indent=2))
        return 0 if running else 1
    # stop: by the recorded pid only, and only if it is still our JVM.
    if running:
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if not _is_cassandra(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    if os.environ.get("CQLTUNNEL_KEEP_NODES") != "1":
        shutil.rmtree(info["node_dir"], ignore_errors=True)
    os.unlink(state)
    print("stopped pid %d" % pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
