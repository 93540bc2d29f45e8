#!/usr/bin/env python3
"""bench/report.py DIR [PATH=NOTE...]: the tables and the plot of a bench/run
result directory.  Reads DIR/runs.jsonl (one line per cqlbench run) and
DIR/idle.jsonl (idle memory), writes DIR/summary.json, DIR/table.md and,
if matplotlib can be imported, DIR/plot.png; prints the Markdown.

Every figure is the median over the rounds of the per-run figure (a
latency percentile is the median of the runs' percentiles).  Failed runs
(non-zero exit, or no request completed) are left out and counted."""

import json
import os
import statistics
import sys

PATHS = ["direct", "cqltunnel", "stunnel", "haproxy", "cql-proxy"]
UPSTREAM = {
    "direct": "mTLS (client does TLS + auth)",
    "cqltunnel": "mTLS (injects auth)",
    "stunnel": "mTLS (client does auth)",
    "haproxy": "mTLS (client does auth)",
    "cql-proxy": "**plaintext** (no backend TLS; own auth)",
}
COLOR = {"direct": "tab:blue", "cqltunnel": "tab:orange",
         "stunnel": "tab:green", "haproxy": "tab:red",
         "cql-proxy": "tab:purple"}
CELLS = ["c1", "c32", "pipe", "bulk", "sessions"]
CELL_NAME = {"c1": "C=1 D=1", "c32": "C=32 D=1", "pipe": "C=8 D=32",
             "bulk": "bulk 1 MiB, C=4 D=2", "sessions": "sessions C=4"}
# (cell, metric, column title, higher is better)
FIGURES = [
    ("c1", "rate", "C=1 req/s", True),
    ("c1", "p99", "C=1 p99 µs", False),
    ("c32", "rate", "C=32 req/s", True),
    ("c32", "p99", "C=32 p99 µs", False),
    ("pipe", "rate", "C=8×32 req/s", True),
    ("bulk", "mib_s", "bulk MiB/s", True),
    ("sessions", "rate", "sessions/s", True),
]


def load(path):
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def summarize(runs):
    cells = {}
    loads = []
    for r in runs:
        loads.append(r.get("load1"))
        key = (r["cell"], r["path"])
        c = cells.setdefault(key, {"runs": 0, "failed": 0, "rate": [],
                                   "mib_s": [], "p50": [], "p90": [],
                                   "p99": [], "p999": [], "errors": []})
        c["runs"] += 1
        res = r.get("result")
        if r.get("rc") != 0 or not res or not res.get("count"):
            c["failed"] += 1
            err = (res or {}).get("first_error") or r.get("error")
            if err:
                c["errors"].append(err)
            continue
        c["rate"].append(res["rate"])
        c["mib_s"].append(res["mib_s"])
        for p in ("p50", "p90", "p99", "p999"):
            c[p].append(res["latency_us"][p])
    summary = {}
    for (cell, path), c in cells.items():
        s = {"runs": c["runs"], "failed": c["failed"],
             "errors": c["errors"][:3]}
        for m in ("rate", "mib_s", "p50", "p90", "p99", "p999"):
            vals = c[m]
            s[m] = statistics.median(vals) if vals else None
            s[m + "_all"] = vals
        if c["rate"]:
            s["spread"] = max(c["rate"]) / min(c["rate"]) \
                if min(c["rate"]) > 0 else None
        summary.setdefault(cell, {})[path] = s
    loads = [x for x in loads if isinstance(x, (int, float))]
    return summary, (min(loads), max(loads)) if loads else None


def get(summary, cell, path, metric):
    return summary.get(cell, {}).get(path, {}).get(metric)


