/* smtp.c: the SMTP client, one transaction per call.
 *
 * The addresses of the destination are tried in order until one takes
 * the transaction: a failed connection, a greeting or EHLO/HELO that is
 * not 2xx, a 4xx to MAIL, or a connection lost before any recipient got
 * its answer moves on to the next address. EHLO, HELO when EHLO is
 * refused; PIPELINING (MAIL, every RCPT and DATA in one write, RFC
 * 2920), SIZE= and BODY=8BITMIME when offered. Every recipient gets its
 * own reply. The text goes out with CRLF line ends and dot-stuffed.
 * Timeouts per RFC 5321 4.5.3.2 (settings smtp_timeout_*).
 *
 * Opportunistic STARTTLS (RFC 3207, setting queue_tls): when EHLO
 * offers it, STARTTLS, the handshake (OpenSSL, TLS 1.2 minimum, the
 * library's ciphers, no certificate check), EHLO again. Not offered:
 * plain text. Offered but refused, or a handshake that fails: never
 * plain on that address; the next address, else a temporary failure.
 * With queue_tls_ca_file, destinations from the routes table need
 * STARTTLS and a certificate that verifies and names the route host. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "log.h"
#include "mxqueue.h"

struct conn {
	int fd;
	char host[300];		/* "name[ip]" */
	char in[8192];
	size_t inpos, inlen;
	struct buf out;
	int dead;		/* I/O error or timeout */
	char why[200];		/* what went wrong with the connection */
	SSL *ssl;		/* after STARTTLS */
	char tls[160];		/* "TLSv1.3 cipher TLS_AES_256_GCM_SHA384", "" plain */
};

struct reply {
	int code;
	char text[MXQ_REPLY_MAX];	/* all lines joined by blanks */
	char ext[MXQ_REPLY_MAX * 2];	/* EHLO: keywords, one per line */
};

/* snprintf for replies: long names are cut quietly */
static void __attribute__((format(printf, 3, 4)))
xsnprintf(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
wait_fd(int fd, short ev, long long deadline)
{
	struct pollfd p;
	int r;

	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return 0;
		p.fd = fd;
		p.events = ev;
		r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r > 0)
			return 1;
	}
}

static void
conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->dead)
		return;
	c->dead = 1;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof c->why, fmt, ap);
	va_end(ap);
}

/* The last OpenSSL error (or the system's) as text. */
static const char *
tls_err(int e, char *buf, size_t len)
{
	unsigned long l = ERR_get_error();

	if (l)
		ERR_error_string_n(l, buf, len);
	else if (e == SSL_ERROR_SYSCALL && errno)
		xsnprintf(buf, len, "%s", strerror(errno));
	else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
		xsnprintf(buf, len, "connection closed by the server");
	else
		xsnprintf(buf, len, "TLS error %d", e);
	return buf;
}

/* Write some of p. > 0 bytes written; 0 wait for *ev and call again;
 * -1 the connection is dead (conn_fail said why). */
static ssize_t
conn_write(struct conn *c, const char *p, size_t len, short *ev)
{
	ssize_t n;

	if (c->ssl) {
		char eb[160];
		int r, e;
		ERR_clear_error();
		r = SSL_write(c->ssl, p, len > 1048576 ? 1048576 : (int)len);
		if (r > 0)
			return r;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
			*ev = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
			return 0;
		}
		conn_fail(c, "TLS error while sending (%s)", tls_err(e, eb, sizeof eb));
		return -1;
	}
	for (;;) {
		n = write(c->fd, p, len);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			*ev = POLLOUT;
			return 0;
		}
		conn_fail(c, "connection lost while sending (%s)", strerror(errno));
		return -1;
	}
}

/* Read into c->in. > 0 bytes; 0 wait for *ev and call again; -1 dead. */
static ssize_t
conn_read(struct conn *c, short *ev)
{
	ssize_t r;

	if (c->ssl) {
		char eb[160];
		int n, e;
		ERR_clear_error();
		n = SSL_read(c->ssl, c->in, sizeof c->in);
		if (n > 0)
			return n;
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
			*ev = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
			return 0;
		}
		if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !errno &&
		    !ERR_peek_error()))
			conn_fail(c, "connection closed by the server");
		else
			conn_fail(c, "TLS read error (%s)", tls_err(e, eb, sizeof eb));
		return -1;
	}
	for (;;) {
		r = read(c->fd, c->in, sizeof c->in);
		if (r > 0)
			return r;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			*ev = POLLIN;
			return 0;
		}
		conn_fail(c, r == 0 ? "connection closed by the server" :
		    "read error (%s)", strerror(errno));
		return -1;
	}
}

