/* mxqueue: the queue runner and the queue's admin commands.
 * See doc/mxqueue.8. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mxqueue.h"

#define USAGE \
"usage: mxqueue [-c confdir] [-v] COMMAND [args]\n" \
"  run [-f] [-1] [-p pidfile]  the runner: a daemon; -f in the foreground\n" \
"                       (for a supervisor); -1 one pass, wait, exit (cron)\n" \
"  list [ID...]         the queue like mailq: id, age, size, sender,\n" \
"                       recipients with state, attempts, next try, last reply\n" \
"  summary              one screen: counts, ages, sizes, top destinations\n" \
"                       and errors\n" \
"  flush [-d DOMAIN] [ID...]  try now: all, one domain's or some entries'\n" \
"                       pending recipients (wakes the runner)\n" \
"  remove ID...         delete entries (no bounce)\n" \
"  requeue [-a] [ID...] pending again, from scratch: attempts 0, lifetime\n" \
"                       restarted; failed (not yet bounced) ones too\n" \
"  deliver ID...        one attempt at these entries now, in the foreground\n" \
"Exit 0 ok, 100 usage or permanent, 111 temporary.\n"

static void
usage(void)
{
	fputs(USAGE, stderr);
	exit(EXIT_PERM);
}

void
fmt_age(long long s, char *buf, size_t len)
{
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, len, "%llds", s);
	else if (s < 7200)
		snprintf(buf, len, "%lldm", s / 60);
	else if (s < 2 * 86400)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(buf, len, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

static void
drop_privileges(const struct settings *s)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return;
	if (!(pw = getpwnam(s->user)) || pw->pw_uid == 0)
		die(EXIT_TEMP, "runs as root and the settings user %s is unknown or root", s->user);
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		diesys(EXIT_TEMP, "cannot drop root privileges");
}

/* ---- walking the queue ---- */

typedef int (*entry_fn)(struct mxq *q, const char *id, struct queue_info *qi, void *ctx);

/* Call fn for every entry (or the ids given). Returns the number of
 * ids given that were not found. */
static int
walk(struct mxq *q, int nids, char **ids, entry_fn fn, void *ctx)
{
	struct queue_info qi;
	char err[600], dir[4200];
	int i, missing = 0;
	DIR *d;
	struct dirent *de;

	if (nids > 0) {
		for (i = 0; i < nids; i++) {
			if (!queue_id_ok(ids[i]) ||
			    queue_info_read(q->s.queuedir, ids[i], &qi, err, sizeof err) < 0) {
				fprintf(stderr, "mxqueue: %s: no such entry\n", ids[i]);
				missing++;
				continue;
			}
			fn(q, ids[i], &qi, ctx);
			queue_info_free(&qi);
		}
		return missing;
	}
	snprintf(dir, sizeof dir, "%s/info", q->s.queuedir);
	if (!(d = opendir(dir))) {
		if (errno == ENOENT)
			return 0;
		diesys(EXIT_TEMP, "cannot read %s", dir);
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !queue_id_ok(de->d_name))
			continue;
		if (queue_info_read(q->s.queuedir, de->d_name, &qi, err, sizeof err) < 0) {
			if (errno != ENOENT)
				fprintf(stderr, "mxqueue: %s\n", err);
			continue;
		}
		fn(q, de->d_name, &qi, ctx);
		queue_info_free(&qi);
	}
	closedir(d);
	return 0;
}

/* ---- list ---- */

static int
list_one(struct mxq *q, const char *id, struct queue_info *qi, void *ctx)
{
	long long now = (long long)time(NULL);
	char age[40], nxt[40], esc[800];
	size_t i;
	int *n = ctx;

	fmt_age(now - qi->created, age, sizeof age);
	printf("%s  %s  %lld  <%s>%s\n", id, age, qi->size,
	    log_esc(esc, sizeof esc, qi->sender, strlen(qi->sender)),
	    qi->warned ? "  (delay warning sent)" : "");
	for (i = 0; i < qi->nrcpt; i++) {
		const struct queue_rcpt *r = &qi->rcpt[i];
		if (r->state == QS_PENDING) {
			if (r->next_try <= now)
				snprintf(nxt, sizeof nxt, "now");
			else
				fmt_age(r->next_try - now, nxt, sizeof nxt);
			printf("    %-9s %s <%s>  attempts %d, next %s%s\n", queue_state_name(r->state),
			    queue_kind_name(r->kind), r->addr, r->attempts,
			    r->next_try <= now ? "" : "in ", nxt);
		} else
			printf("    %-9s %s <%s>  attempts %d\n", queue_state_name(r->state),
			    queue_kind_name(r->kind), r->addr, r->attempts);
		if (r->reply[0] && r->state != QS_DELIVERED)
			printf("        %s\n", log_esc(esc, sizeof esc, r->reply, strlen(r->reply)));
	}
	(*n)++;
	(void)q;
	return 0;
}

/* ---- summary ---- */

