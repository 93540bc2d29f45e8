/*
 * session: one app connection and its TLS connection to a node.
 *
 * A session has two halves (app, node).  It connects to a node as soon as
 * the app is accepted, runs the CQL handshake through the auth machine,
 * then relays bytes both ways with watermark backpressure.  Every session
 * ends in session_close(), which logs one summary line.
 */
#ifndef SESSION_H
#define SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/util.h>

#include "reuse.h"

struct config;
struct tls_ctx;
struct auth_creds;
struct upstream;
struct upstream_node;
struct topo_rewriter;
struct session;

enum session_state {
	SESSION_CONNECTING,	/* TCP connect to the node */
	SESSION_HANDSHAKE,	/* TLS + CQL handshake */
	SESSION_RELAY,		/* verbatim relay */
	SESSION_CLOSING,	/* flushing the last bytes to one side */
};

enum session_close_reason {
	SESSION_CLOSE_APP_EOF,
	SESSION_CLOSE_NODE_EOF,
	SESSION_CLOSE_APP_ERROR,
	SESSION_CLOSE_NODE_ERROR,
	SESSION_CLOSE_NO_NODE,
	SESSION_CLOSE_CONNECT_FAILED,
	SESSION_CLOSE_CONNECT_TIMEOUT,
	SESSION_CLOSE_TLS_FAILED,
	SESSION_CLOSE_HANDSHAKE_TIMEOUT,
	SESSION_CLOSE_PROTOCOL,
	SESSION_CLOSE_STARTUP_REFUSED,
	SESSION_CLOSE_AUTH_FAILED,
	SESSION_CLOSE_FRAME_TOO_LARGE,
	SESSION_CLOSE_DRAIN_TIMEOUT,
	SESSION_CLOSE_SHUTDOWN,
	SESSION_CLOSE_INTERNAL,
	SESSION_CLOSE_DENIED,		/* [listen] allow_uids/allow_gids */
	SESSION_CLOSE_MAX_CONNECTIONS,	/* refused: [listen] max_connections */
	SESSION_CLOSE_NREASONS
};

TAILQ_HEAD(session_list, session);

/*
 * A configuration generation: the config, TLS context and credentials a
 * reload produces.  A session keeps the generation it started under until
 * it ends, so a reload never disturbs a live session.
 */
struct session_gen {
	struct config		*cfg;
	struct tls_ctx		*tls;
	struct auth_creds	*creds;
	unsigned		 id;
	bool			 owns_cfg;
	atomic_uint		 refs;		/* worker threads share it */
};

/*
 * session_gen_new(cfg, tls, creds, id, owns_cfg): owns ${tls} and
 * ${creds}, and ${cfg} if ${owns_cfg} (the start-up configuration stays
 * with main, which compares reloads with it, while the generation and its
 * key and credentials go with its last session); one reference.
 */
struct session_gen *session_gen_new(struct config *cfg, struct tls_ctx *tls,
	    struct auth_creds *creds, unsigned id, bool owns_cfg);
struct session_gen *session_gen_ref(struct session_gen *g);
/* session_gen_unref(g): the last reference frees everything; NULL ok. */
void	session_gen_unref(struct session_gen *g);

/* Handshake latency histogram bounds, in milliseconds. */
#define SESSION_HS_BUCKETS_MS	{ 5, 10, 25, 50, 100, 250, 500, 1000, 2500, \
				  5000, 10000 }
#define SESSION_HS_NBUCKETS	11
#define SESSION_TLS_REASONS	32	/* distinct TLS failure labels kept */

/* Counters for the admin endpoint. */
struct session_stats {
	uint64_t	 accepted;
	uint64_t	 bytes_app;	/* read from apps, closed sessions */
	uint64_t	 bytes_node;	/* read from nodes, closed sessions */
	uint64_t	 hs_bucket[SESSION_HS_NBUCKETS];	/* cumulative */
	uint64_t	 hs_count;
	uint64_t	 hs_sum_ms;
	uint64_t	 last_hs_ok_ms;	/* last completed handshake */
	uint64_t	 tls_resumed;	/* TLS handshakes that resumed */
	uint64_t	 tls_full;	/* ... and that did not */
	struct {
		char	 label[96];
		uint64_t n;
	}		 tls_fail[SESSION_TLS_REASONS];
	unsigned	 ntls_fail;
	uint64_t	 tls_fail_other;	/* beyond the table */
	uint64_t	 reused;	/* sessions on a pooled node conn */
};

/* session_start() hands sessions to worker event loops through this. */
typedef void	session_dispatch_fn(void *arg, evutil_socket_t fd,
		    const struct sockaddr *sa, int salen,
		    struct upstream_node *target, struct session_gen *gen);