static int
conn_flush(struct conn *c, long long timeout)
{
	size_t off = 0;
	long long deadline = now_ms() + timeout * 1000;

	if (c->dead)
		return -1;
	while (off < c->out.len) {
		short ev = 0;
		ssize_t n = conn_write(c, c->out.s + off, c->out.len - off, &ev);
		if (n > 0) {
			off += (size_t)n;
			deadline = now_ms() + timeout * 1000;	/* per block */
			continue;
		}
		if (n == 0) {
			int w = wait_fd(c->fd, ev, deadline);
			if (w > 0)
				continue;
			conn_fail(c, w == 0 ? "timeout while sending" : "poll error while sending");
		}
		return -1;
	}
	buf_clear(&c->out);
	return 0;
}

/* One line (CRLF or LF stripped; over-long lines cut). 0 ok, -1 dead. */
static int
conn_line(struct conn *c, char *line, size_t len, long long deadline)
{
	size_t n = 0;

	for (;;) {
		while (c->inpos < c->inlen) {
			char ch = c->in[c->inpos++];
			if (ch == '\n') {
				if (n > 0 && line[n - 1] == '\r')
					n--;
				line[n] = 0;
				return 0;
			}
			if (n + 1 < len)
				line[n++] = ch;
		}
		if (c->dead)
			return -1;
		{
			/* plain: wait, then read; TLS: read first (OpenSSL
			 * may hold decrypted bytes), wait when it says so */
			short ev = c->ssl ? 0 : POLLIN;
			ssize_t r;
			for (;;) {
				if (ev) {
					int w = wait_fd(c->fd, ev, deadline);
					if (w <= 0) {
						conn_fail(c, w == 0 ? "timeout waiting for a reply" :
						    "poll error waiting for a reply");
						return -1;
					}
				}
				ev = 0;
				if ((r = conn_read(c, &ev)) != 0)
					break;
			}
			if (r < 0)
				return -1;
			c->inpos = 0;
			c->inlen = (size_t)r;
		}
	}
}

/* Read a (multi-line) reply. code 0 when the connection is dead. */
static int
conn_reply(struct conn *c, struct reply *rp, long long timeout)
{
	char line[1024];
	long long deadline = now_ms() + timeout * 1000;
	int lines = 0;

	rp->code = 0;
	rp->text[0] = 0;
	rp->ext[0] = 0;
	for (;;) {
		if (conn_line(c, line, sizeof line, deadline) < 0)
			return 0;
		if (strlen(line) < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) || !isdigit((unsigned char)line[2]) ||
		    (line[3] && line[3] != ' ' && line[3] != '-') || line[0] < '2' ||
		    line[0] > '5') {
			conn_fail(c, "bad reply from the server");
			return 0;
		}
		if (lines++ == 0) {
			rp->code = atoi(line);
			strlcpy(rp->text, line, sizeof rp->text);
		} else {
			strlcat(rp->text, " ", sizeof rp->text);
			strlcat(rp->text, line + 4, sizeof rp->text);
			strlcat(rp->ext, line + 4, sizeof rp->ext);
			strlcat(rp->ext, "\n", sizeof rp->ext);
		}
		if (line[3] != '-')
			break;
		if (lines > 1000) {
			conn_fail(c, "reply too long");
			return 0;
		}
	}
	/* control characters never go into the queue's state */
	for (char *p = rp->text; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			*p = ' ';
	return rp->code;
}

static void
conn_cmd(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	char line[1200];

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	buf_adds(&c->out, line);
	buf_adds(&c->out, "\r\n");
}

