/*
 * stubnode: a fast CQL stub node for benchmarks.  It speaks just enough of
 * the native protocol (v3, v4, v5 with CRC segments) to put a relay under
 * load: OPTIONS -> SUPPORTED, STARTUP -> AUTHENTICATE (PasswordAuthenticator)
 * or READY, AUTH_RESPONSE -> AUTH_SUCCESS or ERROR 0x0100, and a small
 * RESULT (Void, or Rows with one blob of --result-bytes) on the same stream
 * for every QUERY, EXECUTE, PREPARE and BATCH.  Plaintext, or TLS that
 * requires a client certificate signed by the given CA.  Queries of
 * system.local, system.peers and system.peers_v2 get Rows shaped like
 * Cassandra's (one local row naming the listen address, no peers), which
 * is what a driver or a proxy such as cql-proxy reads at start-up.
 *
 * One event loop, one small struct per connection, no allocation per
 * request: responses are copied from templates built at start-up.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "benchutil.h"
#include "cql_frame.h"

#define STUB_PROG		"stubnode"
#define STUB_AUTHENTICATOR	"org.apache.cassandra.auth.PasswordAuthenticator"
#define STUB_MIN_VERSION	3
#define STUB_MAX_VERSION	5
#define STUB_MAX_FRAME		(256u * 1024 * 1024)
#define STUB_SMALL		1024	/* handshake frames built on stack */
#define STUB_PULL		(64 * 1024) /* input parsed in place */
#define STUB_QUERY_SCAN		512	/* longest query checked for system. */

enum stub_state {
	STUB_NEW,		/* nothing but OPTIONS seen */
	STUB_AUTHENTICATING,	/* AUTHENTICATE sent */
	STUB_READY,		/* requests are answered */
};

/* One client connection. */
struct stub_conn {
	TAILQ_ENTRY(stub_conn)	 sc_entry;	/* stub.conn_list */
	struct bufferevent	*sc_bev;
	uint8_t			 sc_version;	/* 0 until the first frame */
	uint8_t			 sc_state;	/* enum stub_state */
	bool			 sc_framed;	/* v5 segments both ways */
	bool			 sc_closing;	/* flush, then free */
	/* v5: a large envelope split over non-self-contained segments. */
	uint32_t		 sc_skip;	/* bytes of it still to come */
	uint32_t		 sc_need;	/* wait for this much input */
	int16_t			 sc_skip_stream;
	uint8_t			 sc_skip_opcode;
};

/* A prebuilt response: a whole frame whose stream id is patched in. */
struct stub_tpl {
	uint8_t		*t_buf;
	size_t		 t_len;
};

/* The system tables answered (Rows templates, one per version). */
enum stub_sys {
	STUB_SYS_LOCAL,
	STUB_SYS_PEERS,
	STUB_SYS_PEERS_V2,
	STUB_SYS_COUNT,
	STUB_SYS_NONE = STUB_SYS_COUNT,
};

/* Option ids of the CQL types used in the system table templates. */
#define STUB_T_INT	0x0009
#define STUB_T_UUID	0x000C
#define STUB_T_VARCHAR	0x000D
#define STUB_T_INET	0x0010
#define STUB_T_SET	0x0022		/* followed by the element's id */

/* A column of a system table template; ${value} for varchar columns. */
struct stub_col {
	const char	*name;
	uint16_t	 type;
	const char	*value;
};

/*
 * The columns drivers and cql-proxy read (proxycore: partitioner,
 * release_version, cql_version, data_center, rpc_address; drivers also
 * host_id, tokens, peer/native_address).  system.local has one row; the
 * peers tables have the same kind of columns and no rows.
 */
static const struct stub_col stub_local_cols[] = {
	{ "key", STUB_T_VARCHAR, "local" },
	{ "bootstrapped", STUB_T_VARCHAR, "COMPLETED" },
	{ "broadcast_address", STUB_T_INET, NULL },
	{ "cluster_name", STUB_T_VARCHAR, "stubnode" },
	{ "cql_version", STUB_T_VARCHAR, "3.4.7" },
	{ "data_center", STUB_T_VARCHAR, "datacenter1" },
	{ "host_id", STUB_T_UUID, NULL },
	{ "listen_address", STUB_T_INET, NULL },
	{ "native_protocol_version", STUB_T_VARCHAR, "5" },
	{ "partitioner", STUB_T_VARCHAR,
	    "org.apache.cassandra.dht.Murmur3Partitioner" },
	{ "rack", STUB_T_VARCHAR, "rack1" },
	{ "release_version", STUB_T_VARCHAR, "5.0.6" },
	{ "rpc_address", STUB_T_INET, NULL },
	{ "schema_version", STUB_T_UUID, NULL },
	{ "tokens", STUB_T_SET, NULL },
	{ NULL, 0, NULL }
};
static const struct stub_col stub_peers_cols[] = {
	{ "peer", STUB_T_INET, NULL },
	{ "data_center", STUB_T_VARCHAR, NULL },
	{ "host_id", STUB_T_UUID, NULL },
	{ "preferred_ip", STUB_T_INET, NULL },
	{ "rack", STUB_T_VARCHAR, NULL },
	{ "release_version", STUB_T_VARCHAR, NULL },
	{ "rpc_address", STUB_T_INET, NULL },
	{ "schema_version", STUB_T_UUID, NULL },
	{ "tokens", STUB_T_SET, NULL },
	{ NULL, 0, NULL }
};
static const struct stub_col stub_peers_v2_cols[] = {
	{ "peer", STUB_T_INET, NULL },
	{ "peer_port", STUB_T_INT, NULL },
	{ "data_center", STUB_T_VARCHAR, NULL },
	{ "host_id", STUB_T_UUID, NULL },
	{ "native_address", STUB_T_INET, NULL },
	{ "native_port", STUB_T_INT, NULL },
	{ "preferred_ip", STUB_T_INET, NULL },
	{ "preferred_port", STUB_T_INT, NULL },
	{ "rack", STUB_T_VARCHAR, NULL },
	{ "release_version", STUB_T_VARCHAR, NULL },
	{ "schema_version", STUB_T_UUID, NULL },
	{ "tokens", STUB_T_SET, NULL },
	{ NULL, 0, NULL }
};

