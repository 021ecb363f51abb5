/* Unit tests: IP and CIDR parsing and masking (lib/ipaddr.c). */
#include <string.h>
#include "check.h"
#include "ipaddr.h"

static void
canon(const char *in, const char *want)
{
	struct ipaddr ip;
	char buf[IP_STRLEN];
	int len;

	if (cidr_parse(in, &ip, &len) != 0) {
		CHECK(0, "parses %s", in);
		return;
	}
	cidr_format(&ip, len, buf, sizeof buf);
	CHECK_STR(buf, want, in);
}

int
main(void)
{
	struct ipaddr ip, m;
	char buf[IP_STRLEN];
	int len, i;

	canon("192.0.2.1", "192.0.2.1/32");
	canon("192.0.2.0/24", "192.0.2.0/24");
	canon("0.0.0.0/0", "0.0.0.0/0");
	canon("2001:DB8::/32", "2001:db8::/32");
	canon("::/0", "::/0");
	canon("::1", "::1/128");
	canon("::ffff:192.0.2.1", "192.0.2.1/32");
	canon("::ffff:192.0.2.0/120", "192.0.2.0/24");
	CHECK(cidr_parse("192.0.2.1/24", &ip, &len) == -2, "host bits beyond the prefix refused");
	CHECK(cidr_parse("192.0.2.0/33", &ip, &len) == -1, "/33 refused for IPv4");
	CHECK(cidr_parse("2001:db8::/129", &ip, &len) == -1, "/129 refused");
	CHECK(cidr_parse("192.0.2/24", &ip, &len) == -1, "short IPv4 refused");
	CHECK(cidr_parse("192.0.2.0/", &ip, &len) == -1, "empty prefix refused");
	CHECK(cidr_parse("192.0.2.0/-1", &ip, &len) == -1, "negative prefix refused");
	CHECK(cidr_parse("example.com", &ip, &len) == -1, "name refused");
	/* every IPv4 prefix length masks correctly */
	ip_parse("255.255.255.255", &ip);
	for (i = 0; i <= 32; i++) {
		unsigned v;
		m = ip;
		ip_mask(&m, i);
		v = (unsigned)m.b[0] << 24 | (unsigned)m.b[1] << 16 | (unsigned)m.b[2] << 8 | m.b[3];
		CHECK(v == (i ? 0xffffffffu << (32 - i) : 0), "IPv4 mask /%d", i);
	}
	/* every IPv6 prefix length keeps exactly len one-bits */
	ip_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &ip);
	for (i = 0; i <= 128; i++) {
		int bits = 0, j;
		m = ip;
		ip_mask(&m, i);
		for (j = 0; j < 16; j++)
			bits += __builtin_popcount(m.b[j]);
		CHECK(bits == i, "IPv6 mask /%d", i);
	}
	ip_parse("2001:db8:1:2::5", &ip);
	ip_mask(&ip, 48);
	cidr_format(&ip, 48, buf, sizeof buf);
	CHECK_STR(buf, "2001:db8:1::/48", "IPv6 /48 mask");
	CHECK(ip_parse("1.2.3.4", &ip) == 0 && ip.family == 4, "IPv4 family");
	CHECK(ip_parse("fe80::1", &ip) == 0 && ip.family == 6, "IPv6 family");
	CHECK(ip_parse("1.2.3.4 ", &ip) == -1, "trailing blank refused");
	CHECK_DONE();
}
