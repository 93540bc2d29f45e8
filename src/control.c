/*
 * control: the control connection and the per-node listeners (see
 * control.h).
 *
 * States: IDLE (waiting to reconnect) -> CONNECTING (TCP) -> HANDSHAKE
 * (TLS, then the CQL handshake: the auth machine is fed a STARTUP of our
 * own and injects the credentials as it does for apps) -> READY (REGISTER
 * sent, ring queries answered as they come).  Any failure closes the
 * connection and retries on another node with capped back-off; apps are
 * never affected by it.
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
#include "control.h"
#include "cql_frame.h"
#include "listener.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "topology.h"
#include "upstream.h"
#include "util.h"

#define CONTROL_VERSION		CQL_V4
#define CONTROL_REFRESH_MS	60000	/* periodic ring refresh */
#define CONTROL_EVENT_DELAY_MS	1000	/* coalesce topology events */
#define CONTROL_RETRY_MIN_MS	1000
#define CONTROL_RETRY_MAX_MS	30000
#define CONTROL_MAX_FRAME	(64u * 1024 * 1024)

enum control_state {
	CONTROL_IDLE,
	CONTROL_CONNECTING,
	CONTROL_HANDSHAKE,
	CONTROL_READY,
};

enum control_stream {
	CONTROL_STREAM_STARTUP = 0,
	CONTROL_STREAM_REGISTER = 1,
	CONTROL_STREAM_LOCAL = 2,
	CONTROL_STREAM_PEERS = 3,
};

struct control {
	struct event_base	*base;
	const struct config	*cfg;		/* restart-only settings */
	struct upstream		*up;
	struct session_ctx	*sc;
	struct session_gen	*gen;		/* of the current connection */

	struct topo_prepared	 prepared;	/* shared by sessions */
	struct topo_rewriter	 rw;		/* sessions' rewriter */
	struct topo_rewriter	 crw;		/* control's own reads */

	enum control_state	 state;
	struct upstream_node	*node;
	evutil_socket_t		 fd;		/* while CONNECTING */
	struct event		*connect_ev;
	struct bufferevent	*bev;
	struct event		*retry;		/* reconnect, deadline */
	struct event		*refresh;	/* next ring refresh */
	unsigned		 failures;
	struct auth_hs		 hs;
	struct auth_sink	 sink;

	bool			 use_peers_v1;	/* peers_v2 was refused */
	bool			 local_ok, peers_ok, in_refresh;
	bool			 listening;	/* per-node listeners wanted */
	uint8_t			*scratch;
	size_t			 scratch_cap;
	char			 last_error[512];
	uint64_t		 ready_since_ms;
};

static void	control_connect(struct control *ctl);
static void	control_close(struct control *ctl);
static void	control_readcb(struct bufferevent *bev, void *arg);
static void	control_eventcb(struct bufferevent *bev, short what, void *arg);

