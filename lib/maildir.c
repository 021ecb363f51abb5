#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"
#include "tables.h"

static unsigned maildir_seq;	/* deliveries made by this process (Qn) */

static void
seterr(char *err, size_t errlen, const char *what, const char *name)
{
	if (err && errlen)
		snprintf(err, errlen, "%s %s: %s", what, name, strerror(errno));
}

/* mkdir name in dirfd, and make the new entry durable (fsync dirfd):
 * a message linked into a fresh Maildir must not vanish with it in a
 * crash. EEXIST is success. */
static int
mkdir_durable(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0700) == 0) {
		int pfd = -1;
		const char *sl = strrchr(name, '/');
		if (sl) {	/* fsync the parent of the last component */
			char parent[1200];
			snprintf(parent, sizeof parent, "%.*s", (int)(sl - name), name);
			pfd = openat(dirfd, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		}
		if (fsync(pfd >= 0 ? pfd : dirfd) < 0) {
			if (pfd >= 0)
				close(pfd);
			return -1;
		}
		if (pfd >= 0)
			close(pfd);
		return 0;
	}
	return errno == EEXIST ? 0 : -1;
}

/* mkdir -p of path (relative) below dirfd, mode 0700. */
static int
mkdirs_at(int dirfd, const char *path)
{
	char p[1200];
	size_t i, n = strlen(path);

	if (n >= sizeof p) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(p, path, n + 1);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = 0;
	for (i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != 0)
			continue;
		p[i] = 0;
		if (mkdir_durable(dirfd, p) < 0)
			return -1;
		if (i < n)
			p[i] = '/';
	}
	return 0;
}

