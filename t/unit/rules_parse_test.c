/* Unit tests: the rules(5) parser and the glob matcher (lib/rules.c,
 * lib/rules_eval.c). */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "rules.h"

static void
glob(const char *p, const char *s, int want)
{
	CHECK(rules_glob(p, s, strlen(s)) == want, "glob %s %s %s", p, want ? "matches" : "does not match", s);
}

/* parse text; expect an error containing want (NULL: success) */
static void
parse(const char *what, const char *text, const char *want)
{
	struct ruleset rs;
	char err[600] = "";
	int rc = rules_parse(&rs, "rules", text, strlen(text), err, sizeof err);

	if (!want)
		CHECK(rc == 0, "%s parses%s%s", what, rc ? ": " : "", rc ? err : "");
	else {
		CHECK(rc < 0 && strstr(err, want), "%s refused with \"%s\"", what, want);
		if (rc == 0 || !strstr(err, want))
			printf("#   got: %s\n", rc ? err : "(parsed)");
	}
	rules_free(&rs);
}

/* a message with this subject and body, and an envelope holding it */
static void
msg_of(struct rmsg *m, struct renv *e, const char *subject, const char *body)
{
	char txt[300];

	rmsg_init(m, 4096);
	snprintf(txt, sizeof txt, "Subject: %s\n\n%s\n", subject, body);
	rmsg_feed(m, txt, strlen(txt));
	rmsg_end(m);
	memset(e, 0, sizeof *e);
	e->msg = m;
}

