/* smtpd-lite: the SMTP front end. See doc/smtpd-lite.8.
 *
 *   smtpd-lite [-mqTv] [-c CONFDIR] [CHAIN...]        one session on fd 0/1
 *   smtpd-lite [-mqv] [-c CONFDIR] -l|-L ADDR:PORT [...]  own listener
 *
 * -T / -L: implicit TLS (port 465); -m: submission (AUTH before MAIL).
 *
 * Under tcpserver, inetd (nowait) or systemd (Accept=yes) it serves the
 * connection on fd 0/1; with -l it listens itself and forks one such
 * session per connection. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "ipaddr.h"
#include "forkserver.h"
#include "log.h"
#include "smtpd.h"

#define USAGE "usage: smtpd-lite [-mqTv] [-c CONFDIR] [-l ADDR:PORT]... [-L ADDR:PORT]... [CHAIN...]"
#define MAXLISTEN 8

int opt_implicit_tls, opt_submission;

static char bindir_buf[PATH_MAX];

const char *
smtpd_bindir(const struct settings *s)
{
	ssize_t n;
	char *slash;

	if (s->bindir[0])
		return s->bindir;
	if (bindir_buf[0])
		return bindir_buf;
	n = readlink("/proc/self/exe", bindir_buf, sizeof bindir_buf - 1);
	if (n <= 0)
		return ".";
	bindir_buf[n] = 0;
	if ((slash = strrchr(bindir_buf, '/')))
		*slash = 0;
	return bindir_buf;
}

void
drop_privileges(const struct settings *s)
{
	struct passwd *pw;

	if (geteuid() != 0 && getuid() != 0)
		return;
	if (!(pw = getpwnam(s->user)))
		die(EXIT_TEMP, "4.3.0 user %s (settings: user) does not exist", s->user);
	if (pw->pw_uid == 0)
		die(EXIT_TEMP, "4.3.0 refusing to handle mail as root (settings: user %s)", s->user);
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		diesys(EXIT_TEMP, "4.3.0 cannot drop privileges to %s", s->user);
	if (geteuid() == 0 || getuid() == 0)
		die(EXIT_TEMP, "4.3.0 still root after dropping privileges");
}

/* Numeric form of a sockaddr into ip/port; IPv4-mapped becomes IPv4. */
static void
sa_format(const struct sockaddr_storage *ss, char *ip, size_t il, char *port, size_t pl)
{
	char tmp[INET6_ADDRSTRLEN];
	struct ipaddr a;

	ip[0] = port[0] = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, tmp, sizeof tmp);
		snprintf(port, pl, "%u", ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, tmp, sizeof tmp);
		snprintf(port, pl, "%u", ntohs(s6->sin6_port));
	} else
		return;
	if (ip_parse(tmp, &a) == 0)
		ip_format(&a, ip, il);
	else
		snprintf(ip, il, "%s", tmp);
}

static void
norm_ip(char *ip, size_t len, const char *s)
{
	struct ipaddr a;

	if (s && ip_parse(s, &a) == 0)
		ip_format(&a, ip, len);
	else
		ip[0] = 0;
}

