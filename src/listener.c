/*
 * listener: accept apps' plaintext connections (see listener.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/listener.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "session.h"
#include "upstream.h"
#include "util.h"

/* Pause after EMFILE/ENFILE before accepting again. */
#define LISTENER_BACKOFF_MS	1000

struct listener {
	struct evconnlistener	*lev;
	struct event		*backoff;
	struct session_ctx	*sc;
	const struct config	*cfg;
	struct upstream_node	*target;	/* NULL: the main listener */
	char			 addr[UTIL_ADDRSTRLEN];
	uint64_t		 refused;	/* over max_connections */
	uint64_t		 last_refusal_log_ms;
};

/* A new app connection. */
static void
listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener	*l = arg;
	char		 peer[UTIL_ADDRSTRLEN];
	uint64_t	 now;

	(void)lev;
	if (session_ctx_live(l->sc) >= l->sc->gen->cfg->max_connections) {
		l->refused++;
		now = util_now_ms();
		if (now - l->last_refusal_log_ms >= 1000) {
			log_warn("refusing connection from %s: max_connections "
			    "(%u) reached (%llu refused so far)",
			    util_sockaddr_str(sa, peer, sizeof(peer)),
			    l->sc->gen->cfg->max_connections,
			    (unsigned long long)l->refused);
			l->last_refusal_log_ms = now;
		}
		evutil_closesocket(fd);
		return;
	}
	session_start(l->sc, fd, sa, salen, l->target);
}

/* Resume accepting after a back-off. */
static void
listener_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener	*l = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(l->lev);
}

/* accept() failed: pause on descriptor exhaustion, never exit. */
static void
listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener	*l = arg;
	struct timeval	 tv = { LISTENER_BACKOFF_MS / 1000,
	    (LISTENER_BACKOFF_MS % 1000) * 1000 };
	int		 err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		log_warn("accept on %s: %s; pausing for %d ms", l->addr,
		    strerror(err), LISTENER_BACKOFF_MS);
		evconnlistener_disable(lev);
		evtimer_add(l->backoff, &tv);
		return;
	}
	log_warn("accept on %s: %s", l->addr, strerror(err));
}

/* Socket activation: listen on the socket systemd passed. */
static struct listener *
listener_adopt(struct event_base *base, const struct config *c,
    struct session_ctx *sc, int fd, char *err, size_t errlen)
{
	struct listener		*l;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof(ss);

	l = util_xcalloc(1, sizeof(*l));
	l->sc = sc;
	l->cfg = c;
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
		util_sockaddr_str((struct sockaddr *)&ss, l->addr,
		    sizeof(l->addr));
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	l->lev = evconnlistener_new(base, listener_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->lev == NULL) {
		snprintf(err, errlen, "cannot use the socket passed by systemd "
		    "(%s)", l->addr);
		free(l);
		return (NULL);
	}
	evconnlistener_set_error_cb(l->lev, listener_error_cb);
	l->backoff = evtimer_new(base, listener_backoff_cb, l);
	log_info("using the listening socket passed by systemd (%s)",
	    l->addr);
	return (l);
}

struct listener *
listener_new(struct event_base *base, const struct config *c,
    struct session_ctx *sc, struct upstream_node *target, char *err,
    size_t errlen)
{
	struct listener	*l;
	struct addrinfo	 hints, *res;
	char		 host[INET6_ADDRSTRLEN], port[8];
	int		 rc, fd;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%u", (unsigned)c->listen_port);
	if (target == NULL)
		snprintf(host, sizeof(host), "%s", c->listen_host);
	else if (inet_ntop(target->tunnel.len == 4 ? AF_INET : AF_INET6,
	    target->tunnel.addr, host, sizeof(host)) == NULL) {
		snprintf(err, errlen, "node %s has no tunnel address",
		    target->host);
		return (NULL);
	}
	if (target == NULL && (fd = notify_listen_fd()) != -1)
		return (listener_adopt(base, c, sc, fd, err, errlen));
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s %s: %s", target == NULL ?
		    "[listen] address" : "tunnel address", host,
		    gai_strerror(rc));
		return (NULL);
	}
	l = util_xcalloc(1, sizeof(*l));
	l->sc = sc;
	l->cfg = c;
	l->target = target;
	util_sockaddr_str(res->ai_addr, l->addr, sizeof(l->addr));
	l->lev = evconnlistener_new_bind(base, listener_accept_cb, l,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    1024, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (l->lev == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", l->addr,
		    strerror(errno));
		free(l);
		return (NULL);
	}
	evconnlistener_set_error_cb(l->lev, listener_error_cb);
	l->backoff = evtimer_new(base, listener_backoff_cb, l);
	return (l);
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->backoff != NULL)
		event_free(l->backoff);
	evconnlistener_free(l->lev);
	free(l);
}

const char *
listener_address(const struct listener *l)
{
	return (l->addr);
}
