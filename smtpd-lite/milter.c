/* milter.c: the MTA side of the milter protocol (version 6), as
 * Postfix's smtpd_milters: see doc/smtpd-lite.8 MILTERS.
 *
 * Each "milter SPEC" of the settings is one connection per SMTP
 * session, asked in order at every stage. Framing: a 4-byte length in
 * network order (command byte included), the command byte, the
 * payload. Envelope stages (connect, HELO, MAIL, RCPT, DATA) go to
 * each milter in turn; the first non-continue answer decides. The
 * message (headers from the spool file, end of headers, body chunks of
 * at most 65535 bytes with CRLF ends, end of message) goes to each
 * milter in turn; a milter's modifications are applied to a new spool
 * file before the next milter sees the message, so they chain as in
 * Postfix. Only the header section is held in memory (capped); the
 * body is streamed in both directions.
 *
 * A milter that cannot be reached, breaks the protocol or times out
 * gets its default action: tempfail (451 4.7.1 for every later
 * transaction of the session), reject (550 5.7.1 likewise) or accept
 * (it is left out for the rest of the session). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fdio.h"
#include "log.h"
#include "smtpd.h"

/* mfdef.h */
#define SMFI_VERSION_MTA 6
#define SMFIF_ADDHDRS 0x01
#define SMFIF_CHGBODY 0x02
#define SMFIF_ADDRCPT 0x04
#define SMFIF_DELRCPT 0x08
#define SMFIF_CHGHDRS 0x10
#define SMFIF_QUARANTINE 0x20
#define OUR_ACTIONS 0x3f
#define SMFIP_NOCONNECT 0x1
#define SMFIP_NOHELO 0x2
#define SMFIP_NOMAIL 0x4
#define SMFIP_NORCPT 0x8
#define SMFIP_NOBODY 0x10
#define SMFIP_NOHDRS 0x20
#define SMFIP_NOEOH 0x40
#define SMFIP_NR_HDR 0x80
#define SMFIP_NOUNKNOWN 0x100
#define SMFIP_NODATA 0x200
#define SMFIP_SKIP 0x400
#define SMFIP_NR_CONN 0x1000
#define SMFIP_NR_HELO 0x2000
#define SMFIP_NR_MAIL 0x4000
#define SMFIP_NR_RCPT 0x8000
#define SMFIP_NR_DATA 0x10000
#define SMFIP_NR_UNKN 0x20000
#define SMFIP_NR_EOH 0x40000
#define SMFIP_NR_BODY 0x80000
/* all steps may be skipped or left unanswered; no RCPT_REJ, no
 * leading-space headers, no larger data sizes */
#define OUR_PFLAGS 0x000ff7ffUL

#define MILTER_CHUNK 65535
#define FRAME_MAX (1024 * 1024)	/* longest packet we accept */
#define HDR_TOTAL_MAX (256 * 1024)	/* header section held in memory */
#define HDR_COUNT_MAX 2000

enum { DA_TEMPFAIL, DA_ACCEPT, DA_REJECT };
static const char *const da_names[] = { "tempfail", "accept", "reject" };

struct milter {
	char spec[256];		/* unix:/path or inet:host:port */
	int fd;
	int da;
	long long tconn, tcmd, tcont;	/* seconds */
	unsigned long actions, pflags;
	int off;		/* out for the rest of the session */
	int msg_off;		/* accepted this message: out until its end */
	int in_msg;		/* MAIL sent, no end of message/abort yet */
};

static struct milter ms[SETTINGS_MAX_MILTER];
static int nms;
static const struct settings *S;
static const struct client *C;
static char sid[ID_LEN];
static char fail_reply[SMTP_REPLY_MAX];	/* "" or the reply for the rest of the session */
static int quarantined;

int
milter_configured(void)
{
	return nms > 0;
}

/* ---- wire ---- */

static int
m_write(struct milter *m, char cmd, const void *p, size_t n, long long deadline)
{
	unsigned char hdr[5];
	uint32_t l = htonl((uint32_t)(n + 1));
	const char *parts[2];
	size_t lens[2], i;

	memcpy(hdr, &l, 4);
	hdr[4] = (unsigned char)cmd;
	parts[0] = (const char *)hdr;
	lens[0] = 5;
	parts[1] = p;
	lens[1] = n;
	for (i = 0; i < 2; i++) {
		size_t off = 0;
		while (off < lens[i]) {
			ssize_t w = send(m->fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
			if (w > 0) {
				off += (size_t)w;
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				int r = wait_fd(m->fd, POLLOUT, deadline);
				if (r == 0)
					errno = ETIMEDOUT;
				if (r <= 0)
					return -1;
				continue;
			}
			return -1;
		}
	}
	return 0;
}

static int
read_full(struct milter *m, void *p, size_t n, long long deadline)
{
	size_t off = 0;

	while (off < n) {
		ssize_t r = read(m->fd, (char *)p + off, n - off);
		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int w = wait_fd(m->fd, POLLIN, deadline);
			if (w == 0)
				errno = ETIMEDOUT;
			if (w <= 0)
				return -1;
			continue;
		}
		return -1;
	}
	return 0;
}

/* One packet: its command byte, the payload in b (NUL-terminated). */
static int
m_read(struct milter *m, int *cmd, struct buf *b, long long deadline)
{
	uint32_t l;
	unsigned char c;

	if (read_full(m, &l, 4, deadline) < 0)
		return -1;
	l = ntohl(l);
	if (l < 1 || l > FRAME_MAX) {
		errno = EPROTO;
		return -1;
	}
	if (read_full(m, &c, 1, deadline) < 0)
		return -1;
	buf_clear(b);
	buf_reserve(b, l);
	if (l > 1 && read_full(m, b->s, l - 1, deadline) < 0)
		return -1;
	b->len = l - 1;
	b->s[b->len] = 0;
	*cmd = c;
	return 0;
}

