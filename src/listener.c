/*
 * listener: accept apps' plaintext connections (see listener.h).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "peercred.h"
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
	char			*unix_path;	/* ours to remove at exit */
	dev_t			 unix_dev;
	ino_t			 unix_ino;
};

/* A new app connection. */
static void
listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener		*l = arg;
	struct sockaddr_un	 sun;
	char			 peer[UTIL_ADDRSTRLEN], why[400];
	uint64_t		 now;

	(void)lev;
	if (sa->sa_family == AF_UNIX) {
		/* An unnamed peer's sun_path is not filled in: zero it. */
		memset(&sun, 0, sizeof(sun));
		memcpy(&sun, sa, (size_t)salen < sizeof(sun) ? (size_t)salen :
		    sizeof(sun));
		sa = (struct sockaddr *)&sun;
		salen = (int)sizeof(sun);
	}
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
		snprintf(why, sizeof(why), "max_connections (%u) reached; "
		    "try again later", l->sc->gen->cfg->max_connections);
		session_refuse(l->sc, fd, sa, salen,
		    SESSION_CLOSE_MAX_CONNECTIONS, why);
		return;
	}
	if (peercred_check(l->sc->gen->cfg, fd, sa, why, sizeof(why)) == -1) {
		session_refuse(l->sc, fd, sa, salen, SESSION_CLOSE_DENIED,
		    why);
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
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
		util_sockaddr_str((struct sockaddr *)&ss, l->addr,
		    sizeof(l->addr));
	else
		ss.ss_family = AF_UNSPEC;
	if (c->access_control && ss.ss_family != AF_UNIX &&
	    !util_is_loopback((struct sockaddr *)&ss)) {
		snprintf(err, errlen, "the socket passed by systemd (%s) is "
		    "not loopback or unix, so [listen] allow_uids/allow_gids "
		    "cannot identify who connects", l->addr);
		free(l);
		return (NULL);
	}
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

/*
 * Remove a stale socket file at ${path}: only a socket nobody listens on.
 * 0 if ${path} is free now, or -1 with a reason.
 */
static int
listener_unix_stale(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	int			 fd, rc;

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return (0);
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket; not "
		    "removing it", path);
		return (-1);
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return (-1);
	}
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "%s is in use: another process "
		    "accepts connections on it", path);
		return (-1);
	}
	if (errno != ECONNREFUSED) {
		snprintf(err, errlen, "%s: cannot tell whether it is in use "
		    "(%s); not removing it", path, strerror(errno));
		return (-1);
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove the stale socket %s: %s",
		    path, strerror(errno));
		return (-1);
	}
	log_info("removed the stale socket %s (nobody listened on it)",
	    path);
	return (0);
}

/*
 * Bind and listen on [listen] address = unix:PATH.  The socket is created
 * with mode 0600 and only then given unix_owner/unix_group and
 * unix_mode, so nobody else can connect in between.
 */
static struct listener *
listener_unix(struct event_base *base, const struct config *c,
    struct session_ctx *sc, char *err, size_t errlen)
{
	struct listener		*l;
	struct sockaddr_un	 sun;
	struct stat		 st;
	const char		*path = c->listen_unix;
	mode_t			 old;
	int			 fd, rc;

	if (listener_unix_stale(path, err, errlen) == -1)
		return (NULL);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return (NULL);
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == -1) {
		snprintf(err, errlen, "cannot listen on unix:%s: %s", path,
		    strerror(errno));
		close(fd);
		return (NULL);
	}
	if ((c->unix_owner != (uid_t)-1 || c->unix_group != (gid_t)-1) &&
	    chown(path, c->unix_owner, c->unix_group) == -1) {
		snprintf(err, errlen, "unix:%s: cannot set [listen] "
		    "unix_owner/unix_group: %s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, (mode_t)c->unix_mode) == -1 ||
	    lstat(path, &st) == -1) {
		snprintf(err, errlen, "unix:%s: cannot set [listen] unix_mode: "
		    "%s", path, strerror(errno));
		goto fail;
	}
	l = util_xcalloc(1, sizeof(*l));
	l->sc = sc;
	l->cfg = c;
	l->unix_path = util_xstrdup(path);
	l->unix_dev = st.st_dev;
	l->unix_ino = st.st_ino;
	snprintf(l->addr, sizeof(l->addr), "unix:%s", path);
	l->lev = evconnlistener_new(base, listener_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 1024, fd);
	if (l->lev == NULL) {
		snprintf(err, errlen, "cannot listen on unix:%s", path);
		free(l->unix_path);
		free(l);
		goto fail;
	}
	evconnlistener_set_error_cb(l->lev, listener_error_cb);
	l->backoff = evtimer_new(base, listener_backoff_cb, l);
	return (l);
fail:
	close(fd);
	(void)unlink(path);
	return (NULL);
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

	if (target == NULL && (fd = notify_listen_fd()) != -1)
		return (listener_adopt(base, c, sc, fd, err, errlen));
	if (target == NULL && c->listen_unix != NULL)
		return (listener_unix(base, c, sc, err, errlen));
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
	struct stat	 st;

	if (l == NULL)
		return;
	if (l->backoff != NULL)
		event_free(l->backoff);
	evconnlistener_free(l->lev);
	/* Remove our socket file, unless someone has replaced it. */
	if (l->unix_path != NULL && lstat(l->unix_path, &st) == 0 &&
	    st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
		(void)unlink(l->unix_path);
	free(l->unix_path);
	free(l);
}

const char *
listener_address(const struct listener *l)
{
	return (l->addr);
}
