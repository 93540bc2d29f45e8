/*
 * cql_frame: a pure codec for the CQL native protocol (v3, v4, v5, DSE_V1,
 * DSE_V2).  No libevent, no OpenSSL, no allocation: every function works on
 * caller-supplied memory, so the module can be unit-tested and fuzzed alone.
 *
 * Conventions: functions that parse return the number of bytes they used,
 * 0 when more input is needed, and -1 on malformed input.  Functions that
 * build write into a caller buffer and return the number of bytes written,
 * or 0 when the buffer is too small.
 */
#ifndef CQL_FRAME_H
#define CQL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Envelope ("frame") header. */
#define CQL_HEADER_LEN		9	/* v3, v4, v5, DSE */
#define CQL_HEADER_LEN_V1V2	8
#define CQL_MAX_FRAME_SPEC	(256u * 1024 * 1024)	/* spec cap on length */

#define CQL_VERSION_RESPONSE	0x80	/* direction bit of the version byte */

enum cql_version {
	CQL_V1 = 0x01,
	CQL_V2 = 0x02,
	CQL_V3 = 0x03,
	CQL_V4 = 0x04,
	CQL_V5 = 0x05,
	CQL_V6 = 0x06,
	CQL_DSE_V1 = 0x41,
	CQL_DSE_V2 = 0x42,
};

enum cql_flag {
	CQL_FLAG_COMPRESSION = 0x01,
	CQL_FLAG_TRACING = 0x02,
	CQL_FLAG_CUSTOM_PAYLOAD = 0x04,
	CQL_FLAG_WARNING = 0x08,
	CQL_FLAG_USE_BETA = 0x10,
};

enum cql_opcode {
	CQL_OP_ERROR = 0x00,
	CQL_OP_STARTUP = 0x01,
	CQL_OP_READY = 0x02,
	CQL_OP_AUTHENTICATE = 0x03,
	CQL_OP_CREDENTIALS = 0x04,
	CQL_OP_OPTIONS = 0x05,
	CQL_OP_SUPPORTED = 0x06,
	CQL_OP_QUERY = 0x07,
	CQL_OP_RESULT = 0x08,
	CQL_OP_PREPARE = 0x09,
	CQL_OP_EXECUTE = 0x0A,
	CQL_OP_REGISTER = 0x0B,
	CQL_OP_EVENT = 0x0C,
	CQL_OP_BATCH = 0x0D,
	CQL_OP_AUTH_CHALLENGE = 0x0E,
	CQL_OP_AUTH_RESPONSE = 0x0F,
	CQL_OP_AUTH_SUCCESS = 0x10,
	CQL_OP_REVISE_REQUEST = 0xFF,	/* DSE continuous paging */
};

enum cql_error_code {
	CQL_ERR_SERVER = 0x0000,
	CQL_ERR_PROTOCOL = 0x000A,
	CQL_ERR_AUTH = 0x0100,
	CQL_ERR_UNAVAILABLE = 0x1000,
	CQL_ERR_OVERLOADED = 0x1001,
	CQL_ERR_INVALID = 0x2200,
};

/* A decoded envelope header. */
struct cql_header {
	uint8_t		version;	/* without the direction bit */
	bool		response;	/* direction bit set */
	uint8_t		flags;
	int16_t		stream;		/* v1/v2: sign-extended byte */
	uint8_t		opcode;
	int32_t		length;		/* body length, checked >= 0 */
	uint8_t		hdr_len;	/* 8 (v1/v2) or 9 */
};

/*
 * cql_header_parse(p, n, h):
 * Decode the header at ${p}.  Returns the header length (8 or 9) when it is
 * complete and well-formed, 0 if more bytes are needed, -1 if the length is
 * negative.  Any version byte is accepted here: version policy belongs to
 * the caller (the first frame must be relayed whatever its version).
 */
int	cql_header_parse(const uint8_t *p, size_t n, struct cql_header *h);

/*
 * cql_header_write(p, h):
 * Encode ${h} at ${p}, which must have room for ${h}->hdr_len bytes (if
 * hdr_len is 0, 9 is used).  The direction bit is taken from ${h}->response.
 * Returns the number of bytes written.
 */
size_t	cql_header_write(uint8_t *p, const struct cql_header *h);

/* cql_version_name(v): "v4", "DSE_V2", ... or "v0x2a" for unknown ones. */
const char *cql_version_name(uint8_t version);

/* cql_version_has_segments(v): true for v5 and v6-beta (not DSE versions). */
bool	cql_version_has_segments(uint8_t version);

/* cql_version_is_beta(v): true for v6-beta (frames carry USE_BETA). */
bool	cql_version_is_beta(uint8_t version);

/* cql_opcode_name(op): "STARTUP", ... or "UNKNOWN". */
const char *cql_opcode_name(uint8_t opcode);

/*
 * A bounds-checked cursor over a body.  Reads past the end set ${err} and
 * return zero values; check ${err} once at the end.
 */
struct cql_reader {
	const uint8_t	*p;
	size_t		 len;
	size_t		 off;
	bool		 err;
};

void	cql_reader_init(struct cql_reader *r, const uint8_t *p, size_t len);
uint8_t	cql_read_byte(struct cql_reader *r);
uint16_t cql_read_short(struct cql_reader *r);
int32_t	cql_read_int(struct cql_reader *r);
/* [string]: sets *s and *len to the bytes (not NUL-terminated). */
bool	cql_read_string(struct cql_reader *r, const uint8_t **s, size_t *len);
/* [long string] */
bool	cql_read_long_string(struct cql_reader *r, const uint8_t **s, size_t *len);
/* [bytes]: *len = -1 for null. */
bool	cql_read_bytes(struct cql_reader *r, const uint8_t **s, int32_t *len);
/* Skip n raw bytes. */
bool	cql_skip(struct cql_reader *r, size_t n);
size_t	cql_reader_left(const struct cql_reader *r);

