/*
 * topology: rewriting of topology result sets and events (see topology.h).
 *
 * A Rows RESULT body is
 *   [int kind=2][int flags][int ncols][bytes paging_state if 0x02]
 *   [short bytes new_metadata_id if 0x08][global spec if 0x01]
 *   ncols x ([ks][table] unless global, [string name][option type])
 *   [int nrows] nrows x ncols x [bytes]
 * Everything up to the rows is copied verbatim; cells are copied one by
 * one, with the address and port cells of each node replaced.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "cql_frame.h"
#include "topology.h"

/* Rows metadata flags. */
#define META_GLOBAL_SPEC	0x0001
#define META_HAS_MORE_PAGES	0x0002
#define META_NO_METADATA	0x0004
#define META_CHANGED		0x0008

/* Query flags. */
#define QUERY_SKIP_METADATA	0x02

/* Type ids of [option]. */
#define TYPE_CUSTOM		0x0000
#define TYPE_INT		0x0009
#define TYPE_UUID		0x000C
#define TYPE_INET		0x0010
#define TYPE_LIST		0x0020
#define TYPE_MAP		0x0021
#define TYPE_SET		0x0022
#define TYPE_UDT		0x0030
#define TYPE_TUPLE		0x0031

#define OPTION_DEPTH_MAX	16
#define NADDR			3

/* Connectable-address columns, in the order drivers prefer them. */
static const char *const addr_cols[NADDR] = {
	"native_transport_address",	/* DSE */
	"native_address",		/* peers_v2 */
	"rpc_address",			/* local, peers */
};
/* The port column that goes with each address column. */
static const char *const port_cols[NADDR] = {
	"native_transport_port",
	"native_port",
	"rpc_port",
};

/* What the metadata of a topology result says about its columns. */
struct topo_meta {
	int32_t		 flags;
	int32_t		 ncols;
	enum topo_table	 table;
	int32_t		 addr[NADDR];	/* column index or -1 */
	int32_t		 port[NADDR];
	int32_t		 host_id;
	int32_t		 peer;		/* peer / broadcast_address */
	int32_t		 dc;		/* data_center */
	int32_t		 rack;
};

static bool
str_eq(const uint8_t *s, size_t n, const char *lit)
{
	size_t	 l = strlen(lit);

	return (n == l && memcmp(s, lit, l) == 0);
}

const char *
topo_table_name(enum topo_table t)
{
	switch (t) {
	case TOPO_TABLE_LOCAL:
		return ("system.local");
	case TOPO_TABLE_PEERS:
		return ("system.peers");
	case TOPO_TABLE_PEERS_V2:
		return ("system.peers_v2");
	default:
		return ("-");
	}
}

static enum topo_table
table_of(const uint8_t *ks, size_t kslen, const uint8_t *tb, size_t tblen)
{
	if (!str_eq(ks, kslen, "system"))
		return (TOPO_TABLE_NONE);
	if (str_eq(tb, tblen, "local"))
		return (TOPO_TABLE_LOCAL);
	if (str_eq(tb, tblen, "peers"))
		return (TOPO_TABLE_PEERS);
	if (str_eq(tb, tblen, "peers_v2"))
		return (TOPO_TABLE_PEERS_V2);
	return (TOPO_TABLE_NONE);
}

/* v5, v6 and DSE_V2 carry result metadata ids. */
static bool
has_metadata_ids(uint8_t version)
{
	return (version == CQL_V5 || version == CQL_V6 ||
	    version == CQL_DSE_V2);
}

/* Query flags are an [int] from v5 on (DSE versions included). */
static bool
has_int_query_flags(uint8_t version)
{
	return (version >= CQL_V5);
}

