/*
 * listener: the plaintext listening socket for apps.  Enforces
 * [listen] max_connections and backs off on descriptor exhaustion instead
 * of failing.
 */
#ifndef LISTENER_H
#define LISTENER_H

#include <stddef.h>

#include <event2/event.h>

struct config;
struct session_ctx;
struct listener;

/*
 * listener_new(base, c, sc, err, errlen):
 * Bind and listen on [listen] address; accepted connections become
 * sessions in ${sc}.  Returns NULL with a reason in ${err}.
 */
struct listener *listener_new(struct event_base *base, const struct config *c,
	    struct session_ctx *sc, char *err, size_t errlen);

/* listener_free(l): stop accepting and close the socket; NULL is a no-op. */
void	listener_free(struct listener *l);

/* listener_address(l): "127.0.0.1:9042", the bound address. */
const char *listener_address(const struct listener *l);

#endif /* !LISTENER_H */
