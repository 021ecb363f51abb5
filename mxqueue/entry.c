/* entry.c: one queue entry, start to end of an attempt.
 *
 * Lock (flock on mess/ID, never waiting: a busy entry belongs to
 * someone else), read info/ID, try every pending recipient whose time
 * has come (all of them when forced): maildir and local kinds here,
 * relay and forward kinds by SMTP, grouped by domain (and Delivered-To
 * line) into transactions of at most MXQ_RCPT_MAX recipients. Then the
 * new state: 2xx delivered, 5xx failed, 4xx pending with the next try
 * after a back-off (retry_min doubling up to retry_max, the last one at
 * the end of queue_lifetime); a pending recipient past the lifetime
 * fails (5.4.7). Failed recipients get their bounce (queued as a new
 * entry first, then marked bounced); a delay warning once after
 * delay_warning. Finally info/ID is rewritten (tmp, fsync, rename,
 * fsync) or, when nothing is left, the entry removed. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mxqueue.h"

void
addr_domain_of(const char *addr, char *dom, size_t len)
{
	const char *at = strrchr(addr, '@');
	size_t i;

	strlcpy(dom, at ? at + 1 : "", len);
	for (i = 0; dom[i]; i++)
		dom[i] = (char)tolower((unsigned char)dom[i]);
}

long long
entry_backoff(const struct settings *s, int attempts)
{
	long long iv = s->retry_min;
	int i;

	for (i = 1; i < attempts && iv < s->retry_max; i++)
		iv *= 2;
	return iv < s->retry_max ? iv : s->retry_max;
}

long long
entry_due(const struct queue_info *qi, char *dom, size_t domlen)
{
	long long due = 0;
	size_t i;

	if (dom && domlen)
		dom[0] = 0;
	for (i = 0; i < qi->nrcpt; i++) {
		const struct queue_rcpt *r = &qi->rcpt[i];
		long long t;
		if (r->state == QS_FAILED)
			t = 1;		/* a bounce is owed: now */
		else if (r->state == QS_PENDING)
			t = r->next_try > 0 ? r->next_try : 1;
		else
			continue;
		if (due == 0 || t < due)
			due = t;
		if (dom && domlen && !dom[0] && r->state == QS_PENDING &&
		    (r->kind == QK_RELAY || r->kind == QK_FORWARD))
			addr_domain_of(r->addr, dom, domlen);
	}
	return due;
}

static int
has_8bit(int fd)
{
	unsigned char b[65536];
	off_t off = 0;
	ssize_t n, i;

	while ((n = pread(fd, b, sizeof b, off)) > 0) {
		for (i = 0; i < n; i++)
			if (b[i] & 0x80)
				return 1;
		off += n;
	}
	return 0;
}

