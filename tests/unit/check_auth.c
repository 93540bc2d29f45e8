/*
 * Unit tests for the handshake state machine (auth.c), driven by byte
 * sequences as the app and the node would send them, with no sockets.
 */
#include <check.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cql_frame.h"

#define SUITE_FN auth_suite
#include "test_main.h"

/* A growable byte buffer. */
struct buf {
	uint8_t	*p;
	size_t	 len;
	size_t	 cap;
};

static void
buf_add(struct buf *b, const uint8_t *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		ck_assert_ptr_nonnull(b->p);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
buf_drop(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void
buf_clear(struct buf *b)
{
	b->len = 0;
}

/* A fake session: what the machine sent each way, and pending input. */
struct harness {
	struct auth_hs		 hs;
	struct auth_creds	 creds;
	struct auth_sink	 sink;
	struct buf		 to_app, to_node;	/* machine output */
	struct buf		 in_app, in_node;	/* not yet consumed */
	size_t			 chunk;			/* feed granularity */
};

static void
sink_app(void *arg, const uint8_t *p, size_t n)
{
	buf_add(&((struct harness *)arg)->to_app, p, n);
}

static void
sink_node(void *arg, const uint8_t *p, size_t n)
{
	buf_add(&((struct harness *)arg)->to_node, p, n);
}

static uint8_t default_token[] = "\0cassandra\0cassandra";

static void
harness_init(struct harness *h, enum config_client_auth mode,
    const uint8_t *token, size_t toklen)
{
	memset(h, 0, sizeof(*h));
	h->creds.client_auth = mode;
	if (token != NULL) {
		h->creds.have_token = true;
		h->creds.token = (uint8_t *)(uintptr_t)token;
		h->creds.token_len = toklen;
	}
	h->sink.to_app = sink_app;
	h->sink.to_node = sink_node;
	h->sink.arg = h;
	h->chunk = 0;
	auth_hs_init(&h->hs, &h->creds);
}

static void
harness_free(struct harness *h)
{
	free(h->to_app.p);
	free(h->to_node.p);
	free(h->in_app.p);
	free(h->in_node.p);
}

/*
 * Deliver ${n} bytes from one side, optionally ${h}->chunk bytes at a
 * time, feeding the machine the way session.c does.  Returns -1 as soon as
 * the machine fails, else 0.
 */
static int
deliver(struct harness *h, bool from_app, const uint8_t *p, size_t n)
{
	struct buf	*in = from_app ? &h->in_app : &h->in_node;
	size_t		 step = h->chunk != 0 ? h->chunk : n, off = 0;

	while (off < n || n == 0) {
		size_t k = n - off < step ? n - off : step;

		buf_add(in, p + off, k);
		off += k;
		for (;;) {
			size_t	 want, need;
			ssize_t	 used;

			if (from_app ? !auth_hs_reads_app(&h->hs) :
			    !auth_hs_reads_node(&h->hs))
				break;
			if (in->len == 0)
				break;
			need = from_app ? h->hs.need_app : h->hs.need_node;
			want = need != 0 && need < in->len ? need : in->len;
			used = from_app ?
			    auth_hs_app(&h->hs, in->p, want, &h->sink) :
			    auth_hs_node(&h->hs, in->p, want, &h->sink);
			if (used < 0)
				return (-1);
			if (used == 0) {
				need = from_app ? h->hs.need_app :
				    h->hs.need_node;
				ck_assert_uint_gt(need, want);
				if (in->len >= need)
					continue;
				break;
			}
			buf_drop(in, (size_t)used);
		}
		if (n == 0)
			break;
	}
	return (0);
}

/* Build a frame: header for ${version} + body. */
static size_t
frame(uint8_t *out, uint8_t version, bool response, uint8_t flags,
    int16_t stream, uint8_t opcode, const void *body, size_t blen)
{
	struct cql_header	 ch;
	size_t			 hl;

	memset(&ch, 0, sizeof(ch));
	ch.version = version;
	ch.response = response;
	ch.flags = flags;
	ch.stream = stream;
	ch.opcode = opcode;
	ch.length = (int32_t)blen;
	ch.hdr_len = (version == 1 || version == 2) ? 8 : 9;
	hl = cql_header_write(out, &ch);
	if (blen > 0)
		memcpy(out + hl, body, blen);
	return (hl + blen);
}

/* A STARTUP body with CQL_VERSION and optional COMPRESSION. */
static size_t
startup_body(uint8_t *out, const char *compression)
{
	struct cql_writer	 w;

	cql_writer_init(&w, out, 256);
	cql_write_short(&w, compression != NULL ? 2 : 1);
	cql_write_string(&w, "CQL_VERSION", 11);
	cql_write_string(&w, "3.4.7", 5);
	if (compression != NULL) {
		cql_write_string(&w, "COMPRESSION", 11);
		cql_write_string(&w, compression, strlen(compression));
	}
	ck_assert(!w.err);
	return (w.len);
}

/* A [string] body. */
static size_t
string_body(uint8_t *out, const char *s)
{
	struct cql_writer	 w;

	cql_writer_init(&w, out, 512);
	cql_write_string(&w, s, strlen(s));
	return (w.len);
}

/* A [bytes] body. */
static size_t
bytes_body(uint8_t *out, const void *s, int32_t n)
{
	struct cql_writer	 w;

	cql_writer_init(&w, out, 512);
	cql_write_bytes(&w, s, n);
	return (w.len);
}

/* An ERROR body. */
static size_t
error_body(uint8_t *out, int32_t code, const char *msg)
{
	struct cql_writer	 w;

	cql_writer_init(&w, out, 4096);
	cql_write_int(&w, code);
	cql_write_string(&w, msg, strlen(msg));
	ck_assert(!w.err);
	return (w.len);
}

/* App sends STARTUP (v, stream, compression) through the machine. */
static void
app_startup(struct harness *h, uint8_t v, int16_t stream, const char *comp)
{
	uint8_t	 body[256], f[512];
	size_t	 bl, fl;

	bl = startup_body(body, comp);
	fl = frame(f, v, false, 0, stream, CQL_OP_STARTUP, body, bl);
	ck_assert_int_eq(deliver(h, true, f, fl), 0);
	ck_assert_uint_eq(h->to_node.len, fl);
	ck_assert_mem_eq(h->to_node.p, f, fl);
	ck_assert_int_eq(h->hs.state, AUTH_S_WAIT_STARTUP);
	buf_clear(&h->to_node);
}

/* Node sends AUTHENTICATE(cls) on ${stream} (unframed). */
static int
node_authenticate(struct harness *h, uint8_t v, int16_t stream,
    const char *cls)
{
	uint8_t	 body[256], f[512];
	size_t	 bl, fl;

	bl = string_body(body, cls);
	fl = frame(f, v, true, 0, stream, CQL_OP_AUTHENTICATE, body, bl);
	return (deliver(h, false, f, fl));
}

/* Expected AUTH_RESPONSE frame for ${tok}. */
static size_t
expect_auth_response(uint8_t *out, uint8_t v, int16_t stream,
    const void *tok, size_t toklen)
{
	uint8_t	 body[512];
	size_t	 bl;

	bl = bytes_body(body, tok, (int32_t)toklen);
	return (frame(out, v, false, 0, stream, CQL_OP_AUTH_RESPONSE, body,
	    bl));
}

/* Run the whole v4 PasswordAuthenticator flow, with ${chunk} feeding. */
static void
run_v4_password(size_t chunk)
{
	struct harness	 h;
	uint8_t		 f[512], exp[512], body[64];
	size_t		 fl, el, bl;
	static const uint8_t ready[] = { 0x84, 0, 0, 1, 0x02, 0, 0, 0, 0 };

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	h.chunk = chunk;
	/* OPTIONS relayed, SUPPORTED relayed. */
	fl = frame(f, 4, false, 0, 0, CQL_OP_OPTIONS, NULL, 0);
	ck_assert_int_eq(deliver(&h, true, f, fl), 0);
	ck_assert_uint_eq(h.to_node.len, 9);
	ck_assert_int_eq(h.hs.state, AUTH_S_PRE_STARTUP);
	ck_assert(h.hs.have_first);
	ck_assert_int_eq(h.hs.first_stream, 0);
	buf_clear(&h.to_node);
	bl = startup_body(body, NULL);
	fl = frame(f, 4, true, 0, 0, CQL_OP_SUPPORTED, body, bl);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_uint_eq(h.to_app.len, fl);
	ck_assert_mem_eq(h.to_app.p, f, fl);
	buf_clear(&h.to_app);

	app_startup(&h, 4, 1, NULL);
	ck_assert_int_eq(node_authenticate(&h, 4, 1,
	    "org.apache.cassandra.auth.PasswordAuthenticator"), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_NODE_AUTH);
	ck_assert_str_eq(h.hs.authenticator,
	    "org.apache.cassandra.auth.PasswordAuthenticator");
	ck_assert_uint_eq(h.to_app.len, 0);
	el = expect_auth_response(exp, 4, 1, default_token,
	    sizeof(default_token) - 1);
	ck_assert_uint_eq(h.to_node.len, el);
	ck_assert_mem_eq(h.to_node.p, exp, el);
	ck_assert(h.hs.injected);

	bl = bytes_body(body, NULL, -1);
	fl = frame(f, 4, true, 0, 1, CQL_OP_AUTH_SUCCESS, body, bl);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	ck_assert_uint_eq(h.to_app.len, sizeof(ready));
	ck_assert_mem_eq(h.to_app.p, ready, sizeof(ready));
	ck_assert(!auth_hs_reads_app(&h.hs));
	ck_assert(!auth_hs_reads_node(&h.hs));
	harness_free(&h);
}

START_TEST(test_v4_password_whole)
{
	run_v4_password(0);
}
END_TEST

START_TEST(test_v4_password_byte_at_a_time)
{
	run_v4_password(1);
}
END_TEST

START_TEST(test_v4_password_odd_chunks)
{
	run_v4_password(5);
}
END_TEST

/* v5: the AUTH_RESPONSE is a CRC segment (brief §4.5 vector). */
START_TEST(test_v5_crc_segment_vector)
{
	struct harness	 h;
	static const uint8_t want[] = {
		0x21, 0x00, 0x02, 0x21, 0x62, 0x8d,
		0x05, 0x00, 0x00, 0x01, 0x0f, 0x00, 0x00, 0x00, 0x18,
		0x00, 0x00, 0x00, 0x14, 0x00, 'c', 'a', 's', 's', 'a', 'n',
		'd', 'r', 'a', 0x00, 'c', 'a', 's', 's', 'a', 'n', 'd', 'r',
		'a', 0xdd, 0xb9, 0xdb, 0x3a,
	};
	static const uint8_t ready[] = { 0x85, 0, 0, 1, 0x02, 0, 0, 0, 0 };
	uint8_t		 env[64], seg[128], body[16];
	size_t		 el, sl, bl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 5, 1, NULL);
	ck_assert_int_eq(node_authenticate(&h, 5, 1,
	    "org.apache.cassandra.auth.PasswordAuthenticator"), 0);
	ck_assert_uint_eq(h.to_node.len, sizeof(want));
	ck_assert_mem_eq(h.to_node.p, want, sizeof(want));

	/* The node's AUTH_SUCCESS arrives in a CRC segment. */
	bl = bytes_body(body, NULL, -1);
	el = frame(env, 5, true, 0, 1, CQL_OP_AUTH_SUCCESS, body, bl);
	sl = cql_segment_encode(CQL_SEG_CRC, env, el, true, seg, sizeof(seg));
	ck_assert_uint_gt(sl, 0);
	h.chunk = 1;
	ck_assert_int_eq(deliver(&h, false, seg, sl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	/* READY to the app is a bare envelope. */
	ck_assert_uint_eq(h.to_app.len, sizeof(ready));
	ck_assert_mem_eq(h.to_app.p, ready, sizeof(ready));
	harness_free(&h);
}
END_TEST

/* v5 + lz4: raw LZ4 segment out; a compressed LZ4 segment back. */
START_TEST(test_v5_lz4_segments)
{
	struct harness	 h;
	static const uint8_t hdr[] = {
		0x21, 0x00, 0x00, 0x00, 0x04, 0x16, 0xd2, 0xcf,
	};
	uint8_t		 env[4096], comp[4096], seg[8192], body[4096];
	uint8_t		 w[8];
	size_t		 el, bl, i;
	int		 cl;
	uint64_t	 word;
	uint32_t	 c;
	char		 msg[2048];

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 5, 1, "LZ4");
	ck_assert_int_eq(h.hs.compression, AUTH_COMP_LZ4);
	ck_assert_int_eq(node_authenticate(&h, 5, 1,
	    "org.apache.cassandra.auth.PasswordAuthenticator"), 0);
	ck_assert_uint_eq(h.to_node.len, 8 + 33 + 4);
	ck_assert_mem_eq(h.to_node.p, hdr, sizeof(hdr));

	/* A long, compressible ERROR in a compressed LZ4 segment. */
	memset(msg, 0, sizeof(msg));
	for (i = 0; i < 1000; i++)
		msg[i] = "abcd"[i % 4];
	bl = error_body(body, 0x0100, msg);
	el = frame(env, 5, true, 0, 1, CQL_OP_ERROR, body, bl);
	cl = LZ4_compress_default((const char *)env, (char *)comp, (int)el,
	    (int)sizeof(comp));
	ck_assert_int_gt(cl, 0);
	ck_assert_int_lt(cl, (int)el);
	word = (uint64_t)cl | ((uint64_t)el << 17) | ((uint64_t)1 << 34);
	for (i = 0; i < 5; i++)
		w[i] = (uint8_t)(word >> (8 * i));
	c = cql_crc24(w, 5);
	memcpy(seg, w, 5);
	seg[5] = (uint8_t)c;
	seg[6] = (uint8_t)(c >> 8);
	seg[7] = (uint8_t)(c >> 16);
	memcpy(seg + 8, comp, (size_t)cl);
	c = cql_crc32(comp, (size_t)cl);
	for (i = 0; i < 4; i++)
		seg[8 + (size_t)cl + i] = (uint8_t)(c >> (8 * i));
	ck_assert_int_eq(deliver(&h, false, seg, 8 + (size_t)cl + 4), -1);
	ck_assert_int_eq(h.hs.state, AUTH_S_FAILED);
	ck_assert_int_eq(h.hs.failure, AUTH_FAIL_CREDENTIALS);
	/* The app gets a fresh, unframed, uncompressed v5 ERROR. */
	ck_assert_uint_ge(h.to_app.len, 9);
	ck_assert_uint_eq(h.to_app.p[0], 0x85);
	ck_assert_uint_eq(h.to_app.p[1], 0);	/* flags: not compressed */
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_ERROR);
	ck_assert_uint_eq(h.to_app.len, el);
	ck_assert_mem_eq(h.to_app.p, env, el);
	harness_free(&h);
}
END_TEST

/* DSE: PLAIN, then the token after PLAIN-START. */
START_TEST(test_dse_plain_start)
{
	struct harness	 h;
	uint8_t		 f[512], exp[512], body[64];
	size_t		 fl, el, bl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 0x42, 3, NULL);
	ck_assert_int_eq(node_authenticate(&h, 0x42, 3,
	    AUTH_DSE_AUTHENTICATOR), 0);
	ck_assert(h.hs.dse);
	el = expect_auth_response(exp, 0x42, 3, "PLAIN", 5);
	ck_assert_uint_eq(h.to_node.len, el);
	ck_assert_mem_eq(h.to_node.p, exp, el);
	buf_clear(&h.to_node);

	bl = bytes_body(body, "PLAIN-START", 11);
	fl = frame(f, 0x42, true, 0, 3, CQL_OP_AUTH_CHALLENGE, body, bl);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	el = expect_auth_response(exp, 0x42, 3, default_token,
	    sizeof(default_token) - 1);
	ck_assert_uint_eq(h.to_node.len, el);
	ck_assert_mem_eq(h.to_node.p, exp, el);

	bl = bytes_body(body, NULL, -1);
	fl = frame(f, 0x42, true, 0, 3, CQL_OP_AUTH_SUCCESS, body, bl);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	ck_assert_uint_eq(h.to_app.p[0], 0xC2);
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_READY);
	harness_free(&h);
}
END_TEST

