/*
 * notify: sd_notify and socket activation (see notify.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "config_build.h"
#include "log.h"
#include "notify.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static struct event	*notify_wd;

void
notify_state(enum notify_state st, const char *status)
{
#if HAVE_SYSTEMD
	static const char *const words[] = {
		[NOTIFY_READY] = "READY=1",
		[NOTIFY_RELOADING] = "RELOADING=1",
		[NOTIFY_STOPPING] = "STOPPING=1",
	};

	(void)sd_notifyf(0, "%s\nSTATUS=%s", words[st], status);
#else
	(void)st;
	(void)status;
#endif
}

#if HAVE_SYSTEMD
static void
notify_wd_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	(void)sd_notify(0, "WATCHDOG=1");
}
#endif

void
notify_watchdog_start(struct event_base *base)
{
#if HAVE_SYSTEMD
	uint64_t	 usec;
	struct timeval	 tv;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	notify_wd = event_new(base, -1, EV_PERSIST, notify_wd_cb, NULL);
	if (notify_wd == NULL)
		return;
	event_add(notify_wd, &tv);
	(void)sd_notify(0, "WATCHDOG=1");
	log_info("systemd watchdog: pinging every %llu ms",
	    (unsigned long long)(usec / 1000));
#else
	(void)base;
#endif
}

void
notify_watchdog_stop(void)
{
	if (notify_wd != NULL)
		event_free(notify_wd);
	notify_wd = NULL;
}

int
notify_listen_fd(void)
{
#if HAVE_SYSTEMD
	int	 n = sd_listen_fds(1);

	if (n <= 0)
		return (-1);
	if (n > 1)
		log_warn("socket activation passed %d sockets; using the first",
		    n);
	if (sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
		log_error("socket activation: the passed descriptor is not a "
		    "listening stream socket");
		return (-1);
	}
	return (SD_LISTEN_FDS_START);
#else
	return (-1);
#endif
}
