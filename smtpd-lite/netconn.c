/* netconn.c: connecting to the sockets of policy services and milters,
 * "unix:PATH" or "inet:HOST:PORT" (HOST may be [IPv6]), with a deadline. */
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "smtpd.h"

static int
connect_wait(int fd, const struct sockaddr *sa, socklen_t len, long long deadline)
{
	int err = 0;
	socklen_t el = sizeof err;

	if (set_nonblock(fd) < 0)
		return -1;
	if (connect(fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN)
		return -1;
	if (wait_fd(fd, POLLOUT, deadline) <= 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
		errno = err ? err : errno;
		return -1;
	}
	return 0;
}

int
net_connect_unix(const char *path, long long deadline)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof sun.sun_path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect_wait(fd, (struct sockaddr *)&sun, sizeof sun, deadline) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int
net_connect_inet(const char *hostport, long long deadline)
{
	char host[256], *port;
	struct addrinfo hints, *res, *ai;
	int fd = -1;

	snprintf(host, sizeof host, "%s", hostport);
	if (!(port = strrchr(host, ':'))) {
		errno = EINVAL;
		return -1;
	}
	*port++ = 0;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0) {
		errno = EHOSTUNREACH;
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			continue;
		if (connect_wait(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int
net_connect(const char *spec, long long deadline)
{
	if (!strncmp(spec, "unix:", 5))
		return net_connect_unix(spec + 5, deadline);
	if (!strncmp(spec, "inet:", 5))
		return net_connect_inet(spec + 5, deadline);
	errno = EINVAL;
	return -1;
}
