/*
 * config: the INI file is read by inih through our own line reader, which
 * numbers lines, refuses over-long ones and spots syntax errors; each key
 * is looked up in one declarative table that gives its type, limits and
 * default.  Keys are then checked against each other.  Every problem is
 * collected, each naming file, line, section and key, and a config with
 * any problem is never returned.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "util.h"

/* Longest line: inih's 200-byte line buffer less "\n" and the NUL. */
#define CONFIG_LINE_MAX		198

/* Largest file read: a config is a few kilobytes; this stops /dev/zero. */
#define CONFIG_FILE_MAX		(1024 * 1024)

/* Cassandra's native transport port, used when a port is left out. */
#define CONFIG_DEFAULT_PORT	9042

/* Prefix of paths inside systemd's $CREDENTIALS_DIRECTORY. */
#define CONFIG_CREDENTIALS	"%credentials%/"

/* The admin endpoint's port when [admin] address has none. */
#define CONFIG_ADMIN_PORT	9180

/* Room for a host name (253 bytes) or an IPv6 literal, plus NUL. */
#define CONFIG_HOST_MAX		256

/* Room for a value quoted by config_quote(). */
#define CONFIG_QUOTE_MAX	300

/* How a value is parsed and stored. */
enum config_type {
	CONFIG_T_LISTEN,	/* IP literal with optional port */
	CONFIG_T_ENDPOINTS,	/* host[:port], ...; appends */
	CONFIG_T_BOOL,
	CONFIG_T_UINT,		/* within [min, max] */
	CONFIG_T_DURATION,	/* milliseconds within [min, max] */
	CONFIG_T_SIZE,		/* bytes within [min, max] */
	CONFIG_T_ENUM,		/* one of choices */
	CONFIG_T_STRING,	/* at most max bytes */
	CONFIG_T_PATH,		/* relative to the config's directory */
	CONFIG_T_CRED,		/* a credential: never echoed */
	CONFIG_T_PREFIX,	/* IPv4 loopback network a.b.c.d/len */
	CONFIG_T_USERS,		/* user names or uids, ...; appends */
	CONFIG_T_GROUPS,	/* group names or gids, ...; appends */
	CONFIG_T_USER,		/* one user name or uid */
	CONFIG_T_GROUP,		/* one group name or gid */
	CONFIG_T_MODE,		/* octal file mode within [min, max] */
};

/* Every key, in the order of config_keys[]. */
enum config_key_id {
	CONFIG_K_ADDRESS,
	CONFIG_K_ALLOW_REMOTE,
	CONFIG_K_ALLOW_UIDS,
	CONFIG_K_ALLOW_GIDS,
	CONFIG_K_UNIX_MODE,
	CONFIG_K_UNIX_OWNER,
	CONFIG_K_UNIX_GROUP,
	CONFIG_K_MAX_CONNECTIONS,
	CONFIG_K_WORKERS,
	CONFIG_K_DRAIN_TIMEOUT,
	CONFIG_K_BUSY_POLL,
	CONFIG_K_MAX_FRAME_SIZE,
	CONFIG_K_CONTACT_POINTS,
	CONFIG_K_CONNECT_TIMEOUT,
	CONFIG_K_HANDSHAKE_TIMEOUT,
	CONFIG_K_TOPOLOGY,
	CONFIG_K_TRANSLATE_PREFIX,
	CONFIG_K_LOCAL_DC,
	CONFIG_K_REUSE_CONNECTIONS,
	CONFIG_K_REUSE_MAX_IDLE,
	CONFIG_K_REUSE_IDLE_TIMEOUT,
	CONFIG_K_CA_FILE,
	CONFIG_K_CERT_FILE,
	CONFIG_K_KEY_FILE,
	CONFIG_K_KEY_PASSWORD_FILE,
	CONFIG_K_VERIFY,
	CONFIG_K_INSECURE_SKIP_VERIFY,
	CONFIG_K_SERVER_NAME,
	CONFIG_K_MIN_VERSION,
	CONFIG_K_CIPHERS,
	CONFIG_K_CIPHERSUITES,
	CONFIG_K_CRL_FILE,
	CONFIG_K_WATCH,
	CONFIG_K_RESUMPTION,
	CONFIG_K_USERNAME,
	CONFIG_K_PASSWORD_FILE,
	CONFIG_K_AUTHZID,
	CONFIG_K_CLIENT_AUTH,
	CONFIG_K_LEVEL,
	CONFIG_K_LOG_FORMAT,
	CONFIG_K_LOG_TARGET,
	CONFIG_K_ADMIN_ADDRESS,
	CONFIG_K_ALLOW_CORE_DUMPS,
	CONFIG_K_COUNT
};

/* One accepted spelling of an enumerated value. */
struct config_choice {
	const char	*name;
	int		 value;
	bool		 alias;		/* accepted, not listed in errors */
};

/* One key: where it lives, how it parses, its limits and default. */
struct config_key {
	const char		*section;
	const char		*name;
	enum config_type	 type;
	int			 flags;
#define CONFIG_REQUIRED	0x1		/* must be set */
#define CONFIG_REPEAT	0x2		/* may repeat; values append */
#define CONFIG_SYSTEM	0x4		/* "system": the OS trust store */
	uint64_t		 min;
	uint64_t		 max;		/* for strings: longest */
	const struct config_choice *choices;
	const char		*dflt;		/* NULL: unset unless given */
};

/* Where a key was set; line 0 means it was defaulted. */
struct config_origin {
	const char	*section;
	const char	*key;
	unsigned	 line;
};

/* How inih will treat the line the reader just returned. */
enum config_line {
	CONFIG_LINE_NONE,	/* blank, comment, or section header */
	CONFIG_LINE_KEY,	/* must reach the handler as key = value */
	CONFIG_LINE_CONT,	/* continues the previous key */
};

/* The state of one config_load(). */
struct config_parse {
	struct config		*c;
	struct config_errors	*errs;
	size_t			 nerrs;		/* errors added by this load */
	const char		*path;		/* as given, for messages */
	char			*dir;		/* base for relative paths */
	FILE			*f;
	size_t			 nread;		/* bytes read so far */
	bool			 stop;		/* no more input */
	unsigned		 line;		/* current line number */
	enum config_line	 kind;		/* what the current line is */
	bool			 handled;	/* handler ran for it */
	bool			 have_prev;	/* inih has a key to continue */
	unsigned		*syntax;	/* lines with syntax errors */
	size_t			 nsyntax;
	unsigned		 lines[CONFIG_K_COUNT];	/* 0: not given */
};

static const char *const config_sections[] = {
	"listen", "cluster", "tls", "auth", "log", "admin", "daemon",
};

static const struct config_choice config_verify_choices[] = {
	{ "full", CONFIG_VERIFY_FULL, false },
	{ "chain", CONFIG_VERIFY_CHAIN, false },
	{ "none", CONFIG_VERIFY_NONE, false },
	{ NULL, 0, false }
};

static const struct config_choice config_version_choices[] = {
	{ "TLSv1.2", CONFIG_TLS_1_2, false },
	{ "TLSv1.3", CONFIG_TLS_1_3, false },
	{ "1.2", CONFIG_TLS_1_2, true },
	{ "1.3", CONFIG_TLS_1_3, true },
	{ NULL, 0, false }
};

static const struct config_choice config_topology_choices[] = {
	{ "translate", CONFIG_TOPOLOGY_TRANSLATE, false },
	{ "pin", CONFIG_TOPOLOGY_PIN, false },
	{ NULL, 0, false },
};

static const struct config_choice config_client_auth_choices[] = {
	{ "none", CONFIG_CLIENT_AUTH_NONE, false },
	{ "accept", CONFIG_CLIENT_AUTH_ACCEPT, false },
	{ "passthrough", CONFIG_CLIENT_AUTH_PASSTHROUGH, false },
	{ NULL, 0, false }
};

