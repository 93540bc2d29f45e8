/*
 * relay: moving CQL traffic between an app and a node once the handshake is
 * over.
 *
 * Without a rewriter the relay only walks frame headers (v3/v4/DSE) to
 * enforce [listen] max_frame_size, and moves bytes between evbuffers
 * without copying them.  With a rewriter (topology = translate) it also
 * looks into the frames that can carry node addresses (RESULT and EVENT
 * from the node, EXECUTE from the app) and rewrites them through the
 * topology module: v3/v4 frames are re-emitted uncompressed when they had
 * to be decompressed, v5 segments are decoded, patched and re-encoded with
 * fresh checksums.  Everything else passes verbatim; scratch memory is
 * allocated on first use and reused.
 */
#ifndef RELAY_H
#define RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/buffer.h>

#include "cql_frame.h"
#include "topology.h"

enum relay_error {
	RELAY_OK,
	RELAY_ERR_TOO_LARGE,	/* frame above max_frame_size */
	RELAY_ERR_LZ4_TOO_LARGE, /* app lz4 body declares more than that */
	RELAY_ERR_CORRUPT,	/* bad header, checksum or compression */
	RELAY_ERR_NOMEM,
};

enum relay_compression {
	RELAY_COMP_NONE,
	RELAY_COMP_LZ4,
	RELAY_COMP_SNAPPY,
};

/*
 * Why a node connection cannot be reused (see relay_track_start()).  The
 * first reason found sticks.
 */
enum relay_spoil {
	RELAY_SPOIL_NONE,
	RELAY_SPOIL_OPCODE,	/* app sent other than QUERY, PREPARE, ... */
	RELAY_SPOIL_EVENT,	/* node sent an EVENT */
	RELAY_SPOIL_KEYSPACE,	/* RESULT SET_KEYSPACE: a USE went through */
	RELAY_SPOIL_ERROR,	/* ERROR PROTOCOL_ERROR or SERVER_ERROR */
	RELAY_SPOIL_COMPRESSED,	/* a frame with the compression flag */
	RELAY_SPOIL_STREAMS,	/* a stream out of step, or too many */
	RELAY_SPOIL_IN_FLIGHT,	/* a request unanswered, or inside a frame */
	RELAY_SPOIL_UNTRACKED,	/* tracking was not started */
};

/* Streams a tracked session may have in flight at once. */
#define RELAY_TRACK_STREAMS	32

/*
 * Request/response bookkeeping for reuse: which streams are waiting for
 * an answer, and whether anything made the connection unfit for another
 * app.  Fixed size; no allocation.
 */
struct relay_track {
	bool		 on;
	enum relay_spoil spoil;
	uint64_t	 requests;	/* frames from the app */
	uint64_t	 responses;	/* node frames with stream >= 0 */
	unsigned	 nout;		/* streams in flight */
	int16_t		 out[RELAY_TRACK_STREAMS];
};

/* One direction. */
struct relay_dir {
	bool		 from_app;
	bool		 unframed;	/* v5 before the switch to segments */
	bool		 switch_after;	/* ... which follows the current frame */
	uint64_t	 frame_left;	/* v3/v4: bytes to pass verbatim */
	uint64_t	 env_left;	/* v5: rest of a multi-segment envelope */
	bool		 env_rewrite;	/* ... being assembled for rewriting */
	struct evbuffer	*assembly;
	struct cql_header last;		/* last envelope header seen */
};

struct relay {
	struct relay_dir	 up;		/* app -> node */
	struct relay_dir	 down;		/* node -> app */
	uint8_t			 version;
	bool			 segments;
	enum cql_seg_format	 seg_fmt;
	enum relay_compression	 comp;		/* v3/v4 body compression */
	bool			 await_startup;	/* handshake not seen yet */
	uint8_t			 hdr_len;
	uint32_t		 max_frame;
	const struct topo_rewriter *rw;		/* NULL: no rewriting */
	enum relay_error	 error;
	uint32_t		 declared_len;	/* for RELAY_ERR_LZ4_TOO_LARGE */
	uint64_t		 rewrites;	/* frames rewritten */
	struct relay_track	 track;
};

/*
 * relay_init(r, version, comp, rw, max_frame):
 * Set up for a session that negotiated ${version} and ${comp}.  ${rw} may
 * be NULL.
 */
void	relay_init(struct relay *r, uint8_t version,
	    enum relay_compression comp, const struct topo_rewriter *rw,
	    uint32_t max_frame);
void	relay_free(struct relay *r);

/*
 * relay_expect_startup(r):
 * The handshake has not been seen (client_auth = passthrough): take the
 * compression from the app's STARTUP, and in v5 relay unframed envelopes
 * until the STARTUP (app) and the node's READY or AUTHENTICATE (node), the
 * points where each side switches to segments.
 */
void	relay_expect_startup(struct relay *r);

/*
 * relay_move(r, from_app, in, out):
 * Move what can be moved from ${in} to ${out}; bytes of an incomplete
 * frame or segment that must be inspected stay in ${in} until the rest
 * arrives.  Returns the number of bytes taken from ${in}, or -1 with
 * r->error set (r->up.last / r->down.last name the offending header).
 */
ssize_t	relay_move(struct relay *r, bool from_app, struct evbuffer *in,
	    struct evbuffer *out);

const char *relay_error_name(enum relay_error e);

/*
 * relay_thread_done(): free the calling thread's scratch buffers, which
 * the relays of a thread share (see relay.c); before a thread that ran
 * relays exits.  Harmless if it ran none.
 */
void	relay_thread_done(void);

/*
 * relay_scratch_peak(): the largest scratch buffer the calling thread
 * reserved since the last call (tests check what a hostile length made
 * the relay reserve).
 */
size_t	relay_scratch_peak(void);

/*
 * relay_track_start(r):
 * Follow requests and responses from now on, so that relay_reusable() can
 * tell whether the node connection could serve another app.  Only v3, v4
 * and DSE framing without compression can be followed (bodies must be
 * readable, and v5 envelopes are not walked); returns false otherwise.
 */
bool	relay_track_start(struct relay *r);

/*
 * relay_reusable(r):
 * RELAY_SPOIL_NONE if the connection carries nothing of the session: both
 * directions at a frame boundary, every request answered exactly once, no
 * disqualifying frame seen.  The caller checks that nothing is buffered.
 * Tracking must have been started.
 */
enum relay_spoil relay_reusable(const struct relay *r);

const char *relay_spoil_name(enum relay_spoil s);

#endif /* !RELAY_H */
