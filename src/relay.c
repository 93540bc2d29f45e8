/*
 * relay: moving and, in translate mode, rewriting CQL traffic (see
 * relay.h).
 *
 * v3/v4/DSE: frames are walked header by header.  A frame that cannot
 * carry an address is passed on as it arrives (frame_left counts what is
 * still to come).  A RESULT is classified from the first bytes of its body;
 * only a topology result, an EVENT, or an EXECUTE of a remembered topology
 * statement waits until it is complete, is rewritten, and is written out
 * uncompressed (the compression flag is per frame, so every driver accepts
 * that).
 *
 * v5: traffic is a sequence of segments.  A self-contained segment holds
 * whole envelopes; an envelope too large for one segment spans several
 * non-self-contained ones.  Segments are handled whole.  When an envelope
 * has to change, the segment's payload is checked (CRC32), the envelopes
 * are rewritten, and the result is re-encoded as uncompressed segments
 * with fresh checksums.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <event2/buffer.h>

#include "cql_frame.h"
#include "relay.h"
#include "topology.h"

/* Bytes of a RESULT body read to classify it. */
#define RELAY_PEEK		1024
/* Scratch kept between calls (a v5 segment payload fits). */
#define RELAY_SCRATCH_KEEP	(256 * 1024)

struct relay_buf {
	uint8_t		*p;
	size_t		 cap;
};

/*
 * Scratch buffers: decoded input, rewritten output, encoded segments.
 * What they hold never outlives one relay_move() call, so the relays of a
 * thread (an event loop) share one set: an idle session holds no buffer.
 * One that grew past RELAY_SCRATCH_KEEP (a large LZ4 body, a large
 * rewritten result) is let go when the call ends.
 */
static _Thread_local struct relay_buf relay_in, relay_out, relay_seg;
static _Thread_local size_t relay_peak;	/* see relay_scratch_peak() */

enum inspect_rc {
	INSPECT_PASS,		/* pass the frame on verbatim */
	INSPECT_DONE,		/* consumed and written out */
	INSPECT_WAIT,		/* more input needed */
	INSPECT_ERROR,
};

const char *
relay_error_name(enum relay_error e)
{
	switch (e) {
	case RELAY_OK:
		return ("ok");
	case RELAY_ERR_TOO_LARGE:
		return ("frame too large");
	case RELAY_ERR_LZ4_TOO_LARGE:
		return ("lz4 body declares a length above max_frame_size");
	case RELAY_ERR_CORRUPT:
		return ("corrupt frame or segment");
	case RELAY_ERR_NOMEM:
		return ("out of memory");
	}
	return ("unknown");
}

const char *
relay_spoil_name(enum relay_spoil sp)
{
	switch (sp) {
	case RELAY_SPOIL_NONE:
		return ("reusable");
	case RELAY_SPOIL_OPCODE:
		return ("app sent a request other than QUERY, PREPARE, "
		    "EXECUTE, BATCH or OPTIONS");
	case RELAY_SPOIL_EVENT:
		return ("node sent an EVENT");
	case RELAY_SPOIL_KEYSPACE:
		return ("a USE set the connection's keyspace");
	case RELAY_SPOIL_ERROR:
		return ("node sent a protocol or server error");
	case RELAY_SPOIL_COMPRESSED:
		return ("compressed frame");
	case RELAY_SPOIL_STREAMS:
		return ("streams out of step");
	case RELAY_SPOIL_IN_FLIGHT:
		return ("requests in flight");
	case RELAY_SPOIL_UNTRACKED:
		return ("not tracked");
	}
	return ("unknown");
}

bool
relay_track_start(struct relay *r)
{
	memset(&r->track, 0, sizeof(r->track));
	if (r->segments || r->comp != RELAY_COMP_NONE || r->await_startup ||
	    r->hdr_len != CQL_HEADER_LEN)
		return (false);
	r->track.on = true;
	return (true);
}

enum relay_spoil
relay_reusable(const struct relay *r)
{
	const struct relay_track	*t = &r->track;

	if (t->spoil != RELAY_SPOIL_NONE)
		return (t->spoil);
	if (!t->on)
		return (RELAY_SPOIL_UNTRACKED);
	if (r->up.frame_left != 0 || r->down.frame_left != 0 ||
	    t->nout != 0 || t->requests != t->responses)
		return (RELAY_SPOIL_IN_FLIGHT);
	return (RELAY_SPOIL_NONE);
}

/*
 * Remember the first reason the connection cannot be reused, and stop
 * tracking: nothing can make it fit again, so the frames that follow
 * cost nothing more.
 */
static void
track_spoil(struct relay_track *t, enum relay_spoil sp)
{
	if (t->spoil == RELAY_SPOIL_NONE)
		t->spoil = sp;
	t->on = false;
}

/*
 * Whether the tracker must see the first 4 bytes of this frame's body: a
 * RESULT's kind or an ERROR's code.
 */
static inline bool
track_wants_body(const struct relay *r, const struct relay_dir *d,
    const struct cql_header *h)
{
	return (r->track.on && !d->from_app && h->length >= 4 &&
	    (h->opcode == CQL_OP_RESULT || h->opcode == CQL_OP_ERROR));
}

