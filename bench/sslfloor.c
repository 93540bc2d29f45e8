/*
 * sslfloor: the OpenSSL floor of an idle proxied session.  Opens N TLS 1.3
 * client connections with a client certificate to a node (stubnode, or
 * any CQL node with mutual TLS), SSL_MODE_RELEASE_BUFFERS set, completes
 * the TLS handshake and, unless --tls-only, the CQL handshake (STARTUP,
 * SASL PLAIN), then holds them idle and reports how much its own VmRSS
 * grew per connection.  Nothing else is kept per connection but the SSL
 * object and the socket: this is what any relay built on OpenSSL pays at
 * least for its node-side connection.
 *
 * Blocking sockets, one connection at a time; links OpenSSL only.
 * Output: one JSON line on stdout.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define SF_PROG		"sslfloor"
#define SF_VERSION	4		/* CQL protocol version */
#define SF_HDR		9

/* Print usage and exit. */
static void
sf_usage(int rc)
{
	fprintf(rc ? stderr : stdout,
"usage: sslfloor -t CERT KEY CA [-c N] [-H SECS] [--tls-only] [-u USER]\n"
"                [-p PASSWORD] HOST:PORT   (HOST: an IPv4 address)\n"
"  -c, --connections N   connections to open and hold (default 1000)\n"
"  -t, --tls CERT KEY CA client certificate, key, CA of the node\n"
"  -H, --hold SECS       hold them this long after measuring (default 0)\n"
"      --tls-only        no CQL handshake, TLS only\n"
"      --resume          offer each connection the session of the one\n"
"                        before (TLS 1.3 ticket), as a relay with a\n"
"                        session cache does\n"
"  -u, --user NAME       SASL PLAIN user (default cassandra)\n"
"  -p, --password PW     (default cassandra)\n");
	exit(rc);
}

/* VmRSS of this process in KiB, or -1. */
static long
sf_rss_kib(void)
{
	FILE	*f;
	char	 line[256];
	long	 v = -1;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
			break;
	fclose(f);
	return (v);
}