/* Skip one [option], returning its type id (or 0xFFFF on error). */
static uint16_t
skip_option(struct cql_reader *r, int depth)
{
	const uint8_t	*s;
	size_t		 len;
	uint16_t	 id, n, i;

	if (depth > OPTION_DEPTH_MAX) {
		r->err = true;
		return (0xFFFF);
	}
	id = cql_read_short(r);
	switch (id) {
	case TYPE_CUSTOM:
		(void)cql_read_string(r, &s, &len);
		break;
	case TYPE_LIST:
	case TYPE_SET:
		(void)skip_option(r, depth + 1);
		break;
	case TYPE_MAP:
		(void)skip_option(r, depth + 1);
		(void)skip_option(r, depth + 1);
		break;
	case TYPE_UDT:
		(void)cql_read_string(r, &s, &len);
		(void)cql_read_string(r, &s, &len);
		n = cql_read_short(r);
		for (i = 0; i < n && !r->err; i++) {
			(void)cql_read_string(r, &s, &len);
			(void)skip_option(r, depth + 1);
		}
		break;
	case TYPE_TUPLE:
		n = cql_read_short(r);
		for (i = 0; i < n && !r->err; i++)
			(void)skip_option(r, depth + 1);
		break;
	default:
		break;
	}
	return (r->err ? 0xFFFF : id);
}

/*
 * Parse rows metadata at ${r}.  With ${columns} false, stop once the table
 * is known (for classification).  Returns 1 if it is a topology table, 0 if
 * not, -1 if the reader ran out or the data is malformed (check r->err).
 */
static int
parse_metadata(struct cql_reader *r, struct topo_meta *m, bool columns)
{
	const uint8_t	*ks = NULL, *tb = NULL, *name, *b;
	size_t		 kslen = 0, tblen = 0, namelen;
	int32_t		 i, blen;
	uint16_t	 type;
	int		 k;
	bool		 global;

	memset(m, 0, sizeof(*m));
	for (k = 0; k < NADDR; k++)
		m->addr[k] = m->port[k] = -1;
	m->host_id = m->peer = m->dc = m->rack = -1;
	m->flags = cql_read_int(r);
	m->ncols = cql_read_int(r);
	if (r->err)
		return (-1);
	if (m->ncols < 0 || (size_t)m->ncols > r->len) {
		r->err = true;
		return (-1);
	}
	if (m->flags & META_HAS_MORE_PAGES)
		(void)cql_read_bytes(r, &b, &blen);
	if (m->flags & META_CHANGED) {
		uint16_t n = cql_read_short(r);

		(void)cql_skip(r, n);
	}
	if (r->err)
		return (-1);
	if (m->flags & META_NO_METADATA)
		return (0);
	global = (m->flags & META_GLOBAL_SPEC) != 0;
	if (global) {
		(void)cql_read_string(r, &ks, &kslen);
		(void)cql_read_string(r, &tb, &tblen);
	}
	for (i = 0; i < m->ncols; i++) {
		if (!global) {
			const uint8_t	*cks, *ctb;
			size_t		 ckslen, ctblen;

			(void)cql_read_string(r, &cks, &ckslen);
			(void)cql_read_string(r, &ctb, &ctblen);
			if (i == 0) {
				ks = cks;
				kslen = ckslen;
				tb = ctb;
				tblen = ctblen;
			}
		}
		if (i == 0 || global) {
			if (r->err)
				return (-1);
			m->table = table_of(ks, kslen, tb, tblen);
			if (m->table == TOPO_TABLE_NONE)
				return (0);
			if (!columns)
				return (1);
		}
		(void)cql_read_string(r, &name, &namelen);
		type = skip_option(r, 0);
		if (r->err)
			return (-1);
		for (k = 0; k < NADDR; k++) {
			if (type == TYPE_INET && str_eq(name, namelen,
			    addr_cols[k]))
				m->addr[k] = i;
			if (type == TYPE_INT && str_eq(name, namelen,
			    port_cols[k]))
				m->port[k] = i;
		}
		if (str_eq(name, namelen, "data_center"))
			m->dc = i;
		if (str_eq(name, namelen, "rack"))
			m->rack = i;
		if (type == TYPE_UUID && str_eq(name, namelen, "host_id"))
			m->host_id = i;
		if (type == TYPE_INET && (str_eq(name, namelen, "peer") ||
		    str_eq(name, namelen, "broadcast_address")))
			m->peer = i;
	}
	if (m->ncols == 0)
		return (0);
	return (1);
}

