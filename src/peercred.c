/*
 * peercred: the owner of a local connection (see peercred.h).
 *
 * The inet_diag request names the app's socket exactly: its local end is
 * the address we accepted from, its remote end the address the app
 * connected to.  The kernel answers during sendmsg(), so the reply is read
 * without blocking.  The answer is only believed if it describes that very
 * socket (same 4-tuple, not a listener) and the socket is still held by a
 * process (inode != 0): a socket that is already gone has no owner we can
 * trust, and the connection is refused.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "peercred.h"
#include "util.h"

/* Groups kept per cached uid; users in more are looked up every time. */
#define PEERCRED_MAX_GROUPS	256
/* Uids whose groups are cached, per thread. */
#define PEERCRED_CACHE_SIZE	8
/* Largest buffer getpwuid_r() may ask for. */
#define PEERCRED_PWBUF_MAX	(1024 * 1024)

/* One uid's user name and groups, as the user database gave them. */
struct peercred_entry {
	bool		 used;
	bool		 known;		/* the uid has a passwd entry */
	bool		 overflow;	/* more than PEERCRED_MAX_GROUPS */
	uid_t		 uid;
	uint64_t	 expires_ms;
	char		 name[64];
	int		 ngroups;
	gid_t		 groups[PEERCRED_MAX_GROUPS];
};

/* Per thread, so that event loops on several threads need no locks. */
static _Thread_local int			 peercred_nl = -1;
static _Thread_local uint32_t			 peercred_seq;
static _Thread_local struct peercred_entry	 peercred_cache[
    PEERCRED_CACHE_SIZE];

void
peercred_close(void)
{
	if (peercred_nl != -1)
		close(peercred_nl);
	peercred_nl = -1;
}

/* This thread's NETLINK_SOCK_DIAG socket, opened on first use. */
static int
peercred_nl_socket(void)
{
	if (peercred_nl == -1)
		peercred_nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
		    NETLINK_SOCK_DIAG);
	return (peercred_nl);
}

/* Address bytes and port of an AF_INET/AF_INET6 sockaddr. */
static int
peercred_inet(const struct sockaddr *sa, const void **addr, size_t *len,
    uint16_t *port)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)(const void *)sa;
		*addr = &sin->sin_addr;
		*len = 4;
		*port = sin->sin_port;
		return (0);
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		*addr = &sin6->sin6_addr;
		*len = 16;
		*port = sin6->sin6_port;
		return (0);
	default:
		return (-1);
	}
}

/* Whether the diag answer ${m} describes the socket we asked about. */
static bool
peercred_same_socket(const struct inet_diag_msg *m,
    const struct inet_diag_req_v2 *req, size_t alen)
{
	return (m->idiag_family == req->sdiag_family &&
	    m->id.idiag_sport == req->id.idiag_sport &&
	    m->id.idiag_dport == req->id.idiag_dport &&
	    memcmp(m->id.idiag_src, req->id.idiag_src, alen) == 0 &&
	    memcmp(m->id.idiag_dst, req->id.idiag_dst, alen) == 0 &&
	    m->idiag_state != TCP_LISTEN);
}

/*
 * The uid owning the TCP socket whose local end is ${peer} and remote end
 * is ${local}; 0 or -1 with a reason.
 */
/* NLMSG_NEXT without its char * cast, which -Wcast-align rejects. */
static struct nlmsghdr *
peercred_nlmsg_next(struct nlmsghdr *h, ssize_t *len)
{
	size_t	 step = NLMSG_ALIGN(h->nlmsg_len);

	*len -= (ssize_t)step;
	return ((struct nlmsghdr *)(void *)((char *)h + step));
}

