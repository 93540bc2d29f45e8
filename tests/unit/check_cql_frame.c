/*
 * Unit tests for cql_frame: envelope headers, body readers and writers,
 * STARTUP options, frame builders, v4 body decompression (lz4, snappy) and
 * v5 segments, including the vectors of the protocol brief (§4.5).
 */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "cql_frame.h"

#define SUITE_FN	cql_frame_suite
#include "test_main.h"

/* The v5 AUTH_RESPONSE envelope of brief §4.5 (stream 1, SASL PLAIN). */
static const uint8_t auth_env[] = {
	0x05, 0x00, 0x00, 0x01, 0x0f, 0x00, 0x00, 0x00, 0x18,
	0x00, 0x00, 0x00, 0x14,
	0x00, 'c', 'a', 's', 's', 'a', 'n', 'd', 'r', 'a',
	0x00, 'c', 'a', 's', 's', 'a', 'n', 'd', 'r', 'a',
};
static const uint8_t auth_token[] = "\0cassandra\0cassandra";
#define AUTH_TOKEN_LEN	20

/* Decode the hex digits of ${s} (spaces ignored) into ${out}. */
static size_t
unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t	n = 0;
	int	hi = -1, d;

	for (; *s != '\0'; s++) {
		if (*s == ' ')
			continue;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else
			ck_abort_msg("bad hex digit '%c'", *s);
		if (hi < 0) {
			hi = d;
			continue;
		}
		ck_assert_uint_lt(n, cap);
		out[n++] = (uint8_t)(hi << 4 | d);
		hi = -1;
	}
	ck_assert_int_eq(hi, -1);
	return (n);
}

/* Assert that ${got} (${n} bytes) equals the hex string ${want}. */
static void
assert_bytes(const uint8_t *got, size_t n, const char *want)
{
	uint8_t	buf[512];
	size_t	wn;

	wn = unhex(want, buf, sizeof(buf));
	ck_assert_uint_eq(n, wn);
	ck_assert_mem_eq(got, buf, wn);
}

/* Store the low 24 bits of ${v} little-endian. */
static void
put_le24(uint8_t *p, uint32_t v)
{

	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
}

/* Build an LZ4-format segment around ${payload} with the given fields. */
static size_t
make_lz4_segment(uint8_t *out, const uint8_t *payload, size_t clen,
    size_t ulen, bool self)
{
	uint64_t	w;
	uint32_t	c;
	size_t		i;

	w = (uint64_t)clen | (uint64_t)ulen << 17 | (uint64_t)self << 34;
	for (i = 0; i < 5; i++)
		out[i] = (uint8_t)(w >> (8 * i));
	put_le24(out + 5, cql_crc24(out, 5));
	memcpy(out + 8, payload, clen);
	c = cql_crc32(payload, clen);
	for (i = 0; i < 4; i++)
		out[8 + clen + i] = (uint8_t)(c >> (8 * i));
	return (8 + clen + 4);
}

/* Build a CRC-format header for a raw 24-bit word, with a valid CRC24. */
static void
make_crc_header(uint8_t *out, uint32_t w)
{

	put_le24(out, w);
	put_le24(out + 3, cql_crc24(out, 3));
}

/* Fill ${p} with compressible but not trivial data. */
static void
fill_pattern(uint8_t *p, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)("SELECT * FROM system.peers_v2;"[i % 30] +
		    (i / 1000));
}

/*
 * Envelope headers.
 */

