/* load.c: which rules are in force, and ruleproc -t.
 *
 * CONFDIR/rules is parsed at start. When it parses, it is in force and
 * (best effort) copied to CONFDIR/rules.ok, the "last good" copy. When
 * it does not, the error is logged as "file:line: reason" and
 * CONFDIR/rules.ok is used instead; when that is missing or broken too,
 * the caller tempfails (never accepts unfiltered, never rejects). A
 * missing CONFDIR/rules means "no rules". */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "fdio.h"
#include "log.h"
#include "ruleproc.h"

static int
read_all(const char *path, struct buf *b)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	buf_clear(b);
	if (fd < 0)
		return -1;
	/* straight into the buffer, sized from fstat (no 64 KiB bounce
	 * buffer: every page a start touches costs a page fault) */
	if (fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size <= RULES_MAX_FILE)
		buf_reserve(b, (size_t)st.st_size + 1);
	for (;;) {
		if (b->cap - b->len < 2)
			buf_reserve(b, 65536);
		n = read(fd, b->s + b->len, b->cap - b->len - 1);
		if (n <= 0)
			break;
		b->len += (size_t)n;
		b->s[b->len] = 0;
		if (b->len > RULES_MAX_FILE)
			break;
	}
	if (n < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

static void
path_of(const struct opts *o, const char *name, char *p, size_t len)
{
	snprintf(p, len, "%s/%s", o->confdir, name);
}

int
rp_install_ok(const char *confdir, const char *text, size_t len)
{
	char tmp[4200], dst[4200];
	size_t off = 0;
	int fd, dfd, e;

	snprintf(dst, sizeof dst, "%s/rules.ok", confdir);
	snprintf(tmp, sizeof tmp, "%s/rules.ok.tmp.%ld", confdir, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, dst) < 0)
		goto fail;
	dfd = open(confdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = e;
	return -1;
}

static int
same_text(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, a->len));
}

int
rp_load(const struct opts *o, struct loaded *l, char *err, size_t errlen)
{
	char path[4200], okp[4200], e2[700];
	struct buf text = BUF_INIT, ok = BUF_INIT;
	int ok_read = -1, ok_errno = 0;

	memset(l, 0, sizeof *l);
	if (o->rulesfile)
		strlcpy(path, o->rulesfile, sizeof path);
	else
		path_of(o, "rules", path, sizeof path);
	path_of(o, "rules.ok", okp, sizeof okp);
	(void)stat(path, &l->st_rules);
	(void)stat(okp, &l->st_ok);
	if (read_all(path, &text) < 0) {
		if (errno == ENOENT && !o->rulesfile) {
			/* no rules configured */
			memset(&l->rs, 0, sizeof l->rs);
			l->rs.path = xstrdup(path);
			l->rs.body_limit = RULES_BODY_DEFAULT;
			l->none = 1;
			buf_free(&text);
			return 0;
		}
		snprintf(l->why, sizeof l->why, "%.600s: %s", path, strerror(errno));
	} else {
		/* rules.ok is only ever written (atomically) with a text that
		 * passed the full check, so a rules file byte for byte equal
		 * to it is known good: parse it without compiling the regular
		 * expressions (most of the start-up cost); each is compiled
		 * when first needed. -R files and the long-lived milter are
		 * always checked in full. */
		if (!o->rulesfile) {
			ok_read = read_all(okp, &ok);
			ok_errno = errno;
		}
		l->lazy = ok_read == 0 && !o->eager && same_text(&ok, &text);
		if (rules_parse_flags(&l->rs, path, text.s ? text.s : "", text.len,
		    l->lazy ? RULES_LAZY : 0, l->why, sizeof l->why) == 0) {
			if (o->verbose)
				log_info("%s: %s", path, l->lazy ? "same as rules.ok (checked when "
				    "installed): regular expressions compiled when first needed" :
				    "checked in full (every regular expression compiled)");
			/* good and not the last good copy yet: refresh rules.ok
			 * (best effort: a read-only CONFDIR is fine) */
			if (!o->rulesfile && !(ok_read == 0 && same_text(&ok, &text)) &&
			    access(o->confdir, W_OK) == 0 &&
			    rp_install_ok(o->confdir, text.s ? text.s : "", text.len) < 0)
				log_warnsys("cannot update %s", okp);
			buf_free(&text);
			buf_free(&ok);
			return 0;
		}
		rules_free(&l->rs);
		l->lazy = 0;
	}
	buf_free(&text);
	log_warn("%s", l->why);
	if (o->rulesfile) {
		buf_free(&ok);
		strlcpy(err, l->why, errlen);
		return -1;
	}
	/* the last good copy, checked in full */
	if (ok_read < 0 && (ok_read = read_all(okp, &ok)) < 0)
		ok_errno = errno;
	if (ok_read < 0)
		snprintf(e2, sizeof e2, "%.600s: %s", okp, strerror(ok_errno));
	else if (rules_parse(&l->rs, okp, ok.s ? ok.s : "", ok.len, e2, sizeof e2) == 0) {
		buf_free(&ok);
		l->fallback = 1;
		log_warn("using the last good rules from %s until %s is fixed", okp, path);
		return 0;
	} else
		rules_free(&l->rs);
	buf_free(&ok);
	snprintf(err, errlen, "%s; no usable last good copy (%s)", l->why, e2);
	return -1;
}

