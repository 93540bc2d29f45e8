/*
 * config: the INI configuration.  config_load() parses a file into a new,
 * immutable struct config, validates it, and reports every error at once,
 * each naming file, line, section and key.  Secrets read from files (the
 * password) are wiped by config_free().
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"

enum config_verify {
	CONFIG_VERIFY_FULL,	/* chain + hostname/IP (default) */
	CONFIG_VERIFY_CHAIN,	/* chain only */
	CONFIG_VERIFY_NONE,	/* encrypt only; warned about */
};

enum config_tls_version {
	CONFIG_TLS_1_2,
	CONFIG_TLS_1_3,
};

enum config_client_auth {
	CONFIG_CLIENT_AUTH_NONE,	/* app does no auth; we inject */
	CONFIG_CLIENT_AUTH_ACCEPT,	/* app is challenged, anything goes */
	CONFIG_CLIENT_AUTH_PASSTHROUGH,	/* app's own handshake, TLS only */
};

enum config_topology {
	CONFIG_TOPOLOGY_TRANSLATE,	/* one loopback address per node */
	CONFIG_TOPOLOGY_PIN,		/* no rewriting; contact points only */
};

struct config_endpoint {
	char		*host;		/* name or address, no brackets */
	uint16_t	 port;
};

/* Limits on secret sizes (the PLAIN token must fit one small frame). */
#define CONFIG_MAX_CRED_LEN	512
#define CONFIG_MAX_WORKERS	64	/* [listen] workers */

/* Longest unix: socket path (sun_path less its NUL). */
#define CONFIG_UNIX_PATH_MAX	107

/* Entries in [listen] allow_uids or allow_gids. */
#define CONFIG_MAX_IDS		64

/*
 * Messages a config_errors keeps; later ones are only counted.  The loader
 * stops reading a file once it has reported this many: what follows the
 * twentieth mistake (a binary file, the wrong file) is noise.
 */
#define CONFIG_MAX_ERRORS	20

struct config {
	char		*path;

	/* [listen] */
	char		*listen_host;		/* address literal; NULL: unix */
	uint16_t	 listen_port;
	char		*listen_unix;		/* unix: socket path, or NULL */
	unsigned	 unix_mode;		/* default 0660 */
	uid_t		 unix_owner;		/* (uid_t)-1: ours */
	gid_t		 unix_group;		/* (gid_t)-1: ours */
	bool		 allow_remote;
	uid_t		*allow_uids;		/* resolved at load */
	size_t		 nallow_uids;
	gid_t		*allow_gids;
	size_t		 nallow_gids;
	bool		 access_control;	/* either list is set */
	unsigned	 max_connections;	/* default 1024 */
	unsigned	 workers;		/* event loops; 0: auto */
	unsigned	 drain_timeout_ms;	/* default 30 s */
	unsigned	 busy_poll_ms;		/* 0 (default): sleep */
	uint32_t	 max_frame_size;	/* default 256 MiB */

	/* [cluster] */
	struct config_endpoint *contact_points;
	size_t		 ncontact_points;
	unsigned	 connect_timeout_ms;	/* default 5 s */
	unsigned	 handshake_timeout_ms;	/* default 10 s */
	enum config_topology topology;		/* default translate */
	uint32_t	 translate_net;		/* host order, e.g. 127.0.1.0 */
	unsigned	 translate_bits;	/* prefix length, 8..30 */
	char		*local_dc;		/* optional */
	bool		 reuse_connections;	/* default yes */
	unsigned	 reuse_max_idle;	/* per node; 0: no reuse */
	unsigned	 reuse_idle_timeout_ms;	/* default 10 s */

	/* [tls] */
	char		*ca_file;		/* NULL when ca_system */
	bool		 ca_system;		/* ca_file = system */
	char		*cert_file;		/* optional */
	char		*key_file;		/* required with cert_file */
	char		*key_password_file;	/* optional */
	enum config_verify verify;
	bool		 insecure_skip_verify;	/* acknowledges verify = none */
	char		*server_name;		/* optional override */
	enum config_tls_version min_version;
	char		*ciphers;		/* TLS <= 1.2 list, optional */
	char		*ciphersuites;		/* TLS 1.3 list, optional */
	char		*crl_file;		/* optional */
	bool		 watch;			/* reload on file changes */
	bool		 resumption;		/* TLS session cache per node */

	/* [auth] */
	char		*username;		/* NULL: no injection */
	char		*password;		/* read from password_file */
	size_t		 password_len;
	char		*password_file;
	char		*authzid;		/* optional */
	enum config_client_auth client_auth;

	/* [log] */
	enum log_level	 log_level;
	enum log_format	 log_format;
	enum log_target	 log_target;

	/* [admin] */
	char		*admin_host;		/* NULL: no admin endpoint */
	uint16_t	 admin_port;

	/* [daemon] */
	bool		 allow_core_dumps;	/* default no */

	/* Where each key was set, for later error messages. */
	struct config_origin *origins;
	size_t		 norigins;
};

/*
 * A list of error messages, each "file:line: [section] key: what": the
 * first CONFIG_MAX_ERRORS of them, and how many more there were.
 */
struct config_errors {
	char		**v;
	size_t		 n;
	size_t		 cap;
	size_t		 more;		/* not kept: over CONFIG_MAX_ERRORS */
};

/*
 * config_load(path, errs):
 * Parse and validate ${path}.  Returns a new config, or NULL with every
 * problem appended to ${errs}.  Reads the password file (refusing one that
 * is world-readable) but not the TLS files: tls_ctx_new() checks those.
 */
struct config *config_load(const char *path, struct config_errors *errs);

/* config_free(c): wipe secrets and free; NULL is a no-op. */
void	config_free(struct config *c);
/*
 * config_forget_password(c): wipe and free the password once the
 * credentials are built from it (auth_creds_new), so that one copy of it
 * exists, held by the generation that uses it.
 */
void	config_forget_password(struct config *c);

/*
 * config_where(c, section, key, buf, len):
 * Write "file:line: [section] key" (or "file: [section] key" when the key
 * was defaulted) into ${buf}; returns ${buf}.
 */
const char *config_where(const struct config *c, const char *section,
	    const char *key, char *buf, size_t len);

/* config_errors_add(errs, fmt, ...): append a formatted message. */
void	config_errors_add(struct config_errors *errs, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	config_errors_free(struct config_errors *errs);

#endif /* !CONFIG_H */