static struct {
	struct event_base	*base;
	SSL_CTX			*ssl_ctx;
	bool			 no_auth;
	uint8_t			 max_version;
	size_t			 user_len;
	char			*user;
	char			*password;
	uint64_t		 result_bytes;
	struct stub_tpl		 result[STUB_MAX_VERSION + 1];
	struct stub_tpl		 supported[STUB_MAX_VERSION + 1];
	struct stub_tpl		 sys[STUB_SYS_COUNT][STUB_MAX_VERSION + 1];
	uint8_t			 addr[16];	/* listen address (inet) */
	uint8_t			 addr_len;	/* 4 or 16 */
	/* v5 output batch, shared: one connection is served at a time. */
	struct bu_batch		 out;
	TAILQ_HEAD(, stub_conn)	 conn_list;	/* open connections */
	/* Counters. */
	uint64_t		 conns;
	uint64_t		 requests;
	uint64_t		 sys_queries;
	uint64_t		 auth_failures;
} stub;

static void	stub_flush(struct stub_conn *);

/* Print usage and exit. */
static void
stub_usage(int rc)
{
	fprintf(rc ? stderr : stdout,
"usage: stubnode [options]\n"
"  -l, --listen HOST:PORT    listen address (default 127.0.0.1:9042;\n"
"                            port 0 picks one, printed on stdout)\n"
"  -t, --tls CERT KEY CA     TLS; client certificates signed by CA required\n"
"  -v, --version N           highest protocol version accepted (3-5, def. 5)\n"
"  -r, --result-bytes N      RESULT Rows with one N-byte blob (0 = Void)\n"
"  -n, --no-auth             READY after STARTUP (no AUTHENTICATE)\n"
"  -u, --user NAME           expected user (default cassandra)\n"
"  -p, --password PW         expected password (default cassandra)\n"
"  -h, --help\n");
	exit(rc);
}

/* Batched output: see bu_batch_send() in benchutil.c. */
static void
stub_flush(struct stub_conn *c)
{
	bu_batch_flush(&stub.out, c->sc_bev, c->sc_framed);
}

static void
stub_send(struct stub_conn *c, const uint8_t *p, size_t len)
{
	bu_batch_send(&stub.out, c->sc_bev, c->sc_framed, p, len);
}

/* Send a prebuilt response on ${stream}. */
static void
stub_send_tpl(struct stub_conn *c, struct stub_tpl *t, int16_t stream)
{
	uint8_t	hdr[CQL_HEADER_LEN];

	if (!c->sc_framed && t->t_len > STUB_SMALL) {
		/* Header copied, body by reference (no copy). */
		stub_flush(c);
		memcpy(hdr, t->t_buf, sizeof(hdr));
		bu_set_stream(hdr, stream);
		bufferevent_write(c->sc_bev, hdr, sizeof(hdr));
		evbuffer_add_reference(bufferevent_get_output(c->sc_bev),
		    t->t_buf + sizeof(hdr), t->t_len - sizeof(hdr), NULL, NULL);
		return;
	}
	bu_set_stream(t->t_buf, stream);
	stub_send(c, t->t_buf, t->t_len);
}

/* Free ${c} and its connection. */
static void
stub_close(struct stub_conn *c)
{

	TAILQ_REMOVE(&stub.conn_list, c, sc_entry);
	bufferevent_free(c->sc_bev);
	free(c);
}

/* Write callback of a closing connection: free once all is written. */
static void
stub_drained_cb(struct bufferevent *bev, void *arg)
{
	struct stub_conn	*c = arg;

	(void)bev;
	stub_close(c);
}

