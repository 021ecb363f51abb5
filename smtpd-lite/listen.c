/* listen.c: smtpd-lite's own listener (-l ADDR:PORT), for a start
 * with nothing else installed. Binds (as root if need be), drops
 * privileges, then hands its listening sockets to the session server
 * (fork_servers, main.c session_server()), whose workers accept the
 * connections themselves and run each session with the environment
 * tcpserver would give it (PROTO, TCPREMOTEIP, TCPREMOTEPORT,
 * TCPLOCALIP, TCPLOCALPORT; no DNS: TCPREMOTEHOST unset). Without that
 * server (fork_servers no, or while it restarts) the listener accepts
 * and forks a child per session. Limits either way: max_connections at
 * once, max_per_ip per client address; beyond them the client gets
 * "421 4.7.0" and is closed. SIGTERM (or SIGINT) closes the sockets and
 * ends the listener; sessions in progress finish on their own (a
 * session server's worker keeps its copy of the listening sockets
 * until its session ends). A -L listener's sessions start with the TLS
 * handshake (implicit TLS, port 465). */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "buf.h"
#include "ipaddr.h"
#include "forkserver.h"
#include "log.h"
#include "smtpd.h"

#define MAXL 8

extern char **environ;

struct slot {
	pid_t pid;		/* a forked session */
	char ip[64];
};

/* The session server (fork_servers): a smtpd-lite of ours whose reused
 * workers accept and run the sessions themselves on our listening
 * sockets (lib/forkserver.h, forkserver_accept_on); -1 when not
 * running: then sessions are accepted and forked here as always. */
static struct {
	char **argv;		/* NULL: not wanted */
	char **envp;		/* ours and SMTPD_LISTEN_TLS */
	int ctl;
	pid_t pid;
	long long started;	/* ms */
} sess = { NULL, NULL, -1, 0, 0 };

#define LISTEN_TLS_ENV "SMTPD_LISTEN_TLS"	/* one 0 or 1 a socket: implicit TLS */

static struct slot *slots;
static long long nslots, active;
static int sigpipe_[2] = { -1, -1 };
static volatile sig_atomic_t got_term;

static void
on_signal(int sig)
{
	int e = errno;
	char c = (char)sig;

	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	(void)!write(sigpipe_[1], &c, 1);
	errno = e;
}

/* "1.2.3.4:25", "[::1]:25", ":25" (all IPv4), "[::]:25" (all IPv6). */
static int
bind_one(const char *spec)
{
	char host[256], *port;
	struct addrinfo hints, *res;
	int fd, one = 1, rc;

	snprintf(host, sizeof host, "%s", spec);
	if (!(port = strrchr(host, ':')))
		die(EXIT_PERM, "-l %s: expected ADDR:PORT", spec);
	*port++ = 0;
	if (host[0] == '[' && port - host >= 3 && port[-2] == ']') {
		port[-2] = 0;
		memmove(host, host + 1, strlen(host));
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host[0] ? host : "0.0.0.0", port, &hints, &res)) != 0)
		die(EXIT_PERM, "-l %s: %s", spec, gai_strerror(rc));
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		diesys(EXIT_TEMP, "socket for %s", spec);
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (res->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
		diesys(EXIT_TEMP, "cannot bind %s", spec);
	if (listen(fd, 128) < 0)
		diesys(EXIT_TEMP, "cannot listen on %s", spec);
	freeaddrinfo(res);
	(void)set_nonblock(fd);
	return fd;
}

static void
reap(void)
{
	pid_t pid;
	int st;
	long long i;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (servers_reaped(pid, st))
			continue;
		if (sess.ctl >= 0 && pid == sess.pid) {
			log_warn("fork server sessions (pid %ld) ended, status %d", (long)pid, st);
			close(sess.ctl);
			sess.ctl = -1;
			continue;
		}
		if (WIFSIGNALED(st))
			log_warn("session pid %ld killed by signal %d", (long)pid, WTERMSIG(st));
		else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
			log_warn("session pid %ld exited %d", (long)pid, WEXITSTATUS(st));
		for (i = 0; i < nslots; i++)
			if (slots[i].pid == pid) {
				slots[i].pid = 0;
				active--;
				break;
			}
	}
}

