/*
 * session: one app connection and its TLS connection to a node (see
 * session.h).
 *
 * Life of a session:
 *   CONNECTING  non-blocking TCP connect to a node (next contact point on
 *               failure); the app is read meanwhile, and what the auth
 *               machine relays to the node waits in ${pending}.
 *   HANDSHAKE   TLS handshake, then the CQL handshake driven by the auth
 *               machine until it says DONE.
 *   RELAY       bytes move between the two bufferevents without copying;
 *               a side stops being read while its peer's output is above
 *               the high watermark.
 *   CLOSING     one side is gone or an error was sent; flush the other
 *               side's output, then session_close().
 */
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "auth.h"
#include "config.h"
#include "conn.h"
#include "cql_frame.h"
#include "log.h"
#include "relay.h"
#include "reuse.h"
#include "session.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"

/* Stop reading a side while its peer has this much output queued. */
#define SESSION_HIGH_WATER	(256 * 1024)
/* Bound on what an app may buffer before its handshake is done. */
#define SESSION_HS_READ_MAX	(AUTH_MAX_HS_FRAME + 64 * 1024)
/* How long to wait for a final flush before giving up. */
#define SESSION_FLUSH_MS	5000
/* Longest detail on a close line. */
#define SESSION_DETAIL_MAX	300
/* Largest STARTUP or SUPPORTED body kept for reuse. */
#define SESSION_REUSE_BODY_MAX	4096

struct session_half {
	struct bufferevent	*bev;		/* handshake phase */
	struct conn		 c;		/* relay phase */
	uint64_t		 bytes;		/* read from this side */
	bool			 throttled;	/* reading paused */
};

/*
 * What a session needs only until the relay starts: the auth machine, the
 * node's address while connecting, the message for a node failure.  It is
 * allocated with the session and freed when the relay starts, since an
 * idle session is smaller without it.
 */
struct session_hs {
	struct auth_hs		 auth;
	struct auth_sink	 sink;
	struct sockaddr_storage	 node_addr;	/* unode's, when picked */
	socklen_t		 node_addrlen;
	struct event		*connect_ev;
	struct evbuffer		*pending;	/* to the node, pre-connect */
	uint16_t		 node_fail_code;	/* CQL error code */
	char			 node_fail_msg[300];
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct session_ctx	*sc;
	struct session_gen	*gen;		/* config it started under */
	uint64_t		 id;
	enum session_state	 state;
	struct session_half	 app;
	struct session_half	 node;

	struct upstream_node	*unode;
	char			 node_label[UTIL_ADDRSTRLEN];
	struct upstream_node	*target;	/* per-node listener's node */
	unsigned		 attempts;
	evutil_socket_t		 app_fd;
	evutil_socket_t		 node_fd;
	SSL			*ssl;		/* TLS to the node */
	struct event		*timer;		/* NULL in the relay */
	bool			 tls_up;

	struct session_hs	*hs;		/* NULL from the relay on */
	uint8_t			 version;	/* negotiated (relay) */
	struct relay		 relay;
	bool			 relay_ready;
	bool			 io;		/* app.c and node.c set up */

	/* Node failure waiting for the app's first frame to be answered. */
	bool			 node_failed;
	bool			 refused;	/* session_refuse() */
	enum session_close_reason node_fail_reason;

	/*
	 * Reuse of node connections (see reuse.h).  ${startup} is the body
	 * of the STARTUP that opened the node connection, ${supported} the
	 * SUPPORTED the node answered an OPTIONS with, in ${supported_version},
	 * ${authenticator} the class its AUTHENTICATE named.  From the relay
	 * on, kept only while the connection may go back to the pool.
	 */
	bool			 reuse_wait;	/* app's STARTUP decides */
	bool			 reused;	/* node conn from the pool */
	bool			 kept;		/* ... and back to it */
	uint8_t			*startup;
	size_t			 startup_len;
	uint8_t			*supported;
	size_t			 supported_len;
	uint8_t			 supported_version;
	char			*authenticator;

	enum session_close_reason closing_reason;
	struct session_half	*closing_to;	/* the half being flushed */
	char			*detail;	/* for the close line, or NULL */
	char			 app_addr[UTIL_ADDRSTRLEN];
	uint64_t		 started_ms;
};

static const char *const session_reason_names[SESSION_CLOSE_NREASONS] = {
	[SESSION_CLOSE_APP_EOF] = "app closed",
	[SESSION_CLOSE_NODE_EOF] = "node closed",
	[SESSION_CLOSE_APP_ERROR] = "app connection error",
	[SESSION_CLOSE_NODE_ERROR] = "node connection error",
	[SESSION_CLOSE_NO_NODE] = "no node available",
	[SESSION_CLOSE_CONNECT_FAILED] = "connect failed",
	[SESSION_CLOSE_CONNECT_TIMEOUT] = "connect timeout",
	[SESSION_CLOSE_TLS_FAILED] = "TLS failed",
	[SESSION_CLOSE_HANDSHAKE_TIMEOUT] = "handshake timeout",
	[SESSION_CLOSE_PROTOCOL] = "protocol error",
	[SESSION_CLOSE_STARTUP_REFUSED] = "startup refused",
	[SESSION_CLOSE_AUTH_FAILED] = "authentication failed",
	[SESSION_CLOSE_FRAME_TOO_LARGE] = "frame too large",
	[SESSION_CLOSE_DRAIN_TIMEOUT] = "drain timeout",
	[SESSION_CLOSE_SHUTDOWN] = "shutdown",
	[SESSION_CLOSE_INTERNAL] = "internal error",
	[SESSION_CLOSE_DENIED] = "access denied",
	[SESSION_CLOSE_MAX_CONNECTIONS] = "max_connections reached",
};

static const char *const session_reason_labels[SESSION_CLOSE_NREASONS] = {
	[SESSION_CLOSE_APP_EOF] = "app_eof",
	[SESSION_CLOSE_NODE_EOF] = "node_eof",
	[SESSION_CLOSE_APP_ERROR] = "app_error",
	[SESSION_CLOSE_NODE_ERROR] = "node_error",
	[SESSION_CLOSE_NO_NODE] = "no_node",
	[SESSION_CLOSE_CONNECT_FAILED] = "connect_failed",
	[SESSION_CLOSE_CONNECT_TIMEOUT] = "connect_timeout",
	[SESSION_CLOSE_TLS_FAILED] = "tls_failed",
	[SESSION_CLOSE_HANDSHAKE_TIMEOUT] = "handshake_timeout",
	[SESSION_CLOSE_PROTOCOL] = "protocol_error",
	[SESSION_CLOSE_STARTUP_REFUSED] = "startup_refused",
	[SESSION_CLOSE_AUTH_FAILED] = "auth_failed",
	[SESSION_CLOSE_FRAME_TOO_LARGE] = "frame_too_large",
	[SESSION_CLOSE_DRAIN_TIMEOUT] = "drain_timeout",
	[SESSION_CLOSE_SHUTDOWN] = "shutdown",
	[SESSION_CLOSE_INTERNAL] = "internal_error",
	[SESSION_CLOSE_DENIED] = "denied",
	[SESSION_CLOSE_MAX_CONNECTIONS] = "max_connections",
};

static void	session_connect(struct session *s);
static bool	session_reuse_allowed(const struct session *s);
static bool	session_reuse_keep(struct session *s);
static void	session_app_readcb(struct bufferevent *bev, void *arg);
static void	session_app_writecb(struct bufferevent *bev, void *arg);
static void	session_app_eventcb(struct bufferevent *bev, short what,
		    void *arg);
static void	session_node_readcb(struct bufferevent *bev, void *arg);
static void	session_node_writecb(struct bufferevent *bev, void *arg);
static void	session_node_eventcb(struct bufferevent *bev, short what,
		    void *arg);

const char *
session_close_reason_label(enum session_close_reason r)
{
	if ((unsigned)r < SESSION_CLOSE_NREASONS && session_reason_labels[r])
		return (session_reason_labels[r]);
	return ("unknown");
}

void
session_ctx_bytes(const struct session_ctx *sc, uint64_t *app,
    uint64_t *node)
{
	const struct session	*s;

	*app = sc->stats.bytes_app;
	*node = sc->stats.bytes_node;
	TAILQ_FOREACH(s, &sc->sessions, entry) {
		*app += s->app.bytes;
		*node += s->node.bytes;
	}
}

