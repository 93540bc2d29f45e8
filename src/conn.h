/*
 * conn: one side of a session once its handshake is over.
 *
 * The handshakes run on bufferevents.  The relay phase does its own I/O on
 * the same socket and SSL object, because a bufferevent costs system calls
 * that a relay of small requests cannot afford: it adds and removes write
 * interest around every transfer (two epoll_ctl per write), sizes every
 * plaintext read with an ioctl, and reads TLS records header first.  A conn
 * instead
 *
 *   - keeps one persistent read event, and arms its write event only when
 *     the socket is full;
 *   - writes as soon as there is something to write (conn_flush), from the
 *     callback that produced it;
 *   - reads TLS with read-ahead, so one read(2) takes every record that has
 *     arrived, and decrypts them without touching the socket again;
 *   - reads into one scratch buffer per thread, so an idle conn holds no
 *     buffer memory of its own.
 *
 * A request and its response cost one read and one write on each side.
 */
#ifndef CONN_H
#define CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

/* What a conn reports to its owner (a bit set). */
#define CONN_READ	0x01	/* new bytes in ${in} */
#define CONN_EOF	0x02	/* the peer closed (after any bytes read) */
#define CONN_ERROR	0x04	/* I/O error: see conn_error() */
#define CONN_DRAINED	0x08	/* ${out} fell below its low watermark */

struct conn;
typedef void	conn_cb(struct conn *c, int what, void *arg);

struct conn {
	evutil_socket_t	 fd;
	SSL		*ssl;		/* NULL: plaintext */
	struct event	*rev;		/* persistent, while reading */
	struct event	*wev;		/* made and armed when the socket fills */
	struct evbuffer	*in;
	struct evbuffer	*out;
	size_t		 low;		/* CONN_DRAINED below this */
	bool		 reading;
	bool		 write_armed;
	bool		 read_wants_write;	/* TLS: a read needs a write */
	bool		 write_wants_read;	/* TLS: a write needs a read */
	bool		 above_low;	/* ${out} was above ${low} */
	int		 sys_err;	/* errno of a failed call */
	unsigned long	 ssl_err;	/* OpenSSL error code, or 0 */
	conn_cb		*cb;
	void		*arg;
};

/*
 * conn_init(c, base, fd, ssl, low, cb, arg):
 * Take over ${fd} (and ${ssl}, whose handshake is done) for I/O; neither is
 * owned: conn_free() leaves them open.  ${cb} is called from the event loop
 * only, never from a conn_* call.  Returns 0, or -1 when out of memory.
 */
int	conn_init(struct conn *c, struct event_base *base, evutil_socket_t fd,
	    SSL *ssl, size_t low, conn_cb *cb, void *arg);
void	conn_free(struct conn *c);

/*
 * conn_resume(c) / conn_pause(c): start or stop reading.  conn_resume()
 * also runs a read pass at once (from the event loop), for bytes that may
 * already be buffered inside OpenSSL or the socket.
 */
void	conn_resume(struct conn *c);
void	conn_pause(struct conn *c);

/*
 * conn_flush(c):
 * Write as much of ${out} as the socket takes now; what remains is written
 * by the write event.  Returns 0, or -1 on an I/O error (conn_error()).
 */
int	conn_flush(struct conn *c);

/*
 * conn_activity(): how many read and write events conns have had on the
 * calling thread; it changes while relays are busy (see worker_loop()).
 */
uint64_t conn_activity(void);

/* conn_error(c, buf, len): why the last call or event failed. */
const char *conn_error(const struct conn *c, char *buf, size_t len);

#endif /* !CONN_H */