static long long
count_ip(const char *ip)
{
	long long i, n = 0;

	for (i = 0; i < nslots; i++)
		if (slots[i].pid && !strcmp(slots[i].ip, ip))
			n++;
	return n;
}

static void
refuse(int fd, const struct settings *s, const char *ip, const char *why)
{
	char msg[512];
	int n = snprintf(msg, sizeof msg, "421 4.7.0 %s Error: %s, try again later\r\n",
	    s->hostname, why);

	(void)set_nonblock(fd);
	if (n > 0 && write(fd, msg, (size_t)n) < 0)
		log_warnsys("refusing %s", ip);
	log_info("refused ip=%s: %s", ip, why);
	close(fd);
}

/* An address as we write it everywhere (lib/ipaddr's canonical form)
 * and its port. */
static void
addr_text(const struct sockaddr_storage *sa, char *ip, size_t iplen, char *port, size_t portlen)
{
	char tmp[INET6_ADDRSTRLEN];
	struct ipaddr a;

	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, tmp, sizeof tmp);
		snprintf(port, portlen, "%u", ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, tmp, sizeof tmp);
		snprintf(port, portlen, "%u", ntohs(s4->sin_port));
	}
	if (ip_parse(tmp, &a) == 0)
		ip_format(&a, ip, iplen);
	else
		snprintf(ip, iplen, "%s", tmp);
}

/* tcp-environ(5) of a connection */
struct tcpenv {
	char ip[64], port[16], lip[64], lport[16];
};

static void
tcp_env(const struct sockaddr_storage *peer, int fd, struct tcpenv *t)
{
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;

	memset(t, 0, sizeof *t);
	addr_text(peer, t->ip, sizeof t->ip, t->port, sizeof t->port);
	if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
		addr_text(&me, t->lip, sizeof t->lip, t->lport, sizeof t->lport);
}

/* tcp-environ(5) names set: 0, or -1 (out of memory) */
static int
tcp_setenv(const struct tcpenv *t)
{
	return setenv("PROTO", "TCP", 1) || setenv("TCPREMOTEIP", t->ip, 1) ||
	    setenv("TCPREMOTEPORT", t->port, 1) || setenv("TCPLOCALIP", t->lip, 1) ||
	    setenv("TCPLOCALPORT", t->lport, 1) ? -1 : 0;
}

/* ... for a forked child */
static void
child_env(const struct sockaddr_storage *peer, int fd)
{
	struct tcpenv t;

	tcp_env(peer, fd, &t);
	if (tcp_setenv(&t) < 0)
		diesys(EXIT_TEMP, "setenv");
	unsetenv("TCPREMOTEHOST");
	unsetenv("TCPREMOTEINFO");
	unsetenv("TCPLOCALHOST");
}

/* ---- in the session server: its workers accept ---- */

static const struct settings *acc_set;
static char acc_tls[MAXL];

/* the client's address as a worker's tag (forkserver_tag), for
 * max_per_ip: FNV-1a, never 0 */
static uint64_t
ip_tag(const char *ip)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *ip; ip++)
		h = (h ^ (unsigned char)*ip) * 0x100000001b3ULL;
	return h ? h : 1;
}

