/* ipaddr: IPv4/IPv6 addresses and CIDR prefixes for the access table.
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) is treated as IPv4. */
#ifndef MX_IPADDR_H
#define MX_IPADDR_H
#include <stddef.h>

struct ipaddr {
	int family;		/* 4 or 6 */
	unsigned char b[16];	/* 4 or 16 bytes used */
};

#define IP_STRLEN 64

int ip_parse(const char *s, struct ipaddr *ip);	/* 0 ok, -1 bad */
/* "addr" or "addr/len"; len defaults to full. 0 ok; -1 bad syntax;
 * -2 host bits set beyond the prefix (refused, so typos show). */
int cidr_parse(const char *s, struct ipaddr *ip, int *len);
void ip_mask(struct ipaddr *ip, int len);
int ip_bits(const struct ipaddr *ip);	/* 32 or 128 */
/* canonical "addr/len" (inet_ntop form) into buf of IP_STRLEN */
void cidr_format(const struct ipaddr *ip, int len, char *buf, size_t buflen);
void ip_format(const struct ipaddr *ip, char *buf, size_t buflen);
#endif
