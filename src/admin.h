/*
 * admin: the HTTP endpoint for health checks and metrics ([admin] address).
 *
 *   /livez    200 while the event loop runs.
 *   /readyz   200 when a node was reached recently (the control connection
 *             is up, or a session completed its TLS + CQL handshake within
 *             ADMIN_READY_WINDOW_MS); else 503 with a JSON reason.
 *   /metrics  Prometheus text exposition format 0.0.4.
 *
 * Nothing it serves is secret; it can listen on a pod address for
 * Kubernetes probes.
 */
#ifndef ADMIN_H
#define ADMIN_H

#include <stdint.h>

#include <event2/event.h>

#define ADMIN_READY_WINDOW_MS	30000

struct config;
struct session_ctx;
struct session_totals;
struct upstream;
struct control;
struct admin;

/* What the endpoint reports on, owned by the daemon. */
struct admin_sources {
	struct session_ctx	*sc;		/* the main thread's */
	/* Counters of all event loops (the main one and the workers). */
	void			(*totals)(void *arg, struct session_totals *t);
	void			*totals_arg;
	struct upstream		*up;
	struct control		*control;	/* may be NULL */
	const uint64_t		*reloads_ok;
	const uint64_t		*reloads_failed;
	uint64_t		 started_ms;
};

/*
 * admin_new(base, c, src, err, errlen): listen on [admin] address.
 * Returns NULL with a reason in ${err}.
 */
struct admin *admin_new(struct event_base *base, const struct config *c,
	    const struct admin_sources *src, char *err, size_t errlen);
void	admin_free(struct admin *a);

#endif /* !ADMIN_H */
