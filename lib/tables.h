/* tables: the text formats of the conf/ tables (see mxconf(5)), how
 * mkcdb turns each line into CDB records, and the lookups that
 * relaycheck and deliver make on the compiled tables.
 *
 * CDB layout (keys are plain text so `cdb -q` works for admins):
 *   access.cdb    "192.0.2.0/24" or "2001:db8::/32" (canonical, masked)
 *                 -> "ACTION LINE[ TEXT]"; "/lengths4", "/lengths6"
 *                 -> prefix lengths present, longest first ("32 24 0")
 *   domains.cdb   "example.com" or ".example.com" (subdomains) -> "LINE"
 *   backup.cdb    same as domains.cdb
 *   mailboxes.cdb "user@example.com" or "@example.com" (catch-all)
 *                 -> "LINE TARGET[ TARGET...]"; a TARGET with '@' is an
 *                 address (alias, list member or forward), one without
 *                 is a Maildir path relative to the mail root.
 *   routes.cdb    "example.com" or "*" -> "LINE HOST[:PORT]" (queue).
 *   auth.cdb      "user" -> "LINE HASH", HASH in crypt(3) form (SMTP AUTH)
 *   senders.cdb   "user@example.com" or "@example.com" -> "LINE USER[ USER...]":
 *                 the SMTP AUTH users that may use that envelope sender. */
#ifndef MX_TABLES_H
#define MX_TABLES_H
#include <stddef.h>
#include "ipaddr.h"
#include "table.h"

enum access_action { ACCESS_ALLOW, ACCESS_DENY, ACCESS_RELAY };

/* ---- compiling (mkcdb) ---- */
typedef int (*emit_fn)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);
struct table_state {
	unsigned char lens4[33], lens6[129];	/* access: lengths seen */
};
struct table_format {
	const char *name;
	/* Parse one line (comments already stripped, non-empty). Returns NULL
	 * or the reason the line is bad. */
	const char *(*parse)(struct table_state *st, char *line, int lineno,
	    emit_fn emit, void *ctx);
	/* Emit trailing records; NULL reason or an error. */
	const char *(*finish)(struct table_state *st, emit_fn emit, void *ctx);
};
const struct table_format *table_format(const char *name);
/* names of all known tables, NULL-terminated */
extern const char *const table_names[];

/* Strip a '#' comment (at line start or after a blank) and surrounding
 * blanks in place; returns the start of what is left. */
char *table_strip(char *line);

/* ---- lookups ---- */
struct access_result {
	enum access_action action;
	int line;		/* 0 when the default applied */
	char match[IP_STRLEN];	/* the prefix that matched */
	char text[512];		/* reply text from the table, may be "" */
};
/* Longest-prefix match; when nothing matches, defact ("allow"...)
 * applies with line 0. 0 ok, -1 table error. */
int access_lookup(struct table *t, const struct ipaddr *ip, const char *defact,
    struct access_result *r);
const char *access_name(enum access_action a);

/* Domain (lowercase, no trailing dot): exact entry, then ".parent"
 * entries for each parent. 1 found (matched entry and line set),
 * 0 not found, -1 table error. */
int domain_lookup(struct table *t, const char *domain, char *matched,
    size_t mlen, int *line);

/* Mailbox key lookup: val gets "TARGET TARGET..."; 1/0/-1. */
int mailbox_get(struct table *t, const char *key, struct buf *val, int *line);
/* A Maildir path target is safe: relative, no "..", no empty or dot-led
 * components, only [A-Za-z0-9._+-/]. */
int maildir_path_ok(const char *p);

/* SMTP AUTH users: letters, digits and ._@+- (safe in headers, logs
 * and the environment), at most AUTH_USER_MAX. */
#define AUTH_USER_MAX 255
#define AUTH_HASH_MAX 512
int auth_user_ok(const char *u, size_t n);
/* NULL if h looks like a strong crypt(3) hash, else the reason. */
const char *auth_hash_check(const char *h);
/* The user's hash into hash (len bytes): 1 found, 0 absent, -1 error. */
int auth_get(struct table *t, const char *user, char *hash, size_t len);
/* May user send as sender (the address, then "@domain")? An address
 * not in the table is nobody's. 1 yes, 0 no, -1 table error. */
int sender_owned(struct table *t, const char *sender, const char *user);
#endif
