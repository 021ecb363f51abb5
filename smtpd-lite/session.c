/* session.c: one SMTP session (RFC 5321) on fd 0/1.
 *
 * Every reply carries an enhanced status code (RFC 3463). Replies are
 * queued by io.c and written when no more pipelined input is waiting,
 * so they come out in order. The transaction's envelope is bounded:
 * max_recipients addresses of at most 256 octets each.
 *
 * STARTTLS (RFC 3207): after the handshake everything the client told
 * us is forgotten (HELO, the transaction, AUTH) and anything it
 * pipelined after STARTTLS in plaintext has been thrown away, so that
 * no command can be injected into the TLS session (CVE-2011-0411).
 * AUTH PLAIN and LOGIN (RFC 4954) are offered under TLS only (or on
 * loopback when auth_loopback_plaintext says so); failures are delayed,
 * logged with the client's address and limited per connection. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base64.h"
#include "fdio.h"
#include "forkserver.h"
#include "log.h"
#include "smtpd.h"
#include "spool.h"
#include "tables.h"

struct sess {
	const struct settings *s;
	const struct client *c;
	char **chain;
	char sid[ID_LEN];
	char helo[256];
	int esmtp, greeted, denied;
	long long errors, nmsg, nrcpt_total, ntx;
	char instance[ID_LEN + 24];	/* policy "instance": one per transaction */
	struct buf cprepend;	/* PREPEND from CONNECT */
	struct buf hprepend;	/* PREPEND from the last HELO/EHLO */
	/* the transaction */
	int in_mail, rcpt_tried;
	char sender[ADDR_PATH_MAX + 1];
	long long size;
	struct buf rcpts;	/* "a\nb\n" */
	long long nrcpt;
	char first_rcpt[ADDR_PATH_MAX + 1];
	struct buf tprepend;
	int discard;
	char redirect[ADDR_PATH_MAX + 1];
	/* TLS and AUTH */
	int tls, loopback, authenable;
	struct tls_info ti;
	char auth_user[AUTH_USER_MAX + 1];	/* "" not authenticated */
	const char *auth_method;
	long long auth_failures;
};

static void reply(struct sess *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_prepend(struct sess *ss, const struct buf *p);
static int auth_offered(const struct sess *ss);
static void start_tls(struct sess *ss);

static void
reply(struct sess *ss, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX + 8];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof line - 3)
		n = (int)(sizeof line - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	io_put(line, (size_t)n);
	if (log_verbose >= 3)
		log_debug("> %.*s", n - 2, line);
	else if (log_verbose >= 2 && (line[0] == '4' || line[0] == '5'))
		log_info("reply %.*s", n - 2, line);
}

static void __attribute__((noreturn))
finish(struct sess *ss, const char *why)
{
	if (io_flush() < 0)
		log_warnsys("write to client failed");
	io_tls_end();
	policy_close();
	milter_quit();
	log_info("disconnect ip=%s %s messages=%lld recipients=%lld errors=%lld",
	    ss->c->ip, why, ss->nmsg, ss->nrcpt_total, ss->errors);
	/* a session worker goes on to the next session: what this one
	 * held is given back (forkserver_exit longjmps past the caller) */
	buf_free(&ss->cprepend);
	buf_free(&ss->hprepend);
	buf_free(&ss->rcpts);
	buf_free(&ss->tprepend);
	forkserver_exit(0);
}

static void
reset_tx(struct sess *ss)
{
	if (ss->in_mail)
		milter_abort();	/* only those still inside a message get it */
	ss->in_mail = ss->rcpt_tried = 0;
	ss->sender[0] = ss->first_rcpt[0] = ss->redirect[0] = 0;
	ss->size = 0;
	ss->nrcpt = 0;
	ss->discard = 0;
	buf_clear(&ss->rcpts);
	buf_clear(&ss->tprepend);
}

