/*
 * reuse: idle, authenticated node connections kept for the next app.
 *
 * An app that connects per request pays, through the tunnel, for a TCP
 * connect, a TLS handshake and three CQL round trips to the node.  When
 * such a session ends cleanly (see relay_reusable() for what "cleanly"
 * means) the session hands its node connection to the pool of its event
 * loop; the next app whose STARTUP is byte for byte the one that opened
 * the connection, in the same protocol version and under the same
 * configuration generation, gets it instead of a new one.
 *
 * An entry is watched while it waits: the node closing it, an error, or
 * any application data from the node (which no request asked for) closes
 * it, and so does the idle time limit.  A pool belongs to one event loop
 * and is never touched from another thread (the count excepted).
 */
#ifndef REUSE_H
#define REUSE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "util.h"

struct session_gen;
struct upstream_node;
struct reuse_entry;

/* A node connection, authenticated, between two app sessions. */
struct reuse_conn {
	struct upstream_node	*unode;
	struct session_gen	*gen;		/* a reference */
	evutil_socket_t		 fd;
	SSL			*ssl;
	uint8_t			 version;	/* of the STARTUP */
	uint8_t			*startup;	/* STARTUP body (options) */
	size_t			 startup_len;
	uint8_t			*supported;	/* SUPPORTED body, or NULL */
	size_t			 supported_len;
	char			 authenticator[128];
	char			 label[UTIL_ADDRSTRLEN];	/* for logs */
};

TAILQ_HEAD(reuse_list, reuse_entry);

struct reuse_pool {
	struct event_base	*base;
	struct reuse_list	 entries;	/* last kept first */
	atomic_uint		 count;		/* read by other threads */
};

/* Why a pooled connection was closed, for the log. */
enum reuse_close {
	REUSE_CLOSE_IDLE,	/* idle time limit */
	REUSE_CLOSE_EOF,	/* the node closed it */
	REUSE_CLOSE_ERROR,	/* I/O or TLS error */
	REUSE_CLOSE_DATA,	/* the node sent data nobody asked for */
	REUSE_CLOSE_FLUSH,	/* reload, shutdown, or the node is down */
};

void	reuse_pool_init(struct reuse_pool *p, struct event_base *base);
/* reuse_pool_free(p): close every entry (with close_notify). */
void	reuse_pool_free(struct reuse_pool *p);

/* reuse_pool_count(p): entries now (any thread, relaxed). */
unsigned reuse_pool_count(const struct reuse_pool *p);

/*
 * reuse_pool_put(p, c, max_idle, idle_ms):
 * Keep ${c} for at most ${idle_ms} if its node has fewer than ${max_idle}
 * entries.  Returns 0 when the pool took ${c} over (its fields are then
 * the pool's), -1 when the caller keeps it.
 */
int	reuse_pool_put(struct reuse_pool *p, struct reuse_conn *c,
	    unsigned max_idle, unsigned idle_ms);

/*
 * reuse_pool_take(p, unode, gen, version, startup, len, out):
 * Hand over the newest live entry for ${unode} under ${gen} whose STARTUP
 * was ${version} and the ${len} bytes at ${startup}.  Entries found dead
 * on the way are closed.  Returns true with ${out} filled (the caller now
 * owns it), false when none fits.
 */
bool	reuse_pool_take(struct reuse_pool *p, const struct upstream_node *unode,
	    const struct session_gen *gen, uint8_t version,
	    const uint8_t *startup, size_t len, struct reuse_conn *out);

/*
 * reuse_pool_has(p, unode, gen): whether ${unode} has an entry under
 * ${gen}.
 */
bool	reuse_pool_has(const struct reuse_pool *p,
	    const struct upstream_node *unode, const struct session_gen *gen);

/*
 * reuse_pool_supported(p, unode, gen, version, len):
 * The SUPPORTED body a node connection of the pool got from ${unode} for
 * an OPTIONS in ${version}, or NULL.  Valid until the pool next changes.
 */
const uint8_t *reuse_pool_supported(const struct reuse_pool *p,
	    const struct upstream_node *unode, const struct session_gen *gen,
	    uint8_t version, size_t *len);

/*
 * reuse_pool_flush(p, keep, unode):
 * Close the entries not of generation ${keep} (NULL: all of them), or,
 * when ${unode} is not NULL, only that node's.
 */
void	reuse_pool_flush(struct reuse_pool *p, const struct session_gen *keep,
	    const struct upstream_node *unode);

/* reuse_conn_close(c, why): close the connection and free what it holds. */
void	reuse_conn_close(struct reuse_conn *c, enum reuse_close why);

/*
 * reuse_startup_ok(version, body, len):
 * Whether a session that sent this STARTUP can share node connections:
 * v3, v4 or DSE framing, and a well-formed options map without
 * COMPRESSION.
 */
bool	reuse_startup_ok(uint8_t version, const uint8_t *body, size_t len);

/*
 * reuse_startup_match(c, version, body, len): whether ${c} was opened by
 * the same STARTUP: version equal and options map identical, byte for
 * byte (so the same driver name and version, CQL version, and so on).
 */
bool	reuse_startup_match(const struct reuse_conn *c, uint8_t version,
	    const uint8_t *body, size_t len);

const char *reuse_close_name(enum reuse_close why);

#endif /* !REUSE_H */
