/* runner.c: the queue runner.
 *
 * A pass reads info/ in directory order (streaming: nothing is
 * collected) and starts a worker process per entry that is due, at most
 * queue_workers at once and at most queue_per_destination for the
 * domain of an entry's first pending SMTP recipient. When every worker
 * slot is busy it waits for one to finish and goes on with the pass.
 * Between passes it sleeps until the earliest next try it saw, at most
 * queue_scan seconds, or until a byte arrives in QUEUEDIR/trigger (a
 * FIFO it creates; queue_put and "mxqueue flush" write to it).
 *
 * A small fixed-size cache (id hash, inode, mtime -> next try, domain
 * hash) spares re-reading unchanged info files on every pass: an info
 * file is always replaced by rename, so a new inode means new content.
 *
 * Housekeeping at start and every hour: tmp/ files older than 36 hours
 * and mess/ files without info/ older than a day are removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mxqueue.h"

#define CACHE_SLOTS 16384
#define TMP_MAXAGE (36 * 3600)
#define ORPHAN_MAXAGE (24 * 3600)

struct cslot {
	uint64_t idh;
	ino_t ino;
	long long mtime_ns;
	long long due;		/* 0: nothing to do */
	uint32_t domh;
};

struct worker {
	pid_t pid;
	uint64_t idh;
	uint32_t domh;
	char id[128];
};

static volatile sig_atomic_t got_term, got_hup;
static int sigpipe_w = -1;

static void
on_signal(int sig)
{
	int e = errno;

	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	if (sig == SIGHUP)
		got_hup = 1;
	if (sigpipe_w >= 0)
		(void)!write(sigpipe_w, "", 1);
	errno = e;
}

static uint64_t
hash64(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct state {
	struct mxq *q;
	struct cslot *cache;
	struct worker *w;
	size_t nw, maxw;
	int sigr;		/* self-pipe, read end */
	int trig;		/* trigger FIFO, read end */
	int trig_keep;		/* its write end, kept so it never reports EOF */
	long long next;		/* earliest next try seen */
	int skipped;		/* a due entry waits for a slot */
	int started;		/* workers started in this pass */
};

static void
note_due(struct state *st, long long due)
{
	if (due > 0 && (st->next == 0 || due < st->next))
		st->next = due;
}

static void
reap(struct state *st)
{
	int status;
	pid_t pid;
	size_t i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < st->nw; i++)
			if (st->w[i].pid == pid)
				break;
		if (i == st->nw)
			continue;
		if (WIFSIGNALED(status))
			log_warn("worker for %s died of signal %d", st->w[i].id, WTERMSIG(status));
		/* A changed entry has a new info file (new inode): the next
		 * pass reads it again. One that did not change (busy with
		 * another process, or the worker failed) waits a second
		 * rather than being tried again at once. */
		{
			struct cslot *c = &st->cache[st->w[i].idh % CACHE_SLOTS];
			if (c->idh == st->w[i].idh)
				c->due = (long long)time(NULL) + 1;
		}
		st->w[i] = st->w[--st->nw];
		st->skipped = 1;	/* a slot is free: look again */
	}
}

static void
drain(int fd)
{
	char b[256];

	while (read(fd, b, sizeof b) > 0)
		;
}

/* Wait for a signal, a trigger or the timeout (ms, -1 none). */
static void
wait_event(struct state *st, long long ms)
{
	struct pollfd p[2];
	int n = 0;

	p[n].fd = st->sigr;
	p[n++].events = POLLIN;
	if (st->trig >= 0) {
		p[n].fd = st->trig;
		p[n++].events = POLLIN;
	}
	if (ms > 3600000)
		ms = 3600000;
	if (poll(p, (nfds_t)n, (int)ms) > 0) {
		if (p[0].revents)
			drain(st->sigr);
		if (n > 1 && p[1].revents) {
			drain(st->trig);
			st->skipped = 1;
		}
	}
	reap(st);
}

static size_t
dom_active(const struct state *st, uint32_t domh)
{
	size_t i, n = 0;

	for (i = 0; i < st->nw; i++)
		n += domh && st->w[i].domh == domh;
	return n;
}

