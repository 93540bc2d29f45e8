/*
 * Unit tests for config.c: the fixtures in tests/data, and files written
 * at test time where modes, bytes or paths matter (password files, CRLF,
 * NUL bytes, the shipped example).
 */
#define SUITE_FN	config_suite
#include "test_main.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define DATA(name)	TEST_DATA_DIR "/" name
#define EXAMPLE		TEST_DATA_DIR "/../../conf/cqltunnel.ini"

/* A scratch directory for one test, and the errors of its loads. */
static char			 tmpdir[64];
static struct config_errors	 errs;

/* Remove one entry below the scratch directory. */
static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return (remove(path));
}

/* Make a fresh scratch directory and empty error list. */
static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_config.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	memset(&errs, 0, sizeof(errs));
}

/* Remove the scratch directory and free the errors. */
static void
teardown(void)
{
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	config_errors_free(&errs);
}

/* Write ${len} bytes to ${name} in the scratch dir with ${mode}. */
static const char *
put(const char *name, const void *data, size_t len, mode_t mode)
{
	static char	 path[4][256];
	static int	 slot;
	char		*p = path[slot++ % 4];
	FILE		*f;

	snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
	f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(p, mode), 0);
	return (p);
}

/* Write the string ${s} to ${name} in the scratch dir. */
static const char *
puts_file(const char *name, const char *s, mode_t mode)
{
	return (put(name, s, strlen(s), mode));
}

/* Print every collected error, to explain a failing assertion. */
static void
dump(void)
{
	size_t	 i;

	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "  error %zu: %s\n", i, errs.v[i]);
}

/* True if some error contains ${needle}. */
static bool
has_error(const char *needle)
{
	size_t	 i;

	for (i = 0; i < errs.n; i++) {
		if (strstr(errs.v[i], needle) != NULL)
			return (true);
	}
	return (false);
}

/* Fail unless some error contains ${needle}. */
static void
want(const char *needle)
{
	if (!has_error(needle)) {
		dump();
		ck_abort_msg("no error contains \"%s\"", needle);
	}
}

/* Fail unless there are exactly ${n} errors. */
static void
want_n(size_t n)
{
	if (errs.n != n) {
		dump();
		ck_abort_msg("%zu errors, expected %zu", errs.n, n);
	}
}

/* Fail if any error contains ${secret}. */
static void
never(const char *secret)
{
	if (has_error(secret)) {
		dump();
		ck_abort_msg("an error contains \"%s\"", secret);
	}
}

/* Load ${path}, which must fail. */
static void
load_bad(const char *path)
{
	struct config	*c;

	c = config_load(path, &errs);
	if (c != NULL) {
		config_free(c);
		ck_abort_msg("%s loaded", path);
	}
	ck_assert_uint_gt(errs.n, 0);
}

/* Load ${path}, which must succeed. */
static struct config *
load_good(const char *path)
{
	struct config	*c;

	c = config_load(path, &errs);
	if (c == NULL) {
		dump();
		ck_abort_msg("%s did not load", path);
	}
	ck_assert_uint_eq(errs.n, 0);
	return (c);
}

/* A valid file's first lines, to which a test appends its own. */
#define BASE	"[cluster]\ncontact_points = 10.0.0.1\n[tls]\nca_file = ca.pem\n"

/* Write BASE plus ${extra} to t.ini and load it; NULL if it fails. */
static struct config *
load_with(const char *extra)
{
	char	 buf[4096];

	snprintf(buf, sizeof(buf), "%s%s", BASE, extra);
	return (config_load(puts_file("t.ini", buf, 0644), &errs));
}

START_TEST(test_defaults)
{
	struct config	*c = load_good(DATA("good-minimal.ini"));

	ck_assert_str_eq(c->path, DATA("good-minimal.ini"));
	ck_assert_str_eq(c->listen_host, "127.0.0.1");
	ck_assert_uint_eq(c->listen_port, 9042);
	ck_assert(!c->allow_remote);
	ck_assert_uint_eq(c->max_connections, 1024);
	ck_assert_uint_eq(c->workers, 1);
	ck_assert(c->resumption);
	ck_assert_uint_eq(c->drain_timeout_ms, 30000);
	ck_assert_uint_eq(c->busy_poll_ms, 0);
	ck_assert_uint_eq(c->max_frame_size, 256u * 1024 * 1024);
	ck_assert_uint_eq(c->ncontact_points, 1);
	ck_assert_str_eq(c->contact_points[0].host, "10.0.0.1");
	ck_assert_uint_eq(c->contact_points[0].port, 9042);
	ck_assert_uint_eq(c->connect_timeout_ms, 5000);
	ck_assert_uint_eq(c->handshake_timeout_ms, 10000);
	ck_assert_int_eq(c->topology, CONFIG_TOPOLOGY_TRANSLATE);
	ck_assert_uint_eq(c->translate_net, 0x7F000100u);
	ck_assert_uint_eq(c->translate_bits, 24);
	ck_assert_ptr_null(c->local_dc);
	ck_assert(c->reuse_connections);
	ck_assert_uint_eq(c->reuse_max_idle, 8);
	ck_assert_uint_eq(c->reuse_idle_timeout_ms, 10000);
	ck_assert_str_eq(c->ca_file, DATA("ca.pem"));
	ck_assert(!c->ca_system);
	ck_assert_ptr_null(c->cert_file);
	ck_assert_ptr_null(c->key_file);
	ck_assert_ptr_null(c->key_password_file);
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_FULL);
	ck_assert_ptr_null(c->server_name);
	ck_assert_int_eq(c->min_version, CONFIG_TLS_1_2);
	ck_assert_ptr_null(c->ciphers);
	ck_assert_ptr_null(c->ciphersuites);
	ck_assert_ptr_null(c->crl_file);
	ck_assert(!c->watch);
	ck_assert_ptr_null(c->username);
	ck_assert_ptr_null(c->password);
	ck_assert_uint_eq(c->password_len, 0);
	ck_assert_ptr_null(c->password_file);
	ck_assert_ptr_null(c->authzid);
	ck_assert_int_eq(c->client_auth, CONFIG_CLIENT_AUTH_NONE);
	ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
	config_free(c);
}
END_TEST

/*
 * The secure defaults, one by one: loopback only, no access list (so no
 * per-accept lookup), no unix socket, full verification with no way
 * around it unless acknowledged, TLS 1.2 at least, only the named CA
 * file (no system store), no core dumps.
 */
