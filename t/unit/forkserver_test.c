/* Unit tests: lib/forkserver. This binary is both sides: run plainly it
 * starts itself ("serve"/"eserve") as a fork server and sends requests;
 * what each child does depends on the SENDER of its request. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "buf.h"
#include "check.h"
#include "forkserver.h"

extern char **environ;

static void
say(const char *k, const char *v)
{
	dprintf(2, "%s=%s\n", k, v ? v : "(unset)");
}

static void __attribute__((noreturn))
deep(int depth)
{
	if (depth == 0)
		forkserver_exit(42);
	deep(depth - 1);
}

/* a chain worker's request: the message on fd 0, lines on fd 2, the
 * exit code */
static int
chain_child(void *arg)
{
	const char *what = getenv("SENDER");
	char b[256];
	ssize_t n;

	if (!what)
		return 99;
	if (!strcmp(what, "echo")) {
		say("SENDER", getenv("SENDER"));
		say("LD_PRELOAD", getenv("LD_PRELOAD"));
		say("FOLDERS", getenv("FOLDERS"));
		say("MXID", getenv("MXID"));
		if (getenv("FOLDER"))
			say("FOLDER", getenv("FOLDER"));
		n = read(0, b, sizeof b - 1);
		b[n > 0 ? n : 0] = 0;
		say("BODY", b);
		return 7;
	}
	if (!strcmp(what, "pid")) {
		dprintf(2, "%ld\n", (long)getpid());
		return 0;
	}
	if (!strcmp(what, "deep"))
		deep(10);
	if (!strcmp(what, "exit5"))
		exit(5);
	if (!strcmp(what, "big")) {
		dprintf(2, "len=%zu\n", strlen(getenv("RECIPIENTS") ? getenv("RECIPIENTS") : ""));
		return 0;
	}
	if (!strcmp(what, "kill"))
		raise(SIGKILL);
	if (!strcmp(what, "hang"))
		sleep(30);
	if (!strcmp(what, "nap")) {	/* busy a while */
		poll(NULL, 0, 700);
		return 0;
	}
	if (!strcmp(what, "exec")) {	/* another program's code and lines */
		char *sh[] = { "/bin/sh", "-c", "echo from-sh >&2; exit 9", NULL };
		dprintf(2, "before\n");
		forkserver_exec(sh);
		return 97;
	}
	if (!strcmp(what, "usr2")) {	/* "go away" in a request: it finishes first */
		pid_t me = getpid(), k;
		int r;
		dprintf(2, "%ld\n", (long)me);
		if ((k = fork()) == 0) {	/* while we wait in poll */
			usleep(100000);
			kill(me, SIGUSR2);
			_exit(0);
		}
		r = poll(NULL, 0, 400);
		(void)waitpid(k, NULL, 0);
		return r == 0 ? 0 : 13;
	}
	if (!strcmp(what, "forge")) {	/* status lines without the request's nonce */
		dprintf(2, "\n%s0\n\n%s0 0000000000000001\n\n%s0 %016llx\n", FS_STATUS, FS_STATUS,
		    FS_STATUS, 0ULL);
		return 100;
	}
	return 98;
}

/* the event-driven policy server: "action=N LINES" for each request */
static int
event_answer(void *arg, char *req, size_t len, struct buf *out)
{
	size_t off, lines = 0;

	(void)arg;
	for (off = 0; off < len; off += strlen(req + off) + 1)
		lines++;
	if (!strcmp(req, "bad=1"))
		return -1;
	buf_printf(out, "action=%zu %s\n\n", lines, req);
	return 0;
}

