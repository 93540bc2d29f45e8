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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "auth.h"
#include "config.h"
#include "config_build.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "upstream.h"

struct daemon {
	struct event_base	*base;
	struct config		*cfg;
	struct tls_ctx		*tls;
	struct auth_creds	*creds;
	struct upstream		*up;
	struct listener		*listener;
	struct control		*control;	/* translate mode */
	struct session_ctx	 sc;
	struct event		*sig_term, *sig_int, *sig_hup;
	struct event		*drain_timer;
	bool			 draining;
};

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
}

/* The drain deadline passed: close what is left. */
static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon	*d = arg;

	(void)fd;
	(void)what;
	log_warn("drain timeout: closing %u remaining session(s)",
	    d->sc.nsessions);
	d->sc.on_idle = NULL;
	session_close_all(&d->sc, SESSION_CLOSE_DRAIN_TIMEOUT);
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
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->draining = true;
	listener_free(d->listener);
	d->listener = NULL;
	control_stop_listening(d->control);
	if (d->sc.nsessions == 0) {
		log_info("signal %d: no open sessions; exiting", (int)sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	log_info("signal %d: stopped accepting; draining %u session(s) for "
	    "up to %u ms", (int)sig, d->sc.nsessions, d->cfg->drain_timeout_ms);
	d->sc.on_idle = drained_cb;
	d->sc.on_idle_arg = d;
	tv.tv_sec = (time_t)(d->cfg->drain_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(d->cfg->drain_timeout_ms % 1000) * 1000;
	d->drain_timer = evtimer_new(d->base, drain_timeout_cb, d);
	evtimer_add(d->drain_timer, &tv);
}

/* SIGHUP: reloading is not implemented yet; never die on it. */
static void
signal_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	log_warn("SIGHUP: configuration reload is not supported yet; "
	    "restart cqltunnel to apply changes");
}

/* Load config, TLS context, credentials and nodes; 0 or -1. */
static int
load(struct daemon *d, const char *path, bool check)
{
	struct config_errors	 errs = { NULL, 0, 0 };

	d->cfg = config_load(path, &errs);
	if (d->cfg != NULL) {
		d->tls = tls_ctx_new(d->cfg, &errs);
		d->up = upstream_new(d->cfg, check ? &errs : NULL);
	}
	if (errs.n > 0) {
		print_errors(&errs);
		config_errors_free(&errs);
		return (-1);
	}
	config_errors_free(&errs);
	d->creds = auth_creds_new(d->cfg);
	return (0);
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
	if (d->base != NULL) {
		listener_free(d->listener);
		d->sc.on_idle = NULL;
		session_close_all(&d->sc, SESSION_CLOSE_SHUTDOWN);
		control_free(d->control);
		if (d->drain_timer != NULL)
			event_free(d->drain_timer);
		if (d->sig_term != NULL)
			event_free(d->sig_term);
		if (d->sig_int != NULL)
			event_free(d->sig_int);
		if (d->sig_hup != NULL)
			event_free(d->sig_hup);
		event_base_free(d->base);
	}
	auth_creds_free(d->creds);
	upstream_free(d->up);
	tls_ctx_free(d->tls);
	config_free(d->cfg);
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
	log_init(LOG_LEVEL_INFO);
	signal(SIGPIPE, SIG_IGN);
	if (load(&d, path, check) == -1)
		goto out;
	log_set_level(d.cfg->log_level);
	if (d.cfg->verify == CONFIG_VERIFY_NONE)
		log_warn("[tls] verify = none: node certificates are NOT "
		    "verified; anyone on the path can impersonate the cluster "
		    "and receive the injected credentials");
	if (check) {
		fprintf(stderr, "cqltunnel: %s: configuration OK\n", path);
		rc = EXIT_SUCCESS;
		goto out;
	}

	if ((d.base = event_base_new()) == NULL) {
		log_error("cannot create the event loop");
		goto out;
	}
	session_ctx_init(&d.sc, d.base, d.cfg, d.tls, d.creds, d.up);
	d.listener = listener_new(d.base, d.cfg, &d.sc, NULL, err,
	    sizeof(err));
	if (d.listener == NULL) {
		log_error("%s", err);
		goto out;
	}
	if (d.cfg->topology == CONFIG_TOPOLOGY_TRANSLATE)
		d.control = control_new(d.base, d.cfg, d.tls, d.creds, d.up,
		    &d.sc);
	d.sig_term = evsignal_new(d.base, SIGTERM, signal_stop_cb, &d);
	d.sig_int = evsignal_new(d.base, SIGINT, signal_stop_cb, &d);
	d.sig_hup = evsignal_new(d.base, SIGHUP, signal_hup_cb, &d);
	evsignal_add(d.sig_term, NULL);
	evsignal_add(d.sig_int, NULL);
	evsignal_add(d.sig_hup, NULL);

	log_info("cqltunnel %s listening on %s; %zu contact point(s); "
	    "topology %s; TLS verify %s; credentials %s", CQLTUNNEL_VERSION,
	    listener_address(d.listener), upstream_count(d.up),
	    d.control != NULL ? "translate" : "pin",
	    d.cfg->verify == CONFIG_VERIFY_FULL ? "full" :
	    d.cfg->verify == CONFIG_VERIFY_CHAIN ? "chain" : "NONE",
	    d.cfg->client_auth == CONFIG_CLIENT_AUTH_PASSTHROUGH ?
	    "passed through from the app" : d.creds->have_token ?
	    "injected" : "not configured");
	if (event_base_dispatch(d.base) == -1)
		log_error("event loop failed");
	else
		rc = EXIT_SUCCESS;
out:
	teardown(&d);
	return (rc);
}