/*
 * Account for one frame that is being passed on.  ${b4}: the first 4
 * bytes of its body when track_wants_body(), else NULL.  Requests and
 * responses are paired by stream: a response on a stream with no request
 * outstanding (a second page, say) spoils the connection as surely as an
 * EVENT does, since the app's successor would receive what follows.
 */
static void
track_frame(struct relay *r, const struct relay_dir *d,
    const struct cql_header *h, const uint8_t *b4)
{
	struct relay_track	*t = &r->track;
	uint32_t		 v;
	unsigned		 i;

	if (!t->on)
		return;
	if (h->flags & CQL_FLAG_COMPRESSION)
		track_spoil(t, RELAY_SPOIL_COMPRESSED);
	if (d->from_app) {
		t->requests++;
		switch (h->opcode) {
		case CQL_OP_QUERY:
		case CQL_OP_PREPARE:
		case CQL_OP_EXECUTE:
		case CQL_OP_BATCH:
		case CQL_OP_OPTIONS:
			break;
		default:
			track_spoil(t, RELAY_SPOIL_OPCODE);
			break;
		}
		if (h->response || h->stream < 0) {
			track_spoil(t, RELAY_SPOIL_STREAMS);
			return;
		}
		for (i = 0; i < t->nout; i++)
			if (t->out[i] == h->stream)
				break;
		if (i < t->nout || t->nout == RELAY_TRACK_STREAMS)
			track_spoil(t, RELAY_SPOIL_STREAMS);
		else
			t->out[t->nout++] = h->stream;
		return;
	}
	if (h->opcode == CQL_OP_EVENT)
		track_spoil(t, RELAY_SPOIL_EVENT);
	if (b4 != NULL) {
		v = (uint32_t)b4[0] << 24 | (uint32_t)b4[1] << 16 |
		    (uint32_t)b4[2] << 8 | b4[3];
		if (h->opcode == CQL_OP_RESULT && v == 0x0003)
			track_spoil(t, RELAY_SPOIL_KEYSPACE);
		if (h->opcode == CQL_OP_ERROR && (v == CQL_ERR_PROTOCOL ||
		    v == CQL_ERR_SERVER))
			track_spoil(t, RELAY_SPOIL_ERROR);
	}
	if (h->stream < 0)
		return;
	t->responses++;
	for (i = 0; i < t->nout; i++)
		if (t->out[i] == h->stream)
			break;
	if (i == t->nout) {
		track_spoil(t, RELAY_SPOIL_STREAMS);
		return;
	}
	t->out[i] = t->out[--t->nout];
}

void
relay_init(struct relay *r, uint8_t version, enum relay_compression comp,
    const struct topo_rewriter *rw, uint32_t max_frame)
{
	memset(r, 0, sizeof(*r));
	r->version = version;
	r->segments = cql_version_has_segments(version);
	r->seg_fmt = comp == RELAY_COMP_LZ4 ? CQL_SEG_LZ4 : CQL_SEG_CRC;
	r->comp = comp;
	r->hdr_len = (version == CQL_V1 || version == CQL_V2) ?
	    CQL_HEADER_LEN_V1V2 : CQL_HEADER_LEN;
	r->max_frame = max_frame;
	r->rw = rw;
	r->up.from_app = true;
}

void
relay_expect_startup(struct relay *r)
{
	r->await_startup = true;
	r->up.unframed = r->down.unframed = r->segments;
}

void
relay_free(struct relay *r)
{
	if (r->up.assembly != NULL)
		evbuffer_free(r->up.assembly);
	if (r->down.assembly != NULL)
		evbuffer_free(r->down.assembly);
	memset(r, 0, sizeof(*r));
}

/* Make ${b} hold at least ${n} bytes. */
static bool
buf_reserve(struct relay *r, struct relay_buf *b, size_t n)
{
	uint8_t	*p;
	size_t	 cap;

	if (b->cap >= n)
		return (true);
	cap = b->cap != 0 ? b->cap : 4096;
	while (cap < n)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL) {
		r->error = RELAY_ERR_NOMEM;
		return (false);
	}
	b->p = p;
	b->cap = cap;
	if (cap > relay_peak)
		relay_peak = cap;
	return (true);
}

/* Whether a frame is part of a handshake the relay must follow. */
static bool
opcode_watched(const struct relay *r, const struct relay_dir *d,
    uint8_t opcode)
{
	if (d->from_app)
		return (r->await_startup && opcode == CQL_OP_STARTUP);
	return (d->unframed && (opcode == CQL_OP_READY ||
	    opcode == CQL_OP_AUTHENTICATE));
}

/*
 * Follow a watched frame of ${total} bytes at the front of ${in}: the
 * STARTUP's compression, the switch to segments after it.  Returns false
 * if the rest of the frame has to arrive first.
 */
