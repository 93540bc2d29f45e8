/*
 * benchutil: helpers shared by stubnode and cqlbench: address and number
 * parsing, monotonic time, socket options, OpenSSL error printing.  Not
 * part of cqltunnel.
 */
#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * bu_parse_addr(s, ss, sslen, host, hostlen):
 * Resolve "host:port" or "[v6]:port" into ${ss}; the host part is copied
 * to ${host}.  Returns 0, or -1 after printing why.
 */
int	bu_parse_addr(const char *s, struct sockaddr_storage *ss,
	    socklen_t *sslen, char *host, size_t hostlen);

/*
 * bu_parse_num(s, min, max, out): a decimal number with an optional
 * binary suffix (k/K/KiB, m/M/MiB, g/G/GiB), within [min, max].
 * Returns 0 or -1.
 */
int	bu_parse_num(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* bu_parse_secs(s, out): seconds, decimals allowed ("0.5"); 0 or -1. */
int	bu_parse_secs(const char *s, double *out);

/* bu_now_ns(): CLOCK_MONOTONIC in nanoseconds. */
uint64_t bu_now_ns(void);

/* bu_nodelay(fd): set TCP_NODELAY, ignoring errors (e.g. AF_UNIX). */
void	bu_nodelay(int fd);

/* bu_raise_nofile(): raise RLIMIT_NOFILE's soft limit to the hard one. */
void	bu_raise_nofile(void);

/* bu_ssl_errors(prog, what): print and clear the OpenSSL error queue. */
void	bu_ssl_errors(const char *prog, const char *what);

/*
 * bu_crc32(p, n): the CQL v5 CRC-32 (zlib CRC-32 seeded with FA 2D 55 CA),
 * as cql_crc32() computes it, but with zlib's faster code when built with
 * zlib (HAVE_ZLIB), so that v5 bulk runs measure the relay, not this.
 */
uint32_t bu_crc32(const uint8_t *p, size_t n);

/*
 * bu_segment_encode(payload, n, self_contained, out, cap): one v5 CRC
 * segment, as cql_segment_encode(CQL_SEG_CRC, ...).  Returns its length,
 * or 0 if ${cap} is too small or n too large.
 */
size_t	bu_segment_encode(const uint8_t *payload, size_t n,
	    int self_contained, uint8_t *out, size_t cap);

/*
 * bu_event_base(): an event base for a busy single-threaded loop: epoll
 * changes batched (EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST), no locking.
 */
struct event_base *bu_event_base(void);

/*
 * Output batching shared by both tools: frames are collected in ${buf} and
 * written at the end of a callback, as they are or (v5, ${framed}) as one
 * self-contained CRC segment; a frame larger than the batch goes out in
 * non-self-contained segments.  One batch serves every connection, since
 * a single-threaded loop handles one connection at a time.
 */
#define BU_BATCH	(64 * 1024)

struct bufferevent;

struct bu_batch {
	uint8_t		buf[BU_BATCH];
	size_t		len;
	uint8_t		seg[BU_BATCH + 16];
};

/* bu_set_stream(hdr, stream): patch a v3+ header's stream id. */
void	bu_set_stream(uint8_t *hdr, int16_t stream);
void	bu_batch_flush(struct bu_batch *b, struct bufferevent *bev,
	    bool framed);
void	bu_batch_send(struct bu_batch *b, struct bufferevent *bev,
	    bool framed, const uint8_t *p, size_t len);

#endif /* !BENCHUTIL_H */
