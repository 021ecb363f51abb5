#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "buf.h"
#include "maildir.h"
#include "queue.h"

static unsigned queue_seq;

static const char *const state_names[] = { "pending", "delivered", "failed", "bounced" };
static const char *const kind_names[] = { "relay", "forward", "maildir", "local" };

const char *
queue_state_name(enum queue_state s)
{
	return (unsigned)s < QUEUE_NSTATES ? state_names[s] : "?";
}

const char *
queue_kind_name(enum queue_kind k)
{
	return (unsigned)k < 4 ? kind_names[k] : "?";
}

/* Fields never carry TAB, CR, LF or other control bytes. */
static char *
field_dup(const char *s)
{
	char *d = xstrdup(s ? s : ""), *p;

	for (p = d; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			*p = ' ';
	return d;
}

struct queue_rcpt *
queue_add_rcpt(struct queue_info *qi, enum queue_state st, enum queue_kind kind,
    const char *addr, const char *orcpt, const char *dt, const char *maildir,
    const char *folder, const char *reply)
{
	struct queue_rcpt *r;

	qi->rcpt = xreallocarray(qi->rcpt, qi->nrcpt + 1, sizeof *qi->rcpt);
	r = &qi->rcpt[qi->nrcpt++];
	memset(r, 0, sizeof *r);
	r->state = st;
	r->kind = kind;
	r->addr = field_dup(addr);
	r->orcpt = field_dup(orcpt);
	r->dt = field_dup(dt);
	r->maildir = field_dup(maildir);
	r->folder = field_dup(folder);
	r->reply = field_dup(reply);
	return r;
}

void
queue_info_free(struct queue_info *qi)
{
	size_t i;

	for (i = 0; i < qi->nrcpt; i++) {
		struct queue_rcpt *r = &qi->rcpt[i];
		free(r->addr);
		free(r->orcpt);
		free(r->dt);
		free(r->maildir);
		free(r->folder);
		free(r->reply);
	}
	free(qi->rcpt);
	free(qi->sender);
	free(qi->mxid);
	free(qi->client);
	free(qi->helo);
	memset(qi, 0, sizeof *qi);
}

static int
open_sub(const char *qdir, const char *sub, int create)
{
	char p[4200];
	int fd;

	snprintf(p, sizeof p, "%s/%s", qdir, sub);
	fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		int qfd;
		if (mkdir(qdir, 0700) < 0 && errno != EEXIST)
			return -1;
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return -1;
		/* the new subdirectory's entry must survive a crash too */
		if ((qfd = open(qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			return -1;
		if (fsync(qfd) < 0) {
			close(qfd);
			return -1;
		}
		close(qfd);
		fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	return fd;
}

/* rename without overwriting: renameat2(RENAME_NOREPLACE), else link
 * and unlink (filesystems without the flag). */
static int
publish(int fromdir, const char *from, int todir, const char *to)
{
#ifdef RENAME_NOREPLACE
	if (renameat2(fromdir, from, todir, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	if (linkat(fromdir, from, todir, to, 0) < 0)
		return -1;
	(void)unlinkat(fromdir, from, 0);
	return 0;
}

/* "key value\n", the value with control characters made blanks */
static void
put_kv(struct buf *b, const char *k, const char *v)
{
	char *c = field_dup(v);

	buf_printf(b, "%s %s\n", k, c);
	free(c);
}

static void
info_format(const struct queue_info *qi, struct buf *b)
{
	size_t i;

	buf_printf(b, "mxqueue %d\n", QUEUE_VERSION);
	buf_printf(b, "id %s\n", qi->id);
	buf_printf(b, "created %lld\n", qi->created);
	put_kv(b, "sender", qi->sender);
	put_kv(b, "mxid", qi->mxid);
	put_kv(b, "client", qi->client);
	put_kv(b, "helo", qi->helo);
	buf_printf(b, "size %lld\n", qi->size);
	if (qi->warned)
		buf_printf(b, "warned %lld\n", qi->warned);
	for (i = 0; i < qi->nrcpt; i++) {
		const struct queue_rcpt *r = &qi->rcpt[i];
		buf_printf(b, "rcpt\t%s\t%d\t%lld\t%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
		    queue_state_name(r->state), r->attempts, r->next_try, r->last_try,
		    queue_kind_name(r->kind), r->addr, r->orcpt, r->dt, r->maildir,
		    r->folder, r->reply);
	}
	buf_adds(b, "end\n");
}

/* write data to tmp/NAME, fsync, close, publish as DIR/ID (replace:
 * rename over an existing file), fsync DIR. */
static int
put_file(const char *qdir, int tmpfd, const char *tmpname, const char *sub,
    const char *id, const void *data, size_t len, int srcfd, off_t off,
    int replace, long long *size, char *err, size_t errlen)
{
	int fd, dfd = -1;
	long long total = 0;

	fd = openat(tmpfd, tmpname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s/tmp/%s: %s", qdir, tmpname, strerror(errno));
		return -1;
	}
	if (data && fd_write_all(fd, data, len) < 0)
		goto fail_write;
	total = (long long)len;
	if (srcfd >= 0) {
		char b[65536];
		ssize_t n;
		for (;;) {
			n = pread(srcfd, b, sizeof b, off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				snprintf(err, errlen, "cannot read the message: %s", strerror(errno));
				goto fail;
			}
			if (n == 0)
				break;
			if (fd_write_all(fd, b, (size_t)n) < 0)
				goto fail_write;
			off += n;
			total += n;
		}
	}
	if (fsync(fd) < 0)
		goto fail_write;
	if (close(fd) < 0) {
		fd = -1;
		goto fail_write;
	}
	fd = -1;
	if ((dfd = open_sub(qdir, sub, 1)) < 0) {
		snprintf(err, errlen, "cannot open %s/%s: %s", qdir, sub, strerror(errno));
		goto fail;
	}
	if (replace ? renameat(tmpfd, tmpname, dfd, id) : publish(tmpfd, tmpname, dfd, id)) {
		snprintf(err, errlen, "cannot rename into %s/%s/%s: %s", qdir, sub, id, strerror(errno));
		goto fail;
	}
	if (fsync(dfd) < 0) {
		snprintf(err, errlen, "cannot fsync %s/%s: %s", qdir, sub, strerror(errno));
		(void)unlinkat(dfd, id, 0);
		close(dfd);
		return -1;
	}
	close(dfd);
	if (size)
		*size = total;
	return 0;
fail_write:
	snprintf(err, errlen, "cannot write %s/tmp/%s: %s", qdir, tmpname, strerror(errno));
fail:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	(void)unlinkat(tmpfd, tmpname, 0);
	return -1;
}

int
queue_info_write(const char *qdir, const struct queue_info *qi, char *err, size_t errlen)
{
	struct buf b = BUF_INIT;
	char tmpname[200];
	int tmpfd, r;

	if ((tmpfd = open_sub(qdir, "tmp", 1)) < 0) {
		snprintf(err, errlen, "cannot open %s/tmp: %s", qdir, strerror(errno));
		return -1;
	}
	info_format(qi, &b);
	snprintf(tmpname, sizeof tmpname, "%s.info.%ld", qi->id, (long)getpid());
	r = put_file(qdir, tmpfd, tmpname, "info", qi->id, b.s, b.len, -1, 0, 1,
	    NULL, err, errlen);
	buf_free(&b);
	close(tmpfd);
	return r;
}

int
queue_put(const char *qdir, int fd, off_t off, struct queue_info *qi, char *err, size_t errlen)
{
	struct buf b = BUF_INIT;
	struct timeval tv;
	char tmpname[200];
	int tmpfd, r, mfd;

	if ((tmpfd = open_sub(qdir, "tmp", 1)) < 0) {
		snprintf(err, errlen, "cannot open %s/tmp: %s", qdir, strerror(errno));
		return -1;
	}
	gettimeofday(&tv, NULL);
	snprintf(qi->id, sizeof qi->id, "%lld.M%06ldP%ldQ%u", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), ++queue_seq);
	qi->created = (long long)tv.tv_sec;
	snprintf(tmpname, sizeof tmpname, "%s.mess", qi->id);
	if (put_file(qdir, tmpfd, tmpname, "mess", qi->id, NULL, 0, fd, off, 0,
	    &qi->size, err, errlen) < 0) {
		close(tmpfd);
		return -1;
	}
	info_format(qi, &b);
	snprintf(tmpname, sizeof tmpname, "%s.info", qi->id);
	r = put_file(qdir, tmpfd, tmpname, "info", qi->id, b.s, b.len, -1, 0, 0,
	    NULL, err, errlen);
	buf_free(&b);
	close(tmpfd);
	if (r < 0) {
		/* no info: the message file is an orphan; take it back */
		if ((mfd = open_sub(qdir, "mess", 0)) >= 0) {
			(void)unlinkat(mfd, qi->id, 0);
			close(mfd);
		}
		return -1;
	}
	/* wake a runner waiting on the trigger FIFO, if there is one */
	{
		char p[4200];
		int t;
		snprintf(p, sizeof p, "%s/trigger", qdir);
		if ((t = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0) {
			struct stat st;
			if (fstat(t, &st) == 0 && S_ISFIFO(st.st_mode))
				(void)!write(t, "", 1);
			close(t);
		}
	}
	return 0;
}

static char *
next_field(char **pp)
{
	char *p = *pp, *t;

	if (!p)
		return NULL;
	if ((t = strchr(p, '\t'))) {
		*t = 0;
		*pp = t + 1;
	} else
		*pp = NULL;
	return p;
}

static int
lookup_name(const char *const *names, int n, const char *s)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcmp(names[i], s))
			return i;
	return -1;
}

int
queue_info_read(const char *qdir, const char *id, struct queue_info *qi,
    char *err, size_t errlen)
{
	char path[4400], *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int lineno = 0, ended = 0;

	memset(qi, 0, sizeof *qi);
	snprintf(path, sizeof path, "%s/info/%s", qdir, id);
	if (!(f = fopen(path, "re"))) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		char *p = line, *v;
		lineno++;
		if (line[n - 1] == '\n')
			line[--n] = 0;
		if (lineno == 1) {
			if (strncmp(line, "mxqueue ", 8) || atoi(line + 8) != QUEUE_VERSION)
				goto bad;
			continue;
		}
		if (!strcmp(line, "end")) {
			ended = 1;
			break;
		}
		if (!strncmp(line, "rcpt\t", 5)) {
			char *f_[11];
			int i, st, kd;
			struct queue_rcpt *r;
			p = line + 5;
			for (i = 0; i < 11; i++)
				if (!(f_[i] = next_field(&p)))
					goto bad;
			if ((st = lookup_name(state_names, QUEUE_NSTATES, f_[0])) < 0 ||
			    (kd = lookup_name(kind_names, 4, f_[4])) < 0)
				goto bad;
			r = queue_add_rcpt(qi, (enum queue_state)st, (enum queue_kind)kd,
			    f_[5], f_[6], f_[7], f_[8], f_[9], f_[10]);
			r->attempts = atoi(f_[1]);
			r->next_try = atoll(f_[2]);
			r->last_try = atoll(f_[3]);
			continue;
		}
		if (!(v = strchr(line, ' ')))
			goto bad;
		*v++ = 0;
		if (!strcmp(line, "id"))
			snprintf(qi->id, sizeof qi->id, "%s", v);
		else if (!strcmp(line, "created"))
			qi->created = atoll(v);
		else if (!strcmp(line, "sender"))
			free(qi->sender), qi->sender = xstrdup(v);
		else if (!strcmp(line, "mxid"))
			free(qi->mxid), qi->mxid = xstrdup(v);
		else if (!strcmp(line, "client"))
			free(qi->client), qi->client = xstrdup(v);
		else if (!strcmp(line, "helo"))
			free(qi->helo), qi->helo = xstrdup(v);
		else if (!strcmp(line, "size"))
			qi->size = atoll(v);
		else if (!strcmp(line, "warned"))
			qi->warned = atoll(v);
		/* unknown keys: ignored (newer writers may add some) */
	}
	free(line);
	fclose(f);
	if (!ended) {
		snprintf(err, errlen, "%s: truncated (no end line)", path);
		queue_info_free(qi);
		errno = EPROTO;
		return -1;
	}
	if (!qi->sender)
		qi->sender = xstrdup("");
	return 0;
bad:
	snprintf(err, errlen, "%s:%d: malformed", path, lineno);
	free(line);
	fclose(f);
	queue_info_free(qi);
	errno = EPROTO;
	return -1;
}

int
queue_id_ok(const char *id)
{
	size_t n = strlen(id);

	return n > 0 && n < 128 && id[0] != '.' && !strchr(id, '/');
}

int
queue_lock(const char *qdir, const char *id, int wait)
{
	char p[4400];
	int fd;

	if (!queue_id_ok(id)) {
		errno = ENOENT;
		return -1;
	}
	snprintf(p, sizeof p, "%s/mess/%s", qdir, id);
	if ((fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int
queue_remove(const char *qdir, const char *id, char *err, size_t errlen)
{
	int dfd;

	if (!queue_id_ok(id)) {
		snprintf(err, errlen, "bad queue id");
		return -1;
	}
	if ((dfd = open_sub(qdir, "info", 0)) < 0) {
		snprintf(err, errlen, "cannot open %s/info: %s", qdir, strerror(errno));
		return -1;
	}
	if (unlinkat(dfd, id, 0) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove %s/info/%s: %s", qdir, id, strerror(errno));
		close(dfd);
		return -1;
	}
	if (fsync(dfd) < 0) {
		snprintf(err, errlen, "cannot fsync %s/info: %s", qdir, strerror(errno));
		close(dfd);
		return -1;
	}
	close(dfd);
	if ((dfd = open_sub(qdir, "mess", 0)) >= 0) {
		(void)unlinkat(dfd, id, 0);
		close(dfd);
	}
	return 0;
}
