/* message.c: the message on fd 0.
 *
 * smtpd-lite hands a seekable spool file; a pipe (shell, fetchmail) is
 * copied once into an unlinked temporary file in the first Maildir's
 * tmp/ (or the queue's tmp/), so that every later copy and the header
 * scan can read it again. The header scan counts hops (Received: and
 * Delivered-To:), collects Delivered-To: values for loop detection and
 * notes old Return-Path: fields, which the final delivery replaces. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "spool.h"
#include "deliver.h"
#include "log.h"

#define HDR_LINE_KEEP 2048	/* bytes of a header line we look at */

int
msg_open(struct msg *m, int dirfd, char *err, size_t errlen)
{
	struct stat st;
	off_t pos;
	char b[65536];
	int fd;

	memset(m, 0, sizeof *m);
	m->fd = -1;
	if (fstat(0, &st) < 0) {
		snprintf(err, errlen, "cannot stat stdin: %s", strerror(errno));
		return -1;
	}
	if (S_ISREG(st.st_mode) && (pos = lseek(0, 0, SEEK_CUR)) >= 0) {
		m->fd = 0;
		m->start = pos;
		m->end = st.st_size;
		return 0;
	}
	/* a pipe: one copy into a file nobody else can see */
	fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char name[MAILDIR_NAME_MAX];
		maildir_uniq(name, sizeof name, "spool");
		fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0)
			(void)unlinkat(dirfd, name, 0);
	}
	if (fd < 0) {
		snprintf(err, errlen, "cannot create a temporary copy of the message: %s",
		    strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n = read(0, b, sizeof b);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read the message: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		if (fd_write_all(fd, b, (size_t)n) < 0) {
			snprintf(err, errlen, "cannot write a temporary copy of the message: %s",
			    strerror(errno));
			close(fd);
			return -1;
		}
		m->end += n;
	}
	m->fd = fd;
	m->start = 0;
	return 0;
}

/* a small buffered reader over pread */
struct rd {
	int fd;
	off_t off, end;
	char b[65536];
	size_t pos, len;
};

static int
rd_fill(struct rd *r)
{
	ssize_t n;

	if (r->off >= r->end)
		return 0;
	do
		n = pread(r->fd, r->b, sizeof r->b, r->off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n == 0)
		return 0;
	r->off += n;
	r->pos = 0;
	r->len = (size_t)n;
	return 1;
}

/* One line (LF kept) into line (first HDR_LINE_KEEP bytes), its full
 * length in *total. 1 line, 0 EOF, -1 error. */
static int
rd_line(struct rd *r, struct buf *line, off_t *total)
{
	int got = 0, f;

	buf_clear(line);
	*total = 0;
	for (;;) {
		if (r->pos >= r->len) {
			if ((f = rd_fill(r)) < 0)
				return -1;
			if (f == 0)
				return got;
		}
		char *s = r->b + r->pos, *nl = memchr(s, '\n', r->len - r->pos);
		size_t n = nl ? (size_t)(nl - s) + 1 : r->len - r->pos;
		if (line->len < HDR_LINE_KEEP)
			buf_add(line, s, n < HDR_LINE_KEEP - line->len ? n : HDR_LINE_KEEP - line->len);
		*total += (off_t)n;
		r->pos += n;
		got = 1;
		if (nl)
			return 1;
	}
}

static int
field_is(const char *line, const char *name)
{
	size_t n = strlen(name);

	return !strncasecmp(line, name, n) && line[n] == ':';
}

static void
add_dt(struct msg *m, const char *v)
{
	char *s, *e;

	while (*v == ' ' || *v == '\t')
		v++;
	s = xstrdup(*v == '<' ? v + 1 : v);
	e = s + strlen(s);
	while (e > s && (isspace((unsigned char)e[-1]) || e[-1] == '>'))
		*--e = 0;
	for (e = s; *e; e++)
		*e = (char)tolower((unsigned char)*e);
	m->dt = xreallocarray(m->dt, m->ndt + 1, sizeof *m->dt);
	m->dt[m->ndt++] = s;
}

