/* milter.c: ruleproc -m SOCKET, the same rules as a libmilter filter.
 *   MAIL: rules known at MAIL time (reject/tempfail the MAIL command)
 *   RCPT: rules known at RCPT time, for that recipient only
 *   end of message: every rule, over the accepted recipients; actions
 *   map to reject/tempfail (smfi_setreply), discard, smfi_delrcpt +
 *   smfi_addrcpt (redirect, per-recipient discard), smfi_addrcpt (copy),
 *   smfi_addheader, smfi_chgheader (subject tag). A folder becomes an
 *   "X-Rules-Folder: <rcpt> Folder" header for the delivery agent (a
 *   Sieve script) to act on.
 * The rules are re-read when the file changes (checked per message);
 * each message keeps the rule set it started with (reference count). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "buf.h"
#include "log.h"
#include "ruleproc.h"

struct shared {
	struct loaded l;
	int refs;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct shared *current;
static const struct opts *gopts;
static time_t last_check;

struct conn {
	char *client, *cname, *helo;
	/* per message */
	struct shared *sh;
	char *sender, *auth;
	char **rcpts;		/* bare */
	char **rcpt_raw;	/* as the MTA gave them, for smfi_delrcpt */
	int nrcpt;
	struct rmsg m;
	int have_msg;
	char *subject;		/* first Subject value as received */
	int pending_cr;
};

static struct shared *
acquire(void)
{
	struct shared *s;
	time_t now = time(NULL);

	pthread_mutex_lock(&lock);
	if (now != last_check) {
		last_check = now;
		if (rp_changed(gopts, &current->l)) {
			struct shared *n = xcalloc(1, sizeof *n);
			char err[800];
			if (rp_load(gopts, &n->l, err, sizeof err) == 0) {
				n->refs = 1;
				if (--current->refs == 0) {
					rules_free(&current->l.rs);
					free(current);
				}
				current = n;
				log_info("rules reloaded: %d rules%s", n->l.rs.nrules,
				    n->l.fallback ? " (last good copy rules.ok)" : "");
			} else {
				char p[4200];
				log_warn("rules reload failed, keeping the rules in memory: %s", err);
				free(n);
				/* do not retry every second: remember the broken file */
				if (gopts->rulesfile)
					strlcpy(p, gopts->rulesfile, sizeof p);
				else
					snprintf(p, sizeof p, "%s/rules", gopts->confdir);
				(void)stat(p, &current->l.st_rules);
			}
		}
	}
	s = current;
	s->refs++;
	pthread_mutex_unlock(&lock);
	return s;
}

static void
release(struct shared *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&lock);
	if (--s->refs == 0) {
		rules_free(&s->l.rs);
		free(s);
	}
	pthread_mutex_unlock(&lock);
}

static void
msg_reset(struct conn *c)
{
	int i;

	release(c->sh);
	c->sh = NULL;
	free(c->sender);
	free(c->auth);
	c->sender = c->auth = NULL;
	for (i = 0; i < c->nrcpt; i++) {
		free(c->rcpts[i]);
		free(c->rcpt_raw[i]);
	}
	free(c->rcpts);
	free(c->rcpt_raw);
	c->rcpts = c->rcpt_raw = NULL;
	c->nrcpt = 0;
	if (c->have_msg)
		rmsg_free(&c->m);
	c->have_msg = 0;
	free(c->subject);
	c->subject = NULL;
	c->pending_cr = 0;
}

static struct conn *
conn_of(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	if (!c) {
		c = xcalloc(1, sizeof *c);
		smfi_setpriv(ctx, c);
	}
	return c;
}

static void
env_of(struct conn *c, struct renv *e)
{
	memset(e, 0, sizeof *e);
	e->client = c->client;
	e->client_name = c->cname ? c->cname : "";
	e->helo = c->helo ? c->helo : "";
	e->sender = c->sender ? c->sender : "";
	e->auth = c->auth;
	e->rcpts = c->rcpts;
	e->nrcpt = c->nrcpt;
	rules_when(gopts->when, &e->wday, &e->minute);
}

