/* io.c: the client side of smtpd-lite: fd 0 in, fd 1 out.
 *
 * Replies are collected in an output buffer that is written only when
 * the input buffer is empty (before we would block on a read), when it
 * is full, or on request (io_flush). A client that pipelines a whole
 * transaction in one write thus gets its replies in order, in one
 * write. Every read and write waits at most the current timeout. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "log.h"
#include "smtpd.h"

static int rfd = 0, wfd = 1;
static char ibuf[8192];
static size_t ipos, ilen;
static char obuf[4096];
static size_t olen;
static long long tmo_ms = 300000;

void
io_init(int r, int w)
{
	struct stat st;

	rfd = r;
	wfd = w;
	ipos = ilen = olen = 0;
	/* Sockets only: a pipe or terminal may be shared with our parent. */
	if (fstat(rfd, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)set_nonblock(rfd);
	if (fstat(wfd, &st) == 0 && S_ISSOCK(st.st_mode))
		(void)set_nonblock(wfd);
}

void
io_timeout(long long secs)
{
	tmo_ms = secs * 1000;
}

int
io_flush(void)
{
	long long deadline = now_ms() + tmo_ms;
	size_t off = 0;

	while (off < olen) {
		ssize_t n;
		int w = wait_fd(wfd, POLLOUT, deadline);

		if (w <= 0) {
			errno = w == 0 ? ETIMEDOUT : errno;
			return -1;
		}
		n = write(wfd, obuf + off, olen - off);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		off += (size_t)n;
	}
	olen = 0;
	return 0;
}

void
io_put(const char *s, size_t n)
{
	while (n > 0) {
		size_t k = sizeof obuf - olen;

		if (k == 0) {
			if (io_flush() < 0) {
				log_warnsys("write to client failed");
				exit(0);
			}
			continue;
		}
		if (k > n)
			k = n;
		memcpy(obuf + olen, s, k);
		olen += k;
		s += k;
		n -= k;
	}
}

/* Refill the input buffer; flush pending replies first, since the
 * client may be waiting for them before it sends more. */
static int
fill(void)
{
	long long deadline;

	if (ipos < ilen)
		return IO_OK;
	ipos = ilen = 0;
	if (olen && io_flush() < 0)
		return IO_ERR;
	deadline = now_ms() + tmo_ms;
	for (;;) {
		ssize_t n;
		int w = wait_fd(rfd, POLLIN, deadline);

		if (w == 0)
			return IO_TIMEOUT;
		if (w < 0)
			return IO_ERR;
		n = read(rfd, ibuf, sizeof ibuf);
		if (n > 0) {
			ilen = (size_t)n;
			return IO_OK;
		}
		if (n == 0)
			return IO_EOF;
		if (errno != EINTR && errno != EAGAIN)
			return IO_ERR;
	}
}

int
io_fill(const char **p, size_t *n)
{
	int r = fill();

	if (r != IO_OK)
		return r;
	*p = ibuf + ipos;
	*n = ilen - ipos;
	return IO_OK;
}

void
io_consume(size_t n)
{
	ipos += n;
}

int
io_getline(char *line, size_t *len, int *toolong)
{
	const size_t lim = SMTP_LINE_MAX - 1;	/* text + CR; LF not kept */

	*len = 0;
	*toolong = 0;
	for (;;) {
		char *nl;
		size_t avail, take;
		int r = fill();

		if (r != IO_OK)
			return r;
		avail = ilen - ipos;
		nl = memchr(ibuf + ipos, '\n', avail);
		take = nl ? (size_t)(nl - (ibuf + ipos)) : avail;
		if (*len + take > lim) {
			memcpy(line + *len, ibuf + ipos, lim - *len);
			*len = lim;
			*toolong = 1;
		} else {
			memcpy(line + *len, ibuf + ipos, take);
			*len += take;
		}
		ipos += take;
		if (nl) {
			ipos++;
			if (!*toolong && *len && line[*len - 1] == '\r')
				(*len)--;
			else if (*len > lim - 1)
				*toolong = 1;	/* 511 octets without CR */
			line[*len] = 0;
			return IO_OK;
		}
	}
}
