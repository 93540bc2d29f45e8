/*
 * log: leveled, sanitized logging to stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/err.h>

#include "log.h"

/* Set by the main thread (reload), read by worker threads too. */
static _Atomic enum log_level log_level = LOG_LEVEL_INFO;
static _Atomic enum log_format log_format = LOG_FORMAT_TEXT;
static _Atomic enum log_target log_target = LOG_TARGET_STDERR;

static const char *const log_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

/* Forward libevent's own diagnostics into our log. */
static void
log_event_cb(int severity, const char *msg)
{
	switch (severity) {
	case EVENT_LOG_DEBUG:
		log_debug("libevent: %s", msg);
		break;
	case EVENT_LOG_MSG:
		log_info("libevent: %s", msg);
		break;
	case EVENT_LOG_WARN:
		log_warn("libevent: %s", msg);
		break;
	default:
		log_error("libevent: %s", msg);
		break;
	}
}

void
log_init(enum log_level level)
{
	log_level = level;
	event_set_log_callback(log_event_cb);
}

void
log_configure(enum log_format format, enum log_target target)
{
	if (target == LOG_TARGET_SYSLOG && log_target != LOG_TARGET_SYSLOG)
		openlog("cqltunnel", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (target != LOG_TARGET_SYSLOG && log_target == LOG_TARGET_SYSLOG)
		closelog();
	log_format = format;
	log_target = target;
}

/* ${src} (already sanitized: printable ASCII) as a JSON string body. */
static void
log_json_escape(char *dst, size_t dstlen, const char *src)
{
	size_t	 o = 0;

	for (; *src != '\0' && o + 3 < dstlen; src++) {
		if (*src == '"' || *src == '\\')
			dst[o++] = '\\';
		dst[o++] = *src;
	}
	dst[o] = '\0';
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return (log_level);
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t	 i;

	for (i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return (0);
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_LEVEL_WARN;
		return (0);
	}
	return (-1);
}

/*
 * Copy ${src} to ${dst}, escaping control and non-ASCII bytes as \xNN so
 * that peer-supplied text cannot forge or break log lines.
 */
static void
log_sanitize(char *dst, size_t dstlen, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)src;
	size_t	 o = 0;

	for (; *s != '\0' && o + 5 < dstlen; s++) {
		if (*s >= 0x20 && *s < 0x7f) {
			dst[o++] = (char)*s;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[*s >> 4];
			dst[o++] = hex[*s & 0xf];
		}
	}
	dst[o] = '\0';
}

static int
log_priority(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERROR:
		return (LOG_ERR);
	case LOG_LEVEL_WARN:
		return (LOG_WARNING);
	case LOG_LEVEL_INFO:
		return (LOG_INFO);
	default:
		return (LOG_DEBUG);
	}
}

void
log_vlog(enum log_level level, const char *fmt, va_list ap)
{
	char		 raw[2048], clean[4096], json[8192], ts[32];
	struct timespec	 now;
	struct tm	 tm;
	int		 saved = errno;

	if (level > log_level)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	log_sanitize(clean, sizeof(clean), raw);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	if (log_format == LOG_FORMAT_JSON) {
		log_json_escape(json, sizeof(json), clean);
		if (log_target == LOG_TARGET_SYSLOG)
			syslog(log_priority(level), "{\"level\":\"%s\","
			    "\"msg\":\"%s\"}", log_names[level], json);
		else
			fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\","
			    "\"msg\":\"%s\"}\n", ts, now.tv_nsec / 1000000,
			    log_names[level], json);
	} else if (log_target == LOG_TARGET_SYSLOG)
		syslog(log_priority(level), "%s", clean);
	else
		fprintf(stderr, "%s.%03ldZ %-5s %s\n", ts,
		    now.tv_nsec / 1000000, log_names[level], clean);
	errno = saved;
}

void
log_error(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_WARN, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_DEBUG, fmt, ap);
	va_end(ap);
}

void
log_openssl_errors(enum log_level level, const char *prefix)
{
	unsigned long	 e;
	char		 buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		if (level <= log_level) {
			if (level == LOG_LEVEL_ERROR)
				log_error("%s: %s", prefix, buf);
			else if (level == LOG_LEVEL_WARN)
				log_warn("%s: %s", prefix, buf);
			else if (level == LOG_LEVEL_INFO)
				log_info("%s: %s", prefix, buf);
			else
				log_debug("%s: %s", prefix, buf);
		}
	}
}
