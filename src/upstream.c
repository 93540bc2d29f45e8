/*
 * upstream: the node table, resolution, back-off and tunnel addresses (see
 * upstream.h).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "upstream.h"

struct upstream {
	const struct config	*cfg;
	struct upstream_node	**nodes;
	size_t			 n;
	size_t			 cap;
	size_t			 ncontact;
	size_t			 next;		/* round-robin cursor */
	uint32_t		 next_host;	/* in translate_prefix */
	struct upstream_hooks	 hooks;
	pthread_mutex_t		 lock;		/* recursive; see below */
};

static void	upstream_report_nl(struct upstream *u, struct upstream_node *n,
		    bool ok);

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
	n->resolved_ms = util_now_ms();
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

/* Append a node to the table. */
static struct upstream_node *
upstream_add(struct upstream *u, const char *host, uint16_t port)
{
	struct upstream_node	*n;

	if (u->n == u->cap) {
		u->cap = u->cap != 0 ? u->cap * 2 : 8;
		u->nodes = util_xrealloc(u->nodes, u->cap * sizeof(*u->nodes));
	}
	n = util_xcalloc(1, sizeof(*n));
	n->host = util_xstrdup(host);
	n->port = port;
	n->index = (unsigned)u->n;
	u->nodes[u->n++] = n;
	return (n);
}

struct upstream *
upstream_new(const struct config *c, struct config_errors *errs)
{
	struct upstream		*u;
	struct upstream_node	*n;
	pthread_mutexattr_t	 attr;
	size_t			 i;
	char			 where[256];

	u = util_xcalloc(1, sizeof(*u));
	u->cfg = c;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&u->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	for (i = 0; i < c->ncontact_points; i++) {
		n = upstream_add(u, c->contact_points[i].host,
		    c->contact_points[i].port);
		n->contact = true;
		if (upstream_resolve(n) == -1) {
			if (errs != NULL)
				config_errors_add(errs, "%s: cannot resolve "
				    "\"%s\": %s", config_where(c, "cluster",
				    "contact_points", where, sizeof(where)),
				    n->host, n->resolve_error);
			else
				log_warn("contact point %s: cannot resolve: %s "
				    "(will retry)", n->host, n->resolve_error);
		}
	}
	u->ncontact = u->n;
	return (u);
}

void
upstream_free(struct upstream *u)
{
	size_t	 i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++) {
		free(u->nodes[i]->host);
		free(u->nodes[i]);
	}
	free(u->nodes);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

static void
upstream_set_hooks_nl(struct upstream *u, const struct upstream_hooks *h)
{
	u->hooks = *h;
}

/* Whether sessions may use ${n} at all. */
static bool
upstream_usable(const struct upstream_node *n)
{
	return (!n->gone && (n->resolved || n->contact));
}

/* Whether ${n} is in [cluster] local_dc (or its DC is not known yet). */
static bool
upstream_local(const struct upstream *u, const struct upstream_node *n)
{
	return (u->cfg->local_dc == NULL || n->dc[0] == '\0' ||
	    strcmp(n->dc, u->cfg->local_dc) == 0);
}

static size_t
upstream_count_nl(const struct upstream *u)
{
	size_t	 i, k = 0;

	for (i = 0; i < u->n; i++)
		if (upstream_usable(u->nodes[i]))
			k++;
	return (k);
}

static size_t
upstream_size_nl(const struct upstream *u)
{
	return (u->n);
}

static struct upstream_node *
upstream_node_at_nl(const struct upstream *u, size_t i)
{
	return (i < u->n ? u->nodes[i] : NULL);
}

/* Resolve again if the name's answer is old or missing; false if none. */
static bool
upstream_ready(struct upstream *u, struct upstream_node *n, uint64_t now)
{
	if (!n->contact)
		return (n->resolved);
	if ((!n->resolved && n->retry_at_ms <= now) ||
	    (n->resolved && !util_is_ip_literal(n->host) &&
	    now - n->resolved_ms >= UPSTREAM_RERESOLVE_MS)) {
		if (upstream_resolve(n) == -1) {
			upstream_report_nl(u, n, false);
			return (false);
		}
	}
	return (n->resolved);
}

