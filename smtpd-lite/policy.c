/* policy.c: the policy chain, Postfix's SMTP access policy delegation
 * protocol (SMTPD_POLICY_README): "name=value" lines and an empty line
 * out, "action=..." and an empty line back, on a connection kept for
 * the whole SMTP session.
 *
 * Services, asked in order: BINDIR/relaycheck -p -c CONFDIR (always
 * first), BINDIR/ruleproc -p -c CONFDIR when CONFDIR/rules exists, then each "policy" line of the settings: exec:COMMAND (a
 * co-process on a socketpair as its stdin/stdout), unix:PATH,
 * inet:HOST:PORT. The first REJECT/DEFER/4xx/5xx wins; OK ends the
 * chain; DUNNO, PREPEND, REDIRECT, DISCARD, INFO, WARN go on. A service
 * that cannot be reached, dies, is slow or answers something we do not
 * understand gives 451 4.3.0: we never accept on trouble. */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "forkserver.h"
#include "log.h"
#include "pstages.h"
#include "smtpd.h"
#include "progspawn.h"

extern char **environ;

#define MAXSVC (SETTINGS_MAX_POLICY + 2)
#define REPLY_CAP 4096

enum skind { SK_EXEC, SK_UNIX, SK_INET };

struct svc {
	enum skind kind;
	char **argv;		/* SK_EXEC */
	char *where;		/* SK_UNIX path, SK_INET host:port */
	char name[64];		/* for logs */
	unsigned stages;	/* 1 << enum pstage: when it is asked */
	int builtin;		/* relaycheck or ruleproc: may narrow stages */
	int fd;			/* -1: not connected */
	int ctl;		/* SK_EXEC: the program's fork server, -1 none */
	int reused;		/* fd is a kept conversation, not yet answered on */
	int sent;		/* this stage's request is out (sent_ahead), its reply not read */
	pid_t pid;
};

static struct svc svcs[MAXSVC];
static int nsvc;
/* A session worker serves one session after another: its conversations
 * with the policy fork servers are kept for the next session (each
 * request carries everything, the servers keep nothing per
 * conversation), saving two set-ups and tear-downs a session. Kept only
 * after a session ends normally, so never with an answer unread. */
static struct kept {
	int ctl, fd;
} kept[MAXSVC];
static int nkept;
static long long tmo_ms;
static char c_ip[64], c_name[256], c_lip[64], c_lport[16], c_rport[16];

static char t_proto[32], t_cipher[128], t_bits[16];	/* TLS, "" none */
static char a_method[16], a_user[256];		/* SMTP AUTH, "" none */

static const char *stage_names[] = { "CONNECT", "HELO", "EHLO", "MAIL", "RCPT" };

void
policy_set_tls(const char *protocol, const char *cipher, int bits)
{
	snprintf(t_proto, sizeof t_proto, "%s", protocol);
	snprintf(t_cipher, sizeof t_cipher, "%s", cipher);
	if (bits > 0)
		snprintf(t_bits, sizeof t_bits, "%d", bits);
	else
		t_bits[0] = 0;
}

void
policy_set_sasl(const char *method, const char *user)
{
	snprintf(a_method, sizeof a_method, "%s", method);
	snprintf(a_user, sizeof a_user, "%s", user);
}

#define ALL_STAGES ((1u << PS_CONNECT) | (1u << PS_HELO) | (1u << PS_EHLO) | \
    (1u << PS_MAIL) | (1u << PS_RCPT))

/* pstages.h's bits -> ours (helo covers EHLO too) */
static unsigned
stage_bits(unsigned pst)
{
	return (pst & PST_CONNECT ? 1u << PS_CONNECT : 0) |
	    (pst & PST_HELO ? (1u << PS_HELO) | (1u << PS_EHLO) : 0) |
	    (pst & PST_MAIL ? 1u << PS_MAIL : 0) | (pst & PST_RCPT ? 1u << PS_RCPT : 0);
}