/* smfi_setreply text: no CR/LF, '%' doubled */
static void
reply(SMFICTX *ctx, const struct rresult *r)
{
	char code[8], text[1100];
	size_t o = 0;
	const char *s;

	snprintf(code, sizeof code, "%d", r->code);
	for (s = r->text; *s && o + 3 < sizeof text; s++) {
		if (*s == '%')
			text[o++] = '%';
		text[o++] = *s;
	}
	text[o] = 0;
	if (smfi_setreply(ctx, code, (char *)r->xcode, text) != MI_SUCCESS)
		log_warn("smfi_setreply failed");
}

static sfsistat
verdict(SMFICTX *ctx, struct conn *c, const struct rresult *r, const char *what)
{
	const struct rule *ru;

	if (r->v != V_REJECT && r->v != V_TEMPFAIL)
		return SMFIS_CONTINUE;
	ru = &c->sh->l.rs.rules[r->rule];
	log_info("%s %s client=%s sender=<%s> rule=\"%s\" line=%d %d %s %s", what,
	    r->v == V_REJECT ? "reject" : "tempfail", c->client ? c->client : "-",
	    c->sender ? c->sender : "", ru->name, ru->line, r->code, r->xcode, r->text);
	reply(ctx, r);
	return r->v == V_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

static sfsistat
x_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	struct conn *c = conn_of(ctx);
	char ip[INET6_ADDRSTRLEN + 1] = "";
	const char *mac = smfi_getsymval(ctx, "{client_addr}");

	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)sa)->sin_addr, ip, sizeof ip);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)sa)->sin6_addr, ip, sizeof ip);
	else if (mac)
		strlcpy(ip, mac, sizeof ip);
	free(c->client);
	c->client = *ip ? xstrdup(ip) : NULL;
	free(c->cname);
	/* Postfix and Sendmail pass "[1.2.3.4]" or "unknown" without a name */
	c->cname = host && *host && *host != '[' && strcmp(host, "unknown") ? xstrdup(host) : NULL;
	return SMFIS_CONTINUE;
}

static sfsistat
x_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = conn_of(ctx);

	free(c->helo);
	c->helo = xstrdup(helo ? helo : "");
	return SMFIS_CONTINUE;
}

static sfsistat
x_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_of(ctx);
	struct renv e;
	struct rresult r;
	sfsistat rc;
	const char *a = smfi_getsymval(ctx, "{auth_authen}");

	msg_reset(c);
	c->sh = acquire();
	c->sender = rp_bare(argv && argv[0] ? argv[0] : "");
	c->auth = a && *a ? xstrdup(a) : NULL;
	env_of(c, &e);
	rules_run(&c->sh->l.rs, &e, ST_MAIL, &r, NULL);
	rc = verdict(ctx, c, &r, "MAIL");
	rresult_free(&r);
	return rc;
}

static sfsistat
x_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_of(ctx);
	struct renv e;
	struct rresult r;
	sfsistat rc;
	char *b;

	if (!c->sh)
		return SMFIS_CONTINUE;
	b = rp_bare(argv && argv[0] ? argv[0] : "");
	env_of(c, &e);
	e.rcpts = &b;
	e.nrcpt = 1;
	rules_run(&c->sh->l.rs, &e, ST_RCPT, &r, NULL);
	rc = verdict(ctx, c, &r, "RCPT");
	rresult_free(&r);
	if (rc != SMFIS_CONTINUE) {
		free(b);
		return rc;
	}
	c->rcpts = xreallocarray(c->rcpts, (size_t)c->nrcpt + 1, sizeof *c->rcpts);
	c->rcpt_raw = xreallocarray(c->rcpt_raw, (size_t)c->nrcpt + 1, sizeof *c->rcpt_raw);
	c->rcpts[c->nrcpt] = b;
	c->rcpt_raw[c->nrcpt++] = xstrdup(argv[0]);
	return SMFIS_CONTINUE;
}

static void
ensure_msg(struct conn *c)
{
	if (!c->have_msg) {
		rmsg_init(&c->m, c->sh->l.rs.body_limit);
		c->have_msg = 1;
	}
}