/* The outcome of one attempt for r. */
static void
result(const struct mxq *q, const struct queue_info *qi, struct queue_rcpt *r,
    long long now, int code, const char *reply)
{
	char esc[MXQ_REPLY_MAX + 100];

	r->attempts++;
	r->last_try = now;
	free(r->reply);
	r->reply = xstrdup(reply);
	for (char *p = r->reply; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			*p = ' ';
	log_esc(esc, sizeof esc, reply, strlen(reply));
	if (code / 100 == 2) {
		r->state = QS_DELIVERED;
		r->next_try = 0;
		log_info("to=<%s> %s delivered: %s", r->addr, queue_kind_name(r->kind), esc);
	} else if (code / 100 == 5) {
		r->state = QS_FAILED;
		log_info("to=<%s> %s failed: %s", r->addr, queue_kind_name(r->kind), esc);
	} else {
		long long end = qi->created + q->s.queue_lifetime;
		r->next_try = now + entry_backoff(&q->s, r->attempts);
		if (r->next_try > end)
			r->next_try = end > now ? end : now;
		log_info("to=<%s> %s deferred (attempt %d, next in %llds): %s", r->addr,
		    queue_kind_name(r->kind), r->attempts, r->next_try - now, esc);
	}
}

static void
do_smtp(const struct mxq *q, struct queue_info *qi, int msgfd, char *due, long long now)
{
	struct smtp_rcpt sr[MXQ_RCPT_MAX];
	struct queue_rcpt *grp[MXQ_RCPT_MAX];
	struct smtp_msg m;
	/* the route of the last domain, kept for this worker's next entries
	 * (a minute at most) */
	static struct dest d;
	static char err[MXQ_REPLY_MAX], cached[300];
	static int rc;
	static long long when;
	char dom[300], dom2[300];
	int eightbit = -1;
	size_t i, j, n;

	for (i = 0; i < qi->nrcpt; i++) {
		struct queue_rcpt *r = &qi->rcpt[i];
		if (!due[i] || (r->kind != QK_RELAY && r->kind != QK_FORWARD))
			continue;
		addr_domain_of(r->addr, dom, sizeof dom);
		n = 0;
		for (j = i; j < qi->nrcpt && n < MXQ_RCPT_MAX; j++) {
			struct queue_rcpt *x = &qi->rcpt[j];
			if (!due[j] || (x->kind != QK_RELAY && x->kind != QK_FORWARD))
				continue;
			addr_domain_of(x->addr, dom2, sizeof dom2);
			if (strcmp(dom, dom2) || strcmp(x->dt, r->dt))
				continue;
			due[j] = 0;
			grp[n] = x;
			sr[n].addr = x->addr;
			sr[n].code = 0;
			sr[n].reply[0] = 0;
			n++;
		}
		if (strcmp(cached, dom) || rc != ROUTE_OK || now - when > 60) {
			rc = route_resolve(q, dom, &d, err, sizeof err);
			strlcpy(cached, dom, sizeof cached);
			when = now;
		}
		if (rc != ROUTE_OK) {
			for (j = 0; j < n; j++)
				result(q, qi, grp[j], now, rc == ROUTE_PERM ? 550 : 451, err);
			continue;
		}
		if (eightbit < 0)
			eightbit = has_8bit(msgfd);
		m.fd = msgfd;
		m.size = qi->size;
		m.sender = qi->sender;
		m.dt = r->dt;
		m.eightbit = eightbit;
		smtp_send(q, dom, &d, &m, sr, n);
		for (j = 0; j < n; j++)
			result(q, qi, grp[j], now, sr[j].code, sr[j].reply);
	}
}

/* Bounces and warnings owed. */
static void
notify(const struct mxq *q, struct queue_info *qi, int msgfd, long long now)
{
	char err[600];
	size_t i, nfail = 0, npend = 0;
	int dbl = 0, drop = 0;

	for (i = 0; i < qi->nrcpt; i++) {
		nfail += qi->rcpt[i].state == QS_FAILED;
		npend += qi->rcpt[i].state == QS_PENDING;
	}
	if (nfail) {
		const char *to = qi->sender;
		if (!qi->sender[0]) {	/* never bounce a bounce */
			dbl = 1;
			to = q->s.doublebounce_to;
			if (!strcmp(qi->mxid, "double-bounce"))
				drop = 1;
			for (i = 0; i < qi->nrcpt; i++)
				if (qi->rcpt[i].state == QS_FAILED &&
				    (!strcasecmp(qi->rcpt[i].orcpt, to) ||
				    !strcasecmp(qi->rcpt[i].addr, to)))
					drop = 1;
		}
		if (drop)
			log_warn("%s: a double bounce failed too; dropped (see the log above)",
			    qi->id);
		if (drop || bounce_queue(q, msgfd, qi, QS_FAILED, to, dbl, err, sizeof err) == 0) {
			for (i = 0; i < qi->nrcpt; i++)
				if (qi->rcpt[i].state == QS_FAILED)
					qi->rcpt[i].state = QS_BOUNCED;
		} else
			log_warn("%s: cannot queue the bounce (tried again later): %s", qi->id, err);
	}
	if (npend && q->s.delay_warning > 0 && !qi->warned && qi->sender[0] &&
	    now - qi->created >= q->s.delay_warning) {
		if (bounce_queue(q, msgfd, qi, QS_PENDING, qi->sender, 0, err, sizeof err) == 0)
			qi->warned = now;
		else
			log_warn("%s: cannot queue the delay warning: %s", qi->id, err);
	}
}

/* Work on the locked entry (fd: mess/ID, qi: its state); frees qi and
 * closes fd. */
static long long
entry_work(const struct mxq *q, const char *id, int fd, struct queue_info *qip)
{
	struct queue_info qi = *qip;
	char err[600], *due, age[40];
	long long now, left;
	size_t i, npend = 0, nfail = 0;

	now = (long long)time(NULL);
	due = xcalloc(qi.nrcpt + 1, 1);
	for (i = 0; i < qi.nrcpt; i++) {
		struct queue_rcpt *r = &qi.rcpt[i];
		due[i] = r->state == QS_PENDING && (q->force || r->next_try <= now);
	}
	/* local kinds */
	for (i = 0; i < qi.nrcpt; i++) {
		struct queue_rcpt *r = &qi.rcpt[i];
		char reply[MXQ_REPLY_MAX + 200];
		int rc;
		if (!due[i])
			continue;
		if (r->kind == QK_MAILDIR) {
			rc = local_maildir(q, fd, &qi, r, reply, sizeof reply);
			result(q, &qi, r, now, rc == 0 ? 250 : 451, reply);
			due[i] = 0;
		} else if (r->kind == QK_LOCAL) {
			rc = local_deliver(q, fd, &qi, r->addr, reply, sizeof reply);
			result(q, &qi, r, now, rc == 0 ? 250 : rc == EXIT_PERM ? 550 : 451, reply);
			due[i] = 0;
		}
	}
	do_smtp(q, &qi, fd, due, now);
	free(due);

	/* expired: the last attempt was made at the end of the lifetime */
	now = (long long)time(NULL);
	for (i = 0; i < qi.nrcpt; i++) {
		struct queue_rcpt *r = &qi.rcpt[i];
		if (r->state == QS_PENDING && r->attempts > 0 &&
		    now >= qi.created + q->s.queue_lifetime && r->last_try >= qi.created +
		    q->s.queue_lifetime - 1) {
			char reply[MXQ_REPLY_MAX + 200];
			fmt_age(now - qi.created, age, sizeof age);
			snprintf(reply, sizeof reply, "5.4.7 delivery time expired (%s in the queue); "
			    "last: %s", age, r->reply);
			free(r->reply);
			r->reply = xstrdup(reply);
			r->state = QS_FAILED;
			log_info("to=<%s> expired after %s", r->addr, age);
		}
	}
	notify(q, &qi, fd, now);

	for (i = 0; i < qi.nrcpt; i++) {
		npend += qi.rcpt[i].state == QS_PENDING;
		nfail += qi.rcpt[i].state == QS_FAILED;
	}
	if (!npend && !nfail) {
		if (queue_remove(q->s.queuedir, id, err, sizeof err) < 0) {
			log_warn("%s", err);
			left = -1;
		} else {
			log_info("done, removed from the queue");
			left = 0;
		}
	} else if (queue_info_write(q->s.queuedir, &qi, err, sizeof err) < 0) {
		log_warn("cannot update the state (it is tried again): %s", err);
		left = -1;
	} else
		left = entry_due(&qi, NULL, 0);
	queue_info_free(&qi);
	close(fd);
	return left;
}

/* Lock and read an entry. 0 ok (fd, qi), -1 busy, gone or unreadable. */
static int
entry_open(const struct mxq *q, const char *id, int *fd, struct queue_info *qi, int quiet)
{
	char err[600];

	if ((*fd = queue_lock(q->s.queuedir, id, 0)) < 0) {
		int e = errno;
		if (e == ENOENT && !quiet) {
			/* info/ID without mess/ID: never made by queue_put
			 * (message first) nor by queue_remove (info first);
			 * the message is gone, so is the entry */
			char p[4400];
			snprintf(p, sizeof p, "%s/info/%s", q->s.queuedir, id);
			if (unlink(p) == 0)
				log_warn("info/%s without its message file: removed", id);
		} else if (e != EWOULDBLOCK && e != ENOENT && !quiet)
			log_warnsys("cannot lock %s", id);
		errno = e;
		return -1;
	}
	if (queue_info_read(q->s.queuedir, id, qi, err, sizeof err) < 0) {
		int e = errno;
		close(*fd);
		if (e != ENOENT && !quiet)
			log_warn("%s", err);
		errno = e;
		return -1;
	}
	return 0;
}

long long
entry_run(const struct mxq *q, const char *id)
{
	struct queue_info qi;
	int fd;

	log_init("mxqueue", id);
	if (entry_open(q, id, &fd, &qi, 0) < 0)
		return errno == ENOENT ? 0 : -1;
	return entry_work(q, id, fd, &qi);
}

/* Is every due recipient of qi an SMTP one for domain dom (and is one
 * due)? Then it can use the open connection. */
static int
same_dest(const struct mxq *q, const struct queue_info *qi, const char *dom, long long now)
{
	char d[300];
	size_t i;
	int any = 0;

	for (i = 0; i < qi->nrcpt; i++) {
		const struct queue_rcpt *r = &qi->rcpt[i];
		if (r->state == QS_FAILED)
			return 0;
		if (r->state != QS_PENDING || (!q->force && r->next_try > now))
			continue;
		if (r->kind != QK_RELAY && r->kind != QK_FORWARD)
			return 0;
		addr_domain_of(r->addr, d, sizeof d);
		if (strcmp(d, dom))
			return 0;
		any = 1;
	}
	return any;
}

void
entry_batch(const struct mxq *q, const char *first, int max)
{
	char dir[4200];
	DIR *dp;
	struct dirent *de;
	int done = 0, looked = 0;

	(void)entry_run(q, first);
	snprintf(dir, sizeof dir, "%s/info", q->s.queuedir);
	while (done < max && smtp_cached()) {
		char dom[300];
		int found = 0;
		strlcpy(dom, smtp_cached(), sizeof dom);
		if (!(dp = opendir(dir)))
			break;
		while (done < max && looked < 1000 && (de = readdir(dp)) && smtp_cached() &&
		    !strcmp(smtp_cached(), dom)) {
			struct queue_info qi;
			int fd;
			if (de->d_name[0] == '.' || !queue_id_ok(de->d_name) ||
			    !strcmp(de->d_name, first))
				continue;
			looked++;
			if (entry_open(q, de->d_name, &fd, &qi, 1) < 0)
				continue;
			if (!same_dest(q, &qi, dom, (long long)time(NULL))) {
				queue_info_free(&qi);
				close(fd);
				continue;
			}
			log_init("mxqueue", de->d_name);
			(void)entry_work(q, de->d_name, fd, &qi);
			found = 1;
			done++;
		}
		closedir(dp);
		if (!found || looked >= 1000)
			break;
	}
	smtp_close(q);
}