/* Deferred free of a closing connection whose output was already empty. */
static void
stub_deferred_close(evutil_socket_t fd, short what, void *arg)
{

	(void)fd;
	(void)what;
	stub_close(arg);
}

/*
 * Stop reading from ${c} and close it once its output is written.  Never
 * frees ${c} at once: callers may still be looking at it.
 */
static void
stub_close_after_flush(struct stub_conn *c)
{
	static const struct timeval	zero;

	if (c->sc_closing)
		return;
	stub_flush(c);
	c->sc_closing = true;
	bufferevent_disable(c->sc_bev, EV_READ);
	bufferevent_setcb(c->sc_bev, NULL, stub_drained_cb, NULL, c);
	if (evbuffer_get_length(bufferevent_get_output(c->sc_bev)) == 0)
		(void)event_base_once(stub.base, -1, EV_TIMEOUT,
		    stub_deferred_close, c, &zero);
}

/* Send an ERROR with ${code} and ${msg} on ${stream}. */
static void
stub_error(struct stub_conn *c, int16_t stream, int32_t code,
    const char *msg)
{
	uint8_t	buf[STUB_SMALL];
	size_t	n;

	n = cql_build_error(buf, sizeof(buf), c->sc_version, stream, code,
	    msg, strlen(msg));
	if (n > 0)
		stub_send(c, buf, n);
}

/* Check an AUTH_RESPONSE body: [bytes] authzid? NUL user NUL password. */
static bool
stub_auth_ok(const uint8_t *body, size_t len, char *user, size_t usercap)
{
	struct cql_reader	 r;
	const uint8_t		*tok, *nul1, *nul2, *p;
	int32_t			 toklen;

	*user = '\0';
	cql_reader_init(&r, body, len);
	if (!cql_read_bytes(&r, &tok, &toklen) || tok == NULL || toklen <= 0)
		return (false);
	/* PasswordAuthenticator reads from the end: ...NUL user NUL pw. */
	if ((nul2 = memrchr(tok, '\0', (size_t)toklen)) == NULL ||
	    (nul1 = memrchr(tok, '\0', (size_t)(nul2 - tok))) == NULL)
		return (false);
	/* The name as given, printable ASCII only, for the error text. */
	for (p = nul1 + 1; p < nul2 && usercap > 1; p++, usercap--)
		*user++ = (*p >= 0x20 && *p < 0x7F) ? (char)*p : '?';
	*user = '\0';
	if ((size_t)(nul2 - nul1 - 1) != stub.user_len ||
	    memcmp(nul1 + 1, stub.user, stub.user_len) != 0)
		return (false);
	if ((size_t)(tok + toklen - nul2 - 1) != strlen(stub.password) ||
	    memcmp(nul2 + 1, stub.password, strlen(stub.password)) != 0)
		return (false);
	return (true);
}

/*
 * Which system table a QUERY body asks for, if any: a short query string
 * naming system.local, system.peers or system.peers_v2.  No copy, no
 * allocation; other queries cost one memmem() over at most
 * STUB_QUERY_SCAN bytes.
 */
static enum stub_sys
stub_system_query(const uint8_t *body, size_t len)
{
	struct cql_reader	 r;
	const uint8_t		*q, *t;
	size_t			 qlen, left;

	if (body == NULL)
		return (STUB_SYS_NONE);
	cql_reader_init(&r, body, len);
	if (!cql_read_long_string(&r, &q, &qlen) || qlen > STUB_QUERY_SCAN ||
	    (t = memmem(q, qlen, "system.", 7)) == NULL)
		return (STUB_SYS_NONE);
	t += 7;
	left = qlen - (size_t)(t - q);
	if (left >= 8 && memcmp(t, "peers_v2", 8) == 0)
		return (STUB_SYS_PEERS_V2);
	if (left >= 5 && memcmp(t, "peers", 5) == 0)
		return (STUB_SYS_PEERS);
	if (left >= 5 && memcmp(t, "local", 5) == 0)
		return (STUB_SYS_LOCAL);
	return (STUB_SYS_NONE);
}

/*
 * Answer one request.  ${body} is NULL when the body was not pulled into
 * contiguous memory (large requests, whose bodies are never read).
 */