static const struct config_choice config_level_choices[] = {
	{ "error", LOG_LEVEL_ERROR, false },
	{ "warn", LOG_LEVEL_WARN, false },
	{ "info", LOG_LEVEL_INFO, false },
	{ "debug", LOG_LEVEL_DEBUG, false },
	{ "warning", LOG_LEVEL_WARN, true },
	{ NULL, 0, false }
};

/* The configuration's public interface: every section and key. */
static const struct config_choice config_format_choices[] = {
	{ "text", LOG_FORMAT_TEXT, false },
	{ "json", LOG_FORMAT_JSON, false },
	{ NULL, 0, false },
};

static const struct config_choice config_target_choices[] = {
	{ "stderr", LOG_TARGET_STDERR, false },
	{ "syslog", LOG_TARGET_SYSLOG, false },
	{ NULL, 0, false },
};

static const struct config_key config_keys[CONFIG_K_COUNT] = {
	[CONFIG_K_ADDRESS] = {
		.section = "listen", .name = "address",
		.type = CONFIG_T_LISTEN,
		.dflt = "127.0.0.1:9042",
	},
	[CONFIG_K_ALLOW_REMOTE] = {
		.section = "listen", .name = "allow_remote",
		.type = CONFIG_T_BOOL,
		.dflt = "no",
	},
	[CONFIG_K_ALLOW_UIDS] = {
		.section = "listen", .name = "allow_uids",
		.type = CONFIG_T_USERS,
		.flags = CONFIG_REPEAT,
	},
	[CONFIG_K_ALLOW_GIDS] = {
		.section = "listen", .name = "allow_gids",
		.type = CONFIG_T_GROUPS,
		.flags = CONFIG_REPEAT,
	},
	[CONFIG_K_UNIX_MODE] = {
		.section = "listen", .name = "unix_mode",
		.type = CONFIG_T_MODE,
		.min = 0, .max = 0777,
		.dflt = "0660",
	},
	[CONFIG_K_UNIX_OWNER] = {
		.section = "listen", .name = "unix_owner",
		.type = CONFIG_T_USER,
	},
	[CONFIG_K_UNIX_GROUP] = {
		.section = "listen", .name = "unix_group",
		.type = CONFIG_T_GROUP,
	},
	[CONFIG_K_MAX_CONNECTIONS] = {
		.section = "listen", .name = "max_connections",
		.type = CONFIG_T_UINT,
		.min = 1, .max = 1000000,
		.dflt = "1024",
	},
	[CONFIG_K_WORKERS] = {
		.section = "listen", .name = "workers",
		.type = CONFIG_T_UINT,		/* or "auto" (stored as 0) */
		.min = 1, .max = CONFIG_MAX_WORKERS,
		.dflt = "1",
	},
	[CONFIG_K_DRAIN_TIMEOUT] = {
		.section = "listen", .name = "drain_timeout",
		.type = CONFIG_T_DURATION,
		.min = 0, .max = 60 * 60 * 1000,
		.dflt = "30s",
	},
	[CONFIG_K_BUSY_POLL] = {
		.section = "listen", .name = "busy_poll",
		.type = CONFIG_T_DURATION,
		.min = 0, .max = 1000,
		.dflt = "0",
	},
	[CONFIG_K_MAX_FRAME_SIZE] = {
		.section = "listen", .name = "max_frame_size",
		.type = CONFIG_T_SIZE,
		.min = 64 * 1024, .max = 256 * 1024 * 1024,
		.dflt = "256MiB",
	},
	[CONFIG_K_CONTACT_POINTS] = {
		.section = "cluster", .name = "contact_points",
		.type = CONFIG_T_ENDPOINTS,
		.flags = CONFIG_REQUIRED | CONFIG_REPEAT,
	},
	[CONFIG_K_CONNECT_TIMEOUT] = {
		.section = "cluster", .name = "connect_timeout",
		.type = CONFIG_T_DURATION,
		.min = 10, .max = 5 * 60 * 1000,
		.dflt = "5s",
	},
	[CONFIG_K_HANDSHAKE_TIMEOUT] = {
		.section = "cluster", .name = "handshake_timeout",
		.type = CONFIG_T_DURATION,
		.min = 10, .max = 5 * 60 * 1000,
		.dflt = "10s",
	},
	[CONFIG_K_TOPOLOGY] = {
		.section = "cluster", .name = "topology",
		.type = CONFIG_T_ENUM,
		.choices = config_topology_choices,
		.dflt = "translate",
	},
	[CONFIG_K_TRANSLATE_PREFIX] = {
		.section = "cluster", .name = "translate_prefix",
		.type = CONFIG_T_PREFIX,
		.dflt = "127.0.1.0/24",
	},
	[CONFIG_K_LOCAL_DC] = {
		.section = "cluster", .name = "local_dc",
		.type = CONFIG_T_STRING,
		.max = 128,
	},
	[CONFIG_K_REUSE_CONNECTIONS] = {
		.section = "cluster", .name = "reuse_connections",
		.type = CONFIG_T_BOOL,
		.dflt = "yes",
	},
	[CONFIG_K_REUSE_MAX_IDLE] = {
		.section = "cluster", .name = "reuse_max_idle",
		.type = CONFIG_T_UINT,
		.min = 0, .max = 1024,
		.dflt = "8",
	},
	[CONFIG_K_REUSE_IDLE_TIMEOUT] = {
		.section = "cluster", .name = "reuse_idle_timeout",
		.type = CONFIG_T_DURATION,
		.min = 10, .max = 60 * 60 * 1000,
		.dflt = "10s",
	},
	[CONFIG_K_CA_FILE] = {
		.section = "tls", .name = "ca_file",
		.type = CONFIG_T_PATH,
		.flags = CONFIG_REQUIRED | CONFIG_SYSTEM,
	},
	[CONFIG_K_CERT_FILE] = {
		.section = "tls", .name = "cert_file",
		.type = CONFIG_T_PATH,
	},
	[CONFIG_K_KEY_FILE] = {
		.section = "tls", .name = "key_file",
		.type = CONFIG_T_PATH,
	},
	[CONFIG_K_KEY_PASSWORD_FILE] = {
		.section = "tls", .name = "key_password_file",
		.type = CONFIG_T_PATH,
	},
	[CONFIG_K_VERIFY] = {
		.section = "tls", .name = "verify",
		.type = CONFIG_T_ENUM,
		.choices = config_verify_choices,
		.dflt = "full",
	},
	[CONFIG_K_INSECURE_SKIP_VERIFY] = {
		.section = "tls", .name = "insecure_skip_verify",
		.type = CONFIG_T_BOOL,
		.dflt = "no",
	},
	[CONFIG_K_SERVER_NAME] = {
		.section = "tls", .name = "server_name",
		.type = CONFIG_T_STRING,
		.max = 253,
	},
	[CONFIG_K_MIN_VERSION] = {
		.section = "tls", .name = "min_version",
		.type = CONFIG_T_ENUM,
		.choices = config_version_choices,
		.dflt = "TLSv1.2",
	},
	[CONFIG_K_CIPHERS] = {
		.section = "tls", .name = "ciphers",
		.type = CONFIG_T_STRING,
		.max = CONFIG_LINE_MAX,
	},
	[CONFIG_K_CIPHERSUITES] = {
		.section = "tls", .name = "ciphersuites",
		.type = CONFIG_T_STRING,
		.max = CONFIG_LINE_MAX,
	},
	[CONFIG_K_CRL_FILE] = {
		.section = "tls", .name = "crl_file",
		.type = CONFIG_T_PATH,
	},
	[CONFIG_K_WATCH] = {
		.section = "tls", .name = "watch",
		.type = CONFIG_T_BOOL,
		.dflt = "no",
	},
	[CONFIG_K_RESUMPTION] = {
		.section = "tls", .name = "session_resumption",
		.type = CONFIG_T_BOOL,
		.dflt = "yes",
	},
	[CONFIG_K_USERNAME] = {
		.section = "auth", .name = "username",
		.type = CONFIG_T_CRED,
		.max = CONFIG_MAX_CRED_LEN,
	},
	[CONFIG_K_PASSWORD_FILE] = {
		.section = "auth", .name = "password_file",
		.type = CONFIG_T_PATH,
	},
	[CONFIG_K_AUTHZID] = {
		.section = "auth", .name = "authzid",
		.type = CONFIG_T_CRED,
		.max = CONFIG_MAX_CRED_LEN,
	},
	[CONFIG_K_CLIENT_AUTH] = {
		.section = "auth", .name = "client_auth",
		.type = CONFIG_T_ENUM,
		.choices = config_client_auth_choices,
		.dflt = "none",
	},
	[CONFIG_K_LEVEL] = {
		.section = "log", .name = "level",
		.type = CONFIG_T_ENUM,
		.choices = config_level_choices,
		.dflt = "info",
	},
	[CONFIG_K_LOG_FORMAT] = {
		.section = "log", .name = "format",
		.type = CONFIG_T_ENUM,
		.choices = config_format_choices,
		.dflt = "text",
	},
	[CONFIG_K_LOG_TARGET] = {
		.section = "log", .name = "target",
		.type = CONFIG_T_ENUM,
		.choices = config_target_choices,
		.dflt = "stderr",
	},
	[CONFIG_K_ADMIN_ADDRESS] = {
		.section = "admin", .name = "address",
		.type = CONFIG_T_LISTEN,
	},
	[CONFIG_K_ALLOW_CORE_DUMPS] = {
		.section = "daemon", .name = "allow_core_dumps",
		.type = CONFIG_T_BOOL,
		.dflt = "no",
	},
};

