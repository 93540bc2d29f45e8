/*
 * fuzz_rewriter: the topology rewriter (topology.h) and the relay
 * (relay.h) that drives it, both directions.
 *
 * Input: [vsel][opts][seed:4][applen:2][app part: applen][node part: rest]
 *
 * vsel bit 7 set: "body mode": the rest is one body, given to every
 * topology function (classify, rewrite rows, learn, execute, event) with
 * exact-size output buffers.
 *
 * Otherwise vsel picks the version (v3, v4, v5, DSE_V1, DSE_V2, v6) and
 * opts the compression (none, lz4, snappy), whether a rewriter is set,
 * relay_expect_startup() (passthrough), a small max_frame_size, and raw
 * or structured parts.  Raw parts are relayed as they are.  Structured
 * parts are records [opcode][flags][stream:2][len:2][(mult)][body: len]
 * that this harness frames itself, correctly: compressed bodies (flag
 * 0x01 with lz4 or snappy), v5 segments (several envelopes per segment,
 * LZ4-compressed segments, an envelope stretched by mult over several
 * segments).  Each part arrives in PRNG-sized chunks, the two directions
 * interleaved, as a session would see them.
 *
 * Checks: relay_move() takes what it says it took and sets an error when it
 * fails; with no rewriter, raw v3/v4 and v5 traffic comes out byte for byte;
 * for structured (well-formed) input: no error unless a frame exceeds
 * max_frame_size, nothing left behind once everything has arrived, and the
 * output is well-formed again: the same envelopes in the same order,
 * identical unless the relay may rewrite them, valid segment checksums,
 * and rewritten results and events that parse.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <lz4.h>

#include "cql_frame.h"
#include "fuzz.h"
#include "relay.h"
#include "topology.h"

#define OPT_COMP	0x03
#define OPT_REWRITER	0x04
#define OPT_PASSTHROUGH	0x08
#define OPT_STRUCTURED	0x10
#define OPT_SMALL_MAX	0x20
#define OPT_KNOWN_ID	0x40

#define SMALL_MAX_FRAME	4096
#define REC_STRETCH	0x40	/* record flag: body repeated mult times */
#define STRETCH_MAX	(CQL_SEG_MAX_PAYLOAD + 4096)

static const uint8_t versions[] = {
	CQL_V3, CQL_V4, CQL_V5, CQL_DSE_V1, CQL_DSE_V2, CQL_V6
};

/* Prepared id the harness makes known up front (OPT_KNOWN_ID). */
static const uint8_t known_id[] = { 0x8d, 0x1a, 0x5e, 0x00, 0x42, 0x17,
    0xc3, 0x99 };

/*
 * Map node addresses to tunnel addresses: some are unknown (left alone),
 * some get an IPv6 address, so that rows grow and shrink.
 */
static bool
fuzz_resolve(void *arg, const struct topo_key *k, struct topo_inet *out)
{
	uint8_t	 last;

	(void)arg;
	if (k->native.len == 0)
		return (false);
	last = k->native.addr[k->native.len - 1];
	if ((last & 3) == 3)
		return (false);
	memset(out, 0, sizeof(*out));
	if (last & 4) {
		out->len = 16;
		out->addr[15] = last;
	} else {
		out->len = 4;
		out->addr[0] = 127;
		out->addr[2] = 1;
		out->addr[3] = last;
	}
	out->port = 9042 + (k->has_host_id ? k->host_id[0] : 0);
	return (true);
}

