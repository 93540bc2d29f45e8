/*
 * auth: the CQL startup handshake as a pure state machine.
 *
 * The session feeds it the bytes it receives from the app and from the
 * node; the machine decides, frame by frame, what is relayed verbatim and
 * what is answered: it intercepts the node's answer to STARTUP, runs the
 * SASL PLAIN exchange (and DSE's PLAIN / PLAIN-START) with the configured
 * credentials, and tells the app READY.  Output goes through a sink, so the
 * machine needs no sockets and is driven by byte sequences in the tests.
 */
#ifndef AUTH_H
#define AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "cql_frame.h"

/* Class name DSE's unified authenticator announces. */
#define AUTH_DSE_AUTHENTICATOR	"com.datastax.bdp.cassandra.auth.DseAuthenticator"
/* What accept mode announces to the app. */
#define AUTH_APP_AUTHENTICATOR	"org.apache.cassandra.auth.PasswordAuthenticator"
/* AUTH_CHALLENGE rounds answered before giving up. */
#define AUTH_MAX_ROUNDS		4
/* Largest frame or segment parsed during the handshake. */
#define AUTH_MAX_HS_FRAME	(1024 * 1024)

/* Credentials and policy, built once from the config, shared read-only. */
struct auth_creds {
	enum config_client_auth	 client_auth;
	bool			 have_token;
	uint8_t			*token;		/* authzid NUL user NUL pass */
	size_t			 token_len;
	char			*username;	/* for logs */
};

enum auth_state {
	AUTH_S_FIRST,		/* waiting for the app's first frame */
	AUTH_S_PRE_STARTUP,	/* relaying OPTIONS/SUPPORTED until STARTUP */
	AUTH_S_WAIT_STARTUP,	/* STARTUP relayed; awaiting the node's answer */
	AUTH_S_NODE_AUTH,	/* SASL exchange with the node */
	AUTH_S_APP_AUTH,	/* accept mode: awaiting the app's AUTH_RESPONSE */
	AUTH_S_DONE,		/* handshake over: relay verbatim */
	AUTH_S_FAILED,		/* an ERROR was queued to the app; close */
};

enum auth_compression {
	AUTH_COMP_NONE,
	AUTH_COMP_LZ4,
	AUTH_COMP_SNAPPY,
};

/* Why the handshake failed, for the session's close reason. */
enum auth_failure {
	AUTH_FAIL_NONE,
	AUTH_FAIL_PROTOCOL,	/* malformed or unexpected input */
	AUTH_FAIL_STARTUP,	/* node answered STARTUP with an ERROR */
	AUTH_FAIL_CREDENTIALS,	/* node refused our credentials */
};

struct auth_sink {
	void	(*to_app)(void *arg, const uint8_t *p, size_t n);
	void	(*to_node)(void *arg, const uint8_t *p, size_t n);
	void	 *arg;
};

struct auth_hs {
	const struct auth_creds	*creds;
	enum config_client_auth	 client_auth;	/* what the app side does */
	enum auth_state		 state;
	enum auth_failure	 failure;

	/* The app's first frame, for errors reported before STARTUP. */
	bool			 have_first;
	uint8_t			 first_version;
	int16_t			 first_stream;

	uint8_t			 version;	/* from STARTUP */
	int16_t			 startup_stream;
	enum auth_compression	 compression;
	bool			 dse;		/* DSE mechanism flow */
	unsigned		 rounds;
	bool			 injected;	/* we sent credentials */

	size_t			 need_app;	/* bytes needed for next unit */
	size_t			 need_node;

	char			 authenticator[128];
	char			 reason[256];	/* for the log when failing */
};

/* auth_creds_new(c): build the PLAIN token from ${c}; NULL on error. */
struct auth_creds *auth_creds_new(const struct config *c);
/* auth_creds_free(ac): wipe and free; NULL is a no-op. */
void	auth_creds_free(struct auth_creds *ac);

/* auth_hs_init(hs, creds): start a handshake. */
void	auth_hs_init(struct auth_hs *hs, const struct auth_creds *creds);
/*
 * auth_hs_init_own(hs, creds): start a handshake of the tunnel's own (the
 * control connection): its app side is cqltunnel, which is neither
 * challenged ([auth] client_auth = accept) nor left to authenticate
 * itself (passthrough): the credentials are injected as with none.
 */
void	auth_hs_init_own(struct auth_hs *hs, const struct auth_creds *creds);

/*
 * auth_hs_app(hs, p, n, sink) / auth_hs_node(hs, p, n, sink):
 * Offer the first ${n} bytes buffered from the app (resp. the node).  The
 * machine handles at most one frame or segment and returns the number of
 * bytes it used; 0 when it needs more (then hs->need_app / need_node says
 * how many bytes in total, always more than ${n}) or when that side is
 * not being read in the current state (see auth_hs_reads_app/node); -1 on
 * failure (state FAILED; an ERROR may have been sent to the app and
 * hs->reason says why).
 */
ssize_t	auth_hs_app(struct auth_hs *hs, const uint8_t *p, size_t n,
	    const struct auth_sink *sink);
ssize_t	auth_hs_node(struct auth_hs *hs, const uint8_t *p, size_t n,
	    const struct auth_sink *sink);

/* Whether the machine consumes that side's bytes in its current state. */
bool	auth_hs_reads_app(const struct auth_hs *hs);
bool	auth_hs_reads_node(const struct auth_hs *hs);

/*
 * auth_hs_fail_app(hs, code, msg, sink): send the app an ERROR for a
 * failure found outside the machine (TLS, connect), on the stream and in
 * the version of its first request.  Returns -1 if the app has not sent a
 * frame yet (nothing to answer), 0 otherwise.
 */
int	auth_hs_fail_app(struct auth_hs *hs, int32_t code, const char *msg,
	    const struct auth_sink *sink);

/*
 * auth_hs_resume(hs, version, stream, authenticator, sink):
 * The app's STARTUP (${version}, on ${stream}) is answered from a node
 * connection that is already authenticated with our credentials (a reused
 * one): finish with the app as if the node had just accepted them (READY,
 * or in accept mode AUTHENTICATE and then the app's AUTH_RESPONSE).
 */
void	auth_hs_resume(struct auth_hs *hs, uint8_t version, int16_t stream,
	    const char *authenticator, const struct auth_sink *sink);

const char *auth_state_name(enum auth_state s);

#endif /* !AUTH_H */