/* "connect,helo,mail,rcpt"; 0 if bad (or none). */
static unsigned
parse_stages(const char *s)
{
	unsigned m;

	return pstages_parse(s, &m) < 0 ? 0 : stage_bits(m);
}

static void
svc_add(enum skind kind, const char *spec, const char *name)
{
	struct svc *v = &svcs[nsvc++];

	memset(v, 0, sizeof *v);
	v->kind = kind;
	v->fd = -1;
	v->ctl = -1;
	v->stages = ALL_STAGES;
	snprintf(v->name, sizeof v->name, "%s", name);
	if (kind == SK_EXEC) {
		v->argv = split_words(spec);
		return;
	}
	/* unix:PATH [STAGES] / inet:HOST:PORT [STAGES]; default rcpt, where
	 * Postfix sites put check_policy_service (postgrey, policyd-spf) */
	v->stages = 1u << PS_RCPT;
	v->where = xstrndup(spec, strcspn(spec, " \t"));
	spec += strlen(v->where);
	while (*spec == ' ' || *spec == '\t')
		spec++;
	if (*spec && !(v->stages = parse_stages(spec))) {
		log_warn("policy %s: bad stage list, asking at every stage", name);
		v->stages = ALL_STAGES;
	}
	snprintf(v->name, sizeof v->name, "%.*s", (int)(strlen(v->where) + 5), name);
}

/* BINDIR/PROG -p -c CONFDIR: argv of a built-in policy service */
char **
policy_prog_argv(const char *bindir, const char *prog, const char *confdir)
{
	char **av = xcalloc(5, sizeof *av);

	av[0] = xmalloc(strlen(bindir) + strlen(prog) + 2);
	sprintf(av[0], "%s/%s", bindir, prog);
	av[1] = xstrdup("-p");
	av[2] = xstrdup("-c");
	av[3] = xstrdup(confdir);
	return av;
}

/* ... as a co-process (or its fork server), asked at every stage */
static void
svc_argv(const char *prog, const char *bindir, const char *confdir)
{
	struct svc *v;

	svc_add(SK_EXEC, "", prog);
	v = &svcs[nsvc - 1];
	v->builtin = 1;
	free_words(v->argv);
	v->argv = policy_prog_argv(bindir, prog, confdir);
	v->ctl = servers_policy_ctl(prog);
}

void
policy_init(const struct settings *s, const char *bindir, const char *ip,
    const char *name, const char *lip, const char *lport, const char *rport)
{
	int i;

	/* a session worker serves one session after another: nothing of
	 * the last one's services, TLS or AUTH may reach this one's requests */
	for (i = 0; i < nsvc; i++) {
		if (svcs[i].fd >= 0)	/* the last session did not end normally */
			close(svcs[i].fd);
		free_words(svcs[i].argv);
		free(svcs[i].where);
	}
	nsvc = 0;
	t_proto[0] = t_cipher[0] = t_bits[0] = 0;
	a_method[0] = a_user[0] = 0;
	tmo_ms = s->timeout_policy * 1000;
	snprintf(c_ip, sizeof c_ip, "%s", ip);
	snprintf(c_name, sizeof c_name, "%s", name);
	snprintf(c_lip, sizeof c_lip, "%s", lip);
	snprintf(c_lport, sizeof c_lport, "%s", lport);
	snprintf(c_rport, sizeof c_rport, "%s", rport);
	/* relaycheck first, then ruleproc's envelope rules when there are
	 * rules; argv built directly: paths may hold blanks */
	svc_argv("relaycheck", bindir, s->confdir);
	if (smtpd_have_rules(s))
		svc_argv("ruleproc", bindir, s->confdir);
	for (i = 0; i < s->npolicy && nsvc < MAXSVC; i++) {
		const char *p = s->policy[i];
		if (!strncmp(p, "exec:", 5))
			svc_add(SK_EXEC, p + 5, p);
		else if (!strncmp(p, "unix:", 5))
			svc_add(SK_UNIX, p + 5, p);
		else
			svc_add(SK_INET, p + 5, p);
	}
}

