/* data.c: the DATA text, from "354" to CRLF.CRLF, into a spool file.
 *
 * Only CR LF . CR LF ends the data (RFC 5321 4.1.1.4). A bare LF or a
 * bare CR is never a line end: the text is read on to the real end and
 * then refused (554 5.5.2), so no second message can be smuggled past
 * us or a later hop (CVE-2023-51764 family). Lines are unstuffed
 * (RFC 5321 4.5.2) and stored with LF ends. NUL bytes are noted (the
 * message is refused with 554 5.6.0, never silently cut). Lines longer
 * than 1000 octets are kept as they are: nothing is held in memory
 * but a small write buffer. Past max_size nothing more is written;
 * the rest is read and discarded (552 5.3.4). Received: and
 * Delivered-To: headers are counted for the hop limit. */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtpd.h"
#include "spool.h"

enum dstate { D_TEXT, D_CR, D_DOT, D_DOTCR };

struct dctx {
	int fd;
	const char *spooldir;
	long long memmax;	/* > 0: a memory spool, moved to disk beyond this */
	long long written;
	long long max_size, max_hops, hops;
	struct data_result *r;
	char wbuf[16384];
	size_t wlen;
	int in_hdr;		/* still in the header section */
	char lhead[16];		/* first bytes of the current line */
	size_t llen;		/* bytes in the current line so far */
};

static void
wflush(struct dctx *d)
{
	size_t off = 0;

	if (d->memmax > 0 && d->written + (long long)d->wlen > d->memmax && !d->r->ioerr) {
		if (spool_spill(d->fd, d->spooldir) < 0)
			d->r->ioerr = errno ? errno : EIO;
		d->memmax = 0;
	}
	d->written += (long long)d->wlen;
	while (off < d->wlen && !d->r->ioerr) {
		ssize_t n = write(d->fd, d->wbuf + off, d->wlen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			d->r->ioerr = errno ? errno : EIO;
		else
			off += (size_t)n;
	}
	d->wlen = 0;
}

/* A line of the unstuffed text has ended: count trace headers. */
static void
line_end(struct dctx *d)
{
	if (d->in_hdr) {
		if (d->llen == 0)
			d->in_hdr = 0;
		else if ((d->llen >= 9 && !strncasecmp(d->lhead, "received:", 9)) ||
		    (d->llen >= 13 && !strncasecmp(d->lhead, "delivered-to:", 13)))
			if (++d->hops > d->max_hops)
				d->r->hops = 1;
	}
	d->llen = 0;
}

static void
emit(struct dctx *d, char c)
{
	if (c == 0)
		d->r->nul = 1;
	if (c == '\n')
		line_end(d);
	else if (d->llen < sizeof d->lhead)
		d->lhead[d->llen++] = c;
	else
		d->llen++;
	if (++d->r->size > d->max_size)
		d->r->toobig = 1;
	if (d->r->toobig || d->r->ioerr)
		return;
	d->wbuf[d->wlen++] = c;
	if (d->wlen == sizeof d->wbuf)
		wflush(d);
}

/* A run of text inside a line, without CR, LF or NUL: what emit() does
 * byte by byte, at once (a 64 KiB message is mostly such runs). */
static void
emit_run(struct dctx *d, const char *s, size_t n)
{
	if (d->llen < sizeof d->lhead) {
		size_t k = sizeof d->lhead - d->llen < n ? sizeof d->lhead - d->llen : n;
		memcpy(d->lhead + d->llen, s, k);
	}
	d->llen += n;
	d->r->size += (long long)n;
	if (d->r->size > d->max_size)
		d->r->toobig = 1;
	while (n > 0 && !d->r->toobig && !d->r->ioerr) {
		size_t k = sizeof d->wbuf - d->wlen < n ? sizeof d->wbuf - d->wlen : n;
		memcpy(d->wbuf + d->wlen, s, k);
		d->wlen += k;
		s += k;
		n -= k;
		if (d->wlen == sizeof d->wbuf)
			wflush(d);
	}
}

/* The length of the plain run at s: up to the first CR, LF or NUL. */
static size_t
plain_run(const char *s, size_t n)
{
	const char *e = memchr(s, '\r', n), *x;

	if (e)
		n = (size_t)(e - s);
	if ((x = memchr(s, '\n', n)))
		n = (size_t)(x - s);
	if ((x = memchr(s, 0, n)))
		n = (size_t)(x - s);
	return n;
}

/* Feed one byte; returns 1 at the end of the data. */
static int
step(struct dctx *d, enum dstate *st, int *bol, char c)
{
	switch (*st) {
	case D_DOT:
		if (c == '\r') {
			*st = D_DOTCR;
			return 0;
		}
		*st = D_TEXT;
		if (c == '.') {		/* ".." -> "." */
			emit(d, '.');
			return 0;
		}
		break;			/* ".x": the dot goes, x is text */
	case D_DOTCR:
		if (c == '\n')
			return 1;
		d->r->bare = 1;		/* ".\r" then not LF */
		emit(d, '\r');
		*st = D_TEXT;
		break;
	case D_CR:
		*st = D_TEXT;
		if (c == '\n') {
			emit(d, '\n');
			*bol = 1;
			return 0;
		}
		d->r->bare = 1;		/* bare CR */
		emit(d, '\r');
		break;
	case D_TEXT:
		break;
	}
	/* D_TEXT with c */
	if (*bol && c == '.') {
		*bol = 0;
		*st = D_DOT;
		return 0;
	}
	*bol = 0;
	if (c == '\r') {
		*st = D_CR;
		return 0;
	}
	if (c == '\n')
		d->r->bare = 1;		/* bare LF: data, never a line end */
	emit(d, c);
	return 0;
}

void
data_read(int fd, const struct settings *s, struct data_result *r)
{
	static struct dctx d;
	enum dstate st = D_TEXT;
	int bol = 1;

	memset(r, 0, sizeof *r);
	memset(&d, 0, sizeof d);
	d.fd = fd;
	d.spooldir = s->spooldir;
	d.memmax = s->spool_memory;
	d.written = lseek(fd, 0, SEEK_CUR);	/* our trace headers */
	d.max_size = s->max_size;
	d.max_hops = s->max_hops;
	d.r = r;
	d.in_hdr = 1;
	for (;;) {
		const char *p;
		size_t n, i;
		int rc = io_fill(&p, &n);

		if (rc != IO_OK) {
			r->eof = rc == IO_EOF || rc == IO_ERR;
			r->timeout = rc == IO_TIMEOUT;
			return;
		}
		for (i = 0; i < n; i++) {
			if (st == D_TEXT && !bol) {	/* inside a line: the plain run at once */
				size_t k = plain_run(p + i, n - i);
				emit_run(&d, p + i, k);
				if ((i += k) == n)
					break;
			}
			if (step(&d, &st, &bol, p[i])) {
				io_consume(i + 1);
				wflush(&d);
				return;
			}
		}
		io_consume(n);
	}
}