static void	config_error(struct config_parse *, unsigned,
		    const struct config_key *, const char *, ...)
		    __attribute__((format(printf, 4, 5)));

/* Print a message and abort: vasprintf() ran out of memory. */
static void __attribute__((noreturn))
config_oom(void)
{
	fprintf(stderr, "cqltunnel: config: out of memory\n");
	abort();
}

/* Append one formatted message to errs. */
void
config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;
	int	 rc;

	if (errs == NULL)
		return;
	if (errs->n >= CONFIG_MAX_ERRORS) {
		errs->more++;
		return;
	}
	va_start(ap, fmt);
	rc = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (rc == -1)
		config_oom();
	if (errs->n == errs->cap) {
		if (errs->cap > SIZE_MAX / 2 / sizeof(*errs->v))
			config_oom();
		errs->cap = errs->cap == 0 ? 8 : errs->cap * 2;
		errs->v = util_xrealloc(errs->v, errs->cap * sizeof(*errs->v));
	}
	errs->v[errs->n++] = msg;
}

/* Free every message and empty the list. */
void
config_errors_free(struct config_errors *errs)
{
	size_t	 i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->v[i]);
	free(errs->v);
	errs->v = NULL;
	errs->n = errs->cap = errs->more = 0;
}

/*
 * Copy ${s} into ${buf}, escaping unprintable bytes, quotes and
 * backslashes, and cutting it short after 64 bytes; returns ${buf}.
 */
static const char *
config_escape(const char *s, char *buf, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 o = 0, i;

	for (i = 0; u[i] != '\0' && o + 8 < len; i++) {
		if (i == 64) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (u[i] == '"' || u[i] == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)u[i];
		} else if (u[i] >= 0x20 && u[i] < 0x7f)
			buf[o++] = (char)u[i];
		else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[u[i] >> 4];
			buf[o++] = hex[u[i] & 0xf];
		}
	}
	buf[o] = '\0';
	return (buf);
}

/* Like config_escape(), in double quotes. */
static const char *
config_quote(const char *s, char *buf, size_t len)
{
	char	 tmp[CONFIG_QUOTE_MAX];

	snprintf(buf, len, "\"%s\"", config_escape(s, tmp, sizeof(tmp)));
	return (buf);
}

/*
 * Add an error at ${line} (0: no line) of the file, naming key ${k} if it
 * is not NULL.
 */
static void
config_error(struct config_parse *p, unsigned line,
    const struct config_key *k, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg, at[32] = "", key[128] = "";

	p->nerrs++;
	if (p->errs->n >= CONFIG_MAX_ERRORS) {
		p->errs->more++;	/* not kept: spare the formatting */
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		config_oom();
	va_end(ap);
	if (line != 0)
		snprintf(at, sizeof(at), ":%u", line);
	if (k != NULL)
		snprintf(key, sizeof(key), " [%s] %s:", k->section, k->name);
	config_errors_add(p->errs, "%s%s:%s %s", p->path, at, key, msg);
	free(msg);
}

/* Remember that ${line} has a syntax error already reported. */
static void
config_syntax_add(struct config_parse *p, unsigned line)
{
	p->syntax = util_xrealloc(p->syntax,
	    (p->nsyntax + 1) * sizeof(*p->syntax));
	p->syntax[p->nsyntax++] = line;
}

/* True if a syntax error at ${line} has been reported. */
static bool
config_syntax_seen(const struct config_parse *p, unsigned line)
{
	size_t	 i;

	for (i = 0; i < p->nsyntax; i++) {
		if (p->syntax[i] == line)
			return (true);
	}
	return (false);
}

/* True if ${name} is one of our sections. */
static bool
config_section_known(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(config_sections) / sizeof(config_sections[0]);
	    i++) {
		if (strcmp(name, config_sections[i]) == 0)
			return (true);
	}
	return (false);
}

/* The key ${name} in ${section} (any section if NULL), or NULL. */
static const struct config_key *
config_key_find(const char *section, const char *name)
{
	size_t	 i;

	for (i = 0; i < CONFIG_K_COUNT; i++) {
		if ((section == NULL ||
		    strcmp(config_keys[i].section, section) == 0) &&
		    strcmp(config_keys[i].name, name) == 0)
			return (&config_keys[i]);
	}
	return (NULL);
}

/* Write the names of ${section}'s keys, comma separated, into ${buf}. */
static void
config_key_list(const char *section, char *buf, size_t len)
{
	size_t	 i, o = 0;
	int	 n;

	buf[0] = '\0';
	for (i = 0; i < CONFIG_K_COUNT; i++) {
		if (strcmp(config_keys[i].section, section) != 0)
			continue;
		n = snprintf(buf + o, len - o, "%s%s", o == 0 ? "" : ", ",
		    config_keys[i].name);
		if (n < 0 || (size_t)n >= len - o)
			return;
		o += (size_t)n;
	}
}

/* Write "a, b or c" for the listed names of ${choices} into ${buf}. */
static void
config_choice_list(const struct config_choice *choices, char *buf,
    size_t len)
{
	size_t	 i, n = 0, k = 0, o = 0;
	int	 w;

	for (i = 0; choices[i].name != NULL; i++)
		n += !choices[i].alias;
	buf[0] = '\0';
	for (i = 0; choices[i].name != NULL; i++) {
		if (choices[i].alias)
			continue;
		k++;
		w = snprintf(buf + o, len - o, "%s%s",
		    k == 1 ? "" : (k == n ? " or " : ", "), choices[i].name);
		if (w < 0 || (size_t)w >= len - o)
			return;
		o += (size_t)w;
	}
}

/* Format a duration in the largest unit that is exact. */
static const char *
config_fmt_duration(uint64_t ms, char *buf, size_t len)
{
	if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
	else if (ms != 0 && ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	return (buf);
}

/* Format a size in the largest binary unit that is exact. */
static const char *
config_fmt_size(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "", "KiB", "MiB", "GiB" };
	size_t	 u = 0;

	while (u < 3 && n != 0 && n % 1024 == 0) {
		n /= 1024;
		u++;
	}
	snprintf(buf, len, "%llu%s", (unsigned long long)n, units[u]);
	return (buf);
}