/* Every topology function on one body, with exact-size outputs. */
static void
fuzz_bodies(uint8_t version, const uint8_t *p, size_t n,
    const struct topo_rewriter *rw)
{
	enum topo_table	 table;
	int32_t		 kind;
	size_t		 need = 0, have;
	ssize_t		 r, r2;
	uint8_t		*body, *out;
	int		 rc, i;

	body = fuzz_malloc(n);
	memcpy(body, p, n);
	/* Classification from a prefix, as the relay peeks at bodies. */
	for (i = 0; i < 5; i++) {
		have = i == 0 ? 0 : i == 1 ? 1 : i == 2 ? n / 2 :
		    i == 3 ? (n > 0 ? n - 1 : 0) : n;
		if (have > n)
			continue;
		rc = topo_result_classify(version, body, have, n, &table,
		    &kind, &need);
		FUZZ_CHECK(rc >= -2 && rc <= 1);
		if (rc == -2)
			FUZZ_CHECK(have < n && need > have && need <= n);
	}

	/* Rows: first into a buffer too small by one, then the right size. */
	out = fuzz_malloc(n);
	r = topo_rewrite_rows(rw, version, body, n, out, n, &need);
	FUZZ_CHECK(r >= -2 && (r < 0 || (size_t)r <= n));
	if (r == -2) {
		FUZZ_CHECK(need > n);
		free(out);
		out = fuzz_malloc(need);
		r = topo_rewrite_rows(rw, version, body, n, out, need, &need);
		FUZZ_CHECK(r >= 0 && (size_t)r <= need);
	}
	if (r >= 0) {
		/* What the rewriter wrote is a topology Rows body again. */
		r2 = topo_rewrite_rows(rw, version, out, (size_t)r, NULL, 0,
		    &need);
		FUZZ_CHECK(r2 == -2 || (r2 >= 0 && (size_t)r2 <= (size_t)r));
		FUZZ_CHECK(topo_result_classify(version, out, (size_t)r,
		    (size_t)r, &table, &kind, &need) == 1 &&
		    kind == TOPO_RESULT_ROWS);
	}
	free(out);

	(void)topo_prepared_learn(rw->prepared, version, body, n);
	rc = topo_execute_need_metadata(rw->prepared, version, body, n);
	FUZZ_CHECK(rc >= -2 && rc <= 1);

	out = fuzz_malloc(n + 12);
	r = topo_rewrite_event(rw, body, n, out, n + 12);
	FUZZ_CHECK(r >= -1 && (r < 0 || (size_t)r <= n + 12));
	if (r > 0 && n >= 12) {
		/* The documented bound: at most 12 bytes more. */
		free(out);
		out = fuzz_malloc(n);
		r2 = topo_rewrite_event(rw, body, n, out, n);
		FUZZ_CHECK(r2 == -1 || r2 == 0 || r2 == r);
	}
	free(out);
	free(body);
}

/* A growable byte string. */
struct bytes {
	uint8_t		*p;
	size_t		 len;
	size_t		 cap;
};

