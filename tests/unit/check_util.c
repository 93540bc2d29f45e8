/*
 * Unit tests for util.c: number, duration, size and boolean parsing,
 * host:port splitting, address checks and formatting, time, allocation,
 * wiping, and secret files.
 */
#define SUITE_FN	util_suite
#include "test_main.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "util.h"

/* A scratch directory for the secret file tests. */
static char	 tmpdir[64];
static char	 secret_path[128];

START_TEST(test_parse_uint)
{
	static const struct {
		const char	*s;
		uint64_t	 min, max;
		int		 rc;
		uint64_t	 v;
	} t[] = {
		{ "0", 0, 10, 0, 0 },
		{ "42", 0, 100, 0, 42 },
		{ "007", 0, 100, 0, 7 },
		{ "10", 0, 10, 0, 10 },
		{ "11", 0, 10, -1, 0 },
		{ "0", 1, 10, -1, 0 },
		{ "18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX },
		{ "18446744073709551616", 0, UINT64_MAX, -1, 0 },
		{ "99999999999999999999999", 0, UINT64_MAX, -1, 0 },
		{ "-1", 0, UINT64_MAX, -1, 0 },
		{ "-0", 0, UINT64_MAX, -1, 0 },
		{ "+1", 0, UINT64_MAX, -1, 0 },
		{ " 1", 0, UINT64_MAX, -1, 0 },
		{ "1 ", 0, UINT64_MAX, -1, 0 },
		{ "1x", 0, UINT64_MAX, -1, 0 },
		{ "0x10", 0, UINT64_MAX, -1, 0 },
		{ "1.0", 0, UINT64_MAX, -1, 0 },
		{ "", 0, UINT64_MAX, -1, 0 },
		{ "x", 0, UINT64_MAX, -1, 0 },
	};
	uint64_t	 v;
	size_t		 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		v = 12345;
		ck_assert_msg(util_parse_uint(t[i].s, t[i].min, t[i].max, &v) ==
		    t[i].rc, "\"%s\"", t[i].s);
		if (t[i].rc == 0)
			ck_assert_uint_eq(v, t[i].v);
		else
			ck_assert_uint_eq(v, 12345);	/* untouched */
	}
	ck_assert_int_eq(util_parse_uint(NULL, 0, 1, &v), -1);
}
END_TEST

START_TEST(test_parse_duration)
{
	static const struct {
		const char	*s;
		int		 rc;
		uint64_t	 ms;
	} t[] = {
		{ "250ms", 0, 250 },
		{ "5s", 0, 5000 },
		{ "2m", 0, 120000 },
		{ "7", 0, 7000 },
		{ "0", 0, 0 },
		{ "0ms", 0, 0 },
		{ "18446744073709551615ms", 0, UINT64_MAX },
		{ "18446744073709551615s", -1, 0 },
		{ "18446744073709551615", -1, 0 },
		{ "307445734561825861m", -1, 0 },
		{ "1h", -1, 0 },
		{ "5S", -1, 0 },
		{ "5 s", -1, 0 },
		{ " 5s", -1, 0 },
		{ "5s ", -1, 0 },
		{ "-5s", -1, 0 },
		{ "+5s", -1, 0 },
		{ "1.5s", -1, 0 },
		{ "s", -1, 0 },
		{ "ms", -1, 0 },
		{ "5sec", -1, 0 },
		{ "5mss", -1, 0 },
		{ "", -1, 0 },
	};
	uint64_t	 v;
	size_t		 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_msg(util_parse_duration_ms(t[i].s, &v) == t[i].rc,
		    "\"%s\"", t[i].s);
		if (t[i].rc == 0)
			ck_assert_uint_eq(v, t[i].ms);
	}
	ck_assert_int_eq(util_parse_duration_ms(NULL, &v), -1);
}
END_TEST

