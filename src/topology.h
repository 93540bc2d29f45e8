/*
 * topology: the pure part of address translation (no libevent, no OpenSSL,
 * no allocation).
 *
 * Drivers learn where the nodes are from system.local, system.peers and
 * system.peers_v2 result sets and from TOPOLOGY_CHANGE / STATUS_CHANGE
 * events.  cqltunnel gives every node its own loopback address and
 * rewrites, by column name, the connectable address and port of each node
 * in those results and events, so a driver dials the tunnel for every node.
 * Identity columns (peer, host_id, tokens, data_center, rack, versions) are
 * never touched.
 *
 * Which tunnel address a node gets is not decided here: the caller supplies
 * a resolve function (see struct topo_rewriter).  This module also keeps the
 * ids of prepared statements that select from those tables, so that an
 * EXECUTE of one can be made to return its metadata (the skip_metadata flag
 * is cleared) and the rows can be recognised.
 */
#ifndef TOPOLOGY_H
#define TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum topo_table {
	TOPO_TABLE_NONE,
	TOPO_TABLE_LOCAL,	/* system.local */
	TOPO_TABLE_PEERS,	/* system.peers */
	TOPO_TABLE_PEERS_V2,	/* system.peers_v2 */
};

/* RESULT kinds (the body's first [int]). */
enum topo_result_kind {
	TOPO_RESULT_VOID = 1,
	TOPO_RESULT_ROWS = 2,
	TOPO_RESULT_SET_KEYSPACE = 3,
	TOPO_RESULT_PREPARED = 4,
	TOPO_RESULT_SCHEMA_CHANGE = 5,
};

/* An address as the protocol carries it: 4 or 16 bytes, plus a port. */
struct topo_inet {
	uint8_t		len;		/* 4, 16, or 0 = absent */
	uint8_t		addr[16];
	int32_t		port;		/* -1 when unknown */
};

/* What identifies a node in a row or an event. */
struct topo_key {
	bool		 has_host_id;
	uint8_t		 host_id[16];
	struct topo_inet native;	/* rpc/native address (+ port) */
	struct topo_inet peer;		/* peer or broadcast_address */
	const uint8_t	*dc;		/* data_center, not NUL-terminated */
	size_t		 dclen;
	const uint8_t	*rack;
	size_t		 racklen;
	enum topo_table	 table;		/* NONE for events */
};

/*
 * Resolve ${k} to the tunnel address that should replace it in ${out}
 * (len 4 or 16, port set).  Returns false to leave the row or event
 * untouched.
 */
typedef bool	(*topo_resolve_fn)(void *arg, const struct topo_key *k,
		    struct topo_inet *out);

#define TOPO_ID_MAX		64	/* longest prepared id remembered */
#define TOPO_PREPARED_MAX	64	/* prepared ids remembered */

/* Ids of prepared statements that select from a topology table. */
struct topo_prepared {
	unsigned	n;
	unsigned	next;		/* slot replaced when full */
	struct {
		uint8_t	len;
		uint8_t	id[TOPO_ID_MAX];
	}		ent[TOPO_PREPARED_MAX];
};

struct topo_rewriter {
	topo_resolve_fn		 resolve;
	void			*arg;
	struct topo_prepared	*prepared;	/* shared by all sessions */
};

/*
 * topo_result_classify(version, body, have, total, table):
 * Look at the first ${have} bytes of a RESULT body of ${total} bytes.
 * Returns 1 if it is a Rows result of a topology table (*table set) or a
 * Prepared result whose rows come from one (*table set; the caller should
 * then call topo_prepared_learn on the whole body); 0 if it is neither;
 * -1 if it is malformed.  If ${have} < ${total} and more bytes are needed
 * to decide, returns -2 and stores the number needed in *need.
 */
int	topo_result_classify(uint8_t version, const uint8_t *body, size_t have,
	    size_t total, enum topo_table *table, int32_t *kind, size_t *need);

/*
 * topo_rewrite_rows(rw, version, body, n, out, cap):
 * Rewrite a Rows RESULT body of a topology table into ${out}.  Returns the
 * new body length, -1 if the body is malformed, or, if ${cap} is too
 * small, -2 with the size needed in *need.
 */
ssize_t	topo_rewrite_rows(const struct topo_rewriter *rw, uint8_t version,
	    const uint8_t *body, size_t n, uint8_t *out, size_t cap,
	    size_t *need);

/*
 * topo_prepared_learn(p, version, body, n):
 * Remember the statement id of a Prepared RESULT body whose result
 * metadata names a topology table.  Returns 1 if remembered, 0 if the
 * statement is not a topology one, -1 if malformed.
 */
int	topo_prepared_learn(struct topo_prepared *p, uint8_t version,
	    const uint8_t *body, size_t n);

/* topo_prepared_has(p, id, len): whether ${id} is remembered. */
bool	topo_prepared_has(const struct topo_prepared *p, const uint8_t *id,
	    size_t len);

/*
 * topo_execute_need_metadata(p, version, body, n):
 * For an EXECUTE body (its first ${n} bytes suffice if they reach the
 * query flags): if it executes a remembered statement with skip_metadata
 * set, clear that flag in place and return 1.  Returns 0 if nothing was
 * changed, -1 if malformed, -2 if more bytes are needed.
 */
int	topo_execute_need_metadata(const struct topo_prepared *p,
	    uint8_t version, uint8_t *body, size_t n);

/*
 * topo_rewrite_event(rw, body, n, out, cap):
 * Rewrite the address of a TOPOLOGY_CHANGE or STATUS_CHANGE EVENT body.
 * Returns the new length (the body is copied unchanged for other events
 * or unknown nodes), -1 if malformed, 0 if ${cap} is too small (the
 * result is at most n + 12 bytes).
 */
ssize_t	topo_rewrite_event(const struct topo_rewriter *rw, const uint8_t *body,
	    size_t n, uint8_t *out, size_t cap);

/* topo_table_name(t): "system.peers_v2", ... */
const char *topo_table_name(enum topo_table t);

#endif /* !TOPOLOGY_H */