static int
peercred_tcp(const struct sockaddr *peer, const struct sockaddr *local,
    uid_t *uid, char *why, size_t whylen)
{
	struct {
		struct nlmsghdr		nlh;
		struct inet_diag_req_v2	req;
	}			 msg;
	struct sockaddr_nl	 nladdr;
	union {
		struct nlmsghdr	 h;
		char		 b[8192];
	}			 buf;
	struct nlmsghdr		*h;
	struct nlmsgerr		*ne;
	struct inet_diag_msg	*m;
	const void		*paddr, *laddr;
	size_t			 plen, llen;
	uint16_t		 pport, lport;
	ssize_t			 n;
	int			 fd, err;

	if (peercred_inet(peer, &paddr, &plen, &pport) == -1 ||
	    peercred_inet(local, &laddr, &llen, &lport) == -1 ||
	    plen != llen) {
		snprintf(why, whylen, "not a TCP/IP connection");
		return (-1);
	}
	if ((fd = peercred_nl_socket()) == -1) {
		snprintf(why, whylen, "cannot open a NETLINK_SOCK_DIAG "
		    "socket: %s", strerror(errno));
		return (-1);
	}
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.nlh.nlmsg_seq = ++peercred_seq;
	msg.req.sdiag_family = (uint8_t)peer->sa_family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u;
	msg.req.id.idiag_sport = pport;
	msg.req.id.idiag_dport = lport;
	memcpy(msg.req.id.idiag_src, paddr, plen);
	memcpy(msg.req.id.idiag_dst, laddr, llen);
	msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	memset(&nladdr, 0, sizeof(nladdr));
	nladdr.nl_family = AF_NETLINK;

	while (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nladdr,
	    sizeof(nladdr)) == -1) {
		if (errno == EINTR)
			continue;
		snprintf(why, whylen, "inet_diag request failed: %s",
		    strerror(errno));
		peercred_close();
		return (-1);
	}
	for (;;) {
		n = recv(fd, &buf, sizeof(buf), MSG_DONTWAIT);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(why, whylen, "no inet_diag answer: %s",
			    n == 0 ? "end of file" : strerror(errno));
			peercred_close();
			return (-1);
		}
		for (h = &buf.h; NLMSG_OK(h, (size_t)n);
		    h = peercred_nlmsg_next(h, &n)) {
			if (h->nlmsg_seq != msg.nlh.nlmsg_seq)
				continue;	/* a stale answer */
			if (h->nlmsg_type == NLMSG_ERROR) {
				ne = NLMSG_DATA(h);
				err = h->nlmsg_len >= NLMSG_LENGTH(sizeof(*ne))
				    ? -ne->error : EPROTO;
				snprintf(why, whylen, "inet_diag: %s",
				    err == ENOENT ? "the app's socket is gone" :
				    strerror(err));
				return (-1);
			}
			if (h->nlmsg_type == NLMSG_DONE) {
				snprintf(why, whylen, "inet_diag: the app's "
				    "socket is gone");
				return (-1);
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
				continue;
			m = NLMSG_DATA(h);
			if (!peercred_same_socket(m, &msg.req, plen)) {
				snprintf(why, whylen, "inet_diag answered "
				    "about another socket");
				return (-1);
			}
			if (m->idiag_inode == 0) {
				snprintf(why, whylen, "the app's socket is "
				    "already closed (state %u)",
				    (unsigned)m->idiag_state);
				return (-1);
			}
			*uid = (uid_t)m->idiag_uid;
			return (0);
		}
	}
}

int
peercred_lookup(int fd, const struct sockaddr *peer, struct peercred *pc,
    char *why, size_t whylen)
{
	struct sockaddr_storage	 local;
	socklen_t		 len = sizeof(local);
	struct ucred		 uc;
	socklen_t		 uclen = sizeof(uc);

	pc->uid = (uid_t)-1;
	pc->gid = (gid_t)-1;
	pc->pid = 0;
	if (peer->sa_family == AF_UNIX) {
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &uclen) ==
		    -1) {
			snprintf(why, whylen, "SO_PEERCRED: %s",
			    strerror(errno));
			return (-1);
		}
		pc->uid = uc.uid;
		pc->gid = uc.gid;
		pc->pid = uc.pid;
		return (0);
	}
	if (!util_is_loopback(peer)) {
		snprintf(why, whylen, "the connection is not from loopback");
		return (-1);
	}
	if (getsockname(fd, (struct sockaddr *)&local, &len) == -1) {
		snprintf(why, whylen, "getsockname: %s", strerror(errno));
		return (-1);
	}
	return (peercred_tcp(peer, (struct sockaddr *)&local, &pc->uid, why,
	    whylen));
}

/*
 * Read ${uid}'s name and groups into ${e}; false with a reason if the
 * user database cannot be read (a missing user is not an error).
 */
