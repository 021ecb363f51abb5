/* addr: RFC 5321 envelope addresses, parsed once and never used as paths.
 *
 * addr_parse_path() takes the argument of MAIL FROM:/RCPT TO: (or a bare
 * address), strips one pair of angle brackets and any source route
 * (@a,@b:user@dom -> user@dom), splits local part and domain at the last
 * '@' outside quotes, lowercases the domain, removes one trailing dot
 * from the domain, and checks the RFC 5321 4.5.3.1 limits (local part
 * 64, domain 255, path 256). '%' and '!' are ordinary local-part
 * characters: they never route. */
#ifndef MX_ADDR_H
#define MX_ADDR_H
#include <stddef.h>

#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_PATH_MAX 256

struct addr {
	char local[ADDR_LOCAL_MAX + 1];	/* as given (quotes kept) */
	char domain[ADDR_DOMAIN_MAX + 1];	/* lowercased, no trailing dot */
	char full[ADDR_PATH_MAX + 1];	/* local@domain, "" for <> */
	int is_null;		/* <> */
	int is_literal;		/* domain is [address literal] */
	int is_quoted;		/* local part was a quoted-string */
};

/* Parse s (len bytes, no CR/LF). *rest (if not NULL) is set to what
 * follows the path (ESMTP parameters, leading blanks skipped).
 * Returns NULL on success or a short reason ("syntax error in address",
 * "local part too long", ...). A domain-less address is refused except
 * "postmaster" (RFC 5321 4.1.1.3) when allow_postmaster is set. */
const char *addr_parse_path(const char *s, size_t len, struct addr *a,
    int allow_null, int allow_postmaster, const char **rest);

/* Lowercase copy of a.full into dst (for table keys). */
void addr_key(const struct addr *a, char *dst, size_t dstlen);
/* Strip "+tag" (delimiter d) from the local part of key "local@dom"
 * in place; returns 1 if something was stripped and copies the tag
 * (without delimiter) to tag if not NULL. */
int addr_strip_ext(char *key, const char *d, char *tag, size_t taglen);
/* 1 if s is a syntactically valid domain (labels of letters, digits,
 * hyphens; not starting/ending with '-'; 63 per label). */
int addr_domain_ok(const char *s, size_t len);
#endif
