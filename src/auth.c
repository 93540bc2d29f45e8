/*
 * auth: the CQL startup handshake as a pure state machine (see auth.h).
 *
 * Rules (protocol brief §0-§5): the app's first frame and everything
 * before STARTUP is relayed untouched, so version negotiation is the
 * node's; the node's answer to STARTUP is intercepted; in v5 everything the
 * node sends after AUTHENTICATE is in segments, while what the app gets
 * from us (READY, or an ERROR) is still a bare envelope because the app
 * switches to segments only when it receives READY or AUTHENTICATE.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "util.h"

/* A decoded message: header plus (decompressed) body. */
struct auth_msg {
	struct cql_header	 h;
	const uint8_t		*body;
	size_t			 body_len;
};

/* Scratch space for decoding one unit; the machine is not re-entrant. */
static _Thread_local uint8_t auth_seg_buf[CQL_SEG_MAX_PAYLOAD + 1];
static _Thread_local uint8_t auth_body_buf[64 * 1024];

/* Room for any frame the machine builds (token, error text) plus framing. */
#define AUTH_OUT_MAX	4096

static const char *const auth_state_names[] = {
	[AUTH_S_FIRST] = "first-frame",
	[AUTH_S_PRE_STARTUP] = "pre-startup",
	[AUTH_S_WAIT_STARTUP] = "wait-startup",
	[AUTH_S_NODE_AUTH] = "node-auth",
	[AUTH_S_APP_AUTH] = "app-auth",
	[AUTH_S_DONE] = "done",
	[AUTH_S_FAILED] = "failed",
};

const char *
auth_state_name(enum auth_state s)
{
	if ((size_t)s < sizeof(auth_state_names) / sizeof(auth_state_names[0]))
		return (auth_state_names[s]);
	return ("unknown");
}

struct auth_creds *
auth_creds_new(const struct config *c)
{
	struct auth_creds	*ac;
	size_t			 zlen, ulen;

	ac = util_xcalloc(1, sizeof(*ac));
	ac->client_auth = c->client_auth;
	if (c->username == NULL || c->password == NULL)
		return (ac);
	zlen = c->authzid != NULL ? strlen(c->authzid) : 0;
	ulen = strlen(c->username);
	ac->token_len = zlen + 1 + ulen + 1 + c->password_len;
	ac->token = util_xmalloc(ac->token_len);
	if (zlen > 0)
		memcpy(ac->token, c->authzid, zlen);
	ac->token[zlen] = '\0';
	memcpy(ac->token + zlen + 1, c->username, ulen);
	ac->token[zlen + 1 + ulen] = '\0';
	memcpy(ac->token + zlen + 1 + ulen + 1, c->password, c->password_len);
	ac->username = util_xstrdup(c->username);
	ac->have_token = true;
	return (ac);
}

void
auth_creds_free(struct auth_creds *ac)
{
	if (ac == NULL)
		return;
	if (ac->token != NULL) {
		util_wipe(ac->token, ac->token_len);
		free(ac->token);
	}
	free(ac->username);
	free(ac);
}

void
auth_hs_init(struct auth_hs *hs, const struct auth_creds *creds)
{
	memset(hs, 0, sizeof(*hs));
	hs->creds = creds;
	hs->client_auth = creds->client_auth;
	hs->state = AUTH_S_FIRST;
	hs->need_app = CQL_HEADER_LEN;
	hs->need_node = CQL_HEADER_LEN;
}

void
auth_hs_init_own(struct auth_hs *hs, const struct auth_creds *creds)
{
	auth_hs_init(hs, creds);
	hs->client_auth = CONFIG_CLIENT_AUTH_NONE;
}

bool
auth_hs_reads_app(const struct auth_hs *hs)
{
	return (hs->state == AUTH_S_FIRST || hs->state == AUTH_S_PRE_STARTUP ||
	    hs->state == AUTH_S_APP_AUTH);
}

bool
auth_hs_reads_node(const struct auth_hs *hs)
{
	return (hs->state == AUTH_S_FIRST || hs->state == AUTH_S_PRE_STARTUP ||
	    hs->state == AUTH_S_WAIT_STARTUP || hs->state == AUTH_S_NODE_AUTH);
}