/* True if ${s} has a control byte (below 0x20, or DEL). */
static bool
config_has_control(const char *s, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			return (true);
	}
	return (false);
}

/*
 * The directory that relative paths in ${path} are resolved against,
 * absolute when the working directory is known.
 */
static char *
config_dir(const char *path)
{
	const char	*slash;
	char		*cwd, *dir;
	size_t		 n;

	slash = strrchr(path, '/');
	if (slash == path)
		return (util_xstrdup("/"));
	n = slash == NULL ? 0 : (size_t)(slash - path);
	if (n == 1 && path[0] == '.')
		n = 0;			/* "./cqltunnel.ini" */
	if (path[0] == '/') {
		dir = util_xmalloc(n + 1);
		memcpy(dir, path, n);
		dir[n] = '\0';
		return (dir);
	}
	if ((cwd = getcwd(NULL, 0)) == NULL) {
		/* Fall back to a relative base; right while cwd stays. */
		if (n == 0)
			return (util_xstrdup("."));
		dir = util_xmalloc(n + 1);
		memcpy(dir, path, n);
		dir[n] = '\0';
		return (dir);
	}
	if (n == 0)
		return (cwd);
	if (asprintf(&dir, "%s%s%.*s", cwd,
	    strcmp(cwd, "/") == 0 ? "" : "/", (int)n, path) == -1)
		config_oom();
	free(cwd);
	return (dir);
}

/* Join ${value} to the config's directory unless it is absolute. */
static char *
config_path(const struct config_parse *p, const char *value)
{
	char		*s;
	const char	*creds;
	size_t		 n;

	/* systemd credentials: %credentials%/NAME. */
	if (strncmp(value, CONFIG_CREDENTIALS, strlen(CONFIG_CREDENTIALS)) ==
	    0) {
		if ((creds = getenv("CREDENTIALS_DIRECTORY")) == NULL)
			return (NULL);
		if (asprintf(&s, "%s/%s", creds,
		    value + strlen(CONFIG_CREDENTIALS)) == -1)
			config_oom();
		return (s);
	}

	if (value[0] == '/')
		return (util_xstrdup(value));
	n = strlen(p->dir);
	if (asprintf(&s, "%s%s%s", p->dir,
	    n > 0 && p->dir[n - 1] == '/' ? "" : "/", value) == -1)
		config_oom();
	return (s);
}

/* The string member of ${c} that key ${id} is stored in. */
static char **
config_string_field(struct config *c, enum config_key_id id)
{
	switch (id) {
	case CONFIG_K_CA_FILE:
		return (&c->ca_file);
	case CONFIG_K_CERT_FILE:
		return (&c->cert_file);
	case CONFIG_K_KEY_FILE:
		return (&c->key_file);
	case CONFIG_K_KEY_PASSWORD_FILE:
		return (&c->key_password_file);
	case CONFIG_K_SERVER_NAME:
		return (&c->server_name);
	case CONFIG_K_CIPHERS:
		return (&c->ciphers);
	case CONFIG_K_CIPHERSUITES:
		return (&c->ciphersuites);
	case CONFIG_K_CRL_FILE:
		return (&c->crl_file);
	case CONFIG_K_USERNAME:
		return (&c->username);
	case CONFIG_K_PASSWORD_FILE:
		return (&c->password_file);
	case CONFIG_K_AUTHZID:
		return (&c->authzid);
	case CONFIG_K_LOCAL_DC:
		return (&c->local_dc);
	default:
		break;
	}
	fprintf(stderr, "cqltunnel: config: key %d is not a string\n",
	    (int)id);
	abort();
}

/* Store number, boolean or enumeration ${v} of key ${id} in ${c}. */
static void
config_store_number(struct config *c, enum config_key_id id, uint64_t v)
{
	switch (id) {
	case CONFIG_K_ALLOW_REMOTE:
		c->allow_remote = v != 0;
		break;
	case CONFIG_K_WATCH:
		c->watch = v != 0;
		break;
	case CONFIG_K_RESUMPTION:
		c->resumption = v != 0;
		break;
	case CONFIG_K_REUSE_CONNECTIONS:
		c->reuse_connections = v != 0;
		break;
	case CONFIG_K_REUSE_MAX_IDLE:
		c->reuse_max_idle = (unsigned)v;
		break;
	case CONFIG_K_REUSE_IDLE_TIMEOUT:
		c->reuse_idle_timeout_ms = (unsigned)v;
		break;
	case CONFIG_K_INSECURE_SKIP_VERIFY:
		c->insecure_skip_verify = v != 0;
		break;
	case CONFIG_K_ALLOW_CORE_DUMPS:
		c->allow_core_dumps = v != 0;
		break;
	case CONFIG_K_UNIX_MODE:
		c->unix_mode = (unsigned)v;
		break;
	case CONFIG_K_MAX_CONNECTIONS:
		c->max_connections = (unsigned)v;
		break;
	case CONFIG_K_WORKERS:
		c->workers = (unsigned)v;
		break;
	case CONFIG_K_DRAIN_TIMEOUT:
		c->drain_timeout_ms = (unsigned)v;
		break;
	case CONFIG_K_BUSY_POLL:
		c->busy_poll_ms = (unsigned)v;
		break;
	case CONFIG_K_MAX_FRAME_SIZE:
		c->max_frame_size = (uint32_t)v;
		break;
	case CONFIG_K_CONNECT_TIMEOUT:
		c->connect_timeout_ms = (unsigned)v;
		break;
	case CONFIG_K_HANDSHAKE_TIMEOUT:
		c->handshake_timeout_ms = (unsigned)v;
		break;
	case CONFIG_K_VERIFY:
		c->verify = (enum config_verify)v;
		break;
	case CONFIG_K_MIN_VERSION:
		c->min_version = (enum config_tls_version)v;
		break;
	case CONFIG_K_CLIENT_AUTH:
		c->client_auth = (enum config_client_auth)v;
		break;
	case CONFIG_K_TOPOLOGY:
		c->topology = (enum config_topology)v;
		break;
	case CONFIG_K_LEVEL:
		c->log_level = (enum log_level)v;
		break;
	case CONFIG_K_LOG_FORMAT:
		c->log_format = (enum log_format)v;
		break;
	case CONFIG_K_LOG_TARGET:
		c->log_target = (enum log_target)v;
		break;
	default:
		fprintf(stderr, "cqltunnel: config: key %d is not a number\n",
		    (int)id);
		abort();
	}
}

/* Parse "[listen] address": an IP literal, loopback checked later. */
static void
config_set_listen(struct config_parse *p, const struct config_key *k,
    unsigned line, const char *value)
{
	bool		 admin = k == &config_keys[CONFIG_K_ADMIN_ADDRESS];
	char		 host[CONFIG_HOST_MAX], q[CONFIG_QUOTE_MAX];
	char		*path;
	const char	*why;
	uint16_t	 port;

	if (!admin && strncmp(value, "unix:", 5) == 0) {
		if (value[5] == '\0') {
			config_error(p, line, k, "unix: needs a socket path "
			    "(unix:/run/cqltunnel/cql.sock)");
			return;
		}
		path = config_path(p, value + 5);
		if (path == NULL || strlen(path) > CONFIG_UNIX_PATH_MAX) {
			config_error(p, line, k, "socket path %s is %s",
			    config_quote(value + 5, q, sizeof(q)), path == NULL ?
			    "not usable here" : "longer than 107 bytes");
			free(path);
			return;
		}
		free(p->c->listen_unix);
		free(p->c->listen_host);
		p->c->listen_host = NULL;
		p->c->listen_unix = path;
		p->c->listen_port = 0;
		return;
	}
	if (util_split_hostport(value, host, sizeof(host), &port,
	    admin ? CONFIG_ADMIN_PORT : CONFIG_DEFAULT_PORT, &why) == -1) {
		config_error(p, line, k, "invalid address %s: %s",
		    config_quote(value, q, sizeof(q)), why);
		return;
	}
	if (!util_is_ip_literal(host)) {
		config_error(p, line, k, "%s is not an IP address literal "
		    "(use 127.0.0.1:port or [::1]:port)",
		    config_quote(host, q, sizeof(q)));
		return;
	}
	if (admin) {
		free(p->c->admin_host);
		p->c->admin_host = util_xstrdup(host);
		p->c->admin_port = port;
		return;
	}
	free(p->c->listen_unix);
	p->c->listen_unix = NULL;
	free(p->c->listen_host);
	p->c->listen_host = util_xstrdup(host);
	p->c->listen_port = port;
}