static bool
peercred_read_groups(uid_t uid, struct peercred_entry *e, gid_t **big,
    char *why, size_t whylen)
{
	struct passwd	 pw, *pwp = NULL;
	char		 stackbuf[4096], *heap = NULL, *pwbuf = stackbuf;
	size_t		 pwlen = sizeof(stackbuf);
	int		 rc, n;

	memset(e, 0, sizeof(*e));
	e->used = true;
	e->uid = uid;
	for (;;) {
		rc = getpwuid_r(uid, &pw, pwbuf, pwlen, &pwp);
		if (rc != ERANGE || pwlen >= PEERCRED_PWBUF_MAX)
			break;
		pwlen *= 4;
		free(heap);
		if ((heap = malloc(pwlen)) == NULL) {
			rc = ENOMEM;
			break;
		}
		pwbuf = heap;
	}
	if (rc != 0 && rc != ENOENT && rc != ESRCH) {
		snprintf(why, whylen, "cannot read the user database for uid "
		    "%lu: %s", (unsigned long)uid, strerror(rc));
		free(heap);
		return (false);
	}
	if (pwp == NULL) {
		free(heap);
		return (true);		/* no such user: no groups */
	}
	e->known = true;
	snprintf(e->name, sizeof(e->name), "%s", pw.pw_name);
	n = PEERCRED_MAX_GROUPS;
	if (getgrouplist(pw.pw_name, pw.pw_gid, e->groups, &n) == -1) {
		/* n now says how many there are. */
		e->overflow = true;
		*big = util_xcalloc((size_t)n, sizeof(**big));
		if (getgrouplist(pw.pw_name, pw.pw_gid, *big, &n) == -1) {
			snprintf(why, whylen, "the groups of user %s keep "
			    "changing", e->name);
			free(*big);
			*big = NULL;
			free(heap);
			return (false);
		}
	}
	e->ngroups = n;
	free(heap);
	return (true);
}

/*
 * ${uid}'s cache entry, read again when missing or expired; NULL with a
 * reason if the user database failed.  For users in very many groups the
 * list is returned in *big instead (the caller frees it).
 */
static const struct peercred_entry *
peercred_groups(uid_t uid, gid_t **big, char *why, size_t whylen)
{
	struct peercred_entry	*e, *victim = &peercred_cache[0];
	uint64_t		 now = util_now_ms();
	size_t			 i;

	*big = NULL;
	for (i = 0; i < PEERCRED_CACHE_SIZE; i++) {
		e = &peercred_cache[i];
		if (e->used && e->uid == uid) {
			if (now < e->expires_ms && !e->overflow)
				return (e);
			victim = e;
			break;
		}
		if (!e->used || e->expires_ms < victim->expires_ms)
			victim = e;
		if (!e->used)
			break;
	}
	if (!peercred_read_groups(uid, victim, big, why, whylen)) {
		victim->used = false;
		return (NULL);
	}
	victim->expires_ms = now + PEERCRED_CACHE_MS;
	return (victim);
}

/* Whether ${gid} is in the list ${v} of ${n}. */
static bool
peercred_gid_in(gid_t gid, const gid_t *v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (v[i] == gid)
			return (true);
	}
	return (false);
}

bool
peercred_allowed(const struct config *c, const struct peercred *pc,
    char *why, size_t whylen)
{
	const struct peercred_entry	*e;
	const gid_t			*groups;
	gid_t				*big;
	char				 err[160], who[96];
	size_t				 i;
	int				 n;
	bool				 ok = false;

	for (i = 0; i < c->nallow_uids; i++) {
		if (c->allow_uids[i] == pc->uid)
			return (true);
	}
	if (pc->gid != (gid_t)-1 &&
	    peercred_gid_in(pc->gid, c->allow_gids, c->nallow_gids))
		return (true);
	if ((e = peercred_groups(pc->uid, &big, err, sizeof(err))) == NULL) {
		snprintf(why, whylen, "uid %lu: %s", (unsigned long)pc->uid,
		    err);
		return (false);
	}
	groups = big != NULL ? big : e->groups;
	n = e->ngroups;
	for (i = 0; c->nallow_gids > 0 && i < (size_t)n && !ok; i++)
		ok = peercred_gid_in(groups[i], c->allow_gids, c->nallow_gids);
	free(big);
	if (ok)
		return (true);
	if (e->known)
		snprintf(who, sizeof(who), "uid %lu (%s)",
		    (unsigned long)pc->uid, e->name);
	else
		snprintf(who, sizeof(who), "uid %lu (no such user, so no "
		    "groups)", (unsigned long)pc->uid);
	if (pc->pid != 0)
		snprintf(why, whylen, "%s, pid %ld, is not in [listen] "
		    "allow_uids or allow_gids", who, (long)pc->pid);
	else
		snprintf(why, whylen, "%s is not in [listen] allow_uids or "
		    "allow_gids", who);
	return (false);
}

int
peercred_check(const struct config *c, int fd, const struct sockaddr *peer,
    char *why, size_t whylen)
{
	struct peercred	 pc;
	char		 err[200];

	if (!c->access_control)
		return (0);
	if (peercred_lookup(fd, peer, &pc, err, sizeof(err)) == -1) {
		snprintf(why, whylen, "cannot tell which user connected (%s); "
		    "refused because [listen] allow_uids/allow_gids is set",
		    err);
		return (-1);
	}
	return (peercred_allowed(c, &pc, why, whylen) ? 0 : -1);
}
