/*
 * util: checked number, duration and size parsing, host:port splitting,
 * address formatting, monotonic time, allocation that cannot fail and the
 * reading and wiping of secrets.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "util.h"

/* A unit suffix and its multiplier. */
struct util_unit {
	const char	*name;
	uint64_t	 mult;
};

static const struct util_unit util_duration_units[] = {
	{ "", 1000 },			/* a bare number is seconds */
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60 * 1000 },
};

static const struct util_unit util_size_units[] = {
	{ "", 1 },
	{ "B", 1 },
	{ "k", 1024 },
	{ "K", 1024 },
	{ "kB", 1024 },
	{ "KB", 1024 },
	{ "KiB", 1024 },
	{ "M", 1024 * 1024 },
	{ "MB", 1024 * 1024 },
	{ "MiB", 1024 * 1024 },
	{ "G", 1024 * 1024 * 1024 },
	{ "GB", 1024 * 1024 * 1024 },
	{ "GiB", 1024 * 1024 * 1024 },
};

/* Spellings accepted for booleans, compared without regard to case. */
static const struct {
	const char	*name;
	bool		 value;
} util_bools[] = {
	{ "yes", true }, { "no", false },
	{ "true", true }, { "false", false },
	{ "on", true }, { "off", false },
	{ "1", true }, { "0", false },
};

/* Print a message and abort: allocation failed. */
static void __attribute__((noreturn))
util_alloc_fail(const char *what, size_t n)
{
	fprintf(stderr, "cqltunnel: %s(%zu): out of memory\n", what, n);
	abort();
}

/*
 * Parse the leading decimal digits of ${s} into *out and point *end past
 * them; -1 if there are none or they overflow 64 bits.
 */
static int
util_parse_digits(const char *s, uint64_t *out, const char **end)
{
	unsigned long long	 v;
	char			*ep;

	/* strtoull() would skip spaces and accept a sign: refuse both. */
	if (!isdigit((unsigned char)s[0]))
		return (-1);
	errno = 0;
	v = strtoull(s, &ep, 10);
	if (errno == ERANGE)
		return (-1);
#if ULLONG_MAX > UINT64_MAX
	if (v > UINT64_MAX)
		return (-1);
#endif
	*out = (uint64_t)v;
	*end = ep;
	return (0);
}

/*
 * Parse a number followed by one of ${units} (${nunits} entries) and return
 * the product in *out; -1 on junk, an unknown unit or overflow.
 */
static int
util_parse_scaled(const char *s, const struct util_unit *units,
    size_t nunits, uint64_t *out)
{
	const char	*end;
	uint64_t	 v;
	size_t		 i;

	if (s == NULL || util_parse_digits(s, &v, &end) == -1)
		return (-1);
	for (i = 0; i < nunits; i++) {
		if (strcmp(end, units[i].name) != 0)
			continue;
		if (v > UINT64_MAX / units[i].mult)
			return (-1);
		*out = v * units[i].mult;
		return (0);
	}
	return (-1);
}

/* Parse a decimal number within [min, max]; 0 or -1. */
int
util_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	const char	*end;
	uint64_t	 v;

	if (s == NULL || util_parse_digits(s, &v, &end) == -1)
		return (-1);
	if (*end != '\0' || v < min || v > max)
		return (-1);
	*out = v;
	return (0);
}

/* Parse a duration (ms, s, m; bare: seconds) into milliseconds. */
int
util_parse_duration_ms(const char *s, uint64_t *out)
{
	return (util_parse_scaled(s, util_duration_units,
	    sizeof(util_duration_units) / sizeof(util_duration_units[0]), out));
}

/* Parse a size with an optional binary unit into bytes. */
int
util_parse_size(const char *s, uint64_t *out)
{
	return (util_parse_scaled(s, util_size_units,
	    sizeof(util_size_units) / sizeof(util_size_units[0]), out));
}

/* Parse yes/no, true/false, on/off or 1/0, ignoring case. */
int
util_parse_bool(const char *s, bool *out)
{
	size_t	 i;

	if (s == NULL)
		return (-1);
	for (i = 0; i < sizeof(util_bools) / sizeof(util_bools[0]); i++) {
		if (strcasecmp(s, util_bools[i].name) == 0) {
			*out = util_bools[i].value;
			return (0);
		}
	}
	return (-1);
}

