/*
 * log: leveled logging to stderr (journald and container runtimes collect
 * it).  Messages are sanitized: control bytes are escaped so that nothing
 * read from the network can forge log lines.  Never log secrets or bodies.
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* log_init(level): set the threshold; routes libevent's own messages in. */
enum log_format {
	LOG_FORMAT_TEXT,	/* "2026-...Z info  message" */
	LOG_FORMAT_JSON,	/* {"ts":..,"level":..,"msg":..} per line */
};

enum log_target {
	LOG_TARGET_STDERR,
	LOG_TARGET_SYSLOG,	/* facility daemon, ident cqltunnel */
};

void	log_init(enum log_level level);
/* log_configure(format, target): where and how lines are written. */
void	log_configure(enum log_format format, enum log_target target);
void	log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* log_level_parse(s, out): "error", "warn", "info", "debug"; 0 or -1. */
int	log_level_parse(const char *s, enum log_level *out);

void	log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_vlog(enum log_level level, const char *fmt, va_list ap)
	    __attribute__((format(printf, 2, 0)));

/*
 * log_openssl_errors(level, prefix): drain the OpenSSL error queue into the
 * log, one line per entry.
 */
void	log_openssl_errors(enum log_level level, const char *prefix);

#endif /* !LOG_H */
