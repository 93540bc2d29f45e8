/*
 * conn: relay-phase I/O on one socket (see conn.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "conn.h"

/* Per read pass: at most this many scratch-fulls, then yield. */
#define CONN_READ_ROUNDS	4
/* Largest write handed to SSL_write: one TLS record. */
#define CONN_TLS_CHUNK		16384

/*
 * Reads land here before they are appended to ${in}: an idle conn then
 * holds no read buffer.  One per thread (event loop).
 */
static _Thread_local unsigned char conn_scratch[64 * 1024];

/* Read and write events run on this thread, for busy polling. */
static _Thread_local uint64_t conn_nevents;

static void	conn_readcb(evutil_socket_t fd, short what, void *arg);
static void	conn_writecb(evutil_socket_t fd, short what, void *arg);

uint64_t
conn_activity(void)
{
	return (conn_nevents);
}

int
conn_init(struct conn *c, struct event_base *base, evutil_socket_t fd,
    SSL *ssl, size_t low, conn_cb *cb, void *arg)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->ssl = ssl;
	c->low = low;
	c->cb = cb;
	c->arg = arg;
	/* The write event is made when the socket first fills. */
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, conn_readcb, c);
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	if (c->rev == NULL || c->in == NULL || c->out == NULL) {
		conn_free(c);
		return (-1);
	}
	if (ssl != NULL) {
		/*
		 * Take every record the socket holds in one read(2); the
		 * read loop below decrypts them all before it returns, so
		 * nothing waits inside OpenSSL for an event that will not
		 * come.
		 */
		SSL_set_read_ahead(ssl, 1);
		SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		if (!SSL_has_pending(ssl))
			(void)SSL_free_buffers(ssl);
	}
	return (0);
}

void
conn_free(struct conn *c)
{
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	if (c->in != NULL)
		evbuffer_free(c->in);
	if (c->out != NULL)
		evbuffer_free(c->out);
	c->rev = c->wev = NULL;
	c->in = c->out = NULL;
}

void
conn_resume(struct conn *c)
{
	if (!c->reading) {
		c->reading = true;
		event_add(c->rev, NULL);
	}
	/* Decrypted or read-ahead bytes do not make the socket readable. */
	if (c->ssl != NULL && SSL_has_pending(c->ssl))
		event_active(c->rev, EV_READ, 0);
}

void
conn_pause(struct conn *c)
{
	if (c->reading) {
		c->reading = false;
		event_del(c->rev);
	}
}

/*
 * Wait for the socket to take more.  The write event is made the first
 * time: most conns never fill their socket.  Returns 0, or -1 (with
 * c->sys_err) when out of memory.
 */
static int
conn_arm_write(struct conn *c)
{
	if (c->write_armed)
		return (0);
	if (c->wev == NULL && (c->wev = event_new(event_get_base(c->rev),
	    c->fd, EV_WRITE | EV_PERSIST, conn_writecb, c)) == NULL) {
		c->sys_err = ENOMEM;
		return (-1);
	}
	c->write_armed = true;
	event_add(c->wev, NULL);
	return (0);
}

/* Record the error of a failed SSL call; returns the CONN_* outcome. */
static int
conn_ssl_failed(struct conn *c, int ret, bool reading)
{
	unsigned long	 e;

	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		if (!reading)
			c->write_wants_read = true;
		return (0);
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			c->read_wants_write = true;
		return (conn_arm_write(c) == -1 ? CONN_ERROR : 0);
	case SSL_ERROR_ZERO_RETURN:
		return (CONN_EOF);
	case SSL_ERROR_SYSCALL:
		c->sys_err = errno;
		c->ssl_err = ERR_get_error();
		if (c->ssl_err == 0 && c->sys_err == 0)
			return (CONN_EOF);
		return (CONN_ERROR);
	default:
		e = ERR_peek_last_error();
		ERR_clear_error();
		/* The node closed without close_notify: an end, not a fault. */
		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return (CONN_EOF);
		c->ssl_err = e;
		return (CONN_ERROR);
	}
}