static void
stub_request(struct stub_conn *c, const struct cql_header *h,
    const uint8_t *body, size_t len)
{
	uint8_t	buf[STUB_SMALL];
	size_t	n;
	char	msg[160], user[64];
	enum stub_sys	sys;

	if (h->response || h->version != c->sc_version) {
		stub_error(c, h->stream, CQL_ERR_PROTOCOL,
		    "Invalid message version or direction");
		stub_close_after_flush(c);
		return;
	}
	switch (h->opcode) {
	case CQL_OP_OPTIONS:
		stub_send_tpl(c, &stub.supported[c->sc_version], h->stream);
		break;
	case CQL_OP_STARTUP:
		if (c->sc_state != STUB_NEW) {
			stub_error(c, h->stream, CQL_ERR_PROTOCOL,
			    "Unexpected message STARTUP, the connection is "
			    "already initialized");
			break;
		}
		if (stub.no_auth) {
			n = cql_build_ready(buf, sizeof(buf), c->sc_version,
			    h->stream);
			c->sc_state = STUB_READY;
		} else {
			n = cql_build_authenticate(buf, sizeof(buf),
			    c->sc_version, h->stream, STUB_AUTHENTICATOR);
			c->sc_state = STUB_AUTHENTICATING;
		}
		stub_send(c, buf, n);
		/* v5: everything after READY/AUTHENTICATE is framed. */
		if (cql_version_has_segments(c->sc_version)) {
			stub_flush(c);
			c->sc_framed = true;
		}
		break;
	case CQL_OP_AUTH_RESPONSE:
		if (c->sc_state != STUB_AUTHENTICATING || body == NULL) {
			stub_error(c, h->stream, CQL_ERR_PROTOCOL,
			    "Unexpected AUTH_RESPONSE");
			break;
		}
		if (stub_auth_ok(body, len, user, sizeof(user))) {
			n = cql_build_auth_success(buf, sizeof(buf),
			    c->sc_version, h->stream);
			stub_send(c, buf, n);
			c->sc_state = STUB_READY;
		} else {
			stub.auth_failures++;
			snprintf(msg, sizeof(msg), "Provided username %s and/or "
			    "password are incorrect", user);
			stub_error(c, h->stream, CQL_ERR_AUTH, msg);
		}
		break;
	case CQL_OP_QUERY:
	case CQL_OP_EXECUTE:
	case CQL_OP_PREPARE:
	case CQL_OP_BATCH:
		if (c->sc_state != STUB_READY) {
			stub_error(c, h->stream, CQL_ERR_AUTH,
			    "Client must authenticate first");
			break;
		}
		stub.requests++;
		if (h->opcode == CQL_OP_QUERY &&
		    (sys = stub_system_query(body, len)) != STUB_SYS_NONE) {
			stub.sys_queries++;
			stub_send_tpl(c, &stub.sys[sys][c->sc_version],
			    h->stream);
			break;
		}
		stub_send_tpl(c, &stub.result[c->sc_version], h->stream);
		break;
	case CQL_OP_REGISTER:
		n = cql_build_ready(buf, sizeof(buf), c->sc_version, h->stream);
		stub_send(c, buf, n);
		break;
	default:
		stub_error(c, h->stream, CQL_ERR_PROTOCOL,
		    "Unsupported opcode");
		break;
	}
}

/* Whether the body of ${opcode} must be read. */
static bool
stub_wants_body(uint8_t opcode, int32_t length)
{

	return (opcode == CQL_OP_AUTH_RESPONSE || opcode == CQL_OP_STARTUP ||
	    (opcode == CQL_OP_QUERY && length <= STUB_QUERY_SCAN + 64));
}

/*
 * The first frame fixes the connection's version; an unsupported one gets
 * Cassandra's error text, in our highest version.  Returns -1 to close.
 */
static int
stub_first_frame(struct stub_conn *c, const uint8_t *hdr)
{
	uint8_t	v = hdr[0] & 0x7F;
	char	msg[160];

	if (v >= STUB_MIN_VERSION && v <= stub.max_version)
		c->sc_version = v;
	else {
		c->sc_version = stub.max_version;
		snprintf(msg, sizeof(msg), "Invalid or unsupported protocol "
		    "version (%d); the lowest supported version is %d and the "
		    "greatest is %d", v, STUB_MIN_VERSION, stub.max_version);
		stub_error(c, 0, CQL_ERR_PROTOCOL, msg);
		stub_close_after_flush(c);
		return (-1);
	}
	return (0);
}

/*
 * Handle the envelopes in a segment payload of ${n} bytes at ${p}.
 * Returns -1 on a protocol error (the connection is then closing).
 */
static int
stub_segment_payload(struct stub_conn *c, const uint8_t *p, size_t n,
    bool self_contained)
{
	struct cql_header	h;
	size_t			off, total;

	if (!self_contained) {
		if (c->sc_skip == 0) {
			/* First slice of a large envelope. */
			if (cql_header_parse(p, n, &h) != CQL_HEADER_LEN)
				goto bad;
			total = CQL_HEADER_LEN + (size_t)h.length;
			if (total <= n)
				goto bad;
			c->sc_skip = (uint32_t)(total - n);
			c->sc_skip_stream = h.stream;
			c->sc_skip_opcode = h.opcode;
			return (0);
		}
		if (n > c->sc_skip)
			goto bad;
		c->sc_skip -= (uint32_t)n;
		if (c->sc_skip == 0) {
			memset(&h, 0, sizeof(h));
			h.version = c->sc_version;
			h.stream = c->sc_skip_stream;
			h.opcode = c->sc_skip_opcode;
			h.hdr_len = CQL_HEADER_LEN;
			stub_request(c, &h, NULL, 0);
		}
		return (0);
	}
	if (c->sc_skip != 0)
		goto bad;
	for (off = 0; off < n && !c->sc_closing; off += total) {
		if (cql_header_parse(p + off, n - off, &h) != CQL_HEADER_LEN)
			goto bad;
		total = CQL_HEADER_LEN + (size_t)h.length;
		if (total > n - off)
			goto bad;
		stub_request(c, &h, p + off + CQL_HEADER_LEN, (size_t)h.length);
	}
	return (0);
bad:
	fprintf(stderr, "%s: malformed v5 segment payload\n", STUB_PROG);
	stub_flush(c);
	stub_close_after_flush(c);
	return (-1);
}

