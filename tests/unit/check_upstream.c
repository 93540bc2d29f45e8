/*
 * Unit tests for the node table (upstream.c): picking with back-off,
 * preference and [cluster] local_dc, and translate mode's address
 * assignment (stable per node, the first contact point's node on the
 * listen address, the prefix running out, nodes leaving the ring).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "topology.h"
#include "upstream.h"

#define SUITE_FN upstream_suite
#include "test_main.h"

static char	 path[64];
static unsigned	 added, gone;

static void
count_added(void *arg, struct upstream_node *n)
{
	(void)arg;
	(void)n;
	added++;
}

static void
count_gone(void *arg, struct upstream_node *n)
{
	(void)arg;
	(void)n;
	gone++;
}

/* Load a config made of ${body}; contact points are IP literals. */
static struct config *
load(const char *body)
{
	struct config_errors	 errs = { NULL, 0, 0, 0 };
	struct config		*c;
	FILE			*f;
	int			 fd;

	snprintf(path, sizeof(path), "/tmp/check_upstream.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fprintf(f, "[tls]\nca_file = /dev/null\n%s", body);
	fclose(f);
	c = config_load(path, &errs);
	unlink(path);
	if (c == NULL && errs.n > 0)
		ck_abort_msg("config: %s", errs.v[0]);
	config_errors_free(&errs);
	return (c);
}

static struct upstream *
table(struct config *c)
{
	struct upstream_hooks	 h = { count_added, count_gone, NULL };
	struct upstream		*u = upstream_new(c, NULL);

	added = gone = 0;
	upstream_set_hooks(u, &h);
	return (u);
}

/* A key for node ${i}: host_id i, native address 10.0.0.i:9042. */
static struct topo_key
key(uint8_t i, enum topo_table t)
{
	struct topo_key	 k;

	memset(&k, 0, sizeof(k));
	k.has_host_id = true;
	k.host_id[0] = i;
	k.native.len = 4;
	k.native.addr[0] = 10;
	k.native.addr[3] = i;
	k.native.port = 9042;
	k.peer = k.native;
	k.dc = (const uint8_t *)"dc1";
	k.dclen = 3;
	k.table = t;
	return (k);
}

START_TEST(test_round_robin_and_backoff)
{
	struct config		*c = load("[cluster]\ncontact_points = "
				    "10.0.0.1, 10.0.0.2, 10.0.0.3\n"
				    "topology = pin\n");
	struct upstream		*u = table(c);
	struct upstream_node	*a, *b, *d, *n;

	ck_assert_uint_eq(upstream_count(u), 3);
	a = upstream_pick(u, NULL, NULL);
	b = upstream_pick(u, NULL, NULL);
	d = upstream_pick(u, NULL, NULL);
	ck_assert_ptr_ne(a, b);
	ck_assert_ptr_ne(b, d);
	ck_assert_ptr_eq(upstream_pick(u, NULL, NULL), a);
	/* A failed node is skipped while it backs off. */
	upstream_report(u, b, false);
	ck_assert_uint_eq(b->failures, 1);
	ck_assert_uint_gt(b->retry_at_ms, 0);
	for (int i = 0; i < 6; i++)
		ck_assert_ptr_ne(upstream_pick(u, NULL, NULL), b);
	/* Skipping a node excludes it even when it is healthy. */
	ck_assert_ptr_ne(upstream_pick(u, NULL, a), a);
	/* All backing off: the one whose back-off ends first. */
	upstream_report(u, a, false);
	upstream_report(u, d, false);
	upstream_report(u, d, false);
	n = upstream_pick(u, NULL, NULL);
	ck_assert(n == a || n == b);
	/* Back-off grows and is capped. */
	for (int i = 0; i < 20; i++)
		upstream_report(u, d, false);
	ck_assert_uint_le(d->retry_at_ms - b->retry_at_ms,
	    UPSTREAM_BACKOFF_MAX_MS);
	/* Success resets it. */
	upstream_report(u, d, true);
	ck_assert_uint_eq(d->failures, 0);
	ck_assert_uint_eq(d->retry_at_ms, 0);
	ck_assert_ptr_eq(upstream_pick(u, NULL, NULL), d);
	upstream_free(u);
	config_free(c);
}
END_TEST

START_TEST(test_prefer_and_local_dc)
{
	struct config		*c = load("[cluster]\ncontact_points = "
				    "10.0.0.1, 10.0.0.2, 10.0.0.3\n"
				    "local_dc = east\n");
	struct upstream		*u = table(c);
	struct upstream_node	*n0 = upstream_node_at(u, 0);
	struct upstream_node	*n1 = upstream_node_at(u, 1);
	struct upstream_node	*n2 = upstream_node_at(u, 2);

	snprintf(n0->dc, sizeof(n0->dc), "west");
	snprintf(n1->dc, sizeof(n1->dc), "west");
	snprintf(n2->dc, sizeof(n2->dc), "east");
	/* The preferred node wins while it is healthy. */
	ck_assert_ptr_eq(upstream_pick(u, n0, NULL), n0);
	ck_assert_ptr_eq(upstream_pick(u, n0, NULL), n0);
	/* Otherwise the local DC first. */
	upstream_report(u, n0, false);
	ck_assert_ptr_eq(upstream_pick(u, n0, NULL), n2);
	ck_assert_ptr_eq(upstream_pick(u, NULL, NULL), n2);
	/* Remote DCs only when no local node is usable. */
	upstream_report(u, n2, false);
	ck_assert_ptr_eq(upstream_pick(u, NULL, NULL), n1);
	upstream_free(u);
	config_free(c);
}
END_TEST

START_TEST(test_translate_assigns_addresses)
{
	struct config		*c = load("[listen]\naddress = 127.0.0.1:19042\n"
				    "[cluster]\ncontact_points = 10.0.0.1:9042\n"
				    "translate_prefix = 127.0.1.0/24\n");
	struct upstream		*u = table(c);
	struct topo_key		 k;
	struct topo_inet	 out;
	const uint8_t		 lo1[4] = { 127, 0, 0, 1 };
	const uint8_t		 t1[4] = { 127, 0, 1, 1 };
	const uint8_t		 t2[4] = { 127, 0, 1, 2 };

	/* The contact point's node keeps the listen address. */
	k = key(1, TOPO_TABLE_LOCAL);
	ck_assert(upstream_translate(u, &k, &out));
	ck_assert_uint_eq(out.len, 4);
	ck_assert_mem_eq(out.addr, lo1, 4);
	ck_assert_int_eq(out.port, 19042);
	ck_assert_uint_eq(added, 1);
	ck_assert_uint_eq(upstream_size(u), 1);	/* matched by address */
	ck_assert(upstream_node_at(u, 0)->has_host_id);
	ck_assert_str_eq(upstream_node_at(u, 0)->dc, "dc1");

	/* Peers get the prefix's addresses in order, once each. */
	k = key(2, TOPO_TABLE_PEERS_V2);
	ck_assert(upstream_translate(u, &k, &out));
	ck_assert_mem_eq(out.addr, t1, 4);
	k = key(3, TOPO_TABLE_PEERS_V2);
	ck_assert(upstream_translate(u, &k, &out));
	ck_assert_mem_eq(out.addr, t2, 4);
	k = key(2, TOPO_TABLE_PEERS);
	k.native.port = -1;		/* peers v1: no port column */
	ck_assert(upstream_translate(u, &k, &out));
	ck_assert_mem_eq(out.addr, t1, 4);
	ck_assert_uint_eq(upstream_size(u), 3);
	ck_assert_uint_eq(added, 3);
	ck_assert_str_eq(upstream_node_at(u, 1)->tunnel_str,
	    "127.0.1.1:19042");

	/* An event finds a node by address (and port)... */
	memset(&k, 0, sizeof(k));
	k.native.len = 4;
	k.native.addr[0] = 10;
	k.native.addr[3] = 3;
	k.native.port = 9042;
	ck_assert(upstream_translate(u, &k, &out));
	ck_assert_mem_eq(out.addr, t2, 4);
	/* ...but never creates one. */
	k.native.addr[3] = 99;
	ck_assert(!upstream_translate(u, &k, &out));
	ck_assert_uint_eq(upstream_size(u), 3);

	/* A refresh without node 3: it leaves, and comes back the same. */
	upstream_mark_begin(u);
	k = key(1, TOPO_TABLE_LOCAL);
	ck_assert(upstream_translate(u, &k, &out));
	k = key(2, TOPO_TABLE_PEERS_V2);
	ck_assert(upstream_translate(u, &k, &out));
	upstream_mark_end(u);
	ck_assert_uint_eq(gone, 1);
	ck_assert(upstream_node_at(u, 2)->gone);
	ck_assert_uint_eq(upstream_count(u), 2);
	k = key(3, TOPO_TABLE_PEERS_V2);
	ck_assert(upstream_translate(u, &k, &out));
	ck_assert_mem_eq(out.addr, t2, 4);
	ck_assert(!upstream_node_at(u, 2)->gone);
	ck_assert_uint_eq(added, 4);	/* its listener comes back */
	upstream_free(u);
	config_free(c);
}
END_TEST

START_TEST(test_translate_prefix_exhausted)
{
	struct config		*c = load("[listen]\naddress = 127.0.1.2:19042\n"
				    "[cluster]\ncontact_points = 10.0.0.1\n"
				    "translate_prefix = 127.0.1.0/30\n");
	struct upstream		*u = table(c);
	struct topo_key		 k;
	struct topo_inet	 out;

	k = key(1, TOPO_TABLE_LOCAL);
	ck_assert(upstream_translate(u, &k, &out));
	/* /30: hosts .1 and .2, and .2 is the listen address. */
	k = key(2, TOPO_TABLE_PEERS_V2);
	ck_assert(upstream_translate(u, &k, &out));
	ck_assert_uint_eq(out.addr[3], 1);
	k = key(3, TOPO_TABLE_PEERS_V2);
	ck_assert(!upstream_translate(u, &k, &out));
	upstream_free(u);
	config_free(c);
}
END_TEST

START_TEST(test_pin_never_translates)
{
	struct config		*c = load("[cluster]\ncontact_points = 10.0.0.1\n"
				    "topology = pin\n");
	struct upstream		*u = table(c);
	struct topo_key		 k = key(1, TOPO_TABLE_LOCAL);
	struct topo_inet	 out;

	ck_assert(!upstream_translate(u, &k, &out));
	ck_assert_uint_eq(added, 0);
	upstream_free(u);
	config_free(c);
}
END_TEST

Suite *
upstream_suite(void)
{
	Suite	*s = suite_create("upstream");
	TCase	*tc = tcase_create("nodes");

	tcase_add_test(tc, test_round_robin_and_backoff);
	tcase_add_test(tc, test_prefer_and_local_dc);
	tcase_add_test(tc, test_translate_assigns_addresses);
	tcase_add_test(tc, test_translate_prefix_exhausted);
	tcase_add_test(tc, test_pin_never_translates);
	suite_add_tcase(s, tc);
	return (s);
}