static int
session_accepted(int fd, int which, const struct sockaddr_storage *peer, void *arg)
{
	struct tcpenv t;

	(void)arg;
	tcp_env(peer, fd, &t);
	if (forkserver_tag(ip_tag(t.ip)) >= acc_set->max_per_ip) {
		refuse(fd, acc_set, t.ip, "too many connections from your address");
		return -1;
	}
	if (tcp_setenv(&t) < 0 || (acc_tls[which] && setenv("SMTPD_IMPLICIT_TLS", "1", 1)) ||
	    dup2(fd, 0) < 0 || dup2(fd, 1) < 0) {
		log_warnsys("session from %s", t.ip);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static void
session_refused(int fd, int which, const struct sockaddr_storage *peer, void *arg)
{
	char ip[64], port[16];

	(void)which;
	(void)arg;
	addr_text(peer, ip, sizeof ip, port, sizeof port);
	refuse(fd, acc_set, ip, "too many connections");
}

void
listen_accepting(const struct settings *s)
{
	const char *tls = getenv(LISTEN_TLS_ENV);
	int lfd[MAXL], n = 0, i, on;
	socklen_t ol = sizeof on;

	if (!tls)
		return;	/* sessions come from the listener one by one */
	for (i = 0; tls[i] && i < MAXL; i++) {
		int fd = 4 + i;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) < 0 || !on)
			die(EXIT_TEMP, "%s: fd %d is not a listening socket", LISTEN_TLS_ENV, fd);
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		(void)set_nonblock(fd);
		acc_tls[n] = tls[i] == '1';
		lfd[n++] = fd;
	}
	unsetenv(LISTEN_TLS_ENV);
	unsetenv("TCPREMOTEINFO");	/* never ours: a session sets the rest */
	unsetenv("TCPLOCALHOST");
	acc_set = s;
	/* (the pool caps it at its own maximum) */
	forkserver_accept_on(lfd, n, (int)(s->max_connections < INT_MAX ? s->max_connections : INT_MAX),
	    session_accepted, session_refused);
}

static void
session_server_start(const int *lfd, int nl)
{
	sess.started = now_ms();
	sess.ctl = forkserver_start_fds(sess.argv, sess.envp, &sess.pid, lfd, nl);
	if (sess.ctl >= 0)
		log_info("fork server sessions started, pid %ld", (long)sess.pid);
	else
		log_warn("fork server sessions did not start: a process per session");
}

/* our environment and which sockets are implicit TLS */
static char **
session_envp(const int *tls, int nl)
{
	size_t n = 0, k = 0;
	char **ev, *t;
	int i;

	while (environ[n])
		n++;
	ev = xcalloc(n + 2, sizeof *ev);
	for (n = 0; environ[n]; n++)
		if (strncmp(environ[n], LISTEN_TLS_ENV "=", sizeof LISTEN_TLS_ENV))
			ev[k++] = environ[n];
	t = xcalloc((size_t)nl + sizeof LISTEN_TLS_ENV + 1, 1);
	memcpy(t, LISTEN_TLS_ENV "=", sizeof LISTEN_TLS_ENV);
	for (i = 0; i < nl; i++)
		t[sizeof LISTEN_TLS_ENV + i] = tls[i] ? '1' : '0';
	ev[k] = t;
	return ev;
}

/* smtpd-lite of ours, the options the sessions need, the chain */
static char **
session_argv(const struct settings *s, char **chain)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	size_t nc = 0, k = 0;
	char **av;

	if (n <= 0)
		return NULL;
	self[n] = 0;
	while (chain[nc])
		nc++;
	av = xcalloc(nc + 8, sizeof *av);
	av[k++] = xstrdup(self);
	av[k++] = xstrdup("-c");
	av[k++] = xstrdup(s->confdir);
	if (opt_submission)
		av[k++] = xstrdup("-m");
	if (log_verbose == 0)
		av[k++] = xstrdup("-q");
	else if (log_verbose > 1)
		av[k++] = xstrdup("-v");
	av[k++] = xstrdup("--");
	for (nc = 0; chain[nc]; nc++)
		av[k++] = xstrdup(chain[nc]);
	return av;
}

