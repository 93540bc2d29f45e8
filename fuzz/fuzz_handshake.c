/*
 * fuzz_handshake: the startup handshake machine of auth.h, both ways.
 *
 * Input: [opts][seed:4][applen:2][app stream: applen][node stream: rest].
 * opts picks client_auth (none, accept, passthrough), whether credentials
 * (and an authzid) are configured, whether the session gives up at the end
 * (auth_hs_fail_app, as on a timeout) and whether what is left after the
 * handshake is handed to the relay, as session.c does.  The two streams
 * arrive in chunks whose sizes and order come from a PRNG seeded by the
 * input, and are fed to the machine the way session_hs_feed() does.
 *
 * Invariants checked:
 *  - a call never uses more than it was offered, and when it uses nothing
 *    on a side it reads, it asks for more than it had (else the session
 *    would stall until the handshake timeout);
 *  - every write to either side is exactly one frame, or one segment
 *    holding exactly one envelope;
 *  - once FAILED, every call fails and nothing more is written;
 *  - the password never reaches the app (unless the input carried it);
 *  - in passthrough mode no credentials are ever sent.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "auth.h"
#include "cql_frame.h"
#include "fuzz.h"
#include "relay.h"

#define HS_PASSWORD	"Fz9-hs-SECRET-q7"

/* What one side has been sent. */
struct hs_out {
	uint8_t		*p;
	size_t		 len;
	size_t		 cap;
	unsigned	 writes;
};

struct hs_fuzz {
	struct auth_hs	 hs;
	struct hs_out	 app;		/* written to the app */
	struct hs_out	 node;		/* written to the node */
};