static void
sf_ssl_die(const char *what)
{
	fprintf(stderr, "%s: %s failed\n", SF_PROG, what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* Write all of ${p}. */
static int
sf_write(SSL *ssl, const uint8_t *p, size_t n)
{
	size_t	w;

	return (SSL_write_ex(ssl, p, n, &w) == 1 && w == n ? 0 : -1);
}

/* Read exactly ${n} bytes. */
static int
sf_read(SSL *ssl, uint8_t *p, size_t n)
{
	size_t	r;

	while (n > 0) {
		if (SSL_read_ex(ssl, p, n, &r) != 1)
			return (-1);
		p += r;
		n -= r;
	}
	return (0);
}

/* Send a v4 frame with ${opcode} and ${body}; read the answer's opcode. */
static int
sf_request(SSL *ssl, uint8_t opcode, const uint8_t *body, size_t len)
{
	uint8_t		frame[512], hdr[SF_HDR], skip[256];
	uint32_t	blen;
	size_t		m;

	if (len > sizeof(frame) - SF_HDR)
		return (-1);
	frame[0] = SF_VERSION;
	frame[1] = 0;
	frame[2] = 0;
	frame[3] = 0;
	frame[4] = opcode;
	frame[5] = (uint8_t)(len >> 24);
	frame[6] = (uint8_t)(len >> 16);
	frame[7] = (uint8_t)(len >> 8);
	frame[8] = (uint8_t)len;
	memcpy(frame + SF_HDR, body, len);
	if (sf_write(ssl, frame, SF_HDR + len) == -1 ||
	    sf_read(ssl, hdr, sizeof(hdr)) == -1)
		return (-1);
	blen = (uint32_t)hdr[5] << 24 | (uint32_t)hdr[6] << 16 |
	    (uint32_t)hdr[7] << 8 | hdr[8];
	while (blen > 0) {
		m = blen < sizeof(skip) ? blen : sizeof(skip);
		if (sf_read(ssl, skip, m) == -1)
			return (-1);
		blen -= (uint32_t)m;
	}
	return (hdr[4]);
}

/* STARTUP, then SASL PLAIN if asked.  Returns 0 once READY. */
static int
sf_cql_handshake(SSL *ssl, const char *user, const char *pw)
{
	static const uint8_t	startup[] = {
		0x00, 0x01,				/* one pair */
		0x00, 0x0b, 'C', 'Q', 'L', '_', 'V', 'E', 'R', 'S', 'I', 'O',
		'N',
		0x00, 0x05, '3', '.', '0', '.', '0'
	};
	uint8_t		body[300];
	size_t		ul = strlen(user), pl = strlen(pw), n;
	int		op;

	if ((op = sf_request(ssl, 0x01, startup, sizeof(startup))) == 0x02)
		return (0);				/* READY */
	if (op != 0x03 || ul + pl + 6 > sizeof(body))	/* AUTHENTICATE */
		return (-1);
	n = 2 + ul + pl;
	body[0] = (uint8_t)(n >> 24);
	body[1] = (uint8_t)(n >> 16);
	body[2] = (uint8_t)(n >> 8);
	body[3] = (uint8_t)n;
	body[4] = 0;
	memcpy(body + 5, user, ul);
	body[5 + ul] = 0;
	memcpy(body + 6 + ul, pw, pl);
	return (sf_request(ssl, 0x0F, body, 4 + n) == 0x10 ? 0 : -1);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "connections", required_argument, NULL, 'c' },
		{ "tls", required_argument, NULL, 't' },
		{ "hold", required_argument, NULL, 'H' },
		{ "tls-only", no_argument, NULL, 'T' },
		{ "resume", no_argument, NULL, 'R' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sockaddr_in	 sin;
	struct rlimit		 rl;
	SSL_CTX			*ctx;
	SSL			**ssl;
	const char		*cert = NULL, *key = NULL, *ca = NULL;
	const char		*user = "cassandra", *pw = "cassandra";
	char			 host[64], *colon, *end;
	long			 n = 1000, hold = 0, i, rss0, rss1, port;
	SSL_SESSION		*last = NULL;
	bool			 cql = true, resume = false;
	long			 resumed = 0;
	int			 ch, fd, one = 1;

	while ((ch = getopt_long(argc, argv, "+c:t:H:u:p:h", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			n = strtol(optarg, &end, 10);
			if (*end != '\0' || n < 1 || n > 1000000)
				sf_usage(1);
			break;
		case 't':
			if (optind + 1 >= argc)
				sf_usage(1);
			cert = optarg;
			key = argv[optind];
			ca = argv[optind + 1];
			optind += 2;
			break;
		case 'H':
			hold = strtol(optarg, &end, 10);
			if (*end != '\0' || hold < 0)
				sf_usage(1);
			break;
		case 'T':
			cql = false;
			break;
		case 'R':
			resume = true;
			break;
		case 'u':
			user = optarg;
			break;
		case 'p':
			pw = optarg;
			break;
		case 'h':
			sf_usage(0);
			break;
		default:
			sf_usage(1);
		}
	}
	if (optind + 1 != argc || cert == NULL ||
	    strlen(argv[optind]) >= sizeof(host))
		sf_usage(1);
	strcpy(host, argv[optind]);
	if ((colon = strrchr(host, ':')) == NULL)
		sf_usage(1);
	*colon = '\0';
	port = strtol(colon + 1, &end, 10);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (*end != '\0' || port < 1 || port > 65535 ||
	    inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		sf_usage(1);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		sf_ssl_die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		sf_ssl_die("loading the certificates");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), host) != 1)
		sf_ssl_die("X509_VERIFY_PARAM_set1_ip_asc");
	if ((ssl = calloc((size_t)n, sizeof(*ssl))) == NULL)
		return (1);

	rss0 = sf_rss_kib();
	for (i = 0; i < n; i++) {
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
		    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
			fprintf(stderr, "%s: connection %ld: %s\n", SF_PROG, i,
			    strerror(errno));
			return (1);
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		if ((ssl[i] = SSL_new(ctx)) == NULL ||
		    SSL_set_fd(ssl[i], fd) != 1)
			sf_ssl_die("SSL_new");
		if (last != NULL)
			(void)SSL_set_session(ssl[i], last);
		if (SSL_connect(ssl[i]) != 1)
			sf_ssl_die("SSL_connect");
		if (cql && sf_cql_handshake(ssl[i], user, pw) == -1) {
			fprintf(stderr, "%s: connection %ld: CQL handshake "
			    "failed\n", SF_PROG, i);
			ERR_print_errors_fp(stderr);
			return (1);
		}
		resumed += SSL_session_reused(ssl[i]) == 1;
		if (resume) {
			/* After the CQL reply: the tickets have been read. */
			if (last != NULL)
				SSL_SESSION_free(last);
			last = SSL_get1_session(ssl[i]);
		}
	}
	if (last != NULL)
		SSL_SESSION_free(last);
	sleep(1);
	rss1 = sf_rss_kib();
	printf("{\"sessions\":%ld,\"tls\":\"%s\",\"cql\":%s,"
	    "\"release_buffers\":true,\"resumed\":%ld,\"rss_before_kib\":%ld,"
	    "\"rss_after_kib\":%ld,\"kib_per_session\":%.2f,"
	    "\"openssl\":\"%s\"}\n", n, SSL_get_version(ssl[0]),
	    cql ? "true" : "false", resumed, rss0, rss1, (double)(rss1 - rss0) /
	    (double)n, OpenSSL_version(OPENSSL_VERSION));
	fflush(stdout);
	if (hold > 0)
		sleep((unsigned)hold);
	for (i = 0; i < n; i++) {
		fd = SSL_get_fd(ssl[i]);
		SSL_free(ssl[i]);
		close(fd);
	}
	free(ssl);
	SSL_CTX_free(ctx);
	return (0);
}