START_TEST(test_secure_defaults)
{
	struct config	*c = load_good(DATA("good-minimal.ini"));

	ck_assert_str_eq(c->listen_host, "127.0.0.1");
	ck_assert(!c->allow_remote);
	ck_assert_ptr_null(c->listen_unix);
	ck_assert(!c->access_control);
	ck_assert_uint_eq(c->nallow_uids, 0);
	ck_assert_uint_eq(c->nallow_gids, 0);
	ck_assert_uint_eq(c->unix_mode, 0660);
	ck_assert_uint_eq(c->unix_owner, (uid_t)-1);
	ck_assert_uint_eq(c->unix_group, (gid_t)-1);
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_FULL);
	ck_assert(!c->insecure_skip_verify);
	ck_assert_int_eq(c->min_version, CONFIG_TLS_1_2);
	ck_assert(!c->ca_system);
	ck_assert_ptr_nonnull(c->ca_file);
	ck_assert(!c->allow_core_dumps);
	config_free(c);

	/* The system store only when asked for by name. */
	c = load_good(puts_file("t.ini", "[cluster]\ncontact_points = a\n"
	    "[tls]\nca_file = system\n", 0644));
	ck_assert(c->ca_system);
	ck_assert_ptr_null(c->ca_file);
	config_free(c);

	/* There is no TLS below 1.2 to ask for. */
	c = load_with("[tls]\nmin_version = TLSv1.1\n");
	ck_assert_ptr_null(c);
	want("t.ini:6: [tls] min_version: invalid value \"TLSv1.1\" "
	    "(expected TLSv1.2 or TLSv1.3)");
	config_errors_free(&errs);

	/* A non-loopback address needs allow_remote. */
	c = load_with("[listen]\naddress = 0.0.0.0:9042\n");
	ck_assert_ptr_null(c);
	want("is not a loopback address");
}
END_TEST

/* verify = none is refused unless insecure_skip_verify acknowledges it. */
START_TEST(test_verify_none_acknowledged)
{
	struct config	*c;

	c = load_with("[tls]\nverify = none\n");
	ck_assert_ptr_null(c);
	want_n(1);
	want("t.ini:6: [tls] verify: \"none\" turns off verification of the "
	    "node's certificate");
	want("also set insecure_skip_verify = yes");
	config_errors_free(&errs);

	c = load_with("[tls]\nverify = none\ninsecure_skip_verify = yes\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_NONE);
	ck_assert(c->insecure_skip_verify);
	config_free(c);

	c = load_with("[tls]\nverify = chain\ninsecure_skip_verify = yes\n");
	ck_assert_ptr_null(c);
	want("t.ini:7: [tls] insecure_skip_verify: only acknowledges verify "
	    "= none");
}
END_TEST

START_TEST(test_allow_ids)
{
	struct config	*c;

	/* Names are resolved at load; numbers are taken as they are. */
	c = load_with("[listen]\nallow_uids = root, 1000 ,4242\n"
	    "allow_uids = 7\nallow_gids = root,55\n");
	if (c == NULL)
		dump();
	ck_assert_ptr_nonnull(c);
	ck_assert(c->access_control);
	ck_assert_uint_eq(c->nallow_uids, 4);
	ck_assert_uint_eq(c->allow_uids[0], 0);
	ck_assert_uint_eq(c->allow_uids[1], 1000);
	ck_assert_uint_eq(c->allow_uids[2], 4242);
	ck_assert_uint_eq(c->allow_uids[3], 7);
	ck_assert_uint_eq(c->nallow_gids, 2);
	ck_assert_uint_eq(c->allow_gids[0], 0);
	ck_assert_uint_eq(c->allow_gids[1], 55);
	config_free(c);

	/* Groups alone turn access control on. */
	c = load_with("[listen]\nallow_gids = 0\n");
	ck_assert_ptr_nonnull(c);
	ck_assert(c->access_control);
	ck_assert_uint_eq(c->nallow_uids, 0);
	config_free(c);

	c = load_with("[listen]\nallow_uids = no-such-user-xyz, 4294967295, "
	    ",\nallow_gids = no-such-group-xyz\n");
	ck_assert_ptr_null(c);
	want("t.ini:6: [listen] allow_uids: \"no-such-user-xyz\": no such "
	    "user");
	want("t.ini:6: [listen] allow_uids: \"4294967295\": not a valid "
	    "user id");
	want("t.ini:6: [listen] allow_uids: empty entry in the list");
	want("t.ini:7: [listen] allow_gids: \"no-such-group-xyz\": no such "
	    "group");
	want_n(5);	/* two empty entries */
	config_errors_free(&errs);

	/* Identifying owners needs loopback. */
	c = load_with("[listen]\naddress = [::]:9042\nallow_remote = yes\n"
	    "allow_uids = 0\n");
	ck_assert_ptr_null(c);
	want("t.ini:8: [listen] allow_uids: needs a loopback or unix: "
	    "[listen] address: the owner of a connection from another host "
	    "cannot be known (:: is not loopback)");
	want_n(1);
	config_errors_free(&errs);

	c = load_with("[listen]\naddress = [::1]:9042\nallow_gids = 0\n");
	ck_assert_ptr_nonnull(c);
	config_free(c);
}
END_TEST

START_TEST(test_unix_listen)
{
	struct config	*c;
	char		 want_path[300];

	c = load_with("[listen]\naddress = unix:/run/cqltunnel/cql.sock\n"
	    "unix_mode = 0600\nunix_owner = root\nunix_group = 0\n"
	    "allow_uids = 0\n[cluster]\ntopology = pin\n");
	if (c == NULL)
		dump();
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_null(c->listen_host);
	ck_assert_str_eq(c->listen_unix, "/run/cqltunnel/cql.sock");
	ck_assert_uint_eq(c->unix_mode, 0600);
	ck_assert_uint_eq(c->unix_owner, 0);
	ck_assert_uint_eq(c->unix_group, 0);
	ck_assert(c->access_control);
	config_free(c);

	/* Relative to the config's directory; octal without the 0. */
	c = load_with("[listen]\naddress = unix:cql.sock\nunix_mode = 666\n"
	    "[cluster]\ntopology = pin\n");
	ck_assert_ptr_nonnull(c);
	snprintf(want_path, sizeof(want_path), "%s/cql.sock", tmpdir);
	ck_assert_str_eq(c->listen_unix, want_path);
	ck_assert_uint_eq(c->unix_mode, 0666);
	config_free(c);

	/* Translate mode needs TCP addresses. */
	c = load_with("[listen]\naddress = unix:/run/x.sock\n");
	ck_assert_ptr_null(c);
	want("t.ini:6: [listen] address: a unix: address needs [cluster] "
	    "topology = pin");
	want_n(1);
	config_errors_free(&errs);

	c = load_with("[listen]\naddress = unix:\nunix_mode = 0778\n"
	    "unix_group = no-such-group-xyz\n[cluster]\ntopology = pin\n");
	ck_assert_ptr_null(c);
	want("t.ini:6: [listen] address: unix: needs a socket path");
	want("t.ini:7: [listen] unix_mode: invalid mode \"0778\"");
	want("t.ini:8: [listen] unix_group: \"no-such-group-xyz\": no such "
	    "group");
	config_errors_free(&errs);

	c = load_with("[listen]\naddress = unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaa.sock\n[cluster]\ntopology = pin\n");
	ck_assert_ptr_null(c);
	want("longer than 107 bytes");
	config_errors_free(&errs);

	/* unix_* keys without a unix: address, allow_remote with one. */
	c = load_with("[listen]\nunix_mode = 0600\n");
	ck_assert_ptr_null(c);
	want("t.ini:6: [listen] unix_mode: applies to a unix: address only");
	config_errors_free(&errs);
	c = load_with("[listen]\naddress = unix:/x.sock\nallow_remote = yes\n"
	    "[cluster]\ntopology = pin\n");
	ck_assert_ptr_null(c);
	want("t.ini:7: [listen] allow_remote: applies to TCP addresses only");
}
END_TEST

START_TEST(test_core_dumps_key)
{
	struct config	*c;

	c = load_with("[daemon]\nallow_core_dumps = yes\n");
	ck_assert_ptr_nonnull(c);
	ck_assert(c->allow_core_dumps);
	config_free(c);
	c = load_with("[daemon]\nallow_core_dumps = maybe\n");
	ck_assert_ptr_null(c);
	want("t.ini:6: [daemon] allow_core_dumps: invalid value \"maybe\"");
}
END_TEST

START_TEST(test_full)
{
	struct config	*c = load_good(DATA("good-full.ini"));

	ck_assert_str_eq(c->listen_host, "::1");
	ck_assert_uint_eq(c->listen_port, 19042);
	ck_assert(!c->allow_remote);
	ck_assert_uint_eq(c->max_connections, 10);
	ck_assert_uint_eq(c->drain_timeout_ms, 1500);
	ck_assert_uint_eq(c->max_frame_size, 1024 * 1024);
	ck_assert_uint_eq(c->ncontact_points, 3);
	ck_assert_str_eq(c->contact_points[0].host, "db1.example.com");
	ck_assert_uint_eq(c->contact_points[0].port, 9042);
	ck_assert_str_eq(c->contact_points[1].host, "192.0.2.1");
	ck_assert_uint_eq(c->contact_points[1].port, 9043);
	ck_assert_str_eq(c->contact_points[2].host, "2001:db8::1");
	ck_assert_uint_eq(c->contact_points[2].port, 9044);
	ck_assert_uint_eq(c->connect_timeout_ms, 120000);
	ck_assert_uint_eq(c->handshake_timeout_ms, 7000);
	ck_assert_int_eq(c->topology, CONFIG_TOPOLOGY_PIN);
	ck_assert_uint_eq(c->translate_net, 0x7F000200u);
	ck_assert_uint_eq(c->translate_bits, 28);
	ck_assert_str_eq(c->local_dc, "dc-east");
	ck_assert(c->ca_system);
	ck_assert_ptr_null(c->ca_file);
	ck_assert_str_eq(c->cert_file, DATA("certs/client.pem"));
	ck_assert_str_eq(c->key_file, "/etc/ssl/private/client.key");
	ck_assert_str_eq(c->key_password_file, DATA("certs/key.pass"));
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_CHAIN);
	ck_assert_str_eq(c->server_name, "cassandra.example.com");
	ck_assert_int_eq(c->min_version, CONFIG_TLS_1_3);
	ck_assert_str_eq(c->ciphers, "ECDHE+AESGCM");
	ck_assert_str_eq(c->ciphersuites, "TLS_AES_256_GCM_SHA384");
	ck_assert_str_eq(c->crl_file, DATA("certs/crl.pem"));
	ck_assert(c->watch);
	ck_assert_int_eq(c->client_auth, CONFIG_CLIENT_AUTH_PASSTHROUGH);
	ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
	config_free(c);
}
END_TEST

