/*
 * cqlbench: a CQL load generator for benchmarking relays.
 *
 * N connections, each keeping D requests in flight (pipelined on streams
 * 0..D-1; D = 1 is request/response), QUERY or EXECUTE frames of a chosen
 * size, protocol v4 or v5 (CRC segments after the handshake), plaintext or
 * TLS with a client certificate, and the SASL PLAIN exchange done here when
 * the server asks for it.  Latencies go into a log-linear histogram
 * (HDR-style, < 0.4 % error, fixed memory, nothing allocated per request).
 *
 * Modes:
 *   rr        requests/s and latency percentiles (default)
 *   bulk      large frames; MiB/s of requests sent and answered
 *   sessions  connect + TLS + full CQL handshake, close, repeat: sessions/s
 *   idle      open N sessions, print a "ready" line, hold them T seconds
 *             (--ping S: every S seconds each session sends one request)
 *
 * sessions --query: one request per session, answered, before the close;
 * -n N stops the sessions mode after N sessions.
 *
 * Output: one line of JSON on stdout, one human-readable line on stderr.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
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
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "benchutil.h"
#include "cql_frame.h"

#define CB_PROG		"cqlbench"
#define CB_SMALL	1024		/* handshake frames */
#define CB_PULL		(64 * 1024)	/* input parsed in place */
#define CB_MAX_FRAME	(256u * 1024 * 1024)
#define CB_IDLE_OPENING	64		/* idle mode: handshakes at once */

/* Log-linear histogram: 2^HIST_SUB_BITS sub-buckets per power of two. */
#define HIST_SUB_BITS	8
#define HIST_SUB	(1u << HIST_SUB_BITS)
#define HIST_HALF	(HIST_SUB / 2)
#define HIST_BUCKETS	(HIST_SUB + (64 - HIST_SUB_BITS) * HIST_HALF)

enum cb_mode {
	CB_RR,
	CB_BULK,
	CB_SESSIONS,
	CB_IDLE,
};

enum cb_state {
	CB_CONNECTING,		/* TCP (and TLS) */
	CB_OPTIONS,		/* OPTIONS sent */
	CB_STARTUP,		/* STARTUP sent */
	CB_AUTH,		/* AUTH_RESPONSE sent */
	CB_READY,		/* requests flow */
};

/* One connection. */
struct cb_conn {
	struct bufferevent	*bev;
	uint8_t			 state;		/* enum cb_state */
	bool			 framed;	/* v5 segments both ways */
	uint32_t		 inflight;
	uint64_t		 start_ns;	/* connect started */
	uint64_t		*sent_ns;	/* per stream, depth entries */
	/* v5: a large envelope split over non-self-contained segments. */
	uint32_t		 skip;
	int16_t			 skip_stream;
	uint8_t			 skip_opcode;
	uint32_t		 need;		/* wait for this much input */
};

struct cb_hist {
	uint64_t	counts[HIST_BUCKETS];
	uint64_t	total;
	uint64_t	max;
};

static struct {
	/* Options. */
	enum cb_mode		 mode;
	const char		*target;
	char			 host[256];
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	uint32_t		 conns;
	uint32_t		 depth;
	uint8_t			 version;
	bool			 execute;
	uint64_t		 size;
	double			 duration;
	double			 warmup;
	uint64_t		 max_requests;
	double			 hold;
	double			 ping;		/* idle: request period */
	bool			 session_query;	/* sessions: one request */
	const char		*user;
	const char		*password;
	const char		*label;
	SSL_CTX			*ssl_ctx;

	struct event_base	*base;
	struct cb_conn		*conn;
	uint8_t			*req;		/* request frame template */
	size_t			 req_len;
	struct bu_batch		 out;		/* frames to write */
	uint64_t		 now;		/* cached per callback */

	/* Run state. */
	bool			 measuring;
	bool			 stopping;
	uint64_t		 t0, t1;
	uint64_t		 t_open;	/* idle: all sessions ready */
	uint64_t		 completed;	/* while measuring */
	uint64_t		 bytes;		/* request bytes answered */
	uint64_t		 errors;	/* error responses */
	uint64_t		 conn_errors;	/* failed or lost conns */
	uint64_t		 sessions;
	uint32_t		 live;
	uint32_t		 opened;	/* idle: connections started */
	uint32_t		 ready;		/* idle: handshakes done */
	char			 first_error[256];
	struct cb_hist		 hist;
	struct event		*timer;
	struct event		*ping_timer;
	uint64_t		 pings;		/* idle: requests answered */
} cb;

static void	cb_connect(struct cb_conn *);
static void	cb_stop(void);