/*
 * Resolve one user (${group} false) or group: a decimal id, or a name
 * looked up now.  Returns 0 with the id in *id, or -1 with a reason in
 * ${why}.
 */
static int
config_resolve_id(const char *name, bool group, uint32_t *id, char *why,
    size_t whylen)
{
	struct passwd	 pw, *pwp = NULL;
	struct group	 gr, *grp = NULL;
	char		 buf[16384];
	uint64_t	 v;
	int		 rc;

	if (isdigit((unsigned char)name[0])) {
		/* (uid_t)-1 means "no change" to chown(2): never an id. */
		if (util_parse_uint(name, 0, UINT32_MAX - 1, &v) == -1) {
			snprintf(why, whylen, "not a valid %s id",
			    group ? "group" : "user");
			return (-1);
		}
		*id = (uint32_t)v;
		return (0);
	}
	if (group) {
		rc = getgrnam_r(name, &gr, buf, sizeof(buf), &grp);
		if (rc == 0 && grp != NULL) {
			*id = (uint32_t)grp->gr_gid;
			return (0);
		}
	} else {
		rc = getpwnam_r(name, &pw, buf, sizeof(buf), &pwp);
		if (rc == 0 && pwp != NULL) {
			*id = (uint32_t)pwp->pw_uid;
			return (0);
		}
	}
	if (rc != 0 && rc != ENOENT && rc != ESRCH)
		snprintf(why, whylen, "cannot look it up: %s", strerror(rc));
	else
		snprintf(why, whylen, "no such %s", group ? "group" : "user");
	return (-1);
}

/* Parse a list of users or groups and append their ids. */
static void
config_set_ids(struct config_parse *p, const struct config_key *k,
    unsigned line, const char *value, bool group)
{
	struct config	*c = p->c;
	char		*list, *item, *next, *end;
	char		 q[CONFIG_QUOTE_MAX], why[128];
	uint32_t	 id;
	size_t		*n = group ? &c->nallow_gids : &c->nallow_uids;

	list = util_xstrdup(value);
	for (item = list; item != NULL; item = next) {
		if ((next = strchr(item, ',')) != NULL)
			*next++ = '\0';
		while (isspace((unsigned char)*item))
			item++;
		end = item + strlen(item);
		while (end > item && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*item == '\0') {
			config_error(p, line, k, "empty entry in the list "
			    "(separate entries with one comma)");
			continue;
		}
		if (config_resolve_id(item, group, &id, why, sizeof(why)) ==
		    -1) {
			config_error(p, line, k, "%s: %s",
			    config_quote(item, q, sizeof(q)), why);
			continue;
		}
		if (*n == CONFIG_MAX_IDS) {
			config_error(p, line, k, "more than %d entries",
			    CONFIG_MAX_IDS);
			break;
		}
		if (group) {
			c->allow_gids = util_xrealloc(c->allow_gids,
			    (*n + 1) * sizeof(*c->allow_gids));
			c->allow_gids[(*n)++] = (gid_t)id;
		} else {
			c->allow_uids = util_xrealloc(c->allow_uids,
			    (*n + 1) * sizeof(*c->allow_uids));
			c->allow_uids[(*n)++] = (uid_t)id;
		}
	}
	c->access_control = true;
	free(list);
}

/* Parse "[listen] unix_owner" or "unix_group". */
static void
config_set_owner(struct config_parse *p, const struct config_key *k,
    unsigned line, const char *value, bool group)
{
	char		 q[CONFIG_QUOTE_MAX], why[128];
	uint32_t	 id;

	if (config_resolve_id(value, group, &id, why, sizeof(why)) == -1) {
		config_error(p, line, k, "%s: %s",
		    config_quote(value, q, sizeof(q)), why);
		return;
	}
	if (group)
		p->c->unix_group = (gid_t)id;
	else
		p->c->unix_owner = (uid_t)id;
}

/* Parse an octal file mode such as "0660". */
static int
config_parse_mode(const char *value, uint64_t max, uint64_t *out)
{
	const char	*s;
	uint64_t	 v = 0;

	for (s = value; *s != '\0'; s++) {
		if (*s < '0' || *s > '7' || s - value > 4)
			return (-1);
		v = v * 8 + (uint64_t)(*s - '0');
	}
	if (v > max)
		return (-1);
	*out = v;
	return (0);
}

/* Parse a list of contact points and append them. */
static void
config_set_endpoints(struct config_parse *p, const struct config_key *k,
    unsigned line, const char *value)
{
	struct config		*c = p->c;
	struct config_endpoint	*e;
	char			*list, *item, *next, *end;
	char			 host[CONFIG_HOST_MAX], q[CONFIG_QUOTE_MAX];
	const char		*why;
	uint16_t		 port;

	list = util_xstrdup(value);
	for (item = list; item != NULL; item = next) {
		if ((next = strchr(item, ',')) != NULL)
			*next++ = '\0';
		while (isspace((unsigned char)*item))
			item++;
		end = item + strlen(item);
		while (end > item && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*item == '\0') {
			config_error(p, line, k, "empty entry in the list "
			    "(separate contact points with one comma)");
			continue;
		}
		if (util_split_hostport(item, host, sizeof(host), &port,
		    CONFIG_DEFAULT_PORT, &why) == -1) {
			config_error(p, line, k, "invalid contact point %s: %s",
			    config_quote(item, q, sizeof(q)), why);
			continue;
		}
		c->contact_points = util_xrealloc(c->contact_points,
		    (c->ncontact_points + 1) * sizeof(*c->contact_points));
		e = &c->contact_points[c->ncontact_points++];
		e->host = util_xstrdup(host);
		e->port = port;
	}
	free(list);
}

/*
 * Parse "[cluster] translate_prefix": an IPv4 network inside 127.0.0.0/8
 * with room for at least two addresses.
 */
static void
config_set_prefix(struct config_parse *p, const struct config_key *k,
    unsigned line, const char *value)
{
	char		 q[CONFIG_QUOTE_MAX], addr[INET_ADDRSTRLEN];
	const char	*slash = strchr(value, '/');
	struct in_addr	 in;
	uint64_t	 bits;
	uint32_t	 net, mask;
	size_t		 n;

	n = slash != NULL ? (size_t)(slash - value) : 0;
	if (slash == NULL || n >= sizeof(addr) ||
	    util_parse_uint(slash + 1, 8, 30, &bits) == -1) {
		config_error(p, line, k, "invalid value %s (expected an IPv4 "
		    "network such as 127.0.1.0/24, prefix length 8 to 30)",
		    config_quote(value, q, sizeof(q)));
		return;
	}
	memcpy(addr, value, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, &in) != 1) {
		config_error(p, line, k, "%s is not an IPv4 address",
		    config_quote(addr, q, sizeof(q)));
		return;
	}
	net = ntohl(in.s_addr);
	mask = (uint32_t)(0xFFFFFFFFu << (32 - bits));
	if ((net & 0xFF000000u) != 0x7F000000u) {
		config_error(p, line, k, "%s is not a loopback network (use "
		    "one inside 127.0.0.0/8)", config_quote(value, q,
		    sizeof(q)));
		return;
	}
	if ((net & ~mask) != 0) {
		config_error(p, line, k, "%s has host bits set (did you mean "
		    "a network address?)", config_quote(value, q, sizeof(q)));
		return;
	}
	p->c->translate_net = net;
	p->c->translate_bits = (unsigned)bits;
}

