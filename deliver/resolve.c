/* resolve.c: what an envelope recipient means here.
 *
 * A recipient in a local domain (domains.cdb) is looked up in
 * mailboxes.cdb: the exact address, then the address with the
 * recipient_delimiter extension removed (user+tag -> user), then the
 * "@domain" catch-all. Each target of the entry is either a Maildir path
 * (relative to the mail root, checked again with maildir_path_ok) or an
 * address: a local one is resolved again (aliases, lists; depth and
 * cycles limited), a foreign one is forwarded through the queue. Any
 * other domain (relay, backup MX) goes to the queue as it is. The
 * address itself never becomes a path. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "log.h"
#include "tables.h"

struct walk {
	const struct settings *s;
	struct tables *tb;
	struct rcpt *r;
	char stack[ALIAS_DEPTH_MAX + 1][ADDR_PATH_MAX + 1];	/* current path */
	int cycles;		/* branches cut because they looped */
	char perm[300];		/* first permanent problem of a branch */
	int temp;		/* a table could not be read */
};

void
target_free(struct target *t)
{
	free(t->path);
	free(t->folder);
	free(t->addr);
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int
add_target(struct walk *w, enum tkind kind, const char *path, const char *addr,
    int forward)
{
	struct rcpt *r = w->r;
	struct target *t;
	size_t i;

	for (i = 0; i < r->nt; i++) {	/* lists that overlap: one copy */
		t = &r->t[i];
		if (t->kind == kind && kind == T_MAILDIR && !strcmp(t->path, path))
			return 0;
		if (t->kind == kind && kind == T_REMOTE && !strcasecmp(t->addr, addr))
			return 0;
	}
	if (r->nt >= TARGETS_MAX) {
		snprintf(w->perm, sizeof w->perm, "5.3.4 alias expansion too large (over %d targets)",
		    TARGETS_MAX);
		return -1;
	}
	r->t = xreallocarray(r->t, r->nt + 1, sizeof *r->t);
	t = &r->t[r->nt++];
	memset(t, 0, sizeof *t);
	t->kind = kind;
	t->path = xstrdup(path ? path : "");
	t->folder = xstrdup("");
	t->addr = xstrdup(addr ? addr : "");
	t->forward = forward;
	t->state = TS_TODO;
	return 0;
}

static int
is_local(struct walk *w, const char *domain)
{
	int r;

	if (!domain[0])
		return 0;
	r = domain_lookup(&w->tb->domains, domain, NULL, 0, NULL);
	if (r < 0) {
		log_warnsys("domains table lookup for %s", domain);
		w->temp = 1;
		return 0;
	}
	return r;
}

/* Look key up: exact, without extension, catch-all. 1 found (val),
 * 0 none, -1 table error. tag gets the extension when it was used. */
static int
lookup(struct walk *w, const char *key, struct buf *val, char *tag, size_t taglen)
{
	char k[ADDR_PATH_MAX + 2];
	const char *at;
	int r;

	if (tag && taglen)
		tag[0] = 0;
	if ((r = mailbox_get(&w->tb->mailboxes, key, val, NULL)) != 0)
		return r;
	strlcpy(k, key, sizeof k);
	if (w->s->recipient_delimiter[0] &&
	    addr_strip_ext(k, w->s->recipient_delimiter, tag, taglen)) {
		if ((r = mailbox_get(&w->tb->mailboxes, k, val, NULL)) != 0)
			return r;
		if (tag && taglen)
			tag[0] = 0;
	}
	if (!(at = strrchr(key, '@')))
		return 0;
	return mailbox_get(&w->tb->mailboxes, at, val, NULL);
}

static void expand(struct walk *w, const char *key, int depth);

static void
expand_value(struct walk *w, const char *key, char *val, int depth)
{
	char *tok, *save = NULL, esc[600];

	for (tok = strtok_r(val, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		if (!strchr(tok, '@')) {
			/* a Maildir path: from the table, checked again here */
			if (!maildir_path_ok(tok)) {
				log_warn("mailboxes entry for %s: unsafe Maildir path %s ignored",
				    key, log_esc(esc, sizeof esc, tok, strlen(tok)));
				w->temp = 1;
				continue;
			}
			if (add_target(w, T_MAILDIR, tok, NULL, 0) < 0)
				return;
			continue;
		}
		struct addr a;
		char k[ADDR_PATH_MAX + 1];
		const char *why = addr_parse_path(tok, strlen(tok), &a, 0, 0, NULL);
		if (why) {
			log_warn("mailboxes entry for %s: bad target %s: %s", key,
			    log_esc(esc, sizeof esc, tok, strlen(tok)), why);
			if (!w->perm[0])
				snprintf(w->perm, sizeof w->perm, "5.1.3 bad alias target");
			continue;
		}
		addr_key(&a, k, sizeof k);
		if (!a.is_literal && is_local(w, a.domain)) {
			expand(w, k, depth + 1);
			if (w->temp)
				return;
		} else if (!w->temp) {
			if (add_target(w, T_REMOTE, NULL, a.full, 1) < 0)
				return;
		}
	}
}

static void
expand(struct walk *w, const char *key, int depth)
{
	struct buf val = BUF_INIT;
	char tag[ADDR_LOCAL_MAX + 1];
	int i, r;

	if (depth > ALIAS_DEPTH_MAX) {
		log_warn("alias nesting deeper than %d at %s", ALIAS_DEPTH_MAX, key);
		if (!w->perm[0])
			snprintf(w->perm, sizeof w->perm, "5.4.6 alias nesting too deep");
		return;
	}
	for (i = 0; i < depth; i++)
		if (!strcmp(w->stack[i], key)) {
			log_warn("alias loop: %s is reached through itself", key);
			w->cycles++;
			return;
		}
	strlcpy(w->stack[depth], key, sizeof w->stack[depth]);
	r = lookup(w, key, &val, tag, sizeof tag);
	if (r < 0) {
		log_warnsys("mailboxes table lookup for %s", key);
		w->temp = 1;
	} else if (r == 0) {
		if (depth == 0)
			snprintf(w->perm, sizeof w->perm, "5.1.1 no such user here");
		else {
			log_warn("alias target %s: no such user", key);
			if (!w->perm[0])
				snprintf(w->perm, sizeof w->perm, "5.1.1 alias target has no mailbox");
		}
	} else {
		if (depth == 0)
			strlcpy(w->r->tag, tag, sizeof w->r->tag);
		expand_value(w, key, val.s, depth);
	}
	buf_free(&val);
}

void
resolve(const struct settings *s, struct tables *tb, struct rcpt *r)
{
	struct walk w;
	struct addr a;
	const char *why;
	char buf[ADDR_PATH_MAX + 300];

	memset(&w, 0, sizeof w);
	w.s = s;
	w.tb = tb;
	w.r = r;
	r->state = RS_OK;
	why = addr_parse_path(r->given, strlen(r->given), &a, 0, 1, NULL);
	if (why) {
		r->state = RS_PERM;
		snprintf(r->reason, sizeof r->reason, "5.1.3 bad recipient address: %s", why);
		return;
	}
	if (!a.domain[0]) {	/* bare "postmaster" (RFC 5321 4.1.1.3) */
		snprintf(buf, sizeof buf, "%s@%s", a.local, s->hostname);
		if ((why = addr_parse_path(buf, strlen(buf), &a, 0, 0, NULL))) {
			r->state = RS_PERM;
			snprintf(r->reason, sizeof r->reason, "5.1.3 bad recipient address: %s", why);
			return;
		}
	}
	addr_key(&a, r->key, sizeof r->key);
	lower(r->key);
	if (!tb->have_domains || (!a.is_literal && is_local(&w, a.domain))) {
		if (!tb->have_domains)
			w.temp = 1;
		r->local = 1;
	}
	if (w.temp) {
		r->state = RS_TEMP;
		snprintf(r->reason, sizeof r->reason, "4.3.0 cannot read the domains table");
		return;
	}
	if (!r->local) {
		/* relayed or backup MX: the queue sends it on as it is */
		add_target(&w, T_REMOTE, NULL, a.full, 0);
		return;
	}
	if (!tb->have_mailboxes) {
		r->state = RS_TEMP;
		snprintf(r->reason, sizeof r->reason, "4.3.0 cannot read the mailboxes table");
		return;
	}
	expand(&w, r->key, 0);
	if (w.temp) {
		r->state = RS_TEMP;
		snprintf(r->reason, sizeof r->reason, "4.3.0 cannot resolve the recipient (table error)");
	} else if (r->nt == 0) {
		r->state = RS_PERM;
		if (w.perm[0])
			strlcpy(r->reason, w.perm, sizeof r->reason);
		else if (w.cycles)
			snprintf(r->reason, sizeof r->reason, "5.4.6 alias loop, no mailbox reached");
		else
			snprintf(r->reason, sizeof r->reason, "5.1.1 no mailbox for this address");
	} else if (w.perm[0] && !strncmp(w.perm, "5.3.4", 5)) {
		r->state = RS_PERM;
		strlcpy(r->reason, w.perm, sizeof r->reason);
	}
}