/* One read pass; returns CONN_* bits. */
static int
conn_read(struct conn *c)
{
	size_t		 used = 0, got;
	ssize_t		 n;
	int		 rounds = 0, ev = 0, r;

	for (;;) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			r = SSL_read_ex(c->ssl, conn_scratch + used,
			    sizeof(conn_scratch) - used, &got);
			if (r <= 0) {
				ev |= conn_ssl_failed(c, r, true);
				break;
			}
			used += got;
		} else {
			n = read(c->fd, conn_scratch + used,
			    sizeof(conn_scratch) - used);
			if (n == 0) {
				ev |= CONN_EOF;
				break;
			}
			if (n < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK &&
				    errno != EINTR) {
					c->sys_err = errno;
					ev |= CONN_ERROR;
				}
				break;
			}
			used += (size_t)n;
		}
		if (used == sizeof(conn_scratch)) {
			if (evbuffer_add(c->in, conn_scratch, used) == -1) {
				c->sys_err = ENOMEM;
				return (ev | CONN_ERROR);
			}
			ev |= CONN_READ;
			used = 0;
			if (++rounds == CONN_READ_ROUNDS) {
				/* Yield; come back for the rest. */
				event_active(c->rev, EV_READ, 0);
				break;
			}
			continue;
		}
		/*
		 * Stop before a call that would only return EAGAIN: a short
		 * plaintext read emptied the socket; for TLS, nothing is
		 * left in OpenSSL's buffers.
		 */
		if (c->ssl == NULL || !SSL_has_pending(c->ssl))
			break;
	}
	if (used > 0) {
		if (evbuffer_add(c->in, conn_scratch, used) == -1) {
			c->sys_err = ENOMEM;
			return (ev | CONN_ERROR);
		}
		ev |= CONN_READ;
	}
	/*
	 * SSL_MODE_RELEASE_BUFFERS frees the record buffers on most paths,
	 * not all; an idle conn should hold none (17 KiB each).
	 */
	if (c->ssl != NULL && !SSL_has_pending(c->ssl))
		(void)SSL_free_buffers(c->ssl);
	return (ev);
}

int
conn_flush(struct conn *c)
{
	size_t		 len, chunk, w;
	unsigned char	*p;
	int		 n, r;

	c->write_wants_read = false;
	while ((len = evbuffer_get_length(c->out)) > 0) {
		if (c->ssl == NULL) {
			n = evbuffer_write(c->out, c->fd);
			if (n < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK &&
				    errno != EINTR) {
					c->sys_err = errno;
					return (-1);
				}
				break;
			}
			if ((size_t)n < len)
				break;		/* the socket is full */
			continue;
		}
		/*
		 * After a WANT_WRITE, OpenSSL wants the same bytes again, at
		 * least as many: ${out} only grows meanwhile, so the same
		 * rule gives them.
		 */
		chunk = len < CONN_TLS_CHUNK ? len : CONN_TLS_CHUNK;
		if ((p = evbuffer_pullup(c->out, (ssize_t)chunk)) == NULL) {
			c->sys_err = ENOMEM;
			return (-1);
		}
		ERR_clear_error();
		r = SSL_write_ex(c->ssl, p, chunk, &w);
		if (r <= 0) {
			if (conn_ssl_failed(c, r, false) & (CONN_ERROR |
			    CONN_EOF)) {
				if (c->ssl_err == 0 && c->sys_err == 0)
					c->sys_err = EPIPE;
				return (-1);
			}
			break;
		}
		evbuffer_drain(c->out, w);
	}
	if (evbuffer_get_length(c->out) == 0) {
		if (c->write_armed && !c->read_wants_write) {
			c->write_armed = false;
			event_del(c->wev);
		}
	} else if (!c->write_wants_read && conn_arm_write(c) == -1)
		return (-1);
	return (0);
}

static void
conn_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;
	int		 ev = 0;

	(void)fd;
	(void)what;
	conn_nevents++;
	if (c->write_wants_read && conn_flush(c) == -1)
		ev |= CONN_ERROR;
	if (c->reading && !(ev & CONN_ERROR))
		ev |= conn_read(c);
	if (ev != 0)
		c->cb(c, ev, c->arg);
}

static void
conn_writecb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;
	int		 ev = 0;

	(void)fd;
	(void)what;
	conn_nevents++;
	if (c->read_wants_write) {
		c->read_wants_write = false;
		if (c->reading)
			ev |= conn_read(c);
	}
	if (conn_flush(c) == -1)
		ev |= CONN_ERROR;
	else if (evbuffer_get_length(c->out) <= c->low)
		ev |= CONN_DRAINED;
	if (ev != 0)
		c->cb(c, ev, c->arg);
}

const char *
conn_error(const struct conn *c, char *buf, size_t len)
{
	const char	*r;

	if (c->ssl_err != 0) {
		r = ERR_reason_error_string(c->ssl_err);
		snprintf(buf, len, "TLS: %s", r != NULL ? r : "error");
	} else
		snprintf(buf, len, "%s", strerror(c->sys_err != 0 ?
		    c->sys_err : EIO));
	return (buf);
}
