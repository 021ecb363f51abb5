/* chain.c: hand an accepted message to the delivery chain.
 *
 * The chain gets the spool file as a seekable stdin, the envelope in
 * the environment (SENDER, RECIPIENTS, TCPREMOTEIP, TCPREMOTEHOST,
 * HELO, MXID), our stderr as its stdout, and a pipe as its stderr:
 * each line is logged, the last one is the reason on failure. The
 * chain runs in its own process group, killed whole on timeout. It is
 * started with posix_spawn (no copy of our page tables; issue 7).
 * Exit 0 -> 250; 100 -> 5xx from its last line (default 554 5.6.0);
 * 111, anything else, a signal or a timeout -> 451 4.3.0. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "buf.h"
#include "forkserver.h"
#include "log.h"
#include "smtpd.h"
#include "progspawn.h"

extern char **environ;

/* The chain's environment: ours without the envelope names, then the
 * envelope (what setenv() in a forked child used to do). */
static char **
chain_envp(const struct chain_env *e, struct buf *store)
{
	static const char *const names[] = {
		"SENDER", "RECIPIENTS", "TCPREMOTEIP", "HELO", "MXID", "TCPREMOTEHOST", NULL
	};
	const char *vals[6];
	size_t n = 0, i, k, off[6];
	char **envp;

	vals[0] = e->sender;
	vals[1] = e->rcpts->s ? e->rcpts->s : "";
	vals[2] = e->ip;
	vals[3] = e->helo;
	vals[4] = e->id;
	vals[5] = e->host[0] ? e->host : NULL;
	for (i = 0; environ[i]; i++)
		n++;
	envp = xcalloc(n + 7, sizeof *envp);
	n = 0;
	for (i = 0; environ[i]; i++) {
		for (k = 0; names[k]; k++) {
			size_t l = strlen(names[k]);
			if (!strncmp(environ[i], names[k], l) && environ[i][l] == '=')
				break;
		}
		/* ruleproc's word to deliver (deliver(8)): never ours to pass */
		if (!names[k] && strncmp(environ[i], "MXHEADERS=", 10) &&
		    strncmp(environ[i], "MXHEADERS_AT=", 13))
			envp[n++] = environ[i];
	}
	/* one buffer for the six strings (offsets: it may move while growing) */
	for (k = 0; names[k]; k++) {
		off[k] = store->len;
		if (vals[k]) {
			buf_printf(store, "%s=%s", names[k], vals[k]);
			buf_addc(store, 0);
		}
	}
	for (k = 0; names[k]; k++)
		if (vals[k])
			envp[n++] = store->s + off[k];
	envp[n] = NULL;
	return envp;
}

/* Start the chain without copying our address space (posix_spawn is a
 * vfork and exec in glibc): its own process group, default signals,
 * the spool file as stdin, our stderr as stdout, errfd as stderr, no
 * other descriptors. Returns the pid or -1 with errno. */
static pid_t
chain_spawn(char **argv, int spoolfd, int errfd, const struct chain_env *e)
{
	struct buf store = BUF_INIT;
	const int fds[3] = { spoolfd, 2, errfd };
	char **envp;
	pid_t pid = -1;
	int rc, e_;

	if (lseek(spoolfd, 0, SEEK_SET) < 0)
		return -1;
	envp = chain_envp(e, &store);
	rc = spawn_fds(&pid, argv, envp, fds, 3, 1);
	e_ = errno;
	free(envp);
	buf_free(&store);
	errno = e_;
	return rc < 0 ? -1 : pid;
}

/* Collect stderr lines: log each, keep the last. */
struct errlines {
	char cur[1024];
	size_t len;
	char last[1024];
};

static void
err_feed(struct errlines *el, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n') {
			char esc[1200];
			el->cur[el->len] = 0;
			if (el->len) {
				log_info("chain: %s", log_esc(esc, sizeof esc, el->cur, el->len));
				memcpy(el->last, el->cur, el->len + 1);
			}
			el->len = 0;
		} else if (el->len < sizeof el->cur - 1)
			el->cur[el->len++] = p[i];
	}
}

/* Read stderr until the child is gone (or the deadline); returns the
 * wait status, or -1 on timeout. A pidfd tells at once when the child
 * has exited (its stderr closes a moment before it can be reaped);
 * without one (kernels before 5.3), short sleeps. */
static int
collect(pid_t pid, int rfd, struct errlines *el, long long deadline)
{
	int st, open_ = 1, pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		long long left = deadline - now_ms();
		struct pollfd p[2];
		nfds_t np = 0;

		if (w == pid) {
			char b[512];
			ssize_t n;
			if (pidfd >= 0)
				close(pidfd);
			(void)set_nonblock(rfd);
			while ((n = read(rfd, b, sizeof b)) > 0)
				err_feed(el, b, (size_t)n);
			err_feed(el, "\n", 1);
			return st;
		}
		if (left <= 0) {
			if (pidfd >= 0)
				close(pidfd);
			return -1;
		}
		if (open_) {
			p[np].fd = rfd;
			p[np++].events = POLLIN;
		}
		if (pidfd >= 0) {
			p[np].fd = pidfd;
			p[np++].events = POLLIN;
		}
		if (np == 0) {
			usleep(1000);
			continue;
		}
		if (pidfd < 0 && left > 100)
			left = 100;
		if (poll(p, np, left > 1000000 ? 1000000 : (int)left) > 0 && open_ &&
		    (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			char b[512];
			ssize_t n = read(rfd, b, sizeof b);
			if (n > 0)
				err_feed(el, b, (size_t)n);
			else if (n == 0)
				open_ = 0;
		}
	}
}

