/*
 * worker: session event loops in threads (see worker.h).
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "relay.h"
#include "util.h"
#include "worker.h"

/* How often a worker publishes its counters. */
#define WORKER_TICK_MS		500

/* Commands from the main thread. */
#define WORKER_CMD_DRAIN	0x01
#define WORKER_CMD_CLOSE	0x02
#define WORKER_CMD_EXIT		0x04

/* An accepted connection on its way to a worker. */
struct worker_item {
	evutil_socket_t		 fd;
	struct sockaddr_storage	 sa;
	int			 salen;
	struct upstream_node	*target;
	struct session_gen	*gen;
};

struct worker {
	struct worker_pool	*pool;
	unsigned		 id;
	pthread_t		 thread;
	bool			 running;
	struct event_base	*base;
	struct session_ctx	 sc;
	int			 efd;		/* eventfd: wakes the loop */
	struct event		*wake;
	struct event		*tick;
	bool			 idle_sent;	/* told the pool it drained */
	unsigned		 busy_ms;	/* [listen] busy_poll */

	pthread_mutex_t		 lock;		/* guards what follows */
	struct worker_item	*q;
	size_t			 qn, qcap;
	unsigned		 cmds;
	enum session_close_reason close_reason;
	struct session_gen	*gen;		/* from a reload (a ref) */
	struct session_totals	 snap;		/* last published */
};

struct worker_pool {
	unsigned		 n;
	unsigned		 next;		/* round-robin */
	struct worker		*w;
	struct session_ctx	*main;
	struct event		*idle_ev;	/* on the main loop */
	atomic_uint		 busy;		/* workers still draining */
	void			(*done)(void *);
	void			*done_arg;
};

/* Wake ${w}'s loop. */
static void
worker_kick(struct worker *w)
{
	uint64_t	 one = 1;

	while (write(w->efd, &one, sizeof(one)) == -1 && errno == EINTR)
		;
}

/* Main thread, from session_start(): queue a connection for a worker. */
static void
worker_dispatch(void *arg, evutil_socket_t fd, const struct sockaddr *sa,
    int salen, struct upstream_node *target, struct session_gen *gen)
{
	struct worker_pool	*p = arg;
	struct worker		*w = &p->w[p->next % p->n];
	struct worker_item	*it, *q;
	size_t			 cap;
	unsigned		 i;

	/*
	 * Round robin, except that a worker holding idle node connections
	 * (see reuse.h) is preferred to one holding none: sequential apps
	 * would otherwise land where nothing can be reused.
	 */
	for (i = 0; i < p->n; i++) {
		w = &p->w[(p->next + i) % p->n];
		if (reuse_pool_count(&w->sc.pool) > 0)
			break;
	}
	if (i == p->n)
		w = &p->w[p->next % p->n];
	p->next++;

	pthread_mutex_lock(&w->lock);
	if (w->qn == w->qcap) {
		cap = w->qcap != 0 ? w->qcap * 2 : 16;
		if ((q = realloc(w->q, cap * sizeof(*q))) == NULL) {
			pthread_mutex_unlock(&w->lock);
			log_error("cannot accept a connection: out of memory");
			evutil_closesocket(fd);
			session_gen_unref(gen);
			atomic_fetch_sub(p->main->live, 1);
			return;
		}
		w->q = q;
		w->qcap = cap;
	}
	it = &w->q[w->qn++];
	it->fd = fd;
	memset(&it->sa, 0, sizeof(it->sa));
	if (salen > 0 && (size_t)salen <= sizeof(it->sa))
		memcpy(&it->sa, sa, (size_t)salen);
	it->salen = salen;
	it->target = target;
	it->gen = gen;
	pthread_mutex_unlock(&w->lock);
	worker_kick(w);
}

/* Worker thread: every session of a draining worker has ended. */
static void
worker_idle(void *arg)
{
	struct worker		*w = arg;
	struct worker_pool	*p = w->pool;

	if (w->idle_sent)
		return;
	w->idle_sent = true;
	if (atomic_fetch_sub(&p->busy, 1) == 1)
		event_active(p->idle_ev, EV_TIMEOUT, 0);
}

/* Worker thread: publish the counters for the main thread. */
static void
worker_publish(struct worker *w)
{
	struct session_totals	 t;

	session_ctx_totals(&w->sc, &t);
	pthread_mutex_lock(&w->lock);
	w->snap = t;
	pthread_mutex_unlock(&w->lock);
}

static void
worker_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_publish(arg);
}