/* The co-process, started with posix_spawn (a vfork and exec in glibc:
 * no copy of our page tables; issue 7): default signals, the socket
 * as its stdin and stdout, no other descriptors of ours. */
static int
spawn(struct svc *v)
{
	int sv[2], rc, fds[3] = { -1, -1, SPAWN_KEEP };
	pid_t pid = -1;

	if (!v->argv[0])
		return -1;
	if (v->ctl >= 0) {	/* a child of the long-lived server: no exec */
		int i;
		for (i = 0; i < nkept; i++)
			if (kept[i].ctl == v->ctl) {
				v->fd = kept[i].fd;
				v->reused = 1;
				kept[i] = kept[--nkept];
				return 0;
			}
		v->fd = forkserver_request(v->ctl, FS_POLICY, -1, environ, now_ms() + tmo_ms, NULL);
		if (v->fd >= 0)
			return 0;
		log_warnsys("policy %s: fork server", v->name);
		v->ctl = -1;	/* gone: exec for the rest of the session */
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	fds[0] = fds[1] = sv[1];
	rc = spawn_fds(&pid, v->argv, environ, fds, 3, 0);
	close(sv[1]);
	if (rc < 0) {
		log_warnsys("policy %s: cannot run %s", v->name, v->argv[0]);
		close(sv[0]);
		return -1;
	}
	v->pid = pid;
	v->fd = sv[0];
	return 0;
}

/* Non-blocking connect with the policy timeout. */
/* Drop a connection. A co-process that failed us is killed (it may
 * hang or ignore SIGTERM); at the end of the session policy_close()
 * lets them see EOF and exit, then reaps them. */
static void
svc_close(struct svc *v, int failed)
{
	if (v->fd >= 0)
		close(v->fd);
	v->fd = -1;
	v->sent = 0;
	if (v->pid > 0 && failed) {
		int st;
		kill(v->pid, SIGKILL);
		(void)waitpid(v->pid, &st, 0);
	}
	v->pid = 0;
}

static int
svc_open(struct svc *v)
{
	if (v->fd >= 0)
		return 0;
	switch (v->kind) {
	case SK_EXEC:
		return spawn(v);
	case SK_UNIX:
		v->fd = net_connect_unix(v->where, now_ms() + tmo_ms);
		return v->fd < 0 ? -1 : 0;
	case SK_INET:
		v->fd = net_connect_inet(v->where, now_ms() + tmo_ms);
		return v->fd < 0 ? -1 : 0;
	}
	return -1;
}

static void
attr(struct buf *b, const char *name, const char *val)
{
	/* no printf: 25 of these a request, four requests a message */
	buf_adds(b, name);
	buf_addc(b, '=');
	if (val)
		buf_adds(b, val);
	buf_addc(b, '\n');
}

static void
build_request(struct buf *b, const struct preq *q)
{
	char num[32];

	buf_clear(b);
	attr(b, "request", "smtpd_access_policy");
	attr(b, "protocol_state", stage_names[q->stage]);
	attr(b, "protocol_name", q->esmtp ? "ESMTP" : "SMTP");
	attr(b, "client_address", c_ip);
	attr(b, "client_name", c_name[0] ? c_name : "unknown");
	attr(b, "reverse_client_name", c_name[0] ? c_name : "unknown");
	attr(b, "client_port", c_rport);
	attr(b, "server_address", c_lip);
	attr(b, "server_port", c_lport);
	attr(b, "helo_name", q->helo);
	attr(b, "sender", q->sender);
	attr(b, "recipient", q->recipient);
	attr(b, "recipient_count", "0");
	attr(b, "queue_id", "");
	attr(b, "instance", q->instance);
	snprintf(num, sizeof num, "%lld", q->size);
	attr(b, "size", num);
	/* as Postfix sends them: empty when there is no TLS or AUTH */
	attr(b, "encryption_protocol", t_proto);
	attr(b, "encryption_cipher", t_cipher);
	attr(b, "encryption_keysize", t_bits);
	attr(b, "sasl_method", a_method);
	attr(b, "sasl_username", a_user);
	attr(b, "sasl_sender", "");
	buf_adds(b, "\n");
}

static int
send_all(int fd, const char *s, size_t n, long long deadline)
{
	while (n > 0) {
		/* the socket is nearly always writable: wait only when not */
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) > 0)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read up to the empty line that ends the reply; 0 ok, -1 trouble. */
static int
recv_reply(int fd, char *rep, size_t cap, long long deadline)
{
	size_t len = 0;

	for (;;) {
		ssize_t n;

		if (wait_fd(fd, POLLIN, deadline) <= 0)
			return -1;
		n = read(fd, rep + len, cap - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -1;
		len += (size_t)n;
		rep[len] = 0;
		if (memchr(rep, 0, len))
			return -1;
		if ((len >= 2 && !strcmp(rep + len - 2, "\n\n")) ||
		    (len >= 3 && !strcmp(rep + len - 3, "\n\r\n")))
			return 0;	/* (CR LF tolerated) */
		if (len == 1 && rep[0] == '\n')
			return -1;	/* an empty reply */
		if (len >= cap - 1)
			return -1;
	}
}

/* A built-in service's "mx_stages=LIST" (pstages.h): the stages it is
 * asked at for the rest of the session. */
static void
take_stages(struct svc *v, const char *rep)
{
	const size_t al = sizeof PSTAGES_ATTR;	/* "mx_stages=" */

	while (*rep) {
		size_t l = strcspn(rep, "\r\n");
		char list[64];
		unsigned m;

		if (l >= al && l - al < sizeof list && !strncmp(rep, PSTAGES_ATTR "=", al)) {
			memcpy(list, rep + al, l - al);
			list[l - al] = 0;
			if (pstages_parse(list, &m) == 0)
				v->stages = stage_bits(m);
			return;
		}
		rep += l;
		rep += strspn(rep, "\r\n");
	}
}

/* The action= value of a reply, or NULL. */
static char *
reply_action(char *rep)
{
	char *line, *save = NULL;

	for (line = strtok_r(rep, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t l = strlen(line);
		if (l && line[l - 1] == '\r')
			line[l - 1] = 0;
		if (!strncmp(line, "action=", 7))
			return line + 7;
	}
	return NULL;
}

static void
set_reply(struct pres *r, int code, const char *dflt_x, const char *text, const char *svc)
{
	char clean[SMTP_REPLY_MAX - 20];
	const char *x = dflt_x;

	while (*text == ' ')
		text++;
	sanitize(clean, sizeof clean, text);
	/* text may start with its own enhanced code "5.1.1 ..." */
	if (isdigit((unsigned char)clean[0]) && clean[1] == '.' &&
	    clean[0] == '0' + code / 100 && strchr(clean, ' ')) {
		snprintf(r->reply, sizeof r->reply, "%d %s", code, clean);
	} else
		snprintf(r->reply, sizeof r->reply, "%d %s %s", code, x,
		    clean[0] ? clean : (code >= 500 ? "Access denied" : "Try again later"));
	r->code = code;
	snprintf(r->service, sizeof r->service, "%s", svc);
	if (code == 421 || code == 521)
		r->disconnect = 1;
}

/* Mid-chain flags of one check. */
struct flags {
	int defer_if_permit, defer_if_reject;
	char dip_text[256];
	char dip_svc[64];
};

/* Apply one action. Returns 1 if the chain stops here. */
static int
apply(struct pres *r, struct flags *f, char *act, const char *svc)
{
	char *arg = act + strcspn(act, " \t");
	size_t kl = (size_t)(arg - act);

	while (*arg == ' ' || *arg == '\t')
		arg++;
#define IS(k) (kl == strlen(k) && !strncasecmp(act, k, kl))
	if (IS("OK"))
		return 1;
	if (IS("DUNNO") || IS("INFO") || IS("WARN")) {
		if (!IS("DUNNO"))
			log_info("policy %s: %s", svc, act);
		return 0;
	}
	if (IS("REJECT")) {
		set_reply(r, f->defer_if_reject ? 450 : 554,
		    f->defer_if_reject ? "4.7.1" : "5.7.1", arg, svc);
		return 1;
	}
	if (IS("DEFER") || IS("DEFER_IF_PERMIT") || IS("DEFER_IF_REJECT")) {
		if (IS("DEFER")) {
			set_reply(r, 450, "4.7.1", arg, svc);
			return 1;
		}
		if (IS("DEFER_IF_REJECT"))
			f->defer_if_reject = 1;
		else if (!f->defer_if_permit) {
			f->defer_if_permit = 1;
			snprintf(f->dip_text, sizeof f->dip_text, "%s", arg);
			snprintf(f->dip_svc, sizeof f->dip_svc, "%s", svc);
		}
		return 0;
	}
	if (IS("DISCARD")) {
		r->discard = 1;
		return 0;
	}
	if (IS("PREPEND")) {
		char h[1000];
		sanitize(h, sizeof h, arg);
		if (!strchr(h, ':') || h[0] == ' ' || h[0] == ':' || r->prepend.len > 8192)
			goto garbage;
		buf_printf(&r->prepend, "%s\n", h);
		return 0;
	}
	if (IS("REDIRECT")) {
		struct addr a;
		if (addr_parse_path(arg, strlen(arg), &a, 0, 0, NULL))
			goto garbage;
		snprintf(r->redirect, sizeof r->redirect, "%s", a.full);
		return 0;
	}
	if (kl == 3 && (act[0] == '4' || act[0] == '5') && isdigit((unsigned char)act[1]) &&
	    isdigit((unsigned char)act[2])) {
		int code = atoi(act);
		if (code >= 500 && f->defer_if_reject)
			set_reply(r, 450, "4.7.1", arg, svc);
		else
			set_reply(r, code, code >= 500 ? "5.7.1" : "4.7.1", arg, svc);
		return 1;
	}
#undef IS
garbage:
	log_warn("policy %s: action not understood: %.200s", svc, act);
	set_reply(r, 451, "4.3.0", "Policy service failure, try again later", svc);
	return 1;
}

static int
ask(struct svc *v, const struct buf *req, char *rep)
{
	long long deadline = now_ms() + tmo_ms;

	if (svc_open(v) < 0) {
		log_warnsys("policy %s: cannot connect", v->name);
		return -1;
	}
	if ((!v->sent && send_all(v->fd, req->s, req->len, deadline) < 0) ||
	    recv_reply(v->fd, rep, REPLY_CAP, deadline) < 0) {
		v->sent = 0;
		if (v->reused && now_ms() < deadline) {
			/* the server was restarted since the last session:
			 * a query is safe to ask again, on a new conversation */
			svc_close(v, 0);
			v->reused = 0;
			return ask(v, req, rep);
		}
		log_warn("policy %s: no valid answer (%s)", v->name,
		    now_ms() >= deadline ? "timeout" : "dead or garbage");
		svc_close(v, 1);
		return -1;
	}
	v->reused = 0;
	v->sent = 0;
	return 0;
}

/* The built-in services asked at this stage get their requests at once
 * when there are two or more (relaycheck and ruleproc at CONNECT): they
 * answer side by side, and the answers are read in order (one wait
 * instead of one a service). Only for those: their answers have no
 * side effects, so a request asked ahead and then not needed (an
 * earlier service refused) is harmless; its answer is read and
 * dropped (sent_drain). A site's services are asked one by one, as
 * Postfix asks them. */
static void
sent_ahead(const struct preq *q, const struct buf *req, const struct buf *reqx)
{
	int i, n = 0;

	for (i = 0; i < nsvc; i++)
		n += svcs[i].builtin && (svcs[i].stages & (1u << q->stage));
	if (n < 2)
		return;
	for (i = 0; i < nsvc; i++) {
		struct svc *v = &svcs[i];
		const struct buf *b = q->stage == PS_CONNECT ? reqx : req;
		if (v->builtin && (v->stages & (1u << q->stage)) && svc_open(v) == 0 &&
		    send_all(v->fd, b->s, b->len, now_ms() + tmo_ms) == 0)
			v->sent = 1;	/* a failed send: ask() tries again */
	}
}

static void
sent_drain(char *rep)
{
	int i;

	for (i = 0; i < nsvc; i++)
		if (svcs[i].sent && svcs[i].fd >= 0) {
			if (recv_reply(svcs[i].fd, rep, REPLY_CAP, now_ms() + tmo_ms) < 0)
				svc_close(&svcs[i], 1);
			svcs[i].sent = 0;
		}
}

void
policy_check(const struct preq *q, struct pres *r)
{
	static char rep[REPLY_CAP];
	struct buf req = BUF_INIT, reqx = BUF_INIT;
	struct flags f;
	int i;

	memset(&f, 0, sizeof f);
	r->code = 0;
	r->disconnect = r->discard = 0;
	r->reply[0] = r->service[0] = r->redirect[0] = 0;
	buf_clear(&r->prepend);
	build_request(&req, q);
	if (q->stage == PS_CONNECT) {	/* built-in services: which stages need them */
		buf_add(&reqx, req.s, req.len - 1);
		buf_adds(&reqx, PSTAGES_QUERY "\n\n");
	}
	sent_ahead(q, &req, &reqx);
	for (i = 0; i < nsvc; i++) {
		int narrow = svcs[i].builtin && q->stage == PS_CONNECT;
		char *act;

		if (!(svcs[i].stages & (1u << q->stage)))
			continue;
		if (ask(&svcs[i], narrow ? &reqx : &req, rep) < 0) {
			set_reply(r, 451, "4.3.0", "Policy service unavailable, try again later",
			    svcs[i].name);
			break;
		}
		if (narrow)
			take_stages(&svcs[i], rep);
		if (!(act = reply_action(rep))) {
			log_warn("policy %s: reply without action=", svcs[i].name);
			set_reply(r, 451, "4.3.0", "Policy service failure, try again later",
			    svcs[i].name);
			break;
		}
		log_debug("policy %s %s: action=%.200s", svcs[i].name,
		    stage_names[q->stage], act);
		snprintf(r->service, sizeof r->service, "%s", svcs[i].name);
		if (apply(r, &f, act, svcs[i].name))
			break;
	}
	sent_drain(rep);
	buf_free(&req);
	buf_free(&reqx);
	if (r->code == 0 && f.defer_if_permit)
		set_reply(r, 450, "4.7.1", f.dip_text, f.dip_svc);
	if (r->code)
		r->discard = 0, r->redirect[0] = 0;
}

void
pres_free(struct pres *r)
{
	buf_free(&r->prepend);
}

void
policy_close(void)
{
	long long deadline = now_ms() + 500;
	int i;

	for (i = 0; i < nsvc; i++)
		if (svcs[i].fd >= 0) {
			if (svcs[i].ctl >= 0 && svcs[i].pid <= 0 && nkept < MAXSVC)
				kept[nkept++] = (struct kept){ svcs[i].ctl, svcs[i].fd };
			else
				close(svcs[i].fd);
			svcs[i].fd = -1;
		}
	for (i = 0; i < nsvc; i++) {
		struct svc *v = &svcs[i];
		pid_t w;
		int st;

		if (v->pid <= 0)
			continue;
		while ((w = waitpid(v->pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
			usleep(1000);
		svc_close(v, w == 0);	/* still there after 0.5 s: killed */
	}
}