/* An authzid goes first in the token; creds built from a config. */
START_TEST(test_creds_token_layout)
{
	struct config		 c;
	struct auth_creds	*ac;
	static const uint8_t	 want[] = "alice\0bob\0s3cret";

	memset(&c, 0, sizeof(c));
	c.username = (char *)"bob";
	c.password = (char *)"s3cret";
	c.password_len = 6;
	c.authzid = (char *)"alice";
	ac = auth_creds_new(&c);
	ck_assert(ac->have_token);
	ck_assert_uint_eq(ac->token_len, sizeof(want) - 1);
	ck_assert_mem_eq(ac->token, want, sizeof(want) - 1);
	auth_creds_free(ac);

	c.authzid = NULL;
	ac = auth_creds_new(&c);
	ck_assert_uint_eq(ac->token_len, 1 + 3 + 1 + 6);
	ck_assert_uint_eq(ac->token[0], 0);
	auth_creds_free(ac);

	c.username = NULL;
	ac = auth_creds_new(&c);
	ck_assert(!ac->have_token);
	auth_creds_free(ac);
}
END_TEST

/* Bad credentials: the node's code and message reach the app. */
START_TEST(test_bad_credentials)
{
	struct harness	 h;
	uint8_t		 f[4096], body[4096], exp[4096];
	size_t		 fl, bl, el;
	const char	*msg = "Provided username cassandra and/or password "
	    "are incorrect";

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 4, 7, NULL);
	ck_assert_int_eq(node_authenticate(&h, 4, 7,
	    "org.apache.cassandra.auth.PasswordAuthenticator"), 0);
	bl = error_body(body, 0x0100, msg);
	fl = frame(f, 4, true, 0, 7, CQL_OP_ERROR, body, bl);
	ck_assert_int_eq(deliver(&h, false, f, fl), -1);
	ck_assert_int_eq(h.hs.state, AUTH_S_FAILED);
	ck_assert_int_eq(h.hs.failure, AUTH_FAIL_CREDENTIALS);
	ck_assert_ptr_nonnull(strstr(h.hs.reason, "0x0100"));
	el = frame(exp, 4, true, 0, 7, CQL_OP_ERROR, body, bl);
	ck_assert_uint_eq(h.to_app.len, el);
	ck_assert_mem_eq(h.to_app.p, exp, el);
	harness_free(&h);
}
END_TEST