static void
start_worker(struct state *st, const char *id, uint64_t idh, uint32_t domh)
{
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		log_warnsys("cannot fork a worker for %s", id);
		st->skipped = 1;
		return;
	}
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		close(st->sigr);
		close(sigpipe_w);
		if (st->trig >= 0)
			close(st->trig);
		if (st->trig_keep >= 0)
			close(st->trig_keep);
		entry_batch(st->q, id, MXQ_BATCH);
		_exit(0);
	}
	st->w[st->nw].pid = pid;
	st->w[st->nw].idh = idh;
	st->w[st->nw].domh = domh;
	strlcpy(st->w[st->nw].id, id, sizeof st->w[st->nw].id);
	st->nw++;
}

/* One pass over info/. */
static void
pass(struct state *st)
{
	char dir[4200], dom[300], err[600];
	DIR *d;
	struct dirent *de;
	long long now = (long long)time(NULL);
	size_t i;

	st->next = 0;
	st->skipped = 0;
	st->started = 0;
	snprintf(dir, sizeof dir, "%s/info", st->q->s.queuedir);
	if (!(d = opendir(dir))) {
		if (errno != ENOENT)
			log_warnsys("cannot read %s", dir);
		return;
	}
	while ((de = readdir(d)) && !got_term) {
		struct stat sb;
		struct cslot *c;
		uint64_t idh;
		long long due;
		uint32_t domh;
		int busy = 0;

		if (de->d_name[0] == '.' || !queue_id_ok(de->d_name))
			continue;
		idh = hash64(de->d_name);
		for (i = 0; i < st->nw; i++)
			if (st->w[i].idh == idh && !strcmp(st->w[i].id, de->d_name))
				busy = 1;
		if (busy)
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		c = &st->cache[idh % CACHE_SLOTS];
		if (c->idh == idh && c->ino == sb.st_ino &&
		    c->mtime_ns == (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec) {
			due = c->due;
			domh = c->domh;
		} else {
			struct queue_info qi;
			if (queue_info_read(st->q->s.queuedir, de->d_name, &qi, err, sizeof err) < 0) {
				/* broken (info files are replaced atomically, so
				 * never half-written): say so now and then */
				if (errno != ENOENT)
					log_warn("%s (looked at again in %llds)", err,
					    st->q->s.queue_scan);
				due = now + st->q->s.queue_scan;
				domh = 0;
			} else {
				due = entry_due(&qi, dom, sizeof dom);
				domh = dom[0] ? (uint32_t)hash64(dom) | 1 : 0;
				queue_info_free(&qi);
			}
			c->idh = idh;
			c->ino = sb.st_ino;
			c->mtime_ns = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
			c->due = due;
			c->domh = domh;
		}
		if (due == 0)
			continue;
		if (!st->q->force && due > now) {
			note_due(st, due);
			continue;
		}
		if (dom_active(st, domh) >= (size_t)st->q->s.queue_per_destination) {
			st->skipped = 1;
			continue;
		}
		while (st->nw >= st->maxw && !got_term)
			wait_event(st, 1000);
		if (got_term)
			break;
		start_worker(st, de->d_name, idh, domh);
		st->started++;
		reap(st);
	}
	closedir(d);
}

static void
clean_dir(const char *qdir, const char *sub, long maxage, int orphans)
{
	char p[4200], ip[4400];
	DIR *d;
	struct dirent *de;
	struct stat sb;
	time_t now = time(NULL);

	snprintf(p, sizeof p, "%s/%s", qdir, sub);
	if (!(d = opendir(p)))
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode) || now - sb.st_mtime < maxage)
			continue;
		if (orphans) {
			snprintf(ip, sizeof ip, "%s/info/%s", qdir, de->d_name);
			if (access(ip, F_OK) == 0 || errno != ENOENT)
				continue;
		}
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			log_info("removed %s %s/%s", orphans ? "orphan" : "leftover", sub, de->d_name);
	}
	closedir(d);
}

void
runner_clean(const char *qdir)
{
	clean_dir(qdir, "tmp", TMP_MAXAGE, 0);
	clean_dir(qdir, "mess", ORPHAN_MAXAGE, 1);
}

