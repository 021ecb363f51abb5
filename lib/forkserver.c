/* forkserver.c: see forkserver.h. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "buf.h"
#include "fdio.h"
#include "forkserver.h"
#include "log.h"
#include "progspawn.h"

/* what a request may set in the child's environment: the envelope and
 * the client as smtpd-lite and ruleproc hand them to the next program */
#define ENVNAME(n) { n, sizeof n - 1 }
static const struct envname {
	const char *name;
	size_t len;
} envelope_names[] = {
	ENVNAME("SENDER"), ENVNAME("RECIPIENTS"), ENVNAME("FOLDERS"), ENVNAME("FOLDER"),
	ENVNAME("MXID"), ENVNAME("HELO"), ENVNAME("AUTHUSER"), ENVNAME("TCPREMOTEIP"),
	ENVNAME("TCPREMOTEHOST"), ENVNAME("TCPREMOTEPORT"), ENVNAME("TCPLOCALIP"),
	ENVNAME("TCPLOCALPORT"), ENVNAME("RELAYCLIENT"), ENVNAME("PROTO"), ENVNAME("AUTH_USER"),
	ENVNAME("AUTH_METHOD"), ENVNAME("TLS_PROTOCOL"), ENVNAME("TLS_CIPHER"),
	ENVNAME("TLS_CIPHER_BITS"), ENVNAME("SMTPD_IMPLICIT_TLS"), ENVNAME("MXHEADERS"),
	ENVNAME("MXHEADERS_AT"), { NULL, 0 }
};
extern char **environ;

#define ENV_MAX (1 << 20)	/* bytes of environment in one request */
#define ENV_EARLY 32768		/* up to this, sent before the request */
#define MAX_CHILDREN 1024	/* beyond: requests wait in the socket */
#define MAX_LISTEN 8		/* listening sockets of accepting workers */
#define READY "ready"
#ifndef WORKER_IDLE_MS
#define WORKER_IDLE_MS 60000	/* an idle worker ends after this */
#endif

long long
fs_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The index of s's name ("NAME=...") in envelope_names, and its
 * length, or -1. Called for every variable of a session's environment
 * per request: the length first, then one memcmp. */
static int
envelope_name(const char *s, size_t *nl)
{
	const char *eq = strchr(s, '=');
	size_t l;
	int i;

	if (!eq)
		return -1;
	l = (size_t)(eq - s);
	for (i = 0; envelope_names[i].name; i++)
		if (envelope_names[i].len == l && !memcmp(s, envelope_names[i].name, l)) {
			*nl = l;
			return i;
		}
	return -1;
}

int
forkserver_fd(void)
{
	const char *e = getenv(FORKSERVER_ENV);
	char *end;
	long fd;

	if (!e || !*e)
		return -1;
	fd = strtol(e, &end, 10);
	if (*end || fd < 3 || fd > 1000 || fcntl((int)fd, F_GETFD) < 0)
		return -1;
	return (int)fd;
}

/* ---- client ---- */

/* the record: the kind, the length of the environment that follows on
 * the conversation (so the child reads exactly that, not the request's
 * first bytes), and the descriptors */
struct record {
	char kind;
	uint32_t envlen;
	uint64_t nonce;		/* FS_CHAIN: ends the status line (forkserver.h) */
} __attribute__((packed));