/* Version negotiation is the node's: its error reaches the app as is. */
START_TEST(test_version_error_relayed)
{
	struct harness	 h;
	uint8_t		 f[4096], body[4096];
	size_t		 fl, bl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	fl = frame(f, 0x42, false, 0, 0, CQL_OP_OPTIONS, NULL, 0);
	ck_assert_int_eq(deliver(&h, true, f, fl), 0);
	ck_assert_uint_eq(h.to_node.len, fl);
	ck_assert_mem_eq(h.to_node.p, f, fl);
	bl = error_body(body, 0x000A, "Invalid or unsupported protocol "
	    "version (66); supported versions are (3/v3, 4/v4, 5/v5, "
	    "6/v6-beta)");
	fl = frame(f, 5, true, 0, 0, CQL_OP_ERROR, body, bl);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_uint_eq(h.to_app.len, fl);
	ck_assert_mem_eq(h.to_app.p, f, fl);
	ck_assert_int_eq(h.hs.state, AUTH_S_PRE_STARTUP);
	harness_free(&h);
}
END_TEST

/* A node that needs no auth: READY is relayed verbatim. */
START_TEST(test_ready_relayed)
{
	struct harness	 h;
	uint8_t		 f[16];
	size_t		 fl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 4, 1, NULL);
	fl = frame(f, 4, true, 0, 1, CQL_OP_READY, NULL, 0);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	ck_assert_uint_eq(h.to_app.len, fl);
	ck_assert(!h.hs.injected);
	harness_free(&h);
}
END_TEST