static int
conn_open(struct conn *c, const struct dest_addr *a, long long timeout)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int fd, w, err = 0, one = 1;
	socklen_t el = sizeof err;

	if (a->sa.ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->sa)->sin_addr, ip, sizeof ip);
	else if (a->sa.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->sa)->sin6_addr, ip, sizeof ip);
	xsnprintf(c->host, sizeof c->host, "%s[%s]", a->host, ip);
	fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_fail(c, "cannot make a socket (%s)", strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) < 0) {
		if (errno != EINPROGRESS) {
			conn_fail(c, "cannot connect to %s (%s)", c->host, strerror(errno));
			close(fd);
			return -1;
		}
		w = wait_fd(fd, POLLOUT, now_ms() + timeout * 1000);
		if (w <= 0) {
			conn_fail(c, "cannot connect to %s (timeout)", c->host);
			close(fd);
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			conn_fail(c, "cannot connect to %s (%s)", c->host, strerror(err ? err : errno));
			close(fd);
			return -1;
		}
	}
	c->fd = fd;
	return 0;
}

/* "5.1.1 host said: 550 5.1.1 text": the enhanced code from the reply
 * when it has one (and its class matches), else X.0.0. */
static void
fmt_reply(char *dst, size_t len, const char *host, const struct reply *rp)
{
	const char *t = rp->text + 4;
	int cls = rp->code / 100;

	if (strlen(rp->text) > 4 && t[0] == '0' + cls && t[1] == '.' &&
	    isdigit((unsigned char)t[2])) {
		size_t n = strspn(t, "0123456789.");
		xsnprintf(dst, len, "%.*s %s said: %s", (int)n, t, host, rp->text);
	} else
		xsnprintf(dst, len, "%d.0.0 %s said: %s", cls, host, rp->text);
}

static void
set_all(struct smtp_rcpt *r, size_t n, int code, const char *reply, int only_open)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!only_open || r[i].code == 0 || (r[i].code >= 200 && r[i].code < 300)) {
			r[i].code = code;
			strlcpy(r[i].reply, reply, sizeof r[i].reply);
		}
}