void
runner_poke(const char *qdir)
{
	char p[4200];
	struct stat sb;
	int fd;

	snprintf(p, sizeof p, "%s/trigger", qdir);
	if ((fd = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
		return;
	if (fstat(fd, &sb) == 0 && S_ISFIFO(sb.st_mode))
		(void)!write(fd, "", 1);
	close(fd);
}

static int
open_trigger(struct state *st)
{
	char p[4200];
	struct stat sb;

	snprintf(p, sizeof p, "%s/trigger", st->q->s.queuedir);
	if (mkfifo(p, 0622) < 0 && errno != EEXIST) {
		log_warnsys("cannot make %s (no wake-ups; scanning every %llds)", p,
		    st->q->s.queue_scan);
		return -1;
	}
	(void)chmod(p, 0622);	/* deliver, as another user, may write */
	if ((st->trig = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 ||
	    fstat(st->trig, &sb) < 0 || !S_ISFIFO(sb.st_mode)) {
		log_warn("%s is not a FIFO; scanning every %llds", p, st->q->s.queue_scan);
		if (st->trig >= 0)
			close(st->trig);
		st->trig = -1;
		return -1;
	}
	st->trig_keep = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	return 0;
}

int
runner(struct mxq *q, const struct run_opts *o)
{
	struct state st;
	struct sigaction sa;
	int sp[2];
	long long last_clean = 0;
	int once_passes = 0;
	char sub[4200];

	memset(&st, 0, sizeof st);
	st.q = q;
	st.trig = st.trig_keep = -1;
	st.maxw = (size_t)q->s.queue_workers;
	st.w = xcalloc(st.maxw + 1, sizeof *st.w);
	st.cache = xcalloc(CACHE_SLOTS, sizeof *st.cache);
	snprintf(sub, sizeof sub, "%s/info", q->s.queuedir);
	if (mkdir(q->s.queuedir, 0700) < 0 && errno != EEXIST)
		diesys(EXIT_TEMP, "cannot make %s", q->s.queuedir);
	for (const char *const *s = (const char *const[]){ "tmp", "mess", "info", NULL }; *s; s++) {
		snprintf(sub, sizeof sub, "%s/%s", q->s.queuedir, *s);
		if (mkdir(sub, 0700) < 0 && errno != EEXIST)
			diesys(EXIT_TEMP, "cannot make %s", sub);
	}
	if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0)
		diesys(EXIT_TEMP, "pipe");
	st.sigr = sp[0];
	sigpipe_w = sp[1];
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (!o->once) {
		if (!o->foreground) {
			pid_t pid = fork();
			if (pid < 0)
				diesys(EXIT_TEMP, "fork");
			if (pid > 0)
				_exit(0);
			(void)setsid();
		}
		if (o->pidfile) {
			FILE *f = fopen(o->pidfile, "w");
			if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0)
				diesys(EXIT_TEMP, "cannot write %s", o->pidfile);
		}
		open_trigger(&st);
		log_info("runner started: %lld workers, %lld per destination, queue %s",
		    q->s.queue_workers, q->s.queue_per_destination, q->s.queuedir);
	}
	while (!got_term) {
		long long now = (long long)time(NULL), ms;
		if (got_hup) {
			/* new settings for the workers started from now on (the
			 * queue directory and the limits of this process stay) */
			struct settings ns;
			char err[600];
			got_hup = 0;
			if (settings_load(&ns, q->s.confdir, err, sizeof err) < 0)
				log_warn("SIGHUP: settings not reloaded: %s", err);
			else {
				strlcpy(ns.queuedir, q->s.queuedir, sizeof ns.queuedir);
				settings_free(&q->s);
				q->s = ns;
				log_info("SIGHUP: settings reloaded");
			}
		}
		if (now - last_clean >= 3600) {
			runner_clean(q->s.queuedir);
			last_clean = now;
		}
		pass(&st);
		if (o->once) {
			/* wait, then once more for what the workers queued
			 * (bounces, local retries due now) */
			while (st.nw > 0 && !got_term)
				wait_event(&st, 1000);
			if (++once_passes >= 5 || st.started == 0)
				break;
			continue;
		}
		/* sleep until the next due entry, a trigger, or a free slot */
		now = (long long)time(NULL);
		ms = q->s.queue_scan * 1000;
		if (st.next > 0 && (st.next - now) * 1000 < ms)
			ms = st.next > now ? (st.next - now) * 1000 : 0;
		if (st.skipped)
			ms = st.nw ? ms : 1000;	/* retried as workers finish */
		if (st.skipped && st.nw) {
			/* wait for a worker (or anything else) */
			st.skipped = 0;
			wait_event(&st, ms);
			continue;
		}
		if (ms > 0)
			wait_event(&st, ms);
	}
	/* let the workers finish what they started */
	while (st.nw > 0) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0)
			break;
		for (size_t i = 0; i < st.nw; i++)
			if (st.w[i].pid == pid) {
				st.w[i] = st.w[--st.nw];
				break;
			}
	}
	if (!o->once)
		log_info("runner stopped");
	free(st.w);
	free(st.cache);
	return 0;
}
