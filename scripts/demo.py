"""The cqltunnel demo: a real Cassandra 5.0 node that requires client
certificates and a password, cqltunnel in front of it, and cqlsh run with
neither --ssl nor credentials through the tunnel.  Stops everything on
exit.  Run it with scripts/demo."""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from cassandra_node import CassandraNode, make_pki  # noqa: E402
from tunnel import Tunnel  # noqa: E402


def say(msg):
    print("\n\033[1m==> %s\033[0m" % msg, flush=True)


def main():
    binary = os.environ["CQLTUNNEL_BIN"]
    cqlsh = os.path.join(os.path.dirname(sys.executable), "cqlsh")
    work = tempfile.mkdtemp(prefix="cqltunnel-demo-")
    say("generating a throwaway CA, node and client certificates in %s/pki"
        % work)
    pki = make_pki(os.path.join(work, "pki"))
    say("starting Cassandra 5.0 (client TLS with require_client_auth, "
        "PasswordAuthenticator)")
    with CassandraNode(work, pki=pki) as node:
        print("node ready on %s:%d (TLS only)" % (node.host, node.native_port))
        pw = os.path.join(work, "cassandra-password")
        with open(pw, "w") as f:
            f.write("cassandra\n")
        os.chmod(pw, 0o600)
        cfg = {
            "cluster": {"contact_points": "%s:%d" % (node.host,
                                                       node.native_port)},
            "tls": {"ca_file": pki["ca_crt"], "cert_file": pki["client_crt"],
                    "key_file": pki["client_key"]},
            "auth": {"username": "cassandra", "password_file": pw},
        }
        os.environ["CQLTUNNEL_BIN"] = binary
        t = Tunnel(work, cfg, name="cqltunnel")
        say("configuration check: cqltunnel -t -c %s" % t.ini)
        rc, out = t.check()
        print(out.strip())
        say("starting cqltunnel on 127.0.0.1:%d" % t.port)
        with t:
            print(open(t.ini).read().strip())
            cql = ("CREATE KEYSPACE IF NOT EXISTS demo WITH replication = "
                   "{'class': 'SimpleStrategy', 'replication_factor': 1};"
                   "CREATE TABLE IF NOT EXISTS demo.greetings "
                   "(id int PRIMARY KEY, text text);"
                   "INSERT INTO demo.greetings (id, text) VALUES "
                   "(1, 'hello through cqltunnel');"
                   "SELECT * FROM demo.greetings;"
                   "SELECT cluster_name, release_version FROM system.local;"
                   "SHOW VERSION;")
            say("cqlsh 127.0.0.1 %d -e ...   (no --ssl, no -u/-p)" % t.port)
            p = subprocess.run([cqlsh, "127.0.0.1", str(t.port), "-e", cql],
                               env=dict(os.environ, HOME=work))
            say("the same query directly against the node without TLS "
                "(refused, as it should be)")
            d = subprocess.run([cqlsh, node.host, str(node.native_port),
                                "--connect-timeout", "5", "-e",
                                "SELECT * FROM demo.greetings"],
                               env=dict(os.environ, HOME=work),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            print(d.stdout.decode().strip()[:300])
        say("cqltunnel log")
        print(t.log().strip())
        say("stopping the node")
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