/* ---- the per-milter default action ---- */

static void
set_reply(char *r, const char *text)
{
	snprintf(r, SMTP_REPLY_MAX, "%s", text);
}

/* The milter failed: log, drop it, apply its default action. Returns
 * the reply code for the current stage (0 = go on). */
static int
m_fail(struct milter *m, const char *stage, const char *why, char *rep)
{
	log_warn("milter %s stage=%s failed: %s; default_action=%s", m->spec, stage, why,
	    da_names[m->da]);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->off = 1;
	switch (m->da) {
	case DA_ACCEPT:
		return 0;
	case DA_REJECT:
		set_reply(fail_reply, "550 5.7.1 Service unavailable - message rejected");
		break;
	default:
		set_reply(fail_reply, "451 4.7.1 Service unavailable - try again later");
		break;
	}
	set_reply(rep, fail_reply);
	return atoi(fail_reply);
}

static int
opt_time(const char *v, long long *out)
{
	char *end;
	long long n = strtoll(v, &end, 10);

	if (end == v || n < 1 || n > 86400)
		return -1;
	if (!strcmp(end, "m"))
		n *= 60;
	else if (*end && strcmp(end, "s"))
		return -1;
	*out = n;
	return 0;
}

static int
da_parse(const char *v)
{
	int i;

	for (i = 0; i < 3; i++)
		if (!strcmp(v, da_names[i]))
			return i;
	return -1;
}

/* ---- connecting ---- */

static int
m_connect(struct milter *m, long long deadline)
{
	if ((m->fd = net_connect(m->spec, deadline)) < 0)
		return -1;
	return 0;
}

/* Option negotiation; 0 ok, -1 with why set. */
static int
m_optneg(struct milter *m, long long deadline, const char **why)
{
	uint32_t v[3];
	struct buf b = BUF_INIT;
	int cmd;

	v[0] = htonl(SMFI_VERSION_MTA);
	v[1] = htonl(OUR_ACTIONS);
	v[2] = htonl((uint32_t)OUR_PFLAGS);
	if (m_write(m, 'O', v, sizeof v, deadline) < 0 || m_read(m, &cmd, &b, deadline) < 0) {
		*why = strerror(errno);
		buf_free(&b);
		return -1;
	}
	if (cmd != 'O' || b.len < 12) {
		*why = "bad option negotiation reply";
		buf_free(&b);
		return -1;
	}
	memcpy(v, b.s, sizeof v);
	buf_free(&b);
	if (ntohl(v[0]) < 2 || ntohl(v[0]) > SMFI_VERSION_MTA) {
		*why = "unsupported protocol version";
		return -1;
	}
	m->actions = ntohl(v[1]) & OUR_ACTIONS;
	m->pflags = ntohl(v[2]) & OUR_PFLAGS;
	return 0;
}

/* ---- macros ---- */

struct mac {
	struct buf b;
};

static void
mac_add(struct buf *b, const char *name, const char *val)
{
	if (!val)
		return;
	buf_add(b, name, strlen(name) + 1);
	buf_add(b, val, strlen(val) + 1);
}

/* ---- one envelope-stage question ---- */

/* Read replies to a command until a verdict. Returns the verdict
 * byte ('c', 'a', 'r', 't', 'd', 's', 'y') with the 'y' text in b, or
 * -1 (why in *why). Progress packets extend the deadline. */
static int
m_verdict(struct milter *m, long long tmo, struct buf *b, const char **why)
{
	int cmd;

	for (;;) {
		if (m_read(m, &cmd, b, now_ms() + tmo * 1000) < 0) {
			*why = errno == ETIMEDOUT ? "timeout" : strerror(errno);
			return -1;
		}
		switch (cmd) {
		case 'p':
			continue;
		case 'c': case 'a': case 'r': case 't': case 'd': case 's':
			return cmd;
		case 'y':
			return cmd;
		default:
			*why = "unexpected reply";
			return -1;
		}
	}
}

/* A 'y' text "550 5.7.1 text" as one SMTP reply line of the class
 * wanted ('4' or '5'); else the default. */
static void
y_text(char *rep, const char *y, const char *def)
{
	char clean[400];
	size_t i;

	snprintf(clean, sizeof clean, "%.*s", (int)strcspn(y, "\r\n"), y);
	for (i = 0; clean[i]; i++)
		if ((unsigned char)clean[i] < ' ' || (unsigned char)clean[i] >= 0x7f)
			clean[i] = '?';
	if ((clean[0] == '4' || clean[0] == '5') && clean[1] >= '0' && clean[1] <= '9' &&
	    clean[2] >= '0' && clean[2] <= '9' && (clean[3] == ' ' || clean[3] == '-' || !clean[3])) {
		if (clean[3] == '-')
			clean[3] = ' ';
		if (!clean[3])
			snprintf(rep, SMTP_REPLY_MAX, "%s %c.7.1 Command rejected", clean, clean[0]);
		else if (!(clean[4] == clean[0] && clean[5] == '.'))
			snprintf(rep, SMTP_REPLY_MAX, "%.3s %c.7.1 %s", clean, clean[0], clean + 4);
		else
			snprintf(rep, SMTP_REPLY_MAX, "%s", clean);
	} else
		snprintf(rep, SMTP_REPLY_MAX, "%s", def);
}