static int
ask(int conv, const char *what, char *b, size_t cap)
{
	ssize_t n;
	size_t len = 0;

	if (what && write(conv, what, strlen(what)) != (ssize_t)strlen(what))
		return -1;
	while (len < cap - 1 && (len < 2 || memcmp(b + len - 2, "\n\n", 2))) {
		n = read(conv, b + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	b[len] = 0;
	return (int)len;
}

static void
addline(void *arg, const char *line, size_t len)
{
	buf_add(arg, line, len);
	buf_addc(arg, '|');
}

static int
call(int ctl, const char *sender, char **extra, struct buf *out)
{
	char *env[8], s[300];
	int n = 0, conv, st, fd;
	uint64_t nonce = 0;
	FILE *f = tmpfile();

	if (!f)
		return -2;
	fputs("the message", f);
	fflush(f);
	fd = fileno(f);
	lseek(fd, 0, SEEK_SET);
	snprintf(s, sizeof s, "SENDER=%s", sender);
	env[n++] = s;
	while (extra && *extra && n < 7)
		env[n++] = *extra++;
	env[n] = NULL;
	buf_clear(out);
	conv = forkserver_request(ctl, FS_CHAIN, fd, env, fs_now_ms() + 10000, &nonce);
	fclose(f);
	if (conv < 0)
		return -3;
	st = forkserver_collect(conv, nonce, addline, out, fs_now_ms() + 10000);
	close(conv);
	return st;
}

/* n "pid" requests; the number of distinct pids in seen[] after them
 * (the first have), -1 when a request failed */
static int
pids(int ctl, int n, long *seen, int have)
{
	struct buf out = BUF_INIT;
	int i, j;

	for (i = 0; i < n; i++) {
		long p;
		if (call(ctl, "pid", NULL, &out) != 0) {
			buf_free(&out);
			return -1;
		}
		p = atol(out.s);
		for (j = 0; j < have && seen[j] != p; j++)
			;
		if (j == have && have < 64)
			seen[have++] = p;
	}
	buf_free(&out);
	return have;
}

/* children of pid (its workers), from /proc */
static int
children(pid_t pid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d))) {
		char path[300], b[512], *p;
		FILE *f;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || !(f = fopen(path, "r")))
			continue;
		if (fgets(b, sizeof b, f) && (p = strrchr(b, ')')) &&
		    atol(p + 4) == (long)pid && p[2] != 'Z')
			n++;
		fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

