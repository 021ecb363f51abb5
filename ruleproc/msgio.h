/* msgio: the message on stdin for the chain and dry-run modes: scan it
 * (spooling a pipe to an unlinked temp file so it can be passed on),
 * rewind it, or write the changed message and make that stdin. */
#ifndef RULEPROC_MSGIO_H
#define RULEPROC_MSGIO_H
#include "rules.h"

struct msgsrc {
	const char *spooldir;
	int fd;			/* where the message is: 0, or our spool copy */
	int seekable;		/* stdin is a regular file */
	int spooled;		/* fd is a temp copy of a piped stdin */
	int scanned;
	long long memmax;	/* a rewritten copy up to this size: in memory */
};

void msgsrc_init(struct msgsrc *s, const char *spooldir);
/* Feed the message to m. hdr_only: stop after the header when stdin
 * can be re-read. 0 ok, -1 I/O error (logged). */
int msgsrc_scan(struct msgsrc *s, struct rmsg *m, const struct ruleset *rs, int hdr_only);
/* Make fd 0 the unchanged message, at offset 0. */
int msgsrc_rewind(struct msgsrc *s);
/* Write the message with res's header changes to a new unlinked temp
 * file and make it fd 0. */
int msgsrc_rewrite(struct msgsrc *s, const struct rmsg *m, const struct rresult *res);
/* Write the changed message to fd out (for the dry run and tests). */
int msgsrc_write(int src, const struct rmsg *m, const struct rresult *res, int out);
/* An unlinked temp file in dir (else $TMPDIR, /tmp); -1 on error. */
int tmpfile_open(const char *dir);
#endif
