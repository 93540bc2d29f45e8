#!/usr/bin/env python3
"""Turn a capture (fuzz/capture.py) into seed corpora for the fuzz targets.

    python3 fuzz/mkseeds.py RAWDIR [--out fuzz/corpus]

Each stream is taken apart the way the protocol frames it: bare frames
(v3/v4/DSE, and v5 up to STARTUP from the app or READY/AUTHENTICATE from the
node), then v5 segments in the CRC or LZ4 format that STARTUP negotiated.
Seeds are written in each target's input format (see the comment at the top
of each fuzz_*.c), named after the scenario they come from, and
de-duplicated by content.  Seeds stay within 4 KiB (libFuzzer's default
-max_len), cutting streams short where needed.  Standard library only.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import struct
import zlib

VERSION_IDX = {3: 0, 4: 1, 5: 2, 0x41: 3, 0x42: 4, 6: 5}
OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x01, 0x02, 0x03
OP_RESULT, OP_EXECUTE, OP_EVENT, OP_ERROR = 0x08, 0x0A, 0x0C, 0x00
OP_AUTH_SUCCESS = 0x10


def crc32_cql(b):
    return zlib.crc32(b, zlib.crc32(b"\xfa\x2d\x55\xca"))


def startup_compression(body):
    n = struct.unpack(">H", body[:2])[0]
    off = 2
    opts = {}
    for _ in range(n):
        kl = struct.unpack(">H", body[off:off + 2])[0]
        k = body[off + 2:off + 2 + kl].decode()
        off += 2 + kl
        vl = struct.unpack(">H", body[off:off + 2])[0]
        v = body[off + 2:off + 2 + vl].decode()
        off += 2 + vl
        opts[k.upper()] = v
    return opts.get("COMPRESSION", "").lower()


def lz4_block_decompress(src, ulen):
    """A minimal LZ4 block decoder (for reading captures only)."""
    out = bytearray()
    i = 0
    while i < len(src):
        tok = src[i]
        i += 1
        lit = tok >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        out += src[i:i + lit]
        i += lit
        if i >= len(src):
            break
        off = src[i] | src[i + 1] << 8
        i += 2
        ml = tok & 15
        if ml == 15:
            while True:
                b = src[i]
                i += 1
                ml += b
                if b != 255:
                    break
        ml += 4
        for _ in range(ml):
            out.append(out[-off])
    assert len(out) == ulen, (len(out), ulen)
    return bytes(out)


def frames(data):
    """Split bare frames: yields (offset, header tuple, raw frame)."""
    off = 0
    while len(data) - off >= 9:
        v, fl, st, op, ln = struct.unpack(">BBhBi", data[off:off + 9])
        if len(data) - off < 9 + ln:
            return
        yield off, (v & 0x7f, v & 0x80, fl, st, op, ln), \
            data[off:off + 9 + ln]
        off += 9 + ln


class Stream:
    """One direction of one connection, taken apart."""

    def __init__(self, data, from_app, comp=None):
        self.data = data
        self.from_app = from_app
        self.units = []         # ("frame"|"segment", raw bytes)
        self.envelopes = []     # (hdr tuple, body uncompressed, was_comp)
        self.version = None
        self.comp = comp or ""
        self.handshake_end = None   # offset just after the handshake
        self._parse()

    def _parse(self):
        d = self.data
        off = 0
        framed = False
        pending = b""
        while off < len(d):
            if not framed:
                if len(d) - off < 9:
                    break
                v, fl, st, op, ln = struct.unpack(">BBhBi", d[off:off + 9])
                if len(d) - off < 9 + ln:
                    break
                raw = d[off:off + 9 + ln]
                ver = v & 0x7f
                self.version = self.version or ver
                body = raw[9:]
                if op == OP_STARTUP and self.from_app:
                    self.comp = startup_compression(body)
                comp = bool(fl & 1) and ver < 5
                if comp and self.comp == "lz4":
                    ulen = struct.unpack(">I", body[:4])[0]
                    body = lz4_block_decompress(body[4:], ulen)
                self.units.append(("frame", raw))
                self.envelopes.append(((ver, v & 0x80, fl, st, op, ln), body,
                                       comp))
                off += 9 + ln
                self._handshake_mark(op, off)
                if ver in (5, 6) and (
                        (self.from_app and op == OP_STARTUP) or
                        (not self.from_app and op in (OP_READY,
                                                      OP_AUTHENTICATE))):
                    framed = True
                continue
            lz4 = self.comp == "lz4"
            hl = 8 if lz4 else 6
            if len(d) - off < hl:
                break
            word = int.from_bytes(d[off:off + hl - 3], "little")
            plen = word & 0x1FFFF
            ulen = (word >> 17) & 0x1FFFF if lz4 else 0
            total = hl + plen + 4
            if len(d) - off < total:
                break
            raw = d[off:off + total]
            payload = raw[hl:hl + plen]
            assert crc32_cql(payload) == int.from_bytes(
                raw[hl + plen:], "little")
            if ulen:
                payload = lz4_block_decompress(payload, ulen)
            self.units.append(("segment", raw))
            pending += payload
            for eoff, h, env in frames(pending):
                self.envelopes.append((h, env[9:], False))
                self._handshake_mark(h[4], off + total)
            consumed = sum(len(e) for _, _, e in frames(pending))
            pending = pending[consumed:]
            off += total

    def _handshake_mark(self, op, end):
        if self.handshake_end is not None:
            return
        if self.from_app and op == OP_STARTUP:
            self.handshake_end = end
        if not self.from_app and op in (OP_READY, OP_AUTH_SUCCESS):
            self.handshake_end = end


def is_topology_result(body):
    return (len(body) >= 4 and struct.unpack(">i", body[:4])[0] in (2, 4) and
            re.search(rb"\x00\x06system\x00.(local|peers|peers_v2)", body)
            is not None)


class Seeds:
    def __init__(self, out):
        self.out = out
        self.seen = set()
        self.count = {}

    def add(self, target, name, data, limit=None):
        h = hashlib.sha1(data).hexdigest()
        if (target, h) in self.seen:
            return
        n = self.count.get(target, 0)
        if limit is not None and n >= limit:
            return
        self.seen.add((target, h))
        self.count[target] = n + 1
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cap-%s-%s" % (name, h[:10])), "wb") as f:
            f.write(data)


def load(raw):
    with open(os.path.join(raw, "index.json")) as f:
        index = json.load(f)

    def read(prefix, n, side):
        p = os.path.join(raw, "%s%03d-%s.bin" % (prefix, n, side))
        return open(p, "rb").read() if os.path.exists(p) else b""

    conns = []
    for e in index:
        if e["prefix"] == "a":
            up, down = read("a", e["n"], "a2t"), read("a", e["n"], "t2a")
        else:
            up, down = read("n", e["n"], "t2n"), read("n", e["n"], "n2t")
        if not up:
            continue
        s_up = Stream(up, True)
        s_down = Stream(down, False, comp=s_up.comp)
        conns.append(dict(e, up=s_up, down=s_down))
    return conns


def seed_frame(S, c):
    tag = "%s-%s" % (c["scenario"], c["prefix"])
    for s in (c["up"], c["down"]):
        bare = b"".join(u for k, u in s.units if k == "frame")
        if bare:
            S.add("fuzz_frame", tag + "-headers", b"\x00" + bare[:4000])
        for kind, u in s.units:
            if kind == "segment":
                mode = b"\x06" if s.comp == "lz4" else b"\x05"
                if len(u) < 4000:
                    S.add("fuzz_frame", tag + "-segment", mode + b"\x02" + u,
                          limit=400)
        for kind, u in s.units:
            if kind != "frame":
                continue
            v, fl, st, op, ln = struct.unpack(">BBhBi", u[:9])
            body = u[9:]
            if op == OP_STARTUP:
                S.add("fuzz_frame", tag + "-startup", b"\x02\x10" + body)
            if fl & 1 and s.comp == "lz4" and len(body) < 4000:
                S.add("fuzz_frame", tag + "-lz4body", b"\x03\xff\xff" + body)
        for h, body, _ in s.envelopes:
            prog = bytes([2, 1, 3, 3, 3, 5, 5, 4, 7, 0, 6 | 8 << 3])
            if len(body) < 2000:
                S.add("fuzz_frame", tag + "-reader",
                      b"\x01" + bytes([len(prog)]) + prog + body, limit=600)
            if h[4] == OP_ERROR and len(body) > 6:
                msg = body[6:]
                S.add("fuzz_frame", tag + "-build",
                      b"\x07\x80" + bytes([h[0]]) + struct.pack(">h", h[3]) +
                      body[:4] + msg)


def seed_handshake(S, app, node):
    tag = app["scenario"]
    a = app["up"].data[:1024]
    n = node["down"].data[:3000]
    for opts in (0x00, 0x20, 0x30, 0x01, 0x02, 0x04, 0x08):
        S.add("fuzz_handshake", "%s-o%02x" % (tag, opts),
              bytes([opts]) + b"\x00\x00\x00\x01" +
              struct.pack(">H", len(a)) + a + n)


def seed_rewriter(S, app, node):
    """Relay seeds: the app's stream after STARTUP and the node's after
    the handshake, raw and as records."""
    tag = app["scenario"]
    up, down = app["up"], node["down"]
    if up.version not in VERSION_IDX or up.handshake_end is None or \
            down.handshake_end is None:
        return
    vidx = VERSION_IDX[up.version]
    comp = {"lz4": 1, "snappy": 2}.get(up.comp, 0)
    a = up.data[up.handshake_end:][:1000]
    n = down.data[down.handshake_end:][:3000]
    for opts in (comp, comp | 0x04):
        S.add("fuzz_rewriter", "%s-raw-o%02x" % (tag, opts),
              bytes([vidx, opts]) + b"\x00\x00\x00\x01" +
              struct.pack(">H", len(a)) + a + n)

    def records(stream, start_after_hs, limit):
        out = b""
        seen_hs = False
        for h, body, was_comp in stream.envelopes:
            if not seen_hs:
                if (stream.from_app and h[4] == OP_STARTUP) or \
                        (not stream.from_app and h[4] in (OP_READY,
                                                          OP_AUTH_SUCCESS)):
                    seen_hs = True
                if start_after_hs:
                    continue
            if len(body) > 0xFFFF:
                continue
            rec = bytes([h[4], 0x01 if was_comp else 0]) + \
                struct.pack(">hH", h[3], len(body)) + body
            if len(out) + len(rec) > limit:
                break
            out += rec
        return out

    ra = records(up, True, 1000)
    rn = records(down, True, 3000)
    for opts in (0x14 | comp, 0x1c | comp, 0x54 | comp):
        S.add("fuzz_rewriter", "%s-rec-o%02x" % (tag, opts),
              bytes([vidx, opts]) + b"\x00\x00\x00\x02" +
              struct.pack(">H", len(ra)) + ra + rn)
    # Body mode: every topology result, event and EXECUTE.
    for s in (up, down):
        for h, body, _ in s.envelopes:
            if (h[4] == OP_RESULT and is_topology_result(body)) or \
                    h[4] in (OP_EVENT, OP_EXECUTE):
                S.add("fuzz_rewriter", "%s-body-op%02x" % (tag, h[4]),
                      bytes([0x80 | vidx, 0x40]) + b"\x00\x00\x00\x03" +
                      body[:4000], limit=500)


def seed_config(S, raw, repo):
    ini = os.path.join(raw, "tunnel.ini")
    if os.path.exists(ini):
        text = open(ini).read()
        # Absolute paths become names in the fuzz target's directory.
        text = re.sub(r"= /\S*/([^/\s]+)", r"= \1", text)
        S.add("fuzz_config", "capture", text.encode())
        S.add("fuzz_config", "capture-creds", text.replace(
            "password_file = password",
            "password_file = %credentials%/password").encode())
        for name in ("password-world", "password-empty", "password-ctl",
                     "password-crlf", "password-long", "dir", "missing"):
            S.add("fuzz_config", "capture-" + name, text.replace(
                "password_file = password",
                "password_file = " + name).encode())
        # Users and groups: the names fuzz_config's table knows, an
        # unknown one, one whose lookup fails, and numeric ids.
        for name, ids in (
                ("ids", "allow_uids = cqlapp, 0\nallow_gids = cqlapps\n"),
                ("ids-unknown", "allow_uids = nosuchuser\n"),
                ("ids-error", "allow_gids = 7, nss-error\n")):
            S.add("fuzz_config", "capture-" + name, text.replace(
                "[listen]\n", "[listen]\n" + ids, 1).encode())
    for p in sorted(glob.glob(os.path.join(repo, "tests", "data", "*.ini")) +
                    [os.path.join(repo, "conf", "cqltunnel.ini")]):
        S.add("fuzz_config", "data-" + os.path.basename(p)[:-4],
              open(p, "rb").read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "corpus"))
    args = ap.parse_args()
    conns = load(args.raw)
    S = Seeds(args.out)
    apps = [c for c in conns if c["prefix"] == "a"]
    nodes = [c for c in conns if c["prefix"] == "n"]
    for c in conns:
        seed_frame(S, c)
    # Pair each app connection with the node connection the tunnel opened
    # for it: same first frame, the first such one accepted after it.
    used = set()
    for a in apps:
        first = a["up"].units[0][1] if a["up"].units else None
        for n in nodes:
            if n["n"] in used or n["t"] < a["t"] or not n["up"].units or \
                    n["up"].units[0][1] != first:
                continue
            used.add(n["n"])
            seed_handshake(S, a, n)
            seed_rewriter(S, a, n)
            break
    seed_config(S, args.raw, os.path.join(here, ".."))
    for t, n in sorted(S.count.items()):
        print("%s: %d seeds" % (t, n))


if __name__ == "__main__":
    main()