static bool
frame_watch(struct relay *r, struct relay_dir *d, struct evbuffer *in,
    const struct cql_header *h, size_t total)
{
	char		 comp[16];
	uint8_t		*p;

	if (d->from_app) {
		if (total > 65536) {
			r->await_startup = false;	/* not a real one */
			return (true);
		}
		if (evbuffer_get_length(in) < total)
			return (false);
		if ((p = evbuffer_pullup(in, (ssize_t)total)) != NULL &&
		    cql_startup_compression(p + r->hdr_len,
		    (size_t)h->length, comp, sizeof(comp)) == 0) {
			r->comp = strcmp(comp, "lz4") == 0 ? RELAY_COMP_LZ4 :
			    strcmp(comp, "snappy") == 0 ? RELAY_COMP_SNAPPY :
			    RELAY_COMP_NONE;
			r->seg_fmt = r->comp == RELAY_COMP_LZ4 ? CQL_SEG_LZ4 :
			    CQL_SEG_CRC;
		}
		r->await_startup = false;
	}
	if (d->unframed)
		d->switch_after = true;
	return (true);
}

/*
 * The prepared-statement ids of the rewriter are shared by the sessions of
 * every worker thread: a driver prepares on one connection and executes on
 * another.
 */
static pthread_mutex_t	 relay_prepared_lock = PTHREAD_MUTEX_INITIALIZER;

/* Whether any prepared statement reads a topology table. */
static bool
relay_prepared_any(const struct relay *r)
{
	bool	 any;

	pthread_mutex_lock(&relay_prepared_lock);
	any = r->rw->prepared->n > 0;
	pthread_mutex_unlock(&relay_prepared_lock);
	return (any);
}

static int
relay_execute_need_metadata(const struct relay *r, uint8_t *body, size_t n)
{
	int	 rc;

	pthread_mutex_lock(&relay_prepared_lock);
	rc = topo_execute_need_metadata(r->rw->prepared, r->version, body, n);
	pthread_mutex_unlock(&relay_prepared_lock);
	return (rc);
}

/* Whether frames with this opcode, in this direction, can need a rewrite. */
static bool
opcode_interesting(const struct relay *r, const struct relay_dir *d,
    uint8_t opcode)
{
	if (d->from_app)
		return (opcode == CQL_OP_EXECUTE && relay_prepared_any(r));
	return (opcode == CQL_OP_RESULT || opcode == CQL_OP_EVENT);
}

/*
 * Decide from the first ${have} bytes of a body of ${total} whether the
 * whole body is needed.  Returns 1 or 0, or -2 with *need set.
 */
static int
envelope_wants(const struct relay *r, const struct relay_dir *d,
    const struct cql_header *h, const uint8_t *p, size_t have, size_t total,
    size_t *need)
{
	enum topo_table	 table;
	int32_t		 kind;
	uint8_t		 copy[2 + TOPO_ID_MAX + 2 + TOPO_ID_MAX + 2 + 4];
	size_t		 n;
	int		 rc;

	if (!opcode_interesting(r, d, h->opcode))
		return (0);
	switch (h->opcode) {
	case CQL_OP_EVENT:
		return (1);
	case CQL_OP_RESULT:
		rc = topo_result_classify(r->version, p, have, total, &table,
		    &kind, need);
		return (rc == -1 ? 0 : rc);
	case CQL_OP_EXECUTE:
		/* Check a copy: only the id and flags matter here. */
		n = have < sizeof(copy) ? have : sizeof(copy);
		memcpy(copy, p, n);
		rc = relay_execute_need_metadata(r, copy, n);
		if (rc == -2 && have < total) {
			*need = total < sizeof(copy) ? total : sizeof(copy);
			return (-2);
		}
		return (rc == 1);
	default:
		return (0);
	}
}

/*
 * Rewrite one complete envelope body.  Returns 1 with the new body in
 * *nb and *nl (possibly ${body} itself, changed in place), 0 if it stays as it
 * is, -1 on error (r->error set).
 */
static int
envelope_rewrite(struct relay *r, const struct relay_dir *d,
    const struct cql_header *h, uint8_t *body, size_t blen,
    const uint8_t **nb, size_t *nl)
{
	enum topo_table	 table;
	int32_t		 kind;
	size_t		 need = 0;
	ssize_t		 n;

	if (d->from_app) {
		if (h->opcode != CQL_OP_EXECUTE ||
		    relay_execute_need_metadata(r, body, blen) != 1)
			return (0);
		*nb = body;
		*nl = blen;
		return (1);
	}
	if (h->opcode == CQL_OP_EVENT) {
		if (!buf_reserve(r, &relay_out, blen + 32))
			return (-1);
		n = topo_rewrite_event(r->rw, body, blen, relay_out.p, relay_out.cap);
		if (n <= 0 || ((size_t)n == blen &&
		    memcmp(body, relay_out.p, blen) == 0))
			return (0);
		*nb = relay_out.p;
		*nl = (size_t)n;
		return (1);
	}
	if (h->opcode != CQL_OP_RESULT ||
	    topo_result_classify(r->version, body, blen, blen, &table, &kind,
	    &need) != 1)
		return (0);
	if (kind == TOPO_RESULT_PREPARED) {
		pthread_mutex_lock(&relay_prepared_lock);
		(void)topo_prepared_learn(r->rw->prepared, r->version, body,
		    blen);
		pthread_mutex_unlock(&relay_prepared_lock);
		return (0);
	}
	if (!buf_reserve(r, &relay_out, blen + 256))
		return (-1);
	n = topo_rewrite_rows(r->rw, r->version, body, blen, relay_out.p,
	    relay_out.cap, &need);
	if (n == -2) {
		if (!buf_reserve(r, &relay_out, need))
			return (-1);
		n = topo_rewrite_rows(r->rw, r->version, body, blen, relay_out.p,
		    relay_out.cap, &need);
	}
	if (n < 0)
		return (0);	/* malformed: leave it to the app */
	*nb = relay_out.p;
	*nl = (size_t)n;
	return (1);
}