/* Print usage and exit. */
static void
cb_usage(int rc)
{
	fprintf(rc ? stderr : stdout,
"usage: cqlbench [options] HOST:PORT\n"
"  -m, --mode rr|bulk|sessions|idle   (default rr)\n"
"  -c, --connections N        connections (default 1)\n"
"  -d, --depth D              requests in flight per connection (default 1)\n"
"  -o, --op query|execute     request type (default query)\n"
"  -s, --size N               request frame bytes (default 80; bulk 1MiB)\n"
"  -v, --version 4|5          protocol version (default 4)\n"
"  -t, --tls CERT KEY CA      TLS with a client certificate\n"
"  -u, --user NAME            SASL PLAIN user if the server asks\n"
"  -p, --password PW          (default cassandra/cassandra)\n"
"  -D, --duration SECS        measured time (default 5)\n"
"  -w, --warmup SECS          warm-up, not measured (default 1)\n"
"  -n, --requests N           stop after N measured requests\n"
"  -H, --hold SECS            idle mode: hold the sessions (default 10)\n"
"  -P, --ping SECS            idle mode: each session sends a request every\n"
"                             SECS (default 0: none)\n"
"  -Q, --query                sessions mode: one request per session\n"
"  -l, --label TEXT           label copied into the JSON line\n"
"  -h, --help\n");
	exit(rc);
}

/* Histogram bucket of ${v}. */
static size_t
hist_index(uint64_t v)
{
	unsigned	m, shift;

	if (v < HIST_SUB)
		return ((size_t)v);
	m = 63u - (unsigned)__builtin_clzll(v);
	shift = m - (HIST_SUB_BITS - 1);
	return (HIST_SUB + (size_t)(shift - 1) * HIST_HALF +
	    (size_t)((v >> shift) - HIST_HALF));
}

/* Highest value that falls in bucket ${i}. */
static uint64_t
hist_value(size_t i)
{
	size_t		k;
	uint64_t	sub;

	if (i < HIST_SUB)
		return (i);
	k = (i - HIST_SUB) / HIST_HALF;
	sub = HIST_HALF + (i - HIST_SUB) % HIST_HALF;
	return (((sub + 1) << (k + 1)) - 1);
}

/* Record ${v} nanoseconds. */
static void
hist_record(struct cb_hist *h, uint64_t v)
{

	h->counts[hist_index(v)]++;
	h->total++;
	if (v > h->max)
		h->max = v;
}

/* Value at percentile ${p} (0-100), nanoseconds. */
static uint64_t
hist_percentile(const struct cb_hist *h, double p)
{
	uint64_t	want, seen = 0;
	size_t		i;

	if (h->total == 0)
		return (0);
	want = (uint64_t)ceil(p / 100.0 * (double)h->total);
	if (want == 0)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= want) {
			uint64_t v = hist_value(i);
			return (v < h->max ? v : h->max);
		}
	}
	return (h->max);
}

/* Remember the first error message for the report. */
static void
cb_note_error(const char *what, const char *arg)
{

	if (cb.first_error[0] == '\0')
		snprintf(cb.first_error, sizeof(cb.first_error), "%s: %s",
		    what, arg);
}

/* Batched output: see bu_batch_send() in benchutil.c. */
static void
cb_flush(struct cb_conn *c)
{
	bu_batch_flush(&cb.out, c->bev, c->framed);
}

static void
cb_send(struct cb_conn *c, const uint8_t *p, size_t len)
{
	bu_batch_send(&cb.out, c->bev, c->framed, p, len);
}

/* Send one request on ${stream}. */
static void
cb_send_request(struct cb_conn *c, int16_t stream)
{
	uint8_t	hdr[CQL_HEADER_LEN];

	c->sent_ns[stream] = cb.now;
	c->inflight++;
	if (!c->framed && cb.req_len > CB_SMALL) {
		/* Large: header copied, body by reference. */
		cb_flush(c);
		memcpy(hdr, cb.req, sizeof(hdr));
		bu_set_stream(hdr, stream);
		bufferevent_write(c->bev, hdr, sizeof(hdr));
		evbuffer_add_reference(bufferevent_get_output(c->bev),
		    cb.req + sizeof(hdr), cb.req_len - sizeof(hdr), NULL, NULL);
		return;
	}
	bu_set_stream(cb.req, stream);
	cb_send(c, cb.req, cb.req_len);
}

/* Free ${c}'s connection (the slot stays). */
static void
cb_drop(struct cb_conn *c)
{

	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
		cb.live--;
		cb.out.len = 0;	/* whatever was batched was its */
	}
	c->inflight = 0;
}

/* A connection failed or was lost. */
static void
cb_fail(struct cb_conn *c, const char *why)
{

	if (!cb.stopping) {
		cb.conn_errors++;
		cb_note_error("connection", why);
	}
	cb_drop(c);
	if (cb.stopping)
		return;
	if (cb.mode == CB_SESSIONS && cb.conn_errors < 100)
		cb_connect(c);
	else if (cb.live == 0 || cb.mode == CB_IDLE)
		cb_stop();
}

/* Send STARTUP. */
static void
cb_send_startup(struct cb_conn *c)
{
	struct cql_header	h;
	struct cql_writer	w;
	uint8_t			buf[CB_SMALL];

	cql_writer_init(&w, buf, sizeof(buf));
	w.len = CQL_HEADER_LEN;
	cql_write_short(&w, 2);
	cql_write_string(&w, "CQL_VERSION", 11);
	cql_write_string(&w, "3.0.0", 5);
	cql_write_string(&w, "DRIVER_NAME", 11);
	cql_write_string(&w, CB_PROG, strlen(CB_PROG));
	memset(&h, 0, sizeof(h));
	h.version = cb.version;
	h.opcode = CQL_OP_STARTUP;
	h.length = (int32_t)(w.len - CQL_HEADER_LEN);
	h.hdr_len = CQL_HEADER_LEN;
	(void)cql_header_write(buf, &h);
	c->state = CB_STARTUP;
	cb_send(c, buf, w.len);
}

