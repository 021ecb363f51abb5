/* servers.c: the fork servers of the sessions (setting fork_servers,
 * -l only; lib/forkserver.h, issue 7): relaycheck -p and ruleproc -p
 * (when CONFDIR/rules exists), each serving every session's policy
 * conversations in one process, and the chain, serving messages with
 * reused workers. Started once by the session server (or, when that
 * cannot run, by the listener), as the unprivileged user; sessions
 * inherit the control sockets. A server that dies is started again
 * after a second (after 2, 4 ... 64 s while that fails); meanwhile, and
 * for a chain that cannot serve,
 * sessions exec the programs as they do under tcpserver. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forkserver.h"
#include "log.h"
#include "smtpd.h"

extern char **environ;

enum { SRV_RELAYCHECK, SRV_RULEPROC, SRV_CHAIN, NSRV };

static struct server {
	const char *name;
	char **argv;		/* NULL: not wanted */
	int ctl;		/* -1: not running */
	pid_t pid;
	long long started;	/* ms */
	int fails;		/* starts failed in a row: the next waits longer */
} srv[NSRV] = {
	{ "relaycheck", NULL, -1, 0, 0, 0 },
	{ "ruleproc", NULL, -1, 0, 0, 0 },
	{ "chain", NULL, -1, 0, 0, 0 },
};

static void
start(struct server *v)
{
	v->started = now_ms();
	v->ctl = forkserver_start(v->argv, environ, &v->pid);
	v->fails = v->ctl >= 0 ? 0 : v->fails + 1;
	if (v->ctl >= 0)
		log_info("fork server %s started, pid %ld", v->name, (long)v->pid);
	else if (v == &srv[SRV_CHAIN])
		log_info("the chain (%s) does not run as a fork server: exec per message",
		    v->argv[0]);
	else
		log_warn("fork server %s did not start: exec per session", v->name);
}

void
servers_start(const struct settings *s, char **chain)
{
	int i;

	if (!s->fork_servers)
		return;
	srv[SRV_RELAYCHECK].argv = policy_prog_argv(smtpd_bindir(s), "relaycheck", s->confdir);
	if (smtpd_have_rules(s))
		srv[SRV_RULEPROC].argv = policy_prog_argv(smtpd_bindir(s), "ruleproc", s->confdir);
	srv[SRV_CHAIN].argv = chain;
	for (i = 0; i < NSRV; i++)
		if (srv[i].argv)
			start(&srv[i]);
	/* a chain that cannot serve is not asked again */
	if (srv[SRV_CHAIN].ctl < 0)
		srv[SRV_CHAIN].argv = NULL;
}

int
servers_reaped(pid_t pid, int status)
{
	int i;

	for (i = 0; i < NSRV; i++)
		if (srv[i].ctl >= 0 && srv[i].pid == pid) {
			log_warn("fork server %s (pid %ld) ended, status %d", srv[i].name,
			    (long)pid, status);
			close(srv[i].ctl);
			srv[i].ctl = -1;
			return 1;
		}
	return 0;
}

/* In the session server, whose worker pool reaps every child: which of
 * ours are gone (then started again by servers_tick). */
void
servers_check(void)
{
	struct pollfd p[NSRV];
	int i, n = 0, idx[NSRV];

	/* a server that ended closed its end of our control socket: one
	 * poll for all of them, not a kill(pid, 0) each (a zombie answers
	 * that too until it is reaped) */
	for (i = 0; i < NSRV; i++)
		if (srv[i].ctl >= 0) {
			idx[n] = i;
			p[n++] = (struct pollfd){ srv[i].ctl, 0, 0 };
		}
	if (n > 0 && poll(p, (nfds_t)n, 0) > 0)
		for (i = 0; i < n; i++)
			if (p[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
				struct server *v = &srv[idx[i]];
				log_warn("fork server %s (pid %ld) ended", v->name, (long)v->pid);
				close(v->ctl);
				v->ctl = -1;
			}
	servers_tick();
}

void
servers_tick(void)
{
	int i;

	/* again after 1 s, then 2, 4 ... 64 s while it fails */
	for (i = 0; i < NSRV; i++)
		if (srv[i].argv && srv[i].ctl < 0 &&
		    now_ms() - srv[i].started >= 1000LL << (srv[i].fails < 6 ? srv[i].fails : 6))
			start(&srv[i]);
}

int
servers_policy_ctl(const char *prog)
{
	return !strcmp(prog, "relaycheck") ? srv[SRV_RELAYCHECK].ctl :
	    !strcmp(prog, "ruleproc") ? srv[SRV_RULEPROC].ctl : -1;
}

int
servers_chain_ctl(void)
{
	return srv[SRV_CHAIN].ctl;
}