/*
 * Skip the head of a Prepared body up to its result metadata: [short
 * bytes id], the result metadata id where the version has one, and the
 * prepared (bind variable) metadata.
 */
static void
skip_prepared_head(struct cql_reader *r, uint8_t version, const uint8_t **id,
    size_t *idlen)
{
	const uint8_t	*s;
	size_t		 len;
	int32_t		 flags, ncols, npk, i;
	uint16_t	 n;

	n = cql_read_short(r);
	*id = r->p + r->off;
	*idlen = n;
	(void)cql_skip(r, n);
	if (has_metadata_ids(version)) {
		n = cql_read_short(r);
		(void)cql_skip(r, n);
	}
	flags = cql_read_int(r);
	ncols = cql_read_int(r);
	if (r->err || ncols < 0 || (size_t)ncols > r->len) {
		r->err = true;
		return;
	}
	if (version >= CQL_V4) {
		npk = cql_read_int(r);
		if (npk < 0 || (size_t)npk > r->len) {
			r->err = true;
			return;
		}
		(void)cql_skip(r, (size_t)npk * 2);
	}
	if (flags & META_GLOBAL_SPEC) {
		(void)cql_read_string(r, &s, &len);
		(void)cql_read_string(r, &s, &len);
	}
	for (i = 0; i < ncols && !r->err; i++) {
		if (!(flags & META_GLOBAL_SPEC)) {
			(void)cql_read_string(r, &s, &len);
			(void)cql_read_string(r, &s, &len);
		}
		(void)cql_read_string(r, &s, &len);
		(void)skip_option(r, 0);
	}
}

int
topo_result_classify(uint8_t version, const uint8_t *body, size_t have,
    size_t total, enum topo_table *table, int32_t *kind, size_t *need)
{
	struct cql_reader	 r;
	struct topo_meta	 m;
	const uint8_t		*id;
	size_t			 idlen;
	int			 rc;

	*table = TOPO_TABLE_NONE;
	*kind = 0;
	cql_reader_init(&r, body, have);
	*kind = cql_read_int(&r);
	if (r.err)
		goto more;
	switch (*kind) {
	case TOPO_RESULT_ROWS:
		rc = parse_metadata(&r, &m, false);
		break;
	case TOPO_RESULT_PREPARED:
		skip_prepared_head(&r, version, &id, &idlen);
		rc = r.err ? -1 : parse_metadata(&r, &m, false);
		break;
	default:
		return (0);
	}
	if (rc >= 0) {
		*table = m.table;
		return (rc);
	}
more:
	if (have >= total)
		return (-1);
	*need = have * 2 > 1024 ? have * 2 : 1024;
	if (*need > total)
		*need = total;
	return (-2);
}

int
topo_prepared_learn(struct topo_prepared *p, uint8_t version,
    const uint8_t *body, size_t n)
{
	struct cql_reader	 r;
	struct topo_meta	 m;
	const uint8_t		*id;
	size_t			 idlen;
	int			 rc;

	cql_reader_init(&r, body, n);
	if (cql_read_int(&r) != TOPO_RESULT_PREPARED)
		return (r.err ? -1 : 0);
	skip_prepared_head(&r, version, &id, &idlen);
	if (r.err)
		return (-1);
	if ((rc = parse_metadata(&r, &m, false)) != 1)
		return (rc);
	if (idlen == 0 || idlen > TOPO_ID_MAX)
		return (0);
	if (topo_prepared_has(p, id, idlen))
		return (1);
	p->ent[p->next].len = (uint8_t)idlen;
	memcpy(p->ent[p->next].id, id, idlen);
	p->next = (p->next + 1) % TOPO_PREPARED_MAX;
	if (p->n < TOPO_PREPARED_MAX)
		p->n++;
	return (1);
}

bool
topo_prepared_has(const struct topo_prepared *p, const uint8_t *id,
    size_t len)
{
	unsigned	 i;

	for (i = 0; i < p->n; i++)
		if (p->ent[i].len == len && memcmp(p->ent[i].id, id, len) == 0)
			return (true);
	return (false);
}