static int
send_fds(int ctl, char kind, size_t envlen, uint64_t nonce, const int *fds, int nfd)
{
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	struct record rec = { kind, (uint32_t)envlen, nonce };
	struct iovec iov = { &rec, sizeof rec };
	struct msghdr mh;
	struct cmsghdr *c;

	memset(&mh, 0, sizeof mh);
	memset(cbuf, 0, sizeof cbuf);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
	memcpy(CMSG_DATA(c), fds, (size_t)nfd * sizeof(int));
	/* the control socket is shared by every session: never make it
	 * non-blocking (a file status flag), wait here instead */
	return sendmsg(ctl, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof rec ? 0 : -1;
}

static int
wait_writable(int fd, long long deadline_ms)
{
	struct pollfd p = { fd, POLLOUT, 0 };
	long long left;
	int r;

	for (;;) {
		left = deadline_ms - fs_now_ms();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return (p.revents & (POLLERR | POLLHUP)) ? (errno = EPIPE, -1) : 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* A request's nonce: not to be guessed from a message's text, which a
 * program may echo on its stderr (splitmix64 over a random seed). */
static uint64_t
new_nonce(void)
{
	static uint64_t x;
	uint64_t z;

	if (!x && getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x)
		x = (uint64_t)fs_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&x;
	z = (x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (z ^ (z >> 31)) | 1;	/* never 0 */
}

int
forkserver_request(int ctl, enum fs_kind kind, int passfd, char *const envp[],
    long long deadline_ms, uint64_t *nonce)
{
	uint64_t n = new_nonce();
	int sv[2] = { -1, -1 }, fds[2], nfd = 1, e, i, early;
	size_t nl;
	struct buf env = BUF_INIT;

	/* one write: each small one could wake the reader (issue 7) */
	for (i = 0; envp && envp[i]; i++)
		if (envelope_name(envp[i], &nl) >= 0)
			buf_add(&env, envp[i], strlen(envp[i]) + 1);
	if (env.len > ENV_MAX) {
		errno = E2BIG;
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	fds[0] = sv[1];
	if (passfd >= 0)
		fds[nfd++] = passfd;
	/* a small environment goes ahead of the request (it fits in the
	 * socket's buffer): the child finds it there, no wait, no alarm */
	early = env.len <= ENV_EARLY;
	if (early && env.len && fd_write_all(sv[0], env.s, env.len) < 0)
		goto fail;
	if (wait_writable(ctl, deadline_ms) < 0 ||
	    send_fds(ctl, (char)kind, env.len, n, fds, nfd) < 0)
		goto fail;
	if (nonce)
		*nonce = n;
	close(sv[1]);
	sv[1] = -1;
	/* a large one after: the child reads the environment first, so it
	 * cannot dead-lock against our later writes */
	if (!early && fd_write_all(sv[0], env.s, env.len) < 0)
		goto fail;
	buf_free(&env);
	return sv[0];
fail:
	e = errno;
	buf_free(&env);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	errno = e;
	return -1;
}

/* "\001exit N NONCE" (a line without its '\n') -> N, else -1: a line
 * with another nonce is not the status of this request. */
static int
forkserver_status(const char *line, size_t len, uint64_t nonce)
{
	size_t pl = sizeof FS_STATUS - 1, i;
	char want[24];
	int n = 0;

	if (len <= pl || memcmp(line, FS_STATUS, pl))
		return -1;
	for (i = pl; i < len && i < pl + 3 && line[i] >= '0' && line[i] <= '9'; i++)
		n = n * 10 + (line[i] - '0');
	if (i == pl || n > 255)
		return -1;
	snprintf(want, sizeof want, " %016llx", (unsigned long long)nonce);
	return len - i == strlen(want) && !memcmp(line + i, want, len - i) ? n : -1;
}

/* A worker's status line for its request, after its held lines in
 * stderr's buffer (written by the next flush). */
static void
put_status(int code, uint64_t nonce)
{
	fprintf(stderr, "\n%s%d %016llx\n", FS_STATUS, code, (unsigned long long)nonce);
}

int
forkserver_collect(int conv, uint64_t nonce, void (*line)(void *, const char *, size_t),
    void *arg, long long deadline_ms)
{
	char b[1024];
	size_t len = 0;
	int ignoring = 0;
	struct pollfd p = { conv, POLLIN, 0 };

	for (;;) {
		long long left = deadline_ms - fs_now_ms();
		char *nl;
		ssize_t n;
		int r;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r <= 0)
			continue;
		n = read(conv, b + len, sizeof b - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			if (len && !ignoring)
				line(arg, b, len);
			errno = EPIPE;	/* EOF without the status: it did not finish */
			return -1;
		}
		len += (size_t)n;
		while ((nl = memchr(b, '\n', len)) || len == sizeof b - 1) {
			size_t l = nl ? (size_t)(nl - b) : len;
			int st = nl && !ignoring ? forkserver_status(b, l, nonce) : -1;
			if (st >= 0)
				return st;	/* the last word: what may follow is not ours */
			if (!ignoring && l)
				line(arg, b, l);
			ignoring = !nl;	/* the rest of an over-long line */
			if (nl)
				l++;
			memmove(b, b + l, len - l);
			len -= l;
		}
	}
}

/* ---- starter ---- */

/* Only our own programs, from the directory we run from, are started
 * as servers: anything else (a site's chain script, say) would pass
 * FORKSERVER_FD on to the program it execs, which would then serve in
 * its place and the script would run once instead of per message. */
static int
ours(const char *prog)
{
	char self[4096], real[4096], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n <= 0 || !strchr(prog, '/') || !realpath(prog, real))
		return 0;
	self[n] = 0;
	if (!(slash = strrchr(self, '/')))
		return 0;
	slash[1] = 0;
	return !strncmp(real, self, strlen(self)) && !strchr(real + strlen(self), '/');
}

int
forkserver_start(char *const argv[], char *const envp[], pid_t *pid)
{
	return forkserver_start_fds(argv, envp, pid, NULL, 0);
}

int
forkserver_start_fds(char *const argv[], char *const envp[], pid_t *pid, const int *extra,
    int nextra)
{
	/* stdin /dev/null, stdout and stderr our stderr, fd 3 the control */
	int fds[4 + MAX_LISTEN] = { SPAWN_NULL, 2, SPAWN_KEEP, -1 }, sv[2], rc, i, n, e;
	char **env, buf[16];
	struct pollfd p;

	if (!ours(argv[0])) {
		errno = EPERM;
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	for (n = 0; envp[n]; n++)
		;
	env = calloc((size_t)n + 2, sizeof *env);
	if (!env) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	for (n = i = 0; envp[i]; i++)
		if (strncmp(envp[i], FORKSERVER_ENV "=", sizeof FORKSERVER_ENV))
			env[n++] = envp[i];
	env[n++] = FORKSERVER_ENV "=3";
	fds[3] = sv[1];
	for (i = 0; i < nextra && i < MAX_LISTEN; i++)
		fds[4 + i] = extra[i];
	rc = spawn_fds(pid, argv, env, fds, 4 + i, 0);
	e = errno;
	free(env);
	close(sv[1]);
	if (rc < 0) {
		close(sv[0]);
		errno = e;
		return -1;
	}
	/* "ready", or EOF when it exits (a program that cannot serve) */
	p = (struct pollfd){ sv[0], POLLIN, 0 };
	if (poll(&p, 1, 10000) != 1 || recv(sv[0], buf, sizeof buf, 0) != sizeof READY - 1 ||
	    memcmp(buf, READY, sizeof READY - 1)) {
		int st;
		close(sv[0]);
		kill(*pid, SIGTERM);
		(void)waitpid(*pid, &st, 0);
		errno = ECHILD;
		return -1;
	}
	return sv[0];
}

/* ---- the pool ----
 *
 * The workers take the requests straight from the control socket: an
 * idle worker waits in recvmsg on the server's end, which they all
 * share, and the kernel gives each record to one waiting worker (an
 * exclusive wake-up, no herd). The server is not on a request's way
 * (handing each request on cost it two wake-ups a request, issue 7); it
 * keeps the pool: it forks a worker when one that takes a request finds
 * no other idle, reaps, kills a worker over the time limit, and ends
 * when every client has gone and every worker with them. Who is idle
 * or busy since when is in a scoreboard the server maps shared before
 * it forks (each worker writes its own slot). A worker writes a chain
 * request's status line itself, also when the program calls exit()
 * during it (on_exit); one that dies (a signal, _exit, killed over the
 * time limit) closes the conversation without it, which the client
 * takes as a temporary failure. */

/* SLOT_CHECKING: an accepting worker deciding on a connection (the per
 * client limit); it may be idle again at once, so the server does not
 * count it as busy, forkserver_tag does */
enum slot_state { SLOT_FREE, SLOT_STARTING, SLOT_IDLE, SLOT_CHECKING, SLOT_BUSY };

struct slot {
	int state;		/* the worker's (idle, busy); the server's (free, starting) */
	pid_t pid;		/* the server's */
	long long since;	/* ms: in this state since */
	uint64_t tag;		/* the worker's: its request's (forkserver_tag), 0 none */
};

static struct board {
	int hw;			/* slots [0, hw) have been used */
	struct slot s[MAX_CHILDREN];
} *board;

#define SPARE 2			/* idle workers the server keeps ready */
#define SPARE_MAX 8		/* beyond this many idle, the server sends one away a second */
#define IDLE_WAKE_MS 5000	/* an idle worker looks at the clock this often */

static int sigchld_pipe[2] = { -1, -1 };
static int need_pipe[2] = { -1, -1 };	/* a worker to the server: no idle one left */

/* forkserver_accept_on: the workers accept sessions themselves */
static struct {
	int lfd[MAX_LISTEN], n;
	int cap;		/* workers at most: all busy, the server refuses */
	int (*accepted)(int, int, const struct sockaddr_storage *, void *);
	void (*refuse)(int, int, const struct sockaddr_storage *, void *);
} acc;

static void
on_sigchld(int sig)
{
	int e = errno;

	(void)sig;
	(void)!write(sigchld_pipe[1], "", 1);
	errno = e;
}

static int
slot_state(int i)
{
	return __atomic_load_n(&board->s[i].state, __ATOMIC_SEQ_CST);
}

static void
slot_set(int i, int state)
{
	__atomic_store_n(&board->s[i].since, fs_now_ms(), __ATOMIC_SEQ_CST);
	__atomic_store_n(&board->s[i].state, state, __ATOMIC_SEQ_CST);
}

/* Workers idle, starting or checking, other than slot me (-1: all). */
static int
available(int me)
{
	int i, n = 0, hw = __atomic_load_n(&board->hw, __ATOMIC_SEQ_CST), st;

	for (i = 0; i < hw; i++)
		if (i != me && (st = slot_state(i)) != SLOT_FREE && st != SLOT_BUSY)
			n++;
	return n;
}

/* One record with its descriptors: 1 got one, 0 EOF, 2 nothing usable
 * (try again: a time-out, a signal, not a request of ours), -1 error.
 * flags: MSG_DONTWAIT or 0 (then SO_RCVTIMEO bounds the wait). */
static int
recv_request(int fd, struct record *rec, int *conv, int *passfd, int flags)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = { rec, sizeof *rec };
	struct msghdr mh;
	struct cmsghdr *c;
	int fds[4], nfd = 0, i;
	ssize_t n;

	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof cbuf;
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | flags);
	if (n <= 0)
		return n == 0 ? 0 : (errno == EAGAIN || errno == EINTR ? 2 : -1);
	if (n != (ssize_t)sizeof *rec || rec->envlen > ENV_MAX)
		*rec = (struct record){ 0, 0, 0 };	/* refused by the caller */
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (i = 0; (size_t)i < k && nfd < 4; i++)
				memcpy(&fds[nfd++], CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
		}
	*conv = nfd > 0 ? fds[0] : -1;
	*passfd = nfd > 1 ? fds[1] : -1;
	for (i = 2; i < nfd; i++)
		close(fds[i]);
	if ((mh.msg_flags & MSG_CTRUNC) || *conv < 0) {
		if (*conv >= 0)
			close(*conv);
		if (*passfd >= 0)
			close(*passfd);
		return 2;	/* not a request of ours: ignored */
	}
	return 1;
}

/* Every envelope name out of the environment, in one pass (an
 * unsetenv of each of the 20 scanned the whole environment 20 times). */
static void
drop_envelope(void)
{
	char **r, **w;
	size_t nl;

	if (!environ)
		return;
	for (r = w = environ; *r; r++)
		if (envelope_name(*r, &nl) < 0)
			*w++ = *r;
	*w = NULL;
}

/* The request's environment, envlen bytes of "NAME=VALUE\0" from the
 * conversation; what the last request set is unset first. */
static int
read_env(int fd, size_t envlen)
{
	char *b = malloc(envlen + 1), *p, *end;
	size_t len = 0, nl;
	ssize_t n;
	int i, armed;

	if (!b)
		return -1;
	if (envlen) {	/* usually there already (ENV_EARLY) */
		n = recv(fd, b, envlen, MSG_DONTWAIT);
		len = n > 0 ? (size_t)n : 0;
	}
	if ((armed = len < envlen))
		alarm(30);
	while (len < envlen) {
		n = read(fd, b + len, envlen - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto bad;
		len += (size_t)n;
	}
	if (armed)
		alarm(0);
	b[len] = 0;
	drop_envelope();
	for (p = b, end = b + len; p < end; p += strlen(p) + 1)
		if ((i = envelope_name(p, &nl)) >= 0 && setenv(envelope_names[i].name, p + nl + 1, 1) < 0)
			goto bad;
	free(b);
	return 0;
bad:
	if (armed)
		alarm(0);
	free(b);
	return -1;
}

/* ---- the worker ---- */

static struct {
	jmp_buf jb;
	int in_request;		/* forkserver_exit() jumps back */
	int code;
	pid_t pid;		/* the worker (not a child it forked) */
	enum fs_kind kind;
	int slot;		/* ours in the scoreboard */
	uint64_t nonce;		/* of the request in hand */
	volatile sig_atomic_t quit;	/* end when idle: the server is gone, or sent us away */
} wk;

void
forkserver_exit(int code)
{
	if (!wk.in_request)
		exit(code);
	wk.code = code;
	longjmp(wk.jb, 1);
}

/* exit() during a chain request: the status line with that code, after
 * the lines held so far (the server no longer reaps it for the client) */
static void
worker_on_exit(int code, void *unused)
{
	(void)unused;
	if (!wk.in_request || wk.kind != FS_CHAIN || getpid() != wk.pid)
		return;
	wk.in_request = 0;
	put_status(code, wk.nonce);
	fflush(stderr);
}

static void
on_quit(int sig)
{
	(void)sig;
	wk.quit = 1;
}

void
forkserver_exec(char *const argv[])
{
	int keep[3] = { SPAWN_KEEP, SPAWN_KEEP, SPAWN_KEEP }, st;
	pid_t pid;

	fflush(NULL);	/* held lines (log_hold) go before the program's */
	if (!wk.in_request || getpid() != wk.pid) {
		execvp(argv[0], argv);
		return;
	}
	/* a worker: nobody else would write the program's status */
	if ((errno = spawn_fds(&pid, argv, environ, keep, 3, 0) < 0 ? errno : 0))
		return;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			log_warnsys("waitpid %s", argv[0]);
			forkserver_exit(EXIT_TEMP);
		}
	forkserver_exit(WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_TEMP);
}

/* The request's descriptors as an exec'ed program has them: a chain
 * program fd 0 the message and fd 2 the conversation; a session fd 0
 * and 1 the client's socket (the conversation, kept to the session's
 * end, only tells the listener of that end). */
static int
worker_setup(enum fs_kind kind, int conv, int passfd, size_t envlen)
{
	int rc = read_env(conv, envlen) == 0 && dup2(passfd, 0) >= 0 &&
	    dup2(kind == FS_SESSION ? passfd : conv, kind == FS_SESSION ? 1 : 2) >= 0 ? 0 : -1;

	if (kind != FS_SESSION)
		close(conv);
	close(passfd);
	return rc;
}

/* Idle for WORKER_IDLE_MS with another idle one: time to go. */
static int
idle_enough(int me)
{
	return fs_now_ms() - board->s[me].since >= WORKER_IDLE_MS && available(me) >= 1;
}

/* Idle: wait for a request on the shared control socket. 1 with one in
 * hand, 0 when this worker should end (every client gone, idle too
 * long with others idle, the server gone or sending us away: SIGUSR2,
 * whose handler makes the wait return, SO_RCVTIMEO). */
static int
worker_wait(enum fs_kind kind, int ctl, int me, struct record *rec, int *conv, int *passfd)
{
	for (;;) {
		int r;

		if (wk.quit)
			return 0;
		r = recv_request(ctl, rec, conv, passfd, 0);
		if (r == 0 || r < 0)
			return 0;
		if (r == 1 && rec->kind == (char)kind && *passfd >= 0)
			return 1;
		if (r == 1) {
			log_warn("request of the wrong kind ignored");
			close(*conv);	/* the client sees EOF */
			if (*passfd >= 0)
				close(*passfd);
			continue;
		}
		if (idle_enough(me))	/* woken with nothing */
			return 0;
	}
}

/* Idle, accepting: wait for a connection on the listening sockets
 * (EPOLLEXCLUSIVE: a connection wakes one idle worker, or a few) or the
 * control socket's hang-up. 1 with a connection in *fd (from socket
 * *which), 0 when this worker should end (as worker_wait). */
static int __attribute__((noinline))
worker_accept(int ep, int me, int *fd, volatile int *which, struct sockaddr_storage *peer)
{
	for (;;) {
		struct epoll_event ev[MAX_LISTEN + 1];
		int n, i;

		if (wk.quit)
			return 0;
		n = epoll_wait(ep, ev, MAX_LISTEN + 1, IDLE_WAKE_MS);
		if (n < 0 && errno != EINTR)
			return 0;
		for (i = 0; i < n; i++) {
			socklen_t pl = sizeof *peer;
			int w = (int)ev[i].data.u32;
			if (w == MAX_LISTEN)	/* the control socket: every client gone */
				return 0;
			*fd = accept4(acc.lfd[w], (struct sockaddr *)peer, &pl, SOCK_CLOEXEC);
			if (*fd >= 0) {
				*which = w;
				return 1;
			}
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_warnsys("accept");
				poll(NULL, 0, 100);	/* EMFILE and friends: do not spin */
			}
		}
		if (n == 0 && idle_enough(me))
			return 0;
	}
}

/* the epoll set of an accepting worker; -1 when it cannot have one */
static int
accept_set(int ctl)
{
	int ep = epoll_create1(EPOLL_CLOEXEC), i;
	struct epoll_event ev;

	if (ep < 0)
		return -1;
	for (i = 0; i < acc.n; i++) {
		ev.events = EPOLLIN | EPOLLEXCLUSIVE;
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, acc.lfd[i], &ev) < 0)
			goto bad;
	}
	ev.events = 0;	/* its hang-up only (always reported) */
	ev.data.u32 = MAX_LISTEN;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev) < 0)
		goto bad;
	return ep;