/* Parse ${value} for key ${k}, given at ${line} (0: the default). */
static void
config_set(struct config_parse *p, const struct config_key *k,
    unsigned line, const char *value)
{
	enum config_key_id	 id = (enum config_key_id)(k - config_keys);
	char			 q[CONFIG_QUOTE_MAX], list[128], lo[32], hi[32];
	char			**sp;
	uint64_t		 v;
	bool			 b;
	size_t			 i, len = strlen(value);

	if (len == 0) {
		config_error(p, line, k, "empty value (to use the default, "
		    "comment the key out)");
		return;
	}
	if (config_has_control(value, len)) {
		config_error(p, line, k, "value contains a control character");
		return;
	}
	switch (k->type) {
	case CONFIG_T_LISTEN:
		config_set_listen(p, k, line, value);
		return;
	case CONFIG_T_ENDPOINTS:
		config_set_endpoints(p, k, line, value);
		return;
	case CONFIG_T_BOOL:
		if (util_parse_bool(value, &b) == -1) {
			config_error(p, line, k, "invalid value %s (expected "
			    "yes or no)", config_quote(value, q, sizeof(q)));
			return;
		}
		config_store_number(p->c, id, b);
		return;
	case CONFIG_T_UINT:
		if (id == CONFIG_K_WORKERS && strcmp(value, "auto") == 0) {
			config_store_number(p->c, id, 0);
			return;
		}
		if (util_parse_uint(value, k->min, k->max, &v) == -1) {
			config_error(p, line, k, "invalid value %s (expected "
			    "%sa whole number from %llu to %llu)",
			    config_quote(value, q, sizeof(q)),
			    id == CONFIG_K_WORKERS ? "\"auto\" or " : "",
			    (unsigned long long)k->min,
			    (unsigned long long)k->max);
			return;
		}
		config_store_number(p->c, id, v);
		return;
	case CONFIG_T_DURATION:
		config_fmt_duration(k->min, lo, sizeof(lo));
		config_fmt_duration(k->max, hi, sizeof(hi));
		if (util_parse_duration_ms(value, &v) == -1) {
			config_error(p, line, k, "invalid duration %s "
			    "(expected a number with unit ms, s or m, "
			    "from %s to %s)", config_quote(value, q, sizeof(q)),
			    lo, hi);
			return;
		}
		if (v < k->min || v > k->max) {
			config_error(p, line, k, "duration %s is out of range "
			    "(expected %s to %s)",
			    config_quote(value, q, sizeof(q)), lo, hi);
			return;
		}
		config_store_number(p->c, id, v);
		return;
	case CONFIG_T_SIZE:
		config_fmt_size(k->min, lo, sizeof(lo));
		config_fmt_size(k->max, hi, sizeof(hi));
		if (util_parse_size(value, &v) == -1) {
			config_error(p, line, k, "invalid size %s (expected a "
			    "number of bytes with optional unit KiB, MiB or "
			    "GiB, from %s to %s)",
			    config_quote(value, q, sizeof(q)), lo, hi);
			return;
		}
		if (v < k->min || v > k->max) {
			config_error(p, line, k, "size %s is out of range "
			    "(expected %s to %s)",
			    config_quote(value, q, sizeof(q)), lo, hi);
			return;
		}
		config_store_number(p->c, id, v);
		return;
	case CONFIG_T_ENUM:
		for (i = 0; k->choices[i].name != NULL; i++) {
			if (strcasecmp(value, k->choices[i].name) == 0) {
				config_store_number(p->c, id,
				    (uint64_t)k->choices[i].value);
				return;
			}
		}
		config_choice_list(k->choices, list, sizeof(list));
		config_error(p, line, k, "invalid value %s (expected %s)",
		    config_quote(value, q, sizeof(q)), list);
		return;
	case CONFIG_T_STRING:
		if (len > k->max) {
			config_error(p, line, k, "value is longer than %llu "
			    "bytes", (unsigned long long)k->max);
			return;
		}
		sp = config_string_field(p->c, id);
		free(*sp);
		*sp = util_xstrdup(value);
		return;
	case CONFIG_T_CRED:
		/* Not echoed: a misplaced secret must not reach a log. */
		if (len > k->max) {
			config_error(p, line, k, "value is longer than %llu "
			    "bytes", (unsigned long long)k->max);
			return;
		}
		sp = config_string_field(p->c, id);
		free(*sp);
		*sp = util_xstrdup(value);
		return;
	case CONFIG_T_PREFIX:
		config_set_prefix(p, k, line, value);
		return;
	case CONFIG_T_USERS:
	case CONFIG_T_GROUPS:
		config_set_ids(p, k, line, value, k->type == CONFIG_T_GROUPS);
		return;
	case CONFIG_T_USER:
	case CONFIG_T_GROUP:
		config_set_owner(p, k, line, value, k->type == CONFIG_T_GROUP);
		return;
	case CONFIG_T_MODE:
		if (config_parse_mode(value, k->max, &v) == -1) {
			config_error(p, line, k, "invalid mode %s (expected "
			    "an octal file mode from 0 to %03llo, such as "
			    "0660)", config_quote(value, q, sizeof(q)),
			    (unsigned long long)k->max);
			return;
		}
		config_store_number(p->c, id, v);
		return;
	case CONFIG_T_PATH:
		if ((k->flags & CONFIG_SYSTEM) && strcmp(value, "system") == 0) {
			p->c->ca_system = true;
			return;
		}
		sp = config_string_field(p->c, id);
		free(*sp);
		if ((*sp = config_path(p, value)) == NULL)
			config_error(p, line, k, "%s needs $CREDENTIALS_DIRECTORY"
			    ", which systemd sets for services with "
			    "LoadCredential=; it is not set here",
			    CONFIG_CREDENTIALS);
		return;
	}
}

/* Report a key given where no key belongs, or one we do not know. */
static void
config_unknown_key(struct config_parse *p, const char *section,
    const char *name)
{
	const struct config_key	*other;
	char			 n[CONFIG_QUOTE_MAX], list[256];

	config_escape(name, n, sizeof(n));
	other = config_key_find(NULL, name);
	if (*section == '\0') {
		if (other != NULL)
			config_error(p, p->line, NULL, "%s: key is outside any "
			    "section (put it under [%s])", n, other->section);
		else
			config_error(p, p->line, NULL, "%s: key is outside any "
			    "section", n);
		return;
	}
	if (strcmp(section, "auth") == 0 && strcmp(name, "password") == 0) {
		config_error(p, p->line, NULL, "[auth] password: unknown key; "
		    "the password is never written here: put it in a file "
		    "readable only by the service user and set "
		    "password_file");
		return;
	}
	if (other != NULL) {
		config_error(p, p->line, NULL, "[%s] %s: unknown key in this "
		    "section (it belongs in [%s])", section, n, other->section);
		return;
	}
	config_key_list(section, list, sizeof(list));
	config_error(p, p->line, NULL, "[%s] %s: unknown key (expected one "
	    "of: %s)", section, n, list);
}