/* What sessions share: one per event loop. */
struct session_ctx {
	struct event_base	*base;
	struct session_gen	*gen;		/* for new sessions */
	struct upstream		*up;
	const struct topo_rewriter *rw;		/* translate mode, else NULL */
	struct session_list	 sessions;
	unsigned		 nsessions;	/* of this event loop */
	unsigned		 nrefusing;	/* of them, being refused */
	atomic_uint		*live;		/* of all loops: max_connections */
	atomic_uint		 live_own;	/* ${live} without workers */
	session_dispatch_fn	*dispatch;	/* workers: where sessions run */
	void			*dispatch_arg;
	uint64_t		 closed[SESSION_CLOSE_NREASONS];
	uint64_t		 rewrites;	/* by closed sessions */
	struct session_stats	 stats;
	char			 authenticator[128];	/* last one logged */
	struct reuse_pool	 pool;		/* idle node connections */
	bool			 reuse_stopped;	/* draining: keep none */
	/* Called when the last session ends (for draining). */
	void			(*on_idle)(void *arg);
	void			*on_idle_arg;
};

/* session_ctx_init(sc, base, gen, up): an empty set; takes a ref on gen. */
void	session_ctx_init(struct session_ctx *sc, struct event_base *base,
	    struct session_gen *gen, struct upstream *up);

/*
 * session_ctx_set_gen(sc, gen): new sessions use ${gen} (ref taken); node
 * connections kept under another generation are closed.
 */
void	session_ctx_set_gen(struct session_ctx *sc, struct session_gen *gen);

/*
 * session_start(sc, fd, sa, salen, target):
 * Take over the accepted app socket ${fd} and start connecting to a node:
 * ${target} only (a per-node listener), or else a contact point with
 * failover (in translate mode the first contact point's node first).
 * On failure the socket is closed.  With sc->dispatch set (workers), the
 * session is counted here and handed over to run elsewhere.
 */
void	session_start(struct session_ctx *sc, evutil_socket_t fd,
	    const struct sockaddr *sa, int salen, struct upstream_node *target);

/*
 * session_adopt(sc, fd, sa, salen, target, gen):
 * A worker's half of session_start(): run a session that sc->live already
 * counts, under configuration generation ${gen}.
 */
void	session_adopt(struct session_ctx *sc, evutil_socket_t fd,
	    const struct sockaddr *sa, int salen, struct upstream_node *target,
	    struct session_gen *gen);

/* session_ctx_live(sc): sessions open in all event loops. */
unsigned session_ctx_live(const struct session_ctx *sc);

/* What the admin endpoint and the status line report. */
struct session_totals {
	struct session_stats	 stats;		/* bytes include open sessions */
	uint64_t		 closed[SESSION_CLOSE_NREASONS];
	uint64_t		 rewrites;
	unsigned		 open;		/* in the loops summed */
	unsigned		 pooled;	/* idle node connections kept */
};

/* session_ctx_totals(sc, t): ${sc}'s figures (from its own thread). */
void	session_ctx_totals(const struct session_ctx *sc,
	    struct session_totals *t);
/* session_totals_add(sum, t): add ${t} into ${sum}. */
void	session_totals_add(struct session_totals *sum,
	    const struct session_totals *t);

/*
 * session_refuse(sc, fd, sa, salen, reason, why):
 * Take over the accepted app socket ${fd} of a refused app without going
 * near a node: answer its first request with a CQL ERROR saying ${why}
 * (waiting at most SESSION_REFUSE_MS for it), then close as ${reason}:
 * SESSION_CLOSE_DENIED (a SERVER_ERROR to the app) or
 * SESSION_CLOSE_MAX_CONNECTIONS (OVERLOADED, which drivers retry
 * elsewhere or later).  With SESSION_REFUSE_MAX refusals already waiting
 * on this loop, ${fd} is closed at once: a flood must not hold
 * descriptors.
 */
#define SESSION_REFUSE_MS	1000
#define SESSION_REFUSE_MAX	64
void	session_refuse(struct session_ctx *sc, evutil_socket_t fd,
	    const struct sockaddr *sa, int salen,
	    enum session_close_reason reason, const char *why);

/* session_close(s, reason): the one way a session ends. */
void	session_close(struct session *s, enum session_close_reason reason);

/*
 * session_close_all(sc, reason): end every session now, and close the
 * idle node connections kept for reuse.
 */
void	session_close_all(struct session_ctx *sc,
	    enum session_close_reason reason);

/*
 * session_ctx_reuse_stop(sc): close the idle node connections kept for
 * reuse and keep no more (draining).
 */
void	session_ctx_reuse_stop(struct session_ctx *sc);

const char *session_close_reason_name(enum session_close_reason r);
/* session_close_reason_label(r): "app_eof", ... (for metrics). */
const char *session_close_reason_label(enum session_close_reason r);

/* session_ctx_bytes(sc, app, node): bytes read so far, live sessions too. */
void	session_ctx_bytes(const struct session_ctx *sc, uint64_t *app,
	    uint64_t *node);

#endif /* !SESSION_H */