/* Uncompressed length announced by a snappy stream (its varint). */
static bool
snappy_length(const uint8_t *p, size_t n, size_t *len)
{
	uint64_t	 v = 0;
	size_t		 i;

	for (i = 0; i < n && i < 5; i++) {
		v |= (uint64_t)(p[i] & 0x7F) << (7 * i);
		if ((p[i] & 0x80) == 0) {
			*len = (size_t)v;
			return (true);
		}
	}
	return (false);
}

/* Decompress a v3/v4 body into relay_in.  Returns its length or -1. */
static ssize_t
body_decompress(struct relay *r, const uint8_t *body, size_t n)
{
	size_t		 ulen;
	ssize_t		 got;

	if (r->comp == RELAY_COMP_LZ4) {
		if (n < 4) {
			r->error = RELAY_ERR_CORRUPT;
			return (-1);
		}
		ulen = (size_t)body[0] << 24 | (size_t)body[1] << 16 |
		    (size_t)body[2] << 8 | body[3];
	} else if (!snappy_length(body, n, &ulen)) {
		r->error = RELAY_ERR_CORRUPT;
		return (-1);
	}
	if (ulen > r->max_frame) {
		r->error = RELAY_ERR_TOO_LARGE;
		return (-1);
	}
	/*
	 * The declared length is the sender's word: refuse one that ${n}
	 * bytes cannot expand to (LZ4 at most 255:1, snappy under 32:1)
	 * before reserving memory for it.
	 */
	if (ulen / (r->comp == RELAY_COMP_LZ4 ? 255 : 32) > n) {
		r->error = RELAY_ERR_CORRUPT;
		return (-1);
	}
	if (!buf_reserve(r, &relay_in, ulen + 1))
		return (-1);
	got = r->comp == RELAY_COMP_LZ4 ?
	    cql_lz4_body_decompress(body, n, relay_in.p, relay_in.cap) :
	    cql_snappy_decompress(body, n, relay_in.p, relay_in.cap);
	if (got < 0)
		r->error = RELAY_ERR_CORRUPT;
	return (got);
}

/* Write a v3/v4 frame with a new (uncompressed) body and drain the old. */
static void
frame_emit(struct relay *r, struct evbuffer *in, struct evbuffer *out,
    const struct cql_header *h, size_t total, const uint8_t *body, size_t n)
{
	struct cql_header	 nh = *h;
	uint8_t			 hdr[CQL_HEADER_LEN];
	size_t			 hl;

	nh.flags &= (uint8_t)~CQL_FLAG_COMPRESSION;
	nh.length = (int32_t)n;
	hl = cql_header_write(hdr, &nh);
	evbuffer_add(out, hdr, hl);
	evbuffer_add(out, body, n);
	evbuffer_drain(in, total);
	r->rewrites++;
}

/* Inspect a v3/v4 frame whose header is at the front of ${in}. */
static enum inspect_rc
frame_inspect(struct relay *r, struct relay_dir *d, struct evbuffer *in,
    struct evbuffer *out, const struct cql_header *h)
{
	struct evbuffer_ptr	 ptr;
	size_t			 avail = evbuffer_get_length(in);
	size_t			 blen = (size_t)h->length;
	size_t			 total = r->hdr_len + blen, want, need = 0;
	const uint8_t		*nb;
	uint8_t			*p, *body;
	size_t			 nl;
	ssize_t			 dl;
	int			 rc;

	if ((h->flags & CQL_FLAG_COMPRESSION) && r->comp != RELAY_COMP_NONE) {
		if (avail < total)
			return (INSPECT_WAIT);
		if ((p = evbuffer_pullup(in, (ssize_t)total)) == NULL) {
			r->error = RELAY_ERR_NOMEM;
			return (INSPECT_ERROR);
		}
		if ((dl = body_decompress(r, p + r->hdr_len, blen)) < 0)
			return (INSPECT_ERROR);
		body = relay_in.p;
		blen = (size_t)dl;
		if (envelope_wants(r, d, h, body, blen, blen, &need) != 1)
			return (INSPECT_PASS);
	} else {
		want = blen < RELAY_PEEK ? blen : RELAY_PEEK;
		for (;;) {
			if (avail - r->hdr_len < want)
				return (INSPECT_WAIT);
			if (!buf_reserve(r, &relay_in, want + 1))
				return (INSPECT_ERROR);
			evbuffer_ptr_set(in, &ptr, r->hdr_len,
			    EVBUFFER_PTR_SET);
			evbuffer_copyout_from(in, &ptr, relay_in.p, want);
			rc = envelope_wants(r, d, h, relay_in.p, want, blen, &need);
			if (rc != -2 || need <= want)
				break;
			want = need;
		}
		if (rc != 1)
			return (INSPECT_PASS);
		if (avail < total)
			return (INSPECT_WAIT);
		if ((p = evbuffer_pullup(in, (ssize_t)total)) == NULL) {
			r->error = RELAY_ERR_NOMEM;
			return (INSPECT_ERROR);
		}
		body = p + r->hdr_len;
	}
	rc = envelope_rewrite(r, d, h, body, blen, &nb, &nl);
	if (rc < 0)
		return (INSPECT_ERROR);
	if (rc == 0)
		return (INSPECT_PASS);
	frame_emit(r, in, out, h, total, nb, nl);
	return (INSPECT_DONE);
}

