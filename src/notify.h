/*
 * notify: tell systemd what the daemon is doing (sd_notify: READY=1,
 * RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1) and take listening
 * sockets it passes (socket activation).  Without NOTIFY_SOCKET, or when
 * built without libsystemd, every call is a no-op.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <event2/event.h>

enum notify_state {
	NOTIFY_READY,
	NOTIFY_RELOADING,
	NOTIFY_STOPPING,
};

/* notify_state(st, status): report a state with a STATUS= line. */
void	notify_state(enum notify_state st, const char *status);

/*
 * notify_watchdog_start(base): if systemd set WatchdogSec for us, send
 * WATCHDOG=1 from the event loop at half the interval (so a stuck loop is
 * caught).  notify_watchdog_stop() frees the timer.
 */
void	notify_watchdog_start(struct event_base *base);
void	notify_watchdog_stop(void);

/*
 * notify_listen_fd(): the first socket passed by socket activation (a
 * listening TCP socket), or -1 if there is none.
 */
int	notify_listen_fd(void);

#endif /* !NOTIFY_H */