static int
has_ext(const char *ext, const char *kw, const char **arg)
{
	const char *p = ext;
	size_t kl = strlen(kw);

	while (*p) {
		const char *e = strchr(p, '\n');
		if (!strncasecmp(p, kw, kl) && (p[kl] == ' ' || p[kl] == '\n' || p[kl] == 0)) {
			if (arg)
				*arg = p + kl;
			return 1;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

/* The message text, CRLF and dot-stuffed, then ".". Flushes as it
 * goes (each write within smtp_timeout_block). 0 or -1. */
static int
send_text(const struct mxq *q, struct conn *c, const struct smtp_msg *m)
{
	char b[65536];
	off_t off = 0;
	int bol = 1, last = '\n';

	if (m->dt && m->dt[0])
		buf_printf(&c->out, "Delivered-To: %s\r\n", m->dt);
	for (;;) {
		ssize_t n = pread(m->fd, b, sizeof b, off);
		ssize_t i;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			conn_fail(c, "cannot read the message (%s)", strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		off += n;
		buf_reserve(&c->out, (size_t)n * 2 + 4);
		for (i = 0; i < n; i++) {
			char ch = b[i];
			if (bol && ch == '.')
				c->out.s[c->out.len++] = '.';
			if (ch == '\n') {
				/* a stored CRLF is one line end, never CRCRLF */
				if (!(c->out.len > 0 && c->out.s[c->out.len - 1] == '\r' && last == '\r'))
					c->out.s[c->out.len++] = '\r';
				c->out.s[c->out.len++] = '\n';
				bol = 1;
			} else {
				c->out.s[c->out.len++] = ch;
				bol = 0;
			}
			last = ch;
		}
		c->out.s[c->out.len] = 0;
		if (c->out.len >= 65536 && conn_flush(c, q->s.smtp_timeout_block) < 0)
			return -1;
	}
	if (!bol)
		buf_adds(&c->out, "\r\n");
	buf_adds(&c->out, ".\r\n");
	return conn_flush(c, q->s.smtp_timeout_block);
}

/* An open connection that has said EHLO/HELO, kept between
 * transactions to the same destination (one worker, several entries). */
struct session {
	struct conn c;
	int open;
	int pipelining, size_ok, eightbit_ok;
	long long maxsize;
	int need_rset;		/* the last transaction did not end cleanly */
	char key[300];		/* the destination it serves */
};
static struct session cache;

static void
session_close(const struct mxq *q, struct session *ss)
{
	struct reply rp;

	if (!ss->open)
		return;
	if (!ss->c.dead) {
		conn_cmd(&ss->c, "QUIT");
		if (conn_flush(&ss->c, q->s.smtp_timeout_greeting) == 0 &&
		    conn_reply(&ss->c, &rp, 2) && ss->c.ssl)
			(void)SSL_shutdown(ss->c.ssl);	/* close_notify, no wait */
	}
	if (ss->c.ssl)
		SSL_free(ss->c.ssl);
	if (ss->c.fd >= 0)
		close(ss->c.fd);
	buf_free(&ss->c.out);
	memset(ss, 0, sizeof *ss);
	ss->c.fd = -1;
}

/* The TLS contexts of this process: [0] opportunistic (no certificate
 * check), [1] verified against queue_tls_ca_file. NULL with err. */
static SSL_CTX *
tls_ctx(const struct mxq *q, int verify, char *err, size_t errlen)
{
	static SSL_CTX *ctx[2];
	static char cafile[4096];
	SSL_CTX *x;
	char eb[160];

	if (verify && ctx[1] && strcmp(cafile, q->s.queue_tls_ca_file)) {
		SSL_CTX_free(ctx[1]);	/* settings read again (SIGHUP) */
		ctx[1] = NULL;
	}
	if (ctx[verify])
		return ctx[verify];
	ERR_clear_error();
	if (!(x = SSL_CTX_new(TLS_client_method())) ||
	    !SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION)) {
		xsnprintf(err, errlen, "4.7.0 cannot set up TLS (%s)", tls_err(0, eb, sizeof eb));
		SSL_CTX_free(x);
		return NULL;
	}
	SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_AUTO_RETRY);
	if (verify) {
		if (SSL_CTX_load_verify_locations(x, q->s.queue_tls_ca_file, NULL) != 1) {
			xsnprintf(err, errlen, "4.7.0 cannot load queue_tls_ca_file %s (%s)",
			    q->s.queue_tls_ca_file, tls_err(0, eb, sizeof eb));
			SSL_CTX_free(x);
			return NULL;
		}
		SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
		strlcpy(cafile, q->s.queue_tls_ca_file, sizeof cafile);
	} else
		SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL);
	return ctx[verify] = x;
}

/* STARTTLS on a session whose EHLO offered it, the handshake, EHLO
 * again (its reply in rp). 0 ok, -1 with the reason in last (the
 * session is closed: never plain text after a failed STARTTLS). */
static int
tls_start(const struct mxq *q, const struct dest_addr *a, struct session *ss,
    int verify, struct reply *rp, char *last, size_t lastlen)
{
	const struct settings *s = &q->s;
	struct conn *c = &ss->c;
	SSL_CTX *ctx;
	long long deadline;
	unsigned char ipb[16];
	int isip = inet_pton(AF_INET, a->host, ipb) == 1 || inet_pton(AF_INET6, a->host, ipb) == 1;
	char eb[200];

	conn_cmd(c, "STARTTLS");
	if (conn_flush(c, s->smtp_timeout_greeting) < 0 ||
	    conn_reply(c, rp, s->smtp_timeout_greeting) == 0) {
		xsnprintf(last, lastlen, "4.4.2 %s: %s (STARTTLS)", c->host, c->why);
		goto fail;
	}
	if (rp->code != 220) {
		char t[MXQ_REPLY_MAX];
		fmt_reply(t, sizeof t, c->host, rp);
		xsnprintf(last, lastlen, "4.7.0 STARTTLS offered but refused, not sent in plain text: %s",
		    t + strcspn(t, " ") + 1);
		goto fail;
	}
	if (c->inpos < c->inlen) {	/* the answer under TLS must not come in plain */
		xsnprintf(last, lastlen, "4.7.0 %s: plain text after the 220 to STARTTLS", c->host);
		c->dead = 1;
		goto fail;
	}
	if (!(ctx = tls_ctx(q, verify, last, lastlen))) {
		c->dead = 1;
		goto fail;
	}
	ERR_clear_error();
	if (!(c->ssl = SSL_new(ctx)) || SSL_set_fd(c->ssl, c->fd) != 1) {
		xsnprintf(last, lastlen, "4.7.0 %s: cannot set up TLS (%s)", c->host,
		    tls_err(0, eb, sizeof eb));
		c->dead = 1;
		goto fail;
	}
	if (!isip && a->host[0])
		(void)SSL_set_tlsext_host_name(c->ssl, a->host);	/* SNI */
	if (verify && (isip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), a->host) :
	    SSL_set1_host(c->ssl, a->host)) != 1) {
		xsnprintf(last, lastlen, "4.7.0 %s: cannot set the name to verify", c->host);
		c->dead = 1;
		goto fail;
	}
	deadline = now_ms() + s->smtp_timeout_greeting * 1000;
	for (;;) {
		int r, e, w;
		ERR_clear_error();
		errno = 0;
		if ((r = SSL_connect(c->ssl)) == 1)
			break;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			w = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
			if (w > 0)
				continue;
			xsnprintf(eb, sizeof eb, "%s", w == 0 ? "timeout" : "poll error");
		} else if (verify && SSL_get_verify_result(c->ssl) != X509_V_OK)
			xsnprintf(eb, sizeof eb, "certificate not verified: %s",
			    X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
		else
			(void)tls_err(e, eb, sizeof eb);
		xsnprintf(last, lastlen, "4.7.0 %s: TLS handshake failed (%s), not sent in plain text",
		    c->host, eb);
		c->dead = 1;
		goto fail;
	}
	xsnprintf(c->tls, sizeof c->tls, "%s cipher %s%s", SSL_get_version(c->ssl),
	    SSL_get_cipher_name(c->ssl), verify ? " verified" : "");
	log_info("%s: STARTTLS: %s", c->host, c->tls);
	conn_cmd(c, "EHLO %s", s->hostname);
	if (conn_flush(c, s->smtp_timeout_greeting) < 0 ||
	    conn_reply(c, rp, s->smtp_timeout_greeting) == 0) {
		xsnprintf(last, lastlen, "4.4.2 %s: %s (EHLO after STARTTLS)", c->host, c->why);
		goto fail;
	}
	if (rp->code / 100 != 2) {
		fmt_reply(last, lastlen, c->host, rp), last[0] = '4';
		goto fail;
	}
	return 0;