START_TEST(test_header_v1_v2)
{
	struct cql_header	h;
	uint8_t			b[16];
	size_t			n;

	n = unhex("01 00 05 07 00 00 00 10", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 8);
	ck_assert_uint_eq(h.version, CQL_V1);
	ck_assert(!h.response);
	ck_assert_uint_eq(h.flags, 0);
	ck_assert_int_eq(h.stream, 5);
	ck_assert_uint_eq(h.opcode, CQL_OP_QUERY);
	ck_assert_int_eq(h.length, 16);
	ck_assert_uint_eq(h.hdr_len, 8);

	/* v2 response, stream byte 0xff is -1 (EVENT), flags kept. */
	n = unhex("82 02 ff 0c 00 00 01 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 8);
	ck_assert_uint_eq(h.version, CQL_V2);
	ck_assert(h.response);
	ck_assert_uint_eq(h.flags, CQL_FLAG_TRACING);
	ck_assert_int_eq(h.stream, -1);
	ck_assert_uint_eq(h.opcode, CQL_OP_EVENT);
	ck_assert_int_eq(h.length, 256);

	n = unhex("02 00 80 01 00 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 8);
	ck_assert_int_eq(h.stream, -128);

	/* 8 bytes suffice for v1/v2 even if more follow. */
	n = unhex("01 00 7f 05 00 00 00 00 ff", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 8);
	ck_assert_int_eq(h.stream, 127);
	ck_assert_uint_eq(h.opcode, CQL_OP_OPTIONS);
}
END_TEST

START_TEST(test_header_v3_v4_v5)
{
	struct cql_header	h;
	uint8_t			b[16];
	size_t			n;

	n = unhex("03 00 00 01 01 00 00 00 16", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, CQL_V3);
	ck_assert(!h.response);
	ck_assert_int_eq(h.stream, 1);
	ck_assert_uint_eq(h.opcode, CQL_OP_STARTUP);
	ck_assert_int_eq(h.length, 22);
	ck_assert_uint_eq(h.hdr_len, 9);

	n = unhex("84 05 7f ff 08 7f ff ff ff", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, CQL_V4);
	ck_assert(h.response);
	ck_assert_uint_eq(h.flags,
	    CQL_FLAG_COMPRESSION | CQL_FLAG_CUSTOM_PAYLOAD);
	ck_assert_int_eq(h.stream, 32767);
	ck_assert_uint_eq(h.opcode, CQL_OP_RESULT);
	ck_assert_int_eq(h.length, INT32_MAX);

	n = unhex("85 00 ff ff 0c 00 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, CQL_V5);
	ck_assert_int_eq(h.stream, -1);
	ck_assert_int_eq(h.length, 0);

	n = unhex("05 10 80 00 07 00 00 00 01", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_int_eq(h.stream, -32768);
	ck_assert_uint_eq(h.flags, CQL_FLAG_USE_BETA);
}
END_TEST

START_TEST(test_header_dse_and_unknown)
{
	struct cql_header	h;
	uint8_t			b[16];
	size_t			n;

	n = unhex("41 00 00 00 05 00 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, CQL_DSE_V1);
	ck_assert(!h.response);
	ck_assert_uint_eq(h.opcode, CQL_OP_OPTIONS);

	n = unhex("c2 00 00 02 ff 00 00 00 04", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, CQL_DSE_V2);
	ck_assert(h.response);
	ck_assert_int_eq(h.stream, 2);
	ck_assert_uint_eq(h.opcode, CQL_OP_REVISE_REQUEST);
	ck_assert_int_eq(h.length, 4);

	/* Unknown versions are the caller's business: 9-byte header. */
	n = unhex("2a 00 00 00 05 00 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, 0x2a);
	n = unhex("00 00 00 00 05 00 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, 0);
	n = unhex("ff 00 00 00 05 00 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 9);
	ck_assert_uint_eq(h.version, 0x7f);
	ck_assert(h.response);
	/* 0x81 is v1 with the response bit: still 8 bytes. */
	n = unhex("81 00 00 02 00 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), 8);
}
END_TEST

START_TEST(test_header_negative_length)
{
	struct cql_header	h;
	uint8_t			b[16];
	size_t			n;

	n = unhex("04 00 00 01 07 80 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), -1);
	n = unhex("85 00 00 01 07 ff ff ff ff", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), -1);
	n = unhex("01 00 00 07 ff ff ff fe", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), -1);
	n = unhex("42 00 00 01 07 80 00 00 01", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, n, &h), -1);
}
END_TEST

START_TEST(test_header_partial)
{
	struct cql_header	h;
	uint8_t			b[16];
	size_t			i;

	ck_assert_int_eq(cql_header_parse(NULL, 0, &h), 0);
	unhex("04 00 00 01 07 00 00 00 10", b, sizeof(b));
	for (i = 0; i < 9; i++)
		ck_assert_int_eq(cql_header_parse(b, i, &h), 0);
	unhex("02 00 00 07 00 00 00 10", b, sizeof(b));
	for (i = 0; i < 8; i++)
		ck_assert_int_eq(cql_header_parse(b, i, &h), 0);
	/* A negative length is only reported once the header is whole. */
	unhex("04 00 00 01 07 80 00 00 00", b, sizeof(b));
	ck_assert_int_eq(cql_header_parse(b, 8, &h), 0);
	ck_assert_int_eq(cql_header_parse(b, 9, &h), -1);
}
END_TEST

START_TEST(test_header_write)
{
	struct cql_header	h, h2;
	uint8_t			b[16];

	memset(&h, 0, sizeof(h));
	h.version = CQL_V4;
	h.response = true;
	h.flags = CQL_FLAG_WARNING;
	h.stream = -2;
	h.opcode = CQL_OP_RESULT;
	h.length = 0x01020304;
	h.hdr_len = 0;		/* 0 means 9 */
	ck_assert_uint_eq(cql_header_write(b, &h), 9);
	assert_bytes(b, 9, "84 08 ff fe 08 01 02 03 04");
	ck_assert_int_eq(cql_header_parse(b, 9, &h2), 9);
	ck_assert_int_eq(h2.stream, -2);
	ck_assert_int_eq(h2.length, 0x01020304);

	/* The version may carry a stale direction bit: response rules. */
	h.version = 0x85;
	h.response = false;
	h.hdr_len = 9;
	ck_assert_uint_eq(cql_header_write(b, &h), 9);
	ck_assert_uint_eq(b[0], 0x05);

	h.version = CQL_V2;
	h.response = false;
	h.flags = 0;
	h.stream = -1;
	h.opcode = CQL_OP_STARTUP;
	h.length = 7;
	h.hdr_len = 8;
	ck_assert_uint_eq(cql_header_write(b, &h), 8);
	assert_bytes(b, 8, "02 00 ff 01 00 00 00 07");
	ck_assert_int_eq(cql_header_parse(b, 8, &h2), 8);
	ck_assert_int_eq(h2.stream, -1);
}
END_TEST

START_TEST(test_names)
{

	ck_assert_str_eq(cql_version_name(CQL_V1), "v1");
	ck_assert_str_eq(cql_version_name(CQL_V2), "v2");
	ck_assert_str_eq(cql_version_name(CQL_V3), "v3");
	ck_assert_str_eq(cql_version_name(CQL_V4), "v4");
	ck_assert_str_eq(cql_version_name(CQL_V5), "v5");
	ck_assert_str_eq(cql_version_name(CQL_V6), "v6");
	ck_assert_str_eq(cql_version_name(CQL_DSE_V1), "DSE_V1");
	ck_assert_str_eq(cql_version_name(CQL_DSE_V2), "DSE_V2");
	ck_assert_str_eq(cql_version_name(0x2a), "v0x2a");
	ck_assert_str_eq(cql_version_name(0x00), "v0x00");
	ck_assert_str_eq(cql_version_name(0x07), "v0x07");
	ck_assert_str_eq(cql_version_name(0xc2), "v0xc2");
	ck_assert_str_eq(cql_version_name(0xff), "v0xff");

	ck_assert(cql_version_has_segments(CQL_V5));
	ck_assert(cql_version_has_segments(CQL_V6));
	ck_assert(!cql_version_has_segments(CQL_V4));
	ck_assert(!cql_version_has_segments(CQL_V3));
	ck_assert(!cql_version_has_segments(CQL_DSE_V1));
	ck_assert(!cql_version_has_segments(CQL_DSE_V2));

	ck_assert_str_eq(cql_opcode_name(CQL_OP_ERROR), "ERROR");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_STARTUP), "STARTUP");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_READY), "READY");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_AUTHENTICATE), "AUTHENTICATE");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_CREDENTIALS), "CREDENTIALS");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_OPTIONS), "OPTIONS");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_SUPPORTED), "SUPPORTED");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_QUERY), "QUERY");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_RESULT), "RESULT");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_PREPARE), "PREPARE");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_EXECUTE), "EXECUTE");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_REGISTER), "REGISTER");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_EVENT), "EVENT");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_BATCH), "BATCH");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_AUTH_CHALLENGE),
	    "AUTH_CHALLENGE");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_AUTH_RESPONSE),
	    "AUTH_RESPONSE");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_AUTH_SUCCESS), "AUTH_SUCCESS");
	ck_assert_str_eq(cql_opcode_name(CQL_OP_REVISE_REQUEST),
	    "REVISE_REQUEST");
	ck_assert_str_eq(cql_opcode_name(0x11), "UNKNOWN");
	ck_assert_str_eq(cql_opcode_name(0x80), "UNKNOWN");
}
END_TEST

/*
 * Reader.
 */

