#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "buf.h"
#include "tables.h"

/* isspace() of the C locale (no program here calls setlocale), inline:
 * the library call per character showed in mkcdb's profile. */
static inline int
blank(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

const char *const table_names[] = { "access", "domains", "backup", "mailboxes", "routes",
	"auth", "senders", NULL };

char *
table_strip(char *line)
{
	char *p, *e;

	for (p = line; (p = strchr(p, '#')); p++)
		if (p == line || blank((unsigned char)p[-1])) {
			*p = 0;
			break;
		}
	while (blank((unsigned char)*line))
		line++;
	e = line + strlen(line);
	while (e > line && blank((unsigned char)e[-1]))
		*--e = 0;
	return line;
}

static char *
next_word(char **pp)
{
	char *p = *pp, *w;

	while (blank((unsigned char)*p))
		p++;
	if (!*p)
		return NULL;
	w = p;
	while (*p && !blank((unsigned char)*p))
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

/* "%d" of n at p (no NUL); returns the end. Two digits at a time:
 * every access line's value has its line number. */
static char *
put_int(char *p, int n)
{
	static const char pairs[] =
	    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	    "8081828384858687888990919293949596979899";
	char tmp[12], *t = tmp + sizeof tmp;
	unsigned u = n < 0 ? 0u - (unsigned)n : (unsigned)n;
	size_t len;

	if (n < 0)
		*p++ = '-';
	while (u >= 100) {
		t -= 2;
		memcpy(t, pairs + 2 * (u % 100), 2);
		u /= 100;
	}
	if (u >= 10) {
		t -= 2;
		memcpy(t, pairs + 2 * u, 2);
	} else
		*--t = (char)('0' + u);
	len = (size_t)(tmp + sizeof tmp - t);
	memcpy(p, t, len);
	return p + len;
}

/* ---- access ---- */

const char *
access_name(enum access_action a)
{
	return a == ACCESS_DENY ? "deny" : a == ACCESS_RELAY ? "relay" : "allow";
}

/* The common line "a.b.c.d[/len] ACTION [TEXT]", valid, in one pass.
 * Returns 0 when the line is anything else (IPv6, an error...): then
 * nothing has been touched and the general code below decides. The
 * key and value are the ones the general code makes. */
static int
access_parse_v4(struct table_state *st, const char *line, int lineno, emit_fn emit,
    void *ctx, const char **why)
{
	unsigned char b[4];
	unsigned v, len = 32, mask;
	int octet, r;
	const char *p = line, *act, *text, *aend, *kend;
	size_t al, tl;
	char key[IP_STRLEN + 8], val[16 + 16 + 400 + 1], *vp;

	/* the address: inet_pton's rules (no leading zeros, 0-255) */
	for (octet = 0; octet < 4; octet++) {
		unsigned d = (unsigned)(unsigned char)*p - '0';
		if (d > 9)
			return 0;
		v = d;
		p++;
		if ((d = (unsigned)(unsigned char)*p - '0') <= 9) {
			if (v == 0)
				return 0;
			v = v * 10 + d;
			p++;
			if ((d = (unsigned)(unsigned char)*p - '0') <= 9) {
				v = v * 10 + d;
				p++;
				if (v > 255)
					return 0;
			}
		}
		b[octet] = (unsigned char)v;
		if (octet < 3 && *p++ != '.')
			return 0;
	}
	aend = p;
	if (*p == '/') {	/* "/N" or "/NN", no leading zero */
		p++;
		if (p[0] < '0' || p[0] > '9')
			return 0;
		len = (unsigned)(p[0] - '0');
		p++;
		if (*p >= '0' && *p <= '9') {
			if (len == 0)
				return 0;
			len = len * 10 + (unsigned)(*p - '0');
			p++;
		}
		if (len > 32)
			return 0;
	}
	kend = p;
	if (!blank((unsigned char)*p))
		return 0;
	mask = len ? 0xffffffffu << (32 - len) : 0;
	if (((unsigned)b[0] << 24 | (unsigned)b[1] << 16 | (unsigned)b[2] << 8 | b[3]) & ~mask)
		return 0;	/* host bits set */
	while (blank((unsigned char)*p))
		p++;
	act = p;
	while (*p && !blank((unsigned char)*p))
		p++;
	al = (size_t)(p - act);
	if (!((al == 5 && (!memcmp(act, "allow", 5) || !memcmp(act, "relay", 5))) ||
	    (al == 4 && !memcmp(act, "deny", 4))))
		return 0;
	while (blank((unsigned char)*p))
		p++;
	text = p;
	for (; *p; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p > '~')
			return 0;
	if ((tl = (size_t)(p - text)) > 400)
		return 0;

	/* What inet_pton accepts here is already the canonical text
	 * (inet_ntop's), and so is the "/N" accepted above: the key is
	 * the text itself, with "/32" added when no length was given. */
	r = (int)(kend - line);
	memcpy(key, line, (size_t)r);
	if (kend == aend) {
		memcpy(key + r, "/32", 3);
		r += 3;
	}
	st->lens4[len] = 1;

	memcpy(val, act, al);
	vp = val + al;
	*vp++ = ' ';
	vp = put_int(vp, lineno);
	if (tl) {
		*vp++ = ' ';
		memcpy(vp, text, tl);
		vp += tl;
	}
	*why = emit(ctx, key, (size_t)r, val, (size_t)(vp - val)) < 0 ? "write error" : NULL;
	return 1;
}

static const char *
access_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *net, *act, key[IP_STRLEN + 8];
	char v[16 + 16 + 400 + 1], *vp;	/* "ACTION LINE[ TEXT]", text <= 400 */
	struct ipaddr ip;
	const char *why;
	size_t tl;
	int len, r;

	if (access_parse_v4(st, line, lineno, emit, ctx, &why))
		return why;
	net = next_word(&line);
	act = next_word(&line);
	if (!act)
		return "expected ADDRESS[/PREFIX] ACTION [TEXT]";
	r = cidr_parse(net, &ip, &len);
	if (r == -1)
		return "bad address or prefix";
	if (r == -2)
		return "address has bits set beyond the prefix length";
	if (strcmp(act, "allow") && strcmp(act, "deny") && strcmp(act, "relay"))
		return "action must be allow, deny or relay";
	while (blank((unsigned char)*line))
		line++;
	if ((tl = strlen(line)) > 400)
		return "reply text too long (400 characters at most)";
	for (char *c = line; *c; c++)
		if ((unsigned char)*c < ' ' || (unsigned char)*c > '~')
			return "reply text must be printable ASCII";
	cidr_format(&ip, len, key, sizeof key);
	if (ip.family == 4)
		st->lens4[len] = 1;
	else
		st->lens6[len] = 1;
	/* "%s %d%s%s", act, lineno, *line ? " " : "", line -- without
	 * printf, which was a third of mkcdb's time on big tables */
	vp = v + strlen(act);
	memcpy(v, act, (size_t)(vp - v));
	*vp++ = ' ';
	vp = put_int(vp, lineno);
	if (tl) {
		*vp++ = ' ';
		memcpy(vp, line, tl);
		vp += tl;
	}
	r = emit(ctx, key, strlen(key), v, (size_t)(vp - v));
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

/* table_get() as a C string without an allocation for small values:
 * they are copied to arr (cap bytes), bigger ones to *big. */
static int
get_str(struct table *t, const char *key, size_t klen, char *arr, size_t cap,
    struct buf *big, const char **s)
{
	const char *v;
	size_t n;
	int r = table_getp(t, key, klen, &v, &n);

	if (r != 1)
		return r;
	if (n < cap) {
		memcpy(arr, v, n);
		arr[n] = 0;
		*s = arr;
	} else {
		buf_clear(big);
		buf_add(big, v, n);
		*s = big->s;
	}
	return 1;
}

/* The prefix lengths to try, from "/lengths4" or "/lengths6", parsed
 * once per table file rather than once per lookup. The list holds the
 * lengths in the order the lookup loop meets them; corrupt says the
 * loop would then meet a bad token. Per thread, no allocation. */
#define LENCACHE_MAX 160
struct lencache {
	const struct table *t;
	int fd;
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	int n, corrupt;
	unsigned char len[LENCACHE_MAX];
};
static _Thread_local struct lencache lencache[2];

static int
lencache_valid(const struct lencache *c, const struct table *t)
{
	return c->t == t && c->fd == t->fd && t->fd >= 0 && c->dev == t->dev &&
	    c->ino == t->ino && c->mtime.tv_sec == t->mtime.tv_sec &&
	    c->mtime.tv_nsec == t->mtime.tv_nsec;
}

/* Fill c for t; 0 ok, 1 not cacheable (too long), -1 table error. */
static int
lencache_fill(struct lencache *c, struct table *t, int family)
{
	struct buf lens = BUF_INIT;
	const char *p;
	int found, bits = family == 4 ? 32 : 128;

	c->t = NULL;
	found = table_get(t, family == 4 ? "/lengths4" : "/lengths6", 9, &lens);
	if (found < 0) {
		buf_free(&lens);
		return -1;
	}
	c->n = c->corrupt = 0;
	for (p = found ? lens.s : ""; *p; ) {
		char *end;
		long len = strtol(p, &end, 10);

		if (end == p || len < 0 || len > bits) {
			c->corrupt = 1;
			break;
		}
		if (c->n == LENCACHE_MAX) {
			buf_free(&lens);
			return 1;
		}
		c->len[c->n++] = (unsigned char)len;
		p = end + (*end == ' ');
	}
	buf_free(&lens);
	c->t = t;
	c->fd = t->fd;
	c->dev = t->dev;
	c->ino = t->ino;
	c->mtime = t->mtime;
	return 0;
}

/* The original lookup, for tables whose length list is too long to cache. */
static int
access_lookup_slow(struct table *t, const struct ipaddr *ip, const char *defact,
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

int
access_lookup(struct table *t, const struct ipaddr *ip, const char *defact,
    struct access_result *r)
{
	struct lencache *c = &lencache[ip->family == 4 ? 0 : 1];
	struct buf v = BUF_INIT;
	int i, found;

	if (!lencache_valid(c, t)) {
		int f = lencache_fill(c, t, ip->family == 4 ? 4 : 6);
		if (f < 0) {
			memset(r, 0, sizeof *r);
			return -1;
		}
		if (f > 0)
			return access_lookup_slow(t, ip, defact, r);
	}
	memset(r, 0, sizeof *r);
	for (i = 0; i < c->n; i++) {
		char key[IP_STRLEN + 8], small[512];
		const char *val = NULL;
		struct ipaddr m = *ip;

		ip_mask(&m, c->len[i]);
		cidr_format(&m, c->len[i], key, sizeof key);
		found = get_str(t, key, strlen(key), small, sizeof small, &v, &val);
		if (found < 0)
			goto err;
		if (found) {
			const char *sp = strchr(val, ' ');
			char *tx;
			if (!sp || parse_action(val, (size_t)(sp - val), &r->action) < 0)
				goto corrupt;
			r->line = (int)strtol(sp + 1, &tx, 10);
			strlcpy(r->text, *tx == ' ' ? tx + 1 : "", sizeof r->text);
			strlcpy(r->match, key, sizeof r->match);
			buf_free(&v);
			return 0;
		}
	}
	if (c->corrupt)
		goto corrupt;
	buf_free(&v);
	if (parse_action(defact, strlen(defact), &r->action) < 0)
		r->action = ACCESS_DENY;
	strlcpy(r->match, "default", sizeof r->match);
	return 0;
corrupt:
	errno = EPROTO;
err:
	buf_free(&v);
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
	/* every component non-empty and not starting with '.': no "..",
	 * and Maildir++ folders are chosen by deliver, never by the table */
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

/* The key of a mailboxes or senders line: an address or "@domain",
 * lowercased in place. NULL, or why it is bad. */
static const char *
address_key(char *key, const char *bad_domain)
{
	struct addr a;
	const char *why;

	if (key[0] == '@') {
		if (!addr_domain_ok(key + 1, strlen(key + 1)))
			return bad_domain;
	} else if ((why = addr_parse_path(key, strlen(key), &a, 0, 0, NULL)))
		return why;
	lower(key);
	return NULL;
}

/* "LINENO tok tok..." for key, every token passing check (an error
 * text, or NULL); none: the error when there is no token. */
static const char *
emit_list(const char *key, int lineno, char *line, const char *(*check)(const char *),
    const char *none, emit_fn emit, void *ctx)
{
	struct buf v = BUF_INIT;
	char *tok, *save = NULL;
	const char *why;
	int n = 0, r;

	buf_printf(&v, "%d", lineno);
	for (tok = strtok_r(line, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		if ((why = check(tok))) {
			buf_free(&v);
			return why;
		}
		buf_printf(&v, " %s", tok);
		n++;
	}
	if (!n) {
		buf_free(&v);
		return none;
	}
	r = emit(ctx, key, strlen(key), v.s, v.len);
	buf_free(&v);
	return r < 0 ? "write error" : NULL;
}

static const char *
mailbox_target_check(const char *tok)
{
	struct addr a;

	if (strchr(tok, '@'))
		return addr_parse_path(tok, strlen(tok), &a, 0, 0, NULL) ? "bad target address" : NULL;
	return maildir_path_ok(tok) ? NULL :
	    "bad Maildir path (relative, no '..', letters digits ._+-/ only)";
}

static const char *
mailboxes_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *key = next_word(&line);
	const char *why;

	(void)st;
	if (!key)
		return "expected ADDRESS TARGET...";
	if ((why = address_key(key, "bad catch-all domain")))
		return why;
	return emit_list(key, lineno, line, mailbox_target_check, "expected at least one target",
	    emit, ctx);
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

/* ---- auth (SMTP AUTH users), senders (who may use which sender) ---- */

int
auth_user_ok(const char *u, size_t n)
{
	size_t i;

	if (n == 0 || n > AUTH_USER_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)u[i]) && !strchr("._@+-", u[i]))
			return 0;
	return 1;
}

const char *
auth_hash_check(const char *h)
{
	static const char *const strong[] = { "$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2y$", NULL };
	size_t i, n = strlen(h);
	int dollars = 0;

	for (i = 0; strong[i]; i++)
		if (!strncmp(h, strong[i], strlen(strong[i])))
			break;
	if (!strong[i])
		return "password hash must be yescrypt ($y$), gost-yescrypt ($gy$), scrypt ($7$), "
		    "SHA-512-crypt ($6$), SHA-256-crypt ($5$) or bcrypt ($2b$); use mkauth";
	if (n < 20 || n > AUTH_HASH_MAX)
		return "password hash has a bad length";
	for (i = 0; i < n; i++) {
		if (h[i] == '$')
			dollars++;
		else if (!isalnum((unsigned char)h[i]) && !strchr("./=,", h[i]))
			return "password hash holds characters crypt(3) never writes";
	}
	if (dollars < 3 || h[n - 1] == '$')
		return "password hash is incomplete (salt without a hash?)";
	return NULL;
}

static const char *
auth_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *user = next_word(&line), *hash = next_word(&line), v[AUTH_HASH_MAX + 16];
	const char *why;
	int n;

	(void)st;
	if (!hash || next_word(&line))
		return "expected USER HASH";
	if (!auth_user_ok(user, strlen(user)))
		return "bad user name (letters, digits and ._@+- only, 255 at most)";
	if ((why = auth_hash_check(hash)))
		return why;
	n = snprintf(v, sizeof v, "%d %s", lineno, hash);
	if (n < 0 || (size_t)n >= sizeof v)
		return "password hash has a bad length";
	return emit(ctx, user, strlen(user), v, (size_t)n) < 0 ? "write error" : NULL;
}

int
auth_get(struct table *t, const char *user, char *hash, size_t len)
{
	struct buf v = BUF_INIT;
	int r = table_get(t, user, strlen(user), &v);
	char *sp;

	if (r == 1) {
		sp = strchr(v.s, ' ');
		if (!sp || strlcpy(hash, sp + 1, len) >= len) {
			errno = EPROTO;
			r = -1;
		}
	}
	buf_free(&v);
	return r;
}

static const char *
sender_user_check(const char *tok)
{
	return auth_user_ok(tok, strlen(tok)) ? NULL :
	    "bad user name (letters, digits and ._@+- only)";
}

static const char *
senders_parse(struct table_state *st, char *line, int lineno, emit_fn emit, void *ctx)
{
	char *key = next_word(&line);
	const char *why;

	(void)st;
	if (!key)
		return "expected ADDRESS USER...";
	if ((why = address_key(key, "bad domain")))
		return why;
	return emit_list(key, lineno, line, sender_user_check, "expected at least one user",
	    emit, ctx);
}

int
sender_owned(struct table *t, const char *sender, const char *user)
{
	struct buf v = BUF_INIT;
	char key[ADDR_PATH_MAX + 2];
	const char *at;
	int r, pass;

	if (!*sender)
		return 1;	/* <>: bounces and notifications */
	if (strlcpy(key, sender, sizeof key) >= sizeof key)
		return 0;
	lower(key);
	at = strrchr(key, '@');
	for (pass = 0; pass < 2; pass++) {
		const char *k = pass == 0 ? key : at;
		char *p, *w, *save = NULL;

		if (!k)
			break;
		if ((r = table_get(t, k, strlen(k), &v)) < 0) {
			buf_free(&v);
			return -1;
		}
		if (r == 0)
			continue;
		p = strchr(v.s, ' ');
		for (w = p ? strtok_r(p, " ", &save) : NULL; w; w = strtok_r(NULL, " ", &save))
			if (!strcmp(w, user)) {
				buf_free(&v);
				return 1;
			}
		break;	/* the address is listed, but not for this user */
	}
	buf_free(&v);
	return 0;
}

static const struct table_format formats[] = {
	{ "auth", auth_parse, NULL },
	{ "senders", senders_parse, NULL },
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