/* v4 + lz4: the compressed AUTHENTICATE is decoded; we answer plain. */
START_TEST(test_v4_lz4_authenticate)
{
	struct harness	 h;
	uint8_t		 body[256], cbody[512], f[600], exp[512];
	size_t		 bl, fl, el;
	int		 cl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 4, 2, "lz4");
	bl = string_body(body, "org.apache.cassandra.auth.PasswordAuthenticator");
	cbody[0] = 0;
	cbody[1] = 0;
	cbody[2] = (uint8_t)(bl >> 8);
	cbody[3] = (uint8_t)bl;
	cl = LZ4_compress_default((const char *)body, (char *)cbody + 4,
	    (int)bl, 500);
	ck_assert_int_gt(cl, 0);
	fl = frame(f, 4, true, CQL_FLAG_COMPRESSION, 2, CQL_OP_AUTHENTICATE,
	    cbody, 4 + (size_t)cl);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_str_eq(h.hs.authenticator,
	    "org.apache.cassandra.auth.PasswordAuthenticator");
	el = expect_auth_response(exp, 4, 2, default_token,
	    sizeof(default_token) - 1);
	ck_assert_uint_eq(h.to_node.len, el);
	ck_assert_mem_eq(h.to_node.p, exp, el);
	ck_assert_uint_eq(h.to_node.p[1], 0);	/* sent uncompressed */
	harness_free(&h);
}
END_TEST