static void
control_timer(struct event *ev, unsigned ms)
{
	struct timeval	 tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

/* Upstream hook: a node got a tunnel address or came back. */
static void
control_node_added(void *arg, struct upstream_node *n)
{
	struct control	*ctl = arg;
	char		 err[300];

	if (n->index == 0 || n->listener != NULL || !ctl->listening)
		return;		/* node 0 is served by [listen] address */
	n->listener = listener_new(ctl->base, ctl->cfg, ctl->sc, n, err,
	    sizeof(err));
	if (n->listener == NULL)
		log_error("node %s: %s; apps cannot reach this node",
		    n->addrstr, err);
}

/* Upstream hook: a node left the ring. */
static void
control_node_gone(void *arg, struct upstream_node *n)
{
	(void)arg;
	listener_free(n->listener);
	n->listener = NULL;
}

/* The control connection's resolver: system.local names our node. */
static bool
control_resolve(void *arg, const struct topo_key *k, struct topo_inet *out)
{
	struct control	*ctl = arg;

	if (k->table == TOPO_TABLE_LOCAL && k->has_host_id &&
	    ctl->node != NULL)
		upstream_bind_host_id(ctl->up, ctl->node, k->host_id);
	return (upstream_translate(ctl->up, k, out));
}

/* Close the connection, whatever its state; back to CONTROL_IDLE. */
static void
control_close(struct control *ctl)
{
	if (ctl->connect_ev != NULL) {
		event_free(ctl->connect_ev);
		ctl->connect_ev = NULL;
	}
	if (ctl->fd != -1) {
		evutil_closesocket(ctl->fd);
		ctl->fd = -1;
	}
	if (ctl->bev != NULL) {
		bufferevent_free(ctl->bev);
		ctl->bev = NULL;
	}
	session_gen_unref(ctl->gen);
	ctl->gen = NULL;
	evtimer_del(ctl->refresh);
	ctl->in_refresh = false;
	ctl->state = CONTROL_IDLE;
}

/* Drop the connection and try again later. */
static void
control_fail(struct control *ctl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
control_fail(struct control *ctl, const char *fmt, ...)
{
	va_list		 ap;
	char		 why[400];
	unsigned	 ms, shift;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	control_close(ctl);
	shift = ctl->failures > 5 ? 5 : ctl->failures;
	ms = CONTROL_RETRY_MIN_MS << shift;
	if (ms > CONTROL_RETRY_MAX_MS)
		ms = CONTROL_RETRY_MAX_MS;
	ctl->failures++;
	snprintf(ctl->last_error, sizeof(ctl->last_error), "%s: %s",
	    ctl->node != NULL ? ctl->node->addrstr : "-", why);
	log_warn("control connection to %s: %s; retrying in %u ms",
	    ctl->node != NULL ? ctl->node->addrstr : "-", why, ms);
	control_timer(ctl->retry, ms);
}

/* Send one request frame (v4, no flags). */
static void
control_send(struct control *ctl, int16_t stream, uint8_t opcode,
    const uint8_t *body, size_t n)
{
	struct cql_header	 h;
	uint8_t			 hdr[CQL_HEADER_LEN];

	memset(&h, 0, sizeof(h));
	h.version = CONTROL_VERSION;
	h.stream = stream;
	h.opcode = opcode;
	h.length = (int32_t)n;
	h.hdr_len = CQL_HEADER_LEN;
	bufferevent_write(ctl->bev, hdr, cql_header_write(hdr, &h));
	bufferevent_write(ctl->bev, body, n);
}

/* QUERY ${q} at consistency ONE. */
static void
control_query(struct control *ctl, int16_t stream, const char *q)
{
	uint8_t			 body[256];
	struct cql_writer	 w;
	size_t			 n = strlen(q);

	cql_writer_init(&w, body, sizeof(body));
	cql_write_int(&w, (int32_t)n);
	cql_write_raw(&w, q, n);
	cql_write_short(&w, 0x0001);	/* ONE */
	cql_write_byte(&w, 0);		/* no flags */
	control_send(ctl, stream, CQL_OP_QUERY, body, w.len);
}

/* Ask for the ring. */
static void
control_refresh(struct control *ctl)
{
	if (ctl->state != CONTROL_READY)
		return;
	ctl->in_refresh = true;
	ctl->local_ok = ctl->peers_ok = false;
	upstream_mark_begin(ctl->up);
	control_query(ctl, CONTROL_STREAM_LOCAL,
	    "SELECT * FROM system.local WHERE key='local'");
	control_query(ctl, CONTROL_STREAM_PEERS, ctl->use_peers_v1 ?
	    "SELECT * FROM system.peers" : "SELECT * FROM system.peers_v2");
	control_timer(ctl->refresh, CONTROL_REFRESH_MS);
}

static void
control_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	control_refresh(arg);
}

/* Read the rows of a ring query into the node table. */
static bool
control_rows(struct control *ctl, const uint8_t *body, size_t n)
{
	size_t	 need = n + 4096;
	ssize_t	 rc;

	for (;;) {
		if (ctl->scratch_cap < need) {
			free(ctl->scratch);
			ctl->scratch = util_xmalloc(need);
			ctl->scratch_cap = need;
		}
		rc = topo_rewrite_rows(&ctl->crw, CONTROL_VERSION, body, n,
		    ctl->scratch, ctl->scratch_cap, &need);
		if (rc != -2)
			return (rc >= 0);
	}
}

/* The message of an ERROR body, for logs. */
static void
control_error_text(const uint8_t *body, size_t n, char *buf, size_t len)
{
	struct cql_reader	 r;
	const uint8_t		*s;
	size_t			 slen;
	int32_t			 code;

	cql_reader_init(&r, body, n);
	code = cql_read_int(&r);
	if (!cql_read_string(&r, &s, &slen)) {
		snprintf(buf, len, "malformed ERROR");
		return;
	}
	snprintf(buf, len, "error 0x%04x: %.*s", (unsigned)code, (int)slen,
	    (const char *)s);
}

/* A node's status changed (event inet). */
static void
control_status(struct control *ctl, const uint8_t *body, size_t n)
{
	struct cql_reader	 r;
	struct topo_inet	 in;
	struct upstream_node	*node;
	const uint8_t		*type, *change, *a;
	size_t			 typelen, changelen;

	cql_reader_init(&r, body, n);
	(void)cql_read_string(&r, &type, &typelen);
	(void)cql_read_string(&r, &change, &changelen);
	memset(&in, 0, sizeof(in));
	in.len = cql_read_byte(&r);
	a = r.p + r.off;
	if (r.err || (in.len != 4 && in.len != 16) || !cql_skip(&r, in.len))
		return;
	memcpy(in.addr, a, in.len);
	in.port = cql_read_int(&r);
	if (r.err)
		return;
	if (typelen == 15 && memcmp(type, "TOPOLOGY_CHANGE", 15) == 0) {
		log_info("ring: %.*s event; refreshing", (int)changelen,
		    (const char *)change);
		evtimer_del(ctl->refresh);
		control_timer(ctl->refresh, CONTROL_EVENT_DELAY_MS);
		return;
	}
	if ((node = upstream_find_inet(ctl->up, &in)) == NULL)
		return;
	if (changelen == 2 && memcmp(change, "UP", 2) == 0) {
		node->down = false;
		upstream_report(ctl->up, node, true);
		log_info("node %s is UP", node->addrstr);
	} else if (changelen == 4 && memcmp(change, "DOWN", 4) == 0) {
		node->down = true;
		log_info("node %s is DOWN", node->addrstr);
	}
}

/* One complete frame from the node after the handshake. */
static void
control_frame(struct control *ctl, const struct cql_header *h,
    const uint8_t *body, size_t n)
{
	char	 why[300];

	if (h->opcode == CQL_OP_EVENT) {
		control_status(ctl, body, n);
		return;
	}
	if (h->opcode == CQL_OP_ERROR) {
		control_error_text(body, n, why, sizeof(why));
		if (h->stream == CONTROL_STREAM_PEERS && !ctl->use_peers_v1) {
			log_info("control connection: system.peers_v2 refused "
			    "(%s); using system.peers", why);
			ctl->use_peers_v1 = true;
			control_query(ctl, CONTROL_STREAM_PEERS,
			    "SELECT * FROM system.peers");
			return;
		}
		log_warn("control connection to %s: stream %d: %s",
		    ctl->node->addrstr, h->stream, why);
		ctl->in_refresh = false;
		return;
	}
	if (h->stream == CONTROL_STREAM_REGISTER)
		return;		/* READY */
	if (h->opcode != CQL_OP_RESULT)
		return;
	if (h->stream == CONTROL_STREAM_LOCAL)
		ctl->local_ok = control_rows(ctl, body, n);
	else if (h->stream == CONTROL_STREAM_PEERS)
		ctl->peers_ok = control_rows(ctl, body, n);
	if (ctl->in_refresh && ctl->local_ok && ctl->peers_ok) {
		ctl->in_refresh = false;
		upstream_mark_end(ctl->up);
		ctl->failures = 0;
		log_debug("control connection: ring refreshed from %s",
		    ctl->node->addrstr);
	}
}

/* Sink: what the auth machine would send the app (READY, ERROR). */
static void
control_to_app(void *arg, const uint8_t *p, size_t n)
{
	(void)arg;
	(void)p;
	(void)n;
}

/*
 * Sink: what the auth machine sends the node.  That is our AUTH_RESPONSE,
 * so it is queued from a copy wiped once sent: bufferevent_write() would
 * leave the password in freed evbuffer memory.
 */
static void
control_to_node(void *arg, const uint8_t *p, size_t n)
{
	struct control	*ctl = arg;

	if (ctl->bev != NULL)
		(void)util_evbuffer_add_wiped(bufferevent_get_output(ctl->bev),
		    p, n);
}

/* The handshake is over: register and read the ring. */
static void
control_up(struct control *ctl)
{
	static const char *const events[] = {
		"TOPOLOGY_CHANGE", "STATUS_CHANGE",
	};
	uint8_t			 body[64];
	struct cql_writer	 w;
	size_t			 i;

	ctl->state = CONTROL_READY;
	ctl->ready_since_ms = util_now_ms();
	ctl->last_error[0] = '\0';
	evtimer_del(ctl->retry);
	log_info("control connection to %s ready", ctl->node->addrstr);
	cql_writer_init(&w, body, sizeof(body));
	cql_write_short(&w, 2);
	for (i = 0; i < 2; i++)
		cql_write_string(&w, events[i], strlen(events[i]));
	control_send(ctl, CONTROL_STREAM_REGISTER, CQL_OP_REGISTER, body,
	    w.len);
	control_refresh(ctl);
}

static void
control_readcb(struct bufferevent *bev, void *arg)
{
	struct control		*ctl = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct cql_header	 h;
	uint8_t			 hdr[CQL_HEADER_LEN], *p;
	size_t			 len, want;
	ssize_t			 used;

	while (ctl->state == CONTROL_HANDSHAKE &&
	    auth_hs_reads_node(&ctl->hs)) {
		len = evbuffer_get_length(in);
		if (len == 0)
			break;
		want = ctl->hs.need_node != 0 && ctl->hs.need_node < len ?
		    ctl->hs.need_node : len;
		if (want > AUTH_MAX_HS_FRAME)
			want = AUTH_MAX_HS_FRAME;
		p = evbuffer_pullup(in, (ssize_t)want);
		used = auth_hs_node(&ctl->hs, p, want, &ctl->sink);
		if (used < 0 || ctl->hs.state == AUTH_S_FAILED) {
			control_fail(ctl, "CQL handshake failed: %s",
			    ctl->hs.reason);
			return;
		}
		if (used == 0) {
			if (ctl->hs.need_node > want && len >= ctl->hs.need_node)
				continue;
			break;
		}
		evbuffer_drain(in, (size_t)used);
		if (ctl->hs.state == AUTH_S_DONE)
			control_up(ctl);
	}
	while (ctl->state == CONTROL_READY) {
		len = evbuffer_get_length(in);
		if (len < CQL_HEADER_LEN)
			break;
		evbuffer_copyout(in, hdr, CQL_HEADER_LEN);
		if (cql_header_parse(hdr, CQL_HEADER_LEN, &h) <= 0 ||
		    h.version != CONTROL_VERSION || !h.response ||
		    (uint32_t)h.length > CONTROL_MAX_FRAME ||
		    (h.flags & CQL_FLAG_COMPRESSION)) {
			control_fail(ctl, "unexpected frame from the node");
			return;
		}
		if (len < CQL_HEADER_LEN + (size_t)h.length)
			break;
		p = evbuffer_pullup(in, CQL_HEADER_LEN + (ssize_t)h.length);
		control_frame(ctl, &h, p + CQL_HEADER_LEN, (size_t)h.length);
		if (ctl->state != CONTROL_READY)
			return;
		evbuffer_drain(in, CQL_HEADER_LEN + (size_t)h.length);
	}
}

static void
control_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct control	*ctl = arg;
	uint8_t		 startup[64];
	struct cql_header h;
	struct cql_writer w;
	unsigned long	 err;
	char		 why[300];
	ssize_t		 used;

	if (what & BEV_EVENT_CONNECTED) {
		upstream_report(ctl->up, ctl->node, true);
		/* Play the app: our STARTUP goes through the auth machine. */
		memset(&h, 0, sizeof(h));
		h.version = CONTROL_VERSION;
		h.opcode = CQL_OP_STARTUP;
		h.hdr_len = CQL_HEADER_LEN;
		cql_writer_init(&w, startup, sizeof(startup));
		cql_write_raw(&w, startup, CQL_HEADER_LEN);
		cql_write_short(&w, 1);
		cql_write_string(&w, "CQL_VERSION", 11);
		cql_write_string(&w, "3.0.0", 5);
		h.length = (int32_t)(w.len - CQL_HEADER_LEN);
		(void)cql_header_write(startup, &h);
		used = auth_hs_app(&ctl->hs, startup, w.len, &ctl->sink);
		if (used != (ssize_t)w.len)
			control_fail(ctl, "cannot start the CQL handshake");
		return;
	}
	err = tls_bev_error(bev, NULL);
	if (err != 0 || ctl->hs.state == AUTH_S_FIRST ||
	    SSL_get_verify_result(bufferevent_openssl_get_ssl(bev)) !=
	    X509_V_OK)
		tls_failure_reason(bufferevent_openssl_get_ssl(bev), err, why,
		    sizeof(why));
	else
		snprintf(why, sizeof(why), "%s", (what & BEV_EVENT_EOF) ?
		    "node closed the connection" :
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	if (ctl->state != CONTROL_READY)
		upstream_report(ctl->up, ctl->node, false);
	control_fail(ctl, "%s", why);
}

/* TCP is up: start TLS. */
static void
control_tcp_connected(struct control *ctl)
{
	SSL	*ssl;

	if ((ssl = tls_ssl_new(ctl->gen->tls, ctl->node->host,
	    ctl->node->addrstr)) == NULL) {
		control_fail(ctl, "cannot set up TLS");
		return;
	}
	ctl->bev = bufferevent_openssl_socket_new(ctl->base, ctl->fd, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (ctl->bev == NULL) {
		SSL_free(ssl);
		control_fail(ctl, "cannot set up TLS");
		return;
	}
	ctl->fd = -1;
	bufferevent_openssl_set_allow_dirty_shutdown(ctl->bev, 1);
	bufferevent_setcb(ctl->bev, control_readcb, NULL, control_eventcb, ctl);
	bufferevent_enable(ctl->bev, EV_READ | EV_WRITE);
	ctl->state = CONTROL_HANDSHAKE;
	auth_hs_init_own(&ctl->hs, ctl->gen->creds);
	control_timer(ctl->retry, ctl->gen->cfg->handshake_timeout_ms);
}

static void
control_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control	*ctl = arg;
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	if (what & EV_TIMEOUT) {
		upstream_report(ctl->up, ctl->node, false);
		control_fail(ctl, "connect timeout");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		upstream_report(ctl->up, ctl->node, false);
		control_fail(ctl, "connect: %s", strerror(err));
		return;
	}
	event_free(ctl->connect_ev);
	ctl->connect_ev = NULL;
	control_tcp_connected(ctl);
}

static void
control_connect(struct control *ctl)
{
	struct upstream_node	*n;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = 0;
	struct timeval		 tv;
	char			 label[UTIL_ADDRSTRLEN];

	n = upstream_pick(ctl->up, upstream_node_at(ctl->up, 0), NULL);
	if (n != NULL)		/* worker threads may re-resolve it */
		upstream_node_addr(ctl->up, n, &ss, &sslen, label,
		    sizeof(label));
	if (n == NULL || sslen == 0) {
		control_fail(ctl, "no node has an address");
		return;
	}
	ctl->node = n;
	ctl->state = CONTROL_CONNECTING;
	ctl->gen = session_gen_ref(ctl->sc->gen);
	ctl->fd = socket(ss.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd == -1) {
		control_fail(ctl, "socket: %s", strerror(errno));
		return;
	}
	util_node_socket_opts(ctl->fd);
	if (connect(ctl->fd, (struct sockaddr *)&ss, sslen) == 0) {
		control_tcp_connected(ctl);
		return;
	}
	if (errno != EINPROGRESS) {
		upstream_report(ctl->up, n, false);
		control_fail(ctl, "connect: %s", strerror(errno));
		return;
	}
	ctl->connect_ev = event_new(ctl->base, ctl->fd, EV_WRITE,
	    control_connect_cb, ctl);
	tv.tv_sec = (time_t)(ctl->gen->cfg->connect_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(ctl->gen->cfg->connect_timeout_ms % 1000) *
	    1000;
	event_add(ctl->connect_ev, &tv);
}

/* Reconnect timer, or the handshake deadline. */
static void
control_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control	*ctl = arg;

	(void)fd;
	(void)what;
	if (ctl->state == CONTROL_HANDSHAKE) {
		upstream_report(ctl->up, ctl->node, false);
		control_fail(ctl, "handshake did not complete within %u ms",
		    ctl->gen->cfg->handshake_timeout_ms);
		return;
	}
	if (ctl->state == CONTROL_IDLE)
		control_connect(ctl);
}

/*
 * A reload made a new generation: a connection made with an older one
 * starts again with the new TLS context and credentials, so that it
 * neither keeps using replaced ones nor holds the old generation (and its
 * key and password) for as long as it lives.
 */
void
control_reload(struct control *ctl)
{
	if (ctl == NULL || ctl->gen == NULL || ctl->gen == ctl->sc->gen)
		return;
	log_info("control connection to %s: reconnecting with configuration "
	    "generation %u", ctl->node != NULL ? ctl->node->addrstr : "-",
	    ctl->sc->gen->id);
	control_close(ctl);
	evtimer_del(ctl->retry);
	control_connect(ctl);
}

struct control *
control_new(struct event_base *base, const struct config *c,
    struct upstream *up, struct session_ctx *sc)
{
	struct control		*ctl;
	struct upstream_hooks	 hooks;

	ctl = util_xcalloc(1, sizeof(*ctl));
	ctl->base = base;
	ctl->cfg = c;
	ctl->up = up;
	ctl->sc = sc;
	ctl->fd = -1;
	ctl->listening = true;
	ctl->rw.resolve = upstream_translate;
	ctl->rw.arg = up;
	ctl->rw.prepared = &ctl->prepared;
	ctl->crw.resolve = control_resolve;
	ctl->crw.arg = ctl;
	ctl->crw.prepared = &ctl->prepared;
	ctl->sink.to_app = control_to_app;
	ctl->sink.to_node = control_to_node;
	ctl->sink.arg = ctl;
	ctl->retry = evtimer_new(base, control_retry_cb, ctl);
	ctl->refresh = evtimer_new(base, control_refresh_cb, ctl);
	if (ctl->retry == NULL || ctl->refresh == NULL) {
		log_error("control: out of memory");
		abort();
	}
	snprintf(ctl->last_error, sizeof(ctl->last_error), "not connected yet");
	if (c->topology == CONFIG_TOPOLOGY_TRANSLATE) {
		hooks.node_added = control_node_added;
		hooks.node_gone = control_node_gone;
		hooks.arg = ctl;
		upstream_set_hooks(up, &hooks);
		sc->rw = &ctl->rw;
	}
	control_timer(ctl->retry, 0);
	return (ctl);
}

bool
control_ready(const struct control *ctl, const char **why)
{
	*why = ctl->last_error;
	return (ctl->state == CONTROL_READY);
}

void
control_stop_listening(struct control *ctl)
{
	struct upstream_node	*n;
	size_t			 i;

	if (ctl == NULL)
		return;
	ctl->listening = false;
	for (i = 0; (n = upstream_node_at(ctl->up, i)) != NULL; i++) {
		listener_free(n->listener);
		n->listener = NULL;
	}
}

void
control_free(struct control *ctl)
{
	struct upstream_hooks	 hooks;

	if (ctl == NULL)
		return;
	control_stop_listening(ctl);
	memset(&hooks, 0, sizeof(hooks));
	upstream_set_hooks(ctl->up, &hooks);
	if (ctl->connect_ev != NULL)
		event_free(ctl->connect_ev);
	if (ctl->fd != -1)
		evutil_closesocket(ctl->fd);
	if (ctl->bev != NULL)
		bufferevent_free(ctl->bev);
	session_gen_unref(ctl->gen);
	event_free(ctl->retry);
	event_free(ctl->refresh);
	free(ctl->scratch);
	ctl->sc->rw = NULL;
	free(ctl);
}