/* Send AUTH_RESPONSE with the PLAIN token. */
static void
cb_send_auth(struct cb_conn *c, int16_t stream)
{
	uint8_t	tok[512], buf[CB_SMALL];
	size_t	ul = strlen(cb.user), pl = strlen(cb.password), n;

	if (ul + pl + 2 > sizeof(tok)) {
		cb_fail(c, "credentials too long");
		return;
	}
	tok[0] = '\0';
	memcpy(tok + 1, cb.user, ul);
	tok[1 + ul] = '\0';
	memcpy(tok + 2 + ul, cb.password, pl);
	n = cql_build_auth_response(buf, sizeof(buf), cb.version, stream, tok,
	    (int32_t)(ul + pl + 2));
	c->state = CB_AUTH;
	cb_send(c, buf, n);
}

/* Sessions mode: ${c} is done; count it and start the next one. */
static void
cb_session_done(struct cb_conn *c)
{

	if (cb.measuring) {
		cb.sessions++;
		hist_record(&cb.hist, cb.now - c->start_ns);
	}
	cb_drop(c);
	if (cb.measuring && cb.max_requests > 0 &&
	    cb.sessions >= cb.max_requests) {
		cb_stop();
		return;
	}
	if (!cb.stopping)
		cb_connect(c);
}

/* The handshake is done: start the mode's work on ${c}. */
static void
cb_ready(struct cb_conn *c)
{
	uint32_t	i;

	c->state = CB_READY;
	switch (cb.mode) {
	case CB_RR:
	case CB_BULK:
		for (i = 0; i < cb.depth; i++)
			cb_send_request(c, (int16_t)i);
		break;
	case CB_SESSIONS:
		if (cb.session_query) {
			cb_send_request(c, 0);
			cb_flush(c);
			break;
		}
		cb_session_done(c);
		break;
	case CB_IDLE:
		hist_record(&cb.hist, cb.now - c->start_ns);
		cb.ready++;
		if (cb.opened < cb.conns)
			cb_connect(&cb.conn[cb.opened]);
		if (cb.ready == cb.conns) {
			struct timeval	tv;

			cb.t_open = cb.now;
			printf("{\"event\":\"ready\",\"sessions\":%u,"
			    "\"pid\":%ld}\n", cb.ready, (long)getpid());
			fflush(stdout);
			tv.tv_sec = (time_t)cb.hold;
			tv.tv_usec = (suseconds_t)((cb.hold -
			    (double)tv.tv_sec) * 1e6);
			evtimer_add(cb.timer, &tv);
		}
		break;
	}
}

/* A response on a connection in the handshake. */
static void
cb_handshake_response(struct cb_conn *c, const struct cql_header *h,
    const uint8_t *body, size_t len)
{
	struct cql_reader	 r;
	const uint8_t		*s;
	size_t			 sl;
	char			 msg[200];

	switch (h->opcode) {
	case CQL_OP_SUPPORTED:
		if (c->state == CB_OPTIONS) {
			cb_send_startup(c);
			return;
		}
		break;
	case CQL_OP_READY:
		if (c->state == CB_STARTUP) {
			cb_flush(c);
			if (cql_version_has_segments(cb.version))
				c->framed = true;
			cb_ready(c);
			return;
		}
		break;
	case CQL_OP_AUTHENTICATE:
		if (c->state == CB_STARTUP) {
			cb_flush(c);
			if (cql_version_has_segments(cb.version))
				c->framed = true;
			if (cb.user == NULL) {
				cb_fail(c, "server requires authentication");
				return;
			}
			cb_send_auth(c, h->stream);
			return;
		}
		break;
	case CQL_OP_AUTH_SUCCESS:
		if (c->state == CB_AUTH) {
			cb_ready(c);
			return;
		}
		break;
	case CQL_OP_ERROR:
		snprintf(msg, sizeof(msg), "ERROR in handshake");
		if (body != NULL) {
			cql_reader_init(&r, body, len);
			(void)cql_read_int(&r);
			if (cql_read_string(&r, &s, &sl))
				snprintf(msg, sizeof(msg), "ERROR in handshake:"
				    " %.*s", (int)(sl > 150 ? 150 : sl),
				    (const char *)s);
		}
		cb_fail(c, msg);
		return;
	default:
		break;
	}
	cb_fail(c, cql_opcode_name(h->opcode));
}

