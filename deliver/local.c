/* local.c: Maildir delivery for one group of recipients.
 *
 * The data is written once: into tmp/ of the first Maildir that can be
 * opened (an unnamed file, O_TMPFILE, where the filesystem can; else a
 * unique name, O_EXCL; every write checked, fsync), then hard-linked
 * into new/ of every Maildir of the group; an unnamed file is fsynced
 * again (its link count), then each new/ is fsynced, then the tmp/ file
 * is closed or its name removed. A Maildir on another
 * filesystem gets its own copy the same way. A file in new/ is always
 * complete: it is linked only after its data is on disk. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "log.h"

/* snprintf for reasons: cut long names quietly */
static void __attribute__((format(printf, 3, 4)))
reasonf(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

struct mdc {
	char *path, *folder;	/* as asked */
	struct maildir md;
	int ok;
	char err[300];
	int used;		/* got a link in this group: fsync new/ */
};

/* The Maildir for a target, opened once per run. Folders: a rule's
 * folder is created when create_maildirs is on; a user+tag folder only
 * when it exists; if a folder cannot be used, the mail goes to INBOX. */
static struct mdc *
md_get(struct local_ctx *c, const struct target *t)
{
	struct mdc *e;
	size_t i;
	const char *folder = t->folder;

	for (i = 0; i < c->ncache; i++)
		if (!strcmp(c->cache[i]->path, t->path) && !strcmp(c->cache[i]->folder, folder))
			return c->cache[i];
	c->cache = xreallocarray(c->cache, c->ncache + 1, sizeof *c->cache);
	e = c->cache[c->ncache++] = xcalloc(1, sizeof *e);
	e->path = xstrdup(t->path);
	e->folder = xstrdup(folder);
	e->md.fd = e->md.tmpfd = e->md.newfd = -1;
	if (c->rootfd < 0) {
		strlcpy(e->err, c->rooterr, sizeof e->err);
		return e;
	}
	if (folder[0]) {
		int create = c->s->create_maildirs && !t->folder_optional;
		if (maildir_open(&e->md, c->rootfd, t->path, folder, create, e->err,
		    sizeof e->err) == 0) {
			e->ok = 1;
			return e;
		}
		if (!t->folder_optional)
			log_warn("%s; delivering to INBOX", e->err);
	}
	if (maildir_open(&e->md, c->rootfd, t->path, NULL, c->s->create_maildirs, e->err,
	    sizeof e->err) == 0)
		e->ok = 1;
	return e;
}

/* Write Return-Path/Delivered-To and the message into a new tmp/ file
 * of e (unnamed where it can be, maildir_tmp_open). 0 (name, size set;
 * *keep the fd of an unnamed one, open until it is linked, else -1) or
 * -1 with a reason. */
static int
write_tmp(struct local_ctx *c, struct mdc *e, const char *hdr, size_t hlen,
    char *name, size_t namelen, off_t *size, int *keep, char *why, size_t whylen)
{
	struct stat st;
	int fd, rd = 0;

	*keep = -1;
	if ((fd = maildir_tmp_open(&e->md, c->s->hostname, name, namelen)) < 0) {
		reasonf(why, whylen, "4.3.0 cannot create a file in %s/tmp: %s", e->md.name,
		    strerror(errno));
		return -1;
	}
	if (msg_write(c->m, fd, hdr, hlen, &rd) < 0 || fstat(fd, &st) < 0 || fsync(fd) < 0) {
		int e_ = errno;
		reasonf(why, whylen, "%s %s %s/tmp: %s",
		    e_ == ENOSPC || e_ == EDQUOT ? "4.2.2" : "4.3.0",
		    rd ? "cannot read the message for" : "cannot write to",
		    e->md.name, strerror(e_));
		maildir_tmp_drop(&e->md, name, fd);
		errno = e_;
		return -1;
	}
	*size = st.st_size;
	if (maildir_tmp_unnamed(name)) {	/* fsynced: its close cannot lose it */
		*keep = fd;
		return 0;
	}
	if (close(fd) < 0) {
		reasonf(why, whylen, "4.3.0 cannot write to %s/tmp: %s", e->md.name,
		    strerror(errno));
		(void)unlinkat(e->md.tmpfd, name, 0);
		return -1;
	}
	return 0;
}

struct slot {			/* one distinct Maildir of the group */
	struct mdc *e;
	struct target **t;	/* the targets it serves */
	size_t nt;
	int state;		/* 0 todo, 1 linked, 2 failed */
	char reason[300];
	char newname[MAILDIR_NAME_MAX];
	struct mdc *src;	/* whose tmp/ file was linked */
	char *srcname;
};

static void
slot_fail(struct slot *sl, const char *reason)
{
	sl->state = 2;
	strlcpy(sl->reason, reason, sizeof sl->reason);
}

/* Whether a slot of sl got its link from src's tmp/ file. */
static int
links_from(const struct slot *sl, size_t ns, const struct mdc *src)
{
	for (size_t i = 0; i < ns; i++)
		if (sl[i].state == 1 && sl[i].src == src)
			return 1;
	return 0;
}

void
local_deliver_group(struct local_ctx *c, struct rcpt *r, size_t nr, int g)
{
	struct slot *sl = NULL;
	size_t ns = 0, i, j, nrcpt = 0;
	struct buf hdr = BUF_INIT;
	const char *dtkey = NULL;
	struct { struct mdc *e; char name[MAILDIR_NAME_MAX]; off_t size; int fd; } tmpf[8];
	size_t ntmp = 0;
	char why[300];

	/* distinct Maildirs, and who they are for */
	for (i = 0; i < nr; i++) {
		int any = 0;
		if (r[i].group != g || r[i].state != RS_OK)
			continue;
		for (j = 0; j < r[i].nt; j++) {
			struct target *t = &r[i].t[j];
			struct mdc *e;
			size_t k;
			if (t->kind != T_MAILDIR || t->state != TS_TODO)
				continue;
			any = 1;
			e = md_get(c, t);
			for (k = 0; k < ns && sl[k].e != e; k++)
				;
			if (k == ns) {
				sl = xreallocarray(sl, ns + 1, sizeof *sl);
				memset(&sl[ns], 0, sizeof sl[ns]);
				sl[ns++].e = e;
			}
			sl[k].t = xreallocarray(sl[k].t, sl[k].nt + 1, sizeof *sl[k].t);
			sl[k].t[sl[k].nt++] = t;
		}
		if (any) {
			nrcpt++;
			dtkey = r[i].key;
		}
	}
	if (ns == 0)
		return;
	buf_printf(&hdr, "Return-Path: <%s>\n", c->sender);
	if (nrcpt == 1)		/* a file read by several recipients names none */
		buf_printf(&hdr, "Delivered-To: %s\n", dtkey);
	for (i = 0; i < nr; i++)
		if (r[i].group == g && r[i].state == RS_OK)
			r[i].dt_used = nrcpt == 1;

	for (i = 0; i < ns; i++) {
		struct mdc *e = sl[i].e;
		if (!e->ok) {
			reasonf(why, sizeof why, "4.2.0 %s", e->err);
			slot_fail(&sl[i], why);
			continue;
		}
		/* link from a tmp/ file on the same filesystem, or write one */
		for (j = 0; j < ntmp; j++)
			if (tmpf[j].e->md.dev == e->md.dev && tmpf[j].e->ok)
				break;
		if (j == ntmp) {
			if (ntmp == sizeof tmpf / sizeof tmpf[0]) {
				slot_fail(&sl[i], "4.3.0 too many filesystems in one delivery");
				continue;
			}
			if (write_tmp(c, e, hdr.s, hdr.len, tmpf[j].name, sizeof tmpf[j].name,
			    &tmpf[j].size, &tmpf[j].fd, why, sizeof why) < 0) {
				int full = errno == ENOSPC || errno == EDQUOT;
				log_warn("%s", why + 6);
				slot_fail(&sl[i], why);
				/* same filesystem full: the others there fail alike */
				for (size_t k = i + 1; full && k < ns; k++)
					if (sl[k].e->ok && sl[k].e->md.dev == e->md.dev && !sl[k].state)
						slot_fail(&sl[k], why);
				continue;
			}
			tmpf[j].e = e;
			ntmp++;
		}
		if (maildir_link(&tmpf[j].e->md, tmpf[j].name, &e->md, c->s->hostname,
		    tmpf[j].size, sl[i].newname, sizeof sl[i].newname) < 0) {
			if ((errno == EXDEV || errno == EMLINK) && tmpf[j].e != e && ntmp < 8) {
				/* a copy of its own, in its own tmp/ */
				size_t k = ntmp;
				if (write_tmp(c, e, hdr.s, hdr.len, tmpf[k].name, sizeof tmpf[k].name,
				    &tmpf[k].size, &tmpf[k].fd, why, sizeof why) == 0) {
					tmpf[k].e = e;
					ntmp++;
					if (maildir_link(&e->md, tmpf[k].name, &e->md, c->s->hostname,
					    tmpf[k].size, sl[i].newname, sizeof sl[i].newname) == 0) {
						sl[i].state = 1;
						sl[i].src = e;
						continue;
					}
				} else {
					slot_fail(&sl[i], why);
					continue;
				}
			}
			reasonf(why, sizeof why, "%s cannot link into %s/new: %s",
			    errno == ENOSPC || errno == EDQUOT ? "4.2.2" : "4.3.0",
			    e->md.name, strerror(errno));
			log_warn("%s", why + 6);
			slot_fail(&sl[i], why);
			continue;
		}
		sl[i].state = 1;
		sl[i].src = tmpf[j].e;
	}
	/* An unnamed file's links live in its inode as well as in new/: its
	 * link count went 0 -> N after its fsync. Without a journal (ext2,
	 * ext4 without one) fsync(new/) does not write that inode, and after
	 * a crash fsck would call it deleted and clear the entries in new/. */
	for (j = 0; j < ntmp; j++) {
		if (tmpf[j].fd < 0 || !links_from(sl, ns, tmpf[j].e) || fsync(tmpf[j].fd) == 0)
			continue;
		reasonf(why, sizeof why, "4.3.0 cannot fsync the message in %s/tmp: %s",
		    tmpf[j].e->md.name, strerror(errno));
		log_warn("%s", why + 6);
		for (i = 0; i < ns; i++)
			if (sl[i].state == 1 && sl[i].src == tmpf[j].e) {
				(void)unlinkat(sl[i].e->md.newfd, sl[i].newname, 0);
				slot_fail(&sl[i], why);
			}
	}
	/* the links are durable once each new/ is */
	for (i = 0; i < ns; i++) {
		if (sl[i].state != 1)
			continue;
		for (j = 0; j < i; j++)	/* one fsync per directory */
			if (sl[j].e == sl[i].e)
				break;
		if (j < i)
			continue;
		if (maildir_sync_new(&sl[i].e->md) < 0) {
			reasonf(why, sizeof why, "4.3.0 cannot fsync %s/new: %s", sl[i].e->md.name,
			    strerror(errno));
			log_warn("%s", why + 6);
			(void)unlinkat(sl[i].e->md.newfd, sl[i].newname, 0);
			slot_fail(&sl[i], why);
		}
	}
	for (j = 0; j < ntmp; j++)
		maildir_tmp_drop(&tmpf[j].e->md, tmpf[j].name, tmpf[j].fd);
	for (i = 0; i < ns; i++) {
		for (j = 0; j < sl[i].nt; j++) {
			struct target *t = sl[i].t[j];
			if (sl[i].state == 1) {
				t->state = TS_DONE;
				strlcpy(t->newname, sl[i].newname, sizeof t->newname);
			} else {
				t->state = TS_TEMP;
				strlcpy(t->reason, sl[i].reason, sizeof t->reason);
			}
		}
		free(sl[i].t);
	}
	free(sl);
	buf_free(&hdr);
}

/* Whether tmp/ is due for a clean: at most once an hour per tmp/ in
 * a process that delivers many messages (a fork server's worker); an
 * exec'ed deliver cleans every time, as it always did. */
static int
clean_due(const struct maildir *md)
{
	static struct {
		dev_t dev;
		ino_t ino;
		time_t when;
	} done[32];
	static unsigned next;
	time_t now = time(NULL);
	unsigned i;

	for (i = 0; i < 32; i++)
		if (done[i].when && done[i].dev == md->dev && done[i].ino == md->tmpino) {
			if (now - done[i].when < 3600 && now >= done[i].when)
				return 0;
			done[i].when = now;
			return 1;
		}
	done[next % 32].dev = md->dev;
	done[next % 32].ino = md->tmpino;
	done[next % 32].when = now;
	next++;
	return 1;
}

void
local_cleanup(struct local_ctx *c)
{
	size_t i;

	for (i = 0; i < c->ncache; i++) {
		struct mdc *e = c->cache[i];
		if (e->ok && clean_due(&e->md)) {
			int n = maildir_clean_tmp(&e->md, MAILDIR_TMP_MAXAGE);
			if (n > 0)
				log_info("removed %d stale file%s from %s/tmp", n, n > 1 ? "s" : "",
				    e->md.name);
		}
		if (e->ok)
			maildir_close(&e->md);
		free(e->path);
		free(e->folder);
		free(e);
	}
	free(c->cache);
	c->cache = NULL;
	c->ncache = 0;
}
