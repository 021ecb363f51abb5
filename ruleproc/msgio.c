/* msgio.c: reading, spooling and rewriting the message (see msgio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "buf.h"
#include "log.h"
#include "msgio.h"
#include "spool.h"

#define CHUNK 65536

void
msgsrc_init(struct msgsrc *s, const char *spooldir)
{
	struct stat st;

	memset(s, 0, sizeof *s);
	s->spooldir = spooldir;
	s->fd = 0;
	s->seekable = fstat(0, &st) == 0 && S_ISREG(st.st_mode) && lseek(0, 0, SEEK_CUR) >= 0;
}

int
tmpfile_open(const char *dir)
{
	const char *dirs[3];
	int i, fd;

	dirs[0] = dir && *dir ? dir : NULL;
	dirs[1] = getenv("TMPDIR");
	dirs[2] = "/tmp";
	for (i = 0; i < 3; i++) {
		char tmpl[4200];
		if (!dirs[i] || !*dirs[i])
			continue;
		fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		snprintf(tmpl, sizeof tmpl, "%s/ruleproc.XXXXXX", dirs[i]);
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd >= 0) {
			unlink(tmpl);
			return fd;
		}
	}
	return -1;
}

static int
enough(const struct rmsg *m, const struct ruleset *rs, int hdr_only)
{
	if (!m->hdr_done)
		return 0;
	if (hdr_only)
		return 1;
	if (rs->need_attach)
		return 0;
	if (!rs->need_body)
		return 1;
	return m->body.len >= m->body_limit;
}

int
msgsrc_scan(struct msgsrc *s, struct rmsg *m, const struct ruleset *rs, int hdr_only)
{
	char *chunk;
	ssize_t n;
	int stopped = 0, out = -1;

	if (s->scanned)
		return 0;
	s->scanned = 1;
	chunk = xmalloc(CHUNK);
	if (s->seekable) {
		if (lseek(0, 0, SEEK_SET) < 0)
			goto ioerr;
	} else {
		out = tmpfile_open(s->spooldir);
		if (out < 0) {
			log_warnsys("cannot create a temp file in %s", s->spooldir);
			free(chunk);
			return -1;
		}
	}
	for (;;) {
		n = read(0, chunk, CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto ioerr;
		}
		if (n == 0)
			break;
		if (out >= 0 && fd_write_all(out, chunk, (size_t)n) < 0) {
			log_warnsys("cannot write the spool copy");
			close(out);
			free(chunk);
			return -1;
		}
		if (!stopped)
			rmsg_feed(m, chunk, (size_t)n);
		if (!stopped && enough(m, rs, hdr_only)) {
			stopped = 1;
			if (s->seekable)
				break;
		}
	}
	rmsg_end(m);	/* also after an early stop: finishes the scan state */
	if (s->seekable) {
		struct stat st;
		if (fstat(0, &st) == 0)
			m->size = (unsigned long long)st.st_size;
	} else {
		struct stat st;
		if (fstat(out, &st) == 0)
			m->size = (unsigned long long)st.st_size;
		s->fd = out;
		s->spooled = 1;
	}
	free(chunk);
	return 0;
ioerr:
	log_warnsys("cannot read the message");
	if (out >= 0)
		close(out);
	free(chunk);
	return -1;
}

int
msgsrc_rewind(struct msgsrc *s)
{
	if (s->spooled) {
		if (dup2(s->fd, 0) < 0)
			return -1;
		close(s->fd);
		s->fd = 0;
		s->spooled = 0;
	}
	if ((s->scanned || s->seekable) && lseek(0, 0, SEEK_SET) < 0)
		return -1;
	return 0;
}

/* Copy [from, to) of src (to < 0: to the end) to out. */
static int
copy_range(int src, long long from, long long to, int out)
{
	char *b = xmalloc(CHUNK);
	long long pos = from;
	int rc = -1;

	for (;;) {
		size_t want = CHUNK;
		ssize_t n;
		if (to >= 0) {
			if (pos >= to)
				break;
			if ((long long)want > to - pos)
				want = (size_t)(to - pos);
		}
		n = pread(src, b, want, pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		if (n == 0)
			break;
		if (fd_write_all(out, b, (size_t)n) < 0)
			goto out;
		pos += n;
	}
	rc = 0;
out:
	free(b);
	return rc;
}

int
msgsrc_write(int src, const struct rmsg *m, const struct rresult *res, int out)
{
	struct buf h = BUF_INIT;
	long long pos = 0;
	int i, tag = 0, rc = -1;
	const char *subj = rmsg_get(m, "Subject");

	if (res->tag) {
		tag = 1;
		if (subj && !strncasecmp(subj, res->tag, strlen(res->tag)))
			tag = 0;	/* already tagged */
		if (m->subj_colon < 0)
			tag = 2;	/* no Subject: add one */
	}
	if (tag == 1 && m->subj_colon <= m->hdr_end) {
		if (copy_range(src, 0, m->subj_colon, out) < 0)
			goto out;
		buf_printf(&h, " %s", res->tag);
		if (fd_write_all(out, h.s, h.len) < 0)
			goto out;
		pos = m->subj_colon;
	}
	if (copy_range(src, pos, m->hdr_end, out) < 0)
		goto out;
	buf_clear(&h);
	if (m->hdr_end == (long long)m->size && !m->last_nl && m->size > 0)
		buf_addc(&h, '\n');
	for (i = 0; i < res->nh; i++)
		buf_printf(&h, "%s: %s\n", res->hnames[i], res->hvals[i]);
	if (tag == 2)
		buf_printf(&h, "Subject: %s\n", res->tag);
	if (h.len && fd_write_all(out, h.s, h.len) < 0)
		goto out;
	if (m->hdr_end == (long long)m->size && m->size > 0) {
		/* no blank line in the input: end the header cleanly */
		if (fd_write_all(out, "\n", 1) < 0)
			goto out;
	} else if (copy_range(src, m->hdr_end, -1, out) < 0)
		goto out;
	rc = 0;
out:
	buf_free(&h);
	return rc;
}

int
msgsrc_rewrite(struct msgsrc *s, const struct rmsg *m, const struct rresult *res)
{
	int out = -1, src = s->spooled ? s->fd : 0;

	/* a small one in memory (lib/spool.h: no inode to allocate) */
	if (s->memmax > 0 && m->size <= (unsigned long long)s->memmax)
		out = spool_new(s->spooldir, s->memmax);
	if (out < 0)
		out = tmpfile_open(s->spooldir);
	if (out < 0) {
		log_warnsys("cannot create a temp file in %s", s->spooldir);
		return -1;
	}
	if (msgsrc_write(src, m, res, out) < 0) {
		log_warnsys("cannot write the changed message");
		close(out);
		return -1;
	}
	if (dup2(out, 0) < 0 || lseek(0, 0, SEEK_SET) < 0) {
		close(out);
		return -1;
	}
	close(out);
	if (s->spooled)
		close(s->fd);
	s->fd = 0;
	s->spooled = 0;
	return 0;
}
