#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipaddr.h"

static const unsigned char v4mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

int
ip_parse(const char *s, struct ipaddr *ip)
{
	memset(ip, 0, sizeof *ip);
	if (inet_pton(AF_INET, s, ip->b) == 1) {
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

void
ip_format(const struct ipaddr *ip, char *buf, size_t buflen)
{
	if (!inet_ntop(ip->family == 4 ? AF_INET : AF_INET6, ip->b, buf, buflen))
		snprintf(buf, buflen, "?");
}

void
cidr_format(const struct ipaddr *ip, int len, char *buf, size_t buflen)
{
	char a[IP_STRLEN];

	ip_format(ip, a, sizeof a);
	snprintf(buf, buflen, "%s/%d", a, len);
}