/* feed with CRLF turned into LF, as the chain sees the message */
static void
feed_lf(struct conn *c, const char *p, size_t n)
{
	size_t i, start = 0;

	if (c->pending_cr) {
		c->pending_cr = 0;
		if (!(n && p[0] == '\n'))
			rmsg_feed(&c->m, "\r", 1);
	}
	for (i = 0; i < n; i++) {
		if (p[i] != '\r')
			continue;
		if (i + 1 == n) {
			rmsg_feed(&c->m, p + start, i - start);
			c->pending_cr = 1;
			return;
		}
		if (p[i + 1] == '\n') {
			rmsg_feed(&c->m, p + start, i - start);
			start = i + 1;
		}
	}
	rmsg_feed(&c->m, p + start, n - start);
}

static sfsistat
x_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_of(ctx);

	if (!c->sh)
		return SMFIS_CONTINUE;
	ensure_msg(c);
	rmsg_feed(&c->m, name, strlen(name));
	rmsg_feed(&c->m, ": ", 2);
	feed_lf(c, value, strlen(value));
	rmsg_feed(&c->m, "\n", 1);
	if (!c->subject && !strcasecmp(name, "Subject"))
		c->subject = xstrdup(value);
	return SMFIS_CONTINUE;
}

static sfsistat
x_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);

	if (!c->sh)
		return SMFIS_CONTINUE;
	ensure_msg(c);
	rmsg_feed(&c->m, "\n", 1);
	return SMFIS_CONTINUE;
}

static sfsistat
x_body(SMFICTX *ctx, unsigned char *p, size_t n)
{
	struct conn *c = conn_of(ctx);

	if (!c->sh)
		return SMFIS_CONTINUE;
	ensure_msg(c);
	feed_lf(c, (const char *)p, n);
	return SMFIS_CONTINUE;
}

static int
addr_in(char **v, int n, const char *a)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcasecmp(v[i], a))
			return 1;
	return 0;
}

static sfsistat
x_eom(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	struct renv e;
	struct rresult r;
	sfsistat rc = SMFIS_CONTINUE;
	int i, j, bad = 0;
	char br[300];

	if (!c->sh)
		return SMFIS_CONTINUE;
	ensure_msg(c);
	if (c->pending_cr) {
		rmsg_feed(&c->m, "\r", 1);
		c->pending_cr = 0;
	}
	rmsg_end(&c->m);
	env_of(c, &e);
	e.msg = &c->m;
	rules_run(&c->sh->l.rs, &e, ST_DATA, &r, NULL);
	switch (r.v) {
	case V_REJECT:
	case V_TEMPFAIL:
		rc = verdict(ctx, c, &r, "DATA");
		goto out;
	case V_DISCARD:
		log_info("DATA discard client=%s sender=<%s> rule=\"%s\"", c->client ? c->client : "-",
		    c->sender ? c->sender : "", r.rule >= 0 ? c->sh->l.rs.rules[r.rule].name :
		    "(every recipient discarded)");
		rc = SMFIS_DISCARD;
		goto out;
	case V_DELIVER:
		break;
	}
	/* recipients: what leaves, what comes */
	{
		char **added = NULL;
		int nadded = 0;
		for (i = 0; i < r.nr; i++) {
			struct rrcpt *rr = &r.r[i];
			int keep = !rr->discard && (!rr->to || addr_in(rr->to, rr->nto, rr->addr));
			if (!keep && smfi_delrcpt(ctx, c->rcpt_raw[i]) != MI_SUCCESS)
				bad = 1;
			if (rr->discard || !rr->to)
				continue;
			for (j = 0; j < rr->nto; j++) {
				if (!strcasecmp(rr->to[j], rr->addr) || addr_in(c->rcpts, c->nrcpt, rr->to[j]) ||
				    addr_in(added, nadded, rr->to[j]))
					continue;
				snprintf(br, sizeof br, "<%s>", rr->to[j]);
				if (smfi_addrcpt(ctx, br) != MI_SUCCESS)
					bad = 1;
				added = xreallocarray(added, (size_t)nadded + 1, sizeof *added);
				added[nadded++] = rr->to[j];
			}
		}
		for (i = 0; i < r.ncopies; i++) {
			if (addr_in(added, nadded, r.copies[i]))
				continue;
			/* a copy to an existing, kept recipient is already there */
			for (j = 0; j < r.nr; j++)
				if (!strcasecmp(r.r[j].addr, r.copies[i]) && !r.r[j].discard && !r.r[j].to)
					break;
			if (j < r.nr)
				continue;
			snprintf(br, sizeof br, "<%s>", r.copies[i]);
			if (smfi_addrcpt(ctx, br) != MI_SUCCESS)
				bad = 1;
			added = xreallocarray(added, (size_t)nadded + 1, sizeof *added);
			added[nadded++] = r.copies[i];
		}
		free(added);
	}
	for (i = 0; i < r.nh; i++)
		if (smfi_addheader(ctx, r.hnames[i], r.hvals[i]) != MI_SUCCESS)
			bad = 1;
	if (r.tag) {
		if (!c->subject) {
			if (smfi_addheader(ctx, "Subject", r.tag) != MI_SUCCESS)
				bad = 1;
		} else {
			const char *s = c->subject;
			while (*s == ' ' || *s == '\t')
				s++;
			if (strncasecmp(s, r.tag, strlen(r.tag))) {
				struct buf v = BUF_INIT;
				buf_printf(&v, "%s %s", r.tag, s);
				if (smfi_chgheader(ctx, "Subject", 1, v.s) != MI_SUCCESS)
					bad = 1;
				buf_free(&v);
			}
		}
	}
	for (i = 0; i < r.nr; i++) {
		struct rrcpt *rr = &r.r[i];
		int n = rr->to ? rr->nto : 1;
		if (!rr->folder || rr->discard)
			continue;
		for (j = 0; j < n; j++) {
			struct buf v = BUF_INIT;
			buf_printf(&v, "<%s> %s", rr->to ? rr->to[j] : rr->addr, rr->folder);
			if (smfi_addheader(ctx, "X-Rules-Folder", v.s) != MI_SUCCESS)
				bad = 1;
			buf_free(&v);
		}
	}
	if (bad) {
		log_warn("the MTA refused a change; tempfail");
		rc = SMFIS_TEMPFAIL;
	} else if (r.nmatched || gopts->verbose)
		log_info("DATA deliver client=%s sender=<%s> rules_matched=%d", c->client ? c->client : "-",
		    c->sender ? c->sender : "", r.nmatched);
out:
	rresult_free(&r);
	msg_reset(c);
	return rc;
}