int
main(void)
{
	struct ruleset rs;
	char err[600];
	struct buf b = BUF_INIT;
	const char *t;

	glob("alice@example.com", "ALICE@Example.COM", 1);
	glob("alice@example.com", "alice@example.com.evil", 0);
	glob("*@example.com", "bob@example.com", 1);
	glob("*@example.com", "bob@sub.example.com", 0);
	glob("*.example.com", "bob@sub.example.com", 1);	/* * spans @ and dots */
	glob("*@example.com", "bob@example.com.evil", 0);
	glob("*@*.example.com", "bob@sub.example.com", 1);
	glob("?ob@example.com", "bob@example.com", 1);
	glob("?ob@example.com", "ob@example.com", 0);
	glob("*", "", 1);
	glob("", "", 1);
	glob("", "x", 0);
	glob("a*b*c", "aXXbYYc", 1);
	glob("a*b*c", "aXXbYY", 0);
	glob("*viagra*", "Buy VIAGRA now", 1);
	glob("\\*literal", "*literal", 1);
	glob("\\*literal", "xliteral", 0);
	glob("[SPAM]*", "[spam] hi", 1);
	glob("*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0);
	glob("**x", "x", 1);

	parse("empty file", "", NULL);
	parse("comments only", "# nothing\n\n   # more\n", NULL);
	parse("a full rule",
	    "body-scan 32K\n"
	    "rule \"Forged local sender\"\n"
	    "    sender *@example.com *@example.org\n"
	    "    not client 127.0.0.0/8 ::1 192.168.0.0/16\n"
	    "    not authenticated\n"
	    "    reject 550 5.7.1 \"Not from here\"\n", NULL);
	parse("regex value", "rule r\n header Subject /^(re: )*win(ner)? [0-9]+/\n discard\n", NULL);
	parse("CRLF line ends", "rule r\r\n sender x@y\r\n accept\r\n", NULL);
	parse("time and day", "rule r\n time 22:00-06:00\n day mon-fri\n tempfail\n", NULL);
	parse("day list", "rule r\n day sat,sun\n accept\n", NULL);
	parse("size", "rule r\n size > 10M\n reject 552 5.3.4 too big\n", NULL);
	parse("size without blank", "rule r\n size >=1k\n accept\n", NULL);
	parse("all actions that combine",
	    "rule r\n add-header X-A b c\n tag-subject [x]\n folder Junk\n copy a@b.c\n redirect d@e.f\n continue\n", NULL);
	parse("outside a rule", "sender x\n", ":1: \"sender\" outside a rule");
	parse("unknown keyword", "rule r\n sendr x@y\n accept\n", ":2: unknown keyword \"sendr\"");
	parse("no action", "rule r\n sender x@y\nrule s\n accept\n", ":1: rule \"r\" has no action");
	parse("two finals", "rule r\n accept\n reject\n", "only one of accept, reject");
	parse("reject plus action", "rule r\n reject\n add-header X-A b\n", "reject cannot be combined");
	parse("continue after reject", "rule r\n reject\n continue\n", "continue after reject");
	parse("bad cidr", "rule r\n client 10.0.0.300\n accept\n", ":2: client: \"10.0.0.300\" is not an IP");
	parse("host bits", "rule r\n client 10.0.0.1/8\n accept\n", "bits set beyond the prefix");
	parse("bad regex", "rule r\n body /a(b/\n accept\n", ":2: bad regular expression");
	parse("unterminated quote", "rule r\n body \"abc\n accept\n", "missing closing quote");
	parse("unterminated regex", "rule r\n body /abc\n accept\n", "missing closing /");
	parse("reject code class", "rule r\n reject 451 x\n", "reply code must be 5xx");
	parse("tempfail code class", "rule r\n tempfail 550\n", "reply code must be 4xx");
	parse("enhanced code class", "rule r\n reject 550 4.7.1 x\n", "bad enhanced status code");
	parse("bad time", "rule r\n time 25:00-06:00\n accept\n", "time: expected a range");
	parse("empty time", "rule r\n time 06:00-06:00\n accept\n", "empty range");
	parse("bad day", "rule r\n day funday\n accept\n", "day:");
	parse("bad folder", "rule r\n folder ../etc\n", "folder: expected one folder name");
	parse("dot folder", "rule r\n folder .Junk\n", "folder:");
	parse("bad redirect", "rule r\n redirect not an address@\n", "redirect:");
	parse("duplicate name", "rule a\n accept\nrule A\n accept\n", "already defined at line 1");
	parse("body-scan after rule", "rule a\n accept\nbody-scan 1K\n", "body-scan must come before");
	parse("header without pattern", "rule a\n header Subject\n accept\n", "expected at least one pattern");
	parse("match bad", "rule a\n match some\n accept\n", "match: expected all or any");
	parse("size garbage", "rule a\n size > lots\n accept\n", "expected a number");
	parse("stacked quantifiers", "rule a\n body /a(b|c)+++/\n accept\n", "repeated quantifiers");
	parse("big repetition", "rule a\n body /(a{1,200})/\n accept\n", "repetition count over 100");
	parse("many repetitions", "rule a\n body /a{2}b{2}c{2}d{2}e{2}/\n accept\n", "more than 4");
	parse("quantifier chars in brackets are fine", "rule a\n body /[*+?{]+x[[:alpha:]]*/\n accept\n", NULL);
	parse("escaped quantifiers are fine", "rule a\n body /a\\+\\+b{2}/\n accept\n", NULL);
	parse("glob ending in backslash", "rule a\n sender abc\\\n accept\n", "single backslash");

	{
		static const char nul[] = "rule a\n acc\0ept\n";
		int rc = rules_parse(&rs, "rules", nul, sizeof nul - 1, err, sizeof err);
		CHECK(rc < 0 && strstr(err, "rules:2: NUL byte"), "NUL in a line refused");
		rules_free(&rs);
	}

	/* the literal prefilter of regular expressions must never lose a match */
	{
		static const struct { const char *re, *s; int want; } rx[] = {
			{ "(lottery|jackpot)-12 +winner", "the JACKPOT-12   Winner is", 1 },
			{ "(lottery|jackpot)-12 +winner", "the jackpot-12 loser", 0 },
			{ "colou?r", "COLOR", 1 },
			{ "ab*c", "ac", 1 },
			{ "abc{0,1}d", "abd", 1 },
			{ "x|yyyy", "x", 1 },
			{ "a\\.b\\.c", "A.B.C", 1 },
			{ "a\\.b\\.c", "aXbXc", 0 },
			{ "[xyz]+abc", "zzABC", 1 },
			{ "[[:upper:]]+abc", "XABC", 1 },
			{ "a{2}bcd", "aaBCD", 1 },
			{ "a{2}bcd", "aBCD", 0 },
			{ "^from: .*bank", "From: Your BANK", 1 },
			{ "(foo)?barbaz", "BARBAZ", 1 },
			{ "viagra", "buy V1agra", 0 },
			{ "(cheap|discount) (pills|meds)", "Cheap MEDS here", 1 },
			{ "(cheap|discount) (pills|meds)", "DISCOUNT pills", 1 },
			{ "(cheap|discount) (pills|meds)", "cheap stuff", 0 },
			{ "(cheap|discount) (pills|meds)", "nothing at all", 0 },
			{ "(abc|de)fgh", "DEFGH", 1 },
			{ "(abc|def)?xyz", "xyz", 1 },
			{ "(abc|def)*xyz", "xyz", 1 },
			{ "(abc|def){0,1}xyz", "xyz", 1 },
			{ "(abc|def)+", "DEFdef", 1 },
			{ "(a\\.bc|xyz)", "A.BC", 1 },
			{ "(a\\.bc|xyz)", "aXbc", 0 },
			{ "(abc|d.f)", "dxf", 1 },
			{ "(foo|bar)|bazz", "bazz", 1 },
			{ "((abc|def)|xyz)", "xyz", 1 },
			{ "(abc|def|ghi)jk", "GHIJK", 1 },
			{ "zzqzz", "zzqz zzqZZ", 1 },	/* the search anchors on q */
			{ "zzqzz", "zzqz qzz", 0 },
			{ "qxyz", "QXYZ", 1 },
			{ "xyzq", "q xy xyzq", 1 },
			{ "xyzq", "q xy xyz", 0 },
		};
		size_t k;
		for (k = 0; k < sizeof rx / sizeof rx[0]; k++) {
			char txt[300];
			struct rmsg m;
			struct renv e;
			struct rresult r;
			snprintf(txt, sizeof txt, "rule h\n header Subject /%s/\n reject\nrule b\n body /%s/\n reject\n", rx[k].re, rx[k].re);
			if (rules_parse(&rs, "rules", txt, strlen(txt), err, sizeof err) < 0) {
				CHECK(0, "regex %s parses: %s", rx[k].re, err);
				continue;
			}
			msg_of(&m, &e, rx[k].s, rx[k].s);
			rs.rules[0].conds[0].hname[0] = 'S';
			rules_run(&rs, &e, ST_DATA, &r, NULL);
			CHECK((r.v == V_REJECT) == rx[k].want && (!rx[k].want || r.rule == 0),
			    "header /%s/ %s \"%s\"", rx[k].re, rx[k].want ? "matches" : "does not match", rx[k].s);
			rresult_free(&r);
			/* the body rule alone */
			rs.rules[0].conds[0].neg = 1;
			rs.rules[0].conds[0].pats[0].need = NULL;
			rules_run(&rs, &e, ST_DATA, &r, NULL);
			CHECK((r.v == V_REJECT && r.rule == 1) == rx[k].want || (rx[k].want == 0 && r.rule == 0),
			    "body /%s/ %s \"%s\"", rx[k].re, rx[k].want ? "matches" : "does not match", rx[k].s);
			rresult_free(&r);
			rmsg_free(&m);
			rules_free(&rs);
		}
	}

	/* body globs "*text*" are searched in the whole lowercased body */
	{
		static const struct { const char *glob, *s; int want; } bg[] = {
			{ "*zzqzz*", "first line\nzzqz zzqZZ end", 1 },
			{ "*zzqzz*", "zzqz qzz\nzz", 0 },
			{ "*unsubscribe from this list*", "To UNSUBSCRIBE FROM THIS LIST, reply", 1 },
			{ "*unsubscribe from this list*", "unsubscribe from this lis", 0 },
		};
		size_t k;
		for (k = 0; k < sizeof bg / sizeof bg[0]; k++) {
			char txt[300];
			struct rmsg m;
			struct renv e;
			struct rresult r;
			snprintf(txt, sizeof txt, "rule b\n body \"%s\"\n reject\n", bg[k].glob);
			if (rules_parse(&rs, "rules", txt, strlen(txt), err, sizeof err) < 0) {
				CHECK(0, "glob %s parses: %s", bg[k].glob, err);
				continue;
			}
			msg_of(&m, &e, "x", bg[k].s);
			rules_run(&rs, &e, ST_DATA, &r, NULL);
			CHECK((r.v == V_REJECT) == bg[k].want, "body %s %s", bg[k].glob,
			    bg[k].want ? "found" : "not found");
			rresult_free(&r);
			rmsg_free(&m);
			rules_free(&rs);
		}
	}

	/* the literals a regex needs: a run, else a group of alternatives */
	{
		static const struct { const char *re; const char *need; size_t len; } nd[] = {
			{ "(cheap|discount) (pills|meds)", "cheap\0discount\0", 15 },
			{ "xx(cheap|discount)yyyy", "yyyy\0", 5 },
			{ "(ab|cd)", "", 0 },
			{ "(abc|def)?xyz", "xyz\0", 4 },
			{ "(abc|d.f)", "", 0 },
		};
		size_t k;
		for (k = 0; k < sizeof nd / sizeof nd[0]; k++) {
			char txt[200];
			const char *need;
			snprintf(txt, sizeof txt, "rule b\n body /%s/\n reject\n", nd[k].re);
			if (rules_parse(&rs, "rules", txt, strlen(txt), err, sizeof err) < 0) {
				CHECK(0, "regex %s parses: %s", nd[k].re, err);
				continue;
			}
			need = rs.rules[0].conds[0].pats[0].need;
			CHECK(nd[k].len ? need && !memcmp(need, nd[k].need, nd[k].len) && !need[nd[k].len] :
			    need == NULL, "/%s/ needs %s", nd[k].re, nd[k].len ? nd[k].need : "nothing");
			rules_free(&rs);
		}
	}

	/* stages */
	t = "rule c\n client 10.0.0.0/8\n accept\n"
	    "rule h\n helo x\n accept\n"
	    "rule m\n sender x\n not authenticated\n accept\n"
	    "rule r\n recipient x\n client ::1\n accept\n"
	    "rule d\n header Subject x\n accept\n"
	    "rule f\n sender x\n stage data\n accept\n"
	    "rule n\n recipients > 3\n accept\n"
	    "rule always\n accept\n";
	CHECK(rules_parse(&rs, "rules", t, strlen(t), err, sizeof err) == 0, "stage file parses");
	if (rs.nrules == 8) {
		CHECK(rs.rules[0].stage == ST_CONNECT, "client: connect stage");
		CHECK(rs.rules[1].stage == ST_HELO, "helo: helo stage");
		CHECK(rs.rules[2].stage == ST_MAIL, "sender, authenticated: mail stage");
		CHECK(rs.rules[3].stage == ST_RCPT && rs.rules[3].rcpt_dep, "recipient: rcpt stage");
		CHECK(rs.rules[4].stage == ST_DATA && rs.need_headers, "header: data stage");
		CHECK(rs.rules[5].stage == ST_DATA, "stage data forces data");
		CHECK(rs.rules[6].stage == ST_DATA, "recipient count: data stage");
		CHECK(rs.rules[7].stage == ST_CONNECT, "no conditions: earliest stage");
		rules_cond_str(&rs.rules[3].conds[1], &b);
		CHECK_STR(b.s, "client ::1/128", "condition printed back");
	}
	rules_free(&rs);
	buf_free(&b);
	CHECK_DONE();
}
