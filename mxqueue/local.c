/* local.c: the queue's local kinds.
 *
 * maildir: the message goes into the recipient's Maildir (and folder)
 * the way deliver(8) writes it: Return-Path: and Delivered-To: in front,
 * tmp/ (O_EXCL, fsync), link into new/, fsync new/.
 * local: deliver(8) runs again for the address (from the bindir
 * setting, else this program's directory), with the message on stdin;
 * its exit code and last stderr line are the result. A bounce to a
 * local sender goes the same way. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdio.h"
#include "buf.h"
#include "log.h"
#include "maildir.h"
#include "mxqueue.h"
#include "tables.h"

int
local_maildir(const struct mxq *q, int msgfd, const struct queue_info *qi,
    const struct queue_rcpt *r, char *reply, size_t rlen)
{
	struct maildir md;
	struct buf hdr = BUF_INIT;
	char err[400], tmpname[MAILDIR_NAME_MAX], newname[MAILDIR_NAME_MAX], b[65536];
	int rootfd, fd, rc = -1;
	off_t off = 0, size = 0;
	struct stat st;

	if ((rootfd = open(q->s.mailroot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(reply, rlen, "4.3.0 cannot open the mail root: %s", strerror(errno));
		return -1;
	}
	if (!maildir_path_ok(r->maildir)) {
		snprintf(reply, rlen, "4.3.5 unsafe Maildir path in the queue entry");
		close(rootfd);
		return -1;
	}
	if (maildir_open(&md, rootfd, r->maildir, r->folder[0] ? r->folder : NULL,
	    q->s.create_maildirs, err, sizeof err) < 0 &&
	    (!r->folder[0] || maildir_open(&md, rootfd, r->maildir, NULL,
	    q->s.create_maildirs, err, sizeof err) < 0)) {
		snprintf(reply, rlen, "4.2.0 %s", err);
		close(rootfd);
		return -1;
	}
	if ((fd = maildir_tmp_create(&md, q->s.hostname, tmpname, sizeof tmpname)) < 0) {
		snprintf(reply, rlen, "4.3.0 cannot create a file in %s/tmp: %s", md.name,
		    strerror(errno));
		goto out;
	}
	buf_printf(&hdr, "Return-Path: <%s>\n", qi->sender);
	if (r->dt[0])
		buf_printf(&hdr, "Delivered-To: %s\n", r->dt);
	if (fd_write_all(fd, hdr.s, hdr.len) < 0)
		goto werr;
	for (;;) {
		ssize_t n = pread(msgfd, b, sizeof b, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto werr;
		if (n == 0)
			break;
		if (fd_write_all(fd, b, (size_t)n) < 0)
			goto werr;
		off += n;
	}
	if (fstat(fd, &st) < 0 || fsync(fd) < 0)
		goto werr;
	size = st.st_size;
	if (close(fd) < 0) {
		fd = -1;
		goto werr;
	}
	fd = -1;
	if (maildir_link(&md, tmpname, &md, q->s.hostname, size, newname, sizeof newname) < 0 ||
	    maildir_sync_new(&md) < 0) {
		snprintf(reply, rlen, "%s cannot link into %s/new: %s",
		    errno == ENOSPC || errno == EDQUOT ? "4.2.2" : "4.3.0", md.name, strerror(errno));
		(void)unlinkat(md.tmpfd, tmpname, 0);
		goto out;
	}
	(void)unlinkat(md.tmpfd, tmpname, 0);
	snprintf(reply, rlen, "2.0.0 delivered to %s/new/%s", md.name, newname);
	rc = 0;
	goto out;
werr:
	snprintf(reply, rlen, "%s cannot write to %s/tmp: %s",
	    errno == ENOSPC || errno == EDQUOT ? "4.2.2" : "4.3.0", md.name, strerror(errno));
	if (fd >= 0)
		close(fd);
	(void)unlinkat(md.tmpfd, tmpname, 0);
out:
	buf_free(&hdr);
	maildir_close(&md);
	close(rootfd);
	return rc;
}

static void
deliver_path(const struct mxq *q, char *p, size_t len)
{
	char *sl;

	if (q->s.bindir[0]) {
		snprintf(p, len, "%s/deliver", q->s.bindir);
		return;
	}
	strlcpy(p, q->self, len);
	if ((sl = strrchr(p, '/')))
		sl[1] = 0;
	else
		p[0] = 0;
	strlcat(p, "deliver", len);
}

int
local_deliver(const struct mxq *q, int msgfd, const struct queue_info *qi,
    const char *addr, char *reply, size_t rlen)
{
	char prog[4200], out[4096];
	int pfd[2], st;
	size_t got = 0;
	pid_t pid;

	deliver_path(q, prog, sizeof prog);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		snprintf(reply, rlen, "4.3.0 cannot make a pipe: %s", strerror(errno));
		return EXIT_TEMP;
	}
	if ((pid = fork()) < 0) {
		snprintf(reply, rlen, "4.3.0 cannot fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return EXIT_TEMP;
	}
	if (pid == 0) {
		int in = dup(msgfd);
		if (in < 0 || dup2(in, 0) < 0 || lseek(0, 0, SEEK_SET) < 0 ||
		    dup2(pfd[1], 2) < 0)
			_exit(EXIT_TEMP);
		if (in > 2)
			close(in);
		/* stdout: nothing to say; keep it away from our pipes */
		(void)dup2(open("/dev/null", O_WRONLY), 1);
		unsetenv("RECIPIENTS");
		unsetenv("FOLDERS");
		unsetenv("FOLDER");
		setenv("SENDER", qi->sender, 1);
		setenv("MXID", qi->mxid[0] ? qi->mxid : qi->id, 1);
		execl(prog, "deliver", "-c", q->s.confdir, "-f", qi->sender, "--", addr,
		    (char *)NULL);
		fprintf(stderr, "4.3.0 cannot run %s: %s\n", prog, strerror(errno));
		_exit(EXIT_TEMP);
	}
	close(pfd[1]);
	for (;;) {		/* keep the tail of stderr: its last line is the reason */
		ssize_t n;
		if (got == sizeof out - 1) {
			memmove(out, out + 2048, got - 2048);
			got -= 2048;
		}
		n = read(pfd[0], out + got, sizeof out - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(pfd[0]);
	out[got] = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	while (got > 0 && out[got - 1] == '\n')
		out[--got] = 0;
	{
		char *l = strrchr(out, '\n');
		l = l ? l + 1 : out;
		for (char *p = l; *p; p++)
			if ((unsigned char)*p < ' ')
				*p = ' ';
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			snprintf(reply, rlen, "2.0.0 delivered by deliver");
			return 0;
		}
		if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_PERM) {
			snprintf(reply, rlen, "%s", (l[0] == '5' && l[1] == '.') ? l :
			    "5.0.0 deliver failed permanently");
			return EXIT_PERM;
		}
		if (l[0] == '4' && l[1] == '.')
			snprintf(reply, rlen, "%s", l);
		else if (WIFSIGNALED(st))
			snprintf(reply, rlen, "4.3.0 deliver died of signal %d", WTERMSIG(st));
		else
			snprintf(reply, rlen, "4.3.0 deliver failed (exit %d)",
			    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return EXIT_TEMP;
	}
}

int
local_domain(const struct mxq *q, const char *addr)
{
	struct table t;
	char dom[300];
	int r;

	addr_domain_of(addr, dom, sizeof dom);
	if (!dom[0])
		return 1;	/* bare postmaster: deliver knows */
	if (table_open(&t, q->s.confdir, "domains") < 0)
		return -1;
	r = domain_lookup(&t, dom, NULL, 0, NULL);
	table_close(&t);
	return r;
}