START_TEST(test_where)
{
	struct config	*c = load_good(DATA("good-full.ini"));
	char		 buf[512];

	ck_assert_str_eq(config_where(c, "tls", "verify", buf, sizeof(buf)),
	    DATA("good-full.ini") ":23: [tls] verify");
	ck_assert_str_eq(config_where(c, "cluster", "contact_points", buf,
	    sizeof(buf)), DATA("good-full.ini") ":10: [cluster] contact_points");
	ck_assert_str_eq(config_where(c, "auth", "username", buf,
	    sizeof(buf)), DATA("good-full.ini") ": [auth] username");
	ck_assert_str_eq(config_where(c, "auth", "client_auth", buf,
	    sizeof(buf)), DATA("good-full.ini") ":32: [auth] client_auth");
	config_free(c);

	c = load_good(DATA("good-minimal.ini"));
	ck_assert_str_eq(config_where(c, "listen", "drain_timeout", buf,
	    sizeof(buf)), DATA("good-minimal.ini") ": [listen] drain_timeout");
	/* Truncated, still terminated. */
	(void)config_where(c, "tls", "ca_file", buf, 8);
	ck_assert_uint_lt(strlen(buf), 8);
	config_free(c);
}
END_TEST

START_TEST(test_remote_allowed)
{
	struct config	*c = load_good(DATA("good-remote.ini"));

	ck_assert_str_eq(c->listen_host, "::");
	ck_assert(c->allow_remote);
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_NONE);
	config_free(c);
}
END_TEST

/* A file full of mistakes: the first CONFIG_MAX_ERRORS, then a stop. */
START_TEST(test_too_many_errors)
{
	char		 buf[4096], *t = buf;
	struct config	*c;
	int		 i;

	t += sprintf(t, "[listen]\n");
	for (i = 1; i <= 3 * CONFIG_MAX_ERRORS; i++)
		t += sprintf(t, "nosuch%d = 1\n", i);
	c = load_with(buf);
	ck_assert_ptr_null(c);
	want_n(CONFIG_MAX_ERRORS);
	/* Lines 1-5 are BASE and [listen]: the first mistake is line 6. */
	want("t.ini:6: [listen] nosuch1: unknown key");
	ck_assert_ptr_null(strstr(errs.v[CONFIG_MAX_ERRORS - 1],
	    "nosuch21"));
	/* One more: "stopped reading" at the next line, not kept. */
	ck_assert_uint_eq(errs.more, 1);
	config_errors_free(&errs);

	/* Exactly CONFIG_MAX_ERRORS mistakes: all kept, none more. */
	t = buf + sprintf(buf, "[listen]\n");
	for (i = 1; i <= CONFIG_MAX_ERRORS; i++)
		t += sprintf(t, "nosuch%d = 1\n", i);
	ck_assert_ptr_null(load_with(buf));
	want_n(CONFIG_MAX_ERRORS);
	ck_assert_uint_eq(errs.more, 0);
}
END_TEST

