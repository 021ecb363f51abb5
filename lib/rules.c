/* rules.c: the rules(5) parser. One pass over the file, line by line;
 * the first error ends the parse with "path:line: reason". */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "log.h"
#include "rules.h"

#define MAX_TOKENS 256
#define MAX_LINE 8192

struct tok {
	char *s;
	int re;			/* written /like this/ */
	int quoted;
};

struct pstate {
	struct ruleset *rs;
	const char *path;
	int lineno;
	char *err;
	size_t errlen;
	struct rule *cur;
	int flags;		/* RULES_LAZY */
};

static int
perr(struct pstate *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%d: %s", p->path, p->lineno, msg);
	return -1;
}

/* Split a line into tokens in place. Returns the count, or -1 with a
 * reason in *why. */
static int
tokenize(char *s, struct tok *t, const char **why)
{
	int n = 0;

	for (;;) {
		char *o;

		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			return n;
		if (n == MAX_TOKENS) {
			*why = "too many words on one line";
			return -1;
		}
		t[n].re = t[n].quoted = 0;
		if (*s == '"' || *s == '/') {
			char q = *s++;
			t[n].s = o = s;
			t[n].re = q == '/';
			t[n].quoted = q == '"';
			for (;;) {
				if (!*s) {
					*why = q == '"' ? "missing closing quote" :
					    "missing closing / of a regular expression";
					return -1;
				}
				if (*s == '\\' && s[1] == q) {
					*o++ = q;
					s += 2;
					continue;
				}
				if (*s == q)
					break;
				*o++ = *s++;
			}
			s++;
			if (*s && *s != ' ' && *s != '\t') {
				*why = q == '"' ? "text right after a closing quote" :
				    "text right after a regular expression";
				return -1;
			}
			*o = 0;
			if (*s)
				s++;
		} else {
			t[n].s = s;
			while (*s && *s != ' ' && *s != '\t')
				s++;
			if (*s)
				*s++ = 0;
		}
		n++;
	}
}

/* Everything a parse keeps lives in the ruleset's arena (a list of
 * 64 KiB chunks): thousands of small allocations become pointer bumps,
 * and rules_free() frees a few chunks. */
struct chunk {
	struct chunk *next;
	size_t used, size;
	max_align_t data[];
};
static __thread struct ruleset *arena_rs;	/* the ruleset being parsed */

static void *
ra_alloc(size_t n)
{
	struct chunk *c = arena_rs->arena;
	void *r;

	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!c || c->size - c->used < n) {
		size_t sz = n > 65536 - sizeof *c ? n : 65536 - sizeof *c;
		c = xmalloc(sizeof *c + sz);
		c->next = arena_rs->arena;
		c->used = 0;
		c->size = sz;
		arena_rs->arena = c;
	}
	r = (char *)c->data + c->used;
	c->used += n;
	return r;
}

static void *
ra_calloc(size_t n, size_t sz)
{
	void *r;

	if (sz && n > ((size_t)-1 >> 1) / sz)
		die(EXIT_TEMP, "out of memory");
	r = ra_alloc(n * sz);
	memset(r, 0, n * sz);
	return r;
}

static char *
ra_strdup(const char *s)
{
	size_t l = strlen(s) + 1;
	return memcpy(ra_alloc(l), s, l);
}

static char *
join(struct tok *t, int n)
{
	size_t len = 0, l;
	char *r, *o;
	int i;

	for (i = 0; i < n; i++)
		len += strlen(t[i].s) + 1;
	o = r = ra_alloc(len + 1);
	for (i = 0; i < n; i++) {
		if (i)
			*o++ = ' ';
		l = strlen(t[i].s);
		memcpy(o, t[i].s, l);
		o += l;
	}
	*o = 0;
	return r;
}

/* Grow an array by one element, doubling its capacity (a rules file
 * has thousands of rules; one realloc each would copy them all). */
static void *
grow(void *v, int n, int *cap, size_t sz)
{
	if (n >= *cap) {
		*cap = *cap ? *cap * 2 : 4;
		v = xreallocarray(v, (size_t)*cap, sz);
	}
	return v;
}

/* the same in the arena (the old copy stays there, unused) */
static void *
ra_grow(void *v, int n, int *cap, size_t sz)
{
	if (n >= *cap) {
		void *nv;
		*cap = *cap ? *cap * 2 : 2;
		nv = ra_calloc((size_t)*cap, sz);
		if (n)
			memcpy(nv, v, (size_t)n * sz);
		v = nv;
	}
	return v;
}

/* Keywords are ASCII: compare the first letter before the whole word
 * (the parser looks up every line's keyword in a few tables). */
static int
is_kw(const char *s, const char *kw)
{
	while (*kw && rules_lc[(unsigned char)*s] == (unsigned char)*kw) {
		s++;
		kw++;
	}
	return !*kw && !*s;
}

/* Recognise "literal", "*literal*", "literal*", "*literal", "*" so
 * matching can skip the general glob. */
static void
glob_classify(struct rpat *p)
{
	const char *s = p->src;
	size_t l = strlen(s), b = 0, e = l, i, n = 0;
	int lead, trail;
	char *lit;

	p->kind = PK_GLOB;
	lead = l > 0 && s[0] == '*';
	trail = l > 1 && s[l - 1] == '*' && s[l - 2] != '\\';
	if (l == 1 && lead) {
		p->kind = PK_ANY;
		return;
	}
	if (lead)
		b = 1;
	if (trail)
		e = l - 1;
	for (i = b; i < e; i++)
		if (s[i] == '*' || s[i] == '?')
			return;
		else if (s[i] == '\\' && i + 1 < e)
			i++;
	if (e <= b && (lead || trail)) {
		p->kind = PK_ANY;	/* "**" */
		return;
	}
	lit = ra_alloc(e - b + 1);
	for (i = b; i < e; i++) {
		if (s[i] == '\\' && i + 1 < e)
			i++;
		lit[n++] = (char)rules_lc[(unsigned char)s[i]];
	}
	lit[n] = 0;
	p->kind = lead && trail ? PK_SUBSTR : lead ? PK_SUFFIX : trail ? PK_PREFIX : PK_EXACT;
	p->litlen = n;
	p->lit = lit;
}

