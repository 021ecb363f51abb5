/* deliver: local delivery into Maildirs; everything else into the queue.
 * See doc/deliver.8 for the contract (envelope, exit codes, folders). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>

#include "deliver.h"
#include "fdio.h"
#include "forkserver.h"
#include "log.h"
#include "queue.h"

#define USAGE "usage: deliver [-c confdir] [-f sender] [-F folder] [-tDxv] [recipient ...]\n" \
	"  envelope from SENDER and RECIPIENTS (one a line) unless given here;\n" \
	"  the message on stdin. Exit 0 done, 100 permanent, 111 temporary\n" \
	"  (-x: 0, 67 no such user / 100 other permanent, 75 temporary).\n"

static int sysexits;		/* -x */

static int
exit_code(int code, const char *reason)
{
	if (!sysexits || code == 0)
		return code;
	if (code == EXIT_TEMP)
		return 75;	/* EX_TEMPFAIL */
	if (!strncmp(reason, "5.1.1", 5))
		return 67;	/* EX_NOUSER */
	return 100;
}

/* The last line of stderr is the reason: "5.x.y text" or "4.x.y text". */
static void __attribute__((noreturn))
finish(int code, const char *reason)
{
	fflush(stderr);
	fprintf(stderr, "%s\n", reason);
	fflush(stderr);
	forkserver_exit(exit_code(code, reason));
}

static void
on_alarm(int sig)
{
	static const char m[] = "4.3.0 delivery timed out\n";

	(void)sig;
	(void)!write(2, m, sizeof m - 1);
	_exit(sysexits ? 75 : EXIT_TEMP);
}

static void
drop_privileges(const struct settings *s)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return;
	if (!(pw = getpwnam(s->user)) || pw->pw_uid == 0)
		finish(EXIT_TEMP, "4.3.5 deliver runs as root and the settings user is unknown or root");
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		finish(EXIT_TEMP, "4.3.0 cannot drop root privileges");
}

/* The sender as it goes into Return-Path: parsed when it parses; MDA
 * use may hand odd but harmless strings (no blanks, brackets, controls). */
static const char *
check_sender(const char *in, char *out, size_t outlen)
{
	struct addr a;
	const char *p;

	if (!*in || !strcmp(in, "<>")) {
		out[0] = 0;
		return NULL;
	}
	if (!addr_parse_path(in, strlen(in), &a, 1, 1, NULL)) {
		strlcpy(out, a.full, outlen);
		return NULL;
	}
	if (strlen(in) > ADDR_PATH_MAX)
		return "5.1.7 sender address too long";
	for (p = in; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("<>\\\"", *p))
			return "5.1.7 bad sender address syntax";
	strlcpy(out, in, outlen);
	return NULL;
}

/* FOLDERS: "recipient<TAB>folder" lines (ruleproc's folder action). */
static const char *
folder_for(const char *folders, const char *key, char *buf, size_t len)
{
	const char *p = folders, *e, *sp;

	while (p && *p) {
		e = strchr(p, '\n');
		/* "addr<TAB>Folder" (ruleproc), or "addr Folder" by hand */
		sp = memchr(p, '\t', e ? (size_t)(e - p) : strlen(p));
		if (!sp)
			sp = memchr(p, ' ', e ? (size_t)(e - p) : strlen(p));
		if (sp && (size_t)(sp - p) == strlen(key) && !strncasecmp(p, key, strlen(key))) {
			size_t n = e ? (size_t)(e - sp - 1) : strlen(sp + 1);
			if (n >= len)
				n = len - 1;
			memcpy(buf, sp + 1, n);
			buf[n] = 0;
			return buf;
		}
		p = e ? e + 1 : NULL;
	}
	return NULL;
}

