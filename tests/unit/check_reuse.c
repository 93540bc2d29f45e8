/*
 * Node connection reuse: the relay's request/response tracking (what
 * relay_reusable() says after given traffic, whole or in pieces) and the
 * STARTUP match of reuse.c.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "cql_frame.h"
#include "relay.h"
#include "reuse.h"

#define SUITE_FN reuse_suite
#include "test_main.h"

/* Build a v4 frame into ${out}; returns its length. */
static size_t
frame(uint8_t *out, bool response, int16_t stream, uint8_t opcode,
    const uint8_t *body, size_t n)
{
	struct cql_header	 h;
	size_t			 hl;

	memset(&h, 0, sizeof(h));
	h.version = CQL_V4;
	h.response = response;
	h.stream = stream;
	h.opcode = opcode;
	h.length = (int32_t)n;
	hl = cql_header_write(out, &h);
	if (n > 0)
		memcpy(out + hl, body, n);
	return (hl + n);
}

/* A 4-byte body: a RESULT kind or an ERROR code, plus ${extra} zeros. */
static size_t
frame_int(uint8_t *out, int16_t stream, uint8_t opcode, uint32_t v,
    size_t extra)
{
	uint8_t	 b[64];

	memset(b, 0, sizeof(b));
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
	return (frame(out, true, stream, opcode, b, 4 + extra));
}

static void
start(struct relay *r)
{
	relay_init(r, CQL_V4, RELAY_COMP_NONE, NULL, 1u << 20);
	ck_assert(relay_track_start(r));
}

/* Pass ${n} bytes through the relay in one buffer; all must move. */
static void
pass(struct relay *r, bool from_app, const uint8_t *p, size_t n)
{
	struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();

	evbuffer_add(in, p, n);
	ck_assert_int_eq(relay_move(r, from_app, in, out), (ssize_t)n);
	ck_assert_uint_eq(evbuffer_get_length(out), n);
	evbuffer_free(in);
	evbuffer_free(out);
}

/* Pass ${n} bytes one at a time, each call seeing what is left over. */
static void
trickle(struct relay *r, bool from_app, const uint8_t *p, size_t n)
{
	struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();
	size_t		 i;

	for (i = 0; i < n; i++) {
		evbuffer_add(in, p + i, 1);
		ck_assert_int_ge(relay_move(r, from_app, in, out), 0);
	}
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), n);
	evbuffer_free(in);
	evbuffer_free(out);
}

static void
query(struct relay *r, int16_t stream)
{
	uint8_t	 f[64];

	pass(r, true, f, frame(f, false, stream, CQL_OP_QUERY,
	    (const uint8_t *)"\0\0\0\1x\0\1\0", 8));
}

static void
void_result(struct relay *r, int16_t stream)
{
	uint8_t	 f[64];

	pass(r, false, f, frame_int(f, stream, CQL_OP_RESULT, 0x0001, 0));
}

START_TEST(test_track_refused)
{
	struct relay	 r;

	relay_init(&r, CQL_V5, RELAY_COMP_NONE, NULL, 1u << 20);
	ck_assert(!relay_track_start(&r));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_UNTRACKED);
	relay_free(&r);
	relay_init(&r, CQL_V4, RELAY_COMP_LZ4, NULL, 1u << 20);
	ck_assert(!relay_track_start(&r));
	relay_free(&r);
	relay_init(&r, CQL_V4, RELAY_COMP_NONE, NULL, 1u << 20);
	relay_expect_startup(&r);	/* passthrough */
	ck_assert(!relay_track_start(&r));
	relay_free(&r);
	relay_init(&r, CQL_DSE_V2, RELAY_COMP_NONE, NULL, 1u << 20);
	ck_assert(relay_track_start(&r));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
	relay_free(&r);
}
END_TEST

START_TEST(test_requests_and_responses)
{
	struct relay	 r;

	start(&r);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
	query(&r, 1);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_IN_FLIGHT);
	void_result(&r, 1);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
	/* Pipelined, answered out of order. */
	query(&r, 2);
	query(&r, 3);
	void_result(&r, 3);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_IN_FLIGHT);
	void_result(&r, 2);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
	ck_assert_uint_eq(r.track.requests, 3);
	ck_assert_uint_eq(r.track.responses, 3);
	relay_free(&r);
}
END_TEST

START_TEST(test_allowed_opcodes)
{
	static const uint8_t	 ops[] = { CQL_OP_QUERY, CQL_OP_PREPARE,
				    CQL_OP_EXECUTE, CQL_OP_BATCH,
				    CQL_OP_OPTIONS };
	struct relay		 r;
	uint8_t			 f[64];
	size_t			 i;

	start(&r);
	for (i = 0; i < sizeof(ops); i++) {
		pass(&r, true, f, frame(f, false, (int16_t)i, ops[i],
		    NULL, 0));
		pass(&r, false, f, frame(f, true, (int16_t)i,
		    ops[i] == CQL_OP_OPTIONS ? CQL_OP_SUPPORTED :
		    CQL_OP_RESULT, (const uint8_t *)"\0\0\0\1", 4));
	}
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
	relay_free(&r);
}
END_TEST