/* Worker thread: new connections or commands. */
static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker		*w = arg;
	struct worker_item	*q;
	size_t			 n, i;
	unsigned		 cmds;
	enum session_close_reason reason;
	struct session_gen	*gen;
	uint64_t		 v;

	(void)what;
	while (read(fd, &v, sizeof(v)) == -1 && errno == EINTR)
		;
	pthread_mutex_lock(&w->lock);
	q = w->q;
	n = w->qn;
	w->q = NULL;
	w->qn = w->qcap = 0;
	cmds = w->cmds;
	w->cmds = 0;
	reason = w->close_reason;
	gen = w->gen;
	w->gen = NULL;
	pthread_mutex_unlock(&w->lock);


	for (i = 0; i < n; i++)
		session_adopt(&w->sc, q[i].fd, (struct sockaddr *)&q[i].sa,
		    q[i].salen, q[i].target, q[i].gen);
	free(q);
	if (gen != NULL) {
		/*
		 * After the queue, whose connections may have been accepted
		 * before the reload and carry the generation before it.
		 */
		session_ctx_set_gen(&w->sc, gen);
		session_gen_unref(gen);
	}
	if (cmds & WORKER_CMD_CLOSE)
		session_close_all(&w->sc, reason);
	if (cmds & WORKER_CMD_DRAIN) {
		session_ctx_reuse_stop(&w->sc);
		w->sc.on_idle = worker_idle;
		w->sc.on_idle_arg = w;
		if (w->sc.nsessions == 0)
			worker_idle(w);
	}
	if (cmds & WORKER_CMD_EXIT) {
		worker_publish(w);
		event_base_loopbreak(w->base);
	}
}

int
worker_loop(struct event_base *base, unsigned busy_ms, int flags)
{
	uint64_t	 seen, until = 0;
	int		 rc;

	if (busy_ms == 0)
		return (event_base_loop(base, flags));
	seen = conn_activity();
	for (;;) {
		rc = event_base_loop(base, flags |
		    (until != 0 ? EVLOOP_NONBLOCK : EVLOOP_ONCE));
		if (rc != 0 || event_base_got_break(base) ||
		    event_base_got_exit(base))
			break;
		if (conn_activity() != seen) {
			seen = conn_activity();
			until = util_now_ms() + busy_ms;
		} else if (until != 0 && util_now_ms() >= until)
			until = 0;	/* quiet: sleep in the next call */
	}
	return (rc == -1 ? -1 : 0);
}

static void *
worker_main(void *arg)
{
	struct worker	*w = arg;

	if (worker_loop(w->base, w->busy_ms, EVLOOP_NO_EXIT_ON_EMPTY) == -1)
		log_error("worker %u: event loop failed", w->id);
	relay_thread_done();
	return (NULL);
}

/* Main thread: post ${cmds} to every worker. */
static void
worker_pool_post(struct worker_pool *p, unsigned cmds,
    enum session_close_reason reason)
{
	unsigned	 i;

	for (i = 0; i < p->n; i++) {
		pthread_mutex_lock(&p->w[i].lock);
		p->w[i].cmds |= cmds;
		if (cmds & WORKER_CMD_CLOSE)
			p->w[i].close_reason = reason;
		pthread_mutex_unlock(&p->w[i].lock);
		worker_kick(&p->w[i]);
	}
}

/* Main loop: the last draining worker went idle. */
static void
worker_pool_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_pool	*p = arg;

	(void)fd;
	(void)what;
	if (p->done != NULL)
		p->done(p->done_arg);
}

/* Set up worker ${i} (its loop, context and events); 0 or -1. */
static int
worker_setup(struct worker_pool *p, unsigned i)
{
	struct worker	*w = &p->w[i];
	struct timeval	 tv = { 0, WORKER_TICK_MS * 1000 };

	w->pool = p;
	w->id = i + 1;
	pthread_mutex_init(&w->lock, NULL);
	if ((w->base = util_event_base()) == NULL)
		return (-1);
	session_ctx_init(&w->sc, w->base, p->main->gen, p->main->up);
	w->sc.live = p->main->live;
	w->sc.rw = p->main->rw;
	w->busy_ms = p->main->gen->cfg->busy_poll_ms;
	if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		return (-1);
	w->wake = event_new(w->base, w->efd, EV_READ | EV_PERSIST,
	    worker_wake_cb, w);
	w->tick = event_new(w->base, -1, EV_PERSIST, worker_tick_cb, w);
	if (w->wake == NULL || w->tick == NULL)
		return (-1);
	event_add(w->wake, NULL);
	event_add(w->tick, &tv);
	return (0);
}