static void
start_child(const struct settings *s, int *lfd, int nl, int fd,
    const struct sockaddr_storage *peer, const char *ip, char **chain, int tls)
{
	long long i;
	pid_t pid;
	int j;

	for (i = 0; i < nslots && slots[i].pid; i++)
		;
	if (i == nslots) {
		refuse(fd, s, ip, "too many connections");
		return;
	}
	if ((pid = fork()) < 0) {
		log_warnsys("fork");
		refuse(fd, s, ip, "server busy");
		return;
	}
	if (pid == 0) {
		for (j = 0; j < nl; j++)
			close(lfd[j]);
		close(sigpipe_[0]);
		close(sigpipe_[1]);
		child_defaults();
		if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
			_exit(EXIT_TEMP);
		if (fd > 1)
			close(fd);
		child_env(peer, 0);
		opt_implicit_tls = tls;
		serve_one(s, chain);
	}
	close(fd);
	slots[i].pid = pid;
	snprintf(slots[i].ip, sizeof slots[i].ip, "%s", ip);
	active++;
}

static void
accept_one(const struct settings *s, int *lfd, int nl, int l, char **chain, int tls)
{
	struct sockaddr_storage peer;
	socklen_t pl = sizeof peer;
	char ip[64], port[16];
	int fd = accept4(lfd[l], (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
			log_warnsys("accept");
			usleep(100000);	/* EMFILE and friends: do not spin */
		}
		return;
	}
	addr_text(&peer, ip, sizeof ip, port, sizeof port);
	reap();
	if (active >= s->max_connections)
		refuse(fd, s, ip, "too many connections");
	else if (count_ip(ip) >= s->max_per_ip)
		refuse(fd, s, ip, "too many connections from your address");
	else
		start_child(s, lfd, nl, fd, &peer, ip, chain, tls);
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe2(sigpipe_, O_CLOEXEC | O_NONBLOCK) < 0)
		diesys(EXIT_TEMP, "pipe");
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

void
listen_run(const struct settings *s, char **addrs, const int *tls, int naddrs, char **chain)
{
	struct pollfd p[MAXL + 1];
	int lfd[MAXL], i;

	if (naddrs > MAXL)
		naddrs = MAXL;
	for (i = 0; i < naddrs; i++)
		lfd[i] = bind_one(addrs[i]);
	drop_privileges(s);
	if (tls_configured(s))
		tls_preinit();
	nslots = s->max_connections;
	slots = xcalloc((size_t)nslots, sizeof *slots);
	setup_signals();
	/* the sessions in a server of reused workers, which starts the
	 * policy and chain servers; else here, and a fork per session */
	if (s->fork_servers && (sess.argv = session_argv(s, chain))) {
		sess.envp = session_envp(tls, naddrs);
		session_server_start(lfd, naddrs);
	}
	if (sess.ctl < 0) {
		sess.argv = NULL;
		servers_start(s, chain);
	}
	for (i = 0; i < naddrs; i++)
		log_info("listening on %s%s%s max_connections=%lld max_per_ip=%lld",
		    addrs[i], tls[i] ? " (implicit TLS)" : "",
		    opt_submission ? " (submission)" : "", s->max_connections, s->max_per_ip);
	while (!got_term) {
		/* the session server's workers accept while it runs */
		for (i = 0; i < naddrs; i++)
			p[i] = (struct pollfd){ sess.ctl >= 0 ? -1 : lfd[i], POLLIN, 0 };
		p[naddrs] = (struct pollfd){ sigpipe_[0], POLLIN, 0 };
		if (poll(p, (nfds_t)naddrs + 1, sess.argv && sess.ctl < 0 ? 1000 : -1) < 0 &&
		    errno != EINTR)
			diesys(EXIT_TEMP, "poll");
		if (p[naddrs].revents & POLLIN) {
			char b[64];
			while (read(sigpipe_[0], b, sizeof b) > 0)
				;
			reap();
		}
		if (sess.argv && sess.ctl < 0 && now_ms() - sess.started >= 1000)
			session_server_start(lfd, naddrs);
		servers_tick();
		for (i = 0; i < naddrs && !got_term && sess.ctl < 0; i++)
			if (p[i].revents & POLLIN)
				accept_one(s, lfd, naddrs, i, chain, tls[i]);
	}
	for (i = 0; i < naddrs; i++)
		close(lfd[i]);
	log_info("SIGTERM: listener closed, %lld session(s) left to finish", active);
	exit(0);
}
