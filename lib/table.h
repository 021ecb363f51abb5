/* table: read-only CDB tables CONFDIR/NAME.cdb (tinycdb, mmap).
 * Opened per connection or per query batch; table_refresh() re-opens
 * cheaply when mkcdb has renamed a new file into place (inode/mtime),
 * so long-lived processes see rebuilds at once. */
#ifndef MX_TABLE_H
#define MX_TABLE_H
#include <sys/stat.h>
#include <cdb.h>
#include "buf.h"

struct table {
	char path[4200];
	int fd;			/* -1 when not open */
	struct cdb cdb;
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
};

/* 0 ok; -1 error (errno set; ENOENT when the table does not exist). */
int table_open(struct table *t, const char *confdir, const char *name);
int table_refresh(struct table *t);	/* 0 ok (possibly reopened), -1 error */
/* 1 found (value copied to val, NUL-terminated), 0 absent, -1 error. */
int table_get(struct table *t, const void *key, size_t klen, struct buf *val);
/* The same without a copy: *val points into the mapped table (valid
 * until the next refresh or close), not NUL-terminated, *vlen bytes. */
int table_getp(struct table *t, const void *key, size_t klen, const char **val,
    size_t *vlen);
void table_close(struct table *t);
#endif