static struct upstream_node *
upstream_pick_nl(struct upstream *u, struct upstream_node *prefer,
    const struct upstream_node *skip)
{
	struct upstream_node	*n, *soonest = NULL;
	uint64_t		 now = util_now_ms();
	size_t			 i;
	int			 pass;

	if (prefer != NULL && prefer != skip && upstream_usable(prefer) &&
	    prefer->retry_at_ms <= now && upstream_ready(u, prefer, now))
		return (prefer);
	if (u->n == 0)
		return (NULL);
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < u->n; i++) {
			n = u->nodes[(u->next + i) % u->n];
			if (!upstream_usable(n) || (n == skip && u->n > 1))
				continue;
			if (upstream_local(u, n) != (pass == 0))
				continue;
			if (!upstream_ready(u, n, now))
				continue;
			if (n->retry_at_ms <= now) {
				u->next = (u->next + i + 1) % u->n;
				return (n);
			}
			if (soonest == NULL ||
			    n->retry_at_ms < soonest->retry_at_ms)
				soonest = n;
		}
	}
	return (soonest);
}

static void
upstream_report_nl(struct upstream *u, struct upstream_node *n, bool ok)
{
	uint64_t	 backoff;
	unsigned	 shift;

	(void)u;
	if (ok) {
		if (n->failures > 0)
			log_info("node %s is reachable again", n->addrstr[0] ?
			    n->addrstr : n->host);
		n->failures = 0;
		n->retry_at_ms = 0;
		/*
		 * A handshake that just worked outranks a STATUS_CHANGE DOWN
		 * heard before: a node announces its own shutdown, and
		 * after its restart nobody sends the control connection
		 * (which is on that very node) an UP for it.
		 */
		n->down = false;
		return;
	}
	n->failures++;
	shift = n->failures - 1 > 6 ? 6 : n->failures - 1;
	backoff = (uint64_t)UPSTREAM_BACKOFF_MIN_MS << shift;
	if (backoff > UPSTREAM_BACKOFF_MAX_MS)
		backoff = UPSTREAM_BACKOFF_MAX_MS;
	n->retry_at_ms = util_now_ms() + backoff;
}

/* Whether ${n}'s resolved address is ${in} (port too, if known). */
static bool
upstream_has_inet(const struct upstream_node *n, const struct topo_inet *in)
{
	const struct sockaddr_in	*s4;
	const struct sockaddr_in6	*s6;

	if (!n->resolved)
		return (false);
	if (in->len == 4 && n->addr.ss_family == AF_INET) {
		s4 = (const struct sockaddr_in *)&n->addr;
		return (memcmp(&s4->sin_addr, in->addr, 4) == 0 &&
		    (in->port < 0 || ntohs(s4->sin_port) == in->port));
	}
	if (in->len == 16 && n->addr.ss_family == AF_INET6) {
		s6 = (const struct sockaddr_in6 *)&n->addr;
		return (memcmp(&s6->sin6_addr, in->addr, 16) == 0 &&
		    (in->port < 0 || ntohs(s6->sin6_port) == in->port));
	}
	return (false);
}

static struct upstream_node *
upstream_find_inet_nl(struct upstream *u, const struct topo_inet *in)
{
	size_t	 i;

	for (i = 0; i < u->n; i++)
		if (upstream_has_inet(u->nodes[i], in))
			return (u->nodes[i]);
	return (NULL);
}

/* Give ${n} its tunnel address; false if the prefix is exhausted. */
static bool
upstream_assign_tunnel(struct upstream *u, struct upstream_node *n)
{
	const struct config	*c = u->cfg;
	struct sockaddr_in	 sin;
	uint32_t		 hosts, ip, listen_ip = 0;
	struct in_addr		 la;

	if (n->index == 0) {
		/* The first contact point's node keeps [listen] address. */
		memset(&n->tunnel, 0, sizeof(n->tunnel));
		if (inet_pton(AF_INET, c->listen_host, n->tunnel.addr) == 1)
			n->tunnel.len = 4;
		else if (inet_pton(AF_INET6, c->listen_host, n->tunnel.addr) ==
		    1)
			n->tunnel.len = 16;
		else
			return (false);
		n->tunnel.port = c->listen_port;
		snprintf(n->tunnel_str, sizeof(n->tunnel_str), "%s%s%s:%u",
		    n->tunnel.len == 16 ? "[" : "", c->listen_host,
		    n->tunnel.len == 16 ? "]" : "", (unsigned)c->listen_port);
		n->has_tunnel = true;
		return (true);
	}
	if (inet_pton(AF_INET, c->listen_host, &la) == 1)
		listen_ip = ntohl(la.s_addr);
	hosts = (1u << (32 - c->translate_bits)) - 2;
	for (;;) {
		if (u->next_host >= hosts)
			return (false);
		ip = c->translate_net + 1 + u->next_host++;
		if (ip != listen_ip)
			break;
	}
	memset(&n->tunnel, 0, sizeof(n->tunnel));
	n->tunnel.len = 4;
	n->tunnel.addr[0] = (uint8_t)(ip >> 24);
	n->tunnel.addr[1] = (uint8_t)(ip >> 16);
	n->tunnel.addr[2] = (uint8_t)(ip >> 8);
	n->tunnel.addr[3] = (uint8_t)ip;
	n->tunnel.port = c->listen_port;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(ip);
	sin.sin_port = htons(c->listen_port);
	util_sockaddr_str((struct sockaddr *)&sin, n->tunnel_str,
	    sizeof(n->tunnel_str));
	n->has_tunnel = true;
	return (true);
}