/* Refuse regular expressions that make regcomp(3) blow up (glibc
 * expands repetitions by copying the tree): stacked quantifiers, big or
 * many {n,m} counts, very long expressions. Real rules never need them. */
static const char *
re_sane(const char *s)
{
	size_t i, n = strlen(s);
	int prev_q = 0, braces = 0;

	if (n > 1024)
		return "regular expression longer than 1024 characters";
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\\' && i + 1 < n) {
			i++;
			prev_q = 0;
			continue;
		}
		if (c == '[') {
			/* bracket expression: skip to its end */
			size_t j = i + 1;
			if (j < n && s[j] == '^')
				j++;
			if (j < n && s[j] == ']')
				j++;
			while (j < n && s[j] != ']') {
				if (s[j] == '[' && j + 1 < n && strchr(":.=", s[j + 1])) {
					const char *e = strstr(s + j + 2, ":]");
					j = e ? (size_t)(e - s) + 2 : n;
					continue;
				}
				j++;
			}
			i = j;
			prev_q = 0;
			continue;
		}
		if (c == '*' || c == '+' || c == '?' || c == '{') {
			if (prev_q)
				return "repeated quantifiers in a regular expression";
			if (c == '{') {
				long a = 0, b = 0;
				char *end;
				a = strtol(s + i + 1, &end, 10);
				b = a;
				if (*end == ',')
					b = isdigit((unsigned char)end[1]) ? strtol(end + 1, &end, 10) : a;
				if (a > 100 || b > 100)
					return "repetition count over 100 in a regular expression";
				if (++braces > 4)
					return "more than 4 {n,m} repetitions in a regular expression";
				while (i < n && s[i] != '}')
					i++;
			}
			prev_q = 1;
			continue;
		}
		prev_q = 0;
	}
	return NULL;
}

/* The regex with its literal letters lowercased (escapes and [:class:]
 * names kept), so it can run without REG_ICASE over lowercased text:
 * glibc's REG_ICASE copies and converts the whole subject per call. */
static char *
re_lower(const char *s)
{
	struct buf b = BUF_INIT;

	while (*s) {
		if (*s == '\\' && s[1]) {
			buf_add(&b, s, 2);
			s += 2;
		} else if (*s == '[' && s[1] == ':') {
			const char *e = strstr(s + 2, ":]");
			size_t l = e ? (size_t)(e - s) + 2 : strlen(s);
			if (l == 9 && !strncmp(s, "[:upper:]", 9))
				buf_adds(&b, "[:lower:]");
			else
				buf_add(&b, s, l);
			s += l;
		} else
			buf_addc(&b, (char)rules_lc[(unsigned char)*s++]);
	}
	buf_addc(&b, 0);
	return b.s;
}

/* A top-level group of plain alternatives, "(cheap|discount)", not
 * optional: one of them is in every match. Appends them to alts as
 * "a\0b\0" and returns the ')' (NULL: not such a group, or one under 3
 * characters). */
static const char *
re_alt_group(const char *s, struct buf *alts)
{
	size_t start = alts->len, run = 0, shortest = (size_t)-1;

	for (s++; *s && *s != ')'; s++) {
		char c = *s;
		if (c == '|') {
			if (run < shortest)
				shortest = run;
			buf_addc(alts, 0);
			run = 0;
			continue;
		}
		if (c == '\\' && s[1] && strchr(".[]()|*+?{}^$\\/", s[1]))
			c = *++s;
		else if (strchr(".[]()*+?{}^$\\", c))
			goto no;	/* not plain */
		buf_addc(alts, (char)rules_lc[(unsigned char)c]);
		run++;
	}
	if (run < shortest)
		shortest = run;
	if (*s != ')' || s[1] == '*' || s[1] == '?' || s[1] == '{' || shortest < 3)
		goto no;
	buf_addc(alts, 0);
	return s;
no:
	alts->len = start;
	return NULL;
}

/* What every match of an ERE must contain, so that a cheap search can
 * rule most texts out before regexec: the longest run of plain
 * characters at the top level (none optional), else the first
 * top-level group of plain alternatives. As "a\0" or "a\0b\0...",
 * lowercase, ended by an empty string; NULL when there is nothing of 3
 * or more characters, or the expression has a top-level |. */