/* True if ${s} is an IPv6 address literal (no brackets, no zone). */
static bool
util_is_ipv6_literal(const char *s)
{
	struct in6_addr	 a6;

	return (inet_pton(AF_INET6, s, &a6) == 1);
}

/* True if every byte of ${s} may appear in a host name or IPv4 literal. */
static bool
util_is_hostname_chars(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' &&
		    *s != '_')
			return (false);
	}
	return (true);
}

/* Copy ${n} bytes of ${s} into ${host} as a string; -1 if it won't fit. */
static int
util_copy_host(char *host, size_t hostlen, const char *s, size_t n)
{
	if (n >= hostlen)
		return (-1);
	memcpy(host, s, n);
	host[n] = '\0';
	return (0);
}

/* Split "host", "host:port", "[v6]:port", "[v6]" or a bare IPv6 address. */
int
util_split_hostport(const char *s, char *host, size_t hostlen,
    uint16_t *port, uint16_t default_port, const char **why)
{
	const char	*why0, *p, *colon, *portstr = NULL;
	uint64_t	 v;

	if (why == NULL)
		why = &why0;
	if (s == NULL || *s == '\0') {
		*why = "empty address";
		return (-1);
	}
	if (s[0] == '[') {
		/* "[v6]" or "[v6]:port". */
		if ((p = strchr(s, ']')) == NULL) {
			*why = "missing \"]\" after an IPv6 address";
			return (-1);
		}
		if (p[1] == ':')
			portstr = p + 2;
		else if (p[1] != '\0') {
			*why = "junk after \"]\" (expected \":port\")";
			return (-1);
		}
		if (util_copy_host(host, hostlen, s + 1,
		    (size_t)(p - s - 1)) == -1) {
			*why = "address too long";
			return (-1);
		}
		if (!util_is_ipv6_literal(host)) {
			*why = "not an IPv6 address inside \"[]\"";
			return (-1);
		}
	} else if ((colon = strchr(s, ':')) != NULL &&
	    strchr(colon + 1, ':') != NULL) {
		/* Two or more colons: a bare IPv6 literal, no port. */
		if (util_copy_host(host, hostlen, s, strlen(s)) == -1) {
			*why = "address too long";
			return (-1);
		}
		if (!util_is_ipv6_literal(host)) {
			*why = "not a valid IPv6 address (write an IPv6 "
			    "address with a port as [address]:port)";
			return (-1);
		}
	} else {
		/* "host" or "host:port". */
		if (colon != NULL)
			portstr = colon + 1;
		if (util_copy_host(host, hostlen, s, colon != NULL ?
		    (size_t)(colon - s) : strlen(s)) == -1) {
			*why = "host name too long";
			return (-1);
		}
		if (*host == '\0') {
			*why = "empty host";
			return (-1);
		}
		if (!util_is_hostname_chars(host)) {
			*why = "invalid character in host name";
			return (-1);
		}
	}
	if (portstr == NULL) {
		*port = default_port;
		return (0);
	}
	if (util_parse_uint(portstr, 1, 65535, &v) == -1) {
		*why = *portstr == '\0' ? "empty port" :
		    "invalid port (expected 1 to 65535)";
		return (-1);
	}
	*port = (uint16_t)v;
	return (0);
}

/* True for an IPv4 (dotted quad) or IPv6 address literal. */
bool
util_is_ip_literal(const char *s)
{
	struct in_addr	 a4;

	if (s == NULL)
		return (false);
	return (inet_pton(AF_INET, s, &a4) == 1 || util_is_ipv6_literal(s));
}

/* True for 127/8, ::1 and IPv4-mapped 127/8. */
bool
util_is_loopback(const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const uint8_t			*b;

	if (sa == NULL)
		return (false);
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)(const void *)sa;
		return ((ntohl(sin->sin_addr.s_addr) >> 24) == 127);
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return (true);
		b = sin6->sin6_addr.s6_addr;
		return (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127);
	default:
		return (false);
	}
}