def markdown(summary, idle, loads, paths, notes, env):
    L = []
    L.append("## bench/run results")
    L.append("")
    for line in env:
        L.append(f"- {line}")
    if loads:
        L.append(f"- 1-minute load average before the runs: "
                 f"{loads[0]:.2f}–{loads[1]:.2f}")
    for p, n in notes.items():
        L.append(f"- {p}: {n}")
    L.append("")
    L.append("Medians over the rounds; a failed run is left out "
             "(counted in the last table).")
    L.append("")
    idle_by = {i["path"]: i for i in idle}
    hdr = ["path"] + [t for _, _, t, _ in FIGURES] + \
        ["C=1 p50 µs", "KiB/idle session", "upstream"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|---" + "|---:" * (len(hdr) - 2) + "|---|")
    for p in paths:
        row = [p]
        for cell, m, _, _ in FIGURES:
            v = get(summary, cell, p, m)
            row.append(fmt(v, 1 if m == "mib_s" else 0))
        row.append(fmt(get(summary, "c1", p, "p50")))
        i = idle_by.get(p, {})
        row.append(fmt(i.get("kib_per_session"), 1))
        row.append(UPSTREAM.get(p, ""))
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    if "direct" in paths:
        L.append("### Against direct TLS (path ÷ direct; latency: "
                 "lower is better, the rest: higher is better)")
        L.append("")
        hdr = ["path"] + [t for _, _, t, _ in FIGURES]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|---" + "|---:" * (len(hdr) - 1) + "|")
        for p in paths:
            if p == "direct":
                continue
            row = [p]
            for cell, m, _, _ in FIGURES:
                row.append(fmt(ratio(get(summary, cell, p, m),
                                     get(summary, cell, "direct", m)), 2))
            L.append("| " + " | ".join(row) + " |")
        L.append("")

    if "cqltunnel" in paths:
        peers = [p for p in paths if p not in ("cqltunnel", "direct")]
        if peers:
            L.append("### cqltunnel against each peer (cqltunnel ÷ peer; "
                     "> 1 is better for throughput, < 1 for latency "
                     "and memory)")
            L.append("")
            hdr = ["peer"] + [t for _, _, t, _ in FIGURES] + \
                ["KiB/idle session"]
            L.append("| " + " | ".join(hdr) + " |")
            L.append("|---" + "|---:" * (len(hdr) - 1) + "|")
            for p in peers:
                row = [p]
                for cell, m, _, _ in FIGURES:
                    row.append(fmt(ratio(get(summary, cell, "cqltunnel", m),
                                         get(summary, cell, p, m)), 2))
                row.append(fmt(ratio(
                    idle_by.get("cqltunnel", {}).get("kib_per_session"),
                    idle_by.get(p, {}).get("kib_per_session")), 2))
                L.append("| " + " | ".join(row) + " |")
            L.append("")

    if idle:
        L.append("### Idle memory (fresh relay; VmRSS before and after "
                 "opening the idle sessions)")
        L.append("")
        L.append("| process | sessions | RSS before KiB | RSS after KiB | "
                 "KiB per session | threads |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for i in idle:
            if "error" in i:
                L.append(f"| {i['path']} | {i.get('sessions', '')} | "
                         f"failed: {i['error']} | | | |")
                continue
            L.append(f"| {i['path']} | {i['sessions']:,} | "
                     f"{i['rss_before_kib']:,} | {i['rss_after_kib']:,} | "
                     f"{i['kib_per_session']:.1f} | "
                     f"{i.get('threads', '–')} |")
        L.append("")
        tun = idle_by.get("cqltunnel", {}).get("kib_per_session")
        for fl, what in (("openssl-floor", "full handshakes"),
                         ("openssl-floor-resumed", "resumed sessions")):
            f = idle_by.get(fl, {}).get("kib_per_session")
            if tun and f:
                L.append(f"cqltunnel ÷ OpenSSL floor ({what}): "
                         f"{tun / f:.2f}")
        L.append("")

    if not summary:
        return "\n".join(L)
    L.append("### Runs and spread (max ÷ min of the rate over the rounds)")
    L.append("")
    L.append("| path | " + " | ".join(CELL_NAME[c] for c in CELLS
                                       if c in summary) + " |")
    L.append("|---" + "|---:" * sum(1 for c in CELLS if c in summary) + "|")
    for p in paths:
        row = [p]
        for c in CELLS:
            if c not in summary:
                continue
            s = summary[c].get(p)
            if not s:
                row.append("–")
                continue
            ok = s["runs"] - s["failed"]
            t = f"{ok}/{s['runs']} ok"
            if s.get("spread"):
                t += f", {s['spread']:.2f}"
            row.append(t)
        L.append("| " + " | ".join(row) + " |")
    errs = [(c, p, s["errors"][0]) for c, d in summary.items()
            for p, s in d.items() if s["errors"]]
    if errs:
        L.append("")
        L.append("First errors of failed runs:")
        L.append("")
        for c, p, e in errs:
            L.append(f"- {p} {CELL_NAME.get(c, c)}: {e}")
    L.append("")
    return "\n".join(L)


def plot(out, summary, paths):
    if not any(get(summary, c, p, "rate") for c in ("c1", "c32")
               for p in paths):
        return False
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pcts = ["p50", "p90", "p99", "p999"]
    labels = ["p50", "p90", "p99", "p99.9"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    width = 0.8 / max(1, len(paths))
    for ax, cell in zip(axes[:2], ("c1", "c32")):
        for k, p in enumerate(paths):
            vals = [get(summary, cell, p, m) or 0 for m in pcts]
            xs = [i + (k - (len(paths) - 1) / 2) * width
                  for i in range(len(pcts))]
            ax.bar(xs, vals, width, label=p, color=COLOR.get(p))
        ax.set_xticks(range(len(pcts)))
        ax.set_xticklabels(labels)
        ax.set_yscale("log")
        ax.set_ylabel("latency µs (median of runs, log)")
        ax.set_title(f"latency percentiles, {CELL_NAME[cell]}")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[2]
    others = [p for p in paths if p != "direct"]
    figs = [(c, m, t) for c, m, t, hi in FIGURES if hi]
    width = 0.8 / max(1, len(others))
    for k, p in enumerate(others):
        vals = [ratio(get(summary, c, p, m), get(summary, c, "direct", m))
                or 0 for c, m, _ in figs]
        xs = [i + (k - (len(others) - 1) / 2) * width
              for i in range(len(figs))]
        ax.bar(xs, vals, width, label=p, color=COLOR.get(p))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(figs)))
    ax.set_xticklabels([t for _, _, t in figs], rotation=25, ha="right",
                       fontsize=8)
    ax.set_ylabel("÷ direct TLS (median, log)")
    ax.set_title("throughput against direct TLS")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plot.png"), dpi=110)
    return True


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    notes = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
    runs = load(os.path.join(out, "runs.jsonl"))
    idle = load(os.path.join(out, "idle.jsonl"))
    env = []
    envf = os.path.join(out, "env.txt")
    if os.path.exists(envf):
        env = [l.strip() for l in open(envf)
               if l.strip() and not l.startswith(("note:", "paths:"))]
    seen = {r["path"] for r in runs} | {i["path"] for i in idle}
    paths = [p for p in PATHS if p in seen]
    summary, loads = summarize(runs)
    md = markdown(summary, idle, loads, paths, notes, env)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"cells": summary, "idle": idle, "notes": notes,
                   "load1_range": loads, "env": env}, f, indent=1,
                  ensure_ascii=False)
    print(md)
    if plot(out, summary, paths):
        print(f"plot: {os.path.join(out, 'plot.png')}")
    else:
        print("plot: skipped (no C=1/C=32 results, or no matplotlib: "
              "bench/setup)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
