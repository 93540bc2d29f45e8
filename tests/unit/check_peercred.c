/*
 * Unit tests for peercred.c: the owner of real loopback TCP connections
 * (IPv4, IPv6) through inet_diag, of unix socket peers through
 * SO_PEERCRED, refusal when the app's socket is gone, and the
 * allow_uids / allow_gids decision.  Connections are made inside this
 * process, so their owner is our own uid.
 */
#define SUITE_FN	peercred_suite
#include "test_main.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "peercred.h"

/* A connected pair over loopback: client, accepted socket, peer address. */
struct pair {
	int			 client;
	int			 server;
	struct sockaddr_storage	 peer;
};

/* Connect to a fresh listener on ${family}'s loopback; false if absent. */
static bool
pair_open(int family, struct pair *p)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 len;
	int			 lfd;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sin);
	} else {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(*sin6);
	}
	if ((lfd = socket(family, SOCK_STREAM, 0)) == -1)
		return (false);
	if (bind(lfd, (struct sockaddr *)&ss, len) == -1) {
		close(lfd);
		return (false);		/* no ::1 here */
	}
	ck_assert_int_eq(listen(lfd, 8), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&ss, &len), 0);
	p->client = socket(family, SOCK_STREAM, 0);
	ck_assert_int_ge(p->client, 0);
	ck_assert_int_eq(connect(p->client, (struct sockaddr *)&ss, len), 0);
	len = sizeof(p->peer);
	p->server = accept(lfd, (struct sockaddr *)&p->peer, &len);
	ck_assert_int_ge(p->server, 0);
	close(lfd);
	return (true);
}

static void
pair_close(struct pair *p)
{
	if (p->client != -1)
		close(p->client);
	close(p->server);
}

/* Our own primary group, from the user database. */
static gid_t
own_primary_gid(void)
{
	struct passwd	*pw = getpwuid(getuid());

	ck_assert_ptr_nonnull(pw);
	return (pw->pw_gid);
}

START_TEST(test_tcp_v4)
{
	struct pair	 p;
	struct peercred	 pc;
	char		 why[256] = "";

	ck_assert(pair_open(AF_INET, &p));
	if (peercred_lookup(p.server, (struct sockaddr *)&p.peer, &pc, why,
	    sizeof(why)) == -1)
		ck_abort_msg("lookup failed: %s", why);
	ck_assert_uint_eq(pc.uid, getuid());
	ck_assert_int_eq(pc.pid, 0);
	pair_close(&p);
}
END_TEST

START_TEST(test_tcp_v6)
{
	struct pair	 p;
	struct peercred	 pc;
	char		 why[256] = "";

	if (!pair_open(AF_INET6, &p))
		return;		/* IPv6 loopback not configured */
	if (peercred_lookup(p.server, (struct sockaddr *)&p.peer, &pc, why,
	    sizeof(why)) == -1)
		ck_abort_msg("lookup failed: %s", why);
	ck_assert_uint_eq(pc.uid, getuid());
	pair_close(&p);
}
END_TEST

/* The app reset its connection before we looked: refused, never guessed. */
START_TEST(test_tcp_peer_reset)
{
	struct pair	 p;
	struct peercred	 pc;
	struct linger	 lg = { 1, 0 };
	char		 why[256] = "";

	ck_assert(pair_open(AF_INET, &p));
	ck_assert_int_eq(setsockopt(p.client, SOL_SOCKET, SO_LINGER, &lg,
	    sizeof(lg)), 0);
	close(p.client);
	p.client = -1;
	ck_assert_int_eq(peercred_lookup(p.server, (struct sockaddr *)&p.peer,
	    &pc, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "gone") != NULL, "%s", why);
	pair_close(&p);
}
END_TEST

/* The app closed (FIN) before we looked: its socket has no owner left. */
START_TEST(test_tcp_peer_closed)
{
	struct pair	 p;
	struct peercred	 pc;
	char		 why[256] = "";

	ck_assert(pair_open(AF_INET, &p));
	close(p.client);
	p.client = -1;
	ck_assert_int_eq(peercred_lookup(p.server, (struct sockaddr *)&p.peer,
	    &pc, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "closed") != NULL ||
	    strstr(why, "gone") != NULL, "%s", why);
	pair_close(&p);
}
END_TEST