START_TEST(test_disqualifying_opcodes)
{
	static const uint8_t	 ops[] = { CQL_OP_REGISTER, CQL_OP_STARTUP,
				    CQL_OP_AUTH_RESPONSE, CQL_OP_CREDENTIALS,
				    CQL_OP_REVISE_REQUEST, 0x42 };
	struct relay		 r;
	uint8_t			 f[64];
	size_t			 i;

	for (i = 0; i < sizeof(ops); i++) {
		start(&r);
		pass(&r, true, f, frame(f, false, 7, ops[i], NULL, 0));
		void_result(&r, 7);	/* even once answered */
		ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_OPCODE);
		relay_free(&r);
	}
}
END_TEST

START_TEST(test_node_frames_that_spoil)
{
	struct relay	 r;
	uint8_t		 f[64];

	/* USE: RESULT kind SET_KEYSPACE. */
	start(&r);
	query(&r, 1);
	pass(&r, false, f, frame_int(f, 1, CQL_OP_RESULT, 0x0003, 6));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_KEYSPACE);
	relay_free(&r);

	/* Rows, prepared, schema change: fine. */
	start(&r);
	query(&r, 1);
	pass(&r, false, f, frame_int(f, 1, CQL_OP_RESULT, 0x0002, 12));
	query(&r, 2);
	pass(&r, false, f, frame_int(f, 2, CQL_OP_RESULT, 0x0004, 12));
	query(&r, 3);
	pass(&r, false, f, frame_int(f, 3, CQL_OP_RESULT, 0x0005, 12));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
	relay_free(&r);

	/* EVENT, on stream -1. */
	start(&r);
	pass(&r, false, f, frame_int(f, -1, CQL_OP_EVENT, 0x0000, 8));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_EVENT);
	ck_assert_uint_eq(r.track.responses, 0);
	relay_free(&r);

	/* ERROR: protocol and server errors spoil, others do not. */
	start(&r);
	query(&r, 1);
	pass(&r, false, f, frame_int(f, 1, CQL_OP_ERROR, CQL_ERR_INVALID, 2));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
	query(&r, 2);
	pass(&r, false, f, frame_int(f, 2, CQL_OP_ERROR, CQL_ERR_PROTOCOL, 2));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_ERROR);
	relay_free(&r);
	start(&r);
	query(&r, 1);
	pass(&r, false, f, frame_int(f, 1, CQL_OP_ERROR, CQL_ERR_SERVER, 2));
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_ERROR);
	relay_free(&r);
}
END_TEST

START_TEST(test_partial_frames)
{
	struct relay	 r;
	uint8_t		 f[64];
	size_t		 n;

	/* A SET_KEYSPACE result arriving a byte at a time is still seen. */
	start(&r);
	query(&r, 1);
	n = frame_int(f, 1, CQL_OP_RESULT, 0x0003, 6);
	trickle(&r, false, f, n);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_KEYSPACE);
	relay_free(&r);

	/* Inside a frame is not a boundary, whichever side. */
	start(&r);
	query(&r, 1);
	n = frame_int(f, 1, CQL_OP_RESULT, 0x0002, 20);
	{
		struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();

		evbuffer_add(in, f, n - 5);
		ck_assert_int_ge(relay_move(&r, false, in, out), 0);
		ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_IN_FLIGHT);
		evbuffer_add(in, f + n - 5, 5);
		ck_assert_int_ge(relay_move(&r, false, in, out), 0);
		ck_assert_uint_eq(evbuffer_get_length(in), 0);
		ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_NONE);
		n = frame(f, false, 2, CQL_OP_QUERY,
		    (const uint8_t *)"\0\0\0\1x\0\1\0", 8);
		evbuffer_add(in, f, n - 1);
		ck_assert_int_ge(relay_move(&r, true, in, out), 0);
		ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_IN_FLIGHT);
		evbuffer_free(in);
		evbuffer_free(out);
	}
	relay_free(&r);

	/*
	 * The kind in another evbuffer chain than the header (the fast
	 * path's walk sees only the first chain).
	 */
	start(&r);
	query(&r, 1);
	n = frame_int(f, 1, CQL_OP_RESULT, 0x0003, 6);
	{
		struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();

		evbuffer_add_reference(in, f, CQL_HEADER_LEN + 2, NULL, NULL);
		evbuffer_add_reference(in, f + CQL_HEADER_LEN + 2,
		    n - CQL_HEADER_LEN - 2, NULL, NULL);
		ck_assert_int_eq(relay_move(&r, false, in, out), (ssize_t)n);
		evbuffer_free(in);
		evbuffer_free(out);
	}
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_KEYSPACE);
	relay_free(&r);
}
END_TEST

