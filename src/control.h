/*
 * control: translate mode's view of the ring.
 *
 * The control connection is cqltunnel's own TLS + authenticated CQL
 * connection to one node (the first contact point while it is up).  It
 * registers for TOPOLOGY_CHANGE and STATUS_CHANGE events and reads
 * system.local and system.peers_v2 (system.peers on older nodes) at start,
 * after topology events and periodically, so every node has a tunnel
 * address and a listener before an app learns of it.  The module owns the
 * per-node listeners (created as nodes join, closed as they leave) and the
 * rewriter that sessions use.  Apps do not depend on it: if the control
 * connection is down, nodes found in the apps' own results get addresses
 * and listeners the same way.
 */
#ifndef CONTROL_H
#define CONTROL_H

#include <stdbool.h>

#include <event2/event.h>

struct config;
struct upstream;
struct session_ctx;
struct topo_rewriter;
struct control;

/*
 * control_new(base, c, up, sc):
 * Set up translate mode for ${sc} (sets sc->rw) and start the control
 * connection, which uses the TLS context and credentials of sc->gen as of
 * each connect.  ${c} (the configuration cqltunnel started with) must live
 * as long as the control.  With [cluster] topology = pin there is no
 * translation: the connection only proves that a node is reachable (for
 * the admin endpoint's /readyz).
 */
struct control *control_new(struct event_base *base, const struct config *c,
	    struct upstream *up, struct session_ctx *sc);

/*
 * control_ready(ctl, why): whether the control connection is up (TLS and
 * CQL handshake done, ring read); if not, *why says what failed last.
 */
bool	control_ready(const struct control *ctl, const char **why);

/*
 * control_reload(ctl): after a reload, reconnect a connection made with an
 * older generation than sc->gen; NULL is a no-op.
 */
void	control_reload(struct control *ctl);

/* control_stop_listening(ctl): close the per-node listeners (draining). */
void	control_stop_listening(struct control *ctl);

/* control_free(ctl): close everything; NULL is a no-op. */
void	control_free(struct control *ctl);

#endif /* !CONTROL_H */
