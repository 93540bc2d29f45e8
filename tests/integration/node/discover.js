#!/usr/bin/env node
// Whole-cluster discovery through cqltunnel with the DataStax Node.js
// driver (cassandra-driver from npm), as a legacy app would do it: no TLS,
// no credentials, one contact point.
//
//   node discover.js HOST:PORT LOCAL_DC [--wait-ms N] [--queries N]
//
// Connects, lets the driver read the ring (system.local + system.peers) and
// warm up its pools (pooling.warmup, the default), waits up to --wait-ms
// (default 15000) until every host it knows is UP and has at least one open
// connection, runs --queries (default 12) `SELECT key FROM system.local`
// so requests are spread over the pools, then prints one JSON object and
// shuts down:
//
//   {"driver": "4.8.0", "contactPoint": "127.0.0.1:9042",
//    "hosts": [{"address": "127.0.1.1:9042", "datacenter": "datacenter1",
//               "rack": "rack1", "hostId": "...", "isUp": true,
//               "openConnections": 1}, ...],
//    "connectedHosts": ["127.0.0.1:9042", ...],
//    "queried": {"127.0.0.1:9042": 4, ...},
//    "errors": []}
//
// The driver is loaded from NODE_PATH (scripts/setup-deps installs it with
// `npm ci` into ~/.cache/cqltunnel/node/node_modules).  Exit status 0 when
// connected (the caller checks the JSON), 1 on a connection failure (the
// JSON then has "error"), 3 if it got stuck (no result after --wait-ms plus
// 60 s).
'use strict';

const cassandra = require('cassandra-driver');

function usage() {
  process.stderr.write('usage: discover.js HOST:PORT LOCAL_DC ' +
                       '[--wait-ms N] [--queries N]\n');
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length < 2) usage();
const contactPoint = args[0];
const localDataCenter = args[1];
let waitMs = 15000;
let queries = 12;
for (let i = 2; i < args.length; i += 2) {
  const v = parseInt(args[i + 1], 10);
  if (Number.isNaN(v)) usage();
  if (args[i] === '--wait-ms') waitMs = v;
  else if (args[i] === '--queries') queries = v;
  else usage();
}
const m = /^(.*):(\d+)$/.exec(contactPoint);
if (!m) usage();
const port = parseInt(m[2], 10);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function snapshot(client) {
  const state = client.getState();
  const hosts = client.hosts.values().map((h) => ({
    address: h.address,
    datacenter: h.datacenter,
    rack: h.rack,
    hostId: h.hostId ? h.hostId.toString() : null,
    isUp: h.isUp(),
    openConnections: state.getOpenConnections(h),
  }));
  hosts.sort((a, b) => (a.address < b.address ? -1 : 1));
  return {
    hosts,
    connectedHosts: state.getConnectedHosts().map((h) => h.address).sort(),
  };
}

async function main() {
  const client = new cassandra.Client({
    contactPoints: [contactPoint],
    localDataCenter,
    protocolOptions: { port },
    socketOptions: { connectTimeout: 10000, readTimeout: 20000 },
  });
  const out = { driver: cassandra.version, contactPoint, localDataCenter,
                errors: [] };
  try {
    await client.connect();
    const deadline = Date.now() + waitMs;
    for (;;) {
      const s = snapshot(client);
      const ready = s.hosts.length > 0 &&
        s.hosts.every((h) => h.isUp && h.openConnections > 0);
      if (ready || Date.now() > deadline) break;
      await sleep(200);
    }
    out.queried = {};
    for (let i = 0; i < queries; i++) {
      try {
        const rs = await client.execute('SELECT key FROM system.local');
        const by = rs.info.queriedHost;
        out.queried[by] = (out.queried[by] || 0) + 1;
      } catch (e) {
        out.errors.push(String(e));
      }
    }
    Object.assign(out, snapshot(client));
  } catch (e) {
    out.error = String(e);
    if (e.innerErrors) out.innerErrors = Object.fromEntries(
      Object.entries(e.innerErrors).map(([k, v]) => [k, String(v)]));
  }
  try {
    await client.shutdown();
  } catch (e) {
    out.errors.push('shutdown: ' + String(e));
  }
  // Exit explicitly: after a failed connect the driver can leave handles
  // open that keep the process alive after shutdown().
  process.stdout.write(JSON.stringify(out, null, 2) + '\n', () =>
    process.exit(out.error ? 1 : 0));
}

// Never hang: give up (exit 3) well after the driver's own timeouts.
setTimeout(() => {
  process.stdout.write(JSON.stringify({ contactPoint, localDataCenter,
    error: 'discover.js: no result after ' + (waitMs + 60000) + ' ms' }) +
    '\n', () => process.exit(3));
}, waitMs + 60000).unref();

main();
