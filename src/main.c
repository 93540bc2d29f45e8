/*
 * cqltunnel: plaintext CQL in, mutual TLS out, credentials injected.
 *
 * main() parses the command line, loads and checks everything, then runs
 * the event loop in the foreground.  SIGTERM/SIGINT drain: stop accepting,
 * let sessions finish until [listen] drain_timeout, then close them; a
 * second signal exits at once.
 */
#include <getopt.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "admin.h"
#include "auth.h"
#include "config.h"
#include "config_build.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "peercred.h"
#include "relay.h"
#include "session.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"
#include "watch.h"
#include "worker.h"

struct daemon {
	struct event_base	*base;
	const char		*path;
	/*
	 * The generation started with, until the event loop runs; then only
	 * its sessions hold it, so that a reload that replaces the key or
	 * the password lets the old ones go with the last of them.
	 */
	struct session_gen	*boot;
	struct config		*cfg;		/* the config started with */
	struct upstream		*up;
	unsigned		 generation;
	uint64_t		 reloads_ok, reloads_failed;
	struct listener		*listener;
	struct control		*control;	/* translate mode */
	struct watch		*watch;		/* [tls] watch = yes */
	struct admin		*admin;		/* [admin] address */
	struct session_ctx	 sc;
	struct worker_pool	*pool;		/* [listen] workers > 1 */
	unsigned		 workers;
	struct event		*sig_term, *sig_int, *sig_hup, *sig_usr1;
	struct event		*drain_timer;
	bool			 draining;
};

static void	reload(struct daemon *d);
static void	watch_update(struct daemon *d);

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: cqltunnel [-t] [-c file]\n"
	    "  -c, --config FILE  configuration (default %s)\n"
	    "  -t, --check        load and validate everything, then exit\n"
	    "  -V, --version      print the version and exit\n"
	    "  -h, --help         this help\n", CQLTUNNEL_DEFAULT_CONFIG);
}

/* Print every collected error, one per line. */
static void
print_errors(const struct config_errors *errs)
{
	size_t	 i;

	for (i = 0; i < errs->n; i++)
		fprintf(stderr, "cqltunnel: %s\n", errs->v[i]);
	if (errs->more > 0)
		fprintf(stderr, "cqltunnel: too many errors; only the first "
		    "%zu are shown\n", errs->n);
}

/* The drain deadline passed: close what is left. */
static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon	*d = arg;

	(void)fd;
	(void)what;
	log_warn("drain timeout: closing %u remaining session(s)",
	    session_ctx_live(&d->sc));
	d->sc.on_idle = NULL;
	session_close_all(&d->sc, SESSION_CLOSE_DRAIN_TIMEOUT);
	worker_pool_free(d->pool, SESSION_CLOSE_DRAIN_TIMEOUT);
	d->pool = NULL;
	event_base_loopexit(d->base, NULL);
}

/* The last session ended while draining. */
static void
drained_cb(void *arg)
{
	struct daemon	*d = arg;

	log_info("all sessions ended; exiting");
	event_base_loopexit(d->base, NULL);
}

