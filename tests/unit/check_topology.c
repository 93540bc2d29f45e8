/*
 * Unit tests for address translation: the pure rewriter (topology.c) on
 * result and event bodies, and the relay (relay.c) on whole streams of
 * v4 frames (plain and lz4) and v5 segments (CRC and LZ4), fed to it in
 * evbuffers without sockets.
 */
#include <check.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "cql_frame.h"
#include "relay.h"
#include "topology.h"

#define SUITE_FN topology_suite
#include "test_main.h"

#define T_INET		0x0010
#define T_INT		0x0009
#define T_UUID		0x000C
#define T_VARCHAR	0x000D
#define T_SET		0x0022
#define T_CUSTOM	0x0000

#define TUNNEL_PORT	19042

/* A column of a result's metadata. */
struct col {
	const char	*name;
	uint16_t	 type;
	uint16_t	 sub;		/* element type of a set */
};

/* A cell value: len -1 is null. */
struct val {
	const void	*p;
	int32_t		 len;
};

static const struct col peers_v2_cols[] = {
	{ "peer", T_INET, 0 },
	{ "peer_port", T_INT, 0 },
	{ "data_center", T_VARCHAR, 0 },
	{ "host_id", T_UUID, 0 },
	{ "native_address", T_INET, 0 },
	{ "native_port", T_INT, 0 },
	{ "rack", T_VARCHAR, 0 },
	{ "tokens", T_SET, T_VARCHAR },
};
#define NPV2	8

static const struct col peers_cols[] = {
	{ "peer", T_INET, 0 },
	{ "data_center", T_VARCHAR, 0 },
	{ "host_id", T_UUID, 0 },
	{ "rpc_address", T_INET, 0 },
	{ "tokens", T_SET, T_VARCHAR },
};
#define NPV1	5

static unsigned	resolves;

/* Tunnel address: 127.0.1.<host_id[0]>, or by address if no host_id. */
static bool
test_resolve(void *arg, const struct topo_key *k, struct topo_inet *out)
{
	(void)arg;
	resolves++;
	memset(out, 0, sizeof(*out));
	out->len = 4;
	out->addr[0] = 127;
	out->port = TUNNEL_PORT;
	if (k->has_host_id) {
		if (k->host_id[0] == 0xEE)
			return (false);		/* "unknown node" */
		out->addr[2] = 1;
		out->addr[3] = k->host_id[0];
		return (true);
	}
	if (k->native.len == 0)
		return (false);
	out->addr[2] = k->native.len == 4 ? 2 : 3;
	out->addr[3] = k->native.addr[k->native.len - 1];
	return (true);
}

static struct topo_prepared	 prepared;
static struct topo_rewriter	 rw = { test_resolve, NULL, &prepared };

static void
setup(void)
{
	resolves = 0;
	memset(&prepared, 0, sizeof(prepared));
}

/* Write the rows metadata (global spec when ${global}). */
static void
put_meta(struct cql_writer *w, const char *ks, const char *table,
    const struct col *cols, int ncols, bool global)
{
	int	 i;

	cql_write_int(w, global ? 0x0001 : 0);
	cql_write_int(w, ncols);
	if (global) {
		cql_write_string(w, ks, strlen(ks));
		cql_write_string(w, table, strlen(table));
	}
	for (i = 0; i < ncols; i++) {
		if (!global) {
			cql_write_string(w, ks, strlen(ks));
			cql_write_string(w, table, strlen(table));
		}
		cql_write_string(w, cols[i].name, strlen(cols[i].name));
		cql_write_short(w, cols[i].type);
		if (cols[i].type == T_SET)
			cql_write_short(w, cols[i].sub);
	}
}

/*
 * A Rows body; *head gets the offset of the first cell.  ${vals} has
 * nrows * ncols entries.
 */
static size_t
rows_body(uint8_t *out, size_t cap, const char *ks, const char *table,
    const struct col *cols, int ncols, bool global, int nrows,
    const struct val *vals, size_t *head)
{
	struct cql_writer	 w;
	int			 i;

	cql_writer_init(&w, out, cap);
	cql_write_int(&w, TOPO_RESULT_ROWS);
	put_meta(&w, ks, table, cols, ncols, global);
	cql_write_int(&w, nrows);
	if (head != NULL)
		*head = w.len;
	for (i = 0; i < nrows * ncols; i++)
		cql_write_bytes(&w, vals[i].p, vals[i].len);
	ck_assert(!w.err);
	return (w.len);
}

static const uint8_t be9042[4] = { 0, 0, 0x23, 0x52 };
static const uint8_t be7000[4] = { 0, 0, 0x1B, 0x58 };
static const uint8_t tokens1[] = { 0, 0, 0, 1, 0, 0, 0, 3, '4', '2', '!' };

/* Fill one peers_v2 row for node ${i} with native address ${na}. */
static void
pv2_row(struct val *v, uint8_t *peer, uint8_t *hid, uint8_t i,
    const uint8_t *na, int32_t nalen)
{
	static const uint8_t zero16[16];

	memset(peer, 0, 4);
	peer[0] = 10;
	peer[3] = i;
	memcpy(hid, zero16, 16);
	hid[0] = i;
	hid[15] = 0x99;
	v[0] = (struct val){ peer, 4 };
	v[1] = (struct val){ be7000, 4 };
	v[2] = (struct val){ "dc1", 3 };
	v[3] = (struct val){ hid, 16 };
	v[4] = (struct val){ na, nalen };
	v[5] = (struct val){ be9042, 4 };
	v[6] = (struct val){ "r1", 2 };
	v[7] = (struct val){ tokens1, sizeof(tokens1) };
}

/* Read the cells of a rewritten body back, starting at ${head}. */
static void
read_cells(const uint8_t *p, size_t n, size_t head, struct val *v, int count)
{
	struct cql_reader	 r;
	const uint8_t		*s;
	int32_t			 len;
	int			 i;

	cql_reader_init(&r, p, n);
	ck_assert(cql_skip(&r, head));
	for (i = 0; i < count; i++) {
		ck_assert(cql_read_bytes(&r, &s, &len));
		v[i].p = s;
		v[i].len = len;
	}
	ck_assert_uint_eq(cql_reader_left(&r), 0);
}

static void
assert_cell(const struct val *v, const void *want, int32_t len)
{
	ck_assert_int_eq(v->len, len);
	if (len > 0)
		ck_assert_mem_eq(v->p, want, (size_t)len);
}

static const uint8_t lo_1_1[4] = { 127, 0, 1, 1 };
static const uint8_t lo_1_2[4] = { 127, 0, 1, 2 };
static const uint8_t be_tunnel[4] = { 0, 0, 0x4A, 0x62 };	/* 19042 */