/* One response envelope (${body} is NULL when not contiguous). */
static void
cb_response(struct cb_conn *c, const struct cql_header *h,
    const uint8_t *body, size_t len)
{
	int16_t	stream = h->stream;

	if (c->state != CB_READY) {
		cb_handshake_response(c, h, body, len);
		return;
	}
	if (stream < 0 || (uint32_t)stream >= cb.depth)
		return;				/* EVENT, or not ours */
	if (h->opcode != CQL_OP_RESULT) {
		cb.errors++;
		cb_note_error("response opcode", cql_opcode_name(h->opcode));
	}
	c->inflight--;
	if (cb.mode == CB_IDLE) {
		cb.pings++;
		return;
	}
	if (cb.mode == CB_SESSIONS) {
		cb_session_done(c);
		return;
	}
	if (cb.measuring) {
		hist_record(&cb.hist, cb.now - c->sent_ns[stream]);
		cb.completed++;
		cb.bytes += cb.req_len;
		if (cb.max_requests > 0 && cb.completed >= cb.max_requests) {
			cb_stop();
			return;
		}
	}
	if (!cb.stopping)
		cb_send_request(c, stream);
}

/* Whether a response's body must be contiguous. */
static bool
cb_wants_body(const struct cb_conn *c, uint8_t opcode)
{

	return (c->state != CB_READY || opcode == CQL_OP_ERROR);
}

/*
 * Handle a segment payload.  Returns -1 if ${c} was dropped or is corrupt.
 */
static int
cb_segment_payload(struct cb_conn *c, struct bufferevent *bev,
    const uint8_t *p, size_t n, bool self_contained)
{
	struct cql_header	h;
	size_t			off, total;

	if (!self_contained) {
		if (c->skip == 0) {
			if (cql_header_parse(p, n, &h) != CQL_HEADER_LEN)
				return (-1);
			total = CQL_HEADER_LEN + (size_t)h.length;
			if (total <= n)
				return (-1);
			c->skip = (uint32_t)(total - n);
			c->skip_stream = h.stream;
			c->skip_opcode = h.opcode;
			return (0);
		}
		if (n > c->skip)
			return (-1);
		c->skip -= (uint32_t)n;
		if (c->skip == 0) {
			memset(&h, 0, sizeof(h));
			h.version = cb.version;
			h.response = true;
			h.stream = c->skip_stream;
			h.opcode = c->skip_opcode;
			h.hdr_len = CQL_HEADER_LEN;
			cb_response(c, &h, NULL, 0);
		}
		return (0);
	}
	for (off = 0; off < n; off += total) {
		if (cql_header_parse(p + off, n - off, &h) != CQL_HEADER_LEN)
			return (-1);
		total = CQL_HEADER_LEN + (size_t)h.length;
		if (total > n - off)
			return (-1);
		cb_response(c, &h, p + off + CQL_HEADER_LEN, (size_t)h.length);
		if (c->bev != bev)
			return (-1);
	}
	return (0);
}

/*
 * The fast path for unframed input: handle the complete frames in the
 * first CB_PULL bytes of ${in} (${n} bytes long) in place, then drain them
 * at once.  Returns 1 if some were handled, 0 if the first frame is not
 * complete in that window (the caller's slow path takes it), -1 if ${c}
 * was dropped.
 */
static int
cb_read_frames(struct cb_conn *c, struct bufferevent *bev,
    struct evbuffer *in, size_t n)
{
	struct cql_header	 h;
	const uint8_t		*p;
	size_t			 m, off = 0, total;

	m = n < CB_PULL ? n : CB_PULL;
	if ((p = evbuffer_pullup(in, (ev_ssize_t)m)) == NULL)
		return (0);
	while (m - off >= CQL_HEADER_LEN) {
		if (cql_header_parse(p + off, m - off, &h) != CQL_HEADER_LEN ||
		    (uint32_t)h.length > CB_MAX_FRAME || !h.response) {
			cb_fail(c, "bad frame header");
			return (-1);
		}
		total = CQL_HEADER_LEN + (size_t)h.length;
		if (total > m - off)
			break;
		cb_response(c, &h, p + off + CQL_HEADER_LEN, (size_t)h.length);
		off += total;
		if (c->bev != bev)
			return (-1);
		if (c->framed)
			break;
	}
	if (off == 0)
		return (0);
	evbuffer_drain(in, off);
	return (1);
}