int
topo_execute_need_metadata(const struct topo_prepared *p, uint8_t version,
    uint8_t *body, size_t n)
{
	struct cql_reader	 r;
	const uint8_t		*id;
	size_t			 off;
	uint16_t		 idlen, mlen;

	if (p->n == 0)
		return (0);
	cql_reader_init(&r, body, n);
	idlen = cql_read_short(&r);
	id = body + r.off;
	(void)cql_skip(&r, idlen);
	if (r.err)
		return (-2);
	if (!topo_prepared_has(p, id, idlen))
		return (0);
	if (has_metadata_ids(version)) {
		mlen = cql_read_short(&r);
		(void)cql_skip(&r, mlen);
	}
	(void)cql_read_short(&r);		/* consistency */
	if (has_int_query_flags(version)) {
		(void)cql_skip(&r, 4);
		off = r.off - 1;		/* low byte of the [int] */
	} else {
		(void)cql_skip(&r, 1);
		off = r.off - 1;
	}
	if (r.err)
		return (-2);
	if ((body[off] & QUERY_SKIP_METADATA) == 0)
		return (0);
	body[off] &= (uint8_t)~QUERY_SKIP_METADATA;
	return (1);
}

/* A cell of the current row. */
struct cell {
	const uint8_t	*p;
	int32_t		 len;		/* -1 = null */
};

/* Fill ${in} from an inet cell (4 or 16 bytes); false if absent. */
static bool
cell_inet(const struct cell *c, struct topo_inet *in)
{
	static const uint8_t zero[16];

	if (c->len != 4 && c->len != 16)
		return (false);
	if (memcmp(c->p, zero, (size_t)c->len) == 0)
		return (false);		/* 0.0.0.0 or :: */
	in->len = (uint8_t)c->len;
	memcpy(in->addr, c->p, (size_t)c->len);
	return (true);
}

