/*
 * reuse: idle, authenticated node connections (see reuse.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "cql_frame.h"
#include "log.h"
#include "reuse.h"
#include "session.h"
#include "util.h"

struct reuse_entry {
	TAILQ_ENTRY(reuse_entry) link;
	struct reuse_pool	*pool;
	struct reuse_conn	 c;
	struct event		*ev;		/* readable, or the deadline */
	uint64_t		 deadline_ms;
};

static void	reuse_entry_cb(evutil_socket_t fd, short what, void *arg);

const char *
reuse_close_name(enum reuse_close why)
{
	switch (why) {
	case REUSE_CLOSE_IDLE:
		return ("idle time limit");
	case REUSE_CLOSE_EOF:
		return ("node closed it");
	case REUSE_CLOSE_ERROR:
		return ("connection error");
	case REUSE_CLOSE_DATA:
		return ("node sent unexpected data");
	case REUSE_CLOSE_FLUSH:
		return ("pool emptied");
	}
	return ("unknown");
}

void
reuse_pool_init(struct reuse_pool *p, struct event_base *base)
{
	p->base = base;
	TAILQ_INIT(&p->entries);
	atomic_init(&p->count, 0);
}

unsigned
reuse_pool_count(const struct reuse_pool *p)
{
	return (atomic_load_explicit(&p->count, memory_order_relaxed));
}

void
reuse_conn_close(struct reuse_conn *c, enum reuse_close why)
{
	if (c->ssl != NULL) {
		/*
		 * close_notify keeps the TLS session resumable (see
		 * session_node_drop()); pointless when the node is gone.
		 */
		if (why != REUSE_CLOSE_EOF && why != REUSE_CLOSE_ERROR)
			(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd != -1) {
		evutil_closesocket(c->fd);
		c->fd = -1;
	}
	free(c->startup);
	free(c->supported);
	c->startup = c->supported = NULL;
	session_gen_unref(c->gen);
	c->gen = NULL;
}

/* Unlink ${e} and free it, leaving its connection in ${out} (or closed). */
static void
reuse_entry_remove(struct reuse_entry *e, struct reuse_conn *out,
    enum reuse_close why)
{
	struct reuse_pool	*p = e->pool;

	TAILQ_REMOVE(&p->entries, e, link);
	atomic_fetch_sub_explicit(&p->count, 1, memory_order_relaxed);
	event_free(e->ev);
	if (out != NULL)
		*out = e->c;
	else {
		log_debug("pooled connection to node %s closed: %s",
		    e->c.label, reuse_close_name(why));
		reuse_conn_close(&e->c, why);
	}
	free(e);
}

/*
 * Whether an idle connection is still fit: read whatever has arrived.
 * TLS messages that carry no data (a NewSessionTicket) are fine; data, an
 * end or an error are not.  Returns true, or false with *why set.
 */
static bool
reuse_conn_fit(struct reuse_conn *c, enum reuse_close *why)
{
	unsigned char	 buf[512];
	size_t		 got;
	int		 r;

	ERR_clear_error();
	r = SSL_read_ex(c->ssl, buf, sizeof(buf), &got);
	if (r > 0) {
		*why = REUSE_CLOSE_DATA;
		return (false);
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		(void)SSL_free_buffers(c->ssl);
		return (true);
	case SSL_ERROR_ZERO_RETURN:
		*why = REUSE_CLOSE_EOF;
		break;
	case SSL_ERROR_SYSCALL:
		*why = ERR_peek_error() == 0 ? REUSE_CLOSE_EOF :
		    REUSE_CLOSE_ERROR;
		break;
	default:
		*why = REUSE_CLOSE_ERROR;
		break;
	}
	ERR_clear_error();
	return (false);
}

/* Arm ${e}'s event for what is left of its idle time. */
static void
reuse_entry_arm(struct reuse_entry *e)
{
	uint64_t	 now = util_now_ms(), left;
	struct timeval	 tv;

	left = e->deadline_ms > now ? e->deadline_ms - now : 0;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	event_add(e->ev, &tv);
}

static void
reuse_entry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct reuse_entry	*e = arg;
	enum reuse_close	 why = REUSE_CLOSE_IDLE;

	(void)fd;
	if ((what & EV_READ) && reuse_conn_fit(&e->c, &why) &&
	    util_now_ms() < e->deadline_ms) {
		reuse_entry_arm(e);
		return;
	}
	reuse_entry_remove(e, NULL, why);
}

