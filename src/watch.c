/*
 * watch: inotify on the directories of the configured files (see watch.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "watch.h"

#define WATCH_MASK	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
			 IN_CREATE | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | \
			 IN_MOVE_SELF)

/* One watched file: its directory's watch descriptor and its name. */
struct watch_file {
	int	 wd;
	char	*name;
};

struct watch {
	int			 fd;
	struct event		*ev;
	struct event		*settle;
	void			(*cb)(void *);
	void			*arg;
	struct watch_file	*files;
	size_t			 nfiles;
};

/* Whether an event on directory ${wd} about ${name} concerns us. */
static bool
watch_matches(const struct watch *w, int wd, const char *name)
{
	size_t	 i;

	for (i = 0; i < w->nfiles; i++) {
		if (w->files[i].wd != wd)
			continue;
		/* Kubernetes swaps the "..data" symlink; editors use temps. */
		if (name[0] == '\0' || strncmp(name, "..", 2) == 0 ||
		    strcmp(name, w->files[i].name) == 0)
			return (true);
	}
	return (false);
}

static void
watch_settle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watch	*w = arg;

	(void)fd;
	(void)what;
	w->cb(w->arg);
}

static void
watch_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watch			*w = arg;
	char				 buf[4096]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event	*ie;
	struct timeval			 tv = { 0, WATCH_SETTLE_MS * 1000 };
	ssize_t				 n;
	char				*p;
	bool				 hit = false;

	(void)what;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (p = buf; p < buf + n;
		    p += sizeof(*ie) + ie->len) {
			ie = (const struct inotify_event *)(void *)p;
			if (ie->mask & IN_Q_OVERFLOW)
				hit = true;
			else if (watch_matches(w, ie->wd,
			    ie->len > 0 ? ie->name : ""))
				hit = true;
		}
	}
	if (hit) {
		/* Restart the quiet period. */
		evtimer_del(w->settle);
		evtimer_add(w->settle, &tv);
	}
}

struct watch *
watch_new(struct event_base *base, void (*cb)(void *), void *arg)
{
	struct watch	*w;
	int		 fd;

	if ((fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		log_error("[tls] watch: inotify: %s; changes will need SIGHUP",
		    strerror(errno));
		return (NULL);
	}
	w = util_xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->cb = cb;
	w->arg = arg;
	w->ev = event_new(base, fd, EV_READ | EV_PERSIST, watch_read_cb, w);
	w->settle = evtimer_new(base, watch_settle_cb, w);
	if (w->ev == NULL || w->settle == NULL) {
		log_error("[tls] watch: out of memory");
		watch_free(w);
		return (NULL);
	}
	event_add(w->ev, NULL);
	return (w);
}

/* Forget every watched file (the descriptors stay with the fd). */
static void
watch_clear(struct watch *w)
{
	size_t	 i;

	for (i = 0; i < w->nfiles; i++) {
		(void)inotify_rm_watch(w->fd, w->files[i].wd);
		free(w->files[i].name);
	}
	free(w->files);
	w->files = NULL;
	w->nfiles = 0;
}

size_t
watch_set(struct watch *w, const char *const *paths, size_t n)
{
	char	 dir[PATH_MAX];
	size_t	 i, k, ndirs = 0;
	int	 wd;
	char	*slash;
	bool	 seen;

	watch_clear(w);
	w->files = util_xcalloc(n, sizeof(*w->files));
	for (i = 0; i < n; i++) {
		if (paths[i] == NULL || strlen(paths[i]) >= sizeof(dir))
			continue;
		strcpy(dir, paths[i]);
		if ((slash = strrchr(dir, '/')) == NULL)
			strcpy(dir, ".");
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		wd = inotify_add_watch(w->fd, dir, WATCH_MASK | IN_ONLYDIR);
		if (wd == -1) {
			log_warn("[tls] watch: cannot watch %s: %s", dir,
			    strerror(errno));
			continue;
		}
		seen = false;
		for (k = 0; k < w->nfiles; k++)
			seen |= w->files[k].wd == wd;
		ndirs += !seen;
		w->files[w->nfiles].wd = wd;
		w->files[w->nfiles].name = util_xstrdup(strrchr(paths[i], '/')
		    != NULL ? strrchr(paths[i], '/') + 1 : paths[i]);
		w->nfiles++;
	}
	return (ndirs);
}

void
watch_free(struct watch *w)
{
	if (w == NULL)
		return;
	watch_clear(w);
	if (w->ev != NULL)
		event_free(w->ev);
	if (w->settle != NULL)
		event_free(w->settle);
	close(w->fd);
	free(w);
}
