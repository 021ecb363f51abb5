/* rules_eval.c: glob matching, condition evaluation and the rule run
 * (see rules.h for the model), with an optional human trace. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "ipaddr.h"
#include "log.h"
#include "rules.h"

#define L16(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, \
	b + 11, b + 12, b + 13, b + 14, b + 15
const unsigned char rules_lc[256] = {
	L16(0), L16(16), L16(32), L16(48),
	64, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 91, 92, 93, 94, 95,
	L16(96), L16(112), L16(128), L16(144), L16(160), L16(176), L16(192), L16(208),
	L16(224), L16(240)
};
#define LC(c) rules_lc[(unsigned char)(c)]

/* Set when a regex needed by this thread's rules_run does not compile
 * (only possible with RULES_LAZY): the run ends in a temporary failure. */
static __thread int pat_broken;

static int
re_ready(const struct rpat *p)
{
	if (rules_pat_ready(p))
		return 1;
	pat_broken = 1;
	return 0;
}

static int
lit_eq(const char *lit, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)lit[i] != LC(s[i]))
			return 0;
	return 1;
}

/* case-insensitive search for the lowercase literal lit in s */
static int
lit_in(const char *lit, size_t ll, const char *s, size_t n)
{
	size_t i;
	unsigned char c0;

	if (ll == 0)
		return 1;
	if (ll > n)
		return 0;
	c0 = (unsigned char)lit[0];
	for (i = 0; i + ll <= n; i++)
		if (LC(s[i]) == c0 && lit_eq(lit + 1, s + i + 1, ll - 1))
			return 1;
	return 0;
}

/* How common a byte is in mail text (English letters by frequency,
 * space and line ends most): the rarest byte of a needle is the one to
 * look for with memchr. */
static int
commonness(unsigned char c)
{
	static const char order[] = " \netaoinshrdlcumwfgypbvkjxqz";
	const char *p = c ? strchr(order, c) : NULL;

	return p ? (int)(sizeof order - (size_t)(p - order)) : 0;
}

/* memmem for the lowercased body: memchr for the needle's rarest byte,
 * then a compare (glibc's memmem went at about a byte a cycle over a
 * 64 KiB body; memchr skips dozens). */
static const char *
find(const char *s, size_t n, const char *lit, size_t ll)
{
	size_t k = 0, i, at = 0;

	if (ll == 0)
		return s;
	for (i = 1; i < ll; i++)
		if (commonness((unsigned char)lit[i]) < commonness((unsigned char)lit[k]))
			k = i;
	while (at + ll <= n) {
		const char *p = memchr(s + at + k, lit[k], n - at - ll + 1);
		if (!p)
			return NULL;
		at = (size_t)(p - s) - k;
		if (!memcmp(s + at, lit, ll))
			return s + at;
		at++;
	}
	return NULL;
}

/* One of a regex's needed literals (rpat.need) is in s: lowercase
 * text or any case. */
static int
need_in(const struct rpat *p, const char *s, size_t n, int lowercase)
{
	const char *a;

	for (a = p->need; *a; a += strlen(a) + 1)
		if (lowercase ? find(s, n, a, strlen(a)) != NULL : lit_in(a, strlen(a), s, n))
			return 1;
	return 0;
}

int
rules_pat_match(const struct rpat *p, const char *s, size_t n)
{
	if (p->is_re) {
		if (p->need && !need_in(p, s, n, 0))
			return 0;
		if (!re_ready(p))
			return 0;
		if (!p->has_re) {
			/* a body pattern: only the lowercase form is compiled */
			char *tmp = xstrndup(s, n);
			size_t k;
			int hit;
			for (k = 0; k < n; k++)
				tmp[k] = (char)LC(tmp[k]);
			hit = p->has_lre && regexec(&p->lre, tmp, 0, NULL, 0) == 0;
			free(tmp);
			return hit;
		}
		return regexec(&p->re, s, 0, NULL, 0) == 0;
	}
	switch (p->kind) {
	case PK_ANY:
		return 1;
	case PK_EXACT:
		return n == p->litlen && lit_eq(p->lit, s, n);
	case PK_PREFIX:
		return n >= p->litlen && lit_eq(p->lit, s, p->litlen);
	case PK_SUFFIX:
		return n >= p->litlen && lit_eq(p->lit, s + n - p->litlen, p->litlen);
	case PK_SUBSTR:
		return lit_in(p->lit, p->litlen, s, n);
	case PK_GLOB:
		break;
	}
	return rules_glob(p->src, s, n);
}