/* inih calls this for every key = value (and continuation) line. */
static int
config_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct config_parse	*p = arg;
	const struct config_key	*k;
	char			 buf[CONFIG_LINE_MAX + 1];
	char			*s;
	size_t			 i;

	p->handled = true;
	if (name == NULL)
		return (1);	/* a library built to report new sections */
	p->have_prev = name[0] != '\0';
	if (p->kind == CONFIG_LINE_CONT) {
		/* Older inih keeps an inline comment on a continuation. */
		snprintf(buf, sizeof(buf), "%s", value != NULL ? value : "");
		for (i = 1; buf[i] != '\0'; i++) {
			if (buf[i] == ';' && isspace((unsigned char)buf[i - 1])) {
				buf[i] = '\0';
				break;
			}
		}
		for (s = buf + strlen(buf); s > buf &&
		    isspace((unsigned char)s[-1]); s--)
			s[-1] = '\0';
		value = buf;
	}
	if (*section != '\0' && !config_section_known(section))
		return (1);	/* the reader reported the section */
	if (*name == '\0') {
		config_error(p, p->line, NULL, "syntax error: no key name "
		    "before \"=\"");
		return (1);
	}
	if (*section == '\0' || (k = config_key_find(section, name)) == NULL) {
		config_unknown_key(p, section, name);
		return (1);
	}
	if (value == NULL) {
		config_error(p, p->line, k, "missing \"=\" and value");
		return (1);
	}
	i = (size_t)(k - config_keys);
	if (p->lines[i] != 0 && (k->flags & CONFIG_REPEAT) == 0) {
		config_error(p, p->line, k, "already set at line %u%s",
		    p->lines[i], p->kind == CONFIG_LINE_CONT ? " (this "
		    "indented line continues it; remove the indentation or "
		    "the line)" : "");
		return (1);
	}
	if (p->lines[i] == 0)
		p->lines[i] = p->line;
	config_set(p, k, p->line, value);
	return (1);	/* errors are ours; inih's result is syntax only */
}

/*
 * Work out how inih will read ${line} (the current line, ending "\n"), as
 * it does: comment, continuation, section header or key = value.  Report
 * unknown sections and headers without "]" here.
 */
static void
config_classify(struct config_parse *p, const char *line)
{
	const char	*s = line, *e;
	char		 name[CONFIG_LINE_MAX + 1], n[CONFIG_QUOTE_MAX];
	bool		 was_space = false;

	p->kind = CONFIG_LINE_NONE;
	p->handled = false;
	if (p->line == 1 && (unsigned char)s[0] == 0xef &&
	    (unsigned char)s[1] == 0xbb && (unsigned char)s[2] == 0xbf)
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == ';' || *s == '#')
		return;
	if (s > line && p->have_prev) {
		p->kind = CONFIG_LINE_CONT;
		return;
	}
	if (*s != '[') {
		p->kind = CONFIG_LINE_KEY;
		return;
	}
	/* As inih: up to "]", or up to an inline comment. */
	for (e = s + 1; *e != '\0' && *e != ']' &&
	    !(was_space && *e == ';'); e++)
		was_space = isspace((unsigned char)*e);
	if (*e != ']') {
		config_error(p, p->line, NULL, "syntax error: missing \"]\" "
		    "after the section name");
		config_syntax_add(p, p->line);
		return;
	}
	p->have_prev = false;
	memcpy(name, s + 1, (size_t)(e - s - 1));
	name[e - s - 1] = '\0';
	if (!config_section_known(name))
		config_error(p, p->line, NULL, "[%s]: unknown section "
		    "(expected listen, cluster, tls, auth, log, admin or "
		    "daemon)", config_escape(name, n, sizeof(n)));
}

/* Check that inih passed the previous line on if it had to. */
static void
config_line_done(struct config_parse *p)
{
	if (p->kind != CONFIG_LINE_NONE && !p->handled) {
		config_error(p, p->line, NULL, "syntax error: expected "
		    "\"key = value\", \"[section]\" or a comment");
		config_syntax_add(p, p->line);
	}
	p->kind = CONFIG_LINE_NONE;
}

/*
 * The ini_reader: like fgets(), but always returns one whole line, so
 * that inih's line count stays ours.  An over-long line, or one with a
 * NUL byte, is reported and handed on as an empty line.
 */
static char *
config_reader(char *str, int num, void *arg)
{
	struct config_parse	*p = arg;
	size_t			 limit, total = 0;
	bool			 nul = false;
	int			 ch = EOF, prev = EOF;

	config_line_done(p);
	if (p->stop || num < 3)
		return (NULL);
	limit = (size_t)num - 2;
	if (limit > CONFIG_LINE_MAX)
		limit = CONFIG_LINE_MAX;
	while ((ch = getc(p->f)) != EOF) {
		if (++p->nread > CONFIG_FILE_MAX) {
			config_error(p, 0, NULL, "file is larger than %d "
			    "bytes", CONFIG_FILE_MAX);
			p->stop = true;
			return (NULL);
		}
		if (ch == '\n')
			break;
		if (ch == '\0')
			nul = true;
		/* Keep one byte past the limit: it may be a '\r'. */
		if (total <= limit)
			str[total] = (char)ch;
		total++;
		prev = ch;
	}
	if (ch == EOF && ferror(p->f)) {
		config_error(p, 0, NULL, "cannot read: %s", strerror(errno));
		p->stop = true;
		return (NULL);
	}
	if (ch == EOF && total == 0)
		return (NULL);
	p->line++;
	if (p->nerrs >= CONFIG_MAX_ERRORS) {
		config_error(p, p->line, NULL, "too many errors; stopped "
		    "reading here");
		p->stop = true;
		return (NULL);
	}
	if (prev == '\r')
		total--;		/* CRLF */
	if (total > limit) {
		config_error(p, p->line, NULL, "line too long (%zu bytes; at "
		    "most %zu)", total, limit);
		total = 0;
	} else if (nul) {
		config_error(p, p->line, NULL, "line contains a NUL byte");
		total = 0;
	}
	str[total] = '\n';
	str[total + 1] = '\0';
	config_classify(p, str);
	return (str);
}

/* Apply the defaults of every key the file left out. */
static void
config_defaults(struct config_parse *p)
{
	size_t	 i;

	for (i = 0; i < CONFIG_K_COUNT; i++) {
		if (p->lines[i] == 0 && config_keys[i].dflt != NULL)
			config_set(p, &config_keys[i], 0, config_keys[i].dflt);
	}
}

/* Report key ${id} if it is given without ${needed}. */
static void
config_requires(struct config_parse *p, enum config_key_id id,
    enum config_key_id needed)
{
	if (p->lines[id] != 0 && p->lines[needed] == 0)
		config_error(p, p->lines[id], &config_keys[id], "requires "
		    "%s, which is not set", config_keys[needed].name);
}

/* True if the IP literal ${host} is a loopback address. */
static bool
config_is_loopback(const char *host)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		return (util_is_loopback((struct sockaddr *)&sin));
	}
	if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		return (util_is_loopback((struct sockaddr *)&sin6));
	}
	return (false);
}

/* Read the password named by [auth] password_file. */
static void
config_read_password(struct config_parse *p)
{
	struct config		*c = p->c;
	const struct config_key	*k = &config_keys[CONFIG_K_PASSWORD_FILE];
	unsigned		 line = p->lines[CONFIG_K_PASSWORD_FILE];
	char			 why[256];

	if (util_read_secret_file(c->password_file, &c->password,
	    &c->password_len, CONFIG_MAX_CRED_LEN, why, sizeof(why)) == -1) {
		config_error(p, line, k, "%s: %s", c->password_file, why);
		return;
	}
	if (config_has_control(c->password, c->password_len))
		config_error(p, line, k, "%s: the password contains a "
		    "control character", c->password_file);
}

