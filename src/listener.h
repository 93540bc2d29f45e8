/*
 * listener: a plaintext listening socket for apps (the main one, or one
 * per node in translate mode).  Enforces
 * [listen] max_connections and backs off on descriptor exhaustion instead
 * of failing.
 */
#ifndef LISTENER_H
#define LISTENER_H

#include <stddef.h>

#include <event2/event.h>

struct config;
struct session_ctx;
struct upstream_node;
struct listener;

/*
 * listener_new(base, c, sc, target, err, errlen):
 * Bind and listen on [listen] address (${target} NULL), or on the tunnel
 * address of node ${target} (translate mode), with the listen port;
 * accepted connections become sessions in ${sc} bound to ${target}.
 * Returns NULL with a reason in ${err}.
 */
struct listener *listener_new(struct event_base *base, const struct config *c,
	    struct session_ctx *sc, struct upstream_node *target, char *err,
	    size_t errlen);

/* listener_free(l): stop accepting and close the socket; NULL is a no-op. */
void	listener_free(struct listener *l);

/* listener_address(l): "127.0.0.1:9042", the bound address. */
const char *listener_address(const struct listener *l);

#endif /* !LISTENER_H */