/* Read callback: handle every complete frame or segment. */
static void
cb_read_cb(struct bufferevent *bev, void *arg)
{
	struct cb_conn		*c = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct cql_header	 h;
	struct cql_segment	 seg;
	uint8_t			 hdr[CQL_HEADER_LEN];
	const uint8_t		*p, *t;
	size_t			 n, total;
	uint32_t		 crc;
	int			 rc;

	cb.now = bu_now_ns();
	/* Handlers may drop ${c} and even reconnect it: compare bev. */
	while (c->bev == bev) {
		n = evbuffer_get_length(in);
		if (c->framed) {
			if (n < CQL_SEG_CRC_HEADER)
				break;
			evbuffer_copyout(in, hdr, CQL_SEG_CRC_HEADER);
			if (cql_segment_parse_header(CQL_SEG_CRC, hdr,
			    CQL_SEG_CRC_HEADER, &seg) != CQL_SEG_CRC_HEADER) {
				cb_fail(c, "corrupt segment header");
				return;
			}
			if (n < seg.total_len)
				break;
			p = evbuffer_pullup(in, (ev_ssize_t)seg.total_len);
			t = p + seg.hdr_len + seg.payload_len;
			crc = (uint32_t)t[0] | (uint32_t)t[1] << 8 |
			    (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
			if (crc != bu_crc32(p + seg.hdr_len,
			    seg.payload_len)) {
				cb_fail(c, "segment CRC32 mismatch");
				return;
			}
			if (cb_segment_payload(c, bev, p + seg.hdr_len,
			    seg.payload_len, seg.self_contained) == -1) {
				if (c->bev == bev)
					cb_fail(c, "malformed segment");
				return;
			}
			evbuffer_drain(in, seg.total_len);
			continue;
		}
		if (n < CQL_HEADER_LEN || n < c->need)
			break;
		if ((rc = cb_read_frames(c, bev, in, n)) != 0) {
			if (rc == -1)
				return;
			continue;
		}
		evbuffer_copyout(in, hdr, sizeof(hdr));
		if (cql_header_parse(hdr, sizeof(hdr), &h) != CQL_HEADER_LEN ||
		    (uint32_t)h.length > CB_MAX_FRAME || !h.response) {
			cb_fail(c, "bad frame header");
			return;
		}
		total = CQL_HEADER_LEN + (size_t)h.length;
		if (n < total) {
			c->need = (uint32_t)total;	/* a large frame */
			break;
		}
		c->need = 0;
		p = NULL;
		if (cb_wants_body(c, h.opcode))
			p = evbuffer_pullup(in, (ev_ssize_t)total) +
			    CQL_HEADER_LEN;
		/* Drain first: the handler may switch to segments. */
		if (p == NULL) {
			evbuffer_drain(in, total);
			cb_response(c, &h, NULL, 0);
		} else {
			uint8_t	small[CB_SMALL];

			if ((size_t)h.length <= sizeof(small)) {
				memcpy(small, p, (size_t)h.length);
				evbuffer_drain(in, total);
				cb_response(c, &h, small, (size_t)h.length);
			} else {
				cb_response(c, &h, p, (size_t)h.length);
				if (c->bev == bev)
					evbuffer_drain(in, total);
			}
		}
	}
	if (c->bev == bev)
		cb_flush(c);
}

/* Event callback: connected (TLS done), EOF, errors. */
static void
cb_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cb_conn	*c = arg;
	uint8_t		 buf[CQL_HEADER_LEN];
	struct cql_header h;

	if (what & BEV_EVENT_CONNECTED) {
		bu_nodelay(bufferevent_getfd(bev));
		/* OPTIONS, then STARTUP after SUPPORTED (as drivers do). */
		memset(&h, 0, sizeof(h));
		h.version = cb.version;
		h.opcode = CQL_OP_OPTIONS;
		h.hdr_len = CQL_HEADER_LEN;
		(void)cql_header_write(buf, &h);
		c->state = CB_OPTIONS;
		bufferevent_write(bev, buf, sizeof(buf));
		return;
	}
	cb.now = bu_now_ns();
	if (what & BEV_EVENT_ERROR) {
		unsigned long	e = bufferevent_get_openssl_error(bev);
		char		 msg[256];

		if (e != 0) {
			ERR_error_string_n(e, msg, sizeof(msg));
			cb_fail(c, msg);
		} else
			cb_fail(c, strerror(EVUTIL_SOCKET_ERROR()));
		return;
	}
	cb_fail(c, "closed by peer");
}

