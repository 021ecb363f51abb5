#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "table.h"

static int
same_file(const struct table *t, const struct stat *st)
{
	return t->dev == st->st_dev && t->ino == st->st_ino &&
	    t->mtime.tv_sec == st->st_mtim.tv_sec &&
	    t->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static int
table_load(struct table *t)
{
	struct stat st;
	int fd;

	if ((fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || cdb_init(&t->cdb, fd) < 0) {
		int e = errno ? errno : EPROTO;
		close(fd);
		errno = e;
		return -1;
	}
	t->fd = fd;
	t->dev = st.st_dev;
	t->ino = st.st_ino;
	t->mtime = st.st_mtim;
	return 0;
}

int
table_open(struct table *t, const char *confdir, const char *name)
{
	int n;

	memset(t, 0, sizeof *t);
	t->fd = -1;
	n = snprintf(t->path, sizeof t->path, "%s/%s.cdb", confdir, name);
	if (n < 0 || (size_t)n >= sizeof t->path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return table_load(t);
}

int
table_refresh(struct table *t)
{
	struct stat st;

	if (t->fd >= 0 && stat(t->path, &st) == 0 && same_file(t, &st))
		return 0;
	if (t->fd >= 0) {
		cdb_free(&t->cdb);
		close(t->fd);
		t->fd = -1;
	}
	return table_load(t);
}

int
table_get(struct table *t, const void *key, size_t klen, struct buf *val)
{
	int r;

	if (t->fd < 0) {
		errno = EBADF;
		return -1;
	}
	r = cdb_find(&t->cdb, key, (unsigned)klen);
	if (r <= 0)
		return r < 0 ? -1 : 0;
	if (val) {
		const void *p = cdb_get(&t->cdb, cdb_datalen(&t->cdb), cdb_datapos(&t->cdb));
		if (!p) {
			errno = EPROTO;
			return -1;
		}
		buf_clear(val);
		buf_add(val, p, cdb_datalen(&t->cdb));
	}
	return 1;
}

int
table_getp(struct table *t, const void *key, size_t klen, const char **val, size_t *vlen)
{
	int r;

	if (t->fd < 0) {
		errno = EBADF;
		return -1;
	}
	r = cdb_find(&t->cdb, key, (unsigned)klen);
	if (r <= 0)
		return r < 0 ? -1 : 0;
	*val = cdb_get(&t->cdb, cdb_datalen(&t->cdb), cdb_datapos(&t->cdb));
	if (!*val) {
		errno = EPROTO;
		return -1;
	}
	*vlen = cdb_datalen(&t->cdb);
	return 1;
}

void
table_close(struct table *t)
{
	if (t->fd >= 0) {
		cdb_free(&t->cdb);
		close(t->fd);
	}
	t->fd = -1;
}