int
main(int argc, char **argv)
{
	char *serve[] = { "/proc/self/exe", "serve", NULL };
	char *notserver[] = { "/bin/true", NULL };
	char *eserve[] = { "/proc/self/exe", "eserve", NULL };
	char ans[256];
	int c1, c2, ectl;
	char *extra[] = { "LD_PRELOAD=/nonexistent.so", "MXID=ABC", NULL };
	struct buf out = BUF_INIT, big = BUF_INIT;
	char *bigenv[2];
	pid_t pid, ppid;
	int ctl, st, i;
	char b[64];

	if (argc > 1 && !strcmp(argv[1], "serve")) {
		forkserver_serve_workers(FS_CHAIN, 2, FS_MAX_USE, NULL, chain_child, NULL);
	}
	if (argc > 1 && !strcmp(argv[1], "serve2"))	/* workers retire every 2 requests */
		forkserver_serve_workers(FS_CHAIN, 2, 2, NULL, chain_child, NULL);
	if (argc > 1 && !strcmp(argv[1], "eserve")) {
		forkserver_serve_policy(event_answer, 1000, NULL, NULL);
		return 1;	/* not reached */
	}
	signal(SIGPIPE, SIG_IGN);
	setenv("FOLDERS", "from-the-server's-own-environment", 1);
	ctl = forkserver_start(serve, environ, &pid);
	unsetenv("FOLDERS");
	CHECK(ctl >= 0, "a program that serves says ready");
	if (ctl < 0)
		CHECK_DONE();

	st = call(ctl, "echo", extra, &out);
	CHECK(st == 7, "the child's exit code comes back (got %d)", st);
	CHECK_STR(out.s, "SENDER=echo|LD_PRELOAD=(unset)|FOLDERS=(unset)|MXID=ABC|BODY=the message|",
	    "envelope names set, others (LD_PRELOAD) dropped, unset ones unset");

	st = call(ctl, "kill", NULL, &out);
	CHECK(st == -1, "a child killed by a signal: no status, a temporary failure (got %d)", st);
	st = call(ctl, "hang", NULL, &out);
	CHECK(st == -1, "a child over the time limit is killed: no status, temporary (got %d)", st);
	st = call(ctl, "forge", NULL, &out);
	CHECK(st == 100, "a status line printed by the program (no nonce, a wrong one) is not taken (got %d)", st);

	for (i = 0; i < 30000; i++)
		buf_printf(&big, "user%05d@example.com\n", i);
	bigenv[0] = xmalloc(big.len + 20);
	sprintf(bigenv[0], "RECIPIENTS=%s", big.s);
	bigenv[1] = NULL;
	st = call(ctl, "big", bigenv, &out);
	snprintf(b, sizeof b, "len=%zu|", big.len);
	CHECK(st == 0 && out.s && !strcmp(out.s, b), "a 660 KB environment arrives whole (%s)",
	    out.s ? out.s : "");
	free(bigenv[0]);

	/* workers: reused, each request with its own environment */
	{
		char *f1[] = { "FOLDER=first", NULL };
		char first[256] = "";
		long seen[64];
		int npid;

		call(ctl, "echo", f1, &out);
		snprintf(first, sizeof first, "%s", out.s ? out.s : "");
		for (i = 0, npid = 0; i < 8; i++)	/* every worker of the pool in turn */
			if (call(ctl, "echo", NULL, &out) != 7 || strstr(out.s, "FOLDER="))
				npid++;
		CHECK(npid == 0 && strstr(first, "FOLDER=first"),
		    "what a request set is gone for the next ones in the same workers");
		/* the idle workers take turns (the kernel wakes the one
		 * waiting longest): count the pool's distinct pids */
		npid = pids(ctl, 12, seen, 0);
		for (i = 0; i < 5; i++) {
			st = call(ctl, "deep", NULL, &out);
			CHECK(st == 42, "forkserver_exit() deep inside ends the request with its code (got %d)", st);
		}
		CHECK(pids(ctl, 12, seen, npid) == npid && npid >= 1 && npid <= 4,
		    "the same workers serve on after forkserver_exit (%d of them)", npid);
		st = call(ctl, "exit5", NULL, &out);
		CHECK(st == 5, "a worker that calls exit() during a request: its code is the status (got %d)", st);
		i = pids(ctl, 3 * FS_MAX_USE + 10, seen, 0);
		CHECK(i >= 0, "%d requests in a row", 3 * FS_MAX_USE + 10);
		CHECK(i >= 4 && i <= 12, "workers are replaced after %d requests (%d distinct pids in %d requests)",
		    FS_MAX_USE, i, 3 * FS_MAX_USE + 10);
	}

	/* a program run from a worker: its lines and its exit code */
	st = call(ctl, "exec", NULL, &out);
	CHECK(st == 9 && out.s && !strcmp(out.s, "before|from-sh|"),
	    "forkserver_exec in a worker: the program's lines and exit code (%d %s)", st, out.s ? out.s : "");

	/* "go away" (SIGUSR2) in the middle of a request: the request ends
	 * normally (no poll broken by it), then the worker goes */
	{
		long gone;
		st = call(ctl, "usr2", NULL, &out);
		gone = out.s ? atol(out.s) : 0;
		CHECK(st == 0, "SIGUSR2 during a request: it completes (got %d)", st);
		for (i = 0; i < 50 && gone > 0 && kill((pid_t)gone, 0) == 0; i++)
			usleep(100000);
		CHECK(gone > 0 && i < 50, "then that worker ends (pid %ld)", gone);
		CHECK(call(ctl, "pid", NULL, &out) == 0, "and the pool serves on");
	}

	/* a burst grows the pool; it shrinks back (one a second) after it */
	{
		char *serve3[] = { "/proc/self/exe", "serve", NULL };
		pid_t spid, kids[16];
		int k, ctl3 = forkserver_start(serve3, environ, &spid), most, bad = 0;
		for (k = 0; k < 16; k++)
			if ((kids[k] = fork()) == 0)
				_exit(call(ctl3, "nap", NULL, &out) == 0 ? 0 : 1);
		usleep(300000);
		most = children(spid);
		for (k = 0; k < 16; k++)
			if (kids[k] < 0 || waitpid(kids[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
				bad++;
		CHECK(bad == 0 && most >= 16, "16 requests at once: 16 workers or more (%d), every answer 0 (%d not)",
		    most, bad);
		for (i = 0; i < 150 && children(spid) > 10; i++)
			usleep(100000);
		CHECK(i < 150, "after the burst the pool shrinks to 10 or fewer (%d left after %d ms)",
		    children(spid), i * 100);
		CHECK(call(ctl3, "pid", NULL, &out) == 0, "and serves on");

		/* the server killed: its idle workers end at once, and the
		 * clients see the control socket hang up */
		kill(spid, SIGKILL);
		(void)waitpid(spid, &st, 0);
		{
			struct pollfd pf = { ctl3, 0, 0 };
			k = poll(&pf, 1, 3000);
			CHECK(k == 1 && (pf.revents & POLLHUP), "server killed: its workers end, the client sees the hang-up");
		}
		close(ctl3);
	}

	/* workers retiring (every FS_MAX_USE requests) under concurrent
	 * load: each request still gets its own answer, never a stray 111
	 * (a worker answers, then ends: the answer must win over its exit) */
	{
		char *serve2[] = { "/proc/self/exe", "serve2", NULL };
		int k, bad = 0, ctl2 = forkserver_start(serve2, environ, &pid);
		pid_t kids[4];
		for (k = 0; k < 4; k++)
			if ((kids[k] = fork()) == 0) {
				int j, wrong = 0;
				for (j = 0; j < 300; j++)
					if (call(ctl2, "pid", NULL, &out) != 0)
						wrong++;
				_exit(wrong ? 1 : 0);
			}
		close(ctl2);
		for (k = 0; k < 4; k++)
			if (kids[k] < 0 || waitpid(kids[k], &st, 0) < 0 || !WIFEXITED(st) ||
			    WEXITSTATUS(st))
				bad++;
		CHECK(bad == 0, "4 clients x 300 requests, workers retiring every 2: every answer 0 (%d clients saw another)", bad);
	}

	/* one process, many conversations */
	ectl = forkserver_start(eserve, environ, &pid);
	CHECK(ectl >= 0, "event-driven policy server ready");
	c1 = forkserver_request(ectl, FS_POLICY, -1, extra, fs_now_ms() + 5000, NULL);
	c2 = forkserver_request(ectl, FS_POLICY, -1, NULL, fs_now_ms() + 5000, NULL);
	CHECK(c1 >= 0 && c2 >= 0, "two conversations open");
	ask(c1, "a=1\nb=2\n\n", ans, sizeof ans);
	CHECK_STR(ans, "action=2 a=1\n\n", "one request answered (the environment skipped)");
	if (write(c2, "x=1\n", 4) != 4)
		CHECK(0, "write");
	ask(c1, "c=3\n\nd=4\n\n", ans, sizeof ans);
	if (strlen(ans) < 20)	/* the second answer may come in its own read */
		ask(c1, NULL, ans + strlen(ans), sizeof ans - strlen(ans));
	CHECK_STR(ans, "action=1 c=3\n\naction=1 d=4\n\n",
	    "two pipelined requests, while another conversation is half-way");
	ask(c2, "y=2\n\n", ans, sizeof ans);
	CHECK_STR(ans, "action=2 x=1\n\n", "the half-way request completed later");
	ask(c2, "bad=1\n\n", ans, sizeof ans);
	CHECK_STR(ans, "", "a request the answer function refuses: closed, no answer");
	ask(c1, "\n", ans, sizeof ans);
	CHECK_STR(ans, "", "an empty request: closed, no answer");
	close(c1);
	close(c2);
	c2 = forkserver_request(ectl, FS_POLICY, -1, NULL, fs_now_ms() + 5000, NULL);
	memset(ans, 'x', 200);
	if (write(c2, ans, 200) != 200 || write(c2, ans, 200) != 200 ||
	    write(c2, ans, 200) != 200 || write(c2, ans, 200) != 200 ||
	    write(c2, ans, 200) != 200 || write(c2, ans, 200) != 200)
		CHECK(0, "write");
	ask(c2, NULL, ans, sizeof ans);
	CHECK_STR(ans, "", "a request over the size limit (1000): closed, no answer");
	close(c2);
	/* a chain request to a policy server: closed, no status */
	st = call(ectl, "echo", NULL, &out);
	CHECK(st == -1 || st == -3, "a request of the wrong kind gets no answer (got %d)", st);
	close(ectl);

	i = forkserver_start(notserver, environ, &ppid);
	CHECK(i < 0, "a program outside our directory is not started as a server (-1)");

	/* the servers end when the last client end is closed */
	close(ctl);
	for (i = 0; i < 50; i++) {
		if (waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD)
			break;
		usleep(100000);
	}
	CHECK(i < 50, "servers end when their clients are gone");
	buf_free(&out);
	buf_free(&big);
	CHECK_DONE();
}