/* Count a TLS failure under ${label} (a bounded set of OpenSSL texts). */
static void
session_count_tls_failure(struct session_ctx *sc, const char *label)
{
	struct session_stats	*st = &sc->stats;
	unsigned		 i;

	for (i = 0; i < st->ntls_fail; i++) {
		if (strcmp(st->tls_fail[i].label, label) == 0) {
			st->tls_fail[i].n++;
			return;
		}
	}
	if (st->ntls_fail == SESSION_TLS_REASONS) {
		st->tls_fail_other++;
		return;
	}
	snprintf(st->tls_fail[i].label, sizeof(st->tls_fail[i].label), "%s",
	    label);
	st->tls_fail[i].n = 1;
	st->ntls_fail++;
}

const char *
session_close_reason_name(enum session_close_reason r)
{
	if ((unsigned)r < SESSION_CLOSE_NREASONS && session_reason_names[r])
		return (session_reason_names[r]);
	return ("unknown");
}

struct session_gen *
session_gen_new(struct config *cfg, struct tls_ctx *tls,
    struct auth_creds *creds, unsigned id, bool owns_cfg)
{
	struct session_gen	*g = util_xcalloc(1, sizeof(*g));

	g->cfg = cfg;
	g->owns_cfg = owns_cfg;
	g->tls = tls;
	g->creds = creds;
	g->id = id;
	atomic_init(&g->refs, 1);
	return (g);
}

struct session_gen *
session_gen_ref(struct session_gen *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return (g);
}

void
session_gen_unref(struct session_gen *g)
{
	if (g == NULL ||
	    atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) > 1)
		return;
	auth_creds_free(g->creds);
	tls_ctx_free(g->tls);
	if (g->owns_cfg)
		config_free(g->cfg);
	free(g);
}

void
session_ctx_init(struct session_ctx *sc, struct event_base *base,
    struct session_gen *gen, struct upstream *up)
{
	memset(sc, 0, sizeof(*sc));
	sc->base = base;
	sc->gen = session_gen_ref(gen);
	sc->up = up;
	atomic_init(&sc->live_own, 0);
	sc->live = &sc->live_own;
	TAILQ_INIT(&sc->sessions);
	reuse_pool_init(&sc->pool, base);
}

void
session_ctx_reuse_stop(struct session_ctx *sc)
{
	sc->reuse_stopped = true;
	reuse_pool_flush(&sc->pool, NULL, NULL);
}

unsigned
session_ctx_live(const struct session_ctx *sc)
{
	return (atomic_load_explicit(sc->live, memory_order_relaxed));
}

void
session_ctx_totals(const struct session_ctx *sc, struct session_totals *t)
{
	memset(t, 0, sizeof(*t));
	t->stats = sc->stats;
	session_ctx_bytes(sc, &t->stats.bytes_app, &t->stats.bytes_node);
	memcpy(t->closed, sc->closed, sizeof(t->closed));
	t->rewrites = sc->rewrites;
	t->open = sc->nsessions;
	t->pooled = reuse_pool_count(&sc->pool);
}

void
session_totals_add(struct session_totals *sum, const struct session_totals *t)
{
	struct session_stats		*a = &sum->stats;
	const struct session_stats	*b = &t->stats;
	unsigned			 i, j;

	a->accepted += b->accepted;
	a->bytes_app += b->bytes_app;
	a->bytes_node += b->bytes_node;
	for (i = 0; i < SESSION_HS_NBUCKETS; i++)
		a->hs_bucket[i] += b->hs_bucket[i];
	a->hs_count += b->hs_count;
	a->hs_sum_ms += b->hs_sum_ms;
	if (b->last_hs_ok_ms > a->last_hs_ok_ms)
		a->last_hs_ok_ms = b->last_hs_ok_ms;
	a->tls_resumed += b->tls_resumed;
	a->tls_full += b->tls_full;
	a->reused += b->reused;
	a->tls_fail_other += b->tls_fail_other;
	for (j = 0; j < b->ntls_fail; j++) {
		for (i = 0; i < a->ntls_fail; i++)
			if (strcmp(a->tls_fail[i].label,
			    b->tls_fail[j].label) == 0)
				break;
		if (i < a->ntls_fail)
			a->tls_fail[i].n += b->tls_fail[j].n;
		else if (a->ntls_fail < SESSION_TLS_REASONS) {
			a->tls_fail[i] = b->tls_fail[j];
			a->ntls_fail++;
		} else
			a->tls_fail_other += b->tls_fail[j].n;
	}
	for (i = 0; i < SESSION_CLOSE_NREASONS; i++)
		sum->closed[i] += t->closed[i];
	sum->rewrites += t->rewrites;
	sum->open += t->open;
	sum->pooled += t->pooled;
}

void
session_ctx_set_gen(struct session_ctx *sc, struct session_gen *gen)
{
	struct session_gen	*old = sc->gen;

	sc->gen = session_gen_ref(gen);
	/* New TLS settings or credentials: no connection of the old ones. */
	if (gen != old)
		reuse_pool_flush(&sc->pool, gen, NULL);
	session_gen_unref(old);
}