/* Accept mode, v4: the app is challenged and anything it sends is OK. */
START_TEST(test_accept_mode_v4)
{
	struct harness	 h;
	uint8_t		 f[512], body[256];
	size_t		 fl, bl;

	harness_init(&h, CONFIG_CLIENT_AUTH_ACCEPT, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 4, 1, NULL);
	ck_assert_int_eq(node_authenticate(&h, 4, 1,
	    "org.apache.cassandra.auth.PasswordAuthenticator"), 0);
	bl = bytes_body(body, NULL, -1);
	fl = frame(f, 4, true, 0, 1, CQL_OP_AUTH_SUCCESS, body, bl);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_APP_AUTH);
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_AUTHENTICATE);
	buf_clear(&h.to_app);
	bl = bytes_body(body, "\0app\0whatever", 13);
	fl = frame(f, 4, false, 0, 1, CQL_OP_AUTH_RESPONSE, body, bl);
	ck_assert_int_eq(deliver(&h, true, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	ck_assert_uint_eq(h.to_app.len, 13);
	ck_assert_uint_eq(h.to_app.p[0], 0x84);
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_AUTH_SUCCESS);
	harness_free(&h);
}
END_TEST

/* Accept mode, v5: the app's AUTH_RESPONSE and our reply are segments. */
START_TEST(test_accept_mode_v5)
{
	struct harness		 h;
	struct cql_segment	 seg;
	uint8_t			 f[512], body[256], s[600], pl[600];
	size_t			 fl, bl, sl;
	ssize_t			 n;

	harness_init(&h, CONFIG_CLIENT_AUTH_ACCEPT, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 5, 1, NULL);
	fl = frame(f, 5, true, 0, 1, CQL_OP_READY, NULL, 0);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_APP_AUTH);
	ck_assert_uint_eq(h.to_app.p[0], 0x85);	/* unframed */
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_AUTHENTICATE);
	buf_clear(&h.to_app);
	bl = bytes_body(body, "\0u\0p", 4);
	fl = frame(f, 5, false, 0, 1, CQL_OP_AUTH_RESPONSE, body, bl);
	sl = cql_segment_encode(CQL_SEG_CRC, f, fl, true, s, sizeof(s));
	ck_assert_int_eq(deliver(&h, true, s, sl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, h.to_app.p,
	    h.to_app.len, &seg), 6);
	ck_assert_uint_eq(seg.total_len, h.to_app.len);
	n = cql_segment_decode(CQL_SEG_CRC, h.to_app.p, h.to_app.len, &seg,
	    pl, sizeof(pl));
	ck_assert_int_eq(n, 13);
	ck_assert_uint_eq(pl[0], 0x85);
	ck_assert_uint_eq(pl[4], CQL_OP_AUTH_SUCCESS);
	harness_free(&h);
}
END_TEST