enum mstage { MS_CONNECT, MS_HELO, MS_MAIL, MS_RCPT, MS_DATA, MS_HDR, MS_EOH, MS_BODY, MS_EOM };
static const char *const stage_names[] = {
	"connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom"
};

/* What a verdict means for the session; fills r, logs one line.
 * Returns 1 when this decides the stage (stop asking others). */
static int
apply_verdict(struct milter *m, enum mstage st, int v, const char *ytext, struct mres *r)
{
	const char *what = "continue";

	switch (v) {
	case 'c':
	case 's':
		return 0;
	case 'a':
		what = "accept";
		if (st <= MS_HELO)
			m->off = 1;	/* accepts the connection */
		else if (st == MS_RCPT)
			return 0;	/* this recipient only: nothing to do */
		else
			m->msg_off = 1;
		break;
	case 'd':
		what = "discard";
		if (st <= MS_HELO) {
			m->off = 1;
			return 0;
		}
		r->discard = 1;
		m->msg_off = 1;
		break;
	case 'r':
		what = "reject";
		r->code = st == MS_CONNECT ? 554 : 550;
		set_reply(r->reply, st == MS_CONNECT ? "554 5.7.1 Connection rejected" :
		    "550 5.7.1 Command rejected");
		break;
	case 't':
		what = "tempfail";
		r->code = 451;
		set_reply(r->reply, "451 4.7.1 Service unavailable - try again later");
		break;
	case 'y':
		what = ytext[0] == '4' ? "tempfail" : "reject";
		y_text(r->reply, ytext, ytext[0] == '4' ?
		    "451 4.7.1 Service unavailable - try again later" : "550 5.7.1 Command rejected");
		r->code = atoi(r->reply);
		break;
	}
	log_info("milter %s stage=%s action=%s%s%s", m->spec, stage_names[st], what,
	    r->code ? " reply=" : "", r->code ? r->reply : "");
	return v != 'a' || st > MS_HELO;
}

/* Send macros + command to every active milter that wants the stage;
 * the first deciding answer wins. */
static void
ask_all(enum mstage st, unsigned long skipflag, unsigned long nrflag, char macst,
    const struct buf *mac, char cmd, const void *p, size_t n, struct mres *r)
{
	struct buf b = BUF_INIT;
	int i;

	for (i = 0; i < nms; i++) {
		struct milter *m = &ms[i];
		long long dl = now_ms() + m->tcmd * 1000;
		const char *why = NULL;
		int v;

		if (m->off || m->fd < 0 || (st >= MS_MAIL && m->msg_off))
			continue;
		if (skipflag && (m->pflags & skipflag))
			continue;
		if (mac && mac->len) {
			struct buf d = BUF_INIT;
			buf_addc(&d, macst);
			buf_add(&d, mac->s, mac->len);
			v = m_write(m, 'D', d.s, d.len, dl);
			buf_free(&d);
			if (v < 0) {
				why = strerror(errno);
				goto failed;
			}
		}
		if (m_write(m, cmd, p, n, dl) < 0) {
			why = strerror(errno);
			goto failed;
		}
		if (st == MS_MAIL)
			m->in_msg = 1;
		if (nrflag && (m->pflags & nrflag))
			continue;
		if ((v = m_verdict(m, m->tcmd, &b, &why)) < 0)
			goto failed;
		if (apply_verdict(m, st, v, b.s, r))
			break;
		continue;
failed:
		if (m_fail(m, stage_names[st], why, r->reply)) {
			r->code = atoi(r->reply);
			break;
		}
	}
	buf_free(&b);
}

/* ---- settings and the session's start ---- */

static int
parse_spec(struct milter *m, const char *spec, char *err, size_t elen)
{
	char **w = split_words(spec);
	int i, rc = 0;

	memset(m, 0, sizeof *m);
	m->fd = -1;
	m->da = da_parse(S->milter_default_action);
	if (m->da < 0)
		m->da = DA_TEMPFAIL;
	m->tconn = S->milter_connect_timeout;
	m->tcmd = S->milter_command_timeout;
	m->tcont = S->milter_content_timeout;
	if (!w[0]) {
		free_words(w);
		snprintf(err, elen, "empty milter");
		return -1;
	}
	snprintf(m->spec, sizeof m->spec, "%s", w[0]);
	for (i = 1; w[i] && !rc; i++) {
		char *v = strchr(w[i], '=');
		if (!v) {
			rc = -1;
			break;
		}
		*v++ = 0;
		if (!strcmp(w[i], "default_action"))
			rc = (m->da = da_parse(v)) < 0 ? -1 : 0;
		else if (!strcmp(w[i], "connect_timeout"))
			rc = opt_time(v, &m->tconn);
		else if (!strcmp(w[i], "command_timeout"))
			rc = opt_time(v, &m->tcmd);
		else if (!strcmp(w[i], "content_timeout"))
			rc = opt_time(v, &m->tcont);
		else
			rc = -1;
	}
	if (rc < 0)
		snprintf(err, elen, "bad option %s", w[i] ? w[i] : "");
	free_words(w);
	return rc;
}

void
milter_connect(const struct settings *s, const struct client *c, const char *id,
    struct mres *r)
{
	struct buf mac = BUF_INIT, cmd = BUF_INIT;
	char err[300], fam = 'U';
	uint16_t port;
	int i;

