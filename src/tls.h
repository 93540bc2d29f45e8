/*
 * tls: the client-side TLS context towards the nodes.  Verification is on
 * by default: the chain must lead to [tls] ca_file, and the node's name or
 * IP must match its certificate.  The client certificate and key (which may
 * be encrypted) prove our identity.
 */
#ifndef TLS_H
#define TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"

struct tls_ctx;

/*
 * tls_ctx_new(c, errs):
 * Build an SSL_CTX from ${c}: trust store, client certificate chain and key
 * (decrypted with key_password_file, which is wiped after use), checking
 * that the key matches the certificate.  Returns NULL with every problem in
 * ${errs}, each naming the config key it comes from.
 */
struct tls_ctx *tls_ctx_new(const struct config *c, struct config_errors *errs);

/* tls_ctx_free(t): drop our reference; live sessions keep theirs. */
void	tls_ctx_free(struct tls_ctx *t);

/*
 * tls_ssl_new(t, host, peer):
 * A new client SSL for a connection to ${host} (a contact point) at
 * ${peer} (its address, "ip:port"): sets SNI and the name or IP to verify
 * according to [tls] verify / server_name, and, with [tls]
 * session_resumption, offers the last session that node gave us.  Returns
 * NULL on failure (logged).
 */
SSL	*tls_ssl_new(struct tls_ctx *t, const char *host, const char *peer);

/*
 * tls_bev_error(bev, syscall): the latest OpenSSL error a
 * bufferevent_openssl recorded, or 0.  libevent also records
 * SSL_get_error() results (5, SSL_ERROR_SYSCALL: the socket failed or
 * closed) in the same queue; they are not OpenSSL error codes (they print
 * as "error:00000005:lib(0)::reason(5)") and are skipped, but *${syscall}
 * (when not NULL) says whether there was one.
 */
struct bufferevent;
unsigned long tls_bev_error(struct bufferevent *bev, bool *syscall);

/*
 * tls_failure_reason(ssl, err, buf, len):
 * Describe why a handshake or TLS read failed: the certificate verification
 * result when there is one, else the OpenSSL error ${err} (e.g. the node's
 * alert), with a hint at the config key to check.  Returns ${buf}.
 */
const char *tls_failure_reason(const SSL *ssl, unsigned long err, char *buf,
	    size_t len);

/*
 * tls_ctx_identity(t, serial, len, not_after):
 * The client certificate's serial number ("0x..." hex) and expiry (Unix
 * time).  Returns false if no client certificate is configured.
 */
bool	tls_ctx_identity(const struct tls_ctx *t, char *serial, size_t len,
	    int64_t *not_after);

/* tls_version_name(ssl): "TLSv1.3" etc. */
const char *tls_version_name(const SSL *ssl);

#endif /* !TLS_H */
