/*
 * upstream: the nodes cqltunnel may connect to.
 *
 * The table starts with the configured contact points and, in translate
 * mode, grows with the nodes learned from the ring (by the control
 * connection or from the apps' own system.local/peers results).  Each node
 * has its resolved address, its health (a node that fails is skipped with
 * capped exponential back-off and retried when the back-off expires), and,
 * in translate mode, its tunnel address: the loopback address apps use to
 * reach it.  Node entries are never freed before the table, so sessions
 * may keep pointers to them; nodes that leave the ring are marked gone.
 */
#ifndef UPSTREAM_H
#define UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "topology.h"
#include "util.h"

#define UPSTREAM_BACKOFF_MIN_MS		500
#define UPSTREAM_BACKOFF_MAX_MS		30000
#define UPSTREAM_MAX_NODES		4096
/* Contact point names are resolved again this often. */
#define UPSTREAM_RERESOLVE_MS		(5 * 60 * 1000)

struct upstream_node {
	char			*host;		/* as configured, or the IP */
	uint16_t		 port;
	unsigned		 index;		/* in the table */
	bool			 contact;	/* a configured contact point */
	bool			 gone;		/* left the ring */
	bool			 seen;		/* in the last ring refresh */
	bool			 resolved;
	struct sockaddr_storage	 addr;
	socklen_t		 addrlen;
	char			 addrstr[UTIL_ADDRSTRLEN];
	char			 resolve_error[128];
	uint64_t		 resolved_ms;
	unsigned		 failures;	/* consecutive */
	uint64_t		 retry_at_ms;	/* back-off deadline */

	/* Learned from the ring. */
	bool			 has_host_id;
	uint8_t			 host_id[16];
	char			 dc[64];
	bool			 down;		/* STATUS_CHANGE DOWN seen */

	/* Translate mode: where apps reach this node. */
	bool			 has_tunnel;
	struct topo_inet	 tunnel;	/* address + listen port */
	char			 tunnel_str[UTIL_ADDRSTRLEN];
	void			*listener;	/* owned by the caller's hooks */
};

struct upstream;

/* Told when a node gets a tunnel address, leaves, or comes back. */
struct upstream_hooks {
	void	(*node_added)(void *arg, struct upstream_node *n);
	void	(*node_gone)(void *arg, struct upstream_node *n);
	void	 *arg;
};

/*
 * upstream_new(c, errs):
 * One node per contact point, each resolved now (first address).  Names
 * that do not resolve are kept, retried at pick time, and reported in
 * ${errs} when it is non-NULL (the configuration check treats them as
 * errors; the daemon only warns).
 */
struct upstream *upstream_new(const struct config *c,
	    struct config_errors *errs);
void	upstream_free(struct upstream *u);
void	upstream_set_hooks(struct upstream *u, const struct upstream_hooks *h);

/* upstream_count(u): nodes a session may fail over between. */
size_t	upstream_count(const struct upstream *u);
/* upstream_node_at(u, i): the i-th node of the table (or NULL). */
struct upstream_node *upstream_node_at(const struct upstream *u, size_t i);
size_t	upstream_size(const struct upstream *u);

/*
 * upstream_pick(u, prefer, skip):
 * The node to try next: ${prefer} if it is usable and not backing off;
 * otherwise round-robin over usable nodes not in back-off (not ${skip}),
 * nodes of [cluster] local_dc first; if all are backing off, the one whose
 * back-off ends first.  Returns NULL if no node has an address.
 */
struct upstream_node *upstream_pick(struct upstream *u,
	    struct upstream_node *prefer, const struct upstream_node *skip);

/* upstream_report(u, n, ok): record a success or a failure of ${n}. */
void	upstream_report(struct upstream *u, struct upstream_node *n, bool ok);

/*
 * upstream_translate(arg, k, out): the topo_resolve_fn of translate mode
 * (${arg} is the struct upstream).  Finds the node ${k} describes (by
 * host_id, else by address), adding it if it is new, gives it a tunnel
 * address if it has none, and stores that address in ${out}.
 */
bool	upstream_translate(void *arg, const struct topo_key *k,
	    struct topo_inet *out);

/*
 * upstream_bind_host_id(u, n, host_id): ${n} (which a connection reached)
 * says it is ${host_id} in its system.local.  Merges a duplicate entry
 * learned under that id from another node's peers table.
 */
void	upstream_bind_host_id(struct upstream *u, struct upstream_node *n,
	    const uint8_t host_id[16]);

/*
 * Ring refresh: upstream_mark_begin() clears the seen marks,
 * upstream_translate() sets them, upstream_mark_end() marks discovered
 * nodes not seen as gone (contact points are never dropped).
 */
void	upstream_mark_begin(struct upstream *u);
void	upstream_mark_end(struct upstream *u);

/*
 * upstream_lock(u) / upstream_unlock(u): hold the table still while
 * reading node fields that can change (health, addresses); the other
 * functions lock by themselves (the lock is recursive).
 */
void	upstream_lock(struct upstream *u);
void	upstream_unlock(struct upstream *u);

/*
 * upstream_node_addr(u, n, ss, len, label, size): copy ${n}'s current
 * address and its label ("ip:port", or the host while unresolved).
 */
void	upstream_node_addr(struct upstream *u, const struct upstream_node *n,
	    struct sockaddr_storage *ss, socklen_t *len, char *label,
	    size_t size);

/* upstream_find_inet(u, in): the node with native address ${in}, or NULL. */
struct upstream_node *upstream_find_inet(struct upstream *u,
	    const struct topo_inet *in);

#endif /* !UPSTREAM_H */
