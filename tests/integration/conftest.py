"""Fixtures: one real Cassandra 5.0 node (TLS with require_client_auth +
PasswordAuthenticator) per test session, its PKI, and tunnel configs."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cassandra_cluster import CassandraCluster  # noqa: E402
from cassandra_node import CassandraNode, make_pki  # noqa: E402
from tunnel import scaled  # noqa: E402


def _external_node():
    """CQLTUNNEL_NODE_STATE=BASE/node.json (written by `cassandra_node.py
    --base BASE start`): use that already running node and its PKI instead
    of starting one, to iterate on a suite without the node's start-up.
    Only tests that need nothing but its address may run this way."""
    path = os.environ.get("CQLTUNNEL_NODE_STATE")
    if not path:
        return None
    import json
    import types
    with open(path) as f:
        info = json.load(f)
    return types.SimpleNamespace(**info)


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("cqltunnel-it")


@pytest.fixture(scope="session")
def pki(base):
    ext = _external_node()
    if ext is not None:
        return ext.pki
    return make_pki(str(base / "pki"))


@pytest.fixture(scope="session")
def cassandra(base, pki):
    ext = _external_node()
    if ext is not None:
        yield ext
        return
    with CassandraNode(str(base), pki=pki) as node:
        yield node


@pytest.fixture
def password_file(tmp_path):
    def make(secret="cassandra", name="password"):
        p = tmp_path / name
        p.write_text(secret + "\n")
        p.chmod(0o600)
        return str(p)
    return make


def make_sections(contact_points, pki, password_file, over):
    """Tunnel config sections for ${contact_points}; ${over} overrides keys
    per section, e.g. tls={"ca_file": ...}; a value None removes the key."""
    listen = {"drain_timeout": "5s"}
    # The 'workers' meson test runs suites again with [listen] workers.
    if os.environ.get("CQLTUNNEL_TEST_WORKERS"):
        listen["workers"] = os.environ["CQLTUNNEL_TEST_WORKERS"]
    # Under valgrind (CQLTUNNEL_WRAPPER) everything is slower: see
    # tunnel.slowdown().
    sections = {
        "listen": listen,
        "cluster": {"contact_points": contact_points,
                    "connect_timeout": "%dms" % scaled(3000),
                    "handshake_timeout": "%dms" % scaled(10000)},
        "tls": {"ca_file": pki["ca_crt"],
                "cert_file": pki["client_crt"],
                "key_file": pki["client_key"]},
        "auth": {"username": "cassandra",
                 "password_file": password_file()},
        "log": {"level": "debug"},
    }
    for section, keys in over.items():
        sections.setdefault(section, {})
        for k, v in keys.items():
            if v is None:
                sections[section].pop(k, None)
            else:
                sections[section][k] = v
    return sections


@pytest.fixture
def tunnel_config(cassandra, pki, password_file):
    """A config for a tunnel in front of the node (see make_sections)."""
    def make(**over):
        return make_sections("%s:%d" % (cassandra.host,
                                        cassandra.native_port),
                             pki, password_file, over)
    return make


# -- the whole cluster (test_cluster.py) --------------------------------------

@pytest.fixture(scope="session")
def cassandra_cluster(base, pki):
    """A real 3-node Cassandra 5.0 cluster on 127.0.0.1/.2/.3 (one native
    port for all, TLS + PasswordAuthenticator on every node, keyspaces
    cassandra_cluster.KEYSPACE_RF3 and KEYSPACE_RF1); see
    cassandra_cluster.py.  Its ports are picked free on all three addresses,
    so it can run beside the single-node fixture."""
    with CassandraCluster(str(base / "cluster"), pki=pki) as cluster:
        yield cluster


@pytest.fixture
def cluster_tunnel_config(cassandra_cluster, pki, password_file):
    """Like tunnel_config, for a tunnel in front of the whole cluster:
    contact_points names the three nodes (127.0.0.1 first)."""
    def make(**over):
        return make_sections(cassandra_cluster.contact_points(), pki,
                             password_file, over)
    return make