START_TEST(test_parse_size)
{
	static const struct {
		const char	*s;
		int		 rc;
		uint64_t	 n;
	} t[] = {
		{ "512", 0, 512 },
		{ "0", 0, 0 },
		{ "512B", 0, 512 },
		{ "64KiB", 0, 64 * 1024 },
		{ "1k", 0, 1024 },
		{ "1K", 0, 1024 },
		{ "1kB", 0, 1024 },
		{ "1KB", 0, 1024 },
		{ "16MiB", 0, 16 * 1024 * 1024 },
		{ "1M", 0, 1024 * 1024 },
		{ "1MB", 0, 1024 * 1024 },
		{ "1GiB", 0, 1024 * 1024 * 1024 },
		{ "2G", 0, 2ULL * 1024 * 1024 * 1024 },
		{ "3GB", 0, 3ULL * 1024 * 1024 * 1024 },
		{ "17179869183GiB", 0, 17179869183ULL << 30 },
		{ "17179869184GiB", -1, 0 },
		{ "1TiB", -1, 0 },
		{ "1 KiB", -1, 0 },
		{ "1kib", -1, 0 },
		{ "1mb", -1, 0 },
		{ "KiB", -1, 0 },
		{ "-1", -1, 0 },
		{ "1.5MiB", -1, 0 },
		{ "", -1, 0 },
	};
	uint64_t	 v;
	size_t		 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_msg(util_parse_size(t[i].s, &v) == t[i].rc,
		    "\"%s\"", t[i].s);
		if (t[i].rc == 0)
			ck_assert_uint_eq(v, t[i].n);
	}
}
END_TEST

START_TEST(test_parse_bool)
{
	static const char *const yes[] = { "yes", "true", "on", "1", "YES",
	    "True", "oN" };
	static const char *const no[] = { "no", "false", "off", "0", "NO",
	    "False" };
	static const char *const bad[] = { "", "y", "n", "2", "yes ", " no",
	    "enabled", "-1", "01" };
	bool	 b;
	size_t	 i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		ck_assert_int_eq(util_parse_bool(yes[i], &b), 0);
		ck_assert(b);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		ck_assert_int_eq(util_parse_bool(no[i], &b), 0);
		ck_assert(!b);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(util_parse_bool(bad[i], &b) == -1, "\"%s\"",
		    bad[i]);
	ck_assert_int_eq(util_parse_bool(NULL, &b), -1);
}
END_TEST

START_TEST(test_split_hostport)
{
	static const struct {
		const char	*s;
		int		 rc;
		const char	*host;
		uint16_t	 port;
	} t[] = {
		{ "db1", 0, "db1", 9042 },
		{ "db1.example.com:9043", 0, "db1.example.com", 9043 },
		{ "my_host-2", 0, "my_host-2", 9042 },
		{ "10.0.0.1", 0, "10.0.0.1", 9042 },
		{ "10.0.0.1:1", 0, "10.0.0.1", 1 },
		{ "10.0.0.1:65535", 0, "10.0.0.1", 65535 },
		{ "[::1]:9142", 0, "::1", 9142 },
		{ "[::1]", 0, "::1", 9042 },
		{ "::1", 0, "::1", 9042 },
		{ "::", 0, "::", 9042 },
		{ "fe80::1", 0, "fe80::1", 9042 },
		{ "2001:db8::1", 0, "2001:db8::1", 9042 },
		{ "[::ffff:10.0.0.1]:7", 0, "::ffff:10.0.0.1", 7 },
		/* Ambiguous, and read as the address it also is. */
		{ "::1:9042", 0, "::1:9042", 9042 },
		{ "", -1, NULL, 0 },
		{ ":9042", -1, NULL, 0 },
		{ "db1:", -1, NULL, 0 },
		{ "db1:0", -1, NULL, 0 },
		{ "db1:65536", -1, NULL, 0 },
		{ "db1:99999999999999999999", -1, NULL, 0 },
		{ "db1:-1", -1, NULL, 0 },
		{ "db1:+1", -1, NULL, 0 },
		{ "db1:abc", -1, NULL, 0 },
		{ "db1:9042 ", -1, NULL, 0 },
		{ "db 1", -1, NULL, 0 },
		{ "db1/x", -1, NULL, 0 },
		{ "[::1", -1, NULL, 0 },
		{ "[::1]x", -1, NULL, 0 },
		{ "[::1]:", -1, NULL, 0 },
		{ "[::1]:0", -1, NULL, 0 },
		{ "[]", -1, NULL, 0 },
		{ "[]:9042", -1, NULL, 0 },
		{ "[10.0.0.1]:9042", -1, NULL, 0 },
		{ "[db1]:9042", -1, NULL, 0 },
		{ "[fe80::1%eth0]:9042", -1, NULL, 0 },
		{ "1:2:3", -1, NULL, 0 },
		{ "fe80::1:9042:", -1, NULL, 0 },
	};
	char		 host[64];
	const char	*why;
	uint16_t	 port;
	size_t		 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		why = NULL;
		ck_assert_msg(util_split_hostport(t[i].s, host, sizeof(host),
		    &port, 9042, &why) == t[i].rc, "\"%s\"", t[i].s);
		if (t[i].rc == 0) {
			ck_assert_str_eq(host, t[i].host);
			ck_assert_uint_eq(port, t[i].port);
		} else
			ck_assert_msg(why != NULL && *why != '\0', "\"%s\": "
			    "no reason", t[i].s);
	}
}
END_TEST

