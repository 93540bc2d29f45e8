/*
 * cql_frame: a pure codec for the CQL native protocol (v3, v4, v5, DSE_V1,
 * DSE_V2).  No libevent, no OpenSSL, no allocation: every function works on
 * caller-supplied memory, and every length read from the wire is checked
 * against the input and the output before it is used.
 */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <lz4.h>

#include "cql_frame.h"

#define CQL_STRING_MAX		0xFFFF		/* [short] length */
#define CQL_SEG_LEN_MASK	0x1FFFFu	/* 17-bit segment lengths */
#define CQL_CRC24_INIT		0x875060u
#define CQL_CRC24_POLY		0x1974F0Bu

/* The four bytes fed to CRC32 before every v5 payload. */
static const uint8_t crc32_seed[4] = { 0xFA, 0x2D, 0x55, 0xCA };

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), sliced by 8. */
#include "crc32_tables.h"

/* Names of all version bytes, for cql_version_name on unknown versions. */
#define VN(h, l)	"v0x" #h #l
#define VN16(h)								\
	VN(h, 0), VN(h, 1), VN(h, 2), VN(h, 3), VN(h, 4), VN(h, 5),	\
	VN(h, 6), VN(h, 7), VN(h, 8), VN(h, 9), VN(h, a), VN(h, b),	\
	VN(h, c), VN(h, d), VN(h, e), VN(h, f)
static const char *const version_hex[256] = {
	VN16(0), VN16(1), VN16(2), VN16(3), VN16(4), VN16(5), VN16(6),
	VN16(7), VN16(8), VN16(9), VN16(a), VN16(b), VN16(c), VN16(d),
	VN16(e), VN16(f)
};
#undef VN16
#undef VN

/* Load a big-endian 16-bit value. */
static uint16_t
load_be16(const uint8_t *p)
{

	return ((uint16_t)((p[0] << 8) | p[1]));
}

