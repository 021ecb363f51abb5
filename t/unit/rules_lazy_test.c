/* Unit tests: RULES_LAZY (lib/rules.c, lib/rules_eval.c): a file known
 * good is parsed without regcomp(3), each regex compiled on first use;
 * the decisions are the eager parse's, from several threads at once too,
 * and a regex that does not compile after all makes the decision a
 * temporary failure (never an accept, never a skip). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "rules.h"

static const char *rules_text =
    "rule \"Night\"\n    header Subject /^urgent[[:space:]]+night/\n    tempfail 451 4.3.2 later\n"
    "rule \"Scam\"\n    body /(lottery|jackpot)-[0-9]+ +winner/\n    reject 550 5.7.1 Scam\n"
    "rule \"Pills\"\n    match any\n    body /cheap +pills/ /v[i1]agra/\n    header X-Spam /^yes$/\n    folder Junk\n"
    "rule \"Not from us\"\n    not header From /@example\\.(com|org)>?$/\n    add-header X-Outside yes\n    continue\n"
    "rule \"Colour\"\n    header Subject /colou?r [[:upper:]]+/\n    tag-subject [C]\n    continue\n"
    "rule \"Sender\"\n    sender /^bad-[a-z]+@/\n    reject\n"
    "rule \"Dots\"\n    body /a\\.b\\.c/\n    discard\n";

static const char *msgs[] = {
	"From: a@example.com\nSubject: hello\n\nnothing here\n",
	"From: a@example.net\nSubject: URGENT  night call\n\nx\n",
	"From: a@example.org\nSubject: x\n\nyou are the JACKPOT-12   Winner today\n",
	"From: <a@example.com>\nSubject: colour RED\n\ncheap   pills\n",
	"From: a@example.com\nX-Spam: yes\nSubject: s\n\nplain\n",
	"From: a@elsewhere\nSubject: Color BLUE\n\nV1AGRA\n",
	"From: a@example.com\nSubject: s\n\nA.B.C\n",
	"From: a@example.com\nSubject: s\n\naXbXc\n",
};
#define NMSG (int)(sizeof msgs / sizeof msgs[0])
static const char *senders[] = { "ok@example.net", "bad-guy@example.net" };

/* the decision as one comparable line */
static void
decide(const struct ruleset *rs, int mi, int si, char *out, size_t len)
{
	struct rmsg m;
	struct renv e;
	struct rresult r;
	char *rc[] = { "alice@example.com" };
	struct buf rcpts = BUF_INIT, folders = BUF_INIT;

	rmsg_init(&m, rs->body_limit);
	rmsg_feed(&m, msgs[mi], strlen(msgs[mi]));
	rmsg_end(&m);
	memset(&e, 0, sizeof e);
	e.sender = senders[si];
	e.rcpts = rc;
	e.nrcpt = 1;
	e.msg = &m;
	rules_run(rs, &e, ST_DATA, &r, NULL);
	rresult_recipients(&r, &rcpts, &folders);
	snprintf(out, len, "v=%d rule=%d code=%d %s %.300s nh=%d tag=%s broken=%d folders=%.300s",
	    r.v, r.rule, r.code, r.xcode, r.text, r.nh, r.tag ? r.tag : "-", r.broken,
	    folders.s ? folders.s : "");
	buf_free(&rcpts);
	buf_free(&folders);
	rresult_free(&r);
	rmsg_free(&m);
}

struct job {
	const struct ruleset *rs;
	char (*want)[1200];
	int bad;
};

static void *
worker(void *arg)
{
	struct job *j = arg;
	char got[1200];
	int round, mi, si;

	for (round = 0; round < 20; round++)
		for (mi = 0; mi < NMSG; mi++)
			for (si = 0; si < 2; si++) {
				decide(j->rs, mi, si, got, sizeof got);
				if (strcmp(got, j->want[mi * 2 + si]))
					j->bad++;
			}
	return NULL;
}