	memset(r, 0, sizeof *r);
	/* a session worker's earlier session left nothing behind */
	nms = 0;
	fail_reply[0] = 0;
	quarantined = 0;
	if (!s->nmilter)
		return;
	S = s;
	C = c;
	snprintf(sid, sizeof sid, "%s", id);
	for (i = 0; i < s->nmilter && nms < SETTINGS_MAX_MILTER; i++) {
		if (parse_spec(&ms[nms], s->milter[i], err, sizeof err) < 0) {
			/* a broken line is a failed milter, never a silent skip */
			log_warn("milter %s: %s", s->milter[i], err);
			ms[nms].da = DA_TEMPFAIL;
			ms[nms].off = 1;
			set_reply(fail_reply, "451 4.7.1 Service unavailable - try again later");
		}
		nms++;
	}
	for (i = 0; i < nms; i++) {
		struct milter *m = &ms[i];
		long long dl = now_ms() + m->tconn * 1000;
		const char *why;

		if (m->off)
			continue;
		if (m_connect(m, dl) < 0) {
			(void)m_fail(m, "connect", strerror(errno), r->reply);
			continue;
		}
		if (m_optneg(m, dl, &why) < 0)
			(void)m_fail(m, "optneg", why, r->reply);
	}
	mac_add(&mac, "j", s->hostname);
	mac_add(&mac, "{daemon_name}", "smtpd-lite");
	mac_add(&mac, "{daemon_addr}", c->localip);
	mac_add(&mac, "{daemon_port}", c->localport);
	mac_add(&mac, "{if_addr}", c->localip);	/* Sendmail's name for it */
	mac_add(&mac, "{client_addr}", c->ip);
	mac_add(&mac, "{client_port}", c->port);
	mac_add(&mac, "{client_name}", c->host[0] ? c->host : "unknown");
	{
		char u[400];
		snprintf(u, sizeof u, "%s [%s]", c->host[0] ? c->host : "unknown", c->ip);
		mac_add(&mac, "_", u);
	}
	mac_add(&mac, "i", sid);
	buf_adds(&cmd, c->host[0] ? c->host : "unknown");
	buf_addc(&cmd, 0);
	if (inet_pton(AF_INET, c->ip, err) == 1)
		fam = '4';
	else if (inet_pton(AF_INET6, c->ip, err) == 1)
		fam = '6';
	buf_addc(&cmd, fam);
	if (fam != 'U') {
		port = htons((uint16_t)atoi(c->port));
		buf_add(&cmd, &port, 2);
		buf_adds(&cmd, c->ip);
		buf_addc(&cmd, 0);
	}
	r->code = 0;
	r->reply[0] = 0;
	ask_all(MS_CONNECT, SMFIP_NOCONNECT, SMFIP_NR_CONN, 'C', &mac, 'C', cmd.s, cmd.len, r);
	/* a refusal at connect (or a failed milter): every later
	 * transaction gets it, as Postfix does */
	if (r->code)
		set_reply(fail_reply, r->reply);
	r->code = 0;
	buf_free(&mac);
	buf_free(&cmd);
}

/* Later stages first check whether the session is already refused. */
static int
refused(struct mres *r)
{
	if (!fail_reply[0])
		return 0;
	set_reply(r->reply, fail_reply);
	r->code = atoi(fail_reply);
	return 1;
}

void
milter_helo(const char *helo, const char *tlsver, const char *cipher, int bits, struct mres *r)
{
	struct buf mac = BUF_INIT;
	char b[16];

	memset(r, 0, sizeof *r);
	if (!nms)
		return;
	if (tlsver) {
		snprintf(b, sizeof b, "%d", bits);
		mac_add(&mac, "{tls_version}", tlsver);
		mac_add(&mac, "{cipher}", cipher);
		mac_add(&mac, "{cipher_bits}", b);
	}
	ask_all(MS_HELO, SMFIP_NOHELO, SMFIP_NR_HELO, 'H', &mac, 'H', helo, strlen(helo) + 1, r);
	buf_free(&mac);
}

void
milter_mail(const char *sender, const char *args, const char *authtype, const char *authuser,
    struct mres *r)
{
	struct buf mac = BUF_INIT, cmd = BUF_INIT;
	char **w;
	int i;

	memset(r, 0, sizeof *r);
	if (!nms)
		return;
	for (i = 0; i < nms; i++)
		ms[i].msg_off = 0;
	if (refused(r))
		return;
	mac_add(&mac, "i", sid);
	if (authuser && *authuser) {
		mac_add(&mac, "{auth_type}", authtype);
		mac_add(&mac, "{auth_authen}", authuser);
	}
	mac_add(&mac, "{mail_addr}", sender);
	buf_printf(&cmd, "<%s>", sender);
	buf_addc(&cmd, 0);
	w = split_words(args ? args : "");
	for (i = 0; w[i]; i++) {
		buf_adds(&cmd, w[i]);
		buf_addc(&cmd, 0);
	}
	free_words(w);
	ask_all(MS_MAIL, SMFIP_NOMAIL, SMFIP_NR_MAIL, 'M', &mac, 'M', cmd.s, cmd.len, r);
	if (r->code)
		milter_abort();
	buf_free(&mac);
	buf_free(&cmd);
}

void
milter_rcpt(const char *rcpt, struct mres *r)
{
	struct buf mac = BUF_INIT, cmd = BUF_INIT;

	memset(r, 0, sizeof *r);
	if (!nms || refused(r))
		return;
	mac_add(&mac, "{rcpt_addr}", rcpt);
	buf_printf(&cmd, "<%s>", rcpt);
	buf_addc(&cmd, 0);
	ask_all(MS_RCPT, SMFIP_NORCPT, SMFIP_NR_RCPT, 'R', &mac, 'R', cmd.s, cmd.len, r);
	buf_free(&mac);
	buf_free(&cmd);
}