int
rules_glob(const char *pat, const char *s, size_t n)
{
	const char *p = pat, *star_p = NULL;
	size_t i = 0, star_i = 0;

	while (i < n) {
		if (*p == '*') {
			while (*p == '*')
				p++;
			if (!*p)
				return 1;
			star_p = p;
			star_i = i;
			continue;
		}
		if (*p == '?') {
			p++;
			i++;
			continue;
		}
		if (*p) {
			char pc = *p;
			const char *np = p + 1;
			if (pc == '\\' && p[1]) {
				pc = p[1];
				np = p + 2;
			}
			if (LC(pc) == LC(s[i])) {
				p = np;
				i++;
				continue;
			}
		}
		if (!star_p)
			return 0;
		p = star_p;
		i = ++star_i;
	}
	while (*p == '*')
		p++;
	return *p == 0;
}

void
rules_esc(struct buf *b, const char *s, size_t len, size_t max)
{
	size_t i;

	buf_addc(b, '"');
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i >= max) {
			buf_adds(b, "...");
			break;
		}
		if (c == '"' || c == '\\')
			buf_printf(b, "\\%c", c);
		else if (c == '\t')
			buf_adds(b, "\\t");
		else if (c < ' ' || c >= 127)
			buf_printf(b, "\\x%02x", c);
		else
			buf_addc(b, (char)c);
	}
	buf_addc(b, '"');
}

