#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "buf.h"
#include "tables.h"

const char *const table_names[] = { "access", "domains", "backup", "mailboxes", "routes", NULL };

char *
table_strip(char *line)
{
	char *p, *e;

	for (p = line; (p = strchr(p, '#')); p++)
		if (p == line || isspace((unsigned char)p[-1])) {
			*p = 0;
			break;
		}
	while (isspace((unsigned char)*line))
		line++;
	e = line + strlen(line);
	while (e > line && isspace((unsigned char)e[-1]))
		*--e = 0;
	return line;
}

static char *
next_word(char **pp)
{
	char *p = *pp, *w;

	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return NULL;
	w = p;
	while (*p && !isspace((unsigned char)*p))
		p++;
	if (*p)
		*p++ = 0;
	*pp = p;
	return w;
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* ---- access ---- */

const char *
access_name(enum access_action a)
{
	return a == ACCESS_DENY ? "deny" : a == ACCESS_RELAY ? "relay" : "allow";
}

static const char *
access_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *net = next_word(&line), *act = next_word(&line), key[IP_STRLEN + 8];
	struct buf v = BUF_INIT;
	struct ipaddr ip;
	int len, r;

	if (!act)
		return "expected ADDRESS[/PREFIX] ACTION [TEXT]";
	r = cidr_parse(net, &ip, &len);
	if (r == -1)
		return "bad address or prefix";
	if (r == -2)
		return "address has bits set beyond the prefix length";
	if (strcmp(act, "allow") && strcmp(act, "deny") && strcmp(act, "relay"))
		return "action must be allow, deny or relay";
	while (isspace((unsigned char)*line))
		line++;
	if (strlen(line) > 400)
		return "reply text too long (400 characters at most)";
	for (char *c = line; *c; c++)
		if ((unsigned char)*c < ' ' || (unsigned char)*c > '~')
			return "reply text must be printable ASCII";
	cidr_format(&ip, len, key, sizeof key);
	if (ip.family == 4)
		st->lens4[len] = 1;
	else
		st->lens6[len] = 1;
	buf_printf(&v, "%s %d%s%s", act, lineno, *line ? " " : "", line);
	r = emit(ctx, key, strlen(key), v.s, v.len);
	buf_free(&v);
	return r < 0 ? "write error" : NULL;
}

static const char *
access_finish(struct table_state *st, emit_fn emit, void *ctx)
{
	struct buf v = BUF_INIT;
	int i, r;

	for (i = 32; i >= 0; i--)
		if (st->lens4[i])
			buf_printf(&v, "%s%d", v.len ? " " : "", i);
	r = emit(ctx, "/lengths4", 9, v.len ? v.s : "", v.len);
	buf_clear(&v);
	for (i = 128; i >= 0; i--)
		if (st->lens6[i])
			buf_printf(&v, "%s%d", v.len ? " " : "", i);
	if (r >= 0)
		r = emit(ctx, "/lengths6", 9, v.len ? v.s : "", v.len);
	buf_free(&v);
	return r < 0 ? "write error" : NULL;
}

static int
parse_action(const char *s, size_t n, enum access_action *a)
{
	if (n == 5 && !memcmp(s, "allow", 5))
		*a = ACCESS_ALLOW;
	else if (n == 4 && !memcmp(s, "deny", 4))
		*a = ACCESS_DENY;
	else if (n == 5 && !memcmp(s, "relay", 5))
		*a = ACCESS_RELAY;
	else
		return -1;
	return 0;
}

int
access_lookup(struct table *t, const struct ipaddr *ip, const char *defact,
    struct access_result *r)
{
	struct buf v = BUF_INIT, lens = BUF_INIT;
	const char *p;
	int found;

	memset(r, 0, sizeof *r);
	found = table_get(t, ip->family == 4 ? "/lengths4" : "/lengths6", 9, &lens);
	if (found < 0)
		goto err;
	for (p = found ? lens.s : ""; *p; ) {
		char *end, key[IP_STRLEN + 8];
		long len = strtol(p, &end, 10);
		struct ipaddr m = *ip;

		if (end == p || len < 0 || len > ip_bits(ip))
			goto corrupt;
		p = end + (*end == ' ');
		ip_mask(&m, (int)len);
		cidr_format(&m, (int)len, key, sizeof key);
		found = table_get(t, key, strlen(key), &v);
		if (found < 0)
			goto err;
		if (found) {
			char *sp = strchr(v.s, ' '), *tx;
			if (!sp || parse_action(v.s, (size_t)(sp - v.s), &r->action) < 0)
				goto corrupt;
			r->line = (int)strtol(sp + 1, &tx, 10);
			strlcpy(r->text, *tx == ' ' ? tx + 1 : "", sizeof r->text);
			strlcpy(r->match, key, sizeof r->match);
			buf_free(&v);
			buf_free(&lens);
			return 0;
		}
	}
	buf_free(&v);
	buf_free(&lens);
	if (parse_action(defact, strlen(defact), &r->action) < 0)
		r->action = ACCESS_DENY;
	strlcpy(r->match, "default", sizeof r->match);
	return 0;
corrupt:
	errno = EPROTO;
err:
	buf_free(&v);
	buf_free(&lens);
	return -1;
}