/* A reverse name is only used if it looks like a host name. */
static void
host_from_env(char *dst, size_t len)
{
	const char *h = getenv("TCPREMOTEHOST");

	dst[0] = 0;
	if (!h || strlen(h) >= len || strspn(h, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != strlen(h))
		return;
	snprintf(dst, len, "%s", h);
}

/* TCPREMOTEIP (tcpserver), REMOTE_ADDR (systemd), getpeername(0). */
static void
client_from_env(struct client *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	const char *e;
	char pip[64], pport[16], lip[64], lport[16];

	memset(c, 0, sizeof *c);
	pip[0] = pport[0] = lip[0] = lport[0] = 0;
	if (getpeername(0, (struct sockaddr *)&ss, &sl) == 0)
		sa_format(&ss, pip, sizeof pip, pport, sizeof pport);
	sl = sizeof ss;
	if (getsockname(0, (struct sockaddr *)&ss, &sl) == 0)
		sa_format(&ss, lip, sizeof lip, lport, sizeof lport);
	if ((e = getenv("TCPREMOTEIP")) || (e = getenv("REMOTE_ADDR")))
		norm_ip(c->ip, sizeof c->ip, e);
	else
		snprintf(c->ip, sizeof c->ip, "%s", pip);
	if ((e = getenv("TCPREMOTEPORT")) || (e = getenv("REMOTE_PORT")))
		snprintf(c->port, sizeof c->port, "%s", e);
	else
		snprintf(c->port, sizeof c->port, "%s", pport);
	if ((e = getenv("TCPLOCALIP")))
		norm_ip(c->localip, sizeof c->localip, e);
	else
		snprintf(c->localip, sizeof c->localip, "%s", lip);
	snprintf(c->localport, sizeof c->localport, "%s",
	    (e = getenv("TCPLOCALPORT")) ? e : lport);
	host_from_env(c->host, sizeof c->host);
	if (!c->ip[0])
		log_warn("cannot tell the client's address (no TCPREMOTEIP, REMOTE_ADDR or socket)");
	/* co-processes and the chain see the same */
	(void)setenv("TCPREMOTEIP", c->ip, 1);
}

/* Serve the connection on fd 0/1 (called directly, in a listener's
 * child, or in a session worker). Never returns: the session ends with
 * forkserver_exit() (exit, or back to the worker's loop). */
void
serve_one(const struct settings *s, char **chain)
{
	struct client c;

	drop_privileges(s);
	signal(SIGPIPE, SIG_IGN);
	client_from_env(&c);
	policy_init(s, smtpd_bindir(s), c.ip, c.host, c.localip, c.localport, c.port);
	session_run(s, &c, chain);
	forkserver_exit(0);
}

/* The session server (started by a listener, lib/forkserver.h): the
 * listener hands it each accepted connection; a worker runs the session
 * as a forked child would, and serves the next one after it. */
struct session_ctx {
	const struct settings *s;
	char **chain;
};

static int
session_one(void *arg)
{
	const struct session_ctx *x = arg;

	opt_implicit_tls = getenv("SMTPD_IMPLICIT_TLS") != NULL;
	serve_one(x->s, x->chain);
	return 0;
}

static void
session_refresh(void *arg)
{
	(void)arg;
	servers_check();
}

static void __attribute__((noreturn))
session_server(const struct settings *s, char **chain)
{
	static struct session_ctx x;

	x.s = s;
	x.chain = chain;
	if (tls_configured(s))
		tls_preinit();
	servers_start(s, chain);	/* the policy and chain servers, for every worker */
	listen_accepting(s);
	forkserver_serve_workers(FS_SESSION, 0, FS_MAX_USE, session_refresh, session_one, &x);
}

int
smtpd_have_rules(const struct settings *s)
{
	char path[4200];

	snprintf(path, sizeof path, "%s/rules", s->confdir);
	return access(path, F_OK) == 0;
}

static char *
binpath(const struct settings *s, const char *prog)
{
	char *p = xmalloc(strlen(smtpd_bindir(s)) + strlen(prog) + 2);

	sprintf(p, "%s/%s", smtpd_bindir(s), prog);
	return p;
}

/* The remaining arguments, else settings "chain", else
 * BINDIR/ruleproc -c CONFDIR BINDIR/deliver -c CONFDIR when CONFDIR/rules
 * exists (as the policy chain adds ruleproc -p), else
 * BINDIR/deliver -c CONFDIR (doc/INTERNALS.md). */
static char **
chain_argv(const struct settings *s, int argc, char **argv)
{
	char **av;
	int n = 0;

	if (argc > 0)
		return argv;
	if (s->chain) {
		av = split_words(s->chain);
		if (!av[0])
			die(EXIT_TEMP, "4.3.0 settings: chain is empty");
		return av;
	}
	av = xcalloc(7, sizeof *av);
	if (smtpd_have_rules(s)) {
		av[n++] = binpath(s, "ruleproc");
		av[n++] = xstrdup("-c");
		av[n++] = xstrdup(s->confdir);
	}
	av[n++] = binpath(s, "deliver");
	av[n++] = xstrdup("-c");
	av[n++] = xstrdup(s->confdir);
	return av;
}

/* Under inetd (and systemd's default StandardError=inherit) fd 2 is
 * the client's socket: log lines must not go there. */
static void
guard_stderr(void)
{
	struct stat s0, s2;
	int fd;

	if (fstat(0, &s0) < 0 || fstat(2, &s2) < 0 || !S_ISSOCK(s2.st_mode) ||
	    s0.st_dev != s2.st_dev || s0.st_ino != s2.st_ino)
		return;
	if ((fd = open("/dev/null", O_WRONLY)) >= 0 && fd != 2) {
		(void)dup2(fd, 2);
		close(fd);
	}
}

int
main(int argc, char **argv)
{
	static struct settings s;
	const char *confdir = NULL;
	char *listen[MAXLISTEN], err[512];
	int ltls[MAXLISTEN];
	int nlisten = 0, ch;

	guard_stderr();
	log_init("smtpd-lite", NULL);
	while ((ch = getopt(argc, argv, "+c:l:L:mqTvh")) != -1) {
		switch (ch) {
		case 'c':
			confdir = optarg;
			break;
		case 'l':
		case 'L':
			if (nlisten == MAXLISTEN)
				die(EXIT_PERM, "at most %d -l/-L options", MAXLISTEN);
			ltls[nlisten] = ch == 'L';
			listen[nlisten++] = optarg;
			break;
		case 'm':
			opt_submission = 1;
			break;
		case 'T':
			opt_implicit_tls = 1;
			break;
		case 'q':
			log_verbose = 0;
			break;
		case 'v':
			log_verbose++;
			break;
		case 'h':
			puts(USAGE);
			return 0;
		default:
			die(EXIT_PERM, "%s", USAGE);
		}
	}
	argc -= optind;
	argv += optind;
	if (settings_load(&s, settings_confdir(confdir), err, sizeof err) < 0)
		die(EXIT_TEMP, "4.3.0 %s", err);
	for (ch = 0; ch < nlisten; ch++)
		if (ltls[ch] && !tls_configured(&s))
			die(EXIT_TEMP, "4.3.0 -L %s: implicit TLS needs tls_cert in the settings",
			    listen[ch]);
	if (opt_implicit_tls && !tls_configured(&s))
		die(EXIT_TEMP, "4.3.0 -T: implicit TLS needs tls_cert in the settings");
	if (opt_submission && !auth_available(&s))
		log_warn("-m: submission without %s/auth.cdb: nobody can send", s.confdir);
	if (nlisten)
		listen_run(&s, listen, ltls, nlisten, chain_argv(&s, argc, argv));
	if (forkserver_fd() >= 0)
		session_server(&s, chain_argv(&s, argc, argv));
	serve_one(&s, chain_argv(&s, argc, argv));
	return 0;
}