fail:
	session_close(q, ss);
	return -1;
}

/* Connect, greeting, EHLO (HELO), STARTTLS when offered. verify: the
 * route needs verified TLS. 0 ok, -1 with the reason in last. */
static int
session_open(const struct mxq *q, const struct dest_addr *a, int verify,
    struct session *ss, char *last, size_t lastlen)
{
	const struct settings *s = &q->s;
	struct reply rp;
	const char *arg;

	memset(ss, 0, sizeof *ss);
	ss->c.fd = -1;
	if (conn_open(&ss->c, a, s->smtp_timeout_connect) < 0) {
		xsnprintf(last, lastlen, "4.4.1 %s", ss->c.why);
		return -1;
	}
	ss->open = 1;
	if (conn_reply(&ss->c, &rp, s->smtp_timeout_greeting) / 100 != 2) {
		if (ss->c.dead)
			xsnprintf(last, lastlen, "4.4.2 %s: %s (greeting)", ss->c.host, ss->c.why);
		else
			fmt_reply(last, lastlen, ss->c.host, &rp), last[0] = '4';
		session_close(q, ss);
		return -1;
	}
	conn_cmd(&ss->c, "EHLO %s", s->hostname);
	if (conn_flush(&ss->c, s->smtp_timeout_greeting) < 0 ||
	    conn_reply(&ss->c, &rp, s->smtp_timeout_greeting) == 0) {
		xsnprintf(last, lastlen, "4.4.2 %s: %s (EHLO)", ss->c.host, ss->c.why);
		session_close(q, ss);
		return -1;
	}
	if (rp.code / 100 != 2) {
		conn_cmd(&ss->c, "HELO %s", s->hostname);
		if (conn_flush(&ss->c, s->smtp_timeout_greeting) < 0 ||
		    conn_reply(&ss->c, &rp, s->smtp_timeout_greeting) / 100 != 2) {
			if (ss->c.dead)
				xsnprintf(last, lastlen, "4.4.2 %s: %s (HELO)", ss->c.host, ss->c.why);
			else
				fmt_reply(last, lastlen, ss->c.host, &rp), last[0] = '4';
			session_close(q, ss);
			return -1;
		}
		rp.ext[0] = 0;
	}
	if (strcmp(s->queue_tls, "no")) {
		if (has_ext(rp.ext, "STARTTLS", NULL)) {
			if (tls_start(q, a, ss, verify, &rp, last, lastlen) < 0)
				return -1;
		} else if (verify) {
			xsnprintf(last, lastlen, "4.7.10 %s: STARTTLS not offered (the route needs TLS: "
			    "queue_tls_ca_file)", ss->c.host);
			session_close(q, ss);
			return -1;
		}
	}
	ss->pipelining = has_ext(rp.ext, "PIPELINING", NULL);
	ss->size_ok = has_ext(rp.ext, "SIZE", &arg);
	ss->maxsize = ss->size_ok ? atoll(arg) : 0;
	ss->eightbit_ok = has_ext(rp.ext, "8BITMIME", NULL);
	return 0;
}