/* Set a human-readable detail for the close line. */
static void
session_detail(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_detail(struct session *s, const char *fmt, ...)
{
	va_list	 ap;

	/* Most sessions end without one: allocated when first needed. */
	if (s->detail == NULL &&
	    (s->detail = malloc(SESSION_DETAIL_MAX)) == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(s->detail, SESSION_DETAIL_MAX, fmt, ap);
	va_end(ap);
}

static void	session_timer_cb(evutil_socket_t fd, short what, void *arg);

/*
 * Arm the session timer for ${ms} milliseconds.  An idle relay has none:
 * it is made again for a final flush.  Returns 0, or -1 when out of
 * memory.
 */
static int
session_timer_set(struct session *s, unsigned ms)
{
	struct timeval	 tv = { (time_t)(ms / 1000),
			    (suseconds_t)(ms % 1000) * 1000 };

	if (s->timer == NULL &&
	    (s->timer = evtimer_new(s->sc->base, session_timer_cb, s)) == NULL)
		return (-1);
	evtimer_add(s->timer, &tv);
	return (0);
}

/* A short label for the node, for logs. */
static const char *
session_node_label(const struct session *s)
{
	return (s->unode != NULL ? s->node_label : "-");
}

/* Log at a level chosen at run time. */
static void
session_log(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_log(enum log_level level, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(level, fmt, ap);
	va_end(ap);
}

/*
 * Let go of the node side: its bufferevent, TLS and socket.  ${clean}:
 * end TLS with close_notify first.  Besides being the proper end, it
 * keeps the session resumable: OpenSSL marks the session of a connection
 * freed without it as not to be resumed (see tls.c).
 */
static void
session_node_drop(struct session *s, bool clean)
{
	if (s->node.bev != NULL) {
		bufferevent_free(s->node.bev);
		s->node.bev = NULL;
	}
	if (s->ssl != NULL) {
		if (clean && s->tls_up) {
			(void)SSL_shutdown(s->ssl);
			ERR_clear_error();
		}
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->node_fd != -1) {
		evutil_closesocket(s->node_fd);
		s->node_fd = -1;
	}
}

/* The CQL version of the session, once known; 0 before. */
static uint8_t
session_version(const struct session *s)
{
	if (s->hs == NULL)
		return (s->version);
	return (s->hs->auth.version != 0 ? s->hs->auth.version :
	    s->hs->auth.first_version);
}

/* Free the handshake-only state (at relay entry, or at close). */
static void
session_hs_free(struct session *s)
{
	struct session_hs	*hs = s->hs;

	if (hs == NULL)
		return;
	if (hs->connect_ev != NULL)
		event_free(hs->connect_ev);
	if (hs->pending != NULL)
		evbuffer_free(hs->pending);
	free(hs);
	s->hs = NULL;
}

/* Drop what was kept for reusing the node connection. */
static void
session_reuse_forget(struct session *s)
{
	free(s->startup);
	free(s->supported);
	free(s->authenticator);
	s->startup = s->supported = NULL;
	s->authenticator = NULL;
}

void
session_close(struct session *s, enum session_close_reason reason)
{
	struct session_ctx	*sc = s->sc;
	enum log_level		 level;
	uint64_t		 ms = util_now_ms() - s->started_ms;
	uint8_t			 version;
	char			 reuse[80];

	if (s->refused) {
		/* However a refused app leaves, it was refused. */
		reason = s->node_fail_reason;
		session_detail(s, "%s", s->hs->node_fail_msg +
		    strlen("cqltunnel: "));
		sc->nrefusing--;
	}
	switch (reason) {
	case SESSION_CLOSE_APP_EOF:
	case SESSION_CLOSE_NODE_EOF:
	case SESSION_CLOSE_SHUTDOWN:
		level = LOG_LEVEL_INFO;
		break;
	default:
		level = LOG_LEVEL_WARN;
		break;
	}
	version = session_version(s);
	if (s->reused || s->kept) {
		/* Part of the detail, which log readers split off at ": ". */
		snprintf(reuse, sizeof(reuse), "%s%s%s%s",
		    s->detail != NULL ? "; " : "",
		    s->reused ? "reused node connection" : "",
		    s->reused && s->kept ? ", " : "",
		    s->kept ? "node connection kept for reuse" : "");
	} else
		reuse[0] = '\0';
	session_log(level, "session %llu closed: app %s node %s proto %s "
	    "app->node %llu B node->app %llu B %llu.%03llu s: %s%s%s%s",
	    (unsigned long long)s->id, s->app_addr, session_node_label(s),
	    version != 0 ? cql_version_name(version) : "-",
	    (unsigned long long)s->app.bytes, (unsigned long long)s->node.bytes,
	    (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
	    session_close_reason_name(reason),
	    s->detail != NULL || reuse[0] != '\0' ? ": " : "",
	    s->detail != NULL ? s->detail : "", reuse);

	session_hs_free(s);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->io) {
		conn_free(&s->app.c);
		conn_free(&s->node.c);
	}
	if (s->app.bev != NULL)
		bufferevent_free(s->app.bev);
	if (s->app_fd != -1)
		evutil_closesocket(s->app_fd);
	session_node_drop(s, reason != SESSION_CLOSE_NODE_ERROR &&
	    reason != SESSION_CLOSE_NODE_EOF);
	session_reuse_forget(s);
	free(s->detail);
	if (s->relay_ready) {
		sc->rewrites += s->relay.rewrites;
		relay_free(&s->relay);
	}
	sc->stats.bytes_app += s->app.bytes;
	sc->stats.bytes_node += s->node.bytes;
	TAILQ_REMOVE(&sc->sessions, s, entry);
	sc->nsessions--;
	atomic_fetch_sub_explicit(sc->live, 1, memory_order_relaxed);
	session_gen_unref(s->gen);
	sc->closed[reason]++;
	free(s);
	if (sc->nsessions == 0 && sc->on_idle != NULL)
		sc->on_idle(sc->on_idle_arg);
}

void
session_close_all(struct session_ctx *sc, enum session_close_reason reason)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&sc->sessions)) != NULL)
		session_close(s, reason);
	reuse_pool_flush(&sc->pool, NULL, NULL);
}

/*
 * Close once ${to}'s output has been written (or after a short deadline);
 * stop reading both sides meanwhile.
 */
static bool
session_flush_close(struct session *s, struct session_half *to,
    enum session_close_reason reason)
{
	if (s->io) {
		if (conn_flush(&to->c) == -1 ||
		    evbuffer_get_length(to->c.out) == 0) {
			session_close(s, reason);
			return (false);
		}
		conn_pause(&s->app.c);
		conn_pause(&s->node.c);
		to->c.low = 0;
	} else {
		if (to->bev == NULL ||
		    evbuffer_get_length(bufferevent_get_output(to->bev)) == 0) {
			session_close(s, reason);
			return (false);
		}
		if (s->app.bev != NULL)
			bufferevent_disable(s->app.bev, EV_READ);
		if (s->node.bev != NULL)
			bufferevent_disable(s->node.bev, EV_READ);
		bufferevent_setwatermark(to->bev, EV_WRITE, 0, 0);
		bufferevent_enable(to->bev, EV_WRITE);
	}
	if (session_timer_set(s, SESSION_FLUSH_MS) == -1) {
		session_close(s, reason);	/* no deadline: no wait */
		return (false);
	}
	s->state = SESSION_CLOSING;
	s->closing_reason = reason;
	s->closing_to = to;
	return (true);
}

/* Queue ${n} bytes for the app, on whichever I/O the session uses now. */
static void
session_app_write(struct session *s, const void *p, size_t n)
{
	if (s->io)
		evbuffer_add(s->app.c.out, p, n);
	else
		bufferevent_write(s->app.bev, p, n);
}

/* Sink: bytes for the app. */
static void
session_to_app(void *arg, const uint8_t *p, size_t n)
{
	struct session	*s = arg;

	session_app_write(s, p, n);
}

/*
 * Sink: bytes for the node (held until the node is connected).  They may
 * be our AUTH_RESPONSE, so they are queued from a copy that is wiped once
 * sent, never left in freed evbuffer memory.
 */
static void
session_to_node(void *arg, const uint8_t *p, size_t n)
{
	struct session	*s = arg;
	struct evbuffer	*out;

	if (s->node_failed || n == 0)
		return;
	out = s->io ? s->node.c.out : s->node.bev != NULL ?
	    bufferevent_get_output(s->node.bev) : s->hs->pending;
	(void)util_evbuffer_add_wiped(out, p, n);
}

/*
 * Answer the app's first request with an ERROR describing the node
 * failure, then close.  Returns true if the session was closed (or is
 * closing); false if the app has not sent anything yet.
 */
static bool
session_report_node_failure(struct session *s)
{
	struct session_hs	*hs = s->hs;

	if (auth_hs_fail_app(&hs->auth, hs->node_fail_code, hs->node_fail_msg,
	    &hs->sink) == -1)
		return (false);
	session_detail(s, "%s", hs->node_fail_msg + strlen("cqltunnel: "));
	session_flush_close(s, &s->app, s->node_fail_reason);
	return (true);
}

/*
 * The node cannot be used: remember why, drop the node side, and tell the
 * app (now, or when its first frame arrives).
 */