static char *
re_needed(const char *s)
{
	struct buf run = BUF_INIT, best = BUF_INIT, alts = BUF_INIT;
	int depth = 0;

	for (; *s; s++) {
		char c = *s, lit = 0;
		int is_lit = 0;
		if (c == '\\' && s[1]) {
			if (strchr(".[]()|*+?{}^$\\/", s[1])) {
				lit = s[1];
				is_lit = 1;
			}
			s++;
		} else if (c == '|' && depth == 0) {
			buf_free(&run);
			buf_free(&best);
			buf_free(&alts);
			return NULL;
		} else if (c == '{') {
			while (s[1] && *s != '}')
				s++;
		} else if (c == '(') {
			const char *e;
			if (depth == 0 && alts.len == 0 && (e = re_alt_group(s, &alts))) {
				s = e;	/* a group as a whole: ends the run */
			} else
				depth++;
		} else if (c == ')')
			depth--;
		else if (c == '[') {
			/* skip the bracket expression */
			const char *e = s + 1;
			if (*e == '^')
				e++;
			if (*e == ']')
				e++;
			while (*e && *e != ']') {
				if (*e == '[' && e[1] == ':') {
					const char *x = strstr(e + 2, ":]");
					e = x ? x + 2 : e + strlen(e);
					continue;
				}
				e++;
			}
			s = *e ? e : e - 1;
		} else if (!strchr(".*+?{}^$", c)) {
			lit = c;
			is_lit = 1;
		}
		if (is_lit && depth == 0) {
			char nx = s[1];
			if (nx == '*' || nx == '?' || nx == '{') {
				is_lit = 0;	/* optional or counted: not required as is */
			} else {
				buf_addc(&run, (char)rules_lc[(unsigned char)lit]);
				if (nx != '+')
					continue;
			}
		}
		if (run.len > best.len) {
			buf_clear(&best);
			buf_add(&best, run.s, run.len);
		}
		buf_clear(&run);
	}
	if (run.len > best.len) {
		buf_clear(&best);
		buf_add(&best, run.s, run.len);
	}
	buf_free(&run);
	if (best.len >= 3) {
		buf_free(&alts);
		buf_addc(&best, 0);
		buf_addc(&best, 0);
		return best.s;
	}
	buf_free(&best);
	if (alts.len == 0) {
		buf_free(&alts);
		return NULL;
	}
	buf_addc(&alts, 0);
	return alts.s;
}

/* Compile a regex pattern (its source checked by pat_compile): the
 * lowercased form for body text, else REG_ICASE. NULL, or why not. */
static const char *
re_compile(struct rpat *p, char *ebuf, size_t elen)
{
	int rc;

	if (p->body) {
		/* body text is lowercased once: one compile, no REG_ICASE */
		char *low = re_lower(p->src);
		p->has_lre = regcomp(&p->lre, low, REG_EXTENDED | REG_NOSUB | REG_NEWLINE) == 0;
		free(low);
		if (p->has_lre)
			return NULL;
	}
	rc = regcomp(&p->re, p->src, REG_EXTENDED | REG_ICASE | REG_NOSUB | REG_NEWLINE);
	if (rc) {
		char e[150];
		regerror(rc, &p->re, e, sizeof e);
		snprintf(ebuf, elen, "bad regular expression /%s/: %s", p->src, e);
		return ebuf;
	}
	p->has_re = 1;
	return NULL;
}

static pthread_mutex_t lazy_lock = PTHREAD_MUTEX_INITIALIZER;

