/* chain.c: hand an accepted message to the delivery chain.
 *
 * The chain gets the spool file as a seekable stdin, the envelope in
 * the environment (SENDER, RECIPIENTS, TCPREMOTEIP, TCPREMOTEHOST,
 * HELO, MXID), our stderr as its stdout, and a pipe as its stderr:
 * each line is logged, the last one is the reason on failure. The
 * chain runs in its own process group, killed whole on timeout.
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
#include <sys/wait.h>

#include "log.h"
#include "smtpd.h"

static void
chain_child(char **argv, int spoolfd, int errfd, const struct chain_env *e)
{
	child_defaults();
	(void)setpgid(0, 0);
	if (lseek(spoolfd, 0, SEEK_SET) < 0 || dup2(spoolfd, 0) < 0 ||
	    dup2(2, 1) < 0 || dup2(errfd, 2) < 0)
		_exit(111);
	closefrom(3);
	if (setenv("SENDER", e->sender, 1) || setenv("RECIPIENTS", e->rcpts->s, 1) ||
	    setenv("TCPREMOTEIP", e->ip, 1) || setenv("HELO", e->helo, 1) ||
	    setenv("MXID", e->id, 1))
		_exit(111);
	if (e->host[0] ? setenv("TCPREMOTEHOST", e->host, 1) : unsetenv("TCPREMOTEHOST"))
		_exit(111);
	execvp(argv[0], argv);
	fprintf(stderr, "4.3.0 cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(111);
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
 * wait status, or -1 on timeout. */
static int
collect(pid_t pid, int rfd, struct errlines *el, long long deadline)
{
	int st, open_ = 1;

	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		long long left = deadline - now_ms();

		if (w == pid) {
			char b[512];
			ssize_t n;
			(void)set_nonblock(rfd);
			while ((n = read(rfd, b, sizeof b)) > 0)
				err_feed(el, b, (size_t)n);
			err_feed(el, "\n", 1);
			return st;
		}
		if (left <= 0)
			return -1;
		if (open_) {
			struct pollfd p = { rfd, POLLIN, 0 };
			if (poll(&p, 1, left > 100 ? 100 : (int)left) > 0) {
				char b[512];
				ssize_t n = read(rfd, b, sizeof b);
				if (n > 0)
					err_feed(el, b, (size_t)n);
				else if (n == 0)
					open_ = 0;
			}
		} else
			usleep(20000);
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

int
chain_run(char **argv, int spoolfd, const struct chain_env *e, long long timeout,
    char *reply, size_t rlen)
{
	struct errlines el;
	int pfd[2], st;
	pid_t pid;

	memset(&el, 0, sizeof el);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		log_warnsys("chain: pipe");
		return fail_reply(reply, rlen, "", 0);
	}
	if ((pid = fork()) < 0) {
		log_warnsys("chain: fork");
		close(pfd[0]);
		close(pfd[1]);
		return fail_reply(reply, rlen, "", 0);
	}
	if (pid == 0)
		chain_child(argv, spoolfd, pfd[1], e);
	(void)setpgid(pid, pid);
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
	switch (WEXITSTATUS(st)) {
	case 0:
		snprintf(reply, rlen, "250 2.0.0 Ok %s", e->id);
		return 250;
	case 100:
		return fail_reply(reply, rlen, el.last, 1);
	default:
		if (WEXITSTATUS(st) != 111)
			log_warn("chain: unexpected exit %d, taken as temporary", WEXITSTATUS(st));
		return fail_reply(reply, rlen, el.last, 0);
	}
}