static void
session_node_failed(struct session *s, enum session_close_reason reason,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
session_node_failed(struct session *s, enum session_close_reason reason,
    const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	n = snprintf(s->hs->node_fail_msg, sizeof(s->hs->node_fail_msg),
	    "cqltunnel: ");
	va_start(ap, fmt);
	vsnprintf(s->hs->node_fail_msg + n,
	    sizeof(s->hs->node_fail_msg) - (size_t)n, fmt, ap);
	va_end(ap);
	s->node_failed = true;
	s->node_fail_reason = reason;
	if (s->hs->connect_ev != NULL) {
		event_free(s->hs->connect_ev);
		s->hs->connect_ev = NULL;
	}
	session_node_drop(s, false);
	if (!session_report_node_failure(s)) {
		/* Wait (under the handshake timer) for the first frame. */
		s->state = SESSION_HANDSHAKE;
		session_detail(s, "%s", s->hs->node_fail_msg +
		    strlen("cqltunnel: "));
	}
}

/*
 * The relay failed on input from ${src}: tell the app why when the frame
 * was its own, then close.
 */
static bool
session_relay_failed(struct session *s, struct session_half *src)
{
	const struct cql_header	*h = src == &s->app ? &s->relay.up.last :
				    &s->relay.down.last;
	const char		*who = src == &s->app ? "app" : "node";
	uint8_t			 frame[512];
	char			 msg[200];
	size_t			 n;
	int			 len;

	if (s->relay.error == RELAY_ERR_TOO_LARGE) {
		session_detail(s, "%s sent a frame of %d bytes (%s "
		    "max_frame_size is %u)", who, h->length, "[listen]",
		    s->gen->cfg->max_frame_size);
		if (src == &s->app) {
			len = snprintf(msg, sizeof(msg), "cqltunnel: frame of "
			    "%d bytes exceeds max_frame_size (%u)", h->length,
			    s->gen->cfg->max_frame_size);
			n = cql_build_error(frame, sizeof(frame), h->version,
			    h->stream, CQL_ERR_PROTOCOL, msg, (size_t)len);
			session_app_write(s, frame, n);
		}
		return (session_flush_close(s, &s->app,
		    SESSION_CLOSE_FRAME_TOO_LARGE));
	}
	if (s->relay.error == RELAY_ERR_LZ4_TOO_LARGE) {
		session_detail(s, "app sent an lz4 frame declaring %u bytes "
		    "uncompressed ([listen] max_frame_size is %u)",
		    s->relay.declared_len, s->gen->cfg->max_frame_size);
		len = snprintf(msg, sizeof(msg), "cqltunnel: lz4 frame declares "
		    "%u bytes uncompressed, above max_frame_size (%u)",
		    s->relay.declared_len, s->gen->cfg->max_frame_size);
		n = cql_build_error(frame, sizeof(frame), h->version,
		    h->stream, CQL_ERR_PROTOCOL, msg, (size_t)len);
		session_app_write(s, frame, n);
		return (session_flush_close(s, &s->app,
		    SESSION_CLOSE_FRAME_TOO_LARGE));
	}
	session_detail(s, "%s: %s", who, relay_error_name(s->relay.error));
	if (src == &s->app && s->relay.error == RELAY_ERR_CORRUPT &&
	    !s->relay.segments && h->length < 0 && !h->response &&
	    h->version == s->relay.version) {
		/* A request header with a negative length: answer its stream. */
		session_detail(s, "app sent a frame header with a negative "
		    "length (%d) on stream %d", h->length, h->stream);
		len = snprintf(msg, sizeof(msg), "cqltunnel: malformed frame "
		    "header from app (negative length %d)", h->length);
		n = cql_build_error(frame, sizeof(frame), h->version,
		    h->stream, CQL_ERR_PROTOCOL, msg, (size_t)len);
		session_app_write(s, frame, n);
	}
	return (session_flush_close(s, &s->app,
	    s->relay.error == RELAY_ERR_NOMEM ? SESSION_CLOSE_INTERNAL :
	    SESSION_CLOSE_PROTOCOL));
}

/* The write side of ${h} failed: close, naming the side. */
static void
session_io_failed(struct session *s, struct session_half *h)
{
	char	 why[200];

	session_detail(s, "%s", conn_error(&h->c, why, sizeof(why)));
	session_close(s, h == &s->app ? SESSION_CLOSE_APP_ERROR :
	    SESSION_CLOSE_NODE_ERROR);
}

/*
 * Move what ${src} has read to ${dst} and write it out at once; pause
 * ${src} while ${dst} has too much queued.  Returns false if the session
 * is gone.
 */
static bool
session_relay(struct session *s, struct session_half *src,
    struct session_half *dst)
{
	struct evbuffer	*in = src->c.in;
	ssize_t		 moved;

	if (evbuffer_get_length(in) == 0)
		return (true);
	moved = relay_move(&s->relay, src == &s->app, in, dst->c.out);
	if (moved < 0)
		return (session_relay_failed(s, src));
	src->bytes += (uint64_t)moved;
	if (conn_flush(&dst->c) == -1) {
		session_io_failed(s, dst);
		return (false);
	}
	if (evbuffer_get_length(dst->c.out) >= SESSION_HIGH_WATER &&
	    !src->throttled) {
		src->throttled = true;
		conn_pause(&src->c);
	}
	return (true);
}

/*
 * ${dst} drained: close if it is the half whose last flush we wait for,
 * else resume its peer.  While closing, the other half draining says
 * nothing about the flush: closing then would drop what is still queued
 * for the half being flushed (the app's ERROR, when the node's STARTUP
 * drains only after the node's bad answer is read).
 */
static void
session_drained(struct session *s, struct session_half *dst,
    struct session_half *src)
{
	struct evbuffer	*out = s->io ? dst->c.out :
			    bufferevent_get_output(dst->bev);

	if (s->state == SESSION_CLOSING) {
		if (dst == s->closing_to && evbuffer_get_length(out) == 0)
			session_close(s, s->closing_reason);
		return;
	}
	if (s->io && src->throttled) {
		src->throttled = false;
		conn_resume(&src->c);
	}
}

/* Relay-phase I/O on ${c} (one of the session's halves). */
static void
session_conn_cb(struct conn *c, int what, void *arg)
{
	struct session		*s = arg;
	struct session_half	*h = c == &s->app.c ? &s->app : &s->node;
	struct session_half	*peer = h == &s->app ? &s->node : &s->app;
	enum session_close_reason r;
	char			 why[200];

	if (what & CONN_DRAINED) {
		session_drained(s, h, peer);
		return;
	}
	if (s->state == SESSION_CLOSING) {
		evbuffer_drain(c->in, evbuffer_get_length(c->in));
		if (what & (CONN_ERROR | CONN_EOF))
			session_close(s, s->closing_reason);
		return;
	}
	if ((what & CONN_READ) && !session_relay(s, h, peer))
		return;
	if ((what & (CONN_ERROR | CONN_EOF)) == 0)
		return;
	if (what & CONN_ERROR) {
		session_detail(s, "%s", conn_error(c, why, sizeof(why)));
		r = h == &s->app ? SESSION_CLOSE_APP_ERROR :
		    SESSION_CLOSE_NODE_ERROR;
	} else
		r = h == &s->app ? SESSION_CLOSE_APP_EOF :
		    SESSION_CLOSE_NODE_EOF;
	if (r == SESSION_CLOSE_APP_EOF && session_reuse_keep(s)) {
		session_close(s, r);
		return;
	}
	/* Deliver what the side sent before it left, then close. */
	(void)session_flush_close(s, peer, r);
}

/*
 * Leave the bufferevents: the relay phase does its own I/O on the same
 * socket and SSL (see conn.h).  What they buffered moves over.
 */
static int
session_io_start(struct session *s)
{
	struct event_base	*base = s->sc->base;

	bufferevent_disable(s->app.bev, EV_READ | EV_WRITE);
	if (s->node.bev != NULL)	/* NULL: a reused node connection */
		bufferevent_disable(s->node.bev, EV_READ | EV_WRITE);
	if (conn_init(&s->app.c, base, s->app_fd, NULL,
	    SESSION_HIGH_WATER / 2, session_conn_cb, s) == -1)
		return (-1);
	if (conn_init(&s->node.c, base, s->node_fd, s->ssl,
	    SESSION_HIGH_WATER / 2, session_conn_cb, s) == -1) {
		conn_free(&s->app.c);
		return (-1);
	}
	s->io = true;
	/* A bufferevent alone may take from its output: it is dormant now. */
	evbuffer_unfreeze(bufferevent_get_output(s->app.bev), 1);
	if (evbuffer_add_buffer(s->app.c.in,
	    bufferevent_get_input(s->app.bev)) == -1 ||
	    evbuffer_add_buffer(s->app.c.out,
	    bufferevent_get_output(s->app.bev)) == -1)
		return (-1);
	if (s->node.bev != NULL) {
		evbuffer_unfreeze(bufferevent_get_output(s->node.bev), 1);
		if (evbuffer_add_buffer(s->node.c.in,
		    bufferevent_get_input(s->node.bev)) == -1 ||
		    evbuffer_add_buffer(s->node.c.out,
		    bufferevent_get_output(s->node.bev)) == -1)
			return (-1);
	}
	/*
	 * The bufferevents own neither socket nor SSL (no CLOSE_ON_FREE):
	 * free them, an idle session is smaller without.  Safe inside their
	 * own callbacks, which hold a reference until they return.
	 */
	bufferevent_free(s->app.bev);
	if (s->node.bev != NULL)
		bufferevent_free(s->node.bev);
	s->app.bev = s->node.bev = NULL;
	if (s->hs->pending != NULL) {
		evbuffer_free(s->hs->pending);
		s->hs->pending = NULL;
	}
	conn_resume(&s->app.c);
	conn_resume(&s->node.c);
	return (0);
}

/* The handshake is over: relay whatever is already buffered. */
static void
session_enter_relay(struct session *s)
{
	static const uint64_t	 bounds[SESSION_HS_NBUCKETS] =
				    SESSION_HS_BUCKETS_MS;
	struct session_stats	*st = &s->sc->stats;
	const struct auth_hs	*a = &s->hs->auth;
	uint64_t		 now = util_now_ms(), ms = now - s->started_ms;
	unsigned		 i;

	s->state = SESSION_RELAY;
	evtimer_del(s->timer);
	for (i = 0; i < SESSION_HS_NBUCKETS; i++)
		if (ms <= bounds[i])
			st->hs_bucket[i]++;
	st->hs_count++;
	st->hs_sum_ms += ms;
	st->last_hs_ok_ms = now;
	bufferevent_setwatermark(s->app.bev, EV_READ, 0, 0);
	s->version = session_version(s);
	relay_init(&s->relay, s->version, a->compression == AUTH_COMP_LZ4 ?
	    RELAY_COMP_LZ4 : a->compression == AUTH_COMP_SNAPPY ?
	    RELAY_COMP_SNAPPY : RELAY_COMP_NONE, s->sc->rw,
	    s->gen->cfg->max_frame_size);
	if (s->gen->cfg->client_auth == CONFIG_CLIENT_AUTH_PASSTHROUGH)
		relay_expect_startup(&s->relay);
	s->relay_ready = true;
	if (session_reuse_allowed(s) && a->injected && s->startup != NULL &&
	    reuse_startup_ok(a->version, s->startup, s->startup_len) &&
	    (s->authenticator = strdup(a->authenticator)) != NULL)
		(void)relay_track_start(&s->relay);
	if (!s->relay.track.on)
		session_reuse_forget(s);	/* never going to the pool */
	if (a->authenticator[0] != '\0' &&
	    strcmp(a->authenticator, s->sc->authenticator) != 0) {
		log_info("node %s uses authenticator %s; %s",
		    session_node_label(s), a->authenticator, a->injected ?
		    (a->dse ? "answering with SASL PLAIN (DSE mechanism "
		    "exchange)" : "answering with a SASL PLAIN token") :
		    "left to the app");
		snprintf(s->sc->authenticator, sizeof(s->sc->authenticator),
		    "%s", a->authenticator);
	}
	log_debug("session %llu: handshake done (%s, authenticator %s%s)",
	    (unsigned long long)s->id, cql_version_name(s->version),
	    a->authenticator[0] != '\0' ? a->authenticator : "none",
	    a->injected ? ", credentials injected" : "");
	if (session_io_start(s) == -1) {
		session_detail(s, "out of memory");
		session_close(s, SESSION_CLOSE_INTERNAL);
		return;
	}
	/* From here on the session is what an idle relay holds. */
	session_hs_free(s);
	event_free(s->timer);
	s->timer = NULL;
	if (!session_relay(s, &s->app, &s->node))
		return;
	if (!session_relay(s, &s->node, &s->app))
		return;
	/* Nothing buffered to move: still write what the handshake left. */
	if (conn_flush(&s->app.c) == -1)
		session_io_failed(s, &s->app);
	else if (conn_flush(&s->node.c) == -1)
		session_io_failed(s, &s->node);
}

/* Map an auth machine failure onto a close reason and close. */
static void
session_hs_failed(struct session *s)
{
	enum session_close_reason r;

	switch (s->hs->auth.failure) {
	case AUTH_FAIL_CREDENTIALS:
		r = SESSION_CLOSE_AUTH_FAILED;
		break;
	case AUTH_FAIL_STARTUP:
		r = SESSION_CLOSE_STARTUP_REFUSED;
		break;
	default:
		r = SESSION_CLOSE_PROTOCOL;
		break;
	}
	session_detail(s, "%s", s->hs->auth.reason);
	session_flush_close(s, &s->app, r);
}

/* Whether the session's configuration lets node connections be reused. */
static bool
session_reuse_allowed(const struct session *s)
{
	const struct config	*c = s->gen->cfg;

	/* With passthrough the identity on the connection is the app's. */
	return (c->reuse_connections && c->reuse_max_idle > 0 &&
	    c->client_auth != CONFIG_CLIENT_AUTH_PASSTHROUGH &&
	    !s->sc->reuse_stopped);
}

/* Whether ${n} may serve a kept connection: not down, not failing. */
static bool
session_node_healthy(struct session_ctx *sc, const struct upstream_node *n)
{
	bool	 ok;

	upstream_lock(sc->up);
	ok = !n->down && !n->gone && n->failures == 0;
	upstream_unlock(sc->up);
	return (ok);
}

/* Copy ${n} bytes at ${p} into *dst (replacing it); false if too large. */
static bool
session_keep_body(uint8_t **dst, size_t *dlen, const uint8_t *p, size_t n)
{
	uint8_t	*copy;

	if (n > SESSION_REUSE_BODY_MAX || (copy = malloc(n + 1)) == NULL)
		return (false);
	memcpy(copy, p, n);
	free(*dst);
	*dst = copy;
	*dlen = n;
	return (true);
}

/*
 * The handshake passed on a frame (${p}, ${n} bytes, from the app or the
 * node) while it was in ${was}: keep the app's STARTUP and the node's
 * SUPPORTED, which a later app's handshake on this connection must match.
 */
static void
session_hs_capture(struct session *s, bool from_app, enum auth_state was,
    const uint8_t *p, size_t n)
{
	struct cql_header	 h;
	int			 hl;

	if (was != AUTH_S_FIRST && was != AUTH_S_PRE_STARTUP)
		return;
	if ((hl = cql_header_parse(p, n, &h)) <= 0 ||
	    (size_t)hl + (size_t)h.length > n)
		return;
	if (from_app && !h.response && h.opcode == CQL_OP_STARTUP)
		(void)session_keep_body(&s->startup, &s->startup_len, p + hl,
		    (size_t)h.length);
	else if (!from_app && h.response && h.opcode == CQL_OP_SUPPORTED &&
	    session_keep_body(&s->supported, &s->supported_len, p + hl,
	    (size_t)h.length))
		s->supported_version = h.version;
}

/*
 * Reuse cannot serve this app: connect to a node as a session without a
 * pool does; the app's buffered STARTUP goes to the auth machine next.
 */
static void
session_reuse_fallback(struct session *s)
{
	s->reuse_wait = false;
	s->unode = NULL;
	log_debug("session %llu: no pooled node connection fits; connecting",
	    (unsigned long long)s->id);
	/* The time a session that connects at accept would have. */
	session_timer_set(s, s->gen->cfg->connect_timeout_ms +
	    s->gen->cfg->handshake_timeout_ms);
	session_connect(s);
}

/* Answer the app's OPTIONS (${h}) with a SUPPORTED body we kept. */
static void
session_reuse_supported(struct session *s, const struct cql_header *h,
    const uint8_t *body, size_t len)
{
	struct cql_header	 rh;
	uint8_t			 hdr[CQL_HEADER_LEN];
	size_t			 hl;

	memset(&rh, 0, sizeof(rh));
	rh.version = h->version;
	rh.response = true;
	rh.stream = h->stream;
	rh.opcode = CQL_OP_SUPPORTED;
	rh.length = (int32_t)len;
	hl = cql_header_write(hdr, &rh);
	session_app_write(s, hdr, hl);
	session_app_write(s, body, len);
	(void)session_keep_body(&s->supported, &s->supported_len, body, len);
	s->supported_version = h->version;
}

/*
 * A session that may get a pooled node connection: answer the app's
 * OPTIONS from the pool, and on its STARTUP take a connection that the
 * same STARTUP opened.  Anything else, or no match, falls back to a
 * connection of its own.  Returns false while more of the app's bytes are
 * needed.
 */
static bool
session_reuse_pump(struct session *s)
{
	struct evbuffer		*in = bufferevent_get_input(s->app.bev);
	struct reuse_pool	*pool = &s->sc->pool;
	struct reuse_conn	 rc;
	struct cql_header	 h;
	uint8_t			 hdr[CQL_HEADER_LEN], *p;
	const uint8_t		*sup;
	size_t			 len, total, slen;

	for (;;) {
		len = evbuffer_get_length(in);
		if (len == 0)
			return (false);
		evbuffer_copyout(in, hdr, 1);
		if (hdr[0] != CQL_V3 && hdr[0] != CQL_V4 &&
		    hdr[0] != CQL_DSE_V1 && hdr[0] != CQL_DSE_V2)
			break;
		if (len < CQL_HEADER_LEN)
			return (false);
		evbuffer_copyout(in, hdr, CQL_HEADER_LEN);
		if (cql_header_parse(hdr, CQL_HEADER_LEN, &h) <= 0 ||
		    h.response || (h.flags & CQL_FLAG_COMPRESSION) ||
		    (size_t)h.length > SESSION_REUSE_BODY_MAX)
			break;
		total = CQL_HEADER_LEN + (size_t)h.length;
		if (len < total)
			return (false);
		if ((p = evbuffer_pullup(in, (ssize_t)total)) == NULL)
			break;
		if (h.opcode == CQL_OP_OPTIONS) {
			sup = reuse_pool_supported(pool, s->unode, s->gen,
			    h.version, &slen);
			if (sup == NULL)
				break;
			session_reuse_supported(s, &h, sup, slen);
			evbuffer_drain(in, total);
			s->app.bytes += total;
			continue;
		}
		if (h.opcode != CQL_OP_STARTUP ||
		    !reuse_startup_ok(h.version, p + CQL_HEADER_LEN,
		    (size_t)h.length) ||
		    !reuse_pool_take(pool, s->unode, s->gen, h.version,
		    p + CQL_HEADER_LEN, (size_t)h.length, &rc))
			break;
		evbuffer_drain(in, total);
		s->app.bytes += total;
		s->reuse_wait = false;
		s->reused = true;
		s->sc->stats.reused++;
		s->node_fd = rc.fd;
		s->ssl = rc.ssl;
		s->tls_up = true;
		snprintf(s->node_label, sizeof(s->node_label), "%s", rc.label);
		free(s->startup);
		free(s->supported);
		s->startup = rc.startup;
		s->startup_len = rc.startup_len;
		s->supported = rc.supported;
		s->supported_len = rc.supported_len;
		s->supported_version = rc.version;
		session_gen_unref(rc.gen);	/* the session holds its own */
		log_debug("session %llu: reusing a node connection to %s",
		    (unsigned long long)s->id, session_node_label(s));
		auth_hs_resume(&s->hs->auth, h.version, h.stream,
		    rc.authenticator, &s->hs->sink);
		return (true);
	}
	session_reuse_fallback(s);
	return (true);
}

/*
 * The app closed during the relay: put the node connection in the pool if
 * nothing of this session can reach the next app on it (see reuse.h and
 * relay_reusable()).  Returns true if it was kept; the session then only
 * has to close.
 */
static bool
session_reuse_keep(struct session *s)
{
	struct session_ctx	*sc = s->sc;
	const struct config	*c = s->gen->cfg;
	struct reuse_conn	 rc;
	enum relay_spoil	 sp;
	const char		*why = NULL;
	bool			 with_supported;

	/* Never tracked (not a candidate): nothing to say. */
	if (!s->relay_ready || (!s->relay.track.on &&
	    s->relay.track.spoil == RELAY_SPOIL_NONE))
		return (false);
	if ((sp = relay_reusable(&s->relay)) != RELAY_SPOIL_NONE)
		why = relay_spoil_name(sp);
	else if (evbuffer_get_length(s->app.c.in) != 0 ||
	    evbuffer_get_length(s->app.c.out) != 0 ||
	    evbuffer_get_length(s->node.c.in) != 0 ||
	    evbuffer_get_length(s->node.c.out) != 0 ||
	    SSL_has_pending(s->ssl) || SSL_get_shutdown(s->ssl) != 0)
		why = "bytes still buffered";
	else if (s->gen != sc->gen || !session_reuse_allowed(s))
		why = "configuration reloaded";
	else if (!session_node_healthy(sc, s->unode))
		why = "node down";
	if (why == NULL) {
		memset(&rc, 0, sizeof(rc));
		rc.unode = s->unode;
		rc.gen = session_gen_ref(s->gen);
		rc.fd = s->node_fd;
		rc.ssl = s->ssl;
		rc.version = s->version;
		rc.startup = s->startup;
		rc.startup_len = s->startup_len;
		with_supported = s->supported != NULL &&
		    s->supported_version == s->version;
		if (with_supported) {
			rc.supported = s->supported;
			rc.supported_len = s->supported_len;
		}
		snprintf(rc.authenticator, sizeof(rc.authenticator), "%s",
		    s->authenticator);
		snprintf(rc.label, sizeof(rc.label), "%s", s->node_label);
		if (reuse_pool_put(&sc->pool, &rc, c->reuse_max_idle,
		    c->reuse_idle_timeout_ms) == 0) {
			/* The pool watches the socket from here on. */
			conn_free(&s->node.c);
			if (!with_supported)
				free(s->supported);
			s->startup = s->supported = NULL;
			s->node_fd = -1;
			s->ssl = NULL;
			s->kept = true;
			return (true);
		}
		session_gen_unref(rc.gen);
		why = "pool full";
	}
	log_debug("session %llu: node connection not kept: %s",
	    (unsigned long long)s->id, why);
	return (false);
}

/*
 * Feed one side's buffered bytes to the auth machine.  Returns 1 if some
 * were used, 0 if none, -1 if the handshake failed.
 */
static int
session_hs_feed(struct session *s, bool from_app)
{
	struct session_half	*h = from_app ? &s->app : &s->node;
	struct evbuffer		*in;
	size_t			 len, want, need;
	ssize_t			 used;
	uint8_t			*p;
	int			 progress = 0;
	enum auth_state		 was;

	if (h->bev == NULL)
		return (0);
	in = bufferevent_get_input(h->bev);
	for (;;) {
		if (from_app ? !auth_hs_reads_app(&s->hs->auth) :
		    !auth_hs_reads_node(&s->hs->auth))
			break;
		len = evbuffer_get_length(in);
		if (len == 0)
			break;
		need = from_app ? s->hs->auth.need_app :
		    s->hs->auth.need_node;
		want = need != 0 && need < len ? need : len;
		if (want > SESSION_HS_READ_MAX)
			want = SESSION_HS_READ_MAX;
		if ((p = evbuffer_pullup(in, (ssize_t)want)) == NULL)
			return (-1);
		was = s->hs->auth.state;
		used = from_app ?
		    auth_hs_app(&s->hs->auth, p, want, &s->hs->sink) :
		    auth_hs_node(&s->hs->auth, p, want, &s->hs->sink);
		if (used < 0)
			return (-1);
		if (used == 0) {
			need = from_app ? s->hs->auth.need_app :
			    s->hs->auth.need_node;
			if (need > want && len >= need)
				continue;	/* pull up more */
			break;
		}
		if (session_reuse_allowed(s))
			session_hs_capture(s, from_app, was, p, (size_t)used);
		evbuffer_drain(in, (size_t)used);
		h->bytes += (uint64_t)used;
		progress = 1;
	}
	return (progress);
}

/*
 * Run the handshake as far as the buffered bytes allow.  Returns true if
 * the session is still in its handshake; false if it failed, closed or
 * entered the relay (${s} may be freed then: do not touch it).
 */
static bool
session_hs_pump(struct session *s)
{
	int	 a, n = 0;

	if (s->reuse_wait && !session_reuse_pump(s))
		return (true);
	do {
		a = session_hs_feed(s, true);
		if (a < 0)
			break;
		n = s->node_failed ? 0 : session_hs_feed(s, false);
		if (n < 0)
			break;
	} while (a > 0 || n > 0);

	if (s->hs->auth.state == AUTH_S_FAILED) {
		session_hs_failed(s);
		return (false);
	}
	if (a < 0 || n < 0) {
		session_detail(s, "%s", s->hs->auth.reason);
		session_close(s, SESSION_CLOSE_INTERNAL);
		return (false);
	}
	if (s->node_failed)
		return (!session_report_node_failure(s));
	if (s->hs->auth.state == AUTH_S_DONE && s->tls_up) {
		session_enter_relay(s);
		return (false);
	}
	return (true);
}

static void
session_app_readcb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	switch (s->state) {
	case SESSION_RELAY:
		break;		/* conn.c reads from here on */
	case SESSION_CLOSING:
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		break;
	default:
		(void)session_hs_pump(s);
		break;
	}
}