struct worker_pool *
worker_pool_new(unsigned n, struct session_ctx *sc, char *err, size_t len)
{
	struct worker_pool	*p;
	sigset_t		 all, old;
	unsigned		 i;
	int			 rc;

	p = util_xcalloc(1, sizeof(*p));
	p->n = n;
	p->main = sc;
	p->w = util_xcalloc(n, sizeof(*p->w));
	p->idle_ev = event_new(sc->base, -1, 0, worker_pool_idle_cb, p);
	for (i = 0; i < n; i++)
		p->w[i].efd = -1;
	for (i = 0; i < n; i++) {
		if (p->idle_ev == NULL || worker_setup(p, i) == -1) {
			snprintf(err, len, "cannot set up worker %u: %s", i + 1,
			    strerror(errno != 0 ? errno : ENOMEM));
			worker_pool_free(p, SESSION_CLOSE_SHUTDOWN);
			return (NULL);
		}
	}
	/* Signals are the main thread's: workers start with all blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < n; i++) {
		rc = pthread_create(&p->w[i].thread, NULL, worker_main,
		    &p->w[i]);
		if (rc != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			snprintf(err, len, "cannot start worker %u: %s", i + 1,
			    strerror(rc));
			worker_pool_free(p, SESSION_CLOSE_SHUTDOWN);
			return (NULL);
		}
		p->w[i].running = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	sc->dispatch = worker_dispatch;
	sc->dispatch_arg = p;
	return (p);
}

void
worker_pool_set_gen(struct worker_pool *p, struct session_gen *gen)
{
	struct session_gen	*old;
	unsigned		 i;

	for (i = 0; i < p->n; i++) {
		pthread_mutex_lock(&p->w[i].lock);
		old = p->w[i].gen;
		p->w[i].gen = session_gen_ref(gen);
		pthread_mutex_unlock(&p->w[i].lock);
		session_gen_unref(old);
		worker_kick(&p->w[i]);
	}
}

void
worker_pool_drain(struct worker_pool *p, void (*done)(void *), void *arg)
{
	p->done = done;
	p->done_arg = arg;
	atomic_store(&p->busy, p->n);
	worker_pool_post(p, WORKER_CMD_DRAIN, SESSION_CLOSE_SHUTDOWN);
}

void
worker_pool_close_all(struct worker_pool *p, enum session_close_reason reason)
{
	worker_pool_post(p, WORKER_CMD_CLOSE, reason);
}

void
worker_pool_totals_add(struct worker_pool *p, struct session_totals *t)
{
	unsigned	 i;

	for (i = 0; p != NULL && i < p->n; i++) {
		pthread_mutex_lock(&p->w[i].lock);
		session_totals_add(t, &p->w[i].snap);
		pthread_mutex_unlock(&p->w[i].lock);
	}
}

unsigned
worker_pool_size(const struct worker_pool *p)
{
	return (p != NULL ? p->n : 0);
}

void
worker_pool_free(struct worker_pool *p, enum session_close_reason reason)
{
	struct worker	*w;
	unsigned	 i;
	size_t		 k;

	if (p == NULL)
		return;
	p->main->dispatch = NULL;
	for (i = 0; i < p->n; i++) {
		w = &p->w[i];
		if (!w->running)
			continue;
		pthread_mutex_lock(&w->lock);
		w->cmds |= WORKER_CMD_CLOSE | WORKER_CMD_EXIT;
		w->close_reason = reason;
		pthread_mutex_unlock(&w->lock);
		worker_kick(w);
		pthread_join(w->thread, NULL);
	}
	for (i = 0; i < p->n; i++) {
		w = &p->w[i];
		/* Connections queued but never adopted. */
		for (k = 0; k < w->qn; k++) {
			evutil_closesocket(w->q[k].fd);
			session_gen_unref(w->q[k].gen);
			atomic_fetch_sub(p->main->live, 1);
		}
		free(w->q);
		session_gen_unref(w->gen);
		if (w->wake != NULL)
			event_free(w->wake);
		if (w->tick != NULL)
			event_free(w->tick);
		if (w->efd != -1)
			close(w->efd);
		if (w->base != NULL) {
			w->sc.on_idle = NULL;
			session_close_all(&w->sc, reason);
			session_gen_unref(w->sc.gen);
			event_base_free(w->base);
		}
		pthread_mutex_destroy(&w->lock);
	}
	if (p->idle_ev != NULL)
		event_free(p->idle_ev);
	free(p->w);
	free(p);
}