/*
 * The plain relay's fast path (nothing to watch, nothing to rewrite): walk
 * the headers that lie in the first contiguous part of ${in}, checking
 * each, and return how far the frames they start reach (possibly past the
 * bytes buffered), so that one evbuffer move takes them all.  0: the next
 * header is split over two chains; -1: a bad or oversized header.
 */
static ssize_t
frames_span(struct relay *r, struct relay_dir *d, struct evbuffer *in)
{
	struct evbuffer_iovec	 v;
	struct cql_header	 ch;
	const uint8_t		*p;
	uint64_t		 off = 0;

	if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
		return (0);
	p = v.iov_base;
	while (off + r->hdr_len <= v.iov_len) {
		if (cql_header_parse(p + off, r->hdr_len, &ch) <= 0) {
			r->error = RELAY_ERR_CORRUPT;
			return (-1);
		}
		d->last = ch;
		if ((uint32_t)ch.length > r->max_frame) {
			r->error = RELAY_ERR_TOO_LARGE;
			return (-1);
		}
		if (track_wants_body(r, d, &ch)) {
			/* Its first body bytes elsewhere: the slow path. */
			if (off + r->hdr_len + 4 > v.iov_len)
				break;
			track_frame(r, d, &ch, p + off + r->hdr_len);
		} else if (r->track.on)
			track_frame(r, d, &ch, NULL);
		off += r->hdr_len + (uint64_t)ch.length;
	}
	return ((ssize_t)off);
}

/* v3/v4/DSE traffic. */
static ssize_t
move_frames(struct relay *r, struct relay_dir *d, struct evbuffer *in,
    struct evbuffer *out)
{
	struct cql_header	 ch;
	uint8_t			 hdr[CQL_HEADER_LEN + 4];
	const uint8_t		*b4;
	size_t			 avail, n, total;
	ssize_t			 moved = 0, span;

	for (;;) {
		avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		if (d->frame_left == 0 && r->rw == NULL && !r->await_startup &&
		    !d->unframed) {
			if ((span = frames_span(r, d, in)) < 0)
				return (-1);
			d->frame_left = (uint64_t)span;
		}
		if (d->frame_left > 0) {
			n = avail < d->frame_left ? avail :
			    (size_t)d->frame_left;
			evbuffer_remove_buffer(in, out, n);
			d->frame_left -= n;
			moved += (ssize_t)n;
			if (d->frame_left == 0 && d->switch_after) {
				d->switch_after = false;
				d->unframed = false;
				break;		/* segments from here on */
			}
			continue;
		}
		if (avail < r->hdr_len)
			break;
		evbuffer_copyout(in, hdr, r->hdr_len);
		if (cql_header_parse(hdr, r->hdr_len, &ch) <= 0) {
			d->last = ch;	/* negative length: for the report */
			r->error = RELAY_ERR_CORRUPT;
			return (-1);
		}
		d->last = ch;
		if ((uint32_t)ch.length > r->max_frame) {
			r->error = RELAY_ERR_TOO_LARGE;
			return (-1);
		}
		if (d->from_app && r->comp == RELAY_COMP_LZ4 &&
		    (ch.flags & CQL_FLAG_COMPRESSION) && ch.length >= 4) {
			/*
			 * The node allocates what an lz4 body declares before
			 * decompressing it (a 2 GiB claim takes Cassandra down
			 * with an OutOfMemoryError): hold it to max_frame_size.
			 */
			uint8_t	 lh[CQL_HEADER_LEN + 4];

			if (avail < (size_t)r->hdr_len + 4)
				break;
			evbuffer_copyout(in, lh, (size_t)r->hdr_len + 4);
			r->declared_len = (uint32_t)lh[r->hdr_len] << 24 |
			    (uint32_t)lh[r->hdr_len + 1] << 16 |
			    (uint32_t)lh[r->hdr_len + 2] << 8 |
			    (uint32_t)lh[r->hdr_len + 3];
			if (r->declared_len > r->max_frame) {
				r->error = RELAY_ERR_LZ4_TOO_LARGE;
				return (-1);
			}
		}
		b4 = NULL;
		if (track_wants_body(r, d, &ch)) {
			if (avail < (size_t)r->hdr_len + 4)
				break;
			evbuffer_copyout(in, hdr, (size_t)r->hdr_len + 4);
			b4 = hdr + r->hdr_len;
		}
		total = r->hdr_len + (size_t)ch.length;
		if (opcode_watched(r, d, ch.opcode)) {
			if (!frame_watch(r, d, in, &ch, total))
				break;
			track_frame(r, d, &ch, b4);
			d->frame_left = total;
			continue;
		}
		if (r->rw == NULL || d->unframed ||
		    !opcode_interesting(r, d, ch.opcode)) {
			track_frame(r, d, &ch, b4);
			d->frame_left = total;
			continue;
		}
		switch (frame_inspect(r, d, in, out, &ch)) {
		case INSPECT_PASS:
			track_frame(r, d, &ch, b4);
			d->frame_left = total;
			break;
		case INSPECT_DONE:
			track_frame(r, d, &ch, b4);
			moved += (ssize_t)total;
			break;
		case INSPECT_WAIT:
			return (moved);
		case INSPECT_ERROR:
			return (-1);
		}
	}
	return (moved);
}

