/*
 * peercred: who is on the other end of an accepted local connection, and
 * whether [listen] allow_uids / allow_gids let them in.
 *
 * On a unix socket the kernel says so directly (SO_PEERCRED).  On loopback
 * TCP the app's own socket is found by an exact 4-tuple lookup through
 * NETLINK_SOCK_DIAG (inet_diag), IPv4 and IPv6; its owner is the uid that
 * created it.  Groups are the uid's primary and supplementary groups from
 * the user database (getpwuid_r + getgrouplist), cached per thread for
 * PEERCRED_CACHE_MS.  Every failure denies: the check fails closed.
 */
#ifndef PEERCRED_H
#define PEERCRED_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct config;

/* How long a uid's group list is trusted before it is read again. */
#define PEERCRED_CACHE_MS	30000

/* What is known about the peer of a connection. */
struct peercred {
	uid_t	 uid;
	gid_t	 gid;		/* unix sockets: SO_PEERCRED gid, else -1 */
	pid_t	 pid;		/* unix sockets: SO_PEERCRED pid, else 0 */
};

/*
 * peercred_lookup(fd, peer, pc, why, whylen):
 * Fill ${pc} for the accepted socket ${fd} whose peer address is ${peer}
 * (AF_UNIX, or loopback AF_INET/AF_INET6).  Returns 0, or -1 with a
 * reason in ${why}.
 */
int	peercred_lookup(int fd, const struct sockaddr *peer,
	    struct peercred *pc, char *why, size_t whylen);

/*
 * peercred_allowed(c, pc, why, whylen):
 * True if ${pc}'s uid is in ${c}'s allow_uids, or one of its groups (or
 * the SO_PEERCRED gid) is in allow_gids.  False otherwise, with the reason
 * (naming uid and user) in ${why}.
 */
bool	peercred_allowed(const struct config *c, const struct peercred *pc,
	    char *why, size_t whylen);

/*
 * peercred_check(c, fd, peer, why, whylen):
 * peercred_lookup() then peercred_allowed(): 0 to admit the connection,
 * -1 to refuse it, with the reason in ${why}.  Always 0 when ${c} sets
 * neither allow_uids nor allow_gids.
 */
int	peercred_check(const struct config *c, int fd,
	    const struct sockaddr *peer, char *why, size_t whylen);

/* peercred_close(): close this thread's netlink socket (at exit). */
void	peercred_close(void);

#endif /* !PEERCRED_H */
