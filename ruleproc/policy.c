/* policy.c: ruleproc -p, Postfix's SMTP access policy delegation
 * protocol on stdin/stdout. Envelope-stage rules only: at CONNECT,
 * HELO/EHLO, MAIL and RCPT the rules known by then are run (see
 * rules_run); a reject or tempfail is answered "action=CODE X.Y.Z
 * text", everything else "action=DUNNO" (the chain filter or the milter
 * applies the other actions after DATA). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "forkserver.h"
#include "log.h"
#include "pstages.h"
#include "ruleproc.h"

#define REQ_MAX 65536

struct req {
	struct buf raw;
	const char *state, *client, *cname, *helo, *sender, *rcpt, *sasl;
};

static const char *
attr(const char *line, const char *name)
{
	size_t n = strlen(name);
	return !strncmp(line, name, n) && line[n] == '=' ? line + n + 1 : NULL;
}

static void parse_req(struct req *r);

/* 1 request, 0 clean EOF, -1 malformed */
static int
read_req(struct req *r)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = 0;
	int got = 0, done = 0;

	buf_clear(&r->raw);
	while (!done && (n = getline(&line, &cap, stdin)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = 0;
		if (n == 0) {
			done = 1;
			continue;
		}
		if ((size_t)n != strlen(line) || !strchr(line, '=') || line[0] == '=' ||
		    r->raw.len + (size_t)n > REQ_MAX)
			break;
		buf_add(&r->raw, line, (size_t)n + 1);
		got = 1;
	}
	free(line);
	if (!done)
		return got || n > 0 ? -1 : 0;
	if (!got)
		return -1;
	parse_req(r);
	return 1;
}

/* The attributes we use, from r->raw's NUL-separated lines. */
static void
parse_req(struct req *r)
{
	size_t off;

	r->state = r->client = r->cname = r->helo = r->sender = r->rcpt = r->sasl = NULL;
	for (off = 0; off < r->raw.len; off += strlen(r->raw.s + off) + 1) {
		const char *l = r->raw.s + off, *v;
		if ((v = attr(l, "protocol_state")))
			r->state = v;
		else if ((v = attr(l, "client_address")))
			r->client = v;
		else if ((v = attr(l, "client_name")))
			r->cname = v;
		else if ((v = attr(l, "helo_name")))
			r->helo = v;
		else if ((v = attr(l, "sender")))
			r->sender = v;
		else if ((v = attr(l, "recipient")))
			r->rcpt = v;
		else if ((v = attr(l, "sasl_username")))
			r->sasl = v;
	}
}

static int
stage_of(const char *s, enum rstage *st)
{
	if (!s)
		return -1;
	if (!strcasecmp(s, "CONNECT"))
		*st = ST_CONNECT;
	else if (!strcasecmp(s, "HELO") || !strcasecmp(s, "EHLO"))
		*st = ST_HELO;
	else if (!strcasecmp(s, "MAIL"))
		*st = ST_MAIL;
	else if (!strcasecmp(s, "RCPT"))
		*st = ST_RCPT;
	else
		return -1;	/* DATA, END-OF-MESSAGE, VRFY, ETRN: the chain decides */
	return 0;
}

/* The envelope rules known at this stage -> the answer, into out. */
static void
decide(const struct opts *o, struct loaded *l, const struct req *r, enum rstage st,
    struct buf *out)
{
	struct renv e;
	struct rresult res;
	char *sender = NULL, *rcpt = NULL;