/* A node learned from the ring at ${in}. */
static struct upstream_node *
upstream_discovered(struct upstream *u, const struct topo_inet *in)
{
	struct upstream_node	*n;
	char			 host[INET6_ADDRSTRLEN];
	uint16_t		 port;

	if (u->n >= UPSTREAM_MAX_NODES || (in->len != 4 && in->len != 16))
		return (NULL);
	if (inet_ntop(in->len == 4 ? AF_INET : AF_INET6, in->addr, host,
	    sizeof(host)) == NULL)
		return (NULL);
	/* Without a port column, drivers use the contact point's port. */
	port = in->port > 0 && in->port <= 65535 ? (uint16_t)in->port :
	    (u->ncontact > 0 ? u->nodes[0]->port : 9042);
	n = upstream_add(u, host, port);
	(void)upstream_resolve(n);
	return (n);
}

static void
upstream_bind_host_id_nl(struct upstream *u, struct upstream_node *n,
    const uint8_t host_id[16])
{
	size_t	 i;

	if (n->has_host_id && memcmp(n->host_id, host_id, 16) == 0)
		return;
	for (i = 0; i < u->n; i++) {
		struct upstream_node *o = u->nodes[i];

		if (o == n || !o->has_host_id ||
		    memcmp(o->host_id, host_id, 16) != 0)
			continue;
		/* Another entry (learned by address) is this node. */
		o->has_host_id = false;
		if (!o->contact) {
			o->gone = true;
			if (u->hooks.node_gone != NULL)
				u->hooks.node_gone(u->hooks.arg, o);
		}
	}
	n->has_host_id = true;
	memcpy(n->host_id, host_id, 16);
}

static bool
upstream_translate_nl(void *arg, const struct topo_key *k,
    struct topo_inet *out)
{
	struct upstream		*u = arg;
	struct upstream_node	*n = NULL;
	size_t			 i;
	bool			 was_gone;

	if (u->cfg->topology != CONFIG_TOPOLOGY_TRANSLATE)
		return (false);
	if (k->has_host_id)
		for (i = 0; i < u->n && n == NULL; i++)
			if (u->nodes[i]->has_host_id &&
			    memcmp(u->nodes[i]->host_id, k->host_id, 16) == 0)
				n = u->nodes[i];
	if (n == NULL && k->native.len != 0)
		n = upstream_find_inet_nl(u, &k->native);
	if (n == NULL && k->table == TOPO_TABLE_NONE)
		return (false);		/* an event about an unknown node */
	if (n == NULL && (n = upstream_discovered(u, &k->native)) == NULL)
		return (false);
	if (k->has_host_id && !n->has_host_id)
		upstream_bind_host_id_nl(u, n, k->host_id);
	if (k->dclen > 0) {
		size_t l = k->dclen < sizeof(n->dc) - 1 ? k->dclen :
		    sizeof(n->dc) - 1;

		memcpy(n->dc, k->dc, l);
		n->dc[l] = '\0';
	}
	n->seen = true;
	was_gone = n->gone;
	n->gone = false;
	if (!n->has_tunnel) {
		if (!upstream_assign_tunnel(u, n)) {
			log_warn("node %s: no free address left in [cluster] "
			    "translate_prefix; apps cannot reach it", n->host);
			return (false);
		}
		log_info("node %s (dc %s) reachable at %s", n->addrstr[0] ?
		    n->addrstr : n->host, n->dc[0] ? n->dc : "?",
		    n->tunnel_str);
		if (u->hooks.node_added != NULL)
			u->hooks.node_added(u->hooks.arg, n);
	} else if (was_gone) {
		log_info("node %s is back in the ring at %s", n->addrstr,
		    n->tunnel_str);
		if (u->hooks.node_added != NULL)
			u->hooks.node_added(u->hooks.arg, n);
	}
	*out = n->tunnel;
	return (true);
}

static void
upstream_mark_begin_nl(struct upstream *u)
{
	size_t	 i;

	for (i = 0; i < u->n; i++)
		u->nodes[i]->seen = false;
}

