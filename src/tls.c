/*
 * tls: client SSL_CTX towards the nodes (see tls.h).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"
#include "util.h"

/*
 * Session resumption: the newest session (TLS 1.3 ticket or TLS 1.2
 * session) each node gave us, offered on the next connection to it.  A
 * resumed handshake skips the certificate exchange, its verification and
 * the signature, and the connection shares the first one's parsed
 * certificates instead of holding its own.  The cache belongs to one
 * configuration generation: a reload (new CA, CRL, certificate) starts
 * with an empty one, so nothing verified under the old settings is
 * reused.  Keyed by the name verified and the node's address.
 */
#define TLS_CACHE_SLOTS		256
#define TLS_CACHE_MAX_AGE	3600	/* seconds; then a full handshake */

struct tls_cache_slot {
	char		 key[UTIL_ADDRSTRLEN + 260];
	SSL_SESSION	*sess;
	time_t		 at;
};

struct tls_cache {
	pthread_mutex_t		 lock;
	unsigned		 n;		/* slots used */
	unsigned		 next;		/* to recycle when full */
	struct tls_cache_slot	 slot[TLS_CACHE_SLOTS];
};

struct tls_ctx {
	SSL_CTX			*ctx;
	enum config_verify	 verify;
	char			*server_name;	/* NULL: use the host */
	struct tls_cache	*cache;		/* NULL: resumption off */
};

/* SSL ex_data: the cache slot (index + 1) a connection belongs to. */
static int	 tls_slot_idx = -1;
/* SSL_CTX ex_data: its tls_cache, cleared when the tls_ctx goes. */
static int	 tls_cache_idx = -1;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void
tls_init_indexes(void)
{
	tls_slot_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	tls_cache_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/*
 * OpenSSL hands us a new session (a ticket arrived, or a TLS 1.2
 * handshake finished): keep it for the next connection to the same node.
 * Returns 1: the reference is ours.
 */
static int
tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_cache	*c;
	struct tls_cache_slot	*sl;
	uintptr_t		 i;

	c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_cache_idx);
	i = (uintptr_t)SSL_get_ex_data(ssl, tls_slot_idx);
	if (c == NULL || i == 0 || !SSL_SESSION_is_resumable(sess))
		return (0);
	pthread_mutex_lock(&c->lock);
	sl = &c->slot[i - 1];
	if (sl->sess != NULL)
		SSL_SESSION_free(sl->sess);
	sl->sess = sess;
	sl->at = time(NULL);
	pthread_mutex_unlock(&c->lock);
	return (1);
}

static void
tls_cache_free(struct tls_cache *c)
{
	unsigned	 i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++)
		if (c->slot[i].sess != NULL)
			SSL_SESSION_free(c->slot[i].sess);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/*
 * Offer ${ssl} the session cached under ${key}, and tie it to that slot
 * so the tickets it receives land there.
 */
static void
tls_cache_use(struct tls_cache *c, SSL *ssl, const char *key)
{
	struct tls_cache_slot	*sl = NULL;
	SSL_SESSION		*dup;
	unsigned		 i;
	time_t			 now = time(NULL);

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < c->n; i++)
		if (strcmp(c->slot[i].key, key) == 0) {
			sl = &c->slot[i];
			break;
		}
	if (sl == NULL) {
		if (c->n < TLS_CACHE_SLOTS)
			i = c->n++;
		else
			i = c->next++ % TLS_CACHE_SLOTS;
		sl = &c->slot[i];
		if (sl->sess != NULL)
			SSL_SESSION_free(sl->sess);
		sl->sess = NULL;
		snprintf(sl->key, sizeof(sl->key), "%s", key);
	}
	if (sl->sess != NULL && (now - sl->at > TLS_CACHE_MAX_AGE ||
	    !SSL_SESSION_is_resumable(sl->sess))) {
		SSL_SESSION_free(sl->sess);
		sl->sess = NULL;
	}
	/*
	 * A copy: OpenSSL marks the session a connection uses as not
	 * resumable when that connection fails or is freed before its
	 * close_notify, and the cached one must not go with it.
	 */
	if (sl->sess != NULL && (dup = SSL_SESSION_dup(sl->sess)) != NULL) {
		(void)SSL_set_session(ssl, dup);
		SSL_SESSION_free(dup);
	}
	(void)SSL_set_ex_data(ssl, tls_slot_idx, (void *)(uintptr_t)(i + 1));
	pthread_mutex_unlock(&c->lock);
}

/* The key passphrase, handed to OpenSSL's callback during loading only. */
struct tls_pass {
	char	*pw;
	size_t	 len;
};

