/* Unit tests: lib/maildir (folder names, unique names, open/link) and
 * lib/queue (put, read back, state rewrite). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "buf.h"
#include "check.h"
#include "maildir.h"
#include "queue.h"

static const char *
folder(const char *in)
{
	static char out[MAILDIR_FOLDER_MAX + 1];

	return maildir_folder_name(in, out, sizeof out) < 0 ? "(bad)" : out;
}

int
main(void)
{
	char tmpl[] = "/tmp/mxunit.XXXXXX", *dir, name[MAILDIR_NAME_MAX], nn[MAILDIR_NAME_MAX];
	char err[9000], path[4300];
	struct maildir a, b;
	struct queue_info qi, back;
	int root, fd, qfd;
	struct stat st1, st2;

	CHECK_STR(folder("Work"), "Work", "folder Work");
	CHECK_STR(folder(".Work"), "Work", "folder .Work = Work");
	CHECK_STR(folder("Work/Projects"), "Work.Projects", "folder Work/Projects -> Work.Projects");
	CHECK_STR(folder("Sent Items"), "Sent Items", "folder with a space");
	CHECK_STR(folder("INBOX"), "", "INBOX is no folder");
	CHECK_STR(folder("inbox"), "", "inbox is no folder");
	CHECK_STR(folder(""), "", "empty is no folder");
	CHECK_STR(folder("../etc"), "(bad)", "folder ../etc refused");
	CHECK_STR(folder("a/../b"), "(bad)", "folder a/../b refused");
	CHECK_STR(folder("a//b"), "(bad)", "folder a//b refused");
	CHECK_STR(folder("/etc"), "(bad)", "folder /etc refused");
	CHECK_STR(folder("a\nb"), "(bad)", "folder with a newline refused");
	CHECK_STR(folder("a:b"), "(bad)", "folder with a colon refused");
	CHECK_STR(folder("Work."), "(bad)", "folder with an empty last component refused");
	CHECK_STR(folder(" lead"), "(bad)", "folder with a leading space refused");

	maildir_uniq(name, sizeof name, "h/o:s,t");
	CHECK(strstr(name, ".h\\057o\\072s\\054t") != NULL, "unique name escapes / : , in the host (%s)", name);
	maildir_uniq(nn, sizeof nn, "h");
	CHECK(strcmp(name, nn) != 0, "two unique names differ");

	if (!(dir = mkdtemp(tmpl))) {
		CHECK(0, "mkdtemp");
		CHECK_DONE();
	}
	root = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(maildir_open(&a, root, "x/alice/", NULL, 0, err, sizeof err) < 0,
	    "missing Maildir, no create: error (%s)", err);
	CHECK(maildir_open(&a, root, "../escape", NULL, 1, err, sizeof err) < 0,
	    "path with .. refused even with create");
	CHECK(maildir_open(&a, root, "x/alice/", NULL, 1, err, sizeof err) == 0,
	    "create Maildir x/alice/ with parents");
	CHECK(maildir_open(&b, root, "bob", "Lists.Daily", 1, err, sizeof err) == 0,
	    "create Maildir bob with folder .Lists.Daily");
	snprintf(path, sizeof path, "%s/bob/.Lists.Daily/maildirfolder", dir);
	CHECK(access(path, F_OK) == 0, "folder has its maildirfolder file");
	fd = maildir_tmp_create(&a, "host", name, sizeof name);
	CHECK(fd >= 0 && fd_write_all(fd, "hello\n", 6) == 0 && fsync(fd) == 0 && close(fd) == 0,
	    "write a tmp/ file");
	CHECK(maildir_link(&a, name, &a, "host", 6, nn, sizeof nn) == 0, "link into own new/");
	CHECK(strstr(nn, ",S=6") != NULL, "new name carries ,S=6 (%s)", nn);
	snprintf(path, sizeof path, "%s/x/alice/new/%s", dir, nn);
	stat(path, &st1);
	CHECK(maildir_link(&a, name, &b, "host", 6, nn, sizeof nn) == 0, "link into another Maildir's new/");
	snprintf(path, sizeof path, "%s/bob/.Lists.Daily/new/%s", dir, nn);
	stat(path, &st2);
	CHECK(st1.st_ino == st2.st_ino && st2.st_nlink == 3, "one inode, three names");
	CHECK(maildir_sync_new(&a) == 0 && maildir_sync_new(&b) == 0, "fsync new/");
	/* an unnamed tmp/ file (O_TMPFILE): linked by its fd's name, never in tmp/ */
	{
		char un[MAILDIR_NAME_MAX], n1[MAILDIR_NAME_MAX], n2[MAILDIR_NAME_MAX], got[16] = "";
		int ufd = maildir_tmp_open(&a, "host", un, sizeof un), rfd;
		DIR *d;
		struct dirent *de;
		int intmp = 0;
		CHECK(ufd >= 0 && maildir_tmp_unnamed(un), "unnamed tmp file (%s)", un);
		CHECK(fd_write_all(ufd, "unnamed\n", 8) == 0 && fsync(ufd) == 0, "written, fsynced");
		snprintf(path, sizeof path, "%s/x/alice/tmp", dir);
		if ((d = opendir(path))) {
			while ((de = readdir(d)))
				intmp += strncmp(de->d_name, ".", 1) != 0 && strcmp(de->d_name, name);
			closedir(d);
		}
		CHECK(intmp == 0, "nothing of it in tmp/");
		CHECK(maildir_link(&a, un, &a, "host", 8, n1, sizeof n1) == 0 &&
		    maildir_link(&a, un, &b, "host", 8, n2, sizeof n2) == 0, "linked into two new/");
		maildir_tmp_drop(&a, un, ufd);
		snprintf(path, sizeof path, "%s/bob/.Lists.Daily/new/%s", dir, n2);
		rfd = open(path, O_RDONLY);
		CHECK(rfd >= 0 && read(rfd, got, sizeof got - 1) == 8 && !strcmp(got, "unnamed\n"),
		    "the second link has the data after the fd is closed");
		if (rfd >= 0)
			close(rfd);
		snprintf(path, sizeof path, "%s/x/alice/new/%s", dir, n1);
		CHECK(stat(path, &st1) == 0 && st1.st_nlink == 2, "one inode, two names");
	}
	maildir_close(&a);
	maildir_close(&b);

	/* queue */
	snprintf(path, sizeof path, "%s/queue", dir);
	memset(&qi, 0, sizeof qi);
	qi.sender = xstrdup("s@example.net");
	qi.mxid = xstrdup("ID1");
	qi.client = xstrdup("192.0.2.1");
	qi.helo = xstrdup("h\tel\no");
	queue_add_rcpt(&qi, QS_PENDING, QK_FORWARD, "d@else.test", "d@example.com", "d@example.com",
	    NULL, NULL, NULL);
	queue_add_rcpt(&qi, QS_FAILED, QK_LOCAL, "n@example.com", "n@example.com", "", "", "",
	    "5.1.1 no\tsuch\nuser");
	queue_add_rcpt(&qi, QS_PENDING, QK_MAILDIR, "b@example.com", "b@example.com", "", "bob/",
	    "Work", "4.2.2 full");
	snprintf(err, sizeof err, "%s/msg", dir);
	qfd = open(err, O_RDWR | O_CREAT, 0600);
	(void)!write(qfd, "Subject: q\n\nbody\n", 17);
	CHECK(queue_put(path, qfd, 0, &qi, err, sizeof err) == 0, "queue_put");
	CHECK(qi.size == 17 && qi.id[0], "size and id filled in (%s)", qi.id);
	CHECK(queue_info_read(path, qi.id, &back, err, sizeof err) == 0, "queue_info_read (%s)", err);
	CHECK(back.nrcpt == 3, "three recipients read back");
	if (back.nrcpt == 3) {
		CHECK_STR(back.sender, "s@example.net", "sender read back");
		CHECK_STR(back.helo, "h el o", "control characters never reach the file");
		CHECK(back.rcpt[0].state == QS_PENDING && back.rcpt[0].kind == QK_FORWARD, "rcpt 1 state/kind");
		CHECK_STR(back.rcpt[0].dt, "d@example.com", "rcpt 1 Delivered-To");
		CHECK(back.rcpt[1].state == QS_FAILED, "rcpt 2 failed");
		CHECK_STR(back.rcpt[1].reply, "5.1.1 no such user", "reply with TAB/LF sanitised");
		CHECK_STR(back.rcpt[2].maildir, "bob/", "rcpt 3 maildir");
		CHECK_STR(back.rcpt[2].folder, "Work", "rcpt 3 folder");
		back.rcpt[0].state = QS_DELIVERED;
		back.rcpt[0].attempts = 1;
		back.rcpt[0].last_try = 1234;
		CHECK(queue_info_write(path, &back, err, sizeof err) == 0, "queue_info_write (state update)");
		queue_info_free(&back);
		CHECK(queue_info_read(path, qi.id, &back, err, sizeof err) == 0 &&
		    back.rcpt[0].state == QS_DELIVERED && back.rcpt[0].attempts == 1 &&
		    back.rcpt[0].last_try == 1234, "updated state read back");
		queue_info_free(&back);
	}
	snprintf(err, sizeof err, "%s/mess/%s", path, qi.id);
	CHECK(stat(err, &st1) == 0 && st1.st_size == 17 && (st1.st_mode & 0777) == 0600,
	    "mess/ID holds the message, mode 0600");
	snprintf(err, sizeof err, "%s/info/truncated", path);
	fd = open(err, O_WRONLY | O_CREAT, 0600);
	(void)!write(fd, "mxqueue 1\nid truncated\n", 23);
	close(fd);
	CHECK(queue_info_read(path, "truncated", &back, err, sizeof err) < 0,
	    "an info file without 'end' is refused");
	queue_info_free(&qi);
	close(qfd);
	close(root);
	snprintf(err, sizeof err, "rm -rf '%s'", dir);
	(void)!system(err);
	CHECK_DONE();
}