START_TEST(test_reader_scalars)
{
	struct cql_reader	r;
	uint8_t			b[16];
	size_t			n;

	n = unhex("7f ab cd ff ff ff fe 00 00 00 2a", b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert_uint_eq(cql_reader_left(&r), 11);
	ck_assert_uint_eq(cql_read_byte(&r), 0x7f);
	ck_assert_uint_eq(cql_read_short(&r), 0xabcd);
	ck_assert_int_eq(cql_read_int(&r), -2);
	ck_assert_int_eq(cql_read_int(&r), 42);
	ck_assert(!r.err);
	ck_assert_uint_eq(cql_reader_left(&r), 0);

	/* Past the end: zero values, sticky error, nothing consumed. */
	ck_assert_uint_eq(cql_read_byte(&r), 0);
	ck_assert(r.err);
	ck_assert_uint_eq(cql_reader_left(&r), 0);

	n = unhex("80 00 00 00 01", b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert_int_eq(cql_read_int(&r), INT32_MIN);
	ck_assert_uint_eq(cql_read_short(&r), 0);	/* 1 byte left */
	ck_assert(r.err);
	/* Even a read that would fit fails after an error. */
	ck_assert_uint_eq(cql_read_byte(&r), 0);
	ck_assert(r.err);

	cql_reader_init(&r, b, 3);
	ck_assert_int_eq(cql_read_int(&r), 0);
	ck_assert(r.err);

	cql_reader_init(&r, NULL, 0);
	ck_assert_uint_eq(cql_reader_left(&r), 0);
	ck_assert_uint_eq(cql_read_byte(&r), 0);
	ck_assert(r.err);
}
END_TEST

START_TEST(test_reader_strings)
{
	struct cql_reader	 r;
	const uint8_t		*s;
	size_t			 len, n;
	uint8_t			 b[32];

	n = unhex("00 03 61 62 63 00 00 00 00 00 02 78 79 ff", b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert(cql_read_string(&r, &s, &len));
	ck_assert_uint_eq(len, 3);
	ck_assert_mem_eq(s, "abc", 3);
	ck_assert(cql_read_string(&r, &s, &len));	/* empty */
	ck_assert_uint_eq(len, 0);
	ck_assert(cql_read_long_string(&r, &s, &len));
	ck_assert_uint_eq(len, 2);
	ck_assert_mem_eq(s, "xy", 2);
	ck_assert_uint_eq(cql_reader_left(&r), 1);
	ck_assert(!r.err);

	/* Truncated [string]: the length says 5, 3 bytes follow. */
	n = unhex("00 05 61 62 63", b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert(!cql_read_string(&r, &s, &len));
	ck_assert(r.err);
	ck_assert_ptr_null(s);
	ck_assert_uint_eq(len, 0);

	/* Truncated length. */
	cql_reader_init(&r, b, 1);
	ck_assert(!cql_read_string(&r, &s, &len));
	ck_assert(r.err);

	/* [long string] with a negative or too long length. */
	n = unhex("ff ff ff ff 61", b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert(!cql_read_long_string(&r, &s, &len));
	ck_assert(r.err);
	n = unhex("7f ff ff ff 61", b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert(!cql_read_long_string(&r, &s, &len));
	ck_assert(r.err);
	cql_reader_init(&r, b, 2);
	ck_assert(!cql_read_long_string(&r, &s, &len));
	ck_assert(r.err);
}
END_TEST

START_TEST(test_reader_bytes_skip)
{
	struct cql_reader	 r;
	const uint8_t		*s;
	int32_t			 len;
	size_t			 n;
	uint8_t			 b[32];

	n = unhex("00 00 00 02 aa bb ff ff ff ff 00 00 00 00 ff ff ff fb",
	    b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert(cql_read_bytes(&r, &s, &len));
	ck_assert_int_eq(len, 2);
	ck_assert_ptr_eq(s, b + 4);
	ck_assert(cql_read_bytes(&r, &s, &len));	/* null */
	ck_assert_int_eq(len, -1);
	ck_assert_ptr_null(s);
	ck_assert(cql_read_bytes(&r, &s, &len));	/* empty, not null */
	ck_assert_int_eq(len, 0);
	ck_assert(cql_read_bytes(&r, &s, &len));	/* -5 is null too */
	ck_assert_int_eq(len, -1);
	ck_assert_ptr_null(s);
	ck_assert(!r.err);
	ck_assert_uint_eq(cql_reader_left(&r), 0);

	/* Truncated [bytes] and truncated length. */
	n = unhex("00 00 00 09 aa bb", b, sizeof(b));
	cql_reader_init(&r, b, n);
	ck_assert(!cql_read_bytes(&r, &s, &len));
	ck_assert(r.err);
	ck_assert_ptr_null(s);
	cql_reader_init(&r, b, 3);
	ck_assert(!cql_read_bytes(&r, &s, &len));
	ck_assert(r.err);

	/* Skip. */
	cql_reader_init(&r, b, n);
	ck_assert(cql_skip(&r, 4));
	ck_assert_uint_eq(cql_reader_left(&r), 2);
	ck_assert(cql_skip(&r, 0));
	ck_assert(!cql_skip(&r, 3));
	ck_assert(r.err);
	ck_assert_uint_eq(cql_reader_left(&r), 0);
	cql_reader_init(&r, b, n);
	ck_assert(!cql_skip(&r, SIZE_MAX));
	ck_assert(r.err);
	cql_reader_init(&r, b, n);
	ck_assert(cql_skip(&r, n));
	ck_assert(!r.err);
}
END_TEST

/*
 * Writer.
 */

START_TEST(test_writer)
{
	struct cql_writer	w;
	uint8_t			b[64];

	memset(b, 0, sizeof(b));
	cql_writer_init(&w, b, sizeof(b));
	cql_write_byte(&w, 0x7f);
	cql_write_short(&w, 0xabcd);
	cql_write_int(&w, -2);
	cql_write_raw(&w, "xy", 2);
	cql_write_raw(&w, NULL, 0);
	cql_write_string(&w, "abc", 3);
	cql_write_string(&w, NULL, 0);
	cql_write_bytes(&w, "\x01\x02", 2);
	cql_write_bytes(&w, NULL, 0);
	cql_write_bytes(&w, "", 0);
	ck_assert(!w.err);
	assert_bytes(b, w.len, "7f ab cd ff ff ff fe 78 79 00 03 61 62 63 00 00"
	    " 00 00 00 02 01 02 ff ff ff ff 00 00 00 00");
}
END_TEST

START_TEST(test_writer_overflow)
{
	struct cql_writer	 w;
	uint8_t			 b[8];
	static uint8_t		 big[70000], big_out[70000];

	/* A string that does not fit writes nothing, not even its length. */
	memset(b, 0xee, sizeof(b));
	cql_writer_init(&w, b, sizeof(b));
	cql_write_int(&w, 1);
	cql_write_string(&w, "abc", 3);
	ck_assert(w.err);
	ck_assert_uint_eq(w.len, 4);
	ck_assert_uint_eq(b[4], 0xee);
	/* Sticky: a byte that would fit is not written either. */
	cql_write_byte(&w, 1);
	ck_assert_uint_eq(w.len, 4);
	ck_assert_uint_eq(b[4], 0xee);

	memset(b, 0xee, sizeof(b));
	cql_writer_init(&w, b, sizeof(b));
	cql_write_bytes(&w, "abcde", 5);
	ck_assert(w.err);
	ck_assert_uint_eq(w.len, 0);
	ck_assert_uint_eq(b[0], 0xee);

	cql_writer_init(&w, b, 3);
	cql_write_int(&w, 1);
	ck_assert(w.err);
	ck_assert_uint_eq(w.len, 0);

	cql_writer_init(&w, b, 1);
	cql_write_short(&w, 1);
	ck_assert(w.err);

	cql_writer_init(&w, b, 0);
	cql_write_byte(&w, 1);
	ck_assert(w.err);

	cql_writer_init(&w, b, sizeof(b));
	cql_write_raw(&w, "123456789", 9);
	ck_assert(w.err);
	ck_assert_uint_eq(w.len, 0);

	cql_writer_init(&w, NULL, 100);
	cql_write_byte(&w, 1);
	ck_assert(w.err);

	/* Lengths that the wire cannot express are errors, not truncation. */
	memset(big, 'q', sizeof(big));
	cql_writer_init(&w, big_out, sizeof(big_out));
	cql_write_string(&w, big, 65536);
	ck_assert(w.err);
	ck_assert_uint_eq(w.len, 0);
	cql_writer_init(&w, big_out, sizeof(big_out));
	cql_write_string(&w, big, 65535);
	ck_assert(!w.err);
	ck_assert_uint_eq(w.len, 65537);
	ck_assert_uint_eq(big_out[0], 0xff);
	ck_assert_uint_eq(big_out[1], 0xff);
	ck_assert_mem_eq(big_out + 2, big, 65535);

	cql_writer_init(&w, b, sizeof(b));
	cql_write_bytes(&w, "x", -2);
	ck_assert(w.err);
	cql_writer_init(&w, b, sizeof(b));
	cql_write_raw(&w, NULL, 1);
	ck_assert(w.err);
	cql_writer_init(&w, b, sizeof(b));
	cql_write_string(&w, NULL, 1);
	ck_assert(w.err);
}
END_TEST

/*
 * STARTUP options.
 */

/* Write a [string map] of ${npairs} C-string pairs into ${b}. */
static size_t
startup_body(uint8_t *b, size_t cap, const char *const *kv, uint16_t npairs)
{
	struct cql_writer	w;
	uint16_t		i;

	cql_writer_init(&w, b, cap);
	cql_write_short(&w, npairs);
	for (i = 0; i < 2 * npairs; i++)
		cql_write_string(&w, kv[i], strlen(kv[i]));
	ck_assert(!w.err);
	return (w.len);
}

START_TEST(test_startup_compression)
{
	static const char *const kv1[] = {
		"CQL_VERSION", "3.0.0", "COMPRESSION", "LZ4",
		"DRIVER_NAME", "x",
	};
	static const char *const kv2[] = {
		"driver_version", "1", "Compression", "Snappy",
	};
	static const char *const kv3[] = { "CQL_VERSION", "3.4.5" };
	static const char *const kv4[] = {
		"COMPRESSION", "snappy", "compression", "lz4",
	};
	static const char *const kv5[] = { "COMPRESSIONX", "lz4",
		"COMPRESSIO", "lz4" };
	uint8_t		b[256];
	char		out[16];
	size_t		n;

	n = startup_body(b, sizeof(b), kv1, 3);
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "lz4");

	n = startup_body(b, sizeof(b), kv2, 2);
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "snappy");

	/* Absent. */
	memset(out, 'x', sizeof(out));
	n = startup_body(b, sizeof(b), kv3, 1);
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	n = startup_body(b, sizeof(b), kv5, 2);
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	n = startup_body(b, sizeof(b), NULL, 0);
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");

	/* A repeated key keeps its last value, as the server's map does. */
	n = startup_body(b, sizeof(b), kv4, 2);
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "lz4");

	/* The value must fit with its NUL: "snappy" needs 7 bytes. */
	n = startup_body(b, sizeof(b), kv2, 2);
	ck_assert_int_eq(cql_startup_compression(b, n, out, 7), 0);
	ck_assert_str_eq(out, "snappy");
	ck_assert_int_eq(cql_startup_compression(b, n, out, 6), -1);
	ck_assert_int_eq(cql_startup_compression(b, n, out, 0), -1);
	ck_assert_int_eq(cql_startup_compression(b, n, NULL, 16), -1);
}
END_TEST

START_TEST(test_startup_compression_malformed)
{
	static const char *const kv1[] = {
		"CQL_VERSION", "3.0.0", "COMPRESSION", "lz4",
	};
	uint8_t		b[256];
	char		out[16];
	size_t		n, i;

	/* Every truncation of a valid body is an error. */
	n = startup_body(b, sizeof(b), kv1, 2);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(cql_startup_compression(b, i, out,
		    sizeof(out)), -1);
	ck_assert_int_eq(cql_startup_compression(NULL, 0, out, sizeof(out)),
	    -1);

	/* More pairs announced than present. */
	b[1] = 3;
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), -1);
	/* A key without a value. */
	n = unhex("00 01 00 0b 43 4f 4d 50 52 45 53 53 49 4f 4e", b,
	    sizeof(b));
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), -1);
	/* A value with an embedded NUL ("lz4\0x"). */
	n = unhex("00 01 00 0b 43 4f 4d 50 52 45 53 53 49 4f 4e"
	    " 00 05 6c 7a 34 00 78", b, sizeof(b));
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), -1);
	/* Trailing bytes after a whole map are tolerated. */
	n = unhex("00 01 00 0b 43 4f 4d 50 52 45 53 53 49 4f 4e"
	    " 00 03 4c 5a 34 ff ff", b, sizeof(b));
	ck_assert_int_eq(cql_startup_compression(b, n, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "lz4");
}
END_TEST