void
milter_data(const char *id, struct mres *r)
{
	struct buf mac = BUF_INIT;

	memset(r, 0, sizeof *r);
	if (!nms || refused(r))
		return;
	mac_add(&mac, "i", id);
	ask_all(MS_DATA, SMFIP_NODATA, SMFIP_NR_DATA, 'T', &mac, 'T', NULL, 0, r);
	buf_free(&mac);
}

void
milter_abort(void)
{
	char rep[SMTP_REPLY_MAX];
	int i;

	for (i = 0; i < nms; i++) {
		struct milter *m = &ms[i];
		if (m->fd >= 0 && !m->off && m->in_msg &&
		    m_write(m, 'A', NULL, 0, now_ms() + m->tcmd * 1000) < 0)
			(void)m_fail(m, "abort", strerror(errno), rep);
		m->in_msg = 0;
		m->msg_off = 0;
	}
}

void
milter_quit(void)
{
	int i;

	for (i = 0; i < nms; i++) {
		if (ms[i].fd >= 0)
			(void)m_write(&ms[i], 'Q', NULL, 0, now_ms() + 1000);
		if (ms[i].fd >= 0)
			close(ms[i].fd);
		ms[i].fd = -1;
	}
	nms = 0;
	fail_reply[0] = 0;
	quarantined = 0;
}

/* ---- the message ---- */

struct hdr {
	char *name;
	char *value;		/* as after the colon, folding "\n" kept, no final LF */
};

struct msg {
	int fd;
	struct hdr *h;
	size_t nh, cap, bytes;
	off_t body_off;		/* where the body starts in fd ("" separator skipped) */
	int has_sep;
};

static void
hdrs_free(struct msg *g)
{
	size_t i;

	for (i = 0; i < g->nh; i++) {
		free(g->h[i].name);
		free(g->h[i].value);
	}
	free(g->h);
	g->h = NULL;
	g->nh = g->cap = g->bytes = 0;
}

static int
hdr_insert(struct msg *g, size_t at, const char *name, size_t nl, const char *val, size_t vl)
{
	if (g->nh >= HDR_COUNT_MAX || g->bytes + nl + vl > HDR_TOTAL_MAX)
		return -1;
	if (g->nh == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 64;
		g->h = xreallocarray(g->h, g->cap, sizeof *g->h);
	}
	if (at > g->nh)
		at = g->nh;
	memmove(g->h + at + 1, g->h + at, (g->nh - at) * sizeof *g->h);
	g->h[at].name = xmalloc(nl + 1);
	memcpy(g->h[at].name, name, nl);
	g->h[at].name[nl] = 0;
	g->h[at].value = xmalloc(vl + 1);
	memcpy(g->h[at].value, val, vl);
	g->h[at].value[vl] = 0;
	g->nh++;
	g->bytes += nl + vl;
	return 0;
}

/* Read the header section of the spool file. 0 ok, -1 too large/io. */
static int
hdrs_read(struct msg *g)
{
	struct buf line = BUF_INIT, cur = BUF_INIT;
	char rb[8192];
	off_t pos = 0;
	ssize_t n;
	size_t i;
	int done = 0, rc = 0;

	if (lseek(g->fd, 0, SEEK_SET) < 0)
		return -1;
	g->has_sep = 0;
	while (!done && (n = read(g->fd, rb, sizeof rb)) > 0) {
		for (i = 0; i < (size_t)n && !done; i++) {
			pos++;
			if (rb[i] != '\n') {
				if (line.len > HDR_TOTAL_MAX) {
					rc = -1;
					done = 1;
					break;
				}
				buf_addc(&line, rb[i]);
				continue;
			}
			/* a whole line in line */
			if (line.len && (line.s[0] == ' ' || line.s[0] == '\t') && cur.len) {
				buf_addc(&cur, '\n');
				buf_add(&cur, line.s, line.len);
			} else {
				if (cur.len) {
					char *colon = memchr(cur.s, ':', cur.len);
					if (hdr_insert(g, g->nh, cur.s, (size_t)(colon - cur.s), colon + 1,
					    cur.len - (size_t)(colon - cur.s) - 1) < 0) {
						rc = -1;
						done = 1;
						break;
					}
					buf_clear(&cur);
				}
				if (!line.len || !memchr(line.s, ':', line.len)) {
					/* the empty line (or a non-header line: the body) */
					g->has_sep = !line.len;
					g->body_off = line.len ? pos - (off_t)line.len - 1 : pos;
					done = 2;
					break;
				}
				buf_add(&cur, line.s, line.len);
			}
			if (cur.len > HDR_TOTAL_MAX) {
				rc = -1;
				done = 1;
			}
			buf_clear(&line);
		}
	}
	if (!done && rc == 0) {	/* end of file inside the header section */
		if (line.len && !(line.s[0] == ' ' || line.s[0] == '\t') && cur.len) {
			/* fall through: the last line is handled below */
		}
		if (line.len) {
			if ((line.s[0] == ' ' || line.s[0] == '\t') && cur.len) {
				buf_addc(&cur, '\n');
				buf_add(&cur, line.s, line.len);
				buf_clear(&line);
			}
		}
		if (cur.len) {
			char *colon = memchr(cur.s, ':', cur.len);
			if (hdr_insert(g, g->nh, cur.s, (size_t)(colon - cur.s), colon + 1,
			    cur.len - (size_t)(colon - cur.s) - 1) < 0)
				rc = -1;
		}
		g->body_off = pos - (off_t)line.len;
	}
	buf_free(&line);
	buf_free(&cur);
	return rc;
}

/* CRLF-ended copy of LF text */
static void
to_crlf(struct buf *out, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n')
			buf_addc(out, '\r');
		buf_addc(out, p[i]);
	}
}