static int32_t
cell_int(const struct cell *c)
{
	if (c->len != 4)
		return (-1);
	return ((int32_t)((uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 |
	    (uint32_t)c->p[2] << 8 | c->p[3]));
}

/* The key of one row: host_id, the preferred address with its port, peer. */
static void
row_key(const struct topo_meta *m, const struct cell *cells,
    struct topo_key *k)
{
	int	 i;

	memset(k, 0, sizeof(*k));
	k->table = m->table;
	k->native.port = -1;
	k->peer.port = -1;
	if (m->host_id >= 0 && cells[m->host_id].len == 16) {
		k->has_host_id = true;
		memcpy(k->host_id, cells[m->host_id].p, 16);
	}
	if (m->peer >= 0)
		(void)cell_inet(&cells[m->peer], &k->peer);
	if (m->dc >= 0 && cells[m->dc].len > 0) {
		k->dc = cells[m->dc].p;
		k->dclen = (size_t)cells[m->dc].len;
	}
	if (m->rack >= 0 && cells[m->rack].len > 0) {
		k->rack = cells[m->rack].p;
		k->racklen = (size_t)cells[m->rack].len;
	}
	for (i = 0; i < NADDR; i++) {
		if (m->addr[i] < 0 || !cell_inet(&cells[m->addr[i]],
		    &k->native))
			continue;
		if (m->port[i] >= 0)
			k->native.port = cell_int(&cells[m->port[i]]);
		break;
	}
	if (k->native.len == 0) {
		/* Address null or 0.0.0.0: drivers fall back to peer. */
		k->native = k->peer;
		for (i = 0; i < NADDR; i++)
			if (m->port[i] >= 0 && k->native.port == -1)
				k->native.port = cell_int(&cells[m->port[i]]);
	}
}

ssize_t
topo_rewrite_rows(const struct topo_rewriter *rw, uint8_t version,
    const uint8_t *body, size_t n, uint8_t *out, size_t cap, size_t *need)
{
	struct cql_reader	 r;
	struct cql_writer	 w;
	struct topo_meta	 m;
	struct topo_key		 key;
	struct topo_inet	 dest;
	struct cell		 cells[128];
	uint8_t			 portbuf[4];
	int32_t			 nrows, row, i, nrewrite = 0;
	size_t			 head;
	int			 k;
	bool			 mapped, is_addr, is_port;

	(void)version;
	cql_reader_init(&r, body, n);
	if (cql_read_int(&r) != TOPO_RESULT_ROWS)
		return (-1);
	if (parse_metadata(&r, &m, true) != 1)
		return (-1);
	/* The topology tables have a few dozen columns at most. */
	if (m.ncols > (int32_t)(sizeof(cells) / sizeof(cells[0])))
		return (-1);
	nrows = cql_read_int(&r);
	if (r.err || nrows < 0)
		return (-1);
	for (k = 0; k < NADDR; k++)
		nrewrite += (m.addr[k] >= 0) + (m.port[k] >= 0);
	head = r.off;
	cql_writer_init(&w, out, cap);
	cql_write_raw(&w, body, head);
	for (row = 0; row < nrows; row++) {
		for (i = 0; i < m.ncols; i++)
			(void)cql_read_bytes(&r, &cells[i].p, &cells[i].len);
		if (r.err)
			return (-1);
		row_key(&m, cells, &key);
		mapped = rw->resolve(rw->arg, &key, &dest) &&
		    (dest.len == 4 || dest.len == 16) && dest.port >= 0;
		for (i = 0; i < m.ncols; i++) {
			is_addr = is_port = false;
			for (k = 0; k < NADDR; k++) {
				is_addr |= m.addr[k] == i;
				is_port |= m.port[k] == i;
			}
			if (mapped && is_addr) {
				cql_write_bytes(&w, dest.addr, dest.len);
			} else if (mapped && is_port) {
				portbuf[0] = (uint8_t)((uint32_t)dest.port >> 24);
				portbuf[1] = (uint8_t)((uint32_t)dest.port >> 16);
				portbuf[2] = (uint8_t)((uint32_t)dest.port >> 8);
				portbuf[3] = (uint8_t)dest.port;
				cql_write_bytes(&w, portbuf, 4);
			} else
				cql_write_bytes(&w, cells[i].len < 0 ? NULL :
				    cells[i].p, cells[i].len);
		}
	}
	if (cql_reader_left(&r) != 0)
		return (-1);
	if (w.err) {
		/* Each rewritten cell grows by at most 16 bytes (null -> ::). */
		*need = n + (size_t)nrows * (size_t)nrewrite * 16;
		return (-2);
	}
	return ((ssize_t)w.len);
}

ssize_t
topo_rewrite_event(const struct topo_rewriter *rw, const uint8_t *body,
    size_t n, uint8_t *out, size_t cap)
{
	struct cql_reader	 r;
	struct cql_writer	 w;
	struct topo_key		 key;
	struct topo_inet	 dest;
	const uint8_t		*type, *change, *addr;
	size_t			 typelen, changelen, head;
	uint8_t			 alen;

	if (cap < n)
		return (0);
	cql_reader_init(&r, body, n);
	(void)cql_read_string(&r, &type, &typelen);
	if (r.err)
		return (-1);
	if (!str_eq(type, typelen, "TOPOLOGY_CHANGE") &&
	    !str_eq(type, typelen, "STATUS_CHANGE")) {
		memcpy(out, body, n);
		return ((ssize_t)n);
	}
	(void)cql_read_string(&r, &change, &changelen);
	head = r.off;
	alen = cql_read_byte(&r);
	addr = r.p + r.off;
	if (r.err || (alen != 4 && alen != 16) || !cql_skip(&r, alen))
		return (-1);
	memset(&key, 0, sizeof(key));
	key.peer.port = -1;
	key.native.len = alen;
	memcpy(key.native.addr, addr, alen);
	key.native.port = cql_read_int(&r);
	if (r.err || cql_reader_left(&r) != 0)
		return (-1);
	if (!rw->resolve(rw->arg, &key, &dest) ||
	    (dest.len != 4 && dest.len != 16) || dest.port < 0) {
		memcpy(out, body, n);
		return ((ssize_t)n);
	}
	cql_writer_init(&w, out, cap);
	cql_write_raw(&w, body, head);
	cql_write_byte(&w, dest.len);
	cql_write_raw(&w, dest.addr, dest.len);
	cql_write_int(&w, dest.port);
	return (w.err ? 0 : (ssize_t)w.len);
}