/*
 * Builders.
 */

START_TEST(test_build_ready)
{
	uint8_t	b[32];
	size_t	n;

	n = cql_build_ready(b, sizeof(b), CQL_V5, 7);
	assert_bytes(b, n, "85 00 00 07 02 00 00 00 00");
	n = cql_build_ready(b, sizeof(b), CQL_V4, 0x1234);
	assert_bytes(b, n, "84 00 12 34 02 00 00 00 00");
	n = cql_build_ready(b, sizeof(b), CQL_DSE_V2, -1);
	assert_bytes(b, n, "c2 00 ff ff 02 00 00 00 00");
	/* v6-beta: USE_BETA on every frame. */
	n = cql_build_ready(b, sizeof(b), CQL_V6, 1);
	assert_bytes(b, n, "86 10 00 01 02 00 00 00 00");
	n = cql_build_auth_response(b, sizeof(b), CQL_V6, 1, NULL, -1);
	assert_bytes(b, n, "06 10 00 01 0f 00 00 00 04 ff ff ff ff");
	/* A version byte that already has the response bit. */
	n = cql_build_ready(b, sizeof(b), 0x83, 1);
	assert_bytes(b, n, "83 00 00 01 02 00 00 00 00");
	n = cql_build_ready(b, sizeof(b), CQL_V2, 7);
	assert_bytes(b, n, "82 00 07 02 00 00 00 00");
	n = cql_build_ready(b, sizeof(b), CQL_V1, -3);
	assert_bytes(b, n, "81 00 fd 02 00 00 00 00");

	ck_assert_uint_eq(cql_build_ready(b, 8, CQL_V4, 1), 0);
	ck_assert_uint_eq(cql_build_ready(b, 9, CQL_V4, 1), 9);
	ck_assert_uint_eq(cql_build_ready(b, 7, CQL_V2, 1), 0);
	ck_assert_uint_eq(cql_build_ready(b, 8, CQL_V2, 1), 8);
	ck_assert_uint_eq(cql_build_ready(NULL, 0, CQL_V4, 1), 0);
}
END_TEST

START_TEST(test_build_error)
{
	static uint8_t	big[70000], out[70100];
	struct cql_reader r;
	struct cql_header h;
	const uint8_t	*s;
	uint8_t		b[64];
	size_t		n, len, i;

	n = cql_build_error(b, sizeof(b), CQL_V4, 3, CQL_ERR_AUTH, "bad", 3);
	assert_bytes(b, n, "84 00 00 03 00 00 00 00 09 00 00 01 00 00 03"
	    " 62 61 64");
	n = cql_build_error(b, sizeof(b), CQL_V5, 0, CQL_ERR_PROTOCOL,
	    NULL, 5);
	assert_bytes(b, n, "85 00 00 00 00 00 00 00 06 00 00 00 0a 00 00");
	n = cql_build_error(b, sizeof(b), CQL_V2, 5, CQL_ERR_SERVER, "x", 1);
	assert_bytes(b, n, "82 00 05 00 00 00 00 07 00 00 00 00 00 01 78");
	ck_assert_uint_eq(cql_build_error(b, 17, CQL_V4, 3, CQL_ERR_AUTH,
	    "bad", 3), 0);
	ck_assert_uint_eq(cql_build_error(b, 18, CQL_V4, 3, CQL_ERR_AUTH,
	    "bad", 3), 18);

	/* Too long for a [string]: cut to 65535 bytes. */
	memset(big, 'x', sizeof(big));
	n = cql_build_error(out, sizeof(out), CQL_V4, 1, CQL_ERR_SERVER,
	    (const char *)big, sizeof(big));
	ck_assert_uint_eq(n, 9 + 4 + 2 + 65535);
	ck_assert_int_eq(cql_header_parse(out, n, &h), 9);
	ck_assert_int_eq(h.length, 4 + 2 + 65535);
	cql_reader_init(&r, out + 9, n - 9);
	ck_assert_int_eq(cql_read_int(&r), 0);
	ck_assert(cql_read_string(&r, &s, &len));
	ck_assert_uint_eq(len, 65535);
	ck_assert_uint_eq(cql_reader_left(&r), 0);

	/* ... but never in the middle of a UTF-8 sequence. */
	for (i = 0; i + 1 < sizeof(big); i += 2) {
		big[i] = 0xc3;		/* U+00E9 */
		big[i + 1] = 0xa9;
	}
	n = cql_build_error(out, sizeof(out), CQL_V4, 1, CQL_ERR_SERVER,
	    (const char *)big, sizeof(big));
	ck_assert_uint_eq(n, 9 + 4 + 2 + 65534);
	ck_assert_uint_eq(out[15], 0xc3);
	ck_assert_uint_eq(out[n - 1], 0xa9);
}
END_TEST