/* Passthrough: only the first frame is looked at. */
START_TEST(test_passthrough)
{
	struct harness	 h;
	uint8_t		 f[512], body[256];
	size_t		 fl, bl;

	harness_init(&h, CONFIG_CLIENT_AUTH_PASSTHROUGH, default_token,
	    sizeof(default_token) - 1);
	bl = startup_body(body, NULL);
	fl = frame(f, 4, false, 0, 4, CQL_OP_STARTUP, body, bl);
	ck_assert_int_eq(deliver(&h, true, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	ck_assert(h.hs.have_first);
	ck_assert_int_eq(h.hs.first_stream, 4);
	ck_assert(!auth_hs_reads_node(&h.hs));
	ck_assert(!auth_hs_reads_app(&h.hs));
	harness_free(&h);
}
END_TEST

/* No credentials configured: AUTHENTICATE goes to the app. */
START_TEST(test_no_credentials_relays_authenticate)
{
	struct harness	 h;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, NULL, 0);
	app_startup(&h, 4, 1, NULL);
	ck_assert_int_eq(node_authenticate(&h, 4, 1,
	    "org.apache.cassandra.auth.PasswordAuthenticator"), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_DONE);
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_AUTHENTICATE);
	ck_assert_uint_eq(h.to_node.len, 0);
	harness_free(&h);
}
END_TEST

/* AUTH_CHALLENGE rounds are bounded. */
START_TEST(test_challenge_loop_bounded)
{
	struct harness	 h;
	uint8_t		 f[512], body[64];
	size_t		 fl, bl;
	int		 i;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 4, 1, NULL);
	ck_assert_int_eq(node_authenticate(&h, 4, 1, "com.example.Weird"), 0);
	bl = bytes_body(body, "again", 5);
	fl = frame(f, 4, true, 0, 1, CQL_OP_AUTH_CHALLENGE, body, bl);
	for (i = 0; i < AUTH_MAX_ROUNDS; i++)
		ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_uint_eq(h.to_app.len, 0);
	ck_assert_int_eq(deliver(&h, false, f, fl), -1);
	ck_assert_int_eq(h.hs.failure, AUTH_FAIL_PROTOCOL);
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_ERROR);
	ck_assert_ptr_nonnull(strstr(h.hs.reason, "AUTH_CHALLENGE"));
	harness_free(&h);
}
END_TEST

