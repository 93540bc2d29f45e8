/*
 * fuzz_frame: the pure codec of cql_frame.h.
 *
 * The first input byte picks what the rest is fed to: a stream of frame
 * headers, a program of body reads, a STARTUP body, an lz4 or snappy
 * body, a v5 segment (CRC or LZ4 format), or the frame builders.  Besides
 * "no crash, no out-of-bounds access", each part checks what the header
 * promises: parsed headers re-encode to the same bytes, reads stay inside
 * the body, decoders never write past ${cap} (every output buffer is a
 * heap block of exactly ${cap} bytes, so ASan sees one byte too many),
 * and what the encoders and builders produce decodes back to their input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "cql_frame.h"
#include "fuzz.h"

enum frame_mode {
	MODE_HEADERS,
	MODE_READER,
	MODE_STARTUP,
	MODE_LZ4,
	MODE_SNAPPY,
	MODE_SEG_CRC,
	MODE_SEG_LZ4,
	MODE_BUILD,
	MODE_COUNT
};

/* Store little-endian, as v5 segment headers do. */
static void
put_le(uint8_t *p, uint64_t v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Walk ${p} as a stream of frames, checking every header on the way. */
static void
fuzz_headers(const uint8_t *p, size_t n)
{
	struct cql_header	 h;
	uint8_t			 buf[CQL_HEADER_LEN];
	size_t			 off = 0, body;
	int			 r;

	(void)cql_crc24(p, n);
	(void)cql_crc32(p, n);
	while (off < n) {
		r = cql_header_parse(p + off, n - off, &h);
		FUZZ_CHECK(r == -1 || r == 0 || r == CQL_HEADER_LEN ||
		    r == CQL_HEADER_LEN_V1V2);
		if (r <= 0) {
			if (r == 0)
				FUZZ_CHECK(n - off < CQL_HEADER_LEN);
			return;
		}
		FUZZ_CHECK(h.hdr_len == r && h.length >= 0);
		FUZZ_CHECK(h.version == (p[off] & 0x7f));
		FUZZ_CHECK(h.response == ((p[off] & 0x80) != 0));
		/* Every field is kept, so the header re-encodes exactly. */
		FUZZ_CHECK(cql_header_write(buf, &h) == (size_t)r);
		FUZZ_CHECK(memcmp(buf, p + off, (size_t)r) == 0);
		FUZZ_CHECK(cql_version_name(h.version) != NULL);
		FUZZ_CHECK(cql_opcode_name(h.opcode) != NULL);
		if (cql_version_is_beta(h.version))
			FUZZ_CHECK(cql_version_has_segments(h.version));
		body = (size_t)h.length;
		if (body > n - off - (size_t)r)
			return;
		off += (size_t)r + body;
	}
}

/* Check what a read handed back lies inside the body. */
static void
check_span(const struct cql_reader *r, const uint8_t *s, size_t len)
{
	FUZZ_CHECK(s >= r->p && s <= r->p + r->len);
	FUZZ_CHECK(len <= (size_t)(r->p + r->len - s));
}

/*
 * The first byte says how many of the following bytes are a program of
 * reads; the rest is the body they read.
 */
static void
fuzz_reader(const uint8_t *p, size_t n)
{
	struct cql_reader	 r;
	const uint8_t		*prog, *s;
	uint8_t			*body;
	size_t			 plen, blen, i, len, before;
	int32_t			 ilen;
	bool			 ok;

	if (n == 0)
		return;
	plen = p[0] < n - 1 ? p[0] : n - 1;
	prog = p + 1;
	blen = n - 1 - plen;
	/* A copy of exactly the body's size: reads past it are caught. */
	body = fuzz_malloc(blen);
	memcpy(body, prog + plen, blen);
	cql_reader_init(&r, body, blen);
	for (i = 0; i < plen; i++) {
		before = r.off;
		switch (prog[i] & 7) {
		case 0:
			(void)cql_read_byte(&r);
			break;
		case 1:
			(void)cql_read_short(&r);
			break;
		case 2:
			(void)cql_read_int(&r);
			break;
		case 3:
			if ((ok = cql_read_string(&r, &s, &len)))
				check_span(&r, s, len);
			FUZZ_CHECK(ok == !r.err);
			break;
		case 4:
			if ((ok = cql_read_long_string(&r, &s, &len)))
				check_span(&r, s, len);
			FUZZ_CHECK(ok == !r.err);
			break;
		case 5:
			ok = cql_read_bytes(&r, &s, &ilen);
			if (ok && ilen >= 0)
				check_span(&r, s, (size_t)ilen);
			if (ok && ilen < 0)
				FUZZ_CHECK(ilen == -1 && s == NULL);
			break;
		case 6:
			(void)cql_skip(&r, prog[i] >> 3);
			break;
		default:
			len = cql_reader_left(&r);
			FUZZ_CHECK(r.err ? len == 0 : len == r.len - r.off);
			break;
		}
		FUZZ_CHECK(r.off <= r.len && r.off >= before);
		if (r.err)
			FUZZ_CHECK(cql_reader_left(&r) == 0);
	}
	free(body);
}

/* A STARTUP body, with an output buffer of an input-chosen size. */
static void
fuzz_startup(const uint8_t *p, size_t n)
{
	char	*out;
	size_t	 cap, i, len;

	if (n == 0)
		return;
	cap = p[0] & 31;
	out = fuzz_malloc(cap);
	if (cql_startup_compression(p + 1, n - 1, out, cap) == 0) {
		FUZZ_CHECK(cap > 0);
		len = strnlen(out, cap);
		FUZZ_CHECK(len < cap);
		for (i = 0; i < len; i++)
			FUZZ_CHECK(out[i] < 'A' || out[i] > 'Z');
	}
	free(out);
}

/* Output capacity from two input bytes: 0 .. 64 KiB. */
static size_t
pick_cap(struct fuzz_in *in)
{
	return (fuzz_u16(in));
}

/* An lz4 body as it comes, then one we compress ourselves. */
static void
fuzz_lz4(const uint8_t *p, size_t n)
{
	struct fuzz_in	 in;
	const uint8_t	*rest;
	uint8_t		*out, *body;
	size_t		 cap, len;
	ssize_t		 r;
	int		 clen, bound;

	fuzz_in_init(&in, p, n);
	cap = pick_cap(&in);
	len = fuzz_take(&in, fuzz_left(&in), &rest);
	out = fuzz_malloc(cap);
	r = cql_lz4_body_decompress(rest, len, out, cap);
	FUZZ_CHECK(r >= -1 && (r == -1 || (size_t)r <= cap));
	free(out);

	/* Round trip: the codec must read back what liblz4 wrote. */
	bound = LZ4_compressBound((int)len);
	body = fuzz_malloc(4 + (size_t)bound);
	clen = LZ4_compress_default((const char *)rest, (char *)body + 4,
	    (int)len, bound);
	FUZZ_CHECK(clen > 0);
	body[0] = (uint8_t)(len >> 24);
	body[1] = (uint8_t)(len >> 16);
	body[2] = (uint8_t)(len >> 8);
	body[3] = (uint8_t)len;
	out = fuzz_malloc(len);
	r = cql_lz4_body_decompress(body, 4 + (size_t)clen, out, len);
	FUZZ_CHECK(r == (ssize_t)len && memcmp(out, rest, len) == 0);
	if (len > 0)
		FUZZ_CHECK(cql_lz4_body_decompress(body, 4 + (size_t)clen,
		    out, len - 1) == -1);
	free(out);
	free(body);
}

/* Encode ${p} as snappy with literals only (what a trivial encoder does). */
static size_t
snappy_literals(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t	 o = 0, v = n, chunk;

	do {
		out[o++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	while (n > 0) {
		chunk = n < 60 ? n : 60;
		out[o++] = (uint8_t)((chunk - 1) << 2);
		memcpy(out + o, p, chunk);
		o += chunk;
		p += chunk;
		n -= chunk;
	}
	return (o);
}

/* A snappy stream as it comes, then a literal-only one of ours. */
static void
fuzz_snappy(const uint8_t *p, size_t n)
{
	struct fuzz_in	 in;
	const uint8_t	*rest;
	uint8_t		*out, *enc;
	size_t		 cap, len, elen;
	ssize_t		 r;

	fuzz_in_init(&in, p, n);
	cap = pick_cap(&in);
	len = fuzz_take(&in, fuzz_left(&in), &rest);
	out = fuzz_malloc(cap);
	r = cql_snappy_decompress(rest, len, out, cap);
	FUZZ_CHECK(r >= -1 && (r == -1 || (size_t)r <= cap));
	free(out);

	enc = fuzz_malloc(10 + len + len / 60 + 1);
	elen = snappy_literals(rest, len, enc);
	out = fuzz_malloc(len);
	r = cql_snappy_decompress(enc, elen, out, len);
	FUZZ_CHECK(r == (ssize_t)len && memcmp(out, rest, len) == 0);
	free(out);
	free(enc);
}

/*
 * A segment.  Flag bit 0 repairs both checksums first, so that the
 * fuzzer gets past them to the lengths and the LZ4 payload.
 */
static void
fuzz_segment(enum cql_seg_format fmt, const uint8_t *p, size_t n)
{
	struct cql_segment	 seg;
	struct fuzz_in		 in;
	const uint8_t		*rest;
	uint8_t			*buf, *out, *enc;
	size_t			 cap, len, hl, elen;
	ssize_t			 r;
	uint8_t			 flags;
	int			 rc;

	fuzz_in_init(&in, p, n);
	flags = fuzz_byte(&in);
	cap = (flags & 2) ? CQL_SEG_MAX_PAYLOAD + 1 : pick_cap(&in);
	len = fuzz_take(&in, fuzz_left(&in), &rest);
	hl = fmt == CQL_SEG_LZ4 ? CQL_SEG_LZ4_HEADER : CQL_SEG_CRC_HEADER;

	buf = fuzz_malloc(len);
	memcpy(buf, rest, len);
	if ((flags & 1) && len >= hl) {
		put_le(buf + hl - 3, cql_crc24(buf, hl - 3), 3);
		rc = cql_segment_parse_header(fmt, buf, len, &seg);
		if (rc > 0 && seg.total_len <= len)
			put_le(buf + hl + seg.payload_len,
			    cql_crc32(buf + hl, seg.payload_len), 4);
	}
	rc = cql_segment_parse_header(fmt, buf, len, &seg);
	FUZZ_CHECK(rc == -1 || rc == 0 || (size_t)rc == hl);
	if (rc == 0)
		FUZZ_CHECK(len < hl);
	if (rc > 0) {
		FUZZ_CHECK(seg.hdr_len == hl);
		FUZZ_CHECK(seg.payload_len <= CQL_SEG_MAX_PAYLOAD);
		FUZZ_CHECK(seg.uncompressed_len <= CQL_SEG_MAX_PAYLOAD);
		FUZZ_CHECK(seg.total_len == hl + seg.payload_len +
		    CQL_SEG_TRAILER);
		if (fmt == CQL_SEG_CRC)
			FUZZ_CHECK(seg.uncompressed_len == 0);
		out = fuzz_malloc(cap);
		r = cql_segment_decode(fmt, buf, len, &seg, out, cap);
		FUZZ_CHECK(r >= -1 && (r == -1 || (size_t)r <= cap));
		if (seg.total_len > len)
			FUZZ_CHECK(r == -1);
		if (r >= 0 && seg.uncompressed_len == 0)
			FUZZ_CHECK((size_t)r == seg.payload_len &&
			    memcmp(out, buf + hl, seg.payload_len) == 0);
		if (r >= 0 && seg.uncompressed_len != 0)
			FUZZ_CHECK((size_t)r == seg.uncompressed_len);
		free(out);
	}
	free(buf);

	/* Round trip through the encoder. */
	if (len > CQL_SEG_MAX_PAYLOAD)
		len = CQL_SEG_MAX_PAYLOAD;
	enc = fuzz_malloc(hl + len + CQL_SEG_TRAILER);
	elen = cql_segment_encode(fmt, rest, len, (flags & 4) != 0, enc,
	    hl + len + CQL_SEG_TRAILER);
	FUZZ_CHECK(elen == hl + len + CQL_SEG_TRAILER);
	FUZZ_CHECK(cql_segment_encode(fmt, rest, len, true, enc,
	    elen - 1) == 0);
	FUZZ_CHECK(cql_segment_parse_header(fmt, enc, elen, &seg) ==
	    (int)hl);
	FUZZ_CHECK(seg.payload_len == len && seg.total_len == elen &&
	    seg.self_contained == ((flags & 4) != 0));
	out = fuzz_malloc(len);
	FUZZ_CHECK(cql_segment_decode(fmt, enc, elen, &seg, out, len) ==
	    (ssize_t)len && memcmp(out, rest, len) == 0);
	free(out);
	free(enc);

	/* An LZ4-compressed segment, built the way a driver builds it. */
	if (fmt == CQL_SEG_LZ4 && len > 0) {
		uint64_t	 word;
		int		 bound, clen;

		bound = LZ4_compressBound((int)len);
		enc = fuzz_malloc(hl + (size_t)bound + CQL_SEG_TRAILER);
		clen = LZ4_compress_default((const char *)rest,
		    (char *)enc + hl, (int)len, bound);
		if (clen > 0 && (size_t)clen <= CQL_SEG_MAX_PAYLOAD) {
			word = (uint64_t)clen | (uint64_t)len << 17 |
			    (uint64_t)1 << 34;
			put_le(enc, word, 5);
			put_le(enc + 5, cql_crc24(enc, 5), 3);
			put_le(enc + hl + clen, cql_crc32(enc + hl,
			    (size_t)clen), 4);
			elen = hl + (size_t)clen + CQL_SEG_TRAILER;
			FUZZ_CHECK(cql_segment_parse_header(fmt, enc, elen,
			    &seg) == (int)hl);
			out = fuzz_malloc(len);
			FUZZ_CHECK(cql_segment_decode(fmt, enc, elen, &seg,
			    out, len) == (ssize_t)len &&
			    memcmp(out, rest, len) == 0);
			free(out);
		}
		free(enc);
	}
}

/* Check that ${f} is one frame of ${len} bytes; returns its body reader. */
static void
check_frame(const uint8_t *f, size_t len, uint8_t version, int16_t stream,
    uint8_t opcode, bool response, struct cql_reader *body)
{
	struct cql_header	 h;
	int			 r;

	r = cql_header_parse(f, len, &h);
	FUZZ_CHECK(r > 0 && (size_t)r + (size_t)h.length == len);
	FUZZ_CHECK(h.version == (version & 0x7f) && h.stream == stream &&
	    h.opcode == opcode && h.response == response);
	if (cql_version_is_beta(h.version))
		FUZZ_CHECK(h.flags & CQL_FLAG_USE_BETA);
	cql_reader_init(body, f + r, (size_t)h.length);
}

/* The builders and the writer, with input-chosen values and room. */
static void
fuzz_build(const uint8_t *p, size_t n)
{
	struct fuzz_in		 in;
	struct cql_reader	 rd;
	struct cql_writer	 w;
	const uint8_t		*msg, *s;
	uint8_t			*out;
	char			*str;
	size_t			 cap, mlen, len, slen;
	int32_t			 code, blen;
	int16_t			 stream;
	uint8_t			 version, sel;

	fuzz_in_init(&in, p, n);
	sel = fuzz_byte(&in);
	version = fuzz_byte(&in);
	stream = (int16_t)fuzz_u16(&in);
	if (version == CQL_V1 || version == CQL_V2 ||
	    version == (CQL_V1 | 0x80) || version == (CQL_V2 | 0x80))
		stream = (int8_t)stream;	/* one byte on the wire */
	code = (int32_t)((uint32_t)fuzz_u16(&in) << 16 | fuzz_u16(&in));
	cap = (sel & 0x80) ? 8192 : fuzz_byte(&in);
	mlen = fuzz_take(&in, fuzz_left(&in), &msg);
	out = fuzz_malloc(cap);

	switch (sel & 7) {
	case 0:
		len = cql_build_error(out, cap, version, stream, code,
		    (const char *)msg, mlen);
		if (len == 0)
			break;
		FUZZ_CHECK(len <= cap);
		check_frame(out, len, version, stream, CQL_OP_ERROR, true, &rd);
		FUZZ_CHECK(cql_read_int(&rd) == code);
		FUZZ_CHECK(cql_read_string(&rd, &s, &slen) && slen == mlen &&
		    memcmp(s, msg, mlen) == 0 && cql_reader_left(&rd) == 0);
		break;
	case 1:
		str = fuzz_malloc(mlen + 1);
		memcpy(str, msg, mlen);
		str[mlen] = '\0';
		len = cql_build_authenticate(out, cap, version, stream, str);
		if (len > 0) {
			FUZZ_CHECK(len <= cap);
			check_frame(out, len, version, stream,
			    CQL_OP_AUTHENTICATE, true, &rd);
			FUZZ_CHECK(cql_read_string(&rd, &s, &slen) &&
			    slen == strlen(str) && memcmp(s, str, slen) == 0);
		}
		free(str);
		break;
	case 2:
		len = cql_build_auth_response(out, cap, version, stream,
		    (sel & 8) ? NULL : msg, (int32_t)mlen);
		if (len == 0)
			break;
		FUZZ_CHECK(len <= cap);
		check_frame(out, len, version, stream, CQL_OP_AUTH_RESPONSE,
		    false, &rd);
		FUZZ_CHECK(cql_read_bytes(&rd, &s, &blen));
		if (sel & 8)
			FUZZ_CHECK(blen == -1);
		else
			FUZZ_CHECK((size_t)blen == mlen &&
			    memcmp(s, msg, mlen) == 0);
		break;
	case 3:
		len = cql_build_ready(out, cap, version, stream);
		if (len > 0)
			check_frame(out, len, version, stream, CQL_OP_READY,
			    true, &rd);
		break;
	case 4:
		len = cql_build_auth_success(out, cap, version, stream);
		if (len > 0) {
			check_frame(out, len, version, stream,
			    CQL_OP_AUTH_SUCCESS, true, &rd);
			FUZZ_CHECK(cql_read_bytes(&rd, &s, &blen) &&
			    blen == -1);
		}
		break;
	default:
		/* A program of writes; the writer never passes ${cap}. */
		cql_writer_init(&w, out, cap);
		for (len = 0; len < mlen; len++) {
			slen = (size_t)(msg[len] >> 3) < mlen ?
			    (size_t)(msg[len] >> 3) : mlen;
			switch (msg[len] & 7) {
			case 0:
				cql_write_byte(&w, msg[len]);
				break;
			case 1:
				cql_write_short(&w, msg[len]);
				break;
			case 2:
				cql_write_int(&w, msg[len]);
				break;
			case 3:
				cql_write_raw(&w, msg, slen);
				break;
			case 4:
				cql_write_string(&w, msg, slen);
				break;
			case 5:
				cql_write_bytes(&w, msg, (int32_t)slen);
				break;
			case 6:
				cql_write_bytes(&w, NULL, -1);
				break;
			default:
				cql_write_bytes(&w, msg, -1 - (msg[len] >> 3));
				break;
			}
			FUZZ_CHECK(w.len <= cap);
		}
		break;
	}
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t	*p = data + 1;
	size_t		 n = size - 1;

	if (size < 1)
		return (0);
	switch (data[0] % MODE_COUNT) {
	case MODE_HEADERS:
		fuzz_headers(p, n);
		break;
	case MODE_READER:
		fuzz_reader(p, n);
		break;
	case MODE_STARTUP:
		fuzz_startup(p, n);
		break;
	case MODE_LZ4:
		fuzz_lz4(p, n);
		break;
	case MODE_SNAPPY:
		fuzz_snappy(p, n);
		break;
	case MODE_SEG_CRC:
		fuzz_segment(CQL_SEG_CRC, p, n);
		break;
	case MODE_SEG_LZ4:
		fuzz_segment(CQL_SEG_LZ4, p, n);
		break;
	default:
		fuzz_build(p, n);
		break;
	}
	return (0);
}