START_TEST(test_build_auth)
{
	static const char	cls[] =
	    "org.apache.cassandra.auth.PasswordAuthenticator";
	uint8_t			b[128];
	size_t			n;

	n = cql_build_authenticate(b, sizeof(b), CQL_V5, 1, cls);
	ck_assert_uint_eq(n, 9 + 2 + 47);
	assert_bytes(b, 11, "85 00 00 01 03 00 00 00 31 00 2f");
	ck_assert_mem_eq(b + 11, cls, 47);
	ck_assert_uint_eq(cql_build_authenticate(b, n - 1, CQL_V5, 1, cls),
	    0);
	n = cql_build_authenticate(b, sizeof(b), CQL_V3, 2, NULL);
	assert_bytes(b, n, "83 00 00 02 03 00 00 00 02 00 00");

	/* The §4.5 envelope. */
	n = cql_build_auth_response(b, sizeof(b), CQL_V5, 1, auth_token,
	    AUTH_TOKEN_LEN);
	ck_assert_uint_eq(n, sizeof(auth_env));
	ck_assert_mem_eq(b, auth_env, sizeof(auth_env));
	ck_assert_uint_eq(cql_build_auth_response(b, n - 1, CQL_V5, 1,
	    auth_token, AUTH_TOKEN_LEN), 0);
	n = cql_build_auth_response(b, sizeof(b), CQL_V4, 9, NULL, 0);
	assert_bytes(b, n, "04 00 00 09 0f 00 00 00 04 ff ff ff ff");
	n = cql_build_auth_response(b, sizeof(b), CQL_V2, 9,
	    (const uint8_t *)"PLAIN", 5);
	assert_bytes(b, n, "02 00 09 0f 00 00 00 09 00 00 00 05"
	    " 50 4c 41 49 4e");
	ck_assert_uint_eq(cql_build_auth_response(b, sizeof(b), CQL_V4, 9,
	    auth_token, -1), 0);

	n = cql_build_auth_success(b, sizeof(b), CQL_V5, 1);
	assert_bytes(b, n, "85 00 00 01 10 00 00 00 04 ff ff ff ff");
	n = cql_build_auth_success(b, sizeof(b), CQL_V1, 1);
	assert_bytes(b, n, "81 00 01 10 00 00 00 04 ff ff ff ff");
	ck_assert_uint_eq(cql_build_auth_success(b, 12, CQL_V5, 1), 0);
}
END_TEST

/*
 * v3/v4/DSE body compression.
 */

START_TEST(test_lz4_body)
{
	static uint8_t	src[5000], body[6000], out[6000];
	int		clen;
	ssize_t		r;

	fill_pattern(src, sizeof(src));
	clen = LZ4_compress_default((const char *)src, (char *)body + 4,
	    (int)sizeof(src), (int)sizeof(body) - 4);
	ck_assert_int_gt(clen, 0);
	ck_assert_int_lt(clen, (int)sizeof(src));
	body[0] = 0x00;
	body[1] = 0x00;
	body[2] = 0x13;		/* 5000 = 0x1388 */
	body[3] = 0x88;
	r = cql_lz4_body_decompress(body, 4 + (size_t)clen, out, sizeof(out));
	ck_assert_int_eq(r, 5000);
	ck_assert_mem_eq(out, src, sizeof(src));
	/* Exactly enough room. */
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4 + (size_t)clen, out,
	    5000), 5000);
	/* Not enough room: refused before liblz4 runs. */
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4 + (size_t)clen, out,
	    4999), -1);

	/* The length prefix lies, up or down. */
	body[3] = 0x89;
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4 + (size_t)clen, out,
	    sizeof(out)), -1);
	body[3] = 0x87;
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4 + (size_t)clen, out,
	    sizeof(out)), -1);
	body[3] = 0x88;
	/* Absurd or negative lengths. */
	body[0] = 0x7f;
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4 + (size_t)clen, out,
	    sizeof(out)), -1);
	body[0] = 0x80;
	body[2] = 0x00;
	body[3] = 0x00;
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4 + (size_t)clen, out,
	    SIZE_MAX), -1);
	body[0] = 0x00;
	body[2] = 0x13;
	body[3] = 0x88;
	/* Truncated block. */
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4 + (size_t)clen - 1,
	    out, sizeof(out)), -1);
	/* Too short for the prefix; empty block. */
	ck_assert_int_eq(cql_lz4_body_decompress(body, 3, out, sizeof(out)),
	    -1);
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4, out, sizeof(out)),
	    -1);
	/* Garbage. */
	memset(body + 4, 0xff, 64);
	ck_assert_int_eq(cql_lz4_body_decompress(body, 68, out, sizeof(out)),
	    -1);
	/* Zero length: nothing to do. */
	memset(body, 0, 5);
	ck_assert_int_eq(cql_lz4_body_decompress(body, 5, out, sizeof(out)),
	    0);
	ck_assert_int_eq(cql_lz4_body_decompress(body, 4, NULL, 0), 0);
}
END_TEST

/* Run the snappy decoder on hex ${in}; compare with ${want} if it works. */
static ssize_t
snappy_hex(const char *in, size_t cap, const char *want)
{
	uint8_t	b[512], out[512];
	ssize_t	r;
	size_t	n;

	ck_assert_uint_le(cap, sizeof(out));
	n = unhex(in, b, sizeof(b));
	memset(out, 0, sizeof(out));
	r = cql_snappy_decompress(b, n, out, cap);
	if (r >= 0 && want != NULL)
		ck_assert_mem_eq(out, want, (size_t)r);
	return (r);
}

START_TEST(test_snappy_literals)
{
	static uint8_t	in[400], out[400];
	size_t		i;

	/* Empty input; one short literal. */
	ck_assert_int_eq(snappy_hex("00", 16, ""), 0);
	ck_assert_int_eq(snappy_hex("05 10 68 65 6c 6c 6f", 16, "hello"), 5);
	/* Two literals. */
	ck_assert_int_eq(snappy_hex("05 04 68 65 08 6c 6c 6f", 16, "hello"),
	    5);
	/* Tag 60: length-1 in one extra byte (100 bytes). */
	in[0] = 100;
	in[1] = 60 << 2;
	in[2] = 99;
	for (i = 0; i < 100; i++)
		in[3 + i] = (uint8_t)i;
	ck_assert_int_eq(cql_snappy_decompress(in, 103, out, sizeof(out)),
	    100);
	ck_assert_mem_eq(out, in + 3, 100);
	/* Tag 61: two extra bytes, little-endian (300 bytes, varint ac 02). */
	in[0] = 0xac;
	in[1] = 0x02;
	in[2] = 61 << 2;
	in[3] = 0x2b;		/* 299 */
	in[4] = 0x01;
	for (i = 0; i < 300; i++)
		in[5 + i] = (uint8_t)(i * 7);
	ck_assert_int_eq(cql_snappy_decompress(in, 305, out, sizeof(out)),
	    300);
	ck_assert_mem_eq(out, in + 5, 300);
	/* Tags 62 and 63: three and four extra bytes. */
	ck_assert_int_eq(snappy_hex("03 f8 02 00 00 61 62 63", 16, "abc"), 3);
	ck_assert_int_eq(snappy_hex("03 fc 02 00 00 00 61 62 63", 16, "abc"),
	    3);
}
END_TEST