int
rules_when(const char *spec, int *wday, int *minute)
{
	static const char *dn[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
	time_t now = time(NULL);
	struct tm tm;
	int h, m, i;
	char c;

	localtime_r(&now, &tm);
	*wday = tm.tm_wday;
	*minute = tm.tm_hour * 60 + tm.tm_min;
	if (!spec || !*spec)
		return 0;
	while (*spec == ' ')
		spec++;
	if (isalpha((unsigned char)*spec)) {
		for (i = 0; i < 7; i++)
			if (!strncasecmp(spec, dn[i], 3))
				break;
		if (i == 7)
			return -1;
		*wday = i;
		while (isalpha((unsigned char)*spec))
			spec++;
		while (*spec == ' ')
			spec++;
		if (!*spec)
			return 0;
	}
	if (sscanf(spec, "%d:%d%c", &h, &m, &c) != 2 || h < 0 || h > 23 || m < 0 || m > 59)
		return -1;
	*minute = h * 60 + m;
	return 0;
}

/* ---- conditions ---- */

/* Index of the first pattern matching s, or -1. s is NUL-terminated. */
static int
pats_match(const struct rcond *c, const char *s, size_t n)
{
	int i;

	for (i = 0; i < c->npats; i++)
		if (rules_pat_match(&c->pats[i], s, n))
			return i;
	return -1;
}

static void
ev_pat(struct buf *ev, const struct rcond *c, int k)
{
	if (!ev || k < 0)
		return;
	if (c->pats[k].is_re)
		buf_printf(ev, " (matches /%s/)", c->pats[k].src);
	else
		buf_printf(ev, " (matches %s)", c->pats[k].src);
}

static int
cmp(enum cmp_op op, long long a, long long b)
{
	switch (op) {
	case OP_LT: return a < b;
	case OP_LE: return a <= b;
	case OP_GT: return a > b;
	case OP_GE: return a >= b;
	case OP_EQ: return a == b;
	}
	return 0;
}

static int
body_match(const struct rcond *c, const struct rmsg *m, struct buf *ev)
{
	const char *s = m->body.s ? m->body.s : "", *end = s + m->body.len;
	int i;

	/* regular expressions run once over the whole text (REG_NEWLINE
	 * makes ^ $ work per line); globs line by line */
	if (!ev) {
		const char *lb = m->lbody.s ? m->lbody.s : "";
		int rest = 0;
		for (i = 0; i < c->npats; i++) {
			const struct rpat *p = &c->pats[i];
			if (p->is_re) {
				if (p->need && !need_in(p, lb, m->lbody.len, 1))
					continue;
				if (!re_ready(p))
					continue;
				if (p->has_lre ? regexec(&p->lre, lb, 0, NULL, 0) == 0 :
				    regexec(&p->re, s, 0, NULL, 0) == 0)
					return 1;
			} else if (p->kind == PK_SUBSTR) {
				/* a literal without newline is in a line iff in the text */
				if (find(lb, m->lbody.len, p->lit, p->litlen))
					return 1;
			} else if (p->kind == PK_ANY)
				return 1;
			else
				rest = 1;
		}
		if (!rest)
			return 0;
	}
	while (s <= end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t l = nl ? (size_t)(nl - s) : (size_t)(end - s);
		for (i = 0; i < c->npats; i++) {
			int hit;
			if (c->pats[i].is_re) {
				char *tmp;
				if (!ev)
					continue;
				if (!re_ready(&c->pats[i]))
					continue;
				tmp = xstrndup(s, l);
				if (c->pats[i].has_lre) {
					size_t k;
					for (k = 0; k < l; k++)
						tmp[k] = (char)rules_lc[(unsigned char)tmp[k]];
					hit = regexec(&c->pats[i].lre, tmp, 0, NULL, 0) == 0;
				} else
					hit = regexec(&c->pats[i].re, tmp, 0, NULL, 0) == 0;
				free(tmp);
			} else
				hit = rules_pat_match(&c->pats[i], s, l);
			if (hit) {
				if (ev) {
					buf_adds(ev, "body line ");
					rules_esc(ev, s, l, 70);
					ev_pat(ev, c, i);
				}
				return 1;
			}
		}
		if (!nl)
			break;
		s = nl + 1;
	}
	if (ev)
		buf_printf(ev, "no line of the %zu body bytes scanned%s%s matched", m->body.len,
		    m->body_decoded ? " (decoded)" : "", m->body_trunc ? ", cut at the scan limit" : "");
	return 0;
}

static int
client_match(const struct rcond *c, const char *ip_s, struct buf *ev)
{
	struct ipaddr ip, a;
	char tmp[IP_STRLEN];
	int i;

	if (!ip_s || !*ip_s || ip_parse(ip_s, &ip) < 0) {
		if (ev)
			buf_printf(ev, "client address unknown");
		return 0;
	}
	for (i = 0; i < c->ncidrs; i++) {
		if (c->cidrs[i].ip.family != ip.family)
			continue;
		a = ip;
		ip_mask(&a, c->cidrs[i].len);
		if (!memcmp(a.b, c->cidrs[i].ip.b, ip.family == 4 ? 4 : 16)) {
			if (ev) {
				cidr_format(&c->cidrs[i].ip, c->cidrs[i].len, tmp, sizeof tmp);
				buf_printf(ev, "client %s (in %s)", ip_s, tmp);
			}
			return 1;
		}
	}
	if (ev)
		buf_printf(ev, "client %s", ip_s);
	return 0;
}

/* Evaluate one condition (negation applied). rcpt: index or -1. */
static int
eval_cond(const struct rcond *c, const struct renv *e, int rcpt, struct buf *ev)
{
	const struct rmsg *m = e->msg;
	const char *v;
	int r = 0, k, i;

	switch (c->kind) {
	case C_SENDER:
		v = e->sender ? e->sender : "";
		k = pats_match(c, v, strlen(v));
		if (k < 0 && !*v) {
			for (i = 0; i < c->npats; i++)
				if (!c->pats[i].is_re && !strcmp(c->pats[i].src, "<>"))
					k = i;
		}
		r = k >= 0;
		if (ev) {
			if (*v) {
				buf_adds(ev, "sender ");
				rules_esc(ev, v, strlen(v), 100);
			} else
				buf_adds(ev, "sender <> (null sender)");
			ev_pat(ev, c, k);
		}
		break;
	case C_RECIPIENT:
		if (rcpt < 0) {
			if (ev)
				buf_adds(ev, "no recipient known");
			return 0;	/* unknown: never true, negated or not */
		}
		v = e->rcpts[rcpt];
		k = pats_match(c, v, strlen(v));
		r = k >= 0;
		if (ev) {
			buf_adds(ev, "recipient ");
			rules_esc(ev, v, strlen(v), 100);
			ev_pat(ev, c, k);
		}
		break;
	case C_RCPTCOUNT: {
		long long n = e->nrcpt_total ? e->nrcpt_total : e->nrcpt;
		r = cmp(c->op, n, c->num);
		if (ev)
			buf_printf(ev, "%lld recipient%s", n, n == 1 ? "" : "s");
		break;
	}
	case C_CLIENT:
		r = client_match(c, e->client, ev);
		break;
	case C_CLIENTNAME:
	case C_HELO:
		v = c->kind == C_HELO ? e->helo : e->client_name;
		if (!v)
			v = "";
		k = pats_match(c, v, strlen(v));
		r = k >= 0;
		if (ev) {
			buf_adds(ev, c->kind == C_HELO ? "helo " : "client name ");
			if (*v)
				rules_esc(ev, v, strlen(v), 100);
			else
				buf_adds(ev, c->kind == C_HELO ? "(none)" : "(none: no reverse DNS)");
			ev_pat(ev, c, k);
		}
		break;
	case C_AUTH:
		r = e->auth && *e->auth;
		if (ev) {
			if (r) {
				buf_adds(ev, "authenticated as ");
				rules_esc(ev, e->auth, strlen(e->auth), 100);
			} else
				buf_adds(ev, "not authenticated");
		}
		break;
	case C_HEADER: {
		int seen = 0, first = -1;
		if (!m) {
			if (ev)
				buf_adds(ev, "no message yet");
			return 0;
		}
		for (i = 0; i < m->nf && !r; i++) {
			if (!rules_glob(c->hname, RMSG_NAME(m, i), m->f[i].nlen))
				continue;
			seen++;
			if (first < 0)
				first = i;
			k = pats_match(c, RMSG_VAL(m, i), m->f[i].vlen);
			if (k < 0 && m->f[i].dval != m->f[i].val)
				k = pats_match(c, RMSG_DVAL(m, i), m->f[i].dvlen);
			if (k >= 0) {
				r = 1;
				if (ev) {
					buf_printf(ev, "%s: ", RMSG_NAME(m, i));
					if (m->f[i].dval != m->f[i].val)
						rules_esc(ev, RMSG_DVAL(m, i), m->f[i].dvlen, 80);
					else
						rules_esc(ev, RMSG_VAL(m, i), m->f[i].vlen, 80);
					ev_pat(ev, c, k);
				}
			}
		}
		if (ev && !r) {
			if (!seen)
				buf_printf(ev, "no %s field%s", c->hname, m->hdr_trunc ?
				    " (header was cut at the size limit)" : "");
			else {
				buf_printf(ev, "%s: ", RMSG_NAME(m, first));
				rules_esc(ev, RMSG_DVAL(m, first), m->f[first].dvlen, 80);
				if (seen > 1)
					buf_printf(ev, " and %d more", seen - 1);
			}
		}
		break;
	}
	case C_SIZE:
		if (!m) {
			if (ev)
				buf_adds(ev, "no message yet");
			return 0;
		}
		r = cmp(c->op, (long long)m->size, c->num);
		if (ev)
			buf_printf(ev, "size %llu", m->size);
		break;
	case C_BODY:
		if (!m) {
			if (ev)
				buf_adds(ev, "no message yet");
			return 0;
		}
		r = body_match(c, m, ev);
		break;
	case C_ATTACHMENT:
		if (!m) {
			if (ev)
				buf_adds(ev, "no message yet");
			return 0;
		}
		for (i = 0; i < m->nattach && !r; i++) {
			k = pats_match(c, m->attach[i], strlen(m->attach[i]));
			if (k >= 0) {
				r = 1;
				if (ev) {
					buf_adds(ev, "attachment ");
					rules_esc(ev, m->attach[i], strlen(m->attach[i]), 80);
					ev_pat(ev, c, k);
				}
			}
		}
		if (ev && !r) {
			if (!m->nattach)
				buf_adds(ev, "no attachments");
			else {
				buf_adds(ev, "attachments");
				for (i = 0; i < m->nattach && i < 5; i++) {
					buf_addc(ev, ' ');
					rules_esc(ev, m->attach[i], strlen(m->attach[i]), 40);
				}
			}
		}
		break;
	case C_TIME:
		if (c->from < c->to)
			r = e->minute >= c->from && e->minute < c->to;
		else
			r = e->minute >= c->from || e->minute < c->to;
		if (ev)
			buf_printf(ev, "local time %02d:%02d", e->minute / 60, e->minute % 60);
		break;
	case C_DAY: {
		static const char *dn[] = { "Sunday", "Monday", "Tuesday", "Wednesday",
		    "Thursday", "Friday", "Saturday" };
		r = (c->days >> e->wday) & 1;
		if (ev)
			buf_printf(ev, "today is %s", dn[e->wday % 7]);
		break;
	}
	}
	return c->neg ? !r : r;
}

/* Whether rule matches for recipient rcpt (-1: message-wide). With a
 * trace, every condition is evaluated and explained. */
static int
eval_rule(const struct rule *r, const struct renv *e, int rcpt, struct buf *trace,
    const char *indent)
{
	struct buf ev = BUF_INIT, cs = BUF_INIT;
	int i, res = r->any ? 0 : 1, decided = 0;

	if (r->nconds == 0) {
		if (trace)
			buf_printf(trace, "%syes  (no conditions: always matches)\n", indent);
		return 1;
	}
	for (i = 0; i < r->nconds; i++) {
		int c;
		if (decided && !trace)
			break;
		buf_clear(&ev);
		{
			/* a condition evaluated only for the trace must not
			 * change the decision (the chain would not evaluate it) */
			int saved = pat_broken;
			c = eval_cond(&r->conds[i], e, rcpt, trace ? &ev : NULL);
			if (decided)
				pat_broken = saved;
		}
		if (trace) {
			buf_clear(&cs);
			rules_cond_str(&r->conds[i], &cs);
			buf_printf(trace, "%s%-4s %s  <- %s%s\n", indent, c ? "yes" : "no", cs.s,
			    ev.s ? ev.s : "", decided ? "  (not needed: already decided)" : "");
		}
		if (!decided) {
			if (r->any && c) {
				res = 1;
				decided = 1;
			} else if (!r->any && !c) {
				res = 0;
				decided = 1;
			}
		}
	}
	buf_free(&ev);
	buf_free(&cs);
	return res;
}

static char **
strv_add(char **v, int *n, const char *s)
{
	int i;

	for (i = 0; i < *n; i++)
		if (!strcasecmp(v[i], s))
			return v;
	v = xreallocarray(v, (size_t)*n + 1, sizeof *v);
	v[(*n)++] = xstrdup(s);
	return v;
}

static void
apply(const struct rule *r, int ri, struct rresult *res, const int *hit, int pseudo,
    struct buf *trace)
{
	int i, j;

	for (i = 0; i < r->nacts; i++) {
		const struct raction *a = &r->acts[i];
		switch (a->kind) {
		case A_REJECT:
		case A_TEMPFAIL:
			res->v = a->kind == A_REJECT ? V_REJECT : V_TEMPFAIL;
			res->rule = ri;
			res->code = a->code;
			strlcpy(res->xcode, a->xcode, sizeof res->xcode);
			strlcpy(res->text, a->text, sizeof res->text);
			break;
		case A_DISCARD:
			res->rule = ri;	/* named if every recipient ends up discarded */
			if (pseudo)
				res->v = V_DISCARD;
			for (j = 0; j < res->nr; j++)
				if (hit[j])
					res->r[j].discard = 1;
			break;
		case A_ACCEPT:
			break;
		case A_REDIRECT:
			for (j = 0; j < res->nr; j++) {
				int k;
				if (!hit[j])
					continue;
				for (k = 0; k < res->r[j].nto; k++)
					free(res->r[j].to[k]);
				free(res->r[j].to);
				res->r[j].to = NULL;
				res->r[j].nto = 0;
				for (k = 0; k < a->naddrs; k++)
					res->r[j].to = strv_add(res->r[j].to, &res->r[j].nto, a->addrs[k]);
			}
			break;
		case A_COPY:
			for (j = 0; j < a->naddrs; j++)
				res->copies = strv_add(res->copies, &res->ncopies, a->addrs[j]);
			break;
		case A_ADDHEADER:
			res->hnames = xreallocarray(res->hnames, (size_t)res->nh + 1, sizeof *res->hnames);
			res->hvals = xreallocarray(res->hvals, (size_t)res->nh + 1, sizeof *res->hvals);
			res->hnames[res->nh] = xstrdup(a->hname);
			res->hvals[res->nh++] = xstrdup(a->text);
			break;
		case A_TAG:
			if (!res->tag)
				res->tag = xstrdup(a->text);
			else if (trace)
				buf_printf(trace, "      (subject already tagged \"%s\" by an earlier rule; "
				    "tag-subject \"%s\" ignored)\n", res->tag, a->text);
			break;
		case A_FOLDER:
			for (j = 0; j < res->nr; j++)
				if (hit[j]) {
					free(res->r[j].folder);
					res->r[j].folder = xstrdup(a->text);
				}
			break;
		}
	}
}

static const char *
stage_reason(enum rstage s)
{
	switch (s) {
	case ST_HELO: return "the HELO name";
	case ST_MAIL: return "the sender";
	case ST_RCPT: return "the recipient";
	case ST_DATA: return "the message (header, size, body or recipient count)";
	default: return "the client";
	}
}

/* Rule ri needed a regex that does not compile: it could only come from
 * a file taken as good without regcomp (RULES_LAZY). Neither accept nor
 * reject on rules we cannot read: a temporary failure. */
static void
broken_rule(const struct ruleset *rs, int ri, struct rresult *res, struct buf *trace)
{
	const struct rule *r = &rs->rules[ri];
	char why[300] = "a regular expression does not compile";
	int line = r->line, j, k, found = 0;

	for (j = 0; j < r->nconds && !found; j++)
		for (k = 0; k < r->conds[j].npats && !found; k++) {
			const struct rpat *p = &r->conds[j].pats[k];
			if (p->is_re && __atomic_load_n(&p->ready, __ATOMIC_ACQUIRE) < 0) {
				rules_pat_error(p, why, sizeof why);
				line = r->conds[j].line;
				found = 1;
			}
		}
	log_warn("%s:%d: %s (rule \"%s\"; the file was taken as already checked): "
	    "temporary failure until it is fixed", rs->path, line, why, r->name);
	if (trace)
		buf_printf(trace, "    => ERROR %s:%d: %s: temporary failure (4.3.0)\n", rs->path, line, why);
	res->v = V_TEMPFAIL;
	res->rule = ri;
	res->code = 451;
	strlcpy(res->xcode, "4.3.0", sizeof res->xcode);
	strlcpy(res->text, "rules configuration error, try again later", sizeof res->text);
	res->broken = 1;
}

void
rules_run(const struct ruleset *rs, const struct renv *e, enum rstage upto,
    struct rresult *res, struct buf *trace)
{
	int i, j, *hit;
	struct buf s = BUF_INIT;

	memset(res, 0, sizeof *res);
	res->v = V_DELIVER;
	res->rule = -1;
	res->nr = e->nrcpt;
	res->r = xcalloc((size_t)e->nrcpt + 1, sizeof *res->r);
	for (j = 0; j < e->nrcpt; j++)
		res->r[j].addr = xstrdup(e->rcpts[j]);
	hit = xcalloc((size_t)e->nrcpt + 1, sizeof *hit);
	int pseudo_done = 0;
	pat_broken = 0;

	for (i = 0; i < rs->nrules && res->v == V_DELIVER; i++) {
		const struct rule *r = &rs->rules[i];
		int nhit = 0, active = 0;

		if (trace) {
			buf_printf(trace, "rule %d \"%s\" (line %d, %s stage, match %s%s)\n", i + 1,
			    r->name, r->line, rules_stage_name(r->stage), r->any ? "any" : "all",
			    r->cont ? ", continue" : "");
		}
		/* who is still in play */
		if (e->nrcpt == 0)
			active = !pseudo_done;
		else
			for (j = 0; j < e->nrcpt; j++)
				active += !res->r[j].done;
		if (!active) {
			if (trace)
				buf_printf(trace, "    not reached: processing has stopped for every recipient\n");
			break;
		}
		if (r->stage > upto) {
			if (r->cont) {
				if (trace)
					buf_printf(trace, "    skipped: needs %s, not known at %s time\n",
					    stage_reason(r->stage), rules_stage_name(upto));
				continue;
			}
			/* it matters only if a later rule could answer now */
			for (j = i + 1; j < rs->nrules; j++)
				if (rs->rules[j].stage <= upto && rs->rules[j].has_final &&
				    (rs->rules[j].final == A_REJECT || rs->rules[j].final == A_TEMPFAIL))
					res->undecided = i + 1;
			if (trace)
				buf_printf(trace, "    not evaluated: needs %s, not known at %s time; "
				    "it could stop processing, so no later rule decides now\n",
				    stage_reason(r->stage), rules_stage_name(upto));
			break;
		}
		memset(hit, 0, sizeof *hit * ((size_t)e->nrcpt + 1));
		if (e->nrcpt == 0 || !r->rcpt_dep) {
			int m = eval_rule(r, e, -1, trace, "    ");
			if (m) {
				for (j = 0; j < e->nrcpt; j++)
					if (!res->r[j].done)
						hit[j] = 1, nhit++;
				if (e->nrcpt == 0)
					nhit = 1;
			}
		} else {
			for (j = 0; j < e->nrcpt; j++) {
				if (res->r[j].done) {
					if (trace)
						buf_printf(trace, "    for %s: skipped (stopped by an earlier rule)\n",
						    e->rcpts[j]);
					continue;
				}
				if (trace)
					buf_printf(trace, "    for %s:\n", e->rcpts[j]);
				if (eval_rule(r, e, j, trace, "      "))
					hit[j] = 1, nhit++;
			}
		}
		if (pat_broken) {
			broken_rule(rs, i, res, trace);
			break;
		}
		if (!nhit) {
			if (trace)
				buf_adds(trace, "    => no match\n");
			continue;
		}
		res->nmatched++;
		apply(r, i, res, hit, e->nrcpt == 0, trace);
		if (trace) {
			buf_adds(trace, "    => MATCH");
			if (e->nrcpt && (r->rcpt_dep || e->nrcpt > 1)) {
				const char *sep = " for ";
				for (j = 0; j < e->nrcpt; j++)
					if (hit[j]) {
						buf_printf(trace, "%s%s", sep, e->rcpts[j]);
						sep = ", ";
					}
			}
			buf_adds(trace, ": ");
			for (j = 0; j < r->nacts; j++) {
				buf_clear(&s);
				rules_act_str(&r->acts[j], &s);
				buf_printf(trace, "%s%s", j ? "; " : "", s.s);
			}
			if (res->v != V_DELIVER || (r->has_final && r->final != A_ACCEPT))
				buf_adds(trace, " (final)\n");
			else
				buf_adds(trace, r->cont ? "; continue\n" : "; stop\n");
		}
		if (!r->cont) {
			for (j = 0; j < e->nrcpt; j++)
				if (hit[j])
					res->r[j].done = 1;
			if (e->nrcpt == 0)
				pseudo_done = 1;
		}
	}
	if (trace && res->v == V_DELIVER && i == rs->nrules && !res->undecided)
		buf_adds(trace, "end of rules\n");
	if (trace && res->v != V_DELIVER && i + 1 < rs->nrules)
		buf_printf(trace, "rules %d-%d not evaluated: the message is decided\n", i + 1,
		    rs->nrules);
	else if (trace && res->v != V_DELIVER && i < rs->nrules)
		buf_printf(trace, "rule %d not evaluated: the message is decided\n", i + 1);
	if (res->v == V_DELIVER && e->nrcpt > 0 && !res->ncopies) {
		for (j = 0; j < e->nrcpt && res->r[j].discard; j++)
			;
		if (j == e->nrcpt)
			res->v = V_DISCARD;
	}
	free(hit);
	buf_free(&s);
}

void
rresult_free(struct rresult *res)
{
	int i, j;

	for (i = 0; i < res->nr; i++) {
		free(res->r[i].addr);
		for (j = 0; j < res->r[i].nto; j++)
			free(res->r[i].to[j]);
		free(res->r[i].to);
		free(res->r[i].folder);
	}
	free(res->r);
	for (i = 0; i < res->ncopies; i++)
		free(res->copies[i]);
	free(res->copies);
	for (i = 0; i < res->nh; i++) {
		free(res->hnames[i]);
		free(res->hvals[i]);
	}
	free(res->hnames);
	free(res->hvals);
	free(res->tag);
	memset(res, 0, sizeof *res);
}

static int
seen_line(const struct buf *b, const char *addr, char term)
{
	size_t l = strlen(addr), off = 0;

	while (off < b->len) {
		const char *nl = memchr(b->s + off, '\n', b->len - off);
		size_t ll = nl ? (size_t)(nl - (b->s + off)) : b->len - off;
		if (ll >= l && !strncasecmp(b->s + off, addr, l) && (ll == l || b->s[off + l] == term))
			return 1;
		off += ll + 1;
	}
	return 0;
}

void
rresult_recipients(const struct rresult *res, struct buf *rcpts, struct buf *folders)
{
	int i, j;

	buf_clear(rcpts);
	if (folders)
		buf_clear(folders);
	for (i = 0; i < res->nr; i++) {
		const struct rrcpt *r = &res->r[i];
		int n = r->to ? r->nto : 1;
		if (r->discard)
			continue;
		for (j = 0; j < n; j++) {
			const char *a = r->to ? r->to[j] : r->addr;
			if (!seen_line(rcpts, a, '\n')) {
				buf_adds(rcpts, a);
				buf_addc(rcpts, '\n');
			}
			if (folders && r->folder && !seen_line(folders, a, '\t'))
				buf_printf(folders, "%s\t%s\n", a, r->folder);
		}
	}
	for (i = 0; i < res->ncopies; i++)
		if (!seen_line(rcpts, res->copies[i], '\n')) {
			buf_adds(rcpts, res->copies[i]);
			buf_addc(rcpts, '\n');
		}
}

int
rresult_modifies(const struct rresult *res)
{
	return res->nh > 0 || res->tag != NULL;
}

unsigned
rules_envelope_stages(const struct ruleset *rs)
{
	unsigned m = 0;
	int st, i;

	for (st = ST_CONNECT; st <= ST_RCPT; st++)
		for (i = 0; i < rs->nrules; i++) {
			const struct rule *r = &rs->rules[i];
			if ((int)r->stage > st) {
				if (r->cont)
					continue;
				break;	/* as rules_run: no later rule decides now */
			}
			if (r->has_final && (r->final == A_REJECT || r->final == A_TEMPFAIL)) {
				m |= 1u << st;
				break;
			}
		}
	return m;
}
