/*
 * fuzz_config: the INI loader (config_load) on arbitrary files.
 *
 * config_load() takes a path, so each input is written to cqltunnel.ini in
 * a private directory (on /dev/shm when there is one) made at start-up and
 * removed at exit.  That directory also holds password files of every kind
 * the loader must handle: good, world-readable, empty, too long, with a
 * control character, CRLF-terminated, and a directory.  File names in the
 * input can only reach these: every '/' is turned into '_' (except in
 * "%credentials%/", whose directory is this one too), so relative names
 * resolve against the config's directory and nothing outside it is
 * opened, whatever the input says.
 *
 * Checks: NULL exactly when errors were reported, at most CONFIG_MAX_ERRORS
 * of them kept; error messages are non-empty and free of control bytes
 * (they go to the log); the password never appears in them (unless the
 * input spelled it out); a loaded config has a password within
 * CONFIG_MAX_CRED_LEN and free of control bytes, and config_where() and
 * auth_creds_new() work on it.
 *
 * User and group names (allow_uids, allow_gids, the unix socket's owner)
 * are looked up in a small table here, not through NSS: with systemd's
 * userdb module each unknown name cost about 200 system calls, and the
 * target ran at a tenth of its speed once the corpus reached those keys.
 * The table has a user and a group that exist, and "nss-error", whose
 * lookup fails as a broken NSS backend would (EIO).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "fuzz.h"

#define CFG_SECRET	"Fz9-cfg-SECRET-x1"
#define CFG_CREDS	"%credentials%/"

static char	 cfg_dir[256];
static char	 cfg_path[300];

/* Files made in the private directory: name, mode, contents. */
static const struct {
	const char	*name;
	mode_t		 mode;
	const char	*text;
} cfg_files[] = {
	{ "password", 0600, CFG_SECRET "\n" },
	{ "password-world", 0644, CFG_SECRET "\n" },
	{ "password-empty", 0600, "" },
	{ "password-ctl", 0600, "a\001b\n" },
	{ "password-crlf", 0600, CFG_SECRET "\r\n" },
	{ "password-long", 0600, NULL },		/* 600 bytes */
};

static void
cfg_write(const char *path, mode_t mode, const void *p, size_t n)
{
	int	 fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1 || (n > 0 && write(fd, p, n) != (ssize_t)n) ||
	    fchmod(fd, mode) == -1) {
		perror(path);
		abort();
	}
	close(fd);
}

/*
 * The lookups config_load() makes, answered from a table (see the top).
 * These definitions take the place of libc's (and of ASan's interceptors,
 * which are weak) for the whole fuzzer binary.
 */
int
getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len,
    struct passwd **res)
{
	*res = NULL;
	if (strcmp(name, "nss-error") == 0)
		return (EIO);
	if (strcmp(name, "cqlapp") != 0)
		return (0);
	if (len < sizeof("cqlapp"))
		return (ERANGE);
	memset(pw, 0, sizeof(*pw));
	memcpy(buf, "cqlapp", sizeof("cqlapp"));
	pw->pw_name = buf;
	pw->pw_uid = 1234;
	pw->pw_gid = 1234;
	*res = pw;
	return (0);
}

int
getgrnam_r(const char *name, struct group *gr, char *buf, size_t len,
    struct group **res)
{
	*res = NULL;
	if (strcmp(name, "nss-error") == 0)
		return (EIO);
	if (strcmp(name, "cqlapps") != 0)
		return (0);
	if (len < sizeof("cqlapps"))
		return (ERANGE);
	memset(gr, 0, sizeof(*gr));
	memcpy(buf, "cqlapps", sizeof("cqlapps"));
	gr->gr_name = buf;
	gr->gr_gid = 4321;
	*res = gr;
	return (0);
}