int
rules_pat_ready(const struct rpat *cp)
{
	/* the compiled regex is a cache filled once; the ruleset stays
	 * logically read-only (shared by the milter's threads) */
	struct rpat *p = (struct rpat *)cp;
	int st = __atomic_load_n(&p->ready, __ATOMIC_ACQUIRE);
	char ebuf[200];

	if (st)
		return st > 0;
	pthread_mutex_lock(&lazy_lock);
	st = p->ready;
	if (!st) {
		st = re_compile(p, ebuf, sizeof ebuf) ? -1 : 1;
		__atomic_store_n(&p->ready, st, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&lazy_lock);
	return st > 0;
}

void
rules_pat_error(const struct rpat *p, char *err, size_t errlen)
{
	struct rpat tmp;
	const char *why;

	memset(&tmp, 0, sizeof tmp);
	tmp.src = p->src;
	tmp.body = p->body;
	why = re_compile(&tmp, err, errlen);
	if (tmp.has_re)
		regfree(&tmp.re);
	if (tmp.has_lre)
		regfree(&tmp.lre);
	if (!why)
		snprintf(err, errlen, "regular expression /%s/ compiles now", p->src);
}

static const char *
pat_compile(struct rpat *p, const struct tok *t, int body, int lazy)
{
	static __thread char ebuf[200];
	size_t l;

	p->src = ra_strdup(t->s);
	p->is_re = t->re;
	if (!t->re) {
		l = strlen(t->s);
		/* an odd run of trailing backslashes quotes nothing */
		size_t k = 0;
		while (k < l && t->s[l - 1 - k] == '\\')
			k++;
		if (k % 2)
			return "a glob pattern may not end in a single backslash";
		glob_classify(p);
		return NULL;
	}
	if (!*t->s)
		return "empty regular expression";
	{
		const char *why = re_sane(t->s);
		if (why) {
			p->is_re = 0;
			return why;
		}
	}
	{
		char *need = re_needed(t->s);
		size_t n = 0;
		while (need && need[n])	/* the list's length, with its end */
			n += strlen(need + n) + 1;
		p->need = need ? memcpy(ra_alloc(n + 1), need, n + 1) : NULL;
		p->needlen = need ? strlen(need) : 0;
		free(need);
	}
	p->body = body;
	if (lazy)
		return NULL;	/* p->ready 0: rules_pat_ready() compiles it */
	if (re_compile(p, ebuf, sizeof ebuf))
		return ebuf;
	p->ready = 1;
	return NULL;
}

static int
parse_size(const char *s, long long *v)
{
	char *end;
	long long n, mul = 1;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	n = strtoll(s, &end, 10);
	if (errno || n < 0)
		return -1;
	if (*end) {
		if (!strcasecmp(end, "k") || !strcasecmp(end, "kb") || !strcasecmp(end, "kib"))
			mul = 1024;
		else if (!strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib"))
			mul = 1024 * 1024;
		else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib"))
			mul = 1024LL * 1024 * 1024;
		else
			return -1;
	}
	if (n > (1LL << 50) / mul)
		return -1;
	*v = n * mul;
	return 0;
}

static const char *
parse_cmp(struct tok *t, int n, enum cmp_op *op, long long *num)
{
	char buf[64], *s;
	int i;

	buf[0] = 0;
	for (i = 0; i < n; i++)
		if (strlcat(buf, t[i].s, sizeof buf) >= sizeof buf)
			return "comparison too long";
	s = buf;
	if (!strncmp(s, ">=", 2)) { *op = OP_GE; s += 2; }
	else if (!strncmp(s, "<=", 2)) { *op = OP_LE; s += 2; }
	else if (*s == '>') { *op = OP_GT; s++; }
	else if (*s == '<') { *op = OP_LT; s++; }
	else if (*s == '=') { *op = OP_EQ; s++; if (*s == '=') s++; }
	else
		return "expected a comparison: > < >= <= = followed by a number";
	if (parse_size(s, num) < 0)
		return "expected a number (with an optional K, M or G suffix)";
	return NULL;
}

static int
parse_hhmm(const char *s, int *min)
{
	int h, m;
	char c;

	if (sscanf(s, "%2d:%2d%c", &h, &m, &c) != 2 || h < 0 || m < 0 || m > 59 ||
	    h > 24 || (h == 24 && m))
		return -1;
	*min = h * 60 + m;
	return 0;
}

static const char *days[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

static int
day_index(const char *s, size_t n)
{
	int i;

	if (n < 3)
		return -1;
	for (i = 0; i < 7; i++)
		if (!strncasecmp(s, days[i], 3)) {
			/* accept "mon", "monday" and other prefixes of the name */
			static const char *full[] = { "sunday", "monday", "tuesday",
			    "wednesday", "thursday", "friday", "saturday" };
			if (n <= strlen(full[i]) && !strncasecmp(s, full[i], n))
				return i;
		}
	return -1;
}

static const char *
parse_days(struct tok *t, int n, unsigned *mask)
{
	char *all = join(t, n), *p = all;
	const char *why = NULL;

	*mask = 0;
	while (*p && !why) {
		size_t l = strcspn(p, ", ");
		char *dash = memchr(p, '-', l);
		int a, b;

		if (l == 0) {
			p++;
			continue;
		}
		if (dash) {
			a = day_index(p, (size_t)(dash - p));
			b = day_index(dash + 1, l - (size_t)(dash - p) - 1);
		} else
			a = b = day_index(p, l);
		if (a < 0 || b < 0)
			why = "expected days like mon-fri or sat,sun";
		else
			for (;;) {
				*mask |= 1u << a;
				if (a == b)
					break;
				a = (a + 1) % 7;
			}
		p += l;
	}
	if (!why && !*mask)
		why = "expected at least one day";
	return why;
}

static const struct {
	const char *kw;
	enum cond_kind kind;
	enum rstage stage;
} condkw[] = {
	{ "sender", C_SENDER, ST_MAIL },
	{ "recipient", C_RECIPIENT, ST_RCPT },
	{ "recipients", C_RCPTCOUNT, ST_DATA },
	{ "client", C_CLIENT, ST_CONNECT },
	{ "client-name", C_CLIENTNAME, ST_CONNECT },
	{ "helo", C_HELO, ST_HELO },
	{ "authenticated", C_AUTH, ST_MAIL },
	{ "header", C_HEADER, ST_DATA },
	{ "size", C_SIZE, ST_DATA },
	{ "body", C_BODY, ST_DATA },
	{ "attachment", C_ATTACHMENT, ST_DATA },
	{ "time", C_TIME, ST_CONNECT },
	{ "day", C_DAY, ST_CONNECT },
};
#define NCONDKW (int)(sizeof condkw / sizeof condkw[0])

static const struct {
	const char *kw;
	enum act_kind kind;
} actkw[] = {
	{ "accept", A_ACCEPT }, { "reject", A_REJECT }, { "tempfail", A_TEMPFAIL },
	{ "discard", A_DISCARD }, { "redirect", A_REDIRECT }, { "copy", A_COPY },
	{ "add-header", A_ADDHEADER }, { "tag-subject", A_TAG }, { "folder", A_FOLDER },
};
#define NACTKW (int)(sizeof actkw / sizeof actkw[0])

const char *
rules_stage_name(enum rstage s)
{
	static const char *n[] = { "connect", "helo", "mail", "rcpt", "data" };
	return (unsigned)s < 5 ? n[s] : "?";
}

const char *
rules_cond_name(enum cond_kind k)
{
	int i;

	for (i = 0; i < NCONDKW; i++)
		if (condkw[i].kind == k)
			return condkw[i].kw;
	return "?";
}

const char *
rules_act_name(enum act_kind k)
{
	int i;

	for (i = 0; i < NACTKW; i++)
		if (actkw[i].kind == k)
			return actkw[i].kw;
	return "?";
}

static int
parse_cond(struct pstate *p, int neg, enum cond_kind kind, struct tok *t, int n)
{
	struct rule *r = p->cur;
	struct rcond *c;
	const char *why = NULL;
	int i;

	r->conds = ra_grow(r->conds, r->nconds, &r->capconds, sizeof *r->conds);
	c = &r->conds[r->nconds];
	memset(c, 0, sizeof *c);
	c->kind = kind;
	c->neg = neg;
	c->line = p->lineno;
	r->nconds++;
	switch (kind) {
	case C_SENDER:
	case C_RECIPIENT:
	case C_CLIENTNAME:
	case C_HELO:
	case C_BODY:
	case C_ATTACHMENT:
	case C_HEADER:
		if (kind == C_HEADER) {
			if (n < 1 || t[0].re)
				return perr(p, "header: expected a field name (or *) and patterns");
			for (i = 0; t[0].s[i]; i++)
				if (t[0].s[i] == ':' && t[0].s[i + 1] == 0)
					t[0].s[i] = 0;	/* "Subject:" is fine too */
				else if ((unsigned char)t[0].s[i] <= ' ' || t[0].s[i] == ':' ||
				    (unsigned char)t[0].s[i] >= 127)
					return perr(p, "header: bad field name \"%s\"", t[0].s);
			if (!t[0].s[0])
				return perr(p, "header: empty field name");
			c->hname = ra_strdup(t[0].s);
			t++;
			n--;
		}
		if (n < 1)
			return perr(p, "%s: expected at least one pattern", rules_cond_name(kind));
		c->pats = ra_calloc((size_t)n, sizeof *c->pats);
		for (i = 0; i < n; i++) {
			why = pat_compile(&c->pats[i], &t[i], kind == C_BODY, p->flags & RULES_LAZY);
			c->npats = i + 1;
			if (why)
				return perr(p, "%s", why);
		}
		return 0;
	case C_CLIENT:
		if (n < 1)
			return perr(p, "client: expected addresses or CIDR prefixes");
		c->cidrs = ra_calloc((size_t)n, sizeof *c->cidrs);
		for (i = 0; i < n; i++) {
			int rc = t[i].re ? -1 : cidr_parse(t[i].s, &c->cidrs[i].ip, &c->cidrs[i].len);
			if (rc == -2)
				return perr(p, "client: %s has bits set beyond the prefix length", t[i].s);
			if (rc < 0)
				return perr(p, "client: \"%s\" is not an IP address or CIDR prefix", t[i].s);
			c->ncidrs = i + 1;
		}
		return 0;
	case C_AUTH:
		if (n != 0)
			return perr(p, "authenticated takes no value (use \"not authenticated\")");
		return 0;
	case C_SIZE:
	case C_RCPTCOUNT:
		if (n < 1)
			return perr(p, "%s: expected a comparison like > 5M", rules_cond_name(kind));
		why = parse_cmp(t, n, &c->op, &c->num);
		return why ? perr(p, "%s: %s", rules_cond_name(kind), why) : 0;
	case C_TIME: {
		char *all = join(t, n), *dash, *s, *q;
		int bad;
		for (s = q = all; *s; s++)
			if (*s != ' ')
				*q++ = *s;
		*q = 0;
		dash = strchr(all, '-');
		bad = !dash;
		if (!bad) {
			*dash = 0;
			bad = parse_hhmm(all, &c->from) < 0 || parse_hhmm(dash + 1, &c->to) < 0;
		}
		if (bad)
			return perr(p, "time: expected a range like 22:00-06:00");
		if (c->from == c->to)
			return perr(p, "time: empty range");
		return 0;
	}
	case C_DAY:
		if (n < 1)
			return perr(p, "day: expected days like mon-fri or sat,sun");
		why = parse_days(t, n, &c->days);
		return why ? perr(p, "day: %s", why) : 0;
	}
	return perr(p, "internal error");
}

static int
folder_ok(const char *s)
{
	size_t i;

	if (!*s || *s == '.' || strlen(s) > 200)
		return 0;
	for (i = 0; s[i]; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return 0;
	return !strstr(s, "..");
}

static int
text_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < ' ' || *s == 127)
			return 0;
	return 1;
}

static int
parse_reply(struct pstate *p, struct raction *a, struct tok *t, int n)
{
	char cls = a->kind == A_REJECT ? '5' : '4';
	const char *kw = rules_act_name(a->kind);
	int i = 0;

	a->code = cls == '5' ? 550 : 451;
	memcpy(a->xcode, cls == '5' ? "5.7.1" : "4.7.1", 6);
	if (i < n && !t[i].quoted && strlen(t[i].s) == 3 && isdigit((unsigned char)t[i].s[0]) &&
	    isdigit((unsigned char)t[i].s[1]) && isdigit((unsigned char)t[i].s[2])) {
		if (t[i].s[0] != cls)
			return perr(p, "%s: the reply code must be %cxx", kw, cls);
		a->code = atoi(t[i].s);
		i++;
	}
	if (i < n && !t[i].quoted && isdigit((unsigned char)t[i].s[0]) && strchr(t[i].s, '.')) {
		/* X.Y.Z, Y and Z 0-999 (leading zeros allowed, printed without) */
		const char *q = t[i].s;
		long v[3];
		int k, bad = 0;
		for (k = 0; k < 3 && !bad; k++) {
			int digits = 0;
			v[k] = 0;
			while (isdigit((unsigned char)*q) && v[k] <= 999) {
				v[k] = v[k] * 10 + (*q++ - '0');
				digits++;
			}
			if (!digits || v[k] > 999 || (k < 2 ? *q++ != '.' : *q != 0))
				bad = 1;
		}
		if (bad || v[0] != cls - '0')
			return perr(p, "%s: bad enhanced status code \"%s\" (want %c.x.y)", kw, t[i].s, cls);
		{
			char *x = a->xcode;
			for (k = 0; k < 3; k++) {
				if (k)
					*x++ = '.';
				if (v[k] >= 100)
					*x++ = (char)('0' + v[k] / 100);
				if (v[k] >= 10)
					*x++ = (char)('0' + v[k] / 10 % 10);
				*x++ = (char)('0' + v[k] % 10);
			}
			*x = 0;
		}
		i++;
	}
	if (i < n)
		a->text = join(t + i, n - i);
	else {
		const char *pre = cls == '5' ? "Message rejected by rule \"" :
		    "Message deferred by rule \"";
		size_t pl = strlen(pre), nl = strlen(p->cur->name);
		char *x = a->text = ra_alloc(pl + nl + 2);
		memcpy(x, pre, pl);
		memcpy(x + pl, p->cur->name, nl);
		memcpy(x + pl + nl, "\"", 2);
	}
	if (strlen(a->text) > 400)
		return perr(p, "%s: reply text longer than 400 characters", kw);
	if (!text_ok(a->text))
		return perr(p, "%s: control characters in the reply text", kw);
	return 0;
}

static int
parse_action(struct pstate *p, enum act_kind kind, struct tok *t, int n)
{
	struct rule *r = p->cur;
	struct raction *a;
	const char *kw = rules_act_name(kind);
	int i;

	r->acts = ra_grow(r->acts, r->nacts, &r->capacts, sizeof *r->acts);
	a = &r->acts[r->nacts++];
	memset(a, 0, sizeof *a);
	a->kind = kind;
	a->line = p->lineno;
	for (i = 0; i < n; i++)
		if (t[i].re)
			return perr(p, "%s: a /regular expression/ makes no sense here", kw);
	switch (kind) {
	case A_ACCEPT:
	case A_DISCARD:
		if (n)
			return perr(p, "%s takes no arguments", kw);
		break;
	case A_REJECT:
	case A_TEMPFAIL:
		if (parse_reply(p, a, t, n) < 0)
			return -1;
		break;
	case A_REDIRECT:
	case A_COPY:
		if (n < 1)
			return perr(p, "%s: expected one or more addresses", kw);
		a->addrs = ra_calloc((size_t)n, sizeof *a->addrs);
		for (i = 0; i < n; i++) {
			struct addr ad;
			const char *why = addr_parse_path(t[i].s, strlen(t[i].s), &ad, 0, 0, NULL);
			if (why)
				return perr(p, "%s: \"%s\": %s", kw, t[i].s, why);
			a->addrs[i] = ra_strdup(ad.full);
			a->naddrs = i + 1;
		}
		break;
	case A_ADDHEADER: {
		size_t l;
		if (n < 2)
			return perr(p, "add-header: expected a field name and a value");
		l = strlen(t[0].s);
		if (l && t[0].s[l - 1] == ':')
			t[0].s[--l] = 0;
		if (!l || l > 76)
			return perr(p, "add-header: bad field name");
		for (i = 0; t[0].s[i]; i++)
			if ((unsigned char)t[0].s[i] <= ' ' || t[0].s[i] == ':' ||
			    (unsigned char)t[0].s[i] >= 127)
				return perr(p, "add-header: bad field name \"%s\"", t[0].s);
		a->hname = ra_strdup(t[0].s);
		a->text = join(t + 1, n - 1);
		if (strlen(a->text) > 900 || !text_ok(a->text))
			return perr(p, "add-header: value too long or with control characters");
		break;
	}
	case A_TAG:
		if (n < 1)
			return perr(p, "tag-subject: expected the tag text, e.g. \"[SPAM]\"");
		a->text = join(t, n);
		if (strlen(a->text) > 200 || !text_ok(a->text))
			return perr(p, "tag-subject: tag too long or with control characters");
		break;
	case A_FOLDER:
		if (n != 1 || !folder_ok(t[0].s))
			return perr(p, "folder: expected one folder name (letters, digits, . _ -; not starting with a dot)");
		a->text = ra_strdup(t[0].s);
		break;
	}
	return 0;
}

/* Checks once a rule is complete. */
static int
finish_rule(struct pstate *p)
{
	struct rule *r = p->cur;
	int i, line = p->lineno;
	enum rstage st = ST_CONNECT;

	if (!r)
		return 0;
	p->lineno = r->line;
	if (r->nacts == 0)
		return perr(p, "rule \"%s\" has no action", r->name);
	r->has_final = 0;
	for (i = 0; i < r->nacts; i++) {
		enum act_kind k = r->acts[i].kind;
		if (k == A_ACCEPT || k == A_REJECT || k == A_TEMPFAIL || k == A_DISCARD) {
			if (r->has_final)
				return perr(p, "rule \"%s\": only one of accept, reject, tempfail, discard", r->name);
			r->has_final = 1;
			r->final = k;
		}
	}
	if (r->has_final && r->final != A_ACCEPT && r->nacts > 1)
		return perr(p, "rule \"%s\": %s cannot be combined with other actions", r->name,
		    rules_act_name(r->final));
	if (r->has_final && r->cont)
		return perr(p, "rule \"%s\": continue after %s", r->name, rules_act_name(r->final));
	for (i = 0; i < r->nconds; i++) {
		enum rstage s = ST_CONNECT;
		int j;
		for (j = 0; j < NCONDKW; j++)
			if (condkw[j].kind == r->conds[i].kind)
				s = condkw[j].stage;
		if (s > st)
			st = s;
		if (r->conds[i].kind == C_RECIPIENT)
			r->rcpt_dep = 1;
		switch (r->conds[i].kind) {
		case C_HEADER: p->rs->need_headers = 1; break;
		case C_BODY: p->rs->need_body = 1; break;
		case C_SIZE: p->rs->need_size = 1; break;
		case C_ATTACHMENT: p->rs->need_attach = 1; break;
		default: break;
		}
	}
	if (r->forced_data)
		st = ST_DATA;
	r->stage = st;
	p->cur = NULL;
	p->lineno = line;
	return 0;
}

static int
parse_line(struct pstate *p, char *line)
{
	struct tok t[MAX_TOKENS];
	const char *why = NULL;
	struct ruleset *rs = p->rs;
	int n, i, neg = 0;
	char *kw;

	n = tokenize(line, t, &why);
	if (n < 0)
		return perr(p, "%s", why);
	if (n == 0)
		return 0;
	if (t[0].quoted || t[0].re)
		return perr(p, "expected a keyword, got a quoted value");
	kw = t[0].s;
	if (is_kw(kw, "rule")) {
		if (finish_rule(p) < 0)
			return -1;
		if (n < 2)
			return perr(p, "rule: expected a name");
		if (rs->nrules >= RULES_MAX_RULES)
			return perr(p, "too many rules");
		rs->rules = grow(rs->rules, rs->nrules, &rs->caprules, sizeof *rs->rules);
		p->cur = &rs->rules[rs->nrules++];
		memset(p->cur, 0, sizeof *p->cur);
		p->cur->name = join(t + 1, n - 1);
		p->cur->line = p->lineno;
		p->cur->final = A_ACCEPT;
		if (strlen(p->cur->name) > 200 || !text_ok(p->cur->name))
			return perr(p, "rule: name too long or with control characters");
		return 0;
	}
	if (is_kw(kw, "body-scan")) {
		long long v;
		if (p->cur || rs->nrules)
			return perr(p, "body-scan must come before the first rule");
		if (n != 2 || parse_size(t[1].s, &v) < 0 || v > RULES_BODY_MAX)
			return perr(p, "body-scan: expected a size up to 16M, e.g. 64K");
		rs->body_limit = (size_t)v;
		return 0;
	}
	if (!p->cur)
		return perr(p, "\"%s\" outside a rule (start one with: rule NAME)", kw);
	if (is_kw(kw, "match")) {
		if (n != 2 || (!is_kw(t[1].s, "all") && !is_kw(t[1].s, "any")))
			return perr(p, "match: expected all or any");
		p->cur->any = is_kw(t[1].s, "any");
		return 0;
	}
	if (is_kw(kw, "stage")) {
		if (n != 2 || (!is_kw(t[1].s, "auto") && !is_kw(t[1].s, "data")))
			return perr(p, "stage: expected auto or data");
		p->cur->forced_data = is_kw(t[1].s, "data");
		return 0;
	}
	if (is_kw(kw, "continue") || is_kw(kw, "stop")) {
		if (n != 1)
			return perr(p, "%s takes no arguments", kw);
		p->cur->cont = is_kw(kw, "continue");
		return 0;
	}
	if (is_kw(kw, "not")) {
		neg = 1;
		if (n < 2)
			return perr(p, "not: expected a condition");
		kw = t[1].s;
		for (i = 0; i < NCONDKW; i++)
			if (is_kw(kw, condkw[i].kw))
				return parse_cond(p, 1, condkw[i].kind, t + 2, n - 2);
		return perr(p, "not: \"%s\" is not a condition", kw);
	}
	for (i = 0; i < NCONDKW; i++)
		if (is_kw(kw, condkw[i].kw))
			return parse_cond(p, neg, condkw[i].kind, t + 1, n - 1);
	for (i = 0; i < NACTKW; i++)
		if (is_kw(kw, actkw[i].kw))
			return parse_action(p, actkw[i].kind, t + 1, n - 1);
	return perr(p, "unknown keyword \"%s\"", kw);
}

/* Names are unique (case-insensitively): a hash table of the names in
 * file order; the first name seen again is the duplicate reported. */
static int
check_names(struct pstate *p)
{
	struct ruleset *rs = p->rs;
	const struct rule **tab, *dup = NULL, *first = NULL;
	size_t size = 16, mask, i;
	int r;

	if (rs->nrules < 2)
		return 0;
	while (size < (size_t)rs->nrules * 2)
		size *= 2;
	mask = size - 1;
	tab = xcalloc(size, sizeof *tab);
	for (r = 0; r < rs->nrules && !dup; r++) {
		const struct rule *ru = &rs->rules[r];
		const unsigned char *q;
		uint32_t h = 2166136261u;
		for (q = (const unsigned char *)ru->name; *q; q++)
			h = (h ^ rules_lc[*q]) * 16777619u;
		for (i = h & mask; tab[i]; i = (i + 1) & mask)
			if (!strcasecmp(tab[i]->name, ru->name)) {
				dup = ru;
				first = tab[i];
				break;
			}
		tab[i] = ru;
	}
	free(tab);
	if (!dup)
		return 0;
	p->lineno = dup->line;
	return perr(p, "rule \"%s\" already defined at line %d", dup->name, first->line);
}

int
rules_parse(struct ruleset *rs, const char *path, const char *text, size_t len,
    char *err, size_t errlen)
{
	return rules_parse_flags(rs, path, text, len, 0, err, errlen);
}

int
rules_parse_flags(struct ruleset *rs, const char *path, const char *text, size_t len,
    int flags, char *err, size_t errlen)
{
	struct pstate p = { rs, path, 0, err, errlen, NULL, flags };
	size_t off = 0;
	char line[MAX_LINE + 1];

	memset(rs, 0, sizeof *rs);
	rs->path = xstrdup(path);
	rs->body_limit = RULES_BODY_DEFAULT;
	rs->lazy = (flags & RULES_LAZY) != 0;
	arena_rs = rs;
	/* size the rules array once: lines starting with "rule " (a
	 * guess; the array still grows if it is short) */
	if (len <= RULES_MAX_FILE) {
		const char *q = text, *end = text + len;
		int n = 0;
		while (q < end) {
			const char *nl = memchr(q, '\n', (size_t)(end - q));
			const char *le = nl ? nl : end;
			while (q < le && (*q == ' ' || *q == '\t'))
				q++;
			if (le - q > 4 && (*q | 0x20) == 'r' && !strncasecmp(q, "rule", 4) &&
			    (q[4] == ' ' || q[4] == '\t'))
				n++;
			if (!nl)
				break;
			q = nl + 1;
		}
		if (n > 0) {
			rs->caprules = n < RULES_MAX_RULES ? n : RULES_MAX_RULES;
			rs->rules = xreallocarray(NULL, (size_t)rs->caprules, sizeof *rs->rules);
		}
	}
	if (len > RULES_MAX_FILE)
		return perr(&p, "file too large");
	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t l = nl ? (size_t)(nl - (text + off)) : len - off;

		size_t next = off + l + (nl ? 1 : 0);

		p.lineno++;
		if (l && text[off + l - 1] == '\r')
			l--;
		if (l > MAX_LINE)
			return perr(&p, "line longer than %d bytes", MAX_LINE);
		memcpy(line, text + off, l);
		line[l] = 0;
		if (strlen(line) != l)
			return perr(&p, "NUL byte in the line");
		if (parse_line(&p, line) < 0)
			return -1;
		off = next;
	}
	if (finish_rule(&p) < 0)
		return -1;
	return check_names(&p);
}

int
rules_parse_file(struct ruleset *rs, const char *path, char *err, size_t errlen)
{
	struct buf b = BUF_INIT;
	char chunk[65536];
	ssize_t n;
	int fd, rc;

	memset(rs, 0, sizeof *rs);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = read(fd, chunk, sizeof chunk)) > 0) {
		buf_add(&b, chunk, (size_t)n);
		if (b.len > RULES_MAX_FILE)
			break;
	}
	if (n < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		close(fd);
		buf_free(&b);
		errno = e;
		return -1;
	}
	close(fd);
	rc = rules_parse(rs, path, b.s ? b.s : "", b.len, err, errlen);
	buf_free(&b);
	if (rc < 0)
		errno = EINVAL;
	return rc;
}