/* SIGTERM / SIGINT: drain, or exit at once on the second signal. */
static void
signal_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon	*d = arg;
	struct timeval	 tv;

	(void)what;
	if (d->draining) {
		log_warn("signal %d again: exiting now", (int)sig);
		d->sc.on_idle = NULL;
		session_close_all(&d->sc, SESSION_CLOSE_SHUTDOWN);
		worker_pool_free(d->pool, SESSION_CLOSE_SHUTDOWN);
		d->pool = NULL;
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->draining = true;
	notify_state(NOTIFY_STOPPING, "draining");
	/* Idle node connections are no sessions: nothing to wait for. */
	session_ctx_reuse_stop(&d->sc);
	listener_free(d->listener);
	d->listener = NULL;
	control_stop_listening(d->control);
	if (session_ctx_live(&d->sc) == 0) {
		log_info("signal %d: no open sessions; exiting", (int)sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	log_info("signal %d: stopped accepting; draining %u session(s) for "
	    "up to %u ms", (int)sig, session_ctx_live(&d->sc),
	    d->sc.gen->cfg->drain_timeout_ms);
	if (d->pool != NULL)
		worker_pool_drain(d->pool, drained_cb, d);
	else {
		d->sc.on_idle = drained_cb;
		d->sc.on_idle_arg = d;
	}
	tv.tv_sec = (time_t)(d->sc.gen->cfg->drain_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(d->sc.gen->cfg->drain_timeout_ms % 1000) *
	    1000;
	d->drain_timer = evtimer_new(d->base, drain_timeout_cb, d);
	evtimer_add(d->drain_timer, &tv);
}

/*
 * Counters of every event loop: the main one, plus what the workers last
 * published (at most half a second old).
 */
static void
totals(void *arg, struct session_totals *t)
{
	struct daemon	*d = arg;

	session_ctx_totals(&d->sc, t);
	worker_pool_totals_add(d->pool, t);
}

/* SIGUSR1: one status line. */
static void
signal_usr1_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon		*d = arg;
	struct upstream_node	*n;
	struct session_totals	 t;
	size_t			 i, up = 0, all = 0;

	(void)sig;
	(void)what;
	upstream_lock(d->up);
	for (i = 0; (n = upstream_node_at(d->up, i)) != NULL; i++) {
		if (n->gone)
			continue;
		all++;
		up += n->failures == 0 && !n->down;
	}
	upstream_unlock(d->up);
	totals(d, &t);
	log_info("status: %u session(s) open, %llu accepted, %llu B from "
	    "apps, %llu B from nodes, %zu of %zu node(s) up, configuration "
	    "generation %u, %llu reload(s) ok, %llu failed%s",
	    session_ctx_live(&d->sc), (unsigned long long)t.stats.accepted,
	    (unsigned long long)t.stats.bytes_app,
	    (unsigned long long)t.stats.bytes_node, up, all,
	    d->sc.gen->id, (unsigned long long)d->reloads_ok,
	    (unsigned long long)d->reloads_failed,
	    d->draining ? ", draining" : "");
}

/* SIGHUP: reload. */
static void
signal_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon	*d = arg;

	(void)sig;
	(void)what;
	if (d->draining) {
		log_info("SIGHUP while draining: ignored");
		return;
	}
	log_info("SIGHUP: reloading %s", d->path);
	reload(d);
}

/* Load config, TLS context, credentials and nodes; 0 or -1. */
static int
load(struct daemon *d, const char *path, bool check)
{
	struct config_errors	 errs = { NULL, 0, 0, 0 };
	struct config		*cfg;
	struct tls_ctx		*tls = NULL;

	cfg = config_load(path, &errs);
	if (cfg != NULL) {
		tls = tls_ctx_new(cfg, &errs);
		d->up = upstream_new(cfg, check ? &errs : NULL);
	}
	if (errs.n > 0) {
		print_errors(&errs);
		config_errors_free(&errs);
		tls_ctx_free(tls);
		config_free(cfg);
		return (-1);
	}
	config_errors_free(&errs);
	d->boot = session_gen_new(cfg, tls, auth_creds_new(cfg),
	    ++d->generation, false);
	config_forget_password(cfg);
	d->cfg = cfg;
	return (0);
}

/* Apply [daemon] allow_core_dumps (they are off until a config says). */
static void
core_dumps(const struct config *c)
{
	char	 why[128];

	if (!c->allow_core_dumps) {
		if (util_core_dumps(false, why, sizeof(why)) == -1)
			log_warn("cannot keep core dumps off: %s", why);
		return;
	}
	if (util_core_dumps(true, why, sizeof(why)) == -1)
		log_warn("[daemon] allow_core_dumps: %s", why);
	else
		log_warn("[daemon] allow_core_dumps = yes: a core dump holds "
		    "the password and the private key");
}

/* Log which client certificate a configuration generation presents. */
static void
log_identity(const struct session_gen *g)
{
	char		 serial[80], when[32];
	int64_t		 not_after;
	time_t		 t;
	struct tm	 tm;

	if (!tls_ctx_identity(g->tls, serial, sizeof(serial), &not_after)) {
		log_info("generation %u: no client certificate", g->id);
		return;
	}
	t = (time_t)not_after;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	log_info("generation %u: client certificate serial %s, expires %s",
	    g->id, serial, when);
	if (not_after - (int64_t)time(NULL) < 7 * 24 * 3600)
		log_warn("the client certificate expires in less than 7 days "
		    "(%s)", when);
}

/* Whether two optional strings differ. */
static bool
str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a != b);
	return (strcmp(a, b) != 0);
}