/* Check the unix: address and access control against the rest. */
static void
config_check_listen(struct config_parse *p)
{
	struct config	*c = p->c;
	const char	*unix_key = NULL;

	if (c->listen_unix == NULL) {
		if (p->lines[CONFIG_K_UNIX_MODE] != 0)
			unix_key = "unix_mode";
		else if (p->lines[CONFIG_K_UNIX_OWNER] != 0)
			unix_key = "unix_owner";
		else if (p->lines[CONFIG_K_UNIX_GROUP] != 0)
			unix_key = "unix_group";
		if (unix_key != NULL)
			config_error(p, p->lines[config_key_find("listen",
			    unix_key) - config_keys], config_key_find("listen",
			    unix_key), "applies to a unix: address only");
	} else {
		if (c->topology == CONFIG_TOPOLOGY_TRANSLATE)
			config_error(p, p->lines[CONFIG_K_ADDRESS],
			    &config_keys[CONFIG_K_ADDRESS], "a unix: address "
			    "needs [cluster] topology = pin: translate mode "
			    "gives every node its own TCP loopback address");
		if (c->allow_remote)
			config_error(p, p->lines[CONFIG_K_ALLOW_REMOTE],
			    &config_keys[CONFIG_K_ALLOW_REMOTE], "applies to "
			    "TCP addresses only (the address is unix:)");
	}
	if (c->access_control && c->listen_host != NULL &&
	    !config_is_loopback(c->listen_host))
		config_error(p, p->lines[p->lines[CONFIG_K_ALLOW_UIDS] != 0 ?
		    CONFIG_K_ALLOW_UIDS : CONFIG_K_ALLOW_GIDS],
		    &config_keys[p->lines[CONFIG_K_ALLOW_UIDS] != 0 ?
		    CONFIG_K_ALLOW_UIDS : CONFIG_K_ALLOW_GIDS], "needs a "
		    "loopback or unix: [listen] address: the owner of a "
		    "connection from another host cannot be known (%s is not "
		    "loopback)", c->listen_host);
}

/* Check what one key alone cannot: presence and keys against keys. */
static void
config_check(struct config_parse *p)
{
	struct config	*c = p->c;
	size_t		 i;

	for (i = 0; i < CONFIG_K_COUNT; i++) {
		if ((config_keys[i].flags & CONFIG_REQUIRED) &&
		    p->lines[i] == 0)
			config_error(p, 0, &config_keys[i],
			    "required key is missing");
	}
	config_requires(p, CONFIG_K_CERT_FILE, CONFIG_K_KEY_FILE);
	config_requires(p, CONFIG_K_KEY_FILE, CONFIG_K_CERT_FILE);
	config_requires(p, CONFIG_K_KEY_PASSWORD_FILE, CONFIG_K_KEY_FILE);
	config_requires(p, CONFIG_K_USERNAME, CONFIG_K_PASSWORD_FILE);
	config_requires(p, CONFIG_K_PASSWORD_FILE, CONFIG_K_USERNAME);
	config_requires(p, CONFIG_K_AUTHZID, CONFIG_K_USERNAME);

	if (c->listen_host != NULL && !c->allow_remote &&
	    !config_is_loopback(c->listen_host))
		config_error(p, p->lines[CONFIG_K_ADDRESS],
		    &config_keys[CONFIG_K_ADDRESS], "%s is not a loopback "
		    "address; anyone who can connect uses the cluster "
		    "credentials, so set allow_remote = yes only if that is "
		    "intended", c->listen_host);
	config_check_listen(p);
	if (c->verify == CONFIG_VERIFY_NONE && !c->insecure_skip_verify)
		config_error(p, p->lines[CONFIG_K_VERIFY],
		    &config_keys[CONFIG_K_VERIFY], "\"none\" turns off "
		    "verification of the node's certificate, so anyone on the "
		    "path can impersonate the cluster and receive the "
		    "injected credentials; to do it anyway, also set "
		    "insecure_skip_verify = yes");
	if (c->insecure_skip_verify && c->verify != CONFIG_VERIFY_NONE)
		config_error(p, p->lines[CONFIG_K_INSECURE_SKIP_VERIFY],
		    &config_keys[CONFIG_K_INSECURE_SKIP_VERIFY], "only "
		    "acknowledges verify = none; remove it");

	if (c->username != NULL && c->password_file != NULL)
		config_read_password(p);
}

/* Record where each key came from, for config_where(). */
static void
config_set_origins(struct config_parse *p)
{
	struct config	*c = p->c;
	size_t		 i;

	c->origins = util_xcalloc(CONFIG_K_COUNT, sizeof(*c->origins));
	c->norigins = CONFIG_K_COUNT;
	for (i = 0; i < CONFIG_K_COUNT; i++) {
		c->origins[i].section = config_keys[i].section;
		c->origins[i].key = config_keys[i].name;
		c->origins[i].line = p->lines[i];
	}
}

/* Parse and check a file; a new config, or NULL with errors added. */
struct config *
config_load(const char *path, struct config_errors *errs)
{
	struct config_errors	 local = { NULL, 0, 0, 0 };
	struct config_parse	 p;
	struct config		*c;
	int			 rc;

	memset(&p, 0, sizeof(p));
	p.errs = errs != NULL ? errs : &local;
	p.path = path;
	c = p.c = util_xcalloc(1, sizeof(*c));
	c->path = util_xstrdup(path);
	c->unix_owner = (uid_t)-1;
	c->unix_group = (gid_t)-1;

	if ((p.f = fopen(path, "re")) == NULL) {
		config_error(&p, 0, NULL, "cannot open: %s", strerror(errno));
		goto out;
	}
	p.dir = config_dir(path);
	rc = ini_parse_stream(config_reader, &p, config_handler, &p);
	config_line_done(&p);
	if (rc > 0 && !config_syntax_seen(&p, (unsigned)rc))
		config_error(&p, (unsigned)rc, NULL, "syntax error");
	else if (rc < 0 && !p.stop)
		config_error(&p, 0, NULL, "cannot parse (inih error %d)", rc);
	fclose(p.f);
	if (p.stop)
		goto out;	/* half a file: "missing" keys would mislead */

	config_defaults(&p);
	config_check(&p);
	config_set_origins(&p);

out:
	free(p.dir);
	free(p.syntax);
	if (p.nerrs > 0) {
		config_free(c);
		c = NULL;
	}
	config_errors_free(&local);
	return (c);
}

/* Wipe the password and let it go; the rest of ${c} stays. */
void
config_forget_password(struct config *c)
{
	if (c == NULL || c->password == NULL)
		return;
	util_wipe(c->password, c->password_len);
	free(c->password);
	c->password = NULL;
	c->password_len = 0;
}

/* Wipe the password and free everything; NULL is a no-op. */
void
config_free(struct config *c)
{
	size_t	 i;

	if (c == NULL)
		return;
	config_forget_password(c);
	free(c->path);
	free(c->listen_host);
	free(c->listen_unix);
	free(c->allow_uids);
	free(c->allow_gids);
	free(c->admin_host);
	for (i = 0; i < c->ncontact_points; i++)
		free(c->contact_points[i].host);
	free(c->contact_points);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->key_password_file);
	free(c->server_name);
	free(c->ciphers);
	free(c->ciphersuites);
	free(c->crl_file);
	free(c->username);
	free(c->password_file);
	free(c->authzid);
	free(c->local_dc);
	free(c->origins);
	util_wipe(c, sizeof(*c));
	free(c);
}

/* Format where a key was set, "file:line: [section] key". */
const char *
config_where(const struct config *c, const char *section, const char *key,
    char *buf, size_t len)
{
	unsigned	 line = 0;
	size_t		 i;

	if (len == 0)
		return (buf);
	for (i = 0; c != NULL && i < c->norigins; i++) {
		if (strcmp(c->origins[i].section, section) == 0 &&
		    strcmp(c->origins[i].key, key) == 0) {
			line = c->origins[i].line;
			break;
		}
	}
	if (line != 0)
		snprintf(buf, len, "%s:%u: [%s] %s", c->path, line, section,
		    key);
	else
		snprintf(buf, len, "%s: [%s] %s",
		    c != NULL ? c->path : "(no config)", section, key);
	return (buf);
}