START_TEST(test_classify)
{
	uint8_t			 body[4096], peer[2][4], hid[2][16], na[4] = {
	    10, 0, 0, 1 };
	struct val		 v[2 * NPV2];
	enum topo_table		 t;
	int32_t			 kind;
	size_t			 n, need = 0;

	pv2_row(v, peer[0], hid[0], 1, na, 4);
	pv2_row(v + NPV2, peer[1], hid[1], 2, na, 4);
	n = rows_body(body, sizeof(body), "system", "peers_v2", peers_v2_cols,
	    NPV2, true, 2, v, NULL);
	ck_assert_int_eq(topo_result_classify(CQL_V4, body, n, n, &t, &kind,
	    &need), 1);
	ck_assert_int_eq(t, TOPO_TABLE_PEERS_V2);
	ck_assert_int_eq(kind, TOPO_RESULT_ROWS);
	/* A prefix that stops inside the table name asks for more. */
	ck_assert_int_eq(topo_result_classify(CQL_V4, body, 20, n, &t, &kind,
	    &need), -2);
	ck_assert_uint_gt(need, 20);
	ck_assert_uint_le(need, n);
	/* Per-column specs (no global flag) work too. */
	n = rows_body(body, sizeof(body), "system", "local", peers_cols, NPV1,
	    false, 0, NULL, NULL);
	ck_assert_int_eq(topo_result_classify(CQL_V4, body, n, n, &t, &kind,
	    &need), 1);
	ck_assert_int_eq(t, TOPO_TABLE_LOCAL);
	/* Other tables, other keyspaces, other kinds: no. */
	n = rows_body(body, sizeof(body), "app", "peers", peers_cols, NPV1,
	    true, 0, NULL, NULL);
	ck_assert_int_eq(topo_result_classify(CQL_V4, body, n, n, &t, &kind,
	    &need), 0);
	n = rows_body(body, sizeof(body), "system", "peers_v3", peers_cols,
	    NPV1, true, 0, NULL, NULL);
	ck_assert_int_eq(topo_result_classify(CQL_V4, body, n, n, &t, &kind,
	    &need), 0);
	memcpy(body, "\0\0\0\1", 4);	/* Void */
	ck_assert_int_eq(topo_result_classify(CQL_V4, body, 4, 4, &t, &kind,
	    &need), 0);
	/* A truncated complete body is malformed. */
	n = rows_body(body, sizeof(body), "system", "local", peers_cols, NPV1,
	    true, 0, NULL, NULL);
	ck_assert_int_eq(topo_result_classify(CQL_V4, body, 14, 14, &t, &kind,
	    &need), -1);
}
END_TEST

/* IPv4 -> IPv4: every length stays, only address and port change. */
START_TEST(test_rows_ipv4_in_place)
{
	uint8_t		 body[4096], out[4096], peer[2][4], hid[2][16];
	uint8_t		 na1[4] = { 10, 0, 0, 1 }, na2[4] = { 10, 0, 0, 2 };
	struct val	 v[2 * NPV2], o[2 * NPV2];
	size_t		 n, head, need;
	ssize_t		 m;

	pv2_row(v, peer[0], hid[0], 1, na1, 4);
	pv2_row(v + NPV2, peer[1], hid[1], 2, na2, 4);
	n = rows_body(body, sizeof(body), "system", "peers_v2", peers_v2_cols,
	    NPV2, true, 2, v, &head);
	m = topo_rewrite_rows(&rw, CQL_V4, body, n, out, sizeof(out), &need);
	ck_assert_int_eq(m, (ssize_t)n);
	ck_assert_uint_eq(resolves, 2);
	ck_assert_mem_eq(out, body, head);	/* metadata untouched */
	read_cells(out, (size_t)m, head, o, 2 * NPV2);
	assert_cell(&o[0], peer[0], 4);			/* peer kept */
	assert_cell(&o[1], be7000, 4);
	assert_cell(&o[2], "dc1", 3);
	assert_cell(&o[3], hid[0], 16);
	assert_cell(&o[4], lo_1_1, 4);			/* native_address */
	assert_cell(&o[5], be_tunnel, 4);		/* native_port */
	assert_cell(&o[7], tokens1, sizeof(tokens1));
	assert_cell(&o[NPV2 + 4], lo_1_2, 4);
	assert_cell(&o[NPV2 + 0], peer[1], 4);
}
END_TEST