START_TEST(test_streams_out_of_step)
{
	struct relay	 r;
	int16_t		 i;

	/* A response nobody asked for (a second page, say). */
	start(&r);
	query(&r, 1);
	void_result(&r, 1);
	void_result(&r, 1);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_STREAMS);
	relay_free(&r);

	/* A stream used again while in flight. */
	start(&r);
	query(&r, 1);
	query(&r, 1);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_STREAMS);
	relay_free(&r);

	/* More in flight than the tracker holds. */
	start(&r);
	for (i = 0; i < RELAY_TRACK_STREAMS; i++)
		query(&r, i);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_IN_FLIGHT);
	query(&r, RELAY_TRACK_STREAMS);
	for (i = 0; i <= RELAY_TRACK_STREAMS; i++)
		void_result(&r, i);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_STREAMS);
	relay_free(&r);
}
END_TEST

START_TEST(test_compressed_frame)
{
	struct relay	 r;
	uint8_t		 f[64];
	size_t		 n;

	start(&r);
	n = frame(f, false, 1, CQL_OP_QUERY, NULL, 0);
	f[1] |= CQL_FLAG_COMPRESSION;
	pass(&r, true, f, n);
	void_result(&r, 1);
	ck_assert_int_eq(relay_reusable(&r), RELAY_SPOIL_COMPRESSED);
	relay_free(&r);
}
END_TEST

/* A STARTUP body: a [string map] of ${n} pairs. */
static size_t
startup(uint8_t *out, const char *const *kv, size_t n)
{
	size_t	 i, o = 2, l;

	out[0] = 0;
	out[1] = (uint8_t)n;
	for (i = 0; i < 2 * n; i++) {
		l = strlen(kv[i]);
		out[o++] = 0;
		out[o++] = (uint8_t)l;
		memcpy(out + o, kv[i], l);
		o += l;
	}
	return (o);
}

START_TEST(test_startup_ok)
{
	static const char *const plain[] = { "CQL_VERSION", "3.0.0",
				    "DRIVER_NAME", "x" };
	static const char *const lz4[] = { "CQL_VERSION", "3.0.0",
				    "COMPRESSION", "lz4" };
	uint8_t			 b[256];
	size_t			 n;

	n = startup(b, plain, 2);
	ck_assert(reuse_startup_ok(CQL_V4, b, n));
	ck_assert(reuse_startup_ok(CQL_V3, b, n));
	ck_assert(reuse_startup_ok(CQL_DSE_V1, b, n));
	ck_assert(!reuse_startup_ok(CQL_V5, b, n));
	ck_assert(!reuse_startup_ok(CQL_V2, b, n));
	ck_assert(!reuse_startup_ok(CQL_V4, b, n - 1));	/* truncated */
	n = startup(b, lz4, 2);
	ck_assert(!reuse_startup_ok(CQL_V4, b, n));
}
END_TEST

START_TEST(test_startup_match)
{
	static const char *const a[] = { "CQL_VERSION", "3.0.0",
				    "DRIVER_NAME", "app", "DRIVER_VERSION",
				    "1.0" };
	static const char *const b[] = { "CQL_VERSION", "3.0.0",
				    "DRIVER_NAME", "other", "DRIVER_VERSION",
				    "1.0" };
	static const char *const c[] = { "DRIVER_NAME", "app",
				    "CQL_VERSION", "3.0.0", "DRIVER_VERSION",
				    "1.0" };
	struct reuse_conn	 rc;
	uint8_t			 ba[256], bb[256], bc[256];
	size_t			 na, nb, nc;

	na = startup(ba, a, 3);
	nb = startup(bb, b, 3);
	nc = startup(bc, c, 3);
	memset(&rc, 0, sizeof(rc));
	rc.version = CQL_V4;
	rc.startup = ba;
	rc.startup_len = na;
	ck_assert(reuse_startup_match(&rc, CQL_V4, ba, na));
	ck_assert(!reuse_startup_match(&rc, CQL_V3, ba, na));
	ck_assert(!reuse_startup_match(&rc, CQL_V4, bb, nb));
	/* Same options in another order: not byte for byte. */
	ck_assert(!reuse_startup_match(&rc, CQL_V4, bc, nc));
	ck_assert(!reuse_startup_match(&rc, CQL_V4, ba, na - 1));
}
END_TEST

Suite *
reuse_suite(void)
{
	Suite	*s = suite_create("reuse");
	TCase	*tc = tcase_create("track");

	tcase_add_test(tc, test_track_refused);
	tcase_add_test(tc, test_requests_and_responses);
	tcase_add_test(tc, test_allowed_opcodes);
	tcase_add_test(tc, test_disqualifying_opcodes);
	tcase_add_test(tc, test_node_frames_that_spoil);
	tcase_add_test(tc, test_partial_frames);
	tcase_add_test(tc, test_streams_out_of_step);
	tcase_add_test(tc, test_compressed_frame);
	suite_add_tcase(s, tc);
	tc = tcase_create("startup");
	tcase_add_test(tc, test_startup_ok);
	tcase_add_test(tc, test_startup_match);
	suite_add_tcase(s, tc);
	return (s);
}