START_TEST(test_snappy_copies)
{
	static uint8_t	in[400], out[400];
	size_t		i;

	/* Copy-1 (length 8, offset 4), overlapping its own output. */
	ck_assert_int_eq(snappy_hex("0c 0c 61 62 63 64 11 04", 16,
	    "abcdabcdabcd"), 12);
	/* Copy-1 with offset 1: a run. */
	ck_assert_int_eq(snappy_hex("0b 00 61 19 01", 16, "aaaaaaaaaaa"), 11);
	/* Copy-2 (length 4, offset 4), then a literal. */
	ck_assert_int_eq(snappy_hex("09 0c 61 62 63 64 0e 04 00 00 21", 16,
	    "abcdabcd!"), 9);
	/* Copy-2 of the maximum length 64 with offset 2. */
	ck_assert_int_eq(snappy_hex("42 04 78 79 fe 02 00", 80,
	    "xyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxy"
	    "xy"), 66);
	/* Copy-4 (length 3, offset 3). */
	ck_assert_int_eq(snappy_hex("06 08 61 62 63 0b 03 00 00 00", 16,
	    "abcabc"), 6);
	/* Copy-1 with the high offset bits: 261 literal bytes, offset 261. */
	in[0] = 0x89;		/* 265 */
	in[1] = 0x02;
	in[2] = 61 << 2;
	in[3] = 0x04;		/* 260 */
	in[4] = 0x01;
	for (i = 0; i < 261; i++)
		in[5 + i] = (uint8_t)(i + 1);
	in[266] = 0x01 | (1 << 5);	/* copy-1, length 4, offset 0x1.. */
	in[267] = 0x05;			/* ...0x105 */
	ck_assert_int_eq(cql_snappy_decompress(in, 268, out, sizeof(out)),
	    265);
	ck_assert_mem_eq(out, in + 5, 261);
	ck_assert_mem_eq(out + 261, in + 5, 4);
	/* Copy-2 with a 2-byte offset (300 back). */
	in[0] = 0xb6;		/* 310 */
	in[1] = 0x02;
	in[2] = 61 << 2;
	in[3] = 0x2b;		/* 299 */
	in[4] = 0x01;
	for (i = 0; i < 300; i++)
		in[5 + i] = (uint8_t)(i * 3);
	in[305] = 0x02 | (9 << 2);	/* copy-2, length 10 */
	in[306] = 0x2c;			/* offset 300 */
	in[307] = 0x01;
	ck_assert_int_eq(cql_snappy_decompress(in, 308, out, sizeof(out)),
	    310);
	ck_assert_mem_eq(out + 300, in + 5, 10);
}
END_TEST

START_TEST(test_snappy_errors)
{
	uint8_t	in[16], out[16];

	/* Offsets of 0, or reaching before the start of the output. */
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 01 00", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 01 05", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 0e 00 00", 16, NULL),
	    -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 0e 05 00", 16, NULL),
	    -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 0f 00 00 00 00", 16,
	    NULL), -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 0f 04 00 00 80", 16,
	    NULL), -1);
	/* A copy before any output. */
	ck_assert_int_eq(snappy_hex("04 01 01", 16, NULL), -1);

	/* Truncated input: varint, literal, literal length, copies. */
	ck_assert_int_eq(snappy_hex("", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("85", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("05 10 68 65 6c 6c", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("05 f0", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("05 fc 04 00 00", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 11", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 0e 04", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("08 0c 61 62 63 64 0f 04 00 00", 16,
	    NULL), -1);
	/* Output shorter than announced. */
	ck_assert_int_eq(snappy_hex("06 10 68 65 6c 6c 6f", 16, NULL), -1);

	/* Output overflow: announced length over cap, or elements past it. */
	ck_assert_int_eq(snappy_hex("05 10 68 65 6c 6c 6f", 4, NULL), -1);
	ck_assert_int_eq(snappy_hex("05 10 68 65 6c 6c 6f", 5, "hello"), 5);
	ck_assert_int_eq(snappy_hex("04 10 68 65 6c 6c 6f", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("06 0c 61 62 63 64 11 04", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("00 00 61", 16, NULL), -1);
	/* A 4-byte literal length of 2^32 - 1 must not wrap. */
	ck_assert_int_eq(snappy_hex("05 fc ff ff ff ff 61", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("ff ff ff ff 0f fc fe ff ff ff 61", 16,
	    NULL), -1);

	/* Varints: over 32 bits, or too long. */
	ck_assert_int_eq(snappy_hex("ff ff ff ff 1f", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("80 80 80 80 80 00", 16, NULL), -1);
	/* Bits past 32 must not be dropped silently (would read as 1). */
	ck_assert_int_eq(snappy_hex("81 80 80 80 10 00 61", 16, NULL), -1);
	ck_assert_int_eq(snappy_hex("81 80 80 80 00 00 61", 16, "a"), 1);
	/* A padded varint within 32 bits is fine. */
	ck_assert_int_eq(snappy_hex("81 80 00 00 61", 16, "a"), 1);

	memset(in, 0, sizeof(in));
	ck_assert_int_eq(cql_snappy_decompress(NULL, 0, out, sizeof(out)), -1);
	in[0] = 1;
	ck_assert_int_eq(cql_snappy_decompress(in, 3, NULL, 16), -1);
}
END_TEST

/*
 * v5 checksums and segments.
 */

START_TEST(test_crc_vectors)
{
	uint8_t	b[8];

	unhex("00 00 00", b, sizeof(b));
	ck_assert_uint_eq(cql_crc24(b, 3), 0x7DE777);
	unhex("09 00 02", b, sizeof(b));
	ck_assert_uint_eq(cql_crc24(b, 3), 0xC1C8A4);
	unhex("21 00 02", b, sizeof(b));
	ck_assert_uint_eq(cql_crc24(b, 3), 0x8D6221);
	unhex("21 00 00 00 04", b, sizeof(b));
	ck_assert_uint_eq(cql_crc24(b, 5), 0xCFD216);
	ck_assert_uint_eq(cql_crc24(NULL, 0), 0x875060);

	ck_assert_uint_eq(cql_crc32(NULL, 0), 0x44777ED3);
	ck_assert_uint_eq(cql_crc32((const uint8_t *)"", 0), 0x44777ED3);
	ck_assert_uint_eq(cql_crc32(auth_env, sizeof(auth_env)), 0x3ADBB9DD);
	/* Cross-checked with zlib, seeded the same way. */
	ck_assert_uint_eq(cql_crc32((const uint8_t *)"123456789", 9),
	    0xE2A261A7);
}
END_TEST

/* A bit at a time, straight from the definition: the reference. */
static uint32_t
crc32_bitwise(const uint8_t *p, size_t n)
{
	static const uint8_t	 seed[4] = { 0xFA, 0x2D, 0x55, 0xCA };
	uint32_t		 c = 0xFFFFFFFFu;
	size_t			 i;
	int			 bit;

	for (i = 0; i < 4 + n; i++) {
		c ^= i < 4 ? seed[i] : p[i - 4];
		for (bit = 0; bit < 8; bit++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
	}
	return (c ^ 0xFFFFFFFFu);
}

/*
 * The eight-bytes-a-step CRC-32 agrees with the definition for every
 * length around its step (0..67) at every alignment, and on a long run of
 * arbitrary bytes.
 */
START_TEST(test_crc32_sliced)
{
	static uint8_t	 buf[70000];
	uint32_t	 x = 0x12345678u;
	size_t		 i, off, n;

	for (i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	for (off = 0; off < 8; off++)
		for (n = 0; n < 68; n++)
			ck_assert_uint_eq(cql_crc32(buf + off, n),
			    crc32_bitwise(buf + off, n));
	ck_assert_uint_eq(cql_crc32(buf + 3, sizeof(buf) - 3),
	    crc32_bitwise(buf + 3, sizeof(buf) - 3));
}
END_TEST

START_TEST(test_segment_vectors)
{
	static const char	crc_hdr[] = "21 00 02 21 62 8d";
	static const char	lz4_hdr[] = "21 00 00 00 04 16 d2 cf";
	struct cql_segment	seg;
	uint8_t			b[64], out[64];
	size_t			n;

	/* CRC format: encode. */
	n = cql_segment_encode(CQL_SEG_CRC, auth_env, sizeof(auth_env), true,
	    b, sizeof(b));
	ck_assert_uint_eq(n, 6 + 33 + 4);
	assert_bytes(b, 6, crc_hdr);
	ck_assert_mem_eq(b + 6, auth_env, sizeof(auth_env));
	assert_bytes(b + 39, 4, "dd b9 db 3a");
	/* Parse and decode. */
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, n, &seg), 6);
	ck_assert_uint_eq(seg.hdr_len, 6);
	ck_assert_uint_eq(seg.payload_len, 33);
	ck_assert_uint_eq(seg.uncompressed_len, 0);
	ck_assert(seg.self_contained);
	ck_assert_uint_eq(seg.total_len, 43);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_CRC, b, n, &seg, out,
	    sizeof(out)), 33);
	ck_assert_mem_eq(out, auth_env, sizeof(auth_env));
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_CRC, b, n, &seg, out, 33),
	    33);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_CRC, b, n, &seg, out, 32),
	    -1);
	/* The header alone is enough to parse. */
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, 6, &seg), 6);

	/* LZ4 format, stored raw. */
	n = cql_segment_encode(CQL_SEG_LZ4, auth_env, sizeof(auth_env), true,
	    b, sizeof(b));
	ck_assert_uint_eq(n, 8 + 33 + 4);
	assert_bytes(b, 8, lz4_hdr);
	ck_assert_mem_eq(b + 8, auth_env, sizeof(auth_env));
	assert_bytes(b + 41, 4, "dd b9 db 3a");
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, b, n, &seg), 8);
	ck_assert_uint_eq(seg.hdr_len, 8);
	ck_assert_uint_eq(seg.payload_len, 33);
	ck_assert_uint_eq(seg.uncompressed_len, 0);
	ck_assert(seg.self_contained);
	ck_assert_uint_eq(seg.total_len, 45);
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, b, n, &seg, out,
	    sizeof(out)), 33);
	ck_assert_mem_eq(out, auth_env, sizeof(auth_env));
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, b, n, &seg, out, 32),
	    -1);

	/* The hand-written vector parses too. */
	n = unhex("21 00 02 21 62 8d", b, sizeof(b));
	memcpy(b + n, auth_env, sizeof(auth_env));
	n += sizeof(auth_env);
	n += unhex("dd b9 db 3a", b + n, sizeof(b) - n);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, n, &seg), 6);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_CRC, b, n, &seg, out,
	    sizeof(out)), 33);
	ck_assert_mem_eq(out, auth_env, sizeof(auth_env));
}
END_TEST