void
rules_free(struct ruleset *rs)
{
	struct chunk *c, *next;
	int i, j, k;

	for (i = 0; i < rs->nrules; i++) {
		struct rule *r = &rs->rules[i];
		for (j = 0; j < r->nconds; j++) {
			struct rcond *cd = &r->conds[j];
			for (k = 0; k < cd->npats; k++) {
				if (cd->pats[k].has_re)
					regfree(&cd->pats[k].re);
				if (cd->pats[k].has_lre)
					regfree(&cd->pats[k].lre);
			}
		}
	}
	/* everything else is in the arena */
	for (c = rs->arena; c; c = next) {
		next = c->next;
		free(c);
	}
	free(rs->rules);
	free(rs->path);
	memset(rs, 0, sizeof *rs);
}

static void
add_word(struct buf *b, const char *s, int re)
{
	const char *q;
	int plain = *s && !re && *s != '"' && *s != '/' && *s != '#';

	for (q = s; *q && plain; q++)
		if (*q == ' ' || *q == '\t')
			plain = 0;
	buf_addc(b, ' ');
	if (plain) {
		buf_adds(b, s);
		return;
	}
	buf_addc(b, re ? '/' : '"');
	for (q = s; *q; q++) {
		if (*q == (re ? '/' : '"'))
			buf_addc(b, '\\');
		buf_addc(b, *q);
	}
	buf_addc(b, re ? '/' : '"');
}

