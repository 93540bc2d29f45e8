/*
 * admin: /livez, /readyz and /metrics over libevent's evhttp (see admin.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>

#include "admin.h"
#include "config.h"
#include "config_build.h"
#include "control.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"

struct admin {
	struct evhttp		*http;
	struct admin_sources	 src;
	char			 addr[UTIL_ADDRSTRLEN];
};

/* Append ${s} as a Prometheus label value (escaped). */
static void
admin_label(struct evbuffer *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(b, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(b, "\\n", 2);
		else if ((unsigned char)*s >= 0x20)
			evbuffer_add(b, s, 1);
	}
}

static void
admin_head(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* Whether some node was reached recently; *why says why not. */
static bool
admin_is_ready(const struct admin *a, const char **why)
{
	struct session_totals		 t;
	const struct session_stats	*st = &t.stats;
	uint64_t			 now = util_now_ms();

	a->src.totals(a->src.totals_arg, &t);
	*why = "no node reached yet";
	if (a->src.control != NULL && control_ready(a->src.control, why))
		return (true);
	if (st->last_hs_ok_ms != 0 &&
	    now - st->last_hs_ok_ms <= ADMIN_READY_WINDOW_MS)
		return (true);
	return (false);
}

static void
admin_metrics(const struct admin *a, struct evbuffer *b)
{
	static const uint64_t		 bounds[SESSION_HS_NBUCKETS] =
					    SESSION_HS_BUCKETS_MS;
	const struct session_ctx	*sc = a->src.sc;
	struct session_totals		 t;
	const struct session_stats	*st = &t.stats;
	struct upstream_node		*n;
	const char			*why;
	char				 serial[80];
	int64_t				 not_after;
	uint64_t			 app, node;
	size_t				 i;
	unsigned			 r;

	a->src.totals(a->src.totals_arg, &t);

	admin_head(b, "cqltunnel_build_info", "gauge",
	    "Version of cqltunnel and its libraries.");
	evbuffer_add_printf(b, "cqltunnel_build_info{version=\"");
	admin_label(b, CQLTUNNEL_VERSION);
	evbuffer_add_printf(b, "\",openssl=\"");
	admin_label(b, OpenSSL_version(OPENSSL_VERSION));
	evbuffer_add_printf(b, "\",libevent=\"");
	admin_label(b, event_get_version());
	evbuffer_add_printf(b, "\"} 1\n");

	admin_head(b, "cqltunnel_start_time_seconds", "gauge",
	    "When cqltunnel started (Unix time).");
	evbuffer_add_printf(b, "cqltunnel_start_time_seconds %.3f\n",
	    (double)a->src.started_ms / 1000.0);

	admin_head(b, "cqltunnel_ready", "gauge",
	    "1 when a node was reached recently (as /readyz).");
	evbuffer_add_printf(b, "cqltunnel_ready %d\n", admin_is_ready(a, &why));

	admin_head(b, "cqltunnel_sessions_active", "gauge",
	    "App connections open now.");
	evbuffer_add_printf(b, "cqltunnel_sessions_active %u\n",
	    session_ctx_live(sc));
	admin_head(b, "cqltunnel_sessions_accepted_total", "counter",
	    "App connections accepted.");
	evbuffer_add_printf(b, "cqltunnel_sessions_accepted_total %llu\n",
	    (unsigned long long)st->accepted);
	admin_head(b, "cqltunnel_sessions_closed_total", "counter",
	    "App connections closed, by reason.");
	for (r = 0; r < SESSION_CLOSE_NREASONS; r++)
		evbuffer_add_printf(b, "cqltunnel_sessions_closed_total"
		    "{reason=\"%s\"} %llu\n", session_close_reason_label(r),
		    (unsigned long long)t.closed[r]);

	app = st->bytes_app;
	node = st->bytes_node;
	admin_head(b, "cqltunnel_received_bytes_total", "counter",
	    "Bytes received, by side (app: plaintext from apps; node: "
	    "decrypted from nodes).");
	evbuffer_add_printf(b, "cqltunnel_received_bytes_total{side=\"app\"} "
	    "%llu\ncqltunnel_received_bytes_total{side=\"node\"} %llu\n",
	    (unsigned long long)app, (unsigned long long)node);

	admin_head(b, "cqltunnel_handshake_duration_seconds", "histogram",
	    "From accepting an app connection to the end of the TLS and CQL "
	    "handshakes with its node.");
	for (i = 0; i < SESSION_HS_NBUCKETS; i++)
		evbuffer_add_printf(b, "cqltunnel_handshake_duration_seconds_"
		    "bucket{le=\"%g\"} %llu\n", (double)bounds[i] / 1000.0,
		    (unsigned long long)st->hs_bucket[i]);
	evbuffer_add_printf(b, "cqltunnel_handshake_duration_seconds_bucket"
	    "{le=\"+Inf\"} %llu\ncqltunnel_handshake_duration_seconds_sum "
	    "%.3f\ncqltunnel_handshake_duration_seconds_count %llu\n",
	    (unsigned long long)st->hs_count, (double)st->hs_sum_ms / 1000.0,
	    (unsigned long long)st->hs_count);

	admin_head(b, "cqltunnel_tls_handshake_failures_total", "counter",
	    "TLS handshakes with nodes that failed, by reason.");
	for (r = 0; r < st->ntls_fail; r++) {
		evbuffer_add_printf(b, "cqltunnel_tls_handshake_failures_total"
		    "{reason=\"");
		admin_label(b, st->tls_fail[r].label);
		evbuffer_add_printf(b, "\"} %llu\n",
		    (unsigned long long)st->tls_fail[r].n);
	}
	if (st->tls_fail_other > 0)
		evbuffer_add_printf(b, "cqltunnel_tls_handshake_failures_total"
		    "{reason=\"other\"} %llu\n",
		    (unsigned long long)st->tls_fail_other);

	admin_head(b, "cqltunnel_tls_handshakes_total", "counter",
	    "TLS handshakes with nodes that succeeded, by whether they "
	    "resumed an earlier session ([tls] session_resumption).");
	evbuffer_add_printf(b, "cqltunnel_tls_handshakes_total{resumed="
	    "\"yes\"} %llu\ncqltunnel_tls_handshakes_total{resumed=\"no\"} "
	    "%llu\n", (unsigned long long)st->tls_resumed,
	    (unsigned long long)st->tls_full);

	admin_head(b, "cqltunnel_node_connections_reused_total", "counter",
	    "App sessions served on an authenticated node connection that an "
	    "earlier app session left ([cluster] reuse_connections).");
	evbuffer_add_printf(b, "cqltunnel_node_connections_reused_total %llu\n",
	    (unsigned long long)st->reused);
	admin_head(b, "cqltunnel_node_connections_pooled", "gauge",
	    "Idle authenticated node connections kept for reuse now.");
	evbuffer_add_printf(b, "cqltunnel_node_connections_pooled %u\n",
	    t.pooled);

	admin_head(b, "cqltunnel_auth_failures_total", "counter",
	    "Sessions whose node refused the injected credentials.");
	evbuffer_add_printf(b, "cqltunnel_auth_failures_total %llu\n",
	    (unsigned long long)t.closed[SESSION_CLOSE_AUTH_FAILED]);

	admin_head(b, "cqltunnel_topology_rewrites_total", "counter",
	    "Results and events whose node addresses were rewritten "
	    "(closed sessions).");
	evbuffer_add_printf(b, "cqltunnel_topology_rewrites_total %llu\n",
	    (unsigned long long)t.rewrites);

	admin_head(b, "cqltunnel_node_up", "gauge",
	    "1 unless the node is backing off after failures or reported "
	    "DOWN.");
	upstream_lock(a->src.up);
	for (i = 0; (n = upstream_node_at(a->src.up, i)) != NULL; i++) {
		if (n->gone)
			continue;
		evbuffer_add_printf(b, "cqltunnel_node_up{node=\"");
		admin_label(b, n->addrstr[0] != '\0' ? n->addrstr : n->host);
		evbuffer_add_printf(b, "\",tunnel=\"");
		admin_label(b, n->tunnel_str);
		evbuffer_add_printf(b, "\",dc=\"");
		admin_label(b, n->dc);
		evbuffer_add_printf(b, "\"} %d\n", n->failures == 0 &&
		    !n->down);
	}
	upstream_unlock(a->src.up);

	admin_head(b, "cqltunnel_config_reloads_total", "counter",
	    "Configuration reloads, by result.");
	evbuffer_add_printf(b, "cqltunnel_config_reloads_total{result="
	    "\"success\"} %llu\ncqltunnel_config_reloads_total{result="
	    "\"failure\"} %llu\n", (unsigned long long)*a->src.reloads_ok,
	    (unsigned long long)*a->src.reloads_failed);
	admin_head(b, "cqltunnel_config_generation", "gauge",
	    "Configuration generation used by new sessions.");
	evbuffer_add_printf(b, "cqltunnel_config_generation %u\n",
	    sc->gen->id);

	if (tls_ctx_identity(sc->gen->tls, serial, sizeof(serial),
	    &not_after)) {
		admin_head(b, "cqltunnel_tls_cert_expiry_timestamp_seconds",
		    "gauge", "When the client certificate expires (Unix "
		    "time).");
		evbuffer_add_printf(b, "cqltunnel_tls_cert_expiry_timestamp_"
		    "seconds{serial=\"");
		admin_label(b, serial);
		evbuffer_add_printf(b, "\"} %lld\n", (long long)not_after);
	}
}

static void
admin_reply(struct evhttp_request *req, int code, const char *reason,
    const char *type, struct evbuffer *b)
{
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", type);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, b);
}

static void
admin_request_cb(struct evhttp_request *req, void *arg)
{
	struct admin		*a = arg;
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*path = uri != NULL ? evhttp_uri_get_path(uri) :
				    NULL, *why;
	struct evbuffer		*b = evbuffer_new();
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evbuffer_add_printf(b, "only GET and HEAD\n");
		admin_reply(req, 405, "Method Not Allowed", "text/plain", b);
	} else if (path != NULL && strcmp(path, "/livez") == 0) {
		evbuffer_add_printf(b, "ok\n");
		admin_reply(req, HTTP_OK, "OK", "text/plain", b);
	} else if (path != NULL && strcmp(path, "/readyz") == 0) {
		if (admin_is_ready(a, &why)) {
			evbuffer_add_printf(b, "{\"ready\":true}\n");
			admin_reply(req, HTTP_OK, "OK", "application/json", b);
		} else {
			evbuffer_add_printf(b, "{\"ready\":false,\"reason\":\"");
			admin_label(b, why);	/* JSON-safe enough: no control */
			evbuffer_add_printf(b, "\"}\n");
			admin_reply(req, 503, "Service Unavailable",
			    "application/json", b);
		}
	} else if (path != NULL && strcmp(path, "/metrics") == 0) {
		admin_metrics(a, b);
		admin_reply(req, HTTP_OK, "OK",
		    "text/plain; version=0.0.4; charset=utf-8", b);
	} else {
		evbuffer_add_printf(b, "not found; try /livez, /readyz or "
		    "/metrics\n");
		admin_reply(req, HTTP_NOTFOUND, "Not Found", "text/plain", b);
	}
	evbuffer_free(b);
}

struct admin *
admin_new(struct event_base *base, const struct config *c,
    const struct admin_sources *src, char *err, size_t errlen)
{
	struct admin	*a;

	a = util_xcalloc(1, sizeof(*a));
	a->src = *src;
	snprintf(a->addr, sizeof(a->addr), "%s%s%s:%u",
	    strchr(c->admin_host, ':') ? "[" : "", c->admin_host,
	    strchr(c->admin_host, ':') ? "]" : "", (unsigned)c->admin_port);
	if ((a->http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "[admin] cannot create the HTTP server");
		free(a);
		return (NULL);
	}
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
	evhttp_set_max_headers_size(a->http, 8192);
	evhttp_set_max_body_size(a->http, 4096);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_gencb(a->http, admin_request_cb, a);
	if (evhttp_bind_socket_with_handle(a->http, c->admin_host,
	    c->admin_port) == NULL) {
		snprintf(err, errlen, "[admin] cannot listen on %s", a->addr);
		evhttp_free(a->http);
		free(a);
		return (NULL);
	}
	log_info("admin endpoint on http://%s (/livez /readyz /metrics)",
	    a->addr);
	return (a);
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	evhttp_free(a->http);
	free(a);
}