int
reuse_pool_put(struct reuse_pool *p, struct reuse_conn *c, unsigned max_idle,
    unsigned idle_ms)
{
	struct reuse_entry	*e;
	unsigned		 n = 0;

	TAILQ_FOREACH(e, &p->entries, link)
		if (e->c.unode == c->unode)
			n++;
	if (n >= max_idle)
		return (-1);
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return (-1);
	e->ev = event_new(p->base, c->fd, EV_READ, reuse_entry_cb, e);
	if (e->ev == NULL) {
		free(e);
		return (-1);
	}
	e->pool = p;
	e->c = *c;
	e->deadline_ms = util_now_ms() + idle_ms;
	TAILQ_INSERT_HEAD(&p->entries, e, link);
	atomic_fetch_add_explicit(&p->count, 1, memory_order_relaxed);
	reuse_entry_arm(e);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	return (0);
}

bool
reuse_pool_take(struct reuse_pool *p, const struct upstream_node *unode,
    const struct session_gen *gen, uint8_t version, const uint8_t *startup,
    size_t len, struct reuse_conn *out)
{
	struct reuse_entry	*e, *next;
	enum reuse_close	 why;

	for (e = TAILQ_FIRST(&p->entries); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		if (e->c.unode != unode || e->c.gen != gen ||
		    !reuse_startup_match(&e->c, version, startup, len))
			continue;
		/* The node may have closed it since the loop last looked. */
		if (!reuse_conn_fit(&e->c, &why)) {
			reuse_entry_remove(e, NULL, why);
			continue;
		}
		reuse_entry_remove(e, out, REUSE_CLOSE_FLUSH);
		return (true);
	}
	return (false);
}

bool
reuse_pool_has(const struct reuse_pool *p, const struct upstream_node *unode,
    const struct session_gen *gen)
{
	const struct reuse_entry	*e;

	TAILQ_FOREACH(e, &p->entries, link)
		if (e->c.unode == unode && e->c.gen == gen)
			return (true);
	return (false);
}

const uint8_t *
reuse_pool_supported(const struct reuse_pool *p,
    const struct upstream_node *unode, const struct session_gen *gen,
    uint8_t version, size_t *len)
{
	const struct reuse_entry	*e;

	TAILQ_FOREACH(e, &p->entries, link) {
		if (e->c.unode == unode && e->c.gen == gen &&
		    e->c.version == version && e->c.supported != NULL) {
			*len = e->c.supported_len;
			return (e->c.supported);
		}
	}
	return (NULL);
}

void
reuse_pool_flush(struct reuse_pool *p, const struct session_gen *keep,
    const struct upstream_node *unode)
{
	struct reuse_entry	*e, *next;

	for (e = TAILQ_FIRST(&p->entries); e != NULL; e = next) {
		next = TAILQ_NEXT(e, link);
		if (unode != NULL ? e->c.unode == unode :
		    keep == NULL || e->c.gen != keep)
			reuse_entry_remove(e, NULL, REUSE_CLOSE_FLUSH);
	}
}

void
reuse_pool_free(struct reuse_pool *p)
{
	reuse_pool_flush(p, NULL, NULL);
}

bool
reuse_startup_ok(uint8_t version, const uint8_t *body, size_t len)
{
	char	 comp[16];

	if (version != CQL_V3 && version != CQL_V4 && version != CQL_DSE_V1 &&
	    version != CQL_DSE_V2)
		return (false);
	if (cql_startup_compression(body, len, comp, sizeof(comp)) == -1)
		return (false);
	return (comp[0] == '\0');
}

bool
reuse_startup_match(const struct reuse_conn *c, uint8_t version,
    const uint8_t *body, size_t len)
{
	return (c->version == version && c->startup_len == len &&
	    (len == 0 || memcmp(c->startup, body, len) == 0));
}