static void
set_folders(struct rcpt *r, const char *folder, int tagfolders)
{
	char norm[MAILDIR_FOLDER_MAX + 1], esc[400];
	int optional = 0;
	size_t j;

	if (!folder && tagfolders && r->tag[0]) {
		folder = r->tag;	/* user+tag: the folder "tag", if it exists */
		optional = 1;
	}
	if (!folder)
		return;
	if (maildir_folder_name(folder, norm, sizeof norm) < 0) {
		if (!optional)
			log_warn("rcpt=<%s> unusable folder name %s, delivering to INBOX", r->key,
			    log_esc(esc, sizeof esc, folder, strlen(folder)));
		return;
	}
	for (j = 0; j < r->nt; j++)
		if (r->t[j].kind == T_MAILDIR) {
			free(r->t[j].folder);
			r->t[j].folder = xstrdup(norm);
			r->t[j].folder_optional = optional;
		}
}

static int
open_table(struct table *t, const char *confdir, const char *name)
{
	if (table_open(t, confdir, name) == 0)
		return 1;
	log_warnsys("cannot open %s/%s.cdb", confdir, name);
	return 0;
}

/* A fork server's worker keeps the settings and tables from one
 * delivery to the next and reads them again only when the settings
 * file or the configuration directory (mkcdb renames new tables into
 * it) has changed: a few stats instead of a parse and two mappings a
 * message. Exec'ed, each delivery reads them once, as always. */
static struct {
	int on, loaded;
	char *confdir;
	struct stat set_st, dir_st;
	struct settings s;
	struct tables tb;
} kept;

static void
stat_conf(const char *confdir, struct stat *set_st, struct stat *dir_st)
{
	char p[4200];

	snprintf(p, sizeof p, "%s/settings", confdir);
	if (stat(p, set_st) < 0)
		memset(set_st, 0, sizeof *set_st);	/* none: the defaults */
	if (stat(confdir, dir_st) < 0)
		memset(dir_st, 0, sizeof *dir_st);
}

static void
load_conf(const char *confopt, struct settings *s, struct tables *tb)
{
	struct stat set_st, dir_st;
	const char *confdir;
	char err[600];

	if (kept.on && !kept.confdir)
		kept.confdir = xstrdup(settings_confdir(confopt));
	confdir = kept.on ? kept.confdir : settings_confdir(confopt);
	if (kept.on) {
		stat_conf(confdir, &set_st, &dir_st);	/* before reading: a change after is seen next time */
		if (kept.loaded && stat_same(&set_st, &kept.set_st) && stat_same(&dir_st, &kept.dir_st)) {
			*s = kept.s;
			*tb = kept.tb;
			return;
		}
		if (kept.loaded) {
			table_close(&kept.tb.domains);
			table_close(&kept.tb.mailboxes);
			settings_free(&kept.s);
			kept.loaded = 0;
		}
	}
	if (settings_load(s, confdir, err, sizeof err) < 0) {
		log_warn("%s", err);
		finish(EXIT_TEMP, "4.3.5 cannot load the settings");
	}
	memset(tb, 0, sizeof *tb);
	tb->have_domains = open_table(&tb->domains, s->confdir, "domains");
	tb->have_mailboxes = open_table(&tb->mailboxes, s->confdir, "mailboxes");
	if (kept.on) {
		kept.s = *s;
		kept.tb = *tb;
		kept.set_st = set_st;
		kept.dir_st = dir_st;
		kept.loaded = 1;
	}
}

/* Give everything back (a clean LeakSanitizer run; exit would do). */
static void
free_all(struct settings *s, struct tables *tb, struct rcpt *r, size_t nr,
    struct msg *m, struct buf *rlist, int rootfd)
{
	size_t i, j;

	for (i = 0; i < nr; i++) {
		for (j = 0; j < r[i].nt; j++)
			target_free(&r[i].t[j]);
		free(r[i].t);
	}
	free(r);
	for (i = 0; i < m->ndt; i++)
		free(m->dt[i]);
	free(m->dt);
	free(m->skip);
	if (m->fd > 0)
		close(m->fd);
	if (rootfd >= 0)
		close(rootfd);
	buf_free(rlist);
	if (kept.on)
		return;	/* the settings and tables are kept for the next delivery */
	table_close(&tb->domains);
	table_close(&tb->mailboxes);
	settings_free(s);
}