#define TOP 8
struct count {
	char key[200];
	long n;
};
struct summary {
	long entries, pending, failed, delivered, bounced, due, deferred;
	long long bytes, oldest;
	struct count dom[64], err[64];	/* bounded: the first 64 seen */
	int ndom, nerr;
	long domother, errother;
};

static void
count_add(struct count *c, int *n, long *other, const char *key)
{
	int i;

	for (i = 0; i < *n; i++)
		if (!strcmp(c[i].key, key)) {
			c[i].n++;
			return;
		}
	if (*n < 64) {
		strlcpy(c[*n].key, key, sizeof c[*n].key);
		c[(*n)++].n = 1;
	} else
		(*other)++;
}

static int
sum_one(struct mxq *q, const char *id, struct queue_info *qi, void *ctx)
{
	struct summary *s = ctx;
	long long now = (long long)time(NULL);
	size_t i;

	(void)q;
	(void)id;
	s->entries++;
	s->bytes += qi->size;
	if (s->oldest == 0 || qi->created < s->oldest)
		s->oldest = qi->created;
	for (i = 0; i < qi->nrcpt; i++) {
		const struct queue_rcpt *r = &qi->rcpt[i];
		char dom[300], e[200];
		switch (r->state) {
		case QS_PENDING:
			s->pending++;
			if (r->next_try <= now)
				s->due++;
			else
				s->deferred++;
			if (r->kind == QK_RELAY || r->kind == QK_FORWARD)
				addr_domain_of(r->addr, dom, sizeof dom);
			else
				strlcpy(dom, "(local)", sizeof dom);
			count_add(s->dom, &s->ndom, &s->domother, dom);
			if (r->reply[0]) {
				/* the reply without the host's details */
				snprintf(e, sizeof e, "%.60s", r->reply);
				count_add(s->err, &s->nerr, &s->errother, e);
			}
			break;
		case QS_FAILED: s->failed++; break;
		case QS_DELIVERED: s->delivered++; break;
		case QS_BOUNCED: s->bounced++; break;
		}
	}
	return 0;
}

static int
count_cmp(const void *a, const void *b)
{
	const struct count *x = a, *y = b;

	return (y->n > x->n) - (y->n < x->n);
}

static void
summary(struct mxq *q)
{
	struct summary s;
	char age[40];
	int i;

	memset(&s, 0, sizeof s);
	walk(q, 0, NULL, sum_one, &s);
	fmt_age(s.oldest ? (long long)time(NULL) - s.oldest : 0, age, sizeof age);
	printf("queue %s\n", q->s.queuedir);
	printf("entries %ld, %lld bytes, oldest %s\n", s.entries, s.bytes,
	    s.entries ? age : "-");
	printf("recipients: %ld pending (%ld due now, %ld deferred), %ld failed "
	    "(bounce owed), %ld delivered, %ld bounced\n", s.pending, s.due, s.deferred,
	    s.failed, s.delivered, s.bounced);
	qsort(s.dom, (size_t)s.ndom, sizeof s.dom[0], count_cmp);
	qsort(s.err, (size_t)s.nerr, sizeof s.err[0], count_cmp);
	if (s.ndom)
		printf("pending by destination:\n");
	for (i = 0; i < s.ndom && i < TOP; i++)
		printf("  %6ld  %s\n", s.dom[i].n, s.dom[i].key);
	if (s.nerr)
		printf("last errors:\n");
	for (i = 0; i < s.nerr && i < TOP; i++)
		printf("  %6ld  %s\n", s.err[i].n, s.err[i].key);
}

/* ---- flush, requeue, remove ---- */

struct change {
	const char *domain;	/* flush -d */
	int requeue;
	int changed, busy;
};

static int
change_one(struct mxq *q, const char *id, struct queue_info *qi, void *ctx)
{
	struct change *c = ctx;
	struct queue_info cur;
	char err[600], dom[300];
	size_t i;
	int fd, n = 0;

	(void)qi;
	if ((fd = queue_lock(q->s.queuedir, id, 0)) < 0) {
		if (errno == EWOULDBLOCK) {
			fprintf(stderr, "mxqueue: %s is being delivered right now; left alone\n", id);
			c->busy++;
		}
		return 0;
	}
	/* read again under the lock */
	if (queue_info_read(q->s.queuedir, id, &cur, err, sizeof err) < 0) {
		close(fd);
		return 0;
	}
	for (i = 0; i < cur.nrcpt; i++) {
		struct queue_rcpt *r = &cur.rcpt[i];
		if (c->requeue) {
			if (r->state != QS_PENDING && r->state != QS_FAILED)
				continue;
			r->state = QS_PENDING;
			r->attempts = 0;
			r->next_try = 0;
			n++;
			continue;
		}
		if (r->state != QS_PENDING)
			continue;
		if (c->domain) {
			if (r->kind != QK_RELAY && r->kind != QK_FORWARD)
				continue;
			addr_domain_of(r->addr, dom, sizeof dom);
			if (strcasecmp(dom, c->domain))
				continue;
		}
		r->next_try = 0;
		n++;
	}
	if (n && c->requeue) {
		cur.created = (long long)time(NULL);
		cur.warned = 0;
	}
	if (n && queue_info_write(q->s.queuedir, &cur, err, sizeof err) < 0)
		fprintf(stderr, "mxqueue: %s\n", err);
	else if (n) {
		c->changed++;
		if (c->requeue)
			printf("%s: requeued %d recipient%s\n", id, n, n == 1 ? "" : "s");
	}
	queue_info_free(&cur);
	close(fd);
	return 0;
}