START_TEST(test_segment_encode_limits)
{
	static uint8_t		payload[CQL_SEG_MAX_PAYLOAD + 1];
	static uint8_t		b[CQL_SEG_MAX_PAYLOAD + 16];
	static uint8_t		out[CQL_SEG_MAX_PAYLOAD + 1];
	struct cql_segment	seg;
	size_t			n;

	/* Not self-contained: bit 17 / bit 34 clear. */
	n = cql_segment_encode(CQL_SEG_CRC, auth_env, sizeof(auth_env), false,
	    b, sizeof(b));
	ck_assert_uint_eq(n, 43);
	ck_assert_uint_eq(b[2], 0x00);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, n, &seg), 6);
	ck_assert(!seg.self_contained);
	n = cql_segment_encode(CQL_SEG_LZ4, auth_env, sizeof(auth_env), false,
	    b, sizeof(b));
	ck_assert_uint_eq(b[4], 0x00);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, b, n, &seg), 8);
	ck_assert(!seg.self_contained);

	/* Empty payload. */
	n = cql_segment_encode(CQL_SEG_CRC, NULL, 0, true, b, sizeof(b));
	ck_assert_uint_eq(n, 10);
	assert_bytes(b + 6, 4, "d3 7e 77 44");
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, n, &seg), 6);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_CRC, b, n, &seg, NULL, 0),
	    0);

	/* The largest payload, both formats; one more byte is refused. */
	fill_pattern(payload, sizeof(payload));
	n = cql_segment_encode(CQL_SEG_CRC, payload, CQL_SEG_MAX_PAYLOAD,
	    true, b, sizeof(b));
	ck_assert_uint_eq(n, 6 + CQL_SEG_MAX_PAYLOAD + 4);
	assert_bytes(b, 3, "ff ff 03");
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, n, &seg), 6);
	ck_assert_uint_eq(seg.payload_len, CQL_SEG_MAX_PAYLOAD);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_CRC, b, n, &seg, out,
	    sizeof(out)), CQL_SEG_MAX_PAYLOAD);
	ck_assert_mem_eq(out, payload, CQL_SEG_MAX_PAYLOAD);
	n = cql_segment_encode(CQL_SEG_LZ4, payload, CQL_SEG_MAX_PAYLOAD,
	    false, b, sizeof(b));
	ck_assert_uint_eq(n, 8 + CQL_SEG_MAX_PAYLOAD + 4);
	assert_bytes(b, 5, "ff ff 01 00 00");
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, b, n, &seg), 8);
	ck_assert_uint_eq(seg.payload_len, CQL_SEG_MAX_PAYLOAD);
	ck_assert_uint_eq(seg.uncompressed_len, 0);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, b, n, &seg, out,
	    sizeof(out)), CQL_SEG_MAX_PAYLOAD);
	ck_assert_uint_eq(cql_segment_encode(CQL_SEG_CRC, payload,
	    CQL_SEG_MAX_PAYLOAD + 1, true, b, sizeof(b)), 0);

	/* Output too small. */
	ck_assert_uint_eq(cql_segment_encode(CQL_SEG_CRC, auth_env,
	    sizeof(auth_env), true, b, 42), 0);
	ck_assert_uint_eq(cql_segment_encode(CQL_SEG_LZ4, auth_env,
	    sizeof(auth_env), true, b, 44), 0);
	ck_assert_uint_eq(cql_segment_encode(CQL_SEG_LZ4, auth_env,
	    sizeof(auth_env), true, b, 45), 45);
	ck_assert_uint_eq(cql_segment_encode((enum cql_seg_format)7, auth_env,
	    sizeof(auth_env), true, b, sizeof(b)), 0);
}
END_TEST