START_TEST(test_split_hostport_limits)
{
	char		 host[8], big[300];
	const char	*why;
	uint16_t	 port;

	/* The host must fit with its NUL. */
	ck_assert_int_eq(util_split_hostport("abcdefg:1", host, sizeof(host),
	    &port, 1, &why), 0);
	ck_assert_str_eq(host, "abcdefg");
	ck_assert_int_eq(util_split_hostport("abcdefgh:1", host, sizeof(host),
	    &port, 1, &why), -1);
	ck_assert_int_eq(util_split_hostport("[::1:2:3]", host, sizeof(host),
	    &port, 1, &why), 0);
	ck_assert_int_eq(util_split_hostport("[::1:2:3:4]", host, sizeof(host),
	    &port, 1, &why), -1);
	ck_assert_int_eq(util_split_hostport("1:2::3:4", host, sizeof(host),
	    &port, 1, &why), -1);
	ck_assert_str_eq(why, "address too long");

	/* A NULL why is allowed. */
	ck_assert_int_eq(util_split_hostport("x:y", host, sizeof(host),
	    &port, 1, NULL), -1);
	ck_assert_int_eq(util_split_hostport(NULL, host, sizeof(host),
	    &port, 1, NULL), -1);

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(util_split_hostport(big, host, sizeof(host), &port,
	    1, &why), -1);
	ck_assert_str_eq(why, "host name too long");
}
END_TEST

START_TEST(test_is_ip_literal)
{
	ck_assert(util_is_ip_literal("127.0.0.1"));
	ck_assert(util_is_ip_literal("0.0.0.0"));
	ck_assert(util_is_ip_literal("::1"));
	ck_assert(util_is_ip_literal("::"));
	ck_assert(util_is_ip_literal("::ffff:127.0.0.1"));
	ck_assert(util_is_ip_literal("2001:db8::1"));
	ck_assert(!util_is_ip_literal("localhost"));
	ck_assert(!util_is_ip_literal("127.1"));
	ck_assert(!util_is_ip_literal("1.2.3.256"));
	ck_assert(!util_is_ip_literal(" 1.2.3.4"));
	ck_assert(!util_is_ip_literal("[::1]"));
	ck_assert(!util_is_ip_literal(""));
	ck_assert(!util_is_ip_literal(NULL));
}
END_TEST

/* Fill ${ss} from an address literal and port. */
static const struct sockaddr *
mkaddr(struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
	}
	return ((const struct sockaddr *)ss);
}

START_TEST(test_is_loopback)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_un	 sun;

	ck_assert(util_is_loopback(mkaddr(&ss, "127.0.0.1", 1)));
	ck_assert(util_is_loopback(mkaddr(&ss, "127.255.255.254", 1)));
	ck_assert(util_is_loopback(mkaddr(&ss, "127.0.0.0", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "128.0.0.1", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "126.255.255.255", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "0.0.0.0", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "10.0.0.1", 1)));
	ck_assert(util_is_loopback(mkaddr(&ss, "::1", 1)));
	ck_assert(util_is_loopback(mkaddr(&ss, "::ffff:127.0.0.1", 1)));
	ck_assert(util_is_loopback(mkaddr(&ss, "::ffff:127.9.9.9", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "::ffff:10.0.0.1", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "::", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "::2", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "::127.0.0.1", 1)));
	ck_assert(!util_is_loopback(mkaddr(&ss, "fe80::1", 1)));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert(!util_is_loopback((struct sockaddr *)&sun));
	ck_assert(!util_is_loopback(NULL));
}
END_TEST