START_TEST(test_bad_verify)
{
	load_bad(DATA("bad-verify.ini"));
	want_n(1);
	ck_assert_str_eq(errs.v[0], DATA("bad-verify.ini") ":7: [tls] verify: "
	    "invalid value \"fulll\" (expected full, chain or none)");
}
END_TEST

START_TEST(test_all_errors_at_once)
{
	load_bad(DATA("bad-three.ini"));
	want_n(3);
	want("bad-three.ini:3: [listen] max_connections: invalid value \"0\" "
	    "(expected a whole number from 1 to 1000000)");
	want("bad-three.ini:7: [cluster] connect_timeout: invalid duration "
	    "\"5 seconds\"");
	want("bad-three.ini:11: [tls] min_version: invalid value \"TLSv1.1\" "
	    "(expected TLSv1.2 or TLSv1.3)");
}
END_TEST

START_TEST(test_unknown)
{
	load_bad(DATA("bad-unknown.ini"));
	want("bad-unknown.ini:2: address: key is outside any section (put "
	    "it under [listen])");
	want("bad-unknown.ini:4: [listen] adress: unknown key (expected one "
	    "of: address, allow_remote, allow_uids, allow_gids, unix_mode, "
	    "unix_owner, unix_group, max_connections, workers, "
	    "drain_timeout, busy_poll, max_frame_size)");
	want("bad-unknown.ini:7: [tsl]: unknown section");
	want("bad-unknown.ini:11: [tls] username: unknown key in this section "
	    "(it belongs in [auth])");
	want("bad-unknown.ini:13: [auth] password: unknown key; the password "
	    "is never written here");
	want("bad-unknown.ini:14: [empty]: unknown section");
	/* Keys inside an unknown section are not reported one by one. */
	ck_assert(!has_error("bad-unknown.ini:8:"));
	never("hunter2");
	want_n(6);
}
END_TEST

START_TEST(test_duplicate)
{
	load_bad(DATA("bad-duplicate.ini"));
	want("bad-duplicate.ini:3: [listen] address: already set at line 2");
	want("bad-duplicate.ini:11: [tls] verify: already set at line 10 "
	    "(this indented line continues it");
	want_n(2);
}
END_TEST

START_TEST(test_repeat_appends)
{
	struct config	*c;

	c = load_with("[cluster]\ncontact_points = a.example, b:1\n"
	    "  [::1]:2 ; a continuation line\n"
	    "contact_points = c\n");
	if (c == NULL)
		dump();
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->ncontact_points, 5);
	ck_assert_str_eq(c->contact_points[0].host, "10.0.0.1");
	ck_assert_str_eq(c->contact_points[1].host, "a.example");
	ck_assert_str_eq(c->contact_points[2].host, "b");
	ck_assert_uint_eq(c->contact_points[2].port, 1);
	ck_assert_str_eq(c->contact_points[3].host, "::1");
	ck_assert_uint_eq(c->contact_points[3].port, 2);
	ck_assert_str_eq(c->contact_points[4].host, "c");
	ck_assert_uint_eq(c->contact_points[4].port, 9042);
	config_free(c);
}
END_TEST

START_TEST(test_long_line)
{
	load_bad(DATA("bad-long-line.ini"));
	want("bad-long-line.ini:3: line too long (250 bytes; at most 198)");
	want("bad-long-line.ini:7: line too long (199 bytes; at most 198)");
	/* Line numbers after the long lines are still right. */
	want("bad-long-line.ini:10: [log] level: invalid value \"loud\"");
	want_n(3);
}
END_TEST

START_TEST(test_long_line_crlf)
{
	char	 buf[512];

	/* 198 bytes plus CRLF is fine; 199 plus CRLF is not. */
	snprintf(buf, sizeof(buf), "%s[log]\r\nlevel = debug%185s\r\n"
	    "level = debug%186s\r\n", BASE, "", "");
	ck_assert_ptr_null(config_load(puts_file("t.ini", buf, 0644), &errs));
	want("t.ini:7: line too long (199 bytes; at most 198)");
	want_n(1);
}
END_TEST

START_TEST(test_syntax)
{
	load_bad(DATA("bad-syntax.ini"));
	want("bad-syntax.ini:3: syntax error: expected \"key = value\"");
	want("bad-syntax.ini:6: syntax error: no key name before \"=\"");
	want("bad-syntax.ini:7: syntax error: missing \"]\"");
	want("bad-syntax.ini:8: syntax error: expected \"key = value\"");
	want_n(4);
}
END_TEST

START_TEST(test_values)
{
	load_bad(DATA("bad-values.ini"));
	want("bad-values.ini:2: [listen] address: \"localhost\" is not an IP "
	    "address literal");
	want("bad-values.ini:3: [listen] allow_remote: invalid value \"maybe\" "
	    "(expected yes or no)");
	want("bad-values.ini:4: [listen] max_connections: invalid value "
	    "\"1000001\"");
	want("bad-values.ini:5: [listen] drain_timeout: invalid duration "
	    "\"-1s\" (expected a number with unit ms, s or m, from 0ms to 60m)");
	want("bad-values.ini:6: [listen] max_frame_size: size \"1GiB\" is out "
	    "of range (expected 64KiB to 256MiB)");
	want("bad-values.ini:8: [cluster] contact_points: empty entry");
	want("bad-values.ini:8: [cluster] contact_points: invalid contact "
	    "point \"node2:99999\": invalid port");
	want("bad-values.ini:9: [cluster] handshake_timeout: duration \"61m\" "
	    "is out of range (expected 10ms to 5m)");
	want("bad-values.ini:11: [tls] ca_file: empty value");
	want("bad-values.ini:12: [tls] min_version: invalid value \"1.1\"");
	want("bad-values.ini:14: [auth] client_auth: invalid value "
	    "\"sometimes\" (expected none, accept or passthrough)");
	want("bad-values.ini:16: [log] level: invalid value \"loud\" (expected "
	    "error, warn, info or debug)");
	want_n(12);
}
END_TEST