bad:
	close(ep);
	return -1;
}

int
forkserver_tag(uint64_t tag)
{
	int i, n = 0, hw = __atomic_load_n(&board->hw, __ATOMIC_SEQ_CST), me = wk.slot;

	__atomic_store_n(&board->s[me].tag, tag, __ATOMIC_SEQ_CST);
	for (i = 0; i < hw && tag; i++)
		if (i != me && slot_state(i) >= SLOT_CHECKING &&
		    __atomic_load_n(&board->s[i].tag, __ATOMIC_SEQ_CST) == tag)
			n++;
	return n;
}

static void __attribute__((noreturn))
worker_loop(enum fs_kind kind, int ctl, int me, int (*one)(void *), void *arg, int max_use)
{
	int uses, logfd = fcntl(2, F_DUPFD_CLOEXEC, 3), null = open("/dev/null", O_RDWR | O_CLOEXEC);
	pid_t server = getppid();
	struct sigaction sa;
	sigset_t usr2;
	int ep = -1;

	wk.pid = getpid();
	wk.kind = kind;
	wk.slot = me;
	if (acc.n && (ep = accept_set(ctl)) < 0) {
		log_warnsys("epoll");
		_exit(EXIT_TEMP);
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_quit;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;	/* a request's calls go on; the idle recvmsg (SO_RCVTIMEO) does not */
	sigaction(SIGUSR2, &sa, NULL);
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	(void)prctl(PR_SET_PDEATHSIG, SIGUSR2);
	if (getppid() != server)
		wk.quit = 1;
	(void)on_exit(worker_on_exit, NULL);
	if (kind == FS_CHAIN) {
		/* a request's lines and then its status in one write: the
		 * client wakes up once, not once a line (warnings still go
		 * at once, log_hold) */
		static char errbuf[16384];	/* ours: glibc keeps a used stream's 1-byte one */
		fflush(stderr);
		setvbuf(stderr, errbuf, _IOFBF, sizeof errbuf);
		log_hold(1);
	}
	for (uses = 0; uses < max_use && !wk.quit; uses++) {
		struct record rec = { 0, 0, 0 };
		struct sockaddr_storage peer;
		int conv = -1, passfd, code;
		volatile int which = 0;
		volatile int on_conv;	/* read after the longjmp */

		slot_set(me, SLOT_IDLE);
		if (ep >= 0 ? !worker_accept(ep, me, &passfd, &which, &peer) :
		    !worker_wait(kind, ctl, me, &rec, &conv, &passfd))
			break;
		wk.nonce = rec.nonce;
		/* SIGUSR2 only ends an idle wait: in a request it would
		 * break a poll or a sleep (never restarted) */
		sigprocmask(SIG_BLOCK, &usr2, NULL);
		if (ep >= 0) {
			slot_set(me, SLOT_CHECKING);
			drop_envelope();
			if (acc.accepted(passfd, which, &peer, arg) < 0) {
				(void)forkserver_tag(0);	/* refused (and closed) by it */
				sigprocmask(SIG_UNBLOCK, &usr2, NULL);
				uses--;
				continue;
			}
			on_conv = 1;
		}
		slot_set(me, SLOT_BUSY);
		if (available(me) == 0)	/* the server forks another */
			(void)!write(need_pipe[1], "", 1);
		if (ep < 0)
			on_conv = worker_setup(kind, conv, passfd, rec.envlen) == 0;
		if (!on_conv)
			code = EXIT_TEMP;
		else if (setjmp(wk.jb) == 0) {
			wk.in_request = 1;
			code = one(arg);
		} else
			code = wk.code;
		wk.in_request = 0;
		alarm(0);
		if (kind == FS_CHAIN && on_conv)
			put_status(code, rec.nonce);
		fflush(NULL);
		/* our copies of the conversation closed: the client (or for
		 * a session the listener) sees the end */
		(void)dup2(null, 0);
		if (kind == FS_SESSION) {
			(void)dup2(null, 1);
			if (conv >= 0)
				close(conv);
		}
		(void)dup2(logfd, 2);
		if (board->s[me].tag)
			(void)forkserver_tag(0);
		sigprocmask(SIG_UNBLOCK, &usr2, NULL);
	}
	_exit(0);
}

/* ---- the server ---- */

/* A worker into a free slot; -1 when there is none or fork fails. It
 * keeps nothing of the server's but the control socket. */
static int
spawn_worker(enum fs_kind kind, int ctl, int (*one)(void *), void *arg, int max_use)
{
	int i;
	pid_t pid;

	for (i = 0; i < MAX_CHILDREN && board->s[i].state != SLOT_FREE; i++)
		;
	if (i == MAX_CHILDREN)
		return -1;
	slot_set(i, SLOT_STARTING);
	if (i >= board->hw)
		__atomic_store_n(&board->hw, i + 1, __ATOMIC_SEQ_CST);
	if ((pid = fork()) < 0) {
		log_warnsys("fork");
		slot_set(i, SLOT_FREE);
		return -1;
	}
	if (pid == 0) {
		close(sigchld_pipe[0]);
		close(sigchld_pipe[1]);
		close(need_pipe[0]);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		worker_loop(kind, ctl, i, one, arg, max_use);
	}
	board->s[i].pid = pid;
	return 0;
}

static int
reap(void)
{
	int st, i, live = 0;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		for (i = 0; i < board->hw; i++)
			if (board->s[i].state != SLOT_FREE && board->s[i].pid == pid) {
				if (WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL)
					log_warn("worker %ld killed by signal %d", (long)pid, WTERMSIG(st));
				board->s[i].pid = 0;
				slot_set(i, SLOT_FREE);
				break;
			}
	for (i = 0; i < board->hw; i++)
		live += board->s[i].state != SLOT_FREE;
	return live;
}

/* More than SPARE_MAX idle: one is sent away (at most one a second, so
 * that a pool that a burst grew does not churn; it ends when idle) */
static void
shrink(long long *last)
{
	long long now = fs_now_ms();
	int i;

	if (now - *last < 1000)
		return;
	for (i = board->hw - 1; i >= 0; i--)
		if (slot_state(i) == SLOT_IDLE && board->s[i].pid > 0) {
			kill(board->s[i].pid, SIGUSR2);
			*last = now;
			return;
		}
}

/* Kill the workers over the time limit (timeout_s > 0). */
static void
expire(long long timeout_s)
{
	long long now = fs_now_ms(), since;
	int i;

	for (i = 0; i < board->hw; i++) {
		since = __atomic_load_n(&board->s[i].since, __ATOMIC_SEQ_CST);
		if (slot_state(i) == SLOT_BUSY && since + timeout_s * 1000 <= now &&
		    since == __atomic_load_n(&board->s[i].since, __ATOMIC_SEQ_CST)) {
			log_warn("worker %ld over the time limit, killed", (long)board->s[i].pid);
			kill(board->s[i].pid, SIGKILL);
		}
	}
}

/* A connection while every worker is busy and no more may start: the
 * connection limit (acc.cap). */
static void
refuse_one(int which, void *arg)
{
	struct sockaddr_storage peer;
	socklen_t pl = sizeof peer;
	int fd = accept4(acc.lfd[which], (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);

	if (fd >= 0)
		acc.refuse(fd, which, &peer, arg);
}

void
forkserver_accept_on(const int *lfd, int n, int cap,
    int (*accepted)(int fd, int which, const struct sockaddr_storage *peer, void *arg),
    void (*refuse)(int fd, int which, const struct sockaddr_storage *peer, void *arg))
{
	int i;

	for (i = 0; i < n && i < MAX_LISTEN; i++)
		acc.lfd[i] = lfd[i];
	acc.n = i;
	acc.cap = cap;
	acc.accepted = accepted;
	acc.refuse = refuse;
}

static void
drain(int fd)
{
	char junk[64];

	while (read(fd, junk, sizeof junk) > 0)
		;
}

void
forkserver_serve_workers(enum fs_kind kind, long long timeout_s, int max_use,
    void (*refresh)(void *), int (*one)(void *), void *arg)
{
	int ctl = forkserver_fd(), open_ = 1, live = 0, i;
	int cap = acc.n && acc.cap > 0 && acc.cap < MAX_CHILDREN ? acc.cap : MAX_CHILDREN;
	long long last_shrink = 0;
	struct timeval tv = { IDLE_WAKE_MS / 1000, (IDLE_WAKE_MS % 1000) * 1000 };
	struct sigaction sa;

	if (ctl < 0)
		die(EXIT_TEMP, "%s is not a control socket", FORKSERVER_ENV);
	unsetenv(FORKSERVER_ENV);
	board = mmap(NULL, sizeof *board, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (board == MAP_FAILED)
		diesys(EXIT_TEMP, "mmap");
	if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    pipe2(need_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		diesys(EXIT_TEMP, "pipe");
	/* the workers' wait on it wakes now and then (idle time, the
	 * server gone); no program they run gets it */
	if (fcntl(ctl, F_SETFD, FD_CLOEXEC) < 0 ||
	    setsockopt(ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
		diesys(EXIT_TEMP, "control socket");
	if (kind == FS_CHAIN) {
		/* a worker handles message after message: what one freed
		 * stays for the next (glibc gave a 64 KiB message's buffers
		 * back and faulted them in again each time: a fifth of
		 * ruleproc's time). Bounded: beyond 8 MiB free it trims. */
		mallopt(M_MMAP_THRESHOLD, 4 << 20);
		mallopt(M_TRIM_THRESHOLD, 8 << 20);
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigchld;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (send(ctl, READY, sizeof READY - 1, MSG_NOSIGNAL) < 0)
		diesys(EXIT_TEMP, "control socket");
	for (;;) {
		struct pollfd p[3 + MAX_LISTEN] = {
			{ sigchld_pipe[0], POLLIN, 0 }, { need_pipe[0], POLLIN, 0 },
			{ open_ ? ctl : -1, 0, 0 }	/* only its hang-up: every client gone */
		};
		int tick = -1, np = 3, avail;

		if (open_) {
			if (refresh)
				refresh(arg);
			while ((avail = available(-1)) < SPARE && live < cap &&
			    spawn_worker(kind, ctl, one, arg, max_use) == 0)
				live++;
			/* the clock for the time limit, the refresh, a fork
			 * that failed */
			if (live && (timeout_s > 0 || refresh))
				tick = 1000;
			if (avail < SPARE && live < cap)
				tick = 1000;
			/* accepting, every worker busy and no more allowed:
			 * the connections that come now are refused here */
			if (acc.n && live >= cap && avail == 0) {
				for (i = 0; i < acc.n; i++)
					p[np++] = (struct pollfd){ acc.lfd[i], POLLIN, 0 };
				tick = 1000;	/* a worker may free up meanwhile */
			}
			if (avail > SPARE_MAX) {
				shrink(&last_shrink);
				tick = 1000;
			}
		} else if (live == 0)
			break;
		if (poll(p, (nfds_t)np, tick) < 0 && errno != EINTR)
			diesys(EXIT_TEMP, "poll");
		if (p[0].revents & POLLIN) {
			drain(sigchld_pipe[0]);
			live = reap();
		}
		if (p[1].revents & POLLIN)
			drain(need_pipe[0]);
		for (i = 3; i < np; i++)
			if (p[i].revents & POLLIN)
				refuse_one(i - 3, arg);
		if (p[2].revents & (POLLHUP | POLLERR)) {
			open_ = 0;	/* idle workers see EOF and end */
			for (i = 0; i < acc.n; i++)	/* the port is free once the workers are gone */
				close(acc.lfd[i]);
			acc.n = 0;
		}
		if (timeout_s > 0)
			expire(timeout_s);
	}
	exit(0);
}

/* ---- many policy conversations in one process ---- */

struct pconv {
	int fd;
	size_t envleft;		/* bytes of environment still to skip */
	struct buf in, out;
};

#define MAX_CONV 4096
#define OUT_MAX (1 << 20)	/* replies a client leaves unread: dropped beyond */

static void
pconv_drop(struct pconv *c)
{
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	c->fd = -1;
}

/* Answer every complete request in c->in; -1: drop the conversation. */
static int
pconv_answer(struct pconv *c, int (*answer)(void *, char *, size_t, struct buf *),
    size_t reqmax, void *arg)
{
	size_t off = 0;

	while (off < c->in.len) {
		char *p = c->in.s + off, *end;
		size_t len = c->in.len - off, rl;

		if (c->envleft) {
			size_t k = len < c->envleft ? len : c->envleft;
			c->envleft -= k;
			off += k;
			continue;
		}
		if (*p == '\n')
			return -1;	/* an empty request */
		if (!(end = memmem(p, len, "\n\n", 2)))
			break;
		rl = (size_t)(end - p) + 1;	/* the lines, each with its '\n' */
		if (rl > reqmax || memchr(p, 0, rl))
			return -1;
		for (size_t i = 0; i < rl; i++)
			if (p[i] == '\n')
				p[i] = 0;
		if (answer(arg, p, rl, &c->out) < 0)
			return -1;
		off += rl + 1;
	}
	if (off) {
		memmove(c->in.s, c->in.s + off, c->in.len - off);
		c->in.len -= off;
	}
	if (c->in.len > reqmax + 2 || c->out.len > OUT_MAX)
		return -1;
	return 0;
}

static int
pconv_flush(struct pconv *c)
{
	ssize_t n;

	while (c->out.len) {
		n = send(c->fd, c->out.s, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		memmove(c->out.s, c->out.s + n, c->out.len - (size_t)n);
		c->out.len -= (size_t)n;
	}
	return 0;
}

static void
pconv_read(struct pconv *c, int (*answer)(void *, char *, size_t, struct buf *),
    size_t reqmax, void *arg)
{
	ssize_t n;

	buf_reserve(&c->in, 16384);
	n = recv(c->fd, c->in.s + c->in.len, c->in.cap - c->in.len - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		pconv_drop(c);	/* end of the session (a partial request: dropped) */
		return;
	}
	c->in.len += (size_t)n;
	if (pconv_answer(c, answer, reqmax, arg) < 0) {
		log_warn("malformed policy request; closing");
		pconv_drop(c);
		return;
	}
	if (pconv_flush(c) < 0)
		pconv_drop(c);
}

void
forkserver_serve_policy(int (*answer)(void *arg, char *req, size_t len, struct buf *out),
    size_t reqmax, void (*refresh)(void *), void *arg)
{
	static struct pconv cv[MAX_CONV];
	static struct pollfd p[MAX_CONV + 1];
	int ctl = forkserver_fd(), ncv = 0, open_ = 1, i;

	if (ctl < 0)
		die(EXIT_TEMP, "%s is not a control socket", FORKSERVER_ENV);
	unsetenv(FORKSERVER_ENV);
	signal(SIGPIPE, SIG_IGN);
	if (send(ctl, READY, sizeof READY - 1, MSG_NOSIGNAL) < 0)
		diesys(EXIT_TEMP, "control socket");
	while (open_ || ncv > 0) {
		int np = 0, first = open_ && ncv < MAX_CONV;

		if (first)
			p[np++] = (struct pollfd){ ctl, POLLIN, 0 };
		for (i = 0; i < ncv; i++)
			p[np++] = (struct pollfd){ cv[i].fd,
			    (short)(POLLIN | (cv[i].out.len ? POLLOUT : 0)), 0 };
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			diesys(EXIT_TEMP, "poll");
		}
		if (refresh)
			refresh(arg);
		for (i = 0; i < ncv; i++) {
			short re = p[i + first].revents;
			if (re & POLLOUT && pconv_flush(&cv[i]) < 0)
				pconv_drop(&cv[i]);
			else if (re & (POLLIN | POLLHUP | POLLERR))
				pconv_read(&cv[i], answer, reqmax, arg);
		}
		for (i = 0; i < ncv; )	/* compact: dropped ones out */
			if (cv[i].fd < 0)
				cv[i] = cv[--ncv];
			else
				i++;
		if (first && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			struct record rec;
			int conv, passfd, r = recv_request(ctl, &rec, &conv, &passfd, MSG_DONTWAIT);
			if (r <= 0)
				open_ = 0;
			else if (r == 1) {
				if (passfd >= 0)
					close(passfd);
				if (rec.kind != FS_POLICY) {
					log_warn("request of the wrong kind ignored");
					close(conv);
				} else {
					memset(&cv[ncv], 0, sizeof cv[ncv]);
					cv[ncv].fd = conv;
					cv[ncv].envleft = rec.envlen;
					ncv++;
				}
			}
		}
	}
	exit(0);
}
