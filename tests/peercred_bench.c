/*
 * peercred_bench: what [listen] allow_uids / allow_gids costs per accepted
 * connection.  Times N (default 10000) owner lookups of one real loopback
 * TCP connection through inet_diag, the same for a unix socket
 * (SO_PEERCRED), and the group check with a warm and a cold cache.
 * Usage: peercred_bench [N]
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "peercred.h"

static uint64_t
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	 x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x < y ? -1 : x > y);
}

/* Print mean, median, p99 and max of ${n} samples in nanoseconds. */
static void
report(const char *what, uint64_t *ns, size_t n)
{
	uint64_t	 sum = 0;
	size_t		 i;

	for (i = 0; i < n; i++)
		sum += ns[i];
	qsort(ns, n, sizeof(*ns), cmp_u64);
	printf("%-44s n=%zu mean %.2f us, median %.2f us, p99 %.2f us, "
	    "max %.2f us\n", what, n, (double)sum / (double)n / 1000.0,
	    (double)ns[n / 2] / 1000.0, (double)ns[n * 99 / 100] / 1000.0,
	    (double)ns[n - 1] / 1000.0);
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in	 sin;
	struct sockaddr_storage	 peer;
	struct sockaddr_un	 sun;
	struct peercred		 pc;
	struct config		 c;
	struct passwd		*pw;
	uid_t			 uids[32], nouid = 4242;
	gid_t			 gid;
	socklen_t		 len;
	uint64_t		*ns, t;
	size_t			 n = 10000, i, nuids = 0;
	char			 why[400];
	int			 lfd, cfd, sfd, sv[2];

	if (argc > 1)
		n = strtoul(argv[1], NULL, 10);
	if (n == 0 || (ns = calloc(n, sizeof(*ns))) == NULL)
		return (2);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	len = sizeof(sin);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sin, len) == -1 ||
	    listen(lfd, 8) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) == -1 ||
	    (cfd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(cfd, (struct sockaddr *)&sin, len) == -1) {
		perror("loopback connection");
		return (1);
	}
	len = sizeof(peer);
	if ((sfd = accept(lfd, (struct sockaddr *)&peer, &len)) == -1) {
		perror("accept");
		return (1);
	}

	for (i = 0; i < n; i++) {
		t = now_ns();
		if (peercred_lookup(sfd, (struct sockaddr *)&peer, &pc, why,
		    sizeof(why)) == -1) {
			fprintf(stderr, "lookup: %s\n", why);
			return (1);
		}
		ns[i] = now_ns() - t;
	}
	report("TCP owner lookup (inet_diag)", ns, n);

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		return (1);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	for (i = 0; i < n; i++) {
		t = now_ns();
		(void)peercred_lookup(sv[0], (struct sockaddr *)&sun, &pc, why,
		    sizeof(why));
		ns[i] = now_ns() - t;
	}
	report("unix owner lookup (SO_PEERCRED)", ns, n);

	/* allow_gids: a uid not listed, its primary group listed. */
	pw = getpwuid(getuid());
	gid = pw != NULL ? pw->pw_gid : 0;
	memset(&c, 0, sizeof(c));
	c.access_control = true;
	c.allow_uids = &nouid;
	c.nallow_uids = 1;
	c.allow_gids = &gid;
	c.nallow_gids = 1;
	for (i = 0; i < n; i++) {
		t = now_ns();
		if (peercred_check(&c, sfd, (struct sockaddr *)&peer, why,
		    sizeof(why)) == -1) {
			fprintf(stderr, "check: %s\n", why);
			return (1);
		}
		ns[i] = now_ns() - t;
	}
	report("TCP lookup + allow_gids (warm cache)", ns, n);

	/* Cold cache: cycle through more users than the cache holds. */
	setpwent();
	while (nuids < sizeof(uids) / sizeof(uids[0]) &&
	    (pw = getpwent()) != NULL)
		uids[nuids++] = pw->pw_uid;
	endpwent();
	pc.gid = (gid_t)-1;
	pc.pid = 0;
	gid = (gid_t)-2;	/* nobody matches: every group is read */
	if (nuids > 8) {
		for (i = 0; i < n; i++) {
			pc.uid = uids[i % nuids];
			t = now_ns();
			(void)peercred_allowed(&c, &pc, why, sizeof(why));
			ns[i] = now_ns() - t;
		}
		report("groups, cold cache (getpwuid_r+getgrouplist)", ns, n);
	} else
		printf("groups, cold cache: skipped (fewer than 9 users)\n");
	peercred_close();
	free(ns);
	return (0);
}