/* Open the connection of slot ${c}. */
static void
cb_connect(struct cb_conn *c)
{
	SSL	*ssl;

	memset(c->sent_ns, 0, sizeof(*c->sent_ns) * cb.depth);
	c->state = CB_CONNECTING;
	c->framed = false;
	c->inflight = 0;
	c->skip = 0;
	c->need = 0;
	c->start_ns = bu_now_ns();
	if (cb.ssl_ctx != NULL) {
		if ((ssl = SSL_new(cb.ssl_ctx)) == NULL) {
			bu_ssl_errors(CB_PROG, "SSL_new");
			exit(1);
		}
		/* Verify the node's name or IP; send SNI for names. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    cb.host) != 1) {
			ERR_clear_error();
			SSL_set_tlsext_host_name(ssl, cb.host);
			SSL_set1_host(ssl, cb.host);
		}
		c->bev = bufferevent_openssl_socket_new(cb.base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (c->bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	} else
		c->bev = bufferevent_socket_new(cb.base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		fprintf(stderr, "%s: bufferevent: out of memory\n", CB_PROG);
		exit(1);
	}
	cb.live++;
	if (cb.mode == CB_IDLE)
		cb.opened++;
	bufferevent_setcb(c->bev, cb_read_cb, NULL, cb_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&cb.ss,
	    (int)cb.sslen) == -1) {
		cb_fail(c, strerror(errno));
		return;
	}
}

/* Stop the run: take the end time and leave the loop. */
static void
cb_stop(void)
{

	if (cb.stopping)
		return;
	cb.stopping = true;
	cb.t1 = bu_now_ns();
	event_base_loopbreak(cb.base);
}

/* Timer: the end of the warm-up, or of the run. */
static void
cb_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	tv;

	(void)fd;
	(void)what;
	(void)arg;
	if (!cb.measuring && cb.mode != CB_IDLE) {
		cb.measuring = true;
		cb.t0 = bu_now_ns();
		memset(&cb.hist, 0, sizeof(cb.hist));
		cb.completed = cb.bytes = cb.sessions = 0;
		if (cb.duration > 0) {
			tv.tv_sec = (time_t)cb.duration;
			tv.tv_usec = (suseconds_t)((cb.duration -
			    (double)tv.tv_sec) * 1e6);
			evtimer_add(cb.timer, &tv);
		}
		return;
	}
	cb_stop();
}

/* Idle mode: one request on every ready session with none in flight. */
static void
cb_ping_cb(evutil_socket_t fd, short what, void *arg)
{
	uint32_t	i;

	(void)fd;
	(void)what;
	(void)arg;
	cb.now = bu_now_ns();
	for (i = 0; i < cb.conns; i++) {
		struct cb_conn	*c = &cb.conn[i];

		if (c->bev == NULL || c->state != CB_READY ||
		    c->inflight > 0)
			continue;
		cb_send_request(c, 0);
		cb_flush(c);
	}
}

/* SIGINT/SIGTERM: stop (idle mode: end the hold early). */
static void
cb_signal_cb(evutil_socket_t sig, short what, void *arg)
{

	(void)sig;
	(void)what;
	(void)arg;
	cb_stop();
}

/* Build the request template: QUERY or EXECUTE of cb.size bytes. */
static void
cb_build_request(void)
{
	static const char	 q[] = "SELECT v FROM bench.t WHERE k = 1";
	struct cql_header	 h;
	struct cql_writer	 w;
	size_t			 fixed, pad;
	uint8_t			 id[16];

	memset(id, 0xAB, sizeof(id));
	/* Bytes besides the padding, so the frame is cb.size long. */
	if (!cb.execute)
		fixed = CQL_HEADER_LEN + 4 + 2 + (cb.version >= 5 ? 4 : 1);
	else
		fixed = CQL_HEADER_LEN + 2 + sizeof(id) +
		    (cb.version >= 5 ? 2 + sizeof(id) : 0) + 2 +
		    (cb.version >= 5 ? 4 : 1) + 2 + 4;
	pad = cb.size > fixed ? cb.size - fixed : 0;
	if (!cb.execute && pad < sizeof(q) - 1)
		pad = sizeof(q) - 1;
	cb.req_len = fixed + pad;
	if ((cb.req = malloc(cb.req_len)) == NULL)
		abort();
	memset(cb.req, ' ', cb.req_len);
	cql_writer_init(&w, cb.req, cb.req_len);
	w.len = CQL_HEADER_LEN;
	if (!cb.execute) {
		cql_write_int(&w, (int32_t)pad);	/* [long string] */
		cql_write_raw(&w, q, sizeof(q) - 1);
		w.len += pad - (sizeof(q) - 1);		/* spaces */
		cql_write_short(&w, 0x0001);		/* ONE */
		if (cb.version >= 5)
			cql_write_int(&w, 0);
		else
			cql_write_byte(&w, 0);
	} else {
		cql_write_short(&w, sizeof(id));
		cql_write_raw(&w, id, sizeof(id));
		if (cb.version >= 5) {			/* result metadata id */
			cql_write_short(&w, sizeof(id));
			cql_write_raw(&w, id, sizeof(id));
		}
		cql_write_short(&w, 0x0001);		/* ONE */
		if (cb.version >= 5)
			cql_write_int(&w, 0x01);	/* values */
		else
			cql_write_byte(&w, 0x01);
		cql_write_short(&w, 1);
		cql_write_int(&w, (int32_t)pad);	/* [bytes] value */
		memset(cb.req + w.len, 0x5A, pad);
		w.len += pad;
	}
	if (w.err || w.len != cb.req_len)
		abort();
	memset(&h, 0, sizeof(h));
	h.version = cb.version;
	h.opcode = cb.execute ? CQL_OP_EXECUTE : CQL_OP_QUERY;
	h.length = (int32_t)(cb.req_len - CQL_HEADER_LEN);
	h.hdr_len = CQL_HEADER_LEN;
	(void)cql_header_write(cb.req, &h);
}

/* Build the client TLS context. */
static SSL_CTX *
cb_tls_ctx(const char *cert, const char *key, const char *ca)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto err;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		goto err;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* Every session is a full handshake (no resumption). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	return (ctx);
err:
	bu_ssl_errors(CB_PROG, "TLS setup");
	SSL_CTX_free(ctx);
	return (NULL);
}

/* The name of the mode, as on the command line. */
static const char *
cb_mode_name(void)
{

	switch (cb.mode) {
	case CB_RR:
		return ("rr");
	case CB_BULK:
		return ("bulk");
	case CB_SESSIONS:
		return ("sessions");
	case CB_IDLE:
		return ("idle");
	}
	return ("?");
}