int
main(void)
{
	struct ruleset eager, lazy;
	char err[600], want[NMSG * 2][1200], got[1200];
	int mi, si, i, same = 1, compiled = 0, total = 0;

	CHECK(rules_parse(&eager, "rules", rules_text, strlen(rules_text), err, sizeof err) == 0,
	    "eager parse");
	CHECK(rules_parse_flags(&lazy, "rules", rules_text, strlen(rules_text), RULES_LAZY, err,
	    sizeof err) == 0 && lazy.lazy, "lazy parse");
	for (i = 0; i < lazy.nrules; i++) {
		int j, k;
		for (j = 0; j < lazy.rules[i].nconds; j++)
			for (k = 0; k < lazy.rules[i].conds[j].npats; k++) {
				const struct rpat *p = &lazy.rules[i].conds[j].pats[k];
				total++;
				compiled += p->ready != 0 || p->has_re || p->has_lre;
			}
	}
	CHECK(total == 9 && compiled == 0, "lazy parse compiles no regex (%d of %d)", compiled, total);

	/* same decisions, one thread */
	for (mi = 0; mi < NMSG; mi++)
		for (si = 0; si < 2; si++) {
			decide(&eager, mi, si, want[mi * 2 + si], sizeof want[0]);
			decide(&lazy, mi, si, got, sizeof got);
			if (strcmp(got, want[mi * 2 + si])) {
				same = 0;
				printf("#   message %d sender %d\n#   eager: %s\n#   lazy:  %s\n", mi, si,
				    want[mi * 2 + si], got);
			}
		}
	CHECK(same, "lazy and eager parses decide alike (%d messages x 2 senders)", NMSG);
	/* the decisions are not all the same one: the test means something */
	CHECK(strstr(want[1 * 2], "v=2") && strstr(want[2 * 2], "v=1") && strstr(want[1], "v=1") &&
	    strstr(want[6 * 2], "v=3") && strstr(want[7 * 2], "v=0"), "tempfail, reject, discard and deliver all seen");
	rules_free(&lazy);

	/* threads share a fresh lazy ruleset: every regex compiled once, under the lock */
	{
		pthread_t th[4];
		struct job jobs[4];
		int bad = 0;
		CHECK(rules_parse_flags(&lazy, "rules", rules_text, strlen(rules_text), RULES_LAZY,
		    err, sizeof err) == 0, "lazy parse again");
		for (i = 0; i < 4; i++) {
			jobs[i].rs = &lazy;
			jobs[i].want = want;
			jobs[i].bad = 0;
			pthread_create(&th[i], NULL, worker, &jobs[i]);
		}
		for (i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			bad += jobs[i].bad;
		}
		CHECK(bad == 0, "4 threads on one lazy ruleset decide as the eager parse (%d differ)", bad);
		rules_free(&lazy);
	}
	rules_free(&eager);

	/* a regex that does not compile: the full parse refuses it with file:line */
	{
		const char *bad = "rule \"First\"\n    sender *@spam.example\n    reject\n"
		    "rule \"Broken\"\n    header Subject /a(b/\n    accept\n"
		    "rule \"Negated\"\n    not body /x[y/\n    discard\n";
		struct ruleset rs;
		CHECK(rules_parse(&rs, "rules", bad, strlen(bad), err, sizeof err) < 0 &&
		    !strncmp(err, "rules:5: bad regular expression /a(b/", 37), "eager: bad regex refused with file:line (%s)", err);
		rules_free(&rs);
		CHECK(rules_parse_flags(&rs, "rules", bad, strlen(bad), RULES_LAZY, err, sizeof err) == 0,
		    "lazy: the same file parses (only regcomp is skipped)");
		/* sender rule first: decided before the broken rule is reached */
		{
			struct renv e;
			struct rresult r;
			char *rc[] = { "alice@example.com" };
			struct rmsg m;
			const char *txt = "Subject: xa(b\n\nbody\n";
			rmsg_init(&m, rs.body_limit);
			rmsg_feed(&m, txt, strlen(txt));
			rmsg_end(&m);
			memset(&e, 0, sizeof e);
			e.rcpts = rc;
			e.nrcpt = 1;
			e.msg = &m;
			e.sender = "x@spam.example";
			rules_run(&rs, &e, ST_DATA, &r, NULL);
			CHECK(r.v == V_REJECT && r.rule == 0 && !r.broken, "a rule before the broken one still decides");
			rresult_free(&r);
			e.sender = "x@example.net";
			{
				struct buf tr = BUF_INIT;
				rules_run(&rs, &e, ST_DATA, &r, &tr);
				CHECK(r.v == V_TEMPFAIL && r.rule == 1 && r.broken && r.code == 451 &&
				    !strcmp(r.xcode, "4.3.0"), "broken regex reached: temporary failure, not accept");
				CHECK(tr.s && strstr(tr.s, "ERROR rules:5: bad regular expression /a(b/"),
				    "the trace names file:line and the reason");
				buf_free(&tr);
			}
			rresult_free(&r);
			/* a negated broken condition must not turn into a match */
			rs.rules[1].conds[0].neg = 1;	/* "not header Subject /a(b/" */
			rules_run(&rs, &e, ST_DATA, &r, NULL);
			CHECK(r.v == V_TEMPFAIL && r.rule == 1 && r.broken, "negated broken regex: temporary failure too");
			rresult_free(&r);
			rules_free(&rs);
			CHECK(rules_parse_flags(&rs, "rules", bad, strlen(bad), RULES_LAZY, err, sizeof err) == 0,
			    "lazy parse again");
			rs.rules[1].conds[0].neg = 0;
			/* Broken does not match by prefilter? "a(b" has no required literal of 3: it runs */
			rs.rules[1].nconds = 0;	/* skip it: Broken now always accepts */
			rules_run(&rs, &e, ST_DATA, &r, NULL);
			CHECK(r.v == V_DELIVER && !r.broken, "rules that do not need the broken regex are not affected");
			rresult_free(&r);
			rs.rules[1].nconds = 1;
			rs.rules[1].acts[0].kind = A_ADDHEADER;	/* let the run reach rule 3 */
			rs.rules[1].acts[0].hname = "X-A";
			rs.rules[1].acts[0].text = "b";
			rs.rules[1].has_final = 0;
			rs.rules[1].cont = 1;
			rs.rules[1].conds[0].pats[0].ready = 1;	/* pretend it compiled and did not match */
			rules_run(&rs, &e, ST_DATA, &r, NULL);
			CHECK(r.v == V_TEMPFAIL && r.rule == 2 && r.broken, "not body /x[y/ broken: temporary failure, not discard");
			rresult_free(&r);
			rs.rules[1].conds[0].pats[0].ready = -1;
			rmsg_free(&m);
		}
		{
			char why[300];
			rules_pat_error(&rs.rules[2].conds[0].pats[0], why, sizeof why);
			CHECK(!strncmp(why, "bad regular expression /x[y/: ", 30), "rules_pat_error says why (%s)", why);
		}
		rules_free(&rs);
	}
	/* a condition the decision does not need is still explained in a
	 * trace; its broken regex must not change the decision there */
	{
		const char *t = "rule \"Any\"\n    match any\n    sender x@y.example\n"
		    "    header Subject /a(b/\n    reject\n";
		struct ruleset rs;
		struct renv e;
		struct rresult r1, r2;
		struct rmsg m;
		struct buf tr = BUF_INIT;
		char *rc[] = { "alice@example.com" };
		CHECK(rules_parse_flags(&rs, "rules", t, strlen(t), RULES_LAZY, err, sizeof err) == 0, "lazy parse (match any)");
		rmsg_init(&m, rs.body_limit);
		rmsg_feed(&m, "Subject: a(b\n\nx\n", 16);
		rmsg_end(&m);
		memset(&e, 0, sizeof e);
		e.sender = "x@y.example";
		e.rcpts = rc;
		e.nrcpt = 1;
		e.msg = &m;
		rules_run(&rs, &e, ST_DATA, &r1, NULL);
		rules_run(&rs, &e, ST_DATA, &r2, &tr);
		CHECK(r1.v == V_REJECT && r2.v == V_REJECT && !r1.broken && !r2.broken,
		    "decided before the broken regex: reject, with and without a trace");
		e.sender = "other@y.example";
		rresult_free(&r1);
		rules_run(&rs, &e, ST_DATA, &r1, NULL);
		CHECK(r1.v == V_TEMPFAIL && r1.broken, "needed: temporary failure");
		rresult_free(&r1);
		rresult_free(&r2);
		buf_free(&tr);
		rmsg_free(&m);
		rules_free(&rs);
	}
	CHECK_DONE();
}