static void
session_app_writecb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	session_drained(s, &s->app, &s->node);
}

static void
session_app_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;
	enum session_close_reason r;

	(void)bev;
	if (what & BEV_EVENT_ERROR) {
		session_detail(s, "%s", evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
		r = SESSION_CLOSE_APP_ERROR;
	} else
		r = SESSION_CLOSE_APP_EOF;
	session_close(s, r);
}

static void
session_node_readcb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	switch (s->state) {
	case SESSION_RELAY:
		break;		/* conn.c reads from here on */
	case SESSION_CLOSING:
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		break;
	default:
		(void)session_hs_pump(s);
		break;
	}
}

static void
session_node_writecb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	session_drained(s, &s->node, &s->app);
}

static void
session_node_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;
	unsigned long	 err;
	char		 why[300];
	int		 serr;
	bool		 lost;

	if (what & BEV_EVENT_CONNECTED) {
		SSL	*ssl = bufferevent_openssl_get_ssl(bev);
		bool	 resumed = SSL_session_reused(ssl) == 1;

		s->tls_up = true;
		upstream_report(s->sc->up, s->unode, true);
		if (resumed)
			s->sc->stats.tls_resumed++;
		else
			s->sc->stats.tls_full++;
		log_debug("session %llu: TLS to %s up (%s, %s%s)",
		    (unsigned long long)s->id, session_node_label(s),
		    tls_version_name(ssl), SSL_get_cipher_name(ssl),
		    resumed ? ", resumed" : "");
		(void)session_hs_pump(s);
		return;
	}
	serr = EVUTIL_SOCKET_ERROR();
	/*
	 * libevent's bare code alone (no OpenSSL error) is SSL_ERROR_SYSCALL,
	 * the socket failing (a reset; errno is gone by now): the node went
	 * away, like an EOF without close_notify.
	 */
	err = tls_bev_error(bev, &lost);
	lost = lost && err == 0;
	if (lost || (err != 0 &&
	    ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
		/* The node closed TCP without close_notify: an EOF. */
		err = 0;
		what = BEV_EVENT_EOF | BEV_EVENT_READING;
	}
	if (s->state == SESSION_CLOSING) {
		session_close(s, s->closing_reason);
		return;
	}

	/*
	 * During the TLS or CQL handshake.  A reset once TLS is up but before
	 * the node said anything counts as TLS failing: in TLS 1.3 the node
	 * checks our certificate after our side of the handshake is done,
	 * and may refuse it with a reset rather than an alert.
	 */
	if (!s->tls_up || err != 0 || (lost && s->node.bytes == 0) ||
	    SSL_get_verify_result(bufferevent_openssl_get_ssl(bev)) !=
	    X509_V_OK) {
		if (err != 0 || (what & BEV_EVENT_ERROR) == 0 || serr == 0)
			tls_failure_reason(bufferevent_openssl_get_ssl(bev),
			    err, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "TLS handshake failed: %s",
			    evutil_socket_error_to_string(serr));
		if (!s->tls_up && err == 0 && (what & BEV_EVENT_EOF))
			snprintf(why, sizeof(why), "node closed the connection "
			    "during the TLS handshake");
		else if (s->tls_up && lost)
			snprintf(why, sizeof(why), "node reset the connection "
			    "after the TLS handshake, before answering (a node "
			    "refusing our client certificate does this: check "
			    "[tls] cert_file and the node's truststore)");
		{
			long	 vr = SSL_get_verify_result(
			    bufferevent_openssl_get_ssl(bev));
			const char *label = vr != X509_V_OK ?
			    X509_verify_cert_error_string(vr) : err != 0 &&
			    ERR_reason_error_string(err) != NULL ?
			    ERR_reason_error_string(err) :
			    "connection closed during handshake";

			session_count_tls_failure(s->sc, label);
		}
		session_node_failed(s, SESSION_CLOSE_TLS_FAILED,
		    "TLS to node %s failed: %s", session_node_label(s), why);
		return;
	}
	/* Let the app see what the node said before it left. */
	if (!session_hs_pump(s) || s->state == SESSION_CLOSING)
		return;
	if (s->node.bytes > 0 && s->hs->auth.state != AUTH_S_WAIT_STARTUP &&
	    s->hs->auth.state != AUTH_S_NODE_AUTH) {
		/* Nothing of the app's is unanswered. */
		session_flush_close(s, &s->app, (what & BEV_EVENT_ERROR) ?
		    SESSION_CLOSE_NODE_ERROR : SESSION_CLOSE_NODE_EOF);
		return;
	}
	session_node_failed(s, (what & BEV_EVENT_ERROR) ?
	    SESSION_CLOSE_NODE_ERROR : SESSION_CLOSE_NODE_EOF,
	    "node %s closed the connection during the CQL handshake",
	    session_node_label(s));
}