/* Format an address as "1.2.3.4:port" or "[v6]:port" into buf. */
const char *
util_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const struct sockaddr_un	*sun;
	char				 a[INET6_ADDRSTRLEN];

	if (len == 0)
		return (buf);
	if (sa == NULL) {
		snprintf(buf, len, "?");
		return (buf);
	}
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)(const void *)sa;
		if (inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a)) == NULL)
			break;
		snprintf(buf, len, "%s:%u", a, (unsigned)ntohs(sin->sin_port));
		return (buf);
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a)) == NULL)
			break;
		if (sin6->sin6_scope_id != 0)
			snprintf(buf, len, "[%s%%%u]:%u", a,
			    (unsigned)sin6->sin6_scope_id,
			    (unsigned)ntohs(sin6->sin6_port));
		else
			snprintf(buf, len, "[%s]:%u", a,
			    (unsigned)ntohs(sin6->sin6_port));
		return (buf);
	case AF_UNIX:
		sun = (const struct sockaddr_un *)(const void *)sa;
		if (sun->sun_path[0] == '\0')
			snprintf(buf, len, "unix");
		else
			snprintf(buf, len, "unix:%.*s",
			    (int)sizeof(sun->sun_path), sun->sun_path);
		return (buf);
	default:
		break;
	}
	snprintf(buf, len, "?");
	return (buf);
}

/* Milliseconds on the monotonic clock. */
uint64_t
util_now_ms(void)
{
	struct timespec	 ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1) {
		fprintf(stderr, "cqltunnel: clock_gettime: %s\n",
		    strerror(errno));
		abort();
	}
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

uint64_t
util_wall_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* malloc() that aborts instead of returning NULL. */
void *
util_xmalloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		util_alloc_fail("malloc", n);
	return (p);
}

/* calloc() that aborts on overflow or exhaustion. */
void *
util_xcalloc(size_t n, size_t size)
{
	void	*p;

	if (n == 0 || size == 0)
		n = size = 1;
	if (n > SIZE_MAX / size)
		util_alloc_fail("calloc", n);
	if ((p = calloc(n, size)) == NULL)
		util_alloc_fail("calloc", n);
	return (p);
}

/* realloc() that aborts instead of returning NULL. */
void *
util_xrealloc(void *p, size_t n)
{
	void	*np;

	/* realloc(p, 0) may free p; never ask for that. */
	if ((np = realloc(p, n == 0 ? 1 : n)) == NULL)
		util_alloc_fail("realloc", n);
	return (np);
}

/* strdup() that aborts instead of returning NULL. */
char *
util_xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		util_alloc_fail("strdup", strlen(s) + 1);
	return (p);
}

/* Turn core dumps (and ptrace by other processes of our uid) off or on. */
int
util_core_dumps(bool allow, char *why, size_t whylen)
{
	static struct rlimit	 saved;
	static bool		 have_saved;
	struct rlimit		 rl;

	if (!have_saved) {
		if (getrlimit(RLIMIT_CORE, &saved) == -1) {
			snprintf(why, whylen, "getrlimit(RLIMIT_CORE): %s",
			    strerror(errno));
			return (-1);
		}
		have_saved = true;
	}
	/* Only the soft limit: lowering the hard one could not be undone. */
	rl = saved;
	if (!allow)
		rl.rlim_cur = 0;
	if (setrlimit(RLIMIT_CORE, &rl) == -1) {
		snprintf(why, whylen, "setrlimit(RLIMIT_CORE): %s",
		    strerror(errno));
		return (-1);
	}
	if (prctl(PR_SET_DUMPABLE, allow ? 1 : 0, 0, 0, 0) == -1) {
		snprintf(why, whylen, "prctl(PR_SET_DUMPABLE): %s",
		    strerror(errno));
		return (-1);
	}
	return (0);
}

/* Zero memory in a way the compiler may not optimize away. */
void
util_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		explicit_bzero(p, n);
}

/*
 * Open ${path} for reading, refusing anything but a regular file (with
 * O_NONBLOCK, so that opening a FIFO does not hang before it is refused).
 * Returns the descriptor, blocking again, and its stat in ${st}; or -1.
 */