static void
upstream_mark_end_nl(struct upstream *u)
{
	struct upstream_node	*n;
	size_t			 i;

	for (i = 0; i < u->n; i++) {
		n = u->nodes[i];
		if (n->seen || n->contact || n->gone)
			continue;
		n->gone = true;
		log_info("node %s (%s) left the ring", n->addrstr,
		    n->tunnel_str);
		if (u->hooks.node_gone != NULL)
			u->hooks.node_gone(u->hooks.arg, n);
	}
}

/*
 * The locked entry points.  Sessions of several worker threads, the
 * control connection and the admin endpoint share the table; every
 * public function takes the (recursive) lock, so node pointers handed out
 * stay valid (entries are never freed) and the array is never read while
 * it grows.  Node fields that change (address on re-resolution, health)
 * are read through upstream_node_addr() or under upstream_lock().
 */
void
upstream_lock(struct upstream *u)
{
	pthread_mutex_lock(&u->lock);
}

void
upstream_unlock(struct upstream *u)
{
	pthread_mutex_unlock(&u->lock);
}

void
upstream_node_addr(struct upstream *u, const struct upstream_node *n,
    struct sockaddr_storage *ss, socklen_t *len, char *label, size_t size)
{
	pthread_mutex_lock(&u->lock);
	memcpy(ss, &n->addr, sizeof(*ss));
	*len = n->addrlen;
	snprintf(label, size, "%s", n->addrstr[0] != '\0' ? n->addrstr :
	    n->host);
	pthread_mutex_unlock(&u->lock);
}

void
upstream_set_hooks(struct upstream *u, const struct upstream_hooks *h)
{
	pthread_mutex_lock(&u->lock);
	upstream_set_hooks_nl(u, h);
	pthread_mutex_unlock(&u->lock);
}

size_t
upstream_count(const struct upstream *u)
{
	size_t r;

	pthread_mutex_lock((pthread_mutex_t *)&u->lock);
	r = upstream_count_nl(u);
	pthread_mutex_unlock((pthread_mutex_t *)&u->lock);
	return (r);
}

size_t
upstream_size(const struct upstream *u)
{
	size_t r;

	pthread_mutex_lock((pthread_mutex_t *)&u->lock);
	r = upstream_size_nl(u);
	pthread_mutex_unlock((pthread_mutex_t *)&u->lock);
	return (r);
}

struct upstream_node *
upstream_node_at(const struct upstream *u, size_t i)
{
	struct upstream_node *r;

	pthread_mutex_lock((pthread_mutex_t *)&u->lock);
	r = upstream_node_at_nl(u, i);
	pthread_mutex_unlock((pthread_mutex_t *)&u->lock);
	return (r);
}

struct upstream_node *
upstream_pick(struct upstream *u, struct upstream_node *prefer,
    const struct upstream_node *skip)
{
	struct upstream_node *r;

	pthread_mutex_lock(&u->lock);
	r = upstream_pick_nl(u, prefer, skip);
	pthread_mutex_unlock(&u->lock);
	return (r);
}

void
upstream_report(struct upstream *u, struct upstream_node *n, bool ok)
{
	pthread_mutex_lock(&u->lock);
	upstream_report_nl(u, n, ok);
	pthread_mutex_unlock(&u->lock);
}

struct upstream_node *
upstream_find_inet(struct upstream *u, const struct topo_inet *in)
{
	struct upstream_node *r;

	pthread_mutex_lock(&u->lock);
	r = upstream_find_inet_nl(u, in);
	pthread_mutex_unlock(&u->lock);
	return (r);
}

void
upstream_bind_host_id(struct upstream *u, struct upstream_node *n,
    const uint8_t host_id[16])
{
	pthread_mutex_lock(&u->lock);
	upstream_bind_host_id_nl(u, n, host_id);
	pthread_mutex_unlock(&u->lock);
}

bool
upstream_translate(void *arg, const struct topo_key *k, struct topo_inet *out)
{
	bool r;

	pthread_mutex_lock(&((struct upstream *)arg)->lock);
	r = upstream_translate_nl(arg, k, out);
	pthread_mutex_unlock(&((struct upstream *)arg)->lock);
	return (r);
}

void
upstream_mark_begin(struct upstream *u)
{
	pthread_mutex_lock(&u->lock);
	upstream_mark_begin_nl(u);
	pthread_mutex_unlock(&u->lock);
}

void
upstream_mark_end(struct upstream *u)
{
	pthread_mutex_lock(&u->lock);
	upstream_mark_end_nl(u);
	pthread_mutex_unlock(&u->lock);
}