/* Print the JSON line (stdout) and the human line (stderr). */
static void
cb_report(void)
{
	double		secs, rate, mibs;
	double		p50, p90, p99, p999, mx;
	uint64_t	count;

	/* Idle mode: the time it took to open every session. */
	secs = (double)((cb.mode == CB_IDLE && cb.t_open != 0 ? cb.t_open :
	    cb.t1) - cb.t0) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	count = cb.mode == CB_SESSIONS ? cb.sessions :
	    cb.mode == CB_IDLE ? cb.ready : cb.completed;
	rate = (double)count / secs;
	mibs = (double)cb.bytes / secs / (1024.0 * 1024.0);
	p50 = (double)hist_percentile(&cb.hist, 50.0) / 1e3;
	p90 = (double)hist_percentile(&cb.hist, 90.0) / 1e3;
	p99 = (double)hist_percentile(&cb.hist, 99.0) / 1e3;
	p999 = (double)hist_percentile(&cb.hist, 99.9) / 1e3;
	mx = (double)cb.hist.max / 1e3;
	printf("{\"label\":\"%s\",\"mode\":\"%s\",\"target\":\"%s\","
	    "\"tls\":%s,\"version\":%u,\"op\":\"%s\",\"connections\":%u,"
	    "\"depth\":%u,\"frame_bytes\":%zu,\"seconds\":%.3f,"
	    "\"count\":%llu,\"rate\":%.1f,\"mib_s\":%.2f,\"errors\":%llu,"
	    "\"conn_errors\":%llu,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,"
	    "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}",
	    cb.label, cb_mode_name(), cb.target,
	    cb.ssl_ctx != NULL ? "true" : "false", cb.version,
	    cb.execute ? "execute" : "query", cb.conns, cb.depth, cb.req_len,
	    secs, (unsigned long long)count, rate, mibs,
	    (unsigned long long)cb.errors, (unsigned long long)cb.conn_errors,
	    p50, p90, p99, p999, mx);
	if (cb.mode == CB_IDLE)
		printf(",\"pings\":%llu", (unsigned long long)cb.pings);
	if (cb.first_error[0] != '\0') {
		char	*s;

		/* Keep the JSON valid: no quotes or backslashes. */
		for (s = cb.first_error; *s != '\0'; s++)
			if (*s == '"' || *s == '\\' || (unsigned char)*s < 32)
				*s = '\'';
		printf(",\"first_error\":\"%s\"", cb.first_error);
	}
	printf("}\n");
	fflush(stdout);
	fprintf(stderr, "%s %s %s v%u C=%u D=%u %zuB: %llu %s in %.2fs = "
	    "%.0f/s%s%.1f MiB/s; latency us p50 %.1f p90 %.1f p99 %.1f "
	    "p99.9 %.1f max %.1f; errors %llu, connection errors %llu\n",
	    CB_PROG, cb_mode_name(), cb.ssl_ctx != NULL ? "tls" : "plain",
	    cb.version, cb.conns, cb.depth, cb.req_len,
	    (unsigned long long)count,
	    cb.mode == CB_SESSIONS || cb.mode == CB_IDLE ? "sessions" :
	    "requests", secs, rate, ", ", mibs, p50, p90, p99, p999, mx,
	    (unsigned long long)cb.errors, (unsigned long long)cb.conn_errors);
	if (cb.first_error[0] != '\0')
		fprintf(stderr, "%s: first error: %s\n", CB_PROG,
		    cb.first_error);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "connections", required_argument, NULL, 'c' },
		{ "depth", required_argument, NULL, 'd' },
		{ "op", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "version", required_argument, NULL, 'v' },
		{ "tls", required_argument, NULL, 't' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'p' },
		{ "duration", required_argument, NULL, 'D' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "requests", required_argument, NULL, 'n' },
		{ "hold", required_argument, NULL, 'H' },
		{ "ping", required_argument, NULL, 'P' },
		{ "query", no_argument, NULL, 'Q' },
		{ "label", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct event	*sigint, *sigterm;
	struct timeval	 tv;
	const char	*cert = NULL, *key = NULL, *ca = NULL;
	bool		 size_set = false;
	uint64_t	 v;
	uint32_t	 i, start;
	int		 ch, rc;

	cb.conns = 1;
	cb.depth = 1;
	cb.version = 4;
	cb.size = 80;
	cb.duration = 5;
	cb.warmup = 1;
	cb.hold = 10;
	cb.user = "cassandra";
	cb.password = "cassandra";
	cb.label = "";
	while ((ch = getopt_long(argc, argv, "+m:c:d:o:s:v:t:u:p:D:w:n:H:P:Ql:h",
	    longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			if (strcmp(optarg, "rr") == 0)
				cb.mode = CB_RR;
			else if (strcmp(optarg, "bulk") == 0)
				cb.mode = CB_BULK;
			else if (strcmp(optarg, "sessions") == 0)
				cb.mode = CB_SESSIONS;
			else if (strcmp(optarg, "idle") == 0)
				cb.mode = CB_IDLE;
			else
				cb_usage(1);
			break;
		case 'c':
			if (bu_parse_num(optarg, 1, 1000000, &v) == -1)
				cb_usage(1);
			cb.conns = (uint32_t)v;
			break;
		case 'd':
			if (bu_parse_num(optarg, 1, 32768, &v) == -1)
				cb_usage(1);
			cb.depth = (uint32_t)v;
			break;
		case 'o':
			if (strcmp(optarg, "query") == 0)
				cb.execute = false;
			else if (strcmp(optarg, "execute") == 0)
				cb.execute = true;
			else
				cb_usage(1);
			break;
		case 's':
			if (bu_parse_num(optarg, 1, 128u * 1024 * 1024,
			    &cb.size) == -1)
				cb_usage(1);
			size_set = true;
			break;
		case 'v':
			if (bu_parse_num(optarg, 4, 5, &v) == -1)
				cb_usage(1);
			cb.version = (uint8_t)v;
			break;
		case 't':
			if (optind + 1 >= argc)
				cb_usage(1);
			cert = optarg;
			key = argv[optind];
			ca = argv[optind + 1];
			optind += 2;
			break;
		case 'u':
			cb.user = optarg;
			break;
		case 'p':
			cb.password = optarg;
			break;
		case 'D':
			if (bu_parse_secs(optarg, &cb.duration) == -1)
				cb_usage(1);
			break;
		case 'w':
			if (bu_parse_secs(optarg, &cb.warmup) == -1)
				cb_usage(1);
			break;
		case 'n':
			if (bu_parse_num(optarg, 1, UINT64_MAX / 2,
			    &cb.max_requests) == -1)
				cb_usage(1);
			break;
		case 'H':
			if (bu_parse_secs(optarg, &cb.hold) == -1)
				cb_usage(1);
			break;
		case 'P':
			if (bu_parse_secs(optarg, &cb.ping) == -1)
				cb_usage(1);
			break;
		case 'Q':
			cb.session_query = true;
			break;
		case 'l':
			cb.label = optarg;
			if (strpbrk(cb.label, "\"\\") != NULL)
				cb_usage(1);
			break;
		case 'h':
			cb_usage(0);
			break;
		default:
			cb_usage(1);
		}
	}
	if (optind + 1 != argc)
		cb_usage(1);
	cb.target = argv[optind];
	if (strpbrk(cb.target, "\"\\") != NULL)
		cb_usage(1);
	if (cb.mode == CB_BULK && !size_set)
		cb.size = 1024 * 1024;
	if (cb.max_requests > 0 && cb.duration == 5)
		cb.duration = 0;		/* run until the count */
	if (bu_parse_addr(cb.target, &cb.ss, &cb.sslen, cb.host,
	    sizeof(cb.host)) == -1)
		return (2);
	signal(SIGPIPE, SIG_IGN);
	bu_raise_nofile();
	if (cert != NULL && (cb.ssl_ctx = cb_tls_ctx(cert, key, ca)) == NULL)
		return (2);
	cb_build_request();
	if ((cb.base = bu_event_base()) == NULL ||
	    (cb.conn = calloc(cb.conns, sizeof(*cb.conn))) == NULL)
		return (2);
	for (i = 0; i < cb.conns; i++)
		if ((cb.conn[i].sent_ns = calloc(cb.depth,
		    sizeof(uint64_t))) == NULL)
			return (2);
	cb.timer = evtimer_new(cb.base, cb_timer_cb, NULL);
	sigint = evsignal_new(cb.base, SIGINT, cb_signal_cb, NULL);
	sigterm = evsignal_new(cb.base, SIGTERM, cb_signal_cb, NULL);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);

	cb.t0 = bu_now_ns();
	if (cb.mode == CB_IDLE && cb.ping > 0) {
		cb.ping_timer = event_new(cb.base, -1, EV_PERSIST, cb_ping_cb,
		    NULL);
		tv.tv_sec = (time_t)cb.ping;
		tv.tv_usec = (suseconds_t)((cb.ping - (double)tv.tv_sec) * 1e6);
		event_add(cb.ping_timer, &tv);
	}
	if (cb.mode == CB_IDLE) {
		cb.measuring = true;
		start = cb.conns < CB_IDLE_OPENING ? cb.conns : CB_IDLE_OPENING;
	} else {
		start = cb.conns;
		tv.tv_sec = (time_t)cb.warmup;
		tv.tv_usec = (suseconds_t)((cb.warmup - (double)tv.tv_sec) *
		    1e6);
		evtimer_add(cb.timer, &tv);
	}
	for (i = 0; i < start; i++)
		cb_connect(&cb.conn[i]);
	event_base_dispatch(cb.base);
	if (cb.t1 == 0)
		cb.t1 = bu_now_ns();
	cb_report();

	rc = 0;
	if (cb.errors > 0 || cb.conn_errors > 0)
		rc = 1;
	if (cb.mode == CB_IDLE ? cb.ready < cb.conns :
	    (cb.mode == CB_SESSIONS ? cb.sessions : cb.completed) == 0)
		rc = 1;
	for (i = 0; i < cb.conns; i++) {
		cb_drop(&cb.conn[i]);
		free(cb.conn[i].sent_ns);
	}
	free(cb.conn);
	free(cb.req);
	event_free(cb.timer);
	if (cb.ping_timer != NULL)
		event_free(cb.ping_timer);
	event_free(sigint);
	event_free(sigterm);
	event_base_free(cb.base);
	SSL_CTX_free(cb.ssl_ctx);
	return (rc);
}
