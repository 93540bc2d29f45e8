/*
 * util: small helpers shared by the modules: checked number, duration and
 * size parsing, host:port splitting, address formatting, monotonic time,
 * allocation that cannot fail (startup only) and wiping of secrets.
 */
#ifndef UTIL_H
#define UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct evbuffer;

/* Room for "[ffff:...:ffff]:65535" plus NUL. */
#define UTIL_ADDRSTRLEN	64

/*
 * util_parse_uint(s, min, max, out): decimal, no sign, no trailing junk,
 * within [min, max].  Returns 0 or -1.
 */
int	util_parse_uint(const char *s, uint64_t min, uint64_t max,
	    uint64_t *out);

/*
 * util_parse_duration_ms(s, out): "250ms", "5s", "2m", or a bare number of
 * seconds.  Returns 0 or -1.
 */
int	util_parse_duration_ms(const char *s, uint64_t *out);

/*
 * util_parse_size(s, out): "512", "64KiB", "16MiB", "1GiB" (also k/K/KB,
 * M/MB, G/GB as powers of 1024).  Returns 0 or -1.
 */
int	util_parse_size(const char *s, uint64_t *out);

/* util_parse_bool(s, out): yes/no, true/false, on/off, 1/0.  0 or -1. */
int	util_parse_bool(const char *s, bool *out);

/*
 * util_split_hostport(s, host, hostlen, port, default_port):
 * "host", "host:port", "[v6]", "[v6]:port", and a bare IPv6 literal
 * (no port) are accepted.  Returns 0 or -1 (with a reason in ${why}).
 */
int	util_split_hostport(const char *s, char *host, size_t hostlen,
	    uint16_t *port, uint16_t default_port, const char **why);

/* util_is_ip_literal(s): true for an IPv4 or IPv6 address literal. */
bool	util_is_ip_literal(const char *s);

/* util_is_loopback(sa): 127/8 or ::1 (or v4-mapped 127/8). */
bool	util_is_loopback(const struct sockaddr *sa);

/*
 * util_sockaddr_str(sa, buf, len): "1.2.3.4:9042" / "[::1]:9042" /
 * "unix:/path" ("unix" for an unnamed socket; its sun_path must be
 * zero-filled).
 */
const char *util_sockaddr_str(const struct sockaddr *sa, char *buf,
	    size_t len);

/*
 * util_event_base():
 * The daemon's event loop.  epoll changes are batched (changelist): the
 * bufferevents add and remove write interest around every transfer, and
 * without the changelist each of those is an epoll_ctl system call.
 * cqltunnel never dup()s a descriptor it watches, the one thing the
 * changelist cannot cope with.
 */
struct event_base *util_event_base(void);

/*
 * util_node_socket_opts(fd): TCP_NODELAY, and keepalive probes so that a
 * node that vanishes without a reset (power loss, a partition) is noticed
 * after about UTIL_KEEPALIVE_S seconds of silence, not hours.
 */
#define UTIL_KEEPALIVE_IDLE_S	30
#define UTIL_KEEPALIVE_INTVL_S	10
#define UTIL_KEEPALIVE_CNT	6
#define UTIL_KEEPALIVE_S	(UTIL_KEEPALIVE_IDLE_S + \
				 UTIL_KEEPALIVE_INTVL_S * UTIL_KEEPALIVE_CNT)
void	util_node_socket_opts(int fd);

/* util_now_ms(): CLOCK_MONOTONIC in milliseconds. */
uint64_t util_now_ms(void);
/* util_wall_ms(): CLOCK_REALTIME (Unix time) in milliseconds. */
uint64_t util_wall_ms(void);

/* Allocation that aborts on failure: for startup and config only. */
void	*util_xmalloc(size_t n);
void	*util_xcalloc(size_t n, size_t size);
void	*util_xrealloc(void *p, size_t n);
char	*util_xstrdup(const char *s);

/*
 * util_core_dumps(allow, why, whylen): with ${allow} false, set the soft
 * RLIMIT_CORE to 0 and make the process non-dumpable (no core file, no
 * ptrace or /proc/PID/mem by unprivileged processes of the same uid);
 * with ${allow} true, restore the limit found at the first call and make
 * it dumpable again.  0, or -1 with a reason in ${why}.
 */
int	util_core_dumps(bool allow, char *why, size_t whylen);

/* util_wipe(p, n): clear memory in a way the compiler cannot elide. */
void	util_wipe(void *p, size_t n);

/*
 * util_evbuffer_add_wiped(out, p, n): queue ${n} bytes from ${p} (which
 * may hold credentials) on ${out} by reference to a malloc'd copy that is
 * wiped and freed once sent or when ${out} is freed, so that they are
 * never left in freed evbuffer memory (evbuffer_add() copies into chains
 * that are freed as they are).  Falls back to evbuffer_add() if out of
 * memory.  Returns 0 or -1.
 */
int	util_evbuffer_add_wiped(struct evbuffer *out, const void *p,
	    size_t n);

/*
 * util_read_secret_file(path, out, outlen, maxlen, why):
 * Read a secret (password) file: must be a regular file, not world-readable,
 * at most ${maxlen} bytes after stripping one trailing "\n" or "\r\n".
 * Returns 0 with a malloc'd NUL-terminated copy in *out, or -1 with a
 * reason in ${why} (static or errno text).  The read buffer is wiped.
 */
int	util_read_secret_file(const char *path, char **out, size_t *outlen,
	    size_t maxlen, char *why, size_t whylen);

/*
 * util_read_key_file(path, out, outlen, maxlen, why, whylen):
 * Read a whole regular file of key material (at most ${maxlen} bytes)
 * with read(2) into one malloc'd buffer, so that no stdio buffer keeps a
 * copy.  Returns 0 with the buffer in *out (the caller wipes and frees
 * it), or -1 with a reason in ${why}.
 */
int	util_read_key_file(const char *path, char **out, size_t *outlen,
	    size_t maxlen, char *why, size_t whylen);

#endif /* !UTIL_H */