/* A bad command: its reply, or 421 when there have been too many. */
static void bad(struct sess *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
bad(struct sess *ss, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (++ss->errors > ss->s->max_errors) {
		reply(ss, "421 4.7.0 %s Error: too many errors, closing connection",
		    ss->s->hostname);
		finish(ss, "too-many-errors");
	}
	reply(ss, "%s", line);
}

static void
esc(char *dst, size_t len, const char *s)
{
	log_esc(dst, len, s, strlen(s));
}

static void
ask_policy(struct sess *ss, enum pstage st, const char *rcpt, struct pres *r)
{
	struct preq q;

	memset(&q, 0, sizeof q);
	q.stage = st;
	q.helo = ss->helo;
	q.sender = ss->in_mail || st == PS_MAIL ? ss->sender : "";
	q.recipient = rcpt ? rcpt : "";
	q.instance = ss->instance;
	q.size = ss->size;
	q.esmtp = ss->esmtp;
	policy_check(&q, r);
	if (r->disconnect) {
		reply(ss, "%s", r->reply);
		finish(ss, "policy-disconnect");
	}
}

/* ---- commands ---- */

static void
greet(struct sess *ss)
{
	struct pres r;

	memset(&r, 0, sizeof r);
	ask_policy(ss, PS_CONNECT, NULL, &r);
	if (r.code >= 500) {
		const char *t = r.reply + 4;
		ss->denied = 1;
		log_info("connect denied ip=%s service=%s reply=%s", ss->c->ip, r.service, r.reply);
		reply(ss, "554 %s", t);
	} else if (r.code) {
		log_info("connect deferred ip=%s service=%s reply=%s", ss->c->ip, r.service, r.reply);
		reply(ss, "421 %s", r.reply + 4);
		pres_free(&r);
		finish(ss, "deferred");
	} else {
		struct mres mr;
		buf_add(&ss->cprepend, r.prepend.s, r.prepend.len);
		milter_connect(ss->s, ss->c, ss->sid, &mr);
		reply(ss, "220 %s ESMTP", ss->s->hostname);
	}
	pres_free(&r);
}

static void
cmd_helo(struct sess *ss, char *arg, int esmtp)
{
	char name[256], e[600];
	size_t i, l = strcspn(arg, " ");
	struct pres r;

	if (!*arg || l >= sizeof name) {
		bad(ss, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	memcpy(name, arg, l);
	name[l] = 0;
	for (i = 0; i < l; i++)
		if ((unsigned char)name[i] <= ' ' || (unsigned char)name[i] >= 0x7f) {
			bad(ss, "501 5.5.4 Invalid hostname");
			return;
		}
	memset(&r, 0, sizeof r);
	reset_tx(ss);
	snprintf(ss->helo, sizeof ss->helo, "%s", name);
	ss->esmtp = esmtp;
	ask_policy(ss, esmtp ? PS_EHLO : PS_HELO, NULL, &r);
	esc(e, sizeof e, name);
	if (r.code) {
		log_info("helo %s rejected service=%s reply=%s", e, r.service, r.reply);
		ss->helo[0] = 0;
		ss->greeted = 0;
		reply(ss, "%s", r.reply);
		pres_free(&r);
		return;
	}
	{
		struct mres mr;
		milter_helo(name, ss->tls ? ss->ti.protocol : NULL, ss->ti.cipher, ss->ti.bits, &mr);
		if (mr.code) {
			ss->helo[0] = 0;
			ss->greeted = 0;
			pres_free(&r);
			reply(ss, "%s", mr.reply);
			return;
		}
	}
	log_info("helo %s %s", esmtp ? "esmtp" : "smtp", e);
	ss->greeted = 1;
	buf_clear(&ss->hprepend);
	buf_add(&ss->hprepend, r.prepend.s, r.prepend.len);
	pres_free(&r);
	if (!esmtp) {
		reply(ss, "250 %s", ss->s->hostname);
		return;
	}
	reply(ss, "250-%s", ss->s->hostname);
	reply(ss, "250-PIPELINING");
	reply(ss, "250-SIZE %lld", ss->s->max_size);
	reply(ss, "250-8BITMIME");
	if (tls_configured(ss->s) && !ss->tls)
		reply(ss, "250-STARTTLS");
	if (auth_offered(ss))
		reply(ss, "250-AUTH PLAIN LOGIN");
	reply(ss, "250 ENHANCEDSTATUSCODES");
}

/* "FROM:" / "TO:" then the path; returns the path start or NULL. */
static char *
after_keyword(char *arg, const char *kw)
{
	size_t l = strlen(kw);

	if (strncasecmp(arg, kw, l))
		return NULL;
	arg += l;
	while (*arg == ' ')
		arg++;
	return *arg ? arg : NULL;
}

/* MAIL parameters; 0 ok, -1 replied. */
static int
mail_params(struct sess *ss, const char *p)
{
	char kv[SMTP_LINE_MAX];

	while (*p) {
		size_t l = strcspn(p, " ");
		char *v;

		snprintf(kv, sizeof kv, "%.*s", (int)l, p);
		p += l;
		while (*p == ' ')
			p++;
		v = strchr(kv, '=');
		if (v)
			*v++ = 0;
		if (!ss->esmtp) {
			bad(ss, "555 5.5.4 Parameters not allowed after HELO");
			return -1;
		}
		if (!strcasecmp(kv, "SIZE") && v) {
			char *end;
			unsigned long long n;
			errno = 0;
			n = strtoull(v, &end, 10);
			if (!*v || *end || *v == '-') {
				bad(ss, "501 5.5.4 Bad SIZE parameter");
				return -1;
			}
			if (errno == ERANGE || n > (unsigned long long)ss->s->max_size) {
				reply(ss, "552 5.3.4 Message size exceeds fixed limit");
				return -1;
			}
			ss->size = (long long)n;
		} else if (!strcasecmp(kv, "BODY") && v) {
			if (strcasecmp(v, "7BIT") && strcasecmp(v, "8BITMIME")) {
				bad(ss, "501 5.5.4 Bad BODY parameter");
				return -1;
			}
		} else if (!strcasecmp(kv, "AUTH") && v && ss->authenable) {
			/* RFC 4954 5: the identity a trusted relay vouches
			 * for; we trust no one's, so it is accepted and
			 * not used */
			if (!*v) {
				bad(ss, "501 5.5.4 Bad AUTH parameter");
				return -1;
			}
		} else {
			char e[300];
			esc(e, sizeof e, kv);
			bad(ss, "555 5.5.4 Unsupported parameter %s", e);
			return -1;
		}
	}
	return 0;
}

static void
cmd_mail(struct sess *ss, char *arg)
{
	struct addr a;
	const char *rest, *why;
	char *path;
	char e[600];
	struct pres r;

	if (!ss->greeted) {
		bad(ss, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (ss->in_mail) {
		bad(ss, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (opt_submission && !ss->auth_user[0]) {
		bad(ss, "530 5.7.0 Authentication required");
		return;
	}
	if (!(path = after_keyword(arg, "FROM:"))) {
		bad(ss, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if ((why = addr_parse_path(path, strlen(path), &a, 1, 0, &rest))) {
		bad(ss, "501 5.1.7 Bad sender address syntax (%s)", why);
		return;
	}
	ss->size = 0;
	if (mail_params(ss, rest) < 0)
		return;
	if (ss->auth_user[0] && ss->s->auth_sender_check) {
		int own = auth_sender_ok(ss->s, a.full, ss->auth_user);
		esc(e, sizeof e, a.full);
		if (own < 0) {
			reply(ss, "451 4.3.0 Error: cannot check the sender, try again later");
			return;
		}
		if (!own) {
			log_info("mail from=<%s> rejected: not owned by user %s", e, ss->auth_user);
			reply(ss, "553 5.7.1 <%s>: Sender address not owned by user %s", e,
			    ss->auth_user);
			return;
		}
	}
	snprintf(ss->instance, sizeof ss->instance, "%s.%lld", ss->sid, ++ss->ntx);
	snprintf(ss->sender, sizeof ss->sender, "%s", a.full);
	memset(&r, 0, sizeof r);
	ask_policy(ss, PS_MAIL, NULL, &r);
	esc(e, sizeof e, a.full);
	if (r.code) {
		log_info("mail from=<%s> rejected service=%s reply=%s", e, r.service, r.reply);
		reply(ss, "%s", r.reply);
		ss->sender[0] = 0;
		pres_free(&r);
		return;
	}
	{
		struct mres mr;
		milter_mail(a.full, rest, ss->auth_method, ss->auth_user, &mr);
		if (mr.code) {
			reply(ss, "%s", mr.reply);
			ss->sender[0] = 0;
			pres_free(&r);
			return;
		}
		if (mr.discard)
			r.discard = 1;
	}
	log_info("mail from=<%s> size=%lld", e, ss->size);
	ss->in_mail = 1;
	add_prepend(ss, &r.prepend);
	if (r.discard)
		ss->discard = 1;
	if (r.redirect[0])
		snprintf(ss->redirect, sizeof ss->redirect, "%s", r.redirect);
	pres_free(&r);
	reply(ss, "250 2.1.0 Ok");
}

/* PREPEND headers of one transaction, bounded (max_recipients RCPTs
 * could each bring some). */
#define TX_PREPEND_MAX 16384

static void
add_prepend(struct sess *ss, const struct buf *p)
{
	if (!p->len)
		return;
	if (ss->tprepend.len + p->len > TX_PREPEND_MAX) {
		log_warn("policy PREPEND headers over %d bytes: ignored", TX_PREPEND_MAX);
		return;
	}
	buf_add(&ss->tprepend, p->s, p->len);
}

static void
rcpt_accept(struct sess *ss, const struct addr *a, struct pres *r)
{
	if (ss->nrcpt == 0)
		snprintf(ss->first_rcpt, sizeof ss->first_rcpt, "%s", a->full);
	buf_printf(&ss->rcpts, "%s\n", a->full);
	ss->nrcpt++;
	ss->nrcpt_total++;
	add_prepend(ss, &r->prepend);
	if (r->discard)
		ss->discard = 1;
	if (r->redirect[0])
		snprintf(ss->redirect, sizeof ss->redirect, "%s", r->redirect);
}

static void
cmd_rcpt(struct sess *ss, char *arg)
{
	struct addr a;
	const char *rest, *why;
	char *path, e[600];
	struct pres r;
	struct mres mr;

	if (!ss->in_mail) {
		bad(ss, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (!(path = after_keyword(arg, "TO:"))) {
		bad(ss, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if ((why = addr_parse_path(path, strlen(path), &a, 0, 1, &rest))) {
		bad(ss, "501 5.1.3 Bad recipient address syntax (%s)", why);
		return;
	}
	if (*rest) {
		esc(e, sizeof e, rest);
		bad(ss, "555 5.5.4 Unsupported parameter %s", e);
		return;
	}
	ss->rcpt_tried = 1;
	esc(e, sizeof e, a.full);
	if (ss->nrcpt >= ss->s->max_recipients) {
		log_info("rcpt to=<%s> rejected reason=too-many-recipients", e);
		reply(ss, "452 4.5.3 Error: too many recipients");
		return;
	}
	memset(&r, 0, sizeof r);
	ask_policy(ss, PS_RCPT, a.full, &r);
	if (r.code) {
		log_info("rcpt to=<%s> rejected service=%s reply=%s", e, r.service, r.reply);
		reply(ss, "%s", r.reply);
	} else if (milter_rcpt(a.full, &mr), mr.code) {
		reply(ss, "%s", mr.reply);
	} else {
		if (mr.discard)
			r.discard = 1;
		log_info("rcpt to=<%s> accepted service=%s", e, r.service);
		rcpt_accept(ss, &a, &r);
		reply(ss, "250 2.1.5 Ok");
	}
	pres_free(&r);
}

static int
write_headers(struct sess *ss, int fd, const char *id)
{
	struct buf h = BUF_INIT;
	char date[64], host[256];
	int rc;

	rfc5322_date(date, sizeof date);
	sanitize(host, sizeof host, ss->c->host);
	buf_add(&h, ss->cprepend.s, ss->cprepend.len);
	buf_add(&h, ss->hprepend.s, ss->hprepend.len);
	buf_add(&h, ss->tprepend.s, ss->tprepend.len);
	/* TCP-info (RFC 5321 4.4): [1.2.3.4] or [IPv6:...]; the protocol
	 * ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (RFC 3848) */
	buf_printf(&h, "Received: from %s (%s%s[%s%s])\n",
	    ss->helo, host, host[0] ? " " : "", strchr(ss->c->ip, ':') ? "IPv6:" : "",
	    ss->c->ip);
	if (ss->tls)
		buf_printf(&h, "\t(using %s with cipher %s (%d/%d bits))\n", ss->ti.protocol,
		    ss->ti.cipher, ss->ti.bits, ss->ti.alg_bits);
	if (ss->auth_user[0])	/* auth_user_ok(): no blanks, parentheses or controls */
		buf_printf(&h, "\t(authenticated sender: %s)\n", ss->auth_user);
	buf_printf(&h, "\tby %s (smtpd-lite) with %s%s%s id %s\n", ss->s->hostname,
	    ss->esmtp ? "ESMTP" : "SMTP", ss->tls ? "S" : "", ss->auth_user[0] ? "A" : "", id);
	if (ss->nrcpt == 1)
		buf_printf(&h, "\tfor <%s>; %s\n", ss->first_rcpt, date);
	else
		buf_printf(&h, "\t; %s\n", date);
	rc = fd_write_all(fd, h.s, h.len);
	buf_free(&h);
	return rc;
}

/* After the text: the reply for what data_read found. */
static int
data_verdict(struct sess *ss, const struct data_result *d, int fd, const char *id,
    char *rep, size_t rlen)
{
	struct chain_env ce;
	struct buf redir = BUF_INIT;
	int code;

	if (d->ioerr) {
		errno = d->ioerr;
		log_warnsys("spool write failed id=%s", id);
		snprintf(rep, rlen, "451 4.3.0 Error: cannot store message, try again later");
		return 451;
	}
	if (d->bare) {
		snprintf(rep, rlen, "554 5.5.2 Error: bare CR or LF in message text; lines must end with CRLF");
		return 554;
	}
	if (d->nul) {
		snprintf(rep, rlen, "554 5.6.0 Error: NUL character in message text");
		return 554;
	}
	if (d->toobig) {
		snprintf(rep, rlen, "552 5.3.4 Error: message size exceeds fixed limit");
		return 552;
	}
	if (d->hops) {
		snprintf(rep, rlen, "554 5.4.6 Error: too many hops (mail loop?)");
		return 554;
	}
	if (!ss->discard && milter_configured()) {
		struct mres mr;
		if ((code = milter_message(fd, id, &ss->rcpts, &mr))) {
			snprintf(rep, rlen, "%s", mr.reply);
			return code;
		}
		if (mr.discard) {
			log_info("data id=%s discarded by milter", id);
			snprintf(rep, rlen, "250 2.0.0 Ok %s", id);
			return 250;
		}
	}
	if (ss->discard) {
		log_info("data id=%s discarded by policy", id);
		snprintf(rep, rlen, "250 2.0.0 Ok %s", id);
		return 250;
	}
	/* No fsync here: the spool file is already unlinked and cannot
	 * survive a crash; durability is the chain's job (deliver fsyncs
	 * before it exits 0, and only then do we say 250). */
	if (ss->redirect[0])
		buf_printf(&redir, "%s\n", ss->redirect);
	ce.sender = ss->sender;
	ce.helo = ss->helo;
	ce.ip = ss->c->ip;
	ce.host = ss->c->host;
	ce.id = id;
	ce.rcpts = ss->redirect[0] ? &redir : &ss->rcpts;
	milter_folders(ce.rcpts, 1);
	code = chain_run(ss->chain, fd, &ce, ss->s->timeout_chain, rep, rlen);
	milter_folders(ce.rcpts, 0);
	buf_free(&redir);
	return code;
}

static void
do_data(struct sess *ss, int fd, const char *id)
{
	struct data_result d;
	char rep[SMTP_REPLY_MAX];
	int code;

	reply(ss, "354 End data with <CR><LF>.<CR><LF>");
	io_timeout(ss->s->timeout_data);
	data_read(fd, ss->s, &d);
	io_timeout(ss->s->timeout_command);
	if (d.eof) {
		close(fd);
		log_info("data id=%s lost connection after %lld bytes, nothing delivered", id, d.size);
		finish(ss, "lost-in-data");
	}
	if (d.timeout) {
		close(fd);
		log_info("data id=%s timeout after %lld bytes, nothing delivered", id, d.size);
		reply(ss, "421 4.4.2 %s Error: timeout exceeded", ss->s->hostname);
		finish(ss, "timeout");
	}
	code = data_verdict(ss, &d, fd, id, rep, sizeof rep);
	close(fd);
	if (code == 250)
		ss->nmsg++;
	log_info("data id=%s size=%lld rcpts=%lld reply=%s", id, d.size, ss->nrcpt, rep);
	reply(ss, "%s", rep);
	reset_tx(ss);
}

static void
cmd_data(struct sess *ss, char *arg)
{
	char id[ID_LEN];
	int fd;

	if (*arg) {
		bad(ss, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!ss->in_mail) {
		bad(ss, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (ss->nrcpt == 0) {
		if (ss->rcpt_tried)
			reply(ss, "554 5.5.1 Error: no valid recipients");
		else
			bad(ss, "503 5.5.1 Error: need RCPT command");
		return;
	}
	make_id(id, sizeof id);
	{
		struct mres mr;
		milter_data(id, &mr);
		if (mr.code) {
			reply(ss, "%s", mr.reply);
			reset_tx(ss);
			return;
		}
		if (mr.discard)
			ss->discard = 1;
	}
	/* unlinked from the start (lib/spool.h): nothing is left behind
	 * whatever happens to us; the chain reads it through the descriptor */
	if ((fd = spool_new(ss->s->spooldir, ss->s->spool_memory)) < 0 ||
	    write_headers(ss, fd, id) < 0) {
		log_warnsys("cannot create spool file in %s", ss->s->spooldir);
		if (fd >= 0)
			close(fd);
		reply(ss, "451 4.3.0 Error: cannot store message, try again later");
		return;
	}
	do_data(ss, fd, id);
}

/* ---- TLS and AUTH ---- */

/* The handshake on the client connection, then a fresh start: nothing
 * said before it counts. Ends the session if the handshake fails. */
static void
start_tls(struct sess *ss)
{
	char bits[16];

	if (tls_handshake(ss->s->timeout_command, ss->c->ip, &ss->ti) < 0)
		finish(ss, "tls-failed");
	ss->tls = 1;
	ss->helo[0] = 0;
	ss->greeted = ss->esmtp = 0;
	reset_tx(ss);
	buf_clear(&ss->hprepend);
	ss->auth_user[0] = 0;
	ss->auth_method = NULL;
	unsetenv("AUTH_USER");
	unsetenv("AUTHUSER");
	unsetenv("AUTH_METHOD");
	policy_set_sasl("", "");
	policy_set_tls(ss->ti.protocol, ss->ti.cipher, ss->ti.bits);
	snprintf(bits, sizeof bits, "%d", ss->ti.bits);
	(void)setenv("TLS_PROTOCOL", ss->ti.protocol, 1);
	(void)setenv("TLS_CIPHER", ss->ti.cipher, 1);
	(void)setenv("TLS_CIPHER_BITS", bits, 1);
	log_info("tls ip=%s protocol=%s cipher=%s bits=%d", ss->c->ip, ss->ti.protocol,
	    ss->ti.cipher, ss->ti.bits);
}

static void
cmd_starttls(struct sess *ss, char *arg)
{
	size_t junk;

	if (!tls_configured(ss->s)) {
		bad(ss, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (*arg) {
		bad(ss, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (ss->tls) {
		bad(ss, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (ss->in_mail) {
		bad(ss, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (tls_prepare(ss->s) < 0) {
		reply(ss, "454 4.7.0 TLS not available due to local problem");
		return;
	}
	reply(ss, "220 2.0.0 Ready to start TLS");
	if (io_flush() < 0)
		finish(ss, "lost-connection");
	/* what the client sent after STARTTLS before the handshake is not
	 * protected by it: never execute it (CVE-2011-0411) */
	if ((junk = io_discard_input()) > 0)
		log_info("starttls ip=%s: %zu bytes of plaintext pipelined after STARTTLS discarded",
		    ss->c->ip, junk);
	start_tls(ss);
}

static int
auth_offered(const struct sess *ss)
{
	return ss->authenable && (ss->tls || (ss->loopback && ss->s->auth_loopback_plaintext));
}

/* One client response in an AUTH dialogue, base64-decoded into out.
 * 1 ok, 0 replied already (cancelled or bad). */
static int
auth_response(struct sess *ss, const char *prompt, char *out, size_t cap, size_t *olen)
{
	char line[SMTP_LINE_MAX + 1];
	size_t len;
	int toolong, rc;
	long n;

	reply(ss, "334 %s", prompt);
	rc = io_getline(line, &len, &toolong);
	if (rc == IO_TIMEOUT) {
		reply(ss, "421 4.4.2 %s Error: timeout exceeded", ss->s->hostname);
		finish(ss, "timeout");
	}
	if (rc != IO_OK)
		finish(ss, "lost-connection");
	if (toolong) {
		bad(ss, "500 5.5.6 Authentication exchange line is too long");
		return 0;
	}
	if (len == 1 && line[0] == '*') {
		bad(ss, "501 5.7.0 Authentication aborted");
		return 0;
	}
	n = b64_decode(line, len, out, cap - 1);
	explicit_bzero(line, sizeof line);
	if (n < 0) {
		bad(ss, "501 5.5.2 Cannot decode response");
		return 0;
	}
	out[n] = 0;
	*olen = (size_t)n;
	return 1;
}

/* The initial response of "AUTH MECH IR" ("=" is an empty one). */
static int
auth_initial(struct sess *ss, const char *ir, char *out, size_t cap, size_t *olen)
{
	long n;

	if (!strcmp(ir, "=")) {
		out[0] = 0;
		*olen = 0;
		return 1;
	}
	if ((n = b64_decode(ir, strlen(ir), out, cap - 1)) < 0) {
		bad(ss, "501 5.5.2 Cannot decode response");
		return 0;
	}
	out[n] = 0;
	*olen = (size_t)n;
	return 1;
}

static void
auth_verdict(struct sess *ss, const char *method, const char *user, const char *pass)
{
	char e[AUTH_USER_MAX * 4 + 8];
	int r = auth_check(ss->s, user, pass);

	log_esc(e, sizeof e, user, strlen(user));
	if (r < 0) {
		reply(ss, "454 4.7.0 Temporary authentication failure");
		return;
	}
	if (r == 0) {
		ss->auth_failures++;
		/* one line for fail2ban and friends: the address and the user */
		log_info("auth failed ip=%s method=%s user=%s failures=%lld", ss->c->ip, method, e,
		    ss->auth_failures);
		if (ss->s->auth_failure_delay > 0) {
			if (io_flush() < 0)
				finish(ss, "lost-connection");
			sleep((unsigned)ss->s->auth_failure_delay);
		}
		reply(ss, "535 5.7.8 Error: authentication failed");
		if (ss->auth_failures >= ss->s->auth_max_failures) {
			reply(ss, "421 4.7.0 %s Error: too many failed authentications, closing connection",
			    ss->s->hostname);
			finish(ss, "too-many-auth-failures");
		}
		return;
	}
	snprintf(ss->auth_user, sizeof ss->auth_user, "%s", user);
	ss->auth_method = method;
	(void)setenv("AUTH_USER", ss->auth_user, 1);
	(void)setenv("AUTHUSER", ss->auth_user, 1);	/* the name ruleproc(8) reads */
	(void)setenv("AUTH_METHOD", method, 1);
	policy_set_sasl(method, ss->auth_user);
	log_info("auth ok ip=%s method=%s user=%s", ss->c->ip, method, e);
	reply(ss, "235 2.7.0 Authentication successful");
}

static void
cmd_auth(struct sess *ss, char *arg)
{
	/* responses: PLAIN is authzid NUL authcid NUL password */
	char buf[SMTP_LINE_MAX], user[SMTP_LINE_MAX];
	char *ir = arg + strcspn(arg, " ");
	size_t ml = (size_t)(ir - arg), n;

	while (*ir == ' ')
		ir++;
	if (!ss->authenable) {
		bad(ss, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (!ss->greeted || !ss->esmtp) {
		bad(ss, "503 5.5.1 Error: send EHLO first");
		return;
	}
	if (ss->auth_user[0]) {
		bad(ss, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (ss->in_mail) {
		bad(ss, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (!auth_offered(ss)) {
		bad(ss, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	if (ml == 5 && !strncasecmp(arg, "PLAIN", 5)) {
		char *authz, *authc, *pass, *end;
		if (!(*ir ? auth_initial(ss, ir, buf, sizeof buf, &n) :
		    auth_response(ss, "", buf, sizeof buf, &n)))
			return;
		end = buf + n;
		authz = buf;
		authc = memchr(authz, 0, (size_t)(end - authz));
		pass = authc ? memchr(authc + 1, 0, (size_t)(end - authc - 1)) : NULL;
		if (!authc || !pass || memchr(pass + 1, 0, (size_t)(end - pass - 1))) {
			explicit_bzero(buf, sizeof buf);
			bad(ss, "501 5.5.2 Bad PLAIN response");
			return;
		}
		authc++;
		pass++;
		/* no proxy authorisation: an authzid must be the user */
		if (*authz && strcmp(authz, authc))
			auth_verdict(ss, "PLAIN", authc, "");
		else
			auth_verdict(ss, "PLAIN", authc, pass);
		explicit_bzero(buf, sizeof buf);
	} else if (ml == 5 && !strncasecmp(arg, "LOGIN", 5)) {
		if (!(*ir ? auth_initial(ss, ir, user, sizeof user, &n) :
		    auth_response(ss, "VXNlcm5hbWU6", user, sizeof user, &n)))	/* Username: */
			return;
		if (memchr(user, 0, n)) {
			bad(ss, "501 5.5.2 Bad LOGIN response");
			return;
		}
		if (!auth_response(ss, "UGFzc3dvcmQ6", buf, sizeof buf, &n))	/* Password: */
			return;
		if (memchr(buf, 0, n)) {
			explicit_bzero(buf, sizeof buf);
			bad(ss, "501 5.5.2 Bad LOGIN response");
			return;
		}
		auth_verdict(ss, "LOGIN", user, buf);
		explicit_bzero(buf, sizeof buf);
	} else if (!ml)
		bad(ss, "501 5.5.4 Syntax: AUTH mechanism");
	else
		bad(ss, "504 5.5.4 Unrecognized authentication type");
}

static int
noarg(struct sess *ss, const char *arg, const char *cmd)
{
	if (*arg) {
		bad(ss, "501 5.5.4 Syntax: %s", cmd);
		return 0;
	}
	return 1;
}

static const char *const notimpl[] = {
	"BDAT", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML", NULL
};

static void
dispatch(struct sess *ss, char *line)
{
	char *arg = line + strcspn(line, " ");
	size_t vl = (size_t)(arg - line);
	int i;

	while (*arg == ' ')
		arg++;
#define V(k) (vl == strlen(k) && !strncasecmp(line, k, vl))
	if (V("QUIT")) {
		if (noarg(ss, arg, "QUIT")) {
			reply(ss, "221 2.0.0 %s closing connection", ss->s->hostname);
			finish(ss, "quit");
		}
	} else if (ss->denied)
		bad(ss, "503 5.7.1 Error: access denied, only QUIT is allowed");
	else if (V("EHLO") || V("HELO"))
		cmd_helo(ss, arg, V("EHLO"));
	else if (V("STARTTLS"))
		cmd_starttls(ss, arg);
	else if (V("AUTH"))
		cmd_auth(ss, arg);
	else if (V("MAIL"))
		cmd_mail(ss, arg);
	else if (V("RCPT"))
		cmd_rcpt(ss, arg);
	else if (V("DATA"))
		cmd_data(ss, arg);
	else if (V("RSET")) {
		if (noarg(ss, arg, "RSET")) {
			reset_tx(ss);
			reply(ss, "250 2.0.0 Ok");
		}
	} else if (V("NOOP"))
		reply(ss, "250 2.0.0 Ok");
	else if (V("HELP"))
		reply(ss, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY%s%s",
		    tls_configured(ss->s) && !ss->tls ? " STARTTLS" : "", ss->authenable ? " AUTH" : "");
	else if (V("VRFY")) {
		if (!*arg)
			bad(ss, "501 5.5.4 Syntax: VRFY address");
		else
			reply(ss, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
	} else if (V("EXPN"))
		reply(ss, "502 5.5.1 Error: EXPN not supported");
	else {
		for (i = 0; notimpl[i]; i++)
			if (V(notimpl[i])) {
				bad(ss, "502 5.5.1 Error: command not implemented");
				return;
			}
		bad(ss, "500 5.5.2 Error: command not recognized");
	}
#undef V
}

static void
read_commands(struct sess *ss)
{
	char line[SMTP_LINE_MAX + 1];

	for (;;) {
		size_t len;
		int toolong;
		int rc = io_getline(line, &len, &toolong);

		if (rc == IO_TIMEOUT) {
			reply(ss, "421 4.4.2 %s Error: timeout exceeded", ss->s->hostname);
			finish(ss, "timeout");
		}
		if (rc != IO_OK)
			finish(ss, "lost-connection");
		if (log_verbose >= 3) {
			char e[SMTP_LINE_MAX * 4 + 8];
			/* never a password, not even in base64 */
			if (len > 5 && !strncasecmp(line, "AUTH ", 5))
				log_debug("< AUTH %.*s...", (int)strcspn(line + 5, " "), line + 5);
			else
				log_debug("< %s", log_esc(e, sizeof e, line, len));
		}
		if (toolong)
			bad(ss, "500 5.5.2 Error: line too long");
		else if (memchr(line, 0, len))
			bad(ss, "500 5.5.2 Error: NUL character in command");
		else if (len == 0)
			bad(ss, "500 5.5.2 Error: bad syntax");
		else
			dispatch(ss, line);
	}
}

void
session_run(const struct settings *s, const struct client *c, char **chain)
{
	static struct sess ss;
	char ename[600];

	memset(&ss, 0, sizeof ss);
	ss.s = s;
	ss.c = c;
	ss.chain = chain;
	make_id(ss.sid, sizeof ss.sid);
	snprintf(ss.instance, sizeof ss.instance, "%s.0", ss.sid);
	log_init("smtpd-lite", ss.sid);
	esc(ename, sizeof ename, c->host);
	log_info("connect ip=%s port=%s name=%s local=%s:%s", c->ip, c->port,
	    c->host[0] ? ename : "unknown", c->localip, c->localport);
	io_init(0, 1);
	io_timeout(s->timeout_command);
	/* only we say whether the session is encrypted or authenticated */
	unsetenv("TLS_PROTOCOL");
	unsetenv("TLS_CIPHER");
	unsetenv("TLS_CIPHER_BITS");
	unsetenv("AUTH_USER");
	unsetenv("AUTHUSER");
	unsetenv("AUTH_METHOD");
	ss.loopback = !strncmp(c->ip, "127.", 4) || !strcmp(c->ip, "::1");
	ss.authenable = auth_available(s);
	if (opt_implicit_tls) {
		if (tls_prepare(s) < 0)
			finish(&ss, "tls-unavailable");
		start_tls(&ss);
	}
	greet(&ss);
	read_commands(&ss);
}