START_TEST(test_sockaddr_str)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	struct sockaddr_un	 sun;
	char			 buf[UTIL_ADDRSTRLEN], small[6];

	ck_assert_str_eq(util_sockaddr_str(mkaddr(&ss, "1.2.3.4", 9042), buf,
	    sizeof(buf)), "1.2.3.4:9042");
	ck_assert_str_eq(util_sockaddr_str(mkaddr(&ss, "::1", 9042), buf,
	    sizeof(buf)), "[::1]:9042");
	ck_assert_str_eq(util_sockaddr_str(mkaddr(&ss, "::ffff:1.2.3.4", 1),
	    buf, sizeof(buf)), "[::ffff:1.2.3.4]:1");
	mkaddr(&ss, "fe80::1", 80);
	sin6->sin6_scope_id = 2;
	ck_assert_str_eq(util_sockaddr_str((struct sockaddr *)&ss, buf,
	    sizeof(buf)), "[fe80::1%2]:80");
	ck_assert_str_eq(util_sockaddr_str(mkaddr(&ss,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535), buf,
	    sizeof(buf)), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	ck_assert_str_eq(util_sockaddr_str(mkaddr(&ss, "1.2.3.4", 9042), small,
	    sizeof(small)), "1.2.3");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert_str_eq(util_sockaddr_str((struct sockaddr *)&sun, buf,
	    sizeof(buf)), "unix");
	snprintf(sun.sun_path, sizeof(sun.sun_path), "/run/x.sock");
	ck_assert_str_eq(util_sockaddr_str((struct sockaddr *)&sun, buf,
	    sizeof(buf)), "unix:/run/x.sock");
	ck_assert_str_eq(util_sockaddr_str(NULL, buf, sizeof(buf)), "?");
	ck_assert_ptr_eq(util_sockaddr_str(NULL, buf, 0), buf);
}
END_TEST

START_TEST(test_now_ms)
{
	struct timespec	 ts = { 0, 30 * 1000 * 1000 };
	uint64_t	 a, b;

	a = util_now_ms();
	b = util_now_ms();
	ck_assert_uint_ge(b, a);
	nanosleep(&ts, NULL);
	b = util_now_ms();
	ck_assert_uint_ge(b - a, 25);
	ck_assert_uint_lt(b - a, 10000);
}
END_TEST

START_TEST(test_alloc)
{
	char	*p, *q;
	int	*z;
	size_t	 i;

	p = util_xmalloc(16);
	memset(p, 'a', 16);
	p = util_xrealloc(p, 4096);
	ck_assert_int_eq(p[15], 'a');
	free(p);
	free(util_xmalloc(0));
	p = util_xrealloc(NULL, 0);
	ck_assert_ptr_nonnull(p);
	p = util_xrealloc(p, 0);	/* must not free */
	ck_assert_ptr_nonnull(p);
	free(p);
	z = util_xcalloc(64, sizeof(*z));
	for (i = 0; i < 64; i++)
		ck_assert_int_eq(z[i], 0);
	free(z);
	free(util_xcalloc(0, 8));
	q = util_xstrdup("cqltunnel");
	ck_assert_str_eq(q, "cqltunnel");
	free(q);
}
END_TEST

START_TEST(test_xcalloc_overflow)
{
	/* Aborts (SIGABRT) rather than returning NULL. */
	(void)util_xcalloc(SIZE_MAX / 2, 4);
}
END_TEST

#ifndef __SANITIZE_ADDRESS__
START_TEST(test_xmalloc_huge)
{
	(void)util_xmalloc(SIZE_MAX - 16);
}
END_TEST
#endif

START_TEST(test_wipe)
{
	char	 buf[32];
	size_t	 i;

	memset(buf, 'x', sizeof(buf));
	util_wipe(buf, 16);
	for (i = 0; i < 16; i++)
		ck_assert_int_eq(buf[i], 0);
	ck_assert_int_eq(buf[16], 'x');
	util_wipe(NULL, 10);
	util_wipe(buf, 0);
	ck_assert_int_eq(buf[16], 'x');
}
END_TEST