/* Warn about settings a reload cannot apply (they keep their old value). */
static void
reload_restart_only(const struct config *old, const struct config *c)
{
	bool	 same = old->ncontact_points == c->ncontact_points;
	size_t	 i;

	if (old->listen_unix != NULL) {
		if (str_differs(old->listen_unix, c->listen_unix) ||
		    old->unix_mode != c->unix_mode ||
		    old->unix_owner != c->unix_owner ||
		    old->unix_group != c->unix_group)
			log_warn("reload: [listen] address/unix_mode/unix_owner/"
			    "unix_group changed; restart cqltunnel to apply "
			    "(still unix:%s)", old->listen_unix);
	} else if (str_differs(old->listen_host, c->listen_host) ||
	    old->listen_port != c->listen_port ||
	    old->allow_remote != c->allow_remote)
		log_warn("reload: [listen] address/allow_remote changed; "
		    "restart cqltunnel to apply (still %s%s%s:%u)",
		    strchr(old->listen_host, ':') ? "[" : "", old->listen_host,
		    strchr(old->listen_host, ':') ? "]" : "",
		    (unsigned)old->listen_port);
	for (i = 0; same && i < c->ncontact_points; i++)
		same = old->contact_points[i].port ==
		    c->contact_points[i].port &&
		    strcmp(old->contact_points[i].host,
		    c->contact_points[i].host) == 0;
	if (!same)
		log_warn("reload: [cluster] contact_points changed; restart "
		    "cqltunnel to apply");
	if (old->workers != c->workers || old->busy_poll_ms != c->busy_poll_ms)
		log_warn("reload: [listen] workers or busy_poll changed; "
		    "restart cqltunnel to apply");
	if (old->topology != c->topology ||
	    old->translate_net != c->translate_net ||
	    old->translate_bits != c->translate_bits ||
	    str_differs(old->local_dc, c->local_dc))
		log_warn("reload: [cluster] topology, translate_prefix or "
		    "local_dc changed; restart cqltunnel to apply");
}

/*
 * SIGHUP: load the configuration again and, if all of it is valid (INI,
 * certificate, key, CA, CRL, password), use it for new sessions.  Open
 * sessions keep the generation they started with.
 */
static void
reload(struct daemon *d)
{
	struct config_errors	 errs = { NULL, 0, 0, 0 };
	struct config		*cfg;
	struct tls_ctx		*tls = NULL;
	struct session_gen	*gen;
	size_t			 i;

	notify_state(NOTIFY_RELOADING, "reloading the configuration");
	cfg = config_load(d->path, &errs);
	if (cfg != NULL)
		tls = tls_ctx_new(cfg, &errs);
	if (errs.n > 0) {
		d->reloads_failed++;
		for (i = 0; i < errs.n; i++)
			log_error("reload: %s", errs.v[i]);
		if (errs.more > 0)
			log_error("reload: too many errors; only the first "
			    "%zu are shown", errs.n);
		log_error("reload failed (%zu%s error(s)); still using "
		    "configuration generation %u", errs.n,
		    errs.more > 0 ? "+" : "", d->sc.gen->id);
		config_errors_free(&errs);
		tls_ctx_free(tls);
		config_free(cfg);
		notify_state(NOTIFY_READY, "reload failed; old configuration "
		    "kept");
		return;
	}
	config_errors_free(&errs);
	reload_restart_only(d->cfg, cfg);
	if (cfg->verify == CONFIG_VERIFY_NONE)
		log_warn("[tls] verify = none: node certificates are NOT "
		    "verified");
	core_dumps(cfg);
	gen = session_gen_new(cfg, tls, auth_creds_new(cfg), ++d->generation,
	    true);
	config_forget_password(cfg);
	session_ctx_set_gen(&d->sc, gen);
	if (d->pool != NULL)
		worker_pool_set_gen(d->pool, gen);
	session_gen_unref(gen);
	control_reload(d->control);
	log_set_level(cfg->log_level);
	log_configure(cfg->log_format, cfg->log_target);
	d->reloads_ok++;
	watch_update(d);
	log_identity(gen);
	log_info("configuration reloaded from %s (generation %u); %u open "
	    "session(s) keep the one they started with", d->path, gen->id,
	    session_ctx_live(&d->sc));
	notify_state(NOTIFY_READY, "configuration reloaded");
}