static int
cmd_remove(struct mxq *q, int n, char **ids)
{
	char err[600];
	int i, fd, bad = 0;

	for (i = 0; i < n; i++) {
		if ((fd = queue_lock(q->s.queuedir, ids[i], 1)) < 0) {
			fprintf(stderr, "mxqueue: %s: %s\n", ids[i],
			    errno == ENOENT ? "no such entry" : strerror(errno));
			bad++;
			continue;
		}
		if (queue_remove(q->s.queuedir, ids[i], err, sizeof err) < 0) {
			fprintf(stderr, "mxqueue: %s\n", err);
			bad++;
		} else {
			printf("%s: removed\n", ids[i]);
			log_init("mxqueue", ids[i]);
			log_info("removed by the administrator");
		}
		close(fd);
	}
	return bad ? EXIT_PERM : 0;
}

int
main(int argc, char **argv)
{
	struct mxq q;
	const char *confopt = NULL, *cmd;
	char err[600];
	int c;
	ssize_t sl;

	log_init("mxqueue", NULL);
	memset(&q, 0, sizeof q);
	while ((c = getopt(argc, argv, "+c:vh")) != -1) {
		switch (c) {
		case 'c': confopt = optarg; break;
		case 'v': log_verbose++; break;
		case 'h': fputs(USAGE, stdout); return 0;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	optind = 1;
	if (settings_load(&q.s, settings_confdir(confopt), err, sizeof err) < 0)
		die(EXIT_TEMP, "%s", err);
	if ((sl = readlink("/proc/self/exe", q.self, sizeof q.self - 1)) > 0)
		q.self[sl] = 0;
	drop_privileges(&q.s);
	umask(077);

	if (!strcmp(cmd, "run")) {
		struct run_opts o;
		memset(&o, 0, sizeof o);
		while ((c = getopt(argc, argv, "f1p:")) != -1) {
			if (c == 'f')
				o.foreground = 1;
			else if (c == 'p')
				o.pidfile = optarg;
			else if (c == '1')
				o.once = 1;
			else
				usage();
		}
		if (optind != argc)
			usage();
		return runner(&q, &o);
	}
	if (!strcmp(cmd, "list")) {
		int n = 0, missing = walk(&q, argc - 1, argv + 1, list_one, &n);
		if (argc == 1)
			printf("%d entr%s in the queue\n", n, n == 1 ? "y" : "ies");
		return missing ? EXIT_PERM : 0;
	}
	if (!strcmp(cmd, "summary")) {
		if (argc != 1)
			usage();
		summary(&q);
		return 0;
	}
	if (!strcmp(cmd, "flush") || !strcmp(cmd, "requeue")) {
		struct change ch;
		int all = 0, missing;
		memset(&ch, 0, sizeof ch);
		ch.requeue = cmd[0] == 'r';
		while ((c = getopt(argc, argv, ch.requeue ? "a" : "d:")) != -1) {
			if (c == 'd')
				ch.domain = optarg;
			else if (c == 'a')
				all = 1;
			else
				usage();
		}
		if (ch.requeue && !all && optind == argc)
			usage();	/* requeue everything only when asked */
		if (ch.domain && optind != argc)
			usage();
		missing = walk(&q, argc - optind, argv + optind, change_one, &ch);
		runner_poke(q.s.queuedir);
		if (!ch.requeue)
			printf("flushed %d entr%s%s\n", ch.changed, ch.changed == 1 ? "y" : "ies",
			    ch.busy ? " (some were busy)" : "");
		return missing ? EXIT_PERM : 0;
	}
	if (!strcmp(cmd, "remove")) {
		if (argc < 2)
			usage();
		return cmd_remove(&q, argc - 1, argv + 1);
	}
	if (!strcmp(cmd, "deliver")) {
		int i, bad = 0;
		if (argc < 2)
			usage();
		q.force = 1;
		/* a server that resets the connection must not kill us mid-entry */
		signal(SIGPIPE, SIG_IGN);
		for (i = 1; i < argc; i++)
			if (entry_run(&q, argv[i]) < 0) {
				fprintf(stderr, "mxqueue: %s: busy or unreadable\n", argv[i]);
				bad++;
			}
		smtp_close(&q);
		return bad ? EXIT_TEMP : 0;
	}
	usage();
}