void
rules_cond_str(const struct rcond *c, struct buf *b)
{
	static const char *ops[] = { "<", "<=", ">", ">=", "=" };
	char tmp[IP_STRLEN];
	int i;

	if (c->neg)
		buf_adds(b, "not ");
	buf_adds(b, rules_cond_name(c->kind));
	if (c->hname)
		add_word(b, c->hname, 0);
	for (i = 0; i < c->npats; i++)
		add_word(b, c->pats[i].src, c->pats[i].is_re);
	for (i = 0; i < c->ncidrs; i++) {
		cidr_format(&c->cidrs[i].ip, c->cidrs[i].len, tmp, sizeof tmp);
		buf_printf(b, " %s", tmp);
	}
	if (c->kind == C_SIZE && c->num >= 1024 && c->num % 1024 == 0) {
		long long n = c->num;
		const char *u = "K";
		if (n % (1024 * 1024) == 0) {
			n /= 1024;
			u = "M";
			if (n % (1024 * 1024) == 0) {
				n /= 1024;
				u = "G";
			}
		}
		buf_printf(b, " %s %lld%s", ops[c->op], n / 1024, u);
	} else if (c->kind == C_SIZE || c->kind == C_RCPTCOUNT)
		buf_printf(b, " %s %lld", ops[c->op], c->num);
	if (c->kind == C_TIME)
		buf_printf(b, " %02d:%02d-%02d:%02d", c->from / 60, c->from % 60, c->to / 60, c->to % 60);
	if (c->kind == C_DAY) {
		const char *sep = " ";
		for (i = 0; i < 7; i++)
			if (c->days & (1u << i)) {
				buf_printf(b, "%s%s", sep, days[i]);
				sep = ",";
			}
	}
}

void
rules_act_str(const struct raction *a, struct buf *b)
{
	int i;

	buf_adds(b, rules_act_name(a->kind));
	switch (a->kind) {
	case A_REJECT:
	case A_TEMPFAIL:
		buf_printf(b, " %d %s", a->code, a->xcode);
		add_word(b, a->text, 0);
		break;
	case A_REDIRECT:
	case A_COPY:
		for (i = 0; i < a->naddrs; i++)
			buf_printf(b, " %s", a->addrs[i]);
		break;
	case A_ADDHEADER:
		buf_printf(b, " %s", a->hname);
		add_word(b, a->text, 0);
		break;
	case A_TAG:
	case A_FOLDER:
		add_word(b, a->text, 0);
		break;
	default:
		break;
	}
}