/* An unexpected answer to STARTUP is a protocol error, told to the app. */
START_TEST(test_unexpected_startup_answer)
{
	struct harness	 h;
	uint8_t		 f[64], body[8] = { 0, 0, 0, 1 };
	size_t		 fl;
	struct cql_reader r;
	const uint8_t	*msg;
	size_t		 mlen;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 4, 9, NULL);
	fl = frame(f, 4, true, 0, 9, CQL_OP_RESULT, body, 4);
	ck_assert_int_eq(deliver(&h, false, f, fl), -1);
	ck_assert_int_eq(h.hs.failure, AUTH_FAIL_PROTOCOL);
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_ERROR);
	ck_assert_uint_eq(h.to_app.p[3], 9);
	cql_reader_init(&r, h.to_app.p + 9, h.to_app.len - 9);
	ck_assert_int_eq(cql_read_int(&r), 0x000A);
	ck_assert(cql_read_string(&r, &msg, &mlen));
	ck_assert_int_eq(memcmp(msg, "cqltunnel: ", 11), 0);
	harness_free(&h);
}
END_TEST

/* A corrupt v5 segment from the node fails cleanly. */
START_TEST(test_v5_corrupt_segment)
{
	struct harness	 h;
	uint8_t		 env[64], seg[128], body[16];
	size_t		 el, sl, bl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 5, 1, NULL);
	ck_assert_int_eq(node_authenticate(&h, 5, 1, "x.Y"), 0);
	bl = bytes_body(body, NULL, -1);
	el = frame(env, 5, true, 0, 1, CQL_OP_AUTH_SUCCESS, body, bl);
	sl = cql_segment_encode(CQL_SEG_CRC, env, el, true, seg, sizeof(seg));
	seg[8] ^= 0x40;		/* payload bit: CRC32 mismatch */
	ck_assert_int_eq(deliver(&h, false, seg, sl), -1);
	ck_assert_int_eq(h.hs.failure, AUTH_FAIL_PROTOCOL);
	ck_assert_ptr_nonnull(strstr(h.hs.reason, "CRC32"));
	ck_assert_uint_eq(h.to_app.p[0], 0x85);
	ck_assert_uint_eq(h.to_app.p[4], CQL_OP_ERROR);
	harness_free(&h);

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 5, 1, NULL);
	ck_assert_int_eq(node_authenticate(&h, 5, 1, "x.Y"), 0);
	sl = cql_segment_encode(CQL_SEG_CRC, env, el, true, seg, sizeof(seg));
	seg[0] ^= 0x01;		/* header bit: CRC24 mismatch */
	ck_assert_int_eq(deliver(&h, false, seg, sl), -1);
	ck_assert_ptr_nonnull(strstr(h.hs.reason, "CRC24"));
	harness_free(&h);
}
END_TEST

/* Failures found outside the machine answer the first request. */
START_TEST(test_fail_app_uses_first_frame)
{
	struct harness		 h;
	uint8_t			 f[16];
	size_t			 fl;
	struct cql_header	 ch;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	ck_assert_int_eq(auth_hs_fail_app(&h.hs, 0, "cqltunnel: x",
	    &h.sink), -1);
	ck_assert_uint_eq(h.to_app.len, 0);
	fl = frame(f, 3, false, 0, 12, CQL_OP_OPTIONS, NULL, 0);
	ck_assert_int_eq(deliver(&h, true, f, fl), 0);
	ck_assert_int_eq(auth_hs_fail_app(&h.hs, 0, "cqltunnel: TLS to node "
	    "failed", &h.sink), 0);
	ck_assert_int_eq(cql_header_parse(h.to_app.p, h.to_app.len, &ch), 9);
	ck_assert_uint_eq(ch.version, 3);
	ck_assert(ch.response);
	ck_assert_int_eq(ch.stream, 12);
	ck_assert_uint_eq(ch.opcode, CQL_OP_ERROR);
	harness_free(&h);
}
END_TEST

/* A huge frame during the handshake is refused before it is buffered. */
START_TEST(test_oversize_handshake_frame)
{
	struct harness	 h;
	uint8_t		 hdr[9] = { 0x04, 0, 0, 0, CQL_OP_STARTUP,
	    0x00, 0x20, 0x00, 0x00 };	/* 2 MiB */

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	ck_assert_int_eq(deliver(&h, true, hdr, sizeof(hdr)), -1);
	ck_assert_int_eq(h.hs.state, AUTH_S_FAILED);
	ck_assert_ptr_nonnull(strstr(h.hs.reason, "during the handshake"));
	harness_free(&h);
}
END_TEST