/* A bounds-checked writer into a fixed buffer; overflow sets ${err}. */
struct cql_writer {
	uint8_t		*p;
	size_t		 cap;
	size_t		 len;
	bool		 err;
};

void	cql_writer_init(struct cql_writer *w, uint8_t *p, size_t cap);
void	cql_write_byte(struct cql_writer *w, uint8_t v);
void	cql_write_short(struct cql_writer *w, uint16_t v);
void	cql_write_int(struct cql_writer *w, int32_t v);
void	cql_write_raw(struct cql_writer *w, const void *s, size_t n);
void	cql_write_string(struct cql_writer *w, const void *s, size_t n);
/* [bytes]; s == NULL writes a null ([int] -1). */
void	cql_write_bytes(struct cql_writer *w, const void *s, int32_t n);

/*
 * cql_startup_compression(body, n, out, outcap):
 * Find the COMPRESSION option (key compared case-insensitively) in a
 * STARTUP body ([string map]).  Copies the value, lower-cased and
 * NUL-terminated, into ${out} ("" when absent).  Returns 0, or -1 if the
 * body is malformed or the value does not fit.
 */
int	cql_startup_compression(const uint8_t *body, size_t n, char *out,
	    size_t outcap);

/*
 * Whole-frame builders.  Each writes header + body for ${version} (with the
 * response bit for server messages), flags 0 (USE_BETA for a beta
 * version), into ${out}; returns the frame
 * length, or 0 if ${cap} is too small.
 */
size_t	cql_build_ready(uint8_t *out, size_t cap, uint8_t version,
	    int16_t stream);
size_t	cql_build_error(uint8_t *out, size_t cap, uint8_t version,
	    int16_t stream, int32_t code, const char *msg, size_t msglen);
size_t	cql_build_authenticate(uint8_t *out, size_t cap, uint8_t version,
	    int16_t stream, const char *authenticator);
/* token == NULL encodes a null [bytes]. Request frames (no response bit). */
size_t	cql_build_auth_response(uint8_t *out, size_t cap, uint8_t version,
	    int16_t stream, const uint8_t *token, int32_t toklen);
/* AUTH_SUCCESS with a null token (as PasswordAuthenticator sends). */
size_t	cql_build_auth_success(uint8_t *out, size_t cap, uint8_t version,
	    int16_t stream);

/*
 * v3/v4/DSE body compression (flag 0x01).
 * cql_lz4_body_decompress: body = 4-byte big-endian uncompressed length +
 * raw LZ4 block.  Writes at most ${cap} bytes to ${out}; returns the
 * uncompressed length, or -1 on malformed input or if it does not fit.
 * cql_snappy_decompress: raw snappy format, same contract.
 */
ssize_t	cql_lz4_body_decompress(const uint8_t *body, size_t n, uint8_t *out,
	    size_t cap);
ssize_t	cql_snappy_decompress(const uint8_t *in, size_t n, uint8_t *out,
	    size_t cap);

/*
 * v5 segments ("frames" in the v5 spec).  All integers little-endian.
 */
#define CQL_SEG_MAX_PAYLOAD	0x1FFFF		/* 131071 */
#define CQL_SEG_CRC_HEADER	6
#define CQL_SEG_LZ4_HEADER	8
#define CQL_SEG_TRAILER		4		/* CRC32 of the payload */

enum cql_seg_format {
	CQL_SEG_CRC,	/* no compression negotiated */
	CQL_SEG_LZ4,	/* STARTUP COMPRESSION=lz4 */
};

struct cql_segment {
	size_t		hdr_len;	/* 6 or 8 */
	size_t		payload_len;	/* bytes on the wire */
	size_t		uncompressed_len; /* LZ4: 0 = stored raw */
	bool		self_contained;
	size_t		total_len;	/* hdr + payload + trailer */
};

/* CRC24 as CQL v5 uses it (init 0x875060, poly 0x1974F0B). */
uint32_t cql_crc24(const uint8_t *p, size_t n);
/* zlib CRC-32 seeded with the bytes FA 2D 55 CA. */
uint32_t cql_crc32(const uint8_t *p, size_t n);

/*
 * cql_segment_parse_header(fmt, p, n, seg):
 * Decode and check (CRC24, reserved bits zero) the segment header.  Returns
 * the header length, 0 if more bytes are needed, -1 if corrupt.
 */
int	cql_segment_parse_header(enum cql_seg_format fmt, const uint8_t *p,
	    size_t n, struct cql_segment *seg);

/*
 * cql_segment_decode(fmt, p, n, seg, out, cap):
 * Given a complete segment at ${p} (n >= seg->total_len after
 * cql_segment_parse_header), verify the payload CRC32 and write the
 * payload, decompressed where needed, to ${out}.  Returns the payload
 * length, or -1 if corrupt or larger than ${cap}.
 */
ssize_t	cql_segment_decode(enum cql_seg_format fmt, const uint8_t *p,
	    size_t n, const struct cql_segment *seg, uint8_t *out, size_t cap);

/*
 * cql_segment_encode(fmt, payload, n, self_contained, out, cap):
 * Wrap ${payload} (n <= CQL_SEG_MAX_PAYLOAD) in one segment, uncompressed
 * (LZ4 format: uncompressed length 0 = stored raw).  Returns the segment
 * length, or 0 if ${cap} is too small or n is too large.
 */
size_t	cql_segment_encode(enum cql_seg_format fmt, const uint8_t *payload,
	    size_t n, bool self_contained, uint8_t *out, size_t cap);

#endif /* !CQL_FRAME_H */