int
rp_changed(const struct opts *o, const struct loaded *l)
{
	struct stat a, b;
	char path[4200], okp[4200];

	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	if (o->rulesfile)
		strlcpy(path, o->rulesfile, sizeof path);
	else
		path_of(o, "rules", path, sizeof path);
	path_of(o, "rules.ok", okp, sizeof okp);
	(void)stat(path, &a);
	if (!stat_same(&a, &l->st_rules))
		return 1;
	if (l->fallback) {
		(void)stat(okp, &b);
		if (!stat_same(&b, &l->st_ok))
			return 1;
	}
	return 0;
}

int
rp_check(const struct opts *o)
{
	char path[4200], err[700];
	struct buf text = BUF_INIT;
	struct ruleset rs;
	int i, st[5] = { 0 };

	if (o->rulesfile)
		strlcpy(path, o->rulesfile, sizeof path);
	else
		path_of(o, "rules", path, sizeof path);
	if (read_all(path, &text) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return EXIT_PERM;
	}
	if (rules_parse(&rs, path, text.s ? text.s : "", text.len, err, sizeof err) < 0) {
		fprintf(stderr, "%s\n", err);
		rules_free(&rs);
		buf_free(&text);
		return EXIT_PERM;
	}
	for (i = 0; i < rs.nrules; i++)
		st[rs.rules[i].stage]++;
	printf("%s: %d rule%s OK (%d connect, %d helo, %d mail, %d rcpt, %d data stage)\n",
	    path, rs.nrules, rs.nrules == 1 ? "" : "s", st[0], st[1], st[2], st[3], st[4]);
	if (o->verbose)
		for (i = 0; i < rs.nrules; i++)
			printf("  %d. line %d, %s stage: %s\n", i + 1, rs.rules[i].line,
			    rules_stage_name(rs.rules[i].stage), rs.rules[i].name);
	/* an envelope rule behind a later-stage rule that may stop is only
	 * decided after DATA (see rules(5), Stages): say so */
	{
		int late = -1;
		for (i = 0; i < rs.nrules; i++) {
			const struct rule *r = &rs.rules[i];
			if (late >= 0 && r->stage < rs.rules[late].stage &&
			    r->has_final && (r->final == A_REJECT || r->final == A_TEMPFAIL))
				fprintf(stderr, "%s:%d: note: rule \"%s\" (%s stage) can %s only %s: "
				    "rule \"%s\" (line %d, %s stage) comes first and may stop processing\n",
				    path, r->line, r->name, rules_stage_name(r->stage),
				    r->final == A_REJECT ? "reject" : "tempfail",
				    rs.rules[late].stage == ST_DATA ? "after DATA" :
				    rs.rules[late].stage == ST_RCPT ? "from RCPT on" :
				    rs.rules[late].stage == ST_MAIL ? "from MAIL on" : "from HELO on",
				    rs.rules[late].name, rs.rules[late].line, rules_stage_name(rs.rules[late].stage));
			if (!r->cont && (late < 0 || r->stage > rs.rules[late].stage))
				late = i;
		}
	}
	rules_free(&rs);
	if (!o->rulesfile) {
		if (rp_install_ok(o->confdir, text.s ? text.s : "", text.len) < 0) {
			fprintf(stderr, "%s/rules.ok: cannot install: %s\n", o->confdir, strerror(errno));
			buf_free(&text);
			return EXIT_TEMP;
		}
		printf("installed %s/rules.ok (the last good copy used if rules breaks)\n", o->confdir);
	}
	buf_free(&text);
	return 0;
}

/* A long-lived process: the rules as they are now, or the ones in
 * memory when the new text does not load. */
void
rp_refresh(const struct opts *o, struct loaded *l)
{
	char err[800];
	struct loaded nl;

	if (!rp_changed(o, l))
		return;
	if (rp_load(o, &nl, err, sizeof err) == 0) {
		rules_free(&l->rs);
		*l = nl;
	} else
		log_warn("reload failed, keeping the rules in memory: %s", err);
}