struct dopts {
	const char *confopt, *sender_in, *folder;
	int tagfolders, percopy;
	char **rcpts;		/* given as arguments, else RECIPIENTS */
	int nrcpts;
};

static int deliver_one(void *arg);

int
main(int argc, char **argv)
{
	struct dopts o;
	int c;

	memset(&o, 0, sizeof o);
	log_init("deliver", getenv("MXID"));
	while ((c = getopt(argc, argv, "c:f:F:tDxvh")) != -1) {
		switch (c) {
		case 'c': o.confopt = optarg; break;
		case 'f': o.sender_in = optarg; break;
		case 'F': o.folder = optarg; break;
		case 't': o.tagfolders = 1; break;
		case 'D': o.percopy = 1; break;
		case 'x': sysexits = 1; break;
		case 'v': log_verbose++; break;
		case 'h': fputs(USAGE, stdout); return 0;
		default:
			fputs(USAGE, stderr);
			finish(EXIT_PERM, "5.3.5 deliver: usage error");
		}
	}
	o.rcpts = argv + optind;
	o.nrcpts = argc - optind;
	/* a fork server (smtpd-lite -l, ruleproc): workers run one delivery
	 * after another, each as if exec'ed with these arguments, its
	 * envelope set by the request; settings and tables are read per
	 * message as always */
	if (forkserver_fd() >= 0) {
		kept.on = 1;
		forkserver_serve_workers(FS_CHAIN, 0, FS_MAX_USE, NULL, deliver_one, &o);
	}
	return deliver_one(&o);
}

/* One delivery: the message on fd 0, the envelope from o and the
 * environment. Returns the exit code (or finish() ends it). */