/* One transaction on an open session. Returns 1 when it took place
 * (every recipient has its answer), 0 to try the next address (the
 * session is then closed). */
static int
transaction(const struct mxq *q, struct session *ss, const struct smtp_msg *m,
    struct smtp_rcpt *r, size_t n, char *last, size_t lastlen)
{
	struct conn *c = &ss->c;
	struct reply rp;
	int accepted = 0, rset = ss->need_rset;
	size_t i;
	const struct settings *s = &q->s;

	for (i = 0; i < n; i++) {
		r[i].code = 0;
		r[i].reply[0] = 0;
	}
	ss->need_rset = 1;	/* until the dot's reply says otherwise */
	if (ss->maxsize > 0 && m->size > ss->maxsize) {
		char t[MXQ_REPLY_MAX];
		xsnprintf(t, sizeof t, "5.3.4 message too big for %s (%lld bytes, it takes %lld)",
		    c->host, m->size, ss->maxsize);
		set_all(r, n, 552, t, 0);
		ss->need_rset = rset;
		return 1;
	}

	/* [RSET,] MAIL, RCPT..., DATA: in one write with PIPELINING */
	if (rset)
		conn_cmd(c, "RSET");
	if (rset && !ss->pipelining) {
		if (conn_flush(c, s->smtp_timeout_mail) < 0 ||
		    conn_reply(c, &rp, s->smtp_timeout_mail) / 100 != 2)
			goto lost;
	}
	{
		char params[80] = "";
		if (ss->size_ok)
			xsnprintf(params, sizeof params, " SIZE=%lld", m->size);
		if (m->eightbit && ss->eightbit_ok)
			strlcat(params, " BODY=8BITMIME", sizeof params);
		conn_cmd(c, "MAIL FROM:<%s>%s", m->sender, params);
	}
	if (!ss->pipelining && conn_flush(c, s->smtp_timeout_mail) < 0)
		goto lost;
	if (ss->pipelining) {
		for (i = 0; i < n; i++)
			conn_cmd(c, "RCPT TO:<%s>", r[i].addr);
		conn_cmd(c, "DATA");
		if (conn_flush(c, s->smtp_timeout_mail) < 0)
			goto lost;
		if (rset && conn_reply(c, &rp, s->smtp_timeout_mail) / 100 != 2)
			goto lost;
	}
	if (conn_reply(c, &rp, s->smtp_timeout_mail) == 0)
		goto lost;
	if (rp.code / 100 != 2) {
		char t[MXQ_REPLY_MAX];
		fmt_reply(t, sizeof t, c->host, &rp);
		if (rp.code / 100 == 4 && !ss->pipelining) {
			strlcpy(last, t, lastlen);	/* the next MX may take it */
			session_close(q, ss);
			return 0;
		}
		set_all(r, n, rp.code, t, 0);
		if (ss->pipelining) {	/* the RCPT and DATA replies still come */
			for (i = 0; i <= n && conn_reply(c, &rp, s->smtp_timeout_rcpt); i++)
				;
		}
		return 1;
	}
	for (i = 0; i < n; i++) {
		if (!ss->pipelining) {
			conn_cmd(c, "RCPT TO:<%s>", r[i].addr);
			if (conn_flush(c, s->smtp_timeout_rcpt) < 0)
				goto lost;
		}
		if (conn_reply(c, &rp, s->smtp_timeout_rcpt) == 0)
			goto lost;
		r[i].code = rp.code;
		fmt_reply(r[i].reply, sizeof r[i].reply, c->host, &rp);
		if (rp.code / 100 == 2)
			accepted++;
	}
	if (!ss->pipelining) {
		if (!accepted)
			return 1;
		conn_cmd(c, "DATA");
		if (conn_flush(c, s->smtp_timeout_data) < 0)
			goto lost;
	}
	if (conn_reply(c, &rp, s->smtp_timeout_data) == 0)
		goto lost;
	if (rp.code != 354) {
		char t[MXQ_REPLY_MAX];
		fmt_reply(t, sizeof t, c->host, &rp);
		if (accepted)
			set_all(r, n, rp.code / 100 == 5 ? rp.code : 451, t, 1);
		return 1;
	}
	if (!accepted) {	/* 354 with nobody to send to: an empty text */
		buf_adds(&c->out, ".\r\n");
		if (conn_flush(c, s->smtp_timeout_block) == 0)
			(void)conn_reply(c, &rp, s->smtp_timeout_dot);
		return 1;
	}
	if (send_text(q, c, m) < 0)
		goto lost;
	if (conn_reply(c, &rp, s->smtp_timeout_dot) == 0)
		goto lost;
	{
		char t[MXQ_REPLY_MAX];
		fmt_reply(t, sizeof t, c->host, &rp);
		set_all(r, n, rp.code, t, 1);
	}
	ss->need_rset = 0;
	log_info("%s: %d accepted of %zu (%s): %s", c->host, rp.code / 100 == 2 ? accepted : 0, n,
	    c->tls[0] ? c->tls : "no TLS", rp.text);
	return 1;
lost:
	/* the connection broke in the middle: whoever has no final answer
	 * is tried again (at least once: a lost reply to the dot may mean
	 * it was delivered) */
	xsnprintf(last, lastlen, "4.4.2 %s: %s", c->host, c->why[0] ? c->why : "bad reply");
	for (i = 0; i < n; i++)
		if (r[i].code / 100 != 5) {
			r[i].code = 451;
			strlcpy(r[i].reply, last, sizeof r[i].reply);
		}
	c->dead = 1;
	session_close(q, ss);
	/* nobody answered yet: the next address may do better */
	for (i = 0; i < n; i++)
		if (r[i].code / 100 == 5)
			return 1;
	return accepted ? 1 : 0;
}