static int
util_open_regular(const char *path, struct stat *st, char *why,
    size_t whylen)
{
	int	 fd, flags;

	fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		return (-1);
	}
	if (fstat(fd, st) == -1) {
		snprintf(why, whylen, "%s", strerror(errno));
		close(fd);
		return (-1);
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(why, whylen, "not a regular file");
		close(fd);
		return (-1);
	}
	if ((flags = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	return (fd);
}

/*
 * Read ${fd} to its end or until ${cap} bytes, straight into ${buf} (no
 * stdio buffer holds a copy).  Sets ${len}; returns 0, or -1 on error.
 */
static int
util_read_fd(int fd, char *buf, size_t cap, size_t *len, char *why,
    size_t whylen)
{
	ssize_t	 n;

	*len = 0;
	while (*len < cap) {
		n = read(fd, buf + *len, cap - *len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(why, whylen, "%s", strerror(errno));
			return (-1);
		}
		if (n == 0)
			break;
		*len += (size_t)n;
	}
	return (0);
}

/* Wipe and free a util_evbuffer_add_wiped() copy once libevent is done. */
static void
util_wipe_free_cb(const void *data, size_t len, void *arg)
{
	(void)arg;
	util_wipe((void *)(uintptr_t)data, len);
	free((void *)(uintptr_t)data);
}

int
util_evbuffer_add_wiped(struct evbuffer *out, const void *p, size_t n)
{
	uint8_t	*copy;

	if (n == 0)
		return (0);
	if ((copy = malloc(n)) == NULL)
		return (evbuffer_add(out, p, n));
	memcpy(copy, p, n);
	if (evbuffer_add_reference(out, copy, n, util_wipe_free_cb,
	    NULL) == -1) {
		util_wipe_free_cb(copy, n, NULL);
		return (-1);
	}
	return (0);
}

/* Read a secret from a regular file that others cannot read or write. */
int
util_read_secret_file(const char *path, char **out, size_t *outlen,
    size_t maxlen, char *why, size_t whylen)
{
	struct stat	 st;
	char		*buf = NULL;
	size_t		 cap, len;
	int		 fd;

	/* Room for the secret, "\r\n", and one byte more to spot excess. */
	cap = maxlen + 3;
	if ((fd = util_open_regular(path, &st, why, whylen)) == -1)
		return (-1);
	if (st.st_mode & S_IROTH) {
		snprintf(why, whylen, "readable by everyone (mode %04o); "
		    "make it readable only by the service user (chmod o-rw)",
		    (unsigned)(st.st_mode & 07777));
		goto err;
	}
	if (st.st_mode & S_IWOTH) {
		snprintf(why, whylen, "writable by everyone (mode %04o); "
		    "make it writable only by its owner (chmod o-rw)",
		    (unsigned)(st.st_mode & 07777));
		goto err;
	}
	buf = util_xmalloc(cap);
	if (util_read_fd(fd, buf, cap, &len, why, whylen) == -1)
		goto err;
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len > maxlen) {
		snprintf(why, whylen, "longer than %zu bytes", maxlen);
		goto err;
	}
	if (len == 0) {
		snprintf(why, whylen, "empty");
		goto err;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(why, whylen, "contains a NUL byte");
		goto err;
	}
	*out = util_xmalloc(len + 1);
	memcpy(*out, buf, len);
	(*out)[len] = '\0';
	*outlen = len;
	util_wipe(buf, cap);
	free(buf);
	close(fd);
	return (0);

err:
	if (buf != NULL) {
		util_wipe(buf, cap);
		free(buf);
	}
	close(fd);
	return (-1);
}

struct event_base *
util_event_base(void)
{
	struct event_config	*ec;
	struct event_base	*base;

	if ((ec = event_config_new()) == NULL)
		return (NULL);
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return (base);
}

/* Read key material from a regular file without stdio buffering. */
int
util_read_key_file(const char *path, char **out, size_t *outlen,
    size_t maxlen, char *why, size_t whylen)
{
	struct stat	 st;
	char		*buf;
	size_t		 len;
	int		 fd;

	if ((fd = util_open_regular(path, &st, why, whylen)) == -1)
		return (-1);
	buf = util_xmalloc(maxlen + 1);
	if (util_read_fd(fd, buf, maxlen + 1, &len, why, whylen) == -1)
		goto err;
	if (len > maxlen) {
		snprintf(why, whylen, "longer than %zu bytes", maxlen);
		goto err;
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return (0);
err:
	util_wipe(buf, maxlen + 1);
	free(buf);
	close(fd);
	return (-1);
}

void
util_node_socket_opts(int fd)
{
	int	 one = 1, idle = UTIL_KEEPALIVE_IDLE_S;
	int	 intvl = UTIL_KEEPALIVE_INTVL_S, cnt = UTIL_KEEPALIVE_CNT;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
	    sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}