/*
 * util_evbuffer_add_wiped queues a copy of its own (by reference, one
 * extent), so the caller's bytes may be wiped at once; the copy goes with
 * the buffer, sent or not (valgrind's unit run checks nothing leaks).
 */
START_TEST(test_evbuffer_add_wiped)
{
	struct evbuffer		*b;
	struct evbuffer_iovec	 v[2];
	char			 secret[] = "user\0pass-word", got[32];
	size_t			 n = sizeof(secret) - 1;

	ck_assert_ptr_nonnull(b = evbuffer_new());
	ck_assert_int_eq(util_evbuffer_add_wiped(b, "x", 0), 0);
	ck_assert_uint_eq(evbuffer_get_length(b), 0);
	ck_assert_int_eq(util_evbuffer_add_wiped(b, secret, n), 0);
	util_wipe(secret, sizeof(secret));
	ck_assert_uint_eq(evbuffer_get_length(b), n);
	ck_assert_int_eq(evbuffer_peek(b, -1, NULL, v, 2), 1);
	ck_assert_uint_eq(v[0].iov_len, n);
	ck_assert_ptr_ne(v[0].iov_base, secret);
	ck_assert_int_eq(evbuffer_remove(b, got, sizeof(got)), (int)n);
	ck_assert_mem_eq(got, "user\0pass-word", n);
	ck_assert_uint_eq(evbuffer_get_length(b), 0);
	/* Still queued when the buffer goes: freed with it. */
	ck_assert_int_eq(util_evbuffer_add_wiped(b, got, n), 0);
	evbuffer_free(b);
}
END_TEST

/* Make a fresh scratch directory for secret files. */
static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_util.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(secret_path, sizeof(secret_path), "%s/secret", tmpdir);
}

/* Remove the scratch directory. */
static void
teardown(void)
{
	unlink(secret_path);
	rmdir(tmpdir);
}

/* Write ${len} bytes to the secret file with ${mode}. */
static void
put_secret(const void *data, size_t len, mode_t mode)
{
	FILE	*f;

	unlink(secret_path);
	f = fopen(secret_path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(secret_path, mode), 0);
}

/* Read the secret file with a limit of ${max}; return the result. */
static int
read_secret(size_t max, char **out, size_t *len, char *why, size_t whylen)
{
	*out = NULL;
	*len = 0;
	why[0] = '\0';
	return (util_read_secret_file(secret_path, out, len, max, why,
	    whylen));
}

START_TEST(test_secret_ok)
{
	static const struct {
		const char	*data;
		size_t		 len;
		const char	*want;
		size_t		 wantlen;
		mode_t		 mode;
	} t[] = {
		{ "hunter2\n", 8, "hunter2", 7, 0600 },
		{ "hunter2\r\n", 9, "hunter2", 7, 0600 },
		{ "hunter2", 7, "hunter2", 7, 0400 },
		{ "hunter2\n", 8, "hunter2", 7, 0640 },
		{ "hunter2\n", 8, "hunter2", 7, 0660 },
		{ "hunter2\n\n", 9, "hunter2\n", 8, 0600 },
		{ "hunter2\r", 8, "hunter2\r", 8, 0600 },
		{ " sp ace \n", 9, " sp ace ", 8, 0600 },
		{ "0123456789\n", 11, "0123456789", 10, 0600 },
	};
	char	*out, why[128];
	size_t	 len, i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		put_secret(t[i].data, t[i].len, t[i].mode);
		ck_assert_msg(read_secret(10, &out, &len, why, sizeof(why)) ==
		    0, "case %zu: %s", i, why);
		ck_assert_uint_eq(len, t[i].wantlen);
		ck_assert_mem_eq(out, t[i].want, len);
		ck_assert_int_eq(out[len], '\0');
		free(out);
	}
}
END_TEST

