#!/usr/bin/env python3
"""bench/driver.py: the real-world figure.  The DataStax python driver
against a real Cassandra 5.0 node (TLS with require_client_auth,
PasswordAuthenticator; tests/integration/cassandra_node.py), direct
(the driver does TLS + auth) against through cqltunnel (the driver in
plaintext, no credentials; cqltunnel as it ships: topology translate).

One small table (bench_driver.kv, one row with a 64-byte blob); each run
keeps --concurrency execute_async() calls of a prepared
"SELECT v FROM kv WHERE k = ?" in flight for --duration seconds after
--warmup seconds, and reports requests/s and latency percentiles (from the
call to the callback).  --rounds interleaved rounds, the order of the two
paths alternating; the table gives medians.

Run it with the project venv (scripts/setup-deps), e.g. bench/real-driver
BUILD_DIR, which calls this with $CQLTUNNEL_VENV/bin/python.  Writes
bench/results/<UTC time>-driver/{runs.jsonl,table.md} and prints the table.
Needs about 1.5 GB of RAM for the node and a minute to start it."""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from cassandra_node import CassandraNode, make_pki  # noqa: E402
from tunnel import Tunnel  # noqa: E402


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, int(q * len(sorted_vals)))
    return sorted_vals[i]


def load(session, stmt, concurrency, warmup, duration):
    """Keep ${concurrency} requests in flight; returns a result dict."""
    lock = threading.Lock()
    done = threading.Event()
    state = {"measuring": False, "stop": False, "inflight": 0,
             "errors": 0, "first_error": None}
    lat = []

    def issue():
        t0 = time.perf_counter()
        f = session.execute_async(stmt, (1,))
        f.add_callbacks(ok, fail, callback_args=(t0,), errback_args=(t0,))

    def finish(t0, error):
        t1 = time.perf_counter()
        with lock:
            if error is not None:
                state["errors"] += 1
                state["first_error"] = state["first_error"] or repr(error)
            elif state["measuring"]:
                lat.append(t1 - t0)
            if state["stop"]:
                state["inflight"] -= 1
                if state["inflight"] == 0:
                    done.set()
                return
        issue()

    def ok(_rows, t0):
        finish(t0, None)

    def fail(exc, t0):
        finish(t0, exc)

    with lock:
        state["inflight"] = concurrency
    for _ in range(concurrency):
        issue()
    time.sleep(warmup)
    with lock:
        state["measuring"] = True
        del lat[:]
    t_start = time.perf_counter()
    time.sleep(duration)
    with lock:
        state["measuring"] = False
        state["stop"] = True
        n = len(lat)
    elapsed = time.perf_counter() - t_start
    done.wait(30)
    lat.sort()
    us = [x * 1e6 for x in lat]
    return {"count": n, "seconds": round(elapsed, 3),
            "rate": n / elapsed if elapsed > 0 else 0.0,
            "errors": state["errors"], "first_error": state["first_error"],
            "latency_us": {"p50": percentile(us, 0.50),
                           "p90": percentile(us, 0.90),
                           "p99": percentile(us, 0.99),
                           "p999": percentile(us, 0.999),
                           "max": us[-1] if us else None}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"),
                    help="meson build directory with cqltunnel")
    ap.add_argument("--rounds", type=int,
                    default=int(os.environ.get("ROUNDS", "3")))
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("DUR", "5")))
    ap.add_argument("--warmup", type=float,
                    default=float(os.environ.get("WARMUP", "1")))
    ap.add_argument("--concurrency", type=int,
                    default=int(os.environ.get("CONCURRENCY", "32")))
    ap.add_argument("--protocol", type=int, default=4, choices=(4, 5))
    ap.add_argument("--node-warmup", type=float, default=10.0,
                    help="seconds of unmeasured load per path before the "
                    "first round (the node's JIT; default 10)")
    ap.add_argument("--out", help="result directory (default "
                    "bench/results/<UTC time>-driver)")
    a = ap.parse_args()

    binary = os.path.abspath(os.path.join(a.build, "cqltunnel"))
    if not os.access(binary, os.X_OK):
        ap.error("no cqltunnel in %s" % a.build)
    os.environ["CQLTUNNEL_BIN"] = binary

    out = a.out or os.path.join(HERE, "results", time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime()) + "-driver")
    os.makedirs(out, exist_ok=True)
    base = tempfile.mkdtemp(prefix="cqlbench-driver-")
    pki = make_pki(os.path.join(base, "pki"))
    print("starting Cassandra (about a minute)...", file=sys.stderr)
    try:
        runs = run_all(a, base, pki, out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return report(a, runs, out)


def run_all(a, base, pki, out):
    from cassandra.cluster import Cluster
    with CassandraNode(base, pki=pki) as node:
        direct = node.cluster(protocol_version=a.protocol)
        ds = direct.connect()
        ds.execute("CREATE KEYSPACE IF NOT EXISTS bench_driver WITH "
                   "replication = {'class': 'SimpleStrategy', "
                   "'replication_factor': 1}")
        ds.execute("CREATE TABLE IF NOT EXISTS bench_driver.kv "
                   "(k int PRIMARY KEY, v blob)")
        ds.execute("INSERT INTO bench_driver.kv (k, v) VALUES (1, %s)",
                   (bytes(64),))
        pw = os.path.join(base, "password")
        with open(pw, "w") as f:
            f.write("cassandra\n")
        os.chmod(pw, 0o600)
        sections = {
            "cluster": {"contact_points": "%s:%d" % (node.host,
                                                     node.native_port)},
            "tls": {"ca_file": pki["ca_crt"], "cert_file": pki["client_crt"],
                    "key_file": pki["client_key"]},
            "auth": {"username": "cassandra", "password_file": pw},
            # info: Tunnel.start() waits for the "listening on" line.
            "log": {"level": "info"},
        }
        t = Tunnel(base, sections, name="cqltunnel")
        try:
            t.start()
        except Exception:
            # Tunnel.start() leaves a process that did not come up running.
            if t.proc is not None and t.proc.poll() is None:
                t.proc.kill()
                t.proc.wait()
            raise
        try:
            tunnel = Cluster([t.host], port=t.port, connect_timeout=10,
                             compression=False, protocol_version=a.protocol)
            ts = tunnel.connect()
            sessions = {"direct": ds, "cqltunnel": ts}
            stmts = {k: s.prepare("SELECT v FROM bench_driver.kv WHERE k = ?")
                     for k, s in sessions.items()}
            for p in ("direct", "cqltunnel"):
                if a.node_warmup > 0:
                    print("warming up %s for %g s" % (p, a.node_warmup),
                          file=sys.stderr)
                    load(sessions[p], stmts[p], a.concurrency, 0,
                         a.node_warmup)
            runs = []
            with open(os.path.join(out, "runs.jsonl"), "w") as jf:
                for r in range(1, a.rounds + 1):
                    order = ["direct", "cqltunnel"]
                    if r % 2 == 0:
                        order.reverse()
                    for p in order:
                        with open("/proc/loadavg") as f:
                            load1 = float(f.read().split()[0])
                        res = load(sessions[p], stmts[p], a.concurrency,
                                   a.warmup, a.duration)
                        rec = {"round": r, "path": p, "load1": load1,
                               "concurrency": a.concurrency,
                               "protocol": a.protocol, "result": res}
                        runs.append(rec)
                        jf.write(json.dumps(rec) + "\n")
                        jf.flush()
                        print("r%d %s: %.0f req/s, p50 %.0f p99 %.0f us, "
                              "%d errors" % (r, p, res["rate"],
                                             res["latency_us"]["p50"] or 0,
                                             res["latency_us"]["p99"] or 0,
                                             res["errors"]),
                              file=sys.stderr)
            tunnel.shutdown()
        finally:
            t.stop()
        direct.shutdown()
    return runs


def report(a, runs, out):
    med = {}
    for p in ("direct", "cqltunnel"):
        rs = [x["result"] for x in runs if x["path"] == p and
              x["result"]["count"] > 0]
        med[p] = {k: statistics.median(v) if v else None for k, v in {
            "rate": [x["rate"] for x in rs],
            "p50": [x["latency_us"]["p50"] for x in rs],
            "p99": [x["latency_us"]["p99"] for x in rs]}.items()}
        med[p]["runs"] = len(rs)
    loads = [x["load1"] for x in runs]

    def rt(k):
        a_, b_ = med["cqltunnel"][k], med["direct"][k]
        return "%.2f" % (a_ / b_) if a_ and b_ else "–"

    L = ["## Real driver, real node (bench/driver.py)", "",
         "- DataStax python driver against Cassandra %s (TLS with "
         "require_client_auth, PasswordAuthenticator), protocol v%d, "
         "%d concurrent execute_async() of a prepared one-row SELECT, "
         "%g s per run after %g s warm-up (and %g s of load per path before "
         "the first round), %d interleaved rounds, medians"
         % (__import__("cassandra_node").CASSANDRA_VERSION, a.protocol,
            a.concurrency, a.duration, a.warmup, a.node_warmup, a.rounds),
         "- 1-minute load average before the runs: %.2f–%.2f"
         % (min(loads), max(loads)), "",
         "| path | req/s | p50 µs | p99 µs | runs |",
         "|---|---:|---:|---:|---:|"]
    for p in ("direct", "cqltunnel"):
        m = med[p]
        L.append("| %s | %s | %s | %s | %d |" % (
            p, "{:,.0f}".format(m["rate"]) if m["rate"] else "–",
            "{:,.0f}".format(m["p50"]) if m["p50"] else "–",
            "{:,.0f}".format(m["p99"]) if m["p99"] else "–", m["runs"]))
    L.append("| cqltunnel ÷ direct | %s | %s | %s | |"
             % (rt("rate"), rt("p50"), rt("p99")))
    md = "\n".join(L) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(md)
    print(md)
    print("results: %s" % out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
