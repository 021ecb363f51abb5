/* spool.c: see spool.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "fdio.h"
#include "spool.h"

#define MEMFD_NAME "mx-spool"

static int
disk_file(const char *dir)
{
	char path[4200];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	/* a file system without O_TMPFILE: a unique name, unlinked at once */
	if (snprintf(path, sizeof path, "%s/spool.XXXXXX", dir) >= (int)sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = mkostemp(path, O_CLOEXEC)) >= 0 && unlink(path) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
spool_new(const char *dir, long long memmax)
{
	int fd;

	if (memmax > 0 && (fd = memfd_create(MEMFD_NAME, MFD_CLOEXEC)) >= 0)
		return fd;
	return disk_file(dir);
}

int
spool_spill(int fd, const char *dir)
{
	char b[65536];
	off_t at = lseek(fd, 0, SEEK_CUR), off = 0;
	ssize_t n;
	int out, e;

	if (at < 0 || (out = disk_file(dir)) < 0)
		return -1;
	while ((n = pread(fd, b, sizeof b, off)) > 0) {
		if (fd_write_all(out, b, (size_t)n) < 0)
			goto fail;
		off += n;
	}
	if (n < 0 || lseek(out, at, SEEK_SET) < 0 || dup3(out, fd, O_CLOEXEC) < 0)
		goto fail;
	close(out);
	return 0;
fail:
	e = errno;
	close(out);
	errno = e;
	return -1;
}