/*
 * Handle one segment from ${in}.  Returns 1 if one was handled, 0 if more
 * input is needed, -1 if the connection is closing.
 */
static int
stub_read_segment(struct stub_conn *c, struct evbuffer *in)
{
	struct cql_segment	 seg;
	uint8_t			 hdr[CQL_SEG_CRC_HEADER];
	const uint8_t		*p, *t;
	size_t			 n = evbuffer_get_length(in);
	uint32_t		 crc;

	if (n < sizeof(hdr))
		return (0);
	evbuffer_copyout(in, hdr, sizeof(hdr));
	if (cql_segment_parse_header(CQL_SEG_CRC, hdr, sizeof(hdr),
	    &seg) != CQL_SEG_CRC_HEADER) {
		fprintf(stderr, "%s: corrupt segment header\n", STUB_PROG);
		stub_close(c);
		return (-1);
	}
	if (n < seg.total_len)
		return (0);
	p = evbuffer_pullup(in, (ev_ssize_t)seg.total_len);
	t = p + seg.hdr_len + seg.payload_len;
	crc = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
	    (uint32_t)t[3] << 24;
	if (crc != bu_crc32(p + seg.hdr_len, seg.payload_len)) {
		fprintf(stderr, "%s: segment CRC32 mismatch\n", STUB_PROG);
		stub_close(c);
		return (-1);
	}
	if (stub_segment_payload(c, p + seg.hdr_len, seg.payload_len,
	    seg.self_contained) == -1)
		return (-1);
	evbuffer_drain(in, seg.total_len);
	return (1);
}

/*
 * The fast path for unframed input: answer the complete frames in the
 * first STUB_PULL bytes of ${in} (${n} bytes long) in place, then drain
 * them at once.  Returns 1 if some were handled, 0 if the first frame is
 * not complete in that window (the caller's slow path takes it), -1 if
 * ${c} is closing or freed.
 */
static int
stub_read_frames(struct stub_conn *c, struct evbuffer *in, size_t n)
{
	struct cql_header	 h;
	const uint8_t		*p;
	size_t			 m, off = 0, total;

	m = n < STUB_PULL ? n : STUB_PULL;
	if ((p = evbuffer_pullup(in, (ev_ssize_t)m)) == NULL)
		return (0);
	while (m - off >= CQL_HEADER_LEN) {
		if (cql_header_parse(p + off, m - off, &h) != CQL_HEADER_LEN ||
		    (uint32_t)h.length > STUB_MAX_FRAME) {
			fprintf(stderr, "%s: bad frame header\n", STUB_PROG);
			stub_close(c);
			return (-1);
		}
		total = CQL_HEADER_LEN + (size_t)h.length;
		if (total > m - off)
			break;
		stub_request(c, &h, p + off + CQL_HEADER_LEN, (size_t)h.length);
		off += total;
		if (c->sc_closing)
			return (-1);
		if (c->sc_framed)
			break;
	}
	if (off == 0)
		return (0);
	evbuffer_drain(in, off);
	return (1);
}

/* Read callback: answer every complete frame or segment. */
static void
stub_read_cb(struct bufferevent *bev, void *arg)
{
	struct stub_conn	*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct cql_header	 h;
	uint8_t			 hdr[CQL_HEADER_LEN];
	const uint8_t		*p;
	size_t			 n, total;
	int			 rc;

	while (!c->sc_closing) {
		if (c->sc_framed) {
			if ((rc = stub_read_segment(c, in)) == -1)
				return;
			if (rc == 0)
				break;
			continue;
		}
		if ((n = evbuffer_get_length(in)) < CQL_HEADER_LEN ||
		    n < c->sc_need)
			break;
		if (c->sc_version != 0 && (rc = stub_read_frames(c, in,
		    n)) != 0) {
			if (rc == -1)
				return;
			continue;
		}
		evbuffer_copyout(in, hdr, sizeof(hdr));
		if (c->sc_version == 0 && stub_first_frame(c, hdr) == -1)
			return;
		if (cql_header_parse(hdr, sizeof(hdr), &h) != CQL_HEADER_LEN ||
		    (uint32_t)h.length > STUB_MAX_FRAME) {
			fprintf(stderr, "%s: bad frame header\n", STUB_PROG);
			stub_close(c);
			return;
		}
		total = CQL_HEADER_LEN + (size_t)h.length;
		if (n < total) {
			c->sc_need = (uint32_t)total;	/* a large frame */
			break;
		}
		c->sc_need = 0;
		p = NULL;
		if (stub_wants_body(h.opcode, h.length))
			p = evbuffer_pullup(in, (ev_ssize_t)total) +
			    CQL_HEADER_LEN;
		stub_request(c, &h, p, (size_t)h.length);
		if (c->sc_closing)
			return;
		evbuffer_drain(in, total);
	}
	if (!c->sc_closing)
		stub_flush(c);
}