/* EOM modifications of one milter, collected while reading replies. */
struct mods {
	int any;
	int newbody;		/* body replaced: text in bodyfd */
	int bodyfd;
	int pending_cr;
	long long bodylen;	/* replacement bytes so far (max_size caps it) */
	char qreason[256];
};

static int
tmpfile_open(void)
{
	char path[4200], id[ID_LEN];
	int fd;

	make_id(id, sizeof id);
	snprintf(path, sizeof path, "%s/%s.milter", S->spooldir, id);
	if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
		return -1;
	(void)unlink(path);
	return fd;
}

/* CRLF -> LF while appending replacement body data. */
static int
body_append(struct mods *md, const char *p, size_t n)
{
	struct buf o = BUF_INIT;
	size_t i;
	int rc;

	if (md->pending_cr) {
		if (!(n && p[0] == '\n'))
			buf_addc(&o, '\r');
		md->pending_cr = 0;
	}
	for (i = 0; i < n; i++) {
		if (p[i] == '\r') {
			if (i + 1 == n) {
				md->pending_cr = 1;
				continue;
			}
			if (p[i + 1] == '\n')
				continue;
		}
		buf_addc(&o, p[i]);
	}
	rc = fd_write_all(md->bodyfd, o.s ? o.s : "", o.len);
	buf_free(&o);
	return rc;
}

/* "<a@b>" or "a@b" -> a@b */
static void
strip_angle(char *dst, size_t len, const char *s)
{
	size_t l;

	while (*s == ' ')
		s++;
	if (*s == '<')
		s++;
	l = strcspn(s, ">");
	snprintf(dst, len, "%.*s", (int)l, s);
}

/* rcpts is "a\nb\n" */
static int
rcpt_del(struct buf *rcpts, const char *a)
{
	struct buf o = BUF_INIT;
	const char *p = rcpts->s ? rcpts->s : "";
	int found = 0;

	while (*p) {
		size_t l = strcspn(p, "\n");
		if (l == strlen(a) && !strncasecmp(p, a, l))
			found = 1;
		else {
			buf_add(&o, p, l);
			buf_addc(&o, '\n');
		}
		p += l + (p[l] == '\n');
	}
	buf_clear(rcpts);
	buf_add(rcpts, o.s ? o.s : "", o.len);
	buf_free(&o);
	return found;
}

static size_t
rcpt_count(const struct buf *rcpts)
{
	size_t i, n = 0;

	for (i = 0; i < rcpts->len; i++)
		n += rcpts->s[i] == '\n';
	return n;
}

/* One EOM modification record. 0 ok, -1 protocol error (why). */
static int
apply_mod(struct milter *m, struct msg *g, struct buf *rcpts, struct mods *md, int cmd,
    const struct buf *b, const char **why)
{
	const char *p = b->s, *end = b->s + b->len;
	char a[ADDR_PATH_MAX + 1];
	uint32_t idx = 0;
	size_t i, nl, vl;
	const char *name, *val;

	md->any = 1;
	switch (cmd) {
	case 'h':	/* add header: name\0value\0 */
	case 'm':	/* change header: idx, name\0value\0 */
	case 'i':	/* insert header: idx, name\0value\0 */
		if (cmd != 'h') {
			if (b->len < 4)
				goto bad;
			memcpy(&idx, p, 4);
			idx = ntohl(idx);
			p += 4;
		}
		name = p;
		nl = strnlen(name, (size_t)(end - name));
		if (name + nl >= end || !nl)
			goto bad;
		val = name + nl + 1;
		vl = strnlen(val, (size_t)(end - val));
		if (!(m->actions & (cmd == 'h' ? SMFIF_ADDHDRS : cmd == 'i' ? SMFIF_ADDHDRS :
		    SMFIF_CHGHDRS))) {
			*why = "header change not negotiated";
			return -1;
		}
		{
			/* stored as after the colon: " value", CRLF -> LF */
			struct buf v = BUF_INIT;
			buf_addc(&v, ' ');
			for (i = 0; i < vl; i++)
				if (!(val[i] == '\r' && i + 1 < vl && val[i + 1] == '\n'))
					buf_addc(&v, val[i]);
			if (cmd == 'm') {
				uint32_t seen = 0;
				for (i = 0; i < g->nh; i++)
					if (!strcasecmp(g->h[i].name, name) && ++seen == (idx ? idx : 1))
						break;
				if (i < g->nh) {
					if (!vl) {	/* delete */
						g->bytes -= strlen(g->h[i].name) + strlen(g->h[i].value);
						free(g->h[i].name);
						free(g->h[i].value);
						memmove(g->h + i, g->h + i + 1, (g->nh - i - 1) * sizeof *g->h);
						g->nh--;
					} else {
						g->bytes -= strlen(g->h[i].value);
						free(g->h[i].value);
						g->h[i].value = xstrdup(v.s);
						g->bytes += v.len;
					}
					buf_free(&v);
					return 0;
				}
				if (!vl) {
					buf_free(&v);
					return 0;
				}
				idx = (uint32_t)g->nh;	/* not there: added */
			} else if (cmd == 'h')
				idx = (uint32_t)g->nh;
			i = (size_t)hdr_insert(g, idx, name, nl, v.s, v.len);
			buf_free(&v);
			if (i) {
				*why = "header section too large";
				return -1;
			}
		}
		return 0;
	case '+':
	case '2':
		if (!(m->actions & SMFIF_ADDRCPT)) {
			*why = "addrcpt not negotiated";
			return -1;
		}
		strip_angle(a, sizeof a, p);
		{
			/* a well-formed address only: it goes into RECIPIENTS */
			char path[ADDR_PATH_MAX + 8];
			struct addr ad;
			const char *rest;
			snprintf(path, sizeof path, "<%s>", a);
			if (!a[0] || addr_parse_path(path, strlen(path), &ad, 0, 1, &rest) || *rest) {
				log_warn("milter %s: addrcpt: bad address, ignored", m->spec);
				return 0;
			}
			snprintf(a, sizeof a, "%s", ad.full);
		}
		if ((long long)rcpt_count(rcpts) >= S->max_recipients) {
			log_warn("milter %s: addrcpt %s over max_recipients, ignored", m->spec, a);
			return 0;
		}
		buf_printf(rcpts, "%s\n", a);
		log_info("milter %s stage=eom addrcpt=<%s>", m->spec, a);
		return 0;
	case '-':
		if (!(m->actions & SMFIF_DELRCPT)) {
			*why = "delrcpt not negotiated";
			return -1;
		}
		strip_angle(a, sizeof a, p);
		log_info("milter %s stage=eom delrcpt=<%s>%s", m->spec, a,
		    rcpt_del(rcpts, a) ? "" : " (not a recipient)");
		return 0;
	case 'b':
		if (!(m->actions & SMFIF_CHGBODY)) {
			*why = "replbody not negotiated";
			return -1;
		}
		if (!md->newbody) {
			if ((md->bodyfd = tmpfile_open()) < 0) {
				*why = strerror(errno);
				return -1;
			}
			md->newbody = 1;
		}
		if ((md->bodylen += (long long)b->len) > S->max_size) {
			*why = "replacement body over max_size";
			return -1;
		}
		if (body_append(md, p, b->len) < 0) {
			*why = strerror(errno);
			return -1;
		}
		return 0;
	case 'q':
		if (!(m->actions & SMFIF_QUARANTINE)) {
			*why = "quarantine not negotiated";
			return -1;
		}
		sanitize(md->qreason, sizeof md->qreason, b->len ? p : "quarantined");
		if (!md->qreason[0])
			snprintf(md->qreason, sizeof md->qreason, "quarantined");
		return 0;
	case 'e':
		*why = "chgfrom not negotiated";
		return -1;
	}
bad:
	*why = "malformed modification";
	return -1;
}