START_TEST(test_topology)
{
	struct config	*c;

	c = load_with("[cluster]\ntopology = translate\n"
	    "translate_prefix = 127.10.0.0/16\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->topology, CONFIG_TOPOLOGY_TRANSLATE);
	ck_assert_uint_eq(c->translate_net, 0x7F0A0000u);
	ck_assert_uint_eq(c->translate_bits, 16);
	config_free(c);

	ck_assert_ptr_null(load_with("[cluster]\ntopology = single\n"));
	want("t.ini:6: [cluster] topology: invalid value \"single\" "
	    "(expected translate or pin)");
	config_errors_free(&errs);

	ck_assert_ptr_null(load_with("[cluster]\n"
	    "translate_prefix = 10.0.1.0/24\n"));
	want("t.ini:6: [cluster] translate_prefix: \"10.0.1.0/24\" is not a "
	    "loopback network (use one inside 127.0.0.0/8)");
	config_errors_free(&errs);

	ck_assert_ptr_null(load_with("[cluster]\n"
	    "translate_prefix = 127.0.1.7/24\n"));
	want("t.ini:6: [cluster] translate_prefix: \"127.0.1.7/24\" has host "
	    "bits set");
	config_errors_free(&errs);

	ck_assert_ptr_null(load_with("[cluster]\n"
	    "translate_prefix = 127.0.1.0/31\n"));
	want("t.ini:6: [cluster] translate_prefix: invalid value "
	    "\"127.0.1.0/31\" (expected an IPv4 network such as "
	    "127.0.1.0/24, prefix length 8 to 30)");
	config_errors_free(&errs);

	ck_assert_ptr_null(load_with("[cluster]\n"
	    "translate_prefix = 127.0.1.0\n"));
	want("t.ini:6: [cluster] translate_prefix: invalid value");
	config_errors_free(&errs);

	ck_assert_ptr_null(load_with("[cluster]\n"
	    "translate_prefix = 127.0.1/24\n"));
	want("t.ini:6: [cluster] translate_prefix: \"127.0.1\" is not an "
	    "IPv4 address");
	config_errors_free(&errs);

	/* passthrough works with translate too. */
	c = load_with("[auth]\nclient_auth = passthrough\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->topology, CONFIG_TOPOLOGY_TRANSLATE);
	config_free(c);
}
END_TEST

/* systemd credentials: %credentials%/NAME under $CREDENTIALS_DIRECTORY. */
START_TEST(test_credentials_dir)
{
	struct config	*c;
	char		 want_path[300];

	put("cql-password", "s3cret\n", 7, 0400);
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", tmpdir, 1), 0);
	c = load_with("[auth]\nusername = app\n"
	    "password_file = %credentials%/cql-password\n");
	if (c == NULL)
		dump();
	ck_assert_ptr_nonnull(c);
	snprintf(want_path, sizeof(want_path), "%s/cql-password", tmpdir);
	ck_assert_str_eq(c->password_file, want_path);
	ck_assert_str_eq(c->password, "s3cret");
	config_free(c);

	ck_assert_int_eq(unsetenv("CREDENTIALS_DIRECTORY"), 0);
	ck_assert_ptr_null(load_with("[auth]\nusername = app\n"
	    "password_file = %credentials%/cql-password\n"));
	want("t.ini:7: [auth] password_file: %credentials%/ needs "
	    "$CREDENTIALS_DIRECTORY, which systemd sets for services with "
	    "LoadCredential=; it is not set here");
}
END_TEST

START_TEST(test_listen_loopback)
{
	load_bad(DATA("bad-listen.ini"));
	want("bad-listen.ini:2: [listen] address: 0.0.0.0 is not a loopback "
	    "address");
	want("set allow_remote = yes");
	want_n(1);
}
END_TEST

START_TEST(test_listen_addresses)
{
	static const struct {
		const char	*line;
		bool		 ok;
		const char	*host;
		unsigned	 port;
	} t[] = {
		{ "address = 127.0.0.1", true, "127.0.0.1", 9042 },
		{ "address = 127.1.2.3:1", true, "127.1.2.3", 1 },
		{ "address = [::1]:9142", true, "::1", 9142 },
		{ "address = ::1", true, "::1", 9042 },
		{ "address = [::ffff:127.0.0.1]:9042", true, "::ffff:127.0.0.1",
		    9042 },
		{ "address = [::]:9042", false, NULL, 0 },
		{ "address = 10.1.2.3:9042", false, NULL, 0 },
		{ "address = [::ffff:10.0.0.1]:9042", false, NULL, 0 },
		{ "address = 127.0.0.1:0", false, NULL, 0 },
		{ "address = 127.1:9042", false, NULL, 0 },
		{ "address = localhost", false, NULL, 0 },
		{ "address = [::1]x", false, NULL, 0 },
	};
	struct config	*c;
	char		 buf[256];
	size_t		 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(buf, sizeof(buf), "[listen]\n%s\n", t[i].line);
		c = load_with(buf);
		if ((c != NULL) != t[i].ok) {
			dump();
			ck_abort_msg("\"%s\" %s", t[i].line,
			    t[i].ok ? "refused" : "accepted");
		}
		if (c != NULL) {
			ck_assert_str_eq(c->listen_host, t[i].host);
			ck_assert_uint_eq(c->listen_port, t[i].port);
		} else
			want("t.ini:6: [listen] address: ");
		config_free(c);
		config_errors_free(&errs);
	}
}
END_TEST

START_TEST(test_limits)
{
	static const struct {
		const char	*lines;
		bool		 ok;
	} t[] = {
		{ "[listen]\nmax_connections = 1", true },
		{ "[listen]\nmax_connections = 1000000", true },
		{ "[listen]\nmax_connections = 1000001", false },
		{ "[listen]\nmax_connections = -5", false },
		{ "[listen]\nworkers = auto", true },
		{ "[listen]\nworkers = 1", true },
		{ "[listen]\nworkers = 64", true },
		{ "[listen]\nworkers = 0", false },
		{ "[listen]\nworkers = 65", false },
		{ "[listen]\nworkers = many", false },
		{ "[tls]\nsession_resumption = no", true },
		{ "[tls]\nsession_resumption = maybe", false },
		{ "[listen]\ndrain_timeout = 0", true },
		{ "[listen]\ndrain_timeout = 60m", true },
		{ "[listen]\ndrain_timeout = 3600001ms", false },
		{ "[listen]\nbusy_poll = 0", true },
		{ "[listen]\nbusy_poll = 1ms", true },
		{ "[listen]\nbusy_poll = 1s", true },
		{ "[listen]\nbusy_poll = 1001ms", false },
		{ "[listen]\nbusy_poll = yes", false },
		{ "[listen]\nmax_frame_size = 64KiB", true },
		{ "[listen]\nmax_frame_size = 65535", false },
		{ "[listen]\nmax_frame_size = 268435456", true },
		{ "[listen]\nmax_frame_size = 268435457", false },
		{ "[listen]\nmax_frame_size = 99999999999999999999", false },
		{ "[cluster]\nconnect_timeout = 10ms", true },
		{ "[cluster]\nconnect_timeout = 9ms", false },
		{ "[cluster]\nconnect_timeout = 5m", true },
		{ "[cluster]\nconnect_timeout = 300001ms", false },
		{ "[cluster]\nhandshake_timeout = 0", false },
		{ "[cluster]\ncontact_points = a,", false },
		{ "[cluster]\ncontact_points = [fe80::1%eth0]", false },
		{ "[cluster]\ncontact_points = a b", false },
		{ "[tls]\nverify = none", false },
		{ "[tls]\nverify = none\ninsecure_skip_verify = yes", true },
		{ "[tls]\ninsecure_skip_verify = yes", false },
		{ "[tls]\nmin_version = 1.2", true },
		{ "[log]\nlevel = warning", true },
		{ "[log]\nlevel = warn # no such comment", false },
	};
	struct config	*c;
	char		 buf[256];
	size_t		 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(buf, sizeof(buf), "%s\n", t[i].lines);
		c = load_with(buf);
		if ((c != NULL) != t[i].ok) {
			dump();
			ck_abort_msg("\"%s\" %s", t[i].lines,
			    t[i].ok ? "refused" : "accepted");
		}
		if (c == NULL) {
			want("t.ini:6: [");
			want_n(1);
		}
		config_free(c);
		config_errors_free(&errs);
	}
}
END_TEST

