#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipaddr.h"

static const unsigned char v4mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

/* inet_pton(AF_INET, s, dst) == 1, with glibc's exact rules (four
 * decimal octets 0-255, no leading zeros, nothing else), without the
 * library call's overhead: mkcdb and relaycheck parse an address per
 * table line and per request. */
static int
pton4(const char *s, unsigned char *dst)
{
	unsigned char tmp[4], *tp = tmp;
	int saw_digit = 0, octets = 0, ch;

	*tp = 0;
	while ((ch = (unsigned char)*s++)) {
		if (ch >= '0' && ch <= '9') {
			unsigned v = *tp * 10u + (unsigned)(ch - '0');
			if (saw_digit && *tp == 0)
				return 0;
			if (v > 255)
				return 0;
			*tp = (unsigned char)v;
			if (!saw_digit) {
				if (++octets > 4)
					return 0;
				saw_digit = 1;
			}
		} else if (ch == '.' && saw_digit) {
			if (octets == 4)
				return 0;
			*++tp = 0;
			saw_digit = 0;
		} else
			return 0;
	}
	if (octets < 4)
		return 0;
	memcpy(dst, tmp, 4);
	return 1;
}

int
ip_parse(const char *s, struct ipaddr *ip)
{
	memset(ip, 0, sizeof *ip);
	if (pton4(s, ip->b) == 1) {
		ip->family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, s, ip->b) == 1) {
		ip->family = 6;
		if (!memcmp(ip->b, v4mapped, 12)) {
			memmove(ip->b, ip->b + 12, 4);
			memset(ip->b + 4, 0, 12);
			ip->family = 4;
		}
		return 0;
	}
	return -1;
}

int
ip_bits(const struct ipaddr *ip)
{
	return ip->family == 4 ? 32 : 128;
}

void
ip_mask(struct ipaddr *ip, int len)
{
	int i, bytes = ip_bits(ip) / 8;

	for (i = 0; i < bytes; i++) {
		int keep = len - i * 8;
		if (keep >= 8)
			continue;
		ip->b[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
	}
}

int
cidr_parse(const char *s, struct ipaddr *ip, int *len)
{
	char tmp[IP_STRLEN];
	const char *slash = strchr(s, '/');
	struct ipaddr m;
	size_t n = slash ? (size_t)(slash - s) : strlen(s);

	if (n == 0 || n >= sizeof tmp)
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	if (ip_parse(tmp, ip) < 0)
		return -1;
	if (slash) {
		char *end;
		long l;
		if (!slash[1] || slash[1] < '0' || slash[1] > '9')
			return -1;
		l = strtol(slash + 1, &end, 10);
		if (*end || l < 0 || l > 128)
			return -1;
		/* a mapped v4 address keeps v6 prefix semantics: ::ffff:0:0/96 */
		if (ip->family == 4 && strchr(tmp, ':')) {
			if (l < 96)
				return -1;
			l -= 96;
		}
		if (l > ip_bits(ip))
			return -1;
		*len = (int)l;
	} else
		*len = ip_bits(ip);
	m = *ip;
	ip_mask(&m, *len);
	if (memcmp(m.b, ip->b, sizeof m.b))
		return -2;
	return 0;
}

/* Decimal digits of v (0..999999999) at p; returns the end. */
static char *
put_uint(char *p, unsigned v)
{
	char tmp[10];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* glibc's inet_ntop(AF_INET6) without its sprintf per group: the
 * longest run (the first of equal ones) of two or more zero groups is
 * "::", groups in lowercase hex without leading zeros, "::a.b.c.d" and
 * "::ffff:a.b.c.d" for compatible and mapped IPv4. Returns the length. */
static int
ntop6(const unsigned char *b, char *tmp)
{
	static const char hex[] = "0123456789abcdef";
	unsigned w[8];
	int i, base = -1, len = 0, cb = -1, cl = 0;
	char *p = tmp;

	for (i = 0; i < 8; i++) {
		w[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
		if (w[i] == 0) {
			if (cb < 0)
				cb = i, cl = 1;
			else
				cl++;
		} else if (cb >= 0) {
			if (base < 0 || cl > len)
				base = cb, len = cl;
			cb = -1;
		}
	}
	if (cb >= 0 && (base < 0 || cl > len))
		base = cb, len = cl;
	if (base >= 0 && len < 2)
		base = -1;
	for (i = 0; i < 8; i++) {
		if (base >= 0 && i >= base && i < base + len) {
			if (i == base)
				*p++ = ':';
			continue;
		}
		if (i)
			*p++ = ':';
		if (i == 6 && base == 0 && (len == 6 || (len == 5 && w[5] == 0xffff))) {
			int j;
			for (j = 12; j < 16; j++) {
				unsigned v = b[j];
				if (j > 12)
					*p++ = '.';
				if (v >= 100)
					*p++ = (char)('0' + v / 100);
				if (v >= 10)
					*p++ = (char)('0' + v / 10 % 10);
				*p++ = (char)('0' + v % 10);
			}
			*p = 0;
			return (int)(p - tmp);
		}
		if (w[i] >= 0x1000)
			*p++ = hex[w[i] >> 12];
		if (w[i] >= 0x100)
			*p++ = hex[w[i] >> 8 & 15];
		if (w[i] >= 0x10)
			*p++ = hex[w[i] >> 4 & 15];
		*p++ = hex[w[i] & 15];
	}
	if (base >= 0 && base + len == 8)
		*p++ = ':';
	*p = 0;
	return (int)(p - tmp);
}

/* ip_format into tmp (IP_STRLEN) without the size limit; returns the
 * length, or -1 when inet_ntop fails. IPv4 is formatted here: glibc's
 * inet_ntop goes through sprintf, which dominated mkcdb and the access
 * lookups. Same text: "%u.%u.%u.%u". */
static int
ip_text(const struct ipaddr *ip, char *tmp)
{
	char *p = tmp;
	int i;

	if (ip->family == 4) {
		for (i = 0; i < 4; i++) {
			unsigned v = ip->b[i];
			if (i)
				*p++ = '.';
			if (v >= 100)
				*p++ = (char)('0' + v / 100);
			if (v >= 10)
				*p++ = (char)('0' + v / 10 % 10);
			*p++ = (char)('0' + v % 10);
		}
		*p = 0;
		return (int)(p - tmp);
	}
	return ntop6(ip->b, tmp);
}

/* snprintf(buf, buflen, "%s", s) for s of n bytes */
static void
copy_trunc(char *buf, size_t buflen, const char *s, size_t n)
{
	if (!buflen)
		return;
	if (n >= buflen)
		n = buflen - 1;
	memcpy(buf, s, n);
	buf[n] = 0;
}

void
ip_format(const struct ipaddr *ip, char *buf, size_t buflen)
{
	char tmp[IP_STRLEN];
	int n = ip_text(ip, tmp);

	/* inet_ntop fails with ENOSPC rather than truncate */
	if (n < 0 || (size_t)n >= buflen)
		copy_trunc(buf, buflen, "?", 1);
	else
		memcpy(buf, tmp, (size_t)n + 1);
}

void
cidr_format(const struct ipaddr *ip, int len, char *buf, size_t buflen)
{
	char a[IP_STRLEN + 16], *p;
	int n = ip_text(ip, a);

	if (n < 0) {
		n = 1;
		strcpy(a, "?");
	}
	if (len < 0 || len > 999) {
		snprintf(buf, buflen, "%s/%d", a, len);
		return;
	}
	p = a + n;
	*p++ = '/';
	p = put_uint(p, (unsigned)len);
	copy_trunc(buf, buflen, a, (size_t)(p - a));
}