/* A new spool file from the headers and the (old or new) body; it
 * takes the old file's descriptor number. */
static int
rewrite_spool(struct msg *g, struct mods *md)
{
	struct buf h = BUF_INIT;
	char rb[65536];
	ssize_t n;
	size_t i;
	int nfd = tmpfile_open(), src, rc = 0;

	if (nfd < 0)
		return -1;
	for (i = 0; i < g->nh; i++)
		buf_printf(&h, "%s:%s\n", g->h[i].name, g->h[i].value);
	if (md->newbody || g->has_sep)
		buf_addc(&h, '\n');
	if (fd_write_all(nfd, h.s ? h.s : "", h.len) < 0)
		rc = -1;
	buf_free(&h);
	if (md->newbody) {
		if (md->pending_cr) {
			(void)fd_write_all(md->bodyfd, "\r", 1);
			md->pending_cr = 0;
		}
		src = md->bodyfd;
		if (lseek(src, 0, SEEK_SET) < 0)
			rc = -1;
	} else {
		src = g->fd;
		if (lseek(src, g->body_off, SEEK_SET) < 0)
			rc = -1;
	}
	while (rc == 0 && (n = read(src, rb, sizeof rb)) > 0)
		if (fd_write_all(nfd, rb, (size_t)n) < 0)
			rc = -1;
	if (rc == 0 && dup2(nfd, g->fd) < 0)
		rc = -1;
	close(nfd);
	return rc;
}

/* Headers, end of headers, body, end of message to one milter. Returns
 * the verdict byte or -1 (why). */