/* TCP to the node is up: start TLS over it. */
static void
session_tcp_connected(struct session *s)
{
	struct session_ctx	*sc = s->sc;
	SSL			*ssl;

	if ((ssl = tls_ssl_new(s->gen->tls, s->unode->host,
	    s->node_label)) == NULL) {
		session_node_failed(s, SESSION_CLOSE_INTERNAL,
		    "cannot set up TLS to node %s", session_node_label(s));
		return;
	}
	s->ssl = ssl;
	s->node.bev = bufferevent_openssl_socket_new(sc->base, s->node_fd, ssl,
	    BUFFEREVENT_SSL_CONNECTING, 0);
	if (s->node.bev == NULL) {
		session_node_failed(s, SESSION_CLOSE_INTERNAL,
		    "cannot set up TLS to node %s", session_node_label(s));
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(s->node.bev, 1);
	bufferevent_setcb(s->node.bev, session_node_readcb,
	    session_node_writecb, session_node_eventcb, s);
	bufferevent_enable(s->node.bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(s->hs->pending) > 0)
		bufferevent_write_buffer(s->node.bev, s->hs->pending);
	s->state = SESSION_HANDSHAKE;
	session_timer_set(s, s->gen->cfg->handshake_timeout_ms);
}

/* The TCP connect to the current node failed: try another or give up. */
static void
session_connect_failed(struct session *s, enum session_close_reason reason,
    const char *why)
{
	struct upstream_node	*failed = s->unode;

	log_info("session %llu: cannot connect to node %s: %s",
	    (unsigned long long)s->id, session_node_label(s), why);
	upstream_report(s->sc->up, failed, false);
	if (s->hs->connect_ev != NULL) {
		event_free(s->hs->connect_ev);
		s->hs->connect_ev = NULL;
	}
	evutil_closesocket(s->node_fd);
	s->node_fd = -1;
	if (s->target == NULL && ++s->attempts < upstream_count(s->sc->up)) {
		session_connect(s);
		return;
	}
	session_node_failed(s, reason, "cannot connect to node %s: %s",
	    session_node_label(s), why);
}

/* Writability (or timeout) of the connecting socket. */
static void
session_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	if (what & EV_TIMEOUT) {
		char why[64];

		snprintf(why, sizeof(why), "no answer within %u ms",
		    s->gen->cfg->connect_timeout_ms);
		session_connect_failed(s, SESSION_CLOSE_CONNECT_TIMEOUT, why);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		session_connect_failed(s, SESSION_CLOSE_CONNECT_FAILED,
		    strerror(err));
		return;
	}
	event_free(s->hs->connect_ev);
	s->hs->connect_ev = NULL;
	session_tcp_connected(s);
}