/* A watched file changed ([tls] watch = yes). */
static void
watch_changed(void *arg)
{
	struct daemon	*d = arg;

	if (d->draining)
		return;
	log_info("[tls] watch: a watched file changed; reloading %s",
	    d->path);
	reload(d);
}

/* Watch the files the current configuration names, or stop watching. */
static void
watch_update(struct daemon *d)
{
	const struct config	*c = d->sc.gen->cfg;
	const char		*paths[8];
	size_t			 n = 0;

	if (!c->watch) {
		watch_free(d->watch);
		d->watch = NULL;
		return;
	}
	if (d->watch == NULL &&
	    (d->watch = watch_new(d->base, watch_changed, d)) == NULL)
		return;
	paths[n++] = d->path;
	paths[n++] = c->ca_file;
	paths[n++] = c->crl_file;
	paths[n++] = c->cert_file;
	paths[n++] = c->key_file;
	paths[n++] = c->key_password_file;
	paths[n++] = c->password_file;
	n = watch_set(d->watch, paths, n);
	log_info("[tls] watch: watching %zu director%s for changes", n,
	    n == 1 ? "y" : "ies");
}

/* Free everything (so that leak checkers see a clean exit). */
static void
teardown(struct daemon *d)
{
	sigset_t	 set;

	/*
	 * Exiting anyway: a supervisor's late SIGTERM must not turn a clean
	 * exit into death by signal once our handlers are gone.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	relay_thread_done();
	notify_watchdog_stop();
	if (d->base != NULL) {
		listener_free(d->listener);
		d->sc.on_idle = NULL;
		worker_pool_free(d->pool, SESSION_CLOSE_SHUTDOWN);
		session_close_all(&d->sc, SESSION_CLOSE_SHUTDOWN);
		admin_free(d->admin);
		control_free(d->control);
		watch_free(d->watch);
		if (d->drain_timer != NULL)
			event_free(d->drain_timer);
		if (d->sig_term != NULL)
			event_free(d->sig_term);
		if (d->sig_int != NULL)
			event_free(d->sig_int);
		if (d->sig_hup != NULL)
			event_free(d->sig_hup);
		if (d->sig_usr1 != NULL)
			event_free(d->sig_usr1);
		event_base_free(d->base);
	}
	if (d->sc.gen != NULL)
		session_gen_unref(d->sc.gen);
	upstream_free(d->up);
	session_gen_unref(d->boot);
	config_free(d->cfg);
	peercred_close();
	libevent_global_shutdown();
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon	 d;
	const char	*path = CQLTUNNEL_DEFAULT_CONFIG;
	bool		 check = false;
	char		 err[256];
	int		 ch, rc = EXIT_FAILURE;

	while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'V':
			printf("cqltunnel %s (%s, libevent %s)\n",
			    CQLTUNNEL_VERSION, OpenSSL_version(OPENSSL_VERSION),
			    event_get_version());
			return (EXIT_SUCCESS);
		case 'h':
			usage(stdout);
			return (EXIT_SUCCESS);
		default:
			usage(stderr);
			return (2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		return (2);
	}

	memset(&d, 0, sizeof(d));
	d.path = path;
	log_init(LOG_LEVEL_INFO);
	signal(SIGPIPE, SIG_IGN);
	/* Before any secret is read; a config may turn them back on. */
	if (util_core_dumps(false, err, sizeof(err)) == -1) {
		log_error("cannot turn core dumps off: %s", err);
		goto out;
	}
	if (load(&d, path, check) == -1)
		goto out;
	if (!check)
		core_dumps(d.cfg);
	log_set_level(d.cfg->log_level);
	if (!check)
		log_configure(d.cfg->log_format, d.cfg->log_target);
	if (d.cfg->verify == CONFIG_VERIFY_NONE)
		log_warn("[tls] verify = none: node certificates are NOT "
		    "verified; anyone on the path can impersonate the cluster "
		    "and receive the injected credentials");
	if (check) {
		fprintf(stderr, "cqltunnel: %s: configuration OK\n", path);
		rc = EXIT_SUCCESS;
		goto out;
	}

	d.workers = d.cfg->workers;
	if (d.workers == 0) {
		long	 ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		d.workers = ncpu < 1 ? 1 : ncpu > CONFIG_MAX_WORKERS ?
		    CONFIG_MAX_WORKERS : (unsigned)ncpu;
	}
	/* Workers touch each other's loops (wake-ups, drain): lock them. */
	if (d.workers > 1 && evthread_use_pthreads() == -1) {
		log_error("cannot enable libevent's thread support");
		goto out;
	}
	if ((d.base = util_event_base()) == NULL) {
		log_error("cannot create the event loop");
		goto out;
	}
	session_ctx_init(&d.sc, d.base, d.boot, d.up);
	d.listener = listener_new(d.base, d.cfg, &d.sc, NULL, err,
	    sizeof(err));
	if (d.listener == NULL) {
		log_error("%s", err);
		goto out;
	}
	if (d.cfg->topology == CONFIG_TOPOLOGY_TRANSLATE ||
	    d.cfg->admin_host != NULL)
		d.control = control_new(d.base, d.cfg, d.up, &d.sc);
	if (d.cfg->admin_host != NULL) {
		struct admin_sources src = {
			.sc = &d.sc, .up = d.up, .control = d.control,
			.totals = totals, .totals_arg = &d,
			.reloads_ok = &d.reloads_ok,
			.reloads_failed = &d.reloads_failed,
			.started_ms = util_wall_ms(),
		};

		if ((d.admin = admin_new(d.base, d.cfg, &src, err,
		    sizeof(err))) == NULL) {
			log_error("%s", err);
			goto out;
		}
	}
	if (d.workers > 1 && (d.pool = worker_pool_new(d.workers, &d.sc,
	    err, sizeof(err))) == NULL) {
		log_error("%s", err);
		goto out;
	}
	watch_update(&d);
	d.sig_term = evsignal_new(d.base, SIGTERM, signal_stop_cb, &d);
	d.sig_int = evsignal_new(d.base, SIGINT, signal_stop_cb, &d);
	d.sig_hup = evsignal_new(d.base, SIGHUP, signal_hup_cb, &d);
	evsignal_add(d.sig_term, NULL);
	evsignal_add(d.sig_int, NULL);
	evsignal_add(d.sig_hup, NULL);
	d.sig_usr1 = evsignal_new(d.base, SIGUSR1, signal_usr1_cb, &d);
	evsignal_add(d.sig_usr1, NULL);

	/* Before "listening on", which is what supervisors and tests wait for. */
	log_identity(d.boot);
	log_info("cqltunnel %s listening on %s; %u worker(s); %zu contact "
	    "point(s); topology %s; TLS verify %s; credentials %s",
	    CQLTUNNEL_VERSION, listener_address(d.listener), d.workers,
	    upstream_count(d.up),
	    d.cfg->topology == CONFIG_TOPOLOGY_TRANSLATE ? "translate" : "pin",
	    d.cfg->verify == CONFIG_VERIFY_FULL ? "full" :
	    d.cfg->verify == CONFIG_VERIFY_CHAIN ? "chain" : "NONE",
	    d.cfg->client_auth == CONFIG_CLIENT_AUTH_PASSTHROUGH ?
	    "passed through from the app" : d.boot->creds->have_token ?
	    "injected" : "not configured");
	if (d.cfg->access_control)
		log_info("[listen] allow_uids/allow_gids: %zu user(s) and %zu "
		    "group(s) may connect; anyone else is refused",
		    d.cfg->nallow_uids, d.cfg->nallow_gids);
	notify_watchdog_start(d.base);
	snprintf(err, sizeof(err), "listening on %s",
	    listener_address(d.listener));
	notify_state(NOTIFY_READY, err);
	/* The session context holds the current generation from here. */
	session_gen_unref(d.boot);
	d.boot = NULL;
	if (worker_loop(d.base, d.cfg->busy_poll_ms, 0) == -1)
		log_error("event loop failed");
	else
		rc = EXIT_SUCCESS;
out:
	teardown(&d);
	return (rc);
}