const char *
smtp_cached(void)
{
	return cache.open && !cache.c.dead ? cache.key : NULL;
}

void
smtp_close(const struct mxq *q)
{
	session_close(q, &cache);
}

void
smtp_send(const struct mxq *q, const char *key, const struct dest *d,
    const struct smtp_msg *m, struct smtp_rcpt *r, size_t n)
{
	char last[MXQ_REPLY_MAX] = "4.4.1 no address to send to";
	int i;

	if (cache.open && !cache.c.dead && !strcmp(cache.key, key)) {
		/* the connection of the last entry: a failure of the old
		 * connection itself (closed by the server meanwhile) is not
		 * the recipients' fault: then a fresh one */
		int rc = transaction(q, &cache, m, r, n, last, sizeof last);
		if (rc == 1)
			return;
	}
	session_close(q, &cache);
	for (i = 0; i < d->n; i++) {
		int verify = d->routed && q->s.queue_tls_ca_file[0] && strcmp(q->s.queue_tls, "no");
		if (session_open(q, &d->a[i], verify, &cache, last, sizeof last) == 0) {
			strlcpy(cache.key, key, sizeof cache.key);
			if (transaction(q, &cache, m, r, n, last, sizeof last))
				return;
		}
		log_info("%s", last);
	}
	set_all(r, n, 451, last, 0);
}