/* Load a big-endian 32-bit value. */
static uint32_t
load_be32(const uint8_t *p)
{

	return (((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

/* Load a little-endian 16-bit value. */
static uint16_t
load_le16(const uint8_t *p)
{

	return ((uint16_t)(p[0] | (p[1] << 8)));
}

/* Load a little-endian 24-bit value. */
static uint32_t
load_le24(const uint8_t *p)
{

	return ((uint32_t)p[0] | ((uint32_t)p[1] << 8) |
	    ((uint32_t)p[2] << 16));
}

/* Load a little-endian 32-bit value. */
static uint32_t
load_le32(const uint8_t *p)
{

	return (load_le24(p) | ((uint32_t)p[3] << 24));
}

/* Load a little-endian 40-bit value. */
static uint64_t
load_le40(const uint8_t *p)
{

	return ((uint64_t)load_le32(p) | ((uint64_t)p[4] << 32));
}

/* Store a big-endian 16-bit value. */
static void
store_be16(uint8_t *p, uint16_t v)
{

	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Store a big-endian 32-bit value. */
static void
store_be32(uint8_t *p, uint32_t v)
{

	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Store the low ${n} bytes of ${v} little-endian. */
static void
store_le(uint8_t *p, uint64_t v, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Reinterpret a 16-bit two's complement pattern without relying on casts. */
static int16_t
s16_from_u16(uint16_t u)
{

	if (u <= INT16_MAX)
		return ((int16_t)u);
	return ((int16_t)(-(int32_t)(uint16_t)~u - 1));
}

/* Reinterpret a 32-bit two's complement pattern without relying on casts. */
static int32_t
s32_from_u32(uint32_t u)
{

	if (u <= INT32_MAX)
		return ((int32_t)u);
	return (-(int32_t)~u - 1);
}

/* ASCII-only lower-casing, independent of the locale. */
static uint8_t
ascii_lower(uint8_t c)
{

	if (c >= 'A' && c <= 'Z')
		return ((uint8_t)(c - 'A' + 'a'));
	return (c);
}

/* Header length for a version byte (direction bit ignored). */
static size_t
header_len(uint8_t version)
{

	version &= (uint8_t)~CQL_VERSION_RESPONSE;
	return (version == CQL_V1 || version == CQL_V2 ?
	    CQL_HEADER_LEN_V1V2 : CQL_HEADER_LEN);
}

/*
 * cql_header_parse(p, n, h):
 * Decode the header at ${p}.  Returns the header length (8 or 9) when it is
 * complete and well-formed, 0 if more bytes are needed, -1 if the length is
 * negative (${h} is filled in all the same).  Any version byte is accepted here: version policy belongs to
 * the caller (the first frame must be relayed whatever its version).
 */
int
cql_header_parse(const uint8_t *p, size_t n, struct cql_header *h)
{
	size_t		hl;
	uint32_t	len;

	if (n < 1)
		return (0);
	hl = header_len(p[0]);
	if (n < hl)
		return (0);

	if (hl == CQL_HEADER_LEN_V1V2) {
		len = load_be32(&p[4]);
		h->stream = (int16_t)(p[2] < 0x80 ? p[2] : p[2] - 0x100);
		h->opcode = p[3];
	} else {
		len = load_be32(&p[5]);
		h->stream = s16_from_u16(load_be16(&p[2]));
		h->opcode = p[4];
	}
	/* Filled in even when malformed, for the caller's error report. */
	h->version = p[0] & (uint8_t)~CQL_VERSION_RESPONSE;
	h->response = (p[0] & CQL_VERSION_RESPONSE) != 0;
	h->flags = p[1];
	h->length = (int32_t)len;
	h->hdr_len = (uint8_t)hl;
	return (len > INT32_MAX ? -1 : (int)hl);
}

/*
 * cql_header_write(p, h):
 * Encode ${h} at ${p}, which must have room for ${h}->hdr_len bytes (if
 * hdr_len is 0, 9 is used).  The direction bit is taken from ${h}->response.
 * Returns the number of bytes written.
 */
size_t
cql_header_write(uint8_t *p, const struct cql_header *h)
{
	uint8_t	v;

	v = h->version & (uint8_t)~CQL_VERSION_RESPONSE;
	if (h->response)
		v |= CQL_VERSION_RESPONSE;
	p[0] = v;
	p[1] = h->flags;
	if (h->hdr_len == CQL_HEADER_LEN_V1V2) {
		p[2] = (uint8_t)h->stream;
		p[3] = h->opcode;
		store_be32(&p[4], (uint32_t)h->length);
		return (CQL_HEADER_LEN_V1V2);
	}
	store_be16(&p[2], (uint16_t)h->stream);
	p[4] = h->opcode;
	store_be32(&p[5], (uint32_t)h->length);
	return (CQL_HEADER_LEN);
}

/* cql_version_name(v): "v4", "DSE_V2", ... or "v0x2a" for unknown ones. */
const char *
cql_version_name(uint8_t version)
{

	switch (version) {
	case CQL_V1:
		return ("v1");
	case CQL_V2:
		return ("v2");
	case CQL_V3:
		return ("v3");
	case CQL_V4:
		return ("v4");
	case CQL_V5:
		return ("v5");
	case CQL_V6:
		return ("v6");
	case CQL_DSE_V1:
		return ("DSE_V1");
	case CQL_DSE_V2:
		return ("DSE_V2");
	default:
		return (version_hex[version]);
	}
}

/*
 * cql_version_has_segments(v): v5 and later Apache versions (v6-beta) use
 * segments once the handshake is over; DSE_V1/V2 never do.
 */
bool
cql_version_is_beta(uint8_t version)
{
	return (version == CQL_V6);
}

bool
cql_version_has_segments(uint8_t version)
{
	return (version >= CQL_V5 && version < CQL_DSE_V1);
}

/* cql_opcode_name(op): "STARTUP", ... or "UNKNOWN". */
const char *
cql_opcode_name(uint8_t opcode)
{

	switch (opcode) {
	case CQL_OP_ERROR:
		return ("ERROR");
	case CQL_OP_STARTUP:
		return ("STARTUP");
	case CQL_OP_READY:
		return ("READY");
	case CQL_OP_AUTHENTICATE:
		return ("AUTHENTICATE");
	case CQL_OP_CREDENTIALS:
		return ("CREDENTIALS");
	case CQL_OP_OPTIONS:
		return ("OPTIONS");
	case CQL_OP_SUPPORTED:
		return ("SUPPORTED");
	case CQL_OP_QUERY:
		return ("QUERY");
	case CQL_OP_RESULT:
		return ("RESULT");
	case CQL_OP_PREPARE:
		return ("PREPARE");
	case CQL_OP_EXECUTE:
		return ("EXECUTE");
	case CQL_OP_REGISTER:
		return ("REGISTER");
	case CQL_OP_EVENT:
		return ("EVENT");
	case CQL_OP_BATCH:
		return ("BATCH");
	case CQL_OP_AUTH_CHALLENGE:
		return ("AUTH_CHALLENGE");
	case CQL_OP_AUTH_RESPONSE:
		return ("AUTH_RESPONSE");
	case CQL_OP_AUTH_SUCCESS:
		return ("AUTH_SUCCESS");
	case CQL_OP_REVISE_REQUEST:
		return ("REVISE_REQUEST");
	default:
		return ("UNKNOWN");
	}
}

/* Start reading the ${len} bytes at ${p}. */
void
cql_reader_init(struct cql_reader *r, const uint8_t *p, size_t len)
{

	r->p = p;
	r->len = (p == NULL) ? 0 : len;
	r->off = 0;
	r->err = false;
}

/* Return a pointer to the next ${n} bytes and consume them, or fail. */
static const uint8_t *
reader_take(struct cql_reader *r, size_t n)
{
	const uint8_t	*s;

	if (r->err || n > r->len - r->off) {
		r->err = true;
		return (NULL);
	}
	s = r->p + r->off;
	r->off += n;
	return (s);
}

/* Read a [byte]. */
uint8_t
cql_read_byte(struct cql_reader *r)
{
	const uint8_t	*s;

	if ((s = reader_take(r, 1)) == NULL)
		return (0);
	return (s[0]);
}

/* Read a [short] (unsigned, big-endian). */
uint16_t
cql_read_short(struct cql_reader *r)
{
	const uint8_t	*s;

	if ((s = reader_take(r, 2)) == NULL)
		return (0);
	return (load_be16(s));
}

/* Read an [int] (signed, big-endian). */
int32_t
cql_read_int(struct cql_reader *r)
{
	const uint8_t	*s;

	if ((s = reader_take(r, 4)) == NULL)
		return (0);
	return (s32_from_u32(load_be32(s)));
}

/* Read a [string]: sets *s and *len to the bytes (not NUL-terminated). */
bool
cql_read_string(struct cql_reader *r, const uint8_t **s, size_t *len)
{
	uint16_t	n;

	*s = NULL;
	*len = 0;
	n = cql_read_short(r);
	if (r->err || (*s = reader_take(r, n)) == NULL)
		return (false);
	*len = n;
	return (true);
}

/* Read a [long string]; a negative length is an error. */
bool
cql_read_long_string(struct cql_reader *r, const uint8_t **s, size_t *len)
{
	int32_t	n;

	*s = NULL;
	*len = 0;
	n = cql_read_int(r);
	if (r->err)
		return (false);
	if (n < 0) {
		r->err = true;
		return (false);
	}
	if ((*s = reader_take(r, (size_t)n)) == NULL)
		return (false);
	*len = (size_t)n;
	return (true);
}

/* Read [bytes]: *len = -1 and *s = NULL for null (any negative length). */
bool
cql_read_bytes(struct cql_reader *r, const uint8_t **s, int32_t *len)
{
	int32_t	n;

	*s = NULL;
	*len = 0;
	n = cql_read_int(r);
	if (r->err)
		return (false);
	if (n < 0) {
		*len = -1;
		return (true);
	}
	if ((*s = reader_take(r, (size_t)n)) == NULL)
		return (false);
	*len = n;
	return (true);
}

/* Skip ${n} raw bytes. */
bool
cql_skip(struct cql_reader *r, size_t n)
{

	return (reader_take(r, n) != NULL);
}

/* Number of unread bytes (0 after an error). */
size_t
cql_reader_left(const struct cql_reader *r)
{

	if (r->err)
		return (0);
	return (r->len - r->off);
}

/* Start writing into the ${cap} bytes at ${p}. */
void
cql_writer_init(struct cql_writer *w, uint8_t *p, size_t cap)
{

	w->p = p;
	w->cap = (p == NULL) ? 0 : cap;
	w->len = 0;
	w->err = false;
}

/* Reserve the next ${n} bytes of output, or fail without writing. */
static uint8_t *
writer_take(struct cql_writer *w, size_t n)
{
	uint8_t	*s;

	if (w->err || n > w->cap - w->len) {
		w->err = true;
		return (NULL);
	}
	s = w->p + w->len;
	w->len += n;
	return (s);
}

/* Write a [byte]. */
void
cql_write_byte(struct cql_writer *w, uint8_t v)
{
	uint8_t	*s;

	if ((s = writer_take(w, 1)) != NULL)
		s[0] = v;
}

/* Write a [short]. */
void
cql_write_short(struct cql_writer *w, uint16_t v)
{
	uint8_t	*s;

	if ((s = writer_take(w, 2)) != NULL)
		store_be16(s, v);
}

/* Write an [int]. */
void
cql_write_int(struct cql_writer *w, int32_t v)
{
	uint8_t	*s;

	if ((s = writer_take(w, 4)) != NULL)
		store_be32(s, (uint32_t)v);
}

/* Write ${n} raw bytes. */
void
cql_write_raw(struct cql_writer *w, const void *s, size_t n)
{
	uint8_t	*d;

	if (n > 0 && s == NULL) {
		w->err = true;
		return;
	}
	if ((d = writer_take(w, n)) != NULL && n > 0)
		memcpy(d, s, n);
}

/* Write a [string]; more than 65535 bytes is an error, not a truncation. */
void
cql_write_string(struct cql_writer *w, const void *s, size_t n)
{

	if (n > CQL_STRING_MAX || (n > 0 && s == NULL) ||
	    (!w->err && 2 + n > w->cap - w->len)) {
		w->err = true;
		return;
	}
	cql_write_short(w, (uint16_t)n);
	cql_write_raw(w, s, n);
}

/* Write [bytes]; s == NULL writes a null ([int] -1). */
void
cql_write_bytes(struct cql_writer *w, const void *s, int32_t n)
{

	if (s == NULL) {
		cql_write_int(w, -1);
		return;
	}
	if (n < 0 || (!w->err && 4 + (size_t)n > w->cap - w->len)) {
		w->err = true;
		return;
	}
	cql_write_int(w, n);
	cql_write_raw(w, s, (size_t)n);
}

/* True if the ${n} bytes at ${s} are "COMPRESSION" in any case. */
static bool
is_compression_key(const uint8_t *s, size_t n)
{
	static const char	key[] = "compression";
	size_t			i;

	if (n != sizeof(key) - 1)
		return (false);
	for (i = 0; i < n; i++)
		if (ascii_lower(s[i]) != (uint8_t)key[i])
			return (false);
	return (true);
}

/*
 * cql_startup_compression(body, n, out, outcap):
 * Find the COMPRESSION option (key compared case-insensitively) in a
 * STARTUP body ([string map]).  Copies the value, lower-cased and
 * NUL-terminated, into ${out} ("" when absent).  Returns 0, or -1 if the
 * body is malformed or the value does not fit.
 */
int
cql_startup_compression(const uint8_t *body, size_t n, char *out,
    size_t outcap)
{
	struct cql_reader	 r;
	const uint8_t		*k, *v, *val = NULL;
	size_t			 klen, vlen, val_len = 0, i;
	uint16_t		 count, e;

	if (out == NULL || outcap == 0)
		return (-1);
	out[0] = '\0';

	/* Walk the whole map, so that a truncated body is always an error. */
	cql_reader_init(&r, body, n);
	count = cql_read_short(&r);
	for (e = 0; e < count && !r.err; e++) {
		if (!cql_read_string(&r, &k, &klen) ||
		    !cql_read_string(&r, &v, &vlen))
			break;
		/* As in the server's map, the last repeated key wins. */
		if (is_compression_key(k, klen)) {
			val = v;
			val_len = vlen;
		}
	}
	if (r.err)
		return (-1);
	if (val == NULL)
		return (0);

	/* An embedded NUL would make us and the server disagree. */
	if (val_len >= outcap || memchr(val, '\0', val_len) != NULL)
		return (-1);
	for (i = 0; i < val_len; i++)
		out[i] = (char)ascii_lower(val[i]);
	out[val_len] = '\0';
	return (0);
}

/* Reserve room for the envelope header of ${version} at the start of ${w}. */
static void
frame_begin(struct cql_writer *w, uint8_t *out, size_t cap, uint8_t version)
{

	cql_writer_init(w, out, cap);
	(void)writer_take(w, header_len(version));
}

/* Fill in the header once the body is written; returns the frame length. */
static size_t
frame_finish(struct cql_writer *w, uint8_t version, bool response,
    int16_t stream, uint8_t opcode)
{
	struct cql_header	h;

	if (w->err || w->len - header_len(version) > INT32_MAX)
		return (0);
	h.version = version & (uint8_t)~CQL_VERSION_RESPONSE;
	h.response = response;
	/* A beta version needs USE_BETA on every frame, both ways. */
	h.flags = cql_version_is_beta(h.version) ? CQL_FLAG_USE_BETA : 0;
	h.stream = stream;
	h.opcode = opcode;
	h.hdr_len = (uint8_t)header_len(version);
	h.length = (int32_t)(w->len - h.hdr_len);
	(void)cql_header_write(w->p, &h);
	return (w->len);
}

/* Build a READY response. */
size_t
cql_build_ready(uint8_t *out, size_t cap, uint8_t version, int16_t stream)
{
	struct cql_writer	w;

	frame_begin(&w, out, cap, version);
	return (frame_finish(&w, version, true, stream, CQL_OP_READY));
}

/*
 * Length of the longest prefix of the ${n} bytes at ${s} that fits in a
 * [string] and does not end inside a UTF-8 sequence.
 */
static size_t
utf8_truncate(const char *s, size_t n)
{
	size_t	len;

	if (n <= CQL_STRING_MAX)
		return (n);
	/* Back off while the first byte cut away is a continuation byte. */
	len = CQL_STRING_MAX;
	while (len > 0 && ((uint8_t)s[len] & 0xC0) == 0x80)
		len--;
	return (len);
}

/* Build an ERROR response; the message is cut to fit a [string]. */
size_t
cql_build_error(uint8_t *out, size_t cap, uint8_t version, int16_t stream,
    int32_t code, const char *msg, size_t msglen)
{
	struct cql_writer	w;

	if (msg == NULL)
		msglen = 0;
	msglen = utf8_truncate(msg, msglen);
	frame_begin(&w, out, cap, version);
	cql_write_int(&w, code);
	cql_write_string(&w, msg, msglen);
	return (frame_finish(&w, version, true, stream, CQL_OP_ERROR));
}

/* Build an AUTHENTICATE response naming ${authenticator}. */
size_t
cql_build_authenticate(uint8_t *out, size_t cap, uint8_t version,
    int16_t stream, const char *authenticator)
{
	struct cql_writer	w;
	size_t			len;

	len = (authenticator == NULL) ? 0 : strlen(authenticator);
	frame_begin(&w, out, cap, version);
	cql_write_string(&w, authenticator, len);
	return (frame_finish(&w, version, true, stream, CQL_OP_AUTHENTICATE));
}

/* Build an AUTH_RESPONSE request; token == NULL encodes a null [bytes]. */
size_t
cql_build_auth_response(uint8_t *out, size_t cap, uint8_t version,
    int16_t stream, const uint8_t *token, int32_t toklen)
{
	struct cql_writer	w;

	frame_begin(&w, out, cap, version);
	cql_write_bytes(&w, token, toklen);
	return (frame_finish(&w, version, false, stream,
	    CQL_OP_AUTH_RESPONSE));
}

/* Build an AUTH_SUCCESS response with a null token. */
size_t
cql_build_auth_success(uint8_t *out, size_t cap, uint8_t version,
    int16_t stream)
{
	struct cql_writer	w;

	frame_begin(&w, out, cap, version);
	cql_write_bytes(&w, NULL, -1);
	return (frame_finish(&w, version, true, stream, CQL_OP_AUTH_SUCCESS));
}

/*
 * cql_lz4_body_decompress(body, n, out, cap):
 * Decompress a v3/v4/DSE lz4 body: a 4-byte big-endian uncompressed length
 * followed by a raw LZ4 block.  Writes at most ${cap} bytes to ${out};
 * returns the uncompressed length, or -1 on malformed input or if it does
 * not fit.
 */
ssize_t
cql_lz4_body_decompress(const uint8_t *body, size_t n, uint8_t *out,
    size_t cap)
{
	uint32_t	ulen;
	size_t		clen;
	int		r;

	if (body == NULL || n < 4)
		return (-1);
	ulen = load_be32(body);
	clen = n - 4;
	/* The length is an [int]: negative is malformed, and it may lie. */
	if (ulen > INT32_MAX || ulen > INT_MAX || ulen > cap)
		return (-1);
	if (ulen == 0)
		return (0);
	if (out == NULL || clen == 0 || clen > INT_MAX)
		return (-1);
	r = LZ4_decompress_safe((const char *)body + 4, (char *)out,
	    (int)clen, (int)ulen);
	if (r < 0 || (uint32_t)r != ulen)
		return (-1);
	return ((ssize_t)ulen);
}

/*
 * Read a snappy varint (at most 32 bits) at ${in}[*ip]; advances *ip.
 * Returns 0, or -1 if it is truncated or too large.
 */
static int
snappy_varint(const uint8_t *in, size_t n, size_t *ip, uint32_t *v)
{
	uint32_t	val = 0;
	unsigned int	shift;
	uint8_t		b;

	for (shift = 0; shift <= 28; shift += 7) {
		if (*ip >= n)
			return (-1);
		b = in[(*ip)++];
		/* The fifth byte may only supply the top four bits. */
		if (shift == 28 && b > 0x0F)
			return (-1);
		val |= (uint32_t)(b & 0x7F) << shift;
		if ((b & 0x80) == 0) {
			*v = val;
			return (0);
		}
	}
	return (-1);
}

/*
 * cql_snappy_decompress(in, n, out, cap):
 * Decompress the raw snappy data at ${in}.  Writes at most ${cap} bytes to
 * ${out}; returns the uncompressed length, or -1 on malformed input or if
 * it does not fit.
 */
ssize_t
cql_snappy_decompress(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	size_t		ip = 0, op = 0, len, off, extra, i;
	uint32_t	ulen;
	uint8_t		tag;

	if (in == NULL || snappy_varint(in, n, &ip, &ulen) != 0)
		return (-1);
	if (ulen > cap || (ulen > 0 && out == NULL))
		return (-1);
#if SSIZE_MAX < UINT32_MAX
	if (ulen > SSIZE_MAX)
		return (-1);
#endif

	while (ip < n) {
		tag = in[ip++];
		switch (tag & 0x03) {
		case 0x00:	/* literal */
			len = tag >> 2;
			if (len >= 60) {
				/* 60..63: length - 1 follows in 1..4 bytes. */
				extra = len - 59;
				if (extra > n - ip)
					return (-1);
				len = 0;
				for (i = 0; i < extra; i++)
					len |= (size_t)in[ip + i] << (8 * i);
				ip += extra;
			}
			/* The element holds len + 1 bytes: do not overflow. */
			if (len >= n - ip || len >= ulen - op)
				return (-1);
			len++;
			memcpy(out + op, in + ip, len);
			ip += len;
			op += len;
			continue;
		case 0x01:	/* copy, 1-byte offset */
			if (n - ip < 1)
				return (-1);
			len = 4 + ((tag >> 2) & 0x07);
			off = ((size_t)(tag >> 5) << 8) | in[ip];
			ip += 1;
			break;
		case 0x02:	/* copy, 2-byte offset */
			if (n - ip < 2)
				return (-1);
			len = (size_t)(tag >> 2) + 1;
			off = load_le16(in + ip);
			ip += 2;
			break;
		default:	/* copy, 4-byte offset */
			if (n - ip < 4)
				return (-1);
			len = (size_t)(tag >> 2) + 1;
			off = load_le32(in + ip);
			ip += 4;
			break;
		}

		/* Copies reach back into the output, never before its start. */
		if (off == 0 || off > op || len > ulen - op)
			return (-1);
		/* Byte by byte: the source may overlap the destination. */
		for (i = 0; i < len; i++)
			out[op + i] = out[op - off + i];
		op += len;
	}

	if (op != ulen)
		return (-1);
	return ((ssize_t)ulen);
}

/* cql_crc24(p, n): CRC24 as CQL v5 uses it (init 0x875060, poly 0x1974F0B). */
uint32_t
cql_crc24(const uint8_t *p, size_t n)
{
	uint32_t	crc = CQL_CRC24_INIT;
	size_t		i;
	int		bit;

	for (i = 0; i < n; i++) {
		crc ^= (uint32_t)p[i] << 16;
		for (bit = 0; bit < 8; bit++) {
			crc <<= 1;
			if (crc & 0x1000000u)
				crc ^= CQL_CRC24_POLY;
		}
	}
	return (crc & 0xFFFFFFu);
}

/*
 * Feed ${n} bytes into the running (pre-inverted) CRC-32 register ${crc}:
 * eight bytes a step with the slicing-by-8 tables (about 5 times the speed
 * of a byte a step; v5 checks every payload it relays), the tail a byte at a
 * time.  The eight bytes are read as two little-endian words built from
 * single loads, so alignment and host byte order do not matter.
 */
#if defined(__clang__)
/* Fuzzer coverage of this loop carries no signal and cost a third of the
 * rewriter target's time. */
__attribute__((no_sanitize("coverage")))
#endif
static uint32_t
crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	uint32_t	lo, hi;

	while (n >= 8) {
		lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
		    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
		hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
		    (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
		crc = crc32_tables[7][lo & 0xFF] ^
		    crc32_tables[6][(lo >> 8) & 0xFF] ^
		    crc32_tables[5][(lo >> 16) & 0xFF] ^
		    crc32_tables[4][lo >> 24] ^
		    crc32_tables[3][hi & 0xFF] ^
		    crc32_tables[2][(hi >> 8) & 0xFF] ^
		    crc32_tables[1][(hi >> 16) & 0xFF] ^
		    crc32_tables[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		crc = crc32_tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return (crc);
}

/* cql_crc32(p, n): zlib CRC-32 seeded with the bytes FA 2D 55 CA. */
uint32_t
cql_crc32(const uint8_t *p, size_t n)
{
	uint32_t	crc = 0xFFFFFFFFu;

	crc = crc32_update(crc, crc32_seed, sizeof(crc32_seed));
	if (n > 0)
		crc = crc32_update(crc, p, n);
	return (crc ^ 0xFFFFFFFFu);
}

/* Header length of segment format ${fmt}, or 0 if it is not a format. */
static size_t
segment_header_len(enum cql_seg_format fmt)
{

	switch (fmt) {
	case CQL_SEG_CRC:
		return (CQL_SEG_CRC_HEADER);
	case CQL_SEG_LZ4:
		return (CQL_SEG_LZ4_HEADER);
	default:
		return (0);
	}
}

/*
 * cql_segment_parse_header(fmt, p, n, seg):
 * Decode and check (CRC24, reserved bits zero) the segment header.  Returns
 * the header length, 0 if more bytes are needed, -1 if corrupt.
 */
int
cql_segment_parse_header(enum cql_seg_format fmt, const uint8_t *p,
    size_t n, struct cql_segment *seg)
{
	size_t		hl, wl;
	uint64_t	word;

	if ((hl = segment_header_len(fmt)) == 0)
		return (-1);
	if (n < hl)
		return (0);
	wl = hl - 3;	/* the last three bytes are the CRC24 */
	if (cql_crc24(p, wl) != load_le24(&p[wl]))
		return (-1);

	if (fmt == CQL_SEG_CRC) {
		word = load_le24(p);
		if (word >> 18)
			return (-1);
		seg->payload_len = (size_t)(word & CQL_SEG_LEN_MASK);
		seg->uncompressed_len = 0;
		seg->self_contained = (word >> 17) & 1;
	} else {
		word = load_le40(p);
		if (word >> 35)
			return (-1);
		seg->payload_len = (size_t)(word & CQL_SEG_LEN_MASK);
		seg->uncompressed_len = (size_t)((word >> 17) &
		    CQL_SEG_LEN_MASK);
		seg->self_contained = (word >> 34) & 1;
	}
	seg->hdr_len = hl;
	seg->total_len = hl + seg->payload_len + CQL_SEG_TRAILER;
	return ((int)hl);
}

/*
 * cql_segment_decode(fmt, p, n, seg, out, cap):
 * Given a complete segment at ${p} (n >= seg->total_len after
 * cql_segment_parse_header), verify the payload CRC32 and write the
 * payload, decompressed where needed, to ${out}.  Returns the payload
 * length, or -1 if corrupt or larger than ${cap}.
 */
ssize_t
cql_segment_decode(enum cql_seg_format fmt, const uint8_t *p, size_t n,
    const struct cql_segment *seg, uint8_t *out, size_t cap)
{
	const uint8_t	*payload;
	size_t		 plen, ulen;
	int		 r;

	/* Do not trust ${seg} further than cql_segment_parse_header could. */
	if (p == NULL || seg == NULL ||
	    seg->hdr_len != segment_header_len(fmt) ||
	    seg->payload_len > CQL_SEG_MAX_PAYLOAD ||
	    seg->uncompressed_len > CQL_SEG_MAX_PAYLOAD ||
	    (fmt == CQL_SEG_CRC && seg->uncompressed_len != 0) ||
	    seg->total_len != seg->hdr_len + seg->payload_len +
	    CQL_SEG_TRAILER || n < seg->total_len)
		return (-1);
	payload = p + seg->hdr_len;
	plen = seg->payload_len;
	ulen = seg->uncompressed_len;

	if (cql_crc32(payload, plen) != load_le32(payload + plen))
		return (-1);

	if (ulen == 0) {
		/* CRC format, or an LZ4-format segment stored raw. */
		if (plen > cap || (plen > 0 && out == NULL))
			return (-1);
		if (plen > 0)
			memcpy(out, payload, plen);
		return ((ssize_t)plen);
	}

	/* The header's uncompressed length may lie: cap it first. */
	if (ulen > cap || out == NULL || plen == 0)
		return (-1);
	r = LZ4_decompress_safe((const char *)payload, (char *)out, (int)plen,
	    (int)ulen);
	if (r < 0 || (size_t)r != ulen)
		return (-1);
	return ((ssize_t)ulen);
}

/*
 * cql_segment_encode(fmt, payload, n, self_contained, out, cap):
 * Wrap ${payload} (n <= CQL_SEG_MAX_PAYLOAD) in one segment, uncompressed
 * (LZ4 format: uncompressed length 0 = stored raw).  Returns the segment
 * length, or 0 if ${cap} is too small or n is too large.
 */
size_t
cql_segment_encode(enum cql_seg_format fmt, const uint8_t *payload,
    size_t n, bool self_contained, uint8_t *out, size_t cap)
{
	size_t		hl, wl, total;
	uint64_t	word;

	if ((hl = segment_header_len(fmt)) == 0 || out == NULL ||
	    n > CQL_SEG_MAX_PAYLOAD || (n > 0 && payload == NULL))
		return (0);
	total = hl + n + CQL_SEG_TRAILER;
	if (cap < total)
		return (0);

	word = (uint64_t)n;
	if (self_contained)
		word |= (uint64_t)1 << (fmt == CQL_SEG_CRC ? 17 : 34);
	wl = hl - 3;
	store_le(out, word, wl);
	store_le(out + wl, cql_crc24(out, wl), 3);
	if (n > 0)
		memcpy(out + hl, payload, n);
	store_le(out + hl + n, cql_crc32(payload, n), CQL_SEG_TRAILER);
	return (total);
}
