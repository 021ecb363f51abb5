/* dryrun.c: ruleproc -n: explain, rule by rule, what the rules decide
 * for an envelope, a session and a message, without delivering. The
 * exit status is the one the chain filter would have (0, 100, 111). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "ruleproc.h"

static const char *
env(const char *n)
{
	const char *v = getenv(n);
	return v && *v ? v : NULL;
}

static void
esc(struct buf *b, const char *s)
{
	rules_esc(b, s, strlen(s), 120);
}

static void
early(const struct ruleset *rs, const struct renv *base, enum rstage st, int rcpt, struct buf *out)
{
	struct renv e = *base;
	struct rresult r;

	e.msg = NULL;
	e.nrcpt_total = 0;
	if (rcpt >= 0) {
		e.rcpts = &base->rcpts[rcpt];
		e.nrcpt = 1;
	} else
		e.nrcpt = 0;
	rules_run(rs, &e, st, &r, NULL);
	if (r.v == V_REJECT || r.v == V_TEMPFAIL)
		buf_printf(out, "%d %s %s  (rule %d \"%s\")\n", r.code, r.xcode, r.text, r.rule + 1,
		    rs->rules[r.rule].name);
	else if (r.undecided) {
		const struct rule *u = &rs->rules[r.undecided - 1];
		buf_printf(out, "DUNNO (rule %d \"%s\" needs the %s stage and comes first; "
		    "the rest is decided later)\n", r.undecided, u->name, rules_stage_name(u->stage));
	}
	else
		buf_adds(out, "DUNNO\n");
	rresult_free(&r);
}

int
dry_run(const struct opts *o)
{
	static const char *dn[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	/* static: kept (reachable) until exit, never freed: freeing
	 * thousands of rules just before exit costs more than the run */
	static struct loaded l;
	static struct renv e;
	struct rmsg m;
	struct rresult res;
	struct buf out = BUF_INIT, tr = BUF_INIT, rc = BUF_INIT, fo = BUF_INIT;
	char err[800], *chunk;
	ssize_t n;
	int i, code = 0, notty;

	if (rp_load(o, &l, err, sizeof err) < 0) {
		fprintf(stderr, "ruleproc: no usable rules: %s\n", err);
		fprintf(stdout, "decision: tempfail 451 4.3.0 rules configuration error (nothing would be delivered or rejected)\n");
		return EXIT_TEMP;
	}
	memset(&e, 0, sizeof e);
	e.sender = rp_bare(o->sender ? o->sender : env("SENDER") ? env("SENDER") : "");
	if (o->nrcpt) {
		e.rcpts = o->rcpts;
		e.nrcpt = o->nrcpt;
	} else
		e.rcpts = rp_split_rcpts(getenv("RECIPIENTS"), &e.nrcpt);
	e.client = o->ip ? o->ip : env("TCPREMOTEIP");
	e.client_name = o->name ? o->name : env("TCPREMOTEHOST");
	e.helo = o->helo ? o->helo : env("HELO");
	e.auth = o->auth ? o->auth : env("AUTHUSER");
	rules_when(o->when, &e.wday, &e.minute);

	rmsg_init(&m, l.rs.body_limit);
	chunk = xmalloc(65536);
	notty = isatty(0);	/* no message given: judge the envelope alone */
	while (!notty && (n = read(0, chunk, 65536)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			diesys(EXIT_TEMP, "read the message");
		}
		rmsg_feed(&m, chunk, (size_t)n);
	}
	free(chunk);
	rmsg_end(&m);
	e.msg = &m;

	rules_run(&l.rs, &e, ST_DATA, &res, o->quiet ? NULL : &tr);

	if (!o->quiet) {
		buf_printf(&out, "rules:     %s (%d rule%s)", l.rs.path, l.rs.nrules, l.rs.nrules == 1 ? "" : "s");
		if (l.none)
			buf_adds(&out, " (no rules file: nothing to do)");
		if (l.fallback)
			buf_printf(&out, "\n           BROKEN: %s\n           using the last good copy %s/rules.ok",
			    l.why, o->confdir);
		buf_adds(&out, "\nenvelope:  sender ");
		if (*e.sender)
			buf_printf(&out, "<%s>", e.sender);
		else
			buf_adds(&out, "<> (null sender)");
		buf_printf(&out, ", %d recipient%s", e.nrcpt, e.nrcpt == 1 ? "" : "s");
		for (i = 0; i < e.nrcpt; i++)
			buf_printf(&out, "%s<%s>", i ? ", " : ": ", e.rcpts[i]);
		buf_printf(&out, "\nsession:   client %s", e.client ? e.client : "(unknown)");
		if (e.client_name) {
			buf_adds(&out, " name ");
			esc(&out, e.client_name);
		}
		buf_adds(&out, ", helo ");
		if (e.helo)
			esc(&out, e.helo);
		else
			buf_adds(&out, "(none)");
		if (e.auth && *e.auth) {
			buf_adds(&out, ", authenticated as ");
			esc(&out, e.auth);
		} else
			buf_adds(&out, ", not authenticated");
		buf_printf(&out, ", local time %s %02d:%02d\n", dn[e.wday], e.minute / 60, e.minute % 60);
		if (notty)
			buf_adds(&out, "message:   none (standard input is a terminal): an empty message");
		else
			buf_printf(&out, "message:   %llu bytes, %d header field%s, body %zu bytes scanned%s%s",
		    m.size, m.nf, m.nf == 1 ? "" : "s", m.body.len,
		    m.body_decoded ? " (quoted-printable/base64 decoded)" : "",
		    m.body_trunc ? " (cut at the body-scan limit)" : "");
		if (m.nattach) {
			buf_printf(&out, ", %d attachment%s:", m.nattach, m.nattach == 1 ? "" : "s");
			for (i = 0; i < m.nattach; i++) {
				buf_addc(&out, ' ');
				esc(&out, m.attach[i]);
			}
		}
		if (m.hdr_trunc)
			buf_adds(&out, "\n           note: the header was larger than the limits; some fields were not kept for matching");
		if (m.nul_seen)
			buf_adds(&out, "\n           note: NUL bytes in the message (matched as spaces)");
		if (m.bad_b64)
			buf_adds(&out, "\n           note: invalid base64 (bad characters skipped)");
		buf_adds(&out, "\n\n");
		if (tr.len)
			buf_add(&out, tr.s, tr.len);
		/* what the SMTP dialogue would already answer (policy service, milter) */
		buf_adds(&out, "\nduring the SMTP dialogue (ruleproc -p; the milter answers MAIL and RCPT):\n");
		buf_adds(&out, "  connect: ");
		early(&l.rs, &e, ST_CONNECT, -1, &out);
		buf_adds(&out, "  HELO: ");
		early(&l.rs, &e, ST_HELO, -1, &out);
		buf_adds(&out, "  MAIL FROM: ");
		early(&l.rs, &e, ST_MAIL, -1, &out);
		for (i = 0; i < e.nrcpt; i++) {
			buf_printf(&out, "  RCPT TO:<%s>: ", e.rcpts[i]);
			early(&l.rs, &e, ST_RCPT, i, &out);
		}
		buf_adds(&out, "\n");
	}
	switch (res.v) {
	case V_REJECT:
	case V_TEMPFAIL:
		buf_printf(&out, "decision:  %s %d %s %s  (rule %d \"%s\", line %d)\n",
		    res.v == V_REJECT ? "reject" : "tempfail", res.code, res.xcode, res.text,
		    res.rule + 1, l.rs.rules[res.rule].name, l.rs.rules[res.rule].line);
		code = res.v == V_REJECT ? EXIT_PERM : EXIT_TEMP;
		break;
	case V_DISCARD:
		if (res.rule >= 0)
			buf_printf(&out, "decision:  discard  (rule %d \"%s\", line %d): accepted, delivered to nobody\n",
			    res.rule + 1, l.rs.rules[res.rule].name, l.rs.rules[res.rule].line);
		else
			buf_adds(&out, "decision:  discard (every recipient discarded): accepted, delivered to nobody\n");
		break;
	case V_DELIVER:
		buf_printf(&out, "decision:  deliver%s\n", res.nmatched ? "" : " (no rule matched)");
		rresult_recipients(&res, &rc, &fo);
		buf_adds(&out, "RECIPIENTS:");
		if (!rc.len)
			buf_adds(&out, " (none)");
		for (i = 0; (size_t)i < rc.len; ) {
			size_t l2 = strcspn(rc.s + i, "\n");
			buf_adds(&out, "\n  ");
			buf_add(&out, rc.s + i, l2);
			i += (int)l2 + 1;
		}
		buf_adds(&out, "\n");
		if (fo.len) {
			buf_adds(&out, "FOLDERS:");
			for (i = 0; (size_t)i < fo.len; ) {
				size_t l2 = strcspn(fo.s + i, "\n");
				char *t = xstrndup(fo.s + i, l2), *tab = strchr(t, '\t');
				if (tab)
					*tab = 0;
				buf_printf(&out, "\n  %s -> folder %s", t, tab ? tab + 1 : "?");
				free(t);
				i += (int)l2 + 1;
			}
			buf_adds(&out, "\n");
		}
		for (i = 0; i < res.nh; i++)
			buf_printf(&out, "add header: %s: %s\n", res.hnames[i], res.hvals[i]);
		if (res.tag) {
			const char *s = rmsg_get(&m, "Subject");
			if (s && !strncasecmp(s, res.tag, strlen(res.tag)))
				buf_printf(&out, "subject:   already tagged \"%s\", unchanged\n", res.tag);
			else if (s) {
				buf_adds(&out, "subject:   ");
				struct buf t = BUF_INIT;
				buf_printf(&t, "%s %s", res.tag, s);
				esc(&out, t.s);
				buf_adds(&out, " (was ");
				esc(&out, s);
				buf_adds(&out, ")\n");
				buf_free(&t);
			} else
				buf_printf(&out, "subject:   none in the message: add \"Subject: %s\"\n", res.tag);
		}
		if (!rresult_modifies(&res))
			buf_adds(&out, "message:   unchanged\n");
		break;
	}
	buf_printf(&out, "exit:      %d\n", code);
	fwrite(out.s, 1, out.len, stdout);
	if (fflush(stdout) == EOF)
		diesys(EXIT_TEMP, "write");
	buf_free(&out);
	buf_free(&tr);
	buf_free(&rc);
	buf_free(&fo);
	rresult_free(&res);
	rmsg_free(&m);
	return code;
}