/* Append one segment carrying ${n} bytes of ${p} to ${out}. */
static bool
segment_emit(struct relay *r, struct evbuffer *out, const uint8_t *p,
    size_t n, bool self_contained)
{
	size_t	 len;

	if (!buf_reserve(r, &relay_seg, n + CQL_SEG_LZ4_HEADER + CQL_SEG_TRAILER))
		return (false);
	len = cql_segment_encode(r->seg_fmt, p, n, self_contained, relay_seg.p,
	    relay_seg.cap);
	if (len == 0) {
		r->error = RELAY_ERR_CORRUPT;
		return (false);
	}
	evbuffer_add(out, relay_seg.p, len);
	return (true);
}

/*
 * Encode a payload of whole envelopes as segments: as many envelopes per
 * self-contained segment as fit, a larger envelope split over
 * non-self-contained ones.
 */
static bool
envelopes_emit(struct relay *r, struct evbuffer *out, const uint8_t *p,
    size_t n)
{
	struct cql_header	 ch;
	size_t			 start = 0, off = 0, len, chunk;

	while (off < n) {
		if (cql_header_parse(p + off, n - off, &ch) <= 0)
			return (false);
		len = CQL_HEADER_LEN + (size_t)ch.length;
		if (len > CQL_SEG_MAX_PAYLOAD) {
			if (off > start && !segment_emit(r, out, p + start,
			    off - start, true))
				return (false);
			for (start = off; start < off + len; start += chunk) {
				chunk = off + len - start;
				if (chunk > CQL_SEG_MAX_PAYLOAD)
					chunk = CQL_SEG_MAX_PAYLOAD;
				if (!segment_emit(r, out, p + start, chunk,
				    false))
					return (false);
			}
			off = start;
			continue;
		}
		if (off + len - start > CQL_SEG_MAX_PAYLOAD) {
			if (!segment_emit(r, out, p + start, off - start, true))
				return (false);
			start = off;
		}
		off += len;
	}
	if (off > start && !segment_emit(r, out, p + start, off - start, true))
		return (false);
	return (true);
}

/* Decode (and check) the segment at the front of ${in} into relay_in. */
static ssize_t
segment_decode(struct relay *r, struct evbuffer *in,
    const struct cql_segment *seg)
{
	uint8_t	*p;
	ssize_t	 n;

	if ((p = evbuffer_pullup(in, (ssize_t)seg->total_len)) == NULL) {
		r->error = RELAY_ERR_NOMEM;
		return (-1);
	}
	if (!buf_reserve(r, &relay_in, CQL_SEG_MAX_PAYLOAD + 1))
		return (-1);
	n = cql_segment_decode(r->seg_fmt, p, seg->total_len, seg, relay_in.p,
	    relay_in.cap);
	if (n < 0)
		r->error = RELAY_ERR_CORRUPT;
	return (n);
}

/*
 * Walk the envelopes of a self-contained payload.  With ${out} NULL, only
 * report (1) whether one of them needs rewriting.  Otherwise build the new
 * payload in the scratch output and report whether anything changed; -1
 * on error.
 */
static int
payload_walk(struct relay *r, struct relay_dir *d, uint8_t *p, size_t n,
    struct evbuffer *build)
{
	struct cql_header	 ch;
	const uint8_t		*nb;
	size_t			 off = 0, len, nl, need;
	int			 rc, changed = 0;
	uint8_t			 hdr[CQL_HEADER_LEN];

	while (off < n) {
		if (cql_header_parse(p + off, n - off, &ch) <= 0 ||
		    (size_t)ch.length > n - off - CQL_HEADER_LEN) {
			r->error = RELAY_ERR_CORRUPT;
			return (-1);
		}
		d->last = ch;
		len = CQL_HEADER_LEN + (size_t)ch.length;
		if (build == NULL) {
			if (envelope_wants(r, d, &ch, p + off + CQL_HEADER_LEN,
			    (size_t)ch.length, (size_t)ch.length, &need) == 1)
				return (1);
			off += len;
			continue;
		}
		rc = envelope_wants(r, d, &ch, p + off + CQL_HEADER_LEN,
		    (size_t)ch.length, (size_t)ch.length, &need) == 1 ?
		    envelope_rewrite(r, d, &ch, p + off + CQL_HEADER_LEN,
		    (size_t)ch.length, &nb, &nl) : 0;
		if (rc < 0)
			return (-1);
		if (rc == 1) {
			ch.length = (int32_t)nl;
			evbuffer_add(build, hdr, cql_header_write(hdr, &ch));
			evbuffer_add(build, nb, nl);
			changed = 1;
			r->rewrites++;
		} else
			evbuffer_add(build, p + off, len);
		off += len;
	}
	return (changed);
}

