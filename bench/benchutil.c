/*
 * benchutil: helpers shared by stubnode and cqlbench.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#if HAVE_ZLIB
#include <zlib.h>
#endif

#include "benchutil.h"
#include "cql_frame.h"

/* Resolve "host:port" or "[v6]:port" into ${ss}. */
int
bu_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
    char *host, size_t hostlen)
{
	struct addrinfo	 hints, *res;
	const char	*colon, *hs, *port;
	size_t		 hl;
	int		 rc;

	if (s[0] == '[') {
		if ((colon = strchr(s, ']')) == NULL || colon[1] != ':')
			goto bad;
		hs = s + 1;
		hl = (size_t)(colon - hs);
		port = colon + 2;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			goto bad;
		hs = s;
		hl = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hl == 0 || hl >= hostlen || *port == '\0')
		goto bad;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "%s: %s\n", s, gai_strerror(rc));
		return (-1);
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return (0);
bad:
	fprintf(stderr, "%s: expected host:port or [v6]:port\n", s);
	return (-1);
}

/* A decimal number with an optional binary suffix, within [min, max]. */
int
bu_parse_num(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long	 v;
	uint64_t		 mul = 1;
	char			*end;

	if (s[0] < '0' || s[0] > '9')
		return (-1);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return (-1);
	if (*end == 'k' || *end == 'K')
		mul = 1024;
	else if (*end == 'm' || *end == 'M')
		mul = 1024 * 1024;
	else if (*end == 'g' || *end == 'G')
		mul = 1024 * 1024 * 1024;
	if (mul != 1) {
		end++;
		if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
			end += strlen(end);
	}
	if (*end != '\0' || v > UINT64_MAX / mul)
		return (-1);
	v *= mul;
	if (v < min || v > max)
		return (-1);
	*out = v;
	return (0);
}

/* Seconds, decimals allowed. */
int
bu_parse_secs(const char *s, double *out)
{
	double	 v;
	char	*end;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0) ||
	    v > 86400.0 * 365)
		return (-1);
	*out = v;
	return (0);
}

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t
bu_now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

/* Set TCP_NODELAY. */
void
bu_nodelay(int fd)
{
	int	on = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* Raise the soft descriptor limit to the hard one. */
void
bu_raise_nofile(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Print and clear the OpenSSL error queue. */
void
bu_ssl_errors(const char *prog, const char *what)
{
	unsigned long	e;
	char		buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		fprintf(stderr, "%s: %s: %s\n", prog, what, buf);
	}
}

/* The CQL v5 CRC-32 of ${n} bytes at ${p}. */
uint32_t
bu_crc32(const uint8_t *p, size_t n)
{
#if HAVE_ZLIB
	static const uint8_t	seed[4] = { 0xFA, 0x2D, 0x55, 0xCA };
	uLong			crc;

	crc = crc32(0L, seed, sizeof(seed));
	while (n > 0) {
		uInt	chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;

		crc = crc32(crc, p, chunk);
		p += chunk;
		n -= chunk;
	}
	return ((uint32_t)crc);
#else
	return (cql_crc32(p, n));
#endif
}

/* One v5 CRC segment around ${payload}. */
size_t
bu_segment_encode(const uint8_t *payload, size_t n, int self_contained,
    uint8_t *out, size_t cap)
{
	uint32_t	word, crc;
	size_t		total = CQL_SEG_CRC_HEADER + n + CQL_SEG_TRAILER;

	if (n > CQL_SEG_MAX_PAYLOAD || cap < total)
		return (0);
	word = (uint32_t)n | (self_contained ? 1u << 17 : 0);
	out[0] = (uint8_t)word;
	out[1] = (uint8_t)(word >> 8);
	out[2] = (uint8_t)(word >> 16);
	crc = cql_crc24(out, 3);
	out[3] = (uint8_t)crc;
	out[4] = (uint8_t)(crc >> 8);
	out[5] = (uint8_t)(crc >> 16);
	if (n > 0)
		memmove(out + CQL_SEG_CRC_HEADER, payload, n);
	crc = bu_crc32(out + CQL_SEG_CRC_HEADER, n);
	out += CQL_SEG_CRC_HEADER + n;
	out[0] = (uint8_t)crc;
	out[1] = (uint8_t)(crc >> 8);
	out[2] = (uint8_t)(crc >> 16);
	out[3] = (uint8_t)(crc >> 24);
	return (total);
}

/* An event base with batched epoll changes and no locks. */
struct event_base *
bu_event_base(void)
{
	struct event_config	*cfg;
	struct event_base	*base;

	if ((cfg = event_config_new()) == NULL)
		return (NULL);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK |
	    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return (base);
}

void
bu_set_stream(uint8_t *hdr, int16_t stream)
{
	hdr[2] = (uint8_t)((uint16_t)stream >> 8);
	hdr[3] = (uint8_t)stream;
}

void
bu_batch_flush(struct bu_batch *b, struct bufferevent *bev, bool framed)
{
	size_t	n;

	if (b->len == 0)
		return;
	if (!framed) {
		bufferevent_write(bev, b->buf, b->len);
		b->len = 0;
		return;
	}
	n = bu_segment_encode(b->buf, b->len, true, b->seg, sizeof(b->seg));
	b->len = 0;
	if (n > 0)
		bufferevent_write(bev, b->seg, n);
}

void
bu_batch_send(struct bu_batch *b, struct bufferevent *bev, bool framed,
    const uint8_t *p, size_t len)
{
	struct evbuffer_iovec	 v;
	struct evbuffer		*out = bufferevent_get_output(bev);
	size_t			 n, off;

	if (!framed && len > sizeof(b->buf)) {
		bu_batch_flush(b, bev, framed);
		bufferevent_write(bev, p, len);
		return;
	}
	if (b->len + len <= sizeof(b->buf)) {
		memcpy(b->buf + b->len, p, len);
		b->len += len;
		return;
	}
	bu_batch_flush(b, bev, framed);
	if (len <= sizeof(b->buf)) {
		memcpy(b->buf, p, len);
		b->len = len;
		return;
	}
	/* Larger than a batch: slices, encoded straight into the output. */
	for (off = 0; off < len; off += n) {
		n = len - off;
		if (n > CQL_SEG_MAX_PAYLOAD)
			n = CQL_SEG_MAX_PAYLOAD;
		if (evbuffer_reserve_space(out, (ev_ssize_t)(n + 16), &v, 1) < 1)
			return;
		v.iov_len = bu_segment_encode(p + off, n, false, v.iov_base,
		    v.iov_len);
		evbuffer_commit_space(out, &v, 1);
	}
}