	memset(&e, 0, sizeof e);
	rules_when(o->when, &e.wday, &e.minute);
	e.client = r->client;
	e.client_name = r->cname && strcmp(r->cname, "unknown") ? r->cname : "";
	e.helo = r->helo ? r->helo : "";
	e.auth = r->sasl;
	sender = rp_bare(r->sender ? r->sender : "");
	e.sender = sender;
	if (st == ST_RCPT && r->rcpt && *r->rcpt) {
		rcpt = rp_bare(r->rcpt);
		e.rcpts = &rcpt;
		e.nrcpt = 1;
	} else if (st == ST_RCPT)
		st = ST_MAIL;	/* no recipient given: what is known */
	rules_run(&l->rs, &e, st, &res, NULL);
	if (res.v == V_REJECT || res.v == V_TEMPFAIL) {
		const struct rule *ru = &l->rs.rules[res.rule];
		buf_printf(out, "action=%d %s %s\n\n", res.code, res.xcode, res.text);
		log_info("%s %s client=%s sender=<%s>%s%s%s rule=\"%s\" line=%d", r->state,
		    res.v == V_REJECT ? "reject" : "tempfail", r->client ? r->client : "-",
		    sender, rcpt ? " rcpt=<" : "", rcpt ? rcpt : "", rcpt ? ">" : "",
		    ru->name, ru->line);
	} else {
		buf_adds(out, "action=DUNNO\n\n");
		if (o->verbose)
			log_info("%s DUNNO client=%s sender=<%s>%s%s%s", r->state,
			    r->client ? r->client : "-", sender, rcpt ? " rcpt=<" : "",
			    rcpt ? rcpt : "", rcpt ? ">" : "");
	}
	rresult_free(&res);
	free(sender);
	free(rcpt);
}

/* The answer to one request, with the stages still worth asking when
 * smtpd-lite asks (pstages.h). */
static void
answer(const struct opts *o, struct loaded *l, const struct req *r, struct buf *out)
{
	enum rstage st;

	if (stage_of(r->state, &st) < 0)
		buf_adds(out, "action=DUNNO\n\n");
	else
		decide(o, l, r, st, out);
	if (pstages_asked(r->raw.s, r->raw.len)) {
		out->len--;	/* the empty line comes last */
		pstages_reply(out, rules_envelope_stages(&l->rs));
		buf_addc(out, '\n');
	}
}

/* One request of the event-driven server (forkserver_serve_policy). */
struct policy_ctx {
	const struct opts *o;
	struct loaded *l;	/* the rules in force */
};

static int
serve_request(void *arg, char *req, size_t len, struct buf *out)
{
	static struct req r = { BUF_INIT, NULL, NULL, NULL, NULL, NULL, NULL, NULL };
	const struct policy_ctx *x = arg;
	size_t off, n;

	for (off = 0; off < len; off += n + 1) {
		n = strlen(req + off);
		if (!strchr(req + off, '=') || req[off] == '=')
			return -1;
	}
	buf_clear(&r.raw);
	buf_add(&r.raw, req, len);
	parse_req(&r);
	answer(x->o, x->l, &r, out);
	return 0;
}

static void
policy_refresh(void *arg)
{
	struct policy_ctx *x = arg;

	rp_refresh(x->o, x->l);
}

int
policy_mode(const struct opts *o)
{
	struct req r = { BUF_INIT, NULL, NULL, NULL, NULL, NULL, NULL, NULL };
	struct buf out = BUF_INIT;
	static struct loaded l;	/* reachable until exit: not freed (see dry_run) */
	char err[800];
	int got;

	if (rp_load(o, &l, err, sizeof err) < 0) {
		/* no answer: the client treats a dead service as 451 */
		log_warn("%s", err);
		fprintf(stderr, "4.3.0 ruleproc: rules configuration error\n");
		return EXIT_TEMP;
	}
	if (forkserver_fd() >= 0) {	/* smtpd-lite -l: every session, one process */
		struct policy_ctx x = { o, &l };
		forkserver_serve_policy(serve_request, REQ_MAX, policy_refresh, &x);
	}
	while ((got = read_req(&r)) > 0) {
		rp_refresh(o, &l);
		answer(o, &l, &r, &out);
		fwrite(out.s, 1, out.len, stdout);
		buf_clear(&out);
		if (stdin->_IO_read_ptr >= stdin->_IO_read_end && fflush(stdout) == EOF)
			diesys(EXIT_TEMP, "write");
	}
	if (fflush(stdout) == EOF)
		diesys(EXIT_TEMP, "write");
	buf_free(&r.raw);
	buf_free(&out);
	if (got < 0) {
		log_warn("malformed policy request; closing");
		return EXIT_PERM;
	}
	return 0;
}