/* Emit the envelopes in ${build} as segments; empties it. */
static bool
build_emit(struct relay *r, struct evbuffer *build, struct evbuffer *out)
{
	size_t	 n = evbuffer_get_length(build);
	uint8_t	*p;
	bool	 ok;

	if (n == 0)
		return (true);
	if ((p = evbuffer_pullup(build, (ssize_t)n)) == NULL) {
		r->error = RELAY_ERR_NOMEM;
		return (false);
	}
	ok = envelopes_emit(r, out, p, n);
	evbuffer_drain(build, n);
	return (ok);
}

/* A large envelope has arrived whole in d->assembly: rewrite and emit. */
static bool
assembly_finish(struct relay *r, struct relay_dir *d, struct evbuffer *out)
{
	struct evbuffer	*build;
	size_t		 n = evbuffer_get_length(d->assembly);
	uint8_t		*p;
	int		 rc;
	bool		 ok;

	d->env_rewrite = false;
	if ((p = evbuffer_pullup(d->assembly, (ssize_t)n)) == NULL ||
	    (build = evbuffer_new()) == NULL) {
		r->error = RELAY_ERR_NOMEM;
		return (false);
	}
	rc = payload_walk(r, d, p, n, build);
	ok = rc >= 0 && build_emit(r, rc == 1 ? build : d->assembly, out);
	evbuffer_free(build);
	evbuffer_drain(d->assembly, evbuffer_get_length(d->assembly));
	return (ok);
}

/*
 * Whether an envelope of the uncompressed segment at the front of ${in}
 * needs a change, looking only at envelope headers and at the first bytes
 * of the bodies that can matter (nothing is linearised).  1, 0 or -1.
 */
static int
segment_scan(struct relay *r, struct relay_dir *d, struct evbuffer *in,
    const struct cql_segment *seg)
{
	struct evbuffer_ptr	 ptr;
	struct cql_header	 ch;
	uint8_t			 hdr[CQL_HEADER_LEN];
	size_t			 off = 0, n = seg->payload_len, want, need;
	int			 rc;

	while (off < n) {
		if (n - off < CQL_HEADER_LEN)
			goto corrupt;
		evbuffer_ptr_set(in, &ptr, seg->hdr_len + off,
		    EVBUFFER_PTR_SET);
		evbuffer_copyout_from(in, &ptr, hdr, CQL_HEADER_LEN);
		if (cql_header_parse(hdr, CQL_HEADER_LEN, &ch) <= 0 ||
		    (size_t)ch.length > n - off - CQL_HEADER_LEN)
			goto corrupt;
		d->last = ch;
		if (opcode_interesting(r, d, ch.opcode)) {
			want = (size_t)ch.length < RELAY_PEEK ?
			    (size_t)ch.length : RELAY_PEEK;
			for (;;) {
				if (!buf_reserve(r, &relay_in, want + 1))
					return (-1);
				evbuffer_ptr_set(in, &ptr, seg->hdr_len + off +
				    CQL_HEADER_LEN, EVBUFFER_PTR_SET);
				evbuffer_copyout_from(in, &ptr, relay_in.p, want);
				rc = envelope_wants(r, d, &ch, relay_in.p, want,
				    (size_t)ch.length, &need);
				if (rc != -2 || need <= want)
					break;
				want = need;
			}
			if (rc == 1)
				return (1);
		}
		off += CQL_HEADER_LEN + (size_t)ch.length;
	}
	return (0);
corrupt:
	r->error = RELAY_ERR_CORRUPT;
	return (-1);
}

/* One complete segment at the front of ${in}. */
static int
segment_process(struct relay *r, struct relay_dir *d, struct evbuffer *in,
    struct evbuffer *out, const struct cql_segment *seg)
{
	struct cql_header	 ch;
	struct evbuffer		*build;
	size_t			 ulen, total, need;
	ssize_t			 n = 0;
	bool			 inspect;
	int			 rc;

	inspect = r->rw != NULL && (!d->from_app || relay_prepared_any(r));
	ulen = seg->uncompressed_len != 0 ? seg->uncompressed_len :
	    seg->payload_len;