/* Start a non-blocking connect to the next node. */
static void
session_connect(struct session *s)
{
	struct session_ctx	*sc = s->sc;
	struct upstream_node	*n;
	struct timeval		 tv;

	if (s->target != NULL)
		n = s->target;
	else
		n = upstream_pick(sc->up, sc->rw != NULL ?
		    upstream_node_at(sc->up, 0) : NULL, s->unode);
	if (n != NULL)
		upstream_node_addr(sc->up, n, &s->hs->node_addr,
		    &s->hs->node_addrlen, s->node_label,
		    sizeof(s->node_label));
	if (n == NULL || s->hs->node_addrlen == 0) {
		session_node_failed(s, SESSION_CLOSE_NO_NODE,
		    "no contact point has an address");
		return;
	}
	s->unode = n;
	s->state = SESSION_CONNECTING;
	s->node_fd = socket(s->hs->node_addr.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->node_fd == -1) {
		session_node_failed(s, SESSION_CLOSE_INTERNAL,
		    "cannot create a socket: %s", strerror(errno));
		return;
	}
	util_node_socket_opts(s->node_fd);
	if (connect(s->node_fd, (struct sockaddr *)&s->hs->node_addr,
	    s->hs->node_addrlen) == 0) {
		session_tcp_connected(s);
		return;
	}
	if (errno != EINPROGRESS) {
		session_connect_failed(s, SESSION_CLOSE_CONNECT_FAILED,
		    strerror(errno));
		return;
	}
	s->hs->connect_ev = event_new(sc->base, s->node_fd, EV_WRITE,
	    session_connect_cb, s);
	if (s->hs->connect_ev == NULL) {
		session_node_failed(s, SESSION_CLOSE_INTERNAL,
		    "out of memory");
		return;
	}
	tv.tv_sec = (time_t)(s->gen->cfg->connect_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(s->gen->cfg->connect_timeout_ms % 1000) *
	    1000;
	event_add(s->hs->connect_ev, &tv);
}

/* Session timer: handshake deadline, or the final flush deadline. */
static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	(void)fd;
	(void)what;
	if (s->state == SESSION_CLOSING) {
		session_close(s, s->closing_reason);
		return;
	}
	if (s->node_failed) {
		session_close(s, s->node_fail_reason);
		return;
	}
	session_detail(s, "%s did not complete within %u ms (state %s)",
	    s->reuse_wait ? "app's STARTUP" : s->tls_up ? "CQL handshake" :
	    "TLS handshake",
	    s->gen->cfg->handshake_timeout_ms,
	    auth_state_name(s->hs->auth.state));
	if (s->hs->auth.have_first) {
		char	 msg[SESSION_DETAIL_MAX + 64 + UTIL_ADDRSTRLEN];

		snprintf(msg, sizeof(msg), "cqltunnel: %s with node %s",
		    s->detail != NULL ? s->detail : "handshake timeout",
		    session_node_label(s));
		(void)auth_hs_fail_app(&s->hs->auth, CQL_ERR_SERVER, msg,
		    &s->hs->sink);
		session_flush_close(s, &s->app,
		    SESSION_CLOSE_HANDSHAKE_TIMEOUT);
		return;
	}
	session_close(s, SESSION_CLOSE_HANDSHAKE_TIMEOUT);
}