static int
deliver_one(void *arg)
{
	const struct dopts *o = arg;
	struct settings s;
	struct tables tb;
	struct local_ctx lc;
	struct msg m;
	struct rcpt *r = NULL;
	size_t nr = 0, i, j;
	const char *sender_in = o->sender_in, *folder = o->folder, *why;
	char err[600], sender[ADDR_PATH_MAX + 1], esc[700];
	int tagfolders = o->tagfolders, percopy = o->percopy, spoolfd = -1;
	int ndone = 0, nremote = 0, ntemp = 0, nperm = 0;
	const char *first_temp = NULL, *first_perm = NULL;
	struct buf rlist = BUF_INIT;

	log_init("deliver", getenv("MXID"));
	load_conf(o->confopt, &s, &tb);
	drop_privileges(&s);
	signal(SIGALRM, on_alarm);
	alarm((unsigned)s.timeout_chain);

	/* the envelope */
	if (!sender_in)
		sender_in = getenv("SENDER");
	if ((why = check_sender(sender_in ? sender_in : "", sender, sizeof sender)))
		finish(EXIT_PERM, why);
	if (o->nrcpts > 0) {
		for (i = 0; i < (size_t)o->nrcpts; i++)
			buf_printf(&rlist, "%s\n", o->rcpts[i]);
	} else if (getenv("RECIPIENTS"))
		buf_adds(&rlist, getenv("RECIPIENTS"));
	if (!folder)
		folder = getenv("FOLDER");
	if (folder && !*folder)
		folder = NULL;

	for (char *p = rlist.s, *e; p && *p; p = e ? e + 1 : NULL) {
		struct rcpt x;
		char fb[MAILDIR_FOLDER_MAX * 2];
		const char *f;
		if ((e = strchr(p, '\n')))
			*e = 0;
		for (char *t = p + strlen(p); t > p && (t[-1] == '\r' || t[-1] == ' ' || t[-1] == '\t'); )
			*--t = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			continue;
		memset(&x, 0, sizeof x);
		x.given = p;
		resolve(&s, &tb, &x);
		for (i = 0; i < nr; i++)	/* the same recipient twice: once */
			if (x.key[0] && !strcmp(r[i].key, x.key))
				break;
		if (i < nr) {
			for (j = 0; j < x.nt; j++)
				target_free(&x.t[j]);
			free(x.t);
			continue;
		}
		f = getenv("FOLDERS") ? folder_for(getenv("FOLDERS"), x.key, fb, sizeof fb) : NULL;
		set_folders(&x, f ? f : folder, tagfolders);
		x.group = percopy ? (int)nr : 0;
		r = xreallocarray(r, nr + 1, sizeof *r);
		r[nr++] = x;
	}
	if (nr == 0)
		finish(EXIT_PERM, "5.5.1 no recipients given");

	/* where a piped message is copied: the first Maildir's tmp/ */
	memset(&lc, 0, sizeof lc);
	lc.s = &s;
	lc.sender = sender;
	lc.rootfd = open(s.mailroot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lc.rootfd < 0) {
		log_warnsys("cannot open the mail root %s", s.mailroot);
		snprintf(lc.rooterr, sizeof lc.rooterr, "cannot open the mail root: %s",
		    strerror(errno));
	}
	/* a seekable stdin (smtpd-lite's spool file) is read in place: no
	 * copy, so no directory for one either */
	struct stat st0;
	int seekable = fstat(0, &st0) == 0 && S_ISREG(st0.st_mode) && lseek(0, 0, SEEK_CUR) >= 0;
	for (i = 0; i < nr && spoolfd < 0 && !seekable; i++)
		for (j = 0; j < r[i].nt && spoolfd < 0 && lc.rootfd >= 0; j++)
			if (r[i].state == RS_OK && r[i].t[j].kind == T_MAILDIR) {
				struct maildir md;
				if (maildir_open(&md, lc.rootfd, r[i].t[j].path, NULL,
				    s.create_maildirs, err, sizeof err) == 0) {
					spoolfd = dup(md.tmpfd);
					maildir_close(&md);
				}
			}
	if (spoolfd < 0 && !seekable) {
		char qt[4200];
		snprintf(qt, sizeof qt, "%s/tmp", s.queuedir);
		(void)mkdir(s.queuedir, 0700);
		(void)mkdir(qt, 0700);
		spoolfd = open(qt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (spoolfd < 0)	/* a pipe still needs its one copy somewhere */
			spoolfd = open(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
			    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (msg_open(&m, spoolfd, err, sizeof err) < 0 ||
	    msg_scan(&m, err, sizeof err) < 0) {
		log_warn("%s", err);
		finish(EXIT_TEMP, "4.3.0 cannot read or copy the message");
	}
	if (spoolfd >= 0)
		close(spoolfd);
	if (msg_insert(&m, err, sizeof err) < 0) {
		log_warn("%s", err);
		finish(EXIT_TEMP, "4.3.0 deliver: bad MXHEADERS from the previous program");
	}
	lc.m = &m;

	/* loops */
	for (i = 0; i < nr; i++) {
		if (r[i].state != RS_OK)
			continue;
		if (m.hops >= s.max_hops) {
			r[i].state = RS_PERM;
			snprintf(r[i].reason, sizeof r[i].reason,
			    "5.4.6 too many hops (%d), this message is looping", m.hops);
		} else if (msg_has_dt(&m, r[i].key)) {
			r[i].state = RS_PERM;
			snprintf(r[i].reason, sizeof r[i].reason,
			    "5.4.6 mail loop: already delivered to %s (Delivered-To:)", r[i].key);
		}
	}

	/* Maildirs: one data write per group, links for the rest */
	for (i = 0; i < nr; i++)
		if (!percopy || (int)i == r[i].group)
			local_deliver_group(&lc, r, nr, percopy ? (int)i : 0);

	/* tally, and what goes to the queue */
	struct queue_info qi;
	memset(&qi, 0, sizeof qi);
	for (i = 0; i < nr; i++) {
		struct rcpt *x = &r[i];
		const char *given = log_esc(esc, sizeof esc, x->given, strlen(x->given));
		if (x->state == RS_PERM) {
			nperm++;
			if (!first_perm)
				first_perm = x->reason;
			log_info("rcpt=<%s> failed: %s", given, x->reason);
			queue_add_rcpt(&qi, QS_FAILED, QK_LOCAL, x->key[0] ? x->key : x->given,
			    x->given, "", "", "", x->reason);
			continue;
		}
		if (x->state == RS_TEMP) {
			ntemp++;
			if (!first_temp)
				first_temp = x->reason;
			log_info("rcpt=<%s> deferred: %s", given, x->reason);
			queue_add_rcpt(&qi, QS_PENDING, QK_LOCAL, x->key, x->given, "", "", "",
			    x->reason);
			continue;
		}
		for (j = 0; j < x->nt; j++) {
			struct target *t = &x->t[j];
			if (t->kind == T_REMOTE) {
				nremote++;
				log_info("rcpt=<%s> queued for %s <%s>", given,
				    t->forward ? "forward to" : "relay to", t->addr);
				queue_add_rcpt(&qi, QS_PENDING, t->forward ? QK_FORWARD : QK_RELAY,
				    t->addr, x->key, t->forward ? x->key : "", "", "", "");
			} else if (t->state == TS_DONE) {
				ndone++;
				log_info("rcpt=<%s> delivered to %.*s%s%s/new/%s", given,
				    (int)strlen(t->path) - (t->path[strlen(t->path) - 1] == '/'), t->path,
				    t->folder[0] ? "/." : "", t->folder, t->newname);
			} else {
				ntemp++;
				if (!first_temp)
					first_temp = t->reason;
				log_info("rcpt=<%s> Maildir %s deferred: %s", given, t->path, t->reason);
				queue_add_rcpt(&qi, QS_PENDING, QK_MAILDIR, x->key, x->given,
				    x->dt_used ? x->key : "", t->path, t->folder, t->reason);
			}
		}
	}
	local_cleanup(&lc);

	if (ndone == 0 && nremote == 0) {
		/* nothing is delivered yet: the sender may simply retry */
		queue_info_free(&qi);
		if (ntemp)
			finish(EXIT_TEMP, first_temp);
		finish(EXIT_PERM, first_perm ? first_perm : "5.1.1 no recipients");
	}
	if (nremote == 0 && ntemp == 0 && nperm == 0) {
		queue_info_free(&qi);
		free_all(&s, &tb, r, nr, &m, &rlist, lc.rootfd);
		return 0;
	}
	/* the rest must not be lost, nor the delivered ones delivered again */
	qi.sender = xstrdup(sender);
	qi.mxid = xstrdup(getenv("MXID") ? getenv("MXID") : "");
	qi.client = xstrdup(getenv("TCPREMOTEIP") ? getenv("TCPREMOTEIP") : "");
	qi.helo = xstrdup(getenv("HELO") ? getenv("HELO") : "");
	for (i = 0; i < qi.nrcpt; i++) {	/* queue the local retries now-ish */
		if (qi.rcpt[i].state == QS_PENDING && qi.rcpt[i].kind != QK_RELAY &&
		    qi.rcpt[i].kind != QK_FORWARD)
			qi.rcpt[i].next_try = 0;
	}
	/* what the Maildirs got, ruleproc's added fields included */
	int qfd = m.ins ? msg_materialize(&m, s.spooldir) : m.fd;
	if (qfd < 0 || queue_put(s.queuedir, qfd, qfd == m.fd ? m.start : 0, &qi, err,
	    sizeof err) < 0) {
		if (qfd < 0)
			snprintf(err, sizeof err, "cannot copy the message for the queue: %s",
			    strerror(errno));
		if (qfd >= 0 && qfd != m.fd)
			close(qfd);
		log_warn("%s", err);
		if (ndone)
			log_warn("%d Maildir deliveries done but the rest cannot be queued: "
			    "the sender's retry will deliver them again", ndone);
		queue_info_free(&qi);
		finish(EXIT_TEMP, "4.3.0 cannot write to the queue");
	}
	if (qfd != m.fd)
		close(qfd);
	log_info("queued %s: %zu recipient%s (%d to send, %d to retry, %d to bounce)", qi.id,
	    qi.nrcpt, qi.nrcpt == 1 ? "" : "s", nremote, ntemp, nperm);
	queue_info_free(&qi);
	free_all(&s, &tb, r, nr, &m, &rlist, lc.rootfd);
	return 0;
}