static int
m_message(struct milter *m, struct msg *g, struct buf *rcpts, struct mods *md,
    const char *id, struct buf *yb, enum mstage *st, const char **why)
{
	long long dl = now_ms() + m->tcont * 1000;
	struct buf p = BUF_INIT, mac = BUF_INIT;
	char rb[32768];
	ssize_t n;
	size_t i;
	int v = 'c', cmd;

#define SEND(c, d, l) do { if (m_write(m, c, d, l, dl) < 0) { *why = errno == ETIMEDOUT ? "timeout" : strerror(errno); v = -1; goto out; } } while (0)
#define ANSWER(nr) do { if (!(m->pflags & (nr))) { v = m_verdict(m, (dl - now_ms()) / 1000 + 1, yb, why); if (v != 'c') goto out; } } while (0)
	*st = MS_HDR;
	if (!(m->pflags & SMFIP_NOHDRS)) {
		for (i = 0; i < g->nh; i++) {
			const char *val = g->h[i].value;
			while (*val == ' ' || *val == '\t')
				val++;
			buf_clear(&p);
			buf_adds(&p, g->h[i].name);
			buf_addc(&p, 0);
			buf_adds(&p, val);
			buf_addc(&p, 0);
			SEND('L', p.s, p.len);
			ANSWER(SMFIP_NR_HDR);
		}
	}
	*st = MS_EOH;
	if (!(m->pflags & SMFIP_NOEOH)) {
		SEND('N', NULL, 0);
		ANSWER(SMFIP_NR_EOH);
	}
	*st = MS_BODY;
	if (!(m->pflags & SMFIP_NOBODY) && lseek(g->fd, g->body_off, SEEK_SET) >= 0) {
		int skip = 0, eof = 0;
		buf_clear(&p);
		while (!skip && !eof) {
			n = read(g->fd, rb, sizeof rb);
			if (n <= 0)
				eof = 1;
			else
				to_crlf(&p, rb, (size_t)n);
			while (p.len >= MILTER_CHUNK || (eof && p.len)) {
				size_t c = p.len > MILTER_CHUNK ? MILTER_CHUNK : p.len;
				SEND('B', p.s, c);
				memmove(p.s, p.s + c, p.len - c);
				p.len -= c;
				if (!(m->pflags & SMFIP_NR_BODY)) {
					v = m_verdict(m, (dl - now_ms()) / 1000 + 1, yb, why);
					if (v == 's' && (m->pflags & SMFIP_SKIP)) {
						skip = 1;
						v = 'c';
						break;
					}
					if (v != 'c')
						goto out;
				}
			}
		}
	}
	*st = MS_EOM;
	mac_add(&mac, "i", id);
	{
		struct buf d = BUF_INIT;
		buf_addc(&d, 'E');
		buf_add(&d, mac.s, mac.len);
		SEND('D', d.s, d.len);
		buf_free(&d);
	}
	SEND('E', NULL, 0);
	for (;;) {
		long long left = dl - now_ms();
		if (left <= 0 || m_read(m, &cmd, yb, dl) < 0) {
			*why = left <= 0 || errno == ETIMEDOUT ? "timeout" : strerror(errno);
			v = -1;
			goto out;
		}
		if (cmd == 'p') {
			dl = now_ms() + m->tcont * 1000;
			continue;
		}
		if (cmd && strchr("cartyd", cmd)) {
			v = cmd;
			break;
		}
		if (apply_mod(m, g, rcpts, md, cmd, yb, why) < 0) {
			v = -1;
			goto out;
		}
	}
out:
#undef SEND
#undef ANSWER
	buf_free(&p);
	buf_free(&mac);
	return v;
}

int
milter_message(int fd, const char *id, struct buf *rcpts, struct mres *r)
{
	struct msg g;
	struct buf yb = BUF_INIT;
	int i, code = 0;

	memset(r, 0, sizeof *r);
	quarantined = 0;
	if (!nms)
		return 0;
	if (refused(r))
		return r->code;
	memset(&g, 0, sizeof g);
	g.fd = fd;
	for (i = 0; i < nms && !code; i++) {
		struct milter *m = &ms[i];
		struct mods md;
		enum mstage st = MS_HDR;
		const char *why = NULL;
		int v;

		if (m->off || m->fd < 0 || m->msg_off)
			continue;
		hdrs_free(&g);
		if (hdrs_read(&g) < 0) {
			snprintf(r->reply, sizeof r->reply, "552 5.3.4 Error: message header section too large");
			r->code = 552;
			code = 552;
			break;
		}
		memset(&md, 0, sizeof md);
		md.bodyfd = -1;
		v = m_message(m, &g, rcpts, &md, id, &yb, &st, &why);
		m->in_msg = 0;
		if (v < 0) {
			if (md.bodyfd >= 0)
				close(md.bodyfd);
			if ((code = m_fail(m, stage_names[st], why, r->reply)))
				r->code = code;
			continue;
		}
		if (v == 'a' || v == 'c') {
			if (md.qreason[0]) {
				char h[300];
				snprintf(h, sizeof h, " %s", md.qreason);
				(void)hdr_insert(&g, 0, "X-Quarantine", 12, h, strlen(h));
				quarantined = 1;
				md.any = 1;
				log_info("milter %s stage=eom action=quarantine reason=%s", m->spec, md.qreason);
			}
			if (md.any && rewrite_spool(&g, &md) < 0) {
				log_warnsys("milter: cannot rewrite the spool file id=%s", id);
				snprintf(r->reply, sizeof r->reply, "451 4.3.0 Error: cannot store message, try again later");
				code = r->code = 451;
			}
			log_info("milter %s stage=%s action=%s%s", m->spec, stage_names[st],
			    v == 'a' ? "accept" : "continue", md.any ? " modified" : "");
		} else if (apply_verdict(m, st, v, yb.s, r))
			code = r->code ? r->code : 0;
		if (md.bodyfd >= 0)
			close(md.bodyfd);
		if (r->discard)
			break;
	}
	/* those after a decision never see the end of this message */
	for (; i < nms; i++)
		if (ms[i].in_msg && ms[i].fd >= 0 && !ms[i].off) {
			(void)m_write(&ms[i], 'A', NULL, 0, now_ms() + ms[i].tcmd * 1000);
			ms[i].in_msg = 0;
		}
	for (i = 0; i < nms; i++)
		ms[i].msg_off = 0;
	hdrs_free(&g);
	buf_free(&yb);
	if (!code && !r->discard && !rcpt_count(rcpts)) {
		log_info("milter: id=%s no recipients left, discarded", id);
		r->discard = 1;
	}
	return code;
}

/* FOLDERS for the chain when a milter quarantined the message: every
 * recipient's copy goes to the Quarantine Maildir folder. */
void
milter_folders(const struct buf *rcpts, int set)
{
	struct buf f = BUF_INIT;
	const char *p;

	if (!set || !quarantined) {
		if (quarantined)
			unsetenv("FOLDERS");
		if (!set)
			quarantined = 0;
		return;
	}
	for (p = rcpts->s ? rcpts->s : ""; *p;) {
		size_t l = strcspn(p, "\n");
		buf_printf(&f, "%.*s\tQuarantine\n", (int)l, p);
		p += l + (p[l] == '\n');
	}
	if (f.s)
		(void)setenv("FOLDERS", f.s, 1);
	buf_free(&f);
}