/* OpenSSL passphrase callback: copy the passphrase read from its file. */
static int
tls_pass_cb(char *buf, int size, int rwflag, void *arg)
{
	struct tls_pass	*p = arg;

	(void)rwflag;
	if (p == NULL || p->pw == NULL || p->len >= (size_t)size)
		return (0);
	memcpy(buf, p->pw, p->len);
	return ((int)p->len);
}

/*
 * Drain the OpenSSL error queue into ${buf} as one line: every entry's
 * reason, innermost first ("bad decrypt: PEM lib").
 */
static const char *
tls_errstr(char *buf, size_t len)
{
	unsigned long	 e;
	const char	*r;
	size_t		 off = 0;
	int		 n;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		if (off + 1 >= len)
			continue;
		r = ERR_reason_error_string(e);
		if (r == NULL) {
			char	 tmp[128];

			ERR_error_string_n(e, tmp, sizeof(tmp));
			n = snprintf(buf + off, len - off, "%s%s",
			    off > 0 ? ": " : "", tmp);
		} else
			n = snprintf(buf + off, len - off, "%s%s",
			    off > 0 ? ": " : "", r);
		if (n > 0)
			off += (size_t)n < len - off ? (size_t)n : len - off - 1;
	}
	if (off == 0)
		snprintf(buf, len, "unknown error");
	return (buf);
}

/* Largest key file read (a PEM key with its chain is a few kilobytes). */
#define TLS_KEY_FILE_MAX	(1024 * 1024)

/*
 * Load the PEM private key of ${c}'s key_file into ${ctx}; 0 or -1 with
 * the OpenSSL errors queued or a reason in ${why}.  The file is read
 * into a buffer that is wiped afterwards (BIO_new_file()'s stdio buffer
 * would keep an unencrypted key's text in freed memory).
 */
static int
tls_use_key(SSL_CTX *ctx, const struct config *c, struct tls_pass *pass,
    char *why, size_t whylen)
{
	EVP_PKEY	*pkey = NULL;
	BIO		*bio;
	char		*buf;
	size_t		 len;
	int		 rc = -1;

	if (util_read_key_file(c->key_file, &buf, &len, TLS_KEY_FILE_MAX, why,
	    whylen) == -1)
		return (-1);
	why[0] = '\0';
	if ((bio = BIO_new_mem_buf(buf, (int)len)) != NULL) {
		pkey = PEM_read_bio_PrivateKey(bio, NULL, tls_pass_cb, pass);
		BIO_free(bio);
	}
	util_wipe(buf, len);
	free(buf);
	if (pkey != NULL && SSL_CTX_use_PrivateKey(ctx, pkey) == 1)
		rc = 0;
	EVP_PKEY_free(pkey);
	return (rc);
}

/* Load the client certificate chain and key; 0 or -1 with errs added. */
static int
tls_load_identity(SSL_CTX *ctx, const struct config *c,
    struct config_errors *errs)
{
	struct tls_pass	 pass = { NULL, 0 };
	char		 where[256], why[256], e[256];
	int		 rc = -1;

	if (c->cert_file == NULL)
		return (0);
	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1) {
		config_errors_add(errs, "%s: cannot load certificate %s: %s",
		    config_where(c, "tls", "cert_file", where, sizeof(where)),
		    c->cert_file, tls_errstr(e, sizeof(e)));
		return (-1);
	}
	if (c->key_password_file != NULL &&
	    util_read_secret_file(c->key_password_file, &pass.pw, &pass.len,
	    1024, why, sizeof(why)) == -1) {
		config_errors_add(errs, "%s: %s: %s",
		    config_where(c, "tls", "key_password_file", where,
		    sizeof(where)), c->key_password_file, why);
		return (-1);
	}
	if (tls_use_key(ctx, c, &pass, why, sizeof(why)) == -1) {
		if (why[0] != '\0') {
			config_errors_add(errs, "%s: cannot load private key "
			    "%s: %s", config_where(c, "tls", "key_file", where,
			    sizeof(where)), c->key_file, why);
			goto out;
		}
		tls_errstr(e, sizeof(e));
		if (strstr(e, "key values mismatch") != NULL) {
			config_errors_add(errs, "%s: private key %s does not "
			    "match certificate %s", config_where(c, "tls",
			    "key_file", where, sizeof(where)), c->key_file,
			    c->cert_file);
			goto out;
		}
		/*
		 * With a passphrase, any failure hints at it: a wrong one
		 * usually gives "bad decrypt", but about one time in 256 the
		 * garbage it decrypts to passes the padding check and fails
		 * as an ASN.1 decode error instead.
		 */
		config_errors_add(errs, "%s: cannot load private key %s: %s%s",
		    config_where(c, "tls", "key_file", where, sizeof(where)),
		    c->key_file, e, pass.pw != NULL ? " (wrong passphrase in "
		    "key_password_file?)" : strstr(e, "bad decrypt") != NULL ||
		    strstr(e, "interrupted or cancelled") != NULL ?
		    " (the key is encrypted: set [tls] key_password_file)" :
		    "");
		goto out;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		config_errors_add(errs, "%s: private key %s does not match "
		    "certificate %s",
		    config_where(c, "tls", "key_file", where, sizeof(where)),
		    c->key_file, c->cert_file);
		goto out;
	}
	rc = 0;