/* App data pipelined after STARTUP waits for the handshake to finish. */
START_TEST(test_pipelined_app_data_waits)
{
	struct harness	 h;
	uint8_t		 body[256], f[600];
	size_t		 bl, fl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	bl = startup_body(body, NULL);
	fl = frame(f, 4, false, 0, 1, CQL_OP_STARTUP, body, bl);
	fl += frame(f + fl, 4, false, 0, 2, CQL_OP_QUERY, "abcd", 4);
	ck_assert_int_eq(deliver(&h, true, f, fl), 0);
	ck_assert_int_eq(h.hs.state, AUTH_S_WAIT_STARTUP);
	ck_assert_uint_eq(h.in_app.len, 13);	/* the QUERY, untouched */
	ck_assert_uint_eq(h.to_node.len, fl - 13);
	harness_free(&h);
}
END_TEST

/* Events and other streams while awaiting STARTUP's answer pass through. */
START_TEST(test_other_streams_relayed)
{
	struct harness	 h;
	uint8_t		 f[64];
	size_t		 fl;

	harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
	    sizeof(default_token) - 1);
	app_startup(&h, 4, 1, NULL);
	fl = frame(f, 4, true, 0, -1, CQL_OP_EVENT, "xx", 2);
	ck_assert_int_eq(deliver(&h, false, f, fl), 0);
	ck_assert_uint_eq(h.to_app.len, fl);
	ck_assert_int_eq(h.hs.state, AUTH_S_WAIT_STARTUP);
	harness_free(&h);
}
END_TEST

/*
 * A first frame with version byte 0 (or 0x80) has a 9-byte header: the
 * machine must ask for 9 bytes, not 8, or a session feeding it 8 at a time
 * stalls until the handshake timeout (found by fuzz_handshake).
 */
START_TEST(test_version_zero_header_need)
{
	struct harness	 h;
	uint8_t		 f[9] = { 0x00, 0, 0, 1, CQL_OP_OPTIONS, 0, 0, 0, 0 };
	unsigned	 i;

	for (i = 0; i < 2; i++) {
		harness_init(&h, CONFIG_CLIENT_AUTH_NONE, default_token,
		    sizeof(default_token) - 1);
		f[0] = i == 0 ? 0x00 : 0x80;
		h.chunk = 1;
		ck_assert_int_eq(deliver(&h, i == 0, f, sizeof(f)), 0);
		ck_assert_uint_eq(h.to_node.len + h.to_app.len, sizeof(f));
		harness_free(&h);
	}
}
END_TEST

Suite *
auth_suite(void)
{
	Suite	*s = suite_create("auth");
	TCase	*tc = tcase_create("handshake");

	tcase_add_test(tc, test_v4_password_whole);
	tcase_add_test(tc, test_v4_password_byte_at_a_time);
	tcase_add_test(tc, test_v4_password_odd_chunks);
	tcase_add_test(tc, test_v5_crc_segment_vector);
	tcase_add_test(tc, test_v5_lz4_segments);
	tcase_add_test(tc, test_dse_plain_start);
	tcase_add_test(tc, test_creds_token_layout);
	tcase_add_test(tc, test_bad_credentials);
	tcase_add_test(tc, test_version_error_relayed);
	tcase_add_test(tc, test_ready_relayed);
	tcase_add_test(tc, test_v4_lz4_authenticate);
	tcase_add_test(tc, test_accept_mode_v4);
	tcase_add_test(tc, test_accept_mode_v5);
	tcase_add_test(tc, test_passthrough);
	tcase_add_test(tc, test_no_credentials_relays_authenticate);
	tcase_add_test(tc, test_challenge_loop_bounded);
	tcase_add_test(tc, test_unexpected_startup_answer);
	tcase_add_test(tc, test_v5_corrupt_segment);
	tcase_add_test(tc, test_fail_app_uses_first_frame);
	tcase_add_test(tc, test_oversize_handshake_frame);
	tcase_add_test(tc, test_pipelined_app_data_waits);
	tcase_add_test(tc, test_other_streams_relayed);
	tcase_add_test(tc, test_version_zero_header_need);
	suite_add_tcase(s, tc);
	return (s);
}