static void
out_add(struct hs_out *o, const uint8_t *p, size_t n)
{
	if (o->len + n > o->cap) {
		o->cap = (o->len + n) * 2;
		o->p = realloc(o->p, o->cap);
		if (o->p == NULL)
			abort();
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
	o->writes++;
}

/* Whether ${p} is exactly one envelope. */
static bool
one_envelope(const uint8_t *p, size_t n)
{
	struct cql_header	 h;
	int			 r;

	r = cql_header_parse(p, n, &h);
	return (r > 0 && (size_t)r + (size_t)h.length == n);
}

/* Whether ${p} is exactly one segment holding exactly one envelope. */
static bool
one_segment(const struct auth_hs *hs, const uint8_t *p, size_t n)
{
	static uint8_t		 payload[CQL_SEG_MAX_PAYLOAD + 1];
	struct cql_segment	 seg;
	enum cql_seg_format	 fmt;
	ssize_t			 len;

	if (!cql_version_has_segments(hs->version))
		return (false);
	fmt = hs->compression == AUTH_COMP_LZ4 ? CQL_SEG_LZ4 : CQL_SEG_CRC;
	if (cql_segment_parse_header(fmt, p, n, &seg) <= 0 ||
	    seg.total_len != n || !seg.self_contained)
		return (false);
	len = cql_segment_decode(fmt, p, n, &seg, payload, sizeof(payload));
	return (len > 0 && one_envelope(payload, (size_t)len));
}

static void
sink_to_app(void *arg, const uint8_t *p, size_t n)
{
	struct hs_fuzz	*f = arg;

	FUZZ_CHECK(one_envelope(p, n) || one_segment(&f->hs, p, n));
	out_add(&f->app, p, n);
}

static void
sink_to_node(void *arg, const uint8_t *p, size_t n)
{
	struct hs_fuzz	*f = arg;

	FUZZ_CHECK(one_envelope(p, n) || one_segment(&f->hs, p, n));
	out_add(&f->node, p, n);
}

/* One side of the simulated session: a stream and what has arrived. */
struct hs_side {
	const uint8_t	*p;
	size_t		 len;		/* whole stream */
	size_t		 arrived;
	size_t		 used;		/* taken by the machine */
	bool		 app;
};

/*
 * Feed what has arrived on ${s}, as session_hs_feed() does.  Returns 1 on
 * progress, 0 if none, -1 if the handshake failed.
 */
static int
hs_feed(struct hs_fuzz *f, struct hs_side *s, const struct auth_sink *sink)
{
	size_t	 len, want, need;
	ssize_t	 used;
	int	 progress = 0;

	for (;;) {
		if (s->app ? !auth_hs_reads_app(&f->hs) :
		    !auth_hs_reads_node(&f->hs))
			break;
		len = s->arrived - s->used;
		if (len == 0)
			break;
		need = s->app ? f->hs.need_app : f->hs.need_node;
		want = need != 0 && need < len ? need : len;
		used = s->app ?
		    auth_hs_app(&f->hs, s->p + s->used, want, sink) :
		    auth_hs_node(&f->hs, s->p + s->used, want, sink);
		if (used < 0) {
			FUZZ_CHECK(used == -1 && f->hs.state == AUTH_S_FAILED);
			FUZZ_CHECK(f->hs.reason[0] != '\0' ||
			    f->hs.failure != AUTH_FAIL_NONE);
			return (-1);
		}
		FUZZ_CHECK((size_t)used <= want);
		if (used == 0) {
			need = s->app ? f->hs.need_app : f->hs.need_node;
			/* A side being read must say what it waits for. */
			if (s->app ? auth_hs_reads_app(&f->hs) :
			    auth_hs_reads_node(&f->hs))
				FUZZ_CHECK(need > want);
			if (need > want && len >= need)
				continue;
			break;
		}
		s->used += (size_t)used;
		progress = 1;
	}
	return (progress);
}

/* After a failure: every call fails and writes nothing. */
static void
hs_check_dead(struct hs_fuzz *f, const struct auth_sink *sink,
    const uint8_t *p, size_t n)
{
	unsigned	 a = f->app.writes, b = f->node.writes;

	FUZZ_CHECK(auth_hs_app(&f->hs, p, n, sink) == -1);
	FUZZ_CHECK(auth_hs_node(&f->hs, p, n, sink) == -1);
	FUZZ_CHECK(f->hs.state == AUTH_S_FAILED);
	FUZZ_CHECK(f->app.writes == a && f->node.writes == b);
}

/* Hand what is left to the relay, as session_enter_relay() does. */
static void
hs_relay(struct hs_fuzz *f, struct hs_side *app, struct hs_side *node,
    enum config_client_auth mode, struct fuzz_rng *rng)
{
	struct relay	 r;
	struct evbuffer	*in[2], *out[2];
	struct hs_side	*side[2] = { app, node };
	size_t		 n;
	ssize_t		 moved;
	bool		 dead[2] = { false, false };
	int		 i;

	relay_init(&r, f->hs.version != 0 ? f->hs.version :
	    f->hs.first_version, f->hs.compression == AUTH_COMP_LZ4 ?
	    RELAY_COMP_LZ4 : f->hs.compression == AUTH_COMP_SNAPPY ?
	    RELAY_COMP_SNAPPY : RELAY_COMP_NONE, NULL, 256u << 20);
	if (mode == CONFIG_CLIENT_AUTH_PASSTHROUGH)
		relay_expect_startup(&r);
	/* As session.c does when reuse is on: the tracker sees it all. */
	(void)relay_track_start(&r);
	for (i = 0; i < 2; i++) {
		in[i] = evbuffer_new();
		out[i] = evbuffer_new();
		if (in[i] == NULL || out[i] == NULL)
			abort();
		side[i]->arrived = side[i]->len;
		evbuffer_add(in[i], side[i]->p + side[i]->used,
		    side[i]->len - side[i]->used);
	}
	while (!(dead[0] && dead[1])) {
		i = fuzz_rng_next(rng) & 1;
		if (dead[i])
			continue;
		n = evbuffer_get_length(in[i]);
		moved = relay_move(&r, i == 0, in[i], out[i]);
		FUZZ_CHECK(moved >= -1);
		if (moved == -1)
			FUZZ_CHECK(r.error != RELAY_OK);
		else
			FUZZ_CHECK((size_t)moved <= n &&
			    evbuffer_get_length(in[i]) == n - (size_t)moved);
		if (moved <= 0)
			dead[i] = true;
	}
	FUZZ_CHECK(r.track.nout <= RELAY_TRACK_STREAMS);
	FUZZ_CHECK(relay_reusable(&r) != RELAY_SPOIL_NONE ||
	    r.track.requests == r.track.responses);
	for (i = 0; i < 2; i++) {
		evbuffer_free(in[i]);
		evbuffer_free(out[i]);
	}
	relay_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t	 token_plain[] = "\0cassandra\0" HS_PASSWORD;
	static const uint8_t	 token_authz[] = "admin\0cassandra\0"
				     HS_PASSWORD;
	struct hs_fuzz		 f;
	struct auth_creds	 creds;
	struct auth_sink	 sink;
	struct fuzz_in		 in;
	struct fuzz_rng		 rng;
	struct hs_side		 app, node, *s;
	enum config_client_auth	 mode;
	size_t			 applen, chunk;
	uint8_t			 opts;
	uint32_t		 seed;
	int			 a, b;

	fuzz_in_init(&in, data, size);
	opts = fuzz_byte(&in);
	seed = (uint32_t)fuzz_u16(&in) << 16 | fuzz_u16(&in);
	applen = fuzz_u16(&in);
	fuzz_rng_init(&rng, seed);

	memset(&app, 0, sizeof(app));
	memset(&node, 0, sizeof(node));
	app.app = true;
	app.len = fuzz_take(&in, applen, &app.p);
	node.len = fuzz_take(&in, fuzz_left(&in), &node.p);

	switch (opts & 3) {
	case 1:
		mode = CONFIG_CLIENT_AUTH_ACCEPT;
		break;
	case 2:
		mode = CONFIG_CLIENT_AUTH_PASSTHROUGH;
		break;
	default:
		mode = CONFIG_CLIENT_AUTH_NONE;
		break;
	}
	memset(&creds, 0, sizeof(creds));
	creds.client_auth = mode;
	if ((opts & 4) == 0) {
		creds.have_token = true;
		if (opts & 8) {
			creds.token = (uint8_t *)token_authz;
			creds.token_len = sizeof(token_authz) - 1;
		} else {
			creds.token = (uint8_t *)token_plain;
			creds.token_len = sizeof(token_plain) - 1;
		}
		creds.username = (char *)"cassandra";
	}

	memset(&f, 0, sizeof(f));
	auth_hs_init(&f.hs, &creds);
	sink.to_app = sink_to_app;
	sink.to_node = sink_to_node;
	sink.arg = &f;

	for (;;) {
		/* Something arrives on one side (the other when it is done). */
		s = (fuzz_rng_next(&rng) & 1) ? &app : &node;
		if (s->arrived == s->len)
			s = s == &app ? &node : &app;
		if (s->arrived == s->len)
			break;
		chunk = fuzz_rng_chunk(&rng);
		if (chunk > s->len - s->arrived)
			chunk = s->len - s->arrived;
		s->arrived += chunk;

		do {
			a = hs_feed(&f, &app, &sink);
			b = a < 0 ? 0 : hs_feed(&f, &node, &sink);
		} while (a > 0 || b > 0);
		if (a < 0 || b < 0) {
			FUZZ_CHECK(f.hs.state == AUTH_S_FAILED);
			hs_check_dead(&f, &sink, data, size);
			break;
		}
		if (f.hs.state == AUTH_S_DONE)
			break;
	}

	if (f.hs.state != AUTH_S_DONE && f.hs.state != AUTH_S_FAILED &&
	    (opts & 16)) {
		/* The session gives up (timeout, node gone). */
		unsigned before = f.app.writes;

		if (auth_hs_fail_app(&f.hs, CQL_ERR_SERVER, "timed out",
		    &sink) == -1)
			FUZZ_CHECK(!f.hs.have_first && f.app.writes == before);
		else
			FUZZ_CHECK(f.hs.state == AUTH_S_FAILED &&
			    f.app.writes == before + 1);
	}
	if (f.hs.state == AUTH_S_DONE && (opts & 32))
		hs_relay(&f, &app, &node, mode, &rng);

	/* The password goes to the node only, and only when we inject. */
	if (f.app.len > 0 && memmem(data, size, HS_PASSWORD,
	    sizeof(HS_PASSWORD) - 1) == NULL)
		FUZZ_CHECK(memmem(f.app.p, f.app.len, HS_PASSWORD,
		    sizeof(HS_PASSWORD) - 1) == NULL);
	if (mode == CONFIG_CLIENT_AUTH_PASSTHROUGH || !creds.have_token)
		FUZZ_CHECK(!f.hs.injected);
	if (f.node.len > 0 && !f.hs.injected && memmem(data, size,
	    HS_PASSWORD, sizeof(HS_PASSWORD) - 1) == NULL)
		FUZZ_CHECK(memmem(f.node.p, f.node.len, HS_PASSWORD,
		    sizeof(HS_PASSWORD) - 1) == NULL);

	free(f.app.p);
	free(f.node.p);
	return (0);
}