/* "5.7.1 text", "550 5.7.1 text" or plain text -> the reply. */
static int
fail_reply(char *reply, size_t rlen, const char *last, int perm)
{
	char clean[400];
	int code = perm ? 554 : 451;
	const char *x = perm ? "5.6.0" : "4.3.0";

	sanitize(clean, sizeof clean, last);
	if (isdigit((unsigned char)clean[0]) && isdigit((unsigned char)clean[1]) &&
	    isdigit((unsigned char)clean[2]) && clean[3] == ' ' &&
	    clean[0] == (perm ? '5' : '4') && isdigit((unsigned char)clean[4]) &&
	    clean[5] == '.') {
		snprintf(reply, rlen, "%s", clean);
		return atoi(clean);
	}
	if (clean[0] == (perm ? '5' : '4') && clean[1] == '.' && strchr(clean, ' '))
		snprintf(reply, rlen, "%d %s", code, clean);
	else	/* not in the contract's form: do not show it to the client */
		snprintf(reply, rlen, "%d %s %s", code, x,
		    perm ? "Message rejected" : "Temporary failure, try again later");
	return code;
}

/* The chain's exit code -> the reply. */
static int
outcome(int code, const struct errlines *el, const struct chain_env *e, char *reply,
    size_t rlen)
{
	log_info("chain id=%s exit=%d", e->id, code);
	switch (code) {
	case 0:
		snprintf(reply, rlen, "250 2.0.0 Ok %s", e->id);
		return 250;
	case 100:
		return fail_reply(reply, rlen, el->last, 1);
	default:
		if (code != 111)
			log_warn("chain: unexpected exit %d, taken as temporary", code);
		return fail_reply(reply, rlen, el->last, 0);
	}
}

static void
feed_line(void *el, const char *line, size_t len)
{
	err_feed(el, line, len);
	err_feed(el, "\n", 1);
}

/* The chain's fork server runs it (-l, fork_servers): same contract,
 * the exit code comes as the conversation's last line. -2: the request
 * could not be sent (the caller execs the chain instead). */
static int
chain_via_server(int ctl, int spoolfd, const struct chain_env *e, long long timeout,
    char *reply, size_t rlen)
{
	struct errlines el;
	struct buf store = BUF_INIT;
	long long deadline = now_ms() + timeout * 1000;
	char **envp = chain_envp(e, &store);
	uint64_t nonce = 0;
	int conv = forkserver_request(ctl, FS_CHAIN, spoolfd, envp, deadline, &nonce), code;

	free(envp);
	buf_free(&store);
	if (conv < 0) {
		log_warnsys("chain: fork server");
		return -2;
	}
	memset(&el, 0, sizeof el);
	code = forkserver_collect(conv, nonce, feed_line, &el, deadline);
	close(conv);
	if (code < 0) {
		if (errno == ETIMEDOUT) {
			log_warn("chain: timeout after %llds", timeout);
			return fail_reply(reply, rlen, "4.3.0 Delivery timed out, try again later", 0);
		}
		log_warn("chain: the fork server gave no exit code");
		return fail_reply(reply, rlen, "", 0);
	}
	return outcome(code, &el, e, reply, rlen);
}

int
chain_run(char **argv, int spoolfd, const struct chain_env *e, long long timeout,
    char *reply, size_t rlen)
{
	struct errlines el;
	int pfd[2], st;
	pid_t pid;

	if (servers_chain_ctl() >= 0) {
		int code = chain_via_server(servers_chain_ctl(), spoolfd, e, timeout, reply, rlen);
		if (code != -2)
			return code;
	}
	memset(&el, 0, sizeof el);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		log_warnsys("chain: pipe");
		return fail_reply(reply, rlen, "", 0);
	}
	if ((pid = chain_spawn(argv, spoolfd, pfd[1], e)) < 0) {
		char why[600];
		int e_ = errno;
		log_warn("chain: cannot run %s: %s", argv[0], strerror(e_));
		close(pfd[0]);
		close(pfd[1]);
		snprintf(why, sizeof why, "4.3.0 cannot run %s: %s", argv[0], strerror(e_));
		return fail_reply(reply, rlen, why, 0);
	}
	close(pfd[1]);
	st = collect(pid, pfd[0], &el, now_ms() + timeout * 1000);
	close(pfd[0]);
	if (st == -1) {
		log_warn("chain: timeout after %llds, killed", timeout);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		(void)waitpid(pid, &st, 0);
		return fail_reply(reply, rlen, "4.3.0 Delivery timed out, try again later", 0);
	}
	if (WIFSIGNALED(st)) {
		log_warn("chain: killed by signal %d", WTERMSIG(st));
		return fail_reply(reply, rlen, "", 0);
	}
	return outcome(WEXITSTATUS(st), &el, e, reply, rlen);
}