static void
bytes_add(struct bytes *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		if ((b->p = realloc(b->p, b->cap)) == NULL)
			abort();
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* One envelope as the harness framed it. */
struct env {
	uint8_t		 opcode;
	int16_t		 stream;
	size_t		 off;		/* in the uncompressed envelope list */
	size_t		 len;
};

/* A structured part, framed: wire bytes plus what they stand for. */
struct part {
	struct bytes	 wire;		/* what is fed to the relay */
	struct bytes	 plain;		/* envelopes, bodies uncompressed */
	struct env	*env;
	size_t		 nenv;
	size_t		 largest;	/* largest body, either form */
	size_t		 unframed;	/* v5: bytes before the segments */
};

static void
store_le(uint8_t *p, uint64_t v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Append one segment of ${n} bytes, LZ4-compressed when asked and useful. */
static void
part_segment(struct part *pt, enum cql_seg_format fmt, const uint8_t *p,
    size_t n, bool self_contained, bool compress)
{
	uint8_t		*seg;
	size_t		 cap, len;
	uint64_t	 word;
	int		 clen;

	cap = CQL_SEG_LZ4_HEADER + (size_t)LZ4_compressBound((int)n) +
	    CQL_SEG_TRAILER;
	seg = fuzz_malloc(cap);
	if (fmt == CQL_SEG_LZ4 && compress && n > 0 &&
	    (clen = LZ4_compress_default((const char *)p,
	    (char *)seg + CQL_SEG_LZ4_HEADER, (int)n,
	    LZ4_compressBound((int)n))) > 0 && (size_t)clen < n) {
		word = (uint64_t)clen | (uint64_t)n << 17 |
		    (uint64_t)self_contained << 34;
		store_le(seg, word, 5);
		store_le(seg + 5, cql_crc24(seg, 5), 3);
		store_le(seg + CQL_SEG_LZ4_HEADER + clen,
		    cql_crc32(seg + CQL_SEG_LZ4_HEADER, (size_t)clen), 4);
		len = CQL_SEG_LZ4_HEADER + (size_t)clen + CQL_SEG_TRAILER;
	} else {
		len = cql_segment_encode(fmt, p, n, self_contained, seg, cap);
		FUZZ_CHECK(len > 0);
	}
	bytes_add(&pt->wire, seg, len);
	free(seg);
}

/* Encode a body the way the negotiated compression does. */
static size_t
compress_body(enum relay_compression comp, const uint8_t *p, size_t n,
    uint8_t **out)
{
	size_t	 o = 0, v = n, chunk;
	int	 clen;

	if (comp == RELAY_COMP_LZ4) {
		*out = fuzz_malloc(4 + (size_t)LZ4_compressBound((int)n));
		(*out)[0] = (uint8_t)(n >> 24);
		(*out)[1] = (uint8_t)(n >> 16);
		(*out)[2] = (uint8_t)(n >> 8);
		(*out)[3] = (uint8_t)n;
		clen = n == 0 ? 0 : LZ4_compress_default((const char *)p,
		    (char *)*out + 4, (int)n, LZ4_compressBound((int)n));
		FUZZ_CHECK(n == 0 || clen > 0);
		return (4 + (size_t)clen);
	}
	/* snappy, literals only */
	*out = fuzz_malloc(10 + n + n / 60 + 1);
	do {
		(*out)[o++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	while (n > 0) {
		chunk = n < 60 ? n : 60;
		(*out)[o++] = (uint8_t)((chunk - 1) << 2);
		memcpy(*out + o, p, chunk);
		o += chunk;
		p += chunk;
		n -= chunk;
	}
	return (o);
}

/* A STARTUP body asking for ${comp}. */
static size_t
startup_body(uint8_t *out, size_t cap, enum relay_compression comp)
{
	struct cql_writer	 w;
	const char		*name;

	cql_writer_init(&w, out, cap);
	name = comp == RELAY_COMP_LZ4 ? "lz4" : comp == RELAY_COMP_SNAPPY ?
	    "snappy" : NULL;
	cql_write_short(&w, name != NULL ? 2 : 1);
	cql_write_string(&w, "CQL_VERSION", 11);
	cql_write_string(&w, "3.0.0", 5);
	if (name != NULL) {
		cql_write_string(&w, "COMPRESSION", 11);
		cql_write_string(&w, name, strlen(name));
	}
	return (w.err ? 0 : w.len);
}

/* Frame one envelope: into pt->plain, and into ${pending} or the wire. */
static void
part_envelope(struct part *pt, uint8_t version, bool response, uint8_t flags,
    int16_t stream, uint8_t opcode, const uint8_t *body, size_t blen,
    enum relay_compression comp, bool framed, struct bytes *pending)
{
	struct cql_header	 h;
	uint8_t			 hdr[CQL_HEADER_LEN], *cbody = NULL;
	size_t			 hl, clen = blen;

	memset(&h, 0, sizeof(h));
	h.version = version;
	h.response = response;
	h.flags = cql_version_is_beta(version) ? CQL_FLAG_USE_BETA : 0;
	h.stream = stream;
	h.opcode = opcode;
	h.hdr_len = CQL_HEADER_LEN;
	h.length = (int32_t)blen;
	hl = cql_header_write(hdr, &h);

	pt->env = realloc(pt->env, (pt->nenv + 1) * sizeof(*pt->env));
	if (pt->env == NULL)
		abort();
	pt->env[pt->nenv].opcode = opcode;
	pt->env[pt->nenv].stream = stream;
	pt->env[pt->nenv].off = pt->plain.len;
	pt->env[pt->nenv].len = hl + blen;
	pt->nenv++;
	bytes_add(&pt->plain, hdr, hl);
	bytes_add(&pt->plain, body, blen);
	if (blen > pt->largest)
		pt->largest = blen;

	if (!framed && (flags & CQL_FLAG_COMPRESSION) &&
	    comp != RELAY_COMP_NONE) {
		clen = compress_body(comp, body, blen, &cbody);
		h.flags |= CQL_FLAG_COMPRESSION;
		h.length = (int32_t)clen;
		hl = cql_header_write(hdr, &h);
		if (clen > pt->largest)
			pt->largest = clen;
	}
	if (framed) {
		bytes_add(pending, hdr, hl);
		bytes_add(pending, body, blen);
	} else {
		bytes_add(&pt->wire, hdr, hl);
		bytes_add(&pt->wire, cbody != NULL ? cbody : body, clen);
	}
	free(cbody);
}

/* Flush the envelopes gathered in ${pending} as segments. */
static void
part_flush(struct part *pt, enum cql_seg_format fmt, struct bytes *pending,
    bool compress)
{
	size_t	 off, chunk;

	if (pending->len == 0)
		return;
	if (pending->len <= CQL_SEG_MAX_PAYLOAD)
		part_segment(pt, fmt, pending->p, pending->len, true,
		    compress);
	else {
		/* One large envelope over several segments. */
		for (off = 0; off < pending->len; off += chunk) {
			chunk = pending->len - off;
			if (chunk > CQL_SEG_MAX_PAYLOAD)
				chunk = CQL_SEG_MAX_PAYLOAD;
			part_segment(pt, fmt, pending->p + off, chunk, false,
			    compress);
		}
	}
	pending->len = 0;
}

/*
 * Frame the records of ${in} for one direction.  In passthrough mode the
 * part starts with the handshake message the relay watches for (STARTUP
 * from the app, READY from the node), unframed.
 */
static void
part_build(struct part *pt, struct fuzz_in *in, uint8_t version,
    enum relay_compression comp, bool from_app, bool passthrough,
    struct fuzz_rng *rng)
{
	struct bytes		 pending = { NULL, 0, 0 };
	enum cql_seg_format	 fmt;
	const uint8_t		*body;
	uint8_t			*big, sb[64], opcode, flags;
	size_t			 blen, size, mult, i;
	bool			 segments = cql_version_has_segments(version);
	bool			 compress, stretched = false;
	int16_t			 stream;

	fmt = comp == RELAY_COMP_LZ4 ? CQL_SEG_LZ4 : CQL_SEG_CRC;
	if (passthrough) {
		if (from_app)
			part_envelope(pt, version, false, 0, 0,
			    CQL_OP_STARTUP, sb, startup_body(sb, sizeof(sb),
			    comp), comp, false, NULL);
		else
			part_envelope(pt, version, true, 0, 0, CQL_OP_READY,
			    NULL, 0, comp, false, NULL);
		pt->unframed = pt->wire.len;
	}
	while (fuzz_left(in) >= 6) {
		opcode = fuzz_byte(in);
		flags = fuzz_byte(in);
		stream = (int16_t)fuzz_u16(in);
		size = fuzz_u16(in);
		mult = (flags & REC_STRETCH) ? (size_t)fuzz_byte(in) + 1 : 1;
		blen = fuzz_take(in, size, &body);
		/*
		 * Just past one segment, once a part, is enough to reach the
		 * multi-segment paths; more only costs time (checksums).
		 */
		if (stretched)
			mult = 1;
		if (blen > 0 && mult > STRETCH_MAX / blen)
			mult = STRETCH_MAX / blen > 0 ? STRETCH_MAX / blen : 1;
		if (mult > 1)
			stretched = true;
		if (mult > 1 && blen > 0) {
			/* Stretch the body, e.g. past one segment. */
			big = fuzz_malloc(blen * mult);
			for (i = 0; i < mult; i++)
				memcpy(big + i * blen, body, blen);
			blen *= mult;
		} else
			big = NULL;
		if (segments && pending.len > 0 &&
		    (fuzz_rng_next(rng) & 1 || pending.len + 9 + blen >
		    CQL_SEG_MAX_PAYLOAD))
			part_flush(pt, fmt, &pending, (flags & 0x80) != 0);
		compress = (flags & 0x80) != 0;
		part_envelope(pt, version, !from_app, flags, stream, opcode,
		    big != NULL ? big : body, blen, comp, segments, &pending);
		if (segments && pending.len > CQL_SEG_MAX_PAYLOAD)
			part_flush(pt, fmt, &pending, compress);
		free(big);
	}
	part_flush(pt, fmt, &pending, true);
	free(pending.p);
}

static void
part_free(struct part *pt)
{
	free(pt->wire.p);
	free(pt->plain.p);
	free(pt->env);
}

/* Whether the relay may change envelope ${opcode} in this direction. */
static bool
may_rewrite(bool from_app, bool rewriter, uint8_t opcode)
{
	if (!rewriter)
		return (false);
	if (from_app)
		return (opcode == CQL_OP_EXECUTE);
	return (opcode == CQL_OP_RESULT || opcode == CQL_OP_EVENT);
}

/*
 * Take the relay's output apart into envelopes (bodies uncompressed) and
 * compare them with what went in.
 */
static void
check_output(const struct part *pt, const uint8_t *out, size_t n,
    uint8_t version, enum relay_compression comp, bool from_app,
    const struct topo_rewriter *rw)
{
	static uint8_t		 payload[CQL_SEG_MAX_PAYLOAD + 1];
	struct bytes		 envs = { NULL, 0, 0 };
	struct cql_segment	 seg;
	struct cql_header	 h;
	enum cql_seg_format	 fmt;
	size_t			 off = 0, i, blen, need;
	uint8_t			*dec;
	ssize_t			 plen, dl;
	int			 r;

	fmt = comp == RELAY_COMP_LZ4 ? CQL_SEG_LZ4 : CQL_SEG_CRC;
	if (cql_version_has_segments(version)) {
		/* The unframed start passes verbatim. */
		FUZZ_CHECK(n >= pt->unframed && (pt->unframed == 0 ||
		    memcmp(out, pt->wire.p, pt->unframed) == 0));
		if (pt->unframed > 0)
			bytes_add(&envs, pt->plain.p, pt->env[0].len);
		for (off = pt->unframed; off < n; off += seg.total_len) {
			r = cql_segment_parse_header(fmt, out + off, n - off,
			    &seg);
			FUZZ_CHECK(r > 0 && seg.total_len <= n - off);
			plen = cql_segment_decode(fmt, out + off, n - off,
			    &seg, payload, sizeof(payload));
			FUZZ_CHECK(plen >= 0);
			bytes_add(&envs, payload, (size_t)plen);
		}
	} else {
		/* Frames: bodies the relay left compressed are unpacked. */
		while (off < n) {
			r = cql_header_parse(out + off, n - off, &h);
			FUZZ_CHECK(r > 0 && (size_t)h.length <= n - off -
			    (size_t)r);
			blen = (size_t)h.length;
			if ((h.flags & CQL_FLAG_COMPRESSION) &&
			    comp != RELAY_COMP_NONE) {
				need = pt->largest + 1;
				dec = fuzz_malloc(need);
				dl = comp == RELAY_COMP_LZ4 ?
				    cql_lz4_body_decompress(out + off + r,
				    blen, dec, need) :
				    cql_snappy_decompress(out + off + r, blen,
				    dec, need);
				FUZZ_CHECK(dl >= 0);
				h.flags &= (uint8_t)~CQL_FLAG_COMPRESSION;
				h.length = (int32_t)dl;
				(void)cql_header_write(payload, &h);
				bytes_add(&envs, payload, (size_t)r);
				bytes_add(&envs, dec, (size_t)dl);
				free(dec);
			} else
				bytes_add(&envs, out + off, (size_t)r + blen);
			off += (size_t)r + blen;
		}
	}

	/* The same envelopes, in order, changed only where allowed. */
	off = 0;
	for (i = 0; i < pt->nenv; i++) {
		r = cql_header_parse(envs.p + off, envs.len - off, &h);
		FUZZ_CHECK(r > 0 && (size_t)h.length <= envs.len - off -
		    (size_t)r);
		FUZZ_CHECK(h.opcode == pt->env[i].opcode &&
		    h.stream == pt->env[i].stream);
		blen = (size_t)r + (size_t)h.length;
		if (blen != pt->env[i].len || memcmp(envs.p + off,
		    pt->plain.p + pt->env[i].off, blen) != 0) {
			FUZZ_CHECK(may_rewrite(from_app, rw != NULL,
			    h.opcode));
			if (h.opcode == CQL_OP_RESULT) {
				enum topo_table	 t;
				int32_t		 kind;

				FUZZ_CHECK(topo_result_classify(version,
				    envs.p + off + r, (size_t)h.length,
				    (size_t)h.length, &t, &kind, &need) == 1);
			}
			if (h.opcode == CQL_OP_EVENT) {
				dec = fuzz_malloc((size_t)h.length + 12);
				FUZZ_CHECK(topo_rewrite_event(rw,
				    envs.p + off + r, (size_t)h.length, dec,
				    (size_t)h.length + 12) > 0);
				free(dec);
			}
		}
		off += blen;
	}
	FUZZ_CHECK(off == envs.len);
	free(envs.p);
}

/* One direction of the relay being fed. */
struct flow {
	bool		 from_app;
	const uint8_t	*p;
	size_t		 len;
	size_t		 arrived;
	struct evbuffer	*in;
	struct evbuffer	*out;
	bool		 failed;
	enum relay_error error;
};

/* Run relay_move once on ${f}, checking its accounting. */
static void
flow_move(struct relay *r, struct flow *f)
{
	size_t	 before = evbuffer_get_length(f->in);
	ssize_t	 moved;

	if (f->failed)
		return;
	moved = relay_move(r, f->from_app, f->in, f->out);
	FUZZ_CHECK(moved >= -1);
	if (moved < 0) {
		FUZZ_CHECK(r->error != RELAY_OK);
		FUZZ_CHECK(relay_error_name(r->error) != NULL);
		f->failed = true;
		f->error = r->error;
		return;
	}
	FUZZ_CHECK((size_t)moved <= before);
	FUZZ_CHECK(evbuffer_get_length(f->in) == before - (size_t)moved);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct topo_prepared	 prepared;
	struct topo_rewriter	 rw;
	struct relay		 r;
	struct fuzz_in		 in, sub;
	struct fuzz_rng		 rng;
	struct flow		 flows[2], *f;
	struct part		 parts[2];
	enum relay_compression	 comp;
	const uint8_t		*p[2];
	size_t			 len[2], chunk, applen, flat;
	uint8_t			*o;
	uint8_t			 vsel, opts, version;
	bool			 structured, passthrough;
	int			 i;

	fuzz_in_init(&in, data, size);
	vsel = fuzz_byte(&in);
	opts = fuzz_byte(&in);
	fuzz_rng_init(&rng, (uint32_t)fuzz_u16(&in) << 16 | fuzz_u16(&in));
	version = versions[(vsel & 0x7f) % sizeof(versions)];

	memset(&prepared, 0, sizeof(prepared));
	if (opts & OPT_KNOWN_ID) {
		prepared.n = prepared.next = 1;
		prepared.ent[0].len = sizeof(known_id);
		memcpy(prepared.ent[0].id, known_id, sizeof(known_id));
	}
	rw.resolve = fuzz_resolve;
	rw.arg = NULL;
	rw.prepared = &prepared;

	if (vsel & 0x80) {
		fuzz_bodies(version, data + in.off, fuzz_left(&in), &rw);
		return (0);
	}

	switch (opts & OPT_COMP) {
	case 1:
		comp = RELAY_COMP_LZ4;
		break;
	case 2:
		comp = RELAY_COMP_SNAPPY;
		break;
	default:
		comp = RELAY_COMP_NONE;
		break;
	}
	/* Segments know no snappy: a v5 session without lz4 uses CRC. */
	if (comp == RELAY_COMP_SNAPPY && cql_version_has_segments(version))
		comp = RELAY_COMP_NONE;
	structured = (opts & OPT_STRUCTURED) != 0;
	passthrough = (opts & OPT_PASSTHROUGH) != 0;
	applen = fuzz_u16(&in);
	len[0] = fuzz_take(&in, applen, &p[0]);
	len[1] = fuzz_take(&in, fuzz_left(&in), &p[1]);

	memset(parts, 0, sizeof(parts));
	if (structured) {
		for (i = 0; i < 2; i++) {
			fuzz_in_init(&sub, p[i], len[i]);
			part_build(&parts[i], &sub, version, comp, i == 0,
			    passthrough, &rng);
			p[i] = parts[i].wire.p;
			len[i] = parts[i].wire.len;
		}
	}

	relay_init(&r, version, passthrough ? RELAY_COMP_NONE : comp,
	    (opts & OPT_REWRITER) ? &rw : NULL,
	    (opts & OPT_SMALL_MAX) ? SMALL_MAX_FRAME : 256u << 20);
	if (passthrough)
		relay_expect_startup(&r);
	(void)relay_track_start(&r);	/* reuse's bookkeeping too */
	memset(flows, 0, sizeof(flows));
	for (i = 0; i < 2; i++) {
		flows[i].from_app = i == 0;
		flows[i].p = p[i];
		flows[i].len = len[i];
		if ((flows[i].in = evbuffer_new()) == NULL ||
		    (flows[i].out = evbuffer_new()) == NULL)
			abort();
	}

	/* Deliver both parts in chunks, interleaved. */
	for (;;) {
		f = &flows[fuzz_rng_next(&rng) & 1];
		if (f->arrived == f->len)
			f = f == &flows[0] ? &flows[1] : &flows[0];
		if (f->arrived == f->len)
			break;
		/*
		 * A node answers STARTUP only after it got it: nothing past
		 * its READY before the relay has seen the app's STARTUP.
		 */
		if (structured && passthrough && r.await_startup &&
		    !f->from_app && f->arrived >= parts[1].unframed) {
			if (flows[0].arrived < flows[0].len)
				f = &flows[0];
		}
		chunk = fuzz_rng_chunk(&rng);
		if (chunk > f->len - f->arrived)
			chunk = f->len - f->arrived;
		if (structured && passthrough && r.await_startup &&
		    !f->from_app && f->arrived < parts[1].unframed &&
		    chunk > parts[1].unframed - f->arrived)
			chunk = parts[1].unframed - f->arrived;
		evbuffer_add(f->in, f->p + f->arrived, chunk);
		f->arrived += chunk;
		flow_move(&r, f);
	}
	for (i = 0; i < 2; i++)
		flow_move(&r, &flows[i]);

	for (i = 0; i < 2; i++) {
		f = &flows[i];
		flat = evbuffer_get_length(f->out);
		o = evbuffer_pullup(f->out, -1);
		if (!structured) {
			/* Without a rewriter, bytes pass unchanged. */
			if (!(opts & OPT_REWRITER) && !f->failed)
				FUZZ_CHECK(flat + evbuffer_get_length(f->in) ==
				    f->len && (flat == 0 ||
				    memcmp(o, f->p, flat) == 0));
			continue;
		}
		if (f->failed) {
			/*
			 * Only a frame over the limit may stop good input:
			 * its length, or (app, lz4) the uncompressed length
			 * its body declares.
			 */
			FUZZ_CHECK((f->error == RELAY_ERR_TOO_LARGE ||
			    f->error == RELAY_ERR_LZ4_TOO_LARGE) &&
			    (opts & OPT_SMALL_MAX) &&
			    parts[i].largest > SMALL_MAX_FRAME - 64);
			continue;
		}
		FUZZ_CHECK(evbuffer_get_length(f->in) == 0);
		check_output(&parts[i], o, flat, version, comp, i == 0,
		    (opts & OPT_REWRITER) ? &rw : NULL);
	}

	for (i = 0; i < 2; i++) {
		evbuffer_free(flows[i].in);
		evbuffer_free(flows[i].out);
		part_free(&parts[i]);
	}
	FUZZ_CHECK(r.track.nout <= RELAY_TRACK_STREAMS);
	relay_free(&r);
	return (0);
}