out:
	if (pass.pw != NULL) {
		util_wipe(pass.pw, pass.len);
		free(pass.pw);
	}
	return (rc);
}

/* Load the trust store; 0 or -1 with errs added. */
static int
tls_load_trust(SSL_CTX *ctx, const struct config *c,
    struct config_errors *errs)
{
	char	 where[256], e[256];

	if (c->ca_system) {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			config_errors_add(errs, "%s: cannot load the system "
			    "trust store: %s", config_where(c, "tls", "ca_file",
			    where, sizeof(where)), tls_errstr(e, sizeof(e)));
			return (-1);
		}
		return (0);
	}
	if (c->ca_file == NULL)
		return (0);
	if (SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL) != 1) {
		config_errors_add(errs, "%s: cannot load CA certificates from "
		    "%s: %s", config_where(c, "tls", "ca_file", where,
		    sizeof(where)), c->ca_file, tls_errstr(e, sizeof(e)));
		return (-1);
	}
	return (0);
}

bool
tls_ctx_identity(const struct tls_ctx *t, char *serial, size_t len,
    int64_t *not_after)
{
	X509		*x = SSL_CTX_get0_certificate(t->ctx);
	BIGNUM		*bn;
	char		*hex;
	struct tm	 tm;

	if (x == NULL)
		return (false);
	snprintf(serial, len, "?");
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) !=
	    NULL) {
		if ((hex = BN_bn2hex(bn)) != NULL) {
			snprintf(serial, len, "0x%s", hex);
			OPENSSL_free(hex);
		}
		BN_free(bn);
	}
	*not_after = 0;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		*not_after = (int64_t)timegm(&tm);
	return (true);
}

/*
 * Load [tls] crl_file (PEM, one or more CRLs) into the trust store and
 * check every certificate of the node's chain against it; 0 or -1.
 */
static int
tls_load_crl(SSL_CTX *ctx, const struct config *c,
    struct config_errors *errs)
{
	X509_STORE	*store = SSL_CTX_get_cert_store(ctx);
	X509_CRL	*crl;
	BIO		*bio;
	char		 where[256], e[256];
	int		 n = 0;

	if (c->crl_file == NULL)
		return (0);
	config_where(c, "tls", "crl_file", where, sizeof(where));
	if ((bio = BIO_new_file(c->crl_file, "r")) == NULL) {
		config_errors_add(errs, "%s: cannot open %s: %s", where,
		    c->crl_file, tls_errstr(e, sizeof(e)));
		return (-1);
	}
	while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_crl(store, crl) != 1) {
			X509_CRL_free(crl);
			BIO_free(bio);
			config_errors_add(errs, "%s: cannot use a CRL from %s: "
			    "%s", where, c->crl_file, tls_errstr(e, sizeof(e)));
			return (-1);
		}
		X509_CRL_free(crl);
		n++;
	}
	BIO_free(bio);
	/* Only "no more PEM blocks" ends the file; anything else is damage. */
	if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
		config_errors_add(errs, "%s: %s: CRL %d is damaged: %s", where,
		    c->crl_file, n + 1, tls_errstr(e, sizeof(e)));
		return (-1);
	}
	ERR_clear_error();
	if (n == 0) {
		config_errors_add(errs, "%s: %s holds no PEM CRL (\"-----BEGIN "
		    "X509 CRL-----\")", where, c->crl_file);
		return (-1);
	}
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK |
	    X509_V_FLAG_CRL_CHECK_ALL);
	return (0);
}

