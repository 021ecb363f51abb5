/* util.c: small helpers for smtpd-lite: ids, dates, argv splitting,
 * waiting on descriptors with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "smtpd.h"

/* Time (seconds, hex) + 64 random bits: unique across processes and
 * hosts without coordination, and safe in a Maildir file name. */
void
make_id(char *dst, size_t len)
{
	uint32_t a = arc4random(), b = arc4random();

	snprintf(dst, len, "%llX%08X%08X", (unsigned long long)time(NULL),
	    (unsigned)a, (unsigned)b);
}

void
rfc5322_date(char *dst, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(dst, len, "%a, %d %b %Y %H:%M:%S %z", &tm))
		snprintf(dst, len, "Thu, 01 Jan 1970 00:00:00 +0000");
}

char **
split_words(const char *s)
{
	char **av = NULL;
	size_t n = 0;

	for (;;) {
		size_t l;

		while (*s == ' ' || *s == '\t')
			s++;
		av = xreallocarray(av, n + 1, sizeof *av);
		if (!*s)
			break;
		l = strcspn(s, " \t");
		av[n++] = xstrndup(s, l);
		s += l;
	}
	av[n] = NULL;
	return av;
}

void
free_words(char **av)
{
	size_t i;

	for (i = 0; av && av[i]; i++)
		free(av[i]);
	free(av);
}

void
sanitize(char *dst, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 1 < len; s++)
		if ((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f)
			dst[o++] = *s;
	if (len)
		dst[o] = 0;
}

int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
wait_fd(int fd, short ev, long long deadline_ms)
{
	for (;;) {
		struct pollfd p = { fd, ev, 0 };
		long long left = deadline_ms - now_ms();
		int r;

		if (left < 0)
			left = 0;
		r = poll(&p, 1, left > 86400000 ? 86400000 : (int)left);
		if (r > 0)
			return 1;	/* readable, writable, or HUP/ERR: the I/O call tells */
		if (r == 0) {
			if (now_ms() >= deadline_ms)
				return 0;
			continue;
		}
		if (errno != EINTR)
			return -1;
	}
}

void
child_defaults(void)
{
	sigset_t none;

	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}