START_TEST(test_cross_keys)
{
	load_bad(DATA("bad-cross.ini"));
	want("bad-cross.ini:5: [tls] key_file: requires cert_file, which is "
	    "not set");
	want("bad-cross.ini:8: [auth] password_file: requires username");
	want("bad-cross.ini:9: [auth] authzid: requires username");
	want_n(3);
	config_errors_free(&errs);

	load_bad(DATA("bad-cross2.ini"));
	want("bad-cross2.ini:5: [tls] cert_file: requires key_file");
	want("bad-cross2.ini:6: [tls] key_password_file: requires key_file");
	want("bad-cross2.ini:8: [auth] username: requires password_file");
	want_n(3);
}
END_TEST

START_TEST(test_missing_keys)
{
	load_bad(DATA("bad-missing.ini"));
	want_n(2);
	ck_assert_str_eq(errs.v[0], DATA("bad-missing.ini")
	    ": [cluster] contact_points: required key is missing");
	ck_assert_str_eq(errs.v[1], DATA("bad-missing.ini")
	    ": [tls] ca_file: required key is missing");
}
END_TEST

START_TEST(test_missing_file)
{
	load_bad(DATA("no-such-file.ini"));
	want_n(1);
	ck_assert_str_eq(errs.v[0], DATA("no-such-file.ini")
	    ": cannot open: No such file or directory");
	config_errors_free(&errs);

	load_bad(tmpdir);
	want_n(1);
	ck_assert_str_eq(errs.v[0] + strlen(tmpdir),
	    ": cannot read: Is a directory");
}
END_TEST

START_TEST(test_unreadable_file)
{
	const char	*p = puts_file("t.ini", BASE, 0000);

	if (geteuid() == 0)
		return;		/* root reads anything */
	load_bad(p);
	want_n(1);
	want("t.ini: cannot open: Permission denied");
}
END_TEST

START_TEST(test_null_errs)
{
	struct config	*c;

	ck_assert_ptr_null(config_load(DATA("bad-three.ini"), NULL));
	ck_assert_ptr_null(config_load(DATA("no-such-file.ini"), NULL));
	c = config_load(DATA("good-minimal.ini"), NULL);
	ck_assert_ptr_nonnull(c);
	config_free(c);
	config_free(NULL);
	config_errors_add(NULL, "ignored %d", 1);
	config_errors_free(NULL);
}
END_TEST

START_TEST(test_errors_api)
{
	int	 i;

	/* The caller's earlier errors are kept; new ones appended. */
	for (i = 0; i < 9; i++)
		config_errors_add(&errs, "error %d", i);
	load_bad(DATA("bad-verify.ini"));
	want_n(10);
	ck_assert_str_eq(errs.v[0], "error 0");
	ck_assert_str_eq(errs.v[8], "error 8");
	want("bad-verify.ini:7: [tls] verify");

	/* Past CONFIG_MAX_ERRORS messages are only counted. */
	for (i = 10; i < CONFIG_MAX_ERRORS + 3; i++)
		config_errors_add(&errs, "error %d", i);
	want_n(CONFIG_MAX_ERRORS);
	ck_assert_uint_eq(errs.more, 3);
	load_bad(DATA("bad-verify.ini"));
	want_n(CONFIG_MAX_ERRORS);
	ck_assert_uint_eq(errs.more, 4);
	config_errors_free(&errs);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_uint_eq(errs.more, 0);
	ck_assert_ptr_null(errs.v);
}
END_TEST

START_TEST(test_relative_paths)
{
	struct config	*c;
	char		 cwd[4096], want_path[4200];

	c = load_good(DATA("good-relative.ini"));
	ck_assert_str_eq(c->ca_file, DATA("certs/ca.pem"));
	ck_assert_str_eq(c->cert_file, DATA("client.pem"));
	ck_assert_str_eq(c->key_file, "/etc/cqltunnel/client.key");
	config_free(c);

	/* A relative config path still gives absolute paths. */
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir(TEST_DATA_DIR "/.."), 0);
	c = config_load("data/good-relative.ini", &errs);
	if (c == NULL)
		dump();
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->path, "data/good-relative.ini");
	ck_assert_int_eq(c->ca_file[0], '/');
	ck_assert_ptr_nonnull(strstr(c->ca_file, "/data/certs/ca.pem"));
	config_free(c);

	ck_assert_int_eq(chdir(TEST_DATA_DIR), 0);
	c = config_load("good-relative.ini", &errs);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(getcwd(want_path, sizeof(want_path)));
	strcat(want_path, "/certs/ca.pem");
	ck_assert_str_eq(c->ca_file, want_path);
	config_free(c);

	c = config_load("./good-relative.ini", &errs);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->ca_file, want_path);
	config_free(c);
	ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