/* Remove what LLVMFuzzerInitialize made. */
static void
cfg_cleanup(void)
{
	char	 path[400];
	size_t	 i;

	for (i = 0; i < sizeof(cfg_files) / sizeof(cfg_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", cfg_dir, cfg_files[i].name);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/dir", cfg_dir);
	rmdir(path);
	unlink(cfg_path);
	rmdir(cfg_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char		 path[400], longpw[601];
	const char	*base;
	size_t		 i;

	(void)argc;
	(void)argv;
	base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	snprintf(cfg_dir, sizeof(cfg_dir), "%s/cqltunnel-fuzz-config.XXXXXX",
	    base);
	if (mkdtemp(cfg_dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(cfg_cleanup);
	memset(longpw, 'p', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	for (i = 0; i < sizeof(cfg_files) / sizeof(cfg_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", cfg_dir, cfg_files[i].name);
		base = cfg_files[i].text != NULL ? cfg_files[i].text : longpw;
		cfg_write(path, cfg_files[i].mode, base, strlen(base));
	}
	snprintf(path, sizeof(path), "%s/dir", cfg_dir);
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		abort();
	snprintf(cfg_path, sizeof(cfg_path), "%s/cqltunnel.ini", cfg_dir);
	setenv("CREDENTIALS_DIRECTORY", cfg_dir, 1);
	return (0);
}

/* Whether ${s} holds a control byte. */
static bool
has_control(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			return (true);
	return (false);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const where[][2] = {
		{ "listen", "address" }, { "cluster", "contact_points" },
		{ "tls", "ca_file" }, { "auth", "password_file" },
		{ "log", "level" }, { "nosuch", "key" },
	};
	struct config_errors	 errs = { NULL, 0, 0, 0 };
	struct config		*c;
	struct auth_creds	*ac;
	char			*ini, buf[512];
	size_t			 i, clen = strlen(CFG_CREDS);
	bool			 spelled;

	/* Confine file names to the private directory. */
	ini = fuzz_malloc(size);
	memcpy(ini, data, size);
	for (i = 0; i < size; i++) {
		if (ini[i] != '/')
			continue;
		if (i + 1 >= clen && memcmp(ini + i + 1 - clen, CFG_CREDS,
		    clen) == 0)
			continue;
		ini[i] = '_';
	}
	cfg_write(cfg_path, 0600, ini, size);
	spelled = memmem(data, size, CFG_SECRET, strlen(CFG_SECRET)) != NULL;
	free(ini);

	c = config_load(cfg_path, &errs);
	FUZZ_CHECK((c == NULL) == (errs.n > 0));
	FUZZ_CHECK(errs.n <= CONFIG_MAX_ERRORS);
	FUZZ_CHECK(errs.more == 0 || errs.n == CONFIG_MAX_ERRORS);
	for (i = 0; i < errs.n; i++) {
		FUZZ_CHECK(errs.v[i] != NULL && errs.v[i][0] != '\0');
		FUZZ_CHECK(!has_control(errs.v[i], strlen(errs.v[i])));
		if (!spelled)
			FUZZ_CHECK(strstr(errs.v[i], CFG_SECRET) == NULL);
	}
	if (c != NULL) {
		FUZZ_CHECK(c->path != NULL && strcmp(c->path, cfg_path) == 0);
		if (c->password != NULL) {
			FUZZ_CHECK(c->password_len <= CONFIG_MAX_CRED_LEN);
			FUZZ_CHECK(!has_control(c->password,
			    c->password_len));
			FUZZ_CHECK(c->username != NULL);
		}
		for (i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
			(void)config_where(c, where[i][0], where[i][1], buf,
			    sizeof(buf));
			FUZZ_CHECK(strnlen(buf, sizeof(buf)) < sizeof(buf));
		}
		ac = auth_creds_new(c);
		FUZZ_CHECK(ac != NULL);
		FUZZ_CHECK(ac->have_token == (c->username != NULL &&
		    c->password != NULL));
		auth_creds_free(ac);
	}
	config_free(c);
	config_errors_free(&errs);
	return (0);
}