/*
 * Whether the node this session would use has pooled connections; if so,
 * wait for the app's STARTUP instead of connecting (see
 * session_reuse_pump()).  When the pool is empty nothing changes: the
 * connect overlaps with the app's first bytes as it always did.
 */
static bool
session_reuse_candidate(struct session *s)
{
	struct session_ctx	*sc = s->sc;
	struct upstream_node	*n;

	if (reuse_pool_count(&sc->pool) == 0)
		return (false);
	n = s->target != NULL ? s->target : upstream_pick(sc->up,
	    sc->rw != NULL ? upstream_node_at(sc->up, 0) : NULL, NULL);
	if (n == NULL || !reuse_pool_has(&sc->pool, n, s->gen))
		return (false);
	if (!session_node_healthy(sc, n)) {
		reuse_pool_flush(&sc->pool, NULL, n);
		return (false);
	}
	s->unode = n;
	upstream_node_addr(sc->up, n, &s->hs->node_addr,
	    &s->hs->node_addrlen, s->node_label, sizeof(s->node_label));
	s->reuse_wait = true;
	s->state = SESSION_HANDSHAKE;
	session_timer_set(s, s->gen->cfg->handshake_timeout_ms);
	return (true);
}

/*
 * Set up a session for app socket ${fd}, already counted in sc->live;
 * refused (as ${refuse}) if ${deny} is set.
 */
static void
session_begin(struct session_ctx *sc, evutil_socket_t fd,
    const struct sockaddr *sa, struct upstream_node *target,
    enum session_close_reason refuse, const char *deny)
{
	static atomic_ullong	 next_id;
	struct session		*s;
	int			 one = 1;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->hs = calloc(1, sizeof(*s->hs))) == NULL) {
		free(s);
		log_error("cannot accept a connection: out of memory");
		evutil_closesocket(fd);
		atomic_fetch_sub_explicit(sc->live, 1, memory_order_relaxed);
		return;
	}
	s->sc = sc;
	/* Unique across worker loops, as the logs need. */
	s->id = (uint64_t)atomic_fetch_add_explicit(&next_id, 1,
	    memory_order_relaxed) + 1;
	sc->stats.accepted++;
	s->app_fd = fd;
	s->node_fd = -1;
	s->hs->node_fail_code = CQL_ERR_SERVER;
	s->target = target;
	s->started_ms = util_now_ms();
	util_sockaddr_str(sa, s->app_addr, sizeof(s->app_addr));
	s->gen = session_gen_ref(sc->gen);
	auth_hs_init(&s->hs->auth, s->gen->creds);
	s->hs->sink.to_app = session_to_app;
	s->hs->sink.to_node = session_to_node;
	s->hs->sink.arg = s;
	TAILQ_INSERT_TAIL(&sc->sessions, s, entry);
	sc->nsessions++;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	s->app.bev = bufferevent_socket_new(sc->base, fd, 0);
	s->timer = evtimer_new(sc->base, session_timer_cb, s);
	s->hs->pending = evbuffer_new();
	if (s->app.bev == NULL || s->timer == NULL || s->hs->pending == NULL) {
		session_detail(s, "out of memory");
		session_close(s, SESSION_CLOSE_INTERNAL);
		return;
	}
	bufferevent_setcb(s->app.bev, session_app_readcb, session_app_writecb,
	    session_app_eventcb, s);
	bufferevent_setwatermark(s->app.bev, EV_READ, 0, SESSION_HS_READ_MAX);
	bufferevent_enable(s->app.bev, EV_READ | EV_WRITE);
	session_timer_set(s, s->gen->cfg->connect_timeout_ms +
	    s->gen->cfg->handshake_timeout_ms);
	log_debug("session %llu: accepted from %s", (unsigned long long)s->id,
	    s->app_addr);
	if (deny != NULL) {
		/* As a failed node: the app's first request gets the ERROR. */
		s->node_failed = true;
		s->refused = true;
		sc->nrefusing++;
		s->node_fail_reason = refuse;
		if (refuse == SESSION_CLOSE_MAX_CONNECTIONS)
			s->hs->node_fail_code = CQL_ERR_OVERLOADED;
		snprintf(s->hs->node_fail_msg, sizeof(s->hs->node_fail_msg),
		    "cqltunnel: %s", deny);
		session_timer_set(s, SESSION_REFUSE_MS);
		return;
	}
	if (session_reuse_allowed(s) && session_reuse_candidate(s))
		return;
	session_connect(s);
}

void
session_start(struct session_ctx *sc, evutil_socket_t fd,
    const struct sockaddr *sa, int salen, struct upstream_node *target)
{
	atomic_fetch_add_explicit(sc->live, 1, memory_order_relaxed);
	if (sc->dispatch != NULL) {
		sc->dispatch(sc->dispatch_arg, fd, sa, salen, target,
		    session_gen_ref(sc->gen));
		return;
	}
	session_begin(sc, fd, sa, target, SESSION_CLOSE_NREASONS, NULL);
}

void
session_adopt(struct session_ctx *sc, evutil_socket_t fd,
    const struct sockaddr *sa, int salen, struct upstream_node *target,
    struct session_gen *gen)
{
	(void)salen;
	if (gen != NULL) {
		session_ctx_set_gen(sc, gen);
		session_gen_unref(gen);
	}
	session_begin(sc, fd, sa, target, SESSION_CLOSE_NREASONS, NULL);
}

/* Refused apps are answered on the loop that accepted them. */
void
session_refuse(struct session_ctx *sc, evutil_socket_t fd,
    const struct sockaddr *sa, int salen, enum session_close_reason reason,
    const char *why)
{
	(void)salen;
	if (sc->nrefusing >= SESSION_REFUSE_MAX) {
		evutil_closesocket(fd);
		sc->closed[reason]++;
		return;
	}
	atomic_fetch_add_explicit(sc->live, 1, memory_order_relaxed);
	session_begin(sc, fd, sa, NULL, reason, why);
}
