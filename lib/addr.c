#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

/* RFC 5321 atext (plus '.' handled by the caller) */
static int
atext(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

int
addr_domain_ok(const char *s, size_t len)
{
	size_t i, lab = 0;

	if (len == 0 || len > ADDR_DOMAIN_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (lab == 0 || s[i - 1] == '-')
				return 0;
			lab = 0;
			continue;
		}
		if (!isalnum(c) && c != '-')
			return 0;
		if (c == '-' && lab == 0)
			return 0;
		if (++lab > 63)
			return 0;
	}
	return lab > 0 && s[len - 1] != '-';
}

/* [1.2.3.4] or [IPv6:...]: printable, no brackets or backslash inside */
static int
literal_ok(const char *s, size_t len)
{
	size_t i;

	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return 0;
	for (i = 1; i < len - 1; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '[' || c == ']' || c == '\\')
			return 0;
	}
	return 1;
}

/* Length of the local part starting at s (dot-string or quoted-string),
 * 0 if malformed. */
static size_t
local_len(const char *s, size_t len, int *quoted)
{
	size_t i = 0;

	*quoted = 0;
	if (len && s[0] == '"') {
		*quoted = 1;
		for (i = 1; i < len; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '\\') {
				if (++i >= len || (unsigned char)s[i] < ' ' || (unsigned char)s[i] > '~')
					return 0;
				continue;
			}
			if (c == '"')
				return i + 1 > 2 ? i + 1 : 0;
			if (c < ' ' || c > '~')
				return 0;
		}
		return 0;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (i == 0 || s[i - 1] == '.')
				return 0;
			continue;
		}
		if (!atext(c))
			break;
	}
	if (i == 0 || s[i - 1] == '.')
		return 0;
	return i;
}

const char *
addr_parse_path(const char *s, size_t len, struct addr *a, int allow_null,
    int allow_postmaster, const char **rest)
{
	const char *p = s, *end = s + len, *close;
	size_t ll, dl;
	int bracket = 0;

	memset(a, 0, sizeof *a);
	while (p < end && *p == ' ')
		p++;
	if (p < end && *p == '<') {
		bracket = 1;
		p++;
	}
	/* source route: @a,@b:  (RFC 5321 4.1.2, to be ignored) */
	if (bracket && p < end && *p == '@') {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		if (!colon)
			return "syntax error in source route";
		p = colon + 1;
	}
	if (bracket && p < end && *p == '>' && p[-1] == '<') {
		if (!allow_null)
			return "null address not allowed here";
		a->is_null = 1;
		close = p + 1;
		goto params;
	}
	ll = local_len(p, (size_t)(end - p), &a->is_quoted);
	if (ll == 0)
		return "syntax error in address";
	if (ll > ADDR_LOCAL_MAX)
		return "local part too long";
	memcpy(a->local, p, ll);
	p += ll;
	if (p < end && *p == '@') {
		const char *d = ++p;
		if (p < end && *p == '[') {
			const char *rb = memchr(p, ']', (size_t)(end - p));
			if (!rb)
				return "syntax error in domain literal";
			p = rb + 1;
		} else
			while (p < end && (isalnum((unsigned char)*p) || *p == '-' || *p == '.'))
				p++;
		dl = (size_t)(p - d);
		if (dl > 1 && d[dl - 1] == '.' && d[0] != '[')
			dl--;	/* one trailing dot: the root, dropped */
		if (dl > ADDR_DOMAIN_MAX)
			return "domain too long";
		if (d[0] == '[') {
			if (!literal_ok(d, dl))
				return "syntax error in domain literal";
			a->is_literal = 1;
		} else if (!addr_domain_ok(d, dl))
			return "syntax error in domain";
		for (size_t i = 0; i < dl; i++)
			a->domain[i] = (char)tolower((unsigned char)d[i]);
	} else {
		if (!allow_postmaster || a->is_quoted || strcasecmp(a->local, "postmaster"))
			return "address must have a domain";
	}
	if (bracket) {
		if (p >= end || *p != '>')
			return "syntax error in address (expected '>')";
		p++;
	} else if (p < end && *p != ' ')
		return "syntax error in address";
	close = p;
	if (strlen(a->local) + 1 + strlen(a->domain) > ADDR_PATH_MAX)
		return "address too long";
	strlcpy(a->full, a->local, sizeof a->full);
	if (a->domain[0]) {
		strlcat(a->full, "@", sizeof a->full);
		strlcat(a->full, a->domain, sizeof a->full);
	}
params:
	p = close;
	if (p < end && *p != ' ')
		return "syntax error after address";
	while (p < end && *p == ' ')
		p++;
	if (rest)
		*rest = p;
	else if (p != end)
		return "unexpected text after address";
	return NULL;
}

void
addr_key(const struct addr *a, char *dst, size_t dstlen)
{
	size_t i;

	for (i = 0; a->full[i] && i + 1 < dstlen; i++)
		dst[i] = (char)tolower((unsigned char)a->full[i]);
	if (dstlen)
		dst[i] = 0;
}

int
addr_strip_ext(char *key, const char *d, char *tag, size_t taglen)
{
	char *at = strrchr(key, '@'), *sep;
	size_t dlen = strlen(d);

	if (!dlen || !at)
		return 0;
	*at = 0;
	sep = strstr(key, d);
	*at = '@';
	if (!sep || sep == key)
		return 0;
	if (tag) {
		size_t n = (size_t)(at - sep - dlen);
		if (n >= taglen)
			n = taglen - 1;
		memcpy(tag, sep + dlen, n);
		tag[n] = 0;
	}
	memmove(sep, at, strlen(at) + 1);
	return 1;
}