/* Segment format implied by the negotiated compression. */
static enum cql_seg_format
auth_seg_format(const struct auth_hs *hs)
{
	return (hs->compression == AUTH_COMP_LZ4 ? CQL_SEG_LZ4 : CQL_SEG_CRC);
}

/* Record a failure reason for the log. */
static void
auth_set_reason(struct auth_hs *hs, enum auth_failure f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
auth_set_reason(struct auth_hs *hs, enum auth_failure f, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(hs->reason, sizeof(hs->reason), fmt, ap);
	va_end(ap);
	hs->failure = f;
	hs->state = AUTH_S_FAILED;
}

/*
 * Send an envelope to one side, wrapped in a segment when that side has
 * switched to v5 framing.
 */
static void
auth_emit(const struct auth_hs *hs, const struct auth_sink *sink, bool to_node,
    bool framed, const uint8_t *env, size_t len)
{
	uint8_t	 seg[AUTH_OUT_MAX + CQL_SEG_LZ4_HEADER + CQL_SEG_TRAILER];
	size_t	 slen;

	if (framed) {
		slen = cql_segment_encode(auth_seg_format(hs), env, len, true,
		    seg, sizeof(seg));
		if (slen == 0)
			return;
		env = seg;
		len = slen;
	}
	if (to_node)
		sink->to_node(sink->arg, env, len);
	else
		sink->to_app(sink->arg, env, len);
	if (framed)
		util_wipe(seg, len);	/* may hold the credentials */
}

/* Send the app an ERROR frame in ${version} on ${stream}. */
static void
auth_error_to_app(const struct auth_hs *hs, const struct auth_sink *sink,
    bool framed, uint8_t version, int16_t stream, int32_t code,
    const char *msg, size_t msglen)
{
	uint8_t	 frame[AUTH_OUT_MAX];
	size_t	 len;

	if (msglen > 1024)
		msglen = 1024;
	len = cql_build_error(frame, sizeof(frame), version, stream, code, msg,
	    msglen);
	if (len > 0)
		auth_emit(hs, sink, false, framed, frame, len);
}

/* Fail the handshake with a protocol ERROR that cqltunnel itself found. */
static ssize_t
auth_protocol_failure(struct auth_hs *hs, const struct auth_sink *sink,
    bool framed, const char *why)
{
	char	 msg[300];
	int	 n;

	auth_set_reason(hs, AUTH_FAIL_PROTOCOL, "%s", why);
	if (hs->have_first) {
		n = snprintf(msg, sizeof(msg), "cqltunnel: %s", why);
		auth_error_to_app(hs, sink, framed,
		    hs->version != 0 ? hs->version : hs->first_version,
		    hs->version != 0 ? hs->startup_stream : hs->first_stream,
		    CQL_ERR_PROTOCOL, msg, (size_t)n);
	}
	return (-1);
}

/* Decompress a pre-v5 body according to the negotiated compression. */
static int
auth_decompress(struct auth_hs *hs, struct auth_msg *m)
{
	ssize_t	 r;

	switch (hs->compression) {
	case AUTH_COMP_LZ4:
		r = cql_lz4_body_decompress(m->body, m->body_len, auth_body_buf,
		    sizeof(auth_body_buf));
		break;
	case AUTH_COMP_SNAPPY:
		r = cql_snappy_decompress(m->body, m->body_len, auth_body_buf,
		    sizeof(auth_body_buf));
		break;
	default:
		r = -1;
		break;
	}
	if (r < 0)
		return (-1);
	m->body = auth_body_buf;
	m->body_len = (size_t)r;
	return (0);
}

/*
 * Read one unit (a bare envelope, or a segment holding exactly one
 * envelope) from ${p}.  Returns the bytes used, 0 with *need set when more
 * are needed, -1 with hs->reason set when malformed.
 */
static ssize_t
auth_read_unit(struct auth_hs *hs, const uint8_t *p, size_t n, bool framed,
    bool decompress, size_t *need, struct auth_msg *m, const char *side)
{
	struct cql_segment	 seg;
	const uint8_t		*env;
	size_t			 envlen, used;
	ssize_t			 plen;
	int			 r;

	if (framed) {
		r = cql_segment_parse_header(auth_seg_format(hs), p, n, &seg);
		if (r == 0) {
			*need = auth_seg_format(hs) == CQL_SEG_LZ4 ?
			    CQL_SEG_LZ4_HEADER : CQL_SEG_CRC_HEADER;
			return (0);
		}
		if (r < 0) {
			snprintf(hs->reason, sizeof(hs->reason),
			    "corrupt v5 segment header from %s (CRC24 mismatch)",
			    side);
			return (-1);
		}
		if (seg.total_len > n) {
			*need = seg.total_len;
			return (0);
		}
		if (!seg.self_contained) {
			snprintf(hs->reason, sizeof(hs->reason),
			    "multi-segment message from %s during the handshake",
			    side);
			return (-1);
		}
		plen = cql_segment_decode(auth_seg_format(hs), p, n, &seg,
		    auth_seg_buf, sizeof(auth_seg_buf));
		if (plen < 0) {
			snprintf(hs->reason, sizeof(hs->reason),
			    "corrupt v5 segment payload from %s (CRC32 or LZ4)",
			    side);
			return (-1);
		}
		env = auth_seg_buf;
		envlen = (size_t)plen;
		used = seg.total_len;
	} else {
		env = p;
		envlen = n;
		used = 0;
	}

	r = cql_header_parse(env, envlen, &m->h);
	if (r < 0) {
		snprintf(hs->reason, sizeof(hs->reason),
		    "malformed frame header from %s (negative length)", side);
		return (-1);
	}
	if (r == 0 || envlen < (size_t)r + (size_t)m->h.length) {
		if (framed) {
			snprintf(hs->reason, sizeof(hs->reason),
			    "truncated envelope inside a v5 segment from %s",
			    side);
			return (-1);
		}
		if (r != 0 && (size_t)m->h.length > AUTH_MAX_HS_FRAME) {
			snprintf(hs->reason, sizeof(hs->reason),
			    "%s frame of %d bytes during the handshake "
			    "(limit %d)", side, m->h.length, AUTH_MAX_HS_FRAME);
			return (-1);
		}
		/* Only v1/v2 have 8-byte headers (version 0 has 9). */
		*need = r == 0 ? (size_t)(n > 0 && ((p[0] & 0x7f) == CQL_V1 ||
		    (p[0] & 0x7f) == CQL_V2) ? CQL_HEADER_LEN_V1V2 :
		    CQL_HEADER_LEN) : (size_t)r + (size_t)m->h.length;
		return (0);
	}
	m->body = env + r;
	m->body_len = (size_t)m->h.length;
	if (framed) {
		if (envlen != (size_t)r + m->body_len) {
			snprintf(hs->reason, sizeof(hs->reason),
			    "unexpected extra envelopes in a v5 segment from %s",
			    side);
			return (-1);
		}
	} else
		used = (size_t)r + m->body_len;

	if (decompress && !framed && !cql_version_has_segments(m->h.version) &&
	    (m->h.flags & CQL_FLAG_COMPRESSION) && m->body_len > 0) {
		if (auth_decompress(hs, m) == -1) {
			snprintf(hs->reason, sizeof(hs->reason),
			    "cannot decompress %s %s from %s",
			    hs->compression == AUTH_COMP_NONE ? "unexpected" :
			    "corrupt", cql_opcode_name(m->h.opcode), side);
			return (-1);
		}
	}
	*need = 0;
	return ((ssize_t)used);
}

/* Send our credentials (or DSE's mechanism name) to the node. */
static void
auth_send_token(struct auth_hs *hs, const struct auth_sink *sink,
    const uint8_t *tok, size_t toklen)
{
	uint8_t	 frame[AUTH_OUT_MAX];
	size_t	 len;

	len = cql_build_auth_response(frame, sizeof(frame), hs->version,
	    hs->startup_stream, tok, (int32_t)toklen);
	if (len > 0)
		auth_emit(hs, sink, true,
		    cql_version_has_segments(hs->version), frame, len);
	util_wipe(frame, len);
	hs->injected = true;
}

/* Tell the app the handshake succeeded, or challenge it (accept mode). */
static void
auth_finish_app(struct auth_hs *hs, const struct auth_sink *sink)
{
	uint8_t	 frame[AUTH_OUT_MAX];
	size_t	 len;

	if (hs->client_auth == CONFIG_CLIENT_AUTH_ACCEPT) {
		len = cql_build_authenticate(frame, sizeof(frame), hs->version,
		    hs->startup_stream, AUTH_APP_AUTHENTICATOR);
		hs->state = AUTH_S_APP_AUTH;
	} else {
		len = cql_build_ready(frame, sizeof(frame), hs->version,
		    hs->startup_stream);
		hs->state = AUTH_S_DONE;
	}
	if (len > 0)
		auth_emit(hs, sink, false, false, frame, len);
}

/* Relay the node's ERROR to the app as a fresh, plain ERROR frame. */
static ssize_t
auth_node_error(struct auth_hs *hs, const struct auth_sink *sink,
    const struct auth_msg *m)
{
	struct cql_reader	 r;
	const uint8_t		*msg;
	size_t			 msglen;
	int32_t			 code;

	cql_reader_init(&r, m->body, m->body_len);
	code = cql_read_int(&r);
	if (!cql_read_string(&r, &msg, &msglen) || r.err) {
		msg = (const uint8_t *)"node sent a malformed ERROR";
		msglen = strlen((const char *)msg);
		code = CQL_ERR_SERVER;
	}
	auth_error_to_app(hs, sink, false, hs->version, hs->startup_stream,
	    code, (const char *)msg, msglen);
	auth_set_reason(hs, code == CQL_ERR_AUTH ? AUTH_FAIL_CREDENTIALS :
	    AUTH_FAIL_STARTUP, "node answered %s with ERROR 0x%04x: %.*s",
	    hs->state == AUTH_S_NODE_AUTH ? "AUTH_RESPONSE" : "STARTUP",
	    (unsigned)code, (int)(msglen > 160 ? 160 : msglen),
	    (const char *)msg);
	return (-1);
}

/* The app's first frame and the frames before STARTUP. */
static ssize_t
auth_app_pre_startup(struct auth_hs *hs, const uint8_t *p, size_t n,
    const struct auth_sink *sink)
{
	struct auth_msg	 m;
	char		 comp[16];
	ssize_t		 used;

	used = auth_read_unit(hs, p, n, false, false, &hs->need_app, &m,
	    "app");
	if (used < 0) {
		/*
		 * A header of a known request version (negative or oversized
		 * length) still names a stream the app waits on: answer it.
		 * Anything else is not a header to trust.
		 */
		if (n >= CQL_HEADER_LEN && (p[0] == CQL_V3 || p[0] == CQL_V4 ||
		    p[0] == CQL_V5 || p[0] == CQL_DSE_V1 ||
		    p[0] == CQL_DSE_V2)) {
			char	 msg[300];
			int	 len;

			len = snprintf(msg, sizeof(msg), "cqltunnel: %s",
			    hs->reason);
			auth_error_to_app(hs, sink, false, p[0],
			    (int16_t)((p[2] << 8) | p[3]), CQL_ERR_PROTOCOL, msg,
			    (size_t)len);
		}
		hs->failure = AUTH_FAIL_PROTOCOL;
		hs->state = AUTH_S_FAILED;
		return (-1);
	}
	if (used == 0)
		return (0);
	if (!hs->have_first) {
		hs->have_first = true;
		hs->first_version = m.h.version;
		hs->first_stream = m.h.stream;
	}
	sink->to_node(sink->arg, p, (size_t)used);
	hs->need_app = CQL_HEADER_LEN;

	if (hs->client_auth == CONFIG_CLIENT_AUTH_PASSTHROUGH) {
		hs->state = AUTH_S_DONE;
		return (used);
	}
	if (m.h.opcode != CQL_OP_STARTUP || m.h.response) {
		hs->state = AUTH_S_PRE_STARTUP;
		return (used);
	}
	if (cql_startup_compression(m.body, m.body_len, comp,
	    sizeof(comp)) == -1)
		comp[0] = '\0';	/* the node will complain about the body */
	if (strcmp(comp, "lz4") == 0)
		hs->compression = AUTH_COMP_LZ4;
	else if (strcmp(comp, "snappy") == 0)
		hs->compression = AUTH_COMP_SNAPPY;
	else
		hs->compression = AUTH_COMP_NONE;
	hs->version = m.h.version;
	hs->startup_stream = m.h.stream;
	hs->state = AUTH_S_WAIT_STARTUP;
	return (used);
}

/* Accept mode: take the app's AUTH_RESPONSE, whatever it holds. */
static ssize_t
auth_app_credentials(struct auth_hs *hs, const uint8_t *p, size_t n,
    const struct auth_sink *sink)
{
	struct auth_msg	 m;
	uint8_t		 frame[AUTH_OUT_MAX];
	size_t		 len;
	ssize_t		 used;
	bool		 framed = cql_version_has_segments(hs->version);

	used = auth_read_unit(hs, p, n, framed, false, &hs->need_app, &m,
	    "app");
	if (used < 0) {
		char why[sizeof(hs->reason)];

		memcpy(why, hs->reason, sizeof(why));
		return (auth_protocol_failure(hs, sink, framed, why));
	}
	if (used == 0)
		return (0);
	if (m.h.opcode != CQL_OP_AUTH_RESPONSE || m.h.response)
		return (auth_protocol_failure(hs, sink, framed,
		    "expected AUTH_RESPONSE from the app"));
	len = cql_build_auth_success(frame, sizeof(frame), hs->version,
	    m.h.stream);
	if (len > 0)
		auth_emit(hs, sink, false, framed, frame, len);
	hs->need_app = 0;
	hs->state = AUTH_S_DONE;
	return (used);
}

ssize_t
auth_hs_app(struct auth_hs *hs, const uint8_t *p, size_t n,
    const struct auth_sink *sink)
{
	switch (hs->state) {
	case AUTH_S_FIRST:
	case AUTH_S_PRE_STARTUP:
		return (auth_app_pre_startup(hs, p, n, sink));
	case AUTH_S_APP_AUTH:
		return (auth_app_credentials(hs, p, n, sink));
	case AUTH_S_FAILED:
		return (-1);
	default:
		return (0);
	}
}

/* The node's answer to STARTUP. */
static ssize_t
auth_node_startup_answer(struct auth_hs *hs, const uint8_t *p, size_t used,
    const struct auth_msg *m, const struct auth_sink *sink)
{
	struct cql_reader	 r;
	const uint8_t		*cls;
	size_t			 clslen;
	char			 why[200];

	switch (m->h.opcode) {
	case CQL_OP_READY:
		if (hs->client_auth == CONFIG_CLIENT_AUTH_ACCEPT)
			auth_finish_app(hs, sink);
		else {
			sink->to_app(sink->arg, p, used);
			hs->state = AUTH_S_DONE;
		}
		return ((ssize_t)used);
	case CQL_OP_AUTHENTICATE:
		cql_reader_init(&r, m->body, m->body_len);
		if (!cql_read_string(&r, &cls, &clslen) || r.err)
			return (auth_protocol_failure(hs, sink, false,
			    "node sent a malformed AUTHENTICATE"));
		snprintf(hs->authenticator, sizeof(hs->authenticator), "%.*s",
		    (int)clslen, (const char *)cls);
		if (!hs->creds->have_token) {
			/* No credentials configured: the app answers. */
			sink->to_app(sink->arg, p, used);
			hs->state = AUTH_S_DONE;
			return ((ssize_t)used);
		}
		hs->dse = strcmp(hs->authenticator, AUTH_DSE_AUTHENTICATOR) == 0;
		if (hs->dse)
			auth_send_token(hs, sink, (const uint8_t *)"PLAIN", 5);
		else
			auth_send_token(hs, sink, hs->creds->token,
			    hs->creds->token_len);
		hs->state = AUTH_S_NODE_AUTH;
		hs->need_node = 0;
		return ((ssize_t)used);
	case CQL_OP_ERROR:
		return (auth_node_error(hs, sink, m));
	default:
		snprintf(why, sizeof(why), "node answered STARTUP with %s",
		    cql_opcode_name(m->h.opcode));
		return (auth_protocol_failure(hs, sink, false, why));
	}
}

/* The node's messages during the SASL exchange. */
static ssize_t
auth_node_sasl(struct auth_hs *hs, const struct auth_msg *m, ssize_t used,
    const struct auth_sink *sink)
{
	char	 why[200];

	if (m->h.stream != hs->startup_stream || !m->h.response) {
		snprintf(why, sizeof(why), "node sent %s on stream %d during "
		    "authentication", cql_opcode_name(m->h.opcode), m->h.stream);
		return (auth_protocol_failure(hs, sink, false, why));
	}
	switch (m->h.opcode) {
	case CQL_OP_AUTH_CHALLENGE:
		if (++hs->rounds > AUTH_MAX_ROUNDS) {
			snprintf(why, sizeof(why), "node sent more than %d "
			    "AUTH_CHALLENGE rounds", AUTH_MAX_ROUNDS);
			return (auth_protocol_failure(hs, sink, false, why));
		}
		/* DSE's PLAIN-START, or any further round: the PLAIN token. */
		auth_send_token(hs, sink, hs->creds->token,
		    hs->creds->token_len);
		return (used);
	case CQL_OP_AUTH_SUCCESS:
		auth_finish_app(hs, sink);
		return (used);
	case CQL_OP_ERROR:
		return (auth_node_error(hs, sink, m));
	default:
		snprintf(why, sizeof(why), "node sent %s during authentication",
		    cql_opcode_name(m->h.opcode));
		return (auth_protocol_failure(hs, sink, false, why));
	}
}

ssize_t
auth_hs_node(struct auth_hs *hs, const uint8_t *p, size_t n,
    const struct auth_sink *sink)
{
	struct auth_msg	 m;
	ssize_t		 used;
	bool		 framed;

	if (hs->state == AUTH_S_FAILED)
		return (-1);
	if (!auth_hs_reads_node(hs))
		return (0);
	framed = hs->state == AUTH_S_NODE_AUTH &&
	    cql_version_has_segments(hs->version);
	used = auth_read_unit(hs, p, n, framed,
	    hs->state == AUTH_S_WAIT_STARTUP || hs->state == AUTH_S_NODE_AUTH,
	    &hs->need_node, &m, "node");
	if (used < 0) {
		char why[sizeof(hs->reason)];

		memcpy(why, hs->reason, sizeof(why));
		return (auth_protocol_failure(hs, sink, false, why));
	}
	if (used == 0)
		return (0);
	hs->need_node = CQL_HEADER_LEN;

	switch (hs->state) {
	case AUTH_S_FIRST:
	case AUTH_S_PRE_STARTUP:
		/* SUPPORTED, version errors: the app decides. */
		sink->to_app(sink->arg, p, (size_t)used);
		return (used);
	case AUTH_S_WAIT_STARTUP:
		if (m.h.stream != hs->startup_stream || !m.h.response) {
			sink->to_app(sink->arg, p, (size_t)used);
			return (used);
		}
		return (auth_node_startup_answer(hs, p, (size_t)used, &m, sink));
	case AUTH_S_NODE_AUTH:
		return (auth_node_sasl(hs, &m, used, sink));
	default:
		return (0);
	}
}

int
auth_hs_fail_app(struct auth_hs *hs, int32_t code, const char *msg,
    const struct auth_sink *sink)
{
	bool	 framed;

	if (!hs->have_first)
		return (-1);
	framed = hs->state == AUTH_S_APP_AUTH &&
	    cql_version_has_segments(hs->version);
	/* Once STARTUP is out, it is the request the app waits on. */
	auth_error_to_app(hs, sink, framed, hs->version != 0 ? hs->version :
	    hs->first_version, hs->version != 0 ? hs->startup_stream :
	    hs->first_stream, code, msg, strlen(msg));
	hs->state = AUTH_S_FAILED;
	return (0);
}

void
auth_hs_resume(struct auth_hs *hs, uint8_t version, int16_t stream,
    const char *authenticator, const struct auth_sink *sink)
{
	if (!hs->have_first) {
		hs->have_first = true;
		hs->first_version = version;
		hs->first_stream = stream;
	}
	hs->version = version;
	hs->startup_stream = stream;
	hs->compression = AUTH_COMP_NONE;
	hs->injected = true;
	snprintf(hs->authenticator, sizeof(hs->authenticator), "%s",
	    authenticator);
	auth_finish_app(hs, sink);
}