static sfsistat
x_abort(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	if (c)
		msg_reset(c);
	return SMFIS_CONTINUE;
}

static sfsistat
x_close(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	if (c) {
		msg_reset(c);
		free(c->client);
		free(c->cname);
		free(c->helo);
		free(c);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

int
milter_mode(const struct opts *o, const char *sock)
{
	struct smfiDesc d;
	char err[800];

	gopts = o;
	current = xcalloc(1, sizeof *current);
	if (rp_load(o, &current->l, err, sizeof err) < 0) {
		log_warn("%s", err);
		fprintf(stderr, "4.3.0 ruleproc: rules configuration error\n");
		return EXIT_TEMP;
	}
	current->refs = 1;
	last_check = time(NULL);
	memset(&d, 0, sizeof d);
	d.xxfi_name = "ruleproc";
	d.xxfi_version = SMFI_VERSION;
	d.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_DELRCPT;
	d.xxfi_connect = x_connect;
	d.xxfi_helo = x_helo;
	d.xxfi_envfrom = x_envfrom;
	d.xxfi_envrcpt = x_envrcpt;
	d.xxfi_header = x_header;
	d.xxfi_eoh = x_eoh;
	d.xxfi_body = x_body;
	d.xxfi_eom = x_eom;
	d.xxfi_abort = x_abort;
	d.xxfi_close = x_close;
	umask(007);
	if (smfi_setconn((char *)sock) != MI_SUCCESS)
		die(EXIT_PERM, "bad milter socket %s", sock);
	if (smfi_register(d) != MI_SUCCESS)
		die(EXIT_TEMP, "smfi_register failed");
	if (smfi_opensocket(1) != MI_SUCCESS)
		die(EXIT_TEMP, "cannot open the milter socket %s", sock);
	log_info("milter listening on %s with %d rules%s", sock, current->l.rs.nrules,
	    current->l.fallback ? " (last good copy rules.ok)" : "");
	if (smfi_main() != MI_SUCCESS)
		die(EXIT_TEMP, "milter loop failed");
	return 0;
}