START_TEST(test_crlf_bom)
{
	struct config	*c;
	const char	*p;

	p = puts_file("t.ini", "\xef\xbb\xbf[cluster]\r\ncontact_points = a, "
	    "b\r\n[tls]\r\nca_file = ca.pem\r\nverify = chain\r\n", 0644);
	c = load_good(p);
	ck_assert_uint_eq(c->ncontact_points, 2);
	ck_assert_str_eq(c->contact_points[1].host, "b");
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_CHAIN);
	config_free(c);

	/* No newline at the end of the last line. */
	c = load_good(puts_file("t.ini", BASE "insecure_skip_verify = yes\n"
	    "verify = none", 0644));
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_NONE);
	config_free(c);
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char	 ini[] = BASE "[log]\nlevel = de\0bug\n"
	    "level = info\n";

	load_bad(put("t.ini", ini, sizeof(ini) - 1, 0644));
	want("t.ini:6: line contains a NUL byte");
	want_n(1);
}
END_TEST

START_TEST(test_control_chars)
{
	ck_assert_ptr_null(load_with("[tls]\nserver_name = a\tb\n"));
	want("t.ini:6: [tls] server_name: value contains a control character");
	want_n(1);
	config_errors_free(&errs);

	/* A credential is never echoed. */
	ck_assert_ptr_null(load_with("[auth]\nusername = Zq9sekr\x1bit\n"
	    "password_file = pw\n"));
	want("t.ini:6: [auth] username: value contains a control character");
	never("Zq9sekr");
	want_n(1);
}
END_TEST

START_TEST(test_huge_file)
{
	static char	 big[1024 * 1024 + 100];

	memset(big, '\n', sizeof(big));
	memcpy(big, BASE, strlen(BASE));
	load_bad(put("t.ini", big, sizeof(big), 0644));
	want("t.ini: file is larger than 1048576 bytes");
	want_n(1);
}
END_TEST

START_TEST(test_string_limits)
{
	char	 buf[1024];
	char	 name[300];

	memset(name, 'a', 254);
	name[254] = '\0';
	snprintf(buf, sizeof(buf), "[tls]\nserver_name = %.180s\n", name);
	config_free(load_with(buf));
	ck_assert_uint_eq(errs.n, 0);

	/* A credential of CONFIG_MAX_CRED_LEN bytes cannot fit a line. */
	snprintf(buf, sizeof(buf), "[auth]\nusername = %.187s\n"
	    "password_file = pw\n", name);
	puts_file("pw", "x\n", 0600);
	config_free(load_with(buf));
	ck_assert_uint_eq(errs.n, 0);
}
END_TEST

