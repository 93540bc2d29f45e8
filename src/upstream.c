/*
 * upstream: contact points, resolution and back-off (see upstream.h).
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "upstream.h"

struct upstream {
	struct upstream_node	*nodes;
	size_t			 n;
	size_t			 next;		/* round-robin cursor */
};

/* Resolve ${n}'s host (first address, numeric or by name); 0 or -1. */
static int
upstream_resolve(struct upstream_node *n)
{
	struct addrinfo	 hints, *res;
	char		 port[8];
	int		 rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%u", (unsigned)n->port);
	rc = getaddrinfo(n->host, port, &hints, &res);
	if (rc != 0 && rc != EAI_SYSTEM) {
		/* AI_ADDRCONFIG hides loopback-only hosts; try without. */
		hints.ai_flags = 0;
		rc = getaddrinfo(n->host, port, &hints, &res);
	}
	if (rc != 0) {
		snprintf(n->resolve_error, sizeof(n->resolve_error), "%s",
		    gai_strerror(rc));
		n->resolved = false;
		return (-1);
	}
	memcpy(&n->addr, res->ai_addr, res->ai_addrlen);
	n->addrlen = res->ai_addrlen;
	n->resolved = true;
	n->resolve_error[0] = '\0';
	util_sockaddr_str((struct sockaddr *)&n->addr, n->addrstr,
	    sizeof(n->addrstr));
	freeaddrinfo(res);
	return (0);
}

struct upstream *
upstream_new(const struct config *c, struct config_errors *errs)
{
	struct upstream	*u;
	size_t		 i;
	char		 where[256];

	u = util_xcalloc(1, sizeof(*u));
	u->n = c->ncontact_points;
	u->nodes = util_xcalloc(u->n, sizeof(*u->nodes));
	for (i = 0; i < u->n; i++) {
		u->nodes[i].host = util_xstrdup(c->contact_points[i].host);
		u->nodes[i].port = c->contact_points[i].port;
		if (upstream_resolve(&u->nodes[i]) == -1) {
			if (errs != NULL)
				config_errors_add(errs, "%s: cannot resolve "
				    "\"%s\": %s", config_where(c, "cluster",
				    "contact_points", where, sizeof(where)),
				    u->nodes[i].host, u->nodes[i].resolve_error);
			else
				log_warn("contact point %s: cannot resolve: %s "
				    "(will retry)", u->nodes[i].host,
				    u->nodes[i].resolve_error);
		}
	}
	return (u);
}

void
upstream_free(struct upstream *u)
{
	size_t	 i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++)
		free(u->nodes[i].host);
	free(u->nodes);
	free(u);
}

size_t
upstream_count(const struct upstream *u)
{
	return (u->n);
}

struct upstream_node *
upstream_pick(struct upstream *u, const struct upstream_node *skip)
{
	struct upstream_node	*n, *soonest = NULL;
	uint64_t		 now = util_now_ms();
	size_t			 i;

	for (i = 0; i < u->n; i++) {
		n = &u->nodes[(u->next + i) % u->n];
		if (n == skip && u->n > 1)
			continue;
		if (!n->resolved && n->retry_at_ms <= now &&
		    upstream_resolve(n) == -1) {
			upstream_report(u, n, false);
			continue;
		}
		if (!n->resolved)
			continue;
		if (n->retry_at_ms <= now) {
			u->next = (u->next + i + 1) % u->n;
			return (n);
		}
		if (soonest == NULL || n->retry_at_ms < soonest->retry_at_ms)
			soonest = n;
	}
	return (soonest);
}

void
upstream_report(struct upstream *u, struct upstream_node *n, bool ok)
{
	uint64_t	 backoff;
	unsigned	 shift;

	(void)u;
	if (ok) {
		if (n->failures > 0)
			log_info("node %s:%u is reachable again", n->host,
			    (unsigned)n->port);
		n->failures = 0;
		n->retry_at_ms = 0;
		return;
	}
	n->failures++;
	shift = n->failures - 1 > 6 ? 6 : n->failures - 1;
	backoff = (uint64_t)UPSTREAM_BACKOFF_MIN_MS << shift;
	if (backoff > UPSTREAM_BACKOFF_MAX_MS)
		backoff = UPSTREAM_BACKOFF_MAX_MS;
	n->retry_at_ms = util_now_ms() + backoff;
}
