/*
 * watch: notice changes of the files a configuration names ([tls] watch).
 *
 * The directories holding the files are watched with inotify, so that a
 * file replaced by rename (editors, cert-manager) or a Kubernetes secret
 * volume's atomic swap of its "..data" symlink is seen as well as a write
 * in place.  Changes are coalesced: the callback runs once the directory
 * has been quiet for WATCH_SETTLE_MS.
 */
#ifndef WATCH_H
#define WATCH_H

#include <stddef.h>

#include <event2/event.h>

#define WATCH_SETTLE_MS		500

struct watch;

/*
 * watch_new(base, cb, arg): an empty watch; NULL (logged) if inotify is
 * not available.
 */
struct watch *watch_new(struct event_base *base, void (*cb)(void *arg),
	    void *arg);

/*
 * watch_set(w, paths, n): watch these files (and nothing else).  Returns
 * the number of directories watched; problems are logged.
 */
size_t	watch_set(struct watch *w, const char *const *paths, size_t n);

/* watch_free(w): NULL is a no-op. */
void	watch_free(struct watch *w);

#endif /* !WATCH_H */