static int
open_dir_at(int dirfd, const char *name)
{
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* tmp/, new/ and folders: never through a symbolic link (the Maildir
 * path itself may be one, placed by the admin). */
static int
open_sub_at(int dirfd, const char *name)
{
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int
make_subdirs(int fd)
{
	static const char *const sub[] = { "tmp", "new", "cur" };
	size_t i;

	for (i = 0; i < 3; i++)
		if (mkdir_durable(fd, sub[i]) < 0)
			return -1;
	return 0;
}

void
maildir_close(struct maildir *m)
{
	if (m->newfd >= 0)
		close(m->newfd);
	if (m->tmpfd >= 0)
		close(m->tmpfd);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = m->tmpfd = m->newfd = -1;
}

int
maildir_open(struct maildir *m, int rootfd, const char *path, const char *folder,
    int create, char *err, size_t errlen)
{
	char fname[MAILDIR_FOLDER_MAX + 2];
	struct stat st;
	int base = -1;
	size_t n;

	memset(m, 0, sizeof *m);
	m->fd = m->tmpfd = m->newfd = -1;
	n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;		/* "alice/" is "alice" in messages */
	snprintf(m->name, sizeof m->name, "%.*s%s%s", (int)n, path,
	    folder && *folder ? "/." : "", folder && *folder ? folder : "");
	if (!maildir_path_ok(path)) {
		errno = EINVAL;
		seterr(err, errlen, "unsafe Maildir path", path);
		return -1;
	}
	if ((base = open_dir_at(rootfd, path)) < 0) {
		if (errno != ENOENT || !create) {
			seterr(err, errlen, "cannot open Maildir", path);
			return -1;
		}
		if (mkdirs_at(rootfd, path) < 0 || (base = open_dir_at(rootfd, path)) < 0) {
			seterr(err, errlen, "cannot create Maildir", path);
			return -1;
		}
	}
	/* cur/, made last, is there: an existing Maildir, no mkdir of the
	 * three (three system calls a message; issue 7) */
	if (create && faccessat(base, "cur", F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
	    make_subdirs(base) < 0) {
		seterr(err, errlen, "cannot create tmp/new/cur in", path);
		close(base);
		return -1;
	}
	if (folder && *folder) {
		snprintf(fname, sizeof fname, ".%s", folder);
		if ((m->fd = open_sub_at(base, fname)) < 0) {
			if (errno != ENOENT || !create) {
				seterr(err, errlen, "cannot open folder", m->name);
				close(base);
				return -1;
			}
			if (mkdir_durable(base, fname) < 0) {
				seterr(err, errlen, "cannot create folder", m->name);
				close(base);
				return -1;
			}
			if ((m->fd = open_sub_at(base, fname)) < 0 || make_subdirs(m->fd) < 0) {
				seterr(err, errlen, "cannot create folder", m->name);
				close(base);
				maildir_close(m);
				return -1;
			}
			/* Maildir++: marks a folder (Courier, Dovecot) */
			int f = openat(m->fd, "maildirfolder", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (f >= 0)
				close(f);
		}
		close(base);
	} else
		m->fd = base;
	if ((m->tmpfd = open_sub_at(m->fd, "tmp")) < 0 ||
	    (m->newfd = open_sub_at(m->fd, "new")) < 0) {
		seterr(err, errlen, "not a Maildir (tmp/ or new/ missing):", m->name);
		maildir_close(m);
		return -1;
	}
	if (fstat(m->tmpfd, &st) < 0) {
		seterr(err, errlen, "cannot stat tmp/ of", m->name);
		maildir_close(m);
		return -1;
	}
	m->dev = st.st_dev;
	m->tmpino = st.st_ino;
	return 0;
}

int
maildir_folder_name(const char *in, char *out, size_t outlen)
{
	size_t o = 0, comp = 0;
	const char *p = in;

	if (*p == '.')
		p++;		/* ".Work" and "Work" are the same folder */
	if (!strcasecmp(p, "INBOX") || !*p) {
		if (outlen)
			out[0] = 0;
		return 0;
	}
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '.' || c == '/') {
			if (comp == 0 || out[o - 1] == ' ')
				return -1;
			c = '.';
			comp = 0;
		} else if (isalnum(c) || strchr("_+-&", c) || (c == ' ' && comp > 0))
			comp++;
		else
			return -1;
		if (o + 1 >= outlen || o >= MAILDIR_FOLDER_MAX)
			return -1;
		out[o++] = (char)c;
	}
	if (comp == 0 || out[o - 1] == ' ')
		return -1;
	out[o] = 0;
	return 0;
}

void
maildir_uniq(char *dst, size_t len, const char *host)
{
	char h[256 * 4 + 1];
	struct timeval tv;
	size_t o = 0;

	for (; *host && o + 5 < sizeof h; host++) {
		if (*host == '/')
			memcpy(h + o, "\\057", 4), o += 4;
		else if (*host == ':')
			memcpy(h + o, "\\072", 4), o += 4;
		else if (*host == ',')
			memcpy(h + o, "\\054", 4), o += 4;
		else if ((unsigned char)*host > ' ' && (unsigned char)*host < 0x7f)
			h[o++] = *host;
	}
	h[o] = 0;
	gettimeofday(&tv, NULL);
	snprintf(dst, len, "%lld.M%06ldP%ldQ%u.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), ++maildir_seq, o ? h : "localhost");
}

int
maildir_tmp_create(struct maildir *m, const char *host, char *name, size_t namelen)
{
	int i, fd;

	for (i = 0; i < 5; i++) {
		maildir_uniq(name, namelen, host);
		fd = openat(m->tmpfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

/* An unnamed file (O_TMPFILE) is linked by this name of its fd. */
#define PROC_FD "/proc/self/fd/"

int
maildir_tmp_open(struct maildir *m, const char *host, char *name, size_t namelen)
{
	static int usable = -1;	/* O_TMPFILE and /proc: as far as we know */
	int fd;

	if (usable < 0)
		usable = access(PROC_FD, X_OK) == 0;
	if (usable && (fd = openat(m->tmpfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) >= 0) {
		snprintf(name, namelen, PROC_FD "%d", fd);
		return fd;
	}
	if (usable && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
		usable = 0;	/* this filesystem or kernel: not again */
	return maildir_tmp_create(m, host, name, namelen);
}

int
maildir_tmp_unnamed(const char *name)
{
	return !strncmp(name, PROC_FD, sizeof PROC_FD - 1);
}

void
maildir_tmp_drop(struct maildir *m, const char *name, int fd)
{
	if (!maildir_tmp_unnamed(name))
		(void)unlinkat(m->tmpfd, name, 0);
	if (fd >= 0)
		close(fd);
}

int
maildir_link(struct maildir *src, const char *tmpname, struct maildir *dst,
    const char *host, off_t size, char *newname, size_t newlen)
{
	char base[MAILDIR_NAME_MAX];
	int i;

	for (i = 0; i < 5; i++) {
		int rc;
		maildir_uniq(base, sizeof base, host);
		snprintf(newname, newlen, "%s,S=%lld", base, (long long)size);
		rc = maildir_tmp_unnamed(tmpname) ?
		    linkat(AT_FDCWD, tmpname, dst->newfd, newname, AT_SYMLINK_FOLLOW) :
		    linkat(src->tmpfd, tmpname, dst->newfd, newname, 0);
		if (rc == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

int
maildir_sync_new(struct maildir *m)
{
	return fsync(m->newfd);
}

/* A name of ours (maildir_uniq: "TIME.M...") made less than maxage ago
 * cannot be stale: its file was created at TIME, so its mtime and atime
 * are later. Saves a stat per message in flight. */
static int
young_by_name(const char *name, time_t now, long maxage)
{
	long long t = 0;
	const char *p = name;

	while (*p >= '0' && *p <= '9' && p - name < 12)
		t = t * 10 + (*p++ - '0');
	if (p == name || p[0] != '.' || p[1] != 'M')
		return 0;
	return t <= (long long)now && (long long)now - t <= maxage;
}

int
maildir_clean_tmp(struct maildir *m, long maxage)
{
	struct dirent *d;
	struct stat st;
	time_t now = time(NULL);
	DIR *dir;
	int fd, n = 0;

	if ((fd = openat(m->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return 0;
	if (!(dir = fdopendir(fd))) {
		close(fd);
		return 0;
	}
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		if (young_by_name(d->d_name, now, maxage))
			continue;
		if (fstatat(m->tmpfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			continue;
		/* qmail's rule uses atime; a file nobody touched for 36 h */
		if (now - st.st_mtime > maxage && now - st.st_atime > maxage &&
		    unlinkat(m->tmpfd, d->d_name, 0) == 0)
			n++;
	}
	closedir(dir);
	return n;
}