struct tls_ctx *
tls_ctx_new(const struct config *c, struct config_errors *errs)
{
	struct tls_ctx	*t;
	SSL_CTX		*ctx;
	char		 where[256], e[256];
	size_t		 nerr = errs->n;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		config_errors_add(errs, "cannot create a TLS context: %s",
		    tls_errstr(e, sizeof(e)));
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, c->min_version == CONFIG_TLS_1_3 ?
	    TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, c->verify == CONFIG_VERIFY_NONE ?
	    SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);

	if (c->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, c->ciphers)
	    != 1)
		config_errors_add(errs, "%s: no usable cipher in \"%s\": %s",
		    config_where(c, "tls", "ciphers", where, sizeof(where)),
		    c->ciphers, tls_errstr(e, sizeof(e)));
	if (c->ciphersuites != NULL &&
	    SSL_CTX_set_ciphersuites(ctx, c->ciphersuites) != 1)
		config_errors_add(errs, "%s: no usable TLS 1.3 cipher suite in "
		    "\"%s\": %s", config_where(c, "tls", "ciphersuites", where,
		    sizeof(where)), c->ciphersuites, tls_errstr(e, sizeof(e)));
	(void)tls_load_trust(ctx, c, errs);
	(void)tls_load_crl(ctx, c, errs);
	(void)tls_load_identity(ctx, c, errs);
	ERR_clear_error();

	if (errs->n != nerr) {
		SSL_CTX_free(ctx);
		return (NULL);
	}
	t = util_xcalloc(1, sizeof(*t));
	t->ctx = ctx;
	t->verify = c->verify;
	if (c->resumption) {
		(void)pthread_once(&tls_once, tls_init_indexes);
		t->cache = util_xcalloc(1, sizeof(*t->cache));
		pthread_mutex_init(&t->cache->lock, NULL);
		(void)SSL_CTX_set_ex_data(ctx, tls_cache_idx, t->cache);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, tls_new_session);
	} else
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (c->server_name != NULL)
		t->server_name = util_xstrdup(c->server_name);
	return (t);
}

void
tls_ctx_free(struct tls_ctx *t)
{
	if (t == NULL)
		return;
	/* Connections still open on this context keep it; not the cache. */
	if (t->cache != NULL)
		(void)SSL_CTX_set_ex_data(t->ctx, tls_cache_idx, NULL);
	tls_cache_free(t->cache);
	SSL_CTX_free(t->ctx);
	free(t->server_name);
	free(t);
}

SSL *
tls_ssl_new(struct tls_ctx *t, const char *host, const char *peer)
{
	char		 key[sizeof(((struct tls_cache_slot *)0)->key)];
	SSL		*ssl;
	const char	*name = t->server_name != NULL ? t->server_name : host;
	bool		 is_ip = util_is_ip_literal(name);

	if ((ssl = SSL_new(t->ctx)) == NULL) {
		log_openssl_errors(LOG_LEVEL_ERROR, "SSL_new");
		return (NULL);
	}
	/* SNI carries host names only (RFC 6066). */
	if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
		goto fail;
	if (t->verify == CONFIG_VERIFY_FULL) {
		if (is_ip) {
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
			    name) != 1)
				goto fail;
		} else {
			SSL_set_hostflags(ssl,
			    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set1_host(ssl, name) != 1)
				goto fail;
		}
	}
	if (t->cache != NULL && peer != NULL) {
		snprintf(key, sizeof(key), "%s|%s", name, peer);
		tls_cache_use(t->cache, ssl, key);
	}
	return (ssl);
fail:
	log_openssl_errors(LOG_LEVEL_ERROR, "TLS setup");
	SSL_free(ssl);
	return (NULL);
}

unsigned long
tls_bev_error(struct bufferevent *bev, bool *syscall)
{
	unsigned long	 e, latest = 0;

	if (syscall != NULL)
		*syscall = false;
	/* Handed back latest first: keep the first real one, drain all. */
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		if (ERR_GET_LIB(e) == 0) {
			if (syscall != NULL)
				*syscall = true;
		} else if (latest == 0)
			latest = e;
	}
	return (latest);
}

const char *
tls_failure_reason(const SSL *ssl, unsigned long err, char *buf, size_t len)
{
	long		 vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	char		 e[256];
	const char	*reason, *hint = "";

	if (vr != X509_V_OK) {
		switch (vr) {
		case X509_V_ERR_HOSTNAME_MISMATCH:
		case X509_V_ERR_IP_ADDRESS_MISMATCH:
			hint = " (check [tls] server_name or the contact point)";
			break;
		case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
		case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
			hint = " (is the node's CA in [tls] ca_file?)";
			break;
		default:
			break;
		}
		snprintf(buf, len, "node certificate verification failed: %s%s",
		    X509_verify_cert_error_string(vr), hint);
		return (buf);
	}
	if (err == 0) {
		snprintf(buf, len, "TLS connection failed");
		return (buf);
	}
	reason = ERR_reason_error_string(err);
	if (reason == NULL) {
		ERR_error_string_n(err, e, sizeof(e));
		reason = e;
	}
	if (strstr(reason, "certificate required") != NULL ||
	    strstr(reason, "bad certificate") != NULL ||
	    strstr(reason, "unknown ca") != NULL ||
	    strstr(reason, "certificate unknown") != NULL)
		hint = " (the node refused our client certificate: check "
		    "[tls] cert_file and the node's truststore)";
	else if (strstr(reason, "protocol version") != NULL)
		hint = " (check [tls] min_version against the node)";
	snprintf(buf, len, "TLS handshake failed: %s%s", reason, hint);
	return (buf);
}

const char *
tls_version_name(const SSL *ssl)
{
	return (ssl != NULL ? SSL_get_version(ssl) : "-");
}