/* ---- domains, backup ---- */

static const char *
domains_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *tok, *save = NULL, num[16];

	(void)st;
	snprintf(num, sizeof num, "%d", lineno);
	/* VPOP3 users paste "a.com;b.com": ';' ',' and blanks all separate */
	for (tok = strtok_r(line, " \t;,", &save); tok; tok = strtok_r(NULL, " \t;,", &save)) {
		size_t n = strlen(tok);
		const char *d = tok;

		lower(tok);
		if (n > 1 && tok[n - 1] == '.')
			tok[--n] = 0;
		if (*d == '.')
			d++;
		if (!addr_domain_ok(d, strlen(d)) && !(d == tok && tok[0] == '[' && tok[n - 1] == ']'))
			return "bad domain name";
		if (emit(ctx, tok, n, num, strlen(num)) < 0)
			return "write error";
	}
	return NULL;
}

int
domain_lookup(struct table *t, const char *domain, char *matched, size_t mlen, int *line)
{
	struct buf v = BUF_INIT;
	const char *d = domain;
	int r;

	r = table_get(t, d, strlen(d), &v);
	while (r == 0 && d[0] != '[' && (d = strchr(d + (d == domain ? 0 : 1), '.'))) {
		/* ".example.com" covers every name below example.com */
		r = table_get(t, d, strlen(d), &v);
	}
	if (r == 1) {
		if (matched)
			strlcpy(matched, d, mlen);
		if (line)
			*line = atoi(v.s);
	}
	buf_free(&v);
	return r;
}

/* ---- mailboxes ---- */

int
maildir_path_ok(const char *p)
{
	const char *c;

	if (!*p || *p == '/' || strlen(p) > 1024)
		return 0;
	for (c = p; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._+-/", *c))
			return 0;
	/* every component: non-empty, not starting with '.' except Maildir++
	 * folder names ".Name" which are only allowed at the end */
	for (c = p; *c; ) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);
		if (n == 0 && e && e[1] == 0)
			break;
		if (n == 0 || (c[0] == '.' && (n == 1 || (n == 2 && c[1] == '.'))))
			return 0;
		if (c[0] == '.')
			return 0;
		c += n;
		if (*c == '/')
			c++;
	}
	return 1;
}

static const char *
mailboxes_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *key = next_word(&line), *tok, *save = NULL;
	struct buf v = BUF_INIT;
	struct addr a;
	const char *why;
	int n = 0, r;

	(void)st;
	if (!key)
		return "expected ADDRESS TARGET...";
	if (key[0] == '@') {
		if (!addr_domain_ok(key + 1, strlen(key + 1)))
			return "bad catch-all domain";
	} else if ((why = addr_parse_path(key, strlen(key), &a, 0, 0, NULL)))
		return why;
	lower(key);
	buf_printf(&v, "%d", lineno);
	for (tok = strtok_r(line, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		if (strchr(tok, '@')) {
			if ((why = addr_parse_path(tok, strlen(tok), &a, 0, 0, NULL))) {
				buf_free(&v);
				return "bad target address";
			}
		} else if (!maildir_path_ok(tok)) {
			buf_free(&v);
			return "bad Maildir path (relative, no '..', letters digits ._+-/ only)";
		}
		buf_printf(&v, " %s", tok);
		n++;
	}
	if (!n) {
		buf_free(&v);
		return "expected at least one target";
	}
	r = emit(ctx, key, strlen(key), v.s, v.len);
	buf_free(&v);
	return r < 0 ? "write error" : NULL;
}

int
mailbox_get(struct table *t, const char *key, struct buf *val, int *line)
{
	struct buf v = BUF_INIT;
	int r = table_get(t, key, strlen(key), &v);
	char *sp;

	if (r == 1) {
		if (line)
			*line = atoi(v.s);
		sp = strchr(v.s, ' ');
		buf_set(val, sp ? sp + 1 : "");
	}
	buf_free(&v);
	return r;
}

/* ---- routes ---- */

static const char *
routes_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *dom = next_word(&line), *dest = next_word(&line), v[600];
	int n;

	(void)st;
	if (!dest || next_word(&line))
		return "expected DOMAIN DESTINATION";
	lower(dom);
	if (strcmp(dom, "*") && !addr_domain_ok(dom + (dom[0] == '.'), strlen(dom + (dom[0] == '.'))))
		return "bad domain";
	for (char *c = dest; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr(".-:[]", *c))
			return "bad destination (host, [host], host:port)";
	n = snprintf(v, sizeof v, "%d %s", lineno, dest);
	if (n < 0 || (size_t)n >= sizeof v)
		return "destination too long";
	return emit(ctx, dom, strlen(dom), v, (size_t)n) < 0 ? "write error" : NULL;
}

static const struct table_format formats[] = {
	{ "access", access_parse, access_finish },
	{ "domains", domains_parse, NULL },
	{ "backup", domains_parse, NULL },
	{ "mailboxes", mailboxes_parse, NULL },
	{ "routes", routes_parse, NULL },
};

const struct table_format *
table_format(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof formats / sizeof formats[0]; i++)
		if (!strcmp(formats[i].name, name))
			return &formats[i];
	return NULL;
}