int
msg_scan(struct msg *m, char *err, size_t errlen)
{
	struct rd *r = xmalloc(sizeof *r);
	struct buf line = BUF_INIT;
	off_t off = m->start, n;
	int in_rp = 0, res;

	r->fd = m->fd;
	r->off = m->start;
	r->end = m->end;
	r->pos = r->len = 0;
	while ((res = rd_line(r, &line, &n)) > 0) {
		const char *s = line.s;
		if (!strcmp(s, "\n") || !strcmp(s, "\r\n"))
			break;	/* end of the header section */
		if (in_rp && (s[0] == ' ' || s[0] == '\t')) {
			m->skip[m->nskip - 1][1] = off + n;	/* folded Return-Path */
			off += n;
			continue;
		}
		in_rp = 0;
		if (field_is(s, "Received"))
			m->hops++;
		else if (field_is(s, "Delivered-To")) {
			m->hops++;
			add_dt(m, s + strlen("Delivered-To:"));
		} else if (field_is(s, "Return-Path")) {
			m->skip = xreallocarray(m->skip, m->nskip + 1, sizeof *m->skip);
			m->skip[m->nskip][0] = off;
			m->skip[m->nskip][1] = off + n;
			m->nskip++;
			in_rp = 1;
		}
		off += n;
	}
	buf_free(&line);
	free(r);
	if (res < 0) {
		snprintf(err, errlen, "cannot read the message: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int
msg_has_dt(const struct msg *m, const char *key)
{
	size_t i;

	for (i = 0; i < m->ndt; i++)
		if (!strcmp(m->dt[i], key))
			return 1;
	return 0;
}

static int
copy_range(int in, off_t from, off_t to, int out, int *rd)
{
	char b[65536];

	/* in the kernel, page cache to page cache (a 64 KiB message: one
	 * copy and one system call instead of two copies; issue 7); on any
	 * trouble the loop below goes on from there and says which side */
	while (from < to) {
		off_t o = from;
		ssize_t n = sendfile(out, in, &o, (size_t)(to - from));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		from += n;
	}
	while (from < to) {
		size_t want = (size_t)(to - from) < sizeof b ? (size_t)(to - from) : sizeof b;
		ssize_t n = pread(in, b, want, from);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* the file shrank under us */
			*rd = 1;
			return -1;
		}
		if (fd_write_all(out, b, (size_t)n) < 0)
			return -1;
		from += n;
	}
	return 0;
}

/* A field line: a name of printable characters but ':', then ':', then
 * no control character but tab; or a folded continuation of one. */
static int
field_ok(const char *s, size_t n, int first)
{
	size_t i = 0;

	if (!first && n && (s[0] == ' ' || s[0] == '\t'))
		i = 1;
	else {
		while (i < n && s[i] > ' ' && s[i] < 0x7f && s[i] != ':')
			i++;
		if (i == 0 || i == n || s[i] != ':')
			return 0;
	}
	for (; i < n; i++)
		if ((unsigned char)s[i] < ' ' && s[i] != '\t')
			return 0;
	return 1;
}

int
msg_insert(struct msg *m, char *err, size_t errlen)
{
	const char *h = getenv("MXHEADERS"), *at = getenv("MXHEADERS_AT"), *p;
	char *e;
	long long off;

	m->ins = NULL;
	m->inslen = 0;
	if (!h || !*h)
		return 0;
	errno = 0;
	off = at ? strtoll(at, &e, 10) : -1;
	if (!at || errno || *e || e == at || off < 0 || off > (long long)(m->end - m->start)) {
		snprintf(err, errlen, "MXHEADERS_AT is not a place in the message");
		return -1;
	}
	for (p = h; *p; ) {
		const char *nl = strchr(p, '\n');
		if (!nl || !field_ok(p, (size_t)(nl - p), p == h)) {
			snprintf(err, errlen, "MXHEADERS holds something else than header fields");
			return -1;
		}
		p = nl + 1;
	}
	m->ins = h;
	m->inslen = strlen(h);
	m->ins_at = m->start + (off_t)off;
	return 0;
}

/* Copy [from, to) of the message, the inserted fields at their place. */
static int
copy_part(const struct msg *m, off_t from, off_t to, int out, int *rd, int *inserted)
{
	if (m->ins && !*inserted && m->ins_at >= from && m->ins_at <= to) {
		if (copy_range(m->fd, from, m->ins_at, out, rd) < 0 ||
		    fd_write_all(out, m->ins, m->inslen) < 0)
			return -1;
		*inserted = 1;
		from = m->ins_at;
	}
	return copy_range(m->fd, from, to, out, rd);
}

int
msg_write(const struct msg *m, int out, const char *hdr, size_t hlen, int *rd)
{
	off_t pos = m->start;
	size_t i;
	int inserted = 0;

	*rd = 0;
	if (hlen && fd_write_all(out, hdr, hlen) < 0)
		return -1;
	for (i = 0; i < m->nskip; i++) {
		if (copy_part(m, pos, m->skip[i][0], out, rd, &inserted) < 0)
			return -1;
		pos = m->skip[i][1];
	}
	if (copy_part(m, pos, m->end, out, rd, &inserted) < 0)
		return -1;
	if (m->ins && !inserted) {	/* inside a Return-Path: never from ruleproc */
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int
msg_materialize(const struct msg *m, const char *spooldir)
{
	struct msg whole = *m;
	int fd = spool_new(spooldir, 1 << 20), rd;

	if (fd < 0)
		return -1;
	whole.nskip = 0;	/* the queue keeps the message as it came */
	if (msg_write(&whole, fd, NULL, 0, &rd) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}
