/* Unit tests: RFC 5321 path parsing (lib/addr.c). */
#include <string.h>
#include "addr.h"
#include "check.h"

static const char *
parse(const char *s, struct addr *a)
{
	return addr_parse_path(s, strlen(s), a, 1, 0, NULL);
}

static void
good(const char *in, const char *full, const char *domain)
{
	struct addr a;
	const char *e = parse(in, &a);

	CHECK(e == NULL, "parses %s%s%s", in, e ? ": " : "", e ? e : "");
	if (!e) {
		CHECK_STR(a.full, full, in);
		CHECK_STR(a.domain, domain, in);
	}
}

static void
bad(const char *in)
{
	struct addr a;

	CHECK(parse(in, &a) != NULL, "refuses %s", in);
}

int
main(void)
{
	struct addr a;
	const char *rest;
	char big[400], key[300];

	good("<alice@example.com>", "alice@example.com", "example.com");
	good("<Alice@EXAMPLE.Com>", "Alice@example.com", "example.com");
	good("alice@example.com", "alice@example.com", "example.com");
	good("<alice@example.com.>", "alice@example.com", "example.com");	/* trailing dot dropped */
	good("<@relay.one,@relay.two:bob@example.com>", "bob@example.com", "example.com");
	good("<user%other.com@example.com>", "user%other.com@example.com", "example.com");
	good("<other.com!user@example.com>", "other.com!user@example.com", "example.com");
	good("<\"user@evil.com\"@example.com>", "\"user@evil.com\"@example.com", "example.com");
	good("<\"a b\\\"c\"@example.com>", "\"a b\\\"c\"@example.com", "example.com");
	good("<x@[192.0.2.1]>", "x@[192.0.2.1]", "[192.0.2.1]");
	good("<x@[IPv6:2001:db8::1]>", "x@[ipv6:2001:db8::1]", "[ipv6:2001:db8::1]");
	CHECK(parse("<>", &a) == NULL && a.is_null, "null path");
	CHECK(addr_parse_path("<>", 2, &a, 0, 0, NULL) != NULL, "null path refused for RCPT");
	bad("<alice@example.com");
	bad("<alice@@example.com>");
	bad("<alice@example.com@evil.com>");
	bad("<alice@evil.com>x");
	bad("<.alice@example.com>");
	bad("<alice.@example.com>");
	bad("<al..ice@example.com>");
	bad("<alice@-example.com>");
	bad("<alice@exa_mple.com>");
	bad("<alice@example..com>");
	bad("<alice>");
	bad("<@a:>");
	bad("<alice@[1.2.3.4>");
	bad("<al\xe9@example.com>");
	bad("<alice@example.com\r>");
	bad("<\"unterminated@example.com>");
	CHECK(addr_parse_path("<postmaster>", 12, &a, 0, 1, NULL) == NULL, "bare postmaster when allowed");
	/* limits: local part 64, domain 255 */
	memset(big, 'a', 65);
	strcpy(big + 65, "@example.com");
	bad(big);
	memset(big, 'a', 64);
	strcpy(big + 64, "@example.com");
	good(big, big, "example.com");
	/* parameters follow the path */
	CHECK(addr_parse_path("<a@b.c> SIZE=100 BODY=8BITMIME", 30, &a, 1, 0, &rest) == NULL &&
	    !strcmp(rest, "SIZE=100 BODY=8BITMIME"), "rest points at parameters");
	/* key and extension */
	parse("<Alice+Tag@Example.COM>", &a);
	addr_key(&a, key, sizeof key);
	CHECK_STR(key, "alice+tag@example.com", "key is lowercased");
	{
		char tag[64];
		CHECK(addr_strip_ext(key, "+", tag, sizeof tag) == 1, "extension stripped");
		CHECK_STR(key, "alice@example.com", "stripped key");
		CHECK_STR(tag, "tag", "tag");
	}
	strcpy(key, "+x@example.com");
	CHECK(addr_strip_ext(key, "+", NULL, 0) == 0, "leading delimiter is not an extension");
	CHECK(addr_domain_ok("a-b.c", 5) && !addr_domain_ok("a-.c", 4), "domain syntax");
	CHECK_DONE();
}
