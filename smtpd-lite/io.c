/* io.c: the client side of smtpd-lite: fd 0 in, fd 1 out.
 *
 * Replies are collected in an output buffer that is written only when
 * the input buffer is empty (before we would block on a read), when it
 * is full, or on request (io_flush). A client that pipelines a whole
 * transaction in one write thus gets its replies in order, in one
 * write. Every read and write waits at most the current timeout.
 *
 * After STARTTLS (or from the start, for implicit TLS) the same
 * buffers sit on top of an OpenSSL session (tls.c): reads and writes
 * go through SSL_read/SSL_write, which may want the other direction
 * (WANT_READ while writing and the reverse); a read first takes what
 * OpenSSL already holds. io_discard_input() throws away what was
 * buffered before the handshake (pipelined plaintext after STARTTLS
 * must never be taken as commands sent under TLS). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <openssl/ssl.h>

#include "forkserver.h"
#include "log.h"
#include "smtpd.h"

static int rfd = 0, wfd = 1;
static SSL *ssl;
static char ibuf[65536];	/* a 64 KiB message in one or two reads; pages only touched when used */
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
	if (wfd != rfd && fstat(wfd, &st) == 0 && S_ISSOCK(st.st_mode))
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

	/* write first, wait only when the socket is full: a reply nearly
	 * always fits (a poll a reply saved; issue 7) */
	while (off < olen) {
		ssize_t n;
		int w = 1;

		if (ssl) {
			int r = SSL_write(ssl, obuf + off, (int)(olen - off));
			if (r <= 0) {
				int e = SSL_get_error(ssl, r);
				if (e == SSL_ERROR_WANT_WRITE)
					w = wait_fd(wfd, POLLOUT, deadline);
				else if (e == SSL_ERROR_WANT_READ)
					w = wait_fd(rfd, POLLIN, deadline);
				else {
					errno = EPIPE;
					return -1;
				}
			} else
				off += (size_t)r;
		} else if ((n = write(wfd, obuf + off, olen - off)) >= 0)
			off += (size_t)n;
		else if (errno == EAGAIN)
			w = wait_fd(wfd, POLLOUT, deadline);
		else if (errno != EINTR)
			return -1;
		if (w <= 0) {
			errno = w == 0 ? ETIMEDOUT : errno;
			return -1;
		}
	}
	olen = 0;
	return 0;
}

void
io_fds(int *r, int *w)
{
	*r = rfd;
	*w = wfd;
}

void
io_set_tls(SSL *s)
{
	ssl = s;
}

int
io_tls_active(void)
{
	return ssl != NULL;
}

size_t
io_discard_input(void)
{
	size_t n = ilen - ipos;

	ipos = ilen = 0;
	return n;
}

/* close_notify, once, without waiting for the client's */
void
io_tls_end(void)
{
	if (ssl) {
		(void)SSL_shutdown(ssl);
		SSL_free(ssl);
		ssl = NULL;
	}
}

/* fill() under TLS: what OpenSSL holds first, then wait as it wants. */
static int
fill_tls(long long deadline)
{
	for (;;) {
		int n = SSL_read(ssl, ibuf, (int)sizeof ibuf), w;

		if (n > 0) {
			ilen = (size_t)n;
			return IO_OK;
		}
		switch (SSL_get_error(ssl, n)) {
		case SSL_ERROR_WANT_READ:
			w = wait_fd(rfd, POLLIN, deadline);
			break;
		case SSL_ERROR_WANT_WRITE:
			w = wait_fd(wfd, POLLOUT, deadline);
			break;
		case SSL_ERROR_ZERO_RETURN:
			return IO_EOF;
		default:
			return IO_ERR;
		}
		if (w == 0)
			return IO_TIMEOUT;
		if (w < 0)
			return IO_ERR;
	}
}

void
io_put(const char *s, size_t n)
{
	while (n > 0) {
		size_t k = sizeof obuf - olen;

		if (k == 0) {
			if (io_flush() < 0) {
				log_warnsys("write to client failed");
				forkserver_exit(0);
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
	/* more pipelined commands already decrypted: keep the replies */
	if (olen && !(ssl && SSL_pending(ssl) > 0) && io_flush() < 0)
		return IO_ERR;
	deadline = now_ms() + tmo_ms;
	if (ssl)
		return fill_tls(deadline);
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
