/*
 * worker: [listen] workers = N > 1 event loops, one thread each.
 *
 * The main thread keeps everything that is not a session: the listeners,
 * the control connection, the admin endpoint, signals, reloads.  Its
 * session context dispatches every accepted connection, with a reference
 * to the configuration generation of the moment, to the workers in turn;
 * a worker runs the whole session (handshake and relay) on its own loop.
 * What sessions share across threads is locked or atomic: the node table
 * (upstream.c), the prepared-statement ids (relay.c), the TLS session
 * cache (tls.c), generation reference counts and the open-session count
 * that max_connections checks.  Workers publish their counters every half
 * second for the admin endpoint and the status line.
 */
#ifndef WORKER_H
#define WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "session.h"

struct worker_pool;

/*
 * worker_loop(base, busy_ms, flags):
 * Run ${base} as event_base_loop(base, flags) does.  With ${busy_ms} > 0
 * ([listen] busy_poll), a loop whose relays were active keeps polling
 * without sleeping until ${busy_ms} pass with no activity, like HAProxy's
 * busy-polling: a virtual CPU that went idle takes tens of microseconds
 * to wake for the next packet, on every hop.  It costs a CPU while
 * traffic flows; an idle tunnel still sleeps.
 */
int	worker_loop(struct event_base *base, unsigned busy_ms, int flags);

/*
 * worker_pool_new(n, sc, err, len):
 * Start ${n} worker loops and make ${sc} (the main thread's context)
 * dispatch to them.  Their contexts share ${sc}'s node table, rewriter and
 * open-session count.  Returns NULL with a reason in ${err}.
 */
struct worker_pool *worker_pool_new(unsigned n, struct session_ctx *sc,
	    char *err, size_t len);

/*
 * worker_pool_set_gen(p, gen): a reload; each worker takes ${gen} for its
 * next sessions (a reference each) and closes the node connections it
 * kept under the old one.
 */
void	worker_pool_set_gen(struct worker_pool *p, struct session_gen *gen);

/*
 * worker_pool_drain(p, done, arg):
 * Call ${done}(${arg}) on the main loop once every worker has no session
 * left (at once if none has any).
 */
void	worker_pool_drain(struct worker_pool *p, void (*done)(void *),
	    void *arg);

/* worker_pool_close_all(p, reason): close every session, asynchronously. */
void	worker_pool_close_all(struct worker_pool *p,
	    enum session_close_reason reason);

/* worker_pool_totals_add(p, t): add the workers' last published figures. */
void	worker_pool_totals_add(struct worker_pool *p, struct session_totals *t);

/* worker_pool_size(p): how many workers (0 for NULL). */
unsigned worker_pool_size(const struct worker_pool *p);

/*
 * worker_pool_free(p, reason): close the workers' sessions with ${reason},
 * stop and join the threads.  NULL is a no-op.
 */
void	worker_pool_free(struct worker_pool *p,
	    enum session_close_reason reason);

#endif /* !WORKER_H */