START_TEST(test_segment_corruption)
{
	struct cql_segment	seg;
	uint8_t			b[64], out[64];
	size_t			n, i, hl;
	int			fmt;

	for (fmt = CQL_SEG_CRC; fmt <= CQL_SEG_LZ4; fmt++) {
		n = cql_segment_encode(fmt, auth_env, sizeof(auth_env), true,
		    b, sizeof(b));
		hl = (fmt == CQL_SEG_CRC) ? 6 : 8;

		/* Truncated header: need more bytes. */
		for (i = 0; i < hl; i++)
			ck_assert_int_eq(cql_segment_parse_header(fmt, b, i,
			    &seg), 0);
		/* Truncated segment: header parses, decode refuses. */
		ck_assert_int_eq(cql_segment_parse_header(fmt, b, n, &seg),
		    (int)hl);
		ck_assert_int_eq(cql_segment_decode(fmt, b, n - 1, &seg, out,
		    sizeof(out)), -1);

		/* Any single header bit flip is caught by the CRC24. */
		for (i = 0; i < 8 * hl; i++) {
			b[i / 8] ^= (uint8_t)(1 << (i % 8));
			ck_assert_int_eq(cql_segment_parse_header(fmt, b, n,
			    &seg), -1);
			b[i / 8] ^= (uint8_t)(1 << (i % 8));
		}
		/* Any payload or trailer bit flip by the CRC32. */
		ck_assert_int_eq(cql_segment_parse_header(fmt, b, n, &seg),
		    (int)hl);
		for (i = 8 * hl; i < 8 * n; i++) {
			b[i / 8] ^= (uint8_t)(1 << (i % 8));
			ck_assert_int_eq(cql_segment_decode(fmt, b, n, &seg,
			    out, sizeof(out)), -1);
			b[i / 8] ^= (uint8_t)(1 << (i % 8));
		}
		ck_assert_int_eq(cql_segment_decode(fmt, b, n, &seg, out,
		    sizeof(out)), 33);

		/* A segment description that does not match the format. */
		ck_assert_int_eq(cql_segment_decode(fmt == CQL_SEG_CRC ?
		    CQL_SEG_LZ4 : CQL_SEG_CRC, b, n, &seg, out, sizeof(out)),
		    -1);
		seg.total_len++;
		ck_assert_int_eq(cql_segment_decode(fmt, b, n + 1, &seg, out,
		    sizeof(out)), -1);
	}

	/* Reserved bits with a valid CRC24 are still corrupt. */
	for (i = 18; i < 24; i++) {
		make_crc_header(b, 33u | 1u << 17 | 1u << i);
		ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, 6,
		    &seg), -1);
	}
	make_crc_header(b, 33u | 1u << 17);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_CRC, b, 6, &seg), 6);
	for (i = 35; i < 40; i++) {
		make_lz4_segment(b, auth_env, sizeof(auth_env), 0, true);
		b[i / 8] |= (uint8_t)(1 << (i % 8));
		put_le24(b + 5, cql_crc24(b, 5));	/* CRC24 stays valid */
		ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, b, 8,
		    &seg), -1);
	}

	/* An unknown format. */
	ck_assert_int_eq(cql_segment_parse_header((enum cql_seg_format)2, b,
	    sizeof(b), &seg), -1);
}
END_TEST

START_TEST(test_segment_lz4_compressed)
{
	static uint8_t		src[60000];
	static uint8_t		comp[LZ4_COMPRESSBOUND(60000)];
	static uint8_t		seg_buf[LZ4_COMPRESSBOUND(60000) + 16];
	static uint8_t		out[CQL_SEG_MAX_PAYLOAD];
	struct cql_segment	seg;
	size_t			n;
	int			clen;

	fill_pattern(src, sizeof(src));
	clen = LZ4_compress_default((const char *)src, (char *)comp,
	    (int)sizeof(src), (int)sizeof(comp));
	ck_assert_int_gt(clen, 0);
	ck_assert_int_lt(clen, 60000);

	n = make_lz4_segment(seg_buf, comp, (size_t)clen, sizeof(src), true);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, seg_buf, n,
	    &seg), 8);
	ck_assert_uint_eq(seg.payload_len, (size_t)clen);
	ck_assert_uint_eq(seg.uncompressed_len, sizeof(src));
	ck_assert(seg.self_contained);
	ck_assert_uint_eq(seg.total_len, n);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, sizeof(out)), 60000);
	ck_assert_mem_eq(out, src, sizeof(src));
	/* Exactly enough room, then one byte short. */
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, 60000), 60000);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, 59999), -1);

	/* The uncompressed length lies (CRCs are valid). */
	n = make_lz4_segment(seg_buf, comp, (size_t)clen, sizeof(src) + 1,
	    true);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, seg_buf, n,
	    &seg), 8);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, sizeof(out)), -1);
	n = make_lz4_segment(seg_buf, comp, (size_t)clen, sizeof(src) - 1,
	    true);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, seg_buf, n,
	    &seg), 8);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, sizeof(out)), -1);
	n = make_lz4_segment(seg_buf, comp, (size_t)clen, CQL_SEG_MAX_PAYLOAD,
	    false);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, seg_buf, n,
	    &seg), 8);
	ck_assert_uint_eq(seg.uncompressed_len, CQL_SEG_MAX_PAYLOAD);
	ck_assert(!seg.self_contained);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, sizeof(out)), -1);

	/* Garbage that claims to be compressed. */
	memset(comp, 0xff, 32);
	n = make_lz4_segment(seg_buf, comp, 32, 1000, true);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, seg_buf, n,
	    &seg), 8);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, sizeof(out)), -1);
	/* Compressed length 0 with an uncompressed length. */
	n = make_lz4_segment(seg_buf, comp, 0, 10, true);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, seg_buf, n,
	    &seg), 8);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, sizeof(out)), -1);

	/* A small envelope compressed, as a server ERROR may be. */
	clen = LZ4_compress_default((const char *)auth_env, (char *)comp,
	    (int)sizeof(auth_env), (int)sizeof(comp));
	ck_assert_int_gt(clen, 0);
	n = make_lz4_segment(seg_buf, comp, (size_t)clen, sizeof(auth_env),
	    true);
	ck_assert_int_eq(cql_segment_parse_header(CQL_SEG_LZ4, seg_buf, n,
	    &seg), 8);
	ck_assert_int_eq(cql_segment_decode(CQL_SEG_LZ4, seg_buf, n, &seg,
	    out, sizeof(out)), (ssize_t)sizeof(auth_env));
	ck_assert_mem_eq(out, auth_env, sizeof(auth_env));
}
END_TEST

/* The cql_frame test suite. */
Suite *
cql_frame_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("cql_frame");

	tc = tcase_create("header");
	tcase_add_test(tc, test_header_v1_v2);
	tcase_add_test(tc, test_header_v3_v4_v5);
	tcase_add_test(tc, test_header_dse_and_unknown);
	tcase_add_test(tc, test_header_negative_length);
	tcase_add_test(tc, test_header_partial);
	tcase_add_test(tc, test_header_write);
	tcase_add_test(tc, test_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("body");
	tcase_add_test(tc, test_reader_scalars);
	tcase_add_test(tc, test_reader_strings);
	tcase_add_test(tc, test_reader_bytes_skip);
	tcase_add_test(tc, test_writer);
	tcase_add_test(tc, test_writer_overflow);
	tcase_add_test(tc, test_startup_compression);
	tcase_add_test(tc, test_startup_compression_malformed);
	suite_add_tcase(s, tc);

	tc = tcase_create("build");
	tcase_add_test(tc, test_build_ready);
	tcase_add_test(tc, test_build_error);
	tcase_add_test(tc, test_build_auth);
	suite_add_tcase(s, tc);

	tc = tcase_create("compression");
	tcase_add_test(tc, test_lz4_body);
	tcase_add_test(tc, test_snappy_literals);
	tcase_add_test(tc, test_snappy_copies);
	tcase_add_test(tc, test_snappy_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("segment");
	tcase_add_test(tc, test_crc_vectors);
	tcase_add_test(tc, test_crc32_sliced);
	tcase_add_test(tc, test_segment_vectors);
	tcase_add_test(tc, test_segment_encode_limits);
	tcase_add_test(tc, test_segment_corruption);
	tcase_add_test(tc, test_segment_lz4_compressed);
	suite_add_tcase(s, tc);

	return (s);
}