/* IPv6 nodes map to IPv4 loopback: the body shrinks and is rebuilt. */
START_TEST(test_rows_ipv6_rebuilt)
{
	uint8_t		 body[4096], out[4096], peer[2][4], hid[2][16];
	uint8_t		 na1[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	uint8_t		 na2[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 2 };
	struct val	 v[2 * NPV2], o[2 * NPV2];
	size_t		 n, head, need;
	ssize_t		 m;

	pv2_row(v, peer[0], hid[0], 1, na1, 16);
	pv2_row(v + NPV2, peer[1], hid[1], 2, na2, 16);
	n = rows_body(body, sizeof(body), "system", "peers_v2", peers_v2_cols,
	    NPV2, true, 2, v, &head);
	m = topo_rewrite_rows(&rw, CQL_V5, body, n, out, sizeof(out), &need);
	ck_assert_int_eq(m, (ssize_t)n - 2 * 12);
	read_cells(out, (size_t)m, head, o, 2 * NPV2);
	assert_cell(&o[4], lo_1_1, 4);
	assert_cell(&o[NPV2 + 4], lo_1_2, 4);
	assert_cell(&o[NPV2 + 7], tokens1, sizeof(tokens1));
	/* Too small an output: asks for a size that then works. */
	m = topo_rewrite_rows(&rw, CQL_V5, body, n, out, 40, &need);
	ck_assert_int_eq(m, -2);
	ck_assert_uint_ge(need, n - 24);
	ck_assert_uint_le(need, sizeof(out));
}
END_TEST

/* system.peers with rpc_address null or 0.0.0.0: rewritten, not dropped. */
START_TEST(test_rows_null_and_any)
{
	uint8_t		 body[4096], out[4096], hid1[16] = { 7 }, hid2[16] = {
	    8 }, p1[4] = { 10, 1, 1, 7 }, p2[4] = { 10, 1, 1, 8 };
	uint8_t		 any[4] = { 0 };
	struct val	 v[2 * NPV1], o[2 * NPV1];
	const uint8_t	 lo7[4] = { 127, 0, 1, 7 }, lo8[4] = { 127, 0, 1, 8 };
	size_t		 n, head, need;
	ssize_t		 m;

	v[0] = (struct val){ p1, 4 };
	v[1] = (struct val){ "dc1", 3 };
	v[2] = (struct val){ hid1, 16 };
	v[3] = (struct val){ NULL, -1 };
	v[4] = (struct val){ tokens1, sizeof(tokens1) };
	v[5] = (struct val){ p2, 4 };
	v[6] = (struct val){ "dc1", 3 };
	v[7] = (struct val){ hid2, 16 };
	v[8] = (struct val){ any, 4 };
	v[9] = (struct val){ tokens1, sizeof(tokens1) };
	n = rows_body(body, sizeof(body), "system", "peers", peers_cols, NPV1,
	    true, 2, v, &head);
	m = topo_rewrite_rows(&rw, CQL_V4, body, n, out, sizeof(out), &need);
	ck_assert_int_eq(m, (ssize_t)n + 4);	/* null -> 4 bytes */
	read_cells(out, (size_t)m, head, o, 2 * NPV1);
	assert_cell(&o[3], lo7, 4);
	assert_cell(&o[8], lo8, 4);
	assert_cell(&o[0], p1, 4);
}
END_TEST

/* A node the resolver does not know keeps its row unchanged. */
START_TEST(test_rows_unknown_node)
{
	uint8_t		 body[4096], out[4096], peer[4], hid[16];
	uint8_t		 na[4] = { 10, 0, 0, 0xEE };
	struct val	 v[NPV2];
	size_t		 n, need;
	ssize_t		 m;

	pv2_row(v, peer, hid, 0xEE, na, 4);
	n = rows_body(body, sizeof(body), "system", "peers_v2", peers_v2_cols,
	    NPV2, true, 1, v, NULL);
	m = topo_rewrite_rows(&rw, CQL_V4, body, n, out, sizeof(out), &need);
	ck_assert_int_eq(m, (ssize_t)n);
	ck_assert_mem_eq(out, body, n);
}
END_TEST

/* Bodies that lie are refused, never over-read. */
START_TEST(test_rows_malformed)
{
	uint8_t		 body[4096], out[4096], peer[4], hid[16];
	uint8_t		 na[4] = { 10, 0, 0, 1 };
	struct val	 v[NPV2];
	size_t		 n, need, cut;
	struct cql_writer w;
	int		 i;

	pv2_row(v, peer, hid, 1, na, 4);
	n = rows_body(body, sizeof(body), "system", "peers_v2", peers_v2_cols,
	    NPV2, true, 1, v, NULL);
	for (cut = 0; cut < n; cut++)
		ck_assert_int_eq(topo_rewrite_rows(&rw, CQL_V4, body, cut, out,
		    sizeof(out), &need), -1);
	/* Trailing garbage. */
	body[n] = 0;
	ck_assert_int_eq(topo_rewrite_rows(&rw, CQL_V4, body, n + 1, out,
	    sizeof(out), &need), -1);
	/* A type nested deeper than any real one. */
	cql_writer_init(&w, body, sizeof(body));
	cql_write_int(&w, TOPO_RESULT_ROWS);
	cql_write_int(&w, 1);
	cql_write_int(&w, 1);
	cql_write_string(&w, "system", 6);
	cql_write_string(&w, "local", 5);
	cql_write_string(&w, "x", 1);
	for (i = 0; i < 40; i++)
		cql_write_short(&w, T_SET);
	cql_write_short(&w, T_INT);
	cql_write_int(&w, 0);
	ck_assert_int_eq(topo_rewrite_rows(&rw, CQL_V4, body, w.len, out,
	    sizeof(out), &need), -1);
	/* A column count larger than the body. */
	cql_writer_init(&w, body, sizeof(body));
	cql_write_int(&w, TOPO_RESULT_ROWS);
	cql_write_int(&w, 1);
	cql_write_int(&w, 0x7FFFFFFF);
	ck_assert_int_eq(topo_rewrite_rows(&rw, CQL_V4, body, w.len, out,
	    sizeof(out), &need), -1);
}
END_TEST

/* EVENT bodies: status and topology changes rewritten, others not. */
START_TEST(test_events)
{
	uint8_t			 body[256], out[256];
	struct cql_writer	 w;
	struct cql_reader	 r;
	const uint8_t		*s;
	size_t			 len;
	ssize_t			 m;
	uint8_t			 v6[16] = { 0x20, 0x01, [15] = 9 };
	const uint8_t		 lo[4] = { 127, 0, 2, 5 }, lo9[4] = { 127, 0,
	    3, 9 };

	cql_writer_init(&w, body, sizeof(body));
	cql_write_string(&w, "STATUS_CHANGE", 13);
	cql_write_string(&w, "DOWN", 4);
	cql_write_byte(&w, 4);
	cql_write_raw(&w, "\x0a\x00\x00\x05", 4);
	cql_write_int(&w, 9042);
	m = topo_rewrite_event(&rw, body, w.len, out, sizeof(out));
	ck_assert_int_eq(m, (ssize_t)w.len);
	cql_reader_init(&r, out, (size_t)m);
	cql_read_string(&r, &s, &len);
	cql_read_string(&r, &s, &len);
	ck_assert_mem_eq(s, "DOWN", 4);
	ck_assert_uint_eq(cql_read_byte(&r), 4);
	ck_assert_mem_eq(r.p + r.off, lo, 4);
	cql_skip(&r, 4);
	ck_assert_int_eq(cql_read_int(&r), TUNNEL_PORT);

	/* IPv6 -> IPv4: 12 bytes shorter. */
	cql_writer_init(&w, body, sizeof(body));
	cql_write_string(&w, "TOPOLOGY_CHANGE", 15);
	cql_write_string(&w, "NEW_NODE", 8);
	cql_write_byte(&w, 16);
	cql_write_raw(&w, v6, 16);
	cql_write_int(&w, 9042);
	m = topo_rewrite_event(&rw, body, w.len, out, sizeof(out));
	ck_assert_int_eq(m, (ssize_t)w.len - 12);
	ck_assert_mem_eq(out + m - 8, lo9, 4);

	/* SCHEMA_CHANGE carries no address. */
	cql_writer_init(&w, body, sizeof(body));
	cql_write_string(&w, "SCHEMA_CHANGE", 13);
	cql_write_string(&w, "CREATED", 7);
	cql_write_string(&w, "KEYSPACE", 8);
	cql_write_string(&w, "ks", 2);
	resolves = 0;
	m = topo_rewrite_event(&rw, body, w.len, out, sizeof(out));
	ck_assert_int_eq(m, (ssize_t)w.len);
	ck_assert_mem_eq(out, body, w.len);
	ck_assert_uint_eq(resolves, 0);

	/* Malformed: address length 5. */
	cql_writer_init(&w, body, sizeof(body));
	cql_write_string(&w, "STATUS_CHANGE", 13);
	cql_write_string(&w, "UP", 2);
	cql_write_byte(&w, 5);
	cql_write_raw(&w, "\1\2\3\4\5", 5);
	cql_write_int(&w, 9042);
	ck_assert_int_eq(topo_rewrite_event(&rw, body, w.len, out,
	    sizeof(out)), -1);
}
END_TEST

/* A Prepared body: id, result metadata id (v5), bind and result metadata. */
static size_t
prepared_body(uint8_t *out, size_t cap, uint8_t version, const uint8_t *id,
    size_t idlen, const char *table)
{
	struct cql_writer	 w;

	cql_writer_init(&w, out, cap);
	cql_write_int(&w, TOPO_RESULT_PREPARED);
	cql_write_short(&w, (uint16_t)idlen);
	cql_write_raw(&w, id, idlen);
	if (version == CQL_V5) {
		cql_write_short(&w, 2);
		cql_write_raw(&w, "md", 2);
	}
	/* One bind variable, the partition key. */
	cql_write_int(&w, 0x0001);
	cql_write_int(&w, 1);
	if (version >= CQL_V4) {
		cql_write_int(&w, 1);
		cql_write_short(&w, 0);
	}
	cql_write_string(&w, "system", 6);
	cql_write_string(&w, table, strlen(table));
	cql_write_string(&w, "peer", 4);
	cql_write_short(&w, T_INET);
	put_meta(&w, "system", table, peers_cols, NPV1, true);
	ck_assert(!w.err);
	return (w.len);
}

/* An EXECUTE body with skip_metadata set. */
static size_t
execute_body(uint8_t *out, size_t cap, uint8_t version, const uint8_t *id,
    size_t idlen)
{
	struct cql_writer	 w;

	cql_writer_init(&w, out, cap);
	cql_write_short(&w, (uint16_t)idlen);
	cql_write_raw(&w, id, idlen);
	if (version == CQL_V5) {
		cql_write_short(&w, 2);
		cql_write_raw(&w, "md", 2);
	}
	cql_write_short(&w, 0x0001);			/* ONE */
	if (version >= CQL_V5)
		cql_write_int(&w, 0x02);		/* skip_metadata */
	else
		cql_write_byte(&w, 0x02);
	ck_assert(!w.err);
	return (w.len);
}

START_TEST(test_prepared)
{
	static const uint8_t	 versions[] = { CQL_V3, CQL_V4, CQL_V5 };
	uint8_t			 body[1024], ex[256];
	const uint8_t		 id[16] = { 0xAB, 1, 2, 3 }, other[16] = { 1 };
	size_t			 n, e, i;

	for (i = 0; i < sizeof(versions); i++) {
		uint8_t v = versions[i];

		setup();
		n = prepared_body(body, sizeof(body), v, id, 16, "peers");
		ck_assert_int_eq(topo_prepared_learn(&prepared, v, body, n), 1);
		ck_assert(topo_prepared_has(&prepared, id, 16));
		/* Learning twice keeps one entry. */
		ck_assert_int_eq(topo_prepared_learn(&prepared, v, body, n), 1);
		ck_assert_uint_eq(prepared.n, 1);
		n = prepared_body(body, sizeof(body), v, other, 16, "t");
		ck_assert_int_eq(topo_prepared_learn(&prepared, v, body, n), 0);
		ck_assert(!topo_prepared_has(&prepared, other, 16));

		/* EXECUTE of it: skip_metadata cleared in place. */
		e = execute_body(ex, sizeof(ex), v, id, 16);
		ck_assert_int_eq(topo_execute_need_metadata(&prepared, v, ex,
		    e), 1);
		ck_assert_uint_eq(ex[e - 1], 0);
		ck_assert_int_eq(topo_execute_need_metadata(&prepared, v, ex,
		    e), 0);
		/* A prefix too short to reach the flags asks for more. */
		e = execute_body(ex, sizeof(ex), v, id, 16);
		ck_assert_int_eq(topo_execute_need_metadata(&prepared, v, ex,
		    10), -2);
		/* Other statements are left alone. */
		e = execute_body(ex, sizeof(ex), v, other, 16);
		ck_assert_int_eq(topo_execute_need_metadata(&prepared, v, ex,
		    e), 0);
		ck_assert_uint_eq(ex[e - 1], 0x02);
	}
	/* The table is bounded: the oldest entry goes. */
	setup();
	for (i = 0; i < TOPO_PREPARED_MAX + 1; i++) {
		uint8_t xid[16] = { 0 };

		xid[0] = (uint8_t)i;
		xid[1] = 0x55;
		n = prepared_body(body, sizeof(body), CQL_V4, xid, 16, "local");
		ck_assert_int_eq(topo_prepared_learn(&prepared, CQL_V4, body,
		    n), 1);
	}
	ck_assert_uint_eq(prepared.n, TOPO_PREPARED_MAX);
	{
		uint8_t first[16] = { 0, 0x55 }, last[16] = {
		    TOPO_PREPARED_MAX, 0x55 };

		ck_assert(!topo_prepared_has(&prepared, first, 16));
		ck_assert(topo_prepared_has(&prepared, last, 16));
	}
}
END_TEST

/*
 * Relay tests.  Streams are built as a node or an app would send them and
 * pushed through relay_move() in evbuffers.
 */

/* Append a v3/v4 frame; lz4-compress the body when ${lz4}. */
static void
add_frame(struct evbuffer *b, uint8_t version, bool response, int16_t stream,
    uint8_t opcode, const uint8_t *body, size_t n, bool lz4)
{
	struct cql_header	 h;
	uint8_t			 hdr[CQL_HEADER_LEN], *c = NULL;
	int			 clen;

	memset(&h, 0, sizeof(h));
	h.version = version;
	h.response = response;
	h.stream = stream;
	h.opcode = opcode;
	if (lz4) {
		c = malloc(4 + (size_t)LZ4_compressBound((int)n));
		c[0] = (uint8_t)(n >> 24);
		c[1] = (uint8_t)(n >> 16);
		c[2] = (uint8_t)(n >> 8);
		c[3] = (uint8_t)n;
		clen = LZ4_compress_default((const char *)body, (char *)c + 4,
		    (int)n, LZ4_compressBound((int)n));
		ck_assert_int_gt(clen, 0);
		h.flags = CQL_FLAG_COMPRESSION;
		body = c;
		n = 4 + (size_t)clen;
	}
	h.length = (int32_t)n;
	evbuffer_add(b, hdr, cql_header_write(hdr, &h));
	evbuffer_add(b, body, n);
	free(c);
}

/* Take one v3/v4 frame off ${b}: header and a malloc'd body. */
static uint8_t *
take_frame(struct evbuffer *b, struct cql_header *h)
{
	uint8_t	 hdr[CQL_HEADER_LEN], *body;

	ck_assert_uint_ge(evbuffer_get_length(b), CQL_HEADER_LEN);
	evbuffer_remove(b, hdr, CQL_HEADER_LEN);
	ck_assert_int_eq(cql_header_parse(hdr, CQL_HEADER_LEN, h),
	    CQL_HEADER_LEN);
	body = malloc((size_t)h->length + 1);
	ck_assert_int_eq(evbuffer_remove(b, body, (size_t)h->length),
	    h->length);
	return (body);
}

/* A two-row peers_v2 body (nodes 1 and 2) and where its cells start. */
static size_t
sample_peers(uint8_t *body, size_t cap, size_t *head)
{
	static uint8_t	 peer[2][4], hid[2][16];
	static uint8_t	 na1[4] = { 10, 0, 0, 1 }, na2[4] = { 10, 0, 0, 2 };
	struct val	 v[2 * NPV2];

	pv2_row(v, peer[0], hid[0], 1, na1, 4);
	pv2_row(v + NPV2, peer[1], hid[1], 2, na2, 4);
	return (rows_body(body, cap, "system", "peers_v2", peers_v2_cols,
	    NPV2, true, 2, v, head));
}

/* The native_address cells of a rewritten sample_peers body. */
static void
assert_sample_rewritten(const uint8_t *p, size_t n, size_t head)
{
	struct val	 o[2 * NPV2];

	read_cells(p, n, head, o, 2 * NPV2);
	assert_cell(&o[4], lo_1_1, 4);
	assert_cell(&o[5], be_tunnel, 4);
	assert_cell(&o[NPV2 + 4], lo_1_2, 4);
}

/* An application table's rows. */
static size_t
sample_app_rows(uint8_t *body, size_t cap)
{
	static const struct col cols[] = { { "k", T_INT, 0 } };
	struct val	 v = { be9042, 4 };

	return (rows_body(body, cap, "app", "t", cols, 1, true, 1, &v, NULL));
}

/* Run the whole of ${in} through the relay, optionally a byte at a time. */
static void
pump(struct relay *r, bool from_app, struct evbuffer *in,
    struct evbuffer *out, bool bytewise)
{
	struct evbuffer	*feed;
	uint8_t		 c;
	ssize_t		 moved, total = 0;
	size_t		 len = evbuffer_get_length(in);

	if (!bytewise) {
		moved = relay_move(r, from_app, in, out);
		ck_assert_int_eq(moved, (ssize_t)len);
		ck_assert_uint_eq(evbuffer_get_length(in), 0);
		return;
	}
	feed = evbuffer_new();
	while (evbuffer_remove(in, &c, 1) == 1) {
		evbuffer_add(feed, &c, 1);
		moved = relay_move(r, from_app, feed, out);
		ck_assert_int_ge(moved, 0);
		total += moved;
	}
	ck_assert_int_eq(total, (ssize_t)len);
	ck_assert_uint_eq(evbuffer_get_length(feed), 0);
	evbuffer_free(feed);
}

static void
relay_v4_case(bool lz4, bool bytewise)
{
	struct relay		 r;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct cql_header	 h;
	uint8_t			 peers[4096], app[256], ev[128], *b;
	size_t			 np, na, head;
	struct cql_writer	 w;

	setup();
	np = sample_peers(peers, sizeof(peers), &head);
	na = sample_app_rows(app, sizeof(app));
	cql_writer_init(&w, ev, sizeof(ev));
	cql_write_string(&w, "STATUS_CHANGE", 13);
	cql_write_string(&w, "UP", 2);
	cql_write_byte(&w, 4);
	cql_write_raw(&w, "\x0a\x00\x00\x02", 4);
	cql_write_int(&w, 9042);

	add_frame(in, CQL_V4, true, 1, CQL_OP_RESULT, app, na, lz4);
	add_frame(in, CQL_V4, true, 2, CQL_OP_RESULT, peers, np, lz4);
	add_frame(in, CQL_V4, true, -1, CQL_OP_EVENT, ev, w.len, lz4);
	add_frame(in, CQL_V4, true, 3, CQL_OP_RESULT, app, na, lz4);
	relay_init(&r, CQL_V4, lz4 ? RELAY_COMP_LZ4 : RELAY_COMP_NONE, &rw,
	    1024 * 1024);
	pump(&r, false, in, out, bytewise);

	/* The app table passes verbatim (still compressed if it was). */
	b = take_frame(out, &h);
	ck_assert_int_eq(h.stream, 1);
	ck_assert_int_eq(h.flags & CQL_FLAG_COMPRESSION, lz4);
	if (!lz4)
		ck_assert_mem_eq(b, app, na);
	free(b);
	/* The peers rows are rewritten and sent uncompressed. */
	b = take_frame(out, &h);
	ck_assert_int_eq(h.stream, 2);
	ck_assert_int_eq(h.flags & CQL_FLAG_COMPRESSION, 0);
	ck_assert_int_eq(h.length, (int32_t)np);
	assert_sample_rewritten(b, np, head);
	free(b);
	b = take_frame(out, &h);
	ck_assert_int_eq(h.opcode, CQL_OP_EVENT);
	ck_assert_int_eq(h.flags & CQL_FLAG_COMPRESSION, 0);
	ck_assert_mem_eq(b + h.length - 8, "\x7f\x00\x02\x02", 4);
	free(b);
	b = take_frame(out, &h);
	ck_assert_int_eq(h.stream, 3);
	free(b);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	ck_assert_uint_eq(r.rewrites, 2);
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}

START_TEST(test_relay_v4)
{
	relay_v4_case(false, false);
	relay_v4_case(false, true);
}
END_TEST

START_TEST(test_relay_v4_lz4)
{
	relay_v4_case(true, false);
	relay_v4_case(true, true);
}
END_TEST

/* PREPARE's result teaches the relay; the app's EXECUTE then asks for
 * metadata, and the metadata-carrying rows are rewritten. */
START_TEST(test_relay_prepared_v4)
{
	struct relay		 r;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct cql_header	 h;
	const uint8_t		 id[16] = { 0xCD, 0xEF };
	uint8_t			 body[1024], *b;
	size_t			 n;

	setup();
	relay_init(&r, CQL_V4, RELAY_COMP_LZ4, &rw, 1024 * 1024);
	/* Before any PREPARE, EXECUTEs pass untouched. */
	n = execute_body(body, sizeof(body), CQL_V4, id, 16);
	add_frame(in, CQL_V4, false, 5, CQL_OP_EXECUTE, body, n, false);
	pump(&r, true, in, out, false);
	b = take_frame(out, &h);
	ck_assert_uint_eq(b[h.length - 1], 0x02);
	free(b);

	n = prepared_body(body, sizeof(body), CQL_V4, id, 16, "peers_v2");
	add_frame(in, CQL_V4, true, 5, CQL_OP_RESULT, body, n, false);
	pump(&r, false, in, out, true);
	b = take_frame(out, &h);
	ck_assert_mem_eq(b, body, n);		/* passed verbatim */
	free(b);
	ck_assert(topo_prepared_has(&prepared, id, 16));

	n = execute_body(body, sizeof(body), CQL_V4, id, 16);
	add_frame(in, CQL_V4, false, 6, CQL_OP_EXECUTE, body, n, true);
	pump(&r, true, in, out, false);
	b = take_frame(out, &h);
	ck_assert_int_eq(h.opcode, CQL_OP_EXECUTE);
	ck_assert_int_eq(h.flags & CQL_FLAG_COMPRESSION, 0);
	ck_assert_int_eq(h.length, (int32_t)n);
	ck_assert_uint_eq(b[h.length - 1], 0);	/* skip_metadata cleared */
	ck_assert_mem_eq(b, body, n - 1);
	free(b);
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* Frames above max_frame_size stop the relay before buffering them. */
START_TEST(test_relay_too_large)
{
	struct relay		 r;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	uint8_t			 hdr[CQL_HEADER_LEN];
	struct cql_header	 h = { .version = CQL_V4, .opcode =
	    CQL_OP_QUERY, .stream = 9, .length = 70000 };

	relay_init(&r, CQL_V4, RELAY_COMP_NONE, NULL, 65536);
	evbuffer_add(in, hdr, cql_header_write(hdr, &h));
	ck_assert_int_eq(relay_move(&r, true, in, out), -1);
	ck_assert_int_eq(r.error, RELAY_ERR_TOO_LARGE);
	ck_assert_int_eq(r.up.last.stream, 9);
	ck_assert_int_eq(r.up.last.length, 70000);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/*
 * A compressed body whose declared length its few bytes cannot produce is
 * refused before memory is reserved for it (found by fuzz_rewriter: a
 * 25-byte RESULT made the relay reserve 256 MiB).
 */
START_TEST(test_relay_decompress_bomb)
{
	struct relay		 r;
	struct evbuffer		*in, *out;
	uint8_t			 hdr[CQL_HEADER_LEN];
	uint8_t			 body[8] = { 0x0f, 0xff, 0xff, 0xff };
	struct cql_header	 h = { .version = CQL_V4, .response = true,
	    .flags = CQL_FLAG_COMPRESSION, .opcode = CQL_OP_RESULT,
	    .stream = 4, .length = sizeof(body) };
	enum relay_compression	 comp;

	for (comp = RELAY_COMP_LZ4; comp <= RELAY_COMP_SNAPPY; comp++) {
		in = evbuffer_new();
		out = evbuffer_new();
		if (comp == RELAY_COMP_SNAPPY) {
			/* varint 0x0fffffff */
			memcpy(body, "\xff\xff\xff\x7f", 4);
		}
		relay_init(&r, CQL_V4, comp, &rw, 256u << 20);
		evbuffer_add(in, hdr, cql_header_write(hdr, &h));
		evbuffer_add(in, body, sizeof(body));
		(void)relay_scratch_peak();
		ck_assert_int_eq(relay_move(&r, false, in, out), -1);
		ck_assert_int_eq(r.error, RELAY_ERR_CORRUPT);
		ck_assert_uint_lt(relay_scratch_peak(), 1024 * 1024);
		relay_free(&r);
		evbuffer_free(in);
		evbuffer_free(out);
	}
}
END_TEST

/*
 * A compressed body too short to hold its length is corrupt, and the
 * relay says so: it failed with error "ok" (found by fuzz_rewriter).
 */
START_TEST(test_relay_decompress_short)
{
	static const uint8_t	 bodies[][2] = { { 0 }, { 0x80, 0x80 } };
	struct relay		 r;
	struct evbuffer		*in, *out;
	uint8_t			 hdr[CQL_HEADER_LEN];
	struct cql_header	 h = { .version = CQL_V4, .response = true,
	    .flags = CQL_FLAG_COMPRESSION, .opcode = CQL_OP_RESULT,
	    .stream = 15 };
	unsigned		 i;

	for (i = 0; i < 2; i++) {
		in = evbuffer_new();
		out = evbuffer_new();
		/* lz4: no room for the length; snappy: unterminated varint */
		h.length = i == 0 ? 0 : 2;
		relay_init(&r, CQL_V4, i == 0 ? RELAY_COMP_LZ4 :
		    RELAY_COMP_SNAPPY, &rw, 256u << 20);
		evbuffer_add(in, hdr, cql_header_write(hdr, &h));
		evbuffer_add(in, bodies[i], (size_t)h.length);
		ck_assert_int_eq(relay_move(&r, false, in, out), -1);
		ck_assert_int_eq(r.error, RELAY_ERR_CORRUPT);
		relay_free(&r);
		evbuffer_free(in);
		evbuffer_free(out);
	}
}
END_TEST

/* Without a rewriter (pin mode) everything passes byte for byte. */
START_TEST(test_relay_pin_verbatim)
{
	struct relay	 r;
	struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();
	uint8_t		 peers[4096], copy[8192];
	size_t		 np, head, len;

	np = sample_peers(peers, sizeof(peers), &head);
	add_frame(in, CQL_V4, true, 2, CQL_OP_RESULT, peers, np, false);
	len = evbuffer_get_length(in);
	evbuffer_copyout(in, copy, len);
	relay_init(&r, CQL_V4, RELAY_COMP_NONE, NULL, 1024 * 1024);
	pump(&r, false, in, out, true);
	ck_assert_uint_eq(evbuffer_get_length(out), len);
	ck_assert_mem_eq(evbuffer_pullup(out, -1), copy, len);
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* v5: an envelope (header + body) appended to a flat buffer. */
static size_t
envelope(uint8_t *p, int16_t stream, uint8_t opcode, const uint8_t *body,
    size_t n, bool response)
{
	struct cql_header	 h;
	size_t			 hl;

	memset(&h, 0, sizeof(h));
	h.version = CQL_V5;
	h.response = response;
	h.stream = stream;
	h.opcode = opcode;
	h.length = (int32_t)n;
	hl = cql_header_write(p, &h);
	memcpy(p + hl, body, n);
	return (hl + n);
}

/* Encode ${payload} as one segment, LZ4-compressed when ${fmt} is LZ4. */
static void
add_segment(struct evbuffer *b, enum cql_seg_format fmt, const uint8_t *p,
    size_t n, bool self_contained)
{
	uint8_t		*seg = malloc(n + 64 + (size_t)LZ4_compressBound((int)n));
	uint8_t		*c;
	size_t		 len;
	int		 clen;
	uint32_t	 hdr, crc;
	uint64_t	 h40;

	if (fmt == CQL_SEG_CRC) {
		len = cql_segment_encode(fmt, p, n, self_contained, seg,
		    n + 64);
		ck_assert_uint_gt(len, 0);
		evbuffer_add(b, seg, len);
		free(seg);
		return;
	}
	/* LZ4 format with a compressed payload. */
	c = seg + 8;
	clen = LZ4_compress_default((const char *)p, (char *)c, (int)n,
	    LZ4_compressBound((int)n));
	ck_assert_int_gt(clen, 0);
	h40 = (uint64_t)clen | (uint64_t)n << 17 |
	    (uint64_t)(self_contained ? 1 : 0) << 34;
	for (hdr = 0; hdr < 5; hdr++)
		seg[hdr] = (uint8_t)(h40 >> (8 * hdr));
	crc = cql_crc24(seg, 5);
	seg[5] = (uint8_t)crc;
	seg[6] = (uint8_t)(crc >> 8);
	seg[7] = (uint8_t)(crc >> 16);
	crc = cql_crc32(c, (size_t)clen);
	c[clen] = (uint8_t)crc;
	c[clen + 1] = (uint8_t)(crc >> 8);
	c[clen + 2] = (uint8_t)(crc >> 16);
	c[clen + 3] = (uint8_t)(crc >> 24);
	evbuffer_add(b, seg, 8 + (size_t)clen + 4);
	free(seg);
}

/* Decode every segment of ${b} (checking CRCs) into one payload buffer. */
static size_t
take_segments(struct evbuffer *b, enum cql_seg_format fmt, uint8_t *out,
    size_t cap, unsigned *nseg, unsigned *n_not_self)
{
	struct cql_segment	 seg;
	uint8_t			 hdr[8], *p;
	size_t			 hl = fmt == CQL_SEG_CRC ? 6 : 8, got = 0;
	ssize_t			 n;

	*nseg = *n_not_self = 0;
	while (evbuffer_get_length(b) > 0) {
		evbuffer_copyout(b, hdr, hl);
		ck_assert_int_eq(cql_segment_parse_header(fmt, hdr, hl, &seg),
		    (int)hl);
		p = evbuffer_pullup(b, (ssize_t)seg.total_len);
		ck_assert_ptr_nonnull(p);
		n = cql_segment_decode(fmt, p, seg.total_len, &seg, out + got,
		    cap - got);
		ck_assert_int_ge(n, 0);
		got += (size_t)n;
		evbuffer_drain(b, seg.total_len);
		(*nseg)++;
		*n_not_self += !seg.self_contained;
	}
	return (got);
}

static void
relay_v5_case(enum cql_seg_format fmt, bool bytewise)
{
	struct relay		 r;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct cql_header	 h;
	uint8_t			 peers[4096], app[256], pay[16384], got[16384];
	size_t			 np, na, head, n = 0, g, off;
	unsigned		 nseg, nns;

	setup();
	np = sample_peers(peers, sizeof(peers), &head);
	na = sample_app_rows(app, sizeof(app));
	/* One segment: app rows, peers rows, app rows. */
	n += envelope(pay + n, 1, CQL_OP_RESULT, app, na, true);
	n += envelope(pay + n, 2, CQL_OP_RESULT, peers, np, true);
	n += envelope(pay + n, 3, CQL_OP_RESULT, app, na, true);
	add_segment(in, fmt, pay, n, true);
	/* A segment with nothing to change. */
	add_segment(in, fmt, pay, envelope(pay, 4, CQL_OP_RESULT, app, na,
	    true), true);
	relay_init(&r, CQL_V5, fmt == CQL_SEG_LZ4 ? RELAY_COMP_LZ4 :
	    RELAY_COMP_NONE, &rw, 1024 * 1024);
	pump(&r, false, in, out, bytewise);
	g = take_segments(out, fmt, got, sizeof(got), &nseg, &nns);
	ck_assert_uint_eq(nseg, 2);
	ck_assert_uint_eq(nns, 0);
	off = 0;
	ck_assert_int_eq(cql_header_parse(got + off, g - off, &h), 9);
	ck_assert_int_eq(h.stream, 1);
	ck_assert_mem_eq(got + off + 9, app, na);
	off += 9 + na;
	ck_assert_int_eq(cql_header_parse(got + off, g - off, &h), 9);
	ck_assert_int_eq(h.stream, 2);
	ck_assert_int_eq(h.length, (int32_t)np);
	assert_sample_rewritten(got + off + 9, np, head);
	off += 9 + np;
	ck_assert_int_eq(cql_header_parse(got + off, g - off, &h), 9);
	ck_assert_int_eq(h.stream, 3);
	off += 9 + na;
	ck_assert_int_eq(cql_header_parse(got + off, g - off, &h), 9);
	ck_assert_int_eq(h.stream, 4);
	off += 9 + na;
	ck_assert_uint_eq(off, g);
	ck_assert_uint_eq(r.rewrites, 1);
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}

START_TEST(test_relay_v5_crc)
{
	relay_v5_case(CQL_SEG_CRC, false);
	relay_v5_case(CQL_SEG_CRC, true);
}
END_TEST

START_TEST(test_relay_v5_lz4)
{
	relay_v5_case(CQL_SEG_LZ4, false);
	relay_v5_case(CQL_SEG_LZ4, true);
}
END_TEST

/* A peers result too large for one segment: reassembled and rewritten. */
START_TEST(test_relay_v5_large)
{
	enum { ROWS = 4000 };
	struct relay		 r;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct cql_header	 h;
	struct val		*v = calloc(ROWS * NPV2, sizeof(*v));
	uint8_t			(*peer)[4] = calloc(ROWS, 4);
	uint8_t			(*hid)[16] = calloc(ROWS, 16);
	uint8_t			 na[4] = { 10, 0, 0, 1 };
	uint8_t			*body = malloc(1 << 20), *env, *got;
	size_t			 n, head, e, off, chunk, g;
	struct val		*o = calloc(ROWS * NPV2, sizeof(*o));
	unsigned		 nseg, nns;
	int			 i;

	setup();
	for (i = 0; i < ROWS; i++)
		pv2_row(v + i * NPV2, peer[i], hid[i], (uint8_t)(i % 200 + 1),
		    na, 4);
	n = rows_body(body, 1 << 20, "system", "peers_v2", peers_v2_cols,
	    NPV2, true, ROWS, v, &head);
	ck_assert_uint_gt(n, 2 * CQL_SEG_MAX_PAYLOAD);
	env = malloc(n + 9);
	e = envelope(env, 7, CQL_OP_RESULT, body, n, true);
	for (off = 0; off < e; off += chunk) {
		chunk = e - off > CQL_SEG_MAX_PAYLOAD ? CQL_SEG_MAX_PAYLOAD :
		    e - off;
		add_segment(in, CQL_SEG_CRC, env + off, chunk, false);
	}
	relay_init(&r, CQL_V5, RELAY_COMP_NONE, &rw, 64 * 1024 * 1024);
	pump(&r, false, in, out, false);
	got = malloc(e + 1024);
	g = take_segments(out, CQL_SEG_CRC, got, e + 1024, &nseg, &nns);
	ck_assert_uint_eq(g, e);
	ck_assert_uint_eq(nns, nseg);
	ck_assert_uint_ge(nseg, 3);
	ck_assert_int_eq(cql_header_parse(got, g, &h), 9);
	ck_assert_int_eq(h.stream, 7);
	read_cells(got + 9, g - 9, head, o, ROWS * NPV2);
	for (i = 0; i < ROWS; i++) {
		ck_assert_int_eq(o[i * NPV2 + 4].len, 4);
		ck_assert_uint_eq(((const uint8_t *)o[i * NPV2 + 4].p)[0], 127);
		ck_assert_uint_eq(((const uint8_t *)o[i * NPV2 + 4].p)[3], i % 200 + 1);
	}
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
	free(v);
	free(peer);
	free(hid);
	free(body);
	free(env);
	free(got);
	free(o);
}
END_TEST

/*
 * client_auth = passthrough: the relay follows the app's own v5 handshake,
 * unframed until STARTUP (app) and AUTHENTICATE (node), then segments in
 * the format the STARTUP asked for.
 */
static void
relay_passthrough_case(bool bytewise)
{
	struct relay		 r;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct cql_header	 h;
	uint8_t			 body[256], peers[4096], pay[8192], got[8192];
	uint8_t			*b;
	size_t			 n, np, head, g;
	unsigned		 nseg, nns;
	struct cql_writer	 w;

	setup();
	relay_init(&r, CQL_V5, RELAY_COMP_NONE, &rw, 1024 * 1024);
	relay_expect_startup(&r);

	/* App: OPTIONS, STARTUP (lz4), then an LZ4 segment. */
	add_frame(in, CQL_V5, false, 0, CQL_OP_OPTIONS, NULL, 0, false);
	cql_writer_init(&w, body, sizeof(body));
	cql_write_short(&w, 2);
	cql_write_string(&w, "CQL_VERSION", 11);
	cql_write_string(&w, "3.0.0", 5);
	cql_write_string(&w, "COMPRESSION", 11);
	cql_write_string(&w, "lz4", 3);
	add_frame(in, CQL_V5, false, 1, CQL_OP_STARTUP, body, w.len, false);
	n = envelope(pay, 2, CQL_OP_AUTH_RESPONSE, (const uint8_t *)"\0\0\0\0",
	    4, false);
	add_segment(in, CQL_SEG_LZ4, pay, n, true);
	pump(&r, true, in, out, bytewise);
	ck_assert_int_eq(r.comp, RELAY_COMP_LZ4);
	ck_assert(!r.up.unframed);
	b = take_frame(out, &h);
	ck_assert_int_eq(h.opcode, CQL_OP_OPTIONS);
	free(b);
	b = take_frame(out, &h);
	ck_assert_int_eq(h.opcode, CQL_OP_STARTUP);
	free(b);
	g = take_segments(out, CQL_SEG_LZ4, got, sizeof(got), &nseg, &nns);
	ck_assert_uint_eq(g, n);
	ck_assert_mem_eq(got, pay, n);

	/* Node: SUPPORTED, AUTHENTICATE, then segments with the ring. */
	add_frame(in, CQL_V5, true, 0, CQL_OP_SUPPORTED, (const uint8_t *)
	    "\0\0", 2, false);
	add_frame(in, CQL_V5, true, 1, CQL_OP_AUTHENTICATE, (const uint8_t *)
	    "\0\1x", 3, false);
	np = sample_peers(peers, sizeof(peers), &head);
	n = envelope(pay, 9, CQL_OP_RESULT, peers, np, true);
	add_segment(in, CQL_SEG_LZ4, pay, n, true);
	pump(&r, false, in, out, bytewise);
	ck_assert(!r.down.unframed);
	b = take_frame(out, &h);
	ck_assert_int_eq(h.opcode, CQL_OP_SUPPORTED);
	free(b);
	b = take_frame(out, &h);
	ck_assert_int_eq(h.opcode, CQL_OP_AUTHENTICATE);
	free(b);
	g = take_segments(out, CQL_SEG_LZ4, got, sizeof(got), &nseg, &nns);
	ck_assert_uint_eq(g, n);
	assert_sample_rewritten(got + 9, np, head);
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}

START_TEST(test_relay_passthrough_v5)
{
	relay_passthrough_case(false);
	relay_passthrough_case(true);
}
END_TEST

/* A corrupt segment stops the relay. */
START_TEST(test_relay_v5_corrupt)
{
	struct relay	 r;
	struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();
	uint8_t		 app[256], pay[512], *p;
	size_t		 na, n;

	setup();
	na = sample_app_rows(app, sizeof(app));
	n = envelope(pay, 1, CQL_OP_RESULT, app, na, true);
	add_segment(in, CQL_SEG_CRC, pay, n, true);
	p = evbuffer_pullup(in, -1);
	p[6 + 20] ^= 0x40;	/* payload bit flip: CRC32 no longer matches */
	relay_init(&r, CQL_V5, RELAY_COMP_NONE, &rw, 1024 * 1024);
	/* The rows are not a topology table: nothing needs checking... */
	ck_assert_int_eq(relay_move(&r, false, in, out), (ssize_t)(6 + n + 4));
	/* ...but a header whose CRC24 is wrong is refused at once. */
	add_segment(in, CQL_SEG_CRC, pay, n, true);
	p = evbuffer_pullup(in, -1);
	p[0] ^= 1;
	ck_assert_int_eq(relay_move(&r, false, in, out), -1);
	ck_assert_int_eq(r.error, RELAY_ERR_CORRUPT);
	relay_free(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

Suite *
topology_suite(void)
{
	Suite	*s = suite_create("topology");
	TCase	*tc;

	tc = tcase_create("rewrite");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_classify);
	tcase_add_test(tc, test_rows_ipv4_in_place);
	tcase_add_test(tc, test_rows_ipv6_rebuilt);
	tcase_add_test(tc, test_rows_null_and_any);
	tcase_add_test(tc, test_rows_unknown_node);
	tcase_add_test(tc, test_rows_malformed);
	tcase_add_test(tc, test_events);
	tcase_add_test(tc, test_prepared);
	suite_add_tcase(s, tc);

	tc = tcase_create("relay");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_relay_v4);
	tcase_add_test(tc, test_relay_v4_lz4);
	tcase_add_test(tc, test_relay_prepared_v4);
	tcase_add_test(tc, test_relay_too_large);
	tcase_add_test(tc, test_relay_decompress_bomb);
	tcase_add_test(tc, test_relay_decompress_short);
	tcase_add_test(tc, test_relay_pin_verbatim);
	tcase_add_test(tc, test_relay_v5_crc);
	tcase_add_test(tc, test_relay_v5_lz4);
	tcase_add_test(tc, test_relay_v5_large);
	tcase_add_test(tc, test_relay_v5_corrupt);
	tcase_add_test(tc, test_relay_passthrough_v5);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return (s);
}