/* Event callback: EOF, errors; the TLS handshake completing. */
static void
stub_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct stub_conn	*c = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_ERROR)
		bu_ssl_errors(STUB_PROG, "connection");
	stub_close(c);
}

/* Accept callback: set up a connection. */
static void
stub_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct stub_conn	*c;
	SSL			*ssl;

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	bu_nodelay(fd);
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	if (stub.ssl_ctx != NULL) {
		if ((ssl = SSL_new(stub.ssl_ctx)) == NULL) {
			bu_ssl_errors(STUB_PROG, "SSL_new");
			free(c);
			close(fd);
			return;
		}
		c->sc_bev = bufferevent_openssl_socket_new(stub.base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (c->sc_bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(c->sc_bev,
			    1);
	} else
		c->sc_bev = bufferevent_socket_new(stub.base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	if (c->sc_bev == NULL) {
		free(c);
		close(fd);
		return;
	}
	stub.conns++;
	TAILQ_INSERT_TAIL(&stub.conn_list, c, sc_entry);
	bufferevent_setcb(c->sc_bev, stub_read_cb, NULL, stub_event_cb, c);
	bufferevent_enable(c->sc_bev, EV_READ | EV_WRITE);
}

/* Build the SUPPORTED and RESULT templates for ${v}. */
static void
stub_build_templates(uint8_t v)
{
	struct cql_header	h;
	struct cql_writer	w;
	uint8_t			buf[STUB_SMALL];
	size_t			cap;
	uint8_t			*p;
	char			pv[16];
	uint8_t			i;

	/* SUPPORTED: [string multimap]. */
	cql_writer_init(&w, buf, sizeof(buf));
	w.len = CQL_HEADER_LEN;
	cql_write_short(&w, 3);
	cql_write_string(&w, "CQL_VERSION", 11);
	cql_write_short(&w, 1);
	cql_write_string(&w, "3.4.7", 5);
	cql_write_string(&w, "COMPRESSION", 11);
	cql_write_short(&w, 0);
	cql_write_string(&w, "PROTOCOL_VERSIONS", 17);
	cql_write_short(&w, (uint16_t)(stub.max_version - STUB_MIN_VERSION + 1));
	for (i = STUB_MIN_VERSION; i <= stub.max_version; i++) {
		snprintf(pv, sizeof(pv), "%u/v%u", i, i);
		cql_write_string(&w, pv, strlen(pv));
	}
	memset(&h, 0, sizeof(h));
	h.version = v;
	h.response = true;
	h.opcode = CQL_OP_SUPPORTED;
	h.length = (int32_t)(w.len - CQL_HEADER_LEN);
	h.hdr_len = CQL_HEADER_LEN;
	(void)cql_header_write(buf, &h);
	if ((stub.supported[v].t_buf = malloc(w.len)) == NULL)
		abort();
	memcpy(stub.supported[v].t_buf, buf, w.len);
	stub.supported[v].t_len = w.len;

	/* RESULT: Void, or Rows (one blob column, one row). */
	cap = CQL_HEADER_LEN + 64 + stub.result_bytes;
	if ((p = malloc(cap)) == NULL)
		abort();
	memset(p, 0, cap);
	cql_writer_init(&w, p, cap);
	w.len = CQL_HEADER_LEN;
	if (stub.result_bytes == 0)
		cql_write_int(&w, 1);			/* Void */
	else {
		cql_write_int(&w, 2);			/* Rows */
		cql_write_int(&w, 0x0001);		/* global table spec */
		cql_write_int(&w, 1);			/* columns */
		cql_write_string(&w, "bench", 5);
		cql_write_string(&w, "t", 1);
		cql_write_string(&w, "v", 1);
		cql_write_short(&w, 0x0003);		/* blob */
		cql_write_int(&w, 1);			/* rows */
		cql_write_int(&w, (int32_t)stub.result_bytes);
		w.len += stub.result_bytes;		/* zeros */
	}
	h.opcode = CQL_OP_RESULT;
	h.length = (int32_t)(w.len - CQL_HEADER_LEN);
	(void)cql_header_write(p, &h);
	stub.result[v].t_buf = p;
	stub.result[v].t_len = w.len;
}

/*
 * Build the Rows template of system table ${which} for version ${v}: the
 * columns of ${cols}, and one row (system.local) or none (the peers
 * tables).  Needs stub.addr.
 */
static void
stub_build_sys(enum stub_sys which, uint8_t v)
{
	static const char	*const tables[STUB_SYS_COUNT] = {
		"local", "peers", "peers_v2"
	};
	static const struct stub_col	*const colsets[STUB_SYS_COUNT] = {
		stub_local_cols, stub_peers_cols, stub_peers_v2_cols
	};
	/* Fixed, made-up ids: the stub is one node with one schema. */
	static const uint8_t	host_id[16] = {
		0x5b, 0x0e, 0x6c, 0x1a, 0x33, 0x5f, 0x4d, 0x1e,
		0x9a, 0x4c, 0x21, 0x7d, 0x0b, 0x57, 0x0d, 0xe1
	};
	static const uint8_t	schema_id[16] = {
		0x1f, 0x3e, 0x5d, 0x7c, 0x9b, 0xba, 0x4d, 0xd8,
		0x8f, 0x16, 0x25, 0x34, 0x43, 0x52, 0x61, 0x70
	};
	const struct stub_col	*cols = colsets[which], *col;
	struct cql_header	 h;
	struct cql_writer	 w;
	uint8_t			*p;
	int32_t			 n = 0;
	size_t			 cap = 4096;

	for (col = cols; col->name != NULL; col++)
		n++;
	if ((p = malloc(cap)) == NULL)
		abort();
	cql_writer_init(&w, p, cap);
	w.len = CQL_HEADER_LEN;
	cql_write_int(&w, 2);				/* Rows */
	cql_write_int(&w, 0x0001);			/* global table spec */
	cql_write_int(&w, n);
	cql_write_string(&w, "system", 6);
	cql_write_string(&w, tables[which], strlen(tables[which]));
	for (col = cols; col->name != NULL; col++) {
		cql_write_string(&w, col->name, strlen(col->name));
		cql_write_short(&w, col->type);
		if (col->type == STUB_T_SET)
			cql_write_short(&w, STUB_T_VARCHAR);
	}
	cql_write_int(&w, which == STUB_SYS_LOCAL ? 1 : 0);
	for (col = cols; which == STUB_SYS_LOCAL && col->name != NULL;
	    col++) {
		switch (col->type) {
		case STUB_T_VARCHAR:
			cql_write_bytes(&w, col->value,
			    (int32_t)strlen(col->value));
			break;
		case STUB_T_INET:
			cql_write_bytes(&w, stub.addr, stub.addr_len);
			break;
		case STUB_T_UUID:
			cql_write_bytes(&w, strcmp(col->name, "host_id") == 0 ?
			    host_id : schema_id, 16);
			break;
		case STUB_T_SET:			/* {'0'}: one token */
			cql_write_int(&w, 4 + 4 + 1);
			cql_write_int(&w, 1);
			cql_write_bytes(&w, "0", 1);
			break;
		default:
			cql_write_bytes(&w, NULL, -1);	/* null */
			break;
		}
	}
	if (w.err)
		abort();
	memset(&h, 0, sizeof(h));
	h.version = v;
	h.response = true;
	h.opcode = CQL_OP_RESULT;
	h.length = (int32_t)(w.len - CQL_HEADER_LEN);
	h.hdr_len = CQL_HEADER_LEN;
	(void)cql_header_write(p, &h);
	stub.sys[which][v].t_buf = p;
	stub.sys[which][v].t_len = w.len;
}

/* Build the server TLS context. */
static SSL_CTX *
stub_tls_ctx(const char *cert, const char *key, const char *ca)
{
	SSL_CTX			*ctx;
	STACK_OF(X509_NAME)	*names;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto err;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		goto err;
	if ((names = SSL_load_client_CA_file(ca)) != NULL)
		SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	/* Resumption with client certificates needs a session id context. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)STUB_PROG,
	    sizeof(STUB_PROG) - 1);
	return (ctx);
err:
	bu_ssl_errors(STUB_PROG, "TLS setup");
	SSL_CTX_free(ctx);
	return (NULL);
}

/*
 * The address system.local names (rpc_address and friends): the listen
 * address, or loopback if it is the wildcard.
 */
static void
stub_set_addr(const struct sockaddr_storage *ss)
{
	static const uint8_t	any6[16];

	if (ss->ss_family == AF_INET6) {
		memcpy(stub.addr, &((const struct sockaddr_in6 *)ss)->sin6_addr,
		    16);
		stub.addr_len = 16;
		if (memcmp(stub.addr, any6, 16) == 0)
			stub.addr[15] = 1;			/* ::1 */
	} else {
		memcpy(stub.addr, &((const struct sockaddr_in *)ss)->sin_addr,
		    4);
		stub.addr_len = 4;
		if (memcmp(stub.addr, any6, 4) == 0) {
			stub.addr[0] = 127;			/* 127.0.0.1 */
			stub.addr[3] = 1;
		}
	}
}

/* SIGINT/SIGTERM: leave the loop. */
static void
stub_signal_cb(evutil_socket_t sig, short what, void *arg)
{

	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopbreak(stub.base);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "tls", required_argument, NULL, 't' },
		{ "version", required_argument, NULL, 'v' },
		{ "result-bytes", required_argument, NULL, 'r' },
		{ "no-auth", no_argument, NULL, 'n' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	struct evconnlistener	*lev;
	struct event		*sigint, *sigterm;
	const char		*listen = "127.0.0.1:9042";
	const char		*cert = NULL, *key = NULL, *ca = NULL;
	char			 host[256];
	uint64_t		 v;
	uint8_t			 i;
	int			 ch, k;

	TAILQ_INIT(&stub.conn_list);
	stub.max_version = STUB_MAX_VERSION;
	stub.user = strdup("cassandra");
	stub.password = strdup("cassandra");
	/* '+': no permutation, so --tls can take the next two words. */
	while ((ch = getopt_long(argc, argv, "+l:t:v:r:nu:p:h", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'l':
			listen = optarg;
			break;
		case 't':
			if (optind + 1 >= argc) {
				fprintf(stderr, "%s: --tls CERT KEY CA\n",
				    STUB_PROG);
				stub_usage(1);
			}
			cert = optarg;
			key = argv[optind];
			ca = argv[optind + 1];
			optind += 2;
			break;
		case 'v':
			if (bu_parse_num(optarg, STUB_MIN_VERSION,
			    STUB_MAX_VERSION, &v) == -1)
				stub_usage(1);
			stub.max_version = (uint8_t)v;
			break;
		case 'r':
			if (bu_parse_num(optarg, 0, 64u * 1024 * 1024,
			    &stub.result_bytes) == -1)
				stub_usage(1);
			break;
		case 'n':
			stub.no_auth = true;
			break;
		case 'u':
			free(stub.user);
			stub.user = strdup(optarg);
			break;
		case 'p':
			free(stub.password);
			stub.password = strdup(optarg);
			break;
		case 'h':
			stub_usage(0);
			break;
		default:
			stub_usage(1);
		}
	}
	if (optind != argc)
		stub_usage(1);
	if (stub.user == NULL || stub.password == NULL)
		abort();
	stub.user_len = strlen(stub.user);
	if (bu_parse_addr(listen, &ss, &sslen, host, sizeof(host)) == -1)
		return (1);
	signal(SIGPIPE, SIG_IGN);
	bu_raise_nofile();
	if (cert != NULL &&
	    (stub.ssl_ctx = stub_tls_ctx(cert, key, ca)) == NULL)
		return (1);
	for (i = STUB_MIN_VERSION; i <= stub.max_version; i++)
		stub_build_templates(i);

	if ((stub.base = bu_event_base()) == NULL)
		return (1);
	lev = evconnlistener_new_bind(stub.base, stub_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    4096, (struct sockaddr *)&ss, (int)sslen);
	if (lev == NULL) {
		fprintf(stderr, "%s: listen on %s: %s\n", STUB_PROG, listen,
		    strerror(errno));
		return (1);
	}
	sslen = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss,
	    &sslen) == 0) {
		stub_set_addr(&ss);
		v = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
		printf("%s: listening on %s%s%s:%u (%s, v%u max, %s, result "
		    "%llu bytes)\n", STUB_PROG,
		    ss.ss_family == AF_INET6 ? "[" : "", host,
		    ss.ss_family == AF_INET6 ? "]" : "", (unsigned)v,
		    stub.ssl_ctx != NULL ? "mTLS" : "plaintext",
		    stub.max_version, stub.no_auth ? "no auth" : "auth",
		    (unsigned long long)stub.result_bytes);
		fflush(stdout);
	}
	for (i = STUB_MIN_VERSION; i <= stub.max_version; i++)
		for (k = 0; k < STUB_SYS_COUNT; k++)
			stub_build_sys((enum stub_sys)k, i);
	sigint = evsignal_new(stub.base, SIGINT, stub_signal_cb, NULL);
	sigterm = evsignal_new(stub.base, SIGTERM, stub_signal_cb, NULL);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	event_base_dispatch(stub.base);
	fprintf(stderr, "%s: %llu connections, %llu requests (%llu of system "
	    "tables), %llu auth failures\n", STUB_PROG,
	    (unsigned long long)stub.conns, (unsigned long long)stub.requests,
	    (unsigned long long)stub.sys_queries,
	    (unsigned long long)stub.auth_failures);
	while (!TAILQ_EMPTY(&stub.conn_list))
		stub_close(TAILQ_FIRST(&stub.conn_list));
	event_free(sigint);
	event_free(sigterm);
	evconnlistener_free(lev);
	event_base_free(stub.base);
	SSL_CTX_free(stub.ssl_ctx);
	for (i = STUB_MIN_VERSION; i <= stub.max_version; i++) {
		free(stub.result[i].t_buf);
		free(stub.supported[i].t_buf);
		for (k = 0; k < STUB_SYS_COUNT; k++)
			free(stub.sys[k][i].t_buf);
	}
	free(stub.user);
	free(stub.password);
	return (0);
}
