/*
 * upstream: the nodes cqltunnel may connect to (the contact points), their
 * resolved addresses, and their health: a node that fails is skipped with
 * capped exponential back-off and retried when its back-off expires.
 */
#ifndef UPSTREAM_H
#define UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "util.h"

#define UPSTREAM_BACKOFF_MIN_MS		500
#define UPSTREAM_BACKOFF_MAX_MS		30000

struct upstream_node {
	char			*host;		/* as configured */
	uint16_t		 port;
	bool			 resolved;
	struct sockaddr_storage	 addr;
	socklen_t		 addrlen;
	char			 addrstr[UTIL_ADDRSTRLEN];
	char			 resolve_error[128];
	unsigned		 failures;	/* consecutive */
	uint64_t		 retry_at_ms;	/* back-off deadline */
};

struct upstream;

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

size_t	upstream_count(const struct upstream *u);

/*
 * upstream_pick(u, skip):
 * The next node to try, round-robin over nodes not in back-off (and not
 * ${skip}); if all are backing off, the one whose back-off ends first.
 * Returns NULL if no node has an address.
 */
struct upstream_node *upstream_pick(struct upstream *u,
	    const struct upstream_node *skip);

/* upstream_report(u, n, ok): record a success or a failure of ${n}. */
void	upstream_report(struct upstream *u, struct upstream_node *n, bool ok);

#endif /* !UPSTREAM_H */