	if (!seg->self_contained && d->env_left > 0) {
		/* The next part of a large envelope. */
		if (d->env_rewrite) {
			if ((n = segment_decode(r, in, seg)) < 0)
				return (-1);
			evbuffer_add(d->assembly, relay_in.p, (size_t)n);
			evbuffer_drain(in, seg->total_len);
		} else
			evbuffer_remove_buffer(in, out, seg->total_len);
		d->env_left -= ulen < d->env_left ? ulen : d->env_left;
		if (d->env_left == 0 && d->env_rewrite &&
		    !assembly_finish(r, d, out))
			return (-1);
		return (0);
	}
	if (!seg->self_contained) {
		/* The first part of a large envelope. */
		if ((n = segment_decode(r, in, seg)) < 0)
			return (-1);
		if (cql_header_parse(relay_in.p, (size_t)n, &ch) <= 0) {
			r->error = RELAY_ERR_CORRUPT;
			return (-1);
		}
		d->last = ch;
		if ((uint32_t)ch.length > r->max_frame) {
			r->error = RELAY_ERR_TOO_LARGE;
			return (-1);
		}
		total = CQL_HEADER_LEN + (size_t)ch.length;
		if (total <= (size_t)n) {
			r->error = RELAY_ERR_CORRUPT;
			return (-1);
		}
		d->env_left = total - (size_t)n;
		if (inspect && envelope_wants(r, d, &ch,
		    relay_in.p + CQL_HEADER_LEN, (size_t)n - CQL_HEADER_LEN,
		    (size_t)ch.length, &need) == 1) {
			if (d->assembly == NULL &&
			    (d->assembly = evbuffer_new()) == NULL) {
				r->error = RELAY_ERR_NOMEM;
				return (-1);
			}
			d->env_rewrite = true;
			evbuffer_add(d->assembly, relay_in.p, (size_t)n);
			evbuffer_drain(in, seg->total_len);
		} else
			evbuffer_remove_buffer(in, out, seg->total_len);
		return (0);
	}
	if (!inspect) {
		evbuffer_remove_buffer(in, out, seg->total_len);
		return (0);
	}
	/* Self-contained: find out whether any envelope needs a change. */
	if (seg->uncompressed_len != 0) {
		if ((n = segment_decode(r, in, seg)) < 0)
			return (-1);
		rc = payload_walk(r, d, relay_in.p, (size_t)n, NULL);
	} else
		rc = segment_scan(r, d, in, seg);
	if (rc <= 0) {
		if (rc < 0)
			return (-1);
		evbuffer_remove_buffer(in, out, seg->total_len);
		return (0);
	}
	/* Check the payload before re-signing it, then rewrite. */
	if (seg->uncompressed_len == 0 &&
	    (n = segment_decode(r, in, seg)) < 0)
		return (-1);
	if ((build = evbuffer_new()) == NULL) {
		r->error = RELAY_ERR_NOMEM;
		return (-1);
	}
	rc = payload_walk(r, d, relay_in.p, (size_t)n, build);
	if (rc == 1) {
		if (!build_emit(r, build, out))
			rc = -1;
		else
			evbuffer_drain(in, seg->total_len);
	} else if (rc == 0)
		evbuffer_remove_buffer(in, out, seg->total_len);
	evbuffer_free(build);
	return (rc < 0 ? -1 : 0);
}

/* v5 traffic. */
static ssize_t
move_segments(struct relay *r, struct relay_dir *d, struct evbuffer *in,
    struct evbuffer *out)
{
	struct cql_segment	 seg;
	uint8_t			 hdr[CQL_SEG_LZ4_HEADER];
	size_t			 hl, avail;
	ssize_t			 moved = 0;
	int			 rc;

	hl = r->seg_fmt == CQL_SEG_LZ4 ? CQL_SEG_LZ4_HEADER :
	    CQL_SEG_CRC_HEADER;
	for (;;) {
		avail = evbuffer_get_length(in);
		if (avail < hl)
			break;
		evbuffer_copyout(in, hdr, hl);
		rc = cql_segment_parse_header(r->seg_fmt, hdr, hl, &seg);
		if (rc < 0) {
			r->error = RELAY_ERR_CORRUPT;
			return (-1);
		}
		if (rc == 0 || avail < seg.total_len)
			break;
		if (segment_process(r, d, in, out, &seg) < 0)
			return (-1);
		moved += (ssize_t)seg.total_len;
	}
	return (moved);
}

/* Let go of scratch that grew past what is kept between calls. */
static void
scratch_trim(void)
{
	struct relay_buf	*b[] = { &relay_in, &relay_out, &relay_seg };
	size_t			 i;

	for (i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		if (b[i]->cap > RELAY_SCRATCH_KEEP) {
			free(b[i]->p);
			b[i]->p = NULL;
			b[i]->cap = 0;
		}
}

static ssize_t
relay_move_once(struct relay *r, bool from_app, struct evbuffer *in,
    struct evbuffer *out)
{
	struct relay_dir	*d = from_app ? &r->up : &r->down;
	size_t			 len;
	ssize_t			 moved, more;

	r->error = RELAY_OK;
	if (r->segments && !d->unframed) {
		if (r->rw != NULL)
			return (move_segments(r, d, in, out));
		/* Segments are checked end to end by the app and the node. */
		len = evbuffer_get_length(in);
		evbuffer_add_buffer(out, in);
		return ((ssize_t)len);
	}
	moved = move_frames(r, d, in, out);
	if (moved < 0 || !r->segments || d->unframed ||
	    evbuffer_get_length(in) == 0)
		return (moved);
	/* Switched to segments with more bytes waiting. */
	more = relay_move_once(r, from_app, in, out);
	return (more < 0 ? -1 : moved + more);
}

ssize_t
relay_move(struct relay *r, bool from_app, struct evbuffer *in,
    struct evbuffer *out)
{
	ssize_t	 moved;

	moved = relay_move_once(r, from_app, in, out);
	scratch_trim();
	return (moved);
}

size_t
relay_scratch_peak(void)
{
	size_t	 peak = relay_peak;

	relay_peak = 0;
	return (peak);
}

void
relay_thread_done(void)
{
	free(relay_in.p);
	free(relay_out.p);
	free(relay_seg.p);
	memset(&relay_in, 0, sizeof(relay_in));
	memset(&relay_out, 0, sizeof(relay_out));
	memset(&relay_seg, 0, sizeof(relay_seg));
}