START_TEST(test_secret_bad)
{
	static const struct {
		const char	*data;
		size_t		 len;
		mode_t		 mode;
		const char	*why;
	} t[] = {
		{ "hunter2\n", 8, 0644, "readable by everyone (mode 0644)" },
		{ "hunter2\n", 8, 0604, "readable by everyone (mode 0604)" },
		{ "hunter2\n", 8, 0602, "writable by everyone (mode 0602)" },
		{ "", 0, 0600, "empty" },
		{ "\n", 1, 0600, "empty" },
		{ "\r\n", 2, 0600, "empty" },
		{ "0123456789A\n", 12, 0600, "longer than 10 bytes" },
		{ "0123456789A", 11, 0600, "longer than 10 bytes" },
		{ "0123456789\n\n", 12, 0600, "longer than 10 bytes" },
		{ "0123456789ABCDEFGHIJ", 20, 0600, "longer than 10 bytes" },
		{ "hun\0ter2\n", 9, 0600, "contains a NUL byte" },
	};
	char	*out, why[128];
	size_t	 len, i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		put_secret(t[i].data, t[i].len, t[i].mode);
		ck_assert_msg(read_secret(10, &out, &len, why, sizeof(why)) ==
		    -1, "case %zu accepted", i);
		ck_assert_ptr_null(out);
		ck_assert_msg(strstr(why, t[i].why) != NULL, "case %zu: %s",
		    i, why);
		ck_assert_ptr_null(strstr(why, "hunter2"));
	}
}
END_TEST

START_TEST(test_secret_not_file)
{
	char	*out, why[128];
	size_t	 len;

	ck_assert_int_eq(read_secret(10, &out, &len, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "No such file or directory");
	ck_assert_int_eq(util_read_secret_file(tmpdir, &out, &len, 10, why,
	    sizeof(why)), -1);
	ck_assert_str_eq(why, "not a regular file");
	ck_assert_int_eq(mkfifo(secret_path, 0600), 0);
	ck_assert_int_eq(read_secret(10, &out, &len, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "not a regular file");
	ck_assert_int_eq(util_read_secret_file("/dev/null", &out, &len, 10,
	    why, sizeof(why)), -1);
	ck_assert_str_eq(why, "not a regular file");
	/* A short reason buffer is still terminated. */
	ck_assert_int_eq(util_read_secret_file("/dev/null", &out, &len, 10,
	    why, 4), -1);
	ck_assert_str_eq(why, "not");
}
END_TEST

START_TEST(test_secret_unreadable)
{
	char	*out, why[128];
	size_t	 len;

	if (geteuid() == 0)
		return;		/* root reads anything */
	put_secret("hunter2\n", 8, 0200);
	ck_assert_int_eq(read_secret(10, &out, &len, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "Permission denied");
}
END_TEST

Suite *
util_suite(void)
{
	Suite		*s = suite_create("util");
	TCase		*tc;
	const char	*fork = getenv("CK_FORK");

	tc = tcase_create("parse");
	tcase_add_test(tc, test_parse_uint);
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_parse_size);
	tcase_add_test(tc, test_parse_bool);
	tcase_add_test(tc, test_split_hostport);
	tcase_add_test(tc, test_split_hostport_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("net");
	tcase_add_test(tc, test_is_ip_literal);
	tcase_add_test(tc, test_is_loopback);
	tcase_add_test(tc, test_sockaddr_str);
	suite_add_tcase(s, tc);

	tc = tcase_create("misc");
	tcase_add_test(tc, test_now_ms);
	tcase_add_test(tc, test_alloc);
	tcase_add_test(tc, test_wipe);
	tcase_add_test(tc, test_evbuffer_add_wiped);
	/* Aborting tests need a forked child (not under CK_FORK=no). */
	if (fork == NULL || strcmp(fork, "no") != 0) {
		tcase_add_test_raise_signal(tc, test_xcalloc_overflow, SIGABRT);
#ifndef __SANITIZE_ADDRESS__	/* ASan reports it instead */
		tcase_add_test_raise_signal(tc, test_xmalloc_huge, SIGABRT);
#endif
	}
	suite_add_tcase(s, tc);

	tc = tcase_create("secret");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_secret_ok);
	tcase_add_test(tc, test_secret_bad);
	tcase_add_test(tc, test_secret_not_file);
	tcase_add_test(tc, test_secret_unreadable);
	suite_add_tcase(s, tc);
	return (s);
}