START_TEST(test_not_loopback)
{
	struct sockaddr_in	 sin;
	struct peercred		 pc;
	char			 why[256] = "";

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0xC0000201);	/* 192.0.2.1 */
	ck_assert_int_eq(peercred_lookup(-1, (struct sockaddr *)&sin, &pc,
	    why, sizeof(why)), -1);
	ck_assert_str_eq(why, "the connection is not from loopback");
}
END_TEST

START_TEST(test_unix)
{
	struct sockaddr_un	 sun;
	struct peercred		 pc;
	char			 why[256] = "";
	int			 sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert_int_eq(peercred_lookup(sv[0], (struct sockaddr *)&sun, &pc,
	    why, sizeof(why)), 0);
	ck_assert_uint_eq(pc.uid, getuid());
	ck_assert_uint_eq(pc.gid, getgid());
	ck_assert_int_eq(pc.pid, getpid());
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_allowed)
{
	struct config	 c;
	struct peercred	 pc = { getuid(), (gid_t)-1, 0 };
	uid_t		 uids[2] = { 4242, getuid() };
	gid_t		 gids[1];
	char		 why[256] = "";

	memset(&c, 0, sizeof(c));
	c.access_control = true;
	c.allow_uids = uids;

	/* Nothing listed: nobody. */
	ck_assert(!peercred_allowed(&c, &pc, why, sizeof(why)));
	ck_assert_msg(strstr(why, "is not in [listen] allow_uids or "
	    "allow_gids") != NULL, "%s", why);

	c.nallow_uids = 1;
	ck_assert(!peercred_allowed(&c, &pc, why, sizeof(why)));
	c.nallow_uids = 2;
	ck_assert(peercred_allowed(&c, &pc, why, sizeof(why)));

	/* By primary group, from the user database. */
	c.nallow_uids = 1;
	gids[0] = own_primary_gid();
	c.allow_gids = gids;
	c.nallow_gids = 1;
	ck_assert(peercred_allowed(&c, &pc, why, sizeof(why)));
	/* Again, from the cache. */
	ck_assert(peercred_allowed(&c, &pc, why, sizeof(why)));

	/* A uid without a passwd entry has no groups. */
	pc.uid = 3999999;
	ck_assert(!peercred_allowed(&c, &pc, why, sizeof(why)));
	ck_assert_msg(strstr(why, "uid 3999999 (no such user") != NULL, "%s",
	    why);

	/* ... but on a unix socket, the gid it connected with counts. */
	pc.gid = gids[0];
	ck_assert(peercred_allowed(&c, &pc, why, sizeof(why)));
	pc.gid = gids[0] + 1;
	pc.pid = 77;
	ck_assert(!peercred_allowed(&c, &pc, why, sizeof(why)));
	ck_assert_msg(strstr(why, "pid 77") != NULL, "%s", why);
}
END_TEST

START_TEST(test_check)
{
	struct config	 c;
	struct pair	 p;
	uid_t		 other = 4242, self = getuid();
	char		 why[400] = "";

	ck_assert(pair_open(AF_INET, &p));
	memset(&c, 0, sizeof(c));
	/* No access control: everyone. */
	ck_assert_int_eq(peercred_check(&c, p.server,
	    (struct sockaddr *)&p.peer, why, sizeof(why)), 0);
	c.access_control = true;
	c.allow_uids = &other;
	c.nallow_uids = 1;
	ck_assert_int_eq(peercred_check(&c, p.server,
	    (struct sockaddr *)&p.peer, why, sizeof(why)), -1);
	c.allow_uids = &self;
	ck_assert_int_eq(peercred_check(&c, p.server,
	    (struct sockaddr *)&p.peer, why, sizeof(why)), 0);
	/* Fails closed when the owner cannot be found. */
	close(p.client);
	p.client = -1;
	ck_assert_int_eq(peercred_check(&c, p.server,
	    (struct sockaddr *)&p.peer, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "cannot tell which user connected") !=
	    NULL, "%s", why);
	pair_close(&p);
	peercred_close();
}
END_TEST

Suite *
peercred_suite(void)
{
	Suite	*s = suite_create("peercred");
	TCase	*tc = tcase_create("peercred");

	tcase_add_test(tc, test_tcp_v4);
	tcase_add_test(tc, test_tcp_v6);
	tcase_add_test(tc, test_tcp_peer_reset);
	tcase_add_test(tc, test_tcp_peer_closed);
	tcase_add_test(tc, test_not_loopback);
	tcase_add_test(tc, test_unix);
	tcase_add_test(tc, test_allowed);
	tcase_add_test(tc, test_check);
	suite_add_tcase(s, tc);
	return (s);
}