START_TEST(test_wrong_case_and_whitespace)
{
	struct config	*c;

	/* Values are case-insensitive; keys and sections are not. */
	c = load_with("[tls]\nverify = CHAIN\nmin_version = tlsv1.3\n"
	    "[listen]\nallow_remote = No\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_CHAIN);
	ck_assert_int_eq(c->min_version, CONFIG_TLS_1_3);
	config_free(c);

	ck_assert_ptr_null(load_with("[TLS]\nVerify = none\n"));
	want("t.ini:5: [TLS]: unknown section");
	want_n(1);
	config_errors_free(&errs);

	ck_assert_ptr_null(load_with("[tls]\nVerify = none\n"));
	want("t.ini:6: [tls] Verify: unknown key");
	want_n(1);
}
END_TEST

START_TEST(test_inline_comments)
{
	struct config	*c;

	c = load_with("[tls]\nverify = none ; only for the lab\n"
	    "server_name = a;b\ninsecure_skip_verify = yes\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_NONE);
	ck_assert_str_eq(c->server_name, "a;b");
	config_free(c);
}
END_TEST

/* Write a password file and a config using it; return the config path. */
static const char *
auth_config(const void *pw, size_t pwlen, mode_t mode)
{
	put("pw", pw, pwlen, mode);
	return (puts_file("t.ini", BASE "[auth]\nusername = app\n"
	    "password_file = pw\n", 0644));
}

START_TEST(test_password_ok)
{
	struct config	*c;
	char		 cwd[4096], path[300];

	c = load_good(auth_config("s3cret-pw\n", 10, 0600));
	ck_assert_str_eq(c->username, "app");
	ck_assert_uint_eq(c->password_len, 9);
	ck_assert_str_eq(c->password, "s3cret-pw");
	snprintf(path, sizeof(path), "%s/pw", tmpdir);
	ck_assert_str_eq(c->password_file, path);
	config_free(c);

	/* CRLF is stripped; group-readable is fine; no newline at all too. */
	c = load_good(auth_config("s3cret-pw\r\n", 11, 0640));
	ck_assert_uint_eq(c->password_len, 9);
	ck_assert_str_eq(c->password, "s3cret-pw");
	config_free(c);
	c = load_good(auth_config("s3cret-pw", 9, 0400));
	ck_assert_str_eq(c->password, "s3cret-pw");
	config_free(c);

	/* Found next to the config, whatever the working directory. */
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir("/"), 0);
	c = load_good(auth_config("abc\n", 4, 0600));
	ck_assert_str_eq(c->password, "abc");
	config_free(c);
	ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

START_TEST(test_password_bad)
{
	char	 big[CONFIG_MAX_CRED_LEN + 2];

	load_bad(auth_config("s3cret-pw\n", 10, 0644));
	want("t.ini:7: [auth] password_file: ");
	want("/pw: readable by everyone (mode 0644)");
	never("s3cret");
	want_n(1);
	config_errors_free(&errs);

	load_bad(auth_config("s3cret-pw\n", 10, 0602));
	want("/pw: writable by everyone");
	config_errors_free(&errs);

	load_bad(auth_config("", 0, 0600));
	want("t.ini:7: [auth] password_file: ");
	want("/pw: empty");
	config_errors_free(&errs);

	load_bad(auth_config("\r\n", 2, 0600));
	want("/pw: empty");
	config_errors_free(&errs);

	/* Only one newline is stripped: the second is a control byte. */
	load_bad(auth_config("s3cret-pw\n\n", 11, 0600));
	want("the password contains a control character");
	never("s3cret");
	config_errors_free(&errs);

	load_bad(auth_config("s3cret\tpw\n", 10, 0600));
	want("the password contains a control character");
	never("s3cret");
	config_errors_free(&errs);

	memset(big, 'q', sizeof(big));
	big[sizeof(big) - 1] = '\n';
	load_bad(auth_config(big, sizeof(big), 0600));
	want("/pw: longer than 512 bytes");
	never("qqqq");
	config_errors_free(&errs);

	/* Exactly CONFIG_MAX_CRED_LEN bytes plus a newline is fine. */
	config_free(load_good(auth_config(big + 1, sizeof(big) - 1, 0600)));

	ck_assert_ptr_null(config_load(puts_file("t.ini", BASE "[auth]\n"
	    "username = app\npassword_file = missing\n", 0644), &errs));
	want("t.ini:7: [auth] password_file: ");
	want("/missing: No such file or directory");
	want_n(1);
	config_errors_free(&errs);

	ck_assert_ptr_null(config_load(puts_file("t.ini", BASE "[auth]\n"
	    "username = app\npassword_file = .\n", 0644), &errs));
	want("not a regular file");
}
END_TEST

START_TEST(test_password_fifo)
{
	char	 path[300];

	snprintf(path, sizeof(path), "%s/pw", tmpdir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_ptr_null(config_load(puts_file("t.ini", BASE "[auth]\n"
	    "username = app\npassword_file = pw\n", 0644), &errs));
	want("t.ini:7: [auth] password_file: ");
	want("/pw: not a regular file");
}
END_TEST

START_TEST(test_passthrough_with_creds)
{
	struct config	*c;

	put("pw", "pw\n", 3, 0600);
	c = load_with("[auth]\nusername = app\npassword_file = pw\n"
	    "authzid = other\nclient_auth = passthrough\n"
	    "[cluster]\ntopology = pin\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->client_auth, CONFIG_CLIENT_AUTH_PASSTHROUGH);
	ck_assert_str_eq(c->authzid, "other");
	config_free(c);
}
END_TEST

/* Copy the shipped example with /etc/cqltunnel/ moved to the scratch dir. */
static const char *
example_copy(char **text)
{
	static char	 out[65536];
	char		 buf[65536], dir[300];
	const char	*s, *hit;
	size_t		 n, o = 0;
	FILE		*f;

	f = fopen(EXAMPLE, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	*text = strdup(buf);
	snprintf(dir, sizeof(dir), "%s/", tmpdir);
	for (s = buf; (hit = strstr(s, "/etc/cqltunnel/")) != NULL;
	    s = hit + strlen("/etc/cqltunnel/")) {
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%.*s%s",
		    (int)(hit - s), s, dir);
	}
	snprintf(out + o, sizeof(out) - o, "%s", s);
	return (puts_file("cqltunnel.ini", out, 0644));
}

START_TEST(test_shipped_example)
{
	static const char *const keys[] = {
		"address", "allow_remote", "max_connections", "workers",
		"drain_timeout", "session_resumption",
		"max_frame_size", "contact_points", "connect_timeout",
		"handshake_timeout", "topology", "translate_prefix",
		"local_dc", "reuse_connections", "reuse_max_idle",
		"reuse_idle_timeout", "ca_file", "cert_file", "key_file",
		"key_password_file", "verify", "server_name", "min_version",
		"ciphers", "ciphersuites", "crl_file", "watch", "username",
		"password_file", "authzid", "client_auth", "level", "format",
		"target", "allow_uids", "allow_gids", "unix_mode",
		"unix_owner", "unix_group", "insecure_skip_verify",
		"allow_core_dumps",
	};
	struct config	*c;
	char		*text, want_path[300], line[64];
	size_t		 i;

	put("password", "example\n", 8, 0600);
	c = load_good(example_copy(&text));
	ck_assert_str_eq(c->listen_host, "127.0.0.1");
	ck_assert_uint_eq(c->listen_port, 9042);
	ck_assert(!c->allow_remote);
	ck_assert_int_eq(c->verify, CONFIG_VERIFY_FULL);
	ck_assert_uint_ge(c->ncontact_points, 1);
	snprintf(want_path, sizeof(want_path), "%s/ca.pem", tmpdir);
	ck_assert_str_eq(c->ca_file, want_path);
	ck_assert_ptr_nonnull(c->cert_file);
	ck_assert_ptr_nonnull(c->key_file);
	ck_assert_str_eq(c->password, "example");
	config_free(c);

	/* Every key is shown, set or commented out. */
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(line, sizeof(line), "\n%s = ", keys[i]);
		if (strstr(text, line) != NULL)
			continue;
		snprintf(line, sizeof(line), "\n;%s = ", keys[i]);
		ck_assert_msg(strstr(text, line) != NULL,
		    "the example lacks %s", keys[i]);
	}
	ck_assert_ptr_nonnull(strstr(text, "/etc/cqltunnel/"));
	free(text);
}
END_TEST

Suite *
config_suite(void)
{
	Suite	*s = suite_create("config");
	TCase	*tc;

	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_secure_defaults);
	tcase_add_test(tc, test_allow_ids);
	tcase_add_test(tc, test_unix_listen);
	tcase_add_test(tc, test_core_dumps_key);
	tcase_add_test(tc, test_verify_none_acknowledged);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_where);
	tcase_add_test(tc, test_remote_allowed);
	tcase_add_test(tc, test_relative_paths);
	tcase_add_test(tc, test_crlf_bom);
	tcase_add_test(tc, test_repeat_appends);
	tcase_add_test(tc, test_inline_comments);
	tcase_add_test(tc, test_wrong_case_and_whitespace);
	tcase_add_test(tc, test_string_limits);
	tcase_add_test(tc, test_null_errs);
	tcase_add_test(tc, test_errors_api);
	tcase_add_test(tc, test_shipped_example);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bad_verify);
	tcase_add_test(tc, test_all_errors_at_once);
	tcase_add_test(tc, test_too_many_errors);
	tcase_add_test(tc, test_unknown);
	tcase_add_test(tc, test_duplicate);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_long_line_crlf);
	tcase_add_test(tc, test_syntax);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_topology);
	tcase_add_test(tc, test_credentials_dir);
	tcase_add_test(tc, test_listen_loopback);
	tcase_add_test(tc, test_listen_addresses);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_cross_keys);
	tcase_add_test(tc, test_missing_keys);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_unreadable_file);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_control_chars);
	tcase_add_test(tc, test_huge_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("password");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_password_ok);
	tcase_add_test(tc, test_password_bad);
	tcase_add_test(tc, test_password_fifo);
	tcase_add_test(tc, test_passthrough_with_creds);
	suite_add_tcase(s, tc);
	return (s);
}
